//! Series as returned by range and instant queries.

use std::collections::BTreeMap;

/// One sample: unix time in seconds and value (NaN and infinities are kept as Prometheus sends them).
pub type Point = (f64, f64);

/// A labelled time series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// The series' labels (may include `__name__`).
    pub labels: BTreeMap<String, String>,
    /// Samples in time order.
    pub points: Vec<Point>,
}

impl Series {
    /// A label's value, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The newest sample.
    pub fn last(&self) -> Option<Point> {
        self.points.last().copied()
    }

    /// Whether the newest sample is at or after `cutoff` (unix seconds); an empty series is never fresh.
    pub fn is_fresh(&self, cutoff: f64) -> bool {
        self.last().is_some_and(|(t, _)| t >= cutoff)
    }
}
