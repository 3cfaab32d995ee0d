//! homeostat: a Kubernetes operator that reads Prometheus, classifies what is wrong with a workload,
//! heals it, verifies the recovery and keeps an audit trail of every incident.

pub mod api;
pub mod crd;

pub use api::v1alpha1;
pub mod diagnosis;
pub mod prometheus;
pub mod remediation;
