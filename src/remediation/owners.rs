//! Who owns a workload's `spec.replicas`, and what that means for a Scale (pure).
//!
//! A Scale that wrote `spec.replicas` under an autoscaler or a GitOps tool would be undone (or
//! fought over) on their next pass. So the caches tell the engine who owns the field:
//! - a **HorizontalPodAutoscaler** whose `scaleTargetRef` names the workload: Scale acts through
//!   it, raising its `spec.minReplicas` within the policy's bounds (the HPA controller enforces
//!   that floor even without a metrics API);
//! - a **KEDA ScaledObject** (`spec.scaleTargetRef`, or the HPA KEDA made for it): refused. KEDA
//!   rewrites its HPA from the ScaledObject, and the ScaledObject is another tool's config
//!   (usually in Git), whose `minReplicaCount` also sets scale-to-zero and idle behaviour;
//! - a **GitOps tool** (Argo CD, Flux) that owns `spec.replicas` (or the HPA's `spec.minReplicas`)
//!   according to `metadata.managedFields`: refused, the next sync would revert the change;
//! - more than one autoscaler: refused, as the HPA controller itself refuses to act.
//!
//! GitOps ownership is read from `managedFields`, not from the tracking labels alone: a tool that
//! tracks a Deployment whose manifest leaves `replicas` out does not revert a scale, and refusing
//! there would leave no way out. The labels decide only when the field manager is the generic
//! `kubectl-client-side-apply` (Argo CD's client-side apply).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

use super::guards::Refusal;
use crate::v1alpha1::TargetRef;

/// Field managers of GitOps controllers that revert what they own on their next sync.
pub const GITOPS_MANAGERS: &[&str] = &[
    "argocd-controller",             // Argo CD, server-side apply
    "argocd-application-controller", // Argo CD, client-side apply
    "kustomize-controller",          // Flux
    "helm-controller",               // Flux
];

/// Labels and annotations by which Argo CD and Flux track the objects they apply.
pub const GITOPS_TRACKING: &[&str] = &[
    "argocd.argoproj.io/instance",
    "argocd.argoproj.io/tracking-id",
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
];

/// The field manager of `kubectl apply` (client-side), which Argo CD's client-side apply also uses.
const CLIENT_SIDE_APPLY: &str = "kubectl-client-side-apply";

/// Refusal reason: a KEDA ScaledObject owns the replicas.
pub const OWNED_BY_KEDA: &str = "ReplicasOwnedByKEDA";
/// Refusal reason: a GitOps tool owns the replicas (or the HPA's minReplicas).
pub const OWNED_BY_GITOPS: &str = "ReplicasOwnedByGitOps";
/// Refusal reason: more than one autoscaler targets the workload.
pub const SEVERAL_AUTOSCALERS: &str = "SeveralAutoscalers";

/// Whether a refusal reason is one of this module's (a Scale that would fight an owner).
pub fn is_owner_refusal(reason: &str) -> bool {
    [OWNED_BY_KEDA, OWNED_BY_GITOPS, SEVERAL_AUTOSCALERS].contains(&reason)
}

/// Who owns a workload's `spec.replicas`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReplicasOwner {
    /// Nobody homeostat knows of: Scale patches `spec.replicas` (the scale subresource).
    #[default]
    None,
    /// A HorizontalPodAutoscaler: Scale raises its `spec.minReplicas`.
    Hpa(Hpa),
    /// A KEDA ScaledObject (by name).
    Keda(String),
    /// A GitOps tool: the field manager that owns `spec.replicas`, and how it was told.
    GitOps(String),
    /// More than one autoscaler (their names).
    Several(Vec<String>),
}

/// No owner, for callers that cannot know (`backtest`, `diagnose`).
pub static NO_OWNER: ReplicasOwner = ReplicasOwner::None;

/// The HPA that owns a workload's replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hpa {
    /// Name.
    pub name: String,
    /// `spec.minReplicas` (unset means 1).
    pub min_replicas: Option<i32>,
    /// `spec.maxReplicas`.
    pub max_replicas: i32,
    /// A GitOps field manager that owns the HPA's `spec.minReplicas`, if one does.
    pub min_owned_by: Option<String>,
}

/// Why a Scale must not act on `target` owned by `owner`, if it must not.
pub fn scale_refusal(owner: &ReplicasOwner, target: &TargetRef) -> Option<Refusal> {
    match owner {
        ReplicasOwner::None => None,
        ReplicasOwner::Hpa(h) => h.min_owned_by.as_ref().map(|m| Refusal {
            reason: OWNED_BY_GITOPS,
            message: format!(
                "{target} is scaled by HPA {} whose spec.minReplicas is owned by {m} \
                 (managedFields): raising it would be reverted on the next sync; scale in Git",
                h.name
            ),
        }),
        ReplicasOwner::Keda(so) => Some(Refusal {
            reason: OWNED_BY_KEDA,
            message: format!(
                "spec.replicas of {target} is owned by KEDA ScaledObject {so}: homeostat does \
                 not rewrite another tool's scaling config; raise its minReplicaCount or \
                 trigger thresholds instead"
            ),
        }),
        ReplicasOwner::GitOps(m) => Some(Refusal {
            reason: OWNED_BY_GITOPS,
            message: format!(
                "spec.replicas of {target} is owned by {m}: a scale would be reverted on the \
                 next sync; scale in Git, or leave replicas out of the manifest and add an HPA"
            ),
        }),
        ReplicasOwner::Several(names) => Some(Refusal {
            reason: SEVERAL_AUTOSCALERS,
            message: format!(
                "{target} is the target of more than one autoscaler ({}): the HPA controller \
                 refuses to scale it and so does homeostat; keep one",
                names.join(", ")
            ),
        }),
    }
}

/// Whether a managedFields entry owns `spec.<field>` (not through a subresource such as scale,
/// which is how autoscalers and `kubectl scale` write).
pub fn owns_spec_field(e: &ManagedFieldsEntry, field: &str) -> bool {
    e.subresource.as_deref().unwrap_or_default().is_empty()
        && e.fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:spec"))
            .and_then(|s| s.get(format!("f:{field}")))
            .is_some()
}

/// The GitOps owner of `spec.<field>` of an object, from its managedFields and tracking marks
/// (labels or annotations, keys only).
pub fn gitops_owner<'a>(
    managed: &[ManagedFieldsEntry],
    field: &str,
    mut marks: impl Iterator<Item = &'a str>,
) -> Option<String> {
    let owners: Vec<&str> = managed
        .iter()
        .filter(|e| owns_spec_field(e, field))
        .filter_map(|e| e.manager.as_deref())
        .collect();
    if let Some(m) = owners.iter().find(|m| GITOPS_MANAGERS.contains(m)) {
        return Some(format!("field manager {m}"));
    }
    let tracked = marks.find(|k| GITOPS_TRACKING.contains(k));
    match (tracked, owners.contains(&CLIENT_SIDE_APPLY)) {
        (Some(mark), true) => Some(format!(
            "a GitOps tool ({mark}) through field manager {CLIENT_SIDE_APPLY}"
        )),
        _ => None,
    }
}

/// Keeps only the managedFields entries that own `spec.<field>`, each pared down to that field
/// (what the caches keep of them).
pub fn prune_managed(managed: &mut Option<Vec<ManagedFieldsEntry>>, field: &str) {
    let Some(entries) = managed.take() else {
        return;
    };
    let kept: Vec<ManagedFieldsEntry> = entries
        .into_iter()
        .filter(|e| owns_spec_field(e, field))
        .map(|e| ManagedFieldsEntry {
            fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                serde_json::json!({"f:spec": {format!("f:{field}"): {}}}),
            )),
            time: None,
            ..e
        })
        .collect();
    *managed = (!kept.is_empty()).then_some(kept);
}

/// One autoscaler that names a workload: an HPA (and, when KEDA made it, its ScaledObject), or a
/// ScaledObject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Autoscaler {
    /// An HPA; `keda` names the ScaledObject that controls it.
    Hpa {
        /// The HPA.
        hpa: Hpa,
        /// Its controlling ScaledObject, if KEDA made it.
        keda: Option<String>,
    },
    /// A KEDA ScaledObject.
    ScaledObject(String),
}

/// Who owns the replicas of a workload, from the autoscalers that name it and the GitOps owner
/// of its `spec.replicas`.
pub fn resolve(autoscalers: &[Autoscaler], gitops: Option<String>) -> ReplicasOwner {
    // A ScaledObject and the HPA KEDA made for it are one autoscaler.
    let mut keda: Vec<&str> = autoscalers
        .iter()
        .filter_map(|a| match a {
            Autoscaler::Hpa { keda: Some(k), .. } => Some(k.as_str()),
            Autoscaler::ScaledObject(k) => Some(k.as_str()),
            Autoscaler::Hpa { keda: None, .. } => None,
        })
        .collect();
    keda.sort_unstable();
    keda.dedup();
    let hpas: Vec<&Hpa> = autoscalers
        .iter()
        .filter_map(|a| match a {
            Autoscaler::Hpa { hpa, keda: None } => Some(hpa),
            _ => None,
        })
        .collect();
    let mut names: Vec<String> = keda.iter().map(|k| format!("ScaledObject {k}")).collect();
    names.extend(hpas.iter().map(|h| format!("HPA {}", h.name)));
    match (keda.as_slice(), hpas.as_slice()) {
        _ if names.len() > 1 => ReplicasOwner::Several(names),
        ([k], []) => ReplicasOwner::Keda((*k).to_string()),
        ([], [h]) => ReplicasOwner::Hpa((*h).clone()),
        _ => gitops.map_or(ReplicasOwner::None, ReplicasOwner::GitOps),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    use super::*;
    use crate::v1alpha1::WorkloadKind;

    fn entry(
        manager: &str,
        subresource: Option<&str>,
        fields: serde_json::Value,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            subresource: subresource.map(Into::into),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    fn replicas() -> serde_json::Value {
        json!({"f:spec": {"f:replicas": {}, "f:template": {}}})
    }

    fn hpa(name: &str) -> Hpa {
        Hpa {
            name: name.into(),
            min_replicas: Some(2),
            max_replicas: 6,
            min_owned_by: None,
        }
    }

    fn target() -> TargetRef {
        TargetRef {
            kind: WorkloadKind::Deployment,
            name: "web".into(),
        }
    }

    #[test]
    fn gitops_ownership_is_read_from_managed_fields() {
        let none = std::iter::empty();
        for (name, managed, marks, want) in [
            (
                "flux owns replicas",
                vec![entry("kustomize-controller", None, replicas())],
                vec![],
                true,
            ),
            (
                "argo ssa",
                vec![entry("argocd-controller", None, replicas())],
                vec![],
                true,
            ),
            (
                "flux applies the rest, not replicas",
                vec![entry(
                    "kustomize-controller",
                    None,
                    json!({"f:spec": {"f:template": {}}}),
                )],
                vec!["kustomize.toolkit.fluxcd.io/name"],
                false,
            ),
            (
                "the HPA writes replicas through scale",
                vec![entry("kube-controller-manager", Some("scale"), replicas())],
                vec![],
                false,
            ),
            (
                "argo client-side apply, tracked",
                vec![entry("kubectl-client-side-apply", None, replicas())],
                vec!["argocd.argoproj.io/instance"],
                true,
            ),
            (
                "a person's kubectl apply, untracked",
                vec![entry("kubectl-client-side-apply", None, replicas())],
                vec![],
                false,
            ),
            (
                "helm cli",
                vec![entry("helm", None, replicas())],
                vec![],
                false,
            ),
        ] {
            let got = gitops_owner(&managed, "replicas", marks.into_iter());
            assert_eq!(got.is_some(), want, "{name}: {got:?}");
        }
        assert_eq!(gitops_owner(&[], "replicas", none), None);
    }

    #[test]
    fn pruning_keeps_only_the_owners_of_the_field() {
        let mut m = Some(vec![
            entry("kustomize-controller", None, replicas()),
            entry("kubectl", None, json!({"f:metadata": {"f:labels": {}}})),
            entry("kube-controller-manager", Some("scale"), replicas()),
        ]);
        prune_managed(&mut m, "replicas");
        let m = m.expect("one kept");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].manager.as_deref(), Some("kustomize-controller"));
        assert!(owns_spec_field(&m[0], "replicas"));
        let mut none = Some(vec![entry("kubectl", None, json!({}))]);
        prune_managed(&mut none, "replicas");
        assert_eq!(none, None);
    }

    #[test]
    fn the_owner_of_the_replicas_is_resolved() {
        let flux = || Some("field manager kustomize-controller".to_string());
        let h = |n: &str| Autoscaler::Hpa {
            hpa: hpa(n),
            keda: None,
        };
        let keda_hpa = Autoscaler::Hpa {
            hpa: hpa("keda-hpa-web"),
            keda: Some("web".into()),
        };
        let so = Autoscaler::ScaledObject("web".into());
        assert_eq!(resolve(&[], None), ReplicasOwner::None);
        assert_eq!(resolve(&[h("web")], None), ReplicasOwner::Hpa(hpa("web")));
        // An autoscaler owns the replicas even when a GitOps tool also sets them.
        assert_eq!(resolve(&[h("web")], flux()), ReplicasOwner::Hpa(hpa("web")));
        assert!(matches!(resolve(&[], flux()), ReplicasOwner::GitOps(_)));
        assert_eq!(
            resolve(&[keda_hpa.clone(), so.clone()], None),
            ReplicasOwner::Keda("web".into())
        );
        assert_eq!(resolve(&[so], None), ReplicasOwner::Keda("web".into()));
        assert!(matches!(
            resolve(&[keda_hpa, h("other")], None),
            ReplicasOwner::Several(v) if v.len() == 2
        ));
        assert!(matches!(
            resolve(&[h("a"), h("b")], None),
            ReplicasOwner::Several(_)
        ));
    }

    #[test]
    fn a_scale_is_refused_only_where_it_cannot_act_through_the_owner() {
        let t = target();
        assert_eq!(scale_refusal(&ReplicasOwner::None, &t), None);
        assert_eq!(scale_refusal(&ReplicasOwner::Hpa(hpa("web")), &t), None);
        let gitops_hpa = ReplicasOwner::Hpa(Hpa {
            min_owned_by: Some("field manager argocd-controller".into()),
            ..hpa("web")
        });
        for (owner, reason) in [
            (gitops_hpa, OWNED_BY_GITOPS),
            (ReplicasOwner::Keda("web".into()), OWNED_BY_KEDA),
            (
                ReplicasOwner::GitOps("field manager helm-controller".into()),
                OWNED_BY_GITOPS,
            ),
            (
                ReplicasOwner::Several(vec!["HPA a".into(), "HPA b".into()]),
                SEVERAL_AUTOSCALERS,
            ),
        ] {
            let r = scale_refusal(&owner, &t).expect("refused");
            assert_eq!(r.reason, reason, "{owner:?}");
            assert!(is_owner_refusal(r.reason));
            assert!(r.message.contains("web"), "{}", r.message);
        }
    }
}
