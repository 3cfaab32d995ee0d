//! A policy's status, built from what a sweep saw and did (pure), and the test that tells whether
//! it changed enough to be written.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    conditions::{self, Reason},
    diagnosis::{Evaluated, FaultVerdict, choose, overall},
    remediation::{guards::Refusal, memory, shadow},
    v1alpha1::{
        Evaluation, FaultVerdictStatus, ForecastStatus, PolicyMode, RemediationPolicySpec,
        RemediationPolicyStatus, ShadowSummary, SkippedAction, TargetRef, TargetStatus,
    },
};

/// Entries of `status.targets` kept at most.
pub const MAX_TARGETS: usize = 100;
/// Evidence entries kept per verdict in the status.
const MAX_EVIDENCE: usize = 6;

/// What one sweep found and did for one target.
#[derive(Debug)]
pub struct TargetOutcome {
    /// The target.
    pub target: TargetRef,
    /// The evaluation.
    pub evaluated: Evaluated,
    /// The open incident after this sweep, with its phase.
    pub open: Option<(String, &'static str)>,
    /// Why a firing fault is held, if it is.
    pub held: Option<Refusal>,
    /// Another policy also targets this workload (one of them owns it).
    pub conflict: Option<String>,
    /// How its shadow incidents on record were scored (none: no shadow incident).
    pub shadow: Option<ShadowSummary>,
    /// The actions the effectiveness memory skips now.
    pub skipping: Vec<SkippedAction>,
    /// Pods a ResizePod left running with more than the template asks.
    pub template_drift: Option<String>,
    /// The last forecast of the Scale action's forecast block.
    pub forecast: Option<ForecastStatus>,
}

/// What a sweep concluded for one policy.
#[derive(Debug)]
pub enum PolicyOutcome {
    /// The object could not be decoded.
    Undecodable(String),
    /// The spec is invalid.
    Invalid(String),
    /// The Prometheus the policy names cannot be used.
    PrometheusConfig(String),
    /// `targetRef` names a workload that does not exist.
    TargetNotFound(String),
    /// Evaluated: one entry per covered workload (none for a selector matching nothing).
    Evaluated {
        /// Per target.
        targets: Vec<TargetOutcome>,
        /// Distinct queries the policy's evaluation read.
        queries: u32,
    },
}

/// Builds the policy's next status from its previous one (pure).
pub fn build(
    prev: Option<&RemediationPolicyStatus>,
    spec: Option<&RemediationPolicySpec>,
    generation: Option<i64>,
    outcome: &PolicyOutcome,
    now: Timestamp,
) -> RemediationPolicyStatus {
    let mut st = prev.cloned().unwrap_or_default();
    st.observed_generation = generation;
    let mut set = |t: &str, v: bool, r: Reason, m: String| {
        conditions::set(&mut st.conditions, t, v, r.as_str(), m, generation, now);
    };
    let stalled = |set: &mut dyn FnMut(&str, bool, Reason, String), r: Reason, m: &str| {
        set(conditions::READY, false, r, m.to_string());
        set(conditions::STALLED, true, r, m.to_string());
        set(conditions::RECONCILING, false, r, String::new());
    };
    match outcome {
        PolicyOutcome::Undecodable(m) => stalled(&mut set, Reason::Undecodable, m),
        PolicyOutcome::Invalid(m) => stalled(&mut set, Reason::InvalidSpec, m),
        PolicyOutcome::PrometheusConfig(m) => {
            stalled(&mut set, Reason::PrometheusConfig, m);
            set(
                conditions::DATA_AVAILABLE,
                false,
                Reason::PrometheusConfig,
                m.clone(),
            );
        }
        PolicyOutcome::TargetNotFound(m) => {
            set(conditions::READY, false, Reason::TargetNotFound, m.clone());
            set(conditions::STALLED, true, Reason::TargetNotFound, m.clone());
            set(conditions::RECONCILING, false, Reason::Idle, String::new());
            st.active_remediation = None;
            st.targets.clear();
            st.target_count = 0;
        }
        PolicyOutcome::Evaluated { targets, queries } => {
            let Some(spec) = spec else {
                return st;
            };
            evaluated(&mut st, spec, targets, *queries, generation, now);
        }
    }
    // Data is read only for an evaluated policy; any other outcome says why in Ready.
    if matches!(
        outcome,
        PolicyOutcome::Undecodable(_)
            | PolicyOutcome::Invalid(_)
            | PolicyOutcome::TargetNotFound(_)
    ) {
        st.conditions
            .retain(|c| c.type_ != conditions::DATA_AVAILABLE);
    }
    bound(&mut st);
    st
}

/// Intervals without usable data after which a policy is Stalled (kstatus Failed).
pub const BLIND_INTERVALS: u32 = 5;
/// ... and never less than this, so that a Prometheus restart does not fail a GitOps sync.
pub const BLIND_MIN: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a policy may go without usable data before it is Stalled: [`BLIND_INTERVALS`]
/// intervals, at least [`BLIND_MIN`].
pub fn blind_grace(spec: &RemediationPolicySpec) -> jiff::SignedDuration {
    let d = spec
        .interval
        .get()
        .saturating_mul(BLIND_INTERVALS)
        .max(BLIND_MIN);
    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
}

fn evaluated(
    st: &mut RemediationPolicyStatus,
    spec: &RemediationPolicySpec,
    targets: &[TargetOutcome],
    queries: u32,
    generation: Option<i64>,
    now: Timestamp,
) {
    let mut set = |t: &str, v: bool, r: Reason, m: String| {
        conditions::set(&mut st.conditions, t, v, r.as_str(), m, generation, now);
    };
    // The evaluation shown in lastEvaluation: the first target with a fault, else the first.
    let shown = targets
        .iter()
        .find(|t| choose(&spec.faults, &t.evaluated.verdicts).is_some())
        .or_else(|| targets.first());
    let blind = targets.iter().find_map(|t| t.evaluated.fetch_error.clone());
    set(
        conditions::STALLED,
        false,
        Reason::Evaluating,
        String::new(),
    );
    let data_problem = data_problem(spec, targets, blind.as_deref());
    match &data_problem {
        Some((r, m)) => set(conditions::DATA_AVAILABLE, false, *r, m.clone()),
        None if targets.is_empty() => st
            .conditions
            .retain(|c| c.type_ != conditions::DATA_AVAILABLE),
        None => set(
            conditions::DATA_AVAILABLE,
            true,
            Reason::SeriesFound,
            String::new(),
        ),
    }
    // How long the data problem has lasted: since the data condition turned False.
    let blind_for = st
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::DATA_AVAILABLE && c.status == "False")
        .map(|c| now.duration_since(c.last_transition_time.0));
    let grace = blind_grace(spec);
    let mut set = |t: &str, v: bool, r: Reason, m: String| {
        conditions::set(&mut st.conditions, t, v, r.as_str(), m, generation, now);
    };
    match (&blind, &data_problem) {
        // Prometheus refuses the policy's own PromQL: nothing changes until the spec does.
        (Some(e), Some((reason, m))) if e.is_spec_error() => {
            let msg = format!("{m}; taking no action until the spec changes");
            set(conditions::READY, false, *reason, msg.clone());
            set(conditions::STALLED, true, *reason, msg);
        }
        // Blind for longer than the grace: the policy cannot protect anything; say so as a
        // failure (kstatus Failed) rather than as progress that never comes.
        (_, Some((reason, m))) if blind_for.is_some_and(|d| d >= grace) => {
            let msg = format!(
                "{m}; no usable data for {}s (the limit is {}s): taking no action, retrying every {}",
                blind_for.map_or(0, |d| d.as_secs()),
                grace.as_secs(),
                spec.interval
            );
            set(conditions::READY, false, *reason, msg.clone());
            set(conditions::STALLED, true, *reason, msg);
        }
        // A transient data problem is the data condition's: Ready stays True (kstatus Current).
        (_, Some((_, m))) => set(
            conditions::READY,
            true,
            Reason::Evaluating,
            format!(
                "evaluating; {m}: taking no action, retrying every {} (see DataAvailable)",
                spec.interval
            ),
        ),
        (_, None) => {
            let (reason, msg) = ready(spec, targets, shown);
            set(conditions::READY, true, reason, msg);
        }
    }
    let open = targets.iter().find_map(|t| t.open.as_ref());
    match open {
        Some((name, phase)) => set(
            conditions::RECONCILING,
            true,
            Reason::Remediating,
            format!("incident {name} is {phase}"),
        ),
        None => set(conditions::RECONCILING, false, Reason::Idle, String::new()),
    }
    st.active_remediation = open.map(|(n, _)| n.clone());
    if let Some(t) = shown {
        if let Some((_, v)) = choose(&spec.faults, &t.evaluated.verdicts) {
            st.last_fault = Some(v.pattern.as_str().to_string());
        }
        st.last_evaluation = Some(last_evaluation(&t.evaluated.verdicts, queries, now));
    }
    st.target_count = targets.len() as u32;
    st.targets = targets
        .iter()
        .take(MAX_TARGETS)
        .map(|t| TargetStatus {
            target: t.target.clone(),
            finding: overall(&spec.faults, &t.evaluated.verdicts),
            active_remediation: t.open.as_ref().map(|(n, _)| n.clone()),
            held: t.held.as_ref().map(|r| r.reason.to_string()),
            shadow: t.shadow.clone(),
            skipping: t.skipping.clone(),
            template_drift: t.template_drift.clone(),
            forecast: t.forecast.clone(),
        })
        .collect();
    st.shadow = targets
        .iter()
        .filter_map(|t| t.shadow.as_ref())
        .fold(None, |acc: Option<ShadowSummary>, s| {
            Some(shadow::add_up(acc.unwrap_or_default(), s))
        });
}

/// The data condition's problem, if any: a fetch error, or Prometheus answering nothing for every
/// target.
fn data_problem(
    spec: &RemediationPolicySpec,
    targets: &[TargetOutcome],
    blind: Option<&crate::diagnosis::fetch::FetchError>,
) -> Option<(Reason, String)> {
    if let Some(e) = blind {
        return Some((
            Reason::from_category(e.category()),
            format!("cannot read metrics ({e})"),
        ));
    }
    (!targets.is_empty() && targets.iter().all(|t| t.evaluated.no_data)).then(|| {
        (
            Reason::NoData,
            format!(
                "Prometheus has no series of any signal for the pods of {} (check the query \
                 labels and that cAdvisor and kube-state-metrics are scraped)",
                spec.target_description()
            ),
        )
    })
}

/// Ready's reason and message when the data is fine: the kill switches, no workload, or the
/// verdicts, then what holds an action and a conflict with another policy.
fn ready(
    spec: &RemediationPolicySpec,
    targets: &[TargetOutcome],
    shown: Option<&TargetOutcome>,
) -> (Reason, String) {
    let (reason, msg) = if spec.guards.suspend {
        (
            Reason::Suspended,
            "evaluating; suspended: no incident will be opened".to_string(),
        )
    } else if spec.mode == PolicyMode::Shadow {
        (Reason::Shadow, shadow_line(targets))
    } else if spec.guards.dry_run {
        (
            Reason::DryRun,
            "evaluating in dry run: decisions are recorded, nothing is changed".to_string(),
        )
    } else if targets.is_empty() {
        (
            Reason::NoMatchingWorkloads,
            format!("no workload matches ({})", spec.target_description()),
        )
    } else {
        (
            Reason::Evaluating,
            shown.map_or_else(String::new, |t| summary(&t.evaluated.verdicts)),
        )
    };
    // A Scale refused under another owner of the replicas is named in the reason: nothing will be
    // done for that fault until a person changes the owner.
    let refused = targets.iter().find_map(|t| {
        t.held
            .as_ref()
            .filter(|r| crate::remediation::owners::is_owner_refusal(r.reason))
            .map(|r| format!("{}: {}: {}", t.target, r.reason, r.message))
    });
    let reason = match (&refused, reason) {
        (Some(_), Reason::Evaluating) => Reason::ScaleRefused,
        (_, r) => r,
    };
    let held = refused.or_else(|| {
        targets.iter().find_map(|t| {
            t.held
                .as_ref()
                .map(|r| format!("{}: {}: {}", t.target, r.reason, r.message))
        })
    });
    let msg = match held {
        Some(h) => format!("{msg}; {h}"),
        None => msg,
    };
    let msg = match targets.iter().find_map(|t| t.conflict.as_ref()) {
        Some(c) => format!("{msg}; {c}"),
        None => msg,
    };
    let msg = match targets
        .iter()
        .find_map(|t| t.skipping.first().map(|s| (t, s)))
    {
        Some((t, s)) => format!(
            "{msg}; {}: skipping {} for fault {}",
            t.target,
            memory::describe(s, &spec.guards.failure_window),
            s.fault
        ),
        None => msg,
    };
    (reason, msg)
}

/// Ready's message in shadow mode: what enforcing would have done so far.
fn shadow_line(targets: &[TargetOutcome]) -> String {
    let sum = targets
        .iter()
        .filter_map(|t| t.shadow.as_ref())
        .fold(ShadowSummary::default(), shadow::add_up);
    let rate = sum.unnecessary_rate.map_or_else(
        || "no estimate yet".to_string(),
        |r| format!("{:.0} %", r * 100.0),
    );
    format!(
        "evaluating in shadow mode: decisions are recorded and scored, nothing is changed; \
         {} shadow incident(s): {} unnecessary, {} needed, {} pending (unnecessary-action rate {rate})",
        sum.incidents, sum.unnecessary, sum.needed, sum.pending
    )
}

/// The `lastEvaluation` of one target's verdicts.
fn last_evaluation(verdicts: &[FaultVerdict], queries: u32, now: Timestamp) -> Evaluation {
    Evaluation {
        time: Time(now),
        queries,
        verdicts: verdicts
            .iter()
            .map(|v| FaultVerdictStatus {
                fault: v.fault.clone(),
                verdict: v.verdict.kind,
                pods: v.verdict.pods.clone(),
                message: v.verdict.message.clone(),
                evidence: v
                    .verdict
                    .evidence
                    .iter()
                    .take(MAX_EVIDENCE)
                    .cloned()
                    .collect(),
                due: v.verdict.due,
                due_in_seconds: v.verdict.due_in,
                time_to_limit_seconds: v.verdict.time_to_limit,
                confidence: v.verdict.kind.is_fault().then_some(v.verdict.confidence),
            })
            .collect(),
    }
}

/// Bounds every free-text field, so one noisy detector cannot make the object too big to write.
fn bound(st: &mut RemediationPolicyStatus) {
    for c in &mut st.conditions {
        c.message = crate::bounded::message(&c.message);
    }
    if let Some(e) = st.last_evaluation.as_mut() {
        for v in &mut e.verdicts {
            v.message = crate::bounded::message(&v.message);
            v.pods.truncate(20);
        }
    }
}

/// One line of verdicts, e.g. `runaway=Healthy, leak=MemoryLeak`.
pub fn summary(verdicts: &[FaultVerdict]) -> String {
    verdicts
        .iter()
        .map(|v| format!("{}={}", v.fault, v.verdict.kind.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What must not change for a status write to be skipped: conditions (without times, and without
/// the digits of their messages, which carry counters such as "cooldown: 42s left"), the verdicts
/// and pods of the last evaluation (not their numbers), incidents and targets.
pub fn digest(st: &RemediationPolicyStatus) -> String {
    let mut s = format!(
        "g={:?};a={:?};f={:?};n={};",
        st.observed_generation, st.active_remediation, st.last_fault, st.target_count
    );
    for c in &st.conditions {
        s.push_str(&format!(
            "{}={}/{}/{};",
            c.type_, c.status, c.reason, c.message
        ));
    }
    if let Some(e) = &st.last_evaluation {
        for v in &e.verdicts {
            s.push_str(&format!(
                "{}:{:?}:{};",
                v.fault,
                v.verdict,
                v.pods.join(",")
            ));
        }
    }
    for t in &st.targets {
        s.push_str(&format!(
            "{}:{:?}:{:?}:{:?};",
            t.target, t.finding, t.active_remediation, t.held
        ));
        if let Some(sh) = &t.shadow {
            s.push_str(&format!(
                "shadow={}/{}/{}/{}/{};",
                sh.incidents, sh.unnecessary, sh.needed, sh.pending, sh.unscored
            ));
        }
        if let Some(d) = &t.template_drift {
            s.push_str(&format!("drift={d};"));
        }
        // The peak and the message move with every refit; the replica counts are what changes.
        if let Some(f) = &t.forecast {
            s.push_str(&format!(
                "forecast={:?}/{:?}/{:?}/{:?}/{};",
                f.replicas,
                f.current_need,
                f.forecast_need,
                f.recommended,
                f.forecast_peak.is_some()
            ));
        }
        for k in &t.skipping {
            s.push_str(&format!(
                "skip={}/{}/{};",
                k.fault,
                k.action.as_str(),
                k.failures
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diagnosis::{Verdict, fetch::FetchError},
        prometheus::PromError,
        v1alpha1::{FaultKind, Pattern, WorkloadKind},
    };

    fn spec() -> RemediationPolicySpec {
        serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Deployment", "name": "web"},
            "faults": [{"name": "runaway", "pattern": "RunawayProcess"}],
        }))
        .expect("valid")
    }

    fn outcome(kind: FaultKind, cpu: f64) -> TargetOutcome {
        TargetOutcome {
            target: TargetRef {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
            },
            evaluated: Evaluated {
                verdicts: vec![FaultVerdict {
                    fault: "runaway".into(),
                    pattern: Pattern::RunawayProcess,
                    verdict: Verdict {
                        kind,
                        pods: vec![],
                        confidence: 1.0,
                        evidence: vec![crate::v1alpha1::Evidence {
                            rule: "r".into(),
                            signal: "cpu".into(),
                            pod: None,
                            value: cpu,
                            threshold: None,
                        }],
                        message: "m".into(),
                        due: kind.is_fault(),
                        due_in: None,
                        held_for: 0.0,
                        time_to_limit: None,
                        onset: false,
                    },
                }],
                queries: 2,
                fetch_error: None,
                no_data: false,
            },
            open: None,
            held: None,
            conflict: None,
            shadow: None,
            skipping: vec![],
            template_drift: None,
            forecast: None,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("valid")
    }

    #[test]
    fn numbers_and_times_alone_do_not_make_a_write() {
        let sp = spec();
        let a = build(
            None,
            Some(&sp),
            Some(1),
            &PolicyOutcome::Evaluated {
                targets: vec![outcome(FaultKind::Healthy, 0.1)],
                queries: 2,
            },
            at(0),
        );
        let b = build(
            Some(&a),
            Some(&sp),
            Some(1),
            &PolicyOutcome::Evaluated {
                targets: vec![outcome(FaultKind::Healthy, 0.2)],
                queries: 2,
            },
            at(30),
        );
        assert_eq!(digest(&a), digest(&b));
        let c = build(
            Some(&b),
            Some(&sp),
            Some(1),
            &PolicyOutcome::Evaluated {
                targets: vec![outcome(FaultKind::RunawayProcess, 2.0)],
                queries: 2,
            },
            at(60),
        );
        assert_ne!(digest(&b), digest(&c));
        assert_eq!(c.last_fault.as_deref(), Some("RunawayProcess"));
    }

    #[test]
    fn rejected_promql_is_stalled_and_an_outage_is_not() {
        let sp = spec();
        let with = |e: PromError| {
            let mut t = outcome(FaultKind::Inconclusive, 0.0);
            t.evaluated.fetch_error = Some(std::sync::Arc::new(FetchError::Prometheus {
                signal: "cpu".into(),
                source: e,
            }));
            build(
                None,
                Some(&sp),
                Some(1),
                &PolicyOutcome::Evaluated {
                    targets: vec![t],
                    queries: 2,
                },
                at(0),
            )
        };
        let rejected = with(PromError::Rejected {
            error_type: "bad_data".into(),
            message: "parse error".into(),
            query: "x{".into(),
        });
        assert!(conditions::is_true(
            &rejected.conditions,
            conditions::STALLED
        ));
        let down = with(PromError::Unreachable {
            url: "u".into(),
            message: "refused".into(),
        });
        assert!(!conditions::is_true(&down.conditions, conditions::STALLED));
        // A transient outage is the data condition's; Ready stays True (kstatus: Current).
        assert!(conditions::is_true(&down.conditions, conditions::READY));
        assert_eq!(
            cond(&down, conditions::DATA_AVAILABLE),
            ("False".into(), "PrometheusUnreachable".into())
        );
    }

    fn cond(st: &RemediationPolicyStatus, t: &str) -> (String, String) {
        st.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
            .unwrap_or_default()
    }

    fn evaluated_with(
        prev: Option<&RemediationPolicyStatus>,
        t: TargetOutcome,
        s: i64,
    ) -> RemediationPolicyStatus {
        build(
            prev,
            Some(&spec()),
            Some(1),
            &PolicyOutcome::Evaluated {
                targets: vec![t],
                queries: 2,
            },
            at(s),
        )
    }

    #[test]
    fn a_policy_that_never_gets_data_stops_looking_healthy() {
        let empty = || {
            let mut t = outcome(FaultKind::Inconclusive, 0.0);
            t.evaluated.no_data = true;
            t
        };
        // 30 s interval: the grace is 5 intervals (150 s).
        let grace = blind_grace(&spec()).as_secs();
        assert_eq!(grace, 150);
        let first = evaluated_with(None, empty(), 0);
        assert_eq!(
            cond(&first, conditions::DATA_AVAILABLE),
            ("False".into(), "NoData".into())
        );
        assert_eq!(cond(&first, conditions::READY).0, "True");
        assert!(!conditions::is_true(&first.conditions, conditions::STALLED));
        let later = evaluated_with(Some(&first), empty(), grace - 1);
        assert!(!conditions::is_true(&later.conditions, conditions::STALLED));
        // Past the grace: Stalled (kstatus: Failed), Ready=False, the same reason.
        let stalled = evaluated_with(Some(&later), empty(), grace);
        assert_eq!(
            cond(&stalled, conditions::STALLED),
            ("True".into(), "NoData".into())
        );
        assert_eq!(
            cond(&stalled, conditions::READY),
            ("False".into(), "NoData".into())
        );
        assert_ne!(digest(&later), digest(&stalled), "the change is written");
        // Data arriving clears it at once.
        let back = evaluated_with(Some(&stalled), outcome(FaultKind::Healthy, 0.1), grace + 30);
        assert_eq!(
            cond(&back, conditions::DATA_AVAILABLE),
            ("True".into(), "SeriesFound".into())
        );
        assert_eq!(
            cond(&back, conditions::READY),
            ("True".into(), "Evaluating".into())
        );
        assert!(!conditions::is_true(&back.conditions, conditions::STALLED));
    }

    #[test]
    fn an_outage_that_lasts_is_stalled_and_a_short_one_is_not() {
        let down = || {
            let mut t = outcome(FaultKind::Inconclusive, 0.0);
            t.evaluated.fetch_error = Some(std::sync::Arc::new(FetchError::Prometheus {
                signal: "cpu".into(),
                source: PromError::Unreachable {
                    url: "u".into(),
                    message: "refused".into(),
                },
            }));
            t
        };
        let a = evaluated_with(None, outcome(FaultKind::Healthy, 0.1), 0);
        let b = evaluated_with(Some(&a), down(), 30);
        let c = evaluated_with(Some(&b), down(), 30 + 149);
        assert!(conditions::is_true(&c.conditions, conditions::READY));
        let d = evaluated_with(Some(&c), down(), 30 + 150);
        assert_eq!(
            cond(&d, conditions::STALLED),
            ("True".into(), "PrometheusUnreachable".into())
        );
    }

    #[test]
    fn the_data_condition_is_only_on_policies_that_read_data() {
        let ok = evaluated_with(None, outcome(FaultKind::Healthy, 0.1), 0);
        assert_eq!(cond(&ok, conditions::DATA_AVAILABLE).0, "True");
        let invalid = build(
            Some(&ok),
            Some(&spec()),
            Some(2),
            &PolicyOutcome::Invalid("bad".into()),
            at(10),
        );
        assert_eq!(
            cond(&invalid, conditions::STALLED),
            ("True".into(), "InvalidSpec".into())
        );
        assert_eq!(
            cond(&invalid, conditions::DATA_AVAILABLE),
            Default::default()
        );
        // A workload without pods has no data to miss.
        let mut none = outcome(FaultKind::Inconclusive, 0.0);
        none.evaluated.no_data = false;
        let idle = evaluated_with(None, none, 0);
        assert_eq!(cond(&idle, conditions::DATA_AVAILABLE).0, "True");
    }

    #[test]
    fn a_scale_refused_under_an_owner_is_the_ready_reason() {
        let sp = spec();
        let held = |reason: &'static str| {
            let mut t = outcome(FaultKind::RunawayProcess, 2.0);
            t.held = Some(Refusal {
                reason,
                message: "spec.replicas of Deployment/web is owned by field manager x".into(),
            });
            let st = build(
                None,
                Some(&sp),
                Some(1),
                &PolicyOutcome::Evaluated {
                    targets: vec![t],
                    queries: 2,
                },
                at(0),
            );
            let ready = st
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::READY)
                .cloned()
                .expect("ready");
            (ready, st.targets[0].held.clone())
        };
        let (ready, target) = held(crate::remediation::owners::OWNED_BY_GITOPS);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "ScaleRefused")
        );
        assert!(
            ready
                .message
                .contains("ReplicasOwnedByGitOps: spec.replicas"),
            "{}",
            ready.message
        );
        assert_eq!(target.as_deref(), Some("ReplicasOwnedByGitOps"));
        // Other holds pass; they keep the reason.
        let (ready, _) = held("Cooldown");
        assert_eq!(ready.reason, "Evaluating");
    }

    #[test]
    fn shadow_counts_and_skipped_actions_are_shown() {
        use crate::v1alpha1::{ActionType, PolicyMode, ShadowSummary, SkippedAction};
        let mut sp = spec();
        sp.mode = PolicyMode::Shadow;
        let with = |t: &str, unnecessary: u32, needed: u32| {
            let mut o = outcome(FaultKind::Healthy, 0.1);
            o.target.name = t.into();
            o.shadow = Some(shadow::with_rate(ShadowSummary {
                incidents: unnecessary + needed,
                unnecessary,
                needed,
                ..ShadowSummary::default()
            }));
            o
        };
        let mut b = with("b", 0, 1);
        b.skipping = vec![SkippedAction {
            fault: "runaway".into(),
            action: ActionType::RestartPod,
            failures: 2,
            incidents: vec!["web-runaway-2".into()],
            until: None,
        }];
        let st = build(
            None,
            Some(&sp),
            Some(1),
            &PolicyOutcome::Evaluated {
                targets: vec![with("a", 1, 0), b],
                queries: 2,
            },
            at(0),
        );
        let total = st.shadow.clone().expect("a total");
        assert_eq!(
            (total.incidents, total.unnecessary, total.needed),
            (2, 1, 1)
        );
        assert_eq!(total.unnecessary_rate, Some(0.5));
        assert_eq!(
            st.targets[0].shadow.as_ref().map(|s| s.unnecessary),
            Some(1)
        );
        assert_eq!(st.targets[1].skipping.len(), 1);
        let r = st
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::READY)
            .expect("ready");
        assert_eq!(r.reason, "Shadow");
        assert!(
            r.message.contains("1 unnecessary, 1 needed"),
            "{}",
            r.message
        );
        assert!(r.message.contains("rate 50 %"), "{}", r.message);
        assert!(r.message.contains("skipping RestartPod"), "{}", r.message);
    }
}
