//! Seeded benchmark of forecast scaling against reactive scaling on synthetic demand.
//!
//! `cargo run --example forecast_bench -- [--seeds 1,2,3] [--level 0.8] [--step 300] [--days 14]`
//!
//! Demand: a two-peak business day, quieter weekends, a trend, holidays (a weekday as quiet as a Sunday,
//! unknown to the model) and one-off spikes, with 5 % noise. Replicas needed = ceil(demand / capacity).
//! Reactive scaling sees demand at t and has pods Ready after the policy hold + pod-ready time; forecast
//! scaling adds max(forecast need at t + pod-ready, current need), never scales in on the forecast.
//! Prints MAPE, the share of under-provisioned intervals and replica-hours per seed and overall.

use homeostat::forecast::{self, History, need};
use rand::{Rng, SeedableRng, rngs::StdRng};

const DAY: f64 = 86_400.0;
const CAPACITY: f64 = 50.0;
const MIN: u32 = 2;
const MAX: u32 = 100;

struct Args {
    seeds: Vec<u64>,
    level: Option<f64>,
    step: u64,
    days: u64,
    hold: u64,
    ready: u64,
    refit: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        seeds: vec![1, 2, 3],
        level: None,
        step: 300,
        days: 14,
        hold: 300,
        ready: 180,
        refit: 3600,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{k} {v}: {e}"));
        match k.as_str() {
            "--seeds" => {
                a.seeds = v.split(',').map(num).collect::<Result<_, _>>()?;
            }
            "--level" => {
                let l: f64 = v.parse().map_err(|e| format!("--level {v}: {e}"))?;
                a.level = (l > 0.0).then_some(l);
            }
            "--step" => a.step = num(&v)?,
            "--days" => a.days = num(&v)?,
            "--hold" => a.hold = num(&v)?,
            "--ready" => a.ready = num(&v)?,
            "--refit" => a.refit = num(&v)?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.step == 0 || a.refit < a.step {
        return Err("--step must be > 0 and --refit >= --step".into());
    }
    Ok(a)
}

/// Box-Muller: one standard normal sample.
fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Demand per step over `days` (history) + `days` (evaluated), and which days were holidays.
fn demand(seed: u64, step: u64, days: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let total_days = 2 * days;
    let n = (total_days as f64 * DAY / step as f64) as usize;
    let base = rng.random_range(150.0..350.0);
    let peak = rng.random_range(1.5..3.0); // business-hours peak over the night floor
    let weekend = rng.random_range(0.45..0.8);
    let growth = rng.random_range(0.0..0.4); // over the whole span
    let morning = rng.random_range(9.0..11.0);
    let evening = rng.random_range(17.0..21.0);
    // Holidays: one weekday in the history, one in the evaluated span.
    let holiday = |rng: &mut StdRng, from: u64, to: u64| loop {
        let d = rng.random_range(from..to);
        if d % 7 < 5 {
            break d;
        }
    };
    let holidays = [
        holiday(&mut rng, 0, days),
        holiday(&mut rng, days, total_days),
    ];
    let spikes: Vec<(usize, usize, f64)> = (0..rng.random_range(4..8))
        .map(|_| {
            let len = (rng.random_range(900.0..3600.0) / step as f64).ceil() as usize;
            (
                rng.random_range(0..n),
                len.max(1),
                rng.random_range(1.4..2.5),
            )
        })
        .collect();
    (0..n)
        .map(|i| {
            let t = i as f64 * step as f64;
            let day = (t / DAY) as u64;
            let hour = (t % DAY) / 3600.0;
            let bump = |c: f64, w: f64| (-((hour - c) / w).powi(2)).exp();
            let shape = 1.0
                + (peak - 1.0)
                    * (0.8 * bump(morning, 2.5) + 0.6 * bump(evening, 2.0) + 0.4 * bump(14.0, 3.0));
            let quiet = day % 7 >= 5 || holidays.contains(&day);
            let week = if quiet { weekend } else { 1.0 };
            let trend = 1.0 + growth * t / (total_days as f64 * DAY);
            let spike = spikes
                .iter()
                .filter(|(s, len, _)| i >= *s && i < s + len)
                .map(|s| s.2)
                .fold(1.0, f64::max);
            let noise = (1.0 + 0.05 * normal(&mut rng)).max(0.5);
            base * shape * week * trend * spike * noise
        })
        .collect()
}

struct Score {
    mape: f64,
    under_reactive: f64,
    under_forecast: f64,
    hours_reactive: f64,
    hours_forecast: f64,
    no_forecast: usize,
}

fn steps(secs: u64, step: u64) -> usize {
    secs.div_ceil(step) as usize
}

fn run(a: &Args, seed: u64) -> Score {
    let y = demand(seed, a.step, a.days);
    let hist = steps(a.days * 86_400, a.step);
    let need_at = |i: usize| need(y[i], CAPACITY).unwrap_or(0);
    let clamp = |n: u32| n.clamp(MIN, MAX);
    // Reactive: pods asked for at t are Ready after hold + ready; scale-in waits one hold.
    let d_r = steps(a.hold + a.ready, a.step);
    let w = steps(a.hold, a.step);
    let lead = steps(a.ready, a.step).max(1);
    let refit = steps(a.refit, a.step);
    let reactive = |t: usize| clamp((d_r..=d_r + w).map(|k| need_at(t - k)).max().unwrap_or(0));
    // Forecast need requested at s, for the interval s + lead (when its pods are Ready).
    let mut fneed = vec![None::<u32>; y.len()];
    let (mut ape, mut napes, mut no_forecast) = (0.0, 0usize, 0usize);
    let mut s = hist;
    while s < y.len() {
        let h = History {
            step_secs: a.step,
            values: y[s - hist..s].to_vec(),
        };
        // Refit at s (data up to s - 1): forecast steps 1..=refit + lead ahead.
        match forecast::forecast(&h, refit + lead, a.level) {
            Ok(f) => {
                for j in 0..refit {
                    let at = s + j; // decision time
                    let target = at + lead; // interval the pods are for
                    if target >= y.len() {
                        break;
                    }
                    // Steps ahead of the last sample (s - 1): target - (s - 1).
                    let ahead = target + 1 - s;
                    let p = f.point[ahead - 1];
                    ape += (p - y[target]).abs() / y[target];
                    napes += 1;
                    let v = f.peak_upper(ahead, ahead).unwrap_or(p);
                    fneed[at] = need(v, CAPACITY);
                }
            }
            Err(e) => {
                no_forecast += 1;
                eprintln!("seed {seed}: no forecast at step {s}: {e}");
            }
        }
        s += refit;
    }
    let (mut under_r, mut under_f, mut rep_r, mut rep_f, mut n) =
        (0usize, 0usize, 0u64, 0u64, 0usize);
    for t in hist + d_r + w..y.len() {
        let r = reactive(t);
        let f_ahead = (lead..=lead + w)
            .filter_map(|k| fneed.get(t - k).copied().flatten())
            .max();
        let f = clamp(r.max(f_ahead.unwrap_or(0)));
        let need = need_at(t);
        under_r += usize::from(r < need);
        under_f += usize::from(f < need);
        rep_r += u64::from(r);
        rep_f += u64::from(f);
        n += 1;
    }
    let hours = |r: u64| r as f64 * a.step as f64 / 3600.0;
    Score {
        mape: if napes == 0 {
            f64::NAN
        } else {
            ape / napes as f64
        },
        under_reactive: under_r as f64 / n as f64,
        under_forecast: under_f as f64 / n as f64,
        hours_reactive: hours(rep_r),
        hours_forecast: hours(rep_f),
        no_forecast,
    }
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("forecast_bench: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "step {}s, history {}d, evaluated {}d, hold {}s, pod-ready {}s, refit every {}s, capacity {CAPACITY}/pod, level {}",
        a.step,
        a.days,
        a.days,
        a.hold,
        a.ready,
        a.refit,
        a.level.map_or("point".to_string(), |l| l.to_string())
    );
    println!(
        "{:>6} {:>7} {:>10} {:>10} {:>7} {:>10} {:>10} {:>8} {:>6}",
        "seed", "MAPE%", "under R%", "under F%", "ratio", "rep-h R", "rep-h F", "extra%", "nofc"
    );
    let mut all = Vec::new();
    for &seed in &a.seeds {
        let s = run(&a, seed);
        println!(
            "{seed:>6} {:>7.2} {:>10.2} {:>10.2} {:>7.2} {:>10.1} {:>10.1} {:>8.2} {:>6}",
            100.0 * s.mape,
            100.0 * s.under_reactive,
            100.0 * s.under_forecast,
            s.under_forecast / s.under_reactive,
            s.hours_reactive,
            s.hours_forecast,
            100.0 * (s.hours_forecast / s.hours_reactive - 1.0),
            s.no_forecast
        );
        all.push(s);
    }
    let n = all.len() as f64;
    let mean = |f: &dyn Fn(&Score) -> f64| all.iter().map(f).sum::<f64>() / n;
    let (ur, uf) = (mean(&|s| s.under_reactive), mean(&|s| s.under_forecast));
    let (hr, hf) = (mean(&|s| s.hours_reactive), mean(&|s| s.hours_forecast));
    println!(
        "{:>6} {:>7.2} {:>10.2} {:>10.2} {:>7.2} {:>10.1} {:>10.1} {:>8.2}",
        "all",
        100.0 * mean(&|s| s.mape),
        100.0 * ur,
        100.0 * uf,
        uf / ur,
        hr,
        hf,
        100.0 * (hf / hr - 1.0)
    );
}
