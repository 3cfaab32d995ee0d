//! Incidents: the lifecycle state machine (pure), the guards (pure) and the actions (apiserver edge).

pub mod actions;
pub mod guards;
pub mod lifecycle;
