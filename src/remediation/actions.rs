//! Actions through the apiserver: evict pods, scale, rollout-restart. Planned first (pure), then
//! executed idempotently: each execution checks whether the planned change already happened.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::Pod,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, Time},
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, EvictParams, Patch, PatchParams},
};
use serde_json::json;

use super::{
    guards::Refusal,
    lifecycle::Outcome,
    owners::{self, ReplicasOwner},
};
use crate::v1alpha1::{
    ActionSpec, ActionType, Attempt, AttemptResult, GuardSpec, HpaChange, TargetRef, WorkloadKind,
};

/// The field manager of every write homeostat makes.
pub const MANAGER: &str = "homeostat";
/// The pod-template annotation `kubectl rollout restart` uses.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// What homeostat needs to know about a target workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// The reference.
    pub target: TargetRef,
    /// Desired replicas.
    pub replicas: i32,
    /// Available replicas.
    pub available: i32,
    /// The pod selector.
    pub selector: Option<LabelSelector>,
    /// The pod template's `restartedAt` annotation.
    pub restarted_at: Option<String>,
}

/// A live pod of the workload.
#[derive(Clone, Debug, PartialEq)]
pub struct LivePod {
    /// Name.
    pub name: String,
    /// UID, to tell a pod from its replacement of the same name (StatefulSets).
    pub uid: String,
    /// Start time (unix seconds).
    pub started_at: Option<f64>,
    /// Its containers' spec resources (for ResizePod; empty where unknown, offline).
    pub containers: Vec<super::resize::ContainerAlloc>,
    /// `(creation, first Ready)` in unix seconds, when Ready without a restart (a forecast's lead).
    pub start_to_ready: Option<(f64, f64)>,
}

impl LivePod {
    /// Pods as kube-state-metrics shows them, offline (`diagnose`, `backtest`): no UID is known.
    pub fn offline(pods: &[crate::diagnosis::fetch::PodRef]) -> Vec<Self> {
        pods.iter()
            .map(|p| Self {
                name: p.name.clone(),
                uid: String::new(),
                started_at: p.started_at,
                containers: vec![],
                start_to_ready: None,
            })
            .collect()
    }
}

/// The fields homeostat reads, common to Deployments and StatefulSets.
#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WorkloadView {
    spec: WorkloadSpecView,
    status: WorkloadStatusView,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WorkloadSpecView {
    replicas: Option<i32>,
    selector: Option<LabelSelector>,
    template: TemplateView,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct TemplateView {
    metadata: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WorkloadStatusView {
    available_replicas: Option<i32>,
}

/// Reads the target; `Ok(None)` when it does not exist.
pub async fn get_workload(
    client: &Client,
    ns: &str,
    target: &TargetRef,
) -> Result<Option<Workload>, kube::Error> {
    let Some(obj) = workload_api(client, ns, target.kind)
        .get_opt(&target.name)
        .await?
    else {
        return Ok(None);
    };
    let view: WorkloadView = serde_json::from_value(obj.data).map_err(kube::Error::SerdeError)?;
    Ok(Some(Workload {
        target: target.clone(),
        replicas: view.spec.replicas.unwrap_or(1),
        available: view.status.available_replicas.unwrap_or(0),
        restarted_at: view
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations?.get(RESTARTED_AT).cloned()),
        selector: view.spec.selector,
    }))
}

/// Why no attempt could be planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Not now (too many pods unavailable, implicated pods gone): try on a later evaluation.
    Blocked(String),
    /// The action cannot help (already at maxReplicas): hand over to a person.
    Escalate(String),
    /// The action would fight the owner of what it changes (a KEDA ScaledObject, a GitOps tool).
    Refused(Refusal),
}

/// The implicated pods that still exist, in the order named; none left: blocked until a fresh
/// evaluation names live ones.
fn live_implicated<'p>(
    pods: &'p [LivePod],
    implicated: &[String],
) -> Result<Vec<&'p LivePod>, PlanError> {
    let live: BTreeMap<&str, &LivePod> = pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let targets: Vec<&LivePod> = implicated
        .iter()
        .filter_map(|n| live.get(n.as_str()).copied())
        .collect();
    if targets.is_empty() {
        return Err(PlanError::Blocked(format!(
            "none of the implicated pods ({}) exists any more; waiting for a fresh evaluation",
            implicated.join(", ")
        )));
    }
    Ok(targets)
}

/// Plans an attempt: which pods, which replica count (through the HPA that owns the replicas, if
/// one does), which stamp. Pure.
pub fn plan(
    action: &ActionSpec,
    w: &Workload,
    owner: &ReplicasOwner,
    pods: &[LivePod],
    implicated: &[String],
    guards: &GuardSpec,
    now: Timestamp,
) -> Result<Attempt, PlanError> {
    let mut a = Attempt {
        number: 0,
        action: action.type_,
        started_at: Time(now),
        applied_at: None,
        result: AttemptResult::Pending,
        message: String::new(),
        pods: vec![],
        from_replicas: None,
        to_replicas: None,
        restarted_at: None,
        through_hpa: None,
        resize: None,
    };
    match action.type_ {
        ActionType::RestartPod => {
            let targets = live_implicated(pods, implicated)?;
            let unavailable = (w.replicas - w.available).max(0) as u32;
            let allowance = guards.max_unavailable.saturating_sub(unavailable) as usize;
            if allowance == 0 {
                return Err(PlanError::Blocked(format!(
                    "{unavailable} pod(s) of {} already unavailable; maxUnavailable is {}",
                    w.target, guards.max_unavailable
                )));
            }
            let chosen: Vec<&LivePod> = targets.into_iter().take(allowance).collect();
            a.pods = chosen
                .iter()
                .map(|p| format!("{}/{}", p.name, p.uid))
                .collect();
            a.message = format!(
                "evict {}",
                chosen
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        ActionType::Scale => {
            let Some(bounds) = &action.scale else {
                return Err(PlanError::Escalate("Scale without bounds".into()));
            };
            if let Some(r) = owners::scale_refusal(owner, &w.target) {
                return Err(PlanError::Refused(r));
            }
            let from = w.replicas;
            let floor = bounds.min_replicas.unwrap_or(1);
            let to = (from + bounds.step.max(1))
                .min(bounds.max_replicas)
                .max(floor);
            if let ReplicasOwner::Hpa(h) = owner {
                // The HPA's floor goes up; the HPA then scales. Never above its own maximum (the
                // apiserver would refuse minReplicas > maxReplicas).
                let min = h.min_replicas.unwrap_or(1);
                let to = to.min(h.max_replicas);
                if to <= from || to <= min {
                    return Err(PlanError::Escalate(format!(
                        "{} already has {from} replicas and HPA {} a minReplicas of {min} \
                         (maxReplicas {}, HPA maxReplicas {}): cannot scale out further",
                        w.target, h.name, bounds.max_replicas, h.max_replicas
                    )));
                }
                a.from_replicas = Some(from);
                a.to_replicas = Some(to);
                a.through_hpa = Some(HpaChange {
                    name: h.name.clone(),
                    from_min_replicas: h.min_replicas,
                    to_min_replicas: to,
                });
                a.message = format!(
                    "raise minReplicas of HPA {} from {min} to {to} (scales {} from {from} to {to} \
                     replicas; spec.replicas is left to the HPA)",
                    h.name, w.target
                );
                return Ok(a);
            }
            if to <= from {
                return Err(PlanError::Escalate(format!(
                    "{} already has {from} replicas (maxReplicas {}): cannot scale out further",
                    w.target, bounds.max_replicas
                )));
            }
            a.from_replicas = Some(from);
            a.to_replicas = Some(to);
            a.message = format!("scale {} from {from} to {to} replicas", w.target);
        }
        ActionType::ResizePod => {
            let Some(bounds) = &action.resize else {
                return Err(PlanError::Escalate("ResizePod without bounds".into()));
            };
            let targets = live_implicated(pods, implicated)?;
            match super::resize::plan(bounds, &targets) {
                Ok(change) => {
                    a.message = format!("resize in place {}", super::resize::describe(&change));
                    a.pods = change
                        .pods
                        .iter()
                        .map(|p| format!("{}/{}", p.pod, p.uid))
                        .collect();
                    a.resize = Some(change);
                }
                Err(super::resize::NoResize::Invalid(m)) => return Err(PlanError::Escalate(m)),
                Err(super::resize::NoResize::AtMaximum(m)) => {
                    // Nothing left to grow in place: the fallback's turn.
                    let fallback = bounds.fallback.action(bounds);
                    if !fallback.type_.mutates() {
                        return Err(PlanError::Escalate(format!(
                            "{m}; resize.fallback is {}: a person must look",
                            fallback.type_.as_str()
                        )));
                    }
                    let mut b = plan(&fallback, w, owner, pods, implicated, guards, now)?;
                    b.message = format!("fallback after ResizePod ({m}): {}", b.message);
                    return Ok(b);
                }
            }
        }
        ActionType::RolloutRestart => {
            let stamp = now.to_string();
            a.message = format!("rollout restart {} (restartedAt {stamp})", w.target);
            a.restarted_at = Some(stamp);
        }
        ActionType::Escalate | ActionType::None => {
            return Err(PlanError::Escalate(format!(
                "action {} changes nothing",
                action.type_.as_str()
            )));
        }
    }
    Ok(a)
}

/// The target's API, for calls that are the same for Deployments and StatefulSets.
fn workload_api(client: &Client, ns: &str, kind: WorkloadKind) -> Api<DynamicObject> {
    let ar = match kind {
        WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
    };
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn api_status(e: &kube::Error) -> Option<(u16, &str)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.message.as_str())),
        _ => None,
    }
}

/// A failure of an apiserver call: permanent (4xx other than 409/429) or retryable.
fn classify(what: &str, e: &kube::Error) -> Outcome {
    match api_status(e) {
        Some((409 | 429, m)) => Outcome::Blocked(format!("{what}: {m}")),
        Some((code, m)) if (400..500).contains(&code) => {
            Outcome::Failed(format!("{what}: HTTP {code}: {m}"))
        }
        _ => Outcome::Blocked(format!("{what}: {e}")),
    }
}

/// Executes an attempt, idempotently: what already happened is reported as applied, not redone.
pub async fn execute(client: &Client, ns: &str, target: &TargetRef, a: &Attempt) -> Outcome {
    match a.action {
        ActionType::RestartPod => evict(client, ns, a).await,
        ActionType::Scale => scale(client, ns, target, a).await,
        ActionType::RolloutRestart => restart(client, ns, target, a).await,
        ActionType::ResizePod => match &a.resize {
            Some(change) => super::resize::execute(client, ns, change, a.started_at.0).await,
            None => Outcome::Failed("resize attempt without the planned resources".into()),
        },
        ActionType::Escalate | ActionType::None => Outcome::Failed("nothing to execute".into()),
    }
}

async fn evict(client: &Client, ns: &str, a: &Attempt) -> Outcome {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let mut done = vec![];
    for entry in &a.pods {
        let (name, uid) = entry.split_once('/').unwrap_or((entry.as_str(), ""));
        let pod = match api.get_opt(name).await {
            Ok(p) => p,
            Err(e) => return classify(&format!("reading pod {ns}/{name}"), &e),
        };
        let gone = match &pod {
            None => true,
            Some(p) => {
                p.metadata.deletion_timestamp.is_some()
                    || (!uid.is_empty() && p.uid().as_deref() != Some(uid))
            }
        };
        if gone {
            done.push(format!("{name} (already gone)"));
            continue;
        }
        match api.evict(name, &EvictParams::default()).await {
            Ok(_) => done.push(name.to_string()),
            Err(e) => match api_status(&e) {
                Some((404, _)) => done.push(format!("{name} (already gone)")),
                Some((429, m)) => {
                    return Outcome::Blocked(format!(
                        "eviction of {ns}/{name} refused by a PodDisruptionBudget ({m}); evicted so far: [{}]",
                        done.join(", ")
                    ));
                }
                _ => return classify(&format!("evicting pod {ns}/{name}"), &e),
            },
        }
    }
    Outcome::Applied(format!("evicted {}", done.join(", ")))
}

async fn scale(client: &Client, ns: &str, target: &TargetRef, a: &Attempt) -> Outcome {
    if let Some(change) = &a.through_hpa {
        return scale_through_hpa(client, ns, target, change).await;
    }
    let Some(to) = a.to_replicas else {
        return Outcome::Failed("scale attempt without a replica count".into());
    };
    let patch = Patch::Merge(json!({"spec": {"replicas": to}}));
    let pp = PatchParams::default();
    let what = format!("scaling {target} in {ns}");
    let api = workload_api(client, ns, target.kind);
    let current = api.get_scale(&target.name).await;
    let current = match current {
        Ok(s) => s.spec.and_then(|s| s.replicas).unwrap_or(0),
        Err(e) => return classify(&what, &e),
    };
    if current >= to {
        return Outcome::Applied(format!(
            "{target} already has {current} replicas (wanted {to})"
        ));
    }
    let r = api.patch_scale(&target.name, &pp, &patch).await;
    match r {
        Ok(_) => Outcome::Applied(format!("scaled {target} from {current} to {to} replicas")),
        Err(e) => classify(&what, &e),
    }
}

/// Raises an HPA's `spec.minReplicas`, idempotently: an HPA already at (or above) the new floor is
/// left alone. The patch carries the resourceVersion it was decided on, so a concurrent change
/// (the HPA's owner editing it) is a conflict, retried, not overwritten.
async fn scale_through_hpa(
    client: &Client,
    ns: &str,
    target: &TargetRef,
    change: &HpaChange,
) -> Outcome {
    let api = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns);
    let what = format!("raising minReplicas of HPA {ns}/{}", change.name);
    let hpa = match api.get_opt(&change.name).await {
        Ok(Some(h)) => h,
        Ok(None) => return Outcome::Failed(format!("{what}: the HPA no longer exists")),
        Err(e) => return classify(&what, &e),
    };
    let Some(spec) = hpa.spec.as_ref() else {
        return Outcome::Failed(format!("{what}: the HPA has no spec"));
    };
    let r = &spec.scale_target_ref;
    if r.kind != target.kind.as_str() || r.name != target.name {
        return Outcome::Failed(format!(
            "{what}: the HPA now targets {}/{}, not {target}",
            r.kind, r.name
        ));
    }
    let current = spec.min_replicas.unwrap_or(1);
    if current >= change.to_min_replicas {
        return Outcome::Applied(format!(
            "HPA {} already has minReplicas {current} (wanted {})",
            change.name, change.to_min_replicas
        ));
    }
    if spec.max_replicas < change.to_min_replicas {
        return Outcome::Failed(format!(
            "{what}: its maxReplicas is now {}, below the planned {}",
            spec.max_replicas, change.to_min_replicas
        ));
    }
    let patch = Patch::Merge(json!({
        "metadata": {"resourceVersion": hpa.metadata.resource_version},
        "spec": {"minReplicas": change.to_min_replicas},
    }));
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    match api.patch(&change.name, &pp, &patch).await {
        Ok(_) => Outcome::Applied(format!(
            "raised minReplicas of HPA {} from {current} to {} (the HPA scales {target})",
            change.name, change.to_min_replicas
        )),
        Err(e) => classify(&what, &e),
    }
}

async fn restart(client: &Client, ns: &str, target: &TargetRef, a: &Attempt) -> Outcome {
    let Some(stamp) = &a.restarted_at else {
        return Outcome::Failed("rollout restart attempt without a stamp".into());
    };
    let what = format!("rollout restart of {target} in {ns}");
    match get_workload(client, ns, target).await {
        Ok(Some(w)) if w.restarted_at.as_deref() == Some(stamp.as_str()) => {
            return Outcome::Applied(format!("{target} already restarted at {stamp}"));
        }
        Ok(Some(_)) => {}
        Ok(None) => return Outcome::Failed(format!("{target} not found in {ns}")),
        Err(e) => return classify(&what, &e),
    }
    let patch = Patch::Merge(
        json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}),
    );
    let pp = PatchParams::default();
    let r = workload_api(client, ns, target.kind)
        .patch(&target.name, &pp, &patch)
        .await;
    match r {
        Ok(_) => Outcome::Applied(format!("restarted {target} (restartedAt {stamp})")),
        Err(e) => classify(&what, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::{Duration, ScaleSpec};

    fn w(replicas: i32, available: i32) -> Workload {
        Workload {
            target: TargetRef {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
            },
            replicas,
            available,
            selector: None,
            restarted_at: None,
        }
    }

    fn pods(n: usize) -> Vec<LivePod> {
        (0..n)
            .map(|i| LivePod {
                name: format!("web-{i}"),
                uid: format!("uid-{i}"),
                started_at: Some(i as f64),
                containers: vec![],
                start_to_ready: None,
            })
            .collect()
    }

    fn guards(max_unavailable: u32) -> GuardSpec {
        GuardSpec {
            max_unavailable,
            cooldown: Duration::from_secs(0),
            ..GuardSpec::default()
        }
    }

    fn restart_pod() -> ActionSpec {
        ActionSpec {
            type_: ActionType::RestartPod,
            scale: None,
            resize: None,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("valid")
    }

    #[test]
    fn restart_plans_only_live_implicated_pods_within_max_unavailable() {
        let implicated = vec!["web-1".to_string(), "web-2".to_string(), "gone".to_string()];
        let a = plan(
            &restart_pod(),
            &w(3, 3),
            &ReplicasOwner::None,
            &pods(3),
            &implicated,
            &guards(1),
            now(),
        )
        .expect("plan");
        assert_eq!(a.pods, vec!["web-1/uid-1"]);
        let a = plan(
            &restart_pod(),
            &w(3, 3),
            &ReplicasOwner::None,
            &pods(3),
            &implicated,
            &guards(5),
            now(),
        )
        .expect("plan");
        assert_eq!(a.pods.len(), 2);
    }

    #[test]
    fn restart_waits_while_pods_are_unavailable() {
        let r = plan(
            &restart_pod(),
            &w(3, 2),
            &ReplicasOwner::None,
            &pods(3),
            &["web-1".into()],
            &guards(1),
            now(),
        );
        assert!(matches!(r, Err(PlanError::Blocked(_))), "{r:?}");
        let r = plan(
            &restart_pod(),
            &w(3, 3),
            &ReplicasOwner::None,
            &pods(3),
            &["nope".into()],
            &guards(1),
            now(),
        );
        assert!(matches!(r, Err(PlanError::Blocked(_))));
    }

    #[test]
    fn scale_respects_bounds() {
        let s = |step, min, max| ActionSpec {
            type_: ActionType::Scale,
            scale: Some(ScaleSpec {
                step,
                min_replicas: min,
                max_replicas: max,
                forecast: None,
            }),
            resize: None,
        };
        let a = plan(
            &s(2, None, 5),
            &w(2, 2),
            &ReplicasOwner::None,
            &[],
            &[],
            &guards(1),
            now(),
        )
        .expect("plan");
        assert_eq!((a.from_replicas, a.to_replicas), (Some(2), Some(4)));
        let a = plan(
            &s(3, None, 5),
            &w(4, 4),
            &ReplicasOwner::None,
            &[],
            &[],
            &guards(1),
            now(),
        )
        .expect("plan");
        assert_eq!(a.to_replicas, Some(5));
        let r = plan(
            &s(1, None, 5),
            &w(5, 5),
            &ReplicasOwner::None,
            &[],
            &[],
            &guards(1),
            now(),
        );
        assert!(matches!(r, Err(PlanError::Escalate(_))));
        let a = plan(
            &s(1, Some(3), 5),
            &w(1, 1),
            &ReplicasOwner::None,
            &[],
            &[],
            &guards(1),
            now(),
        )
        .expect("plan");
        assert_eq!(a.to_replicas, Some(3));
    }

    #[test]
    fn scale_acts_through_the_hpa_that_owns_the_replicas() {
        use super::owners::Hpa;
        let s = |step, min, max| ActionSpec {
            type_: ActionType::Scale,
            scale: Some(ScaleSpec {
                step,
                min_replicas: min,
                max_replicas: max,
                forecast: None,
            }),
            resize: None,
        };
        let hpa = |min: Option<i32>, max| {
            ReplicasOwner::Hpa(Hpa {
                name: "web".into(),
                min_replicas: min,
                max_replicas: max,
                min_owned_by: None,
            })
        };
        let change = |a: &Attempt| {
            a.through_hpa
                .as_ref()
                .map(|c| (c.from_min_replicas, c.to_min_replicas))
        };
        // (name, action, replicas now, owner) → Ok((from min, to min)) or Err(escalates)
        type Want = Result<(Option<i32>, i32), ()>;
        let cases: Vec<(&str, ActionSpec, i32, ReplicasOwner, Want)> = vec![
            (
                "step from the current replicas",
                s(2, None, 8),
                2,
                hpa(Some(2), 10),
                Ok((Some(2), 4)),
            ),
            (
                "HPA already above its floor",
                s(1, None, 8),
                5,
                hpa(Some(2), 10),
                Ok((Some(2), 6)),
            ),
            (
                "unset minReplicas is 1",
                s(1, None, 8),
                1,
                hpa(None, 10),
                Ok((None, 2)),
            ),
            (
                "policy maxReplicas caps",
                s(5, None, 4),
                2,
                hpa(Some(2), 10),
                Ok((Some(2), 4)),
            ),
            (
                "HPA maxReplicas caps",
                s(5, None, 8),
                2,
                hpa(Some(2), 3),
                Ok((Some(2), 3)),
            ),
            (
                "policy floor",
                s(1, Some(5), 8),
                2,
                hpa(Some(2), 10),
                Ok((Some(2), 5)),
            ),
            (
                "at the HPA's maximum",
                s(1, None, 8),
                3,
                hpa(Some(2), 3),
                Err(()),
            ),
            (
                "at the policy's maximum",
                s(1, None, 4),
                4,
                hpa(Some(2), 10),
                Err(()),
            ),
        ];
        for (name, action, replicas, owner, want) in cases {
            let got = plan(
                &action,
                &w(replicas, replicas),
                &owner,
                &[],
                &[],
                &guards(1),
                now(),
            );
            match (got, want) {
                (Ok(a), Ok(w)) => {
                    assert_eq!(change(&a), Some(w), "{name}");
                    assert_eq!(
                        (a.from_replicas, a.to_replicas),
                        (Some(replicas), Some(w.1)),
                        "{name}"
                    );
                    assert!(a.message.contains("HPA web"), "{name}: {}", a.message);
                }
                (Err(PlanError::Escalate(m)), Err(())) => {
                    assert!(m.contains("HPA web"), "{name}: {m}")
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        // No HPA: spec.replicas directly, nothing recorded about an HPA.
        let a = plan(
            &s(1, None, 8),
            &w(2, 2),
            &ReplicasOwner::None,
            &[],
            &[],
            &guards(1),
            now(),
        )
        .expect("plan");
        assert_eq!(a.through_hpa, None);
    }

    #[test]
    fn scale_is_refused_under_an_owner_it_cannot_act_through() {
        let s = ActionSpec {
            type_: ActionType::Scale,
            scale: Some(ScaleSpec {
                step: 1,
                min_replicas: None,
                max_replicas: 8,
                forecast: None,
            }),
            resize: None,
        };
        for (owner, reason) in [
            (ReplicasOwner::Keda("web".into()), owners::OWNED_BY_KEDA),
            (
                ReplicasOwner::GitOps("field manager kustomize-controller".into()),
                owners::OWNED_BY_GITOPS,
            ),
            (
                ReplicasOwner::Several(vec!["HPA a".into(), "HPA b".into()]),
                owners::SEVERAL_AUTOSCALERS,
            ),
        ] {
            match plan(&s, &w(2, 2), &owner, &[], &[], &guards(1), now()) {
                Err(PlanError::Refused(r)) => assert_eq!(r.reason, reason),
                other => panic!("{owner:?}: expected a refusal, got {other:?}"),
            }
        }
        // Other actions do not touch the replicas: a GitOps owner of spec.replicas does not matter.
        let owner = ReplicasOwner::GitOps("field manager kustomize-controller".into());
        let r = plan(
            &restart_pod(),
            &w(3, 3),
            &owner,
            &pods(3),
            &["web-1".into()],
            &guards(1),
            now(),
        );
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn rollout_restart_stamps_the_time() {
        let a = ActionSpec {
            type_: ActionType::RolloutRestart,
            scale: None,
            resize: None,
        };
        let at = plan(
            &a,
            &w(2, 2),
            &ReplicasOwner::None,
            &[],
            &[],
            &guards(1),
            now(),
        )
        .expect("plan");
        assert_eq!(at.restarted_at.as_deref(), Some("2023-11-14T22:13:20Z"));
    }
}
