//! Status that GitOps tools read right, checked on live objects: Flux's kstatus library
//! (`e2e/kstatus`, github.com/fluxcd/cli-utils) and the chart's Argo CD health checks (Lua) read
//! policies in every state and incidents at every end, as the operator wrote them.
#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::BTreeMap, io::Write, process::Stdio};

use homeostat::v1alpha1::{Phase, Remediation, RemediationPolicy};
use support::*;

type Readings = BTreeMap<String, (String, String)>;

fn status_of<'a>(r: &'a Readings, name: &str) -> &'a str {
    r.get(name).map_or("(missing)", |(s, _)| s.as_str())
}

/// The faults of `policy_yaml` with one action.
fn runaway_with(action: &str) -> String {
    format!(
        "  - name: runaway\n    pattern: RunawayProcess\n    for: 30s\n    params: {{warmup: 10s}}\n    action: {{type: {action}}}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kstatus_and_argocd_read_every_policy_state_from_live_objects() {
    let _case = support::matrix::Case::asserted(
        "policy states read by Flux kstatus and the Argo CD Lua check",
        "healthy Current; spec error Failed; no data / Prometheus down Current then Failed",
        "as expected for all 4 states, transient and lasting",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "gitops-pol").await;
    // 127.0.0.1:9 is allowed but nothing listens there: Prometheus unreachable.
    let op = Operator::start(
        &env,
        &ns.name,
        "op",
        &["--prometheus-allow", "http://127.0.0.1:9/"],
        &[],
    )
    .await;
    deploy(&env, &ns.name, "web", 2, "healthy", &[]).await;
    deploy(&env, &ns.name, "web2", 1, "healthy", &[]).await;
    deploy_unsimulated(&env, &ns.name, "silent", 1).await;
    let faults = runaway_with("RestartPod");
    for (name, target, extra) in [
        ("healthy", "web", FAST_GUARDS.to_string()),
        ("nodata", "silent", FAST_GUARDS.to_string()),
        (
            "blind",
            "web2",
            format!("{FAST_GUARDS}  prometheus: {{url: 'http://127.0.0.1:9/'}}\n"),
        ),
    ] {
        apply_policy(&env, &ns.name, &policy_yaml(name, target, &faults, &extra))
            .await
            .expect("policy accepted");
    }
    // Accepted by the schema, refused by the operator's own checks: a spec error.
    let invalid = policy_yaml("invalid", "web", &faults, FAST_GUARDS).replace(
        "verify: {stableFor: 20s, timeout: 60s, maxAttempts: 2}",
        "verify: {stableFor: 60s, timeout: 30s, maxAttempts: 2}",
    );
    apply_policy(&env, &ns.name, &invalid)
        .await
        .expect("accepted by the schema");

    // Transient: every policy has its conditions, the data problems in DataAvailable only.
    let want_early = [
        ("healthy", "DataAvailable", "True", "SeriesFound"),
        ("nodata", "DataAvailable", "False", "NoData"),
        ("blind", "DataAvailable", "False", "PrometheusUnreachable"),
        ("invalid", "Stalled", "True", "InvalidSpec"),
    ];
    wait_for("every policy's first status", 90, || async {
        for (name, t, status, reason) in want_early {
            let p = policy(&env, &ns.name, name).await;
            if condition(&p, t) != Some((status.into(), reason.into())) {
                return None;
            }
        }
        Some(())
    })
    .await;
    let ks = kstatus(&ns.name, "remediationpolicies").await;
    let argo = argocd_health::<RemediationPolicy>(&env, &ns.name, "remediationpolicy.lua").await;
    println!("kstatus (transient): {ks:?}\nargocd (transient): {argo:?}");
    for name in ["nodata", "blind"] {
        let p = policy(&env, &ns.name, name).await;
        assert_eq!(
            ready(&p).map(|r| r.0),
            Some("True".into()),
            "{name}: a transient data problem is not in Ready"
        );
    }
    for (name, k, a) in [
        ("healthy", "Current", "Healthy"),
        ("nodata", "Current", "Healthy"),
        ("blind", "Current", "Healthy"),
        ("invalid", "Failed", "Degraded"),
    ] {
        assert_eq!(status_of(&ks, name), k, "kstatus of {name}: {ks:?}");
        assert_eq!(
            status_of(&argo, name),
            a,
            "Argo CD health of {name}: {argo:?}"
        );
    }
    assert!(
        argo["nodata"].1.contains("DataAvailable=False NoData"),
        "Argo CD says why: {argo:?}"
    );

    // Lasting: no data for more than 5 intervals (at least 60 s) is Stalled, read as Failed.
    wait_for("the blind policies stalled", 150, || async {
        for name in ["nodata", "blind"] {
            let p = policy(&env, &ns.name, name).await;
            condition(&p, "Stalled").filter(|c| c.0 == "True")?;
        }
        Some(())
    })
    .await;
    let ks = kstatus(&ns.name, "remediationpolicies").await;
    let argo = argocd_health::<RemediationPolicy>(&env, &ns.name, "remediationpolicy.lua").await;
    println!("kstatus (lasting): {ks:?}\nargocd (lasting): {argo:?}");
    for (name, reason) in [("nodata", "NoData"), ("blind", "PrometheusUnreachable")] {
        let p = policy(&env, &ns.name, name).await;
        assert_eq!(ready(&p), Some(("False".into(), reason.into())), "{name}");
        assert_eq!(status_of(&ks, name), "Failed", "kstatus of {name}: {ks:?}");
        assert_eq!(
            status_of(&argo, name),
            "Degraded",
            "Argo CD of {name}: {argo:?}"
        );
    }
    assert_eq!(status_of(&ks, "healthy"), "Current", "{ks:?}");
    assert_eq!(status_of(&argo, "healthy"), "Healthy", "{argo:?}");
    assert!(
        op.log_text().contains("sweep done"),
        "the operator swept (log {})",
        op.log.display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_policy_the_schema_accepts_gets_a_status() {
    let _case = support::matrix::Case::asserted(
        "every object the schema accepts",
        "gets a status (observedGeneration, Ready)",
        "every accepted object got a status; kstatus reads each",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "gitops-acc").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    deploy(&env, &ns.name, "web", 1, "healthy", &[]).await;
    let repo = std::path::PathBuf::from(std::env::var("HOMEOSTAT_E2E_REPO").unwrap());
    let corpus = repo.join("tests/schema/accepted.yaml");
    let out = std::process::Command::new("kubectl")
        .args(["apply", "-n", &ns.name, "-f"])
        .arg(&corpus)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "the accepted corpus applies for real: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> =
        kube::Api::<RemediationPolicy>::namespaced(env.client.clone(), &ns.name)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
    assert!(names.len() >= 4, "the corpus has its objects: {names:?}");
    wait_for("a status on every accepted policy", 90, || async {
        for n in &names {
            let p = policy(&env, &ns.name, n).await;
            let s = p.status.as_ref()?;
            (s.observed_generation == p.metadata.generation && ready(&p).is_some()).then_some(())?;
        }
        Some(())
    })
    .await;
    let ks = kstatus(&ns.name, "remediationpolicies").await;
    println!("kstatus of the accepted corpus: {ks:?}");
    for n in &names {
        assert!(
            matches!(status_of(&ks, n), "Current" | "InProgress" | "Failed"),
            "{n}: {ks:?}"
        );
    }
}

/// A ValidatingAdmissionPolicy that refuses the operator's every change to Deployment `name` in
/// `ns`, so its action fails with a 4xx. Returns the names to delete.
fn lock_deployment(ns: &str, name: &str) -> String {
    let vap = format!("e2e-lock-{ns}");
    let yaml = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {vap}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}
    resourceRules:
      - {{apiGroups: [apps], apiVersions: ["*"], operations: [UPDATE], resources: [deployments]}}
  matchConditions:
    - name: the-operator-on-{name}
      expression: "request.userInfo.username == 'system:serviceaccount:homeostat-system:homeostat' && object.metadata.name == '{name}'"
  validations:
    - {{expression: "false", message: "e2e: {name} is locked", reason: Forbidden}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {vap}}}
spec: {{policyName: {vap}, validationActions: [Deny]}}
"#
    );
    let mut child = std::process::Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "the lock applies");
    vap
}

/// Deletes the lock when dropped (also when the test fails).
struct Lock(String);

impl Drop for Lock {
    fn drop(&mut self) {
        unlock(&self.0);
    }
}

fn unlock(vap: &str) {
    for kind in [
        "validatingadmissionpolicybinding",
        "validatingadmissionpolicy",
    ] {
        let _ = std::process::Command::new("kubectl")
            .args(["delete", kind, vap, "--ignore-not-found"])
            .stdout(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kstatus_and_argocd_read_every_incident_end_from_live_objects() {
    let _case = support::matrix::Case::asserted(
        "incident phases read by Flux kstatus and Argo CD",
        "Acting/Verifying InProgress; Succeeded Current; Escalated/Failed Failed",
        "as expected for all 5 phases",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "gitops-rem").await;
    let lock = Lock(lock_deployment(&ns.name, "locked"));
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    for (name, action) in [
        ("fix", "RestartPod"),
        ("esc", "Escalate"),
        ("locked", "RolloutRestart"),
    ] {
        deploy(&env, &ns.name, name, 2, "runaway", &[("sick-after", "5s")]).await;
        apply_policy(
            &env,
            &ns.name,
            &policy_yaml(name, name, &runaway_with(action), FAST_GUARDS),
        )
        .await
        .expect("policy accepted");
    }
    let of = |all: &[Remediation], policy: &str| {
        all.iter().find(|r| r.spec.policy_ref == policy).cloned()
    };
    let phase = |r: &Remediation| r.status.as_ref().map(|s| s.phase);
    // The evicting incident while it is open (verifying for 20 s).
    let open = wait_for("the fix incident open", 180, || async {
        let all = remediations(&env, &ns.name).await;
        of(&all, "fix").filter(|r| matches!(phase(r), Some(Phase::Acting | Phase::Verifying)))
    })
    .await;
    let name = open.metadata.name.clone().unwrap();
    let ks = kstatus(&ns.name, &format!("remediations/{name}")).await;
    let argo = argocd_health::<Remediation>(&env, &ns.name, "remediation.lua").await;
    // Read again: it may have ended between the two reads.
    let still_open = kube::Api::<Remediation>::namespaced(env.client.clone(), &ns.name)
        .get(&name)
        .await
        .ok()
        .and_then(|r| phase(&r))
        .is_some_and(|p| !p.is_terminal());
    if still_open {
        assert_eq!(status_of(&ks, &name), "InProgress", "{ks:?}");
        assert_eq!(status_of(&argo, &name), "Progressing", "{argo:?}");
    } else {
        println!("the incident ended between reads; its open reading is not asserted: {ks:?}");
    }
    let ends = wait_for("every incident ended", 240, || async {
        let all = remediations(&env, &ns.name).await;
        let ends: Vec<(String, Phase)> = ["fix", "esc", "locked"]
            .iter()
            .map(|p| {
                let r = of(&all, p)?;
                let ph = phase(&r).filter(|p| p.is_terminal())?;
                Some((r.metadata.name.clone()?, ph))
            })
            .collect::<Option<_>>()?;
        Some(ends)
    })
    .await;
    drop(lock);
    let ks = kstatus(&ns.name, "remediations").await;
    let argo = argocd_health::<Remediation>(&env, &ns.name, "remediation.lua").await;
    println!("incident ends: {ends:?}\nkstatus: {ks:?}\nargocd: {argo:?}");
    let want = [
        (Phase::Succeeded, "Current", "Healthy"),
        (Phase::Escalated, "Failed", "Degraded"),
        (Phase::Failed, "Failed", "Degraded"),
    ];
    for ((name, phase), (want_phase, k, a)) in ends.iter().zip(want) {
        assert_eq!(*phase, want_phase, "{name}");
        assert_eq!(status_of(&ks, name), k, "kstatus of {name}: {ks:?}");
        assert_eq!(status_of(&argo, name), a, "Argo CD of {name}: {argo:?}");
    }
}
