//! What the detectors read: per-pod series of one workload, already fetched.

use std::collections::BTreeMap;

use crate::prometheus::{Point, Series};

/// The standard signals of one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodSeries {
    /// Pod name.
    pub name: String,
    /// When the pod started (unix seconds), if known.
    pub started_at: Option<f64>,
    /// CPU cores used.
    pub cpu: Vec<Point>,
    /// Fraction of CFS periods throttled (0..1).
    pub throttling: Vec<Point>,
    /// Working-set bytes.
    pub memory: Vec<Point>,
    /// Container restarts (a counter).
    pub restarts: Vec<Point>,
    /// 1 while a container waits in kubelet's `CrashLoopBackOff` (kube-state-metrics'
    /// `kube_pod_container_status_waiting_reason`); no points, or 0, otherwise.
    pub backoff: Vec<Point>,
    /// The reason its container last terminated (`Error`, `OOMKilled`, …), if kube-state-metrics
    /// reports one (`kube_pod_container_status_last_terminated_reason`).
    pub last_terminated: Option<String>,
    /// CPU limit in cores (latest), if any.
    pub cpu_limit: Option<f64>,
    /// Memory limit in bytes (latest), if any.
    pub memory_limit: Option<f64>,
}

/// Everything the detectors need about one workload at one evaluation time.
#[derive(Clone, Debug, Default)]
pub struct WorkloadSeries {
    /// The workload's pods (those that exist now).
    pub pods: Vec<PodSeries>,
    /// User signals by name.
    pub signals: BTreeMap<String, Vec<Series>>,
}

/// Which standard signal a detector reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StdSignal {
    /// CPU cores.
    Cpu,
    /// CPU limit.
    CpuLimit,
    /// CFS throttling ratio.
    Throttling,
    /// Working set.
    Memory,
    /// Memory limit.
    MemoryLimit,
    /// Restarts counter.
    Restarts,
    /// Waiting in `CrashLoopBackOff` (0/1).
    BackOff,
    /// Last-terminated reason (the `reason` label; value 1).
    LastTerminated,
}

impl StdSignal {
    /// Every standard signal.
    pub const ALL: [StdSignal; 8] = [
        Self::Cpu,
        Self::CpuLimit,
        Self::Throttling,
        Self::Memory,
        Self::MemoryLimit,
        Self::Restarts,
        Self::BackOff,
        Self::LastTerminated,
    ];

    /// The signal's name, as used in evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::CpuLimit => "cpuLimit",
            Self::Throttling => "throttling",
            Self::Memory => "memory",
            Self::MemoryLimit => "memoryLimit",
            Self::Restarts => "restarts",
            Self::BackOff => "backOff",
            Self::LastTerminated => "lastTerminatedReason",
        }
    }
}

/// Times and tolerances of one evaluation.
#[derive(Clone, Copy, Debug)]
pub struct EvalContext {
    /// Evaluation time (unix seconds).
    pub now: f64,
    /// Resolution of the series (seconds between points).
    pub step: f64,
    /// A series whose newest point is older than this (seconds) counts as missing.
    pub stale_after: f64,
}

impl EvalContext {
    /// The oldest newest-point time that still counts as fresh.
    pub fn fresh_cutoff(&self) -> f64 {
        self.now - self.stale_after
    }
}

/// The points of `series` within `[from, to]`, NaNs dropped.
pub fn window(series: &[Point], from: f64, to: f64) -> Vec<Point> {
    series
        .iter()
        .copied()
        .filter(|(t, v)| *t >= from - 1e-6 && *t <= to + 1e-6 && v.is_finite())
        .collect()
}
