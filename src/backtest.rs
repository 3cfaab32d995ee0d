//! `homeostat backtest`: replays a policy over a past time range of a real Prometheus and reports
//! when it would have acted and what it would have done.
//!
//! The same sweep, detectors and incident engine as the operator; only the actions are imagined
//! (taken as applied at once).

pub mod forecast;

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use crate::{
    diagnose::DiagnoseError,
    diagnosis::{
        Settings, Subject,
        fetch::{self, DiscoveredWorkload, workload_vars},
        sweep,
    },
    prometheus::{PromClient, Series, template::escape_regex},
    remediation::{
        actions::{LivePod, Workload},
        engine::{self, Intent},
        lifecycle::Outcome,
    },
    v1alpha1::{
        ActionType, Phase, Remediation, RemediationPolicy, RemediationPolicySpec,
        RemediationStatus, TargetRef,
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
///
/// Each evaluation runs the operator's sweep and incident engine on what Prometheus showed then;
/// the world is imagined around it: actions are applied at once, a Scale changes the replica
/// count the planner sees next, and every pod kube-state-metrics shows counts as available.
pub async fn run(
    prom: &PromClient,
    policy: &RemediationPolicy,
    opts: &Options,
    mut tick: impl FnMut(),
) -> Result<Report, DiagnoseError> {
    let mut replay = Replay::new(policy, opts)?;
    let mut t = opts.from;
    while t <= opts.to + 1e-6 {
        replay.evaluate_at(prom, opts, t).await?;
        tick();
        t += opts.every;
    }
    Ok(replay.finish())
}

/// What a replay remembers between evaluations: the imagined incidents and replica count.
struct Replay<'a> {
    spec: &'a RemediationPolicySpec,
    name: String,
    target: TargetRef,
    key: DiscoveredWorkload,
    history: Vec<Remediation>,
    scaled_to: Option<i32>,
    report: Report,
}

impl<'a> Replay<'a> {
    fn new(policy: &'a RemediationPolicy, opts: &Options) -> Result<Self, DiagnoseError> {
        let Some(target) = policy.spec.target_ref.clone() else {
            return Err(DiagnoseError::Fetch(
                "backtest replays one workload: the policy needs spec.targetRef, not a selector"
                    .into(),
            ));
        };
        let ns = policy
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| opts.namespace.clone());
        let key = DiscoveredWorkload {
            kind: target.kind,
            namespace: ns.clone(),
            name: target.name.clone(),
        };
        Ok(Self {
            spec: &policy.spec,
            name: policy
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| "policy".into()),
            report: Report {
                target: format!("{}/{}/{}", key.kind.as_str(), ns, key.name),
                evaluations: 0,
                blind: 0,
                decisions: vec![],
                incidents: vec![],
                pods_seen: BTreeSet::new(),
            },
            target,
            key,
            history: vec![],
            scaled_to: None,
        })
    }

    /// One evaluation at `t` (unix seconds): the sweep on what Prometheus showed then, the
    /// engine's decision, and the imagined outcome.
    async fn evaluate_at(
        &mut self,
        prom: &PromClient,
        opts: &Options,
        t: f64,
    ) -> Result<(), DiagnoseError> {
        let now = ts(t);
        let ns = self.key.namespace.clone();
        let workloads = fetch::discover(prom, &escape_regex(&ns), t, &opts.settings.window).await?;
        let pods = workloads.get(&self.key).cloned().unwrap_or_default();
        self.report
            .pods_seen
            .extend(pods.iter().map(|p| p.name.clone()));
        let subject = Subject {
            spec: self.spec,
            namespace: &ns,
            workload: &self.target.name,
            pods: &pods,
        };
        let ev = sweep::evaluate_one(prom, &subject, t, &opts.settings).await;
        self.report.evaluations += 1;
        if ev.fetch_error.is_some() {
            self.report.blind += 1;
        }
        let live = LivePod::offline(&pods);
        let replicas = self
            .scaled_to
            .unwrap_or(live.len() as i32)
            .max(live.len() as i32);
        let workload = Workload {
            target: self.target.clone(),
            replicas,
            available: replicas,
            selector: None,
            restarted_at: None,
        };
        let intent = engine::decide(&engine::Observed {
            policy: &self.name,
            spec: self.spec,
            target: &self.target,
            workload: Some(&workload),
            // Offline: who owns the replicas cannot be known.
            replicas_owner: &crate::remediation::owners::NO_OWNER,
            pods: &live,
            history: &self.history,
            evaluated: &ev,
            forecast: None,
            now,
        });
        if let Some((idx, before, status, act)) = self.imagine(intent, now) {
            self.advance(idx, &before, status, act, &ev, t);
        }
        Ok(())
    }

    /// The incident an intent opens or advances: its index, status before and after, and whether
    /// it acts. `None` when there is nothing to do.
    fn imagine(
        &mut self,
        intent: Intent,
        now: Timestamp,
    ) -> Option<(usize, RemediationStatus, RemediationStatus, bool)> {
        match intent {
            Intent::Idle | Intent::Hold { .. } => None,
            Intent::Open(o) => {
                let mut r = Remediation::new(&o.name, o.spec);
                r.metadata.creation_timestamp = Some(Time(now));
                r.metadata.labels = Some(std::collections::BTreeMap::from([(
                    engine::SEQ_LABEL.to_string(),
                    o.seq.to_string(),
                )]));
                self.history.push(r);
                Some((
                    self.history.len() - 1,
                    RemediationStatus::default(),
                    o.status,
                    o.act,
                ))
            }
            Intent::Advance(a) => self
                .history
                .iter()
                .position(|r| r.metadata.name.as_deref() == Some(a.name.as_str()))
                .map(|i| (i, a.before, a.status, a.act)),
        }
    }

    /// Applies an imagined attempt at once and records the decisions (the action, an escalation).
    fn advance(
        &mut self,
        idx: usize,
        before: &RemediationStatus,
        status: RemediationStatus,
        act: bool,
        ev: &sweep::Evaluated,
        t: f64,
    ) {
        let now = ts(t);
        let fault = self.history[idx].spec.fault.clone();
        let status = if act {
            if let Some(a) = status.attempts.last() {
                if let Some(to) = a.to_replicas {
                    self.scaled_to = Some(to);
                }
                self.report.decisions.push(Decision {
                    at: now.to_string(),
                    t,
                    incident: idx + 1,
                    fault: fault.clone(),
                    action: a.action,
                    pods: a
                        .pods
                        .iter()
                        .map(|p| p.split_once('/').map_or(p.as_str(), |(n, _)| n).to_string())
                        .collect(),
                    message: ev
                        .verdicts
                        .iter()
                        .find(|v| v.fault == fault)
                        .map(|v| v.verdict.message.clone())
                        .unwrap_or_default(),
                });
            }
            engine::after_execution(status, Outcome::Applied("imagined".into()), self.spec, now)
        } else {
            status
        };
        if status.phase == Phase::Escalated && before.phase != Phase::Escalated {
            self.report.decisions.push(Decision {
                at: now.to_string(),
                t,
                incident: idx + 1,
                fault,
                action: ActionType::Escalate,
                pods: self.history[idx].spec.pods.clone(),
                message: status.message.clone(),
            });
        }
        self.history[idx].status = Some(status);
    }

    /// The report, with how each imagined incident ended.
    fn finish(mut self) -> Report {
        self.report.incidents = self
            .history
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
        self.report
    }
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
