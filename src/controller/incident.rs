//! Opening and driving incidents (Remediation objects): the apiserver side of the lifecycle.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType},
};
use serde_json::json;
use tracing::{info, warn};

use super::{Context, Evaluated};
use crate::{
    Error,
    diagnosis::{FaultVerdict, action_for},
    metrics::{ActionLabels, PhaseLabel},
    notify::Notification,
    remediation::{
        actions::{self, LivePod, MANAGER, PlanError, Workload},
        guards::{self, Refusal},
        lifecycle::{self, Check, Next, Outcome},
    },
    v1alpha1::{
        FaultKind, FaultSpec, Phase, Remediation, RemediationPolicy, RemediationSpec,
        RemediationStatus,
    },
};

/// The label naming a Remediation's policy.
pub const POLICY_LABEL: &str = "homeostat.dev/policy";

/// Every incident of a policy, oldest first, read from the apiserver (never a cache: no double action).
pub async fn history(ctx: &Context, ns: &str, policy: &str) -> Result<Vec<Remediation>, Error> {
    let mut items = Api::<Remediation>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{POLICY_LABEL}={policy}")))
        .await?
        .items;
    items.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(items)
}

/// Opens an incident for a firing fault, if the guards allow; then drives it at once.
#[allow(clippy::too_many_arguments)]
pub async fn open(
    ctx: &Context,
    policy: &RemediationPolicy,
    fault: &FaultSpec,
    verdict: &FaultVerdict,
    workload: &Workload,
    live: &[LivePod],
    ev: &Evaluated,
    history: &[Remediation],
) -> Result<Result<Remediation, Refusal>, Error> {
    let now = Timestamp::now();
    let action = action_for(fault);
    let spec = &policy.spec;
    if let Err(refusal) = guards::may_open(
        &spec.guards,
        history,
        &fault.name,
        action.type_.mutates(),
        now,
    ) {
        info!(fault = %fault.name, reason = refusal.reason, message = %refusal.message, "fault firing but a guard holds the incident");
        return Ok(Err(refusal));
    }
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let owner = policy
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Malformed("policy without a uid".into()))?;
    let rem = Remediation {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-{}-",
                truncate(&name, 30),
                truncate(&fault.name, 20)
            )),
            namespace: Some(ns.clone()),
            labels: Some(BTreeMap::from([
                (POLICY_LABEL.to_string(), name.clone()),
                ("homeostat.dev/fault".to_string(), fault.name.clone()),
            ])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: RemediationSpec {
            policy_ref: name.clone(),
            target: spec.target_ref.clone(),
            fault: fault.name.clone(),
            pattern: fault.pattern,
            pods: verdict.verdict.pods.clone(),
            action,
            evidence: verdict.verdict.evidence.iter().take(10).cloned().collect(),
            dry_run: spec.guards.dry_run,
        },
        status: None,
    };
    let api = Api::<Remediation>::namespaced(ctx.client.clone(), &ns);
    let created = api.create(&PostParams::default(), &rem).await?;
    let status = RemediationStatus {
        phase: Phase::Detected,
        message: verdict.verdict.message.clone(),
        ..RemediationStatus::default()
    };
    let created = save(ctx, &created, &status).await?;
    info!(
        remediation = %created.name_any(),
        fault = %fault.name,
        pattern = fault.pattern.as_str(),
        pods = ?verdict.verdict.pods,
        "incident opened: {}",
        verdict.verdict.message
    );
    publish(
        ctx,
        policy,
        &created,
        EventType::Warning,
        "FaultDetected",
        "Detect",
        format!(
            "{} on {}: {} (incident {})",
            fault.pattern.as_str(),
            spec.target_ref,
            verdict.verdict.message,
            created.name_any()
        ),
    )
    .await;
    drive(ctx, policy, created, ev, workload, live, history)
        .await
        .map(Ok)
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => s[..i].trim_end_matches('-'),
        None => s,
    }
}

/// Saves an incident's status (the status subresource), returning the stored object.
async fn save(
    ctx: &Context,
    rem: &Remediation,
    status: &RemediationStatus,
) -> Result<Remediation, Error> {
    let api =
        Api::<Remediation>::namespaced(ctx.client.clone(), &rem.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "homeostat.dev/v1alpha1",
        "kind": "Remediation",
        "status": status,
    });
    Ok(api
        .patch_status(
            &rem.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?)
}

/// The incident's fault re-evaluated now.
fn check_of(rem: &Remediation, ev: &Evaluated) -> Option<(Check, Vec<String>)> {
    if ev.fetch_error.is_some() {
        return Some((Check::Unknown, vec![]));
    }
    let v = ev.verdicts.iter().find(|v| v.fault == rem.spec.fault)?;
    Some(match v.verdict.kind {
        FaultKind::Healthy => (Check::Clear, vec![]),
        FaultKind::Inconclusive => (Check::Unknown, vec![]),
        _ => (Check::Firing, v.verdict.pods.clone()),
    })
}

/// Advances an open incident by one evaluation: verify, act, retry or escalate.
pub async fn drive(
    ctx: &Context,
    policy: &RemediationPolicy,
    rem: Remediation,
    ev: &Evaluated,
    workload: &Workload,
    live: &[LivePod],
    history: &[Remediation],
) -> Result<Remediation, Error> {
    let now = Timestamp::now();
    let spec = &policy.spec;
    let before = rem.status.clone().unwrap_or_default();
    let ns = policy.namespace().unwrap_or_default();
    let Some((check, firing_pods)) = check_of(&rem, ev) else {
        let s = lifecycle::escalate(
            before.clone(),
            format!(
                "fault {} is no longer in the policy; closing the incident",
                rem.spec.fault
            ),
            now,
        );
        let saved = save(ctx, &rem, &s).await?;
        after_transition(ctx, policy, &saved, &before).await;
        return Ok(saved);
    };
    let (mut s, next) = lifecycle::step(&rem.spec, &before, &spec.verify, check, now);
    let mut current = rem;
    match next {
        Next::Idle => {}
        Next::Plan(n) => {
            if n > 1
                && let Err(r) = guards::budget(&spec.guards, history, now)
            {
                s = lifecycle::escalate(s, format!("retry refused: {}", r.message), now);
            } else {
                let implicated = if firing_pods.is_empty() {
                    current.spec.pods.clone()
                } else {
                    firing_pods
                };
                match actions::plan(
                    &current.spec.action,
                    workload,
                    live,
                    &implicated,
                    &spec.guards,
                    now,
                ) {
                    Ok(attempt) => {
                        s = lifecycle::begin(s, attempt, current.spec.dry_run, now);
                        // Saved before acting: a crash from here on resumes with Next::Execute.
                        current = save(ctx, &current, &s).await?;
                        crate::failpoint::hit("after-pending-saved");
                        if s.phase == Phase::Acting {
                            s = execute(ctx, policy, &current, s, &ns).await;
                        } else {
                            count_action(ctx, &s, "dry_run");
                        }
                    }
                    Err(PlanError::Blocked(m)) => {
                        s.phase = Phase::Acting;
                        s.message = format!("waiting to act: {m}");
                    }
                    Err(PlanError::Escalate(m)) => {
                        s = lifecycle::escalate(s, m, now);
                    }
                }
            }
        }
        Next::Execute => {
            s = execute(ctx, policy, &current, s, &ns).await;
        }
    }
    if s != before {
        current = save(ctx, &current, &s).await?;
        after_transition(ctx, policy, &current, &before).await;
    }
    Ok(current)
}

async fn execute(
    ctx: &Context,
    policy: &RemediationPolicy,
    rem: &Remediation,
    s: RemediationStatus,
    ns: &str,
) -> RemediationStatus {
    let Some(attempt) = s.attempts.last().cloned() else {
        return s;
    };
    let outcome = actions::execute(&ctx.client, ns, &rem.spec.target, &attempt).await;
    if matches!(outcome, Outcome::Applied(_)) {
        crate::failpoint::hit("after-action");
    }
    let (label, etype, reason) = match &outcome {
        Outcome::Applied(_) => ("applied", EventType::Normal, "ActionApplied"),
        Outcome::Blocked(_) => ("blocked", EventType::Warning, "ActionBlocked"),
        Outcome::Failed(_) => ("failed", EventType::Warning, "ActionFailed"),
    };
    let msg = match &outcome {
        Outcome::Applied(m) | Outcome::Blocked(m) | Outcome::Failed(m) => m.clone(),
    };
    match &outcome {
        Outcome::Applied(_) => {
            info!(remediation = %rem.name_any(), action = attempt.action.as_str(), %msg, "action applied")
        }
        _ => {
            warn!(remediation = %rem.name_any(), action = attempt.action.as_str(), %msg, "action not applied; {}", if label == "blocked" { "will retry next evaluation" } else { "incident failed" })
        }
    }
    ctx.metrics
        .actions
        .get_or_create(&ActionLabels {
            action: attempt.action.as_str().into(),
            result: label.into(),
        })
        .inc();
    let note = format!(
        "{} (attempt {}, incident {}): {msg}",
        attempt.action.as_str(),
        attempt.number,
        rem.name_any()
    );
    publish(
        ctx,
        policy,
        rem,
        etype,
        reason,
        attempt.action.as_str(),
        note.clone(),
    )
    .await;
    publish_on_target(
        ctx,
        policy,
        rem,
        etype,
        reason,
        attempt.action.as_str(),
        note,
    )
    .await;
    if matches!(outcome, Outcome::Applied(_)) {
        notify_all(ctx, policy, rem, &s, true).await;
    }
    lifecycle::record(s, outcome, &policy.spec.verify, Timestamp::now())
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

/// Events, metrics and notifications on a phase change.
async fn after_transition(
    ctx: &Context,
    policy: &RemediationPolicy,
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
    if s.phase.is_terminal() {
        let started = rem.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(t) = started {
            ctx.metrics
                .remediation_duration
                .get_or_create(&PhaseLabel {
                    phase: s.phase.as_str().into(),
                })
                .observe(Timestamp::now().duration_since(t).as_secs_f64());
        }
        let etype = match s.phase {
            Phase::Succeeded | Phase::DryRun => EventType::Normal,
            _ => EventType::Warning,
        };
        publish(
            ctx,
            policy,
            rem,
            etype,
            &format!("Remediation{}", s.phase.as_str()),
            "Verify",
            format!(
                "incident {} {}: {}",
                rem.name_any(),
                s.phase.as_str(),
                s.message
            ),
        )
        .await;
        if matches!(s.phase, Phase::Escalated | Phase::Failed) {
            notify_all(ctx, policy, rem, s, false).await;
        }
    }
}

async fn notify_all(
    ctx: &Context,
    policy: &RemediationPolicy,
    rem: &Remediation,
    s: &RemediationStatus,
    action: bool,
) {
    let hooks: Vec<_> = policy
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
        namespace: rem.namespace().unwrap_or_default(),
        policy: policy.name_any(),
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
        // Delivery must not hold up the reconcile.
        tokio::spawn(async move {
            if let Err(e) = notifier.send(&hook, &n, 3, Duration::from_secs(5)).await {
                warn!(remediation = %n.remediation, error = %e, "notification not delivered; giving up");
            }
        });
    }
}

/// Records an Event on the policy, naming the incident as the related object.
async fn publish(
    ctx: &Context,
    policy: &RemediationPolicy,
    rem: &Remediation,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    publish_on(
        ctx,
        &policy.object_ref(&()),
        "policy",
        rem,
        type_,
        reason,
        action,
        note,
    )
    .await;
}

/// Records an Event on the target workload, naming the incident as the related object.
async fn publish_on_target(
    ctx: &Context,
    policy: &RemediationPolicy,
    rem: &Remediation,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let target = ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some(rem.spec.target.kind.as_str().into()),
        name: Some(rem.spec.target.name.clone()),
        namespace: policy.namespace(),
        ..ObjectReference::default()
    };
    publish_on(ctx, &target, "target", rem, type_, reason, action, note).await;
}

#[allow(clippy::too_many_arguments)]
async fn publish_on(
    ctx: &Context,
    regarding: &ObjectReference,
    what: &str,
    rem: &Remediation,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: Some(rem.object_ref(&())),
    };
    if let Err(e) = ctx.recorder.publish(&ev, regarding).await {
        warn!(error = %crate::kube_message(&e), "could not record an Event on the {what}; continuing");
    }
}
