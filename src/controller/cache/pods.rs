//! The pod cache's own type: a Pod read as only the fields a sweep uses.
//!
//! A pruned `k8s_openapi` Pod still carries its `PodSpec` and `PodStatus` inline (about 3 KB per
//! pod even when both are empty), and the watch decodes every listed pod in full before it can be
//! pruned. [`PodLite`] is what the watch decodes into: the apiserver's JSON is read straight into
//! the metadata, the containers' resources, the phase and the start time, and the rest is skipped
//! by the decoder.

use k8s_openapi::{
    Metadata, NamespaceResourceScope, Resource,
    api::core::v1::ResourceRequirements,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};
use serde::{Deserialize, Serialize};

use crate::remediation::resize::{ContainerAlloc, resources_of};

/// A Pod as the sweep sees it: metadata (names, owner, deletion), its containers' resources and
/// two status fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PodLite {
    /// The Pod's metadata, pruned to what identifies and owns it once stored.
    pub metadata: ObjectMeta,
    /// `spec.containers[].{name,resources}` (what a ResizePod plans from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodLiteSpec>,
    /// `status.phase` and `status.startTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodLiteStatus>,
}

/// The spec fields a sweep reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PodLiteSpec {
    /// The (non-init) containers.
    #[serde(default)]
    pub containers: Vec<PodLiteContainer>,
}

/// A container's name and resources.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PodLiteContainer {
    /// The container's name.
    pub name: String,
    /// Its requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl PodLite {
    /// Its containers' spec resources, as a ResizePod plans from them.
    pub fn containers(&self) -> Vec<ContainerAlloc> {
        self.spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| ContainerAlloc {
                name: c.name.clone(),
                resources: resources_of(c.resources.as_ref()),
            })
            .collect()
    }
}

/// The status fields a sweep reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodLiteStatus {
    /// Pending, Running, Succeeded, Failed or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the kubelet accepted the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// Its conditions; [`prune`] keeps only `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodLiteCondition>,
    /// Its containers' restart counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<PodLiteContainerStatus>,
}

/// A pod condition's type, status and last transition.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodLiteCondition {
    /// `Ready`, `PodScheduled`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When it last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// A container status, as far as the sweep reads it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodLiteContainerStatus {
    /// Restarts of the container.
    #[serde(default)]
    pub restart_count: i32,
}

impl PodLite {
    /// `(creation, first Ready)` in unix seconds when the pod is Ready and none of its containers
    /// restarted (a restart moves the Ready transition): what a forecast's lead time is measured on.
    pub fn start_to_ready(&self) -> Option<(f64, f64)> {
        let st = self.status.as_ref()?;
        if st.container_statuses.iter().any(|c| c.restart_count > 0) {
            return None;
        }
        let ready = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "True")?;
        let secs = |t: &Time| t.0.as_millisecond() as f64 / 1000.0;
        Some((
            secs(self.metadata.creation_timestamp.as_ref()?),
            secs(ready.last_transition_time.as_ref()?),
        ))
    }
}

impl Resource for PodLite {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = NamespaceResourceScope;
}

impl Metadata for PodLite {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Drops what the sweep never reads before the pod is stored.
pub fn prune(p: &mut PodLite) {
    let m = &mut p.metadata;
    m.managed_fields = None;
    m.annotations = None;
    m.labels = None;
    m.finalizers = None;
    m.generate_name = None;
    if let Some(st) = &mut p.status {
        st.conditions.retain(|c| c.type_ == "Ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full Pod from the apiserver decodes into the few fields kept; the rest is skipped.
    #[test]
    fn a_full_pod_decodes_into_its_metadata_phase_and_start() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-1", "namespace": "team", "uid": "u1",
                "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-x",
                    "uid": "rs1", "controller": true}],
                "managedFields": [{"manager": "kubelet"}]
            },
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"cpu": "500m"}}}], "nodeName": "n1"},
            "status": {"phase": "Running", "startTime": "2026-12-01T10:00:00Z",
                "containerStatuses": [{"name": "c", "restartCount": 3, "ready": true, "image": "x",
                    "imageID": "", "started": true}]}
        });
        let mut p: PodLite = serde_json::from_value(json).expect("a Pod decodes as PodLite");
        prune(&mut p);
        assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(p.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        assert!(p.metadata.labels.is_none() && p.metadata.managed_fields.is_none());
        let c = p.containers();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].resources.cpu_limit.as_deref(), Some("500m"));
        assert_eq!(
            p.start_to_ready(),
            None,
            "a restarted container: no lead sample"
        );
        let s = p.status.expect("status kept");
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert!(s.start_time.is_some());
    }

    /// A Ready pod without restarts gives its creation and Ready times; other conditions are dropped.
    #[test]
    fn start_to_ready_reads_creation_and_the_ready_transition() {
        let json = serde_json::json!({
            "metadata": {"name": "web-2", "creationTimestamp": "2026-12-01T10:00:00Z"},
            "status": {"phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-01T10:00:01Z"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T10:00:42Z"}],
                "containerStatuses": [{"name": "c", "restartCount": 0}]}
        });
        let mut p: PodLite = serde_json::from_value(json).expect("decodes");
        prune(&mut p);
        let (c, r) = p.start_to_ready().expect("ready without restarts");
        assert_eq!(r - c, 42.0);
        assert_eq!(p.status.as_ref().map(|s| s.conditions.len()), Some(1));
        let not_ready: PodLite = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-3", "creationTimestamp": "2026-12-01T10:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}
        }))
        .expect("decodes");
        assert_eq!(not_ready.start_to_ready(), None);
    }
}
