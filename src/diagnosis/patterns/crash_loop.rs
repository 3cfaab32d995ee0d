//! CrashLoop: containers restarting over and over, with kubelet's back-off between restarts.

use super::{Params, Verdict, missing_message, stale, start_of};
use crate::{
    diagnosis::{
        input::{EvalContext, PodSeries, WorkloadSeries, window},
        stats::counter_increase,
    },
    v1alpha1::{Evidence, FaultKind},
};

/// Kubelet doubles a crashing container's back-off up to 5 minutes and resets it only after the
/// container has run for 10. A loop past its first few restarts therefore restarts about once per
/// 5 minutes, too rarely for "`restarts` within `for`": it shows instead as a restart within the
/// last 10 minutes by a container that has already restarted many times.
pub(crate) const BACKOFF_LOOKBACK: f64 = 600.0;

/// Restarts after which kubelet's back-off has reached its cap (10 s doubling: 10..160 s, then 300 s).
pub(crate) const CAPPED_LOOP_RESTARTS: f64 = 5.0;

/// Restarts within [`BACKOFF_LOOKBACK`] that make a crash loop whatever the back-off reached: a
/// container that crashed three times in ten minutes is looping (kubelet's back-off between them
/// is 10, 20, 40 s … so they cannot be as close as `restarts` within `for` once the loop is older).
pub(crate) const LOOKBACK_RESTARTS: f64 = 3.0;

/// The time of the first increase of a counter within the points, if any.
fn first_increase(points: &[(f64, f64)]) -> Option<f64> {
    points
        .windows(2)
        .find(|w| w[1].1 != w[0].1 && w[1].1.is_finite() && w[0].1.is_finite())
        .map(|w| w[1].0)
}

pub(super) fn crash_loop(w: &WorkloadSeries, ctx: &EvalContext, p: &Params, span: f64) -> Verdict {
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
    let mut confidence: f64 = 0.0;
    let mut since = ctx.now;
    let mut reasons: Vec<String> = vec![];
    for pod in &pods {
        let inc = counter_increase(&window(&pod.restarts, ctx.now - span, ctx.now));
        max_inc = max_inc.max(inc);
        let recent_pts = window(&pod.restarts, ctx.now - lookback, ctx.now);
        let recent = counter_increase(&recent_pts);
        let total = pod
            .restarts
            .last()
            .map(|x| x.1)
            .filter(|v| v.is_finite())
            .unwrap_or(0.0);
        let backoff = window(&pod.backoff, ctx.now - lookback, ctx.now)
            .iter()
            .any(|(_, v)| *v > 0.0);
        let (rule, value, threshold, conf) = if backoff && recent >= 2.0 {
            (
                format!(
                    "waiting in CrashLoopBackOff (kube-state-metrics) within {lookback:.0}s, restarts in {lookback:.0}s >= 2"
                ),
                recent,
                2.0,
                0.97,
            )
        } else if inc >= p.restarts {
            (
                format!("restarts in {span:.0}s >= {}", p.restarts),
                inc,
                p.restarts,
                0.8 + 0.15 * ((inc - p.restarts) / p.restarts).clamp(0.0, 1.0),
            )
        } else if recent >= 1.0 && total >= capped_total {
            (
                format!(
                    "restarted within {lookback:.0}s with {total:.0} restarts in all (>= {capped_total}): a crash loop at kubelet's 5-minute back-off"
                ),
                total,
                capped_total,
                0.85,
            )
        } else if recent >= LOOKBACK_RESTARTS {
            (
                format!(
                    "restarts in {lookback:.0}s >= {LOOKBACK_RESTARTS} (kubelet's back-off between them)"
                ),
                recent,
                LOOKBACK_RESTARTS,
                0.8,
            )
        } else {
            continue;
        };
        looping.push(pod.name.clone());
        confidence = confidence.max(conf);
        if let Some(t) = first_increase(&recent_pts) {
            since = since.min(t);
        }
        evidence.push(Evidence {
            rule,
            signal: "restarts".into(),
            pod: Some(pod.name.clone()),
            value,
            threshold: Some(threshold),
        });
        if let Some(r) = &pod.last_terminated {
            evidence.push(Evidence {
                rule: format!("last terminated: {r}"),
                signal: "lastTerminatedReason".into(),
                pod: Some(pod.name.clone()),
                value: 1.0,
                threshold: None,
            });
            if !reasons.contains(r) {
                reasons.push(r.clone());
            }
        }
    }
    if looping.is_empty() {
        return Verdict::healthy(format!(
            "at most {max_inc:.0} restart(s) per pod in {span:.0}s (threshold {}), none looping: no pod with {LOOKBACK_RESTARTS}+ restarts (or 2+ in CrashLoopBackOff) in {lookback:.0}s, or restarted within it at {capped_total}+ in all",
            p.restarts
        ));
    }
    let n = looping.len();
    let mut v = Verdict::fault(FaultKind::CrashLoop, looping, confidence, ctx.now - since);
    v.message = format!(
        "{n} of {} pods restarting repeatedly (up to {max_inc:.0} in {span:.0}s{}): restarting or scaling will not fix this",
        pods.len(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!("; last terminated: {}", reasons.join(", "))
        }
    );
    v.evidence = evidence;
    v
}
