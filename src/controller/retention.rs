//! How long the trail lasts. Remediations have no owner reference, so deleting a policy keeps its
//! incidents; each sweep of the leader prunes them here instead:
//!
//! - a terminal incident is deleted once it finished more than `max_age` ago;
//! - of each policy object's terminal incidents for one target, the newest `history_limit` are
//!   kept; older ones are deleted;
//! - neither rule deletes an incident the live policy's guards still read (cooldown, relapse
//!   window, the hourly budget, the effectiveness memory's failure window), so a short setting
//!   cannot turn into an incident storm and a failed action is not retried early;
//! - an open incident is never deleted; one whose policy object is gone can take no further step,
//!   so it is halted (phase `Halted`, saying why), then ages like any other.
//!
//! [`choose`] is pure; [`run`] carries out a bounded part of its plan per sweep.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use serde_json::json;
use tracing::{debug, info, warn};

use super::{
    Context,
    cache::{Snapshot, policy_uid},
};
use crate::{
    metrics::ResultLabel,
    remediation::actions::MANAGER,
    v1alpha1::{Phase, Remediation, TargetRef},
};

/// How long Remediations are kept (`--remediation-history-limit`, `--remediation-max-age`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Terminal incidents kept per policy object and target (newest first).
    pub history_limit: usize,
    /// Terminal incidents that finished longer ago than this are deleted.
    pub max_age: Duration,
    /// Deletions and halts carried out per sweep at most (the rest wait for the next sweep).
    pub per_sweep: usize,
}

impl Default for Limits {
    /// 20 incidents per policy and target, 30 days, 50 writes per sweep.
    fn default() -> Self {
        Self {
            history_limit: 20,
            max_age: Duration::from_secs(30 * 24 * 3600),
            per_sweep: 50,
        }
    }
}

/// Why a Remediation is acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Why {
    /// Finished longer ago than `max_age`.
    Age,
    /// Beyond `history_limit` for its policy and target.
    Limit,
    /// Open, and its policy object is gone: halt it.
    Orphaned,
}

impl Why {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Age => "age",
            Self::Limit => "limit",
            Self::Orphaned => "halted",
        }
    }
}

/// One Remediation to delete or halt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (the delete is preconditioned on it).
    pub uid: String,
    /// Why.
    pub why: Why,
}

/// What retention would do now: halts first, then deletions, oldest first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Orphaned open incidents to halt.
    pub halt: Vec<Step>,
    /// Terminal incidents to delete.
    pub delete: Vec<Step>,
}

/// Chooses what to prune (pure). `rems` are the Remediations the operator opened; `live` maps
/// each existing policy object's UID to how far back its guards read history.
pub fn choose(
    rems: &[&Remediation],
    live: &HashMap<String, SignedDuration>,
    limits: &Limits,
    now: Timestamp,
) -> Plan {
    let max_age = SignedDuration::try_from(limits.max_age).unwrap_or(SignedDuration::MAX);
    let mut plan = Plan::default();
    // Terminal incidents per (namespace, policy UID, target), with when they finished.
    type Group<'a> = Vec<(Timestamp, &'a Remediation)>;
    let mut groups: HashMap<(String, String, TargetRef), Group<'_>> = HashMap::new();
    for r in rems {
        let Some(uid) = policy_uid(r) else { continue };
        let step = |why| Step {
            namespace: r.namespace().unwrap_or_default(),
            name: r.name_any(),
            uid: r.uid().unwrap_or_default(),
            why,
        };
        let created = r.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let status = r.status.as_ref();
        if !status.is_some_and(|s| s.phase.is_terminal()) {
            if !live.contains_key(&uid) {
                plan.halt.push(step(Why::Orphaned));
            }
            continue;
        }
        let finished = status
            .and_then(|s| s.finished_at.as_ref())
            .map_or(created, |t| t.0);
        let guarded = live
            .get(&uid)
            .is_some_and(|l| now.duration_since(finished) <= *l);
        if !guarded && now.duration_since(finished) > max_age {
            plan.delete.push(step(Why::Age));
            continue;
        }
        groups
            .entry((step(Why::Age).namespace, uid, r.spec.target.clone()))
            .or_default()
            .push((finished, r));
    }
    for ((ns, uid, _), mut v) in groups {
        if v.len() <= limits.history_limit {
            continue;
        }
        // Newest first; ties by name so the choice is stable.
        v.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| b.1.name_any().cmp(&a.1.name_any()))
        });
        let lookback = live.get(&uid).copied();
        for (finished, r) in v.into_iter().skip(limits.history_limit) {
            if lookback.is_some_and(|l| now.duration_since(finished) <= l) {
                continue;
            }
            plan.delete.push(Step {
                namespace: ns.clone(),
                name: r.name_any(),
                uid: r.uid().unwrap_or_default(),
                why: Why::Limit,
            });
        }
    }
    let key = |s: &Step| (s.namespace.clone(), s.name.clone());
    plan.halt.sort_by_key(key);
    plan.delete.sort_by_key(key);
    plan
}

/// How far back a policy's guards read its history: the cooldown, the relapse window, the
/// sliding hour of `maxActionsPerHour` and the effectiveness memory's `failureWindow` (when
/// `skipAfterFailures` is on), whichever is longest.
pub fn lookback(spec: &crate::v1alpha1::RemediationPolicySpec) -> SignedDuration {
    let d = |x: Duration| SignedDuration::try_from(x).unwrap_or(SignedDuration::MAX);
    let memory = if spec.guards.skip_after_failures > 0 {
        d(spec.guards.failure_window.get())
    } else {
        SignedDuration::ZERO
    };
    d(spec.guards.cooldown.get())
        .max(d(spec.guards.relapse_window.get()))
        .max(SignedDuration::from_hours(1))
        .max(memory)
}

/// What retention remembers between sweeps: the steps already carried out (per object and kind
/// of step: a halted incident is deleted later), so a cache that has not caught up yet does not
/// make it repeat them.
#[derive(Default)]
pub struct State {
    done: HashSet<(String, Why)>,
    failed: HashSet<String>,
}

/// Prunes the trail: a bounded part of [`choose`]'s plan, the leadership checked before each
/// write. Runs inside the leader's sweep.
pub async fn run(ctx: &Context, state: &mut State, snap: &Snapshot, now: Timestamp) {
    let rems: Vec<&Remediation> = snap.incidents.values().flatten().collect();
    let live: HashMap<String, SignedDuration> = snap
        .policies
        .iter()
        .map(|p| {
            let l = match p.policy.as_ref() {
                Ok(p) => lookback(&p.spec),
                // Unreadable: keep everything its guards could read.
                Err(_) => SignedDuration::MAX,
            };
            (p.uid.clone(), l)
        })
        .collect();
    let plan = choose(&rems, &live, &ctx.settings.retention, now);
    let present: HashSet<String> = rems.iter().filter_map(|r| r.uid()).collect();
    state.done.retain(|(uid, _)| present.contains(uid));
    state.failed.retain(|uid| present.contains(uid));
    let steps: Vec<Step> = plan
        .halt
        .into_iter()
        .chain(plan.delete)
        .filter(|s| !state.done.contains(&(s.uid.clone(), s.why)))
        // Another replica's shard is pruned by that replica.
        .filter(|s| ctx.fence.holds_namespace(&s.namespace))
        .take(ctx.settings.retention.per_sweep.max(1))
        .collect();
    if steps.is_empty() {
        return;
    }
    let by_name: HashMap<(&str, String), &Remediation> = rems
        .iter()
        .map(|r| {
            (
                (r.metadata.namespace.as_deref().unwrap_or(""), r.name_any()),
                *r,
            )
        })
        .collect();
    let mut counts: HashMap<&'static str, u32> = HashMap::new();
    for s in steps {
        if !ctx.fence.holds_namespace(&s.namespace) {
            debug!(namespace = %s.namespace, "lost this shard's Lease; its trail is pruned by the next holder");
            continue;
        }
        let api = Api::<Remediation>::namespaced(ctx.client.clone(), &s.namespace);
        let result = match s.why {
            Why::Orphaned => match by_name.get(&(s.namespace.as_str(), s.name.clone())) {
                Some(r) => halt(&api, r, now).await,
                None => continue,
            },
            Why::Age | Why::Limit => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(s.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&s.name, &dp).await {
                    Ok(_) => Ok(()),
                    // Gone already, or replaced by another object of that name: nothing to do.
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => {
                state.done.insert((s.uid.clone(), s.why));
                ctx.count_write("remediation_retention");
                *counts.entry(s.why.as_str()).or_default() += 1;
                ctx.metrics
                    .trail_pruned
                    .get_or_create(&ResultLabel {
                        result: s.why.as_str().into(),
                    })
                    .inc();
                debug!(remediation = %s.name, namespace = %s.namespace, why = s.why.as_str(), "trail: pruned");
            }
            // Warned once per object; later failures of the same one are debug.
            Err(e) if state.failed.insert(s.uid.clone()) => {
                warn!(remediation = %s.name, namespace = %s.namespace, why = s.why.as_str(), error = %crate::kube_message(&e), "trail: pruning failed; retrying on the next sweep");
            }
            Err(e) => {
                debug!(remediation = %s.name, namespace = %s.namespace, error = %crate::kube_message(&e), "trail: pruning failed again");
            }
        }
    }
    if counts.is_empty() {
        return;
    }
    let n = |k| counts.get(k).copied().unwrap_or(0);
    info!(
        deleted_for_age = n("age"),
        deleted_over_limit = n("limit"),
        halted_orphans = n("halted"),
        history_limit = ctx.settings.retention.history_limit,
        max_age_s = ctx.settings.retention.max_age.as_secs(),
        "trail pruned"
    );
}

/// Halts an open incident whose policy object is gone (server-side apply of the whole status,
/// carrying the resourceVersion it was read at).
async fn halt(api: &Api<Remediation>, r: &Remediation, now: Timestamp) -> Result<(), kube::Error> {
    let mut status = r.status.clone().unwrap_or_default();
    status.phase = Phase::Halted;
    status.message = format!(
        "halted: its policy {} was deleted; this incident takes no further step",
        r.spec.policy_ref
    );
    status.finished_at = Some(Time(now));
    status.deadline = None;
    crate::kstatus::remediation_conditions(
        &mut status.conditions,
        status.phase,
        &status.message,
        r.metadata.generation,
        now,
    );
    let patch = json!({
        "apiVersion": "homeostat.dev/v1alpha1",
        "kind": "Remediation",
        "metadata": {"name": r.name_any(), "resourceVersion": r.resource_version()},
        "status": status,
    });
    api.patch_status(
        &r.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    info!(remediation = %r.name_any(), namespace = ?r.namespace(), policy = %r.spec.policy_ref, "trail: open incident of a deleted policy halted");
    Ok(())
}

#[cfg(test)]
mod tests;
