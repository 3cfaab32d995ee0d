//! MemoryLeak: a working set climbing steadily towards its limit. A leak is reported as soon as
//! the climb is steady and the projection is within `reportHorizon`; the restart is due once the
//! projection enters `horizon`.

use super::{
    Params, Verdict, abbreviate, expected_points, judged, missing_message, stale, start_of,
};
use crate::{
    diagnosis::{
        input::{EvalContext, WorkloadSeries, window},
        stats::{increasing_pair_fraction, median, theil_sen},
    },
    v1alpha1::{Evidence, FaultKind},
};

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
    let (sa, sb, half) = half_rates(pts)?;
    (sa * half >= 0.01 * limit && sb * half >= 0.01 * limit && sb >= 0.5 * sa && sb <= 2.0 * sa)
        .then_some((sa, sb))
}

/// Both halves' Theil–Sen slopes and the half span.
fn half_rates(pts: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let (first, last) = (pts.first()?, pts.last()?);
    let mid = (first.0 + last.0) / 2.0;
    // Points are in time order.
    let (a, b) = pts.split_at(pts.partition_point(|x| x.0 <= mid));
    if a.len() < 3 || b.len() < 3 {
        return None;
    }
    Some((
        theil_sen(a, 60)?,
        theil_sen(b, 60)?,
        (last.0 - first.0) / 2.0,
    ))
}

/// A climb that rose clearly in the first half and at less than half that rate in the second:
/// slowing down towards a size, as a filling cache does.
fn slowing(pts: &[(f64, f64)], limit: f64) -> bool {
    half_rates(pts).is_some_and(|(sa, sb, half)| sa * half >= 0.01 * limit && sb < 0.5 * sa)
}

/// How far back MemoryLeak reads (at least its `for`): slow leaks and slowing caches show over
/// half an hour; a 10-minute window hides both.
pub(crate) const LEAK_LOOKBACK: f64 = 1800.0;

/// The climb of the raw points, or of their floors when a GC sawtooth hides a steady one.
fn assess(pts: &[(f64, f64)], limit: f64) -> Option<Climb> {
    let raw = Climb::of(pts, limit)?;
    if raw.steady.is_some() && raw.rising(limit) {
        return Some(raw);
    }
    let fl = floors(pts, pts.len().div_ceil(FLOOR_BUCKETS));
    match Climb::of(&fl, limit) {
        Some(f) if f.steady.is_some() && f.rising(limit) => Some(f),
        // Slowing shows on the floors too when the raw points zig-zag.
        Some(f) if !raw.slowing && f.slowing => Some(Climb {
            slowing: true,
            ..raw
        }),
        _ => Some(raw),
    }
}

/// What one pod's working set does over the window.
struct Climb {
    /// Theil–Sen slope over the whole window (bytes/s).
    slope: f64,
    /// The current rate: the second half's slope when the climb is steady, else `slope`.
    rate: f64,
    /// Share of increasing pairs.
    trend: f64,
    /// Rise over the window at `slope` (bytes).
    rise: f64,
    /// Both halves' rates, when steady.
    steady: Option<(f64, f64)>,
    /// Rising, then at less than half that rate.
    slowing: bool,
}

impl Climb {
    fn of(pts: &[(f64, f64)], limit: f64) -> Option<Self> {
        let slope = theil_sen(pts, 60)?;
        let steady = steady_rates(pts, limit);
        Some(Self {
            slope,
            rate: steady.map_or(slope, |(_, recent)| recent),
            trend: increasing_pair_fraction(pts, 60),
            rise: slope * (pts.last()?.0 - pts.first()?.0),
            steady,
            slowing: slowing(pts, limit),
        })
    }

    /// Rising clearly enough to be a leak's (steady or not).
    fn rising(&self, limit: f64) -> bool {
        self.slope > 0.0 && self.trend >= 0.8 && self.rise >= 0.02 * limit
    }

    /// 0.55..1: how clean the climb is (trend strength, and both halves' rates alike).
    fn confidence(&self) -> f64 {
        let t = ((self.trend - 0.8) / 0.2).clamp(0.0, 1.0);
        let s = self.steady.map_or(0.0, |(a, b)| {
            (1.0 - (b / a).ln().abs() / std::f64::consts::LN_2).clamp(0.0, 1.0)
        });
        0.55 + 0.45 * (0.5 * t + 0.5 * s)
    }
}

/// The lowest point of each run of `k` points: the floor a garbage-collected heap returns to,
/// which is what grows in a leak under a GC sawtooth.
fn floors(pts: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    pts.chunks(k.max(1))
        .filter_map(|c| c.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)))
        .collect()
}

/// Floor runs per window: coarse enough to span a GC cycle of a few minutes in a 10-minute window.
const FLOOR_BUCKETS: usize = 8;

pub(super) fn leak(w: &WorkloadSeries, ctx: &EvalContext, p: &Params, span: f64) -> Verdict {
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
    // (pod, rate, time to limit, current, limit, confidence, span of the climb)
    let mut leaking: Vec<(String, f64, f64, f64, f64, f64, f64)> = vec![];
    let mut unlimited = 0;
    let mut closest: Option<(String, f64)> = None;
    let mut unsteady: Vec<&str> = vec![];
    for pod in &pods {
        let Some(limit) = pod.memory_limit.filter(|l| *l > 0.0) else {
            unlimited += 1;
            continue;
        };
        let start = start_of(pod, &pod.memory).unwrap_or(ctx.now) + p.warmup;
        let pts = window(
            &pod.memory,
            (ctx.now - span.max(LEAK_LOOKBACK)).max(start),
            ctx.now,
        );
        let pts = since_last_reset(&pts);
        if (pts.len() as f64) < (expected * p.persistence).max(5.0) {
            continue;
        }
        let Some(current) = median(
            &pts[pts.len().saturating_sub(3)..]
                .iter()
                .map(|x| x.1)
                .collect::<Vec<_>>(),
        ) else {
            continue;
        };
        // Judged on up to LEAK_LOOKBACK: a slow leak shows over half an hour, a filling cache
        // shows its slowing down. A climb that began within it is judged on the `for` window.
        let Some(long) = assess(pts, limit) else {
            continue;
        };
        let (climb, pts) = if long.steady.is_some() || long.slowing {
            (long, pts)
        } else {
            let recent = &pts[pts.partition_point(|x| x.0 < ctx.now - span - 1e-6)..];
            match assess(recent, limit) {
                Some(c) if recent.len() >= 5 => (c, recent),
                _ => (long, pts),
            }
        };
        let tte = if climb.rate > 0.0 {
            ((limit - current) / climb.rate).max(0.0)
        } else {
            f64::INFINITY
        };
        if closest.as_ref().is_none_or(|c| tte < c.1) {
            closest = Some((pod.name.clone(), tte));
        }
        if climb.rising(limit) && tte < p.report_horizon {
            if climb.steady.is_some() {
                let held = pts[pts.len() - 1].0 - pts[0].0;
                leaking.push((
                    pod.name.clone(),
                    climb.rate,
                    tte,
                    current,
                    limit,
                    climb.confidence(),
                    held,
                ));
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
            "no working set climbing steadily towards its limit within {:.0}s; {note}",
            p.report_horizon
        ));
    }
    let mut evidence = vec![];
    for (name, rate, tte, current, limit, _, _) in &leaking {
        evidence.push(Evidence {
            rule: format!(
                "steady climb over {span:.0}s (Theil-Sen), projected time to limit at the current rate (a leak below {:.0}s, restart due below {:.0}s)",
                p.report_horizon, p.horizon
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
            value: *rate,
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
    let confidence = leaking.iter().map(|l| l.5).fold(1.0, f64::min);
    let held = leaking.iter().map(|l| l.6).fold(f64::INFINITY, f64::min);
    let names: Vec<String> = leaking.iter().map(|l| l.0.clone()).collect();
    let mut v = Verdict::fault(FaultKind::MemoryLeak, names, confidence, held);
    v.time_to_limit = Some(worst);
    v.due = worst < p.horizon;
    v.due_in = Some((worst - p.horizon).max(0.0));
    v.message = if v.due {
        format!(
            "{} leaking: working set projected to hit its limit in {worst:.0}s (within the {:.0}s horizon): restart due",
            v.pods.join(", "),
            p.horizon
        )
    } else {
        format!(
            "{} leaking: working set projected to hit its limit in {worst:.0}s; restart due in {:.0}s (when the projection enters the {:.0}s horizon)",
            v.pods.join(", "),
            worst - p.horizon,
            p.horizon
        )
    };
    v.evidence = evidence;
    v
}
