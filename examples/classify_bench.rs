//! CPU cost of classification alone (no I/O): the four default detectors over one workload.
//! `cargo run --release --example classify_bench`. Prints absolute times and ratios to 5 pods.

use std::{hint::black_box, time::Instant};

use homeostat::diagnosis::{EvalContext, PodSeries, WorkloadSeries, default_faults, evaluate_all};

fn workload(pods: usize, points: usize, step: f64, now: f64) -> WorkloadSeries {
    let series = |f: &dyn Fn(usize, usize) -> f64, p: usize| -> Vec<(f64, f64)> {
        (0..points)
            .map(|i| (now - (points - 1 - i) as f64 * step, f(p, i)))
            .collect()
    };
    WorkloadSeries {
        pods: (0..pods)
            .map(|p| PodSeries {
                name: format!("web-{p}"),
                started_at: Some(now - 7200.0),
                cpu: series(
                    &|p, i| {
                        if p == 0 {
                            0.95
                        } else {
                            0.1 + 0.01 * ((i + p) % 7) as f64
                        }
                    },
                    p,
                ),
                throttling: series(&|_, i| 0.01 * (i % 3) as f64, p),
                // A GC sawtooth (period 8 points) over a slow climb: the leak detector fits its
                // floors, as it does a real Go heap.
                memory: series(
                    &|p, i| (1e8 + (p * 1000 + i * 20_000) as f64) * (1.0 + 0.05 * (i % 8) as f64),
                    p,
                ),
                restarts: series(&|_, _| 0.0, p),
                backoff: vec![],
                last_terminated: None,
                cpu_limit: Some(1.0),
                memory_limit: Some(5e8),
            })
            .collect(),
        signals: Default::default(),
    }
}

fn main() {
    let faults = default_faults();
    let now = 1_800_000_000.0;
    let step = 15.0;
    let ctx = EvalContext {
        now,
        step,
        stale_after: 45.0,
    };
    // The longest default `for` is 10 minutes (41 points at 15 s); MemoryLeak reads its memory an
    // hour back (241 points), and the sweep fetches every series over the longest span it needs.
    for points in [41usize, 241] {
        let mut base = None;
        println!("pods  points  evaluations  us/evaluation  us/pod  ratio-to-5-pods");
        for pods in [5usize, 20, 100] {
            let w = workload(pods, points, step, now);
            let iters = 20_000 / pods;
            let t = Instant::now();
            for _ in 0..iters {
                black_box(evaluate_all(black_box(&faults), black_box(&w), &ctx));
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
            let b = *base.get_or_insert(us);
            println!(
                "{pods:>4}  {points:>6}  {iters:>11}  {us:>13.1}  {:>6.2}  {:>15.2}",
                us / pods as f64,
                us / b
            );
        }
    }
}
