//! ResizePod on the real node: a CPU-throttled Guaranteed pod (a real process under a real CFS
//! quota on the kubelet + containerd node) is resized in place through `pods/resize` by the
//! operator installed from charts/homeostat. Throttling falls in the real cAdvisor series, the pod
//! is not restarted, and the time from the resize request to the kubelet actuating it is printed.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use homeostat::v1alpha1::{ActionType, AttemptResult, Phase, RemediationPolicy};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{Api, ResourceExt, api::ListParams};
use support::{real::*, *};

/// A pod's container `app`: (spec cpu limit, spec cpu request, actuated cpu limit, restarts,
/// resize conditions).
fn view(p: &Pod) -> (String, String, String, i32, Vec<String>) {
    let c = &p.spec.as_ref().unwrap().containers[0];
    let r = c.resources.as_ref().unwrap();
    let q =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.as_ref()
                .and_then(|m| m.get("cpu"))
                .map(|q| q.0.clone())
                .unwrap_or_default()
        };
    let st = p.status.as_ref();
    let cs = st
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|v| v.first());
    let actuated = cs
        .and_then(|c| c.resources.as_ref())
        .map(|r| q(&r.limits))
        .unwrap_or_default();
    let conditions = st
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.type_.starts_with("PodResize") && c.status == "True")
        .map(|c| format!("{} {}", c.type_, c.reason.clone().unwrap_or_default()))
        .collect();
    (
        q(&r.limits),
        q(&r.requests),
        actuated,
        cs.map(|c| c.restart_count).unwrap_or(-1),
        conditions,
    )
}

/// When a pod's spec was first seen resized, and when the kubelet first reported it actuated.
type Seen = (Option<Instant>, Option<Instant>);

#[tokio::test(flavor = "multi_thread")]
async fn real_throttled_pod_is_resized_in_place_without_restart() {
    let rn = Real::get().await;
    let ns = "rn-resize";
    rn.fresh(ns).await;
    // 600m of work shared by 2 replicas (300m each) under a 200m Guaranteed quota: throttled in
    // most CFS periods. Resized to 500m in place, 300m is no longer throttled.
    rn.deploy_with(
        ns,
        "cpu",
        2,
        ("200m", "64Mi"),
        ("200m", "64Mi"),
        &[("MODE", "shared"), ("TOTAL", "600")],
    )
    .await;
    let pods = Api::<Pod>::namespaced(rn.env.client.clone(), ns);
    let lp = ListParams::default().labels("app=cpu");
    let before: BTreeMap<String, (String, i32)> = pods
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| (p.name_any(), (p.uid().unwrap(), view(p).3)))
        .collect();
    assert_eq!(before.len(), 2);
    let faults = r#"  - name: contention
    pattern: ResourceContention
    for: 30s
    params: {warmup: 10s}
    action:
      type: ResizePod
      resize: {cpu: {factor: 2.5, max: "1"}, fallback: Escalate}"#;
    apply_policy(&rn.env, ns, &real_policy("cpu", faults, GUARDS))
        .await
        .expect("policy accepted");
    let throttled = format!(
        r#"sum(rate(container_cpu_cfs_throttled_periods_total{{namespace="{ns}", container!=""}}[1m])) / sum(rate(container_cpu_cfs_periods_total{{namespace="{ns}", container!=""}}[1m]))"#
    );
    let high = wait_for(
        "real throttling above 25% on the 2 Guaranteed replicas",
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

    // Watch the pods closely: when their spec changes (the resize request reached the
    // apiserver) and when the kubelet reports the new limit with no resize condition left.
    let times: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
    let watcher = {
        let (pods, lp, times) = (pods.clone(), lp.clone(), times.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(l) = pods.list(&lp).await {
                    let now = Instant::now();
                    let mut t = times.lock().unwrap();
                    for p in &l.items {
                        let (spec, _, actuated, _, conds) = view(p);
                        let e = t.entry(p.name_any()).or_default();
                        if spec != "200m" && e.0.is_none() {
                            e.0 = Some(now);
                        }
                        if e.0.is_some() && e.1.is_none() && actuated == spec && conds.is_empty() {
                            e.1 = Some(now);
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };

    let r = wait_phase(&rn.env, ns, Phase::Succeeded, 300).await;
    watcher.abort();
    let s = r.status.clone().unwrap();
    assert_eq!(r.spec.action.type_, ActionType::ResizePod);
    let a = &s.attempts[0];
    assert_eq!(
        (a.action, a.result),
        (ActionType::ResizePod, AttemptResult::Applied),
        "{s:?}"
    );
    let change = a.resize.as_ref().expect("the attempt records the resize");
    for p in &change.pods {
        for c in &p.containers {
            assert_eq!(c.from.cpu_limit.as_deref(), Some("200m"));
            assert_eq!(c.to.cpu_limit.as_deref(), Some("500m"), "200m x 2.5");
            assert_eq!(
                c.to.cpu_request, c.to.cpu_limit,
                "Guaranteed: the request moves with the limit"
            );
            assert_eq!(c.to.memory_limit, c.from.memory_limit, "memory untouched");
        }
    }
    assert!(
        s.template_drift
            .as_deref()
            .is_some_and(|d| d.contains("more than their workload's template")),
        "the incident says the pods drift from their template: {s:?}"
    );

    // The policy status says it too, naming the live resized pods.
    let policies = Api::<RemediationPolicy>::namespaced(rn.env.client.clone(), ns);
    let drift = wait_for(
        "the policy status to report the template drift",
        60,
        || async {
            policies
                .get("cpu")
                .await
                .ok()?
                .status?
                .targets
                .first()?
                .template_drift
                .clone()
        },
    )
    .await;
    for p in &change.pods {
        assert!(drift.contains(&p.pod), "{drift}");
    }

    // Same pods, not restarted, still Guaranteed, running with the new limit; the template is
    // unchanged (replacements get 200m).
    let after = pods.list(&lp).await.unwrap().items;
    for p in &after {
        let (spec, req, actuated, restarts, conds) = view(p);
        let name = p.name_any();
        let (uid, restarts0) = before
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is a new pod: the resize replaced a pod"));
        assert_eq!(p.uid().as_deref(), Some(uid.as_str()), "{name}: same pod");
        assert_eq!(restarts, *restarts0, "{name}: restart count unchanged");
        assert_eq!((spec.as_str(), req.as_str()), ("500m", "500m"), "{name}");
        assert_eq!(actuated, "500m", "{name}: the kubelet actuated the resize");
        assert!(
            conds.is_empty(),
            "{name}: no resize condition left: {conds:?}"
        );
        assert_eq!(
            p.status.as_ref().and_then(|s| s.qos_class.as_deref()),
            Some("Guaranteed"),
            "{name}"
        );
    }
    assert_eq!(after.len(), 2);
    let dep = Api::<Deployment>::namespaced(rn.env.client.clone(), ns)
        .get("cpu")
        .await
        .unwrap();
    let tpl = dep.spec.unwrap().template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(
        tpl.limits.unwrap().get("cpu").map(|q| q.0.as_str()),
        Some("200m"),
        "the template is not patched"
    );

    // The real cAdvisor series: the real quota is now 50000 per 100000 period, and throttling
    // falls (waited on: the 1m rate window still holds throttled periods from before).
    let names: Vec<String> = after.iter().map(|p| p.name_any()).collect();
    let q =
        format!(r#"max by (pod) (container_spec_cpu_quota{{namespace="{ns}", container="app"}})"#);
    let quota = wait_for("cAdvisor to show a CFS quota of 50000", 60, || async {
        let quota = rn.per_pod(&q).await;
        names
            .iter()
            .all(|n| quota.get(n).copied() == Some(50000.0))
            .then_some(quota)
    })
    .await;
    println!("resized quotas: {quota:?}");
    let low = wait_for("throttling below half its peak", 120, || async {
        rn.query(&throttled)
            .await
            .first()
            .map(|(_, v)| *v)
            .filter(|v| *v < high / 2.0)
    })
    .await;
    println!("FIGURE real_resize_throttled_ratio before={high:.2} after={low:.2}");
    let t = times.lock().unwrap().clone();
    for (pod, (req, act)) in &t {
        if let (Some(req), Some(act)) = (req, act) {
            println!(
                "FIGURE real_resize_request_to_actuated_seconds pod={pod} value={:.2}",
                act.duration_since(*req).as_secs_f64()
            );
        } else {
            println!(
                "FIGURE real_resize_request_to_actuated_seconds pod={pod} value=unobserved ({req:?}, {act:?})"
            );
        }
    }
    if let Some(applied) = a.applied_at.as_ref() {
        println!(
            "FIGURE real_resize_decision_to_applied_seconds value={:.1}",
            applied.0.duration_since(a.started_at.0).as_secs_f64()
        );
    }
    println!("resize attempt: {}", a.message);
}
