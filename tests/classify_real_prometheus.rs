//! Classification through real PromQL: cAdvisor and kube-state-metrics series of several workloads
//! are backfilled into a real Prometheus and `homeostat::diagnose::run` (the `diagnose` command's
//! code path) classifies them: discovery through `kube_pod_owner`/`kube_replicaset_owner`, rate()
//! over counters, the throttling division, last_over_time for gauges and limits.

mod support;

use std::time::{Duration, Instant};

use homeostat::{
    diagnose::{self, Finding, Options},
    diagnosis::{Settings, Subject, fetch::PodRef, sweep},
    v1alpha1::{FaultKind, RemediationPolicySpec},
};
use support::{
    SeriesData, TestProm,
    k8s::{Emit, Pod, PodState, Scrape, pod_series, replicaset_owner},
    noise, openmetrics, past_anchor,
};

const MIB: f64 = 1024.0 * 1024.0;
const HISTORY: f64 = 3600.0;

/// Pod names of a workload: `<rs>-<suffix>` for Deployments, `<name>-<i>` for StatefulSets.
fn pod_names(name: &str, statefulset: bool, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if statefulset {
                format!("{name}-{i}")
            } else {
                format!(
                    "{name}-6d4cf56db7-{}",
                    ["x7k2p", "b9qzt", "m4wrd", "c8vnl"][i % 4]
                ) + &if i >= 4 {
                    format!("{i}")
                } else {
                    String::new()
                }
            }
        })
        .collect()
}

/// The series of a workload of `n` pods (1 core, 512 MiB limits) whose pod `i` does `state(i, t)`,
/// scraped every 15 s over the hour before `at`.
fn workload(
    ns: &str,
    name: &str,
    statefulset: bool,
    n: usize,
    at: f64,
    state: impl Fn(usize, f64) -> PodState + Copy,
) -> Vec<SeriesData> {
    let scrape = Scrape {
        from: at - HISTORY,
        to: at + 1.0,
        interval: 15.0,
        offset: 0.0,
    };
    let ksm = Scrape {
        offset: 4.0,
        ..scrape
    };
    let rs = format!("{name}-6d4cf56db7");
    let mut out = vec![];
    if !statefulset {
        out.push(replicaset_owner(ns, &rs, name, ksm, scrape.from, scrape.to));
    }
    for (i, pod_name) in pod_names(name, statefulset, n).into_iter().enumerate() {
        let mut pod = Pod::of_replicaset(ns, &rs, "x", at - 2.0 * HISTORY);
        pod.name = pod_name;
        if statefulset {
            pod.owner_kind = "StatefulSet";
            pod.owner_name = name.into();
        }
        pod.node = format!("node-{}", i % 3);
        out.extend(pod_series(
            &pod,
            scrape,
            ksm,
            move |t| state(i, t),
            |_| true,
            |_| true,
            Emit { pod_level: true },
        ));
    }
    out
}

fn idle(key: u64, t: f64) -> PodState {
    PodState {
        cpu: 0.15 * (1.0 + 0.2 * noise(key, t)),
        throttle: 0.01,
        memory: 180.0 * MIB * (1.0 + 0.01 * noise(key + 1, t)),
        restarts: 0,
    }
}

/// Container restarts of a crash loop that began at `onset`: kubelet's back-off (10 s doubling to
/// 5 min) plus 5 s of running before each crash.
fn crash_loop_restarts(onset: f64, t: f64) -> u32 {
    let (mut at, mut backoff, mut n) = (onset, 10.0_f64, 0);
    while at <= t {
        n += 1;
        at += 5.0 + backoff;
        backoff = (backoff * 2.0).min(300.0);
    }
    n
}

fn scenarios(at: f64) -> Vec<SeriesData> {
    let ns = "shop";
    let mut d = vec![];
    d.extend(workload(ns, "api", false, 3, at, |i, t| idle(i as u64, t)));
    // One pod pinned at its limit for the last 20 minutes.
    d.extend(workload(ns, "search", false, 4, at, |i, t| {
        if i == 1 && t >= at - 1200.0 {
            PodState {
                cpu: 0.97,
                throttle: 0.6,
                ..idle(10 + i as u64, t)
            }
        } else {
            idle(10 + i as u64, t)
        }
    }));
    // Every replica at its limit and throttled for the last 15 minutes.
    d.extend(workload(ns, "checkout", false, 3, at, |i, t| {
        if t >= at - 900.0 {
            PodState {
                cpu: 0.98,
                throttle: 0.45 + 0.05 * noise(20 + i as u64, t),
                ..idle(20 + i as u64, t)
            }
        } else {
            idle(20 + i as u64, t)
        }
    }));
    // Pod 0 leaks ~150 KB/s from 20 minutes ago: 400 MB of 537 MB now, ~15 minutes left.
    d.extend(workload(ns, "cart", false, 3, at, |i, t| {
        let base = idle(30 + i as u64, t);
        if i == 0 && t >= at - 1200.0 {
            PodState {
                memory: 220e6 + (t - (at - 1200.0)) * 150e3 + 1e6 * noise(39, t),
                ..base
            }
        } else {
            base
        }
    }));
    // Pod 1 crash-loops since 4 minutes ago.
    d.extend(workload(ns, "worker", false, 2, at, |i, t| {
        let base = idle(40 + i as u64, t);
        if i == 1 && t >= at - 240.0 {
            PodState {
                cpu: 0.01,
                memory: 20.0 * MIB,
                restarts: crash_loop_restarts(at - 240.0, t),
                ..base
            }
        } else {
            base
        }
    }));
    // A 75 s burst on one pod, shorter than the runaway window (120 s).
    d.extend(workload(ns, "frontend", false, 3, at, |i, t| {
        if i == 2 && t >= at - 75.0 {
            PodState {
                cpu: 0.95,
                throttle: 0.6,
                ..idle(50 + i as u64, t)
            }
        } else {
            idle(50 + i as u64, t)
        }
    }));
    // A healthy StatefulSet.
    d.extend(workload(ns, "db", true, 2, at, |i, t| {
        idle(60 + i as u64, t)
    }));
    d
}

fn options(at: f64, namespace: &str) -> Options {
    Options {
        at,
        namespace: Some(namespace.into()),
        policies: vec![],
        settings: Settings::default(),
    }
}

fn get<'a>(findings: &'a [Finding], name: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.target.name == name)
        .unwrap_or_else(|| panic!("no finding for {name}: {findings:#?}"))
}

#[tokio::test]
async fn every_workload_gets_its_finding_through_real_promql() {
    let at = past_anchor();
    let prom = TestProm::start(&openmetrics(&scenarios(at)));
    let c = prom.client(Duration::from_secs(10));
    let report = diagnose::run(&c, &options(at, "shop"))
        .await
        .expect("diagnose");
    let f = &report.findings;
    let names: Vec<(&str, &str)> = f
        .iter()
        .map(|x| (x.target.kind.as_str(), x.target.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("Deployment", "api"),
            ("Deployment", "cart"),
            ("Deployment", "checkout"),
            ("Deployment", "frontend"),
            ("Deployment", "search"),
            ("Deployment", "worker"),
            ("StatefulSet", "db"),
        ],
        "discovery through kube_pod_owner / kube_replicaset_owner"
    );
    let expect: [(&str, FaultKind, &[usize], &str); 7] = [
        ("api", FaultKind::Healthy, &[], "None"),
        ("search", FaultKind::RunawayProcess, &[1], "RestartPod"),
        (
            "checkout",
            FaultKind::ResourceContention,
            &[0, 1, 2],
            "Scale",
        ),
        ("cart", FaultKind::MemoryLeak, &[0], "RestartPod"),
        ("worker", FaultKind::CrashLoop, &[1], "Escalate"),
        ("frontend", FaultKind::Healthy, &[], "None"),
        ("db", FaultKind::Healthy, &[], "None"),
    ];
    let mut wrong = vec![];
    for (name, kind, pods, action) in expect {
        let x = get(f, name);
        let mut want: Vec<String> = pods
            .iter()
            .map(|i| pod_names(name, name == "db", 4)[*i].clone())
            .collect();
        want.sort();
        let mut got = x.pods.clone();
        got.sort();
        if x.fault != kind || got != want || x.action.type_ != action {
            wrong.push(format!(
                "{name}: expected {kind:?} {want:?} {action}, got {:?} {got:?} {} ({})",
                x.fault, x.action.type_, x.message
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The evidence carries the numbers PromQL computed.
    let search = get(f, "search");
    let cpu = search.evidence.first().expect("runaway evidence");
    assert!((cpu.value - 0.97).abs() < 0.01, "{cpu:?}");
    let checkout = get(f, "checkout");
    let throttle = checkout.evidence.first().expect("contention evidence");
    assert!((throttle.value - 0.45).abs() < 0.06, "{throttle:?}");

    // Three discovery queries plus one range query per standard signal, for all workloads at once.
    assert_eq!(report.queries, 3 + 8, "queries per diagnosis");
}

#[tokio::test]
async fn a_crash_loop_is_still_seen_once_the_back_off_is_at_its_cap() {
    // Twenty minutes into a crash loop the container restarts about every 5 minutes.
    let at = past_anchor();
    let data = workload("late", "worker", false, 2, at, |i, t| {
        let base = idle(70 + i as u64, t);
        if i == 0 && t >= at - 1200.0 {
            PodState {
                cpu: 0.01,
                memory: 20.0 * MIB,
                restarts: crash_loop_restarts(at - 1200.0, t),
                ..base
            }
        } else {
            base
        }
    });
    let prom = TestProm::start(&openmetrics(&data));
    let c = prom.client(Duration::from_secs(10));
    let report = diagnose::run(&c, &options(at, "late"))
        .await
        .expect("diagnose");
    let x = get(&report.findings, "worker");
    assert_eq!(x.fault, FaultKind::CrashLoop, "{x:#?}");
    assert_eq!(x.pods, [pod_names("worker", false, 1)[0].clone()]);
    assert_eq!(x.action.type_, "Escalate");
}

#[tokio::test]
async fn cost_of_one_evaluation_of_a_twenty_pod_deployment() {
    let at = past_anchor();
    let data = workload("big", "web", false, 20, at, |i, t| {
        if i == 7 && t >= at - 900.0 {
            PodState {
                cpu: 0.95,
                throttle: 0.5,
                ..idle(100 + i as u64, t)
            }
        } else {
            idle(100 + i as u64, t)
        }
    });
    let samples: usize = data.iter().map(|s| s.samples.len()).sum();
    let prom = TestProm::start(&openmetrics(&data));
    let c = prom.client(Duration::from_secs(10));
    let runaway_pod = pod_names("web", false, 20)[7].clone();

    // The `diagnose` path: discovery + one batch of range queries.
    let runs = 10;
    let mut times = vec![];
    let mut queries = vec![];
    for _ in 0..runs {
        let t = Instant::now();
        let r = diagnose::run(&c, &options(at, "big"))
            .await
            .expect("diagnose");
        times.push(t.elapsed());
        queries.push(r.queries);
        let f = get(&r.findings, "web");
        assert_eq!(f.fault, FaultKind::RunawayProcess, "{f:#?}");
        assert_eq!(f.pods, std::slice::from_ref(&runaway_pod));
    }
    assert!(queries.iter().all(|q| *q == 11), "{queries:?}");
    times.sort();

    // The operator path: one policy, its pods known, six range queries.
    let spec: RemediationPolicySpec = serde_json::from_value(serde_json::json!({
        "targetRef": {"kind": "Deployment", "name": "web"},
        "faults": [
            {"name": "crashloop", "pattern": "CrashLoop", "for": "5m"},
            {"name": "runaway", "pattern": "RunawayProcess", "for": "2m"},
            {"name": "leak", "pattern": "MemoryLeak", "for": "10m"},
            {"name": "contention", "pattern": "ResourceContention", "for": "3m"},
        ],
    }))
    .expect("a valid policy spec");
    let pods: Vec<PodRef> = pod_names("web", false, 20)
        .into_iter()
        .map(|name| PodRef {
            namespace: "big".into(),
            name,
            started_at: Some(at - 2.0 * HISTORY),
        })
        .collect();
    let settings = Settings::default();
    let mut op_times = vec![];
    for _ in 0..runs {
        let t = Instant::now();
        let subject = Subject {
            spec: &spec,
            namespace: "big",
            workload: "web",
            pods: &pods,
        };
        let ev = sweep::evaluate_one(&c, &subject, at, &settings).await;
        op_times.push(t.elapsed());
        assert!(ev.fetch_error.is_none(), "{:?}", ev.fetch_error);
        assert_eq!(ev.queries, 8);
        let runaway = ev
            .verdicts
            .iter()
            .find(|v| v.fault == "runaway")
            .expect("a runaway verdict");
        assert_eq!(runaway.verdict.kind, FaultKind::RunawayProcess);
    }
    op_times.sort();
    println!(
        "20-pod Deployment ({samples} backfilled samples), {runs} evaluations each:\n  \
         diagnose (discovery + batch): {} queries/evaluation, wall time min {:?} median {:?} max {:?}\n  \
         operator sweep (one workload): {} queries/evaluation, wall time min {:?} median {:?} max {:?}",
        queries[0],
        times[0],
        times[runs / 2],
        times[runs - 1],
        6,
        op_times[0],
        op_times[runs / 2],
        op_times[runs - 1],
    );
}
