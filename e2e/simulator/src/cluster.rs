//! Turns the watched Kubernetes objects into the simulator's view: every
//! Deployment carrying the scenario annotation with its Running pods (linked
//! Pod → ReplicaSet → Deployment through controller ownerReferences).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::exporter::{PodMeta, Resources};
use crate::quantity::parse_quantity;
use crate::scenario::{
    ANN_SCENARIO, DEFAULT_CPU_LIMIT_CORES, DEFAULT_MEMORY_LIMIT_BYTES, PodFacts,
};

/// A Running pod of a simulated Deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub meta: PodMeta,
    pub facts: PodFacts,
}

/// A Deployment carrying the scenario annotation, with its Running pods.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentView {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    pub pods: Vec<PodView>,
}

/// Builds the views of all annotated Deployments from reflector contents.
/// Deployments are sorted by namespace/name, pods by name.
pub fn snapshot(
    deployments: &[Arc<Deployment>],
    replicasets: &[Arc<ReplicaSet>],
    pods: &[Arc<Pod>],
) -> Vec<DeploymentView> {
    let mut views: BTreeMap<String, DeploymentView> = BTreeMap::new();
    for d in deployments {
        let m = &d.metadata;
        let annotations = m.annotations.clone().unwrap_or_default();
        if !annotations.contains_key(ANN_SCENARIO) {
            continue;
        }
        let (Some(uid), Some(name)) = (m.uid.clone(), m.name.clone()) else {
            continue;
        };
        views.insert(
            uid.clone(),
            DeploymentView {
                uid,
                namespace: m.namespace.clone().unwrap_or_default(),
                name,
                annotations,
                pods: Vec::new(),
            },
        );
    }

    // (namespace, replicaset name) -> deployment uid
    let mut rs_owner: HashMap<(&str, &str), &str> = HashMap::new();
    for rs in replicasets {
        let m = &rs.metadata;
        let Some(owner) = controller_of(m, "Deployment") else {
            continue;
        };
        if let Some(name) = m.name.as_deref()
            && views.contains_key(&owner.uid)
        {
            rs_owner.insert(
                (m.namespace.as_deref().unwrap_or_default(), name),
                owner.uid.as_str(),
            );
        }
    }

    for pod in pods {
        if !is_running(pod) {
            continue;
        }
        let m = &pod.metadata;
        let namespace = m.namespace.as_deref().unwrap_or_default();
        let Some(rs) = controller_of(m, "ReplicaSet") else {
            continue;
        };
        let Some(uid) = rs_owner.get(&(namespace, rs.name.as_str())) else {
            continue;
        };
        let Some(view) = views.get_mut(*uid) else {
            continue;
        };
        if let Some(pv) = pod_view(pod, &rs.name, &view.name) {
            view.pods.push(pv);
        }
    }

    let mut out: Vec<DeploymentView> = views.into_values().collect();
    for v in &mut out {
        v.pods.sort_by(|a, b| a.facts.name.cmp(&b.facts.name));
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// Phase Running and not being deleted.
pub fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Running")
}

fn controller_of<'a>(meta: &'a ObjectMeta, kind: &str) -> Option<&'a OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == kind)
}

fn pod_view(pod: &Pod, replicaset: &str, deployment: &str) -> Option<PodView> {
    let m = &pod.metadata;
    let name = m.name.clone()?;
    let spec = pod.spec.as_ref()?;
    let container = spec.containers.first()?;
    let status_start = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0);
    let created = m.creation_timestamp.as_ref().map(|t| t.0);
    let created_at = created.or(status_start).unwrap_or(Timestamp::UNIX_EPOCH);
    let start_time = status_start.unwrap_or(created_at);
    let limits = resources(container.resources.as_ref(), |r| r.limits.as_ref());
    let requests = resources(container.resources.as_ref(), |r| r.requests.as_ref());
    Some(PodView {
        facts: PodFacts {
            name: name.clone(),
            created_at,
            cpu_limit_cores: limits
                .cpu_cores
                .filter(|c| *c > 0.0)
                .unwrap_or(DEFAULT_CPU_LIMIT_CORES),
            memory_limit_bytes: limits
                .memory_bytes
                .filter(|b| *b > 0.0)
                .unwrap_or(DEFAULT_MEMORY_LIMIT_BYTES),
        },
        meta: PodMeta {
            namespace: m.namespace.clone().unwrap_or_default(),
            pod: name,
            container: container.name.clone(),
            node: spec.node_name.clone().unwrap_or_default(),
            replicaset: replicaset.to_string(),
            deployment: deployment.to_string(),
            start_time,
            limits,
            requests,
            clock_offset: jiff::SignedDuration::ZERO,
            unexported: false,
        },
    })
}

fn resources(
    req: Option<&ResourceRequirements>,
    pick: impl Fn(&ResourceRequirements) -> Option<&BTreeMap<String, Quantity>>,
) -> Resources {
    let map = req.and_then(pick);
    let get = |key: &str| {
        map.and_then(|m| m.get(key))
            .and_then(|q| parse_quantity(&q.0))
    };
    Resources {
        cpu_cores: get("cpu"),
        memory_bytes: get("memory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn owner(kind: &str, name: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn deployment(name: &str, uid: &str, scenario: Option<&str>) -> Arc<Deployment> {
        Arc::new(Deployment {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                uid: Some(uid.into()),
                annotations: scenario.map(|s| {
                    [(ANN_SCENARIO.to_string(), s.to_string())]
                        .into_iter()
                        .collect()
                }),
                ..ObjectMeta::default()
            },
            ..Deployment::default()
        })
    }

    fn replicaset(name: &str, deploy: &str, deploy_uid: &str) -> Arc<ReplicaSet> {
        Arc::new(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                uid: Some(format!("rs-{name}")),
                owner_references: Some(vec![owner("Deployment", deploy, deploy_uid)]),
                ..ObjectMeta::default()
            },
            ..ReplicaSet::default()
        })
    }

    fn pod(name: &str, rs: &str, phase: &str, limits: &[(&str, &str)]) -> Arc<Pod> {
        let limits: BTreeMap<String, Quantity> = limits
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect();
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                uid: Some(format!("pod-{name}")),
                creation_timestamp: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
                owner_references: Some(vec![owner("ReplicaSet", rs, &format!("rs-{rs}"))]),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("kwok-node-1".into()),
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        limits: (!limits.is_empty()).then(|| limits.clone()),
                        requests: (!limits.is_empty()).then_some(limits),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                start_time: Some(Time(Timestamp::from_second(1_700_000_005).unwrap())),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn links_pods_to_annotated_deployments() {
        let deploys = vec![
            deployment("web", "d-web", Some("runaway")),
            deployment("plain", "d-plain", None),
        ];
        let rss = vec![
            replicasets_pair().0,
            replicasets_pair().1,
            replicaset("plain-1", "plain", "d-plain"),
        ];
        let cpu_mem = [("cpu", "500m"), ("memory", "256Mi")];
        let pods = vec![
            pod("web-1-b", "web-1", "Running", &cpu_mem),
            pod("web-1-a", "web-1", "Running", &cpu_mem),
            pod("web-2-a", "web-2", "Running", &[]),
            pod("web-1-pending", "web-1", "Pending", &cpu_mem),
            pod("plain-1-a", "plain-1", "Running", &cpu_mem),
            pod("orphan", "nope", "Running", &cpu_mem),
        ];
        let views = snapshot(&deploys, &rss, &pods);
        assert_eq!(views.len(), 1);
        let v = &views[0];
        assert_eq!(v.name, "web");
        assert_eq!(v.uid, "d-web");
        let names: Vec<&str> = v.pods.iter().map(|p| p.facts.name.as_str()).collect();
        assert_eq!(names, ["web-1-a", "web-1-b", "web-2-a"]);

        let a = &v.pods[0];
        assert_eq!(a.meta.replicaset, "web-1");
        assert_eq!(a.meta.deployment, "web");
        assert_eq!(a.meta.container, "app");
        assert_eq!(a.meta.node, "kwok-node-1");
        assert_eq!(a.meta.start_time.as_second(), 1_700_000_005);
        assert_eq!(a.facts.created_at.as_second(), 1_700_000_000);
        assert!((a.facts.cpu_limit_cores - 0.5).abs() < 1e-12);
        assert!((a.facts.memory_limit_bytes - 256.0 * 1024.0 * 1024.0).abs() < 1e-6);
        assert_eq!(a.meta.limits.cpu_cores, Some(0.5));
        assert_eq!(a.meta.requests.memory_bytes, Some(256.0 * 1024.0 * 1024.0));

        let c = &v.pods[2];
        assert_eq!(c.meta.replicaset, "web-2");
        assert_eq!(c.meta.limits, Resources::default());
        assert!((c.facts.cpu_limit_cores - DEFAULT_CPU_LIMIT_CORES).abs() < 1e-12);
        assert!((c.facts.memory_limit_bytes - DEFAULT_MEMORY_LIMIT_BYTES).abs() < 1e-6);
    }

    fn replicasets_pair() -> (Arc<ReplicaSet>, Arc<ReplicaSet>) {
        (
            replicaset("web-1", "web", "d-web"),
            replicaset("web-2", "web", "d-web"),
        )
    }

    #[test]
    fn terminating_pods_are_not_running() {
        let mut p = (*pod("web-1-a", "web-1", "Running", &[])).clone();
        assert!(is_running(&p));
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(!is_running(&p));
    }
}
