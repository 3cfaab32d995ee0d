//! `homeostat.dev/v1alpha1`: `RemediationPolicy` and `Remediation`.

// `printcolumn(type_ = ...)` repeats by design; clippy mistakes it for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

mod duration;
mod policy;
mod remediation;

pub use duration::{DURATION_MAX, DURATION_PATTERN, Duration, ParseDurationError};

/// An object name (DNS-1123 subdomain): what a Deployment, StatefulSet, Secret or Pod may be called.
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A DNS-1123 label: fault and signal names.
pub const LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
pub use policy::*;
pub use remediation::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kinds of workload homeostat can act on.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
}

impl WorkloadKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
        }
    }
}

/// A workload in the policy's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct TargetRef {
    /// Deployment or StatefulSet.
    pub kind: WorkloadKind,
    /// The workload's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub name: String,
}

impl std::fmt::Display for TargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// A built-in fault detector.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Pattern {
    /// One or a few pods burn far more CPU than their siblings, or sit at their limit alone.
    RunawayProcess,
    /// Most replicas are at their CPU limit and throttled together.
    ResourceContention,
    /// A pod's working set climbs steadily towards its memory limit.
    MemoryLeak,
    /// Containers restart again and again; restarting or scaling will not help.
    CrashLoop,
    /// A user signal crosses a bound.
    Threshold,
}

impl Pattern {
    /// The pattern's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunawayProcess => "RunawayProcess",
            Self::ResourceContention => "ResourceContention",
            Self::MemoryLeak => "MemoryLeak",
            Self::CrashLoop => "CrashLoop",
            Self::Threshold => "Threshold",
        }
    }

    /// The fix used when a fault names none.
    pub fn default_action(self) -> ActionType {
        match self {
            Self::RunawayProcess | Self::MemoryLeak => ActionType::RestartPod,
            Self::ResourceContention => ActionType::Scale,
            Self::CrashLoop | Self::Threshold => ActionType::Escalate,
        }
    }

    /// The finding this pattern reports when it fires.
    pub fn fault_kind(self) -> FaultKind {
        match self {
            Self::RunawayProcess => FaultKind::RunawayProcess,
            Self::ResourceContention => FaultKind::ResourceContention,
            Self::MemoryLeak => FaultKind::MemoryLeak,
            Self::CrashLoop => FaultKind::CrashLoop,
            Self::Threshold => FaultKind::Threshold,
        }
    }
}

/// The fix applied to a fault.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ActionType {
    /// Evict the implicated pods through the Eviction API (PodDisruptionBudgets apply).
    RestartPod,
    /// Add replicas through the scale subresource, within bounds.
    Scale,
    /// Roll every pod by stamping `kubectl.kubernetes.io/restartedAt` on the pod template.
    RolloutRestart,
    /// Raise the implicated pods' CPU or memory in place through `pods/resize`, within bounds.
    ResizePod,
    /// Change nothing; mark the incident Escalated for a person.
    Escalate,
    /// Record only.
    None,
}

impl ActionType {
    /// The action's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RestartPod => "RestartPod",
            Self::Scale => "Scale",
            Self::RolloutRestart => "RolloutRestart",
            Self::ResizePod => "ResizePod",
            Self::Escalate => "Escalate",
            Self::None => "None",
        }
    }

    /// Whether the action changes the cluster.
    pub fn mutates(self) -> bool {
        matches!(
            self,
            Self::RestartPod | Self::Scale | Self::RolloutRestart | Self::ResizePod
        )
    }
}

/// What an evaluation found.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum FaultKind {
    /// See [`Pattern::RunawayProcess`].
    RunawayProcess,
    /// See [`Pattern::ResourceContention`].
    ResourceContention,
    /// See [`Pattern::MemoryLeak`].
    MemoryLeak,
    /// See [`Pattern::CrashLoop`].
    CrashLoop,
    /// A user signal crossed its bound.
    Threshold,
    /// Nothing wrong.
    Healthy,
    /// Data missing or stale: no judgement, no action.
    Inconclusive,
}

impl FaultKind {
    /// The finding's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunawayProcess => "RunawayProcess",
            Self::ResourceContention => "ResourceContention",
            Self::MemoryLeak => "MemoryLeak",
            Self::CrashLoop => "CrashLoop",
            Self::Threshold => "Threshold",
            Self::Healthy => "Healthy",
            Self::Inconclusive => "Inconclusive",
        }
    }

    /// Whether this is a fault (not Healthy or Inconclusive).
    pub fn is_fault(self) -> bool {
        !matches!(self, Self::Healthy | Self::Inconclusive)
    }
}

/// One number behind a verdict: which rule, which signal, which pod, the value and the bound.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The rule that was checked, e.g. `cpu > 3 x sibling median`.
    pub rule: String,
    /// The signal read (cpu, throttling, memory, restarts, or a user signal).
    pub signal: String,
    /// The pod it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The observed value (latest, or the statistic the rule uses).
    pub value: f64,
    /// The bound it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}
