use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::{
    controller::cache::{POLICY_LABEL, POLICY_UID_LABEL},
    v1alpha1::{Phase, Remediation, RemediationStatus},
};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_000_000 + s).expect("valid")
}

/// An incident of policy object `uid` on `target`, created at `created`, finished at `finished`
/// (open when None).
fn rem(name: &str, uid: &str, target: &str, created: i64, finished: Option<i64>) -> Remediation {
    let mut r: Remediation = serde_json::from_value(serde_json::json!({
        "apiVersion": "homeostat.dev/v1alpha1",
        "kind": "Remediation",
        "metadata": {
            "name": name, "namespace": "ns", "uid": format!("u-{name}"),
            "labels": {POLICY_LABEL: "p", POLICY_UID_LABEL: uid},
        },
        "spec": {
            "policyRef": "p",
            "target": {"kind": "Deployment", "name": target},
            "fault": "runaway",
            "pattern": "RunawayProcess",
            "action": {"type": "Escalate"},
        },
    }))
    .expect("valid");
    r.metadata.creation_timestamp = Some(Time(t(created)));
    r.status = Some(RemediationStatus {
        phase: if finished.is_some() {
            Phase::Succeeded
        } else {
            Phase::Acting
        },
        finished_at: finished.map(|f| Time(t(f))),
        ..RemediationStatus::default()
    });
    r
}

fn limits(history_limit: usize, max_age_s: u64) -> Limits {
    Limits {
        history_limit,
        max_age: std::time::Duration::from_secs(max_age_s),
        per_sweep: 50,
    }
}

fn names(v: &[Step]) -> Vec<(&str, Why)> {
    v.iter().map(|s| (s.name.as_str(), s.why)).collect()
}

fn live(uid: &str, lookback_s: i64) -> HashMap<String, SignedDuration> {
    HashMap::from([(uid.to_string(), SignedDuration::from_secs(lookback_s))])
}

#[test]
fn terminal_incidents_beyond_the_limit_go_oldest_first_per_policy_and_target() {
    let rs = [
        rem("a1", "uid1", "web", 0, Some(10)),
        rem("a2", "uid1", "web", 100, Some(110)),
        rem("a3", "uid1", "web", 200, Some(210)),
        rem("a4", "uid1", "web", 300, Some(310)),
        // Another target of the same policy: its own limit.
        rem("b1", "uid1", "api", 0, Some(10)),
    ];
    let refs: Vec<&Remediation> = rs.iter().collect();
    let plan = choose(&refs, &live("uid1", 60), &limits(2, 86_400), t(1_000));
    assert_eq!(
        names(&plan.delete),
        [("a1", Why::Limit), ("a2", Why::Limit)]
    );
    assert!(plan.halt.is_empty());
}

#[test]
fn the_live_policys_guards_keep_what_they_still_read() {
    let rs = [
        rem("a1", "uid1", "web", 0, Some(10)),
        rem("a2", "uid1", "web", 100, Some(110)),
        rem("a3", "uid1", "web", 200, Some(210)),
    ];
    let refs: Vec<&Remediation> = rs.iter().collect();
    // A 1 h lookback covers all three: nothing goes, by limit or by age.
    let plan = choose(&refs, &live("uid1", 3_600), &limits(1, 60), t(1_000));
    assert_eq!(plan, Plan::default());
    // Past the lookback, the limit and the age apply again.
    let plan = choose(&refs, &live("uid1", 3_600), &limits(1, 86_400), t(4_000));
    assert_eq!(
        names(&plan.delete),
        [("a1", Why::Limit), ("a2", Why::Limit)]
    );
}

#[test]
fn old_terminal_incidents_go_even_after_their_policy_and_open_ones_never_do() {
    let rs = [
        rem("old", "gone", "web", 0, Some(10)),
        rem("recent", "gone", "web", 900, Some(950)),
        rem("open", "gone", "web", 0, None),
        rem("live-open", "uid1", "web", 0, None),
    ];
    let refs: Vec<&Remediation> = rs.iter().collect();
    let plan = choose(&refs, &live("uid1", 60), &limits(20, 500), t(1_000));
    // Finished 990 s ago with a 500 s max age: deleted; finished 50 s ago: kept.
    assert_eq!(names(&plan.delete), [("old", Why::Age)]);
    // The open incident of a deleted policy is halted, never deleted; the live one is left alone.
    assert_eq!(names(&plan.halt), [("open", Why::Orphaned)]);
}

#[test]
fn a_policy_recreated_with_the_same_name_has_its_own_history() {
    let rs = [
        rem("p-1", "old-uid", "web", 0, Some(10)),
        rem("p-2", "old-uid", "web", 100, Some(110)),
        rem("p-3", "new-uid", "web", 900, Some(910)),
    ];
    let refs: Vec<&Remediation> = rs.iter().collect();
    // Limit 1: the earlier object's incidents are a group of their own (one goes), and the new
    // policy's single incident is kept.
    let plan = choose(&refs, &live("new-uid", 60), &limits(1, 86_400), t(1_000));
    assert_eq!(names(&plan.delete), [("p-1", Why::Limit)]);
}

#[test]
fn a_remediation_without_the_operators_mark_is_never_touched() {
    let mut forged = rem("forged", "x", "web", 0, Some(1));
    forged.metadata.labels = Some(
        [(POLICY_LABEL.to_string(), "p".to_string())]
            .into_iter()
            .collect(),
    );
    let mut forged_open = forged.clone();
    forged_open.status = None;
    let refs = [&forged, &forged_open];
    let plan = choose(&refs, &HashMap::new(), &limits(0, 0), t(1_000));
    assert_eq!(plan, Plan::default());
}

#[test]
fn an_incident_without_finish_time_ages_from_its_creation() {
    let mut r = rem("r", "gone", "web", 0, Some(0));
    if let Some(s) = r.status.as_mut() {
        s.finished_at = None;
        s.phase = Phase::Failed;
    }
    let plan = choose(&[&r], &HashMap::new(), &limits(20, 100), t(101));
    assert_eq!(names(&plan.delete), [("r", Why::Age)]);
    let plan = choose(&[&r], &HashMap::new(), &limits(20, 100), t(99));
    assert!(plan.delete.is_empty());
}

#[test]
fn the_effectiveness_memory_window_is_kept() {
    let mut spec: crate::v1alpha1::RemediationPolicySpec =
        serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Deployment", "name": "web"},
            "faults": [{"name": "f", "pattern": "RunawayProcess"}],
            "guards": {"failureWindow": "24h"},
        }))
        .expect("valid");
    assert_eq!(super::lookback(&spec), SignedDuration::from_hours(24));
    spec.guards.skip_after_failures = 0;
    assert_eq!(
        super::lookback(&spec),
        SignedDuration::from_hours(1),
        "memory off"
    );
}
