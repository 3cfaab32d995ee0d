//! Notifications about incidents: a generic JSON webhook or a Slack-compatible message,
//! with a timeout and retries, to allow-listed destinations only.

use std::time::Duration;

use serde::Serialize;

use crate::{
    egress::{AllowList, PublicOnlyResolver, Refusal, Route},
    v1alpha1::{WebhookFormat, WebhookSpec},
};

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

/// The start of an error answer kept for the message; the rest is never read.
pub const MAX_RESPONSE: usize = 1024;

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The URL is outside the operator's webhook allow-list: nothing was sent.
    #[error("webhook not sent: {0}")]
    Refused(#[from] Refusal),
    /// Every attempt failed.
    #[error("webhook {url} failed after {attempts} attempt(s): {last}")]
    Failed {
        /// The URL's origin (its path may be a secret).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

impl NotifyError {
    /// A bounded category, used as a metric label and Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused(r) => r.reason(),
            Self::Failed { .. } => "WebhookFailed",
        }
    }
}

/// Sends notifications to allow-listed webhooks only, never following a redirect and reading at
/// most [`MAX_RESPONSE`] bytes of an answer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    allow: AllowList,
    listed: reqwest::Client,
    public: reqwest::Client,
}

impl Notifier {
    /// A notifier for the destinations `allow` admits.
    pub fn new(allow: AllowList) -> Result<Self, String> {
        let base = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("homeostat/", env!("CARGO_PKG_VERSION")))
        };
        let listed = base()
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        // Public destinations: no proxy (it would resolve the name itself), and every address
        // connected to is checked to be public.
        let public = base()
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(PublicOnlyResolver))
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Self {
            allow,
            listed,
            public,
        })
    }

    /// A notifier that sends nothing (no destination is allowed).
    pub fn deny_all() -> Self {
        let allow = AllowList::new("webhooks", "--webhook-allow", vec![]);
        Self::new(allow).unwrap_or_else(|_| Self {
            allow: AllowList::new("webhooks", "--webhook-allow", vec![]),
            listed: reqwest::Client::new(),
            public: reqwest::Client::new(),
        })
    }

    /// Whether a webhook URL would be sent to; for reporting a policy's bad `notify` up front.
    pub fn check(&self, url: &str) -> Result<(), Refusal> {
        self.allow.check(url).map(|_| ())
    }

    /// Sends one notification, retrying `attempts` times with a doubling pause on failure.
    pub async fn send(
        &self,
        hook: &WebhookSpec,
        n: &Notification,
        attempts: u32,
        timeout: Duration,
    ) -> Result<(), NotifyError> {
        let checked = self.allow.check(&hook.url)?;
        let http = match checked.route {
            Route::Listed => &self.listed,
            Route::Public => &self.public,
        };
        let body = n.body(hook.format);
        let mut pause = Duration::from_millis(500);
        let mut last = String::new();
        for i in 1..=attempts.max(1) {
            match http
                .post(checked.url.clone())
                .timeout(timeout)
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_redirection() => {
                    last = format!("HTTP {} (redirects are not followed)", r.status());
                }
                Ok(mut r) => {
                    let status = r.status();
                    let start = match crate::egress::read_capped(&mut r, MAX_RESPONSE).await {
                        Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
                        Ok(None) => format!("(answer over {MAX_RESPONSE} bytes, not read)"),
                        Err(_) => String::new(),
                    };
                    last = format!("HTTP {status} {}", crate::bounded::message(&start));
                }
                Err(e) => last = error_chain(&e),
            }
            if i < attempts {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        // The path of a webhook URL is often its secret (Slack): name the origin only.
        Err(NotifyError::Failed {
            url: format!("{}/…", checked.url.origin().ascii_serialization()),
            attempts: attempts.max(1),
            last: last.trim_end().to_string(),
        })
    }
}

/// An error with its sources ("error sending request: ...: connection refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        message = format!("{message}: {s}");
        src = s.source();
    }
    message
}
