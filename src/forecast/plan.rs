//! One forecast decision for one workload, from a policy's `forecast:` block: what the operator reports
//! in shadow mode and acts on in enforce mode.

use crate::v1alpha1::{ForecastMode, ForecastSpec};

use super::{Bounds, Decision, History, NoForecast, decide, forecast, need};

/// Time a new pod takes to become Ready when none was measured yet (seconds).
pub const DEFAULT_POD_READY_SECS: f64 = 60.0;
/// Most recent pod starts the pod-ready time is measured over.
pub const POD_READY_SAMPLES: usize = 10;

/// The measured time from a pod's creation to its first Ready, in seconds: the median over the newest
/// [`POD_READY_SAMPLES`] pods of the workload that became Ready without a restart, given as
/// `(creationTimestamp, Ready condition lastTransitionTime)` in unix seconds. [`DEFAULT_POD_READY_SECS`]
/// when there is none (a restart moves the Ready transition, so those pods are left out by the caller).
pub fn pod_ready_secs(starts: &[(f64, f64)]) -> f64 {
    let mut recent: Vec<(f64, f64)> = starts
        .iter()
        .copied()
        .filter(|(c, r)| c.is_finite() && r.is_finite() && r >= c)
        .collect();
    recent.sort_by(|a, b| b.0.total_cmp(&a.0));
    recent.truncate(POD_READY_SAMPLES);
    let mut d: Vec<f64> = recent.iter().map(|(c, r)| r - c).collect();
    if d.is_empty() {
        return DEFAULT_POD_READY_SECS;
    }
    d.sort_by(f64::total_cmp);
    let m = d.len() / 2;
    if d.len() % 2 == 1 {
        d[m]
    } else {
        (d[m - 1] + d[m]) / 2.0
    }
}

/// What one forecast says for one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Replicas needed for the current demand (`None`: no current sample).
    pub current_need: Option<u32>,
    /// The peak demand forecast over the lead window (`Err`: why there is none).
    pub forecast_peak: Result<f64, NoForecast>,
    /// Replicas the forecast peak needs.
    pub forecast_need: Option<u32>,
    /// Steps ahead the forecast is read: the pod-ready time, rounded up to whole steps.
    pub lead_steps: usize,
    /// The rule's decision.
    pub decision: Decision,
    /// Whether the decision may act (`Enforce`) or is only reported (`Shadow`).
    pub enforce: bool,
}

/// Plans one sweep: forecasts `history` (ending at the last sample before now) for the spec's horizon,
/// reads the peak over the next `ceil(pod_ready / step)` steps (at least one), and applies the rule.
pub fn plan(
    spec: &ForecastSpec,
    history: &History,
    current_demand: Option<f64>,
    replicas: u32,
    bounds: Bounds,
    pod_ready_secs: f64,
) -> Plan {
    let step = history.step_secs.max(1) as f64;
    let lead_steps = ((pod_ready_secs.max(0.0) / step).ceil() as usize).max(1);
    let horizon = ((spec.horizon.as_secs_f64() / step).ceil() as usize).max(lead_steps);
    let forecast_peak = forecast(history, horizon, spec.level).and_then(|f| {
        let peak = if spec.level.is_some() {
            f.peak_upper(1, lead_steps)
        } else {
            f.peak(1, lead_steps)
        };
        peak.ok_or_else(|| NoForecast::Model("the forecast is empty".into()))
    });
    let current_need = current_demand.and_then(|d| need(d, spec.per_pod));
    let forecast_need = forecast_peak
        .as_ref()
        .ok()
        .and_then(|p| need(*p, spec.per_pod));
    Plan {
        current_need,
        forecast_need,
        lead_steps,
        decision: decide(replicas, current_need, forecast_need, bounds),
        forecast_peak,
        enforce: spec.mode == ForecastMode::Enforce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::Duration;

    fn spec(mode: ForecastMode) -> ForecastSpec {
        ForecastSpec {
            signal: None,
            per_pod: 10.0,
            history: Duration::from_secs(3 * 86_400),
            horizon: Duration::from_secs(3600),
            step: Duration::from_secs(300),
            level: None,
            mode,
        }
    }

    /// Demand 20 at night, 80 from 09:00 to 17:00, over `days`, ending just before `end_hour`.
    fn daily(days: usize, end_hour: usize) -> History {
        let n = days * 288 + end_hour * 12;
        let values = (0..n)
            .map(|i| {
                if (108..204).contains(&(i % 288)) {
                    80.0
                } else {
                    20.0
                }
            })
            .collect();
        History {
            step_secs: 300,
            values,
        }
    }

    const B: Bounds = Bounds { min: 1, max: 20 };

    #[test]
    fn scales_out_before_the_morning_rise() {
        // 08:55: the rise at 09:00 is inside the 10-minute lead window.
        let h = daily(3, 9);
        let h = History {
            values: h.values[..h.values.len() - 1].to_vec(),
            ..h
        };
        let p = plan(&spec(ForecastMode::Shadow), &h, Some(20.0), 2, B, 600.0);
        assert_eq!(p.lead_steps, 2);
        assert_eq!(p.current_need, Some(2));
        assert_eq!(p.forecast_need, Some(8), "{p:?}");
        assert_eq!(p.decision, Decision::ScaleOut { to: 8, ahead: true });
        assert!(!p.enforce);
    }

    #[test]
    fn holds_in_the_evening_fall_and_on_short_history() {
        let p = plan(
            &spec(ForecastMode::Enforce),
            &daily(3, 18),
            Some(20.0),
            8,
            B,
            60.0,
        );
        assert!(matches!(p.decision, Decision::Hold(_)), "{p:?}");
        assert!(p.enforce);
        let short = plan(
            &spec(ForecastMode::Enforce),
            &daily(1, 9),
            Some(20.0),
            2,
            B,
            60.0,
        );
        assert!(matches!(
            short.forecast_peak,
            Err(NoForecast::ShortHistory { .. })
        ));
        assert!(matches!(short.decision, Decision::Hold(r) if r.contains("reactive")));
    }

    #[test]
    fn pod_ready_is_the_median_of_recent_starts_with_a_default() {
        assert_eq!(pod_ready_secs(&[]), DEFAULT_POD_READY_SECS);
        assert_eq!(
            pod_ready_secs(&[(0.0, 30.0), (10.0, 20.0), (20.0, 110.0)]),
            30.0
        );
        assert_eq!(pod_ready_secs(&[(0.0, 30.0), (10.0, 20.0)]), 20.0);
        assert_eq!(
            pod_ready_secs(&[(5.0, 1.0), (f64::NAN, 3.0)]),
            DEFAULT_POD_READY_SECS
        );
        // Only the newest POD_READY_SAMPLES count: 11 slow old starts, 10 fast new ones.
        let mut s: Vec<(f64, f64)> = (0..11).map(|i| (i as f64, i as f64 + 500.0)).collect();
        s.extend((100..110).map(|i| (i as f64, i as f64 + 5.0)));
        assert_eq!(pod_ready_secs(&s), 5.0);
    }
}
