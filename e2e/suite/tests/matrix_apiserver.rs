//! The fault matrix, apiserver row: the kube-apiserver killed and restarted while an incident is
//! verifying. A test binary of its own (cargo runs test binaries one after another), as the
//! restart disturbs everything else using the cluster.
#![allow(clippy::unwrap_used)]

mod support;

use std::{path::PathBuf, process::Command, time::Duration};

use homeostat::v1alpha1::{AttemptResult, Phase};
use support::{matrix::Case, *};

#[tokio::test(flavor = "multi_thread")]
async fn apiserver_restarted_mid_incident() {
    let mut case = Case::new(
        "apiserver killed and restarted (down 15 s) while the incident verifies (Evict)",
        "the operator rides it out: Succeeded, one eviction",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-apiserver").await;
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let before = running_pods(&env, &ns.name, "web").await;
    let mut op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .unwrap();
    wait_for("the incident verifying after the eviction", 240, || async {
        remediations(&env, &ns.name).await.into_iter().find(|r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Phase::Verifying
                    && s.attempts
                        .last()
                        .is_some_and(|a| a.result == AttemptResult::Applied)
            })
        })
    })
    .await;
    let repo = PathBuf::from(std::env::var("HOMEOSTAT_E2E_REPO").expect("HOMEOSTAT_E2E_REPO"));
    let out = Command::new(repo.join("e2e/cluster/restart-apiserver"))
        .arg("15")
        .output()
        .expect("run e2e/cluster/restart-apiserver");
    assert!(
        out.status.success(),
        "e2e/cluster/restart-apiserver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = running_pods(&env, &ns.name, "web").await;
    let evicted: Vec<_> = before
        .iter()
        .filter(|p| !after.contains(p))
        .map(|p| p.0.clone())
        .collect();
    let all = remediations(&env, &ns.name).await;
    let attempts = r.status.clone().unwrap().attempts.len();
    let alive = op.child.try_wait().ok().flatten().is_none();
    let observed = format!(
        "operator {}; Succeeded with {attempts} attempt(s), evicted {evicted:?} (implicated {:?}), {} incident(s)",
        if alive { "kept running" } else { "exited" },
        r.spec.pods,
        all.len()
    );
    let pass = attempts == 1 && evicted.len() == 1 && evicted == r.spec.pods && all.len() == 1;
    assert!(case.observed(&observed, pass), "{observed}");
}
