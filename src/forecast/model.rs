//! The forecasting model: MSTL + AutoETS over a regularly sampled history.

use augurs_core::{Fit, Predict};
use augurs_ets::{AutoETS, trend::AutoETSTrendModel};
use augurs_mstl::{FittedTrendModel, MSTLModel, TrendModel};
use std::borrow::Cow;

/// Seconds in a day and a week: the two seasons a demand signal is expected to have.
pub const DAY: u64 = 86_400;
/// Seconds in a week.
pub const WEEK: u64 = 7 * DAY;

/// Largest share of missing samples a history may have and still be forecast.
pub const MAX_MISSING: f64 = 0.2;
/// Most consecutive missing samples at the end of a history before it counts as stale.
pub const MAX_TRAILING_MISSING: usize = 2;
/// Most samples fitted; a longer history is cut to its newest part (5 weeks at 5 minutes).
pub const MAX_POINTS: usize = 10_080;

/// A regularly sampled history of one signal, oldest first; `NaN` marks a missing sample.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// Seconds between samples.
    pub step_secs: u64,
    /// The samples.
    pub values: Vec<f64>,
}

/// Why there is no forecast; the caller falls back to reactive scaling.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NoForecast {
    /// The step is zero, or longer than a day is season-free (no daily season fits).
    #[error("step {0}s is not usable: it must be between 1s and 6h")]
    BadStep(u64),
    /// The history does not span two days, the least that separates a daily season from noise.
    #[error(
        "too little history: {have_secs}s, need at least {need_secs}s (two days) for a daily season"
    )]
    ShortHistory {
        /// Seconds of history there are.
        have_secs: u64,
        /// Seconds needed.
        need_secs: u64,
    },
    /// Too many samples are missing.
    #[error("{missing} of {total} samples missing (more than {pct}%)", pct = (MAX_MISSING * 100.0) as u32)]
    Gappy {
        /// Missing samples.
        missing: usize,
        /// All samples.
        total: usize,
    },
    /// The newest samples are missing: the signal is stale.
    #[error("the newest {0} samples are missing: the signal is stale")]
    Stale(usize),
    /// A sample is negative or infinite: not a demand signal.
    #[error("sample {index} is {value}: a demand signal is finite and not negative")]
    BadSample {
        /// Position in the history.
        index: usize,
        /// The value.
        value: f64,
    },
    /// The model failed to fit or predict.
    #[error("the forecasting model failed: {0}")]
    Model(String),
}

/// A forecast: the next `point.len()` samples after the history, at the history's step.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    /// Seconds between samples.
    pub step_secs: u64,
    /// Point forecast per step ahead (index 0 is one step after the last sample), never negative.
    pub point: Vec<f64>,
    /// Upper bound of the prediction interval at the requested level, when one was asked for.
    pub upper: Option<Vec<f64>>,
    /// Seasons used, in samples (daily, and weekly when the history spans two weeks).
    pub periods: Vec<usize>,
}

impl Forecast {
    /// The largest point forecast over steps `from..=to` ahead (1-based: 1 is the next sample), if any.
    pub fn peak(&self, from: usize, to: usize) -> Option<f64> {
        window_max(&self.point, from, to)
    }

    /// The largest upper bound over steps `from..=to` ahead, falling back to the point forecast.
    pub fn peak_upper(&self, from: usize, to: usize) -> Option<f64> {
        window_max(self.upper.as_deref().unwrap_or(&self.point), from, to)
    }
}

fn window_max(v: &[f64], from: usize, to: usize) -> Option<f64> {
    let from = from.max(1);
    if to < from || v.is_empty() {
        return None;
    }
    let hi = to.min(v.len());
    let lo = from.min(hi);
    v[lo - 1..hi].iter().copied().reduce(f64::max)
}

/// Forecasts `horizon` samples after `history`; `level` (0..1) also asks for the upper prediction bound.
pub fn forecast(
    history: &History,
    horizon: usize,
    level: Option<f64>,
) -> Result<Forecast, NoForecast> {
    let step = history.step_secs;
    if step == 0 || step > DAY / 4 {
        return Err(NoForecast::BadStep(step));
    }
    let start = history.values.len().saturating_sub(MAX_POINTS);
    let y = clean(&history.values[start..])?;
    let have_secs = y.len() as u64 * step;
    let (day, week) = ((DAY / step) as usize, (WEEK / step) as usize);
    if y.len() < 2 * day {
        return Err(NoForecast::ShortHistory {
            have_secs,
            need_secs: 2 * DAY,
        });
    }
    let periods = if y.len() >= 2 * week {
        vec![day, week]
    } else {
        vec![day]
    };
    let trend = TailTrend {
        inner: AutoETSTrendModel::from(AutoETS::non_seasonal()),
        tail: TREND_DAYS * day,
    };
    let model = MSTLModel::new(periods.clone(), trend);
    let fitted = model
        .fit(&y)
        .map_err(|e| NoForecast::Model(e.to_string()))?;
    let out = fitted
        .predict(horizon, level)
        .map_err(|e| NoForecast::Model(e.to_string()))?;
    let floor = |v: Vec<f64>| -> Vec<f64> {
        v.into_iter()
            .map(|x| if x.is_finite() { x.max(0.0) } else { 0.0 })
            .collect()
    };
    if out.point.iter().any(|x| !x.is_finite()) {
        return Err(NoForecast::Model(
            "the model predicted a non-finite value".into(),
        ));
    }
    Ok(Forecast {
        step_secs: step,
        point: floor(out.point),
        upper: out.intervals.map(|i| floor(i.upper)),
        periods,
    })
}

/// Days of the deseasonalised series the trend model is fitted to.
pub const TREND_DAYS: usize = 2;

/// AutoETS fitted to the newest part of the deseasonalised series only: the near-term level and trend are
/// what a forecast of the next hour needs, and fitting weeks of samples costs 7 times more for nothing.
#[derive(Debug)]
struct TailTrend {
    inner: AutoETSTrendModel,
    tail: usize,
}

impl TrendModel for TailTrend {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("AutoETS (tail)")
    }

    fn fit(&self, y: &[f64]) -> Result<Box<dyn FittedTrendModel + Sync + Send>, BoxError> {
        self.inner.fit(&y[y.len().saturating_sub(self.tail)..])
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Checks samples and fills interior gaps by linear interpolation; leading gaps are dropped.
fn clean(values: &[f64]) -> Result<Vec<f64>, NoForecast> {
    if let Some((index, &value)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| v.is_infinite() || **v < 0.0)
    {
        return Err(NoForecast::BadSample { index, value });
    }
    let trailing = values.iter().rev().take_while(|v| v.is_nan()).count();
    if trailing == values.len() {
        return Ok(Vec::new());
    }
    if trailing > MAX_TRAILING_MISSING {
        return Err(NoForecast::Stale(trailing));
    }
    let lead = values.iter().take_while(|v| v.is_nan()).count();
    let body = &values[lead..values.len() - trailing];
    let missing = body.iter().filter(|v| v.is_nan()).count() + trailing;
    let total = body.len() + trailing;
    if missing as f64 > MAX_MISSING * total as f64 {
        return Err(NoForecast::Gappy { missing, total });
    }
    let mut out = body.to_vec();
    let mut i = 0;
    while i < out.len() {
        if out[i].is_nan() {
            let j = (i..out.len())
                .find(|&k| !out[k].is_nan())
                .unwrap_or(out.len());
            let a = out[i - 1]; // i > 0: the body starts with a sample
            let b = out.get(j).copied().unwrap_or(a);
            let n = (j - i + 1) as f64;
            for (k, slot) in out[i..j].iter_mut().enumerate() {
                *slot = a + (b - a) * (k + 1) as f64 / n;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    // Trailing gaps (at most MAX_TRAILING_MISSING) hold the last value so the seasons stay aligned.
    let last = out.last().copied().unwrap_or(0.0);
    out.extend(std::iter::repeat_n(last, trailing));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u64 = 900;

    /// Daily + weekly sine demand with a gentle trend.
    fn seasonal(days: u64) -> Vec<f64> {
        let n = days * DAY / STEP;
        (0..n)
            .map(|i| {
                let t = (i * STEP) as f64;
                let d = (t / DAY as f64 * std::f64::consts::TAU).sin();
                let w = (t / WEEK as f64 * std::f64::consts::TAU).sin();
                100.0 + 40.0 * d + 15.0 * w + t / DAY as f64
            })
            .collect()
    }

    fn history(values: Vec<f64>) -> History {
        History {
            step_secs: STEP,
            values,
        }
    }

    #[test]
    fn a_daily_and_weekly_pattern_is_forecast_within_a_few_percent() {
        let all = seasonal(16);
        let split = all.len() - (DAY / STEP) as usize;
        let f = forecast(&history(all[..split].to_vec()), (DAY / STEP) as usize, None)
            .expect("forecast");
        assert_eq!(f.periods, vec![96, 672]);
        let mape = f
            .point
            .iter()
            .zip(&all[split..])
            .map(|(p, a)| (p - a).abs() / a)
            .sum::<f64>()
            / f.point.len() as f64;
        assert!(mape < 0.05, "MAPE {mape}");
    }

    #[test]
    fn a_week_of_history_uses_only_the_daily_season() {
        let f = forecast(&history(seasonal(7)), 8, Some(0.8)).expect("forecast");
        assert_eq!(f.periods, vec![96]);
        let upper = f.upper.as_ref().expect("upper bound");
        assert!(f.point.iter().zip(upper).all(|(p, u)| u >= p));
    }

    #[test]
    fn short_history_gives_no_forecast_and_says_why() {
        let e = forecast(&history(seasonal(1)), 8, None).expect_err("one day is too short");
        assert_eq!(
            e,
            NoForecast::ShortHistory {
                have_secs: DAY,
                need_secs: 2 * DAY
            }
        );
        assert!(e.to_string().contains("too little history"));
    }

    #[test]
    fn gaps_are_filled_but_stale_or_gappy_history_is_refused() {
        let mut v = seasonal(3);
        v[10] = f64::NAN;
        v[11] = f64::NAN;
        v[0] = f64::NAN;
        assert!(forecast(&history(v.clone()), 4, None).is_ok());
        let n = v.len();
        v[n - 3..].fill(f64::NAN);
        assert_eq!(
            forecast(&history(v.clone()), 4, None),
            Err(NoForecast::Stale(3))
        );
        let mut gappy = seasonal(3);
        for x in gappy.iter_mut().step_by(3) {
            *x = f64::NAN;
        }
        let last = gappy.len() - 1;
        gappy[last] = 1.0;
        assert!(matches!(
            forecast(&history(gappy), 4, None),
            Err(NoForecast::Gappy { .. })
        ));
    }

    #[test]
    fn bad_samples_and_steps_are_refused() {
        let mut v = seasonal(3);
        v[5] = -1.0;
        assert_eq!(
            forecast(&history(v), 4, None),
            Err(NoForecast::BadSample {
                index: 5,
                value: -1.0
            })
        );
        let h = History {
            step_secs: 0,
            values: seasonal(3),
        };
        assert_eq!(forecast(&h, 4, None), Err(NoForecast::BadStep(0)));
    }

    #[test]
    fn peak_covers_the_window_asked_for() {
        let f = Forecast {
            step_secs: 60,
            point: vec![1.0, 5.0, 2.0, 9.0],
            upper: None,
            periods: vec![],
        };
        assert_eq!(f.peak(1, 3), Some(5.0));
        assert_eq!(f.peak(3, 10), Some(9.0));
        assert_eq!(f.peak(0, 1), Some(1.0));
        assert_eq!(f.peak(3, 2), None);
        assert_eq!(f.peak_upper(2, 2), Some(5.0));
    }
}
