//! Table tests of the incident engine: observation in, intent out.

use std::collections::BTreeMap;

use super::*;
use crate::{
    diagnosis::{FaultVerdict, Verdict, fetch::FetchError},
    prometheus::PromError,
    remediation::owners,
    v1alpha1::{
        ActionSpec, ActionType, Attempt, Duration, FaultKind, Pattern, ScaleSpec, WorkloadKind,
    },
};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("valid")
}

fn target() -> TargetRef {
    TargetRef {
        kind: WorkloadKind::Deployment,
        name: "web".into(),
    }
}

fn policy(action: Option<ActionSpec>, pattern: Pattern) -> RemediationPolicySpec {
    let mut s: RemediationPolicySpec = serde_json::from_value(serde_json::json!({
        "targetRef": {"kind": "Deployment", "name": "web"},
        "faults": [{"name": "f", "pattern": "RunawayProcess", "for": "1m"}],
        "guards": {"cooldown": "10m", "maxActionsPerHour": 3, "maxUnavailable": 1},
        "verify": {"stableFor": "1m", "timeout": "5m", "maxAttempts": 2},
    }))
    .expect("valid spec");
    s.faults[0].pattern = pattern;
    s.faults[0].action = action;
    s
}

fn workload(replicas: i32, available: i32) -> Workload {
    Workload {
        target: target(),
        replicas,
        available,
        selector: None,
        restarted_at: None,
    }
}

fn pods() -> Vec<LivePod> {
    (0..3)
        .map(|i| LivePod {
            name: format!("web-{i}"),
            uid: format!("uid-{i}"),
            started_at: Some(0.0),
            containers: vec![],
            start_to_ready: None,
        })
        .collect()
}

fn verdict(kind: FaultKind, pods: &[&str]) -> Evaluated {
    Evaluated {
        verdicts: vec![FaultVerdict {
            fault: "f".into(),
            pattern: Pattern::RunawayProcess,
            verdict: Verdict {
                kind,
                pods: pods.iter().map(|p| p.to_string()).collect(),
                confidence: 1.0,
                evidence: vec![],
                message: format!("{kind:?}"),
                due: kind.is_fault(),
                due_in: None,
                held_for: 0.0,
                time_to_limit: None,
                onset: false,
            },
        }],
        queries: 2,
        fetch_error: None,
        no_data: false,
    }
}

fn blind() -> Evaluated {
    Evaluated {
        fetch_error: Some(std::sync::Arc::new(FetchError::Prometheus {
            signal: "cpu".into(),
            source: PromError::Config("down".into()),
        })),
        ..verdict(FaultKind::Inconclusive, &[])
    }
}

fn incident(phase: Phase, attempts: Vec<Attempt>, opened: i64) -> Remediation {
    let mut r = Remediation::new(
        "web-f-1",
        RemediationSpec {
            policy_ref: "web".into(),
            target: target(),
            fault: "f".into(),
            pattern: Pattern::RunawayProcess,
            pods: vec!["web-1".into()],
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
    r.metadata.creation_timestamp = Some(Time(at(opened)));
    r.metadata.labels = Some(BTreeMap::from([(SEQ_LABEL.to_string(), "1".to_string())]));
    r.status = Some(RemediationStatus {
        phase,
        attempt_count: attempts.len() as u32,
        attempts,
        deadline: Some(Time(at(opened + 300))),
        ..RemediationStatus::default()
    });
    r
}

fn attempt(result: AttemptResult, t: i64) -> Attempt {
    Attempt {
        number: 1,
        action: ActionType::RestartPod,
        started_at: Time(at(t)),
        applied_at: (result == AttemptResult::Applied).then(|| Time(at(t))),
        result,
        message: String::new(),
        pods: vec!["web-1/uid-1".into()],
        from_replicas: None,
        to_replicas: None,
        restarted_at: None,
        through_hpa: None,
        resize: None,
    }
}

fn scale(max: i32) -> Option<ActionSpec> {
    Some(ActionSpec {
        type_: ActionType::Scale,
        scale: Some(ScaleSpec {
            step: 1,
            min_replicas: None,
            max_replicas: max,
            forecast: None,
        }),
        resize: None,
    })
}

struct Case {
    name: &'static str,
    spec: RemediationPolicySpec,
    workload: Option<Workload>,
    owner: ReplicasOwner,
    history: Vec<Remediation>,
    ev: Evaluated,
    now: i64,
}

fn run(c: &Case) -> Intent {
    let pods = pods();
    decide(&Observed {
        policy: "web",
        spec: &c.spec,
        target: &target(),
        workload: c.workload.as_ref(),
        replicas_owner: &c.owner,
        pods: &pods,
        history: &c.history,
        evaluated: &c.ev,
        forecast: None,
        now: at(c.now),
    })
}

fn opened(i: Intent) -> Opening {
    match i {
        Intent::Open(o) => *o,
        other => panic!("expected Open, got {other:?}"),
    }
}

fn advanced(i: Intent) -> Advancing {
    match i {
        Intent::Advance(a) => *a,
        other => panic!("expected Advance, got {other:?}"),
    }
}

fn base(name: &'static str) -> Case {
    Case {
        name,
        spec: policy(None, Pattern::RunawayProcess),
        workload: Some(workload(3, 3)),
        owner: ReplicasOwner::None,
        history: vec![],
        ev: verdict(FaultKind::RunawayProcess, &["web-1"]),
        now: 1000,
    }
}

#[test]
fn nothing_to_do_when_healthy_blind_or_inconclusive() {
    for c in [
        Case {
            ev: verdict(FaultKind::Healthy, &[]),
            ..base("healthy")
        },
        Case {
            ev: verdict(FaultKind::Inconclusive, &[]),
            ..base("inconclusive")
        },
        Case {
            ev: blind(),
            ..base("prometheus down")
        },
    ] {
        assert_eq!(run(&c), Intent::Idle, "{}", c.name);
    }
}

#[test]
fn a_firing_fault_opens_an_incident_with_a_pending_attempt() {
    let o = opened(run(&base("runaway")));
    assert_eq!(o.name, "web-f-1");
    assert_eq!(o.seq, 1);
    assert!(o.act);
    assert_eq!(o.status.phase, Phase::Acting);
    let a = o.status.attempts.last().expect("an attempt");
    assert_eq!(a.result, AttemptResult::Pending);
    assert_eq!(a.pods, vec!["web-1/uid-1".to_string()]);
}

#[test]
fn guards_hold_an_incident() {
    let mut suspended = base("suspended");
    suspended.spec.guards.suspend = true;
    let mut cooling = base("cooldown");
    cooling.history = vec![incident(
        Phase::Succeeded,
        vec![attempt(AttemptResult::Applied, 900)],
        880,
    )];
    let mut budget = base("budget");
    budget.spec.guards.cooldown = Duration::from_secs(1);
    budget.spec.guards.max_actions_per_hour = 1;
    budget.history = cooling.history.clone();
    for (c, reason) in [
        (suspended, "Suspended"),
        (cooling, "Cooldown"),
        (budget, "ActionBudgetExhausted"),
    ] {
        match run(&c) {
            Intent::Hold { refusal, .. } => assert_eq!(refusal.reason, reason, "{}", c.name),
            other => panic!("{}: expected Hold, got {other:?}", c.name),
        }
    }
}

#[test]
fn plan_time_outcomes_are_decided_before_anything_is_saved() {
    let mut dry = base("dry run");
    dry.spec.guards.dry_run = true;
    let o = opened(run(&dry));
    assert_eq!((o.status.phase, o.act), (Phase::DryRun, false));

    let crash = Case {
        spec: policy(
            Some(ActionSpec {
                type_: ActionType::Escalate,
                scale: None,
                resize: None,
            }),
            Pattern::CrashLoop,
        ),
        ev: verdict(FaultKind::CrashLoop, &["web-1"]),
        ..base("crash loop")
    };
    let o = opened(run(&crash));
    assert_eq!((o.status.phase, o.act), (Phase::Escalated, false));
    assert!(o.status.attempts.is_empty());

    // Scale already at maxReplicas: backtest used to miss this (it never planned).
    let full = Case {
        spec: policy(scale(3), Pattern::ResourceContention),
        ev: verdict(FaultKind::ResourceContention, &[]),
        ..base("scale at max")
    };
    let o = opened(run(&full));
    assert_eq!((o.status.phase, o.act), (Phase::Escalated, false));
    assert!(
        o.status.message.contains("maxReplicas"),
        "{}",
        o.status.message
    );

    let room = Case {
        spec: policy(scale(5), Pattern::ResourceContention),
        ev: verdict(FaultKind::ResourceContention, &[]),
        ..base("scale with room")
    };
    let o = opened(run(&room));
    let a = o.status.attempts.last().expect("attempt");
    assert_eq!(
        (a.from_replicas, a.to_replicas, o.act),
        (Some(3), Some(4), true)
    );

    // maxUnavailable: one pod already down, so the eviction waits.
    let busy = Case {
        workload: Some(workload(3, 2)),
        ..base("max unavailable")
    };
    let o = opened(run(&busy));
    assert_eq!((o.status.phase, o.act), (Phase::Acting, false));
    assert!(o.status.attempts.is_empty());

    let gone = Case {
        workload: None,
        ..base("target gone")
    };
    let o = opened(run(&gone));
    assert!(!o.act);
    assert!(o.status.message.contains("not found"));
}

#[test]
fn open_incidents_are_verified_resumed_or_closed() {
    let verifying = || {
        vec![incident(
            Phase::Verifying,
            vec![attempt(AttemptResult::Applied, 900)],
            890,
        )]
    };
    // Clear long enough: succeeded.
    let mut c = Case {
        history: verifying(),
        ev: verdict(FaultKind::Healthy, &[]),
        ..base("clear")
    };
    if let Some(s) = c.history[0].status.as_mut() {
        s.clear_since = Some(Time(at(900)));
    }
    let a = advanced(run(&c));
    assert_eq!((a.status.phase, a.act), (Phase::Succeeded, false));

    // Still firing past the deadline: a second attempt is planned.
    let c = Case {
        history: verifying(),
        now: 1300,
        ..base("retry")
    };
    let a = advanced(run(&c));
    assert_eq!((a.status.phase, a.act), (Phase::Acting, true));
    assert_eq!(a.status.attempts.len(), 2);

    // ... unless the hourly budget is spent: escalated.
    let mut c = Case {
        history: verifying(),
        now: 1300,
        ..base("retry refused")
    };
    c.spec.guards.max_actions_per_hour = 1;
    let a = advanced(run(&c));
    assert_eq!(a.status.phase, Phase::Escalated);
    assert!(a.status.message.contains("retry refused"));

    // A Pending attempt (crash after the save) is executed again: execution checks first.
    let c = Case {
        history: vec![incident(
            Phase::Acting,
            vec![attempt(AttemptResult::Pending, 990)],
            990,
        )],
        ..base("resume pending")
    };
    assert!(advanced(run(&c)).act);

    // A Blocked attempt runs again only while the fault fires on fresh data.
    let blocked = || {
        vec![incident(
            Phase::Acting,
            vec![attempt(AttemptResult::Blocked, 990)],
            990,
        )]
    };
    let c = Case {
        history: blocked(),
        ..base("blocked, firing")
    };
    assert!(advanced(run(&c)).act);
    let c = Case {
        history: blocked(),
        ev: verdict(FaultKind::Healthy, &[]),
        ..base("blocked, cleared")
    };
    let a = advanced(run(&c));
    assert_eq!((a.status.phase, a.act), (Phase::Succeeded, false));
    let c = Case {
        history: blocked(),
        ev: blind(),
        ..base("blocked, blind")
    };
    let a = advanced(run(&c));
    assert_eq!((a.status.phase, a.act), (Phase::Acting, false));

    // The fault was removed from the policy: closed.
    let mut c = Case {
        history: verifying(),
        ..base("fault removed")
    };
    c.ev.verdicts[0].fault = "other".into();
    let a = advanced(run(&c));
    assert_eq!(a.status.phase, Phase::Escalated);
}

#[test]
fn incident_names_are_deterministic_and_dns_safe() {
    let t = target();
    assert_eq!(incident_name("web", &t, "runaway", 3), "web-runaway-3");
    assert_eq!(incident_name("team.a", &t, "leak", 1), "team-a-web-leak-1");
    let long = "x".repeat(300);
    let n = incident_name(&long, &t, &long, 7);
    assert!(n.len() <= 253, "{}", n.len());
    assert!(
        n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    );
    // The sequence follows the label, not the count of what is left.
    let h = vec![incident(Phase::Succeeded, vec![], 0)];
    let mut c = base("seq");
    c.history = h;
    c.spec.guards.cooldown = Duration::from_secs(1);
    let o = opened(run(&c));
    assert_eq!(o.seq, 2);
    assert_eq!(o.name, "web-f-2");
}

#[test]
fn the_kill_switch_halts_an_open_incident_at_its_next_step() {
    for (suspend, dry_run) in [(true, false), (false, true)] {
        let mut c = Case {
            history: vec![incident(
                Phase::Acting,
                vec![attempt(AttemptResult::Blocked, 990)],
                990,
            )],
            ..base("kill switch")
        };
        c.spec.guards.suspend = suspend;
        c.spec.guards.dry_run = dry_run;
        let a = advanced(run(&c));
        assert_eq!((a.status.phase, a.act), (Phase::Halted, false));
        assert!(a.status.message.contains("halted"), "{}", a.status.message);
    }
}

#[test]
fn acting_has_a_deadline() {
    // Blocked by a PodDisruptionBudget since t=0; verify.timeout is 5m.
    let c = Case {
        history: vec![incident(
            Phase::Acting,
            vec![attempt(AttemptResult::Blocked, 0)],
            0,
        )],
        now: 301,
        ..base("blocked too long")
    };
    let a = advanced(run(&c));
    assert_eq!((a.status.phase, a.act), (Phase::Escalated, false));
    assert!(
        a.status.message.contains("could not act"),
        "{}",
        a.status.message
    );
    let c = Case {
        history: vec![incident(
            Phase::Acting,
            vec![attempt(AttemptResult::Blocked, 0)],
            0,
        )],
        now: 200,
        ..base("blocked, within the deadline")
    };
    assert!(advanced(run(&c)).act);
}

#[test]
fn a_relapse_within_the_window_escalates_instead_of_repeating() {
    let mut done = incident(
        Phase::Succeeded,
        vec![attempt(AttemptResult::Applied, 0)],
        0,
    );
    if let Some(s) = done.status.as_mut() {
        s.finished_at = Some(Time(at(120)));
    }
    let mut c = Case {
        history: vec![done.clone()],
        now: 900,
        ..base("relapse")
    };
    c.spec.guards.cooldown = Duration::from_secs(60);
    let o = opened(run(&c));
    assert_eq!((o.status.phase, o.act), (Phase::Escalated, false));
    assert!(o.status.message.contains("relapse"), "{}", o.status.message);
    // Past the window (30m by default) it is a new fault, fixed as usual.
    c.now = 120 + 1801;
    assert!(opened(run(&c)).act);
}

fn hpa_owner(min: Option<i32>, max: i32, gitops: Option<&str>) -> ReplicasOwner {
    ReplicasOwner::Hpa(owners::Hpa {
        name: "web".into(),
        min_replicas: min,
        max_replicas: max,
        min_owned_by: gitops.map(Into::into),
    })
}

#[test]
fn scale_acts_through_the_owner_of_the_replicas_or_is_refused() {
    let contention = |name, owner| Case {
        spec: policy(scale(6), Pattern::ResourceContention),
        ev: verdict(FaultKind::ResourceContention, &[]),
        owner,
        ..base(name)
    };
    // Expected: Ok(Some((from min, to min))) through an HPA, Ok(None) directly, Err(reason).
    type Want = Result<Option<(Option<i32>, i32)>, &'static str>;
    let cases: Vec<(Case, Want)> = vec![
        (contention("no owner", ReplicasOwner::None), Ok(None)),
        (
            contention("HPA", hpa_owner(Some(2), 10, None)),
            Ok(Some((Some(2), 4))),
        ),
        (
            contention("HPA without minReplicas", hpa_owner(None, 10, None)),
            Ok(Some((None, 4))),
        ),
        (
            contention(
                "HPA whose minReplicas Argo CD owns",
                hpa_owner(Some(2), 10, Some("field manager argocd-controller")),
            ),
            Err(owners::OWNED_BY_GITOPS),
        ),
        (
            contention("KEDA", ReplicasOwner::Keda("web".into())),
            Err(owners::OWNED_BY_KEDA),
        ),
        (
            contention(
                "Flux owns spec.replicas",
                ReplicasOwner::GitOps("field manager kustomize-controller".into()),
            ),
            Err(owners::OWNED_BY_GITOPS),
        ),
        (
            contention(
                "two HPAs",
                ReplicasOwner::Several(vec!["HPA a".into(), "HPA b".into()]),
            ),
            Err(owners::SEVERAL_AUTOSCALERS),
        ),
    ];
    for (c, want) in cases {
        match (run(&c), want) {
            (Intent::Open(o), Ok(via)) => {
                assert!(o.act, "{}", c.name);
                let a = o.status.attempts.last().expect("attempt");
                assert_eq!(
                    a.through_hpa
                        .as_ref()
                        .map(|h| (h.from_min_replicas, h.to_min_replicas)),
                    via,
                    "{}",
                    c.name
                );
                assert_eq!(a.to_replicas, Some(4), "{}", c.name);
            }
            (Intent::Hold { refusal, .. }, Err(reason)) => {
                assert_eq!(refusal.reason, reason, "{}", c.name);
                assert!(owners::is_owner_refusal(refusal.reason));
            }
            (got, want) => panic!("{}: got {got:?}, want {want:?}", c.name),
        }
    }

    // The owner of spec.replicas does not matter to an action that leaves them alone.
    let c = Case {
        owner: ReplicasOwner::GitOps("field manager kustomize-controller".into()),
        ..base("eviction under GitOps")
    };
    assert!(opened(run(&c)).act);

    // In dry run the decision is recorded, through the HPA.
    let mut c = contention("dry run", hpa_owner(Some(2), 10, None));
    c.spec.guards.dry_run = true;
    let o = opened(run(&c));
    assert_eq!((o.status.phase, o.act), (Phase::DryRun, false));
    assert!(o.status.attempts[0].through_hpa.is_some());

    // The HPA's own maximum stops it: escalated, like a Scale at maxReplicas.
    let o = opened(run(&contention(
        "HPA at its max",
        hpa_owner(Some(3), 3, None),
    )));
    assert_eq!((o.status.phase, o.act), (Phase::Escalated, false));
    assert!(o.status.message.contains("HPA web"), "{}", o.status.message);
}

#[test]
fn an_owner_that_appears_mid_incident_escalates_the_retry() {
    let mut rem = incident(
        Phase::Verifying,
        vec![attempt(AttemptResult::Applied, 900)],
        890,
    );
    rem.spec.action = scale(6).expect("scale");
    rem.spec.pattern = Pattern::ResourceContention;
    let c = Case {
        spec: policy(scale(6), Pattern::ResourceContention),
        ev: verdict(FaultKind::ResourceContention, &[]),
        owner: ReplicasOwner::Keda("web".into()),
        history: vec![rem],
        now: 1300,
        ..base("KEDA took over")
    };
    let a = advanced(run(&c));
    assert_eq!((a.status.phase, a.act), (Phase::Escalated, false));
    assert!(
        a.status.message.contains(owners::OWNED_BY_KEDA),
        "{}",
        a.status.message
    );
}

/// A finished incident of the fault `f` using `action`: escalated after it ran (a failure of the
/// action) when `failed`, else succeeded.
fn ended(seq: u32, action: ActionType, failed: bool, end: i64) -> Remediation {
    let mut r = incident(
        if failed {
            Phase::Escalated
        } else {
            Phase::Succeeded
        },
        vec![Attempt {
            action,
            ..attempt(AttemptResult::Applied, end - 100)
        }],
        end - 120,
    );
    r.metadata.name = Some(format!("web-f-{seq}"));
    r.metadata.labels = Some(BTreeMap::from([(SEQ_LABEL.to_string(), seq.to_string())]));
    r.spec.action.type_ = action;
    if let Some(s) = r.status.as_mut() {
        s.finished_at = Some(Time(at(end)));
    }
    r
}

fn shadow_policy() -> RemediationPolicySpec {
    let mut s = policy(None, Pattern::RunawayProcess);
    s.mode = crate::v1alpha1::PolicyMode::Shadow;
    s
}

#[test]
fn shadow_mode_records_the_decision_and_acts_on_nothing() {
    let c = Case {
        spec: shadow_policy(),
        ..base("shadow")
    };
    let intent = run(&c);
    assert!(
        !super::super::fleet::disrupts(&intent),
        "no disruption budget spent"
    );
    let o = opened(intent);
    assert!(o.spec.shadow);
    assert_eq!((o.status.phase, o.act), (Phase::Shadow, false));
    assert_eq!(
        o.status.shadow_outcome,
        Some(crate::v1alpha1::ShadowOutcome::Pending)
    );
    // What enforcing would have done is on record, not done.
    let a = o.status.attempts.last().expect("the planned attempt");
    assert_eq!(a.result, AttemptResult::Shadow);
    assert_eq!(a.pods, vec!["web-1/uid-1".to_string()]);
    assert_eq!(o.status.deadline, Some(Time(at(1000 + 300))));

    // An action that would only escalate is shadowed too (no one is paged).
    let crash = Case {
        spec: {
            let mut s = shadow_policy();
            s.faults[0].pattern = Pattern::CrashLoop;
            s.faults[0].action = Some(ActionSpec {
                type_: ActionType::Escalate,
                scale: None,
                resize: None,
            });
            s
        },
        ev: verdict(FaultKind::CrashLoop, &["web-1"]),
        ..base("shadow crash loop")
    };
    let o = opened(run(&crash));
    assert_eq!((o.status.phase, o.act), (Phase::Shadow, false));
    assert!(
        o.status.message.contains("would escalate"),
        "{}",
        o.status.message
    );
}

#[test]
fn shadow_incidents_are_scored_unnecessary_or_needed() {
    use crate::v1alpha1::ShadowOutcome::{Needed, Unnecessary, Unscored};
    let open_shadow = |clear_since: Option<i64>| {
        let mut r = incident(
            Phase::Shadow,
            vec![attempt(AttemptResult::Shadow, 900)],
            900,
        );
        r.spec.shadow = true;
        if let Some(s) = r.status.as_mut() {
            s.deadline = Some(Time(at(900 + 300)));
            s.shadow_outcome = Some(crate::v1alpha1::ShadowOutcome::Pending);
            s.clear_since = clear_since.map(|t| Time(at(t)));
        }
        vec![r]
    };
    // (name, clear since, verdict now, now, phase, outcome)
    let table = [
        (
            "cleared by itself, stable",
            Some(1000),
            FaultKind::Healthy,
            1060,
            Phase::Shadowed,
            Some(Unnecessary),
        ),
        (
            "cleared, not stable yet",
            Some(1000),
            FaultKind::Healthy,
            1059,
            Phase::Shadow,
            None,
        ),
        (
            "still firing in the window",
            None,
            FaultKind::RunawayProcess,
            1199,
            Phase::Shadow,
            None,
        ),
        (
            "persisted through the timeout",
            None,
            FaultKind::RunawayProcess,
            1200,
            Phase::Shadowed,
            Some(Needed),
        ),
        (
            "blind through the timeout",
            None,
            FaultKind::Inconclusive,
            1200,
            Phase::Shadowed,
            Some(Unscored),
        ),
    ];
    for (name, since, kind, now, phase, outcome) in table {
        let c = Case {
            spec: shadow_policy(),
            history: open_shadow(since),
            ev: verdict(kind, &["web-1"]),
            now,
            ..base(name)
        };
        let a = advanced(run(&c));
        assert!(!a.act, "{name}: a shadow incident never acts");
        assert_eq!(a.status.phase, phase, "{name}: {}", a.status.message);
        if let Some(o) = outcome {
            assert_eq!(a.status.shadow_outcome, Some(o), "{name}");
        }
    }
    // Switching to Enforce stops the shadow incident (unscored) instead of holding the policy.
    let c = Case {
        history: open_shadow(None),
        ..base("switched to enforce")
    };
    let a = advanced(run(&c));
    assert_eq!(
        (a.status.phase, a.status.shadow_outcome),
        (Phase::Halted, Some(Unscored))
    );
    // ... and switching to Shadow halts a real incident, as dryRun does.
    let c = Case {
        spec: shadow_policy(),
        history: vec![incident(
            Phase::Acting,
            vec![attempt(AttemptResult::Blocked, 990)],
            990,
        )],
        ..base("switched to shadow")
    };
    assert_eq!(advanced(run(&c)).status.phase, Phase::Halted);
}

#[test]
fn shadow_cools_down_and_never_holds_an_enforcing_policy() {
    let mut done = incident(
        Phase::Shadowed,
        vec![attempt(AttemptResult::Shadow, 900)],
        900,
    );
    done.spec.shadow = true;
    // Shadow: the cooldown (10m) holds a persistent fault from being recorded every interval.
    let c = Case {
        spec: shadow_policy(),
        history: vec![done.clone()],
        ..base("shadow cooldown")
    };
    match run(&c) {
        Intent::Hold { refusal, .. } => assert_eq!(refusal.reason, "Cooldown"),
        other => panic!("expected Hold, got {other:?}"),
    }
    // Enforce: the shadow incident is not an action; the real one acts at once.
    let c = Case {
        history: vec![done],
        ..base("enforce after shadow")
    };
    let o = opened(run(&c));
    assert!(o.act);
    assert_eq!(o.seq, 2, "numbered after the shadow incident");
}

#[test]
fn effectiveness_memory_skips_an_action_that_keeps_failing() {
    let scale = scale(6).expect("scale");
    let ladder = |fallbacks: Vec<ActionSpec>| {
        let mut s = policy(
            Some(ActionSpec {
                type_: ActionType::RestartPod,
                scale: None,
                resize: None,
            }),
            Pattern::RunawayProcess,
        );
        s.faults[0].fallbacks = fallbacks;
        s.guards.cooldown = Duration::from_secs(60);
        s.guards.failure_window = Duration::from_secs(3600);
        s
    };
    let two_failures = || {
        vec![
            ended(1, ActionType::RestartPod, true, 200),
            ended(2, ActionType::RestartPod, true, 600),
        ]
    };
    // (name, fallbacks, history, now, action chosen (None: escalated), skipped)
    type Row = (
        &'static str,
        Vec<ActionSpec>,
        Vec<Remediation>,
        i64,
        Option<ActionType>,
        usize,
    );
    let table: Vec<Row> = vec![
        (
            "one failure is not enough",
            vec![scale.clone()],
            vec![ended(1, ActionType::RestartPod, true, 600)],
            1000,
            Some(ActionType::RestartPod),
            0,
        ),
        (
            "two failures: the next rung",
            vec![scale.clone()],
            two_failures(),
            1000,
            Some(ActionType::Scale),
            1,
        ),
        (
            "two failures, no rung left: escalated",
            vec![],
            two_failures(),
            1000,
            None,
            1,
        ),
        (
            "the older failure left the window",
            vec![scale.clone()],
            two_failures(),
            200 + 3600,
            Some(ActionType::RestartPod),
            0,
        ),
        (
            "successes are not failures",
            vec![scale.clone()],
            vec![
                ended(1, ActionType::RestartPod, false, 200),
                ended(2, ActionType::RestartPod, true, 600),
            ],
            1000,
            Some(ActionType::RestartPod),
            0,
        ),
    ];
    for (name, fallbacks, history, now, want, skipped) in table {
        let mut spec = ladder(fallbacks);
        // Relapse is another guard; keep it out of these rows.
        spec.guards.relapse_window = Duration::from_secs(1);
        let c = Case {
            spec,
            workload: Some(workload(3, 3)),
            history,
            now,
            ..base(name)
        };
        let o = opened(run(&c));
        assert_eq!(o.spec.skipped.len(), skipped, "{name}");
        match want {
            Some(a) => {
                assert_eq!(o.spec.action.type_, a, "{name}");
                assert!(o.act, "{name}: {}", o.status.message);
            }
            None => {
                assert_eq!((o.status.phase, o.act), (Phase::Escalated, false), "{name}");
                assert!(
                    o.status.message.contains("ladder"),
                    "{name}: {}",
                    o.status.message
                );
            }
        }
        if skipped > 0 {
            let s = &o.spec.skipped[0];
            assert_eq!(
                (s.action, s.failures),
                (ActionType::RestartPod, 2),
                "{name}"
            );
            assert_eq!(
                s.incidents,
                vec!["web-f-2".to_string(), "web-f-1".to_string()]
            );
            assert!(
                o.status.message.contains("skipped RestartPod"),
                "{name}: {}",
                o.status.message
            );
        }
    }
    // 0 disables the memory.
    let mut spec = ladder(vec![scale]);
    spec.guards.skip_after_failures = 0;
    spec.guards.relapse_window = Duration::from_secs(1);
    let c = Case {
        spec,
        history: two_failures(),
        ..base("memory off")
    };
    assert_eq!(opened(run(&c)).spec.action.type_, ActionType::RestartPod);
}

/// A forecast's ask opens a Scale incident stepped to the asked replicas (within maxReplicas), as if
/// its fault fired, under that fault's guards; nothing on inconclusive data, when the workload already
/// has the replicas or is gone.
#[test]
fn a_forecast_ask_opens_a_scale_incident_ahead_under_the_faults_guards() {
    let spec = policy(scale(10), Pattern::ResourceContention);
    let ask = ForecastAsk {
        fault: "f".into(),
        to: 6,
        message: "demand forecast to reach 170 within 60s".into(),
        evidence: vec![crate::v1alpha1::Evidence {
            rule: "forecast peak within 60s > 3 replicas x 30 per pod".into(),
            signal: "demand".into(),
            pod: None,
            value: 170.0,
            threshold: Some(90.0),
        }],
    };
    let pods = pods();
    let healthy = verdict(FaultKind::Healthy, &[]);
    let obs = |w: Option<&Workload>,
               ev: &Evaluated,
               history: &[Remediation],
               ask: &ForecastAsk,
               now: i64| {
        decide(&Observed {
            policy: "web",
            spec: &spec,
            target: &target(),
            workload: w,
            replicas_owner: &owners::NO_OWNER,
            pods: &pods,
            history,
            evaluated: ev,
            forecast: Some(ask),
            now: at(now),
        })
    };
    let w = workload(3, 3);
    let o = opened(obs(Some(&w), &healthy, &[], &ask, 0));
    assert_eq!(o.spec.action.type_, ActionType::Scale);
    assert_eq!(o.spec.action.scale.as_ref().map(|s| s.step), Some(3));
    assert_eq!(
        o.spec.evidence, ask.evidence,
        "the forecast is the incident's evidence"
    );
    let a = o
        .status
        .attempts
        .last()
        .expect("the first attempt, saved before acting");
    assert_eq!((a.from_replicas, a.to_replicas), (Some(3), Some(6)));
    assert!(o.act);
    let far = ForecastAsk {
        to: 40,
        ..ask.clone()
    };
    let o = opened(obs(Some(&w), &healthy, &[], &far, 0));
    let a = o.status.attempts.last().expect("planned");
    assert_eq!(a.to_replicas, Some(10), "bounded by maxReplicas");

    let inconclusive = verdict(FaultKind::Inconclusive, &[]);
    assert_eq!(obs(Some(&w), &inconclusive, &[], &ask, 0), Intent::Idle);
    assert_eq!(
        obs(Some(&workload(6, 6)), &healthy, &[], &ask, 0),
        Intent::Idle
    );
    assert_eq!(obs(None, &healthy, &[], &ask, 0), Intent::Idle);

    let earlier = incident(
        Phase::Succeeded,
        vec![attempt(AttemptResult::Applied, 0)],
        0,
    );
    assert!(
        matches!(
            obs(Some(&w), &healthy, &[earlier], &ask, 120),
            Intent::Hold { .. }
        ),
        "the fault's cooldown holds a forecast too"
    );
}
