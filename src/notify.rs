//! Notifications about incidents: a generic JSON webhook or a Slack-compatible message,
//! with a timeout and retries.

use std::time::Duration;

use serde::Serialize;

use crate::v1alpha1::{WebhookFormat, WebhookSpec};

/// What a notification says.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Namespace of the policy and incident.
    pub namespace: String,
    /// The policy.
    pub policy: String,
    /// The incident (Remediation name).
    pub remediation: String,
    /// `Kind/name` of the workload.
    pub target: String,
    /// The pattern that fired.
    pub pattern: String,
    /// The action chosen.
    pub action: String,
    /// The incident's phase.
    pub phase: String,
    /// The incident's latest message.
    pub message: String,
}

impl Notification {
    /// The body for a given format.
    pub fn body(&self, format: WebhookFormat) -> serde_json::Value {
        match format {
            WebhookFormat::Generic => {
                serde_json::json!({"kind": "homeostat.dev/Notification", "incident": self})
            }
            WebhookFormat::Slack => serde_json::json!({
                "text": format!(
                    ":rotating_light: homeostat: *{}* on `{}` in `{}` is *{}* ({}): {} — `kubectl -n {} get remediation {}`",
                    self.pattern, self.target, self.namespace, self.phase, self.action, self.message,
                    self.namespace, self.remediation
                )
            }),
        }
    }
}

/// Sends one notification, retrying `attempts` times with a doubling pause on failure.
pub async fn send(
    http: &reqwest::Client,
    hook: &WebhookSpec,
    n: &Notification,
    attempts: u32,
    timeout: Duration,
) -> Result<(), String> {
    let body = n.body(hook.format);
    let mut pause = Duration::from_millis(500);
    let mut last = String::new();
    for i in 1..=attempts.max(1) {
        match http
            .post(&hook.url)
            .timeout(timeout)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        if i < attempts {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    Err(format!(
        "webhook {} failed after {attempts} attempt(s): {last}",
        hook.url
    ))
}
