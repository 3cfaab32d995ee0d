//! Fault diagnosis: fetch a workload's series in a few batched queries, run the detectors, pick the fault.
//!
//! The operator and `homeostat diagnose` share this code path.

pub mod fetch;
mod input;
mod patterns;
pub mod stats;
pub mod sweep;

pub use input::{EvalContext, PodSeries, StdSignal, WorkloadSeries, window};
pub use patterns::{EXCESS_MIN_RATIO, Params, Verdict, evaluate};
pub use sweep::{Evaluated, Settings, Subject};

use crate::v1alpha1::{ActionSpec, ActionType, FaultKind, FaultSpec, Pattern, ScaleSpec};

/// The verdict of one named fault.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultVerdict {
    /// The policy fault's name.
    pub fault: String,
    /// Its pattern.
    pub pattern: Pattern,
    /// What the detector found.
    pub verdict: Verdict,
}

/// Evaluates every fault of a policy.
pub fn evaluate_all(
    faults: &[FaultSpec],
    w: &WorkloadSeries,
    ctx: &EvalContext,
) -> Vec<FaultVerdict> {
    faults
        .iter()
        .map(|f| FaultVerdict {
            fault: f.name.clone(),
            pattern: f.pattern,
            verdict: evaluate(f, w, ctx),
        })
        .collect()
}

/// The fault to act on now, if any: a fault whose action is due ([`Verdict::acts`]).
///
/// A due CrashLoop wins over everything (restarting or scaling would not help). While a CrashLoop
/// fault is Inconclusive, nothing else is acted on either: a crash loop cannot be ruled out. Otherwise
/// the first due fault in policy order wins. A classified fault whose action is not due yet (a leak
/// beyond its horizon, a confidence below the floor) is never chosen: see [`classify`].
pub fn choose<'a>(
    faults: &'a [FaultSpec],
    verdicts: &'a [FaultVerdict],
) -> Option<(&'a FaultSpec, &'a FaultVerdict)> {
    pick(faults, verdicts, |v| v.acts())
}

/// The fault to report, if any: the one [`choose`] acts on, else the first classified fault
/// (CrashLoop first) whose action is not due yet.
pub fn classify<'a>(
    faults: &'a [FaultSpec],
    verdicts: &'a [FaultVerdict],
) -> Option<(&'a FaultSpec, &'a FaultVerdict)> {
    choose(faults, verdicts).or_else(|| pick(faults, verdicts, |v| v.kind.is_fault()))
}

fn pick<'a>(
    faults: &'a [FaultSpec],
    verdicts: &'a [FaultVerdict],
    hit: impl Fn(&Verdict) -> bool,
) -> Option<(&'a FaultSpec, &'a FaultVerdict)> {
    let pairs = || faults.iter().zip(verdicts.iter());
    if let Some(found) = pairs().find(|(f, v)| f.pattern == Pattern::CrashLoop && hit(&v.verdict)) {
        return Some(found);
    }
    if pairs()
        .any(|(f, v)| f.pattern == Pattern::CrashLoop && v.verdict.kind == FaultKind::Inconclusive)
    {
        return None;
    }
    pairs().find(|(_, v)| hit(&v.verdict))
}

/// Whether a firing verdict calls for its action now (the classification alone is reported).
pub fn actionable(v: &FaultVerdict) -> bool {
    v.verdict.acts()
}

/// The workload-level finding of a set of verdicts: the classified fault (due or not), else
/// Inconclusive if any detector lacked data, else Healthy.
pub fn overall(faults: &[FaultSpec], verdicts: &[FaultVerdict]) -> FaultKind {
    if let Some((_, v)) = classify(faults, verdicts) {
        return v.verdict.kind;
    }
    if verdicts
        .iter()
        .any(|v| v.verdict.kind == FaultKind::Inconclusive)
    {
        FaultKind::Inconclusive
    } else {
        FaultKind::Healthy
    }
}

/// The action a fault takes: the one it names, else its pattern's default.
pub fn action_for(fault: &FaultSpec) -> ActionSpec {
    fault.action.clone().unwrap_or_else(|| {
        let type_ = fault.pattern.default_action();
        ActionSpec {
            type_,
            scale: (type_ == ActionType::Scale).then_some(ScaleSpec {
                step: 1,
                min_replicas: None,
                max_replicas: 10,
                forecast: None,
            }),
            resize: None,
        }
    })
}

/// The faults `diagnose` applies when no policy is given.
pub fn default_faults() -> Vec<FaultSpec> {
    use crate::v1alpha1::Duration;
    let f = |name: &str, pattern: Pattern, secs: u64| FaultSpec {
        name: name.into(),
        pattern,
        for_: Duration::from_secs(secs),
        signal: None,
        condition: None,
        params: None,
        action: None,
        fallbacks: vec![],
    };
    vec![
        f("crashloop", Pattern::CrashLoop, 300),
        f("runaway", Pattern::RunawayProcess, 120),
        f("leak", Pattern::MemoryLeak, 600),
        f("contention", Pattern::ResourceContention, 180),
    ]
}

#[cfg(test)]
mod tests;
