//! The demand query of a `forecast:` block and the regular history read from its answer, shared by
//! the operator and `homeostat backtest --forecast`.

use super::Bounds;
use crate::{
    diagnosis::{
        StdSignal,
        fetch::{QuerySet, workload_vars},
    },
    prometheus::template::escape_regex,
    v1alpha1::{
        FaultSpec, ForecastSpec, RemediationPolicySpec, ScaleSpec, TargetRef, WorkloadKind,
    },
};

/// The demand signal without `forecast.signal`: the workload's CPU use in cores (the standard CPU
/// signal's query), summed over its pods (past pods included, so a rollout does not cut the history).
pub fn default_demand() -> String {
    format!("sum({})", QuerySet::standard().template(StdSignal::Cpu))
}

/// The first fault whose own Scale action has a forecast block, that action and the block.
pub fn forecast_of(
    spec: &RemediationPolicySpec,
) -> Option<(&FaultSpec, &ScaleSpec, &ForecastSpec)> {
    spec.faults.iter().find_map(|f| {
        let scale = f.action.as_ref()?.scale.as_ref()?;
        Some((f, scale, scale.forecast.as_ref()?))
    })
}

/// The replica bounds of a Scale action (`minReplicas` defaults to 1).
pub fn bounds_of(scale: &ScaleSpec) -> Bounds {
    Bounds {
        min: scale.min_replicas.unwrap_or(1).max(0) as u32,
        max: scale.max_replicas.max(1) as u32,
    }
}

/// Why a demand query cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// `forecast.signal` names no signal of the policy.
    #[error("forecast.signal {0:?} is not among spec.signals")]
    UnknownSignal(String),
    /// The template does not render.
    #[error("rendering the demand query: {0}")]
    Template(String),
}

/// A regex for every pod name the workload's controller gives, past pods included: a Deployment's
/// `<name>-<template hash>-<suffix>`, a StatefulSet's `<name>-<ordinal>`.
pub fn pods_pattern(target: &TargetRef) -> String {
    let name = escape_regex(&target.name);
    match target.kind {
        WorkloadKind::Deployment => format!("{name}-[a-z0-9]+-[a-z0-9]+"),
        WorkloadKind::StatefulSet => format!("{name}-[0-9]+"),
    }
}

/// The demand query for `target`: the named signal, or [`default_demand`], rendered with the
/// workload's variables (`{{ pods }}` is [`pods_pattern`], `{{ window }}` the forecast step).
pub fn demand_query(
    spec: &RemediationPolicySpec,
    fc: &ForecastSpec,
    namespace: &str,
    target: &TargetRef,
) -> Result<String, QueryError> {
    let template = match &fc.signal {
        Some(name) => spec
            .signals
            .iter()
            .find(|s| s.name == *name)
            .map(|s| s.query.clone())
            .ok_or_else(|| QueryError::UnknownSignal(name.clone()))?,
        None => default_demand(),
    };
    let window = format!("{}s", fc.step.get().as_secs().max(1));
    workload_vars(namespace, &target.name, &[], &window)
        .set("pods", pods_pattern(target))
        .render(&template)
        .map_err(|e| QueryError::Template(e.to_string()))
}

/// `n` samples at `start + i * step` from a range answer's points; `NaN` where none falls.
pub fn regular(points: &[(f64, f64)], start: f64, step: u64, n: usize) -> Vec<f64> {
    let step = step.max(1) as f64;
    let mut y = vec![f64::NAN; n];
    for &(t, v) in points {
        let i = ((t - start) / step).round();
        if i >= 0.0 && (i as usize) < n {
            y[i as usize] = v;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::{Duration, ForecastMode, RemediationPolicy};

    fn fc(signal: Option<&str>) -> ForecastSpec {
        ForecastSpec {
            signal: signal.map(Into::into),
            per_pod: 1.0,
            history: Duration::from_secs(7 * 86_400),
            horizon: Duration::from_secs(3600),
            step: Duration::from_secs(300),
            level: None,
            mode: ForecastMode::Shadow,
        }
    }

    fn policy() -> RemediationPolicy {
        serde_saphyr::from_str(
            r#"
apiVersion: homeostat.dev/v1alpha1
kind: RemediationPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRef: {kind: Deployment, name: web.v2}
  signals:
    - {name: rps, query: 'sum(rate(http_requests_total{namespace="{{ namespace }}", pod=~"{{ pods }}"}[{{ window }}]))'}
  faults:
    - {name: cpu, pattern: ResourceContention, action: {type: Scale, scale: {maxReplicas: 5}}}
"#,
        )
        .expect("a valid policy")
    }

    #[test]
    fn default_and_named_demand_queries_cover_past_pods_of_the_workload() {
        let p = policy();
        let t = TargetRef {
            kind: WorkloadKind::Deployment,
            name: "web.v2".into(),
        };
        let q = demand_query(&p.spec, &fc(None), "shop", &t).expect("renders");
        assert!(
            q.contains(r#"pod=~"web\\.v2-[a-z0-9]+-[a-z0-9]+""#) && q.contains("[300s]"),
            "{q}"
        );
        assert!(
            q.starts_with("sum(sum by (namespace, pod) (rate(container_cpu_usage_seconds_total"),
            "{q}"
        );
        let q = demand_query(&p.spec, &fc(Some("rps")), "shop", &t).expect("renders");
        assert!(q.starts_with("sum(rate(http_requests_total"), "{q}");
        assert_eq!(
            demand_query(&p.spec, &fc(Some("nope")), "shop", &t),
            Err(QueryError::UnknownSignal("nope".into()))
        );
        let s = TargetRef {
            kind: WorkloadKind::StatefulSet,
            name: "db".into(),
        };
        assert_eq!(pods_pattern(&s), "db-[0-9]+");
    }

    #[test]
    fn regular_places_points_on_their_step_and_leaves_gaps() {
        let y = regular(
            &[(100.0, 1.0), (400.2, 2.0), (1000.0, 9.0), (-200.0, 5.0)],
            100.0,
            300,
            3,
        );
        assert_eq!(y[0], 1.0);
        assert_eq!(y[1], 2.0);
        assert!(y[2].is_nan());
    }
}
