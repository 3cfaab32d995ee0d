//! A trail that lasts and cannot be forged: Remediations outlive their policy until retention
//! prunes them (history limit, then age), a policy re-created with the same name starts its own
//! history, and a hand-made Remediation is refused (with the operator's mark) or ignored.
#![allow(clippy::unwrap_used)]

mod support;

use homeostat::{
    controller::{POLICY_LABEL, POLICY_UID_LABEL},
    v1alpha1::{Phase, Remediation, RemediationPolicy},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
};
use support::*;

/// Escalate-only, so every incident ends at once (Escalated) and a new one opens each cooldown.
const ESCALATE: &str = "  - name: runaway\n    pattern: RunawayProcess\n    for: 15s\n    params: {warmup: 10s}\n    action: {type: Escalate}";
const GUARDS: &str = "  guards: {cooldown: 5s, maxActionsPerHour: 100}\n";

fn seq(r: &Remediation) -> u32 {
    r.labels()
        .get("homeostat.dev/incident")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn of_uid(all: &[Remediation], uid: &str) -> Vec<Remediation> {
    all.iter()
        .filter(|r| r.labels().get(POLICY_UID_LABEL).map(String::as_str) == Some(uid))
        .cloned()
        .collect()
}

fn hand_made(name: &str, labels: serde_json::Value) -> Remediation {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "homeostat.dev/v1alpha1",
        "kind": "Remediation",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "policyRef": "trail",
            "target": {"kind": "Deployment", "name": "web"},
            "fault": "runaway",
            "pattern": "RunawayProcess",
            "action": {"type": "RestartPod"},
            "pods": ["web-0"],
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn remediations_outlive_their_policy_until_retention_prunes_them() {
    let _case = support::matrix::Case::asserted(
        "policy deleted; forged Remediation; history limit and age",
        "trail survives its policy, pruned by limit/age only; forged ones refused or ignored",
        "labelled forgery refused by admission, unlabelled ignored; incidents survived deletion; limit kept the newest 2; age pruned the rest",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "trail").await;
    let op = Operator::start(
        &env,
        &ns.name,
        "op",
        &[
            "--remediation-history-limit",
            "2",
            "--remediation-max-age",
            "40s",
        ],
        &[],
    )
    .await;
    let rems = Api::<Remediation>::namespaced(env.client.clone(), &ns.name);
    let policies = Api::<RemediationPolicy>::namespaced(env.client.clone(), &ns.name);

    // Only the operator may mark a Remediation as its own (the chart's admission policy).
    let forged = hand_made(
        "forged-uid",
        serde_json::json!({POLICY_LABEL: "trail", POLICY_UID_LABEL: "0000"}),
    );
    let err = rems
        .create(&PostParams::default(), &forged)
        .await
        .expect_err("a hand-made Remediation with the operator's mark is refused");
    assert!(
        err.to_string().contains("policy-uid"),
        "refused by the admission policy: {err}"
    );
    // Without the mark it is accepted, and ignored: never advanced, halted or pruned.
    rems.create(
        &PostParams::default(),
        &hand_made("forged", serde_json::json!({POLICY_LABEL: "trail"})),
    )
    .await
    .expect("a Remediation without the mark is accepted");

    deploy(&env, &ns.name, "web", 2, "runaway", &[("sick-after", "5s")]).await;
    let before = running_pods(&env, &ns.name, "web").await;
    let yaml = policy_yaml("trail", "web", ESCALATE, GUARDS);
    let p = apply_policy(&env, &ns.name, &yaml).await.unwrap();
    let uid = p.uid().unwrap();
    // Three incidents, more than the limit: the live policy's guards still read them, so all stay.
    let first = wait_for("three escalated incidents", 180, || async {
        let mine = of_uid(&remediations(&env, &ns.name).await, &uid);
        (mine.len() >= 3).then_some(mine)
    })
    .await;
    for r in &first {
        assert_eq!(r.status.as_ref().map(|s| s.phase), Some(Phase::Escalated));
        assert!(
            r.owner_references().is_empty(),
            "no owner reference: {:?}",
            r.owner_references()
        );
    }
    let all = remediations(&env, &ns.name).await;
    for r in &first {
        assert!(
            all.iter().any(|x| x.uid() == r.uid()),
            "{} pruned while its live policy's guards read it",
            r.name_any()
        );
    }

    // Delete the policy: its incidents survive (no GC), the oldest beyond the limit go.
    policies
        .delete("trail", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the policy gone", 30, || async {
        policies
            .get_opt("trail")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let kept = wait_for("the old incidents cut to the limit (2)", 60, || async {
        let mine = of_uid(&remediations(&env, &ns.name).await, &uid);
        (mine.len() == 2).then_some(mine)
    })
    .await;
    let total = kept.iter().map(seq).max().unwrap();
    assert!(total as usize >= first.len());
    let mut kept_seqs: Vec<u32> = kept.iter().map(seq).collect();
    kept_seqs.sort();
    assert_eq!(kept_seqs, [total - 1, total], "the newest two are kept");

    // Re-created with the same name: a new object with its own history, numbered past the old.
    let p2 = apply_policy(&env, &ns.name, &yaml).await.unwrap();
    let uid2 = p2.uid().unwrap();
    assert_ne!(uid, uid2);
    let fresh = wait_for("an incident of the re-created policy", 120, || async {
        of_uid(&remediations(&env, &ns.name).await, &uid2)
            .into_iter()
            .next()
    })
    .await;
    assert!(
        seq(&fresh) > total,
        "numbered past the old incidents: {} after {total}",
        fresh.name_any()
    );

    // Age: the old policy's incidents go 40 s after they ended; the new policy's stay (its guards
    // read them), and so does the hand-made one.
    wait_for("the old incidents pruned by age", 120, || async {
        of_uid(&remediations(&env, &ns.name).await, &uid)
            .is_empty()
            .then_some(())
    })
    .await;
    let all = remediations(&env, &ns.name).await;
    assert!(
        !of_uid(&all, &uid2).is_empty(),
        "the live policy's incidents are kept"
    );
    let forged = rems
        .get("forged")
        .await
        .expect("the hand-made one is left alone");
    assert!(
        forged.status.is_none(),
        "never advanced: {:?}",
        forged.status
    );
    assert_eq!(
        running_pods(&env, &ns.name, "web").await,
        before,
        "nothing was evicted (escalate only, and the hand-made RestartPod is ignored)"
    );
    let log = op.log_text();
    assert!(
        log.contains("trail pruned"),
        "the operator logs its pruning ({})",
        op.log.display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_incident_of_a_deleted_policy_is_halted_then_pruned() {
    let _case = support::matrix::Case::asserted(
        "policy deleted while its incident verifies",
        "the incident is halted (no further attempt), then pruned by age",
        "Halted with no further attempt, kstatus Current, then deleted by age",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "orphan").await;
    let _op = Operator::start(&env, &ns.name, "op", &["--remediation-max-age", "30s"], &[]).await;
    deploy(&env, &ns.name, "web", 2, "runaway", &[("sick-after", "5s")]).await;
    // A long verification keeps the incident open after its eviction.
    let yaml = policy_yaml("fix", "web", RUNAWAY_FAULTS, FAST_GUARDS).replace(
        "verify: {stableFor: 20s, timeout: 60s, maxAttempts: 2}",
        "verify: {stableFor: 90s, timeout: 180s, maxAttempts: 2}",
    );
    apply_policy(&env, &ns.name, &yaml).await.unwrap();
    let open = wait_phase(&env, &ns.name, Phase::Verifying, 180).await;
    Api::<RemediationPolicy>::namespaced(env.client.clone(), &ns.name)
        .delete("fix", &DeleteParams::default())
        .await
        .unwrap();
    let rems = Api::<Remediation>::namespaced(env.client.clone(), &ns.name);
    let name = open.name_any();
    let halted = wait_for("the orphaned incident halted", 60, || async {
        let r = rems.get_opt(&name).await.unwrap()?;
        (r.status.as_ref()?.phase == Phase::Halted).then_some(r)
    })
    .await;
    let s = halted.status.unwrap();
    assert!(
        s.message.contains("policy fix was deleted"),
        "{}",
        s.message
    );
    assert_eq!(s.attempts.len(), 1, "no further step: {:?}", s.attempts);
    let ks = kstatus(&ns.name, &format!("remediations/{name}")).await;
    assert_eq!(ks[&name].0, "Current", "halted on purpose: {ks:?}");
    // Then it ages like any finished incident (30 s).
    wait_for("the halted incident pruned by age", 90, || async {
        rems.get_opt(&name).await.unwrap().is_none().then_some(())
    })
    .await;
}
