//! Reading Prometheus: an HTTP API client, typed series, and safe PromQL templating.

mod client;
mod series;
pub mod template;

pub use client::{Auth, ClientConfig, DEFAULT_MAX_BODY, PromClient, PromError};
pub use series::{Point, Series};
