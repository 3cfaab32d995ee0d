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
    forecast_blocks(spec, &mut problems);
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

/// Forecast blocks are read on a fault's own Scale action only, one per policy, and name a signal
/// of the policy.
fn forecast_blocks(spec: &RemediationPolicySpec, problems: &mut Vec<String>) {
    let mut first: Option<&str> = None;
    for f in &spec.faults {
        let elsewhere = f
            .fallbacks
            .iter()
            .flat_map(|a| a.scale.iter())
            .chain(
                f.action
                    .iter()
                    .chain(&f.fallbacks)
                    .filter_map(|a| a.resize.as_ref().and_then(|r| r.scale.as_ref())),
            )
            .any(|s| s.forecast.is_some());
        if elsewhere {
            problems.push(format!(
                "faults[{}]: a forecast block is read on the fault's own action.scale only, not in fallbacks or resize.scale",
                f.name
            ));
        }
        let Some(fc) = f
            .action
            .as_ref()
            .and_then(|a| a.scale.as_ref()?.forecast.as_ref())
        else {
            continue;
        };
        match first {
            Some(other) => problems.push(format!(
                "faults[{}]: only one forecast block per policy (faults[{other}] has one already)",
                f.name
            )),
            None => first = Some(&f.name),
        }
        if let Some(name) = &fc.signal
            && !spec.signals.iter().any(|s| &s.name == name)
        {
            problems.push(format!(
                "faults[{}].action.scale.forecast.signal: no signal named {name}",
                f.name
            ));
        }
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
    fn forecast_blocks_are_checked() {
        let s = spec(
            r#"targetRef: {kind: Deployment, name: web}
signals: [{name: demand, query: 'sum(rps{namespace="{{ namespace }}"})'}]
faults:
  - name: c
    pattern: ResourceContention
    action: {type: Scale, scale: {maxReplicas: 5, forecast: {signal: demand, perPod: 10}}}
"#,
        );
        assert_eq!(validate(&s), Ok(()));
        let enforce = spec(
            r#"targetRef: {kind: Deployment, name: web}
faults:
  - name: c
    pattern: ResourceContention
    action: {type: Scale, scale: {maxReplicas: 5, forecast: {perPod: 1, mode: Enforce}}}
"#,
        );
        assert_eq!(
            validate(&enforce),
            Ok(()),
            "the default CPU signal needs no name"
        );
        let bad = spec(
            r#"targetRef: {kind: Deployment, name: web}
faults:
  - name: a
    pattern: ResourceContention
    action: {type: Scale, scale: {maxReplicas: 5, forecast: {signal: nope, perPod: 1}}}
  - name: b
    pattern: RunawayProcess
    action: {type: Scale, scale: {maxReplicas: 5, forecast: {perPod: 1}}}
    fallbacks: [{type: Scale, scale: {maxReplicas: 5, forecast: {perPod: 1}}}]
"#,
        );
        let all = validate(&bad).expect_err("invalid").join("\n");
        assert!(
            all.contains("faults[a].action.scale.forecast.signal: no signal named nope"),
            "{all}"
        );
        assert!(
            all.contains("faults[b]: only one forecast block per policy (faults[a]"),
            "{all}"
        );
        assert!(
            all.contains(
                "faults[b]: a forecast block is read on the fault's own action.scale only"
            ),
            "{all}"
        );
    }
}
