//! The built-in detectors: pure functions from series to a verdict with its evidence.

use std::collections::BTreeMap;

use super::{
    input::{EvalContext, PodSeries, WorkloadSeries, window},
    stats::{counter_increase, increasing_pair_fraction, mad, median, theil_sen},
};
use crate::v1alpha1::{DetectorParams, Evidence, FaultKind, FaultSpec, Pattern};

/// What a detector concluded, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The finding: the pattern's fault, Healthy, or Inconclusive.
    pub kind: FaultKind,
    /// Pods implicated (for pod-level faults).
    pub pods: Vec<String>,
    /// How sure, 0..1: the share of the `for` window in which the rule held.
    pub confidence: f64,
    /// The numbers behind it.
    pub evidence: Vec<Evidence>,
    /// One line for a person.
    pub message: String,
}

impl Verdict {
    fn healthy(message: impl Into<String>) -> Self {
        Self {
            kind: FaultKind::Healthy,
            pods: vec![],
            confidence: 1.0,
            evidence: vec![],
            message: message.into(),
        }
    }

    fn inconclusive(message: impl Into<String>) -> Self {
        Self {
            kind: FaultKind::Inconclusive,
            pods: vec![],
            confidence: 0.0,
            evidence: vec![],
            message: message.into(),
        }
    }
}

/// Detector parameters with every default filled in.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// RunawayProcess: multiple of the siblings' median.
    pub sibling_ratio: f64,
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
    /// CrashLoop: restarts in the window.
    pub restarts: f64,
    /// Seconds after a pod starts before it is judged.
    pub warmup: f64,
    /// Share of the window's points that must satisfy a rule.
    pub persistence: f64,
}

impl Params {
    /// Fills the defaults of unset fields.
    pub fn resolve(p: Option<&DetectorParams>) -> Self {
        let d = DetectorParams::default();
        let p = p.unwrap_or(&d);
        Self {
            sibling_ratio: p.sibling_ratio.unwrap_or(3.0),
            runaway_limit_ratio: p.limit_ratio.unwrap_or(0.9),
            min_cores: p.min_cores.unwrap_or(0.1),
            throttle_ratio: p.throttle_ratio.unwrap_or(0.25),
            replica_fraction: p.replica_fraction.unwrap_or(0.5),
            horizon: p.horizon.map_or(1800.0, |h| h.as_secs_f64()),
            restarts: f64::from(p.restarts.unwrap_or(3)),
            warmup: p.warmup.map_or(60.0, |w| w.as_secs_f64()),
            persistence: p.persistence.unwrap_or(0.9),
        }
    }
}

/// Runs the fault's detector over the workload's series.
pub fn evaluate(fault: &FaultSpec, w: &WorkloadSeries, ctx: &EvalContext) -> Verdict {
    let p = Params::resolve(fault.params.as_ref());
    let span = fault.for_.as_secs_f64().max(ctx.step);
    let v = match fault.pattern {
        Pattern::RunawayProcess => runaway(w, ctx, &p, span),
        Pattern::ResourceContention => contention(w, ctx, &p, span),
        Pattern::MemoryLeak => leak(w, ctx, &p, span),
        Pattern::CrashLoop => crash_loop(w, ctx, &p, span),
        Pattern::Threshold => threshold(fault, w, ctx, &p, span),
    };
    sanitize(v)
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

fn runaway(w: &WorkloadSeries, ctx: &EvalContext, p: &Params, span: f64) -> Verdict {
    let (pods, young) = judged(w, ctx, p, |x| &x.cpu);
    let missing = stale(&pods, ctx, |x| &x.cpu);
    if !missing.is_empty() {
        return Verdict::inconclusive(missing_message("cpu", &missing));
    }
    if pods.is_empty() {
        return Verdict::inconclusive(format!(
            "no pod past its warm-up yet ({} warming up)",
            young.len()
        ));
    }
    if pods.len() == 1 {
        return Verdict::healthy(
            "single replica: no siblings to compare with (a lone pod at its limit is judged by ResourceContention)",
        );
    }
    let limits: BTreeMap<&str, Option<f64>> = pods
        .iter()
        .map(|x| (x.name.as_str(), x.cpu_limit.filter(|l| *l > 0.0)))
        .collect();
    let grid = by_time(&pods, ctx.now - span, ctx.now, |x| &x.cpu);
    let mut hot: BTreeMap<&str, usize> = BTreeMap::new();
    for values in grid.values() {
        for (i, (name, v)) in values.iter().enumerate() {
            let others: Vec<f64> = values
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, x))| *x)
                .collect();
            let (Some(med), Some(spread)) = (median(&others), mad(&others)) else {
                continue;
            };
            if *v < p.min_cores {
                continue;
            }
            let outlier = *v >= p.sibling_ratio * med && *v - med >= p.min_cores.max(3.0 * spread);
            let alone_at_limit = limits
                .get(name)
                .copied()
                .flatten()
                .is_some_and(|l| *v >= p.runaway_limit_ratio * l && med < 0.5 * l);
            if outlier || alone_at_limit {
                *hot.entry(name).or_default() += 1;
            }
        }
    }
    let expected = expected_points(span, ctx.step);
    let mut found: Vec<(&str, f64)> = hot
        .into_iter()
        .map(|(n, c)| (n, c as f64 / expected))
        .filter(|(_, share)| *share >= p.persistence)
        .collect();
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    let latest: BTreeMap<&str, f64> = pods
        .iter()
        .filter_map(|x| x.cpu.last().map(|(_, v)| (x.name.as_str(), *v)))
        .collect();
    let max_runaway = (pods.len() / 3).max(1);
    if found.is_empty() {
        let (top, top_v) = latest
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(("-", 0.0), |(n, v)| (*n, *v));
        let others: Vec<f64> = latest
            .iter()
            .filter(|(n, _)| **n != top)
            .map(|(_, v)| *v)
            .collect();
        let med = median(&others).unwrap_or(0.0);
        return Verdict::healthy(format!(
            "busiest pod {top} uses {top_v:.3} cores vs siblings' median {med:.3}: not {:.1}x above for {:.0}% of {span:.0}s",
            p.sibling_ratio,
            p.persistence * 100.0
        ));
    }
    if found.len() > max_runaway {
        return Verdict::healthy(format!(
            "{} of {} pods stand out together: a workload-wide load, not a runaway (see ResourceContention)",
            found.len(),
            pods.len()
        ));
    }
    let mut evidence = vec![];
    let names: Vec<String> = found.iter().map(|(n, _)| n.to_string()).collect();
    for (name, share) in &found {
        let v = latest.get(name).copied().unwrap_or(f64::NAN);
        let others: Vec<f64> = latest
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(_, v)| *v)
            .collect();
        let med = median(&others).unwrap_or(0.0);
        evidence.push(Evidence {
            rule: format!(
                "cpu >= {:.1} x siblings' median (or >= {:.0}% of limit alone), {:.0}% of {span:.0}s",
                p.sibling_ratio,
                p.runaway_limit_ratio * 100.0,
                share * 100.0
            ),
            signal: "cpu".into(),
            pod: Some(name.to_string()),
            value: v,
            threshold: Some(p.sibling_ratio * med),
        });
        evidence.push(Evidence {
            rule: "siblings' median cpu".into(),
            signal: "cpu".into(),
            pod: None,
            value: med,
            threshold: None,
        });
        if let Some(Some(l)) = limits.get(name) {
            evidence.push(Evidence {
                rule: "cpu limit".into(),
                signal: "cpuLimit".into(),
                pod: Some(name.to_string()),
                value: *l,
                threshold: None,
            });
        }
    }
    let confidence = found.iter().map(|f| f.1).sum::<f64>() / found.len() as f64;
    Verdict {
        kind: FaultKind::RunawayProcess,
        message: format!(
            "{} burning {:.2} cores while siblings' median is {:.2}, for {span:.0}s",
            names.join(", "),
            evidence.first().map_or(0.0, |e| e.value),
            evidence.get(1).map_or(0.0, |e| e.value),
        ),
        pods: names,
        confidence,
        evidence,
    }
}

fn contention(w: &WorkloadSeries, ctx: &EvalContext, p: &Params, span: f64) -> Verdict {
    let (pods, young) = judged(w, ctx, p, |x| &x.throttling);
    let missing = stale(&pods, ctx, |x| &x.throttling);
    if !missing.is_empty() {
        return Verdict::inconclusive(missing_message("throttling", &missing));
    }
    if pods.is_empty() {
        return Verdict::inconclusive(format!(
            "no pod past its warm-up yet ({} warming up)",
            young.len()
        ));
    }
    let grid = by_time(&pods, ctx.now - span, ctx.now, |x| &x.throttling);
    let mut contended = 0usize;
    for values in grid.values() {
        let starved = values
            .iter()
            .filter(|(_, v)| *v >= p.throttle_ratio)
            .count();
        if starved as f64 / values.len() as f64 > p.replica_fraction {
            contended += 1;
        }
    }
    let share = contended as f64 / expected_points(span, ctx.step);
    let latest: Vec<(&str, f64)> = pods
        .iter()
        .filter_map(|x| x.throttling.last().map(|(_, v)| (x.name.as_str(), *v)))
        .collect();
    let throttles: Vec<f64> = latest.iter().map(|l| l.1).collect();
    let med = median(&throttles).unwrap_or(0.0);
    let starved: Vec<String> = latest
        .iter()
        .filter(|(_, v)| *v >= p.throttle_ratio)
        .map(|(n, _)| n.to_string())
        .collect();
    if share < p.persistence {
        return Verdict::healthy(format!(
            "{} of {} pods throttled >= {:.0}% now (median {:.0}%); starved together for {:.0}% of {span:.0}s, needs {:.0}%",
            starved.len(),
            pods.len(),
            p.throttle_ratio * 100.0,
            med * 100.0,
            share * 100.0,
            p.persistence * 100.0
        ));
    }
    let mut evidence = vec![Evidence {
        rule: format!(
            "more than {:.0}% of replicas throttled >= {:.0}% of CFS periods, {:.0}% of {span:.0}s",
            p.replica_fraction * 100.0,
            p.throttle_ratio * 100.0,
            share * 100.0
        ),
        signal: "throttling".into(),
        pod: None,
        value: med,
        threshold: Some(p.throttle_ratio),
    }];
    for pod in pods.iter().filter(|x| starved.contains(&x.name)).take(5) {
        if let (Some((_, cpu)), Some(limit)) = (pod.cpu.last(), pod.cpu_limit) {
            evidence.push(Evidence {
                rule: "cpu vs limit".into(),
                signal: "cpu".into(),
                pod: Some(pod.name.clone()),
                value: *cpu,
                threshold: Some(limit),
            });
        }
    }
    Verdict {
        kind: FaultKind::ResourceContention,
        message: format!(
            "{} of {} replicas throttled (median {:.0}% of periods) for {span:.0}s: the workload needs more capacity",
            starved.len(),
            pods.len(),
            med * 100.0
        ),
        pods: starved,
        confidence: share.min(1.0),
        evidence,
    }
}

/// The points after the last sharp drop (a restart inside the same pod resets the working set).
/// A drop is measured against the median of the three points before it, so a lone spike is not a reset.
fn since_last_reset(points: &[(f64, f64)]) -> &[(f64, f64)] {
    let mut start = 0;
    for i in 1..points.len() {
        let before: Vec<f64> = points[i.saturating_sub(3)..i].iter().map(|p| p.1).collect();
        if median(&before).is_some_and(|m| points[i].1 < 0.7 * m) {
            start = i;
        }
    }
    &points[start..]
}

/// The climb rates (Theil–Sen slopes) of the two halves of a window when the climb is steady
/// across it: each half rises by at least 1 % of the limit and neither rate is more than twice the
/// other. A climb that began within the window (a flat first half) is not steady yet; a filling
/// cache slows down towards its size and stops being steady once that shows.
fn steady_rates(pts: &[(f64, f64)], limit: f64) -> Option<(f64, f64)> {
    let (first, last) = (pts.first()?, pts.last()?);
    let mid = (first.0 + last.0) / 2.0;
    // Points are in time order.
    let (a, b) = pts.split_at(pts.partition_point(|x| x.0 <= mid));
    if a.len() < 3 || b.len() < 3 {
        return None;
    }
    let (sa, sb) = (theil_sen(a, 60)?, theil_sen(b, 60)?);
    let half = (last.0 - first.0) / 2.0;
    (sa * half >= 0.01 * limit && sb * half >= 0.01 * limit && sb >= 0.5 * sa && sb <= 2.0 * sa)
        .then_some((sa, sb))
}

fn leak(w: &WorkloadSeries, ctx: &EvalContext, p: &Params, span: f64) -> Verdict {
    let (pods, young) = judged(w, ctx, p, |x| &x.memory);
    let missing = stale(&pods, ctx, |x| &x.memory);
    if !missing.is_empty() {
        return Verdict::inconclusive(missing_message("memory", &missing));
    }
    if pods.is_empty() {
        return Verdict::inconclusive(format!(
            "no pod past its warm-up yet ({} warming up)",
            young.len()
        ));
    }
    let expected = expected_points(span, ctx.step);
    let mut leaking: Vec<(String, f64, f64, f64, f64)> = vec![];
    let mut unlimited = 0;
    let mut closest: Option<(String, f64)> = None;
    let mut unsteady: Vec<&str> = vec![];
    for pod in &pods {
        let Some(limit) = pod.memory_limit.filter(|l| *l > 0.0) else {
            unlimited += 1;
            continue;
        };
        let start = start_of(pod, &pod.memory).unwrap_or(ctx.now) + p.warmup;
        let pts = window(&pod.memory, (ctx.now - span).max(start), ctx.now);
        let pts = since_last_reset(&pts);
        if (pts.len() as f64) < (expected * p.persistence).max(5.0) {
            continue;
        }
        let (Some(slope), Some(current)) = (
            theil_sen(pts, 60),
            median(
                &pts[pts.len().saturating_sub(3)..]
                    .iter()
                    .map(|x| x.1)
                    .collect::<Vec<_>>(),
            ),
        ) else {
            continue;
        };
        let trend = increasing_pair_fraction(pts, 60);
        let rise = slope * (pts[pts.len() - 1].0 - pts[0].0);
        // Project at the current rate (the second half's) when the climb is steady.
        let steady = steady_rates(pts, limit);
        let rate = steady.map_or(slope, |(_, recent)| recent);
        let tte = if rate > 0.0 {
            ((limit - current) / rate).max(0.0)
        } else {
            f64::INFINITY
        };
        if closest.as_ref().is_none_or(|c| tte < c.1) {
            closest = Some((pod.name.clone(), tte));
        }
        if slope > 0.0 && trend >= 0.8 && rise >= 0.02 * limit && tte < p.horizon {
            if steady.is_some() {
                leaking.push((pod.name.clone(), rate, tte, current, limit));
            } else {
                unsteady.push(pod.name.as_str());
            }
        }
    }
    if leaking.is_empty() {
        if !unsteady.is_empty() {
            return Verdict::healthy(format!(
                "{} climbing towards the limit, but not steadily across {span:.0}s (the climb began within the window or is slowing down, as a filling cache does): not a leak yet",
                abbreviate(&unsteady)
            ));
        }
        let note = match closest {
            Some((n, t)) if t.is_finite() => {
                format!("closest to its limit: {n}, {t:.0}s away at the current slope")
            }
            _ if unlimited == pods.len() => {
                "no pod has a memory limit: no projection possible".into()
            }
            _ => "no rising working set".into(),
        };
        return Verdict::healthy(format!(
            "no working set projected to reach its limit within {:.0}s; {note}",
            p.horizon
        ));
    }
    let mut evidence = vec![];
    for (name, slope, tte, current, limit) in &leaking {
        evidence.push(Evidence {
            rule: format!(
                "steady climb over {span:.0}s (Theil-Sen), projected time to limit at the current rate < {:.0}s",
                p.horizon
            ),
            signal: "memory".into(),
            pod: Some(name.clone()),
            value: *tte,
            threshold: Some(p.horizon),
        });
        evidence.push(Evidence {
            rule: "working-set climb rate, second half of the window (bytes/s)".into(),
            signal: "memory".into(),
            pod: Some(name.clone()),
            value: *slope,
            threshold: None,
        });
        evidence.push(Evidence {
            rule: "working set vs limit (bytes)".into(),
            signal: "memory".into(),
            pod: Some(name.clone()),
            value: *current,
            threshold: Some(*limit),
        });
    }
    let worst = leaking.iter().map(|l| l.2).fold(f64::INFINITY, f64::min);
    Verdict {
        kind: FaultKind::MemoryLeak,
        message: format!(
            "{} leaking: working set projected to hit its limit in {worst:.0}s",
            leaking
                .iter()
                .map(|l| l.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        pods: leaking.into_iter().map(|l| l.0).collect(),
        confidence: (1.0 - worst / p.horizon).clamp(0.5, 1.0),
        evidence,
    }
}

/// Kubelet doubles a crashing container's back-off up to 5 minutes and resets it only after the
/// container has run for 10. A loop past its first few restarts therefore restarts about once per
/// 5 minutes, too rarely for "`restarts` within `for`": it shows instead as a restart within the
/// last 10 minutes by a container that has already restarted many times.
pub(crate) const BACKOFF_LOOKBACK: f64 = 600.0;

/// Restarts after which kubelet's back-off has reached its cap (10 s doubling: 10..160 s, then 300 s).
pub(crate) const CAPPED_LOOP_RESTARTS: f64 = 5.0;

fn crash_loop(w: &WorkloadSeries, ctx: &EvalContext, p: &Params, span: f64) -> Verdict {
    // Crash loops show in young pods too (a replacement crashes at once): no warm-up here.
    let pods: Vec<&PodSeries> = w.pods.iter().collect();
    if pods.is_empty() {
        return Verdict::inconclusive("the workload has no pods");
    }
    let old_enough: Vec<&PodSeries> = pods
        .iter()
        .copied()
        .filter(|x| start_of(x, &x.restarts).is_some_and(|s| s <= ctx.now - p.warmup))
        .collect();
    let missing = stale(&old_enough, ctx, |x| &x.restarts);
    if !missing.is_empty() {
        return Verdict::inconclusive(missing_message("restarts", &missing));
    }
    let lookback = span.max(BACKOFF_LOOKBACK);
    let capped_total = p.restarts.max(CAPPED_LOOP_RESTARTS);
    let mut looping = vec![];
    let mut evidence = vec![];
    let mut max_inc: f64 = 0.0;
    for pod in &pods {
        let inc = counter_increase(&window(&pod.restarts, ctx.now - span, ctx.now));
        max_inc = max_inc.max(inc);
        let recent = counter_increase(&window(&pod.restarts, ctx.now - lookback, ctx.now));
        let total = pod
            .restarts
            .last()
            .map(|x| x.1)
            .filter(|v| v.is_finite())
            .unwrap_or(0.0);
        if inc >= p.restarts {
            looping.push(pod.name.clone());
            evidence.push(Evidence {
                rule: format!("restarts in {span:.0}s >= {}", p.restarts),
                signal: "restarts".into(),
                pod: Some(pod.name.clone()),
                value: inc,
                threshold: Some(p.restarts),
            });
        } else if recent >= 1.0 && total >= capped_total {
            looping.push(pod.name.clone());
            evidence.push(Evidence {
                rule: format!(
                    "restarted within {lookback:.0}s with {total:.0} restarts in all (>= {capped_total}): a crash loop at kubelet's 5-minute back-off"
                ),
                signal: "restarts".into(),
                pod: Some(pod.name.clone()),
                value: total,
                threshold: Some(capped_total),
            });
        }
    }
    if looping.is_empty() {
        return Verdict::healthy(format!(
            "at most {max_inc:.0} restart(s) per pod in {span:.0}s (threshold {}), no pod both restarted within {lookback:.0}s and at {capped_total}+ restarts in all",
            p.restarts
        ));
    }
    Verdict {
        kind: FaultKind::CrashLoop,
        message: format!(
            "{} of {} pods restarting repeatedly (up to {max_inc:.0} in {span:.0}s): restarting or scaling will not fix this",
            looping.len(),
            pods.len()
        ),
        confidence: (max_inc / (2.0 * p.restarts)).clamp(0.5, 1.0),
        pods: looping,
        evidence,
    }
}

fn threshold(
    fault: &FaultSpec,
    w: &WorkloadSeries,
    ctx: &EvalContext,
    p: &Params,
    span: f64,
) -> Verdict {
    let (Some(signal), Some(cond)) = (&fault.signal, &fault.condition) else {
        return Verdict::inconclusive("a Threshold fault needs a signal and a condition");
    };
    let Some(series) = w.signals.get(signal) else {
        return Verdict::inconclusive(format!("signal {signal} was not fetched"));
    };
    let fresh: Vec<_> = series
        .iter()
        .filter(|s| s.is_fresh(ctx.fresh_cutoff()))
        .collect();
    if fresh.is_empty() {
        return Verdict::inconclusive(format!(
            "signal {signal} returned no fresh data ({} series, all stale or none)",
            series.len()
        ));
    }
    let expected = expected_points(span, ctx.step);
    let mut firing = vec![];
    let mut evidence = vec![];
    let mut best = 0.0_f64;
    for s in &fresh {
        let pts = window(&s.points, ctx.now - span, ctx.now);
        let holds = pts
            .iter()
            .filter(|(_, v)| cond.op.holds(*v, cond.value))
            .count();
        let share = holds as f64 / expected;
        best = best.max(share);
        if share >= p.persistence {
            let last = s.last().map_or(f64::NAN, |x| x.1);
            if let Some(pod) = s.label("pod") {
                firing.push(pod.to_string());
            }
            evidence.push(Evidence {
                rule: format!(
                    "{signal} {} {} for {:.0}% of {span:.0}s",
                    cond.op.as_str(),
                    cond.value,
                    share * 100.0
                ),
                signal: signal.clone(),
                pod: s.label("pod").map(str::to_string),
                value: last,
                threshold: Some(cond.value),
            });
        }
    }
    if evidence.is_empty() {
        return Verdict::healthy(format!(
            "{signal} {} {} held for at most {:.0}% of {span:.0}s",
            cond.op.as_str(),
            cond.value,
            best * 100.0
        ));
    }
    Verdict {
        kind: FaultKind::Threshold,
        message: format!(
            "{signal} {} {} sustained for {span:.0}s ({} series)",
            cond.op.as_str(),
            cond.value,
            evidence.len()
        ),
        pods: firing,
        confidence: best.min(1.0),
        evidence,
    }
}
