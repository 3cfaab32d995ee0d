//! Scores the detectors on recorded series: every `tests/fixtures/realnode/<case>.om`
//! (OpenMetrics, as recorded from a real node's cAdvisor and kube-state-metrics) with its
//! `<case>.labels.json` is backfilled into a real Prometheus and diagnosed with `diagnose::run` at
//! each labelled time.
//!
//! Cases are `<case>.om` or `<case>.om.txt`. Labels: `{"evaluations": [{"at": <unix s>,
//! "from": <unix s> (optional: evaluate every 10 s from here to `at`), "namespace": "…", "workload": "…",
//! "fault": "RunawayProcess|ResourceContention|MemoryLeak|CrashLoop|Healthy",
//! "pods": ["…"] (optional), "action": "RestartPod|Scale|Escalate|None" (optional)}]}`.
//!
//! `cargo test --test realnode_fixtures -- --nocapture` prints the per-case table. The test fails
//! when a fixture cannot be loaded or scored, or when an action is taken that the label does not
//! call for; classification misses are printed, not asserted (they are the figure being measured).

mod support;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use homeostat::{
    diagnose::{self, Options},
    diagnosis::Settings,
    v1alpha1::{HoldMode, Pattern, RemediationPolicy},
};
use serde_json::Value;
use support::{
    SeriesData, TestProm,
    k8s::{Emit, Pod, PodState, Scrape, pod_series, replicaset_owner, status_series},
    noise, openmetrics, past_anchor,
};

/// One labelled evaluation and what homeostat said.
#[derive(Debug)]
struct Scored {
    case: String,
    at: f64,
    workload: String,
    expect: String,
    got: String,
    pods_ok: bool,
    expect_action: Option<String>,
    action: String,
}

impl Scored {
    fn class_ok(&self) -> bool {
        self.expect == self.got && self.pods_ok
    }

    /// An action taken that the label does not call for.
    fn wrong_action(&self) -> bool {
        let expected = self.expect_action.clone().unwrap_or_else(|| {
            match self.expect.as_str() {
                "RunawayProcess" | "MemoryLeak" => "RestartPod",
                "ResourceContention" => "Scale",
                "CrashLoop" => "Escalate",
                _ => "None",
            }
            .into()
        });
        self.action != "None" && self.action != expected
    }
}

fn str_of<'a>(v: &'a Value, k: &str, file: &Path) -> Result<&'a str, String> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{}: an evaluation lacks \"{k}\"", file.display()))
}

/// `diagnose`'s defaults (no policy) with the fixed hold; with the adaptive one, its default spec
/// with `hold: Adaptive` on RunawayProcess and ResourceContention as a selector policy in `ns`.
fn policies(ns: &str, hold: HoldMode) -> Vec<RemediationPolicy> {
    if hold == HoldMode::Fixed {
        return vec![];
    }
    let mut spec = diagnose::default_spec();
    for f in &mut spec.faults {
        if matches!(
            f.pattern,
            Pattern::RunawayProcess | Pattern::ResourceContention
        ) {
            f.params.get_or_insert_with(Default::default).hold = Some(hold);
        }
    }
    let mut p = RemediationPolicy::new("fixtures", spec);
    p.metadata.namespace = Some(ns.to_string());
    vec![p]
}

/// Scores every case in `dir`. Errors name the file and what is wrong with it.
async fn score_dir(dir: &Path, hold: HoldMode) -> Result<Vec<Scored>, String> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.ends_with(".om") || n.ends_with(".om.txt")
        })
        .collect();
    cases.sort();
    let mut out = vec![];
    for om in cases {
        let name = om
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let case = name
            .trim_end_matches(".txt")
            .trim_end_matches(".om")
            .to_string();
        let labels_path = om.with_file_name(format!("{case}.labels.json"));
        let labels: Value = serde_json::from_str(
            &std::fs::read_to_string(&labels_path)
                .map_err(|e| format!("reading {}: {e}", labels_path.display()))?,
        )
        .map_err(|e| format!("parsing {}: {e}", labels_path.display()))?;
        let evals = labels
            .get("evaluations")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{}: no \"evaluations\" array", labels_path.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix("homeostat-realnode-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let input = tmp.path().join("data.om");
        std::fs::copy(&om, &input).map_err(|e| format!("copying {}: {e}", om.display()))?;
        let prom = TestProm::start_from_file(tmp, &input);
        let c = prom.client(Duration::from_secs(30));
        for e in evals {
            let at = e
                .get("at")
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("{}: an evaluation lacks \"at\"", labels_path.display()))?;
            let ns = str_of(e, "namespace", &labels_path)?;
            let workload = str_of(e, "workload", &labels_path)?;
            let expect = str_of(e, "fault", &labels_path)?.to_string();
            // With "from": every 10 s over [from, at]; the fault must be found at some time, and
            // no action other than the labelled one may be taken at any time.
            let from = e.get("from").and_then(Value::as_f64).unwrap_or(at);
            let want_pods: Option<Vec<String>> = e.get("pods").and_then(Value::as_array).map(|a| {
                let mut v: Vec<String> = a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                v.sort();
                v
            });
            let mut seen: Vec<(String, bool, String)> = vec![];
            let mut t = from;
            while t <= at + 1e-6 {
                let report = diagnose::run(
                    &c,
                    &Options {
                        at: t,
                        namespace: Some(ns.into()),
                        policies: policies(ns, hold),
                        settings: Settings::default(),
                    },
                )
                .await
                .map_err(|err| format!("{case} at {t}: diagnose failed: {err}"))?;
                let f = report
                    .findings
                    .iter()
                    .find(|f| f.target.name == workload)
                    .ok_or_else(|| {
                        format!("{case} at {t}: workload {ns}/{workload} not discovered")
                    })?;
                let mut got: Vec<String> = f.pods.clone();
                got.sort();
                let pods_ok = !f.fault.is_fault() || want_pods.as_ref().is_none_or(|w| *w == got);
                seen.push((
                    f.fault.as_str().to_string(),
                    pods_ok,
                    f.action.type_.clone(),
                ));
                t += 10.0;
            }
            // The finding reported: the labelled one if it was ever made (with the right pods),
            // else a fault if any was found, else the last.
            let pick = seen
                .iter()
                .find(|x| x.0 == expect && x.1)
                .or_else(|| {
                    seen.iter()
                        .find(|x| x.0 != "Healthy" && x.0 != "Inconclusive")
                })
                .or(seen.last())
                .cloned()
                .unwrap_or_default();
            let expect_action = e.get("action").and_then(Value::as_str).map(str::to_string);
            let probe = |action: &str| Scored {
                case: String::new(),
                at,
                workload: String::new(),
                expect: expect.clone(),
                got: String::new(),
                pods_ok: true,
                expect_action: expect_action.clone(),
                action: action.to_string(),
            };
            let action = seen
                .iter()
                .map(|x| x.2.clone())
                .find(|a| probe(a).wrong_action())
                .unwrap_or(pick.2.clone());
            let (got, pods_ok) = (pick.0, pick.1);
            out.push(Scored {
                case: case.clone(),
                at,
                workload: format!("{ns}/{workload}"),
                expect,
                got,
                pods_ok,
                expect_action,
                action,
            });
        }
    }
    Ok(out)
}

fn print(scored: &[Scored]) {
    for s in scored {
        eprintln!(
            "{:<24} {:>12.0} {:<28} expect {:<18} got {:<18} pods {} action {}{}",
            s.case,
            s.at,
            s.workload,
            s.expect,
            s.got,
            if s.pods_ok { "ok" } else { "WRONG" },
            s.action,
            if s.wrong_action() { " (WRONG)" } else { "" }
        );
    }
    let ok = scored.iter().filter(|s| s.class_ok()).count();
    let wrong = scored.iter().filter(|s| s.wrong_action()).count();
    eprintln!(
        "{} evaluations: {ok} classified correctly, {wrong} wrong actions",
        scored.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_real_node_series() {
    support::install_crypto();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/realnode");
    if !dir.is_dir() {
        eprintln!(
            "no recorded fixtures in {}: nothing to score (see the scoring-path test below)",
            dir.display()
        );
        return;
    }
    for hold in [HoldMode::Fixed, HoldMode::Adaptive] {
        let scored = score_dir(&dir, hold)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        println!("hold {hold:?}:");
        print(&scored);
        assert!(
            !scored.is_empty(),
            "{} holds no labelled case",
            dir.display()
        );
        let wrong: Vec<&Scored> = scored.iter().filter(|s| s.wrong_action()).collect();
        assert!(
            wrong.is_empty(),
            "wrong actions on recorded data with the {hold:?} hold: {wrong:?}"
        );
    }
}

/// The scoring path itself, on a fixture written in the recorded format: a runaway pod and a
/// crash-looping one, scored right; a mislabelled evaluation is reported as a miss.
#[tokio::test(flavor = "multi_thread")]
async fn the_scoring_path_reads_fixtures_and_labels() {
    support::install_crypto();
    let at = past_anchor();
    let scrape = Scrape {
        from: at - 1800.0,
        to: at + 1.0,
        interval: 15.0,
        offset: 3.0,
    };
    let mut series: Vec<SeriesData> = vec![];
    for (w, bad) in [("spin", "spin-rs-b"), ("crashy", "crashy-rs-a")] {
        let rs = format!("{w}-rs");
        series.push(replicaset_owner(
            "demo",
            &rs,
            w,
            scrape,
            scrape.from,
            scrape.to,
        ));
        for (i, sfx) in ["a", "b", "c"].iter().enumerate() {
            let pod = Pod::of_replicaset("demo", &rs, sfx, at - 7200.0);
            let is_bad = pod.name == bad;
            let crashes: Vec<f64> = (0..6).map(|k| at - 900.0 + 150.0 * k as f64).collect();
            let state = |t: f64| PodState {
                cpu: if is_bad && w == "spin" {
                    0.97
                } else {
                    0.1 + 0.01 * noise(i as u64, t)
                },
                throttle: if is_bad && w == "spin" { 0.4 } else { 0.0 },
                memory: 100e6,
                restarts: if is_bad && w == "crashy" {
                    crashes.iter().filter(|c| **c <= t).count() as u32
                } else {
                    0
                },
            };
            series.extend(pod_series(
                &pod,
                scrape,
                scrape,
                state,
                |_| true,
                |_| true,
                Emit { pod_level: false },
            ));
            if is_bad && w == "crashy" {
                series.extend(status_series(
                    &pod,
                    scrape,
                    |t| {
                        crashes
                            .iter()
                            .any(|c| t >= *c - 20.0 && t < *c)
                            .then_some("CrashLoopBackOff")
                    },
                    |t| (t >= crashes[0] - 20.0).then_some("Error"),
                    |_| true,
                ));
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("demo.om"), openmetrics(&series)).expect("writing demo.om");
    let labels = serde_json::json!({"evaluations": [
        {"at": at, "namespace": "demo", "workload": "spin", "fault": "RunawayProcess", "pods": ["spin-rs-b"]},
        {"at": at, "namespace": "demo", "workload": "crashy", "fault": "CrashLoop"},
        {"at": at, "namespace": "demo", "workload": "crashy", "fault": "Healthy", "action": "None"},
    ]});
    std::fs::write(dir.path().join("demo.labels.json"), labels.to_string())
        .expect("writing labels");
    let scored = score_dir(dir.path(), HoldMode::Fixed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    print(&scored);
    assert_eq!(scored.len(), 3);
    assert!(
        scored[0].class_ok() && !scored[0].wrong_action(),
        "{:?}",
        scored[0]
    );
    assert_eq!(scored[0].action, "RestartPod");
    assert!(
        scored[1].class_ok() && !scored[1].wrong_action(),
        "{:?}",
        scored[1]
    );
    assert_eq!(scored[1].action, "Escalate");
    // The mislabelled one: a miss and a wrong action, as scored.
    assert!(
        !scored[2].class_ok() && scored[2].wrong_action(),
        "{:?}",
        scored[2]
    );

    // A labels file that is not JSON is a clear error naming it.
    std::fs::write(dir.path().join("demo.labels.json"), "{").expect("writing labels");
    let err = score_dir(dir.path(), HoldMode::Fixed)
        .await
        .expect_err("bad labels");
    assert!(err.contains("demo.labels.json"), "{err}");
}
