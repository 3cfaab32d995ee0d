//! Limits that span every policy (pure): a cluster-wide disruption budget and a storm brake.
//!
//! A sweep sees every policy's intended actions before any is applied. When more than
//! `storm_fraction` of the watched workloads look faulty at once (a noisy node, a shared
//! dependency down), the cause is probably not in the workloads: every disruptive action is held
//! until it clears, as NodeHealthCheck's `minHealthy` does. A workload looks faulty when a fault
//! fires or is starting (its rule holds at the newest point, its hold not complete yet): faults
//! with one cause complete their holds seconds apart, and the first must not act alone. Otherwise at most
//! `max_per_minute` disruptive actions start in any sliding minute, as VPA's eviction rate limit.

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};

use super::{
    engine::{Intent, Opening},
    guards::Refusal,
};

/// The operator-wide limits (flags `--max-disruptions-per-minute`, `--storm-fraction`,
/// `--storm-min-faulty`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FleetLimits {
    /// Disruptive actions allowed to start in any sliding minute, across all policies.
    pub max_per_minute: u32,
    /// Share of watched workloads that may be faulty at once before every action is held.
    pub storm_fraction: f64,
    /// The storm brake needs at least this many faulty workloads (small fleets are not storms).
    pub storm_min_faulty: usize,
}

impl Default for FleetLimits {
    /// 10 actions a minute; a storm is more than 30 % of workloads faulty, 5 at least.
    fn default() -> Self {
        Self {
            max_per_minute: 10,
            storm_fraction: 0.3,
            storm_min_faulty: 5,
        }
    }
}

/// Disruptive actions granted recently (kept by the sweep loop between sweeps).
#[derive(Clone, Debug, Default)]
pub struct FleetState {
    granted: VecDeque<Timestamp>,
}

/// Whether the workload-wide picture is a storm.
pub fn storm(limits: &FleetLimits, faulty: usize, watched: usize) -> Option<Refusal> {
    let share = faulty as f64 / watched.max(1) as f64;
    (faulty >= limits.storm_min_faulty && share > limits.storm_fraction).then(|| Refusal {
        reason: "StormBrake",
        message: format!(
            "{faulty} of {watched} watched workloads look faulty at once ({:.0} % > {:.0} %): \
             the cause is likely shared (a node, a dependency); every disruptive action is held \
             until it clears",
            share * 100.0,
            limits.storm_fraction * 100.0
        ),
    })
}

/// This replica's part of the limits when policies are sharded over replicas: the disruption
/// budget in proportion to the shards held (rounded down, but at least one action a minute while
/// any is held), so the replicas together stay within it. The storm brake needs no share: each
/// replica judges the workloads of its shards, a sample spread by namespace.
pub fn share(limits: &FleetLimits, held: u32, shards: u32) -> FleetLimits {
    if shards <= 1 || held >= shards {
        return *limits;
    }
    let part = u64::from(limits.max_per_minute) * u64::from(held) / u64::from(shards.max(1));
    FleetLimits {
        max_per_minute: if held == 0 || limits.max_per_minute == 0 {
            0
        } else {
            (part as u32).max(1)
        },
        ..*limits
    }
}

/// Whether an intent would disrupt the workload now (execute an action that changes it).
pub fn disrupts(intent: &Intent) -> bool {
    match intent {
        Intent::Open(o) => o.act && o.spec.action.type_.mutates(),
        Intent::Advance(a) => a.act,
        Intent::Idle | Intent::Hold { .. } => false,
    }
}

/// Holds the disruptive intents that the storm brake or the budget refuses, in order (the first
/// ones get the budget). Returns, per intent, the refusal that held it.
pub fn gate(
    intents: &mut [Intent],
    limits: &FleetLimits,
    state: &mut FleetState,
    storm: Option<&Refusal>,
    now: Timestamp,
) -> Vec<Option<Refusal>> {
    let minute_ago = now - SignedDuration::from_secs(60);
    while state.granted.front().is_some_and(|t| *t <= minute_ago) {
        state.granted.pop_front();
    }
    intents
        .iter_mut()
        .map(|intent| {
            if !disrupts(intent) {
                return None;
            }
            let refusal = match storm {
                Some(r) => r.clone(),
                None if (state.granted.len() as u32) < limits.max_per_minute => {
                    state.granted.push_back(now);
                    return None;
                }
                None => Refusal {
                    reason: "ClusterBudget",
                    message: format!(
                        "{} disruptive actions started in the last minute across all policies; \
                         the operator allows {} (--max-disruptions-per-minute)",
                        state.granted.len(),
                        limits.max_per_minute
                    ),
                },
            };
            hold(intent, &refusal);
            Some(refusal)
        })
        .collect()
}

/// Turns a disruptive intent into one that does nothing now: an incident is not opened; an open
/// one keeps its status (a newly planned attempt is dropped, a pending one waits).
fn hold(intent: &mut Intent, refusal: &Refusal) {
    match intent {
        Intent::Open(o) => {
            let Opening { spec, .. } = o.as_ref();
            *intent = Intent::Hold {
                fault: spec.fault.clone(),
                refusal: refusal.clone(),
            };
        }
        Intent::Advance(a) => {
            if a.status.attempts.len() > a.before.attempts.len() {
                a.status = a.before.clone();
            }
            a.act = false;
        }
        Intent::Idle | Intent::Hold { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_by_shards_held() {
        let l = FleetLimits::default();
        assert_eq!(share(&l, 1, 1).max_per_minute, 10);
        assert_eq!(share(&l, 4, 4).max_per_minute, 10);
        assert_eq!(share(&l, 2, 4).max_per_minute, 5);
        // 3 + 1 of 4 shards: 7 + 2 ≤ 10.
        assert_eq!(share(&l, 3, 4).max_per_minute, 7);
        assert_eq!(share(&l, 1, 4).max_per_minute, 2);
        assert_eq!(share(&l, 0, 4).max_per_minute, 0);
        assert_eq!(share(&l, 1, 16).max_per_minute, 1);
        let none = FleetLimits {
            max_per_minute: 0,
            ..l
        };
        assert_eq!(share(&none, 1, 4).max_per_minute, 0);
    }
    use crate::{
        remediation::engine::Advancing,
        v1alpha1::{
            ActionSpec, ActionType, Attempt, AttemptResult, Pattern, RemediationSpec,
            RemediationStatus, TargetRef, WorkloadKind,
        },
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("valid")
    }

    fn open(n: usize) -> Intent {
        Intent::Open(Box::new(Opening {
            name: format!("w{n}-runaway-1"),
            seq: 1,
            spec: RemediationSpec {
                policy_ref: format!("w{n}"),
                target: TargetRef {
                    kind: WorkloadKind::Deployment,
                    name: format!("w{n}"),
                },
                fault: "runaway".into(),
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
            status: RemediationStatus::default(),
            act: true,
        }))
    }

    fn retry() -> Intent {
        let attempt = Attempt {
            number: 1,
            action: ActionType::RestartPod,
            started_at: Time(at(0)),
            applied_at: None,
            result: AttemptResult::Pending,
            message: String::new(),
            pods: vec![],
            from_replicas: None,
            to_replicas: None,
            restarted_at: None,
            through_hpa: None,
            resize: None,
        };
        Intent::Advance(Box::new(Advancing {
            name: "w-runaway-1".into(),
            before: RemediationStatus::default(),
            status: RemediationStatus {
                attempts: vec![attempt],
                ..RemediationStatus::default()
            },
            act: true,
        }))
    }

    #[test]
    fn the_budget_spans_policies_and_slides() {
        let limits = FleetLimits {
            max_per_minute: 3,
            ..FleetLimits::default()
        };
        let mut state = FleetState::default();
        let mut intents: Vec<Intent> = (0..20).map(open).collect();
        let held = gate(&mut intents, &limits, &mut state, None, at(0));
        assert_eq!(held.iter().filter(|h| h.is_none()).count(), 3);
        assert!(intents[3..].iter().all(
            |i| matches!(i, Intent::Hold { refusal, .. } if refusal.reason == "ClusterBudget")
        ));
        let mut more = vec![open(1), retry()];
        let held = gate(&mut more, &limits, &mut state, None, at(30));
        assert!(held.iter().all(Option::is_some), "still within the minute");
        match &more[1] {
            Intent::Advance(a) => {
                assert!(!a.act);
                assert!(
                    a.status.attempts.is_empty(),
                    "the planned attempt is dropped"
                );
            }
            other => panic!("{other:?}"),
        }
        let mut later = vec![open(2)];
        assert!(gate(&mut later, &limits, &mut state, None, at(61))[0].is_none());
    }

    #[test]
    fn a_storm_holds_everything_and_small_fleets_are_no_storm() {
        let limits = FleetLimits::default();
        assert!(storm(&limits, 20, 40).is_some(), "20 of 40 sick at once");
        assert!(
            storm(&limits, 3, 4).is_none(),
            "fewer than 5 faulty: not a storm"
        );
        assert!(storm(&limits, 5, 100).is_none(), "5 % is not a storm");
        let s = storm(&limits, 20, 40);
        let mut intents: Vec<Intent> = (0..20).map(open).collect();
        let held = gate(
            &mut intents,
            &limits,
            &mut FleetState::default(),
            s.as_ref(),
            at(0),
        );
        assert!(
            held.iter()
                .all(|h| h.as_ref().is_some_and(|r| r.reason == "StormBrake"))
        );
    }
}
