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
}
