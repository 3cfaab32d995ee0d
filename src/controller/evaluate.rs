//! One reconcile of a policy: validate → resolve the target → query → classify → drive incidents → status.

use std::{sync::Arc, time::Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::{Context, incident, prom, validate};
use crate::{
    Error, conditions,
    diagnosis::{
        EvalContext, FaultVerdict, Verdict, choose, evaluate_all,
        fetch::{self, FetchError, PodRef, QuerySet, Range, needed, workload_vars},
    },
    metrics::{FaultLabel, ResultLabel},
    prometheus::PromClient,
    remediation::actions::{self, LivePod, MANAGER},
    v1alpha1::{
        Evaluation, FaultVerdictStatus, Phase, RemediationPolicy, RemediationPolicySpec,
        RemediationPolicyStatus,
    },
};

/// The result of evaluating a policy's faults once.
#[derive(Debug)]
pub struct Evaluated {
    /// One verdict per fault (Inconclusive for all when the fetch failed).
    pub verdicts: Vec<FaultVerdict>,
    /// Queries issued.
    pub queries: u32,
    /// Why no data could be read, if so.
    pub fetch_error: Option<FetchError>,
}

/// Reads the series of the given pods and evaluates every fault of `spec` at `now` (unix seconds).
pub async fn evaluate_policy(
    prom: &PromClient,
    spec: &RemediationPolicySpec,
    namespace: &str,
    pods: &[PodRef],
    now: f64,
    settings: &super::Settings,
) -> Evaluated {
    let queries = QuerySet::with_overrides(spec.queries.as_ref());
    let pod_names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    let vars = workload_vars(
        namespace,
        &spec.target_ref.name,
        &pod_names,
        &settings.window,
    );
    let signals: Vec<_> = spec
        .signals
        .iter()
        .filter(|s| {
            spec.faults
                .iter()
                .any(|f| f.signal.as_deref() == Some(&s.name))
        })
        .collect();
    let range = Range::for_faults(&spec.faults, now, settings.step);
    let ctx = EvalContext {
        now,
        step: settings.step,
        stale_after: settings.stale_after,
    };
    match fetch::fetch(
        prom,
        &queries,
        &needed(&spec.faults),
        &signals,
        &vars,
        range,
    )
    .await
    {
        Ok(f) => {
            let w = fetch::assemble(&f, pods);
            Evaluated {
                verdicts: evaluate_all(&spec.faults, &w, &ctx),
                queries: f.queries,
                fetch_error: None,
            }
        }
        Err(e) => Evaluated {
            verdicts: spec
                .faults
                .iter()
                .map(|f| FaultVerdict {
                    fault: f.name.clone(),
                    pattern: f.pattern,
                    verdict: Verdict::inconclusive(format!("no data: {e}")),
                })
                .collect(),
            queries: 0,
            fetch_error: Some(e),
        },
    }
}

/// Aligns evaluation times to the step grid so consecutive evaluations read the same points.
fn aligned_now(step: f64) -> f64 {
    let now = Timestamp::now().as_millisecond() as f64 / 1000.0;
    (now / step).floor() * step
}

/// Writes the policy status with server-side apply under the homeostat field manager.
async fn save_status(
    ctx: &Context,
    policy: &RemediationPolicy,
    status: &RemediationPolicyStatus,
) -> Result<(), Error> {
    let ns = policy.namespace().unwrap_or_default();
    let api = Api::<RemediationPolicy>::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": "homeostat.dev/v1alpha1",
        "kind": "RemediationPolicy",
        "status": status,
    });
    api.patch_status(
        &policy.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    Ok(())
}

/// One reconcile of a policy.
#[instrument(skip_all, fields(policy = %policy.name_any(), namespace = %policy.namespace().unwrap_or_default()))]
pub async fn reconcile(policy: &Arc<RemediationPolicy>, ctx: &Context) -> Result<Action, Error> {
    let started = Instant::now();
    if !*ctx.leading.borrow() {
        // A standby replica neither acts nor writes status; it checks back for the lease.
        return Ok(Action::requeue(std::time::Duration::from_secs(5)));
    }
    let ns = policy
        .namespace()
        .ok_or_else(|| Error::Malformed("RemediationPolicy without a namespace".into()))?;
    let spec = &policy.spec;
    let generation = policy.metadata.generation;
    let now_ts = Timestamp::now();
    let interval = spec.interval.get();
    let mut status = policy.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let cond = |st: &mut RemediationPolicyStatus, t: &str, v: bool, reason: &str, msg: String| {
        conditions::set(&mut st.conditions, t, v, reason, msg, generation, now_ts);
    };

    // 1. Validate what the schema cannot.
    if let Err(problems) = validate(spec) {
        let msg = format!("invalid policy: {}", problems.join("; "));
        warn!(%msg, "policy is invalid; waiting for a spec change");
        cond(
            &mut status,
            conditions::READY,
            false,
            "InvalidSpec",
            msg.clone(),
        );
        cond(&mut status, conditions::STALLED, true, "InvalidSpec", msg);
        cond(
            &mut status,
            conditions::RECONCILING,
            false,
            "InvalidSpec",
            String::new(),
        );
        save_status(ctx, policy, &status).await?;
        count(ctx, "invalid_spec");
        return Ok(Action::await_change());
    }

    // 2. The target and its pods.
    let Some(workload) = actions::get_workload(&ctx.client, &ns, &spec.target_ref).await? else {
        let msg = format!(
            "{} not found in namespace {ns}; evaluating again in {}",
            spec.target_ref, spec.interval
        );
        cond(
            &mut status,
            conditions::READY,
            false,
            "TargetNotFound",
            msg.clone(),
        );
        cond(
            &mut status,
            conditions::STALLED,
            true,
            "TargetNotFound",
            msg,
        );
        save_status(ctx, policy, &status).await?;
        count(ctx, "target_not_found");
        return Ok(Action::requeue(interval));
    };
    let live = actions::list_pods(&ctx.client, &ns, &workload).await?;
    let pods: Vec<PodRef> = live
        .iter()
        .map(|p: &LivePod| PodRef {
            namespace: ns.clone(),
            name: p.name.clone(),
            started_at: p.started_at,
        })
        .collect();

    // 3. Prometheus, and the verdicts.
    let prom = match prom::client_for(
        &ctx.client,
        &ns,
        spec.prometheus.as_ref(),
        ctx.default_prom.as_ref(),
        ctx.settings.query_timeout,
    )
    .await
    {
        Ok(p) => p,
        Err(msg) => {
            cond(
                &mut status,
                conditions::READY,
                false,
                "PrometheusConfig",
                msg.clone(),
            );
            cond(
                &mut status,
                conditions::STALLED,
                true,
                "PrometheusConfig",
                msg,
            );
            save_status(ctx, policy, &status).await?;
            count(ctx, "prometheus_config");
            return Ok(Action::requeue(interval));
        }
    };
    let now = aligned_now(ctx.settings.step);
    let q_started = Instant::now();
    let ev = evaluate_policy(&prom, spec, &ns, &pods, now, &ctx.settings).await;
    ctx.metrics
        .query_duration
        .observe(q_started.elapsed().as_secs_f64());
    for v in &ev.verdicts {
        ctx.metrics
            .verdicts
            .get_or_create(&FaultLabel {
                fault: v.verdict.kind.as_str().into(),
            })
            .inc();
    }

    // 4. Incidents: drive the open one, or open one.
    let mut incident_note = None;
    let active = {
        let history = incident::history(ctx, &ns, &policy.name_any()).await?;
        match history.iter().find(|r| {
            !r.status.as_ref().is_some_and(|s| s.phase.is_terminal())
                && r.spec.target == spec.target_ref
        }) {
            Some(open) => {
                let open = open.clone();
                Some(incident::drive(ctx, policy, open, &ev, &workload, &live, &history).await?)
            }
            None if ev.fetch_error.is_none() => match choose(&spec.faults, &ev.verdicts) {
                Some((fault, verdict)) => {
                    match incident::open(
                        ctx, policy, fault, verdict, &workload, &live, &ev, &history,
                    )
                    .await?
                    {
                        Ok(rem) => Some(rem),
                        Err(refusal) => {
                            incident_note = Some(refusal);
                            None
                        }
                    }
                }
                None => None,
            },
            None => None,
        }
    };

    // 5. Status.
    let firing: Option<&FaultVerdict> = choose(&spec.faults, &ev.verdicts).map(|(_, v)| v);
    if let Some(f) = firing {
        status.last_fault = Some(f.pattern.as_str().to_string());
    }
    status.active_remediation = active
        .as_ref()
        .filter(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .map(|r| r.name_any());
    ctx.set_active(
        kube::runtime::reflector::ObjectRef::from_obj(&**policy),
        status.active_remediation.is_some(),
    );
    status.last_evaluation = Some(Evaluation {
        time: Time(now_ts),
        queries: ev.queries,
        verdicts: ev
            .verdicts
            .iter()
            .map(|v| FaultVerdictStatus {
                fault: v.fault.clone(),
                verdict: v.verdict.kind,
                pods: v.verdict.pods.clone(),
                message: v.verdict.message.clone(),
                evidence: v.verdict.evidence.iter().take(6).cloned().collect(),
                due: v.verdict.due,
                due_in_seconds: v.verdict.due_in,
                time_to_limit_seconds: v.verdict.time_to_limit,
                confidence: v.verdict.kind.is_fault().then_some(v.verdict.confidence),
            })
            .collect(),
    });
    cond(
        &mut status,
        conditions::STALLED,
        false,
        "Evaluating",
        String::new(),
    );
    match &ev.fetch_error {
        Some(e) => {
            let msg = format!(
                "cannot read metrics ({}); taking no action; retrying every {}",
                e, spec.interval
            );
            warn!(error = %e, "evaluation without data: no action");
            cond(&mut status, conditions::READY, false, e.category(), msg);
            ctx.metrics
                .query_errors
                .get_or_create(&ResultLabel {
                    result: e.category().into(),
                })
                .inc();
            count(ctx, "no_data");
        }
        None => {
            let (reason, msg) = if spec.guards.suspend {
                (
                    "Suspended",
                    "evaluating; suspended: no incident will be opened".to_string(),
                )
            } else if spec.guards.dry_run {
                (
                    "DryRun",
                    "evaluating in dry run: decisions are recorded, nothing is changed".to_string(),
                )
            } else {
                ("Evaluating", summary(&ev.verdicts))
            };
            let msg = match &incident_note {
                Some(r) => format!("{msg}; {}: {}", r.reason, r.message),
                None => msg,
            };
            cond(&mut status, conditions::READY, true, reason, msg);
            count(ctx, "ok");
        }
    }
    match &active {
        Some(r) if !r.status.as_ref().is_some_and(|s| s.phase.is_terminal()) => {
            let phase = r.status.as_ref().map_or(Phase::Detected, |s| s.phase);
            cond(
                &mut status,
                conditions::RECONCILING,
                true,
                "Remediating",
                format!("incident {} is {}", r.name_any(), phase.as_str()),
            );
        }
        _ => cond(
            &mut status,
            conditions::RECONCILING,
            false,
            "Idle",
            String::new(),
        ),
    }
    save_status(ctx, policy, &status).await?;
    ctx.metrics
        .evaluation_duration
        .observe(started.elapsed().as_secs_f64());
    info!(
        verdicts = %summary(&ev.verdicts),
        queries = ev.queries,
        pods = pods.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "evaluated"
    );
    Ok(Action::requeue(interval))
}

fn count(ctx: &Context, result: &str) {
    ctx.metrics
        .evaluations
        .get_or_create(&ResultLabel {
            result: result.into(),
        })
        .inc();
}

fn summary(verdicts: &[FaultVerdict]) -> String {
    verdicts
        .iter()
        .map(|v| format!("{}={}", v.fault, v.verdict.kind.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
