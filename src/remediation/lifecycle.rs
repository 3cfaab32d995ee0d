//! The incident state machine, pure: status and observation in, next status and intent out.
//!
//! Detected → Acting → Verifying → Succeeded / Failed / Escalated (or DryRun). An attempt is written
//! as `Pending` *before* the action runs, carrying everything needed to tell afterwards whether the
//! action already happened; so an operator restarted at any point resumes without acting twice.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::v1alpha1::{
    ActionType, Attempt, AttemptResult, Phase, RemediationSpec, RemediationStatus, VerifySpec,
};

/// The incident's fault, re-evaluated now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The pattern still fires.
    Firing,
    /// The pattern is clear.
    Clear,
    /// No judgement possible (missing or stale data, Prometheus down).
    Unknown,
}

/// What the controller must do after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing but saving the status.
    Idle,
    /// Plan a new attempt (number given), then record it as Pending, then execute it.
    Plan(u32),
    /// Execute the last attempt (Pending or Blocked), checking first whether it already happened.
    Execute,
}

/// How an executed attempt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done (now, or found already done).
    Applied(String),
    /// Refused for now: retry on a later evaluation.
    Blocked(String),
    /// Refused for good.
    Failed(String),
    /// A ResizePod that did not take (Infeasible, Deferred too long, refused, not fitting the
    /// node): the attempt failed and the next one is the policy's `resize.fallback`.
    Fallback(String),
}

fn ts(t: &Time) -> Timestamp {
    t.0
}

fn add(now: Timestamp, d: std::time::Duration) -> Timestamp {
    now.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

fn finish(
    mut s: RemediationStatus,
    phase: Phase,
    now: Timestamp,
    msg: String,
) -> RemediationStatus {
    s.phase = phase;
    s.finished_at = Some(Time(now));
    s.deadline = None;
    s.message = msg;
    s
}

/// Advances an incident by one evaluation.
pub fn step(
    spec: &RemediationSpec,
    status: &RemediationStatus,
    verify: &VerifySpec,
    check: Check,
    now: Timestamp,
) -> (RemediationStatus, Next) {
    let s = status.clone();
    match s.phase {
        Phase::Detected => match spec.action.type_ {
            ActionType::Escalate | ActionType::None => {
                let why = format!(
                    "{} detected; action {}: a person must look (restarting or scaling would not help)",
                    spec.pattern.as_str(),
                    spec.action.type_.as_str()
                );
                (finish(s, Phase::Escalated, now, why), Next::Idle)
            }
            _ => (s, Next::Plan(1)),
        },
        Phase::Acting => match s.attempts.last().map(|a| a.result) {
            Some(AttemptResult::Pending | AttemptResult::Blocked) => (s, Next::Execute),
            // Acting with no open attempt: plan the next one.
            _ => {
                let n = s.attempts.len() as u32 + 1;
                (s, Next::Plan(n))
            }
        },
        Phase::Verifying => verifying(s, verify, check, now),
        // Shadow incidents are stepped by `super::shadow`; nothing to do here.
        Phase::Succeeded
        | Phase::Failed
        | Phase::Escalated
        | Phase::DryRun
        | Phase::Halted
        | Phase::Shadow
        | Phase::Shadowed => (s, Next::Idle),
    }
}

fn verifying(
    mut s: RemediationStatus,
    verify: &VerifySpec,
    check: Check,
    now: Timestamp,
) -> (RemediationStatus, Next) {
    let deadline = s.deadline.as_ref().map(ts);
    let past_deadline = deadline.is_some_and(|d| now >= d);
    match check {
        Check::Clear => {
            let since = s.clear_since.as_ref().map_or(now, ts);
            s.clear_since = Some(Time(since));
            let clear_for = now.duration_since(since);
            let need =
                SignedDuration::try_from(verify.stable_for.get()).unwrap_or(SignedDuration::MAX);
            if clear_for >= need {
                let msg = format!(
                    "recovered: fault clear for {} after attempt {}",
                    verify.stable_for,
                    s.attempts.len()
                );
                return (finish(s, Phase::Succeeded, now, msg), Next::Idle);
            }
            s.message = format!(
                "fault clear for {}s, waiting for {}",
                clear_for.as_secs(),
                verify.stable_for
            );
            (s, Next::Idle)
        }
        Check::Firing => {
            s.clear_since = None;
            if !past_deadline {
                s.message = "fault still present; waiting for the action to take effect".into();
                return (s, Next::Idle);
            }
            let done = s.attempts.len() as u32;
            if done < verify.max_attempts {
                s.phase = Phase::Acting;
                s.message = format!(
                    "not recovered {} after attempt {done}; trying again",
                    verify.timeout
                );
                (s, Next::Plan(done + 1))
            } else {
                let msg = format!(
                    "not recovered after {done} attempt(s) of {} each: escalated to a person",
                    verify.timeout
                );
                (finish(s, Phase::Escalated, now, msg), Next::Idle)
            }
        }
        Check::Unknown => {
            if past_deadline {
                let msg = "recovery could not be verified before the timeout: metrics missing or stale; escalated".to_string();
                return (finish(s, Phase::Escalated, now, msg), Next::Idle);
            }
            s.message = "verification paused: metrics missing or stale".into();
            (s, Next::Idle)
        }
    }
}

/// Records a planned attempt as Pending (to be saved *before* executing it).
pub fn begin(
    mut s: RemediationStatus,
    mut attempt: Attempt,
    dry_run: bool,
    now: Timestamp,
) -> RemediationStatus {
    attempt.number = s.attempts.len() as u32 + 1;
    attempt.started_at = Time(now);
    if dry_run {
        attempt.result = AttemptResult::DryRun;
        let msg = format!(
            "dry run: would have run {}: {}",
            attempt.action.as_str(),
            attempt.message
        );
        s.attempts.push(attempt);
        s.attempt_count = s.attempts.len() as u32;
        return finish(s, Phase::DryRun, now, msg);
    }
    attempt.result = AttemptResult::Pending;
    s.phase = Phase::Acting;
    s.message = format!(
        "attempt {}: {} pending",
        attempt.number,
        attempt.action.as_str()
    );
    s.attempts.push(attempt);
    s.attempt_count = s.attempts.len() as u32;
    s
}

/// Records how the last attempt went.
pub fn record(
    mut s: RemediationStatus,
    outcome: Outcome,
    verify: &VerifySpec,
    now: Timestamp,
) -> RemediationStatus {
    let Some(last) = s.attempts.last_mut() else {
        return s;
    };
    match outcome {
        Outcome::Applied(msg) => {
            last.result = AttemptResult::Applied;
            last.applied_at = Some(Time(now));
            last.message = msg.clone();
            s.phase = Phase::Verifying;
            s.clear_since = None;
            s.deadline = Some(Time(add(now, verify.timeout.get())));
            s.message = format!("attempt {} applied: {msg}; verifying", last.number);
            s
        }
        Outcome::Blocked(msg) => {
            last.result = AttemptResult::Blocked;
            last.message = msg.clone();
            s.message = format!("attempt {} blocked: {msg}; will retry", last.number);
            s
        }
        Outcome::Failed(msg) => {
            last.result = AttemptResult::Failed;
            last.message = msg.clone();
            let m = format!("attempt {} failed: {msg}", last.number);
            finish(s, Phase::Failed, now, m)
        }
        Outcome::Fallback(msg) => {
            last.result = AttemptResult::Failed;
            last.message = msg.clone();
            s.phase = Phase::Acting;
            s.deadline = None;
            s.message = format!(
                "attempt {} ({}) did not take: {msg}; the fallback is next",
                last.number,
                last.action.as_str()
            );
            s
        }
    }
}

/// Ends an incident as Escalated with a reason (e.g. its fault was removed, a guard forbids a retry).
pub fn escalate(s: RemediationStatus, why: String, now: Timestamp) -> RemediationStatus {
    finish(s, Phase::Escalated, now, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::{ActionSpec, Duration, Pattern, TargetRef, WorkloadKind};

    fn spec(action: ActionType) -> RemediationSpec {
        RemediationSpec {
            policy_ref: "p".into(),
            target: TargetRef {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
            },
            fault: "runaway".into(),
            pattern: Pattern::RunawayProcess,
            pods: vec!["web-1".into()],
            action: ActionSpec {
                type_: action,
                scale: None,
                resize: None,
            },
            evidence: vec![],
            dry_run: false,
            shadow: false,
            skipped: vec![],
        }
    }

    fn verify() -> VerifySpec {
        VerifySpec {
            stable_for: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
            max_attempts: 2,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid")
    }

    fn attempt() -> Attempt {
        Attempt {
            number: 0,
            action: ActionType::RestartPod,
            started_at: Time(at(0)),
            applied_at: None,
            result: AttemptResult::Pending,
            message: "evict web-1".into(),
            pods: vec!["web-1/uid-1".into()],
            from_replicas: None,
            to_replicas: None,
            restarted_at: None,
            through_hpa: None,
            resize: None,
        }
    }

    /// Runs an incident from Detected through one applied attempt.
    fn applied(t: i64) -> RemediationStatus {
        let sp = spec(ActionType::RestartPod);
        let (s, next) = step(
            &sp,
            &RemediationStatus::default(),
            &verify(),
            Check::Firing,
            at(t),
        );
        assert_eq!(next, Next::Plan(1));
        let s = begin(s, attempt(), false, at(t));
        assert_eq!(s.phase, Phase::Acting);
        record(s, Outcome::Applied("evicted".into()), &verify(), at(t))
    }

    #[test]
    fn happy_path_succeeds_after_stable_for() {
        let sp = spec(ActionType::RestartPod);
        let s = applied(0);
        assert_eq!(s.phase, Phase::Verifying);
        let (s, n) = step(&sp, &s, &verify(), Check::Clear, at(30));
        assert_eq!((s.phase, n), (Phase::Verifying, Next::Idle));
        let (s, _) = step(&sp, &s, &verify(), Check::Clear, at(60));
        assert_eq!(s.phase, Phase::Verifying, "30s clear is not 60s");
        let (s, _) = step(&sp, &s, &verify(), Check::Clear, at(90));
        assert_eq!(s.phase, Phase::Succeeded);
        assert!(s.finished_at.is_some());
    }

    #[test]
    fn relapse_resets_the_clear_clock() {
        let sp = spec(ActionType::RestartPod);
        let (s, _) = step(&sp, &applied(0), &verify(), Check::Clear, at(30));
        let (s, _) = step(&sp, &s, &verify(), Check::Firing, at(60));
        assert!(s.clear_since.is_none());
        let (s, _) = step(&sp, &s, &verify(), Check::Clear, at(100));
        assert_eq!(s.phase, Phase::Verifying);
    }

    #[test]
    fn timeout_retries_then_escalates() {
        let sp = spec(ActionType::RestartPod);
        let (s, n) = step(&sp, &applied(0), &verify(), Check::Firing, at(301));
        assert_eq!((s.phase, n.clone()), (Phase::Acting, Next::Plan(2)));
        let s = begin(s, attempt(), false, at(301));
        let s = record(s, Outcome::Applied("evicted".into()), &verify(), at(302));
        assert_eq!(s.attempts.len(), 2);
        let (s, n) = step(&sp, &s, &verify(), Check::Firing, at(700));
        assert_eq!((s.phase, n), (Phase::Escalated, Next::Idle));
    }

    #[test]
    fn unknown_data_pauses_then_escalates_past_the_deadline() {
        let sp = spec(ActionType::RestartPod);
        let (s, n) = step(&sp, &applied(0), &verify(), Check::Unknown, at(100));
        assert_eq!((s.phase, n), (Phase::Verifying, Next::Idle));
        let (s, _) = step(&sp, &s, &verify(), Check::Unknown, at(400));
        assert_eq!(s.phase, Phase::Escalated);
    }

    #[test]
    fn escalate_action_never_acts() {
        let sp = spec(ActionType::Escalate);
        let (s, n) = step(
            &sp,
            &RemediationStatus::default(),
            &verify(),
            Check::Firing,
            at(0),
        );
        assert_eq!((s.phase, n), (Phase::Escalated, Next::Idle));
        assert!(s.attempts.is_empty());
    }

    #[test]
    fn dry_run_records_the_decision_and_ends() {
        let s = begin(RemediationStatus::default(), attempt(), true, at(0));
        assert_eq!(s.phase, Phase::DryRun);
        assert_eq!(s.attempts[0].result, AttemptResult::DryRun);
    }

    #[test]
    fn blocked_attempt_is_retried_not_replanned() {
        let sp = spec(ActionType::RestartPod);
        let s = begin(RemediationStatus::default(), attempt(), false, at(0));
        let s = record(s, Outcome::Blocked("PDB".into()), &verify(), at(0));
        let (s, n) = step(&sp, &s, &verify(), Check::Firing, at(30));
        assert_eq!((s.phase, n), (Phase::Acting, Next::Execute));
        assert_eq!(s.attempts.len(), 1);
    }

    #[test]
    fn failure_is_terminal() {
        let s = begin(RemediationStatus::default(), attempt(), false, at(0));
        let s = record(s, Outcome::Failed("forbidden".into()), &verify(), at(0));
        assert_eq!(s.phase, Phase::Failed);
    }

    /// An operator killed at any point resumes from the saved status without acting twice:
    /// a saved Pending attempt means "execute (idempotently)", never "plan another".
    #[test]
    fn resume_after_a_crash_in_each_phase() {
        let sp = spec(ActionType::RestartPod);
        let v = verify();
        // Crash after creating the incident (Detected saved): resume plans attempt 1.
        let (_, n) = step(&sp, &RemediationStatus::default(), &v, Check::Firing, at(5));
        assert_eq!(n, Next::Plan(1));
        // Crash after saving the Pending attempt, before or after the eviction: resume executes it.
        let pending = begin(RemediationStatus::default(), attempt(), false, at(0));
        let (s, n) = step(&sp, &pending, &v, Check::Firing, at(5));
        assert_eq!(n, Next::Execute);
        assert_eq!(s.attempts.len(), 1);
        // Crash while Verifying: resume keeps verifying with the saved deadline.
        let (s, n) = step(&sp, &applied(0), &v, Check::Firing, at(10));
        assert_eq!((s.phase, n), (Phase::Verifying, Next::Idle));
        // Crash after a terminal phase: nothing more happens.
        for phase in [
            Phase::Succeeded,
            Phase::Failed,
            Phase::Escalated,
            Phase::DryRun,
        ] {
            let s = RemediationStatus {
                phase,
                ..RemediationStatus::default()
            };
            assert_eq!(step(&sp, &s, &v, Check::Firing, at(0)).1, Next::Idle);
        }
    }
}
