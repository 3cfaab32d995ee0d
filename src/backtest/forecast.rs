//! `homeostat backtest` for a `forecast:` block: reads the demand signal's history from Prometheus and
//! replays reactive against forecast scaling over the range ([`crate::forecast::replay`]).

use crate::{
    diagnosis::fetch::workload_vars,
    forecast::{
        Bounds,
        replay::{Params, Replay, replay},
    },
    prometheus::{PromClient, PromError},
    v1alpha1::{ForecastSpec, RemediationPolicySpec, ScaleSpec},
};

/// Most samples one range query may return (Prometheus refuses more than 11 000).
pub const MAX_SAMPLES: usize = 11_000;

/// Why a forecast backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum ForecastBacktestError {
    /// The policy has no Scale action with a forecast block.
    #[error("the policy has no Scale action with a forecast block")]
    NoForecast,
    /// The forecast names no signal (the default CPU signal needs the operator's pod discovery).
    #[error("forecast.signal is required for a backtest (name one of spec.signals)")]
    NoSignal,
    /// The named signal is not among the policy's signals.
    #[error("forecast.signal {0:?} is not among spec.signals")]
    UnknownSignal(String),
    /// The signal's template does not render.
    #[error("rendering signal {0}: {1}")]
    Template(String, String),
    /// History + range is more than one range query returns.
    #[error(
        "{0} samples of history and range at this step: more than {MAX_SAMPLES}; use a longer step or a shorter range"
    )]
    TooLong(usize),
    /// The query did not return exactly one series.
    #[error("the demand query returned {0} series; it must return one (wrap it in sum())")]
    NotOneSeries(usize),
    /// Prometheus failed.
    #[error("querying Prometheus: {0}")]
    Prom(#[from] PromError),
}

/// The first Scale action with a forecast block, and its bounds.
pub fn forecast_of(spec: &RemediationPolicySpec) -> Option<(&ScaleSpec, &ForecastSpec)> {
    spec.faults
        .iter()
        .filter_map(|f| f.action.as_ref()?.scale.as_ref())
        .find_map(|s| Some((s, s.forecast.as_ref()?)))
}

/// Replays the policy's forecast over `[from, to]` (the history before `from` only feeds the model), with
/// `hold` (seconds) as the reactive delay and `ready` (seconds) as the pod-ready time.
pub async fn run(
    prom: &PromClient,
    spec: &RemediationPolicySpec,
    namespace: &str,
    from: f64,
    to: f64,
    hold: u64,
    ready: u64,
) -> Result<Replay, ForecastBacktestError> {
    let (scale, fc) = forecast_of(spec).ok_or(ForecastBacktestError::NoForecast)?;
    let name = fc
        .signal
        .as_deref()
        .ok_or(ForecastBacktestError::NoSignal)?;
    let signal = spec
        .signals
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ForecastBacktestError::UnknownSignal(name.into()))?;
    let workload = spec.target_ref.as_ref().map_or("", |t| t.name.as_str());
    let query = workload_vars(namespace, workload, &[], "5m")
        .set("pods", ".+")
        .render(&signal.query)
        .map_err(|e| ForecastBacktestError::Template(name.into(), e.to_string()))?;
    let step = fc.step.get().as_secs().max(1);
    let history = fc.history.get().as_secs().div_ceil(step) as usize;
    let start = from - (history as u64 * step) as f64;
    let n = ((to - start) / step as f64).floor() as usize + 1;
    if n > MAX_SAMPLES {
        return Err(ForecastBacktestError::TooLong(n));
    }
    let series = prom.range(&query, start, to, step as f64).await?;
    if series.len() != 1 {
        return Err(ForecastBacktestError::NotOneSeries(series.len()));
    }
    let mut y = vec![f64::NAN; n];
    for &(t, v) in &series[0].points {
        let i = ((t - start) / step as f64).round();
        if i >= 0.0 && (i as usize) < n {
            y[i as usize] = v;
        }
    }
    let params = Params {
        step,
        history,
        hold,
        ready,
        refit: 3600,
        per_pod: fc.per_pod,
        level: fc.level,
        bounds: Bounds {
            min: scale.min_replicas.unwrap_or(1).max(0) as u32,
            max: scale.max_replicas.max(1) as u32,
        },
    };
    Ok(replay(&y, &params))
}

/// The scores of a replay as a table.
pub fn table(r: &Replay, step: u64) -> String {
    let (hr, hf) = (
        Replay::hours(&r.reactive, step),
        Replay::hours(&r.forecast, step),
    );
    format!(
        "{:<10} {:>14} {:>14}\n{:<10} {:>13.2}% {:>13.2}%\n{:<10} {:>14.1} {:>14.1}\n{:<10} {:>14} {:>13.2}%\nforecast MAPE {:.2}%, {} samples, {} refits without a forecast{}\n",
        "",
        "reactive",
        "forecast",
        "under",
        100.0 * r.under(&r.reactive),
        100.0 * r.under(&r.forecast),
        "rep-hours",
        hr,
        hf,
        "extra",
        "",
        100.0 * (hf / hr.max(f64::MIN_POSITIVE) - 1.0),
        100.0 * r.mape,
        r.need.len(),
        r.no_forecast,
        r.first_reason
            .as_ref()
            .map_or(String::new(), |w| format!(" (first: {w})")),
    )
}
