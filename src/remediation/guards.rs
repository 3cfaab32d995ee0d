//! Guards on opening an incident or taking another action, derived from the incidents on record.

use jiff::{SignedDuration, Timestamp};

use crate::v1alpha1::{AttemptResult, GuardSpec, Remediation};

/// Why nothing may be done now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// A bounded reason (condition reason, metric label).
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

/// When actions (or, in dry run and shadow mode, decisions) were taken for a target, newest last.
pub fn action_times(history: &[Remediation]) -> Vec<Timestamp> {
    let mut t: Vec<Timestamp> = history
        .iter()
        .filter_map(|r| r.status.as_ref())
        .flat_map(|s| s.attempts.iter())
        .filter_map(|a| match a.result {
            AttemptResult::Applied => a.applied_at.as_ref().map(|t| t.0),
            AttemptResult::DryRun | AttemptResult::Shadow => Some(a.started_at.0),
            _ => None,
        })
        .collect();
    t.sort();
    t
}

/// Whether a new incident may open for `fault` now. Suspend holds every incident; an action that
/// changes the cluster also needs the cooldown and the hourly budget; one that does not (Escalate,
/// None) opens once per cooldown, not once per evaluation.
pub fn may_open(
    guards: &GuardSpec,
    history: &[Remediation],
    fault: &str,
    mutates: bool,
    now: Timestamp,
) -> Result<(), Refusal> {
    if mutates {
        return may_act(guards, history, now);
    }
    if guards.suspend {
        return Err(suspended());
    }
    let cooldown = SignedDuration::try_from(guards.cooldown.get()).unwrap_or(SignedDuration::MAX);
    let recent = history.last().is_some_and(|r| {
        r.spec.fault == fault
            && r.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| now.duration_since(t.0) < cooldown)
    });
    if recent {
        return Err(Refusal {
            reason: "AlreadyEscalated",
            message: format!("{fault} already escalated within the cooldown"),
        });
    }
    Ok(())
}

fn suspended() -> Refusal {
    Refusal {
        reason: "Suspended",
        message: "spec.guards.suspend is true: evaluating only".into(),
    }
}

/// Whether a new incident may act now: suspend, cooldown and the hourly budget.
pub fn may_act(guards: &GuardSpec, history: &[Remediation], now: Timestamp) -> Result<(), Refusal> {
    if guards.suspend {
        return Err(suspended());
    }
    budget(guards, history, now)?;
    // Every incident counts, whatever its end: one that failed or escalated at plan time must not
    // reopen on the next evaluation (an incident storm).
    let last = action_times(history)
        .last()
        .copied()
        .max(last_opened(history));
    if let Some(last) = last.as_ref() {
        let cooldown =
            SignedDuration::try_from(guards.cooldown.get()).unwrap_or(SignedDuration::MAX);
        let since = now.duration_since(*last);
        if since < cooldown {
            return Err(Refusal {
                reason: "Cooldown",
                message: format!(
                    "last incident or action {}s ago; cooldown is {} ({}s left)",
                    since.as_secs(),
                    guards.cooldown,
                    (cooldown - since).as_secs()
                ),
            });
        }
    }
    Ok(())
}

/// When the newest incident on record was opened.
pub fn last_opened(history: &[Remediation]) -> Option<Timestamp> {
    history
        .iter()
        .filter_map(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .max()
}

/// Whether the hourly action budget allows one more action (also checked before a retry).
pub fn budget(guards: &GuardSpec, history: &[Remediation], now: Timestamp) -> Result<(), Refusal> {
    let hour_ago = now - SignedDuration::from_hours(1);
    let used = action_times(history)
        .iter()
        .filter(|t| **t > hour_ago)
        .count() as u32;
    if used >= guards.max_actions_per_hour {
        return Err(Refusal {
            reason: "ActionBudgetExhausted",
            message: format!(
                "{used} action(s) in the last hour; maxActionsPerHour is {}",
                guards.max_actions_per_hour
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::{
        ActionSpec, ActionType, Attempt, Duration, Pattern, RemediationSpec, RemediationStatus,
        TargetRef, WorkloadKind,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid")
    }

    fn incident(applied: &[i64], result: AttemptResult) -> Remediation {
        let mut r = Remediation::new(
            "r",
            RemediationSpec {
                policy_ref: "p".into(),
                target: TargetRef {
                    kind: WorkloadKind::Deployment,
                    name: "web".into(),
                },
                fault: "f".into(),
                pattern: Pattern::RunawayProcess,
                pods: vec![],
                action: ActionSpec {
                    type_: ActionType::RestartPod,
                    scale: None,
                    resize: None,
                },
                evidence: vec![],
                dry_run: false,
                shadow: false,
                skipped: vec![],
            },
        );
        r.status = Some(RemediationStatus {
            attempts: applied
                .iter()
                .map(|t| Attempt {
                    number: 1,
                    action: ActionType::RestartPod,
                    started_at: Time(at(*t)),
                    applied_at: Some(Time(at(*t))),
                    result,
                    message: String::new(),
                    pods: vec![],
                    from_replicas: None,
                    to_replicas: None,
                    restarted_at: None,
                    through_hpa: None,
                    resize: None,
                })
                .collect(),
            ..RemediationStatus::default()
        });
        r
    }

    fn guards() -> GuardSpec {
        GuardSpec {
            cooldown: Duration::from_secs(600),
            max_actions_per_hour: 2,
            ..GuardSpec::default()
        }
    }

    #[test]
    fn cooldown_counts_from_the_last_action() {
        let h = vec![incident(&[0], AttemptResult::Applied)];
        assert_eq!(
            may_act(&guards(), &h, at(300)).map_err(|r| r.reason),
            Err("Cooldown")
        );
        assert!(may_act(&guards(), &h, at(601)).is_ok());
    }

    #[test]
    fn budget_is_a_sliding_hour() {
        let h = vec![incident(&[0, 700], AttemptResult::Applied)];
        assert_eq!(
            may_act(&guards(), &h, at(1400)).map_err(|r| r.reason),
            Err("ActionBudgetExhausted")
        );
        assert!(may_act(&guards(), &h, at(3601)).is_ok());
    }

    #[test]
    fn every_incident_cools_down_whatever_its_end() {
        // Blocked or failed attempts are not actions, but the incident itself still counts:
        // otherwise an action that always fails reopens an incident every evaluation.
        let mut h = vec![incident(&[0, 10, 20], AttemptResult::Blocked)];
        h[0].metadata.creation_timestamp = Some(Time(at(0)));
        assert_eq!(
            may_act(&guards(), &h, at(30)).map_err(|r| r.reason),
            Err("Cooldown")
        );
        assert!(may_act(&guards(), &h, at(601)).is_ok());
        assert!(
            budget(&guards(), &h, at(30)).is_ok(),
            "refusals spend no budget"
        );
        let h = vec![incident(&[0], AttemptResult::DryRun)];
        assert_eq!(
            may_act(&guards(), &h, at(30)).map_err(|r| r.reason),
            Err("Cooldown")
        );
    }

    #[test]
    fn an_escalation_opens_once_per_cooldown_and_not_while_suspended() {
        let mut h = vec![incident(&[], AttemptResult::Applied)];
        h[0].spec.fault = "crashloop".into();
        h[0].metadata.creation_timestamp = Some(Time(at(0)));
        let open =
            |g: &GuardSpec, t| may_open(g, &h, "crashloop", false, at(t)).map_err(|r| r.reason);
        assert_eq!(open(&guards(), 300), Err("AlreadyEscalated"));
        assert_eq!(open(&guards(), 601), Ok(()));
        let g = GuardSpec {
            suspend: true,
            ..guards()
        };
        assert_eq!(open(&g, 601), Err("Suspended"));
        // Another fault is not held by this one's escalation.
        assert!(may_open(&guards(), &h, "other", false, at(300)).is_ok());
    }

    #[test]
    fn suspend_refuses() {
        let g = GuardSpec {
            suspend: true,
            ..guards()
        };
        assert_eq!(
            may_act(&g, &[], at(0)).map_err(|r| r.reason),
            Err("Suspended")
        );
    }
}
