//! The fault matrix (issue 13): the operator killed at each step of an incident's lifecycle for
//! each action kind, Prometheus slow, partial and warning, node clock skew, a flapping signal and
//! a target deleted and recreated mid-incident. Each case asserts the safe outcome (acts exactly
//! once or not at all, never twice; the incident ends in a recorded phase) from the apiserver and
//! from Prometheus, and records a row of the table `e2e/run` prints at the end
//! (`support::matrix`). The apiserver restart is in `matrix_apiserver.rs`, a binary of its own,
//! because it disturbs every other test.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use homeostat::v1alpha1::{AttemptResult, Phase, Remediation};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use support::{matrix::Case, proxy::SlowProxy, *};

/// The action kinds, each with the scenario it heals and the phase a healed incident ends in.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A runaway pod, evicted; Succeeded.
    Evict,
    /// Contention on 2 replicas, scaled to 4; Succeeded.
    Scale,
    /// A memory threshold no restart fixes, one rollout restart; Escalated.
    RolloutRestart,
}

impl Kind {
    fn end(self) -> Phase {
        match self {
            Kind::Evict | Kind::Scale => Phase::Succeeded,
            Kind::RolloutRestart => Phase::Escalated,
        }
    }

    /// Creates the workload and returns the policy YAML.
    async fn setup(self, env: &Env, ns: &str) -> String {
        match self {
            Kind::Evict => {
                deploy(env, ns, "web", 3, "runaway", &[("sick-after", "5s")]).await;
                policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS)
            }
            Kind::Scale => {
                deploy(
                    env,
                    ns,
                    "web",
                    2,
                    "contention",
                    &[("load", "3"), ("sick-after", "0s")],
                )
                .await;
                let faults = r#"  - name: contention
    pattern: ResourceContention
    for: 30s
    params: {warmup: 10s}
    action: {type: Scale, scale: {step: 2, maxReplicas: 5}}"#;
                policy_yaml("web", "web", faults, FAST_GUARDS)
            }
            Kind::RolloutRestart => {
                deploy(env, ns, "web", 2, "healthy", &[]).await;
                rollout_policy("")
            }
        }
    }
}

/// A Threshold on memory that healthy simulated pods exceed (30 % of 512Mi > 100 MB), so the
/// rollout restart never clears it and the incident escalates after one attempt. `extra` is
/// appended to the signal's PromQL.
fn rollout_policy(extra: &str) -> String {
    let signals = format!(
        r#"  signals:
    - name: memory
      query: 'max by (pod) (container_memory_working_set_bytes{{namespace="{{{{ namespace }}}}", pod=~"{{{{ pods }}}}"}}){extra}'
"#
    );
    let faults = r#"  - name: fat
    pattern: Threshold
    signal: memory
    condition: {op: ">", value: 100000000}
    for: 20s
    action: {type: RolloutRestart}"#;
    policy_yaml("web", "web", faults, &format!("{signals}{FAST_GUARDS}"))
        .replace("maxAttempts: 2", "maxAttempts: 1")
        .replace("timeout: 60s", "timeout: 40s")
}

/// What the apiserver shows was done to the workload, against the state before the incident.
struct Done {
    /// Original pods no longer running.
    evicted: Vec<String>,
    replicas: i32,
    /// ReplicaSets of the Deployment (1 + one per rollout).
    replicasets: usize,
    restarted_at: Option<String>,
}

async fn done(env: &Env, ns: &str, before: &[(String, String)]) -> Done {
    let after = running_pods(env, ns, "web").await;
    let evicted = before
        .iter()
        .filter(|p| !after.contains(p))
        .map(|p| p.0.clone())
        .collect();
    let dep = Api::<Deployment>::namespaced(env.client.clone(), ns)
        .get("web")
        .await
        .unwrap();
    let replicasets = Api::<ReplicaSet>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .len();
    let spec = dep.spec.unwrap();
    Done {
        evicted,
        replicas: spec.replicas.unwrap_or(1),
        replicasets,
        restarted_at: spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| a.get("kubectl.kubernetes.io/restartedAt").cloned()),
    }
}

/// Incidents and applied (or resumed) attempts in `ns`.
fn summary(rems: &[Remediation]) -> String {
    rems.iter()
        .map(|r| {
            let s = r.status.clone().unwrap_or_default();
            let attempts: Vec<_> = s
                .attempts
                .iter()
                .map(|a| format!("{}:{:?}", a.action.as_str(), a.result))
                .collect();
            format!("{} [{}]", s.phase.as_str(), attempts.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Kills the operator at `failpoint` (it exits there, as if killed), starts a fresh one and
/// checks the incident ends as it should with the action taken exactly once.
async fn killed_at(kind: Kind, failpoint: &str) {
    let mut case = Case::new(
        &format!("operator killed at {failpoint} ({kind:?})"),
        &format!("resumes, acts once, {}", kind.end().as_str()),
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-kill").await;
    let yaml = kind.setup(&env, &ns.name).await;
    let before = running_pods(&env, &ns.name, "web").await;
    let mut op = Operator::start(
        &env,
        &ns.name,
        "first",
        &[],
        &[("HOMEOSTAT_FAILPOINT", failpoint)],
    )
    .await;
    apply_policy(&env, &ns.name, &yaml).await.unwrap();
    // The operator reaches the failpoint, or (a failpoint this path never passes) ends the
    // incident unharmed: both are told apart below.
    let start = Instant::now();
    let exited = loop {
        if let Ok(Some(status)) = op.child.try_wait() {
            break Some(status);
        }
        let ended = remediations(&env, &ns.name)
            .await
            .iter()
            .any(|r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()));
        if ended {
            break None;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "timed out after 240s waiting for the operator to reach {failpoint}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let Some(status) = exited else {
        case.observed(
            "the failpoint was never reached: the incident ended first",
            false,
        );
        panic!("{failpoint} never reached on the {kind:?} path");
    };
    assert_eq!(
        status.code(),
        Some(homeostat::failpoint::EXIT_CODE),
        "{}",
        op.log_text()
    );
    let mid = remediations(&env, &ns.name).await;
    let at_kill = summary(&mid);

    let _op2 = Operator::start(&env, &ns.name, "second", &[], &[]).await;
    let r = wait_for(
        &format!("the incident ending after {failpoint}"),
        240,
        || async {
            remediations(&env, &ns.name)
                .await
                .into_iter()
                .find(|r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        },
    )
    .await;
    // Let a wrong second action show itself before counting.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let all = remediations(&env, &ns.name).await;
    let s = r.status.clone().unwrap();
    let d = done(&env, &ns.name, &before).await;
    let applied = s
        .attempts
        .iter()
        .filter(|a| a.result == AttemptResult::Applied)
        .count();
    let (acted, once) = match kind {
        Kind::Evict => (
            format!("evicted {:?} (implicated {:?})", d.evicted, r.spec.pods),
            d.evicted.len() == 1 && d.evicted == r.spec.pods,
        ),
        Kind::Scale => (format!("replicas 2→{}", d.replicas), d.replicas == 4),
        Kind::RolloutRestart => (
            format!("{} rollout(s)", d.replicasets.saturating_sub(1)),
            d.replicasets == 2
                && d.restarted_at.is_some()
                && d.restarted_at == s.attempts.first().and_then(|a| a.restarted_at.clone()),
        ),
    };
    // Prometheus: the healed workload's pods are what the apiserver says.
    let series = prom_query(
        &env,
        &format!(
            r#"count(max by (pod) (container_memory_working_set_bytes{{namespace="{}"}}))"#,
            ns.name
        ),
    )
    .await;
    let observed = format!(
        "killed with {at_kill}; resumed: {} with {} attempt(s), {acted}, {} incident(s), {} pod series in Prometheus",
        s.phase.as_str(),
        s.attempts.len(),
        all.len(),
        series.first().map_or(0.0, |x| x.1)
    );
    let pass =
        s.phase == kind.end() && s.attempts.len() == 1 && applied == 1 && once && all.len() == 1;
    assert!(case.observed(&observed, pass), "{observed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_opened_evict() {
    killed_at(Kind::Evict, "after-opened").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_pending_saved_evict() {
    killed_at(Kind::Evict, "after-pending-saved").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_action_evict() {
    killed_at(Kind::Evict, "after-action").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_outcome_saved_evict() {
    killed_at(Kind::Evict, "after-outcome-saved").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_during_verification_evict() {
    killed_at(Kind::Evict, "before-saving-Verifying").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_before_success_saved_evict() {
    killed_at(Kind::Evict, "before-saving-Succeeded").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_pending_saved_scale() {
    killed_at(Kind::Scale, "after-pending-saved").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_action_scale() {
    killed_at(Kind::Scale, "after-action").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_outcome_saved_scale() {
    killed_at(Kind::Scale, "after-outcome-saved").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_pending_saved_rollout() {
    killed_at(Kind::RolloutRestart, "after-pending-saved").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_action_rollout() {
    killed_at(Kind::RolloutRestart, "after-action").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_before_escalation_saved_rollout() {
    killed_at(Kind::RolloutRestart, "before-saving-Escalated").await;
}

/// What a runaway case may end with.
#[derive(Clone, Copy, PartialEq)]
enum Safe {
    /// The runaway pod evicted once, the incident Succeeded.
    ActsOnce,
    /// Nothing done, no incident.
    NoAction,
    /// Either of the above (the fault may or may not be visible), never a sibling.
    AtMostOnce,
}

/// A runaway Deployment with extra simulator annotations, an operator with `prom_url` (default:
/// the suite's Prometheus), watched for `secs`; returns the row's observation and verdict.
async fn runaway_case(
    env: &Env,
    ns: &str,
    annotations: &[(&str, &str)],
    safe: Safe,
    secs: u64,
) -> (String, bool) {
    let mut ann = vec![("sick-after", "5s")];
    ann.extend_from_slice(annotations);
    deploy(env, ns, "web", 3, "runaway", &ann).await;
    let before = running_pods(env, ns, "web").await;
    apply_policy(
        env,
        ns,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .unwrap();
    let start = Instant::now();
    let ended = loop {
        let rems = remediations(env, ns).await;
        if rems
            .iter()
            .any(|r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        {
            break true;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            break false;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    if ended {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let rems = remediations(env, ns).await;
    let d = done(env, ns, &before).await;
    let p = policy(env, ns, "web").await;
    let verdicts: Vec<String> = p
        .status
        .as_ref()
        .and_then(|s| s.last_evaluation.as_ref())
        .map(|e| {
            e.verdicts
                .iter()
                .map(|v| format!("{}={:?}", v.fault, v.verdict))
                .collect()
        })
        .unwrap_or_default();
    let acted_once = rems.len() == 1
        && rems[0]
            .status
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Succeeded && s.attempts.len() == 1)
        && d.evicted.len() == 1
        && d.evicted == rems[0].spec.pods;
    // "Nothing done" counts only from an operator that evaluated the policy.
    let nothing = rems.is_empty() && d.evicted.is_empty() && ready(&p).is_some();
    let pass = match safe {
        Safe::ActsOnce => acted_once,
        Safe::NoAction => nothing,
        Safe::AtMostOnce => acted_once || nothing,
    };
    let observed = if rems.is_empty() {
        format!(
            "no incident in {}s, evicted {:?}; Ready {:?}, verdicts {verdicts:?}",
            start.elapsed().as_secs(),
            d.evicted,
            ready(&p)
        )
    } else {
        format!(
            "{} incident(s): {}; evicted {:?} (implicated {:?})",
            rems.len(),
            summary(&rems),
            d.evicted,
            rems[0].spec.pods
        )
    };
    (observed, pass)
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_slower_than_the_query_timeout() {
    let mut case = Case::new(
        "Prometheus slow (answers 5 s after a 3 s query timeout), then fast",
        "no action while slow, Ready=False says why; acts once when fast",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-slow").await;
    let upstream = env.prometheus_url.trim_start_matches("http://").to_string();
    let proxy = SlowProxy::start(&upstream, Duration::from_secs(5)).await;
    let url = proxy.url();
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let before = running_pods(&env, &ns.name, "web").await;
    let _op = Operator::start_with_prometheus(&env, &ns.name, "op", &url, &[], &[]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .unwrap();
    let (status, reason) = wait_for("Ready=False while Prometheus is slow", 90, || async {
        ready(&policy(&env, &ns.name, "web").await).filter(|r| r.0 == "False")
    })
    .await;
    // Slow past the fault's onset and its `for`: nothing may be done on no data.
    tokio::time::sleep(Duration::from_secs(50)).await;
    let while_slow = remediations(&env, &ns.name).await.len();
    let untouched = running_pods(&env, &ns.name, "web").await == before;
    proxy.set_delay(Duration::ZERO);
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    let d = done(&env, &ns.name, &before).await;
    let all = remediations(&env, &ns.name).await;
    let attempts = r.status.clone().unwrap().attempts.len();
    let observed = format!(
        "while slow: Ready={status}/{reason}, {while_slow} incident(s), pods untouched={untouched}; fast: Succeeded, {attempts} attempt(s), evicted {:?}, {} incident(s)",
        d.evicted,
        all.len()
    );
    let pass = status == "False"
        && while_slow == 0
        && untouched
        && attempts == 1
        && d.evicted.len() == 1
        && d.evicted == r.spec.pods
        && all.len() == 1;
    assert!(case.observed(&observed, pass), "{observed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_partial_a_sibling_without_series() {
    let mut case = Case::new(
        "Prometheus partial (the youngest sibling has no cAdvisor series)",
        "acts once on the runaway pod or not at all; never a sibling",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-partial").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let (observed, pass) = runaway_case(
        &env,
        &ns.name,
        &[("unexported-pods", "1")],
        Safe::AtMostOnce,
        150,
    )
    .await;
    assert!(case.observed(&observed, pass), "{observed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_partial_the_runaway_without_series() {
    let mut case = Case::new(
        "Prometheus partial (both siblings lack cAdvisor series; the runaway is seen alone)",
        "acts once on the runaway pod or not at all; never a sibling",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-partial2").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let (observed, pass) = runaway_case(
        &env,
        &ns.name,
        &[("unexported-pods", "2")],
        Safe::AtMostOnce,
        120,
    )
    .await;
    assert!(case.observed(&observed, pass), "{observed}");
}

/// A Prometheus of the case's own (Debian's, as the suite's) scraping the simulator every 5 s,
/// with `extra` appended to its config; killed on drop.
struct SideProm {
    child: tokio::process::Child,
    url: String,
}

impl SideProm {
    async fn start(env: &Env, name: &str, extra: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = env.log_dir.join(format!("prometheus-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sim = std::env::var("HOMEOSTAT_E2E_SIM_ADDR").expect("HOMEOSTAT_E2E_SIM_ADDR");
        let cfg = format!(
            "global: {{scrape_interval: 5s, evaluation_interval: 5s}}\nscrape_configs:\n- job_name: homeostat\n  static_configs:\n  - targets: ['{sim}']\n{extra}"
        );
        std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = tokio::process::Command::new("/usr/bin/prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start /usr/bin/prometheus");
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        wait_for(&format!("the case's Prometheus at {url}"), 60, || async {
            reqwest::get(&ready)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        Self { child, url }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_answers_with_warnings() {
    let mut case = Case::new(
        "Prometheus answers with warnings (its remote_read fails: every answer says it may be incomplete)",
        "acts once on the runaway pod or not at all; never twice, never a sibling",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-warn").await;
    let side = SideProm::start(
        &env,
        &ns.name,
        "remote_read:\n- {url: 'http://127.0.0.1:9/api/v1/read', read_recent: true}\n",
    )
    .await;
    let probe = reqwest::Client::new()
        .get(format!("{}/api/v1/query", side.url))
        .query(&[("query", "up")])
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let warned = probe["warnings"].as_array().is_some_and(|w| !w.is_empty());
    let op = Operator::start_with_prometheus(&env, &ns.name, "op", &side.url, &[], &[]).await;
    let (observed, pass) = runaway_case(&env, &ns.name, &[], Safe::AtMostOnce, 150).await;
    let logged = op.log_text().to_lowercase().contains("warning");
    let observed = format!(
        "answers carry warnings={warned}; {observed}; the operator log mentions them={logged}"
    );
    drop(side.child);
    assert!(case.observed(&observed, pass && warned), "{observed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_clock_behind_prometheus() {
    let mut case = Case::new(
        "clock skew: node 60 s behind (cAdvisor samples stamped 60 s in the past)",
        "samples read as stale: no action",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-behind").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let (observed, pass) = runaway_case(
        &env,
        &ns.name,
        &[("clock-offset", "-60s")],
        Safe::NoAction,
        120,
    )
    .await;
    assert!(case.observed(&observed, pass), "{observed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_clock_ahead_of_prometheus() {
    let mut case = Case::new(
        "clock skew: node 20 s ahead (cAdvisor samples stamped 20 s in the future)",
        "acts once on the runaway pod (on data 20 s late), never twice",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-ahead").await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let (observed, pass) = runaway_case(
        &env,
        &ns.name,
        &[("clock-offset", "+20s")],
        Safe::ActsOnce,
        240,
    )
    .await;
    assert!(case.observed(&observed, pass), "{observed}");
}

/// libfaketime (Debian's libfaketime): the operator's wall clock offset, its monotonic clock
/// (tokio's timers) left alone.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

async fn operator_clock_case(offset: &str, expected: &str) {
    let mut case = Case::new(
        &format!("clock skew: operator clock {offset} from Prometheus' (libfaketime)"),
        expected,
    );
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} missing: e2e/cluster/build installs Debian's libfaketime"
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-opclock").await;
    let _op = Operator::start(
        &env,
        &ns.name,
        "op",
        &[],
        &[
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME", offset),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    )
    .await;
    let (observed, pass) = runaway_case(&env, &ns.name, &[], Safe::AtMostOnce, 240).await;
    assert!(case.observed(&observed, pass), "{observed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_clock_behind_prometheus() {
    operator_clock_case(
        "-45s",
        "acts at most once, on the runaway pod (it reads data 45 s old), never twice",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_clock_ahead_of_prometheus() {
    operator_clock_case(
        "+45s",
        "acts at most once, on the runaway pod (its windows end in Prometheus' future), never twice",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flapping_signal_shorter_than_for() {
    let mut case = Case::new(
        "flapping signal (contention 15 s on, 25 s off, 5 times; for: 30s)",
        "no incident, no scale",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-flap").await;
    deploy(&env, &ns.name, "web", 2, "burst", &[("sick-after", "0s")]).await;
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    let faults = r#"  - name: contention
    pattern: ResourceContention
    for: 30s
    params: {warmup: 10s}
    action: {type: Scale, scale: {step: 2, maxReplicas: 5}}"#;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", faults, FAST_GUARDS),
    )
    .await
    .unwrap();
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), &ns.name);
    let mut saw_contention = false;
    for i in 0..5 {
        // A changed annotation restarts the simulation: a new 15 s burst begins now.
        let patch = serde_json::json!({"metadata": {"annotations": {
            "homeostat.dev/sick-after": if i % 2 == 0 { "0s" } else { "0.1s" }
        }}});
        deployments
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        // The signal's period, not a wait on a condition.
        tokio::time::sleep(Duration::from_secs(40)).await;
        let q = format!(
            r#"max_over_time((sum(rate(container_cpu_cfs_throttled_periods_total{{namespace="{}"}}[15s])) / sum(rate(container_cpu_cfs_periods_total{{namespace="{}"}}[15s])))[40s:5s])"#,
            ns.name, ns.name
        );
        saw_contention |= prom_query(&env, &q)
            .await
            .first()
            .is_some_and(|x| x.1 > 0.3);
    }
    let rems = remediations(&env, &ns.name).await;
    let replicas = done(&env, &ns.name, &[]).await.replicas;
    let observed = format!(
        "throttling seen in Prometheus={saw_contention}; {} incident(s) {}; replicas {replicas}",
        rems.len(),
        summary(&rems)
    );
    let pass = saw_contention && rems.is_empty() && replicas == 2;
    assert!(case.observed(&observed, pass), "{observed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn target_deleted_and_recreated_mid_incident() {
    let mut case = Case::new(
        "target deleted and recreated mid-incident (eviction blocked by a PDB, then both deleted; same name, healthy)",
        "no pod of the new Deployment touched; the incident ends in a recorded phase",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "mx-recreate").await;
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    let pdbs = Api::<PodDisruptionBudget>::namespaced(env.client.clone(), &ns.name);
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let _op = Operator::start(&env, &ns.name, "op", &[], &[]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .unwrap();
    wait_for("an eviction blocked by the PDB", 240, || async {
        remediations(&env, &ns.name).await.into_iter().find(|r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Phase::Acting
                    && s.attempts
                        .last()
                        .is_some_and(|a| a.result == AttemptResult::Blocked)
            })
        })
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), &ns.name);
    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    pdbs.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for("the old Deployment and its pods gone", 90, || async {
        let gone = deployments.get_opt("web").await.ok()?.is_none();
        (gone && running_pods(&env, &ns.name, "web").await.is_empty()).then_some(())
    })
    .await;
    deploy(&env, &ns.name, "web", 3, "healthy", &[]).await;
    let fresh = running_pods(&env, &ns.name, "web").await;
    let r = wait_for("the incident ending", 240, || async {
        remediations(&env, &ns.name)
            .await
            .into_iter()
            .find(|r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let d = done(&env, &ns.name, &fresh).await;
    let all = remediations(&env, &ns.name).await;
    let s = r.status.unwrap();
    let observed = format!(
        "{} ({}); attempts {:?}; pods of the new Deployment evicted {:?}; {} incident(s)",
        s.phase.as_str(),
        s.message,
        s.attempts.iter().map(|a| a.result).collect::<Vec<_>>(),
        d.evicted,
        all.len()
    );
    let pass = s.phase.is_terminal()
        && d.evicted.is_empty()
        && !s
            .attempts
            .iter()
            .any(|a| a.result == AttemptResult::Applied)
        && all.len() == 1;
    assert!(case.observed(&observed, pass), "{observed}");
}
