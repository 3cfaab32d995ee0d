//! What the operator knows of the cluster, from watches: policies, incidents, workloads and pods.
//! A sweep reads these caches and makes no apiserver read of its own.
//!
//! Policies and Remediations are watched as untyped objects and decoded one by one as they arrive,
//! so a single object the code cannot read is reported on its own instead of stopping the whole
//! watch; their stores keep only metadata (each object is held once, decoded).
//! Pods are decoded into the few fields a sweep reads ([`pods::PodLite`]); workloads are pruned
//! to the fields homeostat reads before they are stored.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet, StatefulSet},
        autoscaling::v2::HorizontalPodAutoscaler,
    },
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

mod autoscalers;
mod pods;

use pods::PodLite;

use crate::{
    remediation::{
        actions::{LivePod, RESTARTED_AT, Workload},
        engine::SEQ_LABEL,
        owners::{self, ReplicasOwner},
    },
    v1alpha1::{Remediation, RemediationPolicy, TargetRef, WorkloadKind},
};

/// The label naming a Remediation's policy.
pub const POLICY_LABEL: &str = "homeostat.dev/policy";
/// The label naming the Remediation's target workload.
pub const TARGET_LABEL: &str = "homeostat.dev/target";
/// The label carrying the UID of the policy that opened a Remediation. Remediations have no owner
/// reference (so they outlive their policy, see [`super::retention`]); this label ties each to the
/// one policy object that opened it, so a policy re-created with the same name starts afresh.
/// The chart's admission policy lets only the operator set it.
pub const POLICY_UID_LABEL: &str = "homeostat.dev/policy-uid";

/// The UID of the policy that opened `r`: its [`POLICY_UID_LABEL`], or, for a Remediation opened
/// before that label existed, its controller owner reference to a RemediationPolicy.
pub fn policy_uid(r: &Remediation) -> Option<String> {
    if let Some(uid) = r.labels().get(POLICY_UID_LABEL) {
        return Some(uid.clone());
    }
    r.owner_references()
        .iter()
        .find(|o| o.kind == "RemediationPolicy" && o.controller == Some(true))
        .map(|o| o.uid.clone())
}

/// One store per watched namespace (or one for the cluster) of each kind.
pub struct Caches {
    policies: Vec<Store<DynamicObject>>,
    remediations: Vec<Store<DynamicObject>>,
    deployments: Vec<Store<Deployment>>,
    statefulsets: Vec<Store<StatefulSet>>,
    replicasets: Vec<Store<PartialObjectMeta<ReplicaSet>>>,
    pods: Vec<Store<PodLite>>,
    hpas: Vec<Store<HorizontalPodAutoscaler>>,
    /// KEDA ScaledObjects; empty while the CRD is not served.
    scaled_objects: Vec<Store<DynamicObject>>,
    decoded: Arc<DecodeCache<RemediationPolicy>>,
    decoded_rems: Arc<DecodeCache<Remediation>>,
    own: Mutex<HashMap<(String, String), Remediation>>,
}

/// An object decoded from the watch, or why it could not be.
pub type Decoded<T> = Result<T, String>;

/// Decoded objects by UID, as of the newest event of each.
type DecodeCache<T> = Mutex<HashMap<String, Arc<Decoded<T>>>>;

/// A policy as the watch delivered it.
#[derive(Clone, Debug)]
pub struct PolicyEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The decoded policy, or the decoding error.
    pub policy: Arc<Decoded<RemediationPolicy>>,
}

/// A workload with its labels and UID.
#[derive(Clone, Debug)]
pub struct WorkloadEntry {
    /// What the planner needs.
    pub workload: Workload,
    /// Its labels (for selector policies).
    pub labels: BTreeMap<String, String>,
    /// Its UID (pods are matched by owner reference to it).
    pub uid: String,
    /// Who owns its `spec.replicas` (an HPA, KEDA, a GitOps tool).
    pub replicas_owner: ReplicasOwner,
    /// The GitOps owner of its `spec.replicas`, from managedFields (before autoscalers are known).
    gitops: Option<String>,
}

/// A point-in-time view of the caches with the indexes a sweep needs.
#[derive(Default)]
pub struct Snapshot {
    /// Every policy.
    pub policies: Vec<PolicyEntry>,
    /// Workloads by namespace, kind and name.
    pub workloads: BTreeMap<(String, WorkloadKind, String), WorkloadEntry>,
    /// Live pods by namespace and owning workload UID, oldest first.
    pub pods: HashMap<(String, String), Vec<LivePod>>,
    /// Incidents by namespace and policy name, oldest first.
    pub incidents: HashMap<(String, String), Vec<Remediation>>,
    /// Remediations the operator did not create (no policy label), ignored.
    pub foreign: usize,
}

impl Snapshot {
    /// The workload `t` in namespace `ns`.
    pub fn workload(&self, ns: &str, t: &TargetRef) -> Option<&WorkloadEntry> {
        self.workloads
            .get(&(ns.to_string(), t.kind, t.name.clone()))
    }

    /// The live pods of a workload.
    pub fn pods_of(&self, ns: &str, w: &WorkloadEntry) -> &[LivePod] {
        self.pods
            .get(&(ns.to_string(), w.uid.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// The incidents the policy object `uid` opened for one target, oldest first (not those of an
    /// earlier policy of the same name).
    pub fn history(&self, ns: &str, policy: &str, uid: &str, t: &TargetRef) -> Vec<Remediation> {
        self.incidents
            .get(&(ns.to_string(), policy.to_string()))
            .map(|v| {
                v.iter()
                    .filter(|r| r.spec.target == *t && policy_uid(r).as_deref() == Some(uid))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The highest incident number on record for a policy name and target, whichever policy
    /// object opened it (incident names are deterministic and must not collide with an earlier
    /// policy's).
    pub fn last_seq(&self, ns: &str, policy: &str, t: &TargetRef) -> u32 {
        self.incidents
            .get(&(ns.to_string(), policy.to_string()))
            .into_iter()
            .flatten()
            .filter(|r| r.spec.target == *t)
            .filter_map(|r| r.labels().get(SEQ_LABEL)?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
    }
}

/// How every watch lists: in pages of 500, each pruned before the next is read. A list at
/// `resourceVersion=0` (any semantic) would be served whole, ignoring the page size: at 10,000
/// pods, every full Pod decoded at once before pruning. Since Kubernetes 1.31 the apiserver serves
/// consistent paginated lists from its watch cache, so this costs etcd nothing.
fn list_config() -> watcher::Config {
    watcher::Config::default().page_size(500)
}

fn spawn_watch<K>(
    api: Api<K>,
    writer: Writer<K>,
    prune: fn(&mut K),
    what: &'static str,
) -> BoxFuture<'static, ()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    Box::pin(async move {
        let stream = watcher(api, list_config())
            .default_backoff()
            .modify(prune)
            .reflect(writer);
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                warn!(kind = what, error = %e, "watch failed; retrying with backoff (the cache keeps its last state)");
            }
        }
    })
}

/// Watches an untyped kind and decodes each object as it arrives: the decoded object (or why it
/// cannot be decoded) goes to `decoded`, and the store keeps only the metadata, so each object is
/// held once and not also as a JSON tree.
fn spawn_dynamic<T>(
    api: Api<DynamicObject>,
    writer: Writer<DynamicObject>,
    decoded: Arc<DecodeCache<T>>,
    what: &'static str,
) -> BoxFuture<'static, ()>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    Box::pin(async move {
        let stream = watcher(api, list_config())
            .default_backoff()
            .modify(move |o: &mut DynamicObject| {
                o.metadata.managed_fields = None;
                let uid = o.uid().unwrap_or_default();
                let d = Arc::new(decode::<T>(o));
                if let Err(e) = d.as_ref() {
                    warn!(kind = what, object = %format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()), error = %e, "cannot decode this object; it is reported (policies: in their status) and otherwise ignored");
                }
                o.data = serde_json::Value::Null;
                if let Ok(mut cache) = decoded.lock() {
                    cache.insert(uid, d);
                }
            })
            .reflect(writer);
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                warn!(kind = what, error = %e, "watch failed; retrying with backoff (the cache keeps its last state)");
            }
        }
    })
}

fn prune_deployment(d: &mut Deployment) {
    owners::prune_managed(&mut d.metadata.managed_fields, "replicas");
    if let Some(s) = d.spec.as_mut() {
        s.template.spec = None;
    }
}

fn prune_statefulset(d: &mut StatefulSet) {
    owners::prune_managed(&mut d.metadata.managed_fields, "replicas");
    if let Some(s) = d.spec.as_mut() {
        s.template.spec = None;
        s.volume_claim_templates = None;
    }
}

fn prune_meta<K>(m: &mut PartialObjectMeta<K>) {
    m.metadata.managed_fields = None;
    m.metadata.annotations = None;
    m.metadata.labels = None;
}

impl Caches {
    /// Starts a watch of every kind in each namespace (all when empty). The returned futures run
    /// the watches; drive them until shutdown.
    pub fn start(
        client: &Client,
        namespaces: &[String],
    ) -> (Arc<Self>, Vec<BoxFuture<'static, ()>>) {
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        let mut tasks = vec![];
        let mut c = Caches {
            policies: vec![],
            remediations: vec![],
            deployments: vec![],
            statefulsets: vec![],
            replicasets: vec![],
            pods: vec![],
            hpas: vec![],
            scaled_objects: vec![],
            decoded: Arc::default(),
            decoded_rems: Arc::default(),
            own: Mutex::new(HashMap::new()),
        };
        for ns in scopes {
            let dyn_api = |ar: &ApiResource| match &ns {
                Some(n) => Api::<DynamicObject>::namespaced_with(client.clone(), n, ar),
                None => Api::<DynamicObject>::all_with(client.clone(), ar),
            };
            let rp = ApiResource::erase::<RemediationPolicy>(&());
            let w = Writer::new(rp.clone());
            c.policies.push(w.as_reader());
            tasks.push(spawn_dynamic(
                dyn_api(&rp),
                w,
                c.decoded.clone(),
                "RemediationPolicy",
            ));
            let rem = ApiResource::erase::<Remediation>(&());
            let w = Writer::new(rem.clone());
            c.remediations.push(w.as_reader());
            tasks.push(spawn_dynamic(
                dyn_api(&rem),
                w,
                c.decoded_rems.clone(),
                "Remediation",
            ));
            macro_rules! typed {
                ($ty:ty, $field:ident, $prune:expr, $what:literal) => {{
                    let api: Api<$ty> = match &ns {
                        Some(n) => Api::namespaced(client.clone(), n),
                        None => Api::all(client.clone()),
                    };
                    let (r, w) = reflector::store();
                    c.$field.push(r);
                    tasks.push(spawn_watch(api, w, $prune, $what));
                }};
            }
            typed!(Deployment, deployments, prune_deployment, "Deployment");
            typed!(StatefulSet, statefulsets, prune_statefulset, "StatefulSet");
            typed!(
                PartialObjectMeta<ReplicaSet>,
                replicasets,
                prune_meta,
                "ReplicaSet"
            );
            typed!(PodLite, pods, pods::prune, "Pod");
            typed!(
                HorizontalPodAutoscaler,
                hpas,
                autoscalers::prune_hpa,
                "HorizontalPodAutoscaler"
            );
            let so = autoscalers::scaled_object_resource();
            let w = Writer::new(so.clone());
            c.scaled_objects.push(w.as_reader());
            tasks.push(autoscalers::watch_scaled_objects(
                client.clone(),
                dyn_api(&so),
                w,
            ));
        }
        (Arc::new(c), tasks)
    }

    /// Waits until every store has seen its first complete list.
    pub async fn wait_ready(&self) {
        for s in &self.policies {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.remediations {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.deployments {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.statefulsets {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.replicasets {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.pods {
            let _ = s.wait_until_ready().await;
        }
        // Not the ScaledObjects: their CRD may never be installed.
        for s in &self.hpas {
            let _ = s.wait_until_ready().await;
        }
    }

    /// Records a Remediation the operator just wrote, so the next sweep sees it even before the
    /// watch delivers it.
    pub fn remember(&self, r: &Remediation) {
        let key = (r.namespace().unwrap_or_default(), r.name_any());
        if let Ok(mut own) = self.own.lock() {
            own.insert(key, r.clone());
        }
    }

    /// Builds the indexes of one sweep.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            policies: self.policy_entries(),
            ..Snapshot::default()
        };
        let mut rs_owner: HashMap<String, String> = HashMap::new();
        for s in &self.replicasets {
            for rs in s.state() {
                if let (Some(uid), Some(owner)) = (rs.uid(), controller_uid(rs.owner_references()))
                {
                    rs_owner.insert(uid, owner);
                }
            }
        }
        let deployments = self.deployments.iter().flat_map(|s| s.state());
        let statefulsets = self.statefulsets.iter().flat_map(|s| s.state());
        let entries = deployments
            .filter_map(|d| deployment_entry(&d))
            .chain(statefulsets.filter_map(|d| statefulset_entry(&d)));
        let mut scalers = autoscalers::index(&self.hpas, &self.scaled_objects);
        for (ns, mut e) in entries {
            let t = &e.workload.target;
            let key = (ns, t.kind, t.name.clone());
            let found = scalers.remove(&key).unwrap_or_default();
            e.replicas_owner = owners::resolve(&found, e.gitops.take());
            snap.workloads.insert(key, e);
        }
        for s in &self.pods {
            for p in s.state() {
                if p.metadata.deletion_timestamp.is_some()
                    || matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                {
                    continue;
                }
                let Some(owner) = controller_uid(p.owner_references()) else {
                    continue;
                };
                // A Deployment's pods are owned by a ReplicaSet owned by the Deployment.
                let owner = rs_owner.get(&owner).cloned().unwrap_or(owner);
                let live = LivePod {
                    name: p.name_any(),
                    uid: p.uid().unwrap_or_default(),
                    started_at: p
                        .status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .or(p.metadata.creation_timestamp.as_ref())
                        .map(|t| t.0.as_second() as f64),
                    containers: p.containers(),
                    start_to_ready: p.start_to_ready(),
                };
                snap.pods
                    .entry((p.namespace().unwrap_or_default(), owner))
                    .or_default()
                    .push(live);
            }
        }
        for pods in snap.pods.values_mut() {
            pods.sort_by(|a, b| {
                a.started_at
                    .unwrap_or(0.0)
                    .total_cmp(&b.started_at.unwrap_or(0.0))
                    .then(a.name.cmp(&b.name))
            });
        }
        let (incidents, foreign) = self.incidents();
        snap.incidents = incidents;
        snap.foreign = foreign;
        snap
    }

    fn policy_entries(&self) -> Vec<PolicyEntry> {
        let mut out = vec![];
        let Ok(mut cache) = self.decoded.lock() else {
            return out;
        };
        let mut seen = std::collections::HashSet::new();
        for s in &self.policies {
            for o in s.state() {
                let uid = o.uid().unwrap_or_default();
                seen.insert(uid.clone());
                // Decoded on arrival, at this version or (an event not yet in the store) newer.
                let Some(policy) = cache.get(&uid) else {
                    debug!(policy = %o.name_any(), "not decoded yet; next sweep");
                    continue;
                };
                let policy = policy.clone();
                out.push(PolicyEntry {
                    namespace: o.namespace().unwrap_or_default(),
                    name: o.name_any(),
                    uid,
                    generation: o.metadata.generation,
                    policy,
                });
            }
        }
        cache.retain(|k, _| seen.contains(k));
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    fn incidents(&self) -> (HashMap<(String, String), Vec<Remediation>>, usize) {
        let mut by_key: HashMap<(String, String), Remediation> = HashMap::new();
        let mut foreign = 0;
        if let Ok(mut cache) = self.decoded_rems.lock() {
            let mut seen = std::collections::HashSet::new();
            for s in &self.remediations {
                for o in s.state() {
                    let uid = o.uid().unwrap_or_default();
                    seen.insert(uid.clone());
                    let Some(r) = cache.get(&uid) else {
                        continue;
                    };
                    let r = r.clone();
                    if let Ok(r) = r.as_ref() {
                        by_key.insert((r.namespace().unwrap_or_default(), r.name_any()), r.clone());
                    }
                }
            }
            cache.retain(|k, _| seen.contains(k));
        }
        if let Ok(mut own) = self.own.lock() {
            own.retain(|key, mine| match by_key.get(key) {
                // The watch caught up with (or went past) our write: forget ours.
                Some(seen) if newer_or_same(seen, mine) => false,
                _ => {
                    by_key.insert(key.clone(), mine.clone());
                    true
                }
            });
        }
        let mut out: HashMap<(String, String), Vec<Remediation>> = HashMap::new();
        for ((ns, _), r) in by_key {
            // Only incidents the operator opened are acted on: they carry its policy label, a
            // policy reference that agrees with it, and the opening policy's UID (a label only the
            // operator may set, enforced by the chart's admission policy).
            let Some(policy) = r.labels().get(POLICY_LABEL).cloned() else {
                foreign += 1;
                continue;
            };
            if policy != r.spec.policy_ref || policy_uid(&r).is_none() {
                foreign += 1;
                continue;
            }
            out.entry((ns, policy)).or_default().push(r);
        }
        for v in out.values_mut() {
            v.sort_by_key(|r| {
                (
                    r.metadata.creation_timestamp.clone().map(|t| t.0),
                    r.name_any(),
                )
            });
        }
        (out, foreign)
    }
}

/// Whether `a` is at least as new as `b`. etcd resource versions are increasing integers; an
/// unparsable one counts as newer (the watch wins).
fn newer_or_same(a: &Remediation, b: &Remediation) -> bool {
    let rv = |r: &Remediation| r.resource_version().and_then(|v| v.parse::<u64>().ok());
    match (rv(a), rv(b)) {
        (Some(x), Some(y)) => x >= y,
        _ => true,
    }
}

fn decode<T: DeserializeOwned>(o: &DynamicObject) -> Decoded<T> {
    serde_json::to_value(o)
        .and_then(serde_json::from_value::<T>)
        .map_err(|e| e.to_string())
}

fn controller_uid(
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Option<String> {
    refs.iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

fn entry(
    kind: WorkloadKind,
    meta: &kube::api::ObjectMeta,
    replicas: Option<i32>,
    available: Option<i32>,
    selector: Option<LabelSelector>,
    template_annotations: Option<&BTreeMap<String, String>>,
) -> Option<(String, WorkloadEntry)> {
    let ns = meta.namespace.clone()?;
    Some((
        ns,
        WorkloadEntry {
            workload: Workload {
                target: TargetRef {
                    kind,
                    name: meta.name.clone()?,
                },
                replicas: replicas.unwrap_or(1),
                available: available.unwrap_or(0),
                selector,
                restarted_at: template_annotations.and_then(|a| a.get(RESTARTED_AT).cloned()),
            },
            labels: meta.labels.clone().unwrap_or_default(),
            uid: meta.uid.clone()?,
            replicas_owner: ReplicasOwner::None,
            gitops: meta.managed_fields.as_deref().and_then(|m| {
                let labels = meta.labels.iter().flatten().map(|(k, _)| k.as_str());
                let annotations = meta.annotations.iter().flatten().map(|(k, _)| k.as_str());
                owners::gitops_owner(m, "replicas", labels.chain(annotations))
            }),
        },
    ))
}

fn deployment_entry(d: &Deployment) -> Option<(String, WorkloadEntry)> {
    let spec = d.spec.as_ref()?;
    entry(
        WorkloadKind::Deployment,
        &d.metadata,
        spec.replicas,
        d.status.as_ref().and_then(|s| s.available_replicas),
        Some(spec.selector.clone()),
        spec.template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref()),
    )
}

fn statefulset_entry(d: &StatefulSet) -> Option<(String, WorkloadEntry)> {
    let spec = d.spec.as_ref()?;
    entry(
        WorkloadKind::StatefulSet,
        &d.metadata,
        spec.replicas,
        d.status.as_ref().and_then(|s| s.available_replicas),
        Some(spec.selector.clone()),
        spec.template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref()),
    )
}
