//! Replays reactive and forecast scaling over a demand history: what each would have provisioned.
//!
//! Reactive: replicas asked for at `t` (the current need) are Ready after the policy hold plus the
//! pod-ready time; a scale-in waits one hold. Forecast: in addition, at `t` it asks for the replicas the
//! forecast says `t + ready` needs, Ready by then, held for one hold; the provisioned count is the max of
//! both (never below reactive: no scale-in on the forecast). Both bounded by min/max.

use super::{Bounds, History, forecast, need};

/// Parameters of a replay.
#[derive(Clone, Debug)]
pub struct Params {
    /// Seconds between samples.
    pub step: u64,
    /// Samples of history each forecast is fitted to.
    pub history: usize,
    /// Policy hold before a reactive scale (seconds).
    pub hold: u64,
    /// Time a new pod takes to become Ready (seconds).
    pub ready: u64,
    /// Seconds between refits of the model.
    pub refit: u64,
    /// Demand one pod serves.
    pub per_pod: f64,
    /// Prediction-interval level to scale to (point forecast when `None`).
    pub level: Option<f64>,
    /// Replica bounds.
    pub bounds: Bounds,
}

/// Replicas over the evaluated part of a replay and the scores.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// Index (in the input) of the first evaluated sample.
    pub start: usize,
    /// Replicas needed per evaluated sample.
    pub need: Vec<u32>,
    /// Replicas reactive scaling has Ready.
    pub reactive: Vec<u32>,
    /// Replicas forecast scaling has Ready.
    pub forecast: Vec<u32>,
    /// Mean absolute percentage error of the point forecasts used (over samples with demand > 0).
    pub mape: f64,
    /// Refits that gave no forecast (and the first reason).
    pub no_forecast: usize,
    /// Why the first refit without a forecast had none.
    pub first_reason: Option<String>,
}

impl Replay {
    /// Share of evaluated samples where `provisioned` is below the need.
    pub fn under(&self, provisioned: &[u32]) -> f64 {
        let n = self.need.len().max(1) as f64;
        provisioned
            .iter()
            .zip(&self.need)
            .filter(|(p, n)| p < n)
            .count() as f64
            / n
    }

    /// Replica-hours of `provisioned` at `step` seconds a sample.
    pub fn hours(provisioned: &[u32], step: u64) -> f64 {
        provisioned.iter().map(|&r| f64::from(r)).sum::<f64>() * step as f64 / 3600.0
    }
}

fn steps(secs: u64, step: u64) -> usize {
    secs.div_ceil(step.max(1)) as usize
}

/// Replays `y` (demand per step, `NaN` where missing): the first `p.history` samples only feed the model.
pub fn replay(y: &[f64], p: &Params) -> Replay {
    let clamp = |n: u32| n.clamp(p.bounds.min.min(p.bounds.max), p.bounds.max);
    let need_at = |i: usize| need(y[i], p.per_pod);
    let d_r = steps(p.hold + p.ready, p.step);
    let w = steps(p.hold, p.step);
    let lead = steps(p.ready, p.step).max(1);
    let refit = steps(p.refit, p.step).max(1);
    let hist = p.history;
    let mut out = Replay {
        start: hist + d_r + w,
        ..Replay::default()
    };
    if y.len() <= out.start {
        return out;
    }
    // The forecast need asked for at decision time s, for interval s + lead.
    let mut fneed = vec![None::<u32>; y.len()];
    let (mut ape, mut napes) = (0.0, 0usize);
    let mut s = hist;
    while s < y.len() {
        let h = History {
            step_secs: p.step,
            values: y[s - hist..s].to_vec(),
        };
        match forecast(&h, refit + lead, p.level) {
            Ok(f) => {
                let end = (s + refit).min(y.len().saturating_sub(lead)).max(s);
                for (at, slot) in fneed.iter_mut().enumerate().take(end).skip(s) {
                    let target = at + lead;
                    let ahead = target + 1 - s; // steps after the last sample fitted (s - 1)
                    let point = f.point[ahead - 1];
                    if y[target] > 0.0 {
                        ape += (point - y[target]).abs() / y[target];
                        napes += 1;
                    }
                    *slot = need(f.peak_upper(ahead, ahead).unwrap_or(point), p.per_pod);
                }
            }
            Err(e) => {
                out.no_forecast += 1;
                out.first_reason.get_or_insert_with(|| e.to_string());
            }
        }
        s += refit;
    }
    for t in out.start..y.len() {
        let r = clamp(
            (d_r..=d_r + w)
                .filter_map(|k| need_at(t - k))
                .max()
                .unwrap_or(0),
        );
        let ahead = (lead..=lead + w)
            .filter_map(|k| fneed[t - k])
            .max()
            .unwrap_or(0);
        out.need.push(need_at(t).unwrap_or(0));
        out.reactive.push(r);
        out.forecast.push(clamp(r.max(ahead)));
    }
    out.mape = if napes == 0 {
        f64::NAN
    } else {
        ape / napes as f64
    };
    out
}

/// An ASCII plot of need (`.`), reactive (`r`) and forecast (`f`, `*` where both) replicas, one column
/// per `every` samples (the column's max), `rows` high.
pub fn ascii_plot(r: &Replay, every: usize, rows: usize) -> String {
    let every = every.max(1);
    let cols = |v: &[u32]| -> Vec<u32> {
        v.chunks(every)
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect()
    };
    let (n, re, fo) = (cols(&r.need), cols(&r.reactive), cols(&r.forecast));
    let top = n
        .iter()
        .chain(&re)
        .chain(&fo)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let rows = rows.max(2);
    let mut out = String::new();
    for row in (0..rows).rev() {
        let lo = f64::from(top) * row as f64 / rows as f64;
        out.push_str(&format!("{:>5.0} |", lo + f64::from(top) / rows as f64));
        for i in 0..n.len() {
            let at = |v: &[u32]| f64::from(v[i]) > lo;
            let above = |v: &[u32]| at(v) && f64::from(v[i]) <= lo + f64::from(top) / rows as f64;
            out.push(match (above(&re), above(&fo), above(&n)) {
                (true, true, _) => '*',
                (false, true, _) => 'f',
                (true, false, _) => 'r',
                (false, false, true) => '.',
                _ => ' ',
            });
        }
        out.push('\n');
    }
    out.push_str(&format!("      +{}\n", "-".repeat(n.len())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two-level days: 100 from 09:00 to 17:00, 20 otherwise, 5-minute samples.
    fn days(n: usize) -> Vec<f64> {
        (0..n * 288)
            .map(|i| {
                if (108..204).contains(&(i % 288)) {
                    100.0
                } else {
                    20.0
                }
            })
            .collect()
    }

    fn params() -> Params {
        Params {
            step: 300,
            history: 3 * 288,
            hold: 300,
            ready: 180,
            refit: 3600,
            per_pod: 10.0,
            level: None,
            bounds: Bounds { min: 1, max: 50 },
        }
    }

    #[test]
    fn forecast_covers_the_morning_step_that_reactive_misses() {
        let r = replay(&days(5), &params());
        assert_eq!(r.no_forecast, 0);
        assert!(r.mape < 0.05, "MAPE {}", r.mape);
        // Reactive is late at each 09:00 step; the forecast is not.
        assert!(r.under(&r.reactive) > 0.0);
        assert!(
            r.under(&r.forecast) < r.under(&r.reactive) / 2.0,
            "{} vs {}",
            r.under(&r.forecast),
            r.under(&r.reactive)
        );
        // Never below reactive, never outside the bounds.
        assert!(
            r.forecast
                .iter()
                .zip(&r.reactive)
                .all(|(f, re)| f >= re && *f <= 50)
        );
        let plot = ascii_plot(&r, 12, 8);
        assert!(plot.contains('*') && plot.lines().count() == 9, "{plot}");
    }

    #[test]
    fn short_history_replays_as_reactive_and_says_why() {
        let p = Params {
            history: 288,
            ..params()
        };
        let r = replay(&days(3), &p);
        assert!(r.no_forecast > 0);
        assert!(
            r.first_reason
                .as_deref()
                .is_some_and(|m| m.contains("too little history"))
        );
        assert_eq!(r.forecast, r.reactive);
    }
}
