//! kstatus-style conditions (Ready, Reconciling, Stalled), merged so that `lastTransitionTime`
//! moves only on a real transition.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The policy is evaluating normally.
pub const READY: &str = "Ready";
/// Work is in progress (an incident is open).
pub const RECONCILING: &str = "Reconciling";
/// Progress is impossible until the spec or the world changes.
pub const STALLED: &str = "Stalled";
/// The policy's signals can be read and have data for its targets. A transient data problem is
/// reported here (Ready stays True); one that lasts turns into Stalled.
pub const DATA_AVAILABLE: &str = "DataAvailable";

/// Condition reasons homeostat sets (CamelCase, as Kubernetes conventions ask).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Evaluating normally.
    Evaluating,
    /// `guards.suspend` is set.
    Suspended,
    /// `guards.dryRun` is set.
    DryRun,
    /// `mode: Shadow`: decisions are recorded and scored, nothing is changed.
    Shadow,
    /// A selector matches no workload.
    NoMatchingWorkloads,
    /// The spec fails a check the schema cannot express.
    InvalidSpec,
    /// The object cannot be decoded by this operator version.
    Undecodable,
    /// `targetRef` names no existing workload.
    TargetNotFound,
    /// `spec.prometheus` cannot be used (Secret missing, URL refused, bad CA).
    PrometheusConfig,
    /// Prometheus cannot be reached.
    PrometheusUnreachable,
    /// Prometheus did not answer in time.
    PrometheusTimeout,
    /// Prometheus refused a query.
    QueryRejected,
    /// Prometheus answered an HTTP error.
    PrometheusHttpError,
    /// Prometheus answered something that is not its API.
    PrometheusBadAnswer,
    /// The answer was incomplete (`isPartial`, warnings): read as no data.
    PrometheusPartialAnswer,
    /// A query template does not render.
    InvalidQueryTemplate,
    /// A firing fault's Scale is refused: it would fight the owner of `spec.replicas` (a KEDA
    /// ScaledObject, a GitOps tool, several autoscalers).
    ScaleRefused,
    /// Prometheus answered, but no signal has a series for the targets' pods.
    NoData,
    /// Series were found for the targets.
    SeriesFound,
    /// An incident is open.
    Remediating,
    /// No incident is open.
    Idle,
}

impl Reason {
    /// The reason as written in a condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evaluating => "Evaluating",
            Self::Suspended => "Suspended",
            Self::DryRun => "DryRun",
            Self::Shadow => "Shadow",
            Self::NoMatchingWorkloads => "NoMatchingWorkloads",
            Self::InvalidSpec => "InvalidSpec",
            Self::Undecodable => "Undecodable",
            Self::TargetNotFound => "TargetNotFound",
            Self::PrometheusConfig => "PrometheusConfig",
            Self::PrometheusUnreachable => "PrometheusUnreachable",
            Self::PrometheusTimeout => "PrometheusTimeout",
            Self::QueryRejected => "QueryRejected",
            Self::PrometheusHttpError => "PrometheusHTTPError",
            Self::PrometheusBadAnswer => "PrometheusBadAnswer",
            Self::PrometheusPartialAnswer => "PrometheusPartialAnswer",
            Self::InvalidQueryTemplate => "InvalidQueryTemplate",
            Self::ScaleRefused => "ScaleRefused",
            Self::NoData => "NoData",
            Self::SeriesFound => "SeriesFound",
            Self::Remediating => "Remediating",
            Self::Idle => "Idle",
        }
    }

    /// The reason for a bounded error category (`PromError::category`, `FetchError::category`).
    pub fn from_category(c: &str) -> Self {
        match c {
            "PrometheusConfig" => Self::PrometheusConfig,
            "PrometheusUnreachable" => Self::PrometheusUnreachable,
            "PrometheusTimeout" => Self::PrometheusTimeout,
            "QueryRejected" => Self::QueryRejected,
            "PrometheusHTTPError" => Self::PrometheusHttpError,
            "PrometheusPartialAnswer" => Self::PrometheusPartialAnswer,
            "InvalidQueryTemplate" => Self::InvalidQueryTemplate,
            _ => Self::PrometheusBadAnswer,
        }
    }
}

/// Sets a condition, keeping `lastTransitionTime` when its status does not change.
pub fn set(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Time(now);
        }
        c.status = status;
        c.reason = reason.to_string();
        c.message = message;
        c.observed_generation = generation;
        return;
    }
    conds.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    });
}

/// Whether a condition is present with status True.
pub fn is_true(conds: &[Condition], type_: &str) -> bool {
    conds.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let t0 = Timestamp::from_second(1_000).expect("valid");
        let t1 = Timestamp::from_second(2_000).expect("valid");
        let mut c = vec![];
        set(&mut c, READY, true, "Evaluating", "ok", Some(1), t0);
        set(&mut c, READY, true, "Evaluating", "still ok", Some(2), t1);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(t0));
        assert_eq!(c[0].message, "still ok");
        set(
            &mut c,
            READY,
            false,
            "PrometheusUnreachable",
            "down",
            Some(2),
            t1,
        );
        assert_eq!(c[0].last_transition_time, Time(t1));
        assert!(!is_true(&c, READY));
    }

    #[test]
    fn reasons_round_trip_error_categories() {
        for c in [
            "PrometheusUnreachable",
            "QueryRejected",
            "PrometheusHTTPError",
            "PrometheusPartialAnswer",
        ] {
            assert_eq!(Reason::from_category(c).as_str(), c);
        }
    }
}
