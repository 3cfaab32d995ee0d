//! Forecasting a demand signal from its own history, and the rule that turns a forecast into replicas.
//!
//! Pure: no clock, no I/O. [`model`] fits MSTL (daily and weekly seasons, from the `augurs` crates) with an
//! AutoETS trend to a regularly sampled history and predicts the next horizon; [`rule`] is the scaling rule
//! (the max of forecast and current need, never in on the forecast alone, bounded by min/max).

pub mod model;
pub mod rule;

pub use model::{Forecast, History, NoForecast, forecast};
pub use rule::{Bounds, Decision, decide, need};
