//! The conditions of a `Remediation` as kstatus (Flux, Argo CD, `kubectl wait`) reads them: an
//! open incident is InProgress (Reconciling=True), a good end is Current (Ready=True) and a bad
//! end is Failed (Stalled=True, Ready=False). Pure: the caller writes the result with the status.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::{
    bounded,
    conditions::{self, READY, RECONCILING, STALLED},
    v1alpha1::Phase,
};

/// What kstatus makes of a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Work is going on: `Reconciling=True`.
    InProgress,
    /// Done and well: `Ready=True`.
    Current,
    /// Done and not well: `Stalled=True`, `Ready=False`.
    Failed,
}

/// The kstatus reading of a phase. A dry run is a complete record of a decision, and an incident
/// halted by the kill switch was stopped on purpose: both Current.
pub fn health(phase: Phase) -> Health {
    match phase {
        Phase::Detected | Phase::Acting | Phase::Verifying | Phase::Shadow => Health::InProgress,
        Phase::Succeeded | Phase::DryRun | Phase::Halted | Phase::Shadowed => Health::Current,
        Phase::Failed | Phase::Escalated => Health::Failed,
    }
}

/// Sets Ready, Reconciling and Stalled on a Remediation's conditions for `phase`, with the phase
/// as reason and `message` (bounded to one line of [`bounded::MESSAGE_MAX`] bytes). Other
/// condition types are kept; `lastTransitionTime` moves only when a status changes.
pub fn remediation_conditions(
    conds: &mut Vec<Condition>,
    phase: Phase,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let message = bounded::message(message);
    let reason = phase.as_str();
    let (ready, reconciling, stalled) = match health(phase) {
        Health::InProgress => (false, true, false),
        Health::Current => (true, false, false),
        Health::Failed => (false, false, true),
    };
    let ready_reason = if health(phase) == Health::InProgress {
        "Progressing"
    } else {
        reason
    };
    conditions::set(
        conds,
        READY,
        ready,
        ready_reason,
        message.clone(),
        generation,
        now,
    );
    conditions::set(
        conds,
        RECONCILING,
        reconciling,
        reason,
        if reconciling {
            message.clone()
        } else {
            String::new()
        },
        generation,
        now,
    );
    conditions::set(
        conds,
        STALLED,
        stalled,
        reason,
        if stalled { message } else { String::new() },
        generation,
        now,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn get<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|c| c.type_ == t).expect(t)
    }

    fn statuses(c: &[Condition]) -> (String, String, String) {
        (
            get(c, READY).status.clone(),
            get(c, RECONCILING).status.clone(),
            get(c, STALLED).status.clone(),
        )
    }

    #[test]
    fn every_phase_maps_to_the_kstatus_reading() {
        let now = Timestamp::from_second(1_000).expect("valid");
        let t = |s: &str| s.to_string();
        for (phase, want) in [
            (Phase::Detected, (t("False"), t("True"), t("False"))),
            (Phase::Acting, (t("False"), t("True"), t("False"))),
            (Phase::Verifying, (t("False"), t("True"), t("False"))),
            (Phase::Succeeded, (t("True"), t("False"), t("False"))),
            (Phase::DryRun, (t("True"), t("False"), t("False"))),
            (Phase::Halted, (t("True"), t("False"), t("False"))),
            (Phase::Escalated, (t("False"), t("False"), t("True"))),
            (Phase::Failed, (t("False"), t("False"), t("True"))),
        ] {
            let mut c = vec![];
            remediation_conditions(&mut c, phase, "m", Some(1), now);
            assert_eq!(statuses(&c), want, "{phase:?}");
            assert_eq!(c.len(), 3);
            let stalled = get(&c, STALLED);
            if stalled.status == "True" {
                assert_eq!(stalled.reason, phase.as_str());
                assert_eq!(stalled.message, "m");
            }
            assert!(
                c.iter().all(|c| c.observed_generation == Some(1)),
                "{phase:?}"
            );
        }
    }

    #[test]
    fn an_incident_moving_on_keeps_transition_times_honest() {
        let t0 = Timestamp::from_second(1_000).expect("valid");
        let t1 = Timestamp::from_second(2_000).expect("valid");
        let t2 = Timestamp::from_second(3_000).expect("valid");
        let mut c = vec![];
        remediation_conditions(&mut c, Phase::Acting, "evicting web-1", Some(1), t0);
        remediation_conditions(&mut c, Phase::Verifying, "waiting", Some(1), t1);
        // Still in progress: Reconciling did not transition.
        assert_eq!(get(&c, RECONCILING).last_transition_time, Time(t0));
        assert_eq!(get(&c, RECONCILING).reason, "Verifying");
        remediation_conditions(&mut c, Phase::Escalated, &"x\n".repeat(5000), Some(1), t2);
        assert_eq!(get(&c, RECONCILING).last_transition_time, Time(t2));
        assert_eq!(get(&c, STALLED).last_transition_time, Time(t2));
        assert_eq!(get(&c, READY).last_transition_time, Time(t0));
        assert!(get(&c, STALLED).message.len() <= bounded::MESSAGE_MAX);
        assert!(!get(&c, STALLED).message.contains('\n'));
    }

    #[test]
    fn other_conditions_are_kept() {
        let now = Timestamp::from_second(1_000).expect("valid");
        let mut c = vec![];
        conditions::set(&mut c, "Custom", true, "Why", "kept", None, now);
        remediation_conditions(&mut c, Phase::Succeeded, "clear for 2m", None, now);
        assert_eq!(c.len(), 4);
        assert!(conditions::is_true(&c, "Custom"));
        assert!(conditions::is_true(&c, READY));
    }
}
