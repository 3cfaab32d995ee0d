//! homeostat: a Kubernetes operator that reads Prometheus, classifies what is wrong with a workload,
//! heals it, verifies the recovery and keeps an audit trail of every incident.

pub mod api;
pub mod backtest;
pub mod bounded;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod diagnose;
pub mod diagnosis;
pub mod egress;
pub mod failpoint;
pub mod forecast;
pub mod heap;
pub mod kstatus;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod prometheus;
pub mod remediation;
pub mod server;
pub mod telemetry;

pub use api::v1alpha1;

/// Everything that can fail in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An apiserver call failed.
    #[error("Kubernetes API: {}", kube_message(.0))]
    Kube(#[from] kube::Error),
    /// An object lacks something the apiserver always sets (namespace, name).
    #[error("malformed object: {0}")]
    Malformed(String),
    /// Serialising a status failed.
    #[error("serialising: {0}")]
    Serde(#[from] serde_json::Error),
}

impl Error {
    /// A bounded category, used as a metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Malformed(_) => "malformed",
            Self::Serde(_) => "serde",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One line about a Kubernetes API error: the apiserver's own message and code when there is one.
pub fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} (HTTP {} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}
