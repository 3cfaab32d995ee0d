//! homeostat-simulator: a fake cAdvisor + kube-state-metrics exporter for the
//! homeostat end-to-end tests. It watches the (kwok-run, so idle) pods of
//! Deployments annotated with `homeostat.dev/scenario` and exports the CPU,
//! throttling, memory and restart series those pods would show if they really
//! suffered the scenario's fault, reacting to what the operator does.

pub mod cluster;
pub mod engine;
pub mod exporter;
pub mod quantity;
pub mod scenario;
