//! Incidents: the engine that decides (pure), the lifecycle state machine (pure), the guards (pure)
//! and the actions (apiserver edge).

pub mod actions;
pub mod engine;
pub mod fleet;
pub mod guards;
pub mod lifecycle;
pub mod memory;
pub mod owners;
pub mod resize;
pub mod shadow;
