//! Checks the schema cannot express; a failure becomes Ready=False / Stalled=True with the message.

use crate::{
    diagnosis::fetch::needed,
    diagnosis::fetch::{QuerySet, workload_vars},
    v1alpha1::{ActionType, Pattern, RemediationPolicySpec},
};

/// Returns every problem found in a policy spec, for a person to fix.
pub fn validate(spec: &RemediationPolicySpec) -> Result<(), Vec<String>> {
    let mut problems = vec![];
    let vars = workload_vars("ns", "w", &["p".into()], "1m");
    let queries = QuerySet::with_overrides(spec.queries.as_ref());
    for sig in needed(&spec.faults) {
        if let Err(e) = vars.render(queries.template(sig)) {
            problems.push(format!("queries.{}: {e}", sig.as_str()));
        }
    }
    for s in &spec.signals {
        if let Err(e) = vars.render(&s.query) {
            problems.push(format!("signals[{}].query: {e}", s.name));
        }
    }
    for f in &spec.faults {
        if f.pattern == Pattern::Threshold {
            match &f.signal {
                Some(name) if !spec.signals.iter().any(|s| &s.name == name) => {
                    problems.push(format!("faults[{}].signal: no signal named {name}", f.name));
                }
                None => problems.push(format!(
                    "faults[{}]: a Threshold fault needs a signal",
                    f.name
                )),
                _ => {}
            }
        }
        if let Some(a) = &f.action {
            if a.type_ == ActionType::Scale && a.scale.is_none() {
                problems.push(format!(
                    "faults[{}].action: Scale needs scale.maxReplicas",
                    f.name
                ));
            }
            if f.pattern == Pattern::CrashLoop && a.type_.mutates() {
                problems.push(format!(
                    "faults[{}].action: {} does not fix a crash loop; use Escalate",
                    f.name,
                    a.type_.as_str()
                ));
            }
        }
        if f.for_.get().as_secs_f64() < 1.0 {
            problems.push(format!("faults[{}].for must be at least 1s", f.name));
        }
    }
    if spec.interval.get().as_secs_f64() < 1.0 {
        problems.push("interval must be at least 1s".into());
    }
    if spec.verify.stable_for >= spec.verify.timeout {
        problems.push(format!(
            "verify.stableFor ({}) must be shorter than verify.timeout ({})",
            spec.verify.stable_for, spec.verify.timeout
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// What the schema accepts but the running operator does not act on yet: a policy using it is
/// reported (Ready=False with this message) rather than silently run without it.
pub fn not_run_by_operator(spec: &RemediationPolicySpec) -> Result<(), Vec<String>> {
    let mut problems = vec![];
    for f in &spec.faults {
        let actions = f.action.iter().chain(&f.fallbacks);
        let scales = actions.flat_map(|a| {
            a.scale
                .iter()
                .chain(a.resize.as_ref().and_then(|r| r.scale.as_ref()))
        });
        if scales.into_iter().any(|s| s.forecast.is_some()) {
            problems.push(format!(
                "faults[{}]: forecast scaling is not run by this operator yet (only `homeostat backtest --forecast` reads it); remove the forecast block to run this policy",
                f.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> RemediationPolicySpec {
        serde_saphyr::from_str(yaml).expect("valid yaml")
    }

    #[test]
    fn a_sound_policy_passes() {
        let s = spec(
            "targetRef: {kind: Deployment, name: web}\nfaults:\n  - {name: r, pattern: RunawayProcess}\n",
        );
        assert_eq!(validate(&s), Ok(()));
    }

    #[test]
    fn problems_are_named_precisely() {
        let s = spec(
            r#"targetRef: {kind: Deployment, name: web}
queries: {cpu: 'rate(x{ns="{{ nope }}"}[1m])'}
signals: [{name: lat, query: 'x{a="{{ namespace"}'}]
faults:
  - {name: r, pattern: RunawayProcess}
  - {name: t, pattern: Threshold, signal: missing, condition: {op: ">", value: 1}, action: {type: RolloutRestart}}
verify: {stableFor: 10m, timeout: 5m}
"#,
        );
        let p = validate(&s).expect_err("invalid");
        let all = p.join("\n");
        assert!(all.contains("queries.cpu: unknown placeholder"), "{all}");
        assert!(all.contains("signals[lat].query: unclosed"), "{all}");
        assert!(
            all.contains("faults[t].signal: no signal named missing"),
            "{all}"
        );
        assert!(all.contains("verify.stableFor"), "{all}");
    }

    #[test]
    fn a_forecast_block_is_reported_until_the_operator_runs_it() {
        let s = spec(
            r#"targetRef: {kind: Deployment, name: web}
faults:
  - name: c
    pattern: ResourceContention
    action: {type: Scale, scale: {maxReplicas: 5, forecast: {signal: demand, perPod: 10}}}
"#,
        );
        assert_eq!(validate(&s), Ok(()), "valid for backtest");
        let p = not_run_by_operator(&s).expect_err("reported");
        assert!(
            p[0].contains("faults[c]: forecast scaling is not run"),
            "{p:?}"
        );
        let plain = spec(
            "targetRef: {kind: Deployment, name: web}\nfaults:\n  - {name: r, pattern: RunawayProcess}\n",
        );
        assert_eq!(not_run_by_operator(&plain), Ok(()));
    }
}
