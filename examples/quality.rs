//! The quality benchmark: seeded, labelled workloads backfilled into a real Prometheus, classified
//! by `homeostat::diagnose::run` (the `diagnose` command's code path, default patterns) and by a
//! naive static-threshold baseline, then scored.
//!
//! ```text
//! cargo run --release --example quality -- --seeds 1-3 --seeds 4-6 [--verbose]
//! ```
//!
//! Each `--seeds` range is one reported set (default: tuning seeds 1-3, held-out seeds 4-6). Needs
//! Debian's `prometheus` and `promtool` (see `tests/support`). See docs/quality.md.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "quality/behaviour.rs"]
mod behaviour;
#[path = "quality/scenarios.rs"]
mod scenarios;
#[path = "quality/score.rs"]
mod score;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use homeostat::{
    diagnose::{self, Options},
    diagnosis::{action_for, default_faults, fetch},
    prometheus::{PromClient, PromError, template::escape_regex},
    v1alpha1::{FaultKind, HoldMode, Pattern, RemediationPolicy},
};
use scenarios::{Class, ONSET_EARLIEST, generate};
use score::{BaselineHits, Observation, Pred, Rule, SeedResult};
use support::{TestProm, openmetrics, past_anchor};

struct Args {
    sets: Vec<Vec<u64>>,
    step: f64,
    window: String,
    stale_after: f64,
    verbose: bool,
    /// `rules` (scenarios.rs, the first generator) or `behaviour` (behaviour.rs).
    generator: String,
    /// Seconds between sweep evaluations before the evaluation time.
    sweep_every: f64,
    /// `--hold adaptive`: the default faults with `hold: Adaptive` (RunawayProcess and
    /// ResourceContention), applied by one selector policy per namespace.
    adaptive: bool,
    /// `--min-hold 60s`: the adaptive hold's `minHold` (default: a quarter of each fault's `for`).
    min_hold: Option<homeostat::v1alpha1::Duration>,
}

fn parse_range(s: &str) -> Result<Vec<u64>, String> {
    let mut out = vec![];
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u64, u64) = (
                a.parse().map_err(|_| format!("bad seed {a:?}"))?,
                b.parse().map_err(|_| format!("bad seed {b:?}"))?,
            );
            if a > b {
                return Err(format!("empty range {part}"));
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().map_err(|_| format!("bad seed {part:?}"))?);
        }
    }
    Ok(out)
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sets: vec![],
        step: 15.0,
        window: "1m".into(),
        stale_after: 45.0,
        verbose: false,
        generator: "rules".into(),
        sweep_every: 30.0,
        adaptive: false,
        min_hold: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seeds" => a.sets.push(parse_range(&value("--seeds")?)?),
            "--step" => {
                a.step = value("--step")?
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|e| format!("--step: {e}"))?;
            }
            "--window" => a.window = value("--window")?,
            "--stale-after" => {
                a.stale_after = value("--stale-after")?
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|e| format!("--stale-after: {e}"))?;
            }
            "--verbose" | "-v" => a.verbose = true,
            "--hold" => match value("--hold")?.as_str() {
                "adaptive" => a.adaptive = true,
                "fixed" => a.adaptive = false,
                other => return Err(format!("--hold: {other} is neither fixed nor adaptive")),
            },
            "--min-hold" => {
                a.min_hold = Some(
                    value("--min-hold")?
                        .parse()
                        .map_err(|e| format!("--min-hold: {e}"))?,
                )
            }
            "--sweep-every" => {
                a.sweep_every = value("--sweep-every")?
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|e| format!("--sweep-every: {e}"))?;
                if a.sweep_every.is_nan() || a.sweep_every < 15.0 {
                    return Err("--sweep-every must be at least 15 (seconds)".into());
                }
            }
            "--generator" => {
                a.generator = value("--generator")?;
                if !matches!(a.generator.as_str(), "rules" | "behaviour") {
                    return Err(format!(
                        "--generator: {} is neither rules nor behaviour",
                        a.generator
                    ));
                }
            }
            "-h" | "--help" => {
                return Err(
                    "usage: quality [--seeds 1-3 --seeds 4-6] [--step 15] [--window 1m] \
                            [--stale-after 45] [--generator rules|behaviour] [--sweep-every 30] [--hold fixed|adaptive] [--min-hold 60s] [--verbose]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.sets.is_empty() {
        a.sets = vec![vec![1, 2, 3], vec![4, 5, 6]];
    }
    Ok(a)
}

fn class_of(k: FaultKind) -> Option<Class> {
    match k {
        FaultKind::RunawayProcess => Some(Class::RunawayProcess),
        FaultKind::ResourceContention => Some(Class::ResourceContention),
        FaultKind::MemoryLeak => Some(Class::MemoryLeak),
        FaultKind::CrashLoop => Some(Class::CrashLoop),
        FaultKind::Healthy => Some(Class::Healthy),
        FaultKind::Threshold | FaultKind::Inconclusive => None,
    }
}

/// With `--hold adaptive`: `diagnose`'s default spec with an adaptive hold on RunawayProcess and
/// ResourceContention, as one selector policy per namespace (empty: the defaults themselves).
fn hold_policies(args: &Args, namespaces: &BTreeSet<String>) -> Vec<RemediationPolicy> {
    if !args.adaptive {
        return vec![];
    }
    let mut spec = diagnose::default_spec();
    for f in &mut spec.faults {
        if matches!(
            f.pattern,
            Pattern::RunawayProcess | Pattern::ResourceContention
        ) {
            let p = f.params.get_or_insert_with(Default::default);
            p.hold = Some(HoldMode::Adaptive);
            p.min_hold = args.min_hold;
        }
    }
    namespaces
        .iter()
        .map(|ns| {
            let mut p = RemediationPolicy::new("quality", spec.clone());
            p.metadata.namespace = Some(ns.clone());
            p
        })
        .collect()
}

async fn homeostat_at(
    c: &PromClient,
    args: &Args,
    at: f64,
    policies: &[RemediationPolicy],
) -> Result<(BTreeMap<(String, String), Pred>, u32, Duration), diagnose::DiagnoseError> {
    let t = Instant::now();
    let r = diagnose::run(
        c,
        &Options {
            at,
            namespace: None,
            policies: policies.to_vec(),
            settings: homeostat::diagnosis::Settings {
                step: args.step,
                window: args.window.clone(),
                stale_after: args.stale_after,
                ..homeostat::diagnosis::Settings::default()
            },
        },
    )
    .await?;
    let took = t.elapsed();
    let out = r
        .findings
        .into_iter()
        .map(|f| {
            let mut pods = f.pods.clone();
            pods.sort();
            (
                (f.target.namespace.clone(), f.target.name.clone()),
                Pred {
                    class: class_of(f.fault),
                    confidence: f.confidence,
                    action: f.action.type_.clone(),
                    pods,
                    message: if f.fault.is_fault() {
                        f.message.clone()
                    } else {
                        // Every fault's verdict: why nothing (or nothing conclusive) was found.
                        f.verdicts
                            .iter()
                            .map(|v| format!("{}={}: {}", v.fault, v.verdict.as_str(), v.message))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    },
                },
            )
        })
        .collect();
    Ok((out, r.queries, took))
}

/// Per-pod values of an instant query, by (namespace, pod).
async fn per_pod(
    c: &PromClient,
    q: &str,
    at: f64,
) -> Result<BTreeMap<(String, String), f64>, PromError> {
    Ok(c.instant(q, at)
        .await?
        .into_iter()
        .filter_map(|s| {
            Some((
                (
                    s.label("namespace")?.to_string(),
                    s.label("pod")?.to_string(),
                ),
                s.last()?.1,
            ))
        })
        .collect())
}

/// The naive baseline: static thresholds on instant values at `at`, per pod.
async fn baseline_at(
    c: &PromClient,
    window: &str,
    at: f64,
) -> Result<BTreeMap<(String, String), BaselineHits>, PromError> {
    let sel = r#"container!="", container!="POD""#;
    let cpu = format!(
        "sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{{sel}}}[{window}])) \
         / sum by (namespace, pod) (last_over_time(kube_pod_container_resource_limits{{resource=\"cpu\"}}[{window}]))"
    );
    let mem = format!(
        "sum by (namespace, pod) (last_over_time(container_memory_working_set_bytes{{{sel}}}[{window}])) \
         / sum by (namespace, pod) (last_over_time(kube_pod_container_resource_limits{{resource=\"memory\"}}[{window}]))"
    );
    let restarts =
        "sum by (namespace, pod) (increase(kube_pod_container_status_restarts_total[5m]))"
            .to_string();
    let throttle = format!(
        "sum by (namespace, pod) (rate(container_cpu_cfs_throttled_periods_total{{{sel}}}[{window}])) \
         / sum by (namespace, pod) (rate(container_cpu_cfs_periods_total{{{sel}}}[{window}]))"
    );
    let (workloads, cpu, mem, restarts, throttle) = futures::try_join!(
        fetch::discover(c, ".+", at, window),
        per_pod(c, &cpu, at),
        per_pod(c, &mem, at),
        per_pod(c, &restarts, at),
        per_pod(c, &throttle, at),
    )?;
    let mut out = BTreeMap::new();
    for (w, pods) in workloads {
        let mut hits = BaselineHits::default();
        for p in pods {
            let key = (p.namespace.clone(), p.name.clone());
            let over = |m: &BTreeMap<(String, String), f64>, bound: f64| {
                m.get(&key).is_some_and(|v| v.is_finite() && *v > bound)
            };
            for (rule, fired) in [
                (Rule::Restarts, over(&restarts, 0.0)),
                (Rule::Throttling, over(&throttle, 0.25)),
                (Rule::Cpu, over(&cpu, 0.8)),
                (Rule::Memory, over(&mem, 0.8)),
            ] {
                if fired {
                    hits.pods.entry(rule).or_default().push(p.name.clone());
                }
            }
        }
        for v in hits.pods.values_mut() {
            v.sort();
        }
        out.insert((w.namespace, w.name), hits);
    }
    Ok(out)
}

async fn run_seed(seed: u64, args: &Args) -> Result<SeedResult, String> {
    let eval = past_anchor();
    let t = Instant::now();
    let mut g = match args.generator.as_str() {
        "behaviour" => behaviour::generate(seed, eval),
        _ => generate(seed, eval),
    };
    at_max_replicas_escalate(&mut g.labels);
    // QUALITY_LABELS=<file>: append every label of the seed to it, one line each (for analysis).
    if let Ok(path) = std::env::var("QUALITY_LABELS") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("QUALITY_LABELS {path}: {e}"))?;
        for l in &g.labels {
            writeln!(
                f,
                "{seed} {} {} {} {} {} {}",
                l.namespace,
                l.name,
                l.class.as_str(),
                l.variant.as_str().replace(' ', "_"),
                l.action,
                l.pods.join(",")
            )
            .map_err(|e| format!("QUALITY_LABELS {path}: {e}"))?;
        }
        if std::env::var_os("QUALITY_LABELS_ONLY").is_some() {
            return Err("QUALITY_LABELS_ONLY: labels written, nothing run".into());
        }
    }
    let samples: usize = g.series.iter().map(|s| s.samples.len()).sum();
    let text = openmetrics(&g.series);
    drop(g.series);
    let gen_time = t.elapsed();
    let dir = tempfile::Builder::new()
        .prefix("homeostat-quality-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let input = dir.path().join("data.om");
    std::fs::write(&input, &text).map_err(|e| e.to_string())?;
    let bytes = text.len();
    drop(text);
    let prom = TestProm::start_from_file(dir, &input);
    eprintln!(
        "seed {seed}: {} workloads, {samples} samples ({:.0} MB OpenMetrics); generated in {:.1?}, \
         backfilled in {:.1?}, Prometheus ready in {:.1?}",
        g.labels.len(),
        bytes as f64 / 1e6,
        gen_time,
        prom.backfill_time,
        prom.startup_time
    );
    let c = prom.client(Duration::from_secs(60));
    let first = eval - ONSET_EARLIEST;
    let steps = ((eval - first) / args.sweep_every).round() as usize;
    let mut obs = vec![];
    let mut eval_times = vec![];
    let mut queries = 0;
    let namespaces: BTreeSet<String> = g.labels.iter().map(|l| l.namespace.clone()).collect();
    let policies = hold_policies(args, &namespaces);
    for k in 0..=steps {
        let at = first + args.sweep_every * k as f64;
        let (h, q, took) = homeostat_at(&c, args, at, &policies)
            .await
            .map_err(|e| format!("seed {seed} at {at}: {e}"))?;
        let b = baseline_at(&c, &args.window, at)
            .await
            .map_err(|e| format!("seed {seed} baseline at {at}: {e}"))?;
        eval_times.push(took);
        queries = q;
        obs.push(Observation {
            at,
            homeostat: h,
            baseline: b,
        });
    }
    // QUALITY_DEBUG=<workload name>: dump its pods' series over the 10 minutes before `eval`.
    if let Ok(name) = std::env::var("QUALITY_DEBUG") {
        let sel = format!(
            r#"pod=~"{}-.+", container!="", container!="POD""#,
            escape_regex(&name)
        );
        let w = &args.window;
        for q in [
            format!("sum by (pod) (rate(container_cpu_usage_seconds_total{{{sel}}}[{w}]))"),
            format!(
                "sum by (pod) (rate(container_cpu_cfs_throttled_periods_total{{{sel}}}[{w}])) \
                 / sum by (pod) (rate(container_cpu_cfs_periods_total{{{sel}}}[{w}]))"
            ),
            format!("sum by (pod) (container_memory_working_set_bytes{{{sel}}}) / 1e6"),
            format!("sum by (pod) (kube_pod_container_status_restarts_total{{{sel}}})"),
        ] {
            eprintln!("{q}");
            match c.range(&q, eval - 615.0, eval, 15.0).await {
                Ok(series) => {
                    for s in series {
                        let v: Vec<String> =
                            s.points.iter().map(|p| format!("{:.2}", p.1)).collect();
                        eprintln!("  {} {}", s.label("pod").unwrap_or("?"), v.join(" "));
                    }
                }
                Err(e) => eprintln!("  {e}"),
            }
        }
    }
    eprintln!(
        "seed {seed}: {} evaluations of all workloads, {queries} queries each, {:.1?} total",
        obs.len(),
        eval_times.iter().sum::<Duration>()
    );
    Ok(SeedResult {
        seed,
        eval,
        labels: g.labels,
        observations: obs,
        eval_times,
        queries,
    })
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut sets = vec![];
    for seeds in &args.sets {
        let mut results = vec![];
        for &seed in seeds {
            match run_seed(seed, &args).await {
                Ok(r) => results.push(r),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        sets.push((seeds.clone(), results));
    }
    // The baseline's rule order is chosen on the first set (tuning), in its favour.
    let order = score::best_baseline_order(&sets[0].1);
    println!("generator: {}", args.generator);
    println!(
        "homeostat quality benchmark (step {}s, window {}, stale after {}s; diagnose at the \
         evaluation time and every {:.0}s over the {:.0} min before it)",
        args.step,
        args.window,
        args.stale_after,
        args.sweep_every,
        ONSET_EARLIEST / 60.0
    );
    println!(
        "baseline rule order (best macro-F1 on seeds {}): {}",
        score::seeds_label(&sets[0].0),
        order
            .iter()
            .map(|r| r.describe())
            .collect::<Vec<_>>()
            .join(" > ")
    );
    for (i, (seeds, results)) in sets.iter().enumerate() {
        let name = match (i, sets.len()) {
            (0, n) if n > 1 => "tuning",
            (_, n) if n > 1 => "held-out",
            _ => "seeds",
        };
        print!(
            "{}",
            score::report(name, seeds, results, &order, args.verbose)
        );
    }
}

/// A contention of a workload already at the default policy's `maxReplicas` cannot be scaled: the
/// correct action is to hand it to a person (what the engine's planning does), not a Scale beyond
/// the configured bound. Both generators label every contention Scale; this corrects the label.
fn at_max_replicas_escalate(labels: &mut [scenarios::Label]) {
    let max = default_faults()
        .iter()
        .filter(|f| f.pattern == Pattern::ResourceContention)
        .find_map(|f| action_for(f).scale.map(|s| s.max_replicas));
    let Some(max) = max else {
        return;
    };
    for l in labels {
        if l.class == Class::ResourceContention
            && l.action == "Scale"
            && l.replicas >= max.max(0) as usize
        {
            l.action = "Escalate";
        }
    }
}
