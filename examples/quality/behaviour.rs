//! The second generator: labelled workloads written from `docs/workload-behaviour.md` (how
//! services, runtimes and kubelet behave), not from the detectors' rules. Same series and labels as
//! `scenarios.rs`, different model: traffic-driven CPU, spinning threads, per-request leaks, Go and
//! JVM heaps, caches, batch jobs, maxSurge rollouts, noisy neighbours, kubelet's back-off with
//! kube-state-metrics' waiting and last-terminated reasons.

use std::f64::consts::TAU;

use crate::{
    scenarios::{Class, Generated, Label, Variant},
    support::{
        Rng, SeriesData,
        k8s::{Emit, Pod, PodState, Scrape, pod_series, replicaset_owner, status_series},
        noise,
    },
};

const MIB: f64 = 1024.0 * 1024.0;
/// History before the evaluation time.
pub const HISTORY: f64 = 2.0 * 3600.0;
/// The leak horizon of the product's contract (homeostat's default `horizon`).
const HORIZON: f64 = 1800.0;

/// Kubelet's container back-off: 10 s doubling to a 5-minute cap.
const BACKOFF_START: f64 = 10.0;
const BACKOFF_CAP: f64 = 300.0;

/// What shapes one pod's behaviour.
#[derive(Clone, Debug)]
enum B {
    /// A periodic in-process job: `extra` cores for `dur` s every `period` s.
    Batch {
        period: f64,
        dur: f64,
        phase: f64,
        extra: f64,
    },
    /// JIT warm-up after each container start: CPU × (1 + (mult − 1) e^(−age/τ)).
    Jit { mult: f64, tau: f64 },
    /// Less CPU while a neighbour on the node takes it.
    Neighbour { from: f64, to: f64, factor: f64 },
    /// Go heap: working set from L to `ratio` L and back every `period` s.
    GoGc { period: f64, ratio: f64, phase: f64 },
    /// JVM committed heap: steps `(age, bytes added)` after each start, ripple `ripple` × level.
    Jvm { steps: Vec<(f64, f64)>, ripple: f64 },
    /// A cache filling from `from`: `cap (1 − e^(−(t − from)/τ))`.
    Cache { from: f64, tau: f64, cap: f64 },
    /// Spinning threads from `from`: + `cores`, capped by the limit.
    Spin { from: f64, cores: f64 },
    /// Demand beyond capacity from `from`: at the limit, throttled `throttle`.
    Demand { from: f64, throttle: f64 },
    /// Memory retained per request from `from`: `slope` bytes per second at mean traffic.
    Leak { from: f64, slope: f64 },
    /// A crash loop from `onset`: runs `run` s between crashes.
    Loop {
        onset: f64,
        run: f64,
        reason: &'static str,
    },
    /// One crash at `at` (restarted 10 s later).
    Crash { at: f64, reason: &'static str },
}

/// The workload's traffic (shared by its pods): 1 ± `amp` over a slow daily curve.
#[derive(Clone, Copy, Debug)]
struct Traffic {
    amp: f64,
    omega: f64,
    phase: f64,
}

impl Traffic {
    fn at(&self, t: f64) -> f64 {
        1.0 + self.amp * (self.omega * t + self.phase).sin()
    }

    /// ∫ traffic from `a` to `b`.
    fn integral(&self, a: f64, b: f64) -> f64 {
        (b - a)
            - self.amp / self.omega
                * ((self.omega * b + self.phase).cos() - (self.omega * a + self.phase).cos())
    }
}

#[derive(Clone, Debug)]
struct P {
    pod: Pod,
    key: u64,
    cpu: f64,
    cpu_noise: f64,
    throttle: f64,
    memory: f64,
    traffic: Traffic,
    bs: Vec<B>,
    miss: (f64, f64),
    origin: f64,
}

/// (crash, restart) times of a loop up to `until`.
fn loop_restarts(onset: f64, run: f64, until: f64) -> Vec<(f64, f64)> {
    let mut out = vec![];
    let (mut crash, mut backoff) = (onset, BACKOFF_START);
    while crash <= until {
        let restart = crash + backoff;
        out.push((crash, restart));
        crash = restart + run;
        // Kubelet resets the back-off after 10 minutes of running; a loop never runs that long.
        backoff = if run >= 600.0 {
            BACKOFF_START
        } else {
            (backoff * 2.0).min(BACKOFF_CAP)
        };
    }
    out
}

impl P {
    fn lcpu(&self) -> f64 {
        self.pod.cpu_limit.unwrap_or(1.0)
    }

    fn lmem(&self) -> f64 {
        self.pod.memory_limit.unwrap_or(1e9)
    }

    fn n(&self, salt: u64, t: f64) -> f64 {
        noise(self.key ^ salt, t - self.origin)
    }

    fn restarts_until(&self, t: f64) -> Vec<f64> {
        let mut r = vec![];
        for b in &self.bs {
            match b {
                B::Loop { onset, run, .. } => r.extend(
                    loop_restarts(*onset, *run, t)
                        .into_iter()
                        .map(|x| x.1)
                        .filter(|s| *s <= t),
                ),
                B::Crash { at, .. } if at + BACKOFF_START <= t => r.push(at + BACKOFF_START),
                _ => {}
            }
        }
        r.sort_by(f64::total_cmp);
        r
    }

    fn waiting(&self, t: f64) -> Option<&'static str> {
        for b in &self.bs {
            match *b {
                B::Loop { onset, run, .. }
                    if t >= onset
                        && loop_restarts(onset, run, t)
                            .iter()
                            .any(|(c, r)| t >= *c && t < *r) =>
                {
                    return Some("CrashLoopBackOff");
                }
                B::Crash { at, .. } if t >= at && t < at + BACKOFF_START => {
                    return Some("CrashLoopBackOff");
                }
                _ => {}
            }
        }
        None
    }

    fn last_terminated(&self, t: f64) -> Option<&'static str> {
        self.bs.iter().find_map(|b| match *b {
            B::Loop { onset, reason, .. } if t >= onset => Some(reason),
            B::Crash { at, reason } if t >= at => Some(reason),
            _ => None,
        })
    }

    fn running(&self, t: f64) -> bool {
        self.waiting(t).is_none()
    }

    fn state(&self, t: f64) -> PodState {
        let restarts = self.restarts_until(t);
        let start = restarts.last().copied().unwrap_or(self.pod.start);
        let age = (t - start).max(0.0);
        let rel = t - self.origin;
        let traffic = self.traffic.at(rel);
        let mut cpu = self.cpu * traffic * (1.0 + self.cpu_noise * self.n(1, t));
        let mut throttle = self.throttle * (1.0 + self.n(2, t)).max(0.0);
        // A process's memory after a start: runtime and code first, then its heap within a minute.
        let mut live = self.memory * (0.35 + 0.65 * (1.0 - (-age / 40.0).exp()));
        let mut saw = 0.0;
        let mut demand: Option<f64> = None;
        let mut looping = false;
        for b in &self.bs {
            match b {
                B::Batch {
                    period,
                    dur,
                    phase,
                    extra,
                } if ((rel / period + phase).rem_euclid(1.0)) * period < *dur => {
                    cpu += extra * (1.0 + 0.05 * self.n(3, t));
                }
                B::Jit { mult, tau } => cpu *= 1.0 + (mult - 1.0) * (-age / tau).exp(),
                B::Neighbour { from, to, factor } if t >= *from && t < *to => cpu *= factor,
                B::GoGc {
                    period,
                    ratio,
                    phase,
                } => saw = (ratio - 1.0) * (rel / period + phase).rem_euclid(1.0),
                B::Jvm { steps, ripple } => {
                    live = self.memory * 0.3;
                    for (at, add) in steps {
                        if age >= *at {
                            live += add;
                        }
                    }
                    live *= 1.0 + ripple * (rel / 20.0 + self.key as f64 * 1e-3).sin().abs();
                }
                B::Cache { from, tau, cap } => {
                    let from = from.max(start);
                    if t >= from {
                        live += cap * (1.0 - (-(t - from) / tau).exp());
                    }
                }
                B::Spin { from, cores } if t >= *from => cpu += cores * (1.0 + 0.03 * self.n(4, t)),
                B::Demand { from, throttle: th } if t >= *from => demand = Some(*th),
                B::Leak { from, slope } if t >= *from => {
                    let a = from.max(start) - self.origin;
                    live += slope * self.traffic.integral(a, rel).max(0.0);
                }
                B::Loop { onset, .. } if t >= *onset => looping = true,
                _ => {}
            }
        }
        if let Some(th) = demand {
            cpu = self.lcpu() * (0.95 + 0.05 * self.n(5, t));
            throttle = (th * (1.0 + 0.25 * self.n(6, t))).clamp(0.0, 1.0);
        } else if cpu >= self.lcpu() {
            // Capped by CFS: throttled in a share of periods that grows with the excess.
            throttle = throttle.max((0.3 + 0.2 * self.n(7, t)).clamp(0.1, 0.7));
        }
        if looping {
            // Starting up, then crashing: little CPU, a fraction of its memory.
            cpu = 0.02 + 0.2 * self.cpu;
            live = 0.15 * self.lmem().min(live.max(self.memory));
            saw = 0.0;
        }
        let memory = live * (1.0 + saw) * (1.0 + 0.01 * self.n(8, t));
        PodState {
            cpu: cpu.clamp(0.0, self.lcpu()),
            throttle: throttle.clamp(0.0, 1.0),
            memory: memory.min(self.lmem()),
            restarts: restarts.len() as u32,
        }
    }

    fn scraped(&self, t: f64, interval: f64, salt: u64) -> bool {
        let (p, block) = self.miss;
        let rel = t - self.origin;
        let single = (self.n(salt, t) + 1.0) / 2.0 < p;
        let run =
            (noise(self.key ^ salt ^ 0xB10C, (rel / (3.0 * interval)).floor()) + 1.0) / 2.0 < block;
        !(single || run)
    }
}

struct Shape {
    ns: String,
    name: String,
    n: usize,
    interval: f64,
    cad: Scrape,
    ksm: Scrape,
    cpu_limit: f64,
    mem_limit: f64,
    usage: f64,
    mem_frac: f64,
    miss: (f64, f64),
    traffic: Traffic,
}

struct G<'a> {
    rng: &'a mut Rng,
    eval: f64,
    start: f64,
    series: Vec<SeriesData>,
    labels: Vec<Label>,
    next_key: u64,
}

fn suffix(rng: &mut Rng) -> String {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| A[rng.int(0, A.len() as u64 - 1) as usize] as char)
        .collect()
}

fn rs_hash(rng: &mut Rng) -> String {
    format!("{:x}", rng.int(0x1000_0000, 0xffff_ffff))
}

impl G<'_> {
    fn shape(&mut self, idx: usize, min_n: usize) -> Shape {
        let r = &mut *self.rng;
        let n = r.int(min_n as u64, 12) as usize;
        let interval = if r.chance(0.4) { 30.0 } else { 15.0 };
        let cad = Scrape {
            from: self.start,
            to: self.eval + 1.0,
            interval,
            offset: r.range(0.0, interval).floor(),
        };
        let ksm = Scrape {
            offset: r.range(0.0, interval).floor(),
            ..cad
        };
        // Steady usage 0.05–1 core per replica (log-uniform); the limit 2–6 times it, rounded up.
        let usage = (0.05_f64.ln() + r.f64() * (1.0_f64.ln() - 0.05_f64.ln())).exp();
        let want = usage * r.range(2.0, 6.0);
        let cpu_limit = [0.5, 1.0, 2.0, 4.0, 8.0]
            .into_iter()
            .find(|l| *l >= want)
            .unwrap_or(8.0);
        let mem_limit = [256.0, 512.0, 1024.0, 2048.0, 4096.0][r.int(0, 4) as usize] * MIB;
        let miss = if r.chance(0.2) {
            (r.range(0.01, 0.03), r.range(0.0, 0.01))
        } else {
            (0.0, 0.0)
        };
        let traffic = Traffic {
            amp: r.range(0.1, 0.3),
            omega: TAU / r.range(4.0 * 3600.0, 8.0 * 3600.0),
            phase: r.range(0.0, TAU),
        };
        Shape {
            ns: format!("ns-{}", ["web", "api", "jobs", "data", "edge"][idx % 5]),
            name: format!("app-{idx:03}"),
            n,
            interval,
            cad,
            ksm,
            cpu_limit,
            mem_limit,
            usage,
            mem_frac: r.range(0.25, 0.55),
            miss,
            traffic,
        }
    }

    fn pod(&mut self, s: &Shape, rs: &str, start: f64) -> P {
        let key = self.next_key;
        self.next_key += 1;
        let r = &mut *self.rng;
        let mut pod = Pod::of_replicaset(&s.ns, rs, &suffix(r), start);
        pod.node = format!("node-{}", r.int(1, 20));
        pod.cpu_limit = Some(s.cpu_limit);
        pod.memory_limit = Some(s.mem_limit);
        P {
            pod,
            key: key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ r.next_u64(),
            cpu: s.usage * r.range(0.8, 1.2),
            cpu_noise: r.range(0.05, 0.2),
            throttle: r.range(0.0, 0.03),
            memory: s.mem_frac * s.mem_limit * r.range(0.9, 1.1),
            traffic: s.traffic,
            bs: vec![],
            miss: s.miss,
            origin: self.eval,
        }
    }

    fn steady(&mut self, s: &Shape) -> (String, Vec<P>) {
        let rs = format!("{}-{}", s.name, rs_hash(self.rng));
        let mut ps = vec![];
        for _ in 0..s.n {
            let start = self.start - self.rng.range(3600.0, 5.0 * 86400.0).floor();
            ps.push(self.pod(s, &rs, start));
        }
        (rs, ps)
    }

    fn emit(&mut self, s: &Shape, rss: &[(String, f64)], ps: &[P]) {
        for (rs, from) in rss {
            self.series.push(replicaset_owner(
                &s.ns,
                rs,
                &s.name,
                s.ksm,
                *from,
                self.eval + 1.0,
            ));
        }
        for p in ps {
            let iv = s.interval;
            self.series.extend(pod_series(
                &p.pod,
                s.cad,
                s.ksm,
                |t| p.state(t),
                |t| p.running(t) && p.scraped(t, iv, 11),
                |t| p.scraped(t, iv, 12),
                Emit { pod_level: false },
            ));
            self.series.extend(status_series(
                &p.pod,
                s.ksm,
                |t| p.waiting(t),
                |t| p.last_terminated(t),
                |t| p.scraped(t, iv, 12),
            ));
        }
    }

    fn label(
        &mut self,
        s: &Shape,
        class: Class,
        variant: Variant,
        pods: Vec<String>,
        onset: Option<f64>,
        action: &'static str,
    ) {
        let mut pods = pods;
        pods.sort();
        self.labels.push(Label {
            namespace: s.ns.clone(),
            name: s.name.clone(),
            class,
            variant,
            pods,
            onset,
            interval: s.interval,
            replicas: s.n,
            action,
        });
    }

    fn finish(&mut self, s: &Shape, rs: String, ps: Vec<P>) {
        let from = self.start;
        self.emit(s, &[(rs, from)], &ps);
    }

    fn pick(&mut self, n: usize) -> usize {
        self.rng.int(0, n as u64 - 1) as usize
    }

    fn runaway(&mut self, idx: usize) {
        let s = self.shape(idx, 2);
        let (rs, mut ps) = self.steady(&s);
        let i = self.pick(s.n);
        let threads = if self.rng.chance(0.25) { 2.0 } else { 1.0 };
        let cores = threads * self.rng.range(0.8, 1.0);
        let onset = (self.eval - self.rng.range(600.0, 6600.0)).floor();
        ps[i].bs.push(B::Spin { from: onset, cores });
        let pods = vec![ps[i].pod.name.clone()];
        self.label(
            &s,
            Class::RunawayProcess,
            Variant::Plain,
            pods,
            Some(onset),
            "RestartPod",
        );
        self.finish(&s, rs, ps);
    }

    fn contention(&mut self, idx: usize) {
        let s = self.shape(idx, 1);
        let (rs, mut ps) = self.steady(&s);
        let onset = (self.eval - self.rng.range(600.0, 6600.0)).floor();
        let throttle = self.rng.range(0.2, 0.7);
        for p in &mut ps {
            let from = onset + self.rng.range(0.0, 60.0).floor();
            p.bs.push(B::Demand { from, throttle });
        }
        let pods = ps.iter().map(|p| p.pod.name.clone()).collect();
        self.label(
            &s,
            Class::ResourceContention,
            Variant::Plain,
            pods,
            Some(onset),
            "Scale",
        );
        self.finish(&s, rs, ps);
    }

    fn leak(&mut self, idx: usize) {
        let s = self.shape(idx, 1);
        let (rs, mut ps) = self.steady(&s);
        let i = self.pick(s.n);
        let elapsed = self.rng.range(900.0, 6600.0).floor();
        let onset = self.eval - elapsed;
        let remaining = self.rng.range(300.0, 7200.0);
        // Usually the leak starts with the pod (a deploy brought it).
        if self.rng.chance(0.7) {
            ps[i].pod.start = onset - self.rng.range(30.0, 120.0).floor();
        }
        let ratio = if self.rng.chance(0.5) {
            let ratio = self.rng.range(1.3, 2.0);
            ps[i].bs.push(B::GoGc {
                period: self.rng.range(30.0, 300.0),
                ratio,
                phase: self.rng.f64(),
            });
            ps[i].memory /= ratio;
            ratio
        } else {
            1.0
        };
        // The live heap that makes the peak reach the limit at eval + remaining.
        let live_at_oom = s.mem_limit / ratio / 1.01;
        let grow = (live_at_oom - ps[i].memory).max(0.05 * s.mem_limit);
        let a = onset.max(ps[i].pod.start) - self.eval;
        let slope = grow / s.traffic.integral(a, remaining);
        ps[i].bs.push(B::Leak { from: onset, slope });
        let action = if remaining < HORIZON {
            "RestartPod"
        } else {
            "None"
        };
        let pods = vec![ps[i].pod.name.clone()];
        self.label(
            &s,
            Class::MemoryLeak,
            Variant::Plain,
            pods,
            Some(onset),
            action,
        );
        self.finish(&s, rs, ps);
    }

    fn crash_loop(&mut self, idx: usize) {
        let s = self.shape(idx, 1);
        let (rs, mut ps) = self.steady(&s);
        let onset = (self.eval - self.rng.range(300.0, 3600.0)).floor();
        let all = self.rng.chance(0.3);
        let chosen = self.pick(s.n);
        let reason = if self.rng.chance(0.2) {
            "OOMKilled"
        } else {
            "Error"
        };
        let mut pods = vec![];
        for (i, p) in ps.iter_mut().enumerate() {
            if all || i == chosen {
                let run = self.rng.range(1.0, 150.0).floor();
                let at = onset + self.rng.range(0.0, 30.0).floor();
                p.bs.push(B::Loop {
                    onset: at,
                    run,
                    reason,
                });
                pods.push(p.pod.name.clone());
            }
        }
        self.label(
            &s,
            Class::CrashLoop,
            Variant::Plain,
            pods,
            Some(onset),
            "Escalate",
        );
        self.finish(&s, rs, ps);
    }

    fn healthy(&mut self, idx: usize, v: Variant) {
        let min_n = match v {
            Variant::Batch | Variant::NoisyNeighbour | Variant::RollingUpdate => 2,
            _ => 1,
        };
        let mut s = self.shape(idx, min_n);
        let eval = self.eval;
        let (rs, mut ps) = self.steady(&s);
        let mut rss = vec![(rs.clone(), self.start)];
        match v {
            Variant::Plain if self.rng.chance(0.5) => {
                // A strong daily curve.
                s.traffic.amp = self.rng.range(0.3, 0.5);
                for p in &mut ps {
                    p.traffic = s.traffic;
                }
            }
            Variant::Batch => {
                let period = self.rng.range(300.0, 900.0);
                let dur = self.rng.range(20.0, 150.0);
                let phase = self.rng.f64();
                let extra = self.rng.range(1.0, 2.0);
                if self.rng.chance(0.5) {
                    for p in &mut ps {
                        let ph = (phase + self.rng.range(0.0, 0.05)).fract();
                        p.bs.push(B::Batch {
                            period,
                            dur,
                            phase: ph,
                            extra,
                        });
                    }
                } else {
                    let i = self.pick(s.n);
                    ps[i].bs.push(B::Batch {
                        period,
                        dur,
                        phase,
                        extra,
                    });
                }
            }
            Variant::Jit => {
                let new = self.rng.int(1, 3) as usize;
                for _ in 0..new {
                    let start = (eval - self.rng.range(60.0, 600.0)).floor();
                    let mut p = self.pod(&s, &rs, start);
                    p.bs.push(B::Jit {
                        mult: self.rng.range(1.5, 3.0),
                        tau: self.rng.range(30.0, 120.0),
                    });
                    ps.push(p);
                }
                s.n = ps.len();
            }
            Variant::RollingUpdate => {
                let new_rs = format!("{}-{}", s.name, rs_hash(self.rng));
                let begin = (eval - self.rng.range(60.0, 900.0)).floor();
                let batch = s.n.div_ceil(4);
                let gap = self.rng.range(20.0, 60.0).floor();
                let jit = (self.rng.range(1.5, 3.0), self.rng.range(30.0, 120.0));
                let mut new = vec![];
                for (k, old) in ps.iter_mut().enumerate() {
                    let start = begin + gap * (k / batch) as f64;
                    if start >= eval {
                        break;
                    }
                    old.pod.end = Some(start + self.rng.range(10.0, 30.0).floor() + 30.0);
                    new.push(start);
                }
                for start in new {
                    let mut p = self.pod(&s, &new_rs, start);
                    p.bs.push(B::Jit {
                        mult: jit.0,
                        tau: jit.1,
                    });
                    ps.push(p);
                }
                rss.push((new_rs, begin));
            }
            Variant::GoGc => {
                for p in &mut ps {
                    let ratio = self.rng.range(1.3, 2.0);
                    p.memory = p.memory.min(0.8 * s.mem_limit / ratio);
                    p.bs.push(B::GoGc {
                        period: self.rng.range(30.0, 300.0),
                        ratio,
                        phase: self.rng.f64(),
                    });
                }
            }
            Variant::Jvm => {
                let recent = self.rng.chance(0.5);
                let level = self.rng.range(0.6, 0.85) * s.mem_limit;
                for p in &mut ps {
                    if recent {
                        p.pod.start = (eval - self.rng.range(600.0, 2400.0)).floor();
                    }
                    let ramp = self.rng.range(600.0, 2400.0);
                    let k = self.rng.int(2, 5);
                    let add = (level - 0.3 * p.memory) / k as f64;
                    let steps = (1..=k)
                        .map(|j| (ramp * j as f64 / k as f64 * self.rng.range(0.8, 1.0), add))
                        .collect();
                    p.bs.push(B::Jvm {
                        steps,
                        ripple: self.rng.range(0.02, 0.05),
                    });
                }
            }
            Variant::CacheFill => {
                let cap = self.rng.range(0.15, 0.4) * s.mem_limit;
                let tau = self.rng.range(300.0, 1200.0);
                let from = (eval - self.rng.range(300.0, 3600.0)).floor();
                for p in &mut ps {
                    p.memory = p.memory.min(0.5 * s.mem_limit);
                    p.bs.push(B::Cache { from, tau, cap });
                }
            }
            Variant::NoisyNeighbour => {
                let from = (eval - self.rng.range(300.0, 1200.0)).floor();
                let to = from + self.rng.range(300.0, 1200.0);
                let factor = self.rng.range(0.5, 0.8);
                let node = ps[0].pod.node.clone();
                let k = self.rng.int(1, (s.n as u64 / 2).max(1));
                for p in ps.iter_mut().take(k as usize) {
                    p.pod.node.clone_from(&node);
                    p.bs.push(B::Neighbour { from, to, factor });
                }
            }
            Variant::Busy => {
                let level = self.rng.range(0.55, 0.8);
                for p in &mut ps {
                    p.cpu = level * s.cpu_limit * self.rng.range(0.95, 1.05) / 1.2;
                    p.throttle = self.rng.range(0.0, 0.1);
                }
            }
            Variant::CounterReset => {
                let i = self.pick(s.n);
                let at = (eval - self.rng.range(30.0, 1200.0)).floor();
                let reason = if self.rng.chance(0.5) {
                    "OOMKilled"
                } else {
                    "Error"
                };
                ps[i].bs.push(B::Crash { at, reason });
            }
            Variant::MissedScrapes => {
                let miss = (self.rng.range(0.02, 0.1), self.rng.range(0.01, 0.04));
                for p in &mut ps {
                    p.miss = miss;
                }
            }
            _ => {}
        }
        self.label(&s, Class::Healthy, v, vec![], None, "None");
        self.emit(&s, &rss, &ps);
    }
}

/// The healthy behaviours of the spec (2–11).
pub const HEALTHY: [Variant; 10] = [
    Variant::Batch,
    Variant::Jit,
    Variant::RollingUpdate,
    Variant::GoGc,
    Variant::Jvm,
    Variant::CacheFill,
    Variant::NoisyNeighbour,
    Variant::Busy,
    Variant::CounterReset,
    Variant::MissedScrapes,
];

/// The labelled workloads of one seed of the second generator, evaluated at `eval`.
pub fn generate(seed: u64, eval: f64) -> Generated {
    let mut rng = Rng::new(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xBE4A_710B);
    let mut kinds: Vec<(Class, Variant)> = vec![];
    for c in [
        Class::RunawayProcess,
        Class::ResourceContention,
        Class::MemoryLeak,
        Class::CrashLoop,
    ] {
        kinds.extend(std::iter::repeat_n((c, Variant::Plain), 16));
    }
    kinds.extend(std::iter::repeat_n((Class::Healthy, Variant::Plain), 16));
    for v in HEALTHY {
        kinds.extend(std::iter::repeat_n((Class::Healthy, v), 10));
    }
    for i in (1..kinds.len()).rev() {
        let j = rng.int(0, i as u64) as usize;
        kinds.swap(i, j);
    }
    let mut g = G {
        rng: &mut rng,
        eval,
        start: eval - HISTORY,
        series: vec![],
        labels: vec![],
        next_key: seed << 24,
    };
    for (idx, (c, v)) in kinds.into_iter().enumerate() {
        match c {
            Class::RunawayProcess => g.runaway(idx),
            Class::ResourceContention => g.contention(idx),
            Class::MemoryLeak => g.leak(idx),
            Class::CrashLoop => g.crash_loop(idx),
            Class::Healthy => g.healthy(idx, v),
        }
    }
    let G { series, labels, .. } = g;
    Generated { series, labels }
}
