//! Which Prometheus a policy reads, with its credentials from a Secret.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::{
    prometheus::{Auth, ClientConfig, PromClient},
    v1alpha1::PrometheusSource,
};

/// Builds the client for a policy's `spec.prometheus`, or returns the operator default.
pub async fn client_for(
    client: &Client,
    ns: &str,
    source: Option<&PrometheusSource>,
    default: Option<&PromClient>,
    default_timeout: Duration,
) -> Result<PromClient, String> {
    let Some(src) = source else {
        return default.cloned().ok_or_else(|| {
            "the policy sets no spec.prometheus.url and the operator has no --prometheus-url"
                .to_string()
        });
    };
    let mut cfg = ClientConfig::new(src.url.clone());
    cfg.timeout = src.timeout.map_or(default_timeout, |t| t.get());
    if let Some(secret_ref) = &src.auth_secret_ref {
        let secret = Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(&secret_ref.name)
            .await
            .map_err(|e| format!("reading Secret {ns}/{}: {e}", secret_ref.name))?
            .ok_or_else(|| {
                format!(
                    "Secret {ns}/{} named in spec.prometheus.authSecretRef does not exist",
                    secret_ref.name
                )
            })?;
        let data = secret.data.unwrap_or_default();
        let get = |k: &str| {
            data.get(k)
                .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        };
        cfg.auth = match (get("token"), get("username"), get("password")) {
            (Some(t), _, _) => Auth::Bearer(t),
            (None, Some(u), Some(p)) => Auth::Basic {
                username: u,
                password: p,
            },
            _ => Auth::None,
        };
        cfg.ca_pem = data.get("ca.crt").map(|b| b.0.clone());
    }
    PromClient::new(cfg).map_err(|e| e.to_string())
}
