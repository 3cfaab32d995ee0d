//! End-to-end scenarios: a real apiserver with kwok nodes, a real Prometheus scraping the workload
//! simulator, and the operator running as the chart's ServiceAccount. Each test has its own
//! namespace and its own operator process, and asserts the end state read from the apiserver.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use homeostat::v1alpha1::{ActionType, AttemptResult, Phase, RemediationPolicy};
use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use support::*;

fn report(scenario: &str, latency: Option<f64>) {
    if let Some(l) = latency {
        println!("FIGURE detection_to_action_seconds scenario={scenario} value={l:.1}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runaway_pod_is_evicted_and_the_incident_succeeds() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "runaway").await;
    let d = deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let before = running_pods(&env, &ns.name, "web").await;
    let (runaway, _) = before[0].clone();
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .expect("policy accepted");

    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    let s = r.status.clone().unwrap();
    assert_eq!(
        r.spec.pods,
        vec![runaway.clone()],
        "the runaway pod is the one implicated"
    );
    assert_eq!(r.spec.action.type_, ActionType::RestartPod);
    assert_eq!(s.attempts.len(), 1, "one eviction was enough: {s:?}");
    assert_eq!(s.attempts[0].result, AttemptResult::Applied);
    assert!(s.attempts[0].pods[0].starts_with(&format!("{runaway}/")));
    let after = running_pods(&env, &ns.name, "web").await;
    assert!(
        !after.iter().any(|(n, _)| *n == runaway),
        "the runaway pod is gone"
    );
    for (name, uid) in &before[1..] {
        assert!(
            after.contains(&(name.clone(), uid.clone())),
            "sibling {name} untouched"
        );
    }
    assert_eq!(after.len(), 3);
    assert_eq!(
        remediations(&env, &ns.name).await.len(),
        1,
        "exactly one incident"
    );
    report("runaway", detection_to_action(&d, 5.0, &r));
}

#[tokio::test(flavor = "multi_thread")]
async fn contention_scales_out_within_bounds() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "contention").await;
    let d = deploy(
        &env,
        &ns.name,
        "api",
        2,
        "contention",
        &[("load", "3"), ("sick-after", "0s")],
    )
    .await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let faults = r#"  - name: contention
    pattern: ResourceContention
    for: 30s
    params: {warmup: 10s}
    action: {type: Scale, scale: {step: 2, maxReplicas: 5}}"#;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("api", "api", faults, FAST_GUARDS),
    )
    .await
    .expect("policy accepted");
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    let s = r.status.clone().unwrap();
    assert_eq!(s.attempts[0].from_replicas, Some(2));
    assert_eq!(s.attempts[0].to_replicas, Some(4));
    let dep = Api::<Deployment>::namespaced(env.client.clone(), &ns.name)
        .get("api")
        .await
        .unwrap();
    let replicas = dep.spec.unwrap().replicas.unwrap();
    assert!(
        (3..=5).contains(&replicas),
        "scaled within bounds: {replicas}"
    );
    report("contention", detection_to_action(&d, 0.0, &r));
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_loop_is_escalated_without_restart_or_scale() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "crashloop").await;
    deploy(
        &env,
        &ns.name,
        "worker",
        2,
        "crashloop",
        &[("sick-after", "0s")],
    )
    .await;
    let before = running_pods(&env, &ns.name, "worker").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let extra = format!(
        "{FAST_GUARDS}  notify: [{{webhook: {{url: 'http://127.0.0.1:9/unreachable', format: Slack}}}}]\n"
    );
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("worker", "worker", RUNAWAY_FAULTS, &extra),
    )
    .await
    .expect("policy accepted");
    let r = wait_phase(&env, &ns.name, Phase::Escalated, 240).await;
    assert_eq!(r.spec.fault, "crashloop");
    assert_eq!(r.spec.action.type_, ActionType::Escalate);
    assert!(
        r.status.unwrap().attempts.is_empty(),
        "no action on a crash loop"
    );
    // Keep watching: nothing is restarted or scaled while it keeps crashing.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        running_pods(&env, &ns.name, "worker").await,
        before,
        "pods untouched"
    );
    let dep = Api::<Deployment>::namespaced(env.client.clone(), &ns.name)
        .get("worker")
        .await
        .unwrap();
    assert_eq!(dep.spec.unwrap().replicas, Some(2), "not scaled");
    let all = remediations(&env, &ns.name).await;
    assert_eq!(all.len(), 1, "one escalation, not one per evaluation");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_workload_and_short_burst_open_no_incident() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "quiet").await;
    deploy(&env, &ns.name, "calm", 3, "healthy", &[]).await;
    deploy(
        &env,
        &ns.name,
        "spiky",
        3,
        "burst",
        &[("sick-after", "20s")],
    )
    .await;
    let op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let contention = r#"
  - name: contention
    pattern: ResourceContention
    for: 30s
    params: {warmup: 10s}
    action: {type: Scale, scale: {step: 1, maxReplicas: 5}}"#;
    let faults = format!("{RUNAWAY_FAULTS}{contention}");
    for (name, target) in [("calm", "calm"), ("spiky", "spiky")] {
        apply_policy(
            &env,
            &ns.name,
            &policy_yaml(name, target, &faults, FAST_GUARDS),
        )
        .await
        .expect("policy accepted");
    }
    // The burst runs from ~20 s to ~35 s after creation; watch well past it.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        assert!(
            remediations(&env, &ns.name).await.is_empty(),
            "no incident may open for a healthy workload or a short burst"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Status is written only on change, so count the operator's sweeps instead of status writes.
    let evaluations = op
        .log_text()
        .lines()
        .filter(|l| l.contains("sweep done"))
        .count();
    assert!(
        evaluations >= 10,
        "the policies were evaluated ({evaluations} sweeps seen)"
    );
    for name in ["calm", "spiky"] {
        let p = policy(&env, &ns.name, name).await;
        assert_eq!(ready(&p).map(|r| r.0), Some("True".into()), "{name} Ready");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_records_the_decision_and_changes_nothing() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "dryrun").await;
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let before = running_pods(&env, &ns.name, "web").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let guards =
        "  guards: {cooldown: 5m, maxActionsPerHour: 5, maxUnavailable: 1, dryRun: true}\n";
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, guards),
    )
    .await
    .expect("policy accepted");
    let r = wait_phase(&env, &ns.name, Phase::DryRun, 240).await;
    let s = r.status.unwrap();
    assert_eq!(s.attempts.len(), 1);
    assert_eq!(s.attempts[0].result, AttemptResult::DryRun);
    assert_eq!(
        r.spec.pods,
        vec![before[0].0.clone()],
        "the decision names the runaway pod"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        running_pods(&env, &ns.name, "web").await,
        before,
        "nothing evicted"
    );
    assert_eq!(
        remediations(&env, &ns.name).await.len(),
        1,
        "cooldown holds repeated decisions"
    );
    let p = policy(&env, &ns.name, "web").await;
    assert_eq!(ready(&p), Some(("True".into(), "DryRun".into())));
}

/// Kills the operator at a failpoint, restarts it, and checks the eviction happened exactly once.
async fn crash_and_resume(failpoint: &str, prefix: &str) {
    let env = Env::get().await;
    let ns = TestNs::new(&env, prefix).await;
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let before = running_pods(&env, &ns.name, "web").await;
    let runaway = before[0].0.clone();
    let mut op = Operator::start(
        &env,
        &ns.name,
        "first",
        &[],
        &[("HOMEOSTAT_FAILPOINT", failpoint)],
    )
    .await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .expect("policy accepted");
    let status = tokio::time::timeout(Duration::from_secs(240), op.child.wait())
        .await
        .expect("the operator reaches the failpoint")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(homeostat::failpoint::EXIT_CODE),
        "{}",
        op.log_text()
    );
    let mid = remediations(&env, &ns.name).await;
    assert_eq!(mid.len(), 1);
    let s = mid[0].status.clone().unwrap();
    assert_eq!(s.phase, Phase::Acting, "crashed while Acting");
    assert_eq!(s.attempts.len(), 1);
    assert_eq!(s.attempts[0].result, AttemptResult::Pending);
    let evicted_before_restart = !running_pods(&env, &ns.name, "web")
        .await
        .iter()
        .any(|(n, _)| *n == runaway);
    assert_eq!(evicted_before_restart, failpoint == "after-action");

    let _op2 = Operator::start(&env, &ns.name, "second", &[], &[]).await;
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    let s = r.status.unwrap();
    assert_eq!(
        s.attempts.len(),
        1,
        "resumed the saved attempt, planned no other: {s:?}"
    );
    if failpoint == "after-action" {
        assert!(
            s.attempts[0].message.contains("already gone"),
            "{}",
            s.attempts[0].message
        );
    }
    let after = running_pods(&env, &ns.name, "web").await;
    for (name, uid) in &before[1..] {
        assert!(
            after.contains(&(name.clone(), uid.clone())),
            "sibling {name} never evicted"
        );
    }
    assert_eq!(remediations(&env, &ns.name).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_saving_the_attempt_resumes_and_acts_once() {
    crash_and_resume("after-pending-saved", "crash-pending").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_the_eviction_resumes_without_evicting_again() {
    crash_and_resume("after-action", "crash-acted").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_disruption_budget_refusal_waits_then_retries() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "pdb").await;
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let runaway = running_pods(&env, &ns.name, "web").await[0].0.clone();
    let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    let pdbs = Api::<PodDisruptionBudget>::namespaced(env.client.clone(), &ns.name);
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .expect("policy accepted");
    let blocked = wait_for("an eviction blocked by the PDB", 240, || async {
        remediations(&env, &ns.name).await.into_iter().find(|r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Phase::Acting
                    && s.attempts
                        .last()
                        .is_some_and(|a| a.result == AttemptResult::Blocked)
            })
        })
    })
    .await;
    assert!(
        blocked.status.unwrap().attempts[0]
            .message
            .contains("PodDisruptionBudget"),
        "the refusal names the PDB"
    );
    assert!(
        running_pods(&env, &ns.name, "web")
            .await
            .iter()
            .any(|(n, _)| *n == runaway),
        "nothing deleted behind the PDB's back"
    );
    pdbs.delete("web", &DeleteParams::default()).await.unwrap();
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    assert_eq!(
        r.status.unwrap().attempts.len(),
        1,
        "the blocked attempt was retried, not duplicated"
    );
    assert!(
        !running_pods(&env, &ns.name, "web")
            .await
            .iter()
            .any(|(n, _)| *n == runaway)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_policies_are_rejected_by_the_apiserver() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "schema").await;
    let cases = [
        (
            "  - {name: slow, pattern: Threshold, for: 1m, action: {type: RolloutRestart}}",
            "",
            "a Threshold fault needs a signal and a condition",
        ),
        (
            "  - {name: r, pattern: RunawayProcess, for: 5 minutes}",
            "",
            "should match",
        ),
        (
            "  - {name: c, pattern: ResourceContention, action: {type: Scale}}",
            "",
            "action Scale needs scale bounds",
        ),
        (
            "  - {name: c, pattern: ResourceContention, action: {type: Scale, scale: {maxReplicas: 0}}}",
            "",
            "greater than or equal to 1",
        ),
        (
            "  - {name: r, pattern: RunawayProcess, params: {limitRatio: 1.5}}",
            "",
            "less than or equal to 1",
        ),
        ("  - {name: r, pattern: Sluggish}", "", "Unsupported value"),
        (
            "  - {name: k, pattern: CrashLoop, action: {type: RestartPod}}",
            "",
            "does not fix a crash loop",
        ),
        (
            "  - {name: r, pattern: RunawayProcess}\n  - {name: r, pattern: MemoryLeak}",
            "",
            "fault names must be unique",
        ),
        (
            "  - {name: c, pattern: ResourceContention, action: {type: Scale, scale: {minReplicas: 6, maxReplicas: 3}}}",
            "",
            "minReplicas must not exceed maxReplicas",
        ),
    ];
    for (i, (faults, extra, want)) in cases.iter().enumerate() {
        let yaml = policy_yaml(&format!("bad-{i}"), "web", faults, extra);
        match apply_raw_policy(&env, &ns.name, &yaml).await {
            Ok(_) => panic!("case {i} was accepted but should fail with {want:?}:\n{yaml}"),
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "case {i}: {s:?}");
                assert!(
                    s.message.contains(want),
                    "case {i}: {:?} lacks {want:?}",
                    s.message
                );
            }
            Err(e) => panic!("case {i}: unexpected error {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_policies_are_reported_in_status_and_others_carry_on() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "invalid").await;
    deploy(&env, &ns.name, "web", 2, "healthy", &[]).await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("ghost", "nope", RUNAWAY_FAULTS, ""),
    )
    .await
    .unwrap();
    let bad_query =
        r#"  signals: [{name: broken, query: 'sum(rate(x{namespace="{{ namespace }}"}[1m]'}]"#;
    let faults = r#"  - {name: slow, pattern: Threshold, signal: broken, condition: {op: ">", value: 1}, for: 30s, action: {type: RolloutRestart}}"#;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("badquery", "web", faults, bad_query),
    )
    .await
    .unwrap();
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("good", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .unwrap();
    let reason = |name: &'static str, want: &'static str| {
        let env = &env;
        let ns = ns.name.clone();
        async move {
            wait_for(&format!("{name} Ready reason {want}"), 90, || async {
                let p = policy(env, &ns, name).await;
                let (status, reason) = ready(&p)?;
                (reason == want).then_some((status, p))
            })
            .await
        }
    };
    let (status, p) = reason("ghost", "TargetNotFound").await;
    assert_eq!(status, "False");
    let msg = &p.status.unwrap().conditions[0].message;
    assert!(msg.contains("Deployment/nope not found"), "{msg}");
    let (status, p) = reason("badquery", "QueryRejected").await;
    assert_eq!(status, "False");
    let msg = p
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        msg.contains("parse error"),
        "Prometheus' own message is shown: {msg}"
    );
    let (status, _) = reason("good", "Evaluating").await;
    assert_eq!(status, "True", "the valid policy is evaluated all the same");
}

async fn operator_client(env: &Env) -> Client {
    let kc = Kubeconfig::read_from(&env.operator_kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_service_account_is_refused_what_the_chart_does_not_grant() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "rbac").await;
    deploy(&env, &ns.name, "web", 1, "healthy", &[]).await;
    let sa = operator_client(&env).await;
    let pods = Api::<Pod>::namespaced(sa.clone(), &ns.name);
    let list = pods
        .list(&ListParams::default())
        .await
        .expect("listing pods is granted");
    let name = list.items[0].name_any();
    for (what, r) in [
        (
            "delete pods",
            pods.delete(&name, &DeleteParams::default())
                .await
                .map(|_| ()),
        ),
        (
            "list nodes",
            Api::<Node>::all(sa.clone())
                .list(&ListParams::default())
                .await
                .map(|_| ()),
        ),
        (
            "delete deployments",
            Api::<Deployment>::namespaced(sa.clone(), &ns.name)
                .delete("web", &DeleteParams::default())
                .await
                .map(|_| ()),
        ),
        (
            "delete policies",
            Api::<RemediationPolicy>::namespaced(sa.clone(), &ns.name)
                .delete("x", &DeleteParams::default())
                .await
                .map(|_| ()),
        ),
    ] {
        match r {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{what}: {s:?}"),
            other => panic!("{what} should be forbidden, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_failover_takes_over_within_the_lease_and_acts_once() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "leader").await;
    let lease_ns = std::env::var("HOMEOSTAT_E2E_RELEASE_NAMESPACE")
        .unwrap_or_else(|_| "homeostat-system".into());
    let lease_name = format!("leader-{}", ns.name);
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        &lease_ns,
        "--lease-name",
        &lease_name,
        "--lease-duration",
        "6s",
    ];
    let mut a = Operator::start(&env, &ns.name, "a", &flags, &[]).await;
    let leases = Api::<Lease>::namespaced(env.client.clone(), &lease_ns);
    let holder = || async {
        leases
            .get_opt(&lease_name)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| !h.is_empty())
    };
    let first = wait_for("a leader", 60, holder).await;
    assert_eq!(first, format!("{}-a", ns.name));
    let mut b = Operator::start(&env, &ns.name, "b", &flags, &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        holder().await,
        Some(first.clone()),
        "the standby does not steal the lease"
    );
    a.kill().await;
    let killed = Instant::now();
    let second = wait_for("the standby taking over", 60, || async {
        holder().await.filter(|h| *h != first)
    })
    .await;
    let failover = killed.elapsed().as_secs_f64();
    println!("FIGURE leader_failover_seconds value={failover:.1} lease_duration=6");
    assert_eq!(second, format!("{}-b", ns.name));
    assert!(
        failover <= 6.0 + 6.0,
        "took over within the lease duration plus a renew period: {failover}s"
    );

    // The new leader acts, once.
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .unwrap();
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    assert_eq!(r.status.unwrap().attempts.len(), 1);
    assert_eq!(remediations(&env, &ns.name).await.len(), 1);
    assert!(b.log_text().contains("acquired a leader Lease"));
    b.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_leak_restarts_the_leaking_pod_before_the_oom_kill() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "leak").await;
    // 512Mi limit, leak rate ~3.4 MB/s: from 20 % to the limit in ~2 min.
    let d = deploy(
        &env,
        &ns.name,
        "cache",
        3,
        "leak",
        &[("sick-after", "5s"), ("leak-rate", "3400000")],
    )
    .await;
    let leaking = running_pods(&env, &ns.name, "cache").await[0].0.clone();
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let faults = r#"  - name: leak
    pattern: MemoryLeak
    for: 40s
    params: {warmup: 10s, horizon: 10m}
    action: {type: RestartPod}"#;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("cache", "cache", faults, FAST_GUARDS),
    )
    .await
    .unwrap();
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    assert_eq!(r.spec.pods, vec![leaking.clone()]);
    assert!(
        !running_pods(&env, &ns.name, "cache")
            .await
            .iter()
            .any(|(n, _)| *n == leaking)
    );
    report("leak", detection_to_action(&d, 5.0, &r));
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_restart_on_a_threshold_that_does_not_clear_escalates() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "rollout").await;
    // Healthy pods sit at 30 % of 512Mi (≈161 MB): a threshold at 100 MB fires and no restart fixes it.
    deploy(&env, &ns.name, "web", 2, "healthy", &[]).await;
    let before = running_pods(&env, &ns.name, "web").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let signals = r#"  signals:
    - name: memory
      query: 'max by (pod) (container_memory_working_set_bytes{namespace="{{ namespace }}", pod=~"{{ pods }}"})'
"#;
    let faults = r#"  - name: fat
    pattern: Threshold
    signal: memory
    condition: {op: ">", value: 100000000}
    for: 20s
    action: {type: RolloutRestart}"#;
    let yaml = policy_yaml("web", "web", faults, &format!("{signals}{FAST_GUARDS}"))
        .replace("maxAttempts: 2", "maxAttempts: 1")
        .replace("timeout: 60s", "timeout: 40s");
    apply_policy(&env, &ns.name, &yaml)
        .await
        .expect("policy accepted");
    let r = wait_phase(&env, &ns.name, Phase::Escalated, 240).await;
    let s = r.status.unwrap();
    assert_eq!(s.attempts.len(), 1, "{s:?}");
    let stamp = s.attempts[0]
        .restarted_at
        .clone()
        .expect("a restartedAt stamp");
    assert_eq!(s.attempts[0].result, AttemptResult::Applied);
    assert!(s.message.contains("not recovered"), "{}", s.message);
    let dep = Api::<Deployment>::namespaced(env.client.clone(), &ns.name)
        .get("web")
        .await
        .unwrap();
    let ann = dep
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert_eq!(
        ann.get("kubectl.kubernetes.io/restartedAt"),
        Some(&stamp),
        "the template was stamped"
    );
    let after = running_pods(&env, &ns.name, "web").await;
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every pod was rolled: {before:?} -> {after:?}"
    );
}
