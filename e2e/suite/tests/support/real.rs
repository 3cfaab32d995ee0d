//! The real node's fixtures: workloads of the workload image driven through control files,
//! Prometheus queries and recordings of the real series.

use std::{collections::BTreeMap, path::PathBuf};

use homeostat::v1alpha1::{Remediation, RemediationPolicy};
use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Event, Pod},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};

use super::*;

/// The real node's settings, from `e2e/stack`'s environment; a missing one is a failure with the
/// reason, never a skip.
pub struct Real {
    /// The suite's settings.
    pub env: Env,
    /// The workload image.
    pub image: String,
    /// The real node's state directory.
    pub node_dir: PathBuf,
}

impl Real {
    pub async fn get() -> Self {
        let on = std::env::var("HOMEOSTAT_E2E_REAL_NODE").unwrap_or_default();
        assert_eq!(
            on, "1",
            "the real-node scenarios need the stack's real node (HOMEOSTAT_E2E_REAL_NODE=1, the default of e2e/cluster/up); \
             it is {on:?}: see $HOMEOSTAT_E2E_DIR/logs for why it did not start"
        );
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run through e2e/run"))
        };
        Self {
            env: Env::get().await,
            image: var("HOMEOSTAT_IMAGE_WORKLOAD"),
            node_dir: PathBuf::from(var("HOMEOSTAT_E2E_NODE_DIR")),
        }
    }

    /// Host directory of a Deployment's control files (mounted at /control in its pods).
    pub fn control(&self, ns: &str, name: &str) -> PathBuf {
        self.node_dir.join("control").join(ns).join(name)
    }

    /// Writes KEY=VALUE settings for one pod (`<pod>.env`) or all of them (`default.env`).
    pub fn set(&self, ns: &str, name: &str, file: &str, settings: &str) {
        let dir = self.control(ns, name);
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, settings).unwrap();
        std::fs::rename(&tmp, dir.join(file)).unwrap();
    }

    /// Empties a scenario namespace (left over by a KEEP=1 run) and its control files.
    pub async fn fresh(&self, ns: &str) {
        let c = self.env.client.clone();
        let dp = DeleteParams::default();
        let lp = ListParams::default();
        let _ = Api::<RemediationPolicy>::namespaced(c.clone(), ns)
            .delete_collection(&dp, &lp)
            .await;
        let _ = Api::<Remediation>::namespaced(c.clone(), ns)
            .delete_collection(&dp, &lp)
            .await;
        let _ = Api::<Deployment>::namespaced(c.clone(), ns)
            .delete_collection(&dp, &lp)
            .await;
        let pods = Api::<Pod>::namespaced(c, ns);
        wait_for(&format!("{ns} empty of pods"), 90, || async {
            pods.list(&lp)
                .await
                .ok()
                .filter(|l| l.items.is_empty())
                .map(|_| ())
        })
        .await;
        let _ = std::fs::remove_dir_all(self.node_dir.join("control").join(ns));
    }

    /// A Deployment of the workload image on the real node, `settings` as its environment.
    pub async fn deploy(
        &self,
        ns: &str,
        name: &str,
        replicas: i32,
        cpu: &str,
        memory: &str,
        settings: &[(&str, &str)],
    ) -> Deployment {
        self.deploy_with(ns, name, replicas, ("20m", "16Mi"), (cpu, memory), settings)
            .await
    }

    /// As [`Real::deploy`], with the requests given too (`requests == limits`: Guaranteed QoS).
    pub async fn deploy_with(
        &self,
        ns: &str,
        name: &str,
        replicas: i32,
        requests: (&str, &str),
        limits: (&str, &str),
        settings: &[(&str, &str)],
    ) -> Deployment {
        let (cpu, memory) = limits;
        let control = self.control(ns, name);
        std::fs::create_dir_all(&control).unwrap();
        let mut env: Vec<serde_json::Value> = vec![
            serde_json::json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
            serde_json::json!({"name": "CONTROL_DIR", "value": "/control"}),
        ];
        env.extend(
            settings
                .iter()
                .map(|(k, v)| serde_json::json!({"name": k, "value": v})),
        );
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
                        "nodeSelector": {"homeostat.dev/node": "real"},
                        "tolerations": [{"key": "homeostat.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
                        "terminationGracePeriodSeconds": 2,
                        "enableServiceLinks": false,
                        "containers": [{
                            "name": "app",
                            "image": self.image,
                            "imagePullPolicy": "Never",
                            "env": env,
                            "resources": {
                                "requests": {"cpu": requests.0, "memory": requests.1},
                                "limits": {"cpu": cpu, "memory": memory}
                            },
                            "volumeMounts": [{"name": "control", "mountPath": "/control"}]
                        }],
                        "volumes": [{"name": "control", "hostPath": {"path": control, "type": "DirectoryOrCreate"}}]
                    }
                }
            }
        }))
        .unwrap();
        let d = Api::<Deployment>::namespaced(self.env.client.clone(), ns)
            .create(&PostParams::default(), &d)
            .await
            .expect("create deployment");
        let want = replicas as usize;
        wait_for(
            &format!("{ns}/{name}: {replicas} real pods running"),
            90,
            || async { (running_pods(&self.env, ns, name).await.len() == want).then_some(()) },
        )
        .await;
        d
    }

    /// An instant query; (labels, value) per series.
    pub async fn query(&self, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        prom_query(&self.env, q).await
    }

    /// One value per pod of a query grouped by pod.
    pub async fn per_pod(&self, q: &str) -> BTreeMap<String, f64> {
        self.query(q)
            .await
            .into_iter()
            .filter_map(|(l, v)| Some((l.get("pod")?.clone(), v)))
            .collect()
    }

    /// Dumps the raw samples of the real series of `ns` since `from` as OpenMetrics text, when
    /// HOMEOSTAT_E2E_RECORD_DIR is set (see tests/fixtures/realnode/README.md).
    pub async fn record(&self, scenario: &str, ns: &str, from: Timestamp) {
        let Ok(dir) = std::env::var("HOMEOSTAT_E2E_RECORD_DIR") else {
            return;
        };
        let names = [
            "container_cpu_usage_seconds_total",
            "container_cpu_cfs_periods_total",
            "container_cpu_cfs_throttled_periods_total",
            "container_memory_working_set_bytes",
            "container_spec_cpu_quota",
            "container_spec_memory_limit_bytes",
            "kube_pod_container_resource_limits",
            "kube_pod_container_resource_requests",
            "kube_pod_container_status_restarts_total",
            "kube_pod_container_status_last_terminated_reason",
            "kube_pod_container_status_waiting_reason",
            "kube_pod_owner",
            "kube_pod_start_time",
            "kube_pod_status_phase",
            "kube_replicaset_owner",
        ];
        // A range selector at one instant returns the raw samples with their own timestamps
        // (cAdvisor's explicit ones), not a query_range's step-aligned evaluations.
        let url = format!("{}/api/v1/query", self.env.prometheus_url);
        let end = Timestamp::now();
        let span = end.as_second() - from.as_second() + 15;
        let mut out = String::new();
        for name in names {
            let sel = format!(r#"{name}{{namespace="{ns}"}}[{span}s]"#);
            let body: serde_json::Value = match reqwest::Client::new()
                .get(&url)
                .query(&[
                    ("query", sel.as_str()),
                    ("time", &end.as_second().to_string()),
                ])
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(e) => panic!("recording {name}: {e}"),
            };
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let family = name.strip_suffix("_total").unwrap_or(name);
            out.push_str(&format!("# TYPE {family} {kind}\n"));
            for s in body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(s["metric"].clone()).unwrap_or_default();
                let l = labels
                    .iter()
                    .filter(|(k, _)| *k != "__name__")
                    .map(|(k, v)| {
                        format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                for p in s["values"].as_array().cloned().unwrap_or_default() {
                    let t = p[0].as_f64().unwrap_or_default();
                    let v = p[1].as_str().unwrap_or("NaN");
                    out.push_str(&format!("{name}{{{l}}} {v} {t:.3}\n"));
                }
            }
        }
        out.push_str("# EOF\n");
        let path = PathBuf::from(dir).join(format!("{scenario}.om.txt"));
        std::fs::write(&path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!(
            "recorded the real series of {scenario} to {}",
            path.display()
        );
    }

    /// Events in `ns` about Remediations or pods, as "reason: message" lines.
    pub async fn events(&self, ns: &str) -> Vec<String> {
        Api::<Event>::namespaced(self.env.client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e.involved_object.kind.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Policy with the e2e timings in the open: 5 s interval, 30 s `for`, short verification.
pub fn real_policy(name: &str, faults: &str, guards: &str) -> String {
    format!(
        r#"apiVersion: homeostat.dev/v1alpha1
kind: RemediationPolicy
metadata:
  name: {name}
spec:
  targetRef: {{kind: Deployment, name: {name}}}
  interval: 5s
  faults:
{faults}
  verify: {{stableFor: 20s, timeout: 90s, maxAttempts: 2}}
{guards}"#
    )
}

pub const GUARDS: &str = "  guards: {cooldown: 10m, maxActionsPerHour: 5, maxUnavailable: 1}\n";

pub const CRASHLOOP_GUARD: &str = r#"  - name: crashloop
    pattern: CrashLoop
    for: 60s
    params: {restarts: 3, warmup: 10s}"#;
