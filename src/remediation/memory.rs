//! Effectiveness memory, pure: which rung of a fault's ladder to use, from how that action's past
//! incidents on the same workload ended.
//!
//! Nothing is stored but the Remediations themselves: an incident *failed* its action when it
//! ended `Failed` (the action was refused for good) or `Escalated` after the action ran (at least
//! one attempt `Applied`: the fault outlived every attempt, or a retry was refused). Dry-run and
//! shadow incidents never count. An action with `guards.skipAfterFailures` such incidents of one
//! fault within `guards.failureWindow` is skipped for the next rung (`faults[].fallbacks`); when
//! every rung is skipped the incident escalates. Retention keeps what the window reads
//! (`controller::retention::lookback`), so the memory survives restarts, failovers and pruning.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    diagnosis::action_for,
    v1alpha1::{
        ActionSpec, ActionType, AttemptResult, FaultSpec, GuardSpec, Phase, Remediation,
        RemediationPolicySpec, SkippedAction,
    },
};

/// Failed incidents named per skipped action at most.
const MAX_NAMED: usize = 5;

/// A fault's ladder: its action, then its fallbacks.
pub fn ladder(fault: &FaultSpec) -> Vec<ActionSpec> {
    std::iter::once(action_for(fault))
        .chain(fault.fallbacks.iter().cloned())
        .collect()
}

/// Whether an incident that ended failed the action it used (see the module comment).
pub fn failed(r: &Remediation) -> bool {
    if r.spec.shadow || r.spec.dry_run {
        return false;
    }
    r.status.as_ref().is_some_and(|s| match s.phase {
        Phase::Failed => true,
        Phase::Escalated => s
            .attempts
            .iter()
            .any(|a| a.result == AttemptResult::Applied),
        _ => false,
    })
}

/// When an incident ended (or, without an end on record, opened).
fn ended(r: &Remediation) -> Option<Timestamp> {
    r.status
        .as_ref()
        .and_then(|s| s.finished_at.as_ref())
        .or(r.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// What the memory says about `action` for `fault`: `Some` when it is to be skipped now.
fn judge(
    guards: &GuardSpec,
    history: &[Remediation],
    fault: &str,
    action: ActionType,
    now: Timestamp,
) -> Option<SkippedAction> {
    if guards.skip_after_failures == 0 {
        return None;
    }
    let window =
        SignedDuration::try_from(guards.failure_window.get()).unwrap_or(SignedDuration::MAX);
    let mut hits: Vec<(Timestamp, &Remediation)> = history
        .iter()
        .filter(|r| r.spec.fault == fault && r.spec.action.type_ == action && failed(r))
        .filter_map(|r| Some((ended(r)?, r)))
        .filter(|(t, _)| now.duration_since(*t) < window)
        .collect();
    if (hits.len() as u32) < guards.skip_after_failures {
        return None;
    }
    hits.sort_by_key(|h| std::cmp::Reverse(h.0));
    // The action comes back once fewer than skipAfterFailures failures are left in the window.
    let until = hits
        .get(guards.skip_after_failures as usize - 1)
        .and_then(|(t, _)| t.checked_add(window).ok())
        .map(Time);
    Some(SkippedAction {
        fault: fault.to_string(),
        action,
        failures: hits.len() as u32,
        incidents: hits
            .iter()
            .take(MAX_NAMED)
            .map(|(_, r)| r.metadata.name.clone().unwrap_or_default())
            .collect(),
        until,
    })
}

/// The rung to use for `fault` now and the rungs skipped before it; `None` when every rung is
/// skipped (the incident escalates).
pub fn choose(
    fault: &FaultSpec,
    guards: &GuardSpec,
    history: &[Remediation],
    now: Timestamp,
) -> (Option<ActionSpec>, Vec<SkippedAction>) {
    let mut skipped = vec![];
    for rung in ladder(fault) {
        match judge(guards, history, &fault.name, rung.type_, now) {
            Some(s) => skipped.push(s),
            None => return (Some(rung), skipped),
        }
    }
    (None, skipped)
}

/// Every action the memory skips now on one workload, over the policy's faults (for the status).
pub fn skipping(
    spec: &RemediationPolicySpec,
    history: &[Remediation],
    now: Timestamp,
) -> Vec<SkippedAction> {
    spec.faults
        .iter()
        .flat_map(|f| {
            ladder(f)
                .into_iter()
                .filter_map(|a| judge(&spec.guards, history, &f.name, a.type_, now))
        })
        .collect()
}

/// One line for people: `RestartPod (2 failures within 24h: web-f-2, web-f-1)`.
pub fn describe(s: &SkippedAction, window: &crate::v1alpha1::Duration) -> String {
    format!(
        "{} ({} failed incident(s) within guards.failureWindow {window}: {})",
        s.action.as_str(),
        s.failures,
        s.incidents.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::{
        Attempt, Duration, Pattern, RemediationSpec, RemediationStatus, TargetRef, WorkloadKind,
    };

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid")
    }

    fn incident(
        name: &str,
        action: ActionType,
        phase: Phase,
        applied: bool,
        end: i64,
    ) -> Remediation {
        let mut r = Remediation::new(
            name,
            RemediationSpec {
                policy_ref: "p".into(),
                target: TargetRef {
                    kind: WorkloadKind::Deployment,
                    name: "web".into(),
                },
                fault: "f".into(),
                pattern: Pattern::Threshold,
                pods: vec![],
                action: ActionSpec {
                    type_: action,
                    scale: None,
                    resize: None,
                },
                evidence: vec![],
                dry_run: false,
                shadow: false,
                skipped: vec![],
            },
        );
        r.metadata.creation_timestamp = Some(Time(at(end - 60)));
        r.status = Some(RemediationStatus {
            phase,
            finished_at: Some(Time(at(end))),
            attempts: vec![Attempt {
                number: 1,
                action,
                started_at: Time(at(end - 60)),
                applied_at: applied.then(|| Time(at(end - 60))),
                result: if applied {
                    AttemptResult::Applied
                } else {
                    AttemptResult::Blocked
                },
                message: String::new(),
                pods: vec![],
                from_replicas: None,
                to_replicas: None,
                restarted_at: None,
                resize: None,
                through_hpa: None,
            }],
            ..RemediationStatus::default()
        });
        r
    }

    #[test]
    fn what_counts_as_a_failure() {
        let rr = ActionType::RolloutRestart;
        assert!(failed(&incident("a", rr, Phase::Escalated, true, 0)));
        assert!(failed(&incident("a", rr, Phase::Failed, false, 0)));
        // Escalated before the action ran (blocked too long, plan-time escalation): not its failure.
        assert!(!failed(&incident("a", rr, Phase::Escalated, false, 0)));
        assert!(!failed(&incident("a", rr, Phase::Succeeded, true, 0)));
        assert!(!failed(&incident("a", rr, Phase::Halted, true, 0)));
        let mut dry = incident("a", rr, Phase::Failed, false, 0);
        dry.spec.dry_run = true;
        assert!(!failed(&dry));
        let mut shadow = incident("a", rr, Phase::Failed, false, 0);
        shadow.spec.shadow = true;
        assert!(!failed(&shadow));
    }

    #[test]
    fn the_window_and_the_count_bound_the_memory() {
        let g = GuardSpec {
            skip_after_failures: 2,
            failure_window: Duration::from_secs(3600),
            ..GuardSpec::default()
        };
        let rr = ActionType::RolloutRestart;
        let h = vec![
            incident("web-f-1", rr, Phase::Escalated, true, 0),
            incident("web-f-2", rr, Phase::Escalated, true, 600),
        ];
        let s = judge(&g, &h, "f", rr, at(700)).expect("skipped");
        assert_eq!((s.failures, s.incidents.len()), (2, 2));
        assert_eq!(s.incidents[0], "web-f-2", "newest first");
        // Back once the older failure leaves the window.
        assert_eq!(s.until, Some(Time(at(3600))));
        assert!(judge(&g, &h, "f", rr, at(3600)).is_none());
        // Another fault or action has its own memory; 0 disables.
        assert!(judge(&g, &h, "g", rr, at(700)).is_none());
        assert!(judge(&g, &h, "f", ActionType::Scale, at(700)).is_none());
        let off = GuardSpec {
            skip_after_failures: 0,
            ..g
        };
        assert!(judge(&off, &h, "f", rr, at(700)).is_none());
    }
}
