//! The pure scenario model: no I/O, no clock. Given the scenario parameters of
//! a Deployment, the facts about its Running pods and the current time, it
//! decides what every pod "does" right now (CPU rate, CFS throttling, working
//! set, restart events). The only state it keeps is what the scenarios need
//! to remember (which pod went runaway, which pods leak, how many simulated
//! restarts a pod has had), so the model is deterministic and unit-testable
//! with synthetic times.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};

use crate::quantity::parse_quantity;

/// Deployment annotation selecting the scenario.
pub const ANN_SCENARIO: &str = "homeostat.dev/scenario";
/// Delay between the simulator first seeing the Deployment and the fault.
pub const ANN_SICK_AFTER: &str = "homeostat.dev/sick-after";
/// Total CPU demand (cores) of the `contention` scenario.
pub const ANN_LOAD: &str = "homeostat.dev/load";
/// Working-set growth of the `leak` scenario, bytes per second.
pub const ANN_LEAK_RATE: &str = "homeostat.dev/leak-rate";
/// Which pods leak in the `leak` scenario: "one" (oldest) or "all".
pub const ANN_LEAK_PODS: &str = "homeostat.dev/leak-pods";
/// Offset of the pods' node clock ("-60s", "+30s"): cAdvisor samples carry explicit
/// timestamps that far from the simulator's clock, as a kubelet with a skewed clock writes them.
pub const ANN_CLOCK_OFFSET: &str = "homeostat.dev/clock-offset";
/// How many of the youngest pods export no cAdvisor series (kube-state-metrics still lists
/// them), as when a kubelet's scrape fails or cAdvisor misses a container.
pub const ANN_UNEXPORTED_PODS: &str = "homeostat.dev/unexported-pods";

/// CPU limit assumed for a pod that declares none.
pub const DEFAULT_CPU_LIMIT_CORES: f64 = 1.0;
/// Memory limit assumed for a pod that declares none (512Mi).
pub const DEFAULT_MEMORY_LIMIT_BYTES: f64 = 512.0 * 1024.0 * 1024.0;
/// Default total demand of the `contention` scenario, cores.
pub const DEFAULT_LOAD_CORES: f64 = 3.0;
/// Interval between two simulated crashes in the `crashloop` scenario.
pub const CRASHLOOP_INTERVAL: SignedDuration = SignedDuration::from_secs(15);
/// Length of the CPU burst in the `burst` scenario.
pub const BURST_DURATION: SignedDuration = SignedDuration::from_secs(15);
/// The default leak would take this long to go from 0 to the memory limit.
pub const DEFAULT_LEAK_SECONDS_TO_LIMIT: f64 = 300.0;

/// Fraction of the CPU limit a healthy pod uses (before jitter).
pub const HEALTHY_CPU_FRACTION: f64 = 0.10;
/// Relative amplitude of the deterministic jitter on healthy CPU.
pub const HEALTHY_CPU_JITTER: f64 = 0.10;
/// Fraction of CFS periods a healthy pod is throttled in.
pub const HEALTHY_THROTTLE_FRACTION: f64 = 0.01;
/// Working set of a healthy pod, fraction of the memory limit.
pub const HEALTHY_MEMORY_FRACTION: f64 = 0.30;
/// CPU of the runaway pod, fraction of the limit.
pub const RUNAWAY_CPU_FRACTION: f64 = 0.97;
/// Throttling of the runaway pod.
pub const RUNAWAY_THROTTLE_FRACTION: f64 = 0.50;
/// Per-pod CPU cap in the `contention` scenario, fraction of the limit.
pub const CONTENTION_CPU_CAP_FRACTION: f64 = 0.98;
/// Working set of a freshly started pod in the `leak` scenario.
pub const LEAK_BASE_MEMORY_FRACTION: f64 = 0.20;
/// CPU of a crash-looping pod, fraction of the limit.
pub const CRASHLOOP_CPU_FRACTION: f64 = 0.02;
/// Working set of a crash-looping pod, fraction of the memory limit.
pub const CRASHLOOP_MEMORY_FRACTION: f64 = 0.15;
/// CPU during the burst, fraction of the limit.
pub const BURST_CPU_FRACTION: f64 = 0.95;
/// Throttling during the burst.
pub const BURST_THROTTLE_FRACTION: f64 = 0.60;

/// The fault a Deployment simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioKind {
    Healthy,
    Runaway,
    Contention,
    Leak,
    Crashloop,
    Burst,
}

impl ScenarioKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Runaway => "runaway",
            Self::Contention => "contention",
            Self::Leak => "leak",
            Self::Crashloop => "crashloop",
            Self::Burst => "burst",
        }
    }
}

impl fmt::Display for ScenarioKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScenarioKind {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "healthy" => Ok(Self::Healthy),
            "runaway" => Ok(Self::Runaway),
            "contention" => Ok(Self::Contention),
            "leak" => Ok(Self::Leak),
            "crashloop" => Ok(Self::Crashloop),
            "burst" => Ok(Self::Burst),
            other => Err(ParamError(format!(
                "unknown {ANN_SCENARIO} {other:?} (expected healthy, runaway, contention, leak, crashloop or burst)"
            ))),
        }
    }
}

/// Which pods leak in the `leak` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakPods {
    /// Only the oldest Running pod at fault start.
    One,
    /// Every pod Running at fault start.
    All,
}

/// A scenario annotation that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError(pub String);

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParamError {}

/// Parameters of a Deployment's scenario, from its annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioParams {
    pub kind: ScenarioKind,
    pub sick_after: SignedDuration,
    /// Total demand of the `contention` scenario, cores.
    pub load_cores: f64,
    /// Leak rate in bytes/s; `None` means memory limit / 300 s per pod.
    pub leak_rate_bytes_per_sec: Option<f64>,
    pub leak_pods: LeakPods,
    /// Offset of the cAdvisor samples' timestamps from the simulator's clock.
    pub clock_offset: SignedDuration,
    /// Number of youngest pods without cAdvisor series.
    pub unexported_pods: usize,
}

impl ScenarioParams {
    /// Defaults for a scenario kind.
    pub fn new(kind: ScenarioKind) -> Self {
        Self {
            kind,
            sick_after: SignedDuration::ZERO,
            load_cores: DEFAULT_LOAD_CORES,
            leak_rate_bytes_per_sec: None,
            leak_pods: LeakPods::One,
            clock_offset: SignedDuration::ZERO,
            unexported_pods: 0,
        }
    }

    /// Reads the parameters from a Deployment's annotations. `Ok(None)` when
    /// the Deployment has no scenario annotation (it is not simulated).
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Option<Self>, ParamError> {
        let Some(kind) = annotations.get(ANN_SCENARIO) else {
            return Ok(None);
        };
        let mut params = Self::new(kind.parse()?);
        if let Some(v) = annotations.get(ANN_SICK_AFTER) {
            params.sick_after = parse_duration(v)
                .ok_or_else(|| ParamError(format!("invalid {ANN_SICK_AFTER} {v:?}")))?;
        }
        if let Some(v) = annotations.get(ANN_LOAD) {
            params.load_cores = parse_quantity(v)
                .filter(|l| *l > 0.0)
                .ok_or_else(|| ParamError(format!("invalid {ANN_LOAD} {v:?}")))?;
        }
        if let Some(v) = annotations.get(ANN_LEAK_RATE) {
            let rate = parse_quantity(v)
                .ok_or_else(|| ParamError(format!("invalid {ANN_LEAK_RATE} {v:?}")))?;
            params.leak_rate_bytes_per_sec = Some(rate);
        }
        if let Some(v) = annotations.get(ANN_LEAK_PODS) {
            params.leak_pods = match v.trim().to_ascii_lowercase().as_str() {
                "one" => LeakPods::One,
                "all" => LeakPods::All,
                _ => {
                    return Err(ParamError(format!(
                        "invalid {ANN_LEAK_PODS} {v:?} (expected \"one\" or \"all\")"
                    )));
                }
            };
        }
        if let Some(v) = annotations.get(ANN_CLOCK_OFFSET) {
            params.clock_offset = parse_signed_duration(v)
                .ok_or_else(|| ParamError(format!("invalid {ANN_CLOCK_OFFSET} {v:?}")))?;
        }
        if let Some(v) = annotations.get(ANN_UNEXPORTED_PODS) {
            params.unexported_pods = v.trim().parse().map_err(|_| {
                ParamError(format!(
                    "invalid {ANN_UNEXPORTED_PODS} {v:?} (expected a count)"
                ))
            })?;
        }
        Ok(Some(params))
    }
}

/// Parses a duration with an optional sign: "-60s", "+30s", "15s".
pub fn parse_signed_duration(raw: &str) -> Option<SignedDuration> {
    let s = raw.trim();
    match s.strip_prefix('-') {
        Some(rest) => parse_duration(rest).map(|d| -d),
        None => parse_duration(s.strip_prefix('+').unwrap_or(s)),
    }
}

/// Parses "20s", "1m30s", "2m", "500ms", "PT20S" or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Option<SignedDuration> {
    let s = raw.trim();
    let d = if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return None;
        }
        SignedDuration::try_from_secs_f64(secs).ok()?
    } else {
        s.parse::<SignedDuration>().ok()?
    };
    (!d.is_negative()).then_some(d)
}

/// What the scenario needs to know about one Running pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    pub name: String,
    pub created_at: Timestamp,
    /// CPU limit of the (first) container, cores; the default when unset.
    pub cpu_limit_cores: f64,
    /// Memory limit of the (first) container, bytes; the default when unset.
    pub memory_limit_bytes: f64,
}

/// Why a simulated container restart happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationReason {
    /// Exited non-zero (crash loop).
    Error,
    /// Killed for exceeding its memory limit (leak).
    OomKilled,
}

impl TerminationReason {
    /// The value kube-state-metrics puts in the `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "Error",
            Self::OomKilled => "OOMKilled",
        }
    }
}

/// What one pod does at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodSample {
    /// CPU usage rate, cores.
    pub cpu_cores: f64,
    /// Fraction of CFS periods in which the container was throttled.
    pub throttle_fraction: f64,
    /// Working set, bytes.
    pub memory_bytes: f64,
    /// Container restarts that happened since the previous tick.
    pub restarts: u32,
    /// Reason of those restarts, when there were any.
    pub termination_reason: Option<TerminationReason>,
}

/// A noteworthy transition, for logging.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    FaultStarted {
        scenario: ScenarioKind,
    },
    RunawayStarted {
        pod: String,
    },
    RunawayPodGone {
        pod: String,
    },
    ContentionLevel {
        pods: usize,
        per_pod_demand_cores: f64,
        throttle_fraction: f64,
    },
    LeakStarted {
        pods: Vec<String>,
    },
    LeakingPodGone {
        pod: String,
        still_leaking: usize,
    },
    OomKilled {
        pod: String,
        restarts: u64,
    },
    CrashloopRestart {
        pod: String,
        restarts: u64,
    },
    BurstStarted,
    BurstEnded,
}

impl SimEvent {
    /// Events that repeat often enough to be logged at debug level only.
    pub fn is_noisy(&self) -> bool {
        matches!(self, Self::CrashloopRestart { .. })
    }
}

impl fmt::Display for SimEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FaultStarted { scenario } => write!(f, "fault started (scenario {scenario})"),
            Self::RunawayStarted { pod } => write!(f, "runaway started on pod {pod}"),
            Self::RunawayPodGone { pod } => {
                write!(f, "runaway pod {pod} gone; deployment healthy")
            }
            Self::ContentionLevel {
                pods,
                per_pod_demand_cores,
                throttle_fraction,
            } => {
                let state = if *throttle_fraction <= HEALTHY_THROTTLE_FRACTION {
                    "no contention"
                } else {
                    "contended"
                };
                write!(
                    f,
                    "contention: {pods} pods, {per_pod_demand_cores:.3} cores demand per pod, \
                     throttled {:.0}% of periods ({state})",
                    throttle_fraction * 100.0
                )
            }
            Self::LeakStarted { pods } => write!(f, "leak started on pods {}", pods.join(", ")),
            Self::LeakingPodGone { pod, still_leaking } => {
                if *still_leaking == 0 {
                    write!(f, "leaking pod {pod} gone; deployment healthy")
                } else {
                    write!(
                        f,
                        "leaking pod {pod} gone; {still_leaking} pods still leaking"
                    )
                }
            }
            Self::OomKilled { pod, restarts } => {
                write!(f, "pod {pod} OOM-killed (restarts {restarts})")
            }
            Self::CrashloopRestart { pod, restarts } => {
                write!(f, "pod {pod} crashed (restarts {restarts})")
            }
            Self::BurstStarted => write!(f, "CPU burst started"),
            Self::BurstEnded => write!(f, "CPU burst ended; deployment healthy"),
        }
    }
}

/// The result of one tick of a Deployment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickOutput {
    /// One sample per pod passed in, keyed by pod name.
    pub samples: BTreeMap<String, PodSample>,
    pub events: Vec<SimEvent>,
}

#[derive(Debug, Clone)]
struct PodState {
    first_seen: Timestamp,
    /// Start of the current leak (None: this pod does not leak).
    leak_origin: Option<Timestamp>,
    oom_restarts: u64,
    crash_restarts: u64,
}

/// The simulation state of one Deployment (one per Deployment UID).
#[derive(Debug, Clone)]
pub struct DeploymentSim {
    params: ScenarioParams,
    first_seen: Timestamp,
    fault_started: bool,
    /// The per-Deployment one-shot choice (runaway pod, leaking pods) is done.
    victims_chosen: bool,
    runaway_pod: Option<String>,
    leaking: BTreeSet<String>,
    burst_over: bool,
    last_contention: Option<usize>,
    pods: BTreeMap<String, PodState>,
}

impl DeploymentSim {
    /// A Deployment first seen by the simulator at `first_seen`.
    pub fn new(params: ScenarioParams, first_seen: Timestamp) -> Self {
        Self {
            params,
            first_seen,
            fault_started: false,
            victims_chosen: false,
            runaway_pod: None,
            leaking: BTreeSet::new(),
            burst_over: false,
            last_contention: None,
            pods: BTreeMap::new(),
        }
    }

    pub fn params(&self) -> &ScenarioParams {
        &self.params
    }

    /// When the fault starts (first sight + sick-after).
    pub fn fault_start(&self) -> Timestamp {
        self.first_seen
            .checked_add(self.params.sick_after)
            .unwrap_or(Timestamp::MAX)
    }

    /// The pod currently running away, if any.
    pub fn runaway_pod(&self) -> Option<&str> {
        self.runaway_pod.as_deref()
    }

    /// Advances the simulation to `now` with the Deployment's current Running
    /// pods and returns what each of them does.
    pub fn tick(&mut self, pods: &[PodFacts], now: Timestamp) -> TickOutput {
        let mut out = TickOutput::default();
        let present: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();

        // Forget pods that are gone.
        self.pods.retain(|name, _| present.contains(name.as_str()));
        if let Some(pod) = self.runaway_pod.take_if(|p| !present.contains(p.as_str())) {
            out.events.push(SimEvent::RunawayPodGone { pod });
        }
        let gone: Vec<String> = self
            .leaking
            .iter()
            .filter(|p| !present.contains(p.as_str()))
            .cloned()
            .collect();
        for pod in gone {
            self.leaking.remove(&pod);
            out.events.push(SimEvent::LeakingPodGone {
                pod,
                still_leaking: self.leaking.len(),
            });
        }

        // Remember new pods.
        for p in pods {
            self.pods.entry(p.name.clone()).or_insert(PodState {
                first_seen: now,
                leak_origin: None,
                oom_restarts: 0,
                crash_restarts: 0,
            });
        }

        let fault_start = self.fault_start();
        let sick = now >= fault_start;
        if sick && !self.fault_started {
            self.fault_started = true;
            out.events.push(SimEvent::FaultStarted {
                scenario: self.params.kind,
            });
            if self.params.kind == ScenarioKind::Burst {
                out.events.push(SimEvent::BurstStarted);
            }
        }
        if sick && !self.victims_chosen && !pods.is_empty() {
            self.choose_victims(pods, fault_start, &mut out);
        }

        let burst_end = fault_start
            .checked_add(BURST_DURATION)
            .unwrap_or(Timestamp::MAX);
        let bursting = self.params.kind == ScenarioKind::Burst && sick && now < burst_end;
        if self.params.kind == ScenarioKind::Burst && sick && !bursting && !self.burst_over {
            self.burst_over = true;
            out.events.push(SimEvent::BurstEnded);
        }

        let contention = (self.params.kind == ScenarioKind::Contention && sick).then(|| {
            #[allow(clippy::cast_precision_loss)]
            let n = pods.len().max(1) as f64;
            self.params.load_cores / n
        });
        if let Some(demand) = contention
            && self.last_contention != Some(pods.len())
            && !pods.is_empty()
        {
            self.last_contention = Some(pods.len());
            let limit = pods
                .first()
                .map_or(DEFAULT_CPU_LIMIT_CORES, |p| p.cpu_limit_cores);
            out.events.push(SimEvent::ContentionLevel {
                pods: pods.len(),
                per_pod_demand_cores: demand,
                throttle_fraction: contention_throttle(demand, limit),
            });
        }

        for p in pods {
            let l = positive_or(p.cpu_limit_cores, DEFAULT_CPU_LIMIT_CORES);
            let m = positive_or(p.memory_limit_bytes, DEFAULT_MEMORY_LIMIT_BYTES);
            let mut sample = PodSample {
                cpu_cores: healthy_cpu(&p.name, l, now),
                throttle_fraction: HEALTHY_THROTTLE_FRACTION,
                memory_bytes: HEALTHY_MEMORY_FRACTION * m,
                restarts: 0,
                termination_reason: None,
            };
            let Some(state) = self.pods.get_mut(&p.name) else {
                continue;
            };
            let started = p.created_at.max(state.first_seen);
            match self.params.kind {
                ScenarioKind::Healthy => {}
                ScenarioKind::Runaway => {
                    if self.runaway_pod.as_deref() == Some(p.name.as_str()) {
                        sample.cpu_cores = RUNAWAY_CPU_FRACTION * l;
                        sample.throttle_fraction = RUNAWAY_THROTTLE_FRACTION;
                    }
                }
                ScenarioKind::Contention => {
                    if let Some(d) = contention {
                        sample.cpu_cores = d.min(CONTENTION_CPU_CAP_FRACTION * l);
                        sample.throttle_fraction = contention_throttle(d, l);
                    }
                }
                ScenarioKind::Leak => {
                    let base = LEAK_BASE_MEMORY_FRACTION * m;
                    sample.memory_bytes = base;
                    if let Some(origin) = state.leak_origin {
                        let rate = self
                            .params
                            .leak_rate_bytes_per_sec
                            .unwrap_or(m / DEFAULT_LEAK_SECONDS_TO_LIMIT);
                        let grown = base + rate * secs_between(origin, now);
                        if grown >= m {
                            state.oom_restarts += 1;
                            state.leak_origin = Some(now);
                            sample.restarts = 1;
                            sample.termination_reason = Some(TerminationReason::OomKilled);
                            out.events.push(SimEvent::OomKilled {
                                pod: p.name.clone(),
                                restarts: state.oom_restarts,
                            });
                        } else {
                            sample.memory_bytes = grown;
                        }
                    }
                }
                ScenarioKind::Crashloop => {
                    sample.cpu_cores = CRASHLOOP_CPU_FRACTION * l;
                    sample.memory_bytes = CRASHLOOP_MEMORY_FRACTION * m;
                    if sick {
                        let origin = started.max(fault_start);
                        let elapsed = secs_between(origin, now);
                        let interval = CRASHLOOP_INTERVAL.as_secs_f64();
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let due = (elapsed / interval).floor().max(0.0) as u64;
                        if due > state.crash_restarts {
                            let new = due - state.crash_restarts;
                            state.crash_restarts = due;
                            sample.restarts = u32::try_from(new).unwrap_or(u32::MAX);
                            sample.termination_reason = Some(TerminationReason::Error);
                            out.events.push(SimEvent::CrashloopRestart {
                                pod: p.name.clone(),
                                restarts: due,
                            });
                        }
                    }
                }
                ScenarioKind::Burst => {
                    if bursting {
                        sample.cpu_cores = BURST_CPU_FRACTION * l;
                        sample.throttle_fraction = BURST_THROTTLE_FRACTION;
                    }
                }
            }
            out.samples.insert(p.name.clone(), sample);
        }
        out
    }

    fn choose_victims(&mut self, pods: &[PodFacts], fault_start: Timestamp, out: &mut TickOutput) {
        let Some(oldest) = pods
            .iter()
            .min_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)))
        else {
            return;
        };
        self.victims_chosen = true;
        match self.params.kind {
            ScenarioKind::Runaway => {
                self.runaway_pod = Some(oldest.name.clone());
                out.events.push(SimEvent::RunawayStarted {
                    pod: oldest.name.clone(),
                });
            }
            ScenarioKind::Leak => {
                let victims: Vec<&PodFacts> = match self.params.leak_pods {
                    LeakPods::One => vec![oldest],
                    LeakPods::All => pods.iter().collect(),
                };
                for v in &victims {
                    if let Some(state) = self.pods.get_mut(&v.name) {
                        let started = v.created_at.max(state.first_seen);
                        state.leak_origin = Some(started.max(fault_start));
                    }
                    self.leaking.insert(v.name.clone());
                }
                out.events.push(SimEvent::LeakStarted {
                    pods: victims.iter().map(|v| v.name.clone()).collect(),
                });
            }
            _ => {}
        }
    }
}

/// Throttled fraction of CFS periods for a per-pod demand `d` and limit `l`.
pub fn contention_throttle(d: f64, l: f64) -> f64 {
    let l = positive_or(l, DEFAULT_CPU_LIMIT_CORES);
    ((d / l - 0.75) * 2.0).clamp(0.01, 0.95)
}

/// Healthy CPU: 10% of the limit with a deterministic ±10% jitter that
/// depends on the pod name (phase) and the time (period one minute).
pub fn healthy_cpu(pod: &str, limit_cores: f64, now: Timestamp) -> f64 {
    let phase = f64::from(fnv1a(pod) % 3600) / 3600.0 * std::f64::consts::TAU;
    #[allow(clippy::cast_precision_loss)]
    let t = (now.as_millisecond() % 60_000) as f64 / 60_000.0 * std::f64::consts::TAU;
    HEALTHY_CPU_FRACTION * limit_cores * (1.0 + HEALTHY_CPU_JITTER * (t + phase).sin())
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn positive_or(v: f64, default: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { default }
}

fn secs_between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64().max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: f64 = 1024.0 * 1024.0;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn pod(name: &str, created: i64) -> PodFacts {
        PodFacts {
            name: name.to_string(),
            created_at: t(created),
            cpu_limit_cores: 1.0,
            memory_limit_bytes: 512.0 * MI,
        }
    }

    fn params(kind: ScenarioKind, sick_after: i64) -> ScenarioParams {
        ScenarioParams {
            sick_after: SignedDuration::from_secs(sick_after),
            ..ScenarioParams::new(kind)
        }
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn is_healthy_cpu(s: &PodSample, l: f64) -> bool {
        s.cpu_cores >= 0.09 * l - 1e-12
            && s.cpu_cores <= 0.11 * l + 1e-12
            && s.throttle_fraction <= 0.011
    }

    #[test]
    fn parses_annotations() {
        assert_eq!(ScenarioParams::from_annotations(&ann(&[])), Ok(None));
        let p = ScenarioParams::from_annotations(&ann(&[
            (ANN_SCENARIO, "leak"),
            (ANN_SICK_AFTER, "20s"),
            (ANN_LEAK_RATE, "1Mi"),
            (ANN_LEAK_PODS, "all"),
            (ANN_LOAD, "2500m"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(p.kind, ScenarioKind::Leak);
        assert_eq!(p.sick_after, SignedDuration::from_secs(20));
        assert_eq!(p.leak_rate_bytes_per_sec, Some(MI));
        assert_eq!(p.leak_pods, LeakPods::All);
        assert!((p.load_cores - 2.5).abs() < 1e-12);

        let d = ScenarioParams::from_annotations(&ann(&[(ANN_SCENARIO, "contention")]))
            .unwrap()
            .unwrap();
        assert_eq!(d.sick_after, SignedDuration::ZERO);
        assert!((d.load_cores - 3.0).abs() < 1e-12);
        assert_eq!(d.leak_pods, LeakPods::One);

        assert!(ScenarioParams::from_annotations(&ann(&[(ANN_SCENARIO, "meltdown")])).is_err());
        assert!(
            ScenarioParams::from_annotations(&ann(&[
                (ANN_SCENARIO, "runaway"),
                (ANN_SICK_AFTER, "soon")
            ]))
            .is_err()
        );
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("20s"), Some(SignedDuration::from_secs(20)));
        assert_eq!(parse_duration("1m30s"), Some(SignedDuration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Some(SignedDuration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Some(SignedDuration::ZERO));
        assert_eq!(parse_duration("0"), Some(SignedDuration::ZERO));
        assert_eq!(parse_duration("15"), Some(SignedDuration::from_secs(15)));
        assert_eq!(
            parse_duration("500ms"),
            Some(SignedDuration::from_millis(500))
        );
        assert_eq!(parse_duration("PT1M"), Some(SignedDuration::from_secs(60)));
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration("later"), None);
    }

    #[test]
    fn healthy_is_low_and_flat() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Healthy, 0), t(0));
        let pods = vec![pod("a", -100), pod("b", -50)];
        for s in 0..200 {
            let out = sim.tick(&pods, t(s));
            assert_eq!(out.samples.len(), 2);
            for sample in out.samples.values() {
                assert!(is_healthy_cpu(sample, 1.0), "{sample:?}");
                assert!((sample.memory_bytes - 0.3 * 512.0 * MI).abs() < 1.0);
                assert_eq!(sample.restarts, 0);
                assert_eq!(sample.termination_reason, None);
            }
        }
    }

    #[test]
    fn healthy_jitter_is_deterministic_and_bounded() {
        let a = healthy_cpu("web-1", 2.0, t(7));
        assert!((a - healthy_cpu("web-1", 2.0, t(7))).abs() < f64::EPSILON);
        let mut min = f64::MAX;
        let mut max = f64::MIN;
        for s in 0..120 {
            let v = healthy_cpu("web-1", 2.0, t(s));
            min = min.min(v);
            max = max.max(v);
        }
        assert!(min >= 0.18 - 1e-12 && max <= 0.22 + 1e-12);
        assert!(max - min > 0.01, "jitter should move");
    }

    #[test]
    fn runaway_marks_oldest_pod_after_sick_after() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Runaway, 20), t(0));
        let pods = vec![pod("web-c", 10), pod("web-a", 5), pod("web-b", 5)];
        let out = sim.tick(&pods, t(10));
        assert!(out.samples.values().all(|s| is_healthy_cpu(s, 1.0)));
        assert!(out.events.is_empty());

        let out = sim.tick(&pods, t(20));
        // oldest by creation time, ties broken by name
        assert_eq!(sim.runaway_pod(), Some("web-a"));
        assert!(out.events.contains(&SimEvent::RunawayStarted {
            pod: "web-a".into()
        }));
        let hot = &out.samples["web-a"];
        assert!((hot.cpu_cores - 0.97).abs() < 1e-9);
        assert!((hot.throttle_fraction - 0.5).abs() < 1e-9);
        assert!(is_healthy_cpu(&out.samples["web-b"], 1.0));
        assert!(is_healthy_cpu(&out.samples["web-c"], 1.0));
    }

    #[test]
    fn runaway_healed_by_evicting_the_hot_pod() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Runaway, 0), t(0));
        let pods = vec![pod("web-a", -30), pod("web-b", -20), pod("web-c", -10)];
        sim.tick(&pods, t(1));
        assert_eq!(sim.runaway_pod(), Some("web-a"));

        // The operator evicts web-a; the ReplicaSet creates web-d.
        let after = vec![pod("web-b", -20), pod("web-c", -10), pod("web-d", 40)];
        let out = sim.tick(&after, t(41));
        assert!(out.events.contains(&SimEvent::RunawayPodGone {
            pod: "web-a".into()
        }));
        assert_eq!(sim.runaway_pod(), None);
        for s in 42..400 {
            let out = sim.tick(&after, t(s));
            assert!(out.events.is_empty());
            assert!(out.samples.values().all(|x| is_healthy_cpu(x, 1.0)));
        }
    }

    #[test]
    fn runaway_not_healed_by_evicting_a_sibling() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Runaway, 0), t(0));
        let pods = vec![pod("web-a", -30), pod("web-b", -20)];
        sim.tick(&pods, t(1));
        let after = vec![pod("web-a", -30), pod("web-x", 5)];
        let out = sim.tick(&after, t(6));
        assert!((out.samples["web-a"].cpu_cores - 0.97).abs() < 1e-9);
        assert!(is_healthy_cpu(&out.samples["web-x"], 1.0));
    }

    #[test]
    fn runaway_waits_for_a_running_pod() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Runaway, 0), t(0));
        let out = sim.tick(&[], t(1));
        assert_eq!(
            out.events,
            vec![SimEvent::FaultStarted {
                scenario: ScenarioKind::Runaway
            }]
        );
        let out = sim.tick(&[pod("web-a", 2)], t(3));
        assert_eq!(sim.runaway_pod(), Some("web-a"));
        assert!((out.samples["web-a"].cpu_cores - 0.97).abs() < 1e-9);
    }

    #[test]
    fn runaway_uses_the_pod_limit() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Runaway, 0), t(0));
        let mut p = pod("web-a", 0);
        p.cpu_limit_cores = 0.5;
        let out = sim.tick(&[p], t(1));
        assert!((out.samples["web-a"].cpu_cores - 0.485).abs() < 1e-9);
    }

    fn contention_at(n: usize) -> BTreeMap<String, PodSample> {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Contention, 0), t(0));
        let pods: Vec<PodFacts> = (0..n).map(|i| pod(&format!("web-{i}"), 0)).collect();
        sim.tick(&pods, t(5)).samples
    }

    #[test]
    fn contention_throttle_table() {
        for (n, usage, throttle) in [
            (1, 0.98, 0.95),
            (2, 0.98, 0.95),
            (3, 0.98, 0.5),
            (4, 0.75, 0.01),
            (5, 0.6, 0.01),
        ] {
            let samples = contention_at(n);
            assert_eq!(samples.len(), n);
            for s in samples.values() {
                assert!((s.cpu_cores - usage).abs() < 1e-9, "n={n} {s:?}");
                assert!((s.throttle_fraction - throttle).abs() < 1e-9, "n={n} {s:?}");
            }
        }
    }

    #[test]
    fn contention_healed_by_scale_out_not_by_restart() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Contention, 10), t(0));
        let three = vec![pod("web-a", 0), pod("web-b", 0), pod("web-c", 0)];
        let out = sim.tick(&three, t(5));
        assert!(out.samples.values().all(|s| is_healthy_cpu(s, 1.0)));
        let out = sim.tick(&three, t(10));
        assert!(
            out.samples
                .values()
                .all(|s| (s.throttle_fraction - 0.5).abs() < 1e-9)
        );

        // Restart (evict) one pod: still three pods, still contended.
        let restarted = vec![pod("web-a", 0), pod("web-b", 0), pod("web-d", 20)];
        let out = sim.tick(&restarted, t(21));
        assert!(
            out.samples
                .values()
                .all(|s| (s.throttle_fraction - 0.5).abs() < 1e-9)
        );

        // Scale out to four: healed.
        let mut four = restarted.clone();
        four.push(pod("web-e", 30));
        let out = sim.tick(&four, t(31));
        assert!(
            out.events
                .iter()
                .any(|e| matches!(e, SimEvent::ContentionLevel { pods: 4, .. }))
        );
        assert!(
            out.samples
                .values()
                .all(|s| (s.throttle_fraction - 0.01).abs() < 1e-9)
        );
        assert!(
            out.samples
                .values()
                .all(|s| (s.cpu_cores - 0.75).abs() < 1e-9)
        );
    }

    #[test]
    fn contention_load_annotation() {
        let p = ScenarioParams::from_annotations(&ann(&[
            (ANN_SCENARIO, "contention"),
            (ANN_LOAD, "6"),
        ]))
        .unwrap()
        .unwrap();
        let mut sim = DeploymentSim::new(p, t(0));
        let pods: Vec<PodFacts> = (0..4).map(|i| pod(&format!("w-{i}"), 0)).collect();
        let out = sim.tick(&pods, t(1));
        // d = 1.5 per pod
        assert!(
            out.samples
                .values()
                .all(|s| (s.throttle_fraction - 0.95).abs() < 1e-9)
        );
    }

    #[test]
    fn leak_grows_on_oldest_pod_only() {
        let m = 512.0 * MI;
        let mut sim = DeploymentSim::new(params(ScenarioKind::Leak, 20), t(0));
        let pods = vec![pod("web-a", -60), pod("web-b", -30)];
        let out = sim.tick(&pods, t(0));
        assert!((out.samples["web-a"].memory_bytes - 0.2 * m).abs() < 1.0);

        let out = sim.tick(&pods, t(20));
        assert!(out.events.contains(&SimEvent::LeakStarted {
            pods: vec!["web-a".into()]
        }));
        let out = sim.tick(&pods, t(80));
        // default rate M/300 per second for 60 s
        let expected = 0.2 * m + m / 300.0 * 60.0;
        assert!((out.samples["web-a"].memory_bytes - expected).abs() < 1.0);
        assert!((out.samples["web-b"].memory_bytes - 0.2 * m).abs() < 1.0);
        assert!(is_healthy_cpu(&out.samples["web-a"], 1.0));
    }

    #[test]
    fn leak_ooms_and_restarts_low() {
        let m = 512.0 * MI;
        let mut sim = DeploymentSim::new(params(ScenarioKind::Leak, 0), t(0));
        let pods = vec![pod("web-a", -60)];
        let mut restarts = 0;
        let mut last = 0.0;
        let mut oom_at = None;
        for s in 0..=300 {
            let out = sim.tick(&pods, t(s));
            let x = out.samples["web-a"];
            assert!(x.memory_bytes < m);
            if x.restarts > 0 {
                assert_eq!(x.termination_reason, Some(TerminationReason::OomKilled));
                assert!((x.memory_bytes - 0.2 * m).abs() < 1.0);
                oom_at.get_or_insert(s);
            } else {
                assert!(x.memory_bytes >= last || oom_at.is_some());
            }
            restarts += x.restarts;
            last = x.memory_bytes;
        }
        // 0.8 M at M/300 per second: OOM after 240 s (241 with rounding)
        assert!(matches!(oom_at, Some(240 | 241)), "{oom_at:?}");
        assert_eq!(restarts, 1);
    }

    #[test]
    fn leak_healed_by_replacing_the_pod() {
        let m = 512.0 * MI;
        let mut sim = DeploymentSim::new(params(ScenarioKind::Leak, 0), t(0));
        sim.tick(&[pod("web-a", -60), pod("web-b", -30)], t(0));
        let out = sim.tick(&[pod("web-a", -60), pod("web-b", -30)], t(100));
        assert!(out.samples["web-a"].memory_bytes > 0.5 * m);

        let after = vec![pod("web-b", -30), pod("web-c", 101)];
        let out = sim.tick(&after, t(102));
        assert!(out.events.contains(&SimEvent::LeakingPodGone {
            pod: "web-a".into(),
            still_leaking: 0
        }));
        for s in 103..1000 {
            let out = sim.tick(&after, t(s));
            for x in out.samples.values() {
                assert!((x.memory_bytes - 0.2 * m).abs() < 1.0);
                assert_eq!(x.restarts, 0);
            }
        }
    }

    #[test]
    fn leak_all_pods_with_custom_rate() {
        let mut sim = DeploymentSim::new(
            ScenarioParams {
                leak_pods: LeakPods::All,
                leak_rate_bytes_per_sec: Some(MI),
                ..params(ScenarioKind::Leak, 0)
            },
            t(0),
        );
        let pods = vec![pod("web-a", -60), pod("web-b", -30)];
        sim.tick(&pods, t(0));
        let out = sim.tick(&pods, t(10));
        for x in out.samples.values() {
            assert!((x.memory_bytes - (0.2 * 512.0 * MI + 10.0 * MI)).abs() < 1.0);
        }
        // A pod added by a scale-out does not leak.
        let mut more = pods.clone();
        more.push(pod("web-c", 11));
        let out = sim.tick(&more, t(20));
        assert!((out.samples["web-c"].memory_bytes - 0.2 * 512.0 * MI).abs() < 1.0);
    }

    #[test]
    fn crashloop_restarts_every_15s_and_persists() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Crashloop, 10), t(0));
        let pods = vec![pod("web-a", -60), pod("web-b", -30)];
        let mut total: BTreeMap<String, u32> = BTreeMap::new();
        for s in 0..=70 {
            let out = sim.tick(&pods, t(s));
            for (name, x) in &out.samples {
                assert!(x.cpu_cores <= 0.05);
                if x.restarts > 0 {
                    assert_eq!(x.termination_reason, Some(TerminationReason::Error));
                }
                *total.entry(name.clone()).or_default() += x.restarts;
            }
        }
        // fault at 10s, restarts at 25, 40, 55, 70
        assert_eq!(total["web-a"], 4);
        assert_eq!(total["web-b"], 4);

        // Replace web-a and scale out: new pods crash too, 15 s after start.
        let after = vec![pod("web-b", -30), pod("web-c", 71), pod("web-d", 71)];
        let mut new_total: BTreeMap<String, u32> = BTreeMap::new();
        for s in 71..=101 {
            let out = sim.tick(&after, t(s));
            for (name, x) in &out.samples {
                *new_total.entry(name.clone()).or_default() += x.restarts;
            }
        }
        assert_eq!(new_total["web-c"], 2); // at 86 and 101
        assert_eq!(new_total["web-d"], 2);
        assert_eq!(new_total["web-b"], 2); // at 85 and 100
    }

    #[test]
    fn crashloop_catches_up_after_a_gap() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Crashloop, 0), t(0));
        let pods = vec![pod("web-a", -60)];
        sim.tick(&pods, t(0));
        let out = sim.tick(&pods, t(46));
        assert_eq!(out.samples["web-a"].restarts, 3);
    }

    #[test]
    fn burst_ends_after_15s() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Burst, 5), t(0));
        let pods = vec![pod("web-a", -60), pod("web-b", -30)];
        let out = sim.tick(&pods, t(4));
        assert!(out.samples.values().all(|s| is_healthy_cpu(s, 1.0)));
        let out = sim.tick(&pods, t(5));
        assert!(out.events.contains(&SimEvent::BurstStarted));
        for s in 5..20 {
            let out = sim.tick(&pods, t(s));
            for x in out.samples.values() {
                assert!((x.cpu_cores - 0.95).abs() < 1e-9);
                assert!((x.throttle_fraction - 0.6).abs() < 1e-9);
            }
        }
        let out = sim.tick(&pods, t(20));
        assert!(out.events.contains(&SimEvent::BurstEnded));
        for s in 20..500 {
            let out = sim.tick(&pods, t(s));
            assert!(out.samples.values().all(|x| is_healthy_cpu(x, 1.0)));
        }
    }

    #[test]
    fn defaults_apply_when_limits_missing() {
        let mut sim = DeploymentSim::new(params(ScenarioKind::Runaway, 0), t(0));
        let mut p = pod("web-a", 0);
        p.cpu_limit_cores = 0.0;
        p.memory_limit_bytes = f64::NAN;
        let out = sim.tick(&[p], t(1));
        assert!((out.samples["web-a"].cpu_cores - 0.97).abs() < 1e-9);
        assert!((out.samples["web-a"].memory_bytes - 0.3 * 512.0 * MI).abs() < 1.0);
    }
}
