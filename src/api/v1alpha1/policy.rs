//! `RemediationPolicy`: what to watch, how to recognise a fault, what to do about it, and the guards.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, LabelSelectorRequirement, Time,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ActionType, Duration, Evidence, FaultKind, LABEL_PATTERN, NAME_PATTERN, Pattern, TargetRef,
    WorkloadKind,
};

/// A policy that watches one workload through Prometheus and heals the faults it recognises.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "homeostat.dev",
    version = "v1alpha1",
    kind = "RemediationPolicy",
    namespaced,
    status = "RemediationPolicyStatus",
    shortname = "rp",
    shortname = "rpol",
    category = "homeostat",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRef.name"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Last Fault", type_ = "string", json_path = ".status.lastFault"),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.activeRemediation"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[kube(validation = Rule::new("self.metadata.name.size() <= 63").message("a RemediationPolicy name must be at most 63 characters (it is used as a label value on its Remediations)"))]
#[x_kube(validation = Rule::new("has(self.targetRef) != has(self.selector)").message("set exactly one of targetRef (one workload) and selector (every matching workload)"))]
#[x_kube(validation = Rule::new("self.faults.all(f, self.faults.exists_one(g, g.name == f.name))").message("fault names must be unique"))]
#[x_kube(validation = Rule::new("self.faults.all(f, !has(f.signal) || self.signals.exists(s, s.name == f.signal))").message("every fault.signal must name an entry of spec.signals"))]
#[serde(rename_all = "camelCase")]
pub struct RemediationPolicySpec {
    /// The one workload this policy watches and acts on (or `selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Every Deployment and StatefulSet of the policy's namespace whose labels match (instead of
    /// `targetRef`). Each matched workload has its own incidents, guards and status entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// How often the policy is evaluated.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Where to read metrics; falls back to the operator's `--prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
    /// Named PromQL signals used by `Threshold` faults. `{{ namespace }}`, `{{ workload }}` and
    /// `{{ pods }}` (a regular expression of the target's pod names) are substituted, escaped.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub signals: Vec<Signal>,
    /// Overrides of the standard queries the built-in patterns read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<QueryOverrides>,
    /// The faults to recognise, in priority order after the built-in one (CrashLoop first).
    #[schemars(length(min = 1, max = 16))]
    pub faults: Vec<FaultSpec>,
    /// How recovery is verified after an action.
    #[serde(default)]
    pub verify: VerifySpec,
    /// Limits on what the operator may do.
    #[serde(default)]
    pub guards: GuardSpec,
    /// Where to send notifications about incidents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub notify: Vec<NotifySpec>,
    /// `Enforce` (default) acts; `Shadow` records each decision as a Remediation that acts on
    /// nothing and scores it afterwards (did the fault clear by itself within the verify window?).
    #[serde(default, skip_serializing_if = "PolicyMode::is_enforce")]
    pub mode: PolicyMode,
}

/// Whether a policy acts or only shadows what it would do.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PolicyMode {
    /// Act on the faults found.
    #[default]
    Enforce,
    /// Act on nothing: record each decision and score it (`status.shadow`).
    Shadow,
}

impl PolicyMode {
    /// Whether this is `Enforce`.
    pub fn is_enforce(&self) -> bool {
        *self == Self::Enforce
    }
}

/// Workloads chosen by kind and labels.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Kinds to match (default both).
    #[serde(default = "default_kinds")]
    #[schemars(length(min = 1, max = 2))]
    pub kinds: Vec<WorkloadKind>,
    /// Labels a workload must carry, all of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Label requirements, all of which must hold (as in a Deployment's selector).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

fn default_kinds() -> Vec<WorkloadKind> {
    vec![WorkloadKind::Deployment, WorkloadKind::StatefulSet]
}

impl WorkloadSelector {
    /// Whether a workload of `kind` with `labels` is selected; an unusable expression selects nothing.
    pub fn matches(&self, kind: WorkloadKind, labels: &BTreeMap<String, String>) -> bool {
        if !self.kinds.contains(&kind) {
            return false;
        }
        let ls = LabelSelector {
            match_labels: Some(self.match_labels.clone()),
            match_expressions: Some(self.match_expressions.clone()),
        };
        kube::core::Selector::try_from(ls)
            .is_ok_and(|s| kube::core::SelectorExt::matches(&s, labels))
    }
}

impl RemediationPolicySpec {
    /// What the policy targets, for people: `Deployment/web` or `selector app=web`.
    pub fn target_description(&self) -> String {
        match (&self.target_ref, &self.selector) {
            (Some(t), _) => t.to_string(),
            (None, Some(s)) => {
                let mut parts: Vec<String> = s
                    .match_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                parts.extend(s.match_expressions.iter().map(|e| {
                    format!(
                        "{} {} ({})",
                        e.key,
                        e.operator,
                        e.values.clone().unwrap_or_default().join(",")
                    )
                }));
                if parts.is_empty() {
                    "every workload of the namespace".into()
                } else {
                    format!("workloads with {}", parts.join(", "))
                }
            }
            (None, None) => "no target".into(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

/// Where and how to reach Prometheus.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(max = 2048), regex(pattern = r"^https?://"))]
    pub url: String,
    /// A Secret in the policy's namespace with `token`, or `username` and `password`, and optionally `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretRef>,
    /// Per-query timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// A reference to a Secret in the same namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub name: String,
}

/// A named PromQL query.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Signal {
    /// Name used by `faults[].signal`.
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_PATTERN))]
    pub name: String,
    /// The PromQL expression; a `pod` label in its result implicates those pods.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
}

/// Replacements for the standard cAdvisor and kube-state-metrics queries.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryOverrides {
    /// CPU cores used per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub cpu: Option<String>,
    /// CPU limit in cores per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub cpu_limit: Option<String>,
    /// Fraction of CFS periods throttled per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub throttling: Option<String>,
    /// Working-set bytes per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub memory: Option<String>,
    /// Memory limit in bytes per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub memory_limit: Option<String>,
    /// Container restarts (a counter) per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub restarts: Option<String>,
    /// 1 while a pod's container waits in `CrashLoopBackOff`, per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub back_off: Option<String>,
    /// The last-terminated reason per pod and `reason` label (value 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub last_terminated_reason: Option<String>,
}

/// One fault to recognise and the fix for it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.pattern != 'Threshold' || (has(self.signal) && has(self.condition))").message("a Threshold fault needs a signal and a condition"))]
#[x_kube(validation = Rule::new("self.pattern == 'Threshold' || !has(self.condition)").message("condition only applies to the Threshold pattern"))]
#[x_kube(validation = Rule::new("self.pattern != 'CrashLoop' || !has(self.action) || self.action.type in ['Escalate', 'None']").message("restarting or scaling does not fix a crash loop: use action Escalate or None"))]
#[x_kube(validation = Rule::new("self.pattern != 'Threshold' || has(self.action)").message("a Threshold fault needs an action"))]
#[x_kube(validation = Rule::new("self.pattern != 'CrashLoop' || !has(self.fallbacks) || self.fallbacks.all(a, a.type in ['Escalate', 'None'])").message("restarting or scaling does not fix a crash loop: fallbacks must be Escalate or None"))]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    /// A name for this fault, unique in the policy.
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_PATTERN))]
    pub name: String,
    /// The detector to run.
    pub pattern: Pattern,
    /// How long the condition must hold before it counts.
    #[serde(rename = "for", default = "default_for")]
    pub for_: Duration,
    /// For `Threshold`: the name of a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_PATTERN))]
    pub signal: Option<String>,
    /// For `Threshold`: the comparison that means "faulty".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ThresholdCondition>,
    /// Tuning of the built-in detector; every field has a safe default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<DetectorParams>,
    /// The fix; defaults to the pattern's usual one (RestartPod, Scale by 1, RestartPod, Escalate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionSpec>,
    /// The next rungs of the ladder after `action`, in order: used instead of an action that
    /// failed `guards.skipAfterFailures` times within `guards.failureWindow` on this workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub fallbacks: Vec<ActionSpec>,
}

fn default_for() -> Duration {
    Duration::from_secs(120)
}

/// A comparison of a signal against a value.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ThresholdCondition {
    /// The comparison operator.
    pub op: ComparisonOp,
    /// The bound.
    pub value: f64,
}

/// A comparison operator.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ComparisonOp {
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// Greater than or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// Less than or equal.
    #[serde(rename = "<=")]
    Le,
}

impl ComparisonOp {
    /// Whether `v op bound` holds.
    pub fn holds(self, v: f64, bound: f64) -> bool {
        match self {
            Self::Gt => v > bound,
            Self::Ge => v >= bound,
            Self::Lt => v < bound,
            Self::Le => v <= bound,
        }
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
        }
    }
}

/// Tuning knobs of the built-in detectors. Unset fields take the documented defaults.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DetectorParams {
    /// RunawayProcess: how many times its siblings' median a pod must burn (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 1000.0))]
    pub sibling_ratio: Option<f64>,
    /// RunawayProcess: cores above its siblings' median that make a pod runaway even below
    /// `siblingRatio`, as long as it burns at least twice their median (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub excess_cores: Option<f64>,
    /// RunawayProcess / ResourceContention: the fraction of the CPU limit that counts as "at the limit" (default 0.9 / 0.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub limit_ratio: Option<f64>,
    /// RunawayProcess: CPU cores below which a pod is never called runaway (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100000.0))]
    pub min_cores: Option<f64>,
    /// ResourceContention: fraction of CFS periods throttled that counts as starved (default 0.25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub throttle_ratio: Option<f64>,
    /// ResourceContention: fraction of replicas that must be starved together (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub replica_fraction: Option<f64>,
    /// MemoryLeak: act when the projected time to the memory limit is below this (default 30m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<Duration>,
    /// MemoryLeak: report a steady climb as a leak (without acting) when the projected time to the
    /// limit is below this (default 4 x horizon). The action becomes due once it is below `horizon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_horizon: Option<Duration>,
    /// CrashLoop: restarts within the `for` window that mean a crash loop (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub restarts: Option<u32>,
    /// Pods younger than this are not judged (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Duration>,
    /// Fraction of the `for` window's samples that must satisfy the rule (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.5, max = 1.0))]
    pub persistence: Option<f64>,
    /// Below this confidence (0..1) a fault is reported (status, `diagnose`, notifications) but
    /// its action is not taken (default 0: no floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: Option<f64>,
    /// RunawayProcess / ResourceContention: how long the evidence must hold before acting
    /// (default `Fixed`: `for` at `persistence`). `Adaptive` weighs each point by how far past its
    /// bound it is, so overwhelming evidence acts sooner (never before `minHold`) and marginal
    /// evidence later (up to 2 x `for`). Other patterns always hold for `for`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldMode>,
    /// `hold: Adaptive`: never act before the evidence has held this long (default `for` / 4).
    /// It is what keeps a short burst from being acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_hold: Option<Duration>,
}

/// How a fault's hold is judged.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum HoldMode {
    /// The rule held for `persistence` of the `for` window's points.
    #[default]
    Fixed,
    /// A sequential test: each point adds evidence by its strength; due once the evidence is worth `for`.
    Adaptive,
}

/// What to do about a fault.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.type != 'Scale' || has(self.scale)").message("action Scale needs scale bounds (scale.maxReplicas)"))]
#[x_kube(validation = Rule::new("self.type == 'Scale' || !has(self.scale)").message("scale bounds only apply to action Scale"))]
#[x_kube(validation = Rule::new("self.type != 'ResizePod' || has(self.resize)").message("action ResizePod needs resize bounds (resize.cpu and/or resize.memory)"))]
#[x_kube(validation = Rule::new("self.type == 'ResizePod' || !has(self.resize)").message("resize bounds only apply to action ResizePod"))]
pub struct ActionSpec {
    /// The kind of action.
    #[serde(rename = "type")]
    pub type_: ActionType,
    /// Bounds for `Scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleSpec>,
    /// Bounds and fallback for `ResizePod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeSpec>,
}

/// An in-place resize of the implicated pods (`pods/resize`): per resource a step and a maximum.
/// The QoS class never changes: a Guaranteed container's requests move with its limits, a
/// Burstable one's requests and limits grow by the same step, nothing is added or removed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.cpu) || has(self.memory)").message("resize needs cpu or memory bounds"))]
#[x_kube(validation = Rule::new("self.fallback != 'Scale' || has(self.scale)").message("resize.fallback Scale needs resize.scale bounds (maxReplicas)"))]
#[x_kube(validation = Rule::new("self.fallback == 'Scale' || !has(self.scale)").message("resize.scale only applies to resize.fallback Scale"))]
#[serde(rename_all = "camelCase")]
pub struct ResizeSpec {
    /// CPU: step and maximum (of the limit, or of the request where no limit is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ResourceStep>,
    /// Memory: step and maximum (of the limit, or of the request where no limit is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ResourceStep>,
    /// What to do when the resize cannot help: at its maximum, not fitting the node, refused,
    /// `Infeasible` (at once) or `Deferred` longer than `deferredWait`.
    #[serde(default)]
    pub fallback: ResizeFallback,
    /// Bounds of the `Scale` fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleSpec>,
    /// How long a resize the kubelet reports `Deferred` may wait before the fallback (default 5m,
    /// as the Vertical Pod Autoscaler's in-place mode).
    #[serde(default = "default_deferred_wait")]
    pub deferred_wait: Duration,
}

fn default_deferred_wait() -> Duration {
    Duration::from_secs(300)
}

/// The step and maximum of one resource.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.factor) != has(self.step)").message("set exactly one of factor and step"))]
pub struct ResourceStep {
    /// Multiply the current value by this (e.g. 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.01, max = 10.0))]
    pub factor: Option<f64>,
    /// Add this quantity (e.g. `250m`, `128Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = QUANTITY_PATTERN))]
    pub step: Option<String>,
    /// Never above this quantity (e.g. `2`, `1Gi`).
    #[schemars(length(max = 32), regex(pattern = QUANTITY_PATTERN))]
    pub max: String,
}

/// A Kubernetes quantity: a decimal number with an optional SI, binary or exponent suffix.
pub const QUANTITY_PATTERN: &str =
    r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][0-9]+)?$";

/// What a `ResizePod` falls back to.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ResizeFallback {
    /// Add replicas within `resize.scale`.
    Scale,
    /// Evict the implicated pods (their replacements get the template's resources).
    RestartPod,
    /// Hand over to a person.
    #[default]
    Escalate,
}

impl ResizeFallback {
    /// The fallback as an action.
    pub fn action(self, resize: &ResizeSpec) -> ActionSpec {
        let type_ = match self {
            Self::Scale => ActionType::Scale,
            Self::RestartPod => ActionType::RestartPod,
            Self::Escalate => ActionType::Escalate,
        };
        ActionSpec {
            type_,
            scale: resize.scale.clone().filter(|_| self == Self::Scale),
            resize: None,
        }
    }
}

/// Bounds and step of a scale-out.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct ScaleSpec {
    /// Replicas added per action (default 1).
    #[serde(default = "default_step")]
    #[schemars(range(min = 1, max = 100))]
    pub step: i32,
    /// Never scale below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub min_replicas: Option<i32>,
    /// Never scale above this.
    #[schemars(range(min = 1, max = 10000))]
    pub max_replicas: i32,
    /// Also scale ahead of forecast demand (shadow by default: reported, not acted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastSpec>,
}

fn default_step() -> i32 {
    1
}

/// Scale ahead of demand: forecast a demand signal from its own history (daily season, and weekly with
/// two weeks of history) and scale out to `ceil(forecast / perPod)` replicas ahead by the time a new pod
/// takes to become Ready. The result is the max of forecast and current need, never a scale-in, within
/// the action's min/max; missing or stale data means no action.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.perPod > 0.0").message("forecast.perPod must be positive"))]
#[x_kube(validation = Rule::new("!has(self.history) || duration(self.history) >= duration('48h')").message("forecast.history must be at least 48h: a daily season needs two days"))]
#[x_kube(validation = Rule::new("!has(self.history) || duration(self.history) <= duration('840h')").message("forecast.history must be at most 840h (5 weeks)"))]
#[x_kube(validation = Rule::new("!has(self.horizon) || (duration(self.horizon) >= duration('1m') && duration(self.horizon) <= duration('24h'))").message("forecast.horizon must be between 1m and 24h"))]
#[x_kube(validation = Rule::new("!has(self.step) || (duration(self.step) >= duration('1m') && duration(self.step) <= duration('1h'))").message("forecast.step must be between 1m and 1h"))]
#[x_kube(validation = Rule::new("!has(self.history) || !has(self.step) || duration(self.history).getSeconds() <= duration(self.step).getSeconds() * 10080").message("forecast.history / forecast.step must be at most 10080 samples"))]
#[serde(rename_all = "camelCase")]
pub struct ForecastSpec {
    /// Name of a policy signal (`spec.signals[].name`) that measures the workload's demand as one series.
    /// Without it, the workload's CPU use in cores summed over its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_PATTERN))]
    pub signal: Option<String>,
    /// Demand one pod serves at its target load, in the signal's unit (cores for the default signal).
    pub per_pod: f64,
    /// History fitted (default 168h; 336h or more adds the weekly season).
    #[serde(default = "default_forecast_history")]
    pub history: Duration,
    /// How far ahead to forecast (default 1h).
    #[serde(default = "default_forecast_horizon")]
    pub horizon: Duration,
    /// Sample step of the history (default 5m).
    #[serde(default = "default_forecast_step")]
    pub step: Duration,
    /// Scale to the upper bound of this prediction interval instead of the point forecast (0 < level < 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01, max = 0.99))]
    pub level: Option<f64>,
    /// `Shadow` (default): report the forecast and the replicas it would set; `Enforce`: scale out ahead.
    #[serde(default)]
    pub mode: ForecastMode,
}

/// Whether a forecast acts.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ForecastMode {
    /// Report only.
    #[default]
    Shadow,
    /// Scale out ahead of the forecast.
    Enforce,
}

fn default_forecast_history() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_forecast_horizon() -> Duration {
    Duration::from_secs(3600)
}

fn default_forecast_step() -> Duration {
    Duration::from_secs(300)
}

/// How recovery is verified.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// The fault must be clear this long for the incident to succeed.
    #[serde(default = "default_stable_for")]
    pub stable_for: Duration,
    /// Time after an action before it counts as not having worked.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Actions per incident before it is escalated.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: u32,
}

impl Default for VerifySpec {
    fn default() -> Self {
        Self {
            stable_for: default_stable_for(),
            timeout: default_timeout(),
            max_attempts: default_max_attempts(),
        }
    }
}

fn default_stable_for() -> Duration {
    Duration::from_secs(120)
}
fn default_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_attempts() -> u32 {
    2
}

/// Limits on what the operator may do for this policy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardSpec {
    /// Minimum time between the end of one incident's last action and a new incident's first.
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
    /// Actions allowed in any sliding hour.
    #[serde(default = "default_max_actions")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_actions_per_hour: u32,
    /// Pods of the workload that may be unavailable because of us at once.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_unavailable: u32,
    /// Record what would be done, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Evaluate and report, but open no incident and take no action; an open incident is halted
    /// at its next step.
    #[serde(default)]
    pub suspend: bool,
    /// A fault that comes back this soon after an incident of it succeeded is escalated instead of
    /// fixed again: the fix does not hold.
    #[serde(default = "default_relapse_window")]
    pub relapse_window: Duration,
    /// Effectiveness memory: an action whose incidents on this workload failed (escalated after
    /// it ran, or refused for good) this many times within `failureWindow` is skipped for the
    /// fault's next fallback, or the incident is escalated when none is left. 0 disables.
    #[serde(default = "default_skip_after_failures")]
    #[schemars(range(max = 100))]
    pub skip_after_failures: u32,
    /// How far back failures count for `skipAfterFailures`.
    #[serde(default = "default_failure_window")]
    pub failure_window: Duration,
}

impl Default for GuardSpec {
    fn default() -> Self {
        Self {
            cooldown: default_cooldown(),
            max_actions_per_hour: default_max_actions(),
            max_unavailable: default_max_unavailable(),
            dry_run: false,
            suspend: false,
            relapse_window: default_relapse_window(),
            skip_after_failures: default_skip_after_failures(),
            failure_window: default_failure_window(),
        }
    }
}

fn default_skip_after_failures() -> u32 {
    2
}

fn default_failure_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_relapse_window() -> Duration {
    Duration::from_secs(1800)
}

fn default_cooldown() -> Duration {
    Duration::from_secs(600)
}
fn default_max_actions() -> u32 {
    3
}
fn default_max_unavailable() -> u32 {
    1
}

/// A notification sink.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifySpec {
    /// An HTTP endpoint that receives a JSON POST.
    pub webhook: WebhookSpec,
}

/// A webhook receiver.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// The URL to POST to.
    #[schemars(length(max = 2048), regex(pattern = r"^https?://"))]
    pub url: String,
    /// Payload shape.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Also notify on every action, not only on Escalated and Failed.
    #[serde(default)]
    pub on_every_action: bool,
}

/// The JSON shape of a webhook payload.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum WebhookFormat {
    /// homeostat's own JSON document.
    #[default]
    Generic,
    /// A Slack incoming-webhook message (`{"text": ...}`).
    Slack,
}

/// What the operator last saw and did for a policy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (kstatus conventions).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The most recent evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation: Option<Evaluation>,
    /// The pattern of the last fault seen firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fault: Option<String>,
    /// The open incident, if any (with a selector: the first of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_remediation: Option<String>,
    /// One entry per workload the policy covers (at most 100; `targetCount` has the total).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    /// Workloads the policy covers.
    #[serde(default)]
    #[schemars(range(max = 4294967295_u32))]
    pub target_count: u32,
    /// Shadow mode: how the shadow incidents on record were scored, over every covered workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSummary>,
}

/// How a policy's shadow incidents on record were scored (those retention keeps).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowSummary {
    /// Shadow incidents on record.
    #[schemars(range(max = 4294967295_u32))]
    pub incidents: u32,
    /// The fault cleared by itself within the verify window: the action would have been unnecessary.
    #[schemars(range(max = 4294967295_u32))]
    pub unnecessary: u32,
    /// The fault persisted past the verify window: the action was needed.
    #[schemars(range(max = 4294967295_u32))]
    pub needed: u32,
    /// Still being scored.
    #[schemars(range(max = 4294967295_u32))]
    pub pending: u32,
    /// Could not be scored (metrics missing, or stopped by suspend or a mode change).
    #[schemars(range(max = 4294967295_u32))]
    pub unscored: u32,
    /// unnecessary / (unnecessary + needed), when any is scored: the estimated share of actions
    /// enforcing would have taken for nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unnecessary_rate: Option<f64>,
}

/// An action the effectiveness memory skips for a fault on a workload.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedAction {
    /// The fault.
    #[schemars(length(max = 63))]
    pub fault: String,
    /// The action skipped.
    pub action: ActionType,
    /// Its failed incidents within `guards.failureWindow`.
    #[schemars(range(max = 4294967295_u32))]
    pub failures: u32,
    /// The failed incidents (newest first, at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub incidents: Vec<String>,
    /// When the oldest counted failure leaves the window (the action may be tried again then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
}

/// Where one covered workload stands.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// The workload.
    pub target: TargetRef,
    /// The workload-level finding of the last evaluation.
    pub finding: FaultKind,
    /// Its open incident, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_remediation: Option<String>,
    /// Why nothing is done, when a firing fault is held by a guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Shadow mode: how this workload's shadow incidents were scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSummary>,
    /// Actions the effectiveness memory skips now on this workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipping: Vec<SkippedAction>,
    /// Pods a ResizePod left running with more than the workload's template asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_drift: Option<String>,
    /// The last forecast of a Scale action's `forecast:` block for this workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastStatus>,
}

/// What the last forecast said for one workload (refreshed at most once per `forecast.step`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastStatus {
    /// When it was computed.
    pub time: Time,
    /// `Shadow`: reported only; `Enforce`: acted on.
    pub mode: ForecastMode,
    /// The workload's replicas when it was computed.
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Replicas the current demand needs (absent: no current sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub current_need: Option<i32>,
    /// Peak demand forecast over the lead time, in the signal's unit (absent: no forecast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_peak: Option<f64>,
    /// Replicas the forecast peak needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub forecast_need: Option<i32>,
    /// Replicas the rule asks for (max of forecast and current need, within min/max), when it asks
    /// for more than there are; in shadow mode what enforcing would have scaled to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub recommended: Option<i32>,
    /// The lead: the measured time a new pod of this workload takes to become Ready, in seconds.
    pub pod_ready_seconds: f64,
    /// Why it asks for that, or why there is no forecast (bounded).
    pub message: String,
}

/// One evaluation of every fault of a policy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// When it ran.
    pub time: Time,
    /// Prometheus queries it issued.
    #[schemars(range(max = 4294967295_u32))]
    pub queries: u32,
    /// One verdict per fault.
    pub verdicts: Vec<FaultVerdictStatus>,
}

/// The verdict of one fault in an evaluation.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultVerdictStatus {
    /// The fault's name.
    pub fault: String,
    /// What was found.
    pub verdict: FaultKind,
    /// Pods implicated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Why, in one line.
    pub message: String,
    /// The numbers behind it (at most a few entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// Whether the fault's action is due now (false while a classified fault only is reported,
    /// e.g. a leak whose projection is beyond its horizon).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub due: bool,
    /// Seconds until the action becomes due at the current trend, if projected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_in_seconds: Option<f64>,
    /// MemoryLeak: projected seconds to the memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_limit_seconds: Option<f64>,
    /// How sure the detector is, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}
