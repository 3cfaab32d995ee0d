//! Forecast scaling in shadow mode, end to end: the operator reads a demand signal's history from a
//! real Prometheus (a PromQL expression of time with a daily rise, so two days of history exist on a
//! fresh cluster), fits the model, and reports in `status.targets[].forecast` that it would scale out
//! ahead of the rise, changing nothing; switched to Enforce, it scales out through a Scale incident.
//! Real apiserver, kwok pods.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use homeostat::v1alpha1::{ActionType, ForecastMode, ForecastStatus, Phase, RemediationPolicy};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, api::PostParams};
use support::*;

/// Seconds of the shifted day at which demand starts rising (07:56), and how long it rises.
const RISE_AT: u64 = 7 * 3600 + 56 * 60;
const RISE_SECS: u64 = 360;

#[tokio::test(flavor = "multi_thread")]
async fn forecast_reports_scaling_ahead_of_a_daily_rise_in_shadow_and_scales_out_when_enforced() {
    let env = Env::get().await;
    let ns = TestNs::new(&env, "forecast").await;
    deploy(&env, &ns.name, "shop", 2, "healthy", &[]).await;
    // Shift the clock of the demand expression so that its daily rise starts ~3 minutes from now:
    // every day of its history rose at the same shifted time, which the model learns.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let offset = (RISE_AT + 86_400 - (now + 180) % 86_400) % 86_400;
    // 45 units at night (1.5 pods: room below the next pod for the upper bound), 600 after a
    // 6-minute rise: 2 -> 20 replicas at 30 per pod.
    let demand = format!(
        "45 + 555 * clamp(vector((((time() + {offset}) % 86400) - {RISE_AT}) / {RISE_SECS}), 0, 1)"
    );
    let faults = r#"  - name: contention
    pattern: ResourceContention
    for: 1m
    action:
      type: Scale
      scale:
        minReplicas: 2
        maxReplicas: 30
        forecast: {signal: demand, perPod: 30, history: 50h, step: 1m, horizon: 10m, level: 0.8}"#;
    let signals = format!("  signals:\n    - name: demand\n      query: '{demand}'\n{FAST_GUARDS}");
    let yaml = policy_yaml("forecast", "shop", faults, &signals);
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    apply_policy(&env, &ns.name, &yaml)
        .await
        .expect("policy accepted");

    // Every forecast the status showed, until one would scale out ahead of the rise.
    let seen: Mutex<Vec<ForecastStatus>> = Mutex::new(vec![]);
    let ahead = wait_for("a shadow forecast ahead of the rise", 480, || {
        let (env, ns, seen) = (&env, &ns.name, &seen);
        async move {
            let p = policy(env, ns, "forecast").await;
            let f = p
                .status
                .as_ref()
                .and_then(|s| s.targets.first())
                .and_then(|t| t.forecast.clone())?;
            let mut seen = seen.lock().unwrap();
            if seen.last().map(|s| &s.time) != Some(&f.time) {
                println!("forecast: {f:?}");
                seen.push(f.clone());
            }
            (f.recommended.is_some() && f.forecast_need > f.current_need).then_some((p, f))
        }
    })
    .await;
    let (p, f) = ahead;
    assert_eq!(f.mode, ForecastMode::Shadow);
    assert!(f.message.contains("would scale out to"), "{}", f.message);
    assert!(
        f.pod_ready_seconds < 60.0,
        "the lead is measured on the workload's pods, not the 60 s default: {f:?}"
    );
    assert_eq!(
        ready(&p).map(|(s, _)| s),
        Some("True".into()),
        "a shadow forecast runs: {:?}",
        p.status.as_ref().map(|s| &s.conditions)
    );
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.iter().any(|s| s.recommended.is_none()),
        "before the rise the forecast held: {seen:?}"
    );
    // Shadow: nothing changed.
    let d = Api::<Deployment>::namespaced(env.client.clone(), &ns.name)
        .get("shop")
        .await
        .unwrap();
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(2));
    assert!(remediations(&env, &ns.name).await.is_empty());

    // Enforce: the next forecast (a new generation is forecast at once) opens a Scale incident under
    // the fault's guards; the Deployment gets the replicas the forecast asked for, and the incident's
    // evidence is the forecast.
    let api = Api::<RemediationPolicy>::namespaced(env.client.clone(), &ns.name);
    let mut p = policy(&env, &ns.name, "forecast").await;
    let fc = p.spec.faults[0]
        .action
        .as_mut()
        .and_then(|a| a.scale.as_mut())
        .and_then(|s| s.forecast.as_mut())
        .unwrap();
    fc.mode = ForecastMode::Enforce;
    api.replace("forecast", &PostParams::default(), &p)
        .await
        .expect("switch the forecast to Enforce");
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    println!("incident: {:?}", r.status);
    assert_eq!(r.spec.action.type_, ActionType::Scale);
    assert!(
        r.spec
            .evidence
            .iter()
            .any(|e| e.rule.starts_with("forecast peak")),
        "{:?}",
        r.spec.evidence
    );
    let s = r.status.as_ref().unwrap();
    let a = s.attempts.first().unwrap();
    assert_eq!(a.from_replicas, Some(2));
    let to = a.to_replicas.unwrap();
    assert!((3..=30).contains(&to), "{a:?}");
    let d = Api::<Deployment>::namespaced(env.client.clone(), &ns.name)
        .get("shop")
        .await
        .unwrap();
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(to));
}
