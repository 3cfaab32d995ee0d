//! Carrying out the engine's intents: create or advance the Remediation (saved before acting),
//! execute the action, record the outcome, publish Events and notifications.
//!
//! Every mutating call is preceded by a leadership check, and every status write of an incident
//! carries the resourceVersion it was computed from: a stale view fails with a conflict and is
//! re-read on the next sweep instead of overwriting a newer state.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tracing::{info, warn};

use super::{
    Context,
    cache::{POLICY_LABEL, POLICY_UID_LABEL, TARGET_LABEL},
    events::{self, EventReason, On},
};
use crate::{
    Error,
    metrics::{ActionLabels, PhaseLabel, ResultLabel},
    notify::Notification,
    remediation::{
        actions::{self, MANAGER},
        engine::{self, Advancing, Intent, Opening, SEQ_LABEL},
        lifecycle::Outcome,
    },
    v1alpha1::{AttemptResult, Phase, Remediation, RemediationPolicySpec, RemediationStatus},
};

/// The policy an intent belongs to.
pub struct PolicyCtx<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// UID (recorded on each incident it opens).
    pub uid: &'a str,
    /// Spec.
    pub spec: &'a RemediationPolicySpec,
}

impl PolicyCtx<'_> {
    fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("homeostat.dev/v1alpha1".into()),
            kind: Some("RemediationPolicy".into()),
            name: Some(self.name.to_string()),
            namespace: Some(self.namespace.to_string()),
            uid: Some(self.uid.to_string()),
            ..ObjectReference::default()
        }
    }
}

/// Carries out one intent; returns the incident as it now stands (None when none is open or it
/// could not be written).
pub async fn apply(
    ctx: &Context,
    p: &PolicyCtx<'_>,
    intent: Intent,
    current: Option<&Remediation>,
) -> Result<Option<Remediation>, Error> {
    match intent {
        Intent::Idle | Intent::Hold { .. } => Ok(None),
        Intent::Open(o) => open(ctx, p, *o).await,
        Intent::Advance(a) => match current {
            Some(rem) => advance(ctx, p, *a, rem.clone()).await.map(Some),
            None => Ok(None),
        },
    }
}

/// Whether this replica holds the shard of `namespace` right now (its renew deadline not passed).
fn leading(ctx: &Context, namespace: &str) -> bool {
    ctx.fence.holds_namespace(namespace)
}

async fn open(ctx: &Context, p: &PolicyCtx<'_>, o: Opening) -> Result<Option<Remediation>, Error> {
    if !leading(ctx, p.namespace) {
        return Ok(None);
    }
    let rem = Remediation {
        metadata: ObjectMeta {
            name: Some(o.name.clone()),
            namespace: Some(p.namespace.to_string()),
            labels: Some(BTreeMap::from([
                (POLICY_LABEL.to_string(), p.name.to_string()),
                ("homeostat.dev/fault".to_string(), o.spec.fault.clone()),
                (TARGET_LABEL.to_string(), label_value(&o.spec.target.name)),
                (SEQ_LABEL.to_string(), o.seq.to_string()),
                (POLICY_UID_LABEL.to_string(), p.uid.to_string()),
            ])),
            // No owner reference: the trail outlives its policy and is pruned by retention
            // (`super::retention`), not by the garbage collector.
            ..ObjectMeta::default()
        },
        spec: o.spec.clone(),
        status: None,
    };
    let api = Api::<Remediation>::namespaced(ctx.client.clone(), p.namespace);
    let created = match api.create(&PostParams::default(), &rem).await {
        Ok(r) => r,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            warn!(remediation = %o.name, namespace = p.namespace, "incident already exists (another writer, or a cache behind our own write); re-reading on the next sweep");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    ctx.count_write("remediation");
    ctx.caches_remember(&created);
    crate::failpoint::hit("after-opened");
    let saved = save(ctx, &created, &o.status).await?;
    info!(
        remediation = %saved.name_any(),
        fault = %o.spec.fault,
        pattern = o.spec.pattern.as_str(),
        target = %o.spec.target,
        pods = ?o.spec.pods,
        "incident opened: {}",
        saved.status.as_ref().map(|s| s.message.as_str()).unwrap_or_default()
    );
    events::publish(
        &ctx.recorder,
        &p.object_ref(),
        &saved,
        EventReason::FaultDetected,
        "Detect",
        format!(
            "{} on {} (incident {})",
            o.spec.pattern.as_str(),
            o.spec.target,
            saved.name_any()
        ),
        On::Policy,
    )
    .await;
    ctx.count_write("event");
    let before = RemediationStatus::default();
    let saved = if o.act {
        crate::failpoint::hit("after-pending-saved");
        execute(ctx, p, saved, o.status).await?
    } else {
        if o.status.phase == Phase::DryRun {
            count_action(ctx, &o.status, "dry_run");
        } else if o.status.phase == Phase::Shadow {
            count_action(ctx, &o.status, "shadow");
        }
        saved
    };
    after_transition(ctx, p, &saved, &before).await;
    Ok(Some(saved))
}

async fn advance(
    ctx: &Context,
    p: &PolicyCtx<'_>,
    a: Advancing,
    rem: Remediation,
) -> Result<Remediation, Error> {
    if (!a.changed() && !a.act) || !leading(ctx, p.namespace) {
        return Ok(rem);
    }
    let saved = if a.changed() {
        crate::failpoint::hit_at("before-saving", a.status.phase.as_str());
        save(ctx, &rem, &a.status).await?
    } else {
        rem
    };
    let saved = if a.act {
        if a.status.attempts.last().map(|x| x.result) == Some(AttemptResult::Pending) {
            crate::failpoint::hit("after-pending-saved");
        }
        execute(ctx, p, saved, a.status.clone()).await?
    } else {
        saved
    };
    after_transition(ctx, p, &saved, &a.before).await;
    Ok(saved)
}

/// Saves an incident's status with the resourceVersion it was computed from (server-side apply:
/// fields the new status drops, such as a cleared `clearSince`, are removed).
async fn save(
    ctx: &Context,
    rem: &Remediation,
    status: &RemediationStatus,
) -> Result<Remediation, Error> {
    let api =
        Api::<Remediation>::namespaced(ctx.client.clone(), &rem.namespace().unwrap_or_default());
    // kstatus conditions, so Flux and Argo CD read an open incident as InProgress and an
    // escalated or failed one as Failed.
    let mut status = status.clone();
    crate::kstatus::remediation_conditions(
        &mut status.conditions,
        status.phase,
        &status.message,
        rem.metadata.generation,
        Timestamp::now(),
    );
    status.message = crate::bounded::message(&status.message);
    // Attempt messages quote apiserver answers; bound them like the rest (at most maxAttempts, 10).
    for a in &mut status.attempts {
        a.message = crate::bounded::message(&a.message);
    }
    let patch = json!({
        "apiVersion": "homeostat.dev/v1alpha1",
        "kind": "Remediation",
        "metadata": {"name": rem.name_any(), "resourceVersion": rem.resource_version()},
        "status": status,
    });
    let saved = api
        .patch_status(
            &rem.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
    ctx.count_write("remediation_status");
    ctx.caches_remember(&saved);
    Ok(saved)
}

/// Executes the incident's last attempt (checking leadership right before the call), then
/// records the outcome.
async fn execute(
    ctx: &Context,
    p: &PolicyCtx<'_>,
    rem: Remediation,
    s: RemediationStatus,
) -> Result<Remediation, Error> {
    let Some(attempt) = s.attempts.last().cloned() else {
        return Ok(rem);
    };
    crate::failpoint::pause("before-fence-check");
    if !leading(ctx, p.namespace) {
        warn!(remediation = %rem.name_any(), namespace = %p.namespace, "lost leadership before acting (the Lease was not renewed within its deadline); the new leader resumes the incident");
        return Ok(rem);
    }
    let outcome = actions::execute(&ctx.client, p.namespace, &rem.spec.target, &attempt).await;
    ctx.count_write("action");
    if matches!(outcome, Outcome::Applied(_)) {
        crate::failpoint::hit("after-action");
    }
    let (label, reason) = match &outcome {
        Outcome::Applied(_) => ("applied", EventReason::ActionApplied),
        Outcome::Blocked(_) => ("blocked", EventReason::ActionBlocked),
        Outcome::Failed(_) => ("failed", EventReason::ActionFailed),
        Outcome::Fallback(_) => ("fallback", EventReason::ActionFailed),
    };
    let msg = match &outcome {
        Outcome::Applied(m) | Outcome::Blocked(m) | Outcome::Failed(m) | Outcome::Fallback(m) => {
            m.clone()
        }
    };
    match &outcome {
        Outcome::Applied(_) => {
            info!(remediation = %rem.name_any(), action = attempt.action.as_str(), %msg, "action applied; verifying")
        }
        Outcome::Blocked(_) => {
            warn!(remediation = %rem.name_any(), action = attempt.action.as_str(), %msg, "action blocked; will retry on a later sweep while the fault still fires")
        }
        Outcome::Failed(_) => {
            warn!(remediation = %rem.name_any(), action = attempt.action.as_str(), %msg, "action refused for good; the incident failed")
        }
        Outcome::Fallback(_) => {
            warn!(remediation = %rem.name_any(), action = attempt.action.as_str(), %msg, "the resize did not take; the policy's resize.fallback runs on the next sweep")
        }
    }
    ctx.metrics
        .actions
        .get_or_create(&ActionLabels {
            action: attempt.action.as_str().into(),
            result: label.into(),
        })
        .inc();
    events::publish(
        &ctx.recorder,
        &p.object_ref(),
        &rem,
        reason,
        attempt.action.as_str(),
        format!(
            "{} (attempt {}, incident {}): {msg}",
            attempt.action.as_str(),
            attempt.number,
            rem.name_any()
        ),
        On::PolicyAndTarget,
    )
    .await;
    ctx.count_write("event");
    let applied = matches!(outcome, Outcome::Applied(_));
    let next = engine::after_execution(s, outcome, p.spec, Timestamp::now());
    let saved = save(ctx, &rem, &next).await?;
    crate::failpoint::hit("after-outcome-saved");
    if applied {
        notify_all(ctx, p, &saved, &next, true);
    }
    Ok(saved)
}

fn count_action(ctx: &Context, s: &RemediationStatus, result: &str) {
    if let Some(a) = s.attempts.last() {
        ctx.metrics
            .actions
            .get_or_create(&ActionLabels {
                action: a.action.as_str().into(),
                result: result.into(),
            })
            .inc();
    }
}

/// Events, metrics and notifications when an incident ends.
async fn after_transition(
    ctx: &Context,
    p: &PolicyCtx<'_>,
    rem: &Remediation,
    before: &RemediationStatus,
) {
    let Some(s) = rem.status.as_ref() else {
        return;
    };
    if s.phase == before.phase {
        return;
    }
    info!(remediation = %rem.name_any(), from = before.phase.as_str(), to = s.phase.as_str(), message = %s.message, "incident phase changed");
    if !s.phase.is_terminal() {
        return;
    }
    if let Some(t) = rem.metadata.creation_timestamp.as_ref() {
        ctx.metrics
            .remediation_duration
            .get_or_create(&PhaseLabel {
                phase: s.phase.as_str().into(),
            })
            .observe(Timestamp::now().duration_since(t.0).as_secs_f64());
    }
    events::publish(
        &ctx.recorder,
        &p.object_ref(),
        rem,
        EventReason::Ended(s.phase),
        "Verify",
        format!(
            "incident {} {}: {}",
            rem.name_any(),
            s.phase.as_str(),
            s.message
        ),
        On::Policy,
    )
    .await;
    ctx.count_write("event");
    if matches!(s.phase, Phase::Escalated | Phase::Failed) {
        notify_all(ctx, p, rem, s, false);
    }
}

fn notify_all(
    ctx: &Context,
    p: &PolicyCtx<'_>,
    rem: &Remediation,
    s: &RemediationStatus,
    action: bool,
) {
    let hooks: Vec<_> = p
        .spec
        .notify
        .iter()
        .filter(|n| !action || n.webhook.on_every_action)
        .map(|n| n.webhook.clone())
        .collect();
    if hooks.is_empty() {
        return;
    }
    let n = Notification {
        namespace: p.namespace.to_string(),
        policy: p.name.to_string(),
        remediation: rem.name_any(),
        target: rem.spec.target.to_string(),
        pattern: rem.spec.pattern.as_str().into(),
        action: rem.spec.action.type_.as_str().into(),
        phase: if action {
            "Acting".into()
        } else {
            s.phase.as_str().into()
        },
        message: s.message.clone(),
    };
    for hook in hooks {
        let notifier = ctx.notifier.clone();
        let n = n.clone();
        let metrics = ctx.metrics.clone();
        // Delivery must not hold up the sweep.
        tokio::spawn(async move {
            let result = notifier.send(&hook, &n, 3, Duration::from_secs(5)).await;
            metrics
                .notifications
                .get_or_create(&ResultLabel {
                    result: if result.is_ok() {
                        "delivered"
                    } else {
                        "failed"
                    }
                    .into(),
                })
                .inc();
            if let Err(e) = result {
                warn!(remediation = %n.remediation, error = %e, "notification not delivered after 3 tries; giving up");
            }
        });
    }
}

/// A label value from a name: at most 63 characters of `[a-z0-9.-]`, trimmed.
fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::label_value;

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("web"), "web");
        assert_eq!(label_value("-a/b?c#-"), "abc");
        assert_eq!(label_value(&"x".repeat(100)).len(), 63);
    }
}
