//! Threshold: a user signal compared with a bound for `for`.

use super::{Params, Verdict, expected_points};
use crate::{
    diagnosis::input::{EvalContext, WorkloadSeries, window},
    v1alpha1::Evidence,
    v1alpha1::{FaultKind, FaultSpec},
};

pub(super) fn threshold(
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
        let mut v = Verdict::healthy(format!(
            "{signal} {} {} held for at most {:.0}% of {span:.0}s",
            cond.op.as_str(),
            cond.value,
            best * 100.0
        ));
        v.onset = fresh
            .iter()
            .any(|s| s.last().is_some_and(|(_, x)| cond.op.holds(x, cond.value)));
        return v;
    }
    let mut v = Verdict::fault(
        FaultKind::Threshold,
        firing,
        best.min(1.0),
        best.min(1.0) * span,
    );
    v.message = format!(
        "{signal} {} {} sustained for {span:.0}s ({} series)",
        cond.op.as_str(),
        cond.value,
        evidence.len()
    );
    v.evidence = evidence;
    v
}
