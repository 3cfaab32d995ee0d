//! Forecast scaling in the sweep, reported (`mode: Shadow`): for each workload of a policy whose Scale
//! action has a `forecast:` block, once per `forecast.step`, one range query over the demand's history,
//! the model fitted off the async runtime, and the rule's answer in the policy's status
//! (`status.targets[].forecast`). In `mode: Enforce` a fresh forecast that asks for more replicas is
//! handed to the incident engine ([`ForecastState::ask`]), which opens a Scale incident under the
//! fault's guards and the fleet's limits like any other.

use std::{collections::HashMap, time::Instant};

use futures::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{debug, warn};

use super::Context;
use crate::{
    bounded,
    forecast::{
        Decision, History, NoForecast, plan, pod_ready_secs,
        query::{bounds_of, demand_query, forecast_of, regular},
    },
    metrics::ResultLabel,
    prometheus::PromClient,
    remediation::engine::ForecastAsk,
    v1alpha1::{Evidence, ForecastMode, ForecastStatus, RemediationPolicySpec, TargetRef},
};

/// Most forecasts computed in one sweep; the rest, longest-waiting first, in the next ones. A fit of a
/// week at 5 minutes takes tens of milliseconds, so this keeps a sweep's added time bounded.
pub const MAX_PER_SWEEP: usize = 8;
/// Forecasts computed at once.
const CONCURRENCY: usize = 2;

/// What the sweep remembers of forecasts between sweeps.
#[derive(Default)]
pub struct ForecastState {
    /// Per policy UID and target: the last forecast and the policy generation it was made for.
    last: HashMap<(String, TargetRef), (Option<i64>, ForecastStatus)>,
}

/// One workload to forecast for.
pub struct Job<'a> {
    /// Policy UID and target.
    pub key: (String, TargetRef),
    /// The policy's generation.
    pub generation: Option<i64>,
    /// The policy's spec (has a forecast block).
    pub spec: &'a RemediationPolicySpec,
    /// The policy's namespace.
    pub namespace: &'a str,
    /// The workload's replicas now.
    pub replicas: i32,
    /// `(creation, Ready)` of its live pods that became Ready without a restart.
    pub ready: Vec<(f64, f64)>,
    /// The policy's Prometheus.
    pub prom: &'a PromClient,
}

impl ForecastState {
    /// The last forecast of a policy's target.
    pub fn get(&self, uid: &str, target: &TargetRef) -> Option<&ForecastStatus> {
        self.last
            .get(&(uid.to_string(), target.clone()))
            .map(|(_, s)| s)
    }

    /// Computes the forecasts that are due (never computed, older than the forecast step, or made for
    /// another generation), at most [`MAX_PER_SWEEP`], the longest-waiting first.
    pub async fn refresh(&mut self, ctx: &Context, jobs: Vec<Job<'_>>, now: Timestamp) {
        let mut due: Vec<(f64, Job<'_>)> = jobs
            .into_iter()
            .filter_map(|j| {
                let step = forecast_of(j.spec)?.2.step.get().as_secs_f64();
                let age = match self.last.get(&j.key) {
                    Some((g, s)) if *g == j.generation => {
                        now.duration_since(s.time.0).as_secs_f64()
                    }
                    _ => f64::INFINITY,
                };
                (age >= step).then_some((age, j))
            })
            .collect();
        due.sort_by(|a, b| b.0.total_cmp(&a.0));
        due.truncate(MAX_PER_SWEEP);
        let mut done = stream::iter(due.into_iter().map(|(_, j)| async move {
            let started = Instant::now();
            let st = compute(
                j.prom,
                j.spec,
                j.namespace,
                &j.key.1,
                j.replicas,
                &j.ready,
                now,
            )
            .await;
            (j.key, j.generation, st, started.elapsed())
        }))
        .buffer_unordered(CONCURRENCY);
        while let Some((key, generation, st, took)) = done.next().await {
            ctx.metrics.forecast_duration.observe(took.as_secs_f64());
            ctx.metrics
                .forecasts
                .get_or_create(&ResultLabel {
                    result: result_of(&st).into(),
                })
                .inc();
            debug!(policy_uid = %key.0, target = %key.1, message = %st.message, "forecast");
            self.last.insert(key, (generation, st));
        }
    }

    /// What a fresh `mode: Enforce` forecast asks of a target: one computed for this generation
    /// within the last forecast step, for the replicas the workload has now, asking for more.
    /// Anything older, in shadow mode, or made for other replicas asks for nothing.
    pub fn ask(
        &self,
        uid: &str,
        target: &TargetRef,
        generation: Option<i64>,
        spec: &RemediationPolicySpec,
        replicas: i32,
        now: Timestamp,
    ) -> Option<ForecastAsk> {
        // Every target of every due policy is asked: the spec first, so that the fleet's
        // non-forecasting policies cost no key allocation.
        let (fault, _, fc) =
            forecast_of(spec).filter(|(_, _, fc)| fc.mode == ForecastMode::Enforce)?;
        let (g, st) = self.last.get(&(uid.to_string(), target.clone()))?;
        let age = now.duration_since(st.time.0).as_secs_f64();
        let (to, peak) = (st.recommended?, st.forecast_peak?);
        let fresh =
            *g == generation && age <= fc.step.get().as_secs_f64() && st.replicas == replicas;
        if !fresh || to <= replicas {
            return None;
        }
        Some(ForecastAsk {
            fault: fault.name.clone(),
            to,
            message: st.message.clone(),
            evidence: vec![Evidence {
                rule: format!(
                    "forecast peak within {:.0}s > {replicas} replicas x {} per pod",
                    st.pod_ready_seconds, fc.per_pod
                ),
                signal: fc.signal.clone().unwrap_or_else(|| "cpu".into()),
                pod: None,
                value: peak,
                threshold: Some(f64::from(replicas) * fc.per_pod),
            }],
        })
    }

    /// Forgets the targets of policies that no longer forecast (or no longer exist).
    pub fn retain(&mut self, keep: impl Fn(&(String, TargetRef)) -> bool) {
        self.last.retain(|k, _| keep(k));
    }
}

/// The metric result of a forecast status.
fn result_of(st: &ForecastStatus) -> &'static str {
    if st.recommended.is_some() {
        if st.forecast_need > st.current_need {
            "ahead"
        } else {
            "reactive"
        }
    } else if st.forecast_peak.is_some() {
        "hold"
    } else if st.message.starts_with("no forecast") {
        "no_forecast"
    } else {
        "error"
    }
}

/// One forecast for one workload at `now`: the demand's history up to the last whole step, the model,
/// and the rule (pure once the history is read). Failures are reported in the status, never raised.
pub async fn compute(
    prom: &PromClient,
    spec: &RemediationPolicySpec,
    namespace: &str,
    target: &TargetRef,
    replicas: i32,
    ready: &[(f64, f64)],
    now: Timestamp,
) -> ForecastStatus {
    let pod_ready = pod_ready_secs(ready);
    let mut st = ForecastStatus {
        time: Time(now),
        mode: Default::default(),
        replicas,
        current_need: None,
        forecast_peak: None,
        forecast_need: None,
        recommended: None,
        pod_ready_seconds: pod_ready,
        message: String::new(),
    };
    let Some((_, scale, fc)) = forecast_of(spec) else {
        st.message = "the policy has no Scale action with a forecast block".into();
        return st;
    };
    st.mode = fc.mode;
    let query = match demand_query(spec, fc, namespace, target) {
        Ok(q) => q,
        Err(e) => {
            st.message = bounded::message(&e.to_string());
            return st;
        }
    };
    let step = fc.step.get().as_secs().max(1);
    let n = (fc.history.get().as_secs().div_ceil(step) as usize).max(2);
    let end = ((now.as_millisecond() as f64 / 1000.0) / step as f64).floor() * step as f64;
    let start = end - ((n - 1) as u64 * step) as f64;
    let series = match prom.range(&query, start, end, step as f64).await {
        Ok(s) => s,
        Err(e) => {
            warn!(%namespace, %target, error = %e, "reading the forecast's demand history failed; no forecast this step, retried at the next");
            st.message = bounded::message(&format!("reading the demand history: {e}"));
            return st;
        }
    };
    if series.len() > 1 {
        st.message = format!(
            "the demand query returned {} series; it must return one (wrap it in sum())",
            series.len()
        );
        return st;
    }
    let values = series
        .first()
        .map_or_else(|| vec![f64::NAN; n], |s| regular(&s.points, start, step, n));
    let current = values.last().copied().filter(|v| v.is_finite());
    let history = History {
        step_secs: step,
        values,
    };
    let (fc, bounds) = (fc.clone(), bounds_of(scale));
    let replicas_now = replicas.max(0) as u32;
    let fitted = tokio::task::spawn_blocking(move || {
        plan(&fc, &history, current, replicas_now, bounds, pod_ready)
    })
    .await;
    let p = match fitted {
        Ok(p) => p,
        Err(e) => {
            st.message = bounded::message(&format!("the forecast model failed: {e}"));
            return st;
        }
    };
    let as_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    st.current_need = p.current_need.map(as_i32);
    st.forecast_need = p.forecast_need.map(as_i32);
    st.forecast_peak = p.forecast_peak.as_ref().ok().copied();
    let verb = if p.enforce { "scale" } else { "would scale" };
    st.message = match (&p.forecast_peak, &p.decision) {
        (Err(NoForecast::Model(m)), _) => format!("no forecast: {m}; reactive scaling only"),
        (Err(e), _) => format!("no forecast: {e}; reactive scaling only"),
        (Ok(_), Decision::Hold(why)) => (*why).to_string(),
        (Ok(peak), Decision::ScaleOut { to, ahead }) => {
            st.recommended = Some(as_i32(*to));
            if *ahead {
                format!(
                    "demand forecast to reach {peak:.3} within {}s (new pods take {pod_ready:.0}s to become Ready): {verb} out to {to} ahead of it",
                    p.lead_steps as u64 * step
                )
            } else {
                format!("the current demand already needs {to} replicas: {verb} out to {to}")
            }
        }
    };
    st.message = bounded::message(&st.message);
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(
        rec: Option<i32>,
        cur: Option<i32>,
        fc: Option<i32>,
        peak: Option<f64>,
        msg: &str,
    ) -> ForecastStatus {
        ForecastStatus {
            time: Time(Timestamp::UNIX_EPOCH),
            mode: Default::default(),
            replicas: 2,
            current_need: cur,
            forecast_peak: peak,
            forecast_need: fc,
            recommended: rec,
            pod_ready_seconds: 60.0,
            message: msg.into(),
        }
    }

    fn spec(mode: &str) -> RemediationPolicySpec {
        serde_saphyr::from_str(&format!(
            r#"targetRef: {{kind: Deployment, name: web}}
faults:
  - name: contention
    pattern: ResourceContention
    action: {{type: Scale, scale: {{maxReplicas: 10, forecast: {{perPod: 0.5, step: 5m, mode: {mode}}}}}}}
"#
        ))
        .expect("valid spec")
    }

    /// Only a fresh Enforce forecast for this generation and these replicas that asks for more asks.
    #[test]
    fn only_a_fresh_enforce_forecast_for_the_current_replicas_asks() {
        let t = TargetRef {
            kind: crate::v1alpha1::WorkloadKind::Deployment,
            name: "web".into(),
        };
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).expect("valid");
        let mut st = ForecastState::default();
        let mut f = status(Some(5), Some(2), Some(5), Some(2.4), "ahead");
        f.time = Time(at(0));
        st.last.insert(("u".into(), t.clone()), (Some(3), f));
        let enforce = spec("Enforce");
        let ask = st
            .ask("u", &t, Some(3), &enforce, 2, at(60))
            .expect("fresh, enforcing, asks for more");
        assert_eq!((ask.fault.as_str(), ask.to), ("contention", 5));
        assert_eq!(ask.evidence[0].value, 2.4);
        assert_eq!(
            ask.evidence[0].threshold,
            Some(1.0),
            "2 replicas x 0.5 per pod"
        );
        assert_eq!(
            st.ask("u", &t, Some(3), &spec("Shadow"), 2, at(60)),
            None,
            "shadow"
        );
        assert_eq!(
            st.ask("u", &t, Some(4), &enforce, 2, at(60)),
            None,
            "another generation"
        );
        assert_eq!(
            st.ask("u", &t, Some(3), &enforce, 2, at(301)),
            None,
            "older than a step"
        );
        assert_eq!(
            st.ask("u", &t, Some(3), &enforce, 3, at(60)),
            None,
            "made for other replicas"
        );
        assert_eq!(
            st.ask("v", &t, Some(3), &enforce, 2, at(60)),
            None,
            "another policy"
        );
    }

    #[test]
    fn results_name_what_the_forecast_said() {
        assert_eq!(
            result_of(&status(Some(5), Some(2), Some(5), Some(4.2), "")),
            "ahead"
        );
        assert_eq!(
            result_of(&status(Some(5), Some(5), Some(3), Some(2.2), "")),
            "reactive"
        );
        assert_eq!(
            result_of(&status(None, Some(2), Some(2), Some(1.2), "")),
            "hold"
        );
        assert_eq!(
            result_of(&status(None, None, None, None, "no forecast: short")),
            "no_forecast"
        );
        assert_eq!(
            result_of(&status(
                None,
                None,
                None,
                None,
                "reading the demand history: x"
            )),
            "error"
        );
    }
}
