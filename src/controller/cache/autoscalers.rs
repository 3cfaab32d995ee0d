//! The autoscalers the caches know of: HPAs (watched like every other kind) and KEDA
//! ScaledObjects (watched only once their CRD is served), indexed by the workload they scale.

use std::collections::HashMap;

use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject},
    runtime::{
        WatchStreamExt,
        reflector::{Store, store::Writer},
        watcher,
    },
};
use tracing::{info, warn};

use crate::{
    remediation::owners::{self, Autoscaler},
    v1alpha1::WorkloadKind,
};

/// Keeps what the index reads of an HPA: its target, bounds, owners, the managedFields entries
/// owning `spec.minReplicas`, and its GitOps tracking marks.
pub(super) fn prune_hpa(h: &mut HorizontalPodAutoscaler) {
    owners::prune_managed(&mut h.metadata.managed_fields, "minReplicas");
    // Only the GitOps tracking marks are read.
    for m in [&mut h.metadata.annotations, &mut h.metadata.labels] {
        if let Some(map) = m.as_mut() {
            map.retain(|k, _| owners::GITOPS_TRACKING.contains(&k.as_str()));
        }
    }
    h.status = None;
    if let Some(s) = h.spec.as_mut() {
        s.metrics = None;
        s.behavior = None;
    }
}

/// KEDA ScaledObjects, served by a CRD that may not be installed.
pub(super) fn scaled_object_resource() -> ApiResource {
    ApiResource {
        group: "keda.sh".into(),
        version: "v1alpha1".into(),
        api_version: "keda.sh/v1alpha1".into(),
        kind: "ScaledObject".into(),
        plural: "scaledobjects".into(),
    }
}

/// How often to look again for the ScaledObject CRD while it is not served.
const KEDA_RECHECK: std::time::Duration = std::time::Duration::from_secs(300);

/// Watches ScaledObjects once the apiserver serves them: until then (KEDA not installed) the
/// store stays empty, which means none, and discovery is asked again every [`KEDA_RECHECK`].
pub(super) fn watch_scaled_objects(
    client: Client,
    api: Api<DynamicObject>,
    writer: Writer<DynamicObject>,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let ar = scaled_object_resource();
        loop {
            match client.list_api_group_resources(&ar.api_version).await {
                Ok(list) if list.resources.iter().any(|r| r.name == ar.plural) => break,
                Ok(_) => {}
                Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 404) => {}
                Err(e) => {
                    warn!(error = %e, "cannot tell whether KEDA ScaledObjects are served; asking again in {}s (until then none are assumed)", KEDA_RECHECK.as_secs());
                }
            }
            tokio::time::sleep(KEDA_RECHECK).await;
        }
        info!("KEDA ScaledObjects are served: watching them (a Scale is refused on their targets)");
        let stream = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(|o: &mut DynamicObject| {
                o.metadata.managed_fields = None;
                o.metadata.annotations = None;
                o.metadata.labels = None;
                let target = o.data.pointer("/spec/scaleTargetRef").cloned();
                o.data = serde_json::json!({"spec": {"scaleTargetRef": target}});
            })
            .reflect(writer);
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                warn!(kind = "ScaledObject", error = %e, "watch failed; retrying with backoff (the cache keeps its last state)");
            }
        }
    })
}

/// The autoscalers naming each workload: HPAs (with the ScaledObject that made one, if KEDA
/// did) and ScaledObjects.
pub(super) fn index(
    hpas: &[Store<HorizontalPodAutoscaler>],
    scaled_objects: &[Store<DynamicObject>],
) -> HashMap<(String, WorkloadKind, String), Vec<Autoscaler>> {
    let mut out: HashMap<(String, WorkloadKind, String), Vec<Autoscaler>> = HashMap::new();
    for s in hpas {
        for h in s.state() {
            let (Some(ns), Some(spec)) = (h.namespace(), h.spec.as_ref()) else {
                continue;
            };
            let r = &spec.scale_target_ref;
            let Some(kind) = workload_kind(r.api_version.as_deref(), &r.kind) else {
                continue;
            };
            let keda = h
                .owner_references()
                .iter()
                .find(|o| o.kind == "ScaledObject" && o.api_version.starts_with("keda.sh/"))
                .map(|o| o.name.clone());
            let min_owned_by = h.metadata.managed_fields.as_deref().and_then(|m| {
                let marks = h.labels().keys().chain(h.annotations().keys());
                owners::gitops_owner(m, "minReplicas", marks.map(String::as_str))
            });
            out.entry((ns, kind, r.name.clone()))
                .or_default()
                .push(Autoscaler::Hpa {
                    hpa: owners::Hpa {
                        name: h.name_any(),
                        min_replicas: spec.min_replicas,
                        max_replicas: spec.max_replicas,
                        min_owned_by,
                    },
                    keda,
                });
        }
    }
    for s in scaled_objects {
        for o in s.state() {
            let Some(ns) = o.namespace() else { continue };
            let r = o.data.pointer("/spec/scaleTargetRef");
            let name = r.and_then(|r| r.get("name")).and_then(|n| n.as_str());
            // KEDA's default target kind is a Deployment.
            let kind = r.and_then(|r| r.get("kind")).and_then(|k| k.as_str());
            let api_version = r.and_then(|r| r.get("apiVersion")).and_then(|k| k.as_str());
            let (Some(name), Some(kind)) = (
                name,
                workload_kind(api_version, kind.unwrap_or("Deployment")),
            ) else {
                continue;
            };
            out.entry((ns, kind, name.to_string()))
                .or_default()
                .push(Autoscaler::ScaledObject(o.name_any()));
        }
    }
    out
}

/// The workload kind an autoscaler's target reference names, if homeostat handles it.
fn workload_kind(api_version: Option<&str>, kind: &str) -> Option<WorkloadKind> {
    let apps = api_version.is_none_or(|v| v.starts_with("apps/"));
    match kind {
        "Deployment" if apps => Some(WorkloadKind::Deployment),
        "StatefulSet" if apps => Some(WorkloadKind::StatefulSet),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;

    use super::*;
    use crate::remediation::owners::{ReplicasOwner, resolve};

    fn hpa(name: &str, target: &str, keda: Option<&str>) -> HorizontalPodAutoscaler {
        let owners = keda.map(|k| {
            serde_json::json!([{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "name": k, "uid": "u", "controller": true}])
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "ownerReferences": owners,
                "managedFields": [{"manager": "argocd-controller", "operation": "Apply",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:minReplicas": {}}}}]},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": 2, "maxReplicas": 6}
        }))
        .expect("an HPA")
    }

    #[test]
    fn autoscalers_are_indexed_by_the_workload_they_scale() {
        let (hr, mut hw) = reflector::store::<HorizontalPodAutoscaler>();
        let mut plain = hpa("web", "web", None);
        prune_hpa(&mut plain);
        hw.apply_watcher_event(&watcher::Event::Apply(plain));
        hw.apply_watcher_event(&watcher::Event::Apply(hpa(
            "keda-hpa-api",
            "api",
            Some("api"),
        )));
        let mut sw = Writer::new(scaled_object_resource());
        let sr = sw.as_reader();
        let so: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "api", "namespace": "ns"},
            "spec": {"scaleTargetRef": {"name": "api"}}
        }))
        .expect("a ScaledObject");
        sw.apply_watcher_event(&watcher::Event::Apply(so));
        let idx = index(&[hr], &[sr]);
        let key = |n: &str| ("ns".to_string(), WorkloadKind::Deployment, n.to_string());
        match resolve(&idx[&key("web")], None) {
            ReplicasOwner::Hpa(h) => {
                assert_eq!((h.min_replicas, h.max_replicas), (Some(2), 6));
                assert_eq!(
                    h.min_owned_by.as_deref(),
                    Some("field manager argocd-controller"),
                    "the pruned HPA still tells who owns minReplicas"
                );
            }
            other => panic!("web: {other:?}"),
        }
        // The ScaledObject and the HPA KEDA made for it are one owner.
        assert_eq!(
            resolve(&idx[&key("api")], None),
            ReplicasOwner::Keda("api".into())
        );
        assert_eq!(
            workload_kind(Some("apps/v1"), "StatefulSet"),
            Some(WorkloadKind::StatefulSet)
        );
        assert_eq!(workload_kind(Some("argoproj.io/v1alpha1"), "Rollout"), None);
    }
}
