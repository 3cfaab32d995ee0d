//! Prometheus stopped mid-run: no action, a condition says why, evaluation resumes when it is back.
//! A test binary of its own: cargo runs test binaries one after another, so stopping the shared
//! Prometheus here cannot disturb the other scenarios.
#![allow(clippy::unwrap_used)]

mod support;

use std::{path::PathBuf, process::Command};

use homeostat::v1alpha1::Phase;
use support::*;

fn prometheus(action: &str) {
    let repo = PathBuf::from(std::env::var("HOMEOSTAT_E2E_REPO").expect("HOMEOSTAT_E2E_REPO"));
    let mut cmd = Command::new(repo.join(format!("e2e/prometheus/{action}")));
    if action == "start" {
        // The stack's own arguments (with the real node: also the kubelet, kube-state-metrics and
        // operator jobs), so the restarted Prometheus scrapes what it scraped before.
        if let Ok(args) = std::env::var("HOMEOSTAT_E2E_PROM_ARGS") {
            cmd.args(args.split_whitespace());
        } else {
            cmd.args([
                "--port",
                &std::env::var("HOMEOSTAT_E2E_PROM_PORT").expect("port"),
            ])
            .args([
                "--scrape",
                &std::env::var("HOMEOSTAT_E2E_SIM_ADDR").expect("simulator address"),
            ])
            .args(["--interval", "5s"]);
        }
    }
    let out = cmd.output().expect("run the prometheus script");
    assert!(
        out.status.success(),
        "e2e/prometheus/{action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_outage_means_no_action_and_a_visible_condition() {
    let _case = support::matrix::Case::asserted(
        "Prometheus down mid-fault",
        "no action; DataAvailable=False at once, Stalled if it lasts; recovers when back",
        "no action while blind; DataAvailable=False PrometheusUnreachable, then Stalled, then recovered",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "outage").await;
    // The runaway starts 50 s in: the outage begins before the fault is sustained.
    deploy(
        &env,
        &ns.name,
        "web",
        3,
        "runaway",
        &[("sick-after", "50s")],
    )
    .await;
    let before = running_pods(&env, &ns.name, "web").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .unwrap();
    wait_for("the policy evaluating normally", 90, || async {
        let p = policy(&env, &ns.name, "web").await;
        (ready(&p)? == ("True".to_string(), "Evaluating".to_string())
            && condition(&p, "DataAvailable")?.0 == "True")
            .then_some(())
    })
    .await;

    prometheus("stop");
    let stopped = std::time::Instant::now();
    // A transient outage is reported in DataAvailable; Ready stays True (kstatus: Current).
    let (status, reason) = wait_for(
        "DataAvailable=False because Prometheus is unreachable",
        60,
        || async {
            let p = policy(&env, &ns.name, "web").await;
            condition(&p, "DataAvailable").filter(|r| r.0 == "False")
        },
    )
    .await;
    println!(
        "FIGURE outage_to_condition_seconds value={:.1}",
        stopped.elapsed().as_secs_f64()
    );
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PrometheusUnreachable")
    );
    let p = policy(&env, &ns.name, "web").await;
    assert_eq!(
        ready(&p).map(|r| r.0),
        Some("True".into()),
        "{:?}",
        p.status
    );
    let ks = kstatus(&ns.name, "remediationpolicies/web").await;
    assert_eq!(ks["web"].0, "Current", "a transient outage: {ks:?}");
    let p = policy(&env, &ns.name, "web").await;
    let verdicts = p.status.unwrap().last_evaluation.unwrap().verdicts;
    assert!(
        verdicts
            .iter()
            .all(|v| v.verdict == homeostat::v1alpha1::FaultKind::Inconclusive),
        "every verdict is Inconclusive while blind: {verdicts:?}"
    );
    // Stay blind past the fault's onset and its `for`: still no action; past 5 intervals (at
    // least 60 s) the outage is no longer transient: Stalled, read as Failed.
    wait_for("Stalled=True after a lasting outage", 120, || async {
        let p = policy(&env, &ns.name, "web").await;
        (condition(&p, "Stalled")? == ("True".into(), "PrometheusUnreachable".into())).then_some(())
    })
    .await;
    println!(
        "FIGURE outage_to_stalled_seconds value={:.1}",
        stopped.elapsed().as_secs_f64()
    );
    let ks = kstatus(&ns.name, "remediationpolicies/web").await;
    assert_eq!(ks["web"].0, "Failed", "a lasting outage: {ks:?}");
    assert!(
        remediations(&env, &ns.name).await.is_empty(),
        "no action without data"
    );
    assert_eq!(
        running_pods(&env, &ns.name, "web").await,
        before,
        "nothing evicted while blind"
    );

    prometheus("start");
    wait_for(
        "evaluation resuming (Ready=True, data back)",
        90,
        || async {
            let p = policy(&env, &ns.name, "web").await;
            (ready(&p)?.0 == "True" && condition(&p, "DataAvailable")?.0 == "True").then_some(())
        },
    )
    .await;
    let ks = kstatus(&ns.name, "remediationpolicies/web").await;
    assert!(
        matches!(ks["web"].0.as_str(), "Current" | "InProgress"),
        "data back: {ks:?}"
    );
    // With data back and the fault sustained, the operator acts.
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    assert_eq!(r.spec.pods, vec![before[0].0.clone()]);
}
