//! RunawayProcess: one pod (or a few) burning far more CPU than its siblings, for `for`.

use std::collections::BTreeMap;

use super::{
    EXCESS_MIN_RATIO, Params, Verdict, by_time, expected_points, hold, judged, missing_message,
    stale,
};
use crate::{
    diagnosis::{
        input::{EvalContext, WorkloadSeries},
        stats::{mad, median},
    },
    v1alpha1::{Evidence, FaultKind},
};

/// The siblings' spread never counts as less than this share of their median: with two or three
/// replicas the MAD of one or two values says nothing about how much they vary.
const SPREAD_FLOOR: f64 = 0.1;

/// How strongly one point of a pod breaks the rules (1 = at the bound), or `None` when it does not.
/// Three ways: a multiple of the siblings' median, an absolute excess of cores over it (at a lower
/// multiple), or alone at its limit while the siblings are well below theirs.
fn strength(v: f64, others: &[f64], limit: Option<f64>, p: &Params) -> Option<f64> {
    let (med, spread) = (median(others)?, mad(others)?);
    if v < p.min_cores {
        return None;
    }
    let spread = spread.max(SPREAD_FLOOR * med);
    let excess = v - med;
    let mut s: Option<f64> = None;
    let mut take = |x: f64| s = Some(s.map_or(x, |y: f64| y.max(x)));
    if excess >= p.min_cores.max(3.0 * spread) {
        if med <= 0.0 || v >= p.sibling_ratio * med {
            take(if med > 0.0 {
                v / (p.sibling_ratio * med)
            } else {
                v / p.min_cores
            });
        }
        if p.excess_cores > 0.0 && excess >= p.excess_cores && v >= EXCESS_MIN_RATIO * med {
            take(excess / p.excess_cores);
        }
    }
    if let Some(l) = limit
        && v >= p.runaway_limit_ratio * l
        && med < 0.5 * l
    {
        take(v / (p.runaway_limit_ratio * l));
    }
    s
}

/// Confidence from the share of the window the rule held and how far past its bound it was:
/// 0.5 at the bound, ≈ 0.9 at 1.5 times it.
fn confidence(share: f64, strength: f64) -> f64 {
    share.min(1.0) * (1.0 - 0.5 * (-(strength - 1.0).max(0.0) * 3.5).exp())
}

pub(super) fn runaway(w: &WorkloadSeries, ctx: &EvalContext, p: &Params, span: f64) -> Verdict {
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
    let adaptive = p.adaptive_hold(span, ctx.step);
    let lookback = adaptive.map_or(span, |a| a.lookback());
    let grid = by_time(&pods, ctx.now - lookback, ctx.now, |x| &x.cpu);
    // Per pod: its points in time order, each with its strength when hot.
    let mut track: BTreeMap<&str, Vec<(f64, Option<f64>)>> = BTreeMap::new();
    for (t, values) in &grid {
        for (i, (name, v)) in values.iter().enumerate() {
            let others: Vec<f64> = values
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, x))| *x)
                .collect();
            let s = strength(*v, &others, limits.get(name).copied().flatten(), p);
            track.entry(name).or_default().push((*t as f64 / 1000.0, s));
        }
    }
    let expected = expected_points(span, ctx.step);
    // (pod, share of the hold, median strength, held for).
    let mut found: Vec<(&str, f64, f64, f64)> = track
        .iter()
        .filter_map(|(n, pts)| {
            let strengths: Vec<f64> = pts
                .iter()
                .filter_map(|(t, s)| s.filter(|_| *t >= ctx.now - span - 1e-6))
                .collect();
            let med = median(&strengths).unwrap_or(1.0);
            match &adaptive {
                Some(a) => {
                    let o = hold::sequential(pts, ctx.step, a);
                    o.due.then_some((*n, o.share, med, o.held_for))
                }
                None => {
                    let share = strengths.len() as f64 / expected;
                    let last_cold = pts.iter().rev().find(|(_, s)| s.is_none()).map(|(t, _)| *t);
                    let held = ctx.now - last_cold.unwrap_or(ctx.now - span);
                    (share >= p.persistence).then_some((*n, share, med, held))
                }
            }
        })
        .collect();
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    let latest: BTreeMap<&str, f64> = pods
        .iter()
        .filter_map(|x| x.cpu.last().map(|(_, v)| (x.name.as_str(), *v)))
        .collect();
    let max_runaway = (pods.len() / 3).max(1);
    let hot_now = track
        .values()
        .filter(|pts| pts.last().is_some_and(|(_, s)| s.is_some()))
        .count();
    let onset = (1..=max_runaway).contains(&hot_now);
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
        let mut v = Verdict::healthy(format!(
            "busiest pod {top} uses {top_v:.3} cores vs siblings' median {med:.3}: not {:.1}x (or +{:.2} cores at {EXCESS_MIN_RATIO:.0}x) above for {:.0}% of {span:.0}s",
            p.sibling_ratio,
            p.excess_cores,
            p.persistence * 100.0
        ));
        v.onset = onset;
        return v;
    }
    if found.len() > max_runaway {
        return Verdict::healthy(format!(
            "{} of {} pods stand out together: a workload-wide load, not a runaway (see ResourceContention)",
            found.len(),
            pods.len()
        ));
    }
    let mut evidence = vec![];
    let names: Vec<String> = found.iter().map(|(n, ..)| n.to_string()).collect();
    for (name, share, ..) in &found {
        let v = latest.get(name).copied().unwrap_or(f64::NAN);
        let others: Vec<f64> = latest
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(_, v)| *v)
            .collect();
        let med = median(&others).unwrap_or(0.0);
        evidence.push(Evidence {
            rule: format!(
                "cpu >= {:.1} x siblings' median, or >= +{:.2} cores and {EXCESS_MIN_RATIO:.0} x it, or >= {:.0}% of limit alone; {:.0}% of {span:.0}s",
                p.sibling_ratio,
                p.excess_cores,
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
        evidence.push(Evidence {
            rule: "cores above the siblings' median".into(),
            signal: "cpu".into(),
            pod: Some(name.to_string()),
            value: v - med,
            threshold: Some(p.excess_cores),
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
    let confidence = found
        .iter()
        .map(|(_, share, s, _)| confidence(*share, *s))
        .fold(f64::INFINITY, f64::min);
    // Held since the newest point at which a found pod was not hot (the window's start if never).
    let held_for = found
        .iter()
        .map(|(.., held)| *held)
        .fold(f64::INFINITY, f64::min);
    let mut v = Verdict::fault(FaultKind::RunawayProcess, names, confidence, held_for);
    v.message = format!(
        "{} burning {:.2} cores while siblings' median is {:.2}, for {span:.0}s",
        v.pods.join(", "),
        evidence.first().map_or(0.0, |e| e.value),
        evidence.get(1).map_or(0.0, |e| e.value),
    );
    v.evidence = evidence;
    v
}
