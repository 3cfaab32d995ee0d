//! Scale and the owner of `spec.replicas`, end to end: through a real HorizontalPodAutoscaler
//! (kube-controller-manager's HPA controller, no metrics API), and refused under a GitOps tool and
//! under KEDA. Each test has its own namespace and operator.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use homeostat::v1alpha1::{AttemptResult, Phase, RemediationPolicy};
use k8s_openapi::{
    api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler, events::v1::Event},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use support::*;

/// A contention workload (2 pods, load 3: sick until it has 4) and a Scale policy (step 2, at most 5).
async fn contention(env: &Env, ns: &str) -> Deployment {
    deploy(
        env,
        ns,
        "api",
        2,
        "contention",
        &[("load", "3"), ("sick-after", "0s")],
    )
    .await
}

async fn scale_policy(env: &Env, ns: &str) {
    let faults = r#"  - name: contention
    pattern: ResourceContention
    for: 30s
    params: {warmup: 10s}
    action: {type: Scale, scale: {step: 2, maxReplicas: 5}}"#;
    apply_policy(env, ns, &policy_yaml("api", "api", faults, FAST_GUARDS))
        .await
        .expect("policy accepted");
}

/// Every `spec.replicas` the Deployment had, in order, with when the watch saw it.
type History = Arc<Mutex<Vec<(i32, jiff::Timestamp)>>>;

/// The replicas history of a Deployment, from a watch started now.
fn replicas_history(env: &Env, ns: &str, name: &str) -> History {
    let seen: History = Arc::new(Mutex::new(vec![]));
    let api = Api::<Deployment>::namespaced(env.client.clone(), ns);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let out = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(api, cfg).applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(d)) = stream.next().await {
            let r = d.spec.and_then(|s| s.replicas).unwrap_or(1);
            let mut v = out.lock().unwrap();
            if v.last().map(|(n, _)| *n) != Some(r) {
                v.push((r, jiff::Timestamp::now()));
            }
        }
    });
    seen
}

fn ready_message(p: &RemediationPolicy) -> (String, String, String) {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

fn held(p: &RemediationPolicy) -> Option<String> {
    p.status.as_ref()?.targets.first()?.held.clone()
}

/// The Events with `reason` about the policy `name`.
async fn events(env: &Env, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("RemediationPolicy")
        })
        .collect()
}

/// Waits until the policy holds its firing Scale with `reason`, then watches for 20 s that nothing
/// opens and the Deployment keeps its replicas and generation.
async fn refused(env: &Env, ns: &str, reason: &str, says: &str) {
    let d0 = Api::<Deployment>::namespaced(env.client.clone(), ns)
        .get("api")
        .await
        .unwrap();
    let p = wait_for(&format!("the Scale refused with {reason}"), 180, || async {
        let p = policy(env, ns, "api").await;
        (held(&p).as_deref() == Some(reason)).then_some(p)
    })
    .await;
    let (status, why, message) = ready_message(&p);
    assert_eq!((status.as_str(), why.as_str()), ("True", "ScaleRefused"));
    assert!(
        message.contains(reason) && message.contains(says),
        "{message}"
    );
    let ev = wait_for("a ScaleRefused Event on the policy", 60, || async {
        let ev = events(env, ns, "api", "ScaleRefused").await;
        (!ev.is_empty()).then_some(ev)
    })
    .await;
    let note = ev[0].note.clone().unwrap_or_default();
    assert!(note.contains(reason) || note.contains(says), "{note}");
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        assert!(
            remediations(env, ns).await.is_empty(),
            "a refused Scale opens no incident"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let d = Api::<Deployment>::namespaced(env.client.clone(), ns)
        .get("api")
        .await
        .unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2), "not scaled");
    assert_eq!(
        d.metadata.generation, d0.metadata.generation,
        "the Deployment's spec was not written"
    );
    assert_eq!(
        events(env, ns, "api", "ScaleRefused").await.len(),
        1,
        "one Event per refusal, not one per evaluation"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_under_an_hpa_raises_its_min_replicas_and_never_writes_replicas() {
    let _case = support::matrix::Case::asserted(
        "Scale with an HPA owning the replicas",
        "raise the HPA's minReplicas within bounds; never write spec.replicas",
        "throughHpa 2→4; homeostat owns only the HPA's minReplicas; spec.replicas written by kube-controller-manager only",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "hpa").await;
    contention(&env, &ns.name).await;
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]
        }
    }))
    .unwrap();
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(env.client.clone(), &ns.name);
    hpas.create(&PostParams::default(), &hpa).await.unwrap();
    let history = replicas_history(&env, &ns.name, "api");
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    scale_policy(&env, &ns.name).await;

    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 300).await;
    let a = &r.status.as_ref().unwrap().attempts[0];
    assert_eq!(a.result, AttemptResult::Applied);
    let change = a
        .through_hpa
        .clone()
        .expect("the Scale went through the HPA");
    assert_eq!(
        (
            change.name.as_str(),
            change.from_min_replicas,
            change.to_min_replicas
        ),
        ("api", Some(2), 4),
        "minReplicas 2 → 4 recorded in the attempt"
    );
    assert_eq!((a.from_replicas, a.to_replicas), (Some(2), Some(4)));

    // The HPA's floor went up, and homeostat owns that field (and only that one).
    let h = hpas.get("api").await.unwrap();
    let spec = h.spec.clone().unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(4), 6));
    let mine: Vec<_> = h
        .managed_fields()
        .iter()
        .filter(|m| m.manager.as_deref() == Some("homeostat"))
        .collect();
    assert_eq!(mine.len(), 1, "{:?}", h.managed_fields());
    let fields = mine[0].fields_v1.as_ref().unwrap().0.clone();
    assert_eq!(
        fields,
        serde_json::json!({"f:spec": {"f:minReplicas": {}}}),
        "homeostat changed spec.minReplicas only"
    );

    // The HPA controller, not homeostat, scaled the Deployment.
    let d = Api::<Deployment>::namespaced(env.client.clone(), &ns.name)
        .get("api")
        .await
        .unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(4));
    // The last writer of a field owns it (an Update takes it from the others): had homeostat
    // scaled 2 → 4 itself, it would own spec.replicas and the HPA would have had nothing to do.
    let owners: Vec<(Option<&str>, Option<&str>)> = d
        .managed_fields()
        .iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:replicas"))
                .is_some()
        })
        .map(|m| (m.manager.as_deref(), m.subresource.as_deref()))
        .collect();
    assert_eq!(
        owners,
        vec![(Some("kube-controller-manager"), Some("scale"))],
        "spec.replicas belongs to the HPA controller alone"
    );
    assert!(
        d.managed_fields()
            .iter()
            .all(|m| m.manager.as_deref() != Some("homeostat")),
        "homeostat never wrote the Deployment"
    );
    let seen = history.lock().unwrap().clone();
    let values: Vec<i32> = seen.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        values,
        vec![2, 4],
        "spec.replicas went 2 → 4 once, by the HPA"
    );
    let conds: Vec<String> = h
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| format!("{}={}({})", c.type_, c.status, c.reason.unwrap_or_default()))
        .collect();
    let applied = a.applied_at.as_ref().unwrap().0;
    println!(
        "FIGURE hpa_floor min_replicas=2->4 deployment_replicas={values:?} floor_to_scale_s={:.1} hpa_conditions={}",
        seen[1].1.duration_since(applied).as_secs_f64(),
        conds.join(",")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_of_gitops_owned_replicas_is_refused() {
    let _case = support::matrix::Case::asserted(
        "Scale of GitOps-owned replicas (kustomize-controller)",
        "refused with a reason, nothing written",
        "held ReplicasOwnedByGitOps, Ready ScaleRefused, one Event; no Remediation; generation unchanged",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "gitops").await;
    contention(&env, &ns.name).await;
    // Flux's kustomize-controller applies the manifest, replicas included (server-side apply).
    let manifest = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}},
        "spec": {"replicas": 2}
    });
    Api::<Deployment>::namespaced(env.client.clone(), &ns.name)
        .patch(
            "api",
            &PatchParams::apply("kustomize-controller").force(),
            &Patch::Apply(manifest),
        )
        .await
        .unwrap();
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    scale_policy(&env, &ns.name).await;
    refused(
        &env,
        &ns.name,
        "ReplicasOwnedByGitOps",
        "field manager kustomize-controller",
    )
    .await;
    println!("FIGURE gitops_refusal reason=ReplicasOwnedByGitOps incidents=0 replicas=2");
}

/// The ScaledObject CRD, reduced to what homeostat reads (the e2e cluster has no KEDA).
async fn keda_crd(env: &Env) {
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "scaledobjects.keda.sh"},
        "spec": {
            "group": "keda.sh",
            "names": {"kind": "ScaledObject", "plural": "scaledobjects", "singular": "scaledobject", "listKind": "ScaledObjectList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}
            }]
        }
    }))
    .unwrap();
    let api = Api::<CustomResourceDefinition>::all(env.client.clone());
    api.patch(
        "scaledobjects.keda.sh",
        &PatchParams::apply("homeostat-e2e").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap();
    wait_for("the ScaledObject CRD established", 60, || async {
        let c = api.get("scaledobjects.keda.sh").await.ok()?;
        c.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_of_a_keda_scaled_workload_is_refused() {
    let _case = support::matrix::Case::asserted(
        "Scale of a KEDA ScaledObject's workload",
        "refused with a reason, nothing written",
        "held ReplicasOwnedByKEDA; no Remediation; replicas unchanged",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "keda").await;
    keda_crd(&env).await;
    contention(&env, &ns.name).await;
    let ar = ApiResource {
        group: "keda.sh".into(),
        version: "v1alpha1".into(),
        api_version: "keda.sh/v1alpha1".into(),
        kind: "ScaledObject".into(),
        plural: "scaledobjects".into(),
    };
    let so: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "api-scaler"},
        "spec": {"scaleTargetRef": {"name": "api"}, "minReplicaCount": 2, "maxReplicaCount": 8,
                 "triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "80"}}]}
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(env.client.clone(), &ns.name, &ar)
        .create(&PostParams::default(), &so)
        .await
        .unwrap();
    let op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    scale_policy(&env, &ns.name).await;
    refused(
        &env,
        &ns.name,
        "ReplicasOwnedByKEDA",
        "ScaledObject api-scaler",
    )
    .await;
    assert!(
        op.log_text().contains("KEDA ScaledObjects are served"),
        "the operator found the CRD"
    );
    println!("FIGURE keda_refusal reason=ReplicasOwnedByKEDA incidents=0 replicas=2");
}
