//! `homeostat backtest`: replays a policy over a past time range of a real Prometheus and reports
//! when it would have acted and what it would have done.
//!
//! The same detectors, guards and incident state machine as the operator; only the actions are
//! imagined (taken as applied at once).

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use crate::{
    controller::{Settings, evaluate_policy},
    diagnose::DiagnoseError,
    diagnosis::{
        action_for, choose,
        fetch::{self, DiscoveredWorkload, workload_vars},
    },
    prometheus::{PromClient, Series, template::escape_regex},
    remediation::{
        guards,
        lifecycle::{self, Check, Next, Outcome},
    },
    v1alpha1::{
        ActionType, Attempt, AttemptResult, FaultKind, Phase, Remediation, RemediationPolicy,
        RemediationSpec, RemediationStatus,
    },
};

/// Options of a backtest.
#[derive(Clone, Debug)]
pub struct Options {
    /// Start (unix seconds).
    pub from: f64,
    /// End (unix seconds).
    pub to: f64,
    /// Seconds between evaluations (the policy's interval by default).
    pub every: f64,
    /// Namespace of the policy when its metadata has none.
    pub namespace: String,
    /// Resolution, window and staleness of the queries.
    pub settings: Settings,
}

/// One thing the operator would have done.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// When (RFC 3339).
    pub at: String,
    /// When (unix seconds).
    pub t: f64,
    /// Incident number (1-based).
    pub incident: usize,
    /// The fault that fired.
    pub fault: String,
    /// The action (or Escalate).
    pub action: ActionType,
    /// Pods it would have acted on.
    pub pods: Vec<String>,
    /// Why.
    pub message: String,
}

/// How an imagined incident ended.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IncidentOut {
    /// 1-based number.
    pub number: usize,
    /// The fault.
    pub fault: String,
    /// Opened at (RFC 3339).
    pub opened_at: String,
    /// Final (or current) phase.
    pub phase: Phase,
    /// The incident's last message.
    pub message: String,
}

/// The backtest's result.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `Kind/namespace/name`.
    pub target: String,
    /// Evaluations run.
    pub evaluations: u32,
    /// Evaluations without data (every verdict Inconclusive).
    pub blind: u32,
    /// Actions and escalations, in time order.
    pub decisions: Vec<Decision>,
    /// Incidents and how they ended.
    pub incidents: Vec<IncidentOut>,
    /// Every pod seen (for plots).
    #[serde(skip)]
    pub pods_seen: BTreeSet<String>,
}

fn ts(t: f64) -> Timestamp {
    Timestamp::from_millisecond((t * 1000.0) as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Replays `policy` over `[from, to]`; `tick` is called after each evaluation (for a progress bar).
pub async fn run(
    prom: &PromClient,
    policy: &RemediationPolicy,
    opts: &Options,
    mut tick: impl FnMut(),
) -> Result<Report, DiagnoseError> {
    let spec = &policy.spec;
    let ns = policy
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| opts.namespace.clone());
    let key = DiscoveredWorkload {
        kind: spec.target_ref.kind,
        namespace: ns.clone(),
        name: spec.target_ref.name.clone(),
    };
    let mut report = Report {
        target: format!("{}/{}/{}", key.kind.as_str(), ns, key.name),
        evaluations: 0,
        blind: 0,
        decisions: vec![],
        incidents: vec![],
        pods_seen: BTreeSet::new(),
    };
    let mut history: Vec<Remediation> = vec![];
    let mut t = opts.from;
    while t <= opts.to + 1e-6 {
        let now = ts(t);
        let workloads = fetch::discover(prom, &escape_regex(&ns), t, &opts.settings.window).await?;
        let pods = workloads.get(&key).cloned().unwrap_or_default();
        report.pods_seen.extend(pods.iter().map(|p| p.name.clone()));
        let ev = evaluate_policy(prom, spec, &ns, &pods, t, &opts.settings).await;
        report.evaluations += 1;
        if ev.fetch_error.is_some() {
            report.blind += 1;
        }
        let open = history
            .iter()
            .rposition(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_terminal()));
        let idx = match open {
            Some(i) => Some(i),
            None if ev.fetch_error.is_none() => match choose(&spec.faults, &ev.verdicts) {
                Some((fault, verdict)) => {
                    let action = action_for(fault);
                    let allowed = guards::may_open(
                        &spec.guards,
                        &history,
                        &fault.name,
                        action.type_.mutates(),
                        now,
                    );
                    if allowed.is_ok() {
                        let mut r = Remediation::new(
                            &format!("backtest-{}", history.len() + 1),
                            RemediationSpec {
                                policy_ref: policy.metadata.name.clone().unwrap_or_default(),
                                target: spec.target_ref.clone(),
                                fault: fault.name.clone(),
                                pattern: fault.pattern,
                                pods: verdict.verdict.pods.clone(),
                                action,
                                evidence: verdict.verdict.evidence.clone(),
                                dry_run: false,
                            },
                        );
                        r.metadata.creation_timestamp = Some(Time(now));
                        r.status = Some(RemediationStatus::default());
                        history.push(r);
                        Some(history.len() - 1)
                    } else {
                        None
                    }
                }
                None => None,
            },
            None => None,
        };
        if let Some(i) = idx {
            let budget = guards::budget(&spec.guards, &history, now).err();
            advance(&mut history[i], i + 1, &ev, spec, budget, now, &mut report);
        }
        tick();
        t += opts.every;
    }
    report.incidents = history
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let s = r.status.clone().unwrap_or_default();
            IncidentOut {
                number: i + 1,
                fault: r.spec.fault.clone(),
                opened_at: r
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|c| c.0.to_string())
                    .unwrap_or_default(),
                phase: s.phase,
                message: s.message,
            }
        })
        .collect();
    Ok(report)
}

/// One lifecycle step of an imagined incident; planned actions are taken as applied at once.
fn advance(
    rem: &mut Remediation,
    number: usize,
    ev: &crate::controller::Evaluated,
    spec: &crate::v1alpha1::RemediationPolicySpec,
    budget_refusal: Option<guards::Refusal>,
    now: Timestamp,
    report: &mut Report,
) {
    let verdict = ev.verdicts.iter().find(|v| v.fault == rem.spec.fault);
    let check = match verdict.map(|v| v.verdict.kind) {
        _ if ev.fetch_error.is_some() => Check::Unknown,
        Some(FaultKind::Healthy) => Check::Clear,
        Some(FaultKind::Inconclusive) | None => Check::Unknown,
        Some(_) => Check::Firing,
    };
    let before = rem.status.clone().unwrap_or_default();
    let (mut s, next) = lifecycle::step(&rem.spec, &before, &spec.verify, check, now);
    if let Next::Plan(n) = next {
        if n > 1
            && let Some(r) = budget_refusal
        {
            s = lifecycle::escalate(s, format!("retry refused: {}", r.message), now);
        } else {
            let pods = verdict
                .filter(|v| !v.verdict.pods.is_empty())
                .map_or_else(|| rem.spec.pods.clone(), |v| v.verdict.pods.clone());
            let attempt = Attempt {
                number: 0,
                action: rem.spec.action.type_,
                started_at: Time(now),
                applied_at: None,
                result: AttemptResult::Pending,
                message: String::new(),
                pods: pods.clone(),
                from_replicas: None,
                to_replicas: None,
                restarted_at: None,
            };
            s = lifecycle::begin(s, attempt, false, now);
            s = lifecycle::record(s, Outcome::Applied("imagined".into()), &spec.verify, now);
            report.decisions.push(Decision {
                at: now.to_string(),
                t: now.as_millisecond() as f64 / 1000.0,
                incident: number,
                fault: rem.spec.fault.clone(),
                action: rem.spec.action.type_,
                pods,
                message: verdict
                    .map(|v| v.verdict.message.clone())
                    .unwrap_or_default(),
            });
        }
    }
    if s.phase == Phase::Escalated && before.phase != Phase::Escalated {
        report.decisions.push(Decision {
            at: now.to_string(),
            t: now.as_millisecond() as f64 / 1000.0,
            incident: number,
            fault: rem.spec.fault.clone(),
            action: ActionType::Escalate,
            pods: rem.spec.pods.clone(),
            message: s.message.clone(),
        });
    }
    rem.status = Some(s);
}

/// The report as a table for people.
pub fn table(r: &Report) -> String {
    let mut out = format!(
        "backtest of {}: {} evaluations ({} without data), {} incident(s), {} decision(s)\n",
        r.target,
        r.evaluations,
        r.blind,
        r.incidents.len(),
        r.decisions.len()
    );
    for d in &r.decisions {
        out.push_str(&format!(
            "{}  #{} {:<12} {:<14} {}  — {}\n",
            d.at,
            d.incident,
            d.fault,
            d.action.as_str(),
            if d.pods.is_empty() {
                "-".to_string()
            } else {
                d.pods.join(",")
            },
            d.message
        ));
    }
    for i in &r.incidents {
        out.push_str(&format!(
            "incident #{} ({}), opened {}: {} — {}\n",
            i.number,
            i.fault,
            i.opened_at,
            i.phase.as_str(),
            i.message
        ));
    }
    out
}

/// Plots the CPU of every pod seen, with the decisions marked, as an SVG file.
pub async fn plot(
    prom: &PromClient,
    r: &Report,
    opts: &Options,
    namespace: &str,
    path: &std::path::Path,
) -> Result<(), String> {
    use plotters::prelude::*;
    let pods: Vec<String> = r.pods_seen.iter().cloned().collect();
    let vars = workload_vars(namespace, "", &pods, &opts.settings.window);
    let q = vars
        .render(fetch::QuerySet::standard().template(crate::diagnosis::StdSignal::Cpu))
        .map_err(|e| e.to_string())?;
    let step = ((opts.to - opts.from) / 600.0).max(opts.settings.step);
    let series: Vec<Series> = prom
        .range(&q, opts.from, opts.to, step)
        .await
        .map_err(|e| e.to_string())?;
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.1_f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (x0, x1) = (0.0, (opts.to - opts.from) / 60.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: CPU cores per pod, decisions in red", r.target),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, 0.0..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("minutes since start")
        .y_desc("cores")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points
                    .iter()
                    .filter(|p| p.1.is_finite())
                    .map(|(t, v)| ((t - opts.from) / 60.0, *v)),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
    }
    for d in &r.decisions {
        let x = (d.t - opts.from) / 60.0;
        chart
            .draw_series(LineSeries::new([(x, 0.0), (x, ymax)], RED.stroke_width(2)))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
