//! Integrates the simulated rates into monotonic counters per pod and renders
//! them, named and labelled as cAdvisor and kube-state-metrics do, in the
//! Prometheus text exposition format (version 0.0.4).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};

use crate::scenario::{PodSample, TerminationReason};

/// Content type of [`Exporter::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// CFS periods per second of wall time (100 ms period).
pub const CFS_PERIODS_PER_SECOND: f64 = 10.0;

/// CPU and memory quantities of a container, as numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<f64>,
}

/// Identity and spec of an exported pod (the kube-state-metrics side).
#[derive(Debug, Clone, PartialEq)]
pub struct PodMeta {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub node: String,
    pub replicaset: String,
    pub deployment: String,
    pub start_time: Timestamp,
    pub limits: Resources,
    pub requests: Resources,
    /// Offset of the node's clock: cAdvisor samples carry explicit timestamps shifted by it
    /// (none are written when zero).
    pub clock_offset: SignedDuration,
    /// No cAdvisor series for this pod.
    pub unexported: bool,
}

#[derive(Debug, Clone)]
struct PodSeries {
    meta: PodMeta,
    last_update: Timestamp,
    cpu_seconds: f64,
    cfs_periods: f64,
    cfs_throttled_periods: f64,
    memory_bytes: f64,
    restarts: u64,
    last_terminated_reason: Option<TerminationReason>,
    /// CPU rate and throttled fraction decided at the previous update; they
    /// apply until the next one.
    cpu_cores: f64,
    throttle_fraction: f64,
}

/// The exported state: one set of series per Running simulated pod.
#[derive(Debug, Clone, Default)]
pub struct Exporter {
    pods: BTreeMap<(String, String), PodSeries>,
}

impl Exporter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of exported pods.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Advances every counter to `now`, integrating each pod's current rates
    /// over the time since its previous update. Pods absent from
    /// `observations` stop being exported; pods seen for the first time start
    /// at zero.
    pub fn update(&mut self, now: Timestamp, observations: Vec<(PodMeta, PodSample)>) {
        let mut seen = BTreeSet::new();
        for (meta, sample) in observations {
            let key = (meta.namespace.clone(), meta.pod.clone());
            seen.insert(key.clone());
            let series = self.pods.entry(key).or_insert_with(|| PodSeries {
                meta: meta.clone(),
                last_update: now,
                cpu_seconds: 0.0,
                cfs_periods: 0.0,
                cfs_throttled_periods: 0.0,
                memory_bytes: 0.0,
                restarts: 0,
                last_terminated_reason: None,
                cpu_cores: 0.0,
                throttle_fraction: 0.0,
            });
            let dt = now
                .duration_since(series.last_update)
                .as_secs_f64()
                .max(0.0);
            if now > series.last_update {
                series.last_update = now;
            }
            // What the pod did since its previous update is what the model
            // said then; the new rates hold from now until the next update.
            let periods = CFS_PERIODS_PER_SECOND * dt;
            series.cpu_seconds += series.cpu_cores * dt;
            series.cfs_periods += periods;
            series.cfs_throttled_periods += periods * series.throttle_fraction;
            series.cpu_cores = finite_non_negative(sample.cpu_cores);
            series.throttle_fraction = finite_non_negative(sample.throttle_fraction).min(1.0);
            series.memory_bytes = finite_non_negative(sample.memory_bytes);
            if sample.restarts > 0 {
                series.restarts += u64::from(sample.restarts);
                series.last_terminated_reason = Some(
                    sample
                        .termination_reason
                        .unwrap_or(TerminationReason::Error),
                );
            }
            series.meta = meta;
        }
        self.pods.retain(|key, _| seen.contains(key));
    }

    /// Renders all series in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(512 + self.pods.len() * 2048);
        let pods: Vec<&PodSeries> = self.pods.values().collect();

        let container_labels = |p: &PodSeries| {
            vec![
                ("namespace", p.meta.namespace.clone()),
                ("pod", p.meta.pod.clone()),
                ("container", p.meta.container.clone()),
            ]
        };
        // cAdvisor: the pods that export it, stamped by their node's clock when it is skewed.
        let cadvisor: Vec<&PodSeries> = pods
            .iter()
            .copied()
            .filter(|p| !p.meta.unexported)
            .collect();
        let stamp = |p: &PodSeries| {
            (!p.meta.clock_offset.is_zero())
                .then(|| p.last_update.as_millisecond() + p.meta.clock_offset.as_millis() as i64)
        };
        for (name, kind, help, value) in [
            (
                "container_cpu_usage_seconds_total",
                "counter",
                "Cumulative cpu time consumed in seconds.",
                (|p: &PodSeries| p.cpu_seconds) as fn(&PodSeries) -> f64,
            ),
            (
                "container_cpu_cfs_periods_total",
                "counter",
                "Number of elapsed enforcement period intervals.",
                |p: &PodSeries| p.cfs_periods.floor(),
            ),
            (
                "container_cpu_cfs_throttled_periods_total",
                "counter",
                "Number of throttled period intervals.",
                |p: &PodSeries| p.cfs_throttled_periods.floor(),
            ),
            (
                "container_memory_working_set_bytes",
                "gauge",
                "Current working set in bytes.",
                |p: &PodSeries| p.memory_bytes.round(),
            ),
        ] {
            family_at(
                &mut out,
                name,
                kind,
                help,
                cadvisor
                    .iter()
                    .map(|p| (container_labels(p), value(p), stamp(p))),
            );
        }

        family(
            &mut out,
            "kube_pod_owner",
            "gauge",
            "Information about the Pod's owner.",
            pods.iter().map(|p| {
                (
                    vec![
                        ("namespace", p.meta.namespace.clone()),
                        ("pod", p.meta.pod.clone()),
                        ("owner_kind", "ReplicaSet".to_string()),
                        ("owner_name", p.meta.replicaset.clone()),
                        ("owner_is_controller", "true".to_string()),
                    ],
                    1.0,
                )
            }),
        );
        let replicasets: BTreeSet<(&str, &str, &str)> = pods
            .iter()
            .map(|p| {
                (
                    p.meta.namespace.as_str(),
                    p.meta.replicaset.as_str(),
                    p.meta.deployment.as_str(),
                )
            })
            .collect();
        family(
            &mut out,
            "kube_replicaset_owner",
            "gauge",
            "Information about the ReplicaSet's owner.",
            replicasets.iter().map(|(ns, rs, deploy)| {
                (
                    vec![
                        ("namespace", (*ns).to_string()),
                        ("replicaset", (*rs).to_string()),
                        ("owner_kind", "Deployment".to_string()),
                        ("owner_name", (*deploy).to_string()),
                        ("owner_is_controller", "true".to_string()),
                    ],
                    1.0,
                )
            }),
        );
        family(
            &mut out,
            "kube_pod_info",
            "gauge",
            "Information about pod.",
            pods.iter().map(|p| {
                (
                    vec![
                        ("namespace", p.meta.namespace.clone()),
                        ("pod", p.meta.pod.clone()),
                        ("node", p.meta.node.clone()),
                        ("created_by_kind", "ReplicaSet".to_string()),
                        ("created_by_name", p.meta.replicaset.clone()),
                    ],
                    1.0,
                )
            }),
        );
        family(
            &mut out,
            "kube_pod_start_time",
            "gauge",
            "Start time in unix timestamp for a pod.",
            pods.iter().map(|p| {
                (
                    vec![
                        ("namespace", p.meta.namespace.clone()),
                        ("pod", p.meta.pod.clone()),
                    ],
                    unix_seconds(p.meta.start_time),
                )
            }),
        );
        for (name, help, pick) in [
            (
                "kube_pod_container_resource_limits",
                "The number of requested limit resource by a container.",
                (|m: &PodMeta| m.limits) as fn(&PodMeta) -> Resources,
            ),
            (
                "kube_pod_container_resource_requests",
                "The number of requested request resource by a container.",
                |m: &PodMeta| m.requests,
            ),
        ] {
            let mut samples = Vec::new();
            for p in &pods {
                let res = pick(&p.meta);
                let base = |resource: &str, unit: &str| {
                    vec![
                        ("namespace", p.meta.namespace.clone()),
                        ("pod", p.meta.pod.clone()),
                        ("container", p.meta.container.clone()),
                        ("node", p.meta.node.clone()),
                        ("resource", resource.to_string()),
                        ("unit", unit.to_string()),
                    ]
                };
                if let Some(cpu) = res.cpu_cores {
                    samples.push((base("cpu", "core"), cpu));
                }
                if let Some(mem) = res.memory_bytes {
                    samples.push((base("memory", "byte"), mem));
                }
            }
            family(&mut out, name, "gauge", help, samples.into_iter());
        }
        family(
            &mut out,
            "kube_pod_container_status_restarts_total",
            "counter",
            "The number of container restarts per container.",
            pods.iter().map(|p| {
                #[allow(clippy::cast_precision_loss)]
                let restarts = p.restarts as f64;
                (container_labels(p), restarts)
            }),
        );
        family(
            &mut out,
            "kube_pod_container_status_last_terminated_reason",
            "gauge",
            "Describes the last reason the container was in terminated state.",
            pods.iter().filter_map(|p| {
                let reason = p.last_terminated_reason?;
                let mut labels = container_labels(p);
                labels.push(("reason", reason.as_str().to_string()));
                Some((labels, 1.0))
            }),
        );
        out
    }
}

type Labels = Vec<(&'static str, String)>;

fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl Iterator<Item = (Labels, f64)>,
) {
    family_at(out, name, kind, help, samples.map(|(l, v)| (l, v, None)));
}

/// A metric family whose samples may carry an explicit timestamp (unix milliseconds).
fn family_at(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl Iterator<Item = (Labels, f64, Option<i64>)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value, stamp) in samples {
        out.push_str(name);
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push_str("} ");
        match stamp {
            Some(ms) => writeln!(out, "{} {ms}", format_value(value)),
            None => writeln!(out, "{}", format_value(value)),
        }
        .ok();
    }
}

fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

fn finite_non_negative(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

fn unix_seconds(t: Timestamp) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let s = t.as_second() as f64;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: f64 = 1024.0 * 1024.0;

    /// A parsed exposition line: name, labels, value.
    type Line = (String, BTreeMap<String, String>, f64);

    /// A strict-enough parser of the text format for the tests.
    fn parse(text: &str) -> Vec<Line> {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut lines = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    ["counter", "gauge"].contains(&kind),
                    "bad type line {line:?}"
                );
                assert!(
                    types.insert(name.into(), kind.into()).is_none(),
                    "dup TYPE {name}"
                );
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "bad line {line:?}"
            );
            let open = line.find('{').unwrap();
            let name = &line[..open];
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name {name:?}"
            );
            assert!(types.contains_key(name), "sample before TYPE: {line:?}");
            let close = line.rfind("} ").unwrap();
            let mut labels = BTreeMap::new();
            let body = &line[open + 1..close];
            let mut rest = body;
            while !rest.is_empty() {
                let (k, after) = rest.split_once("=\"").unwrap();
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                let mut value = String::new();
                let mut chars = after.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            let (_, e) = chars.next().unwrap();
                            value.push(match e {
                                'n' => '\n',
                                other => other,
                            });
                        }
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let end = end.unwrap();
                assert!(labels.insert(k.to_string(), value).is_none(), "dup label");
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
            let value: f64 = line[close + 2..].parse().unwrap();
            lines.push((name.to_string(), labels, value));
        }
        lines
    }

    fn meta(pod: &str) -> PodMeta {
        PodMeta {
            namespace: "shop".into(),
            pod: pod.into(),
            container: "app".into(),
            node: "kwok-node-0".into(),
            replicaset: "web-5d8f7".into(),
            deployment: "web".into(),
            start_time: Timestamp::from_second(1_700_000_000).unwrap(),
            limits: Resources {
                cpu_cores: Some(1.0),
                memory_bytes: Some(512.0 * MI),
            },
            requests: Resources {
                cpu_cores: Some(0.5),
                memory_bytes: None,
            },
            clock_offset: SignedDuration::ZERO,
            unexported: false,
        }
    }

    #[test]
    fn skewed_pods_carry_their_node_clock_and_unexported_pods_lack_cadvisor() {
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        let mut skewed = meta("web-1-a");
        skewed.clock_offset = SignedDuration::from_secs(-60);
        let mut hidden = meta("web-1-b");
        hidden.unexported = true;
        let mut e = Exporter::new();
        e.update(
            now,
            vec![(skewed, sample(0.5, 0.1, 0)), (hidden, sample(0.5, 0.1, 0))],
        );
        let text = e.render();
        let cpu_a = text
            .lines()
            .find(|l| l.starts_with("container_cpu_usage_seconds_total{") && l.contains("web-1-a"))
            .unwrap();
        assert!(cpu_a.ends_with(" 1700000040000"), "{cpu_a}");
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("container_") && l.contains("web-1-b")),
            "no cAdvisor series for the unexported pod"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("kube_pod_info{") && l.contains("web-1-b")),
            "kube-state-metrics still lists it"
        );
        assert!(
            text.lines()
                .filter(|l| l.starts_with("kube_pod_info{"))
                .all(|l| l.ends_with(" 1")),
            "kube-state-metrics carries no timestamps"
        );
    }

    fn sample(cpu: f64, throttle: f64, restarts: u32) -> PodSample {
        PodSample {
            cpu_cores: cpu,
            throttle_fraction: throttle,
            memory_bytes: 100.0 * MI,
            restarts,
            termination_reason: (restarts > 0).then_some(TerminationReason::Error),
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_100 + secs).unwrap()
    }

    fn find<'a>(lines: &'a [Line], name: &str, pod: &str) -> Vec<&'a Line> {
        lines
            .iter()
            .filter(|(n, l, _)| n == name && l.get("pod").map(String::as_str) == Some(pod))
            .collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_expected_series_and_labels() {
        let mut e = Exporter::new();
        e.update(t(0), vec![(meta("web-5d8f7-aaaaa"), sample(0.5, 0.5, 0))]);
        e.update(t(10), vec![(meta("web-5d8f7-aaaaa"), sample(0.5, 0.5, 2))]);
        let text = e.render();
        let lines = parse(&text);
        let pod = "web-5d8f7-aaaaa";
        let container = labels(&[("namespace", "shop"), ("pod", pod), ("container", "app")]);

        let one = |name: &str| {
            let found = find(&lines, name, pod);
            assert_eq!(found.len(), 1, "{name}: {found:?}\n{text}");
            found[0].clone()
        };
        let (_, l, v) = one("container_cpu_usage_seconds_total");
        assert_eq!(l, container);
        assert!((v - 5.0).abs() < 1e-9);
        let (_, l, v) = one("container_cpu_cfs_periods_total");
        assert_eq!(l, container);
        assert!((v - 100.0).abs() < 1e-9);
        let (_, _, v) = one("container_cpu_cfs_throttled_periods_total");
        assert!((v - 50.0).abs() < 1e-9);
        let (_, l, v) = one("container_memory_working_set_bytes");
        assert_eq!(l, container);
        assert!((v - 100.0 * MI).abs() < 1e-9);

        let (_, l, v) = one("kube_pod_owner");
        assert_eq!(
            l,
            labels(&[
                ("namespace", "shop"),
                ("pod", pod),
                ("owner_kind", "ReplicaSet"),
                ("owner_name", "web-5d8f7"),
                ("owner_is_controller", "true"),
            ])
        );
        assert!((v - 1.0).abs() < f64::EPSILON);
        let rs: Vec<&Line> = lines
            .iter()
            .filter(|(n, _, _)| n == "kube_replicaset_owner")
            .collect();
        assert_eq!(rs.len(), 1);
        assert_eq!(
            rs[0].1,
            labels(&[
                ("namespace", "shop"),
                ("replicaset", "web-5d8f7"),
                ("owner_kind", "Deployment"),
                ("owner_name", "web"),
                ("owner_is_controller", "true"),
            ])
        );
        let (_, l, _) = one("kube_pod_info");
        assert_eq!(
            l,
            labels(&[
                ("namespace", "shop"),
                ("pod", pod),
                ("node", "kwok-node-0"),
                ("created_by_kind", "ReplicaSet"),
                ("created_by_name", "web-5d8f7"),
            ])
        );
        let (_, l, v) = one("kube_pod_start_time");
        assert_eq!(l, labels(&[("namespace", "shop"), ("pod", pod)]));
        assert!((v - 1_700_000_000.0).abs() < f64::EPSILON);

        let limits = find(&lines, "kube_pod_container_resource_limits", pod);
        assert_eq!(limits.len(), 2);
        let cpu = limits
            .iter()
            .find(|(_, l, _)| l["resource"] == "cpu")
            .unwrap();
        assert_eq!(
            cpu.1,
            labels(&[
                ("namespace", "shop"),
                ("pod", pod),
                ("container", "app"),
                ("node", "kwok-node-0"),
                ("resource", "cpu"),
                ("unit", "core"),
            ])
        );
        assert!((cpu.2 - 1.0).abs() < f64::EPSILON);
        let mem = limits
            .iter()
            .find(|(_, l, _)| l["resource"] == "memory")
            .unwrap();
        assert_eq!(mem.1["unit"], "byte");
        assert!((mem.2 - 512.0 * MI).abs() < f64::EPSILON);
        let requests = find(&lines, "kube_pod_container_resource_requests", pod);
        assert_eq!(requests.len(), 1, "memory request absent");
        assert!((requests[0].2 - 0.5).abs() < f64::EPSILON);

        let (_, l, v) = one("kube_pod_container_status_restarts_total");
        assert_eq!(l, container);
        assert!((v - 2.0).abs() < f64::EPSILON);
        let (_, l, v) = one("kube_pod_container_status_last_terminated_reason");
        assert_eq!(
            l,
            labels(&[
                ("namespace", "shop"),
                ("pod", pod),
                ("container", "app"),
                ("reason", "Error"),
            ])
        );
        assert!((v - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn no_terminated_reason_without_restarts() {
        let mut e = Exporter::new();
        e.update(t(0), vec![(meta("p"), sample(0.1, 0.01, 0))]);
        let lines = parse(&e.render());
        assert!(
            find(
                &lines,
                "kube_pod_container_status_last_terminated_reason",
                "p"
            )
            .is_empty()
        );
        let restarts = find(&lines, "kube_pod_container_status_restarts_total", "p");
        assert_eq!(restarts.len(), 1);
        assert!(restarts[0].2.abs() < f64::EPSILON);
    }

    #[test]
    fn counters_are_monotonic_across_ticks() {
        let mut e = Exporter::new();
        let mut previous: BTreeMap<(String, String), f64> = BTreeMap::new();
        let counters = [
            "container_cpu_usage_seconds_total",
            "container_cpu_cfs_periods_total",
            "container_cpu_cfs_throttled_periods_total",
            "kube_pod_container_status_restarts_total",
        ];
        for tick in 0..50 {
            let cpu = if tick % 7 < 3 { 0.97 } else { 0.1 };
            let throttle = if tick % 5 == 0 { 0.6 } else { 0.01 };
            let restarts = u32::from(tick % 15 == 14);
            let obs = vec![
                (meta("a"), sample(cpu, throttle, restarts)),
                (meta("b"), sample(0.1, 0.01, 0)),
            ];
            // ticks arrive irregularly, sometimes twice in the same instant
            e.update(t((tick / 2) * 3), obs);
            for (name, l, v) in parse(&e.render()) {
                if counters.contains(&name.as_str()) {
                    let key = (name.clone(), l["pod"].clone());
                    if let Some(prev) = previous.insert(key, v) {
                        assert!(v >= prev, "{name} went from {prev} to {v}");
                    }
                }
            }
        }
        let lines = parse(&e.render());
        let periods = find(&lines, "container_cpu_cfs_periods_total", "a")[0].2;
        let throttled = find(&lines, "container_cpu_cfs_throttled_periods_total", "a")[0].2;
        assert!(throttled <= periods);
        // t(0)..t(72): 72 s at 10 periods per second
        assert!((periods - 720.0).abs() < 1e-6);
    }

    #[test]
    fn vanished_pods_stop_being_exported_and_restart_from_zero() {
        let mut e = Exporter::new();
        e.update(
            t(0),
            vec![
                (meta("a"), sample(1.0, 0.0, 0)),
                (meta("b"), sample(1.0, 0.0, 0)),
            ],
        );
        e.update(
            t(10),
            vec![
                (meta("a"), sample(1.0, 0.0, 0)),
                (meta("b"), sample(1.0, 0.0, 0)),
            ],
        );
        e.update(t(20), vec![(meta("a"), sample(1.0, 0.0, 0))]);
        assert_eq!(e.len(), 1);
        let lines = parse(&e.render());
        assert!(
            lines
                .iter()
                .all(|(_, l, _)| l.get("pod").map(String::as_str) != Some("b"))
        );
        assert!((find(&lines, "container_cpu_usage_seconds_total", "a")[0].2 - 20.0).abs() < 1e-9);

        e.update(t(30), vec![(meta("b"), sample(1.0, 0.0, 0))]);
        let lines = parse(&e.render());
        assert!(
            find(&lines, "container_cpu_usage_seconds_total", "b")[0]
                .2
                .abs()
                < 1e-9
        );
        assert!(find(&lines, "container_cpu_usage_seconds_total", "a").is_empty());
    }

    #[test]
    fn oom_reason_and_label_escaping() {
        let mut e = Exporter::new();
        let mut m = meta("odd\"pod\\x");
        m.node = "line\nbreak".into();
        e.update(
            t(0),
            vec![(
                m,
                PodSample {
                    restarts: 1,
                    termination_reason: Some(TerminationReason::OomKilled),
                    ..sample(0.1, 0.01, 0)
                },
            )],
        );
        let text = e.render();
        let lines = parse(&text);
        let reason = find(
            &lines,
            "kube_pod_container_status_last_terminated_reason",
            "odd\"pod\\x",
        );
        assert_eq!(reason.len(), 1);
        assert_eq!(reason[0].1["reason"], "OOMKilled");
        let info = find(&lines, "kube_pod_info", "odd\"pod\\x");
        assert_eq!(info[0].1["node"], "line\nbreak");
    }

    #[test]
    fn empty_exporter_renders_only_metadata() {
        let text = Exporter::new().render();
        assert!(parse(&text).is_empty());
        assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter\n"));
    }
}
