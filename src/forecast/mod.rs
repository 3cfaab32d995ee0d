//! Forecasting a demand signal from its own history, and the rule that turns a forecast into replicas.
//!
//! Pure: no clock, no I/O. [`model`] fits MSTL (daily and weekly seasons, from the `augurs` crates) with an
//! AutoETS trend to a regularly sampled history and predicts the next horizon; [`rule`] is the scaling rule
//! (the max of forecast and current need, never in on the forecast alone, bounded by min/max);
//! [`plan`] applies both for one workload from a policy's `forecast:` block.

pub mod model;
pub mod plan;
pub mod query;
pub mod replay;
pub mod rule;

pub use model::{Forecast, History, NoForecast, forecast};
pub use plan::{Plan, plan, pod_ready_secs};
pub use rule::{Bounds, Decision, decide, need};
