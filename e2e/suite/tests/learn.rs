//! Learning from outcomes, end to end: shadow mode scores what enforcing would have done, and the
//! effectiveness memory skips an action that kept failing on a workload for the next rung of the
//! fault's ladder. Real apiserver, kwok pods, a real Prometheus scraping the simulator.
#![allow(clippy::unwrap_used)]

mod support;

use homeostat::v1alpha1::{
    ActionType, AttemptResult, Phase, Remediation, RemediationPolicy, ShadowOutcome,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use support::*;

async fn label(env: &Env, ns: &str, name: &str, patch: serde_json::Value) {
    Api::<Deployment>::namespaced(env.client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch deployment");
}

fn outcome(r: &Remediation) -> Option<ShadowOutcome> {
    r.status.as_ref().and_then(|s| s.shadow_outcome)
}

/// One Shadow policy over two runaway workloads: on one the runaway stops by itself (the
/// simulator's scenario turns healthy), on the other it persists. Each gets a Remediation that
/// acts on nothing; they are scored Unnecessary and Needed, and the policy status counts 1/1.
#[tokio::test(flavor = "multi_thread")]
async fn learn_shadow_mode_scores_a_fault_that_clears_unnecessary_and_one_that_persists_needed() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "shadow").await;
    for name in ["blip", "steady"] {
        deploy(&env, &ns.name, name, 3, "runaway", &[("sick-after", "5s")]).await;
        label(
            &env,
            &ns.name,
            name,
            serde_json::json!({"metadata": {"labels": {"tier": "shadow"}}}),
        )
        .await;
    }
    let before_blip = running_pods(&env, &ns.name, "blip").await;
    let before_steady = running_pods(&env, &ns.name, "steady").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let yaml = format!(
        r#"apiVersion: homeostat.dev/v1alpha1
kind: RemediationPolicy
metadata:
  name: shadow
spec:
  mode: Shadow
  selector: {{kinds: [Deployment], matchLabels: {{tier: shadow}}}}
  interval: 5s
  faults:
{RUNAWAY_FAULTS}
  verify: {{stableFor: 20s, timeout: 90s, maxAttempts: 2}}
{FAST_GUARDS}"#
    );
    apply_policy(&env, &ns.name, &yaml)
        .await
        .expect("policy accepted");

    // Both decisions are recorded, as shadow incidents that did nothing.
    let open = wait_for("two open shadow incidents", 180, || async {
        let all = remediations(&env, &ns.name).await;
        let open: Vec<Remediation> = all
            .into_iter()
            .filter(|r| r.status.as_ref().is_some_and(|s| s.phase == Phase::Shadow))
            .collect();
        (open.len() == 2).then_some(open)
    })
    .await;
    for r in &open {
        assert!(r.spec.shadow, "{}", r.name_any());
        let s = r.status.as_ref().unwrap();
        assert_eq!(s.attempts.len(), 1, "{s:?}");
        assert_eq!(s.attempts[0].result, AttemptResult::Shadow);
        assert!(s.attempts[0].applied_at.is_none());
    }
    // The runaway on `blip` stops by itself.
    label(
        &env,
        &ns.name,
        "blip",
        serde_json::json!({"metadata": {"annotations": {"homeostat.dev/scenario": "healthy"}}}),
    )
    .await;

    let scored = wait_for("both shadow incidents scored", 240, || async {
        let all = remediations(&env, &ns.name).await;
        all.iter()
            .all(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Phase::Shadowed)
            })
            .then_some(all)
    })
    .await;
    assert_eq!(scored.len(), 2, "one incident per workload: {scored:?}");
    let of = |t: &str| {
        scored
            .iter()
            .find(|r| r.spec.target.name == t)
            .unwrap_or_else(|| panic!("no incident for {t}"))
    };
    assert_eq!(
        outcome(of("blip")),
        Some(ShadowOutcome::Unnecessary),
        "{:?}",
        of("blip").status
    );
    assert_eq!(
        outcome(of("steady")),
        Some(ShadowOutcome::Needed),
        "{:?}",
        of("steady").status
    );
    // Nothing was evicted or scaled.
    assert_eq!(running_pods(&env, &ns.name, "blip").await, before_blip);
    assert_eq!(running_pods(&env, &ns.name, "steady").await, before_steady);
    for name in ["blip", "steady"] {
        let d = Api::<Deployment>::namespaced(env.client.clone(), &ns.name)
            .get(name)
            .await
            .unwrap();
        assert_eq!(d.spec.unwrap().replicas, Some(3), "{name} not scaled");
    }

    let p: RemediationPolicy = wait_for("the policy status counts 1/1", 60, || async {
        let p = policy(&env, &ns.name, "shadow").await;
        let s = p.status.as_ref()?.shadow.as_ref()?;
        (s.unnecessary == 1 && s.needed == 1).then_some(p)
    })
    .await;
    let st = p.status.unwrap();
    let total = st.shadow.unwrap();
    assert_eq!((total.incidents, total.pending), (2, 0), "{total:?}");
    assert_eq!(total.unnecessary_rate, Some(0.5));
    let per = |t: &str| {
        st.targets
            .iter()
            .find(|e| e.target.name == t)
            .and_then(|e| e.shadow.clone())
            .unwrap()
    };
    assert_eq!((per("blip").unnecessary, per("blip").needed), (1, 0));
    assert_eq!((per("steady").unnecessary, per("steady").needed), (0, 1));
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "Shadow", "{}", ready.message);
    println!(
        "FIGURE shadow_incidents scenario=shadow unnecessary={} needed={} pending={} unscored={} rate={:.2}",
        total.unnecessary,
        total.needed,
        total.pending,
        total.unscored,
        total.unnecessary_rate.unwrap_or(f64::NAN)
    );
    // The steady fault persists, but the cooldown keeps it from being re-recorded every interval.
    assert_eq!(remediations(&env, &ns.name).await.len(), 2);
}

/// A Threshold that a rollout restart cannot clear, with the ladder [RolloutRestart, Scale] and
/// `skipAfterFailures: 2`: after two incidents whose RolloutRestart failed, the third uses Scale
/// and says why, in the Remediation, the policy status and `kubectl get rem`.
#[tokio::test(flavor = "multi_thread")]
async fn learn_skips_an_action_that_failed_twice_for_the_next_rung() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "memory").await;
    // Healthy pods sit at 30 % of 512Mi (≈161 MB): a threshold at 100 MB fires and no restart fixes it.
    deploy(&env, &ns.name, "web", 2, "healthy", &[]).await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let yaml = r#"apiVersion: homeostat.dev/v1alpha1
kind: RemediationPolicy
metadata:
  name: web
spec:
  targetRef: {kind: Deployment, name: web}
  interval: 5s
  signals:
  - name: memory
    query: 'max by (pod) (container_memory_working_set_bytes{namespace="{{ namespace }}", pod=~"{{ pods }}"})'
  faults:
  - name: fat
    pattern: Threshold
    signal: memory
    condition: {op: ">", value: 100000000}
    for: 20s
    action: {type: RolloutRestart}
    fallbacks:
    - {type: Scale, scale: {step: 1, maxReplicas: 3}}
  verify: {stableFor: 20s, timeout: 30s, maxAttempts: 1}
  guards: {cooldown: 5s, maxActionsPerHour: 20, maxUnavailable: 1, skipAfterFailures: 2, failureWindow: 1h}
"#;
    apply_policy(&env, &ns.name, yaml)
        .await
        .expect("policy accepted");

    let third = wait_for("a third incident", 420, || async {
        let all = remediations(&env, &ns.name).await;
        all.get(2).cloned()
    })
    .await;
    let all = remediations(&env, &ns.name).await;
    for r in &all[..2] {
        let s = r.status.as_ref().unwrap();
        assert_eq!(
            r.spec.action.type_,
            ActionType::RolloutRestart,
            "{}",
            r.name_any()
        );
        assert!(r.spec.skipped.is_empty());
        assert_eq!(s.phase, Phase::Escalated, "{s:?}");
        assert_eq!(s.attempts[0].result, AttemptResult::Applied, "{s:?}");
    }
    assert_eq!(
        third.spec.action.type_,
        ActionType::Scale,
        "the next rung: {:?}",
        third.spec
    );
    let skipped = &third.spec.skipped;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(
        (skipped[0].action, skipped[0].failures),
        (ActionType::RolloutRestart, 2)
    );
    let mut named = skipped[0].incidents.clone();
    named.sort();
    let mut first_two: Vec<String> = all[..2].iter().map(|r| r.name_any()).collect();
    first_two.sort();
    assert_eq!(named, first_two, "the failed incidents are named");
    let s = wait_for("the Scale acted", 60, || async {
        let r = remediations(&env, &ns.name).await.get(2).cloned()?;
        let s = r.status?;
        s.attempts
            .first()
            .is_some_and(|a| a.result == AttemptResult::Applied)
            .then_some(s)
    })
    .await;
    assert_eq!(s.attempts[0].to_replicas, Some(3), "{s:?}");

    // The policy status says what is skipped.
    wait_for("the policy status names the skipped action", 60, || async {
        let p = policy(&env, &ns.name, "web").await;
        let st = p.status?;
        let t = st.targets.first()?;
        t.skipping
            .iter()
            .any(|k| k.action == ActionType::RolloutRestart && k.failures >= 2)
            .then_some(())
    })
    .await;
    // ... and so does `kubectl get rem`.
    let out = std::process::Command::new("kubectl")
        .args(["get", "rem", "-n", &ns.name, &third.name_any()])
        .output()
        .expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let col = header.iter().position(|h| *h == "SKIPPED");
    assert_eq!(
        col.and_then(|i| row.get(i)).copied(),
        Some("RolloutRestart"),
        "kubectl get rem:\n{text}"
    );
    println!(
        "FIGURE memory_skip scenario=threshold-rollout failed_incidents=2 next_action={}",
        third.spec.action.type_.as_str()
    );
}
