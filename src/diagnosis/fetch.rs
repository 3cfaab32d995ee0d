//! Batched reads: one range query per signal per evaluation, grouped by pod, never one per pod.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use super::{
    input::{PodSeries, StdSignal, WorkloadSeries},
    patterns::{BACKOFF_LOOKBACK, LEAK_LOOKBACK, hold_span},
};
use crate::{
    prometheus::{
        PromClient, PromError, Series,
        template::{TemplateError, Vars, escape_regex, exact_alternation},
    },
    v1alpha1::{FaultSpec, Pattern, QueryOverrides, WorkloadKind},
};

const SEL: &str = r#"namespace=~"{{ namespace }}", pod=~"{{ pods }}""#;

/// The query templates of the standard signals.
#[derive(Clone, Debug)]
pub struct QuerySet {
    templates: BTreeMap<StdSignal, String>,
}

impl Default for QuerySet {
    fn default() -> Self {
        Self::standard()
    }
}

impl QuerySet {
    /// The cAdvisor and kube-state-metrics queries, as kube-prometheus-stack names the series.
    pub fn standard() -> Self {
        let c = format!(r#"{SEL}, container!="", container!="POD""#);
        let t = [
            (
                StdSignal::Cpu,
                format!(
                    "sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{{c}}}[{{{{ window }}}}]))"
                ),
            ),
            (
                StdSignal::Throttling,
                format!(
                    "sum by (namespace, pod) (rate(container_cpu_cfs_throttled_periods_total{{{c}}}[{{{{ window }}}}])) / sum by (namespace, pod) (rate(container_cpu_cfs_periods_total{{{c}}}[{{{{ window }}}}]))"
                ),
            ),
            (
                StdSignal::Memory,
                format!(
                    "sum by (namespace, pod) (last_over_time(container_memory_working_set_bytes{{{c}}}[{{{{ window }}}}]))"
                ),
            ),
            (
                StdSignal::CpuLimit,
                format!(
                    r#"sum by (namespace, pod) (last_over_time(kube_pod_container_resource_limits{{{SEL}, resource="cpu"}}[{{{{ window }}}}]))"#
                ),
            ),
            (
                StdSignal::MemoryLimit,
                format!(
                    r#"sum by (namespace, pod) (last_over_time(kube_pod_container_resource_limits{{{SEL}, resource="memory"}}[{{{{ window }}}}]))"#
                ),
            ),
            (
                StdSignal::Restarts,
                format!(
                    "sum by (namespace, pod) (last_over_time(kube_pod_container_status_restarts_total{{{SEL}}}[{{{{ window }}}}]))"
                ),
            ),
            (
                StdSignal::BackOff,
                format!(
                    r#"max by (namespace, pod) (kube_pod_container_status_waiting_reason{{{SEL}, reason="CrashLoopBackOff"}})"#
                ),
            ),
            (
                StdSignal::LastTerminated,
                format!(
                    "max by (namespace, pod, reason) (last_over_time(kube_pod_container_status_last_terminated_reason{{{SEL}}}[{{{{ window }}}}]))"
                ),
            ),
        ];
        Self {
            templates: t.into_iter().collect(),
        }
    }

    /// The standard set with a policy's overrides applied.
    pub fn with_overrides(o: Option<&QueryOverrides>) -> Self {
        let mut s = Self::standard();
        if let Some(o) = o {
            for (sig, q) in [
                (StdSignal::Cpu, &o.cpu),
                (StdSignal::CpuLimit, &o.cpu_limit),
                (StdSignal::Throttling, &o.throttling),
                (StdSignal::Memory, &o.memory),
                (StdSignal::MemoryLimit, &o.memory_limit),
                (StdSignal::Restarts, &o.restarts),
                (StdSignal::BackOff, &o.back_off),
                (StdSignal::LastTerminated, &o.last_terminated_reason),
            ] {
                if let Some(q) = q {
                    s.templates.insert(sig, q.clone());
                }
            }
        }
        s
    }

    /// The template of a signal.
    pub fn template(&self, s: StdSignal) -> &str {
        self.templates.get(&s).map_or("", String::as_str)
    }
}

/// The standard signals the given faults read.
pub fn needed(faults: &[FaultSpec]) -> BTreeSet<StdSignal> {
    let mut n = BTreeSet::new();
    for f in faults {
        match f.pattern {
            Pattern::RunawayProcess => {
                n.extend([StdSignal::Cpu, StdSignal::CpuLimit]);
            }
            Pattern::ResourceContention => {
                n.extend([StdSignal::Cpu, StdSignal::CpuLimit, StdSignal::Throttling]);
            }
            Pattern::MemoryLeak => {
                n.extend([StdSignal::Memory, StdSignal::MemoryLimit]);
            }
            Pattern::CrashLoop => {
                n.extend([
                    StdSignal::Restarts,
                    StdSignal::BackOff,
                    StdSignal::LastTerminated,
                ]);
            }
            Pattern::Threshold => {}
        }
    }
    n
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A query template is malformed (a policy error).
    #[error("query template for {signal}: {source}")]
    Template {
        /// Which signal.
        signal: String,
        /// What is wrong.
        source: TemplateError,
    },
    /// Prometheus failed or refused.
    #[error("{signal}: {source}")]
    Prometheus {
        /// Which signal's query.
        signal: String,
        /// What went wrong.
        source: PromError,
    },
}

impl FetchError {
    /// A bounded category for conditions and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Template { .. } => "InvalidQueryTemplate",
            Self::Prometheus { source, .. } => source.category(),
        }
    }

    /// Whether the policy spec is at fault (not a transient failure).
    pub fn is_spec_error(&self) -> bool {
        match self {
            Self::Template { .. } => true,
            Self::Prometheus { source, .. } => source.is_spec_error(),
        }
    }
}

/// The variables of one workload's queries: an exact namespace and an exact pod list.
pub fn workload_vars(namespace: &str, workload: &str, pods: &[String], window: &str) -> Vars {
    Vars::default()
        .set("namespace", escape_regex(namespace))
        .set("workload", workload)
        .set("pods", exact_alternation(pods.iter().map(String::as_str)))
        .set("window", window)
}

/// Seconds of history a standard signal must cover for these faults: the longest `for` of the
/// faults that read it (a CrashLoop looks back at least 10 minutes, for loops at kubelet's capped
/// 5-minute back-off, a MemoryLeak an hour for slow leaks and the shape of a climb; limits are read at their latest
/// point only).
pub fn signal_span(faults: &[FaultSpec], sig: StdSignal, step: f64) -> f64 {
    if matches!(sig, StdSignal::CpuLimit | StdSignal::MemoryLimit) {
        return step * 2.0;
    }
    faults
        .iter()
        .filter(|f| needed(std::slice::from_ref(f)).contains(&sig))
        .map(|f| match f.pattern {
            Pattern::CrashLoop => f.for_.as_secs_f64().max(BACKOFF_LOOKBACK),
            Pattern::MemoryLeak => f.for_.as_secs_f64().max(LEAK_LOOKBACK),
            _ => hold_span(f),
        })
        .fold(step, f64::max)
}

/// A pod to assemble series for.
#[derive(Clone, Debug, PartialEq)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Start time (unix seconds), if known.
    pub started_at: Option<f64>,
}

/// A query's answer with its series indexed by `(namespace, pod)`, built once per sweep and read
/// by every workload that shares the query.
#[derive(Debug, Default)]
pub struct Indexed {
    /// The series as Prometheus returned them.
    pub series: Vec<Series>,
    by_pod: HashMap<(String, String), Vec<usize>>,
}

impl Indexed {
    /// Indexes series by their `namespace` and `pod` labels (series without a pod label are kept
    /// but not indexed).
    pub fn new(series: Vec<Series>) -> Self {
        let mut by_pod: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, s) in series.iter().enumerate() {
            let Some(pod) = s.label("pod") else { continue };
            let ns = s.label("namespace").unwrap_or("");
            by_pod
                .entry((ns.to_string(), pod.to_string()))
                .or_default()
                .push(i);
        }
        Self { series, by_pod }
    }

    /// Every series of one pod (a series without a namespace label matches any namespace).
    pub fn pod_all(&self, namespace: &str, pod: &str) -> impl Iterator<Item = &Series> {
        let key = (namespace.to_string(), pod.to_string());
        self.by_pod
            .get(&key)
            .or_else(|| self.by_pod.get(&(String::new(), key.1)))
            .into_iter()
            .flatten()
            .filter_map(|i| self.series.get(*i))
    }

    /// The series of one pod (the first, for queries that return one per pod).
    pub fn pod(&self, namespace: &str, pod: &str) -> Option<&Series> {
        self.pod_all(namespace, pod).next()
    }
}

/// Builds a workload's input from indexed answers, picking each pod's series by its labels.
pub fn assemble_indexed(
    std: &BTreeMap<StdSignal, Arc<Indexed>>,
    signals: &BTreeMap<String, Arc<Indexed>>,
    pods: &[PodRef],
) -> WorkloadSeries {
    let find =
        |sig: StdSignal, p: &PodRef| std.get(&sig).and_then(|ix| ix.pod(&p.namespace, &p.name));
    let points = |sig, p: &PodRef| find(sig, p).map(|s| s.points.clone()).unwrap_or_default();
    let latest = |sig, p: &PodRef| {
        find(sig, p)
            .and_then(Series::last)
            .map(|x| x.1)
            .filter(|v| v.is_finite())
    };
    let pods = pods
        .iter()
        .map(|p| PodSeries {
            name: p.name.clone(),
            started_at: p.started_at,
            cpu: points(StdSignal::Cpu, p),
            throttling: points(StdSignal::Throttling, p),
            memory: points(StdSignal::Memory, p),
            restarts: points(StdSignal::Restarts, p),
            backoff: points(StdSignal::BackOff, p),
            last_terminated: std
                .get(&StdSignal::LastTerminated)
                .and_then(|ix| last_reason(ix, p)),
            cpu_limit: latest(StdSignal::CpuLimit, p),
            memory_limit: latest(StdSignal::MemoryLimit, p),
        })
        .collect();
    let signals = signals
        .iter()
        .map(|(k, v)| (k.clone(), v.series.clone()))
        .collect();
    WorkloadSeries { pods, signals }
}

/// The `reason` of a pod's newest last-terminated-reason series with a non-zero value.
fn last_reason(ix: &Indexed, p: &PodRef) -> Option<String> {
    ix.pod_all(&p.namespace, &p.name)
        .filter_map(|s| {
            let (t, v) = s.last()?;
            (v.is_finite() && v > 0.0).then_some((t, s.label("reason")?))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, r)| r.to_string())
}

/// A workload found through kube-state-metrics.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiscoveredWorkload {
    /// Deployment or StatefulSet.
    pub kind: WorkloadKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Finds Deployments and StatefulSets and their current pods through kube-state-metrics
/// (`kube_pod_owner`, `kube_replicaset_owner`, `kube_pod_start_time`) at time `at`. Three queries.
pub async fn discover(
    client: &PromClient,
    namespace_regex: &str,
    at: f64,
    window: &str,
) -> Result<BTreeMap<DiscoveredWorkload, Vec<PodRef>>, PromError> {
    let vars = Vars::default()
        .set("namespace", namespace_regex)
        .set("window", window);
    let render = |t: &str| vars.render(t).unwrap_or_default();
    let owners_q = render(
        r#"max by (namespace, pod, owner_kind, owner_name) (last_over_time(kube_pod_owner{namespace=~"{{ namespace }}", owner_kind=~"ReplicaSet|StatefulSet"}[{{ window }}]))"#,
    );
    let rs_q = render(
        r#"max by (namespace, replicaset, owner_name) (last_over_time(kube_replicaset_owner{namespace=~"{{ namespace }}", owner_kind="Deployment"}[{{ window }}]))"#,
    );
    let start_q = render(
        r#"max by (namespace, pod) (last_over_time(kube_pod_start_time{namespace=~"{{ namespace }}"}[{{ window }}]))"#,
    );
    let (owners, rs, starts) = futures::try_join!(
        client.instant(&owners_q, at),
        client.instant(&rs_q, at),
        client.instant(&start_q, at)
    )?;
    let rs_to_deploy: BTreeMap<(String, String), String> = rs
        .iter()
        .filter_map(|s| {
            Some((
                (
                    s.label("namespace")?.to_string(),
                    s.label("replicaset")?.to_string(),
                ),
                s.label("owner_name")?.to_string(),
            ))
        })
        .collect();
    let start_of: BTreeMap<(String, String), f64> = starts
        .iter()
        .filter_map(|s| {
            Some((
                (
                    s.label("namespace")?.to_string(),
                    s.label("pod")?.to_string(),
                ),
                s.last()?.1,
            ))
        })
        .collect();
    let mut out: BTreeMap<DiscoveredWorkload, Vec<PodRef>> = BTreeMap::new();
    for s in &owners {
        let (Some(ns), Some(pod), Some(kind), Some(owner)) = (
            s.label("namespace"),
            s.label("pod"),
            s.label("owner_kind"),
            s.label("owner_name"),
        ) else {
            continue;
        };
        let w = match kind {
            "StatefulSet" => DiscoveredWorkload {
                kind: WorkloadKind::StatefulSet,
                namespace: ns.into(),
                name: owner.into(),
            },
            _ => match rs_to_deploy.get(&(ns.to_string(), owner.to_string())) {
                Some(d) => DiscoveredWorkload {
                    kind: WorkloadKind::Deployment,
                    namespace: ns.into(),
                    name: d.clone(),
                },
                None => continue,
            },
        };
        out.entry(w).or_default().push(PodRef {
            namespace: ns.into(),
            name: pod.into(),
            started_at: start_of.get(&(ns.to_string(), pod.to_string())).copied(),
        });
    }
    for pods in out.values_mut() {
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods.dedup_by(|a, b| a.name == b.name);
    }
    Ok(out)
}
