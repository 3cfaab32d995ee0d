//! ResizePod: planning (bounds, QoS class, maximum → fallback), the kubelet's answers, the
//! node-fit check and the engine's fallback and resume.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Container, ContainerStatus, Node, NodeStatus, PodCondition, PodSpec, PodStatus,
        ResourceRequirements,
    },
    apimachinery::pkg::apis::meta::v1::Time,
};

use super::*;
use crate::{
    diagnosis::{Evaluated, FaultVerdict, Verdict},
    remediation::{
        actions::{self, PlanError, Workload},
        engine::{self, Intent, Observed},
        lifecycle,
        owners::ReplicasOwner,
    },
    v1alpha1::{
        ActionSpec, ActionType, Attempt, AttemptResult, Duration, FaultKind, GuardSpec, Pattern,
        Phase, Remediation, RemediationPolicySpec, RemediationSpec, RemediationStatus,
        ResizeFallback, ScaleSpec, TargetRef, WorkloadKind,
    },
};

fn res(cpu: (Option<&str>, Option<&str>), mem: (Option<&str>, Option<&str>)) -> Resources {
    let s = |o: Option<&str>| o.map(str::to_string);
    Resources {
        cpu_request: s(cpu.0),
        cpu_limit: s(cpu.1),
        memory_request: s(mem.0),
        memory_limit: s(mem.1),
    }
}

fn guaranteed(cpu: &str) -> Resources {
    res((Some(cpu), Some(cpu)), (Some("64Mi"), Some("64Mi")))
}

fn pod(name: &str, r: Resources) -> LivePod {
    LivePod {
        name: name.into(),
        uid: format!("uid-{name}"),
        started_at: Some(0.0),
        containers: vec![ContainerAlloc {
            name: "app".into(),
            resources: r,
        }],
        start_to_ready: None,
    }
}

fn step(factor: Option<f64>, step: Option<&str>, max: &str) -> ResourceStep {
    ResourceStep {
        factor,
        step: step.map(str::to_string),
        max: max.into(),
    }
}

fn spec(cpu: Option<ResourceStep>, memory: Option<ResourceStep>) -> ResizeSpec {
    ResizeSpec {
        cpu,
        memory,
        fallback: ResizeFallback::Escalate,
        scale: None,
        deferred_wait: Duration::from_secs(300),
    }
}

#[test]
fn quantities_parse_and_format() {
    for (q, v) in [
        ("200m", 0.2),
        ("1", 1.0),
        ("1.5", 1.5),
        ("64Mi", 64.0 * 1048576.0),
        ("1Gi", 1073741824.0),
        ("128M", 128e6),
        ("1e3", 1000.0),
    ] {
        assert_eq!(parse_quantity(q), Some(v), "{q}");
    }
    for bad in ["", "abc", "1Zi", "-1", "1.2.3"] {
        assert_eq!(parse_quantity(bad), None, "{bad}");
    }
    assert_eq!(cpu_quantity(0.5), "500m");
    assert_eq!(cpu_quantity(2.0), "2");
    assert_eq!(cpu_quantity(0.3333), "334m", "rounded up to the millicore");
    assert_eq!(memory_quantity(96.0 * 1048576.0), "96Mi");
    assert_eq!(memory_quantity(1536.0), "1536", "1.5Ki is not exact: bytes");
    assert_eq!(memory_quantity(2048.0), "2Ki");
}

#[test]
fn qos_classes() {
    assert_eq!(qos(&[guaranteed("200m")]), "Guaranteed");
    assert_eq!(
        qos(&[res((None, Some("1")), (None, Some("1Gi")))]),
        "Guaranteed",
        "unset requests default to the limits"
    );
    assert_eq!(
        qos(&[res(
            (Some("100m"), Some("200m")),
            (Some("64Mi"), Some("64Mi"))
        )]),
        "Burstable"
    );
    assert_eq!(
        qos(&[guaranteed("1"), res((Some("1"), None), (None, None))]),
        "Burstable"
    );
    assert_eq!(qos(&[Resources::default()]), "BestEffort");
}

#[test]
fn guaranteed_pods_move_requests_with_limits() {
    let p = pod("web-0", guaranteed("200m"));
    let c = plan(&spec(Some(step(Some(2.5), None, "1")), None), &[&p]).expect("plan");
    let to = &c.pods[0].containers[0].to;
    assert_eq!(to.cpu_limit.as_deref(), Some("500m"));
    assert_eq!(to.cpu_request.as_deref(), Some("500m"));
    assert_eq!(
        to.memory_limit.as_deref(),
        Some("64Mi"),
        "memory has no bounds"
    );
    assert_eq!(qos(std::slice::from_ref(to)), "Guaranteed");
    assert_eq!(c.pods[0].uid, "uid-web-0");
    assert_eq!(c.pods[0].containers[0].from, guaranteed("200m"));
    assert_eq!(
        describe(&c),
        "web-0: app cpu request 200m→500m, cpu limit 200m→500m"
    );
    // Memory by a quantity, both moving together.
    let c = plan(&spec(None, Some(step(None, Some("32Mi"), "1Gi"))), &[&p]).expect("plan");
    let to = &c.pods[0].containers[0].to;
    assert_eq!(
        (to.memory_request.as_deref(), to.memory_limit.as_deref()),
        (Some("96Mi"), Some("96Mi"))
    );
}

#[test]
fn burstable_pods_stay_burstable() {
    let p = pod(
        "web-0",
        res((Some("100m"), Some("200m")), (Some("32Mi"), Some("64Mi"))),
    );
    let c = plan(&spec(Some(step(Some(2.0), None, "4")), None), &[&p]).expect("plan");
    let to = &c.pods[0].containers[0].to;
    assert_eq!(
        (to.cpu_request.as_deref(), to.cpu_limit.as_deref()),
        (Some("200m"), Some("400m")),
        "the request grows in proportion"
    );
    assert_eq!(qos(std::slice::from_ref(to)), "Burstable");
    // A request without a limit grows itself; nothing is added.
    let p = pod("web-1", res((Some("100m"), None), (None, None)));
    let c = plan(&spec(Some(step(None, Some("150m"), "1")), None), &[&p]).expect("plan");
    let to = &c.pods[0].containers[0].to;
    assert_eq!(
        (to.cpu_request.as_deref(), to.cpu_limit.as_deref()),
        (Some("250m"), None)
    );
}

#[test]
fn the_maximum_caps_and_then_ends_the_resizing() {
    let b = spec(Some(step(None, Some("500m"), "300m")), None);
    let p = pod("web-0", guaranteed("200m"));
    let c = plan(&b, &[&p]).expect("plan");
    assert_eq!(
        c.pods[0].containers[0].to.cpu_limit.as_deref(),
        Some("300m")
    );
    let p = pod("web-0", guaranteed("300m"));
    assert!(matches!(plan(&b, &[&p]), Err(NoResize::AtMaximum(_))));
    // Nothing to raise (BestEffort) is the same: the fallback's turn, not a change of class.
    let p = pod("web-0", Resources::default());
    assert!(matches!(plan(&b, &[&p]), Err(NoResize::AtMaximum(_))));
    // Unreadable bounds are an error with the field named, never a panic.
    let bad = spec(Some(step(None, None, "nope")), None);
    match plan(&bad, &[&pod("web-0", guaranteed("200m"))]) {
        Err(NoResize::Invalid(m)) => assert!(m.contains("resize.cpu"), "{m}"),
        other => panic!("{other:?}"),
    }
}

fn workload() -> Workload {
    Workload {
        target: TargetRef {
            kind: WorkloadKind::Deployment,
            name: "web".into(),
        },
        replicas: 2,
        available: 2,
        selector: None,
        restarted_at: None,
    }
}

fn resize_action(fallback: ResizeFallback, max: &str) -> ActionSpec {
    ActionSpec {
        type_: ActionType::ResizePod,
        scale: None,
        resize: Some(ResizeSpec {
            fallback,
            scale: (fallback == ResizeFallback::Scale).then_some(ScaleSpec {
                step: 1,
                min_replicas: None,
                max_replicas: 4,
                forecast: None,
            }),
            ..spec(Some(step(Some(2.0), None, max)), None)
        }),
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000).expect("valid")
}

#[test]
fn at_the_maximum_the_fallback_is_planned_or_the_incident_escalates() {
    let pods = vec![pod("web-0", guaranteed("1")), pod("web-1", guaranteed("1"))];
    let implicated = vec!["web-0".to_string()];
    let g = GuardSpec::default();
    let plan = |a: &ActionSpec| {
        actions::plan(
            a,
            &workload(),
            &ReplicasOwner::None,
            &pods,
            &implicated,
            &g,
            now(),
        )
    };
    let a = plan(&resize_action(ResizeFallback::Scale, "1")).expect("fallback");
    assert_eq!(
        (a.action, a.from_replicas, a.to_replicas),
        (ActionType::Scale, Some(2), Some(3))
    );
    assert!(
        a.message.starts_with("fallback after ResizePod"),
        "{}",
        a.message
    );
    let a = plan(&resize_action(ResizeFallback::RestartPod, "1")).expect("fallback");
    assert_eq!(
        (a.action, a.pods.clone()),
        (ActionType::RestartPod, vec!["web-0/uid-web-0".into()])
    );
    match plan(&resize_action(ResizeFallback::Escalate, "1")) {
        Err(PlanError::Escalate(m)) => assert!(m.contains("resize.fallback is Escalate"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Below the maximum: only the implicated pod is resized, and the attempt records it.
    let a = plan(&resize_action(ResizeFallback::Scale, "4")).expect("resize");
    assert_eq!(a.action, ActionType::ResizePod);
    assert_eq!(a.pods, vec!["web-0/uid-web-0"]);
    let c = a.resize.expect("recorded");
    assert_eq!(c.pods.len(), 1);
    assert_eq!(c.pods[0].containers[0].to.cpu_limit.as_deref(), Some("2"));
}

fn k8s_pod(spec_cpu: &str, status_cpu: &str, conditions: &[(&str, &str)]) -> Pod {
    let rr = |cpu: &str| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity("64Mi".into())),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity("64Mi".into())),
        ])),
        ..ResourceRequirements::default()
    };
    let mut p = Pod::default();
    p.metadata.name = Some("web-0".into());
    p.metadata.uid = Some("uid-web-0".into());
    p.spec = Some(PodSpec {
        node_name: Some("real".into()),
        containers: vec![Container {
            name: "app".into(),
            resources: Some(rr(spec_cpu)),
            ..Container::default()
        }],
        ..PodSpec::default()
    });
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        conditions: Some(
            conditions
                .iter()
                .map(|(t, r)| PodCondition {
                    type_: t.to_string(),
                    status: "True".into(),
                    reason: Some(r.to_string()),
                    message: Some("node didn't have enough capacity".into()),
                    ..PodCondition::default()
                })
                .collect(),
        ),
        container_statuses: Some(vec![ContainerStatus {
            name: "app".into(),
            resources: Some(rr(status_cpu)),
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    });
    p
}

fn planned() -> PodResize {
    PodResize {
        pod: "web-0".into(),
        uid: "uid-web-0".into(),
        containers: vec![ContainerResize {
            name: "app".into(),
            from: guaranteed("200m"),
            to: guaranteed("500m"),
        }],
    }
}

#[test]
fn the_kubelets_answers() {
    let r = planned();
    // Resumed after a crash: the spec already asks for the new values, so it is not patched
    // again (spec_at), only read.
    let p = k8s_pod("500m", "500m", &[]);
    assert!(spec_at(&p, &r, true) && !spec_at(&p, &r, false));
    assert_eq!(state(&p, &r), State::Actuated);
    assert_eq!(
        state(&k8s_pod("0.5", "500m", &[]), &r),
        State::Actuated,
        "quantities compare by value"
    );
    assert!(matches!(
        state(&k8s_pod("500m", "200m", &[]), &r),
        State::InProgress(_)
    ));
    assert!(matches!(
        state(&k8s_pod("500m", "200m", &[("PodResizeInProgress", "")]), &r),
        State::InProgress(_)
    ));
    assert!(matches!(
        state(
            &k8s_pod("500m", "200m", &[("PodResizePending", "Deferred")]),
            &r
        ),
        State::Deferred(_)
    ));
    match state(
        &k8s_pod("500m", "200m", &[("PodResizePending", "Infeasible")]),
        &r,
    ) {
        State::Failed(m) => assert!(m.contains("Infeasible"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        state(
            &k8s_pod("500m", "200m", &[("PodResizeInProgress", "Error")]),
            &r
        ),
        State::Failed(_)
    ));
    // Not yet resized: the spec is at the planned "from".
    let p = k8s_pod("200m", "200m", &[]);
    assert!(spec_at(&p, &r, false) && !spec_at(&p, &r, true));
}

fn node(cpu: &str) -> Node {
    Node {
        metadata: kube::api::ObjectMeta {
            name: Some("real".into()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            allocatable: Some(BTreeMap::from([
                ("cpu".into(), Quantity(cpu.into())),
                ("memory".into(), Quantity("4Gi".into())),
            ])),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

#[test]
fn node_fit_counts_the_other_pods_requests() {
    let me = k8s_pod("200m", "200m", &[]);
    let mut other = k8s_pod("1200m", "1200m", &[]);
    other.metadata.uid = Some("other".into());
    let mut done = k8s_pod("1", "1", &[]);
    done.metadata.uid = Some("done".into());
    if let Some(s) = done.status.as_mut() {
        s.phase = Some("Succeeded".into());
    }
    let r = planned();
    assert_eq!(
        fits(
            &node("2"),
            Some(&[other.clone(), done.clone(), me.clone()]),
            &me,
            &r
        ),
        Ok(())
    );
    let err = fits(&node("1500m"), Some(&[other.clone(), me.clone()]), &me, &r)
        .expect_err("1200m + 500m > 1500m");
    assert!(
        err.contains("would request cpu 500m") && err.contains("request 1200m of 1500m"),
        "{err}"
    );
    // Without the node's pods, only the allocatable is checked.
    assert_eq!(fits(&node("1500m"), None, &me, &r), Ok(()));
    assert!(fits(&node("400m"), None, &me, &r).is_err());
}

fn policy(fallback: &str) -> RemediationPolicySpec {
    let scale = if fallback == "Scale" {
        r#", "scale": {"maxReplicas": 4}"#
    } else {
        ""
    };
    serde_json::from_str(&format!(
        r#"{{"targetRef": {{"kind": "Deployment", "name": "web"}},
            "faults": [{{"name": "f", "pattern": "ResourceContention", "for": "1m",
              "action": {{"type": "ResizePod", "resize": {{"cpu": {{"factor": 2, "max": "4"}},
                "fallback": "{fallback}"{scale}}}}}}}],
            "verify": {{"stableFor": "1m", "timeout": "5m", "maxAttempts": 2}}}}"#
    ))
    .expect("valid spec")
}

fn firing() -> Evaluated {
    Evaluated {
        verdicts: vec![FaultVerdict {
            fault: "f".into(),
            pattern: Pattern::ResourceContention,
            verdict: Verdict {
                kind: FaultKind::ResourceContention,
                pods: vec!["web-0".into()],
                confidence: 1.0,
                evidence: vec![],
                message: "starved".into(),
                due: true,
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

fn resize_attempt(result: AttemptResult) -> Attempt {
    Attempt {
        number: 1,
        action: ActionType::ResizePod,
        started_at: Time(now()),
        applied_at: None,
        result,
        message: "the kubelet cannot resize web-0: PodResizePending Infeasible".into(),
        pods: vec!["web-0/uid-web-0".into()],
        from_replicas: None,
        to_replicas: None,
        restarted_at: None,
        through_hpa: None,
        resize: Some(ResizeChange {
            pods: vec![planned()],
            deferred_wait: Duration::from_secs(300),
        }),
    }
}

fn decide(
    p: &RemediationPolicySpec,
    phase: Phase,
    attempts: Vec<Attempt>,
    ev: &Evaluated,
) -> Intent {
    let mut rem = Remediation::new(
        "web-f-1",
        RemediationSpec {
            policy_ref: "web".into(),
            target: workload().target,
            fault: "f".into(),
            pattern: Pattern::ResourceContention,
            pods: vec!["web-0".into()],
            action: crate::diagnosis::action_for(&p.faults[0]),
            evidence: vec![],
            dry_run: false,
            shadow: false,
            skipped: vec![],
        },
    );
    rem.metadata.creation_timestamp = Some(Time(now()));
    rem.status = Some(RemediationStatus {
        phase,
        attempt_count: attempts.len() as u32,
        attempts,
        ..RemediationStatus::default()
    });
    let pods = vec![
        pod("web-0", guaranteed("200m")),
        pod("web-1", guaranteed("200m")),
    ];
    let history = [rem];
    engine::decide(&Observed {
        policy: "web",
        spec: p,
        target: &workload().target,
        workload: Some(&workload()),
        replicas_owner: &ReplicasOwner::None,
        pods: &pods,
        history: &history,
        evaluated: ev,
        forecast: None,
        now: now(),
    })
}

fn advanced(i: Intent) -> engine::Advancing {
    match i {
        Intent::Advance(a) => *a,
        other => panic!("expected Advance, got {other:?}"),
    }
}

#[test]
fn a_resize_that_did_not_take_goes_on_with_the_fallback() {
    // The outcome: the attempt failed, the incident stays open for the fallback.
    let p = policy("Scale");
    let s = RemediationStatus {
        phase: Phase::Acting,
        attempts: vec![resize_attempt(AttemptResult::Pending)],
        attempt_count: 1,
        ..RemediationStatus::default()
    };
    let s = engine::after_execution(
        s,
        lifecycle::Outcome::Fallback("Infeasible".into()),
        &p,
        now(),
    );
    assert_eq!(
        (s.phase, s.attempts[0].result),
        (Phase::Acting, AttemptResult::Failed)
    );
    assert_eq!(s.template_drift, None, "nothing was resized");
    // The next step plans the fallback, a Scale within resize.scale.
    let a = advanced(decide(&p, s.phase, s.attempts.clone(), &firing()));
    assert!(a.act);
    let second = &a.status.attempts[1];
    assert_eq!(
        (second.action, second.to_replicas),
        (ActionType::Scale, Some(3))
    );
    // Fallback Escalate: handed to a person, with the kubelet's reason.
    let a = advanced(decide(&policy("Escalate"), s.phase, s.attempts, &firing()));
    assert_eq!(a.status.phase, Phase::Escalated);
    assert!(
        a.status.message.contains("Infeasible")
            && a.status.message.contains("resize.fallback is Escalate"),
        "{}",
        a.status.message
    );
    // RestartPod: the implicated pod is evicted (its replacement gets the template's values).
    let s = vec![resize_attempt(AttemptResult::Failed)];
    let a = advanced(decide(&policy("RestartPod"), Phase::Acting, s, &firing()));
    assert_eq!(a.status.attempts[1].action, ActionType::RestartPod);
}

#[test]
fn a_resize_is_resumed_not_repeated_and_says_the_pods_drift() {
    let p = policy("Escalate");
    // A Pending resize (crash between the save and the patch, or after it) is executed, not
    // planned again: execution finds the pod's spec at the planned values and only reads it.
    let a = advanced(decide(
        &p,
        Phase::Acting,
        vec![resize_attempt(AttemptResult::Pending)],
        &firing(),
    ));
    assert!(a.act);
    assert_eq!(a.status.attempts.len(), 1);
    // Blocked while the kubelet actuates: re-read even when the fault cleared meanwhile.
    let mut clear = firing();
    clear.verdicts[0].verdict.kind = FaultKind::Healthy;
    let a = advanced(decide(
        &p,
        Phase::Acting,
        vec![resize_attempt(AttemptResult::Blocked)],
        &clear,
    ));
    assert!(a.act, "a requested resize is followed up");
    assert_eq!(a.status.phase, Phase::Acting);
    // Applied: verifying, and the incident says the pods run with more than the template.
    let s = RemediationStatus {
        phase: Phase::Acting,
        attempts: vec![resize_attempt(AttemptResult::Blocked)],
        attempt_count: 1,
        ..RemediationStatus::default()
    };
    let s = engine::after_execution(s, lifecycle::Outcome::Applied("resized".into()), &p, now());
    assert_eq!(s.phase, Phase::Verifying);
    let d = s.template_drift.expect("drift recorded");
    assert!(d.contains("web-0: app cpu request 200m→500m"), "{d}");
}

#[test]
fn the_policy_status_names_the_live_pods_that_drift() {
    let mut rem = Remediation::new(
        "web-f-1",
        RemediationSpec {
            policy_ref: "web".into(),
            target: workload().target,
            fault: "f".into(),
            pattern: Pattern::ResourceContention,
            pods: vec!["web-0".into()],
            action: resize_action(ResizeFallback::Escalate, "4"),
            evidence: vec![],
            dry_run: false,
            shadow: false,
            skipped: vec![],
        },
    );
    let mut s = RemediationStatus {
        phase: Phase::Succeeded,
        attempts: vec![resize_attempt(AttemptResult::Applied)],
        attempt_count: 1,
        ..RemediationStatus::default()
    };
    s.template_drift = super::drift_of(&s);
    rem.status = Some(s);
    let live = vec![pod("web-0", guaranteed("500m"))];
    let d = template_drift(std::slice::from_ref(&rem), &live).expect("drift");
    assert!(
        d.starts_with("web-0 run with more than the template asks"),
        "{d}"
    );
    // Replaced (another UID): no drift left.
    let mut replaced = live.clone();
    replaced[0].uid = "uid-new".into();
    assert_eq!(template_drift(&[rem], &replaced), None);
}
