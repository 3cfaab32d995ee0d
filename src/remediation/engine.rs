//! The incident engine, pure: what was observed in, what to do out.
//!
//! [`decide`] is the only place that turns verdicts into incidents: it drives the guards, the
//! lifecycle, the action planner and the verification check. The operator, `backtest` and
//! `diagnose` all call it, so what they do cannot drift apart.

use std::borrow::Cow;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    actions::{self, LivePod, PlanError, Workload},
    guards::{self, Refusal},
    lifecycle::{self, Check, Next},
    memory,
    owners::{self, ReplicasOwner},
    shadow,
};
use crate::{
    diagnosis::{Evaluated, FaultVerdict, actionable, choose},
    v1alpha1::{
        ActionSpec, ActionType, AttemptResult, FaultKind, FaultSpec, Phase, PolicyMode,
        Remediation, RemediationPolicySpec, RemediationSpec, RemediationStatus, TargetRef,
    },
};

/// The label carrying an incident's sequence number for its policy and target.
pub const SEQ_LABEL: &str = "homeostat.dev/incident";

/// Everything the engine needs to know about one target of one policy at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The policy's name.
    pub policy: &'a str,
    /// The policy's spec.
    pub spec: &'a RemediationPolicySpec,
    /// The target.
    pub target: &'a TargetRef,
    /// The target as the apiserver shows it; `None` when it does not exist.
    pub workload: Option<&'a Workload>,
    /// Who owns the target's `spec.replicas` (an HPA, KEDA, a GitOps tool); [`ReplicasOwner::None`]
    /// where that cannot be known (`backtest`, `diagnose`).
    pub replicas_owner: &'a ReplicasOwner,
    /// Its live pods, oldest first.
    pub pods: &'a [LivePod],
    /// This policy's incidents for this target, oldest first.
    pub history: &'a [Remediation],
    /// This evaluation's verdicts.
    pub evaluated: &'a Evaluated,
    /// A fresh forecast's ask to scale out ahead of demand (`forecast.mode: Enforce` only).
    pub forecast: Option<&'a ForecastAsk>,
    /// Now.
    pub now: Timestamp,
}

/// What a fresh forecast asks of one target in `mode: Enforce`: scale out to `to` replicas ahead
/// of the demand it predicts. The engine opens an incident for `fault` (whose Scale action carries the
/// forecast block) under that fault's guards, as if the fault fired, when nothing else is open or
/// firing; its recovery is verified the usual way, on the fault's own verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastAsk {
    /// The fault whose Scale action carries the forecast block.
    pub fault: String,
    /// Replicas to scale to.
    pub to: i32,
    /// Why, for the incident's record.
    pub message: String,
    /// The numbers behind it.
    pub evidence: Vec<crate::v1alpha1::Evidence>,
}

/// What to do for one target.
#[derive(Clone, Debug, PartialEq)]
pub enum Intent {
    /// Nothing: healthy, or nothing open and nothing firing.
    Idle,
    /// A fault fires but a guard holds the incident.
    Hold {
        /// The fault.
        fault: String,
        /// Why.
        refusal: Refusal,
    },
    /// Open an incident; its status already holds the first step (saved before acting).
    Open(Box<Opening>),
    /// Advance the open incident.
    Advance(Box<Advancing>),
}

/// A new incident.
#[derive(Clone, Debug, PartialEq)]
pub struct Opening {
    /// The Remediation's name: deterministic, so two writers cannot open the same incident twice.
    pub name: String,
    /// Its sequence number for this policy and target.
    pub seq: u32,
    /// Its spec.
    pub spec: RemediationSpec,
    /// Its first status, to save before acting.
    pub status: RemediationStatus,
    /// Whether the last attempt of `status` must be executed after the save.
    pub act: bool,
}

/// A step of an open incident.
#[derive(Clone, Debug, PartialEq)]
pub struct Advancing {
    /// The Remediation's name.
    pub name: String,
    /// The status before this step.
    pub before: RemediationStatus,
    /// The status after it, to save before acting.
    pub status: RemediationStatus,
    /// Whether the last attempt of `status` must be executed after the save.
    pub act: bool,
}

impl Advancing {
    /// Whether the step changed anything that must be saved.
    pub fn changed(&self) -> bool {
        self.status != self.before
    }
}

/// Decides what to do for one target (pure).
pub fn decide(o: &Observed<'_>) -> Intent {
    let open = o
        .history
        .iter()
        .rev()
        .find(|r| !phase_of(r).is_terminal() && r.spec.target == *o.target);
    // An enforcing policy's guards never read its shadow incidents: they changed nothing.
    let guarded = guard_history(o.spec, o.history);
    let g = Observed {
        history: &guarded,
        ..*o
    };
    if let Some(rem) = open {
        return advance(&g, rem);
    }
    if o.evaluated.fetch_error.is_some() {
        return Intent::Idle;
    }
    match choose(&o.spec.faults, &o.evaluated.verdicts) {
        Some((fault, verdict)) if actionable(verdict) => {
            open_incident(&g, fault, verdict, next_seq(o.history))
        }
        _ => o
            .forecast
            .map_or(Intent::Idle, |ask| open_ahead(&g, ask, next_seq(o.history))),
    }
}

/// Opens an incident for a forecast's ask: the fault's Scale action, stepped to the asked replicas.
/// Nothing when the workload is missing, already has them, the fault's own data is inconclusive, or
/// the effectiveness memory skips Scale for the fault (a forecast never falls back to another action).
fn open_ahead(o: &Observed<'_>, ask: &ForecastAsk, seq: u32) -> Intent {
    let Some(fault) = o.spec.faults.iter().find(|f| f.name == ask.fault) else {
        return Intent::Idle;
    };
    let Some(w) = o.workload else {
        return Intent::Idle;
    };
    let own = o.evaluated.verdicts.iter().find(|v| v.fault == fault.name);
    if ask.to <= w.replicas || own.is_none_or(|v| v.verdict.kind == FaultKind::Inconclusive) {
        return Intent::Idle;
    }
    let mut ahead = fault.clone();
    ahead.fallbacks.clear();
    let Some(scale) = ahead.action.as_mut().and_then(|a| a.scale.as_mut()) else {
        return Intent::Idle;
    };
    scale.step = ask.to - w.replicas;
    scale.forecast = None;
    let (rung, _) = memory::choose(&ahead, &o.spec.guards, o.history, o.now);
    if rung.is_none_or(|a| a.type_ != ActionType::Scale) {
        return Intent::Idle;
    }
    let verdict = FaultVerdict {
        fault: ahead.name.clone(),
        pattern: ahead.pattern,
        verdict: crate::diagnosis::Verdict {
            kind: ahead.pattern.fault_kind(),
            pods: vec![],
            confidence: 1.0,
            due: true,
            due_in: Some(0.0),
            held_for: 0.0,
            time_to_limit: None,
            evidence: ask.evidence.clone(),
            message: format!("forecast: {}", ask.message),
            onset: false,
        },
    };
    open_incident(o, &ahead, &verdict, seq)
}

/// The incidents the guards read: all of them in shadow mode (it mirrors what enforcing would
/// do), only the real ones when enforcing.
fn guard_history<'h>(
    spec: &RemediationPolicySpec,
    history: &'h [Remediation],
) -> Cow<'h, [Remediation]> {
    if spec.mode == PolicyMode::Shadow || !history.iter().any(|r| r.spec.shadow) {
        Cow::Borrowed(history)
    } else {
        Cow::Owned(history.iter().filter(|r| !r.spec.shadow).cloned().collect())
    }
}

fn phase_of(r: &Remediation) -> Phase {
    r.status.as_ref().map_or(Phase::Detected, |s| s.phase)
}

/// The incident's fault re-evaluated now, with the pods it implicates.
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

fn open_incident(o: &Observed<'_>, fault: &FaultSpec, verdict: &FaultVerdict, seq: u32) -> Intent {
    // The effectiveness memory picks the rung of the ladder; none left: escalate.
    let (rung, skipped) = memory::choose(fault, &o.spec.guards, o.history, o.now);
    let exhausted = rung.is_none();
    let action = rung.unwrap_or(ActionSpec {
        type_: ActionType::Escalate,
        scale: None,
        resize: None,
    });
    if let Err(refusal) = guards::may_open(
        &o.spec.guards,
        o.history,
        &fault.name,
        action.type_.mutates(),
        o.now,
    ) {
        return Intent::Hold {
            fault: fault.name.clone(),
            refusal,
        };
    }
    // A Scale that would fight the owner of spec.replicas is refused before anything opens.
    if action.type_ == ActionType::Scale
        && let Some(refusal) = owners::scale_refusal(o.replicas_owner, o.target)
    {
        return Intent::Hold {
            fault: fault.name.clone(),
            refusal,
        };
    }
    let shadow_mode = o.spec.mode == PolicyMode::Shadow;
    let spec = RemediationSpec {
        policy_ref: o.policy.to_string(),
        target: o.target.clone(),
        fault: fault.name.clone(),
        pattern: fault.pattern,
        pods: verdict.verdict.pods.clone(),
        action,
        evidence: verdict.verdict.evidence.iter().take(10).cloned().collect(),
        dry_run: o.spec.guards.dry_run,
        shadow: shadow_mode,
        skipped,
    };
    let detected = RemediationStatus {
        phase: Phase::Detected,
        message: verdict.verdict.message.clone(),
        ..RemediationStatus::default()
    };
    let skip_note = (!spec.skipped.is_empty()).then(|| {
        format!(
            "skipped {}",
            spec.skipped
                .iter()
                .map(|s| memory::describe(s, &o.spec.guards.failure_window))
                .collect::<Vec<_>>()
                .join("; ")
        )
    });
    let name = incident_name(o.policy, o.target, &fault.name, seq);
    if shadow_mode {
        let status = shadow_open(o, &spec, detected, exhausted, skip_note, verdict);
        return Intent::Open(Box::new(Opening {
            name,
            seq,
            spec,
            status,
            act: false,
        }));
    }
    if exhausted {
        let status = lifecycle::escalate(
            detected,
            format!(
                "every action of {}'s ladder failed too often on {}: {}; a person must look",
                fault.name,
                o.target,
                skip_note.unwrap_or_default()
            ),
            o.now,
        );
        return Intent::Open(Box::new(Opening {
            name,
            seq,
            spec,
            status,
            act: false,
        }));
    }
    let (s, next) = lifecycle::step(&spec, &detected, &o.spec.verify, Check::Firing, o.now);
    let relapse = spec
        .action
        .type_
        .mutates()
        .then(|| relapse_of(o, &fault.name))
        .flatten();
    let (status, act) = match (next, relapse) {
        (Next::Plan(_), Some(prev)) => (
            lifecycle::escalate(
                s,
                format!(
                    "relapse: {} is back within guards.relapseWindow ({}) of incident {} that \
                     succeeded; the fix does not hold, a person must look",
                    fault.name,
                    o.spec.guards.relapse_window,
                    prev.metadata.name.as_deref().unwrap_or("?")
                ),
                o.now,
            ),
            false,
        ),
        (Next::Plan(n), None) => plan_attempt(o, &spec, s, n, verdict.verdict.pods.clone()),
        (Next::Idle | Next::Execute, _) => (s, false),
    };
    let status = match skip_note {
        Some(note) => RemediationStatus {
            message: format!("{}; {note}", status.message),
            ..status
        },
        None => status,
    };
    Intent::Open(Box::new(Opening {
        name,
        seq,
        spec,
        status,
        act,
    }))
}

/// The first status of a shadow incident: what enforcing would do (the planned attempt, recorded
/// as `Shadow`, or why it would wait or escalate), nothing executed.
fn shadow_open(
    o: &Observed<'_>,
    spec: &RemediationSpec,
    detected: RemediationStatus,
    exhausted: bool,
    skip_note: Option<String>,
    verdict: &FaultVerdict,
) -> RemediationStatus {
    let mut s = detected;
    let kind = spec.action.type_;
    let would = if exhausted {
        "would escalate: every action of the ladder failed too often".to_string()
    } else if !kind.mutates() {
        format!("would escalate to a person (action {})", kind.as_str())
    } else if let Some(workload) = o.workload {
        match actions::plan(
            &spec.action,
            workload,
            o.replicas_owner,
            o.pods,
            &verdict.verdict.pods,
            &o.spec.guards,
            o.now,
        ) {
            Ok(mut attempt) => {
                attempt.number = 1;
                attempt.started_at = Time(o.now);
                attempt.result = AttemptResult::Shadow;
                let w = format!("would run {}: {}", kind.as_str(), attempt.message);
                s.attempts.push(attempt);
                w
            }
            Err(PlanError::Blocked(m)) => format!("would wait to act: {m}"),
            Err(PlanError::Escalate(m)) => format!("would escalate: {m}"),
            Err(PlanError::Refused(r)) => format!("would escalate: {}: {}", r.reason, r.message),
        }
    } else {
        format!("would wait to act: {} not found", o.target)
    };
    let would = match skip_note {
        Some(n) => format!("{would} ({n})"),
        None => would,
    };
    shadow::open(s, would, &o.spec.verify, o.now)
}

fn advance(o: &Observed<'_>, rem: &Remediation) -> Intent {
    let before = rem.status.clone().unwrap_or_default();
    let name = rem.metadata.name.clone().unwrap_or_default();
    if let Some(why) = kill_switch(o.spec, rem) {
        let mut status = before.clone();
        if rem.spec.shadow {
            status.shadow_outcome = Some(crate::v1alpha1::ShadowOutcome::Unscored);
        }
        status.phase = Phase::Halted;
        status.finished_at = Some(Time(o.now));
        status.deadline = None;
        status.message = format!("halted: {why}; nothing more will be done for this incident");
        return Intent::Advance(Box::new(Advancing {
            name,
            before,
            status,
            act: false,
        }));
    }
    if rem.spec.shadow {
        let status = match check_of(rem, o.evaluated) {
            Some((check, _)) => shadow::step(&before, &o.spec.verify, check, o.now),
            None => shadow::unscored(
                before.clone(),
                o.now,
                format!(
                    "fault {} is no longer in the policy; closing unscored",
                    rem.spec.fault
                ),
            ),
        };
        return Intent::Advance(Box::new(Advancing {
            name,
            before,
            status,
            act: false,
        }));
    }
    let Some((check, firing)) = check_of(rem, o.evaluated) else {
        let status = lifecycle::escalate(
            before.clone(),
            format!(
                "fault {} is no longer in the policy; closing the incident",
                rem.spec.fault
            ),
            o.now,
        );
        return Intent::Advance(Box::new(Advancing {
            name,
            before,
            status,
            act: false,
        }));
    };
    let (s, next) = lifecycle::step(&rem.spec, &before, &o.spec.verify, check, o.now);
    if matches!(next, Next::Plan(_) | Next::Execute)
        && let Some(late) = acting_too_long(rem, &s, o)
    {
        return Intent::Advance(Box::new(Advancing {
            name,
            before,
            status: lifecycle::escalate(s, late, o.now),
            act: false,
        }));
    }
    let (status, act) = match next {
        Next::Idle => (s, false),
        Next::Plan(n) => {
            let pods = if firing.is_empty() {
                rem.spec.pods.clone()
            } else {
                firing
            };
            plan_attempt(o, &rem.spec, s, n, pods)
        }
        Next::Execute => resume(s, check, o.now),
    };
    Intent::Advance(Box::new(Advancing {
        name,
        before,
        status,
        act,
    }))
}

/// Why the kill switch stops an open incident, if it does: `suspend`, `dryRun` set after an
/// incident opened for real, or `mode` changed (a shadow incident must not hold an enforcing
/// policy; a real one must not go on acting under shadow).
fn kill_switch(spec: &RemediationPolicySpec, rem: &Remediation) -> Option<&'static str> {
    if spec.guards.suspend {
        Some("spec.guards.suspend was set while the incident was open")
    } else if spec.guards.dry_run && !rem.spec.dry_run && !rem.spec.shadow {
        Some("spec.guards.dryRun was set while the incident was open")
    } else if spec.mode == PolicyMode::Enforce && rem.spec.shadow {
        Some("spec.mode was set to Enforce while this shadow incident was open")
    } else if spec.mode == PolicyMode::Shadow && !rem.spec.shadow {
        Some("spec.mode was set to Shadow while the incident was open")
    } else {
        None
    }
}

/// An incident that has waited to act (a PodDisruptionBudget, maxUnavailable, a missing target)
/// for longer than `verify.timeout` is escalated: Acting has a deadline too.
fn acting_too_long(rem: &Remediation, s: &RemediationStatus, o: &Observed<'_>) -> Option<String> {
    if s.phase != Phase::Acting {
        return None;
    }
    let last = s.attempts.last();
    // A new attempt after a verified failure starts its own clock.
    if last.is_some_and(|a| a.result == AttemptResult::Applied) {
        return None;
    }
    let since = match last {
        Some(a) if a.result != AttemptResult::Applied => a.started_at.0,
        _ => rem.metadata.creation_timestamp.as_ref()?.0,
    };
    let limit = jiff::SignedDuration::try_from(o.spec.verify.timeout.get())
        .unwrap_or(jiff::SignedDuration::MAX);
    (o.now.duration_since(since) >= limit).then(|| {
        format!(
            "could not act within verify.timeout ({}): {}",
            o.spec.verify.timeout, s.message
        )
    })
}

/// A Succeeded incident of the same fault that ended within the relapse window.
fn relapse_of<'h>(o: &Observed<'h>, fault: &str) -> Option<&'h Remediation> {
    let window = jiff::SignedDuration::try_from(o.spec.guards.relapse_window.get())
        .unwrap_or(jiff::SignedDuration::MAX);
    o.history.iter().rev().find(|r| {
        r.spec.fault == fault
            && r.status.as_ref().is_some_and(|s| {
                s.phase == Phase::Succeeded
                    && s.finished_at
                        .as_ref()
                        .is_some_and(|t| o.now.duration_since(t.0) < window)
            })
    })
}

/// An attempt left Pending (a crash between the save and the call) is executed: execution first
/// checks whether it already happened. One left Blocked is re-executed only while the fault still
/// fires on fresh data; if it cleared meanwhile nothing is done.
fn resume(s: RemediationStatus, check: Check, now: Timestamp) -> (RemediationStatus, bool) {
    // A resize waiting on the kubelet is re-read whatever the metrics say: it has been asked for.
    if s.attempts.last().map(|a| a.action) == Some(ActionType::ResizePod) {
        return (s, true);
    }
    let last = s.attempts.last().map(|a| a.result);
    match (last, check) {
        (Some(AttemptResult::Blocked), Check::Clear) => {
            let mut s = s;
            s.phase = Phase::Succeeded;
            s.finished_at = Some(Time(now));
            s.deadline = None;
            s.message =
                "the fault cleared before the blocked action could run; nothing was done".into();
            (s, false)
        }
        (Some(AttemptResult::Blocked), Check::Unknown) => {
            let mut s = s;
            s.message = "blocked action not retried: metrics missing or stale".into();
            (s, false)
        }
        _ => (s, true),
    }
}

/// Plans attempt `n` and records it as Pending (or DryRun), or explains why not.
fn plan_attempt(
    o: &Observed<'_>,
    spec: &RemediationSpec,
    s: RemediationStatus,
    n: u32,
    pods: Vec<String>,
) -> (RemediationStatus, bool) {
    if n > 1
        && let Err(r) = guards::budget(&o.spec.guards, o.history, o.now)
    {
        return (
            lifecycle::escalate(s, format!("retry refused: {}", r.message), o.now),
            false,
        );
    }
    let Some(workload) = o.workload else {
        let mut s = s;
        s.phase = Phase::Acting;
        s.message = format!("waiting to act: {} not found", o.target);
        return (s, false);
    };
    let action = match resize_fallback(spec, &s) {
        Some(Ok(a)) => a,
        Some(Err(why)) => return (lifecycle::escalate(s, why, o.now), false),
        None => spec.action.clone(),
    };
    match actions::plan(
        &action,
        workload,
        o.replicas_owner,
        o.pods,
        &pods,
        &o.spec.guards,
        o.now,
    ) {
        Ok(attempt) => {
            let s = lifecycle::begin(s, attempt, spec.dry_run, o.now);
            let act = s.phase == Phase::Acting;
            (s, act)
        }
        Err(PlanError::Blocked(m)) => {
            let mut s = s;
            s.phase = Phase::Acting;
            s.message = format!("waiting to act: {m}");
            (s, false)
        }
        Err(PlanError::Escalate(m)) => (lifecycle::escalate(s, m, o.now), false),
        // An owner appeared while the incident was open: hand over rather than fight it.
        Err(PlanError::Refused(r)) => (
            lifecycle::escalate(s, format!("{}: {}", r.reason, r.message), o.now),
            false,
        ),
    }
}

/// After a ResizePod that did not take, the incident goes on with the policy's
/// `resize.fallback`: `Some(Ok(action))`, or `Some(Err(why))` when the fallback is Escalate.
fn resize_fallback(
    spec: &RemediationSpec,
    s: &RemediationStatus,
) -> Option<Result<crate::v1alpha1::ActionSpec, String>> {
    let bounds = spec.action.resize.as_ref()?;
    let failed = s
        .attempts
        .iter()
        .rev()
        .find(|a| a.action == ActionType::ResizePod && a.result == AttemptResult::Failed)?;
    let fallback = bounds.fallback.action(bounds);
    if fallback.type_.mutates() {
        Some(Ok(fallback))
    } else {
        Some(Err(format!(
            "the resize did not take ({}); resize.fallback is {}: a person must look",
            failed.message,
            fallback.type_.as_str()
        )))
    }
}

/// The next incident number for a policy and target: one more than any on record.
fn next_seq(history: &[Remediation]) -> u32 {
    history
        .iter()
        .filter_map(|r| {
            r.metadata
                .labels
                .as_ref()?
                .get(SEQ_LABEL)?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(history.len() as u32)
        .saturating_add(1)
}

/// A Remediation name from the policy, the target (when it differs), the fault and the sequence
/// number; every part fits a DNS subdomain.
pub fn incident_name(policy: &str, target: &TargetRef, fault: &str, seq: u32) -> String {
    let mut parts = vec![dns_part(policy, 60)];
    if target.name != policy {
        parts.push(dns_part(&target.name, 60));
    }
    parts.push(dns_part(fault, 40));
    parts.push(seq.to_string());
    parts.retain(|p| !p.is_empty());
    parts.join("-")
}

fn dns_part(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .take(max)
        .collect();
    cleaned.trim_matches('-').to_string()
}

/// Applies an executed attempt's outcome to the status (pure; the operator and backtest share it).
pub fn after_execution(
    s: RemediationStatus,
    outcome: lifecycle::Outcome,
    spec: &RemediationPolicySpec,
    now: Timestamp,
) -> RemediationStatus {
    let mut s = lifecycle::record(s, outcome, &spec.verify, now);
    if let Some(drift) = super::resize::drift_of(&s) {
        s.template_drift = Some(drift);
    }
    s
}

#[cfg(test)]
mod tests;
