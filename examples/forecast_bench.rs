//! Seeded benchmark of forecast scaling against reactive scaling on synthetic demand.
//!
//! `cargo run --example forecast_bench -- [--seeds 1,2,3] [--level 0.8] [--step 300] [--days 14]`
//!
//! Demand: a two-peak business day, quieter weekends, a trend, holidays (a weekday as quiet as a Sunday,
//! unknown to the model) and one-off spikes, with 5 % noise. Replicas needed = ceil(demand / capacity).
//! Reactive scaling sees demand at t and has pods Ready after the policy hold + pod-ready time; forecast
//! scaling adds max(forecast need at t + pod-ready, current need), never scales in on the forecast.
//! Prints MAPE, the share of under-provisioned intervals and replica-hours per seed and overall.

use homeostat::forecast::{
    Bounds,
    replay::{Params, Replay, replay},
};
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

fn run(a: &Args, seed: u64) -> Score {
    let y = demand(seed, a.step, a.days);
    let p = Params {
        step: a.step,
        history: (a.days * 86_400).div_ceil(a.step) as usize,
        hold: a.hold,
        ready: a.ready,
        refit: a.refit,
        per_pod: CAPACITY,
        level: a.level,
        bounds: Bounds { min: MIN, max: MAX },
    };
    let r = replay(&y, &p);
    if let Some(why) = &r.first_reason {
        eprintln!(
            "seed {seed}: {} refits without a forecast, first: {why}",
            r.no_forecast
        );
    }
    Score {
        mape: r.mape,
        under_reactive: r.under(&r.reactive),
        under_forecast: r.under(&r.forecast),
        hours_reactive: Replay::hours(&r.reactive, a.step),
        hours_forecast: Replay::hours(&r.forecast, a.step),
        no_forecast: r.no_forecast,
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
