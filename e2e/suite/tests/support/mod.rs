//! Shared fixtures: namespaces, simulated workloads, policies, operator processes, waiting on conditions.
#![allow(dead_code, clippy::unwrap_used)]

pub mod matrix;
pub mod proxy;
pub mod real;

use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use homeostat::v1alpha1::{Phase, Remediation, RemediationPolicy};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
};
use tokio::process::{Child, Command};

/// Settings of the e2e environment, from variables `e2e/run` exports.
pub struct Env {
    /// Admin client (setup and assertions).
    pub client: Client,
    /// The operator binary.
    pub bin: PathBuf,
    /// Kubeconfig the operator runs with (the chart's ServiceAccount token).
    pub operator_kubeconfig: PathBuf,
    /// Prometheus scraping the simulator.
    pub prometheus_url: String,
    /// Where operator logs go.
    pub log_dir: PathBuf,
}

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the suite through e2e/run"))
}

impl Env {
    /// Reads the environment and connects as admin.
    pub async fn get() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::try_default()
            .await
            .expect("admin kubeconfig (KUBECONFIG)");
        let log_dir = PathBuf::from(var("HOMEOSTAT_E2E_LOGS"));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        Self {
            client,
            bin: PathBuf::from(var("HOMEOSTAT_BIN")),
            operator_kubeconfig: PathBuf::from(var("HOMEOSTAT_E2E_OPERATOR_KUBECONFIG")),
            prometheus_url: var("HOMEOSTAT_E2E_PROMETHEUS_URL"),
            log_dir,
        }
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A namespace of one test, deleted at the end (without waiting).
pub struct TestNs {
    /// The namespace's name.
    pub name: String,
}

impl TestNs {
    /// Creates `e2e-<prefix>-<pid><n>`.
    pub async fn new(env: &Env, prefix: &str) -> Self {
        let name = format!(
            "e2e-{prefix}-{}{}",
            std::process::id() % 10000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .unwrap();
        Api::<Namespace>::all(env.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { name }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if std::env::var("HOMEOSTAT_E2E_KEEP").is_ok() {
            return;
        }
        // Synchronous and quick: the test's runtime may already be gone. The namespace controller
        // finishes the deletion in the background.
        let _ = std::process::Command::new("kubectl")
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Creates a simulated Deployment: `scenario` and extra `homeostat.dev/*` annotations drive the simulator.
pub async fn deploy(
    env: &Env,
    ns: &str,
    name: &str,
    replicas: i32,
    scenario: &str,
    annotations: &[(&str, &str)],
) -> Deployment {
    let mut ann: BTreeMap<String, String> =
        BTreeMap::from([("homeostat.dev/scenario".to_string(), scenario.to_string())]);
    for (k, v) in annotations {
        ann.insert(format!("homeostat.dev/{k}"), (*v).to_string());
    }
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": ann},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"type": "kwok"},
                    "containers": [{
                        "name": "app",
                        "image": "registry.invalid/app:1",
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                            "limits": {"cpu": "1", "memory": "512Mi"}
                        }
                    }]
                }
            }
        }
    }))
    .unwrap();
    let d = Api::<Deployment>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    let want = replicas as usize;
    wait_for(
        &format!("{ns}/{name}: {replicas} pods running"),
        60,
        || async { (running_pods(env, ns, name).await.len() == want).then_some(()) },
    )
    .await;
    d
}

/// Running, non-terminating pods of `app`, oldest first: (name, uid).
pub async fn running_pods(env: &Env, ns: &str, app: &str) -> Vec<(String, String)> {
    let pods = Api::<Pod>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut v: Vec<_> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            (
                p.metadata.creation_timestamp.clone().map(|t| t.0),
                p.name_any(),
                p.uid().unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, n, u)| (n, u)).collect()
}

/// Applies a RemediationPolicy written as YAML (namespace filled in).
pub async fn apply_policy(
    env: &Env,
    ns: &str,
    yaml: &str,
) -> Result<RemediationPolicy, kube::Error> {
    let mut p: RemediationPolicy = serde_saphyr::from_str(yaml).expect("policy YAML parses");
    p.metadata.namespace = Some(ns.to_string());
    Api::<RemediationPolicy>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
}

/// Sends a policy written as YAML to the apiserver as is, without client-side parsing, so the
/// apiserver's own validation is what judges it.
pub async fn apply_raw_policy(env: &Env, ns: &str, yaml: &str) -> Result<(), kube::Error> {
    use kube::{api::DynamicObject, discovery::ApiResource};
    let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("YAML parses");
    let obj: DynamicObject = serde_json::from_value(value).expect("an object");
    let ar = ApiResource::erase::<RemediationPolicy>(&());
    Api::<DynamicObject>::namespaced_with(env.client.clone(), ns, &ar)
        .create(&PostParams::default(), &obj)
        .await
        .map(|_| ())
}

/// Fast settings for e2e: 5 s scrapes, 30 s windows.
pub const FAST_FLAGS: &[&str] = &[
    "--step",
    "5s",
    "--window",
    "30s",
    "--stale-after",
    "20s",
    "--query-timeout",
    "3s",
];

/// A running operator process; killed on drop.
pub struct Operator {
    /// The child process.
    pub child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Operator {
    /// Starts `homeostat run` watching `ns`, as the chart's ServiceAccount.
    pub async fn start(
        env: &Env,
        ns: &str,
        tag: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        Self::start_with_prometheus(env, ns, tag, &env.prometheus_url, extra, envs).await
    }

    /// As [`Operator::start`], reading the Prometheus at `prometheus_url`.
    pub async fn start_with_prometheus(
        env: &Env,
        ns: &str,
        tag: &str,
        prometheus_url: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let log = env.log_dir.join(format!("{ns}-{tag}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let mut cmd = Command::new(&env.bin);
        cmd.arg("run")
            .args(["--namespace", ns])
            .args(["--prometheus-url", prometheus_url])
            .args(["--listen", "127.0.0.1:0"])
            .args(FAST_FLAGS)
            .args(extra)
            .env("KUBECONFIG", &env.operator_kubeconfig)
            .env("RUST_LOG", "info,homeostat=debug")
            .env("POD_NAME", format!("{ns}-{tag}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the operator");
        Self { child, log }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls `f` every second until it yields `Some`, or panics after `secs` naming what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("timed out after {secs}s waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every Remediation in `ns`, oldest first.
pub async fn remediations(env: &Env, ns: &str) -> Vec<Remediation> {
    let mut v = Api::<Remediation>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    v.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
    v
}

/// Waits until some Remediation reaches `phase`; returns it.
pub async fn wait_phase(env: &Env, ns: &str, phase: Phase, secs: u64) -> Remediation {
    wait_for(
        &format!("a Remediation in {ns} reaching {}", phase.as_str()),
        secs,
        || async {
            let all = remediations(env, ns).await;
            if let Some(bad) = all.iter().find(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.phase.is_terminal() && s.phase != phase)
            }) {
                panic!(
                    "Remediation {} ended {:?} while waiting for {}: {:?}",
                    bad.name_any(),
                    bad.status.as_ref().map(|s| s.phase),
                    phase.as_str(),
                    bad.status
                );
            }
            all.into_iter()
                .find(|r| r.status.as_ref().is_some_and(|s| s.phase == phase))
        },
    )
    .await
}

/// The policy as stored.
pub async fn policy(env: &Env, ns: &str, name: &str) -> RemediationPolicy {
    Api::<RemediationPolicy>::namespaced(env.client.clone(), ns)
        .get(name)
        .await
        .expect("policy")
}

/// Ready condition (status, reason) of a policy.
pub fn ready(p: &RemediationPolicy) -> Option<(String, String)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Seconds from the Deployment's fault onset (creation + sick-after) to the first applied action.
pub fn detection_to_action(d: &Deployment, sick_after_s: f64, r: &Remediation) -> Option<f64> {
    let created = d.metadata.creation_timestamp.as_ref()?.0;
    let applied = r
        .status
        .as_ref()?
        .attempts
        .first()?
        .applied_at
        .as_ref()
        .map(|t| t.0)
        .or_else(|| r.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    Some(applied.duration_since(created).as_secs_f64() - sick_after_s)
}

/// A policy with fast e2e timings; `faults` is the YAML list body (indented by 2).
pub fn policy_yaml(name: &str, target: &str, faults: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: homeostat.dev/v1alpha1
kind: RemediationPolicy
metadata:
  name: {name}
spec:
  targetRef: {{kind: Deployment, name: {target}}}
  interval: 5s
  faults:
{faults}
  verify: {{stableFor: 20s, timeout: 60s, maxAttempts: 2}}
{extra}"#
    )
}

/// The fault list most tests use: runaway (restart) with a crash-loop guard.
pub const RUNAWAY_FAULTS: &str = r#"  - name: crashloop
    pattern: CrashLoop
    for: 60s
    params: {restarts: 3, warmup: 10s}
  - name: runaway
    pattern: RunawayProcess
    for: 30s
    params: {warmup: 10s}
    action: {type: RestartPod}"#;

/// Guards for tests: no cooldown interference within one test.
pub const FAST_GUARDS: &str = "  guards: {cooldown: 5m, maxActionsPerHour: 5, maxUnavailable: 1}\n";

/// Creates a Deployment the simulator does not know (no scenario annotation): its pods run on
/// kwok and Prometheus has no series for them.
pub async fn deploy_unsimulated(env: &Env, ns: &str, name: &str, replicas: i32) {
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"type": "kwok"},
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}]
                }
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    wait_for(
        &format!("{ns}/{name}: {replicas} pods running"),
        60,
        || async { (running_pods(env, ns, name).await.len() == replicas as usize).then_some(()) },
    )
    .await;
}

/// How Flux's kstatus library (`e2e/kstatus`, built by `e2e/kstatus/build`, path in
/// `HOMEOSTAT_E2E_KSTATUS`) reads the live objects of `resource` in `ns`, through the admin
/// kubeconfig: name → (status, message).
pub async fn kstatus(ns: &str, resource: &str) -> BTreeMap<String, (String, String)> {
    let bin = var("HOMEOSTAT_E2E_KSTATUS");
    let out = Command::new(&bin)
        .args([
            "-kubeconfig",
            &var("KUBECONFIG"),
            "-namespace",
            ns,
            resource,
        ])
        .output()
        .await
        .expect("run e2e/kstatus");
    assert!(
        out.status.success(),
        "{bin} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("name"), (s("status"), s("message")))
        })
        .collect()
}

/// A JSON value as a Lua table constructor (strings escaped as Lua 5.4 reads them).
fn lua(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Argo CD's health of each live object of kind `K` in `ns`, by the chart's Lua check
/// (`charts/homeostat/argocd/<script>`, run by its test harness with `lua5.4`): name → (status,
/// message).
pub async fn argocd_health<K>(
    env: &Env,
    ns: &str,
    script: &str,
) -> BTreeMap<String, (String, String)>
where
    K: kube::Resource<DynamicType = ()>,
{
    use kube::{api::DynamicObject, discovery::ApiResource};
    let repo = PathBuf::from(var("HOMEOSTAT_E2E_REPO"));
    let dir = repo.join("charts/homeostat/argocd");
    let ar = ApiResource::erase::<K>(&());
    let objs = Api::<DynamicObject>::namespaced_with(env.client.clone(), ns, &ar)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    let mut out = BTreeMap::new();
    for o in objs {
        let v = serde_json::to_value(&o).unwrap();
        let name = o.metadata.name.clone().unwrap_or_default();
        let file = env.log_dir.join(format!("{ns}-{name}.lua"));
        std::fs::write(&file, format!("return {}\n", lua(&v))).expect("write the object");
        let run = Command::new("lua5.4")
            .arg(dir.join("test.lua"))
            .arg(script)
            .arg(&file)
            .output()
            .await
            .expect("lua5.4 (apt-get install lua5.4)");
        assert!(
            run.status.success(),
            "the Argo CD check {script} failed on {name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let text = String::from_utf8_lossy(&run.stdout).trim().to_string();
        let (status, message) = text.split_once('\t').unwrap_or((&text, ""));
        out.insert(name, (status.to_string(), message.to_string()));
    }
    out
}

/// A condition of a policy: (status, reason).
pub fn condition(p: &RemediationPolicy, t: &str) -> Option<(String, String)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone()))
}
/// An instant query against the suite's Prometheus; (labels, value) per series.
pub async fn prom_query(env: &Env, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let url = format!("{}/api/v1/query", env.prometheus_url);
    let body: serde_json::Value = reqwest::Client::new()
        .get(url)
        .query(&[("query", q)])
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("Prometheus query {q}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("Prometheus query {q}: the answer is not JSON: {e}"));
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let labels = serde_json::from_value(s["metric"].clone()).unwrap_or_default();
            let v = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (labels, v)
        })
        .collect()
}
