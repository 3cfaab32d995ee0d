//! Ties the pieces together without any I/O: per tick, takes the cluster
//! view, advances each Deployment's scenario and feeds the exporter.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use crate::cluster::DeploymentView;
use crate::exporter::Exporter;
use crate::scenario::{DeploymentSim, ScenarioParams};

/// How loudly an [`EngineEvent`] should be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineEvent {
    pub level: Level,
    pub namespace: String,
    pub deployment: String,
    pub message: String,
}

#[derive(Debug)]
struct Tracked {
    namespace: String,
    name: String,
    sim: DeploymentSim,
}

/// The whole simulation: scenario state per Deployment UID and the exporter.
#[derive(Debug, Default)]
pub struct Engine {
    deployments: BTreeMap<String, Tracked>,
    /// Deployment UID -> the parameter error already reported for it.
    invalid: BTreeMap<String, String>,
    exporter: Exporter,
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of simulated Deployments.
    pub fn deployments(&self) -> usize {
        self.deployments.len()
    }

    /// Number of exported pods.
    pub fn pods(&self) -> usize {
        self.exporter.len()
    }

    /// The `/metrics` body.
    pub fn render(&self) -> String {
        self.exporter.render()
    }

    /// Advances everything to `now`.
    pub fn tick(&mut self, now: Timestamp, views: Vec<DeploymentView>) -> Vec<EngineEvent> {
        let mut events = Vec::new();
        let mut observations = Vec::new();
        let mut alive: BTreeSet<String> = BTreeSet::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();

        for view in views {
            seen.insert(view.uid.clone());
            let event = |level, message: String| EngineEvent {
                level,
                namespace: view.namespace.clone(),
                deployment: view.name.clone(),
                message,
            };
            let params = match ScenarioParams::from_annotations(&view.annotations) {
                Ok(Some(p)) => {
                    self.invalid.remove(&view.uid);
                    p
                }
                Ok(None) => continue,
                Err(e) => {
                    let msg = e.to_string();
                    if self.invalid.get(&view.uid) != Some(&msg) {
                        events.push(event(Level::Warn, format!("not simulated: {msg}")));
                        self.invalid.insert(view.uid.clone(), msg);
                    }
                    continue;
                }
            };
            alive.insert(view.uid.clone());

            let changed = self
                .deployments
                .get(&view.uid)
                .map(|t| t.sim.params() != &params);
            if changed != Some(false) {
                let what = if changed == Some(true) {
                    "scenario parameters changed; restarting simulation"
                } else {
                    "simulating"
                };
                events.push(event(
                    Level::Info,
                    format!(
                        "{what}: scenario {} (fault in {:#})",
                        params.kind, params.sick_after
                    ),
                ));
                self.deployments.insert(
                    view.uid.clone(),
                    Tracked {
                        namespace: view.namespace.clone(),
                        name: view.name.clone(),
                        sim: DeploymentSim::new(params, now),
                    },
                );
            }
            let Some(tracked) = self.deployments.get_mut(&view.uid) else {
                continue;
            };

            let facts: Vec<_> = view.pods.iter().map(|p| p.facts.clone()).collect();
            let out = tracked.sim.tick(&facts, now);
            for e in out.events {
                let level = if e.is_noisy() {
                    Level::Debug
                } else {
                    Level::Info
                };
                events.push(event(level, e.to_string()));
            }
            // The youngest `unexported_pods` pods get no cAdvisor series.
            let mut by_age: Vec<(Timestamp, &str)> = view
                .pods
                .iter()
                .map(|p| (p.facts.created_at, p.facts.name.as_str()))
                .collect();
            by_age.sort();
            let hidden: BTreeSet<String> = by_age
                .iter()
                .rev()
                .take(tracked.sim.params().unexported_pods)
                .map(|(_, n)| (*n).to_string())
                .collect();
            let offset = tracked.sim.params().clock_offset;
            for mut p in view.pods {
                if let Some(sample) = out.samples.get(&p.facts.name) {
                    p.meta.clock_offset = offset;
                    p.meta.unexported = hidden.contains(&p.facts.name);
                    observations.push((p.meta, *sample));
                }
            }
        }

        let gone: Vec<String> = self
            .deployments
            .keys()
            .filter(|uid| !alive.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(t) = self.deployments.remove(&uid) {
                events.push(EngineEvent {
                    level: Level::Info,
                    namespace: t.namespace,
                    deployment: t.name,
                    message: "deployment gone or no longer annotated; simulation dropped".into(),
                });
            }
        }
        self.invalid.retain(|uid, _| seen.contains(uid));

        self.exporter.update(now, observations);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PodView;
    use crate::exporter::{PodMeta, Resources};
    use crate::scenario::{ANN_SCENARIO, ANN_SICK_AFTER, PodFacts};

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn pod(name: &str, created: i64) -> PodView {
        PodView {
            meta: PodMeta {
                namespace: "shop".into(),
                pod: name.into(),
                container: "app".into(),
                node: "n".into(),
                replicaset: "web-1".into(),
                deployment: "web".into(),
                start_time: t(created),
                limits: Resources {
                    cpu_cores: Some(1.0),
                    memory_bytes: Some(512.0 * 1024.0 * 1024.0),
                },
                requests: Resources::default(),
                clock_offset: jiff::SignedDuration::ZERO,
                unexported: false,
            },
            facts: PodFacts {
                name: name.into(),
                created_at: t(created),
                cpu_limit_cores: 1.0,
                memory_limit_bytes: 512.0 * 1024.0 * 1024.0,
            },
        }
    }

    fn view(scenario: &str, pods: Vec<PodView>) -> DeploymentView {
        DeploymentView {
            uid: "uid-web".into(),
            namespace: "shop".into(),
            name: "web".into(),
            annotations: [
                (ANN_SCENARIO.to_string(), scenario.to_string()),
                (ANN_SICK_AFTER.to_string(), "5s".to_string()),
            ]
            .into_iter()
            .collect(),
            pods,
        }
    }

    fn cpu_seconds(text: &str, pod: &str) -> f64 {
        let prefix = format!(
            "container_cpu_usage_seconds_total{{namespace=\"shop\",pod=\"{pod}\",container=\"app\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|v| v.parse().unwrap())
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn runaway_end_to_end() {
        let mut engine = Engine::new();
        let pods = || {
            vec![
                pod("web-1-a", -30),
                pod("web-1-b", -20),
                pod("web-1-c", -10),
            ]
        };
        let events = engine.tick(t(0), vec![view("runaway", pods())]);
        assert!(events.iter().any(|e| e.message.starts_with("simulating")));
        for s in 1..=25 {
            let events = engine.tick(t(s), vec![view("runaway", pods())]);
            if s == 5 {
                assert!(
                    events
                        .iter()
                        .any(|e| e.message == "runaway started on pod web-1-a"),
                    "{events:?}"
                );
            }
        }
        let text = engine.render();
        // 5 s healthy (0.1 +- 10%), then 20 s at 0.97 cores
        let hot = cpu_seconds(&text, "web-1-a");
        assert!(hot >= 20.0 * 0.97 + 5.0 * 0.09 - 1e-9, "{hot}");
        assert!(hot <= 20.0 * 0.97 + 5.0 * 0.11 + 1e-9, "{hot}");
        assert!(cpu_seconds(&text, "web-1-b") < 25.0 * 0.11);
        assert_eq!(engine.pods(), 3);

        let events = engine.tick(
            t(26),
            vec![view(
                "runaway",
                vec![pod("web-1-b", -20), pod("web-1-c", -10), pod("web-1-d", 26)],
            )],
        );
        assert!(
            events
                .iter()
                .any(|e| e.message == "runaway pod web-1-a gone; deployment healthy")
        );
        let text = engine.render();
        assert!(cpu_seconds(&text, "web-1-a").is_nan());
        assert!(cpu_seconds(&text, "web-1-d").abs() < 1e-9);
    }

    #[test]
    fn invalid_and_removed_deployments() {
        let mut engine = Engine::new();
        let events = engine.tick(t(0), vec![view("meltdown", vec![pod("web-1-a", 0)])]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].level, Level::Warn);
        assert_eq!(engine.pods(), 0);
        // reported once only
        assert!(
            engine
                .tick(t(1), vec![view("meltdown", vec![pod("web-1-a", 0)])])
                .is_empty()
        );

        engine.tick(t(2), vec![view("healthy", vec![pod("web-1-a", 0)])]);
        assert_eq!(engine.deployments(), 1);
        assert_eq!(engine.pods(), 1);
        let events = engine.tick(t(3), vec![view("crashloop", vec![pod("web-1-a", 0)])]);
        assert!(
            events
                .iter()
                .any(|e| e.message.contains("restarting simulation"))
        );

        engine.tick(t(4), vec![]);
        assert_eq!(engine.deployments(), 0);
        assert_eq!(engine.pods(), 0);
    }
}
