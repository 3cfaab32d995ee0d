//! `Remediation`: one incident, from detection to its end — the audit trail.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ActionSpec, ActionType, Evidence, NAME_PATTERN, Pattern, SkippedAction, TargetRef};

/// One incident: what was seen, what was done, and how it ended. Created by the operator, owned by its policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "homeostat.dev",
    version = "v1alpha1",
    kind = "Remediation",
    namespaced,
    status = "RemediationStatus",
    shortname = "rem",
    category = "homeostat",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.name"),
    printcolumn(name = "Fault", type_ = "string", json_path = ".spec.pattern"),
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action.type"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Attempts",
        type_ = "integer",
        json_path = ".status.attemptCount"
    ),
    printcolumn(
        name = "Skipped",
        type_ = "string",
        json_path = ".spec.skipped[0].action"
    ),
    printcolumn(name = "Shadow", type_ = "string", json_path = ".status.shadowOutcome"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSpec {
    /// The policy that opened this incident.
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub policy_ref: String,
    /// The workload concerned.
    pub target: TargetRef,
    /// The policy fault (by name) that fired.
    #[schemars(length(min = 1, max = 63), regex(pattern = super::LABEL_PATTERN))]
    pub fault: String,
    /// The pattern that fired.
    pub pattern: Pattern,
    /// Pods implicated at detection.
    #[serde(default)]
    pub pods: Vec<String>,
    /// The fix chosen.
    pub action: ActionSpec,
    /// The evidence at detection.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Whether the policy was in dry-run when the incident opened.
    #[serde(default)]
    pub dry_run: bool,
    /// Whether the policy was in `mode: Shadow` when the incident opened: nothing is acted on,
    /// the decision is scored (`status.shadowOutcome`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Rungs of the fault's ladder skipped before `action` was chosen, and why (the effectiveness
    /// memory: they failed `guards.skipAfterFailures` times within `guards.failureWindow`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub skipped: Vec<SkippedAction>,
}

/// Where an incident stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum Phase {
    /// Recorded, nothing done yet.
    #[default]
    Detected,
    /// An action is being taken (or waits on a PodDisruptionBudget).
    Acting,
    /// The action is done; waiting for the fault to stay clear for `stableFor`.
    Verifying,
    /// Clear for `stableFor` after an action.
    Succeeded,
    /// An action could not be carried out.
    Failed,
    /// Handed to a person: the fix does not apply or did not work after `maxAttempts`.
    Escalated,
    /// Dry run: the decision is recorded, nothing was changed.
    DryRun,
    /// Stopped by the kill switch (`suspend` or `dryRun` set while it was open, or `mode` changed).
    Halted,
    /// Shadow mode: the decision is recorded, nothing was changed; watching whether the fault
    /// clears by itself within the verify window.
    Shadow,
    /// Shadow mode: scored (see `shadowOutcome`); nothing was changed.
    Shadowed,
}

impl Phase {
    /// Whether the incident is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Failed
                | Self::Escalated
                | Self::DryRun
                | Self::Halted
                | Self::Shadowed
        )
    }

    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detected => "Detected",
            Self::Acting => "Acting",
            Self::Verifying => "Verifying",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Escalated => "Escalated",
            Self::DryRun => "DryRun",
            Self::Halted => "Halted",
            Self::Shadow => "Shadow",
            Self::Shadowed => "Shadowed",
        }
    }
}

/// The outcome of one attempt.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AttemptResult {
    /// Written before acting; the action may or may not have reached the apiserver.
    Pending,
    /// The apiserver accepted the action.
    Applied,
    /// Refused for now (a PodDisruptionBudget, a guard); retried later.
    Blocked,
    /// Refused for good.
    Failed,
    /// Not carried out: dry run.
    DryRun,
    /// Not carried out: shadow mode.
    Shadow,
}

/// How a shadow incident was scored.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ShadowOutcome {
    /// Within the verify window; not scored yet.
    #[default]
    Pending,
    /// The fault cleared by itself (clear for `verify.stableFor` before `verify.timeout`): the
    /// action would have been unnecessary.
    Unnecessary,
    /// The fault persisted through `verify.timeout`: the action was needed.
    Needed,
    /// No score: metrics were missing, or the incident was stopped (suspend, a mode change).
    Unscored,
}

impl ShadowOutcome {
    /// The outcome's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Unnecessary => "Unnecessary",
            Self::Needed => "Needed",
            Self::Unscored => "Unscored",
        }
    }
}

/// One action taken (or intended) for an incident.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1-based attempt number.
    #[schemars(range(max = 4294967295_u32))]
    pub number: u32,
    /// The action.
    pub action: ActionType,
    /// When it was decided.
    pub started_at: Time,
    /// When the apiserver accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    /// The outcome.
    pub result: AttemptResult,
    /// Details: the pods evicted, the replica change, the error.
    #[serde(default)]
    pub message: String,
    /// Pods the action targets (RestartPod): `name/uid`, so a replacement is never evicted by mistake.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Replicas before a Scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub from_replicas: Option<i32>,
    /// Replicas a Scale sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub to_replicas: Option<i32>,
    /// The `restartedAt` stamp a RolloutRestart writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// A Scale carried out through the HorizontalPodAutoscaler that owns `spec.replicas`: its
    /// `spec.minReplicas` is raised and `spec.replicas` is left to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through_hpa: Option<HpaChange>,
    /// A ResizePod: each pod's resources before and after (recorded before the change is made,
    /// so the step is resumed, not repeated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeChange>,
}

/// The in-place change a ResizePod makes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResizeChange {
    /// One entry per pod.
    #[schemars(length(max = 100))]
    pub pods: Vec<PodResize>,
    /// How long a `Deferred` resize may wait before the fallback.
    pub deferred_wait: super::Duration,
}

/// One pod's resize.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodResize {
    /// The pod's name.
    #[schemars(length(max = 253))]
    pub pod: String,
    /// Its UID: a replacement of the same name is not resized (it gets the template's values).
    #[schemars(length(max = 64))]
    pub uid: String,
    /// The containers changed.
    #[schemars(length(max = 32))]
    pub containers: Vec<ContainerResize>,
}

/// One container's resources before and after a resize.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerResize {
    /// The container's name.
    #[schemars(length(max = 63))]
    pub name: String,
    /// Before.
    pub from: Resources,
    /// After.
    pub to: Resources,
}

/// CPU and memory requests and limits, as quantities (unset: not set on the container).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub cpu_request: Option<String>,
    /// CPU limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub cpu_limit: Option<String>,
    /// Memory request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub memory_request: Option<String>,
    /// Memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub memory_limit: Option<String>,
}

/// The change a Scale makes to a HorizontalPodAutoscaler (recorded before it is made, so that
/// the step can be resumed and is not repeated).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HpaChange {
    /// The HPA's name (same namespace).
    #[schemars(length(max = 253))]
    pub name: String,
    /// `spec.minReplicas` before (unset means 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub from_min_replicas: Option<i32>,
    /// `spec.minReplicas` after.
    #[schemars(range(min = 1, max = 2147483647))]
    pub to_min_replicas: i32,
}

/// The state of an incident.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationStatus {
    /// Where the incident stands.
    #[serde(default)]
    pub phase: Phase,
    /// Every action taken or intended, in order.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Number of attempts (for printer columns).
    #[serde(default)]
    #[schemars(range(max = 4294967295_u32))]
    pub attempt_count: u32,
    /// Since when the fault has been clear while verifying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_since: Option<Time>,
    /// When the current attempt counts as not having worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// When the incident ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// The latest observation, in one line.
    #[serde(default)]
    pub message: String,
    /// Standard conditions (Ready = the incident ended well).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Shadow mode: how the decision was scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_outcome: Option<ShadowOutcome>,
    /// Set once a ResizePod took effect: the pods run with more than their workload's template
    /// asks (replacement pods get the template's values; the template is not changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_drift: Option<String>,
}
