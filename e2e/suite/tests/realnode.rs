//! Real-node scenarios: real processes in real cgroups on the cluster's kubelet + containerd node,
//! real cAdvisor and kube-state-metrics series in Prometheus, and the operator installed by
//! `helm install charts/homeostat` (2 replicas, leader election) acting on them. No simulator.
//!
//! Each scenario has its own namespace (the installed operator watches exactly these, see
//! `e2e/stack`), creates its workload from the locally built workload image (`e2e/workload`) and
//! drives it through control files on a hostPath, and asserts the end state from the apiserver
//! and from Prometheus. Real series are recorded to `tests/fixtures/realnode/` when
//! `HOMEOSTAT_E2E_RECORD_DIR` is set.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use homeostat::v1alpha1::{ActionType, AttemptResult, Phase, Remediation};
use jiff::Timestamp;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{Api, ResourceExt, api::ListParams};
use support::{real::*, *};

fn secs(a: &Timestamp, b: &Timestamp) -> f64 {
    b.duration_since(*a).as_secs_f64()
}

fn ts(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Timestamp {
    t.0
}

/// FIGURE lines: fault onset → first action applied, and that action → the incident's end.
fn figures(scenario: &str, onset: Timestamp, r: &Remediation) {
    let Some(s) = r.status.as_ref() else { return };
    if let Some(applied) = s.attempts.first().and_then(|a| a.applied_at.as_ref()) {
        println!(
            "FIGURE real_detection_to_action_seconds scenario={scenario} value={:.1}",
            secs(&onset, &ts(applied))
        );
        if let Some(done) = s.finished_at.as_ref() {
            println!(
                "FIGURE real_action_to_recovered_seconds scenario={scenario} value={:.1}",
                secs(&ts(applied), &ts(done))
            );
        }
    } else if let Some(created) = r.metadata.creation_timestamp.as_ref() {
        println!(
            "FIGURE real_detection_to_escalation_seconds scenario={scenario} value={:.1}",
            secs(&onset, &ts(created))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_runaway_replica_is_evicted_and_the_incident_succeeds() {
    let rn = Real::get().await;
    let ns = "rn-runaway";
    rn.fresh(ns).await;
    let t0 = Timestamp::now();
    rn.deploy(ns, "web", 3, "500m", "64Mi", &[("MODE", "idle")])
        .await;
    let before = running_pods(&rn.env, ns, "web").await;
    let (runaway, _) = before[0].clone();
    let faults = format!(
        "{CRASHLOOP_GUARD}\n  - name: runaway\n    pattern: RunawayProcess\n    for: 30s\n    params: {{warmup: 10s}}\n    action: {{type: RestartPod}}"
    );
    apply_policy(&rn.env, ns, &real_policy("web", &faults, GUARDS))
        .await
        .expect("policy accepted");
    // One replica starts burning two threads (capped at its 500m limit by CFS).
    rn.set(
        ns,
        "web",
        &format!("{runaway}.env"),
        "MODE=spin\nTHREADS=2\n",
    );
    let onset = Timestamp::now();

    let r = wait_phase(&rn.env, ns, Phase::Succeeded, 300).await;
    let s = r.status.clone().unwrap();
    assert_eq!(
        r.spec.pods,
        vec![runaway.clone()],
        "the spinning pod is the one implicated"
    );
    assert_eq!(r.spec.action.type_, ActionType::RestartPod);
    assert_eq!(s.attempts.len(), 1, "one eviction was enough: {s:?}");
    assert_eq!(s.attempts[0].result, AttemptResult::Applied);
    let after = running_pods(&rn.env, ns, "web").await;
    assert!(
        !after.iter().any(|(n, _)| *n == runaway),
        "the runaway pod is gone"
    );
    for p in &before[1..] {
        assert!(after.contains(p), "sibling {} untouched", p.0);
    }
    assert_eq!(after.len(), 3, "the ReplicaSet replaced it");
    // Prometheus: the spinning pod ran at its limit; every pod now running is idle.
    let peak = rn
        .per_pod(&format!(
            r#"max_over_time(sum by (pod) (rate(container_cpu_usage_seconds_total{{namespace="{ns}", container!=""}}[1m]))[10m:5s])"#
        ))
        .await;
    let p = peak.get(&runaway).copied().unwrap_or_default();
    let siblings = before[1..]
        .iter()
        .filter_map(|(n, _)| peak.get(n).copied())
        .fold(0.0, f64::max);
    // On a 2-core node shared with the control plane it may not reach its limit, but it burns
    // many times what its siblings do.
    assert!(
        p > 0.1 && p > 4.0 * siblings,
        "the runaway pod burned far more than its siblings: {p:.3} vs {siblings:.3} cores ({peak:?})"
    );
    println!("FIGURE real_runaway_peak_cores value={p:.3} siblings={siblings:.3} limit=0.5");
    let now = rn
        .per_pod(&format!(r#"sum by (pod) (rate(container_cpu_usage_seconds_total{{namespace="{ns}", container!=""}}[1m]))"#))
        .await;
    for (name, _) in &after {
        let c = now.get(name).copied().unwrap_or_default();
        assert!(c < 0.1, "{name} is idle after the eviction: {c:.3} cores");
    }
    assert_eq!(
        remediations(&rn.env, ns).await.len(),
        1,
        "exactly one incident"
    );
    figures("runaway", onset, &r);
    rn.record("runaway", ns, t0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_contention_is_scaled_out_within_bounds_and_throttling_falls() {
    let rn = Real::get().await;
    let ns = "rn-contention";
    rn.fresh(ns).await;
    let t0 = Timestamp::now();
    // 400m of work shared by the live replicas, each limited to 100m: 2 replicas want twice
    // their quota and are throttled in most CFS periods; 6 want 67m each and are not. (A small
    // quota is reached even when the node's 2 cores are busy with other work.)
    rn.deploy(
        ns,
        "api",
        2,
        "100m",
        "64Mi",
        &[("MODE", "shared"), ("TOTAL", "400")],
    )
    .await;
    let onset = Timestamp::now();
    let faults = r#"  - name: contention
    pattern: ResourceContention
    for: 30s
    params: {warmup: 10s}
    action: {type: Scale, scale: {step: 4, maxReplicas: 6}}"#;
    apply_policy(&rn.env, ns, &real_policy("api", faults, GUARDS))
        .await
        .expect("policy accepted");
    let throttled = format!(
        r#"sum(rate(container_cpu_cfs_throttled_periods_total{{namespace="{ns}", container!=""}}[1m])) / sum(rate(container_cpu_cfs_periods_total{{namespace="{ns}", container!=""}}[1m]))"#
    );
    let high = wait_for(
        "real throttling above 25% on the 2 replicas",
        120,
        || async {
            rn.query(&throttled)
                .await
                .first()
                .map(|(_, v)| *v)
                .filter(|v| *v > 0.25)
        },
    )
    .await;

    let r = wait_phase(&rn.env, ns, Phase::Succeeded, 300).await;
    let s = r.status.clone().unwrap();
    assert_eq!(s.attempts[0].from_replicas, Some(2));
    assert_eq!(s.attempts[0].to_replicas, Some(6));
    let dep = Api::<Deployment>::namespaced(rn.env.client.clone(), ns)
        .get("api")
        .await
        .unwrap();
    let replicas = dep.spec.unwrap().replicas.unwrap();
    assert!(
        (3..=6).contains(&replicas),
        "scaled within bounds: {replicas}"
    );
    let low = rn
        .query(&throttled)
        .await
        .first()
        .map(|(_, v)| *v)
        .unwrap_or(f64::NAN);
    assert!(
        low < high / 2.0,
        "throttling fell after the scale-out: {high:.2} -> {low:.2}"
    );
    println!("FIGURE real_contention_throttled_ratio before={high:.2} after={low:.2}");
    figures("contention", onset, &r);
    rn.record("contention", ns, t0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_leak_is_restarted_before_the_kernel_oom_kills_it() {
    let rn = Real::get().await;
    let ns = "rn-leak";
    rn.fresh(ns).await;
    let t0 = Timestamp::now();
    rn.deploy(ns, "cache", 2, "200m", "160Mi", &[("MODE", "idle")])
        .await;
    let before = running_pods(&rn.env, ns, "cache").await;
    let (leaker, _) = before[0].clone();
    let faults = format!(
        "{CRASHLOOP_GUARD}\n  - name: leak\n    pattern: MemoryLeak\n    for: 30s\n    params: {{warmup: 10s, horizon: 10m}}\n    action: {{type: RestartPod}}"
    );
    apply_policy(&rn.env, ns, &real_policy("cache", &faults, GUARDS))
        .await
        .expect("policy accepted");
    // 1 MiB/s towards a 160Mi limit: the kernel would OOM-kill it after about 2.5 minutes.
    rn.set(
        ns,
        "cache",
        &format!("{leaker}.env"),
        "MODE=leak\nLEAK_RATE=1Mi\n",
    );
    let onset = Timestamp::now();

    let r = wait_phase(&rn.env, ns, Phase::Succeeded, 300).await;
    let s = r.status.clone().unwrap();
    assert_eq!(
        r.spec.pods,
        vec![leaker.clone()],
        "the leaking pod is the one implicated"
    );
    assert_eq!(s.attempts[0].result, AttemptResult::Applied);
    assert!(s.attempts[0].pods[0].starts_with(&format!("{leaker}/")));
    let after = running_pods(&rn.env, ns, "cache").await;
    assert!(
        !after.iter().any(|(n, _)| *n == leaker),
        "the leaking pod was replaced"
    );
    // Not OOM-killed: no restart of the leaker and no OOMKilled termination, per kube-state-metrics.
    let restarts = rn
        .per_pod(&format!(
            r#"max_over_time(kube_pod_container_status_restarts_total{{namespace="{ns}"}}[15m])"#
        ))
        .await;
    assert_eq!(
        restarts.get(&leaker).copied(),
        Some(0.0),
        "the leaker never restarted: {restarts:?}"
    );
    let oom = rn
        .query(&format!(r#"max_over_time(kube_pod_container_status_last_terminated_reason{{namespace="{ns}", reason="OOMKilled"}}[15m])"#))
        .await;
    assert!(oom.is_empty(), "no OOMKilled termination: {oom:?}");
    let peak = rn
        .per_pod(&format!(r#"max_over_time(container_memory_working_set_bytes{{namespace="{ns}", container!=""}}[15m])"#))
        .await;
    let p = peak.get(&leaker).copied().unwrap_or_default();
    assert!(
        p > 20.0 * 1048576.0,
        "the leaker's working set grew: {:.0} MiB",
        p / 1048576.0
    );
    println!(
        "FIGURE real_leak_peak_working_set_mib value={:.0} limit_mib=160",
        p / 1048576.0
    );
    figures("leak", onset, &r);
    rn.record("leak", ns, t0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_crash_loop_is_escalated_with_no_restart_and_no_scale() {
    let rn = Real::get().await;
    let ns = "rn-crashloop";
    rn.fresh(ns).await;
    let t0 = Timestamp::now();
    rn.deploy(
        ns,
        "worker",
        2,
        "100m",
        "32Mi",
        &[("MODE", "crash"), ("CRASH_AFTER", "3s")],
    )
    .await;
    let onset = Timestamp::now();
    let before = running_pods(&rn.env, ns, "worker").await;
    let faults = format!(
        "{CRASHLOOP_GUARD}\n    action: {{type: Escalate}}\n  - name: runaway\n    pattern: RunawayProcess\n    for: 30s\n    params: {{warmup: 10s}}\n    action: {{type: RestartPod}}"
    );
    apply_policy(&rn.env, ns, &real_policy("worker", &faults, GUARDS))
        .await
        .expect("policy accepted");
    let r = wait_phase(&rn.env, ns, Phase::Escalated, 300).await;
    assert_eq!(r.spec.fault, "crashloop");
    assert_eq!(r.spec.action.type_, ActionType::Escalate);
    assert!(
        r.status.clone().unwrap().attempts.is_empty(),
        "no action on a crash loop"
    );
    // The kubelet's back-off is real: CrashLoopBackOff per kube-state-metrics.
    let backoff = rn
        .query(&format!(
            r#"max_over_time(kube_pod_container_status_waiting_reason{{namespace="{ns}", reason="CrashLoopBackOff"}}[10m])"#
        ))
        .await;
    assert!(
        !backoff.is_empty(),
        "kube-state-metrics saw CrashLoopBackOff"
    );
    // Keep watching: nothing restarted by the operator, nothing scaled.
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let pods: Vec<String> = Api::<Pod>::namespaced(rn.env.client.clone(), ns)
            .list(&ListParams::default().labels("app=worker"))
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        let mut want: Vec<String> = before.iter().map(|p| p.0.clone()).collect();
        want.sort();
        let mut got = pods;
        got.sort();
        assert_eq!(got, want, "the same pods: none evicted");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let dep = Api::<Deployment>::namespaced(rn.env.client.clone(), ns)
        .get("worker")
        .await
        .unwrap();
    assert_eq!(dep.spec.unwrap().replicas, Some(2), "not scaled");
    assert_eq!(remediations(&rn.env, ns).await.len(), 1, "one escalation");
    figures("crashloop", onset, &r);
    rn.record("crashloop", ns, t0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_short_burst_and_healthy_workload_get_no_remediation() {
    let rn = Real::get().await;
    let t0 = Timestamp::now();
    let cases = [("rn-healthy", "calm"), ("rn-burst", "spiky")];
    // The operator's rate window is 1m (cAdvisor updates every 10-20 s), which stretches a 30 s
    // burst into about 90 s of elevated signal: `for: 2m` is what "short" is measured against.
    // (With a 60 s burst and `for: 90s` a contention incident opened: 60 s + the window > 90 s.)
    let contention = r#"
  - name: contention
    pattern: ResourceContention
    for: 2m
    params: {warmup: 10s}
    action: {type: Scale, scale: {step: 1, maxReplicas: 5}}
  - name: runaway
    pattern: RunawayProcess
    for: 2m
    params: {warmup: 10s}
    action: {type: RestartPod}"#;
    for (ns, name) in cases {
        rn.fresh(ns).await;
        rn.deploy(ns, name, 3, "100m", "64Mi", &[("MODE", "idle")])
            .await;
        apply_policy(
            &rn.env,
            ns,
            &real_policy(name, &format!("{CRASHLOOP_GUARD}{contention}"), GUARDS),
        )
        .await
        .expect("policy accepted");
    }
    // Past the warmup, every "spiky" replica spins at its limit for 30 s.
    tokio::time::sleep(Duration::from_secs(20)).await;
    rn.set(
        "rn-burst",
        "spiky",
        "default.env",
        "MODE=spin\nTHREADS=1\nSPIN_FOR=30s\n",
    );
    // Status is written only when it changes, so the installed operator's own counter (scraped by
    // the same Prometheus) shows that evaluations went on during the window.
    let evaluations = || async {
        rn.query("sum(homeostat_evaluations_total)")
            .await
            .first()
            .map_or(0.0, |s| s.1)
    };
    let before = evaluations().await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(180) {
        for (ns, _) in cases {
            let r = remediations(&rn.env, ns).await;
            assert!(
                r.is_empty(),
                "no incident in {ns}: {:?}",
                r.iter().map(|r| &r.spec).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let seen = evaluations().await - before;
    assert!(
        seen >= 10.0,
        "the installed operator kept evaluating ({seen} evaluations in the window)"
    );
    for (ns, name) in cases {
        let p = policy(&rn.env, ns, name).await;
        let verdicts = p
            .status
            .as_ref()
            .and_then(|s| s.last_evaluation.as_ref())
            .map_or(0, |e| e.verdicts.len());
        assert_eq!(
            verdicts, 3,
            "{ns}/{name} evaluated: every fault has a verdict"
        );
        assert_eq!(
            ready(&p).map(|r| r.0),
            Some("True".into()),
            "{ns}/{name} Ready"
        );
    }
    // The burst was real: the spiky pods ran near their limit and were throttled for a while.
    let peak = rn
        .query(r#"max(max_over_time(sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="rn-burst", container!=""}[1m]))[4m:5s]))"#)
        .await;
    let p = peak.first().map(|(_, v)| *v).unwrap_or_default();
    assert!(
        p > 0.03,
        "the burst showed in the 1m rate (half the 100m limit at most): {p:.3} cores"
    );
    println!("FIGURE real_burst_peak_cores value={p:.3} limit=0.1");
    for (ns, name) in cases {
        let pol = policy(&rn.env, ns, name).await;
        assert_eq!(
            ready(&pol).map(|r| r.0),
            Some("True".into()),
            "{ns}/{name} Ready: {:?}",
            pol.status
        );
    }
    rn.record("burst", "rn-burst", t0).await;
    rn.record("healthy", "rn-healthy", t0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_runs_as_two_pods_from_its_chart_and_is_scraped() {
    let rn = Real::get().await;
    let ns = std::env::var("HOMEOSTAT_E2E_RELEASE_NAMESPACE").unwrap();
    let release = std::env::var("HOMEOSTAT_E2E_REAL_RELEASE").unwrap();
    let pods = Api::<Pod>::namespaced(rn.env.client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 2, "two operator replicas");
    for p in &pods {
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            spec.node_name.as_deref(),
            std::env::var("HOMEOSTAT_E2E_REAL_NODE_NAME")
                .ok()
                .as_deref()
        );
        let c = &spec.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_user, Some(65532));
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert!(ready, "{} Ready (its readiness probe passes)", p.name_any());
    }
    let up = wait_for("Prometheus scraping both operator pods", 60, || async {
        let v = rn.query(r#"up{job="homeostat-operator"} == 1"#).await;
        (v.len() == 2).then_some(v)
    })
    .await;
    println!(
        "operator targets up: {:?}",
        up.iter().map(|(l, _)| l.get("pod")).collect::<Vec<_>>()
    );
    let _ = rn.events(&ns).await;
}
