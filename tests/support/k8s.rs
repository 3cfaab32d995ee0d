//! cAdvisor and kube-state-metrics series of simulated pods, named and labelled as
//! kube-prometheus-stack scrapes them (the names `homeostat::diagnosis::fetch` queries).

use super::SeriesData;

/// CFS periods per second (the default 100 ms period).
pub const CFS_PERIODS_PER_SEC: f64 = 10.0;

/// One pod (one container, `app`).
#[derive(Clone, Debug)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// `ReplicaSet` or `StatefulSet`.
    pub owner_kind: &'static str,
    /// The owning ReplicaSet or StatefulSet.
    pub owner_name: String,
    /// Node (the cAdvisor `instance`).
    pub node: String,
    /// When the pod started (the value of `kube_pod_start_time`); no samples before.
    pub start: f64,
    /// When it was deleted; no samples from then on.
    pub end: Option<f64>,
    /// CPU limit (cores); no CFS series without one.
    pub cpu_limit: Option<f64>,
    /// Memory limit (bytes).
    pub memory_limit: Option<f64>,
}

impl Pod {
    /// A ReplicaSet pod with a 1-core, 512 MiB limit, started at `start`.
    pub fn of_replicaset(namespace: &str, replicaset: &str, suffix: &str, start: f64) -> Self {
        Self {
            namespace: namespace.into(),
            name: format!("{replicaset}-{suffix}"),
            owner_kind: "ReplicaSet",
            owner_name: replicaset.into(),
            node: "node-1".into(),
            start,
            end: None,
            cpu_limit: Some(1.0),
            memory_limit: Some(512.0 * 1024.0 * 1024.0),
        }
    }
}

/// What a pod does at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PodState {
    /// CPU cores in use.
    pub cpu: f64,
    /// Fraction of CFS periods throttled (0..1).
    pub throttle: f64,
    /// Working-set bytes.
    pub memory: f64,
    /// Container restarts so far (kube-state-metrics' counter); an increase resets the container's
    /// cAdvisor counters, as a new container starts from zero.
    pub restarts: u32,
}

/// When samples are taken.
#[derive(Clone, Copy, Debug)]
pub struct Scrape {
    /// First possible sample time.
    pub from: f64,
    /// Samples strictly before this.
    pub to: f64,
    /// Seconds between scrapes.
    pub interval: f64,
    /// Offset of this target's scrapes within the interval (seconds).
    pub offset: f64,
}

impl Scrape {
    /// Scrape times within `[max(from, a), min(to, b))`.
    pub fn times(&self, a: f64, b: f64) -> impl Iterator<Item = f64> + '_ {
        let lo = self.from.max(a);
        let hi = self.to.min(b);
        let first = ((lo - self.from - self.offset) / self.interval)
            .ceil()
            .max(0.0) as i64;
        (first..)
            .map(move |k| self.from + self.offset + k as f64 * self.interval)
            .take_while(move |t| *t < hi)
    }
}

/// Options of [`pod_series`].
#[derive(Clone, Copy, Debug)]
pub struct Emit {
    /// Also write cAdvisor's pod-level (`container=""`) and pause-container (`container="POD"`)
    /// series, which the standard queries must exclude.
    pub pod_level: bool,
}

/// The cAdvisor and kube-state-metrics series of one pod.
///
/// `state(t)` says what the pod does at `t`; `cadvisor_up(t)` / `ksm_up(t)` whether that target's
/// scrape at `t` succeeded (a missed scrape drops all of the target's samples at that time).
pub fn pod_series(
    pod: &Pod,
    cadvisor: Scrape,
    ksm: Scrape,
    state: impl Fn(f64) -> PodState,
    cadvisor_up: impl Fn(f64) -> bool,
    ksm_up: impl Fn(f64) -> bool,
    emit: Emit,
) -> Vec<SeriesData> {
    let end = pod.end.unwrap_or(f64::INFINITY);
    let ns = pod.namespace.as_str();
    let name = pod.name.as_str();
    let c_labels = |container: &str| -> Vec<(&'static str, String)> {
        vec![
            ("namespace", ns.into()),
            ("pod", name.into()),
            ("container", container.into()),
            ("instance", pod.node.clone()),
            ("job", "kubelet".into()),
            ("metrics_path", "/metrics/cadvisor".into()),
        ]
    };
    let mk = |metric: &str, labels: &[(&str, String)]| SeriesData {
        name: metric.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        samples: vec![],
    };
    let app = c_labels("app");
    let mut cpu = mk("container_cpu_usage_seconds_total", &app);
    let mut periods = mk("container_cpu_cfs_periods_total", &app);
    let mut throttled = mk("container_cpu_cfs_throttled_periods_total", &app);
    let mut memory = mk("container_memory_working_set_bytes", &app);
    let (pod_labels, pause_labels) = (c_labels(""), c_labels("POD"));
    let mut pod_cpu = mk("container_cpu_usage_seconds_total", &pod_labels);
    let mut pod_memory = mk("container_memory_working_set_bytes", &pod_labels);
    let mut pause_cpu = mk("container_cpu_usage_seconds_total", &pause_labels);

    // Counters integrate the state at every scrape time, scraped or not.
    let (mut c_cpu, mut c_periods, mut c_throttled, mut c_pod_cpu, mut c_pause) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut restarts = state(pod.start.max(cadvisor.from)).restarts;
    let mut prev_t: Option<f64> = None;
    for t in cadvisor.times(pod.start, end) {
        let s = state(t);
        let dt = prev_t.map_or(0.0, |p| t - p);
        prev_t = Some(t);
        if s.restarts > restarts {
            // A new container: its counters start again (it ran for part of the interval).
            restarts = s.restarts;
            c_cpu = 0.0;
            c_periods = 0.0;
            c_throttled = 0.0;
        }
        c_cpu += s.cpu * dt;
        c_pod_cpu += (s.cpu + 0.001) * dt;
        c_pause += 0.001 * dt;
        if pod.cpu_limit.is_some() {
            c_periods += CFS_PERIODS_PER_SEC * dt;
            c_throttled += CFS_PERIODS_PER_SEC * dt * s.throttle.clamp(0.0, 1.0);
        }
        if !cadvisor_up(t) {
            continue;
        }
        cpu.push(t, c_cpu);
        memory.push(t, s.memory);
        if pod.cpu_limit.is_some() {
            periods.push(t, c_periods.round());
            throttled.push(t, c_throttled.round());
        }
        if emit.pod_level {
            pod_cpu.push(t, c_pod_cpu);
            pod_memory.push(t, s.memory + 1e6);
            pause_cpu.push(t, c_pause);
        }
    }

    let k_base = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        let mut l = vec![
            ("namespace", ns.to_string()),
            ("pod", name.to_string()),
            ("uid", format!("uid-{name}")),
            ("instance", "kube-state-metrics:8080".into()),
            ("job", "kube-state-metrics".into()),
        ];
        l.extend(extra.iter().cloned());
        l
    };
    let mut owner = mk(
        "kube_pod_owner",
        &k_base(&[
            ("owner_kind", pod.owner_kind.into()),
            ("owner_name", pod.owner_name.clone()),
            ("owner_is_controller", "true".into()),
        ]),
    );
    let mut start_time = mk("kube_pod_start_time", &k_base(&[]));
    let mut restarts_total = mk(
        "kube_pod_container_status_restarts_total",
        &k_base(&[("container", "app".into())]),
    );
    let limit = |resource: &str, unit: &str| {
        mk(
            "kube_pod_container_resource_limits",
            &k_base(&[
                ("container", "app".into()),
                ("node", pod.node.clone()),
                ("resource", resource.into()),
                ("unit", unit.into()),
            ]),
        )
    };
    let mut cpu_limit = limit("cpu", "core");
    let mut memory_limit = limit("memory", "byte");
    for t in ksm.times(pod.start, end) {
        if !ksm_up(t) {
            continue;
        }
        owner.push(t, 1.0);
        start_time.push(t, pod.start);
        restarts_total.push(t, f64::from(state(t).restarts));
        if let Some(l) = pod.cpu_limit {
            cpu_limit.push(t, l);
        }
        if let Some(l) = pod.memory_limit {
            memory_limit.push(t, l);
        }
    }
    let mut out = vec![
        cpu,
        periods,
        throttled,
        memory,
        owner,
        start_time,
        restarts_total,
        cpu_limit,
        memory_limit,
    ];
    if emit.pod_level {
        out.extend([pod_cpu, pod_memory, pause_cpu]);
    }
    out.retain(|s| !s.samples.is_empty());
    out
}

/// `kube_replicaset_owner` of a ReplicaSet owned by a Deployment, sampled over `[from, to)`.
pub fn replicaset_owner(
    namespace: &str,
    replicaset: &str,
    deployment: &str,
    ksm: Scrape,
    from: f64,
    to: f64,
) -> SeriesData {
    SeriesData::new(
        "kube_replicaset_owner",
        &[
            ("namespace", namespace),
            ("replicaset", replicaset),
            ("owner_kind", "Deployment"),
            ("owner_name", deployment),
            ("owner_is_controller", "true"),
            ("instance", "kube-state-metrics:8080"),
            ("job", "kube-state-metrics"),
        ],
    )
    .with(ksm.times(from, to).map(|t| (t, 1.0)))
}

/// kube-state-metrics' container status of one pod: `kube_pod_container_status_waiting_reason`
/// (1 while `waiting(t)` names a reason, absent otherwise, as kube-state-metrics v2 exports it) and
/// `kube_pod_container_status_last_terminated_reason` (1 for the reason `last_terminated(t)` names).
pub fn status_series(
    pod: &Pod,
    ksm: Scrape,
    waiting: impl Fn(f64) -> Option<&'static str>,
    last_terminated: impl Fn(f64) -> Option<&'static str>,
    ksm_up: impl Fn(f64) -> bool,
) -> Vec<SeriesData> {
    use std::collections::BTreeMap;
    let end = pod.end.unwrap_or(f64::INFINITY);
    let uid = format!("uid-{}", pod.name);
    let labels = |reason: &str| -> Vec<(String, String)> {
        [
            ("namespace", pod.namespace.as_str()),
            ("pod", pod.name.as_str()),
            ("uid", uid.as_str()),
            ("container", "app"),
            ("reason", reason),
            ("instance", "kube-state-metrics:8080"),
            ("job", "kube-state-metrics"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let mut out: BTreeMap<(&'static str, &'static str), SeriesData> = BTreeMap::new();
    for t in ksm.times(pod.start, end) {
        if !ksm_up(t) {
            continue;
        }
        for (metric, reason) in [
            ("kube_pod_container_status_waiting_reason", waiting(t)),
            (
                "kube_pod_container_status_last_terminated_reason",
                last_terminated(t),
            ),
        ] {
            if let Some(r) = reason {
                out.entry((metric, r))
                    .or_insert_with(|| SeriesData {
                        name: metric.into(),
                        labels: labels(r),
                        samples: vec![],
                    })
                    .push(t, 1.0);
            }
        }
    }
    out.into_values().collect()
}
