//! Which Prometheus a policy reads, with its credentials from a Secret.
//!
//! A policy's `spec.prometheus.url` must match the operator's Prometheus allow-list (by default
//! only its own `--prometheus-url`); the check comes before the Secret named by `authSecretRef`
//! is read, so a policy author can neither make the operator send a token elsewhere nor make it
//! read a Secret for a URL it will not use.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::{
    egress::{AllowList, Refusal, UrlPrefix},
    prometheus::{Auth, ClientConfig, DEFAULT_MAX_BODY, PromClient, PromError},
    v1alpha1::PrometheusSource,
};

/// The operator's Prometheus settings that policies may use.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The operator-wide Prometheus (`--prometheus-url`).
    pub default: Option<PromClient>,
    /// URLs a policy's `spec.prometheus.url` may name.
    pub allow: AllowList,
    /// Timeout when a policy names none.
    pub timeout: Duration,
    /// Cap on one answer, bytes.
    pub max_body: usize,
}

impl Sources {
    /// The allow-list is the default Prometheus' URL (when there is one) plus `extra`.
    pub fn new(
        default: Option<PromClient>,
        extra: Vec<UrlPrefix>,
        timeout: Duration,
        max_body: usize,
    ) -> Self {
        let mut allow = AllowList::new("Prometheus", "--prometheus-allow", extra);
        if let Some(entry) = default
            .as_ref()
            .and_then(|d| UrlPrefix::parse(d.url()).ok())
        {
            allow.push(entry);
        }
        Self {
            default,
            allow,
            timeout,
            max_body,
        }
    }
}

/// Why a policy's Prometheus cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The policy names none and the operator has no default.
    #[error("the policy sets no spec.prometheus.url and the operator has no --prometheus-url")]
    NoPrometheus,
    /// `spec.prometheus.url` is outside the allow-list (or unusable); no Secret was read.
    #[error("spec.prometheus.url: {0}")]
    NotAllowed(#[from] Refusal),
    /// The Secret named by `authSecretRef` does not exist.
    #[error("Secret {namespace}/{name} named in spec.prometheus.authSecretRef does not exist")]
    SecretNotFound {
        /// The policy's namespace.
        namespace: String,
        /// The Secret.
        name: String,
    },
    /// The Secret could not be read (RBAC: the chart grants `get` on the Secrets it lists only).
    #[error("reading Secret {namespace}/{name} named in spec.prometheus.authSecretRef: {message}")]
    SecretUnreadable {
        /// The policy's namespace.
        namespace: String,
        /// The Secret.
        name: String,
        /// The apiserver's answer.
        message: String,
    },
    /// The client could not be built (bad CA in the Secret, ...).
    #[error(transparent)]
    Client(#[from] PromError),
}

impl SourceError {
    /// A bounded reason for a condition (and metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoPrometheus => "NoPrometheus",
            Self::NotAllowed(_) => "PrometheusURLNotAllowed",
            Self::SecretNotFound { .. } => "PrometheusSecretNotFound",
            Self::SecretUnreadable { .. } => "PrometheusSecretUnreadable",
            Self::Client(_) => "PrometheusConfig",
        }
    }

    /// Whether only a change of the policy (or of the operator's flags) helps: Stalled.
    /// A Secret that is missing or unreadable may appear later, so it is not.
    pub fn is_spec_error(&self) -> bool {
        matches!(
            self,
            Self::NoPrometheus | Self::NotAllowed(_) | Self::Client(_)
        )
    }
}

/// Checks a policy's `spec.prometheus` against the allow-list without any API call.
pub fn check_source(
    source: Option<&PrometheusSource>,
    sources: &Sources,
) -> Result<(), SourceError> {
    match source {
        None if sources.default.is_none() => Err(SourceError::NoPrometheus),
        None => Ok(()),
        Some(src) => sources
            .allow
            .check(&src.url)
            .map(|_| ())
            .map_err(Into::into),
    }
}

/// Builds the client for a policy's `spec.prometheus`, or returns the operator default.
/// The URL is checked against `sources.allow` before the Secret is read.
pub async fn client_for_policy(
    client: &Client,
    ns: &str,
    source: Option<&PrometheusSource>,
    sources: &Sources,
) -> Result<PromClient, SourceError> {
    let Some(src) = source else {
        return sources.default.clone().ok_or(SourceError::NoPrometheus);
    };
    let checked = sources.allow.check(&src.url)?;
    let mut cfg = ClientConfig::new(checked.url.as_str());
    cfg.timeout = src.timeout.map_or(sources.timeout, |t| t.get());
    cfg.max_body = sources.max_body;
    if let Some(secret_ref) = &src.auth_secret_ref {
        let secret = Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(&secret_ref.name)
            .await
            .map_err(|e| SourceError::SecretUnreadable {
                namespace: ns.to_string(),
                name: secret_ref.name.clone(),
                message: crate::kube_message(&e),
            })?
            .ok_or_else(|| SourceError::SecretNotFound {
                namespace: ns.to_string(),
                name: secret_ref.name.clone(),
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
    Ok(PromClient::new(cfg)?)
}

/// [`client_for_policy`] with the safe default allow-list: only `default`'s own URL.
pub async fn client_for(
    client: &Client,
    ns: &str,
    source: Option<&PrometheusSource>,
    default: Option<&PromClient>,
    default_timeout: Duration,
) -> Result<PromClient, String> {
    let sources = Sources::new(default.cloned(), vec![], default_timeout, DEFAULT_MAX_BODY);
    client_for_policy(client, ns, source, &sources)
        .await
        .map_err(|e| e.to_string())
}
