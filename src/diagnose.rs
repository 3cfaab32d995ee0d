//! `homeostat diagnose`: classify workloads straight from Prometheus, without a cluster.
//!
//! Workloads and their pods are found through kube-state-metrics; the detectors are the operator's.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    controller::{Settings, evaluate_policy},
    diagnosis::{
        self, EvalContext, FaultVerdict, action_for, classify, default_faults, evaluate_all,
        fetch::{self, DiscoveredWorkload, FetchError, PodRef, QuerySet, Range, needed},
    },
    prometheus::{PromClient, PromError, template::escape_regex},
    v1alpha1::{Evidence, FaultKind, FaultSpec, RemediationPolicy},
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
    Fetch(#[from] FetchError),
}

/// Builds a finding from a set of verdicts (shared by `diagnose` and the benchmark).
pub fn finding(target: TargetOut, faults: &[FaultSpec], verdicts: &[FaultVerdict]) -> Finding {
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
                type_: if v.verdict.due {
                    action_for(f).type_.as_str().into()
                } else {
                    "None".into()
                },
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

/// Runs a diagnosis.
pub async fn run(prom: &PromClient, opts: &Options) -> Result<Report, DiagnoseError> {
    let ns_regex = opts
        .namespace
        .as_deref()
        .map_or_else(|| ".+".to_string(), escape_regex);
    let workloads = fetch::discover(prom, &ns_regex, opts.at, &opts.settings.window).await?;
    let mut queries = 3;
    let ctx = EvalContext {
        now: opts.at,
        step: opts.settings.step,
        stale_after: opts.settings.stale_after,
    };
    let mut findings = vec![];
    if opts.policies.is_empty() {
        // Default patterns on every workload: one batch of queries for all of them.
        let faults = default_faults();
        let vars = fetch::workload_vars("", "", &[], &opts.settings.window)
            .set("namespace", ns_regex.clone())
            .set("pods", ".+");
        let range = Range::for_faults(&faults, opts.at, opts.settings.step);
        let fetched = fetch::fetch(
            prom,
            &QuerySet::standard(),
            &needed(&faults),
            &[],
            &vars,
            range,
        )
        .await?;
        queries += fetched.queries;
        for (w, pods) in &workloads {
            let series = fetch::assemble(&fetched, pods);
            let verdicts = evaluate_all(&faults, &series, &ctx);
            findings.push(finding(target_out(w), &faults, &verdicts));
        }
    } else {
        for p in &opts.policies {
            let ns = p
                .metadata
                .namespace
                .clone()
                .or_else(|| opts.namespace.clone())
                .unwrap_or_else(|| "default".into());
            let key = DiscoveredWorkload {
                kind: p.spec.target_ref.kind,
                namespace: ns.clone(),
                name: p.spec.target_ref.name.clone(),
            };
            let pods: Vec<PodRef> = workloads.get(&key).cloned().unwrap_or_default();
            let ev = evaluate_policy(prom, &p.spec, &ns, &pods, opts.at, &opts.settings).await;
            queries += ev.queries;
            if let Some(e) = ev.fetch_error {
                return Err(e.into());
            }
            findings.push(finding(target_out(&key), &p.spec.faults, &ev.verdicts));
        }
    }
    findings.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(Report {
        evaluated_at: jiff::Timestamp::from_millisecond((opts.at * 1000.0) as i64)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        findings,
        queries,
    })
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
