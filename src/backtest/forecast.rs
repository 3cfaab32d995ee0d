//! `homeostat backtest` for a `forecast:` block: reads the demand signal's history from Prometheus and
//! replays reactive against forecast scaling over the range ([`crate::forecast::replay`]).

use crate::{
    forecast::{
        query::{QueryError, bounds_of, demand_query, regular},
        replay::{Params, Replay, replay},
    },
    prometheus::{PromClient, PromError},
    v1alpha1::RemediationPolicySpec,
};

/// Most samples one range query may return (Prometheus refuses more than 11 000).
pub const MAX_SAMPLES: usize = 11_000;

/// Why a forecast backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum ForecastBacktestError {
    /// The policy has no Scale action with a forecast block.
    #[error("the policy has no Scale action with a forecast block")]
    NoForecast,
    /// The policy selects workloads instead of naming one.
    #[error("a forecast backtest needs spec.targetRef (one workload)")]
    NoTarget,
    /// The demand query cannot be built.
    #[error(transparent)]
    Query(#[from] QueryError),
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

pub use crate::forecast::query::forecast_of;

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
    let (_, scale, fc) = forecast_of(spec).ok_or(ForecastBacktestError::NoForecast)?;
    let workload = spec
        .target_ref
        .as_ref()
        .ok_or(ForecastBacktestError::NoTarget)?;
    let query = demand_query(spec, fc, namespace, workload)?;
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
    let y = regular(&series[0].points, start, step, n);
    let params = Params {
        step,
        history,
        hold,
        ready,
        refit: 3600,
        per_pod: fc.per_pod,
        level: fc.level,
        bounds: bounds_of(scale),
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

/// Plots need, reactive and forecast replicas over the replayed range as an SVG file (hours since the
/// range's start on x).
pub fn plot(r: &Replay, step: u64, title: &str, path: &std::path::Path) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let hours = |i: usize| (i as u64 * step) as f64 / 3600.0;
    let ymax = r
        .need
        .iter()
        .chain(&r.reactive)
        .chain(&r.forecast)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let root = SVGBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: replicas needed (black), reactive (blue), forecast (red)"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..hours(r.need.len().max(1)), 0.0..ymax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("hours since the start of the range")
        .y_desc("replicas")
        .draw()
        .map_err(|e| err(&e))?;
    for (line, color) in [(&r.need, BLACK), (&r.reactive, BLUE), (&r.forecast, RED)] {
        chart
            .draw_series(LineSeries::new(
                line.iter()
                    .enumerate()
                    .map(|(i, n)| (hours(i), f64::from(*n))),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
