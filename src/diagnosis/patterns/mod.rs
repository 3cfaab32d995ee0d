//! The built-in detectors: pure functions from series to a verdict with its evidence.
//!
//! A verdict separates *what is wrong* from *when to act*: `kind` names the fault as soon as the
//! evidence supports it, `due` says whether its action is due now, and `due_in`, `held_for` and
//! `time_to_limit` say how urgent it is.

mod contention;
mod crash_loop;
mod hold;
mod leak;
mod runaway;
mod threshold;

use std::collections::BTreeMap;

pub(crate) use crash_loop::BACKOFF_LOOKBACK;
pub(crate) use leak::LEAK_LOOKBACK;

use super::input::{EvalContext, PodSeries, WorkloadSeries, window};
use crate::v1alpha1::{DetectorParams, Evidence, FaultKind, FaultSpec, HoldMode, Pattern};

/// What a detector concluded, and why.
///
/// Act on a verdict only when [`Verdict::acts`] holds (`kind.is_fault() && due`). A fault with
/// `due == false` is classified but not yet actionable: report it, take no action.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The finding: the pattern's fault, Healthy, or Inconclusive.
    pub kind: FaultKind,
    /// Pods implicated (for pod-level faults).
    pub pods: Vec<String>,
    /// How sure, 0..1, that `kind` is right (see docs/quality.md for its reliability curve).
    pub confidence: f64,
    /// Whether the fault's action is due now. Never true unless `kind.is_fault()`; false while a
    /// leak's projection is beyond `horizon` or the confidence is below the fault's `minConfidence`.
    pub due: bool,
    /// Seconds until the action becomes due at the current trend (0 when due), if it can be projected.
    pub due_in: Option<f64>,
    /// How long the evidence has held, as far as the window shows (seconds).
    pub held_for: f64,
    /// MemoryLeak: projected seconds until the working set reaches its limit.
    pub time_to_limit: Option<f64>,
    /// The numbers behind it.
    pub evidence: Vec<Evidence>,
    /// One line for a person.
    pub message: String,
    /// The rule holds at the newest point although the hold is not complete yet (a fault may be
    /// starting). The storm brake counts such workloads, so that faults with one shared cause,
    /// whose holds complete a few seconds apart, are seen together.
    pub onset: bool,
}

impl Verdict {
    /// A Healthy verdict.
    pub fn healthy(message: impl Into<String>) -> Self {
        Self {
            kind: FaultKind::Healthy,
            pods: vec![],
            confidence: 1.0,
            due: false,
            due_in: None,
            held_for: 0.0,
            time_to_limit: None,
            evidence: vec![],
            message: message.into(),
            onset: false,
        }
    }

    /// An Inconclusive verdict (missing data): no action.
    pub fn inconclusive(message: impl Into<String>) -> Self {
        Self {
            kind: FaultKind::Inconclusive,
            confidence: 0.0,
            ..Self::healthy(message)
        }
    }

    /// A fault whose action is due now.
    fn fault(kind: FaultKind, pods: Vec<String>, confidence: f64, held_for: f64) -> Self {
        Self {
            kind,
            pods,
            confidence,
            due: true,
            due_in: Some(0.0),
            held_for,
            time_to_limit: None,
            evidence: vec![],
            message: String::new(),
            onset: true,
        }
    }

    /// Whether to act on this verdict now: a fault whose action is due.
    pub fn acts(&self) -> bool {
        self.kind.is_fault() && self.due
    }
}

/// Detector parameters with every default filled in.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// RunawayProcess: multiple of the siblings' median.
    pub sibling_ratio: f64,
    /// RunawayProcess: cores above the siblings' median that are runaway at a lower ratio
    /// (at least [`EXCESS_MIN_RATIO`] times the median).
    pub excess_cores: f64,
    /// RunawayProcess: fraction of the CPU limit that is "at the limit".
    pub runaway_limit_ratio: f64,
    /// RunawayProcess: cores below which nothing is runaway.
    pub min_cores: f64,
    /// ResourceContention: throttled fraction of periods that is starved.
    pub throttle_ratio: f64,
    /// ResourceContention: share of replicas that must be starved (strictly more than).
    pub replica_fraction: f64,
    /// MemoryLeak: act below this projected time to the limit (seconds).
    pub horizon: f64,
    /// MemoryLeak: report a steady climb as a leak below this projected time to the limit (seconds).
    pub report_horizon: f64,
    /// CrashLoop: restarts in the window.
    pub restarts: f64,
    /// Seconds after a pod starts before it is judged.
    pub warmup: f64,
    /// Share of the window's points that must satisfy a rule.
    pub persistence: f64,
    /// Below this confidence a fault is reported but its action is not due.
    pub min_confidence: f64,
    /// Whether the hold is adaptive (`hold: Adaptive`; RunawayProcess and ResourceContention).
    pub adaptive: bool,
    /// Adaptive hold: the least time evidence must hold (seconds); `None`: a quarter of `for`.
    pub min_hold: Option<f64>,
}

/// RunawayProcess: the lowest multiple of the siblings' median at which an absolute excess of
/// `excess_cores` still counts.
pub const EXCESS_MIN_RATIO: f64 = 2.0;

impl Params {
    /// Fills the defaults of unset fields.
    pub fn resolve(p: Option<&DetectorParams>) -> Self {
        let d = DetectorParams::default();
        let p = p.unwrap_or(&d);
        let horizon = p.horizon.map_or(1800.0, |h| h.as_secs_f64());
        Self {
            sibling_ratio: p.sibling_ratio.unwrap_or(3.0),
            excess_cores: p.excess_cores.unwrap_or(0.5),
            runaway_limit_ratio: p.limit_ratio.unwrap_or(0.9),
            min_cores: p.min_cores.unwrap_or(0.1),
            throttle_ratio: p.throttle_ratio.unwrap_or(0.25),
            replica_fraction: p.replica_fraction.unwrap_or(0.5),
            horizon,
            report_horizon: p
                .report_horizon
                .map_or(4.0 * horizon, |h| h.as_secs_f64())
                .max(horizon),
            restarts: f64::from(p.restarts.unwrap_or(3)),
            warmup: p.warmup.map_or(60.0, |w| w.as_secs_f64()),
            persistence: p.persistence.unwrap_or(0.9),
            min_confidence: p.min_confidence.unwrap_or(0.0),
            adaptive: p.hold == Some(HoldMode::Adaptive),
            min_hold: p.min_hold.map(|h| h.as_secs_f64()),
        }
    }

    /// The adaptive hold of a fault held for `span` seconds, when it has one.
    fn adaptive_hold(&self, span: f64, step: f64) -> Option<hold::Adaptive> {
        self.adaptive.then(|| hold::Adaptive {
            budget: span,
            min_hold: self.min_hold.unwrap_or(span / 4.0).clamp(step, span),
        })
    }
}

/// Seconds of history a fault's detector reads for its hold: `for`, or twice that for an adaptive
/// hold (marginal evidence is held up to 2 x `for`).
pub(crate) fn hold_span(fault: &FaultSpec) -> f64 {
    let span = fault.for_.as_secs_f64();
    match fault.pattern {
        Pattern::RunawayProcess | Pattern::ResourceContention
            if fault
                .params
                .as_ref()
                .is_some_and(|p| p.hold == Some(HoldMode::Adaptive)) =>
        {
            span / hold::MARGINAL_WEIGHT
        }
        _ => span,
    }
}

/// Runs the fault's detector over the workload's series.
pub fn evaluate(fault: &FaultSpec, w: &WorkloadSeries, ctx: &EvalContext) -> Verdict {
    let p = Params::resolve(fault.params.as_ref());
    let span = fault.for_.as_secs_f64().max(ctx.step);
    let v = match fault.pattern {
        Pattern::RunawayProcess => runaway::runaway(w, ctx, &p, span),
        Pattern::ResourceContention => contention::contention(w, ctx, &p, span),
        Pattern::MemoryLeak => leak::leak(w, ctx, &p, span),
        Pattern::CrashLoop => crash_loop::crash_loop(w, ctx, &p, span),
        Pattern::Threshold => threshold::threshold(fault, w, ctx, &p, span),
    };
    floor(sanitize(v), &p)
}

/// Below the confidence floor a fault is reported but not acted on.
fn floor(mut v: Verdict, p: &Params) -> Verdict {
    if !v.kind.is_fault() {
        v.due = false;
        v.due_in = None;
    } else if v.due && v.confidence < p.min_confidence {
        v.due = false;
        v.due_in = None;
        v.message = format!(
            "{} (confidence {:.2} below the floor {:.2}: reported, no action)",
            v.message, v.confidence, p.min_confidence
        );
    }
    v
}

/// JSON cannot carry NaN or infinities: clamp them so status writes never fail.
fn sanitize(mut v: Verdict) -> Verdict {
    for e in &mut v.evidence {
        if !e.value.is_finite() {
            e.value = if e.value > 0.0 { f64::MAX } else { 0.0 };
        }
        if let Some(t) = e.threshold
            && !t.is_finite()
        {
            e.threshold = None;
        }
    }
    if !v.confidence.is_finite() {
        v.confidence = 0.0;
    }
    for x in [&mut v.due_in, &mut v.time_to_limit] {
        if x.is_some_and(|t| !t.is_finite()) {
            *x = None;
        }
    }
    if !v.held_for.is_finite() {
        v.held_for = 0.0;
    }
    v.confidence = v.confidence.clamp(0.0, 1.0);
    v
}

/// Points a full window holds at this resolution.
fn expected_points(span: f64, step: f64) -> f64 {
    (span / step).floor() + 1.0
}

/// When a pod started: the known start, else its first sample of `series`.
fn start_of(pod: &PodSeries, series: &[(f64, f64)]) -> Option<f64> {
    pod.started_at.or_else(|| series.first().map(|p| p.0))
}

/// Splits pods into those judged (past warm-up) and those still warming up.
fn judged<'a>(
    w: &'a WorkloadSeries,
    ctx: &EvalContext,
    p: &Params,
    series: impl Fn(&PodSeries) -> &[(f64, f64)],
) -> (Vec<&'a PodSeries>, Vec<&'a str>) {
    let (mut ok, mut young) = (vec![], vec![]);
    for pod in &w.pods {
        match start_of(pod, series(pod)) {
            Some(s) if s <= ctx.now - p.warmup => ok.push(pod),
            _ => young.push(pod.name.as_str()),
        }
    }
    (ok, young)
}

/// Pods among `pods` whose series has no fresh point.
fn stale<'a>(
    pods: &[&'a PodSeries],
    ctx: &EvalContext,
    series: impl Fn(&PodSeries) -> &[(f64, f64)],
) -> Vec<&'a str> {
    let cutoff = ctx.fresh_cutoff();
    pods.iter()
        .filter(|p| {
            series(p)
                .last()
                .is_none_or(|(t, v)| *t < cutoff || !v.is_finite())
        })
        .map(|p| p.name.as_str())
        .collect()
}

fn missing_message(signal: &str, pods: &[&str]) -> String {
    format!(
        "no fresh {signal} data for {} pod(s) ({}): not judging on missing data",
        pods.len(),
        abbreviate(pods)
    )
}

fn abbreviate(names: &[&str]) -> String {
    if names.len() <= 3 {
        names.join(", ")
    } else {
        format!("{}, … {} more", names[..3].join(", "), names.len() - 3)
    }
}

/// The window's points of each pod keyed by time (ms), for comparisons across siblings.
fn by_time<'a>(
    pods: &[&'a PodSeries],
    from: f64,
    to: f64,
    series: impl Fn(&PodSeries) -> &[(f64, f64)],
) -> BTreeMap<i64, Vec<(&'a str, f64)>> {
    let mut grid: BTreeMap<i64, Vec<(&str, f64)>> = BTreeMap::new();
    for pod in pods {
        for (t, v) in window(series(pod), from, to) {
            grid.entry((t * 1000.0).round() as i64)
                .or_default()
                .push((pod.name.as_str(), v));
        }
    }
    grid
}
