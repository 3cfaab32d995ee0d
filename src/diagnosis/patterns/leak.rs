//! MemoryLeak: a working set climbing steadily towards its limit. What is wrong is judged on the
//! shape of the climb since it began (up to an hour back, on the floors a GC sawtooth returns to):
//! steady (the rate of its second half close to its first's), not made of a few held jumps (a JVM
//! growing its committed heap), not slowing down (a cache filling towards its size, a heap that
//! reached it), and projected at its recent rate to reach the limit within `reportHorizon`. When
//! to act is apart: the restart is due once the projection enters `horizon`.

use super::{Params, Verdict, abbreviate, judged, missing_message, stale, start_of};
use crate::{
    diagnosis::{
        input::{EvalContext, WorkloadSeries, window},
        stats::{increasing_pair_fraction, mad, median, theil_sen},
    },
    v1alpha1::{Evidence, FaultKind},
};

/// How far back MemoryLeak reads (at least its `for`): a slow leak and a filling cache show their
/// shape over an hour; a 10-minute window hides both.
pub(crate) const LEAK_LOOKBACK: f64 = 3600.0;

/// The longest garbage-collection cycle a floor spans: the Go scavenger returns freed pages over a
/// few minutes (docs/workload-behaviour.md, 5). A shorter `for` uses half its span.
const GC_CYCLE: f64 = 300.0;

/// A process fills its runtime and first heap in its first minutes: the climb is judged from this
/// long after a start or a restart (at most half of `for`, at least `warmup`).
const SETTLE: f64 = 180.0;

/// A climb whose second half rises at less than this share of its first half's rate (and slower by
/// more than twice the rates' standard error) is slowing down (a cache filling towards its size, a
/// heap reaching it). A leak's rate follows traffic, which moves by tens of percent over hours, not
/// by half within the hour.
const SLOWING: f64 = 0.6;

/// A climb not yet due (projected beyond `horizon`) is judged once it has lasted this many times
/// `for`: whether it slows down is what tells a filling cache (τ of 5–20 minutes) from a leak, and
/// that takes longer than `for` to show; nothing is lost by waiting, the restart is not due. A
/// climb that is due is judged after the hold, as before.
const PATIENCE: f64 = 1.5;

/// How many standard errors the second half's rate must lie below the first's before the climb
/// is projected as levelling off (`levels_off_below`).
const PLATEAU_NOISE: f64 = 3.0;

/// A second half more than this many times as fast as the first (and faster by more than twice
/// the rates' standard error: a GC sawtooth sampled every 30 s leaves noisy floors) is not steady
/// (a jump, or a climb that began within `for`).
const SPEEDING: f64 = 2.0;

/// Share of the rise made in held jumps from which a climb is stepped (a JVM growing its committed
/// heap towards `-Xmx`), not a leak (memory retained per request grows in small amounts).
const STEPPED: f64 = 0.5;

/// Least rise of each half of the climb, as a share of the limit (above cAdvisor's sample noise).
const MIN_HALF_RISE: f64 = 0.005;

/// Least share of increasing pairs of floors.
const TREND: f64 = 0.8;

/// The points after the last restart inside the same pod: a drop below 0.7 of the median of the
/// three points before it and below 0.8 of the lowest point of the `cycle` before it (the longest
/// GC cycle). A garbage collection returns to the previous floor (the live heap), a restart falls
/// far below it.
fn since_last_reset(points: &[(f64, f64)], cycle: f64) -> &[(f64, f64)] {
    let mut start = 0;
    for i in 1..points.len() {
        let (t, v) = points[i];
        let before: Vec<f64> = points[i.saturating_sub(3)..i].iter().map(|p| p.1).collect();
        let floor = points[..i]
            .iter()
            .rev()
            .take_while(|p| p.0 >= t - cycle)
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min);
        if median(&before).is_some_and(|m| v < 0.7 * m) && v < 0.8 * floor {
            start = i;
        }
    }
    &points[start..]
}

/// The floor points: each point that is the lowest of a `cycle`-long window centred on some point.
/// Under a GC sawtooth these are its troughs (the live heap, which a leak makes grow); on a smooth
/// climb nearly every point.
fn floors(pts: &[(f64, f64)], cycle: f64) -> Vec<(f64, f64)> {
    let h = cycle / 2.0;
    let (mut lo, mut hi) = (0, 0);
    let mut idx: Vec<usize> = vec![];
    for &(t, _) in pts {
        while pts[lo].0 < t - h {
            lo += 1;
        }
        while hi + 1 < pts.len() && pts[hi + 1].0 <= t + h {
            hi += 1;
        }
        // The first of equal lows, so that a flat run keeps every point.
        let m = (lo..=hi)
            .min_by(|&a, &b| pts[a].1.total_cmp(&pts[b].1))
            .unwrap_or(lo);
        idx.push(m);
    }
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter().map(|i| pts[i]).collect()
}

/// Where the climb began: the start of the least-squares fit of a level followed by a straight
/// climb, moved on to the last floor still within the level's noise (a line fitted to a curve that
/// slows down starts too early). `None` when no fit climbs.
fn onset(fl: &[(f64, f64)]) -> Option<usize> {
    let last = fl.len().saturating_sub(2);
    let stride = last.div_ceil(60).max(1);
    let sums = Suffix::of(fl);
    let (c, fit) = (0..last)
        .step_by(stride)
        .filter_map(|c| sums.hinge(c).map(|f| (c, f)))
        .filter(|x| x.1.b > 0.0)
        .min_by(|a, b| a.1.sse.total_cmp(&b.1.sse))?;
    let residuals: Vec<f64> = fl.iter().map(|p| p.1 - fit.at(p.0)).collect();
    let band = fit.a + 3.0 * mad(&residuals).unwrap_or(0.0);
    Some((c..last).rev().find(|&j| fl[j].1 <= band).unwrap_or(c))
}

/// A level `a` until `tc`, then a climb at `b` per second.
#[derive(Clone, Copy, Debug)]
struct Hinge {
    a: f64,
    b: f64,
    tc: f64,
    sse: f64,
}

impl Hinge {
    fn at(&self, t: f64) -> f64 {
        self.a + self.b * (t - self.tc).max(0.0)
    }
}

/// Suffix sums of the floors (times from the first floor, values about their mean, so that the
/// sums keep their precision), from which the hinge fit at any floor is O(1) instead of O(n):
/// `onset` tries up to 60 of them per pod and evaluation.
struct Suffix {
    t0: f64,
    n: f64,
    my: f64,
    syy: f64,
    /// Per index `i`: the sums over the floors after `i` of 1, t, t², y, t·y.
    after: Vec<[f64; 5]>,
    ts: Vec<f64>,
}

impl Suffix {
    fn of(fl: &[(f64, f64)]) -> Self {
        let t0 = fl.first().map_or(0.0, |p| p.0);
        let n = fl.len() as f64;
        let my = fl.iter().map(|p| p.1).sum::<f64>() / n.max(1.0);
        let syy = fl.iter().map(|p| (p.1 - my).powi(2)).sum();
        let mut after = vec![[0.0; 5]; fl.len()];
        let mut acc = [0.0; 5];
        for i in (0..fl.len()).rev() {
            after[i] = acc;
            let (t, y) = (fl[i].0 - t0, fl[i].1 - my);
            acc = [
                acc[0] + 1.0,
                acc[1] + t,
                acc[2] + t * t,
                acc[3] + y,
                acc[4] + t * y,
            ];
        }
        Self {
            t0,
            n,
            my,
            syy,
            after,
            ts: fl.iter().map(|p| p.0).collect(),
        }
    }

    /// The least-squares level-then-climb fit whose climb starts at floor `c`: x = max(0, t - tc)
    /// is t - tc after `c` and 0 up to it.
    fn hinge(&self, c: usize) -> Option<Hinge> {
        let tc = self.ts[c];
        let u = tc - self.t0;
        let [k, st, stt, sy, sty] = self.after[c];
        let sx = st - k * u;
        let sxx = stt - 2.0 * u * st + k * u * u - sx * sx / self.n;
        // The values are centred: their sum is 0.
        let sxy = sty - u * sy;
        if sxx <= 0.0 {
            return None;
        }
        let b = sxy / sxx;
        let a = self.my - b * sx / self.n;
        let sse = self.syy - b * sxy;
        Some(Hinge { a, b, tc, sse })
    }
}

/// Share of the rise of `raw` made in held jumps: rises from one point to the next (after a
/// 3-point running median) over twice the climb's own rate and above it by more than 5 times the
/// spread of such excesses, after which the series never falls back below their midpoint. A JVM's committed heap
/// grows that way; a leak, a filling cache and a GC sawtooth (whose rises fall back) do not.
fn stepped(raw: &[(f64, f64)]) -> f64 {
    // A scrape interval longer than the query step repeats each sample: the same value twice is
    // one sample, not a flat run followed by a jump.
    let mut raw = raw.to_vec();
    raw.dedup_by(|b, a| a.1 == b.1);
    let raw = raw.as_slice();
    if raw.len() < 5 {
        return 0.0;
    }
    let s: Vec<(f64, f64)> = (0..raw.len())
        .map(|i| {
            let w: Vec<f64> = raw[i.saturating_sub(1)..(i + 2).min(raw.len())]
                .iter()
                .map(|p| p.1)
                .collect();
            (raw[i].0, median(&w).unwrap_or(raw[i].1))
        })
        .collect();
    let ends = |p: &[(f64, f64)]| median(&p.iter().map(|x| x.1).collect::<Vec<_>>());
    let (rise, rate) = match (ends(&s[s.len() - 3..]), ends(&s[..3]), theil_sen(&s, 60)) {
        (Some(b), Some(a), Some(rate)) if b > a => (b - a, rate),
        _ => return 0.0,
    };
    let excess: Vec<f64> = s
        .windows(2)
        .map(|w| w[1].1 - w[0].1 - rate * (w[1].0 - w[0].0))
        .collect();
    let Some(spread) = mad(&excess) else {
        return 0.0;
    };
    let mut lowest_after = vec![f64::INFINITY; raw.len() + 1];
    for i in (0..raw.len()).rev() {
        lowest_after[i] = lowest_after[i + 1].min(raw[i].1);
    }
    let held: f64 = s
        .windows(2)
        .zip(&excess)
        .enumerate()
        .filter(|(i, (w, e))| {
            let jump = w[1].1 - w[0].1;
            **e > 5.0 * spread
                && jump > 2.0 * rate.max(0.0) * (w[1].0 - w[0].0)
                && lowest_after[i + 1] >= w[0].1 + 0.5 * jump
        })
        .map(|(_, (w, _))| w[1].1 - w[0].1)
        .sum();
    (held / rise).min(1.0)
}

/// What one pod's working set does since its climb began.
struct Climb {
    /// When the climb began (unix seconds).
    from: f64,
    /// Theil–Sen rates of the floors in the climb's first and second halves (bytes/s).
    early: f64,
    late: f64,
    /// Half the climb's span (s).
    half: f64,
    /// Share of increasing pairs of floors.
    trend: f64,
    /// Share of the rise made in held jumps.
    stepped: f64,
    /// Began less than the hold (`for` x persistence) ago.
    young: bool,
    /// Seconds since the climb began.
    age: f64,
    /// The working set's peak now: the floor line of the second half at now, times `gain`.
    peak: f64,
    /// Peak over floor (a GC sawtooth's height; about 1 without one).
    gain: f64,
    /// Standard error of `late - early` (bytes/s), from the floors' scatter about each half's line.
    noise: f64,
}

/// The intercept at `now` of the line of `slope` through `h` (the median offset), and the
/// standard error of `slope` from the scatter about it.
fn fit(h: &[(f64, f64)], slope: f64, now: f64) -> Option<(f64, f64)> {
    let offsets: Vec<f64> = h.iter().map(|p| p.1 - slope * (p.0 - now)).collect();
    let at_now = median(&offsets)?;
    let scatter = mad(&offsets)?;
    let span = h.last()?.0 - h.first()?.0;
    let se = if span > 0.0 {
        scatter * 12f64.sqrt() / (span * (h.len() as f64).sqrt())
    } else {
        f64::INFINITY
    };
    Some((at_now, se))
}

impl Climb {
    fn of(pts: &[(f64, f64)], now: f64, cycle: f64, held: f64) -> Option<Self> {
        let fl = floors(pts, cycle);
        if fl.len() < 5 {
            return None;
        }
        let c = onset(&fl)?;
        let from = fl[c].0;
        let climb = &fl[c..];
        let mid = (from + now) / 2.0;
        let (a, b) = climb.split_at(climb.partition_point(|x| x.0 <= mid));
        if a.len() < 2 || b.len() < 2 {
            return None;
        }
        let (early, late) = (theil_sen(a, 60)?, theil_sen(b, 60)?);
        let (_, se_early) = fit(a, early, now)?;
        let (floor_now, se_late) = fit(b, late, now)?;
        if floor_now <= 0.0 {
            return None;
        }
        // The sawtooth's height over the floor line: the second highest ratio of the second half
        // (over many cycles the samples come close to the peaks).
        let mut ratios: Vec<f64> = pts
            .iter()
            .filter(|x| x.0 > mid)
            .map(|x| (x.1 / (floor_now + late * (x.0 - now))).max(1.0))
            .filter(|r| r.is_finite())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let gain = match ratios.len() {
            0 => 1.0,
            1 => ratios[0],
            n => ratios[n - 2],
        };
        Some(Self {
            from,
            early,
            late,
            half: (now - from) / 2.0,
            trend: increasing_pair_fraction(climb, 60),
            stepped: stepped(&pts[pts.partition_point(|x| x.0 < from)..]),
            young: now - from < held,
            age: now - from,
            peak: floor_now * gain,
            gain,
            noise: se_early.hypot(se_late),
        })
    }

    /// Why the climb is not a leak's, if it is not (`None`: a leak's shape). A climb whose
    /// projection is beyond `horizon` is judged only once it has lasted `patience` (s).
    fn not_a_leak(&self, limit: f64, horizon: f64, patience: f64) -> Option<Shape> {
        let least = MIN_HALF_RISE * limit;
        if self.early * self.half < least && self.late * self.half < least {
            return Some(Shape::Flat);
        }
        if self.young {
            return Some(Shape::Unsteady);
        }
        if self.age < patience && self.time_to(limit) >= horizon {
            return Some(Shape::Recent);
        }
        if self.stepped >= STEPPED {
            return Some(Shape::Stepped);
        }
        if self.late < SLOWING * self.early && self.early - self.late > 2.0 * self.noise {
            return Some(Shape::Slowing);
        }
        if self.levels_off_below(limit) {
            return Some(Shape::Slowing);
        }
        if (self.late > SPEEDING * self.early && self.late - self.early > 2.0 * self.noise)
            || self.trend < TREND
            || self.early * self.half < least
            || self.late * self.half < least
        {
            return Some(Shape::Unsteady);
        }
        None
    }

    /// Whether a climb that slows down, less than `SLOWING` would say but beyond its noise, levels
    /// off before it reaches `limit`: a fill that slows as `e^(-t/τ)` (a cache, whose fill rate
    /// falls as its hit ratio rises) rises by only rate × τ more, τ from the two halves' rates
    /// (`late / early = e^(-half/τ)`) and the rate now a quarter of the climb past the second
    /// half's. A leak keeps its rate (it follows traffic): its plateau, if any, lies beyond the
    /// limit.
    fn levels_off_below(&self, limit: f64) -> bool {
        if !(self.late > 0.0 && self.late < self.early)
            || self.early - self.late <= PLATEAU_NOISE * self.noise
        {
            return false;
        }
        let rho = self.late / self.early;
        let tau = self.half / -rho.ln();
        tau * rho.sqrt() < self.time_to(limit)
    }

    /// Seconds until the peak reaches `limit` at the recent rate: under a GC sawtooth the peak
    /// grows `gain` times as fast as the floor (the heap goal is proportional to the live heap).
    fn time_to(&self, limit: f64) -> f64 {
        if self.late > 0.0 {
            ((limit - self.peak) / (self.late * self.gain)).max(0.0)
        } else {
            f64::INFINITY
        }
    }

    /// 0.55..1: how clean the climb is (trend strength, and both halves' rates alike).
    fn confidence(&self) -> f64 {
        let t = ((self.trend - TREND) / (1.0 - TREND)).clamp(0.0, 1.0);
        let s = if self.early > 0.0 && self.late > 0.0 {
            (1.0 - (self.late / self.early).ln().abs() / std::f64::consts::LN_2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        0.55 + 0.45 * (0.5 * t + 0.5 * s)
    }
}

/// Why a climbing pod is not leaking.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// No rise beyond noise.
    Flat,
    /// Most of the rise in a few held jumps.
    Stepped,
    /// The second half slower than the first by more than traffic explains.
    Slowing,
    /// Faster now than before, or not consistently rising.
    Unsteady,
    /// Began too recently to tell from a filling cache, and not urgent.
    Recent,
}

/// One leaking pod.
struct Leaking {
    pod: String,
    rate: f64,
    tte: f64,
    peak: f64,
    limit: f64,
    confidence: f64,
    held: f64,
}

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
    let cycle = GC_CYCLE.min(span / 2.0).max(3.0 * ctx.step);
    let settle = SETTLE.min(span / 2.0).max(p.warmup);
    let held = span * p.persistence;
    let mut leaking: Vec<Leaking> = vec![];
    let mut unlimited = 0;
    let mut closest: Option<(String, f64)> = None;
    let mut shaped: Vec<(&str, Shape)> = vec![];
    for pod in &pods {
        let Some(limit) = pod.memory_limit.filter(|l| *l > 0.0) else {
            unlimited += 1;
            continue;
        };
        let start = start_of(pod, &pod.memory).unwrap_or(ctx.now) + settle;
        let all = window(
            &pod.memory,
            (ctx.now - span.max(LEAK_LOOKBACK)).max(start),
            ctx.now,
        );
        let since = since_last_reset(&all, GC_CYCLE);
        let Some(reset) = since.first().map(|x| x.0) else {
            continue;
        };
        let from = if since.len() < all.len() {
            reset + settle
        } else {
            reset
        };
        let pts = &since[since.partition_point(|x| x.0 < from)..];
        let covered = pts.last().map_or(0.0, |l| l.0) - pts.first().map_or(0.0, |f| f.0);
        if pts.len() < 5 || covered < held - 1e-6 {
            continue;
        }
        let Some(climb) = Climb::of(pts, ctx.now, cycle, held) else {
            continue;
        };
        let tte = climb.time_to(limit);
        if closest.as_ref().is_none_or(|c| tte < c.1) {
            closest = Some((pod.name.clone(), tte));
        }
        match climb.not_a_leak(limit, p.horizon, PATIENCE * span) {
            Some(Shape::Flat) => {}
            Some(s) => shaped.push((pod.name.as_str(), s)),
            None if tte < p.report_horizon => leaking.push(Leaking {
                pod: pod.name.clone(),
                rate: climb.late,
                tte,
                peak: climb.peak,
                limit,
                confidence: climb.confidence(),
                held: ctx.now - climb.from,
            }),
            None => {}
        }
    }
    if leaking.is_empty() {
        return Verdict::healthy(healthy_message(
            &shaped,
            closest,
            unlimited == pods.len(),
            p,
        ));
    }
    let mut evidence = vec![];
    for l in &leaking {
        evidence.push(Evidence {
            rule: format!(
                "steady climb since it began (floors, Theil-Sen per half), projected time to limit at the recent rate (a leak below {:.0}s, restart due below {:.0}s)",
                p.report_horizon, p.horizon
            ),
            signal: "memory".into(),
            pod: Some(l.pod.clone()),
            value: l.tte,
            threshold: Some(p.horizon),
        });
        evidence.push(Evidence {
            rule: "working-set floor climb rate, second half of the climb (bytes/s)".into(),
            signal: "memory".into(),
            pod: Some(l.pod.clone()),
            value: l.rate,
            threshold: None,
        });
        evidence.push(Evidence {
            rule: "working-set peak vs limit (bytes)".into(),
            signal: "memory".into(),
            pod: Some(l.pod.clone()),
            value: l.peak,
            threshold: Some(l.limit),
        });
    }
    let worst = leaking.iter().map(|l| l.tte).fold(f64::INFINITY, f64::min);
    let confidence = leaking.iter().map(|l| l.confidence).fold(1.0, f64::min);
    let held_for = leaking.iter().map(|l| l.held).fold(f64::INFINITY, f64::min);
    let names: Vec<String> = leaking.iter().map(|l| l.pod.clone()).collect();
    let mut v = Verdict::fault(FaultKind::MemoryLeak, names, confidence, held_for);
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

/// Why no pod is leaking: the climbs that are not a leak's, and the closest projection.
fn healthy_message(
    shaped: &[(&str, Shape)],
    closest: Option<(String, f64)>,
    unlimited: bool,
    p: &Params,
) -> String {
    let mut parts = vec![];
    for (shape, what) in [
        (
            Shape::Stepped,
            "rose in a few held jumps (a heap growing its committed size)",
        ),
        (
            Shape::Slowing,
            "climbing ever slower or levelled off (a filling cache, a heap at its size)",
        ),
        (
            Shape::Unsteady,
            "not climbing steadily (faster now than before, or the climb began within the window)",
        ),
        (
            Shape::Recent,
            "climbing for too short a time to tell from a filling cache, and not urgent",
        ),
    ] {
        let names: Vec<&str> = shaped
            .iter()
            .filter(|s| s.1 == shape)
            .map(|s| s.0)
            .collect();
        if !names.is_empty() {
            parts.push(format!("{} {what}", abbreviate(&names)));
        }
    }
    let note = match closest {
        Some((n, t)) if t.is_finite() => {
            format!("closest to its limit: {n}, {t:.0}s away at the recent rate")
        }
        _ if unlimited => "no pod has a memory limit: no projection possible".into(),
        _ => "no rising working set".into(),
    };
    parts.push(note);
    format!(
        "no working set climbing steadily towards its limit within {:.0}s: {}: not a leak",
        p.report_horizon,
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hinge fit computed directly, in O(n) per candidate (as it was before the suffix sums).
    fn direct(fl: &[(f64, f64)], tc: f64) -> Option<Hinge> {
        let n = fl.len() as f64;
        let x = |p: &(f64, f64)| (p.0 - tc).max(0.0);
        let mx = fl.iter().map(x).sum::<f64>() / n;
        let my = fl.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = fl.iter().map(|p| (x(p) - mx).powi(2)).sum();
        let sxy: f64 = fl.iter().map(|p| (x(p) - mx) * (p.1 - my)).sum();
        if sxx <= 0.0 {
            return None;
        }
        let b = sxy / sxx;
        let a = my - b * mx;
        let sse = fl.iter().map(|p| (p.1 - a - b * x(p)).powi(2)).sum();
        Some(Hinge { a, b, tc, sse })
    }

    #[test]
    fn suffix_sums_give_the_direct_hinge_fit() {
        // An hour of floors at unix times: a level, then a climb, with a deterministic wobble.
        let fl: Vec<(f64, f64)> = (0..240)
            .map(|i| {
                let t = 1.8e9 + 15.0 * i as f64;
                let wobble = 3e6 * ((i * 7919) % 13) as f64 / 13.0;
                (t, 4e8 + 2e5 * (i as f64 - 80.0).max(0.0) + wobble)
            })
            .collect();
        let sums = Suffix::of(&fl);
        for c in 0..fl.len() - 1 {
            let (d, s) = (direct(&fl, fl[c].0), sums.hinge(c));
            let (Some(d), Some(s)) = (d, s) else {
                assert!(d.is_none() && s.is_none(), "candidate {c}: {d:?} vs {s:?}");
                continue;
            };
            for (what, x, y) in [("a", d.a, s.a), ("b", d.b, s.b), ("sse", d.sse, s.sse)] {
                assert!(
                    (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                    "candidate {c}, {what}: direct {x}, suffix sums {y}"
                );
            }
        }
        // The last candidate has no floor after it: no climb to fit.
        assert!(sums.hinge(fl.len() - 1).is_none());
        assert_eq!(onset(&fl).map(|c| fl[c].0 >= fl[70].0), Some(true));
    }

    fn climb(early: f64, late: f64, noise: f64) -> Climb {
        Climb {
            from: 0.0,
            early,
            late,
            half: 600.0,
            trend: 1.0,
            stepped: 0.0,
            young: false,
            age: 1200.0,
            peak: 300e6,
            gain: 1.6,
            noise,
        }
    }

    #[test]
    fn a_faster_second_half_within_the_floors_noise_is_steady() {
        // A Go heap's floors sampled every 30 s: the second half's rate 2.4 times the first's,
        // but their difference within twice its standard error.
        let (limit, horizon, patience) = (1024e6, 1800.0, 900.0);
        assert!(
            climb(50e3, 120e3, 50e3)
                .not_a_leak(limit, horizon, patience)
                .is_none()
        );
        // Beyond the noise it is unsteady (a jump, or a climb that began within the window).
        assert!(matches!(
            climb(50e3, 120e3, 20e3).not_a_leak(limit, horizon, patience),
            Some(Shape::Unsteady)
        ));
    }
}
