//! `homeostat diagnose`: classify workloads straight from Prometheus, without a cluster.
//!
//! Workloads and their pods are found through kube-state-metrics; the detectors are the operator's.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    diagnosis::{
        self, EvalContext, FaultVerdict, Settings, Subject, action_for, classify, default_faults,
        fetch::{self, DiscoveredWorkload, PodRef},
        sweep,
    },
    prometheus::{PromClient, PromError, template::escape_regex},
    remediation::{
        actions::{LivePod, Workload},
        engine::{self, Intent},
    },
    v1alpha1::{
        Evidence, FaultKind, FaultSpec, Phase, RemediationPolicy, RemediationPolicySpec, TargetRef,
        WorkloadKind, WorkloadSelector,
    },
};

/// Options of one diagnosis run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Evaluation time (unix seconds).
    pub at: f64,
    /// Only this namespace, if set.
    pub namespace: Option<String>,
    /// Policies to apply; empty means the default patterns on every workload.
    pub policies: Vec<RemediationPolicy>,
    /// Resolution, window, staleness and timeout of the queries.
    pub settings: Settings,
}

/// A workload in the report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetOut {
    /// Deployment or StatefulSet.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// The action in the report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ActionOut {
    /// RestartPod, Scale, RolloutRestart, None or Escalate.
    #[serde(rename = "type")]
    pub type_: String,
}

/// One verdict of one fault, in the report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VerdictOut {
    /// The fault's name.
    pub fault: String,
    /// The finding.
    pub verdict: FaultKind,
    /// Why.
    pub message: String,
}

/// One workload's finding.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The workload.
    pub target: TargetOut,
    /// The finding.
    pub fault: FaultKind,
    /// Pods implicated.
    pub pods: Vec<String>,
    /// What homeostat would do now (None while the fault's action is not due).
    pub action: ActionOut,
    /// Whether the fault's action is due now.
    pub due: bool,
    /// Seconds until it becomes due at the current trend (0 when due), if projected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_in_seconds: Option<f64>,
    /// How long the evidence has held (seconds).
    pub held_for_seconds: f64,
    /// MemoryLeak: projected seconds to the memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_limit_seconds: Option<f64>,
    /// 0..1.
    pub confidence: f64,
    /// The numbers behind it.
    pub evidence: Vec<Evidence>,
    /// Why, in one line.
    pub message: String,
    /// Every fault's verdict.
    pub verdicts: Vec<VerdictOut>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// RFC 3339 evaluation time.
    pub evaluated_at: String,
    /// One per workload.
    pub findings: Vec<Finding>,
    /// Prometheus queries issued.
    pub queries: u32,
}

/// Why a diagnosis could not run.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    /// Discovery failed.
    #[error("finding workloads through kube-state-metrics: {0}")]
    Discover(#[from] PromError),
    /// A batch of queries failed.
    #[error("reading series: {0}")]
    Fetch(String),
}

/// Builds a finding from a set of verdicts and the engine's intent (shared by `diagnose` and the
/// benchmark). The action is what the engine would do now: the fault's action, `Escalate` when
/// planning finds it cannot help, or `None` when a guard holds it.
pub fn finding(
    target: TargetOut,
    faults: &[FaultSpec],
    verdicts: &[FaultVerdict],
    intent: &Intent,
) -> Finding {
    let all = verdicts
        .iter()
        .map(|v| VerdictOut {
            fault: v.fault.clone(),
            verdict: v.verdict.kind,
            message: v.verdict.message.clone(),
        })
        .collect();
    if let Some((f, v)) = classify(faults, verdicts) {
        return Finding {
            target,
            fault: v.verdict.kind,
            pods: v.verdict.pods.clone(),
            action: ActionOut {
                type_: intended_action(f, intent).into(),
            },
            due: v.verdict.due,
            due_in_seconds: v.verdict.due_in,
            held_for_seconds: v.verdict.held_for,
            time_to_limit_seconds: v.verdict.time_to_limit,
            confidence: v.verdict.confidence,
            evidence: v.verdict.evidence.clone(),
            message: v.verdict.message.clone(),
            verdicts: all,
        };
    }
    let kind = diagnosis::overall(faults, verdicts);
    let message = verdicts
        .iter()
        .find(|v| v.verdict.kind == kind)
        .map_or_else(String::new, |v| v.verdict.message.clone());
    Finding {
        target,
        fault: kind,
        pods: vec![],
        action: ActionOut {
            type_: "None".into(),
        },
        due: false,
        due_in_seconds: None,
        held_for_seconds: 0.0,
        time_to_limit_seconds: None,
        confidence: if kind == FaultKind::Healthy { 1.0 } else { 0.0 },
        evidence: vec![],
        message,
        verdicts: all,
    }
}

/// The spec `diagnose` applies to every workload when no policy is given.
pub fn default_spec() -> RemediationPolicySpec {
    RemediationPolicySpec {
        target_ref: None,
        selector: Some(WorkloadSelector {
            kinds: vec![WorkloadKind::Deployment, WorkloadKind::StatefulSet],
            match_labels: BTreeMap::new(),
            match_expressions: vec![],
        }),
        interval: crate::v1alpha1::Duration::from_secs(30),
        prometheus: None,
        signals: vec![],
        queries: None,
        faults: default_faults(),
        verify: Default::default(),
        guards: Default::default(),
        notify: vec![],
        mode: Default::default(),
    }
}

/// The workloads a policy covers among those discovered. A selector's labels are not visible
/// through kube-state-metrics' default series, so offline a selector covers every workload of its
/// kinds in the policy's namespace.
fn covered<'a>(
    spec: &RemediationPolicySpec,
    ns: Option<&str>,
    workloads: &'a BTreeMap<DiscoveredWorkload, Vec<PodRef>>,
) -> Vec<(&'a DiscoveredWorkload, &'a [PodRef])> {
    workloads
        .iter()
        .filter(|(w, _)| ns.is_none_or(|n| w.namespace == n))
        .filter(|(w, _)| match (&spec.target_ref, &spec.selector) {
            (Some(t), _) => t.kind == w.kind && t.name == w.name,
            (None, Some(s)) => s.kinds.contains(&w.kind),
            (None, None) => false,
        })
        .map(|(w, p)| (w, p.as_slice()))
        .collect()
}

/// Runs a diagnosis: one sweep of batched queries for every workload, then the operator's
/// detectors and incident engine (with no history: what it would do on first sight).
pub async fn run(prom: &PromClient, opts: &Options) -> Result<Report, DiagnoseError> {
    let ns_regex = opts
        .namespace
        .as_deref()
        .map_or_else(|| ".+".to_string(), escape_regex);
    let workloads = fetch::discover(prom, &ns_regex, opts.at, &opts.settings.window).await?;
    let default = default_spec();
    let ns_of = |p: &RemediationPolicy| {
        p.metadata
            .namespace
            .clone()
            .or_else(|| opts.namespace.clone())
            .unwrap_or_else(|| "default".into())
    };
    // A policy's target that kube-state-metrics does not show is evaluated with no pods
    // (Inconclusive), never silently left out.
    let unseen: Vec<DiscoveredWorkload> = opts
        .policies
        .iter()
        .filter_map(|p| {
            let t = p.spec.target_ref.as_ref()?;
            let key = DiscoveredWorkload {
                kind: t.kind,
                namespace: ns_of(p),
                name: t.name.clone(),
            };
            (!workloads.contains_key(&key)).then_some(key)
        })
        .collect();
    let mut entries: Vec<(&str, &RemediationPolicySpec, &DiscoveredWorkload, &[PodRef])> = vec![];
    if opts.policies.is_empty() {
        for (w, pods) in covered(&default, None, &workloads) {
            entries.push(("diagnose", &default, w, pods));
        }
    }
    for p in &opts.policies {
        let ns = ns_of(p);
        let name = p.metadata.name.as_deref().unwrap_or("policy");
        for (w, pods) in covered(&p.spec, Some(&ns), &workloads) {
            entries.push((name, &p.spec, w, pods));
        }
        if let Some(t) = &p.spec.target_ref
            && let Some(w) = unseen
                .iter()
                .find(|w| w.namespace == ns && w.kind == t.kind && w.name == t.name)
        {
            entries.push((name, &p.spec, w, &[]));
        }
    }
    let subjects: Vec<Subject> = entries
        .iter()
        .map(|(_, spec, w, pods)| Subject {
            spec,
            namespace: &w.namespace,
            workload: &w.name,
            pods,
        })
        .collect();
    let plan = sweep::plan(&subjects, &opts.settings);
    let answers = sweep::fetch(prom, &plan, opts.at, &opts.settings).await;
    let ctx = EvalContext {
        now: opts.at,
        step: opts.settings.step,
        stale_after: opts.settings.stale_after,
    };
    let now = jiff::Timestamp::from_millisecond((opts.at * 1000.0) as i64).unwrap_or_default();
    let mut findings = vec![];
    for (i, (policy, spec, w, pods)) in entries.iter().enumerate() {
        let ev = sweep::evaluate(&plan, &answers, i, &subjects[i], &ctx);
        if let Some(e) = &ev.fetch_error {
            return Err(DiagnoseError::Fetch(e.to_string()));
        }
        let target = TargetRef {
            kind: w.kind,
            name: w.name.clone(),
        };
        let live = LivePod::offline(pods);
        // Offline, the workload is what kube-state-metrics shows: every pod counted available.
        let workload = Workload {
            target: target.clone(),
            replicas: live.len() as i32,
            available: live.len() as i32,
            selector: None,
            restarted_at: None,
        };
        let intent = engine::decide(&engine::Observed {
            policy,
            spec,
            target: &target,
            workload: Some(&workload),
            // Offline: who owns the replicas cannot be known.
            replicas_owner: &crate::remediation::owners::NO_OWNER,
            pods: &live,
            history: &[],
            evaluated: &ev,
            forecast: None,
            now,
        });
        findings.push(finding(target_out(w), &spec.faults, &ev.verdicts, &intent));
    }
    findings.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(Report {
        evaluated_at: now.to_string(),
        findings,
        queries: 3 + plan.len() as u32,
    })
}

fn intended_action(f: &FaultSpec, intent: &Intent) -> &'static str {
    match intent {
        Intent::Open(o) if o.status.phase == Phase::Escalated && o.spec.action.type_.mutates() => {
            "Escalate"
        }
        Intent::Open(o) => o.spec.action.type_.as_str(),
        Intent::Hold { .. } | Intent::Idle => "None",
        Intent::Advance(_) => action_for(f).type_.as_str(),
    }
}

fn target_out(w: &DiscoveredWorkload) -> TargetOut {
    TargetOut {
        kind: w.kind.as_str().into(),
        namespace: w.namespace.clone(),
        name: w.name.clone(),
    }
}

/// Renders the report for people: one line per workload, then its evidence.
pub fn table(r: &Report) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "NAMESPACE".into(),
        "WORKLOAD".into(),
        "FINDING".into(),
        "ACTION".into(),
        "CONF".into(),
        "PODS".into(),
    ]];
    for f in &r.findings {
        rows.push([
            f.target.namespace.clone(),
            format!("{}/{}", f.target.kind, f.target.name),
            f.fault.as_str().into(),
            match (f.fault.is_fault() && !f.due, f.due_in_seconds) {
                (true, Some(d)) => format!("None (due in {d:.0}s)"),
                (true, None) => "None (not due)".into(),
                _ => f.action.type_.clone(),
            },
            format!("{:.2}", f.confidence),
            if f.pods.is_empty() {
                "-".into()
            } else {
                f.pods.join(",")
            },
        ]);
    }
    let mut width = [0usize; 6];
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = format!("evaluated at {}\n", r.evaluated_at);
    let mut by_row: BTreeMap<usize, &Finding> = BTreeMap::new();
    for (i, f) in r.findings.iter().enumerate() {
        by_row.insert(i + 1, f);
    }
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(j, c)| format!("{c:<w$}", w = width[j]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if let Some(f) = by_row.get(&i) {
            out.push_str(&format!("    why: {}\n", f.message));
            for e in &f.evidence {
                out.push_str(&format!(
                    "    - {}{}: {} = {:.4}{}\n",
                    e.pod
                        .as_deref()
                        .map(|p| format!("{p} "))
                        .unwrap_or_default(),
                    e.signal,
                    e.rule,
                    e.value,
                    e.threshold
                        .map(|t| format!(" (bound {t:.4})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    out
}
