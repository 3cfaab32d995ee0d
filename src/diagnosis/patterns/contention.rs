//! ResourceContention: most replicas throttled together for `for`: the workload needs capacity.

use std::collections::BTreeMap;

use super::{Params, Verdict, by_time, expected_points, hold, judged, missing_message, stale};
use crate::{
    diagnosis::{
        input::{EvalContext, WorkloadSeries},
        stats::median,
    },
    v1alpha1::{Evidence, FaultKind},
};

/// The share of its CPU limit at which a pod counts as capped by CFS.
const CAPPED: f64 = 0.9;

pub(super) fn contention(w: &WorkloadSeries, ctx: &EvalContext, p: &Params, span: f64) -> Verdict {
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
    let adaptive = p.adaptive_hold(span, ctx.step);
    let lookback = adaptive.map_or(span, |a| a.lookback());
    let grid = by_time(&pods, ctx.now - lookback, ctx.now, |x| &x.throttling);
    let cpu = by_time(&pods, ctx.now - lookback, ctx.now, |x| &x.cpu);
    let limits: BTreeMap<&str, f64> = pods
        .iter()
        .filter_map(|x| {
            x.cpu_limit
                .filter(|l| *l > 0.0)
                .map(|l| (x.name.as_str(), l))
        })
        .collect();
    // Starved: throttled in `throttleRatio` of periods, or capped at the limit by CFS and
    // throttled in at least half that share (the demand exceeds the quota).
    let is_starved = |t: i64, name: &str, throttled: f64| {
        throttled >= p.throttle_ratio
            || (throttled >= 0.5 * p.throttle_ratio
                && limits.get(name).is_some_and(|l| {
                    cpu.get(&t)
                        .and_then(|vs| vs.iter().find(|(n, _)| *n == name))
                        .is_some_and(|(_, c)| *c >= CAPPED * l)
                }))
    };
    // Per point: its strength when contended (1 at the bounds): the starved share over
    // `replicaFraction`, or the starved replicas' median throttling over `throttleRatio`,
    // whichever is weaker.
    let mut track: Vec<(f64, Option<f64>)> = vec![];
    for (t, values) in &grid {
        let throttled: Vec<f64> = values
            .iter()
            .filter(|(n, v)| is_starved(*t, n, *v))
            .map(|(_, v)| *v)
            .collect();
        let share = throttled.len() as f64 / values.len() as f64;
        let s = (share > p.replica_fraction).then(|| {
            let by_share = share / p.replica_fraction.max(1e-9);
            let by_level = median(&throttled).unwrap_or(0.0) / p.throttle_ratio.max(1e-9);
            by_share.min(by_level.max(1.0))
        });
        track.push((*t as f64 / 1000.0, s));
    }
    let in_for = |t: f64| t >= ctx.now - span - 1e-6;
    let contended = track
        .iter()
        .filter(|(t, s)| in_for(*t) && s.is_some())
        .count();
    let (share, due, held_for) = match &adaptive {
        Some(a) => {
            let o = hold::sequential(&track, ctx.step, a);
            (o.share, o.due, o.held_for)
        }
        None => {
            let share = contended as f64 / expected_points(span, ctx.step);
            let last_free = track
                .iter()
                .rev()
                .find(|(t, s)| in_for(*t) && s.is_none())
                .map_or(ctx.now - span, |(t, _)| *t);
            (share, share >= p.persistence, ctx.now - last_free)
        }
    };
    let latest: Vec<(&str, f64)> = pods
        .iter()
        .filter_map(|x| x.throttling.last().map(|(_, v)| (x.name.as_str(), *v)))
        .collect();
    let throttles: Vec<f64> = latest.iter().map(|l| l.1).collect();
    let med = median(&throttles).unwrap_or(0.0);
    let newest = grid.keys().next_back().copied().unwrap_or(0);
    let starved: Vec<String> = latest
        .iter()
        .filter(|(n, v)| is_starved(newest, n, *v))
        .map(|(n, _)| n.to_string())
        .collect();
    if !due {
        let needs = match adaptive {
            Some(_) => format!(
                "adaptive hold: evidence {:.0}% of {span:.0}s",
                share * 100.0
            ),
            None => format!(
                "starved together for {:.0}% of {span:.0}s, needs {:.0}%",
                share * 100.0,
                p.persistence * 100.0
            ),
        };
        let mut v = Verdict::healthy(format!(
            "{} of {} pods starved now (throttled >= {:.0}%, or capped at the limit and throttled at half that; median {:.0}%); {needs}",
            starved.len(),
            pods.len(),
            p.throttle_ratio * 100.0,
            med * 100.0,
        ));
        v.onset = track.last().is_some_and(|(_, s)| s.is_some());
        return v;
    }
    let mut evidence = vec![Evidence {
        rule: format!(
            "more than {:.0}% of replicas throttled >= {:.0}% of CFS periods (or at the limit and half that), {:.0}% of {span:.0}s",
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
    let mut v = Verdict::fault(
        FaultKind::ResourceContention,
        starved.clone(),
        share.min(1.0),
        held_for,
    );
    v.message = format!(
        "{} of {} replicas throttled (median {:.0}% of periods) for {span:.0}s: the workload needs more capacity",
        starved.len(),
        pods.len(),
        med * 100.0
    );
    v.evidence = evidence;
    v
}
