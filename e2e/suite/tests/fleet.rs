//! Guards that span policies, end to end: the storm brake, the cluster-wide disruption budget and
//! one owner per workload. Each test has its own namespace and operator.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use homeostat::v1alpha1::{AttemptResult, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use support::*;

/// Sick runaway Deployments `w0..wN` (2 pods each) with one policy each.
async fn sick_fleet(env: &Env, ns: &str, n: usize) {
    for i in 0..n {
        let name = format!("w{i}");
        deploy(env, ns, &name, 2, "runaway", &[("sick-after", "5s")]).await;
        apply_policy(
            env,
            ns,
            &policy_yaml(&name, &name, RUNAWAY_FAULTS, FAST_GUARDS),
        )
        .await
        .expect("policy accepted");
    }
}

fn held(p: &homeostat::v1alpha1::RemediationPolicy) -> Option<String> {
    p.status.as_ref()?.targets.first()?.held.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_sick_workloads_holds_every_disruptive_action() {
    let _case = support::matrix::Case::asserted(
        "storm: 20 of 20 watched workloads turn sick within 15 s",
        "every disruptive action held (StormBrake), condition + Event, no incident",
        "all 20 policies held StormBrake; no incident opened; no pod touched",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "storm").await;
    // Defaults: a storm is more than 30 % of the watched workloads faulty, at least 5. A 1 s tick
    // under the policies' 5 s interval evaluates them at five different phases, as a fleet with
    // 30 s intervals is: at each sweep most policies' findings are a few seconds old.
    let op = Operator::start(&env, &ns.name, "op", &["--sweep-tick", "1s"], &[]).await;
    for i in 0..20 {
        let name = format!("w{i}");
        deploy(&env, &ns.name, &name, 2, "healthy", &[]).await;
        apply_policy(
            &env,
            &ns.name,
            &policy_yaml(&name, &name, RUNAWAY_FAULTS, FAST_GUARDS),
        )
        .await
        .expect("policy accepted");
    }
    wait_for("all 20 policies evaluated", 120, || async {
        let mut n = 0;
        for i in 0..20 {
            let p = policy(&env, &ns.name, &format!("w{i}")).await;
            if ready(&p).is_some_and(|(s, _)| s == "True") {
                n += 1;
            }
        }
        (n == 20).then_some(())
    })
    .await;
    // A shared cause that spreads (a node degrading): one workload after another turns sick, 0.75 s
    // apart, so the first completes its 30 s hold while the last are 15 s into theirs. Counting
    // only faults that fire, the first ones would act before the storm is seen.
    let api = Api::<Deployment>::namespaced(env.client.clone(), &ns.name);
    for i in 0..20 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(750)).await;
        }
        let patch = serde_json::json!({"metadata": {"annotations": {
            "homeostat.dev/scenario": "runaway", "homeostat.dev/sick-after": "0s"}}});
        api.patch(
            &format!("w{i}"),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .unwrap();
    }
    wait_for("all 20 policies held by the storm brake", 180, || async {
        let mut n = 0;
        for i in 0..20 {
            let p = policy(&env, &ns.name, &format!("w{i}")).await;
            if held(&p).as_deref() == Some("StormBrake") {
                n += 1;
            }
        }
        assert!(
            remediations(&env, &ns.name).await.is_empty(),
            "the storm brake opens no incident"
        );
        (n == 20).then_some(())
    })
    .await;
    // Held for a while longer: nothing is opened, nothing evicted.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        assert!(
            remediations(&env, &ns.name).await.is_empty(),
            "the storm brake opens no incident"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for i in 0..20 {
        assert_eq!(
            running_pods(&env, &ns.name, &format!("w{i}")).await.len(),
            2
        );
    }
    assert!(
        op.log_text().contains("storm brake on"),
        "the operator says why"
    );
    println!("FIGURE storm_brake held=20/20 incidents=0");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_disruption_budget_spans_policies() {
    let _case = support::matrix::Case::asserted(
        "5 sick policies, cluster budget 2 actions/min",
        "actions spread over minutes across policies",
        "the first three actions spanned more than a minute; the rest held ClusterBudget",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "budget").await;
    let _op = Operator::start(
        &env,
        &ns.name,
        "op",
        &[
            "--storm-fraction",
            "1.0",
            "--max-disruptions-per-minute",
            "2",
        ],
        &[],
    )
    .await;
    sick_fleet(&env, &ns.name, 5).await;
    let applied = wait_for("three evictions", 240, || async {
        let mut t: Vec<f64> = remediations(&env, &ns.name)
            .await
            .iter()
            .filter_map(|r| r.status.as_ref()?.attempts.first().cloned())
            .filter(|a| a.result == AttemptResult::Applied)
            .filter_map(|a| a.applied_at.map(|t| t.0.as_millisecond() as f64 / 1000.0))
            .collect();
        t.sort_by(f64::total_cmp);
        (t.len() >= 3).then_some(t)
    })
    .await;
    assert!(
        applied[2] - applied[0] >= 58.0,
        "at most 2 actions in any minute across 5 policies: {applied:?}"
    );
    let mut budget_held = 0;
    for i in 0..5 {
        if held(&policy(&env, &ns.name, &format!("w{i}")).await).as_deref() == Some("ClusterBudget")
        {
            budget_held += 1;
        }
    }
    println!(
        "FIGURE cluster_budget first_three_actions_span_s={:.0} held_now={budget_held}",
        applied[2] - applied[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_policies_on_one_workload_have_one_owner() {
    let _case = support::matrix::Case::asserted(
        "two policies (evict vs scale) on one workload",
        "only the oldest acts; both say so",
        "only the oldest acted; the other held OwnedByAnotherPolicy; both Ready messages name the conflict; not scaled",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "owner").await;
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("first", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .expect("policy accepted");
    // Created later, and its fault would scale instead of evicting: the two could fight.
    let scale = r#"  - name: runaway
    pattern: RunawayProcess
    for: 30s
    params: {warmup: 10s}
    action: {type: Scale, scale: {step: 1, maxReplicas: 6}}"#;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("second", "web", scale, FAST_GUARDS),
    )
    .await
    .expect("policy accepted");
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    assert_eq!(
        r.spec.policy_ref, "first",
        "the oldest policy owns the workload"
    );
    assert!(
        remediations(&env, &ns.name)
            .await
            .iter()
            .all(|r| r.spec.policy_ref == "first"),
        "the other policy opened nothing"
    );
    let msg = |p: homeostat::v1alpha1::RemediationPolicy| {
        p.status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.message)
            .unwrap_or_default()
    };
    let second = msg(policy(&env, &ns.name, "second").await);
    assert!(second.contains("owned by policy first"), "{second}");
    let first = msg(policy(&env, &ns.name, "first").await);
    assert!(first.contains("also targeted by second"), "{first}");
    assert_eq!(
        running_pods(&env, &ns.name, "web").await.len(),
        3,
        "not scaled"
    );
}
