//! A seeded generator of labelled workloads: cAdvisor and kube-state-metrics series of Deployments
//! that are healthy, hard-negative healthy (bursts, warm-ups, busy, rolling updates, missed scrapes,
//! container restarts, benign memory growth) or faulty (runaway, contention, leak, crash loop).

use crate::support::{
    Rng, SeriesData,
    k8s::{Emit, Pod, PodState, Scrape, pod_series, replicaset_owner, status_series},
    noise,
};

const MIB: f64 = 1024.0 * 1024.0;

/// The labelled class of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    RunawayProcess,
    ResourceContention,
    MemoryLeak,
    CrashLoop,
    Healthy,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::RunawayProcess,
        Class::ResourceContention,
        Class::MemoryLeak,
        Class::CrashLoop,
        Class::Healthy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::RunawayProcess => "RunawayProcess",
            Class::ResourceContention => "ResourceContention",
            Class::MemoryLeak => "MemoryLeak",
            Class::CrashLoop => "CrashLoop",
            Class::Healthy => "Healthy",
        }
    }

    /// The action a correct operator takes.
    pub fn action(self) -> &'static str {
        match self {
            Class::RunawayProcess | Class::MemoryLeak => "RestartPod",
            Class::ResourceContention => "Scale",
            Class::CrashLoop => "Escalate",
            Class::Healthy => "None",
        }
    }

    /// Whether the implicated pods are scored (the action targets them).
    pub fn pod_level(self) -> bool {
        matches!(self, Class::RunawayProcess | Class::MemoryLeak)
    }
}

/// The kind of a workload: its class's plain form, or a hard negative (labelled Healthy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// A fault or plain healthy.
    Plain,
    /// A CPU burst (one pod) or a throttling burst (all pods) shorter than the detector's `for`.
    Burst,
    /// Pods started within the last few minutes, busy while warming up.
    WarmUp,
    /// Every pod at 60–75 % of its CPU limit, barely throttled.
    Busy,
    /// A rolling update: pods replaced one by one by pods with new names.
    RollingUpdate,
    /// Many missed scrapes, some in runs.
    MissedScrapes,
    /// One container restarted once (its counters reset, its memory refills).
    CounterReset,
    /// GC sawtooth, slow growth or a cache filling up towards a plateau.
    MemoryBenign,
    /// Second generator: periodic batch jobs (every pod, or the leader).
    Batch,
    /// Second generator: JIT warm-up of new pods.
    Jit,
    /// Second generator: a Go heap's GC sawtooth.
    GoGc,
    /// Second generator: a JVM's committed heap stepping up to a plateau.
    Jvm,
    /// Second generator: a cache filling up.
    CacheFill,
    /// Second generator: a noisy neighbour taking CPU on one node.
    NoisyNeighbour,
}

impl Variant {
    pub const HARD: [Variant; 7] = [
        Variant::Burst,
        Variant::WarmUp,
        Variant::Busy,
        Variant::RollingUpdate,
        Variant::MissedScrapes,
        Variant::CounterReset,
        Variant::MemoryBenign,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Burst => "short burst",
            Variant::WarmUp => "warm-up after start",
            Variant::Busy => "busy but healthy",
            Variant::RollingUpdate => "rolling update",
            Variant::MissedScrapes => "missed scrapes",
            Variant::CounterReset => "container restart",
            Variant::MemoryBenign => "benign memory growth",
            Variant::Batch => "batch spikes",
            Variant::Jit => "JIT warm-up",
            Variant::GoGc => "Go GC sawtooth",
            Variant::Jvm => "JVM heap",
            Variant::CacheFill => "cache filling",
            Variant::NoisyNeighbour => "noisy neighbour",
        }
    }
}

/// The ground truth of one workload.
#[derive(Clone, Debug)]
pub struct Label {
    pub namespace: String,
    pub name: String,
    pub class: Class,
    pub variant: Variant,
    /// Pods the fault lives in (sorted); empty for Healthy.
    pub pods: Vec<String>,
    /// When the fault began.
    pub onset: Option<f64>,
    /// Scrape interval (s).
    pub interval: f64,
    /// Replicas.
    pub replicas: usize,
    /// The correct action at the evaluation time: the class's, or None while a leak's OOM is
    /// beyond the default `horizon` (30 minutes).
    pub action: &'static str,
}

/// A generated data set.
pub struct Generated {
    pub series: Vec<SeriesData>,
    pub labels: Vec<Label>,
}

/// How many workloads of each kind one seed generates.
pub const PER_FAULT_CLASS: usize = 18;
pub const PLAIN_HEALTHY: usize = 18;
pub const PER_HARD_NEGATIVE: usize = 9;

/// History before the evaluation time.
pub const HISTORY: f64 = 45.0 * 60.0;
/// Fault onsets fall within `[eval - ONSET_EARLIEST, eval - ONSET_LATEST]`.
pub const ONSET_EARLIEST: f64 = 30.0 * 60.0;
pub const ONSET_LATEST: f64 = 20.0 * 60.0;

/// What changes a pod's behaviour over time.
#[derive(Clone, Debug)]
enum Event {
    /// CPU at `cpu` cores and throttling `throttle` within `[from, to)`.
    Cpu {
        from: f64,
        to: f64,
        cpu: f64,
        throttle: f64,
    },
    /// Working set grows by `slope` bytes/s from `from`.
    Leak { from: f64, slope: f64 },
    /// GC sawtooth of `amp` bytes every `period` s.
    Saw { period: f64, amp: f64, phase: f64 },
    /// A cache filling up from `from`: `extra * (1 - exp(-(t - from) / tau))`.
    Fill { from: f64, tau: f64, extra: f64 },
    /// A crash loop from `onset`: kubelet back-off (10 s doubling to 300 s), `run` s of running
    /// before each crash.
    CrashLoop { onset: f64, run: f64 },
    /// One container restart at `at`.
    Restart { at: f64 },
}

/// One pod's plan.
#[derive(Clone, Debug)]
struct Plan {
    pod: Pod,
    key: u64,
    cpu: f64,
    cpu_noise: f64,
    wander: (f64, f64, f64),
    throttle: f64,
    memory: f64,
    events: Vec<Event>,
    /// Per-scrape miss probability and probability that a 3-scrape block is missed.
    miss: (f64, f64),
    /// Busy at 90 % of its limit for this long after each (re)start.
    warm_busy: f64,
    /// The evaluation time: noise is keyed on time relative to it, so a seed gives the same data
    /// (relative to the evaluation time) whenever it runs.
    origin: f64,
}

/// The crash loop's restart times (container (re)starts after back-off) up to `until`.
fn loop_restarts(onset: f64, run: f64, until: f64) -> Vec<(f64, f64)> {
    // (crash time, restart time)
    let mut out = vec![];
    let (mut crash, mut backoff) = (onset, 10.0_f64);
    while crash <= until {
        let restart = crash + backoff;
        out.push((crash, restart));
        crash = restart + run;
        backoff = (backoff * 2.0).min(300.0);
    }
    out
}

impl Plan {
    fn limit_cpu(&self) -> f64 {
        self.pod.cpu_limit.unwrap_or(1.0)
    }

    fn limit_mem(&self) -> f64 {
        self.pod.memory_limit.unwrap_or(1e9)
    }

    /// Restart times (container starts after the first) up to `t`.
    fn restarts_until(&self, t: f64) -> Vec<f64> {
        let mut r = vec![];
        for e in &self.events {
            match e {
                Event::CrashLoop { onset, run } => {
                    r.extend(
                        loop_restarts(*onset, *run, t)
                            .into_iter()
                            .map(|(_, s)| s)
                            .filter(|s| *s <= t),
                    );
                }
                Event::Restart { at } if *at <= t => r.push(*at),
                _ => {}
            }
        }
        r.sort_by(f64::total_cmp);
        r
    }

    /// Whether the container runs at `t` (not waiting in a crash loop's back-off).
    fn running(&self, t: f64) -> bool {
        for e in &self.events {
            if let Event::CrashLoop { onset, run } = e {
                if t < *onset {
                    return true;
                }
                for (crash, restart) in loop_restarts(*onset, *run, t) {
                    if t >= crash && t < restart {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// kube-state-metrics' waiting reason at `t`: `CrashLoopBackOff` during a back-off (a loop's,
    /// or the 10 s before a single restart).
    fn waiting(&self, t: f64) -> Option<&'static str> {
        for e in &self.events {
            match *e {
                Event::CrashLoop { onset, run }
                    if t >= onset
                        && loop_restarts(onset, run, t)
                            .iter()
                            .any(|(crash, restart)| t >= *crash && t < *restart) =>
                {
                    return Some("CrashLoopBackOff");
                }
                Event::Restart { at } if t >= at - 10.0 && t < at => {
                    return Some("CrashLoopBackOff");
                }
                _ => {}
            }
        }
        None
    }

    /// kube-state-metrics' last-terminated reason at `t`.
    fn last_terminated(&self, t: f64) -> Option<&'static str> {
        for e in &self.events {
            match *e {
                Event::CrashLoop { onset, .. } if t >= onset => return Some("Error"),
                Event::Restart { at } if t >= at - 10.0 => {
                    return Some(if self.key.is_multiple_of(2) {
                        "OOMKilled"
                    } else {
                        "Error"
                    });
                }
                _ => {}
            }
        }
        None
    }

    fn noise(&self, salt: u64, t: f64) -> f64 {
        noise(self.key ^ salt, t - self.origin)
    }

    fn state(&self, t: f64) -> PodState {
        let restarts = self.restarts_until(t);
        let container_start = restarts.last().copied().unwrap_or(self.pod.start);
        let age = t - container_start;
        let (amp, period, phase) = self.wander;
        let wander =
            1.0 + amp * (((t - self.origin) / period + phase) * std::f64::consts::TAU).sin();
        let mut cpu = self.cpu * wander * (1.0 + self.cpu_noise * self.noise(0, t));
        let mut throttle = (self.throttle * (1.0 + 0.5 * self.noise(7, t))).clamp(0.0, 1.0);
        // Memory refills after a (re)start.
        let fill = 0.3 + 0.7 * (1.0 - (-age.max(0.0) / 45.0).exp());
        let mut memory = self.memory * fill;
        if age < self.warm_busy {
            cpu = 0.9 * self.limit_cpu() * (1.0 + 0.05 * self.noise(3, t));
            throttle = 0.4;
        }
        let mut looping = false;
        for e in &self.events {
            match *e {
                Event::Cpu {
                    from,
                    to,
                    cpu: c,
                    throttle: th,
                } if t >= from && t < to => {
                    cpu = c * (1.0 + 0.03 * self.noise(11, t));
                    throttle = (th * (1.0 + 0.2 * self.noise(13, t))).clamp(0.0, 1.0);
                }
                Event::Leak { from, slope } if t >= from => {
                    memory += slope * (t - from.max(container_start));
                }
                Event::Saw { period, amp, phase } => {
                    memory += amp * (((t - self.origin) / period + phase).rem_euclid(1.0));
                }
                Event::Fill { from, tau, extra } if t >= from => {
                    memory += extra * (1.0 - (-(t - from) / tau).exp());
                }
                Event::CrashLoop { onset, .. } if t >= onset => looping = true,
                _ => {}
            }
        }
        if looping {
            cpu = 0.005;
            throttle = 0.0;
            memory = 0.08 * self.limit_mem() * fill;
        }
        memory *= 1.0 + 0.015 * self.noise(17, t);
        PodState {
            cpu: cpu.max(0.0).min(self.limit_cpu()),
            throttle,
            memory: memory.min(self.limit_mem()),
            restarts: restarts.len() as u32,
        }
    }

    fn scraped(&self, t: f64, interval: f64, salt: u64) -> bool {
        let (p, block) = self.miss;
        let rel = t - self.origin;
        let single = (self.noise(salt, t) + 1.0) / 2.0 < p;
        let run =
            (noise(self.key ^ salt ^ 0xB10C, (rel / (3.0 * interval)).floor()) + 1.0) / 2.0 < block;
        !(single || run)
    }
}

fn suffix(rng: &mut Rng) -> String {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| A[rng.int(0, A.len() as u64 - 1) as usize] as char)
        .collect()
}

fn rs_hash(rng: &mut Rng) -> String {
    format!("{:x}", rng.int(0x1000_0000, 0xffff_ffff))[..8].to_string() + "d"
}

struct Builder<'a> {
    rng: &'a mut Rng,
    eval: f64,
    start: f64,
    series: Vec<SeriesData>,
    labels: Vec<Label>,
    next_key: u64,
}

/// Per-workload settings drawn once.
struct Shape {
    ns: String,
    name: String,
    n: usize,
    interval: f64,
    cad: Scrape,
    ksm: Scrape,
    cpu_limit: f64,
    mem_limit: f64,
    util: f64,
    mem_frac: f64,
    miss: (f64, f64),
}

impl Builder<'_> {
    fn shape(&mut self, idx: usize, min_n: usize) -> Shape {
        let rng = &mut *self.rng;
        let n = rng.int(min_n as u64, 10) as usize;
        let interval = if rng.chance(0.3) { 30.0 } else { 15.0 };
        let cad = Scrape {
            from: self.start,
            to: self.eval + 1.0,
            interval,
            offset: rng.range(0.0, interval).floor(),
        };
        let ksm = Scrape {
            offset: rng.range(0.0, interval).floor(),
            ..cad
        };
        let cpu_limit = [0.5, 1.0, 2.0, 4.0][rng.int(0, 3) as usize];
        let mem_limit = [256.0, 512.0, 1024.0, 2048.0][rng.int(0, 3) as usize] * MIB;
        // A quarter of all workloads miss some scrapes.
        let miss = if rng.chance(0.25) {
            (rng.range(0.01, 0.04), rng.range(0.0, 0.02))
        } else {
            (0.0, 0.0)
        };
        Shape {
            ns: format!("team-{}", ["a", "b", "c", "d", "e"][idx % 5]),
            name: format!("svc-{idx:03}"),
            n,
            interval,
            cad,
            ksm,
            cpu_limit,
            mem_limit,
            util: rng.range(0.05, 0.4),
            mem_frac: rng.range(0.2, 0.55),
            miss,
        }
    }

    fn plan(&mut self, s: &Shape, rs: &str, start: f64) -> Plan {
        let key = self.next_key;
        self.next_key += 1;
        let rng = &mut *self.rng;
        let mut pod = Pod::of_replicaset(&s.ns, rs, &suffix(rng), start);
        pod.node = format!("node-{}", rng.int(1, 12));
        pod.cpu_limit = Some(s.cpu_limit);
        pod.memory_limit = Some(s.mem_limit);
        Plan {
            pod,
            key: key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ rng.next_u64(),
            cpu: s.util * s.cpu_limit * rng.range(0.75, 1.25),
            cpu_noise: rng.range(0.05, 0.2),
            wander: (
                rng.range(0.0, 0.15),
                rng.range(300.0, 1200.0),
                rng.range(0.0, 1.0),
            ),
            throttle: rng.range(0.0, 0.04),
            memory: s.mem_frac * s.mem_limit * rng.range(0.9, 1.1),
            events: vec![],
            miss: s.miss,
            warm_busy: 0.0,
            origin: self.eval,
        }
    }

    fn old_start(&mut self) -> f64 {
        self.start - self.rng.range(3600.0, 3.0 * 86400.0).floor()
    }

    fn emit(&mut self, s: &Shape, rs_of: &[(String, f64, f64)], plans: &[Plan]) {
        for (rs, from, to) in rs_of {
            self.series
                .push(replicaset_owner(&s.ns, rs, &s.name, s.ksm, *from, *to));
        }
        for p in plans {
            let interval = s.interval;
            self.series.extend(pod_series(
                &p.pod,
                s.cad,
                s.ksm,
                |t| p.state(t),
                |t| p.running(t) && p.scraped(t, interval, 1),
                |t| p.scraped(t, interval, 2),
                Emit { pod_level: false },
            ));
            self.series.extend(status_series(
                &p.pod,
                s.ksm,
                |t| p.waiting(t),
                |t| p.last_terminated(t),
                |t| p.scraped(t, interval, 2),
            ));
        }
    }

    fn label(
        &mut self,
        s: &Shape,
        class: Class,
        variant: Variant,
        mut pods: Vec<String>,
        onset: Option<f64>,
    ) {
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
            action: class.action(),
        });
    }

    fn onset(&mut self) -> f64 {
        (self.eval - self.rng.range(ONSET_LATEST, ONSET_EARLIEST)).floor()
    }

    /// Steady pods of one ReplicaSet.
    fn steady(&mut self, s: &Shape) -> (String, Vec<Plan>) {
        let rs = format!("{}-{}", s.name, rs_hash(self.rng));
        let mut plans = vec![];
        for _ in 0..s.n {
            let start = self.old_start();
            plans.push(self.plan(s, &rs, start));
        }
        (rs, plans)
    }

    fn finish(&mut self, s: &Shape, rs: String, plans: Vec<Plan>) {
        let (from, to) = (self.start, self.eval + 1.0);
        self.emit(s, &[(rs, from, to)], &plans);
    }

    fn runaway(&mut self, idx: usize) {
        let s = self.shape(idx, 2);
        let (rs, mut plans) = self.steady(&s);
        let k = if s.n >= 6 && self.rng.chance(0.3) {
            2
        } else {
            1
        };
        let onset = self.onset();
        let mut pods = vec![];
        for _ in 0..k {
            let i = self.rng.int(0, s.n as u64 - 1) as usize;
            if pods.contains(&plans[i].pod.name) {
                continue;
            }
            // Pinned at its limit by CFS (throttled), or spinning at 4-8x its usual usage (and at
            // least a quarter core more) while still under its limit.
            let spin = (plans[i].cpu * self.rng.range(4.0, 8.0)).max(plans[i].cpu + 0.25);
            let (cpu, throttle) = if spin <= 0.85 * s.cpu_limit && self.rng.chance(0.3) {
                (spin, self.rng.range(0.0, 0.1))
            } else {
                (
                    s.cpu_limit * self.rng.range(0.95, 1.0),
                    self.rng.range(0.3, 0.7),
                )
            };
            let at = onset + self.rng.range(0.0, 60.0).floor();
            plans[i].events.push(Event::Cpu {
                from: at,
                to: f64::INFINITY,
                cpu,
                throttle,
            });
            pods.push(plans[i].pod.name.clone());
        }
        self.label(&s, Class::RunawayProcess, Variant::Plain, pods, Some(onset));
        self.finish(&s, rs, plans);
    }

    fn contention(&mut self, idx: usize) {
        let s = self.shape(idx, 1);
        let (rs, mut plans) = self.steady(&s);
        let onset = self.onset();
        for p in &mut plans {
            let cpu = s.cpu_limit * self.rng.range(0.92, 1.0);
            let throttle = self.rng.range(0.3, 0.7);
            p.events.push(Event::Cpu {
                from: onset + self.rng.range(0.0, 30.0).floor(),
                to: f64::INFINITY,
                cpu,
                throttle,
            });
        }
        let pods = plans.iter().map(|p| p.pod.name.clone()).collect();
        self.label(
            &s,
            Class::ResourceContention,
            Variant::Plain,
            pods,
            Some(onset),
        );
        self.finish(&s, rs, plans);
    }

    fn leak(&mut self, idx: usize) {
        let s = self.shape(idx, 1);
        let (rs, mut plans) = self.steady(&s);
        let k = if s.n >= 4 && self.rng.chance(0.25) {
            2
        } else {
            1
        };
        let onset = self.onset();
        let mut pods = vec![];
        for _ in 0..k {
            let i = self.rng.int(0, s.n as u64 - 1) as usize;
            if pods.contains(&plans[i].pod.name) {
                continue;
            }
            // Reaches the limit (an OOM kill) 4–25 minutes after the evaluation time.
            let remaining = self.rng.range(240.0, 1500.0);
            let elapsed = self.eval - onset;
            let slope = (s.mem_limit - plans[i].memory) / (remaining + elapsed);
            plans[i].events.push(Event::Leak { from: onset, slope });
            if self.rng.chance(0.3) {
                // A small GC sawtooth on top.
                plans[i].events.push(Event::Saw {
                    period: self.rng.range(60.0, 240.0),
                    amp: 0.04 * s.mem_limit,
                    phase: self.rng.f64(),
                });
            }
            pods.push(plans[i].pod.name.clone());
        }
        self.label(&s, Class::MemoryLeak, Variant::Plain, pods, Some(onset));
        self.finish(&s, rs, plans);
    }

    fn crash_loop(&mut self, idx: usize) {
        let s = self.shape(idx, 1);
        let (rs, mut plans) = self.steady(&s);
        let onset = self.onset();
        // A bad dependency or config: one pod, or every pod.
        let all = self.rng.chance(0.3);
        let mut pods = vec![];
        let chosen = self.rng.int(0, s.n as u64 - 1) as usize;
        for (i, p) in plans.iter_mut().enumerate() {
            if all || i == chosen {
                let run = self.rng.range(2.0, 60.0).floor();
                let at = onset + self.rng.range(0.0, 30.0).floor();
                p.events.push(Event::CrashLoop { onset: at, run });
                pods.push(p.pod.name.clone());
            }
        }
        self.label(&s, Class::CrashLoop, Variant::Plain, pods, Some(onset));
        self.finish(&s, rs, plans);
    }

    fn healthy(&mut self, idx: usize, variant: Variant) {
        let mut s = self.shape(idx, 1);
        let eval = self.eval;
        match variant {
            // The second generator's behaviours are not made here: plain healthy.
            Variant::Plain
            | Variant::Batch
            | Variant::Jit
            | Variant::GoGc
            | Variant::Jvm
            | Variant::CacheFill
            | Variant::NoisyNeighbour => {
                let (rs, plans) = self.steady(&s);
                self.label(&s, Class::Healthy, variant, vec![], None);
                self.finish(&s, rs, plans);
            }
            Variant::Burst => {
                if s.n < 2 {
                    s.n = 2;
                }
                let (rs, mut plans) = self.steady(&s);
                let end = eval - self.rng.range(0.0, 20.0).floor();
                if self.rng.chance(0.5) {
                    // One pod spikes for less than RunawayProcess' 2 minutes.
                    let d = self.rng.range(15.0, 90.0).floor();
                    let i = self.rng.int(0, s.n as u64 - 1) as usize;
                    plans[i].events.push(Event::Cpu {
                        from: end - d,
                        to: end,
                        cpu: s.cpu_limit * self.rng.range(0.9, 1.0),
                        throttle: self.rng.range(0.3, 0.7),
                    });
                } else {
                    // Every pod throttled for less than ResourceContention's 3 minutes.
                    let d = self.rng.range(30.0, 140.0).floor();
                    for p in &mut plans {
                        p.events.push(Event::Cpu {
                            from: end - d,
                            to: end,
                            cpu: s.cpu_limit * 0.95,
                            throttle: 0.5,
                        });
                    }
                }
                self.label(&s, Class::Healthy, variant, vec![], None);
                self.finish(&s, rs, plans);
            }
            Variant::WarmUp => {
                // Scaled up (or replaced) recently: 1–3 new pods, busy for up to a minute.
                let (rs, mut plans) = self.steady(&s);
                let new = self.rng.int(1, 3) as usize;
                for _ in 0..new {
                    let start = (eval - self.rng.range(30.0, 240.0)).floor();
                    let mut p = self.plan(&s, &rs, start);
                    p.warm_busy = self.rng.range(15.0, 60.0).floor();
                    plans.push(p);
                }
                s.n = plans.len();
                self.label(&s, Class::Healthy, variant, vec![], None);
                self.finish(&s, rs, plans);
            }
            Variant::Busy => {
                let (rs, mut plans) = self.steady(&s);
                let level = self.rng.range(0.6, 0.75);
                for p in &mut plans {
                    p.cpu = level * s.cpu_limit * self.rng.range(0.95, 1.05);
                    p.cpu_noise = 0.1;
                    p.throttle = self.rng.range(0.0, 0.08);
                }
                self.label(&s, Class::Healthy, variant, vec![], None);
                self.finish(&s, rs, plans);
            }
            Variant::RollingUpdate => {
                let (old_rs, mut plans) = self.steady(&s);
                let new_rs = format!("{}-{}", s.name, rs_hash(self.rng));
                let begin = (eval - self.rng.range(60.0, 600.0)).floor();
                let gap = self.rng.range(20.0, 40.0).floor();
                let busy = if self.rng.chance(0.5) {
                    self.rng.range(10.0, 45.0).floor()
                } else {
                    0.0
                };
                let mut new = vec![];
                for (i, old) in plans.iter_mut().enumerate() {
                    let start = begin + gap * i as f64;
                    if start >= eval {
                        break;
                    }
                    old.pod.end = Some(start + self.rng.range(5.0, 20.0).floor());
                    new.push(start);
                }
                let mut new_plans = vec![];
                for start in new {
                    let mut p = self.plan(&s, &new_rs, start);
                    p.warm_busy = busy;
                    new_plans.push(p);
                }
                plans.extend(new_plans);
                self.label(&s, Class::Healthy, variant, vec![], None);
                let (from, to) = (self.start, eval + 1.0);
                self.emit(&s, &[(old_rs, from, to), (new_rs, begin, to)], &plans);
            }
            Variant::MissedScrapes => {
                s.miss = (self.rng.range(0.04, 0.1), self.rng.range(0.02, 0.05));
                let (rs, plans) = self.steady(&s);
                self.label(&s, Class::Healthy, variant, vec![], None);
                self.finish(&s, rs, plans);
            }
            Variant::CounterReset => {
                let (rs, mut plans) = self.steady(&s);
                let i = self.rng.int(0, s.n as u64 - 1) as usize;
                let at = (eval - self.rng.range(30.0, 600.0)).floor();
                plans[i].events.push(Event::Restart { at });
                plans[i].warm_busy = self.rng.range(0.0, 45.0).floor();
                self.label(&s, Class::Healthy, variant, vec![], None);
                self.finish(&s, rs, plans);
            }
            Variant::MemoryBenign => {
                let (rs, mut plans) = self.steady(&s);
                let kind = self.rng.int(0, 2);
                for p in &mut plans {
                    match kind {
                        0 => {
                            // GC sawtooth peaking at 60–90 % of the limit.
                            let peak = self.rng.range(0.6, 0.9) * s.mem_limit;
                            let amp = self.rng.range(0.1, 0.3) * s.mem_limit;
                            p.memory = (peak - amp).max(0.1 * s.mem_limit);
                            p.events.push(Event::Saw {
                                period: self.rng.range(60.0, 300.0),
                                amp,
                                phase: self.rng.f64(),
                            });
                        }
                        1 => {
                            // Slow growth: hours from the limit.
                            let hours = self.rng.range(3.0, 12.0);
                            let slope = (s.mem_limit - p.memory) / (hours * 3600.0);
                            p.events.push(Event::Leak {
                                from: self.start,
                                slope,
                            });
                        }
                        _ => {
                            // A cache that filled up after a deploy 15–40 minutes ago.
                            let from = (eval - self.rng.range(900.0, 2400.0)).floor();
                            let extra = self.rng.range(0.1, 0.3) * s.mem_limit;
                            p.events.push(Event::Fill {
                                from,
                                tau: self.rng.range(120.0, 300.0),
                                extra,
                            });
                        }
                    }
                }
                self.label(&s, Class::Healthy, variant, vec![], None);
                self.finish(&s, rs, plans);
            }
        }
    }
}

/// The labelled workloads of one seed, evaluated at `eval`.
pub fn generate(seed: u64, eval: f64) -> Generated {
    let mut rng = Rng::new(seed.wrapping_mul(0xA076_1D64_78BD_642F) ^ 0x5EED);
    let start = eval - HISTORY;
    let mut kinds: Vec<(Class, Variant)> = vec![];
    for class in [
        Class::RunawayProcess,
        Class::ResourceContention,
        Class::MemoryLeak,
        Class::CrashLoop,
    ] {
        kinds.extend(std::iter::repeat_n(
            (class, Variant::Plain),
            PER_FAULT_CLASS,
        ));
    }
    kinds.extend(std::iter::repeat_n(
        (Class::Healthy, Variant::Plain),
        PLAIN_HEALTHY,
    ));
    for v in Variant::HARD {
        kinds.extend(std::iter::repeat_n((Class::Healthy, v), PER_HARD_NEGATIVE));
    }
    // Shuffle so that names say nothing about classes.
    for i in (1..kinds.len()).rev() {
        let j = rng.int(0, i as u64) as usize;
        kinds.swap(i, j);
    }
    let mut b = Builder {
        rng: &mut rng,
        eval,
        start,
        series: vec![],
        labels: vec![],
        next_key: seed << 20,
    };
    for (idx, (class, variant)) in kinds.into_iter().enumerate() {
        match class {
            Class::RunawayProcess => b.runaway(idx),
            Class::ResourceContention => b.contention(idx),
            Class::MemoryLeak => b.leak(idx),
            Class::CrashLoop => b.crash_loop(idx),
            Class::Healthy => b.healthy(idx, variant),
        }
    }
    let Builder { series, labels, .. } = b;
    Generated { series, labels }
}
