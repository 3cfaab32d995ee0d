//! The verdict table: series in, verdict out.

use std::collections::BTreeMap;

use super::*;
use crate::{
    prometheus::Series,
    v1alpha1::{ComparisonOp, Duration, ThresholdCondition},
};

const NOW: f64 = 10_000.0;
const STEP: f64 = 15.0;

fn ctx() -> EvalContext {
    EvalContext {
        now: NOW,
        step: STEP,
        stale_after: 60.0,
    }
}

/// Points every STEP over the last `secs` seconds, value from `f(t_since_start_of_range)`.
fn series(secs: f64, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    let n = (secs / STEP) as usize;
    (0..=n)
        .map(|i| {
            let t = NOW - secs + i as f64 * STEP;
            (t, f(t - (NOW - secs)))
        })
        .collect()
}

fn pod(name: &str) -> PodSeries {
    PodSeries {
        name: name.into(),
        started_at: Some(NOW - 3600.0),
        cpu: series(600.0, |_| 0.1),
        throttling: series(600.0, |_| 0.01),
        memory: series(600.0, |_| 100e6),
        restarts: series(600.0, |_| 0.0),
        backoff: vec![],
        last_terminated: None,
        cpu_limit: Some(1.0),
        memory_limit: Some(512e6),
    }
}

fn workload(pods: Vec<PodSeries>) -> WorkloadSeries {
    WorkloadSeries {
        pods,
        signals: BTreeMap::new(),
    }
}

fn fault(pattern: Pattern, secs: u64) -> FaultSpec {
    FaultSpec {
        name: pattern.as_str().to_lowercase(),
        pattern,
        for_: Duration::from_secs(secs),
        signal: None,
        condition: None,
        params: None,
        action: None,
        fallbacks: vec![],
    }
}

fn verdict(pattern: Pattern, secs: u64, w: &WorkloadSeries) -> Verdict {
    evaluate(&fault(pattern, secs), w, &ctx())
}

fn three_with(hot: PodSeries) -> WorkloadSeries {
    workload(vec![pod("web-a"), hot, pod("web-c")])
}

struct Case {
    name: &'static str,
    pattern: Pattern,
    for_secs: u64,
    input: WorkloadSeries,
    expect: FaultKind,
    pods: &'static [&'static str],
}

fn table() -> Vec<Case> {
    let hot = |name: &str, f: fn(f64) -> f64| PodSeries {
        cpu: series(600.0, f),
        ..pod(name)
    };
    vec![
        Case {
            name: "healthy siblings",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: workload(vec![pod("web-a"), pod("web-b"), pod("web-c")]),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "one pod far above its siblings, sustained",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: three_with(hot("web-b", |_| 0.95)),
            expect: FaultKind::RunawayProcess,
            pods: &["web-b"],
        },
        Case {
            name: "a burst shorter than `for`",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: three_with(hot("web-b", |t| if t > 540.0 { 0.95 } else { 0.1 })),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "pod just started, busy while warming up",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: three_with(PodSeries {
                started_at: Some(NOW - 30.0),
                cpu: series(30.0, |_| 0.95),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "single replica at its limit is not called runaway",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: workload(vec![hot("web-a", |_| 0.99)]),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "stale cpu series",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: three_with(PodSeries {
                cpu: series(600.0, |_| 0.1)
                    .into_iter()
                    .filter(|(t, _)| *t < NOW - 120.0)
                    .collect(),
                ..pod("web-b")
            }),
            expect: FaultKind::Inconclusive,
            pods: &[],
        },
        Case {
            name: "missing cpu series",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: three_with(PodSeries {
                cpu: vec![],
                started_at: Some(NOW - 3600.0),
                ..pod("web-b")
            }),
            expect: FaultKind::Inconclusive,
            pods: &[],
        },
        Case {
            name: "NaN samples in a runaway pod still judged on the rest",
            pattern: Pattern::RunawayProcess,
            for_secs: 300,
            input: three_with(PodSeries {
                cpu: series(600.0, |t| {
                    if (t as i64 / 15) % 40 == 7 {
                        f64::NAN
                    } else {
                        0.95
                    }
                }),
                ..pod("web-b")
            }),
            expect: FaultKind::RunawayProcess,
            pods: &["web-b"],
        },
        Case {
            name: "gappy data (missed scrapes) is not enough persistence",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: three_with(PodSeries {
                cpu: series(600.0, |_| 0.95)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| i % 3 != 0)
                    .map(|(_, p)| p)
                    .collect(),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "two replicas, one runaway",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: workload(vec![pod("web-a"), hot("web-b", |_| 0.9)]),
            expect: FaultKind::RunawayProcess,
            pods: &["web-b"],
        },
        Case {
            name: "all replicas busy together is not runaway",
            pattern: Pattern::RunawayProcess,
            for_secs: 120,
            input: workload(vec![
                hot("web-a", |_| 0.95),
                hot("web-b", |_| 0.97),
                hot("web-c", |_| 0.96),
            ]),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "contention: every replica throttled",
            pattern: Pattern::ResourceContention,
            for_secs: 180,
            input: workload(
                ["web-a", "web-b", "web-c"]
                    .iter()
                    .map(|n| PodSeries {
                        cpu: series(600.0, |_| 0.98),
                        throttling: series(600.0, |_| 0.5),
                        ..pod(n)
                    })
                    .collect(),
            ),
            expect: FaultKind::ResourceContention,
            pods: &["web-a", "web-b", "web-c"],
        },
        Case {
            name: "contention: one throttled pod of three is not contention",
            pattern: Pattern::ResourceContention,
            for_secs: 180,
            input: three_with(PodSeries {
                throttling: series(600.0, |_| 0.6),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "contention: single replica starved",
            pattern: Pattern::ResourceContention,
            for_secs: 180,
            input: workload(vec![PodSeries {
                throttling: series(600.0, |_| 0.4),
                ..pod("web-a")
            }]),
            expect: FaultKind::ResourceContention,
            pods: &["web-a"],
        },
        Case {
            name: "leak: steady climb towards the limit",
            pattern: Pattern::MemoryLeak,
            for_secs: 300,
            input: three_with(PodSeries {
                memory: series(600.0, |t| 100e6 + t * 500e3),
                ..pod("web-b")
            }),
            expect: FaultKind::MemoryLeak,
            pods: &["web-b"],
        },
        Case {
            name: "leak: noisy climb with a spike",
            pattern: Pattern::MemoryLeak,
            for_secs: 300,
            input: three_with(PodSeries {
                memory: series(600.0, |t| {
                    let noise = ((t * 7.3).sin()) * 2e6;
                    let spike = if (t - 450.0).abs() < 1.0 { 200e6 } else { 0.0 };
                    100e6 + t * 400e3 + noise + spike
                }),
                ..pod("web-b")
            }),
            expect: FaultKind::MemoryLeak,
            pods: &["web-b"],
        },
        Case {
            name: "leak: slow growth far from the limit is fine",
            pattern: Pattern::MemoryLeak,
            for_secs: 300,
            input: three_with(PodSeries {
                memory: series(600.0, |t| 100e6 + t * 10e3),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            // A cache filling up after a deploy: steep at first, slowing towards its size.
            // Found by the benchmark (docs/quality.md).
            name: "leak: a cache filling up towards a plateau is not a leak",
            pattern: Pattern::MemoryLeak,
            for_secs: 600,
            input: three_with(PodSeries {
                memory: series(600.0, |t| {
                    150e6 + 200e6 * (1.0 - (-(t + 60.0) / 180.0).exp())
                }),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "leak: a climb that began within the window is not a leak yet",
            pattern: Pattern::MemoryLeak,
            for_secs: 600,
            input: three_with(PodSeries {
                memory: series(600.0, |t| 150e6 + (t - 400.0).max(0.0) * 1e6),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "leak: a steady climb over the whole window, faster at the end",
            pattern: Pattern::MemoryLeak,
            for_secs: 600,
            input: three_with(PodSeries {
                memory: series(600.0, |t| 150e6 + t * 200e3 + t * t * 200.0),
                ..pod("web-b")
            }),
            expect: FaultKind::MemoryLeak,
            pods: &["web-b"],
        },
        Case {
            name: "leak: a sawtooth (GC) is not a leak",
            pattern: Pattern::MemoryLeak,
            for_secs: 300,
            input: three_with(PodSeries {
                memory: series(600.0, |t| 100e6 + (t % 60.0) * 2e6),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "crash loop: restarts climbing",
            pattern: Pattern::CrashLoop,
            for_secs: 300,
            input: three_with(PodSeries {
                restarts: series(600.0, |t| (t / 30.0).floor()),
                ..pod("web-b")
            }),
            expect: FaultKind::CrashLoop,
            pods: &["web-b"],
        },
        Case {
            name: "crash loop: a counter reset is not a negative increase",
            pattern: Pattern::CrashLoop,
            for_secs: 300,
            input: three_with(PodSeries {
                restarts: series(600.0, |t| if t < 500.0 { 40.0 } else { 1.0 }),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            // Kubelet's back-off is capped at 5 minutes: one restart in the last 10, none in the
            // last 5, but 7 in all. Found by the benchmark (docs/quality.md).
            name: "crash loop: at the capped back-off, restarting about every 5 minutes",
            pattern: Pattern::CrashLoop,
            for_secs: 300,
            input: three_with(PodSeries {
                restarts: series(600.0, |t| if t < 250.0 { 6.0 } else { 7.0 }),
                ..pod("web-b")
            }),
            expect: FaultKind::CrashLoop,
            pods: &["web-b"],
        },
        Case {
            name: "crash loop: a second restart in a pod's life is not a loop",
            pattern: Pattern::CrashLoop,
            for_secs: 300,
            input: three_with(PodSeries {
                restarts: series(600.0, |t| if t < 250.0 { 1.0 } else { 2.0 }),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "crash loop: many restarts long ago, none in the last 10 minutes",
            pattern: Pattern::CrashLoop,
            for_secs: 300,
            input: three_with(PodSeries {
                restarts: series(600.0, |_| 40.0),
                ..pod("web-b")
            }),
            expect: FaultKind::Healthy,
            pods: &[],
        },
        Case {
            name: "crash loop: a replacement pod that crashes at once",
            pattern: Pattern::CrashLoop,
            for_secs: 300,
            input: workload(vec![
                pod("web-a"),
                PodSeries {
                    started_at: Some(NOW - 100.0),
                    restarts: series(100.0, |t| (t / 20.0).floor()),
                    ..pod("web-n")
                },
            ]),
            expect: FaultKind::CrashLoop,
            pods: &["web-n"],
        },
    ]
}

#[test]
fn verdict_table() {
    let mut failures = vec![];
    for c in table() {
        let v = verdict(c.pattern, c.for_secs, &c.input);
        let pods: Vec<&str> = v.pods.iter().map(String::as_str).collect();
        if v.kind != c.expect || (c.expect.is_fault() && pods != c.pods) {
            failures.push(format!(
                "{}: expected {:?} {:?}, got {:?} {:?} ({})",
                c.name, c.expect, c.pods, v.kind, pods, v.message
            ));
        }
        if v.kind.is_fault() {
            assert!(
                !v.evidence.is_empty(),
                "{}: a fault carries evidence",
                c.name
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn runaway_evidence_names_the_pod_and_the_numbers() {
    let w = three_with(PodSeries {
        cpu: series(600.0, |_| 0.95),
        ..pod("web-b")
    });
    let v = verdict(Pattern::RunawayProcess, 120, &w);
    let e = &v.evidence[0];
    assert_eq!(e.pod.as_deref(), Some("web-b"));
    assert!((e.value - 0.95).abs() < 1e-9);
    assert!(e.threshold.is_some_and(|t| (t - 0.3).abs() < 1e-9), "{e:?}");
    assert!(v.confidence > 0.9);
}

#[test]
fn threshold_on_a_user_signal() {
    let mut w = workload(vec![pod("web-a")]);
    let s = |v: f64| Series {
        labels: [("pod".to_string(), "web-a".to_string())].into(),
        points: series(600.0, move |_| v),
    };
    let f = FaultSpec {
        signal: Some("p99".into()),
        condition: Some(ThresholdCondition {
            op: ComparisonOp::Gt,
            value: 0.5,
        }),
        ..fault(Pattern::Threshold, 120)
    };
    w.signals.insert("p99".into(), vec![s(0.8)]);
    let v = evaluate(&f, &w, &ctx());
    assert_eq!(v.kind, FaultKind::Threshold);
    assert_eq!(v.pods, vec!["web-a".to_string()]);
    w.signals.insert("p99".into(), vec![s(0.2)]);
    assert_eq!(evaluate(&f, &w, &ctx()).kind, FaultKind::Healthy);
    w.signals.insert("p99".into(), vec![]);
    assert_eq!(evaluate(&f, &w, &ctx()).kind, FaultKind::Inconclusive);
}

#[test]
fn crash_loop_wins_and_blocks_other_actions_when_unknown() {
    let faults = vec![
        fault(Pattern::RunawayProcess, 120),
        fault(Pattern::CrashLoop, 300),
    ];
    let w = three_with(PodSeries {
        cpu: series(600.0, |_| 0.95),
        restarts: series(600.0, |t| (t / 30.0).floor()),
        ..pod("web-b")
    });
    let vs = evaluate_all(&faults, &w, &ctx());
    let (f, _) = choose(&faults, &vs).expect("a fault fires");
    assert_eq!(f.pattern, Pattern::CrashLoop);

    // Restart data missing: runaway fires but nothing may act.
    let w = three_with(PodSeries {
        cpu: series(600.0, |_| 0.95),
        restarts: vec![],
        ..pod("web-b")
    });
    let vs = evaluate_all(&faults, &w, &ctx());
    assert_eq!(vs[0].verdict.kind, FaultKind::RunawayProcess);
    assert_eq!(vs[1].verdict.kind, FaultKind::Inconclusive);
    assert!(choose(&faults, &vs).is_none());
    assert_eq!(overall(&faults, &vs), FaultKind::Inconclusive);
}

#[test]
fn default_actions_follow_the_pattern() {
    assert_eq!(
        action_for(&fault(Pattern::RunawayProcess, 60)).type_,
        ActionType::RestartPod
    );
    let scale = action_for(&fault(Pattern::ResourceContention, 60));
    assert_eq!(scale.type_, ActionType::Scale);
    assert!(scale.scale.is_some());
    assert_eq!(
        action_for(&fault(Pattern::CrashLoop, 60)).type_,
        ActionType::Escalate
    );
}

#[test]
fn a_crash_loop_fault_reads_ten_minutes_of_restarts() {
    use super::{StdSignal, fetch::signal_span};
    let span = signal_span(&[fault(Pattern::CrashLoop, 300)], StdSignal::Restarts, STEP);
    assert_eq!(span, 600.0);
    // Other patterns read their own window only; limits only their latest points.
    let runaway = [fault(Pattern::RunawayProcess, 120)];
    assert_eq!(signal_span(&runaway, StdSignal::Cpu, STEP), 120.0);
    assert_eq!(signal_span(&runaway, StdSignal::CpuLimit, STEP), 2.0 * STEP);
    assert_eq!(signal_span(&runaway, StdSignal::Restarts, STEP), STEP);
}

fn leak_pod(name: &str, secs_to_limit: f64) -> PodSeries {
    // Climbs steadily over the last 20 minutes (a climb not yet due is judged once it has lasted
    // 1.5 x `for`); reaches 512e6 `secs_to_limit` after NOW.
    let (now_v, limit) = (300e6, 512e6);
    let slope = (limit - now_v) / secs_to_limit;
    PodSeries {
        memory: series(1200.0, move |t| now_v - slope * (1200.0 - t)),
        ..pod(name)
    }
}

#[test]
fn a_leak_is_reported_at_once_and_acted_on_within_the_horizon() {
    let faults = vec![fault(Pattern::MemoryLeak, 600)];
    // An hour from its limit: a leak, restart not due yet (horizon 30 min).
    let w = three_with(leak_pod("web-b", 3600.0));
    let vs = evaluate_all(&faults, &w, &ctx());
    let v = &vs[0].verdict;
    assert_eq!(v.kind, FaultKind::MemoryLeak, "{}", v.message);
    assert_eq!(v.pods, vec!["web-b".to_string()]);
    assert!(!v.due && !v.acts(), "{v:?}");
    let tte = v.time_to_limit.expect("projected");
    assert!((tte - 3600.0).abs() < 120.0, "{tte}");
    let due_in = v.due_in.expect("projected");
    assert!((due_in - (tte - 1800.0)).abs() < 1e-6, "{due_in}");
    assert!(v.held_for >= 540.0, "{}", v.held_for);
    assert!(choose(&faults, &vs).is_none(), "not due: no action");
    assert!(classify(&faults, &vs).is_some());
    assert_eq!(overall(&faults, &vs), FaultKind::MemoryLeak);

    // Twenty minutes from its limit: due now.
    let w = three_with(leak_pod("web-b", 1200.0));
    let vs = evaluate_all(&faults, &w, &ctx());
    assert!(vs[0].verdict.acts(), "{:?}", vs[0].verdict);
    assert_eq!(vs[0].verdict.due_in, Some(0.0));
    assert!(choose(&faults, &vs).is_some());

    // Five hours away: growth, not a leak (beyond reportHorizon, 4 x horizon).
    let w = three_with(leak_pod("web-b", 5.0 * 3600.0));
    assert_eq!(
        verdict(Pattern::MemoryLeak, 600, &w).kind,
        FaultKind::Healthy
    );
}

#[test]
fn a_leak_under_a_gc_sawtooth_is_found_on_its_floors() {
    let (base, limit, amp) = (250e6, 512e6, 40e6);
    let slope = (limit - base - amp) / 1500.0;
    let w = three_with(PodSeries {
        memory: series(600.0, move |t| {
            base + slope * t + amp * ((t / 90.0).fract())
        }),
        ..pod("web-b")
    });
    let v = verdict(Pattern::MemoryLeak, 600, &w);
    assert_eq!(v.kind, FaultKind::MemoryLeak, "{}", v.message);
    assert_eq!(v.pods, vec!["web-b".to_string()]);
    // A sawtooth around a flat level is not a leak.
    let w = three_with(PodSeries {
        memory: series(600.0, move |t| base + amp * ((t / 90.0).fract())),
        ..pod("web-b")
    });
    assert_eq!(
        verdict(Pattern::MemoryLeak, 600, &w).kind,
        FaultKind::Healthy
    );
}

#[test]
fn an_extra_core_is_runaway_below_the_ratio_and_under_a_large_limit() {
    let busy = |name: &str, cores: f64| PodSeries {
        cpu: series(600.0, move |_| cores),
        cpu_limit: Some(4.0),
        ..pod(name)
    };
    // +0.9 cores over a 0.6 median: 2.5x, 38 % of the limit.
    let w = workload(vec![
        busy("web-a", 0.6),
        busy("web-b", 1.5),
        busy("web-c", 0.62),
    ]);
    let v = verdict(Pattern::RunawayProcess, 120, &w);
    assert_eq!(v.kind, FaultKind::RunawayProcess, "{}", v.message);
    assert_eq!(v.pods, vec!["web-b".to_string()]);
    assert!(v.acts());
    assert!(
        v.evidence
            .iter()
            .any(|e| e.rule.contains("cores above") && (e.value - 0.89).abs() < 0.02),
        "{:?}",
        v.evidence
    );
    // The same ratio with a small absolute excess is ordinary imbalance.
    let w = workload(vec![
        busy("web-a", 0.1),
        busy("web-b", 0.25),
        busy("web-c", 0.1),
    ]);
    assert_eq!(
        verdict(Pattern::RunawayProcess, 120, &w).kind,
        FaultKind::Healthy
    );
    // 1.7x with +0.8 cores: load imbalance, not runaway.
    let w = workload(vec![
        busy("web-a", 1.15),
        busy("web-b", 1.95),
        busy("web-c", 1.1),
    ]);
    assert_eq!(
        verdict(Pattern::RunawayProcess, 120, &w).kind,
        FaultKind::Healthy
    );
}

/// Restarts at the given offsets before NOW.
fn restarts_at(offsets: &'static [f64]) -> Vec<(f64, f64)> {
    series(900.0, move |t| {
        let at = NOW - 900.0 + t;
        offsets.iter().filter(|o| NOW - **o <= at).count() as f64
    })
}

#[test]
fn crash_loops_read_kubelets_back_off_and_reasons() {
    let backoff = |from: f64, to: f64| -> Vec<(f64, f64)> {
        series(900.0, |_| 1.0)
            .into_iter()
            .filter(|(t, _)| *t >= NOW - from && *t <= NOW - to)
            .collect()
    };
    // Two restarts in ten minutes, kube-state-metrics saw CrashLoopBackOff: a loop.
    let w = three_with(PodSeries {
        restarts: restarts_at(&[420.0, 200.0]),
        backoff: backoff(230.0, 200.0),
        last_terminated: Some("Error".into()),
        ..pod("web-b")
    });
    let v = verdict(Pattern::CrashLoop, 300, &w);
    assert_eq!(v.kind, FaultKind::CrashLoop, "{}", v.message);
    assert!(v.message.contains("Error"), "{}", v.message);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.signal == "lastTerminatedReason" && e.rule.contains("Error"))
    );
    assert!(v.held_for >= 400.0, "{}", v.held_for);
    // The same two restarts without the back-off state: not enough.
    let w = three_with(PodSeries {
        restarts: restarts_at(&[420.0, 200.0]),
        ..pod("web-b")
    });
    assert_eq!(
        verdict(Pattern::CrashLoop, 300, &w).kind,
        FaultKind::Healthy
    );
    // Four restarts over ten-odd minutes, only one in the last five: a loop.
    let w = three_with(PodSeries {
        restarts: restarts_at(&[590.0, 480.0, 330.0, 100.0]),
        ..pod("web-b")
    });
    assert_eq!(
        verdict(Pattern::CrashLoop, 300, &w).kind,
        FaultKind::CrashLoop
    );
    // One restart (an OOM once) is not.
    let w = three_with(PodSeries {
        restarts: restarts_at(&[200.0]),
        backoff: backoff(210.0, 200.0),
        last_terminated: Some("OOMKilled".into()),
        ..pod("web-b")
    });
    assert_eq!(
        verdict(Pattern::CrashLoop, 300, &w).kind,
        FaultKind::Healthy
    );
}

#[test]
fn below_the_confidence_floor_a_fault_is_reported_not_acted_on() {
    let w = three_with(PodSeries {
        cpu: series(600.0, |_| 0.95),
        ..pod("web-b")
    });
    let mut f = fault(Pattern::RunawayProcess, 120);
    let v = evaluate(&f, &w, &ctx());
    assert!(v.acts());
    f.params = Some(crate::v1alpha1::DetectorParams {
        min_confidence: Some((v.confidence + 0.01).min(1.0)),
        ..Default::default()
    });
    let faults = vec![f];
    let vs = evaluate_all(&faults, &w, &ctx());
    assert_eq!(vs[0].verdict.kind, FaultKind::RunawayProcess);
    assert!(!vs[0].verdict.due, "{:?}", vs[0].verdict);
    assert!(vs[0].verdict.message.contains("below the floor"));
    assert!(choose(&faults, &vs).is_none());
    assert_eq!(overall(&faults, &vs), FaultKind::RunawayProcess);
}

#[test]
fn healthy_and_inconclusive_are_never_due() {
    for c in table() {
        let v = verdict(c.pattern, c.for_secs, &c.input);
        assert_eq!(v.due, v.kind.is_fault(), "{}: {v:?}", c.name);
        assert!((0.0..=1.0).contains(&v.confidence), "{}", c.name);
    }
}

#[test]
fn replicas_capped_at_their_limit_and_throttled_are_contended() {
    let capped = |name: &str, throttled: f64| PodSeries {
        cpu: series(600.0, |_| 0.97),
        throttling: series(600.0, move |_| throttled),
        ..pod(name)
    };
    // Throttled in 18 % of periods (under 25 %), but at 97 % of the limit: the demand exceeds it.
    let w = workload(vec![
        capped("web-a", 0.18),
        capped("web-b", 0.18),
        capped("web-c", 0.2),
    ]);
    let v = verdict(Pattern::ResourceContention, 180, &w);
    assert_eq!(v.kind, FaultKind::ResourceContention, "{}", v.message);
    // The same throttling well under the limit is not.
    let w = workload(vec![
        PodSeries {
            cpu: series(600.0, |_| 0.6),
            ..capped("web-a", 0.18)
        },
        PodSeries {
            cpu: series(600.0, |_| 0.6),
            ..capped("web-b", 0.18)
        },
    ]);
    assert_eq!(
        verdict(Pattern::ResourceContention, 180, &w).kind,
        FaultKind::Healthy
    );
}

#[test]
fn a_memory_leak_fault_reads_an_hour() {
    use super::{StdSignal, fetch::signal_span};
    let span = signal_span(&[fault(Pattern::MemoryLeak, 600)], StdSignal::Memory, STEP);
    assert_eq!(span, 3600.0);
}

/// Deterministic noise in -1..1 (a hash of the time).
fn jitter(t: f64, salt: f64) -> f64 {
    ((t * 12.9898 + salt * 78.233).sin() * 43_758.547).fract()
}

/// One pod started `age` seconds ago whose working set is `f(seconds since start)` (an hour at
/// most), with 1 % sample noise.
fn memory_pod(name: &str, age: f64, limit: f64, f: impl Fn(f64) -> f64) -> PodSeries {
    let secs = age.min(3600.0);
    PodSeries {
        started_at: Some(NOW - age),
        memory: series(secs, |t| {
            let since = t + age - secs;
            f(since) * (1.0 + 0.01 * jitter(since, 1.0))
        }),
        memory_limit: Some(limit),
        ..pod(name)
    }
}

#[test]
fn a_jvm_heap_growing_in_steps_is_not_a_leak() {
    // A JVM started 40 minutes ago commits its heap in four steps, 5 to 25 minutes after start,
    // then stays flat with a 3 % ripple of young collections.
    let heap = |age: f64| {
        let steps = [300.0, 700.0, 1100.0, 1500.0]
            .iter()
            .filter(|s| age >= **s)
            .count();
        (60e6 + 80e6 * steps as f64) * (1.0 + 0.03 * (age / 20.0).sin().abs())
    };
    let plateau = memory_pod("web-b", 2400.0, 512e6, heap);
    let v = verdict(Pattern::MemoryLeak, 600, &three_with(plateau));
    assert_eq!(v.kind, FaultKind::Healthy, "{}", v.message);
    // Still stepping: the last step 3 minutes ago, more to come.
    let stepping = memory_pod("web-b", 1280.0, 512e6, heap);
    let v = verdict(Pattern::MemoryLeak, 600, &three_with(stepping));
    assert_eq!(v.kind, FaultKind::Healthy, "{}", v.message);
    assert!(v.message.contains("held jumps"), "{}", v.message);
}

#[test]
fn a_cache_filling_towards_its_size_is_not_a_leak() {
    // size = cap (1 - e^(-t/tau)) from a flush 25 and 15 minutes ago (tau 10 minutes), on pods
    // started long ago; at its current rate the younger fill would reach the limit within an hour.
    for from in [1500.0, 900.0] {
        let fill = move |age: f64| {
            let t = age - (7200.0 - from);
            200e6 + 150e6 * (1.0 - (-t.max(0.0) / 600.0).exp())
        };
        let v = verdict(
            Pattern::MemoryLeak,
            600,
            &three_with(memory_pod("web-b", 7200.0, 512e6, fill)),
        );
        assert_eq!(v.kind, FaultKind::Healthy, "from {from}: {}", v.message);
        // 15 minutes into its fill and not urgent, the younger one is not judged yet.
        let why = if from > 900.0 {
            "slower"
        } else {
            "too short a time"
        };
        assert!(v.message.contains(why), "{}", v.message);
    }
}

#[test]
fn a_cache_early_in_its_fill_levels_off_below_its_limit() {
    // A cache flushed 17 minutes ago fills as cap (1 - e^(-t/tau)), tau 25 minutes: its second
    // half climbs at 0.7 of its first's (above the 0.6 that says "slowing"), and at the current
    // rate it would reach the 512 MB limit in about 50 minutes. Projected along its own
    // slowdown it levels off at 400 MB.
    let fill = |age: f64| {
        let t = (age - (7200.0 - 1020.0)).max(0.0);
        200e6 + 200e6 * (1.0 - (-t / 1500.0).exp())
    };
    let v = verdict(
        Pattern::MemoryLeak,
        600,
        &three_with(memory_pod("web-b", 7200.0, 512e6, fill)),
    );
    assert_eq!(v.kind, FaultKind::Healthy, "{}", v.message);
    assert!(v.message.contains("slower"), "{}", v.message);
    // A leak as fast, from as long ago, keeps its rate: it is one.
    let leak = |age: f64| 200e6 + 0.13e6 * (age - (7200.0 - 1020.0)).max(0.0);
    let v = verdict(
        Pattern::MemoryLeak,
        600,
        &three_with(memory_pod("web-b", 7200.0, 512e6, leak)),
    );
    assert_eq!(v.kind, FaultKind::MemoryLeak, "{}", v.message);
}

#[test]
fn a_climb_of_twelve_minutes_is_judged_only_when_due() {
    // A straight climb that began 12 minutes ago (longer than the 9-minute hold, shorter than the
    // 15 minutes a filling cache needs to show that it slows). Two hours from its limit it is not
    // judged yet: nothing is due and a cache's fill looks the same.
    let climb = |rate: f64| move |age: f64| 150e6 + rate * (age - (7200.0 - 720.0)).max(0.0);
    let v = verdict(
        Pattern::MemoryLeak,
        600,
        &three_with(memory_pod("web-b", 7200.0, 1024e6, climb(0.25e6))),
    );
    assert_eq!(v.kind, FaultKind::Healthy, "{}", v.message);
    assert!(v.message.contains("too short a time"), "{}", v.message);
    // Within the horizon it is judged, and the restart is due.
    let v = verdict(
        Pattern::MemoryLeak,
        600,
        &three_with(memory_pod("web-b", 7200.0, 1024e6, climb(0.8e6))),
    );
    assert_eq!(v.kind, FaultKind::MemoryLeak, "{}", v.message);
    assert!(v.due, "{}", v.message);
}

#[test]
fn a_linear_leak_under_a_go_gc_sawtooth_is_a_leak_and_due() {
    // The live heap climbs from 40 minutes ago; the Go GC lets the heap grow to 1.6 times the live
    // heap every 2 minutes, so the peak reaches the 1 GiB limit 15 minutes from now.
    let (limit, live_now) = (1024e6, 500e6);
    let slope = (limit / 1.6 - live_now) / 900.0;
    let heap = move |age: f64| {
        let since = age - (7200.0 - 2400.0);
        let live = live_now - slope * (2400.0 - since.max(0.0));
        live * (1.0 + 0.6 * (age / 120.0).fract())
    };
    let v = verdict(
        Pattern::MemoryLeak,
        600,
        &three_with(memory_pod("web-b", 7200.0, limit, heap)),
    );
    assert_eq!(v.kind, FaultKind::MemoryLeak, "{}", v.message);
    assert_eq!(v.pods, vec!["web-b".to_string()]);
    assert!(v.due, "{}", v.message);
    let tte = v.time_to_limit.expect("projected");
    // 15-second samples miss the very top of each cycle: the projection is a little late.
    assert!((600.0..1500.0).contains(&tte), "{tte}: {}", v.message);
    assert!(v.held_for >= 2000.0, "{}", v.held_for);
}

#[test]
fn a_slow_leak_far_from_its_limit_is_a_leak_not_due() {
    // Climbing for an hour, 100 minutes from its limit: classified now, restarted later.
    let (limit, now_v) = (1024e6, 700e6);
    let slope = (limit - now_v) / 6000.0;
    let leak = move |age: f64| now_v - slope * (7200.0 - age);
    let v = verdict(
        Pattern::MemoryLeak,
        600,
        &three_with(memory_pod("web-b", 7200.0, limit, leak)),
    );
    assert_eq!(v.kind, FaultKind::MemoryLeak, "{}", v.message);
    assert!(!v.due && !v.acts(), "{}", v.message);
    let tte = v.time_to_limit.expect("projected");
    assert!((5000.0..7000.0).contains(&tte), "{tte}");
    assert!(v.due_in.is_some_and(|d| d > 3000.0), "{:?}", v.due_in);
}

#[test]
fn a_restart_inside_the_pod_cuts_the_climb_a_gc_drop_does_not() {
    // Leaked to 450 MB, restarted 20 minutes ago, flat since: not a leak.
    let restarted = |age: f64| {
        if age < 7200.0 - 1200.0 {
            100e6 + 350e6 * age / 6000.0
        } else {
            100e6
        }
    };
    let v = verdict(
        Pattern::MemoryLeak,
        600,
        &three_with(memory_pod("web-b", 7200.0, 512e6, restarted)),
    );
    assert_eq!(v.kind, FaultKind::Healthy, "{}", v.message);
}

fn adaptive(pattern: Pattern, secs: u64, min_hold: Option<u64>) -> FaultSpec {
    let mut f = fault(pattern, secs);
    f.params = Some(crate::v1alpha1::DetectorParams {
        hold: Some(crate::v1alpha1::HoldMode::Adaptive),
        min_hold: min_hold.map(Duration::from_secs),
        ..Default::default()
    });
    f
}

/// A pod idle at 0.01 cores that burns `cores` for its last `secs` seconds.
fn hot_for(name: &str, secs: f64, cores: f64) -> PodSeries {
    let mut p = pod(name);
    p.cpu = series(600.0, |t| if t >= 600.0 - secs { cores } else { 0.01 });
    p
}

fn idle(name: &str) -> PodSeries {
    let mut p = pod(name);
    p.cpu = series(600.0, |_| 0.01);
    p
}

#[test]
fn an_adaptive_hold_acts_on_overwhelming_evidence_after_min_hold() {
    let w = |secs| {
        workload(vec![
            idle("web-a"),
            hot_for("web-b", secs, 0.95),
            idle("web-c"),
        ])
    };
    let fixed = fault(Pattern::RunawayProcess, 120);
    let fast = adaptive(Pattern::RunawayProcess, 120, None);
    // 45 s of a pod at 95x its siblings: held past min_hold (30 s), far from `for` (120 s).
    assert_eq!(evaluate(&fixed, &w(45.0), &ctx()).kind, FaultKind::Healthy);
    let v = evaluate(&fast, &w(45.0), &ctx());
    assert_eq!(v.kind, FaultKind::RunawayProcess, "{}", v.message);
    assert!(v.acts());
    assert_eq!(v.pods, vec!["web-b".to_string()]);
    assert_eq!(v.held_for, 45.0);
    // 15 s is under min_hold: nothing yet.
    assert_eq!(evaluate(&fast, &w(15.0), &ctx()).kind, FaultKind::Healthy);
    // A policy's minHold bounds the speed-up: 60 s.
    let slow = adaptive(Pattern::RunawayProcess, 120, Some(60));
    assert_eq!(evaluate(&slow, &w(45.0), &ctx()).kind, FaultKind::Healthy);
    assert!(evaluate(&slow, &w(60.0), &ctx()).acts());
}

#[test]
fn an_adaptive_hold_waits_longer_than_for_on_marginal_evidence() {
    // Siblings at 0.2 cores; the hot pod at 0.62 (3.1x, just past the 3x bound; +0.42 cores is
    // under the 0.5-core excess rule; limit 4 cores).
    let mut a = pod("web-a");
    a.cpu = series(600.0, |_| 0.2);
    a.cpu_limit = Some(4.0);
    let mut c = a.clone();
    c.name = "web-c".into();
    let hot = |secs: f64| {
        let mut b = a.clone();
        b.name = "web-b".into();
        b.cpu = series(600.0, |t| if t >= 600.0 - secs { 0.62 } else { 0.2 });
        b
    };
    let w = |secs| workload(vec![a.clone(), hot(secs), c.clone()]);
    let fixed = fault(Pattern::RunawayProcess, 120);
    let slow = adaptive(Pattern::RunawayProcess, 120, None);
    assert!(evaluate(&fixed, &w(135.0), &ctx()).acts());
    let v = evaluate(&slow, &w(135.0), &ctx());
    assert_eq!(v.kind, FaultKind::Healthy, "{}", v.message);
    // At 3.1x (strength 1.03, weight 0.53) it takes about 2 x `for`.
    assert!(!evaluate(&slow, &w(210.0), &ctx()).acts());
    assert!(evaluate(&slow, &w(240.0), &ctx()).acts());
}

#[test]
fn an_adaptive_hold_reads_twice_for_and_only_for_cpu_patterns() {
    use super::{StdSignal, fetch::signal_span};
    let fast = [adaptive(Pattern::RunawayProcess, 120, None)];
    assert_eq!(signal_span(&fast, StdSignal::Cpu, STEP), 240.0);
    let leak = [adaptive(Pattern::MemoryLeak, 600, None)];
    assert_eq!(signal_span(&leak, StdSignal::Memory, STEP), 3600.0);
}

#[test]
fn an_adaptive_contention_hold_acts_sooner_when_every_replica_is_starved() {
    let starved = |name: &str, secs: f64| {
        let mut p = pod(name);
        p.throttling = series(600.0, |t| if t >= 600.0 - secs { 0.9 } else { 0.01 });
        p
    };
    let w = |secs| workload(vec![starved("a", secs), starved("b", secs)]);
    let fixed = fault(Pattern::ResourceContention, 180);
    let fast = adaptive(Pattern::ResourceContention, 180, None);
    assert_eq!(evaluate(&fixed, &w(90.0), &ctx()).kind, FaultKind::Healthy);
    // Both replicas (share 1 over 0.5: strength 2, weight 1.5) at 90% throttling: due after 120 s.
    assert!(!evaluate(&fast, &w(105.0), &ctx()).acts());
    let v = evaluate(&fast, &w(120.0), &ctx());
    assert!(v.acts(), "{}", v.message);
    assert_eq!(v.kind, FaultKind::ResourceContention);
}

#[test]
fn a_fault_still_in_its_hold_is_an_onset_for_the_storm_brake() {
    let hot = |name: &str, f: fn(f64) -> f64| PodSeries {
        cpu: series(600.0, f),
        ..pod(name)
    };
    // Hot for the last minute of a 2-minute hold: not due, but starting.
    let starting = three_with(hot("web-b", |t| if t > 540.0 { 0.95 } else { 0.1 }));
    let v = verdict(Pattern::RunawayProcess, 120, &starting);
    assert_eq!(v.kind, FaultKind::Healthy);
    assert!(v.onset, "the newest point is hot: {}", v.message);
    // Hot earlier, cold now: over.
    let over = three_with(hot("web-b", |t| {
        if (300.0..400.0).contains(&t) {
            0.95
        } else {
            0.1
        }
    }));
    assert!(!verdict(Pattern::RunawayProcess, 120, &over).onset);
    // Healthy siblings, and a workload-wide load: no runaway starting.
    let calm = workload(vec![pod("web-a"), pod("web-b"), pod("web-c")]);
    assert!(!verdict(Pattern::RunawayProcess, 120, &calm).onset);
    let all = workload(vec![
        hot("web-a", |_| 0.95),
        hot("web-b", |_| 0.95),
        pod("web-c"),
    ]);
    assert!(!verdict(Pattern::RunawayProcess, 120, &all).onset);
    // Every replica throttled for the last minute only: contention starting.
    let throttled = |name: &str| PodSeries {
        throttling: series(600.0, |t| if t > 540.0 { 0.9 } else { 0.01 }),
        ..pod(name)
    };
    let w = workload(vec![
        throttled("web-a"),
        throttled("web-b"),
        throttled("web-c"),
    ]);
    let v = verdict(Pattern::ResourceContention, 120, &w);
    assert_eq!(v.kind, FaultKind::Healthy);
    assert!(v.onset, "{}", v.message);
    // A fault that is due is an onset too (it counts as faulty either way).
    assert!(
        verdict(
            Pattern::RunawayProcess,
            120,
            &three_with(hot("web-b", |_| 0.95))
        )
        .onset
    );
}
