//! The query path against a horizontally scaled PromQL engine: a real VictoriaMetrics single-node
//! (built from its Go module by `e2e/victoriametrics/build`) and a real Prometheus serve the same
//! cAdvisor and kube-state-metrics series, and `homeostat::diagnose::run` (discovery, then the
//! sweep's plan/fetch/evaluate with the standard queries) must reach the same verdicts, pods and
//! actions on both.
//!
//! Where the engines' numbers differ (MetricsQL's `rate` does not extrapolate and reads the sample
//! before the window; bare selectors look back by the step, not 5 minutes), the test prints the
//! difference per standard signal: run with `--nocapture` to see it.

mod support;

use std::{collections::BTreeMap, time::Duration};

use homeostat::{
    diagnose::{self, Finding, Options},
    diagnosis::{
        Settings, StdSignal,
        fetch::{QuerySet, workload_vars},
    },
    prometheus::{PromClient, Series},
    v1alpha1::FaultKind,
};
use support::{
    SeriesData, TestProm,
    k8s::{Emit, Pod, PodState, Scrape, pod_series, replicaset_owner, status_series},
    noise, openmetrics, past_anchor,
    vm::TestVm,
};

const MIB: f64 = 1024.0 * 1024.0;
const HISTORY: f64 = 3600.0;
const NS: &str = "vmcmp";
const TIMEOUT: Duration = Duration::from_secs(20);

fn idle(key: u64, t: f64) -> PodState {
    PodState {
        cpu: 0.15 * (1.0 + 0.2 * noise(key, t)),
        throttle: 0.01,
        memory: 180.0 * MIB * (1.0 + 0.01 * noise(key + 1, t)),
        restarts: 0,
    }
}

/// Container restarts of a crash loop that began at `onset`: kubelet's back-off (10 s doubling to
/// 5 min) plus 5 s of running before each crash; `(restarts, waiting in back-off)` at `t`.
fn crash_loop(onset: f64, t: f64) -> (u32, bool) {
    let (mut at, mut backoff, mut n) = (onset, 10.0_f64, 0);
    while at <= t {
        n += 1;
        if t < at + 5.0 {
            return (n, false);
        }
        at += 5.0 + backoff;
        backoff = (backoff * 2.0).min(300.0);
    }
    (n, n > 0)
}

/// What one pod of a Deployment does and how it is scraped.
struct PodPlan {
    state: Box<dyn Fn(f64) -> PodState>,
    /// Whether cAdvisor's scrape at `t` succeeded.
    cadvisor_up: Box<dyn Fn(f64) -> bool>,
    /// kube-state-metrics' waiting reason at `t`.
    waiting: Box<dyn Fn(f64) -> Option<&'static str>>,
    /// kube-state-metrics' last-terminated reason at `t`.
    last_terminated: Box<dyn Fn(f64) -> Option<&'static str>>,
}

impl PodPlan {
    fn idle(key: u64) -> Self {
        Self {
            state: Box::new(move |t| idle(key, t)),
            cadvisor_up: Box::new(|_| true),
            waiting: Box::new(|_| None),
            last_terminated: Box::new(|_| None),
        }
    }

    fn doing(state: impl Fn(f64) -> PodState + 'static) -> Self {
        Self {
            state: Box::new(state),
            ..Self::idle(0)
        }
    }
}

/// A Deployment's series: pods `<name>-5c7f9-<i>`, cAdvisor every 15 s, kube-state-metrics every
/// 15 s four seconds later, over the hour before `at`.
fn deployment(name: &str, at: f64, pods: Vec<PodPlan>) -> Vec<SeriesData> {
    let cadvisor = Scrape {
        from: at - HISTORY,
        to: at + 1.0,
        interval: 15.0,
        offset: 0.0,
    };
    let ksm = Scrape {
        offset: 4.0,
        ..cadvisor
    };
    let rs = format!("{name}-5c7f9");
    let mut out = vec![replicaset_owner(
        NS,
        &rs,
        name,
        ksm,
        cadvisor.from,
        cadvisor.to,
    )];
    for (i, plan) in pods.into_iter().enumerate() {
        let mut pod = Pod::of_replicaset(NS, &rs, &i.to_string(), at - 2.0 * HISTORY);
        pod.node = format!("node-{}", i % 3);
        out.extend(pod_series(
            &pod,
            cadvisor,
            ksm,
            &plan.state,
            &plan.cadvisor_up,
            |_| true,
            Emit { pod_level: true },
        ));
        out.extend(status_series(
            &pod,
            ksm,
            &plan.waiting,
            &plan.last_terminated,
            |_| true,
        ));
    }
    out
}

/// A workload's name, its expected finding and the indexes of the pods it implicates.
type Want = (&'static str, FaultKind, Vec<usize>);

/// The workloads, and what each should be found to be.
fn scenarios(at: f64) -> (Vec<SeriesData>, Vec<Want>) {
    let mut d = vec![];
    let mut want = vec![];
    let idle_pods = |base: u64, n: u64| (0..n).map(|i| PodPlan::idle(base + i)).collect();

    d.extend(deployment("api", at, idle_pods(0, 3)));
    want.push(("api", FaultKind::Healthy, vec![]));

    // Pod 1 pinned at its limit for the last 20 minutes.
    let mut pods: Vec<PodPlan> = idle_pods(10, 4);
    pods[1] = PodPlan::doing(move |t| {
        if t >= at - 1200.0 {
            PodState {
                cpu: 0.97,
                throttle: 0.6,
                ..idle(11, t)
            }
        } else {
            idle(11, t)
        }
    });
    d.extend(deployment("search", at, pods));
    want.push(("search", FaultKind::RunawayProcess, vec![1]));

    // Every replica at its limit and throttled for the last 15 minutes.
    let pods = (0..3)
        .map(|i| {
            PodPlan::doing(move |t| {
                if t >= at - 900.0 {
                    PodState {
                        cpu: 0.98,
                        throttle: 0.45 + 0.05 * noise(20 + i, t),
                        ..idle(20 + i, t)
                    }
                } else {
                    idle(20 + i, t)
                }
            })
        })
        .collect();
    d.extend(deployment("checkout", at, pods));
    want.push(("checkout", FaultKind::ResourceContention, vec![0, 1, 2]));

    // Pod 0 leaks ~150 KB/s from 20 minutes ago: 400 MB of 537 MB now.
    let mut pods: Vec<PodPlan> = idle_pods(30, 3);
    pods[0] = PodPlan::doing(move |t| {
        let base = idle(30, t);
        if t >= at - 1200.0 {
            PodState {
                memory: 220e6 + (t - (at - 1200.0)) * 150e3 + 1e6 * noise(39, t),
                ..base
            }
        } else {
            base
        }
    });
    d.extend(deployment("cart", at, pods));
    want.push(("cart", FaultKind::MemoryLeak, vec![0]));

    // Pod 1 crash-loops since 4 minutes ago: restarts, CrashLoopBackOff, last terminated Error.
    let onset = at - 240.0;
    let mut pods: Vec<PodPlan> = idle_pods(40, 2);
    pods[1] = PodPlan {
        state: Box::new(move |t| {
            let base = idle(41, t);
            if t >= onset {
                PodState {
                    cpu: 0.01,
                    memory: 20.0 * MIB,
                    restarts: crash_loop(onset, t).0,
                    ..base
                }
            } else {
                base
            }
        }),
        cadvisor_up: Box::new(|_| true),
        waiting: Box::new(move |t| {
            (t >= onset && crash_loop(onset, t).1).then_some("CrashLoopBackOff")
        }),
        last_terminated: Box::new(move |t| (t >= onset + 5.0).then_some("Error")),
    };
    d.extend(deployment("worker", at, pods));
    want.push(("worker", FaultKind::CrashLoop, vec![1]));

    // A 75 s burst on one pod, shorter than the runaway window.
    let mut pods: Vec<PodPlan> = idle_pods(50, 3);
    pods[2] = PodPlan::doing(move |t| {
        if t >= at - 75.0 {
            PodState {
                cpu: 0.95,
                throttle: 0.6,
                ..idle(52, t)
            }
        } else {
            idle(52, t)
        }
    });
    d.extend(deployment("frontend", at, pods));
    want.push(("frontend", FaultKind::Healthy, vec![]));

    // Healthy, but cAdvisor misses every fourth scrape: a 60 s window holds 3 samples, not 4.
    let mut pods: Vec<PodPlan> = idle_pods(60, 3);
    for (i, p) in pods.iter_mut().enumerate() {
        let phase = i as i64;
        p.cadvisor_up = Box::new(move |t| ((t / 15.0).round() as i64 + phase) % 4 != 0);
    }
    d.extend(deployment("gappy", at, pods));
    want.push(("gappy", FaultKind::Healthy, vec![]));

    // cAdvisor lost pod 1 five minutes ago (kube-state-metrics still lists it): no verdict on
    // missing data, never healthy by zero.
    let mut pods: Vec<PodPlan> = idle_pods(70, 3);
    pods[1].cadvisor_up = Box::new(move |t| t < at - 300.0);
    d.extend(deployment("stale", at, pods));
    want.push(("stale", FaultKind::Inconclusive, vec![]));

    // Pod 0 crash-looped from 15 to 5 minutes ago, then kept running: its back-off series ended
    // 5 minutes ago. Both engines still report the crash loop (the detector looks back over the
    // capped 5-minute back-off), though they disagree on the series: imported data carries no
    // staleness marker, so Prometheus' bare selector repeats the last back-off sample for its
    // 5-minute lookback, while MetricsQL's ends it after about one scrape interval.
    let (from, to) = (at - 900.0, at - 300.0);
    let mut pods: Vec<PodPlan> = idle_pods(80, 2);
    pods[0] = PodPlan {
        state: Box::new(move |t| PodState {
            restarts: crash_loop(from, t.min(to)).0,
            ..idle(80, t)
        }),
        cadvisor_up: Box::new(|_| true),
        waiting: Box::new(move |t| {
            (t >= from && t < to && crash_loop(from, t).1).then_some("CrashLoopBackOff")
        }),
        last_terminated: Box::new(move |t| (t >= from + 5.0).then_some("Error")),
    };
    d.extend(deployment("recovered", at, pods));
    want.push(("recovered", FaultKind::CrashLoop, vec![0]));

    (d, want)
}

fn options(at: f64) -> Options {
    Options {
        at,
        namespace: Some(NS.into()),
        policies: vec![],
        settings: Settings::default(),
    }
}

fn pod_index(pod: &str) -> usize {
    pod.rsplit('-')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or(usize::MAX)
}

/// What must be equal between the engines: the finding, its pods, the action and whether it is due.
fn essence(f: &Finding) -> (FaultKind, Vec<usize>, String, bool) {
    let mut pods: Vec<usize> = f.pods.iter().map(|p| pod_index(p)).collect();
    pods.sort();
    (f.fault, pods, f.action.type_.clone(), f.due)
}

#[tokio::test]
async fn victoriametrics_gives_the_same_verdicts_as_prometheus() {
    let at = past_anchor();
    let (data, want) = scenarios(at);
    let prom = TestProm::start(&openmetrics(&data));
    let vm = TestVm::start(&data);
    eprintln!(
        "prometheus ready in {:?}, victoria-metrics in {:?} ({} series)",
        prom.startup_time,
        vm.startup_time,
        data.len()
    );
    let (pc, vc) = (prom.client(TIMEOUT), vm.client(TIMEOUT));
    let p = diagnose::run(&pc, &options(at))
        .await
        .expect("diagnose against Prometheus");
    let v = diagnose::run(&vc, &options(at))
        .await
        .expect("diagnose against VictoriaMetrics");
    assert_eq!(
        p.queries, v.queries,
        "the same plan is sent to both engines"
    );

    let names = |r: &diagnose::Report| -> Vec<String> {
        r.findings.iter().map(|f| f.target.name.clone()).collect()
    };
    assert_eq!(
        names(&p),
        names(&v),
        "discovery through kube_pod_owner / kube_replicaset_owner finds the same workloads"
    );
    let mut wrong = vec![];
    for (name, kind, pods) in &want {
        let find =
            |r: &diagnose::Report| r.findings.iter().find(|f| f.target.name == *name).cloned();
        let (Some(fp), Some(fv)) = (find(&p), find(&v)) else {
            wrong.push(format!("{name}: missing (prometheus {:?})", names(&p)));
            continue;
        };
        if fp.fault != *kind || essence(&fp).1 != *pods {
            wrong.push(format!(
                "{name}: Prometheus found {:?} on pods {:?}, want {kind:?} on {pods:?}: {}",
                fp.fault,
                essence(&fp).1,
                fp.message
            ));
        }
        if essence(&fp) != essence(&fv) {
            wrong.push(format!(
                "{name}: Prometheus {:?} ({}) but VictoriaMetrics {:?} ({})",
                essence(&fp),
                fp.message,
                essence(&fv),
                fv.message
            ));
        }
        for (a, b) in fp.verdicts.iter().zip(&fv.verdicts) {
            if a.verdict != b.verdict {
                wrong.push(format!(
                    "{name}/{}: Prometheus {:?} ({}) but VictoriaMetrics {:?} ({})",
                    a.fault, a.verdict, a.message, b.verdict, b.message
                ));
            }
        }
    }
    report_differences(&pc, &vc, at).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Per standard signal over the last 30 minutes: series and points each engine returns, points
/// only one has, and the largest relative difference of the common points. Printed, not asserted:
/// the verdicts above are what must agree.
async fn report_differences(pc: &PromClient, vc: &PromClient, at: f64) {
    let set = QuerySet::standard();
    let vars = workload_vars(NS, "", &[], "60s").set("pods", ".+");
    let step = Settings::default().step;
    eprintln!(
        "{:<15} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>9}  worst; points only one has",
        "signal", "series", "series", "points", "points", "only", "only", ">1 %", "max rel"
    );
    eprintln!(
        "{:<15} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>9}",
        "", "prom", "vm", "prom", "vm", "prom", "vm", "apart", "diff"
    );
    for sig in StdSignal::ALL {
        let q = vars
            .render(set.template(sig))
            .expect("standard templates render");
        let (a, b) = (
            pc.range(&q, at - 1800.0, at, step).await,
            vc.range(&q, at - 1800.0, at, step).await,
        );
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                eprintln!(
                    "{:<15} prometheus {a:?} victoria-metrics {b:?}",
                    sig.as_str()
                );
                continue;
            }
        };
        let (pa, pb) = (points(&a), points(&b));
        let only = |x: &BTreeMap<(String, i64), f64>, y: &BTreeMap<(String, i64), f64>| {
            x.keys()
                .filter(|k| !y.contains_key(*k))
                .map(|k| format!("{}@{:+}s", k.0, k.1 - at as i64))
                .collect::<Vec<_>>()
        };
        let (only_a, only_b) = (only(&pa, &pb), only(&pb, &pa));
        let mut apart: BTreeMap<&str, usize> = BTreeMap::new();
        let mut worst = (0.0_f64, String::new());
        for (k, va) in &pa {
            let Some(vb) = pb.get(k) else { continue };
            let rel = if va.abs().max(vb.abs()) < 1e-12 {
                0.0
            } else {
                (va - vb).abs() / va.abs().max(vb.abs())
            };
            if rel > 0.01 {
                *apart
                    .entry(k.0.split("-5c7f9").next().unwrap_or("?"))
                    .or_default() += 1;
            }
            if rel > worst.0 {
                worst = (
                    rel,
                    format!("{} @{:+.0}s {va:.4} vs {vb:.4}", k.0, k.1 as f64 - at),
                );
            }
        }
        let examples: Vec<String> = only_a
            .iter()
            .take(2)
            .map(|k| format!("prom {k}"))
            .chain(only_b.iter().take(2).map(|k| format!("vm {k}")))
            .collect();
        eprintln!(
            "{:<15} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>9.4}  {}; {}; >1 % in {:?}",
            sig.as_str(),
            a.len(),
            b.len(),
            pa.len(),
            pb.len(),
            only_a.len(),
            only_b.len(),
            apart.values().sum::<usize>(),
            worst.0,
            worst.1,
            examples.join(" "),
            apart
        );
    }
}

/// `(pod[/reason], unix seconds) -> value` of an answer.
fn points(series: &[Series]) -> BTreeMap<(String, i64), f64> {
    let mut out = BTreeMap::new();
    for s in series {
        let mut key = s.label("pod").unwrap_or("?").to_string();
        if let Some(r) = s.label("reason") {
            key = format!("{key}/{r}");
        }
        for (t, v) in &s.points {
            out.insert((key.clone(), t.round() as i64), *v);
        }
    }
    out
}
