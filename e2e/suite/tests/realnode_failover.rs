//! Failover of the installed operator on the real node: the leader replica's process is killed
//! (SIGKILL through containerd, as the OOM killer or a node crash would: no graceful shutdown, no
//! Lease release) while a real runaway replica is building up, and its pod object is removed at
//! once so the kubelet does not restart it in place (the restarted process would carry the same
//! identity and simply renew its own Lease). Another replica takes the Lease and heals the fault,
//! acting once; Prometheus (kubernetes_sd) finds and scrapes the replacement pod. A binary of its
//! own, run after `realnode`, so the takeover does not disturb the other real-node scenarios.
#![allow(clippy::unwrap_used)]

mod support;

use std::{process::Command, time::Instant};

use homeostat::v1alpha1::{AttemptResult, Phase};
use jiff::Timestamp;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Pod};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
};
use support::{real::*, *};

/// The containerd id of a pod's first container.
fn container_id(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .container_id
        .as_deref()?
        .strip_prefix("containerd://")
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn real_leader_killed_mid_incident_another_replica_takes_over_and_acts_once() {
    let rn = Real::get().await;
    let ns = "rn-failover";
    rn.fresh(ns).await;
    let release_ns = std::env::var("HOMEOSTAT_E2E_RELEASE_NAMESPACE").unwrap();
    let release = std::env::var("HOMEOSTAT_E2E_REAL_RELEASE").unwrap();
    let sock = std::env::var("HOMEOSTAT_E2E_CONTAINERD_SOCK").unwrap();
    let lease_name = format!("{release}-leader");
    let leases = Api::<Lease>::namespaced(rn.env.client.clone(), &release_ns);
    let pods_api = Api::<Pod>::namespaced(rn.env.client.clone(), &release_ns);
    let selector = format!("app.kubernetes.io/instance={release}");
    let holder = || async {
        leases
            .get_opt(&lease_name)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| !h.is_empty())
    };
    let leader = wait_for("a leader of the installed operator", 60, holder).await;
    let operator_pods = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items;
    assert_eq!(operator_pods.len(), 2, "two operator replicas");
    let leader_pod = operator_pods
        .iter()
        .find(|p| leader.starts_with(&p.name_any()))
        .unwrap_or_else(|| panic!("the Lease holder {leader:?} is one of the operator pods"))
        .clone();
    let standby = operator_pods
        .iter()
        .find(|p| p.name_any() != leader_pod.name_any())
        .unwrap()
        .name_any();

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
    rn.set(
        ns,
        "web",
        &format!("{runaway}.env"),
        "MODE=spin\nTHREADS=2\n",
    );
    let onset = Timestamp::now();
    // Mid-scenario: the fault is building up towards its `for: 30s`; nothing is done yet.
    wait_for("the runaway pod's CPU in Prometheus", 90, || async {
        let q = format!(
            r#"sum(rate(container_cpu_usage_seconds_total{{namespace="{ns}", pod="{runaway}", container!=""}}[1m]))"#
        );
        rn.query(&q)
            .await
            .first()
            .is_some_and(|x| x.1 > 0.1)
            .then_some(())
    })
    .await;
    assert!(
        remediations(&rn.env, ns).await.is_empty(),
        "killed before any incident opened"
    );

    let standby_before = applied_actions(&rn, &standby).await;
    // SIGKILL the leader's process through containerd: no graceful shutdown, no Lease release.
    let id = container_id(&leader_pod).expect("the leader's container id");
    let out = Command::new("ctr")
        .args([
            "--address",
            &sock,
            "--namespace",
            "k8s.io",
            "task",
            "kill",
            "--signal",
            "SIGKILL",
            &id,
        ])
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr task kill {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let killed = Instant::now();
    pods_api
        .delete(
            &leader_pod.name_any(),
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    let new_holder = wait_for("another replica taking the Lease", 90, || async {
        holder().await.filter(|h| *h != leader)
    })
    .await;
    let takeover = killed.elapsed().as_secs_f64();
    let by = if new_holder.starts_with(&standby) {
        "standby"
    } else {
        "replacement"
    };
    println!("FIGURE real_operator_takeover_seconds value={takeover:.1} lease_duration=10 by={by}");
    assert!(
        !new_holder.starts_with(&leader_pod.name_any()),
        "the killed replica does not hold the Lease: {new_holder}"
    );

    let r = wait_phase(&rn.env, ns, Phase::Succeeded, 300).await;
    let s = r.status.clone().unwrap();
    assert_eq!(r.spec.pods, vec![runaway.clone()]);
    assert_eq!(s.attempts.len(), 1, "acted once: {s:?}");
    assert_eq!(s.attempts[0].result, AttemptResult::Applied);
    let after = running_pods(&rn.env, ns, "web").await;
    assert!(!after.iter().any(|(n, _)| *n == runaway), "runaway evicted");
    for p in &before[1..] {
        assert!(after.contains(p), "sibling {} untouched", p.0);
    }
    assert_eq!(remediations(&rn.env, ns).await.len(), 1, "one incident");
    if let Some(applied) = s.attempts[0].applied_at.as_ref() {
        println!(
            "FIGURE real_detection_to_action_seconds scenario=failover value={:.1}",
            applied.0.duration_since(onset).as_secs_f64()
        );
    }
    // The replacement pod (new name, new IP) is found and scraped by Prometheus' kubernetes_sd.
    let replacement = wait_for("a replacement operator pod", 120, || async {
        pods_api
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?
            .items
            .into_iter()
            .map(|p| p.name_any())
            .find(|n| *n != leader_pod.name_any() && *n != standby)
    })
    .await;
    wait_for("Prometheus scraping the replacement pod", 120, || async {
        let q = format!(r#"up{{job="homeostat-operator", pod="{replacement}"}} == 1"#);
        (!rn.query(&q).await.is_empty()).then_some(())
    })
    .await;
    // From the pod's creation to its first scrape: service discovery, not a file written once.
    let created = pods_api
        .get(&replacement)
        .await
        .unwrap()
        .metadata
        .creation_timestamp
        .unwrap()
        .0;
    let q = format!(
        r#"min_over_time(timestamp(up{{job="homeostat-operator", pod="{replacement}"}})[10m:1s])"#
    );
    if let Some((_, first)) = rn.query(&q).await.first() {
        println!(
            "FIGURE real_operator_new_pod_first_scrape_seconds value={:.1}",
            first - created.as_millisecond() as f64 / 1000.0
        );
    }

    // Prometheus: the new leader's own metrics count the eviction, once (the counter is not per
    // namespace: this holds because this binary runs alone, after the other real-node scenarios).
    let leader_now = if by == "standby" {
        standby.clone()
    } else {
        replacement.clone()
    };
    let base = if by == "standby" { standby_before } else { 0.0 };
    let applied = wait_for(
        "the new leader's metrics counting the eviction",
        60,
        || async {
            let v = applied_actions(&rn, &leader_now).await;
            (v > base).then_some(v)
        },
    )
    .await;
    assert_eq!(
        applied - base,
        1.0,
        "the new leader ({leader_now}) applied exactly one action"
    );
}

/// Actions the operator pod `pod` applied, from its own metrics in Prometheus.
async fn applied_actions(rn: &Real, pod: &str) -> f64 {
    let q = format!(
        r#"sum(homeostat_actions_total{{job="homeostat-operator", pod="{pod}", result="applied"}})"#
    );
    rn.query(&q).await.first().map_or(0.0, |x| x.1)
}
