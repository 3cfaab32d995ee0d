//! `homeostat backtest` over a real Prometheus: a runaway pod backfilled into the past, a policy
//! replayed over it. The imagined action does not change the data, so the incident must retry and
//! then escalate — exactly what the operator's lifecycle would do.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use homeostat::{
    backtest::{self, Options},
    diagnosis::Settings,
    v1alpha1::{ActionType, Phase, RemediationPolicy},
};
use support::{
    SeriesData, TestProm,
    k8s::{Emit, Pod, PodState, Scrape, pod_series, replicaset_owner},
    noise, openmetrics, past_anchor,
};

const ONSET_BEFORE_END: f64 = 1200.0;

fn data(at: f64) -> Vec<SeriesData> {
    let scrape = Scrape {
        from: at - 3600.0,
        to: at + 1.0,
        interval: 15.0,
        offset: 0.0,
    };
    let ksm = Scrape {
        offset: 4.0,
        ..scrape
    };
    let mut out = vec![replicaset_owner(
        "shop",
        "search-6d4cf56db7",
        "search",
        ksm,
        scrape.from,
        scrape.to,
    )];
    for i in 0..4u64 {
        let mut pod = Pod::of_replicaset("shop", "search-6d4cf56db7", "x", at - 7200.0);
        pod.name = format!("search-6d4cf56db7-p{i}");
        out.extend(pod_series(
            &pod,
            scrape,
            ksm,
            move |t| {
                let runaway = i == 1 && t >= at - ONSET_BEFORE_END;
                PodState {
                    cpu: if runaway {
                        0.97
                    } else {
                        0.15 * (1.0 + 0.2 * noise(i, t))
                    },
                    throttle: if runaway { 0.6 } else { 0.01 },
                    memory: 180.0 * 1024.0 * 1024.0,
                    restarts: 0,
                }
            },
            |_| true,
            |_| true,
            Emit { pod_level: true },
        ));
    }
    out
}

const POLICY: &str = r#"
apiVersion: homeostat.dev/v1alpha1
kind: RemediationPolicy
metadata: {name: search, namespace: shop}
spec:
  targetRef: {kind: Deployment, name: search}
  interval: 30s
  faults:
    - {name: runaway, pattern: RunawayProcess, for: 2m, action: {type: RestartPod}}
  verify: {stableFor: 2m, timeout: 5m, maxAttempts: 2}
  guards: {cooldown: 10m, maxActionsPerHour: 3}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn replays_detection_retry_and_escalation_and_plots_them() {
    let at = past_anchor();
    let prom = TestProm::start(&openmetrics(&data(at)));
    let client = prom.client(Duration::from_secs(10));
    let policy: RemediationPolicy = serde_saphyr::from_str(POLICY).unwrap();
    let opts = Options {
        from: at - 1800.0,
        to: at,
        every: 30.0,
        namespace: "shop".into(),
        settings: Settings::default(),
    };
    let mut ticks = 0;
    let report = backtest::run(&client, &policy, &opts, || ticks += 1)
        .await
        .unwrap();
    assert_eq!(ticks, 61, "one tick per evaluation");
    assert_eq!(report.evaluations, 61);
    assert_eq!(report.blind, 0);
    println!("{}", backtest::table(&report));

    let onset = at - ONSET_BEFORE_END;
    let first = &report.decisions[0];
    assert_eq!(first.action, ActionType::RestartPod);
    assert_eq!(
        first.pods,
        vec!["search-6d4cf56db7-p1".to_string()],
        "the runaway pod, only"
    );
    assert!(
        first.t >= onset + 120.0 && first.t <= onset + 120.0 + 120.0,
        "detected after `for`, within two rate windows: {}s after onset",
        first.t - onset
    );
    // Not recovered (the data cannot react): a second attempt after the 5m timeout, then escalation.
    let inc1: Vec<_> = report
        .decisions
        .iter()
        .filter(|d| d.incident == 1)
        .collect();
    let kinds: Vec<ActionType> = inc1.iter().map(|d| d.action).collect();
    assert_eq!(
        kinds,
        vec![
            ActionType::RestartPod,
            ActionType::RestartPod,
            ActionType::Escalate
        ]
    );
    assert!(
        inc1[1].t - inc1[0].t >= 300.0,
        "the retry waits for verify.timeout"
    );
    assert_eq!(report.incidents[0].phase, Phase::Escalated);
    assert!(
        report.decisions.iter().all(|d| d.t >= onset),
        "nothing before the fault began"
    );
    // The cooldown (10m from the last action) holds any new incident for at least that long.
    if let Some(second) = report.incidents.get(1) {
        assert!(
            secs(&second.opened_at) - inc1[1].t >= 600.0,
            "cooldown respected"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("plot.svg");
    backtest::plot(&client, &report, &opts, "shop", &svg)
        .await
        .unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("<svg") && text.matches("<polyline").count() >= 4 + 3,
        "4 pods + 3 decision lines"
    );
}

fn secs(rfc3339: &str) -> f64 {
    rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond() as f64 / 1000.0
}
