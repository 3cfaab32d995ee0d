//! Shadow mode, pure: a shadow incident records what enforcing would do, acts on nothing, and is
//! scored afterwards against the verify window. Clear for `verify.stableFor` (before it refires
//! past `verify.timeout`): the action would have been *unnecessary*. Still firing at
//! `verify.timeout`: it was *needed*. Missing data at the timeout: *unscored*.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::lifecycle::Check;
use crate::v1alpha1::{
    Phase, Remediation, RemediationStatus, ShadowOutcome, ShadowSummary, VerifySpec,
};

fn add(now: Timestamp, d: std::time::Duration) -> Timestamp {
    now.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Turns a new incident's first status into a shadow one: phase `Shadow`, scored by
/// `verify.timeout` from now; `would` says what enforcing would have done.
pub fn open(
    mut s: RemediationStatus,
    would: String,
    verify: &VerifySpec,
    now: Timestamp,
) -> RemediationStatus {
    s.phase = Phase::Shadow;
    s.deadline = Some(Time(add(now, verify.timeout.get())));
    s.clear_since = None;
    s.shadow_outcome = Some(ShadowOutcome::Pending);
    s.attempt_count = s.attempts.len() as u32;
    s.message =
        format!("shadow: {would}; nothing was done, watching whether the fault clears by itself");
    s
}

fn score(
    mut s: RemediationStatus,
    outcome: ShadowOutcome,
    now: Timestamp,
    msg: String,
) -> RemediationStatus {
    s.phase = Phase::Shadowed;
    s.shadow_outcome = Some(outcome);
    s.finished_at = Some(Time(now));
    s.deadline = None;
    s.message = msg;
    s
}

/// Stops a shadow incident unscored (the fault left the policy, suspend, a mode change).
pub fn unscored(s: RemediationStatus, now: Timestamp, msg: String) -> RemediationStatus {
    score(s, ShadowOutcome::Unscored, now, msg)
}

/// Advances an open shadow incident by one evaluation.
pub fn step(
    status: &RemediationStatus,
    verify: &VerifySpec,
    check: Check,
    now: Timestamp,
) -> RemediationStatus {
    let mut s = status.clone();
    if s.phase != Phase::Shadow {
        return s;
    }
    let past_deadline = s.deadline.as_ref().is_some_and(|d| now >= d.0);
    match check {
        Check::Clear => {
            let since = s.clear_since.as_ref().map_or(now, |t| t.0);
            s.clear_since = Some(Time(since));
            let clear_for = now.duration_since(since);
            let need =
                SignedDuration::try_from(verify.stable_for.get()).unwrap_or(SignedDuration::MAX);
            if clear_for >= need {
                let msg = format!(
                    "unnecessary: the fault cleared by itself and stayed clear for {} within the \
                     verify window; enforcing would have acted for nothing",
                    verify.stable_for
                );
                return score(s, ShadowOutcome::Unnecessary, now, msg);
            }
            s.message = format!(
                "shadow: fault clear for {}s by itself, waiting for {}",
                clear_for.as_secs(),
                verify.stable_for
            );
            s
        }
        Check::Firing => {
            s.clear_since = None;
            if past_deadline {
                let msg = format!(
                    "needed: the fault persisted through verify.timeout ({}); enforcing would \
                     have acted",
                    verify.timeout
                );
                return score(s, ShadowOutcome::Needed, now, msg);
            }
            s.message = "shadow: fault still present; nothing was done, watching".into();
            s
        }
        Check::Unknown => {
            if past_deadline {
                let msg = "unscored: metrics missing or stale at verify.timeout".to_string();
                return score(s, ShadowOutcome::Unscored, now, msg);
            }
            s.message = "shadow: scoring paused: metrics missing or stale".into();
            s
        }
    }
}

/// How the shadow incidents in `history` were scored; `None` when there are none.
pub fn summary<'a>(history: impl IntoIterator<Item = &'a Remediation>) -> Option<ShadowSummary> {
    let mut sum = ShadowSummary::default();
    for r in history.into_iter().filter(|r| r.spec.shadow) {
        sum.incidents += 1;
        match r.status.as_ref().and_then(|s| s.shadow_outcome) {
            Some(ShadowOutcome::Unnecessary) => sum.unnecessary += 1,
            Some(ShadowOutcome::Needed) => sum.needed += 1,
            Some(ShadowOutcome::Unscored) => sum.unscored += 1,
            Some(ShadowOutcome::Pending) | None => sum.pending += 1,
        }
    }
    (sum.incidents > 0).then(|| with_rate(sum))
}

/// Fills in the unnecessary-action rate from the counts.
pub fn with_rate(mut sum: ShadowSummary) -> ShadowSummary {
    let scored = sum.unnecessary + sum.needed;
    sum.unnecessary_rate = (scored > 0).then(|| f64::from(sum.unnecessary) / f64::from(scored));
    sum
}

/// Adds the counts of `b` to `a`.
pub fn add_up(a: ShadowSummary, b: &ShadowSummary) -> ShadowSummary {
    with_rate(ShadowSummary {
        incidents: a.incidents + b.incidents,
        unnecessary: a.unnecessary + b.unnecessary,
        needed: a.needed + b.needed,
        pending: a.pending + b.pending,
        unscored: a.unscored + b.unscored,
        unnecessary_rate: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::Duration;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid")
    }

    fn verify() -> VerifySpec {
        VerifySpec {
            stable_for: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
            max_attempts: 2,
        }
    }

    #[test]
    fn scored_against_the_verify_window() {
        let s = open(
            RemediationStatus::default(),
            "would evict web-1".into(),
            &verify(),
            at(0),
        );
        assert_eq!(
            (s.phase, s.shadow_outcome),
            (Phase::Shadow, Some(ShadowOutcome::Pending))
        );
        // Clears by itself at 100 s, stays clear 60 s: unnecessary.
        let c = step(&s, &verify(), Check::Clear, at(100));
        let c = step(&c, &verify(), Check::Clear, at(159));
        assert_eq!(c.phase, Phase::Shadow, "59 s clear is not 60 s");
        let c = step(&c, &verify(), Check::Clear, at(160));
        assert_eq!(
            (c.phase, c.shadow_outcome),
            (Phase::Shadowed, Some(ShadowOutcome::Unnecessary))
        );
        // Flaps back before stableFor, then fires through the timeout: needed.
        let f = step(&s, &verify(), Check::Clear, at(100));
        let f = step(&f, &verify(), Check::Firing, at(120));
        assert!(f.clear_since.is_none());
        let f = step(&f, &verify(), Check::Firing, at(299));
        assert_eq!(f.phase, Phase::Shadow);
        let f = step(&f, &verify(), Check::Firing, at(300));
        assert_eq!(
            (f.phase, f.shadow_outcome),
            (Phase::Shadowed, Some(ShadowOutcome::Needed))
        );
        // Blind through the timeout: unscored.
        let u = step(&s, &verify(), Check::Unknown, at(300));
        assert_eq!(u.shadow_outcome, Some(ShadowOutcome::Unscored));
    }
}
