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

const FORECAST_POLICY: &str = r#"
apiVersion: homeostat.dev/v1alpha1
kind: RemediationPolicy
metadata: {name: search, namespace: shop}
spec:
  targetRef: {kind: Deployment, name: search}
  interval: 30s
  signals:
    - {name: rps, query: 'sum(demand_rps{namespace="{{ namespace }}", deployment="{{ workload }}"})'}
  faults:
    - name: contention
      pattern: ResourceContention
      for: 2m
      action:
        type: Scale
        scale:
          minReplicas: 2
          maxReplicas: 30
          forecast: {signal: rps, perPod: 50, history: 72h, step: 5m, level: 0.8}
"#;

/// A business day (300 rps from 08:00 to 18:00 with half-hour ramps, 60 at night) with 3 % noise.
fn demand_at(t: f64) -> f64 {
    let h = (t % 86_400.0) / 3600.0;
    let ramp = |x: f64| x.clamp(0.0, 1.0);
    let day = ramp((h - 8.0) * 2.0) * ramp((18.0 - h) * 2.0);
    (60.0 + 240.0 * day) * (1.0 + 0.03 * noise(7, t))
}

/// Four days of [`demand_at`] up to `at`, one sample a minute, in a real Prometheus.
fn demand_prom(at: f64) -> TestProm {
    let series = SeriesData::new(
        "demand_rps",
        &[("namespace", "shop"), ("deployment", "search")],
    )
    .with(
        (0..=(4 * 86_400 / 60))
            .map(|i| at - 4.0 * 86_400.0 + i as f64 * 60.0)
            .map(|t| (t, demand_at(t))),
    );
    TestProm::start(&openmetrics(&[series]))
}

#[tokio::test(flavor = "multi_thread")]
async fn forecast_scaling_replayed_on_real_prometheus_history_is_ahead_of_reactive() {
    let at = past_anchor();
    let from = at - 86_400.0;
    let prom = demand_prom(at);
    let client = prom.client(Duration::from_secs(30));
    let policy: RemediationPolicy = serde_saphyr::from_str(FORECAST_POLICY).unwrap();
    let r = backtest::forecast::run(&client, &policy.spec, "shop", from, at, 300, 180)
        .await
        .unwrap();
    println!("{}", backtest::forecast::table(&r, 300));
    println!("{}", homeostat::forecast::replay::ascii_plot(&r, 6, 12));
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("forecast.svg");
    backtest::forecast::plot(&r, 300, "search", &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("<svg") && text.matches("<polyline").count() >= 3,
        "need, reactive and forecast lines"
    );
    assert_eq!(r.no_forecast, 0, "{:?}", r.first_reason);
    assert!(
        r.need.len() >= 280,
        "a day of 5-minute samples: {}",
        r.need.len()
    );
    assert!(r.mape < 0.15, "MAPE {}", r.mape);
    let (ur, uf) = (r.under(&r.reactive), r.under(&r.forecast));
    assert!(ur > 0.0, "reactive is late at the morning ramp");
    assert!(
        uf <= ur / 2.0,
        "forecast under-provisioned {uf} vs reactive {ur}"
    );
    assert!(
        r.forecast
            .iter()
            .zip(&r.reactive)
            .all(|(f, re)| f >= re && (2..=30).contains(f)),
        "never below reactive, always within bounds"
    );
}

/// What the operator reports for a forecast block (`status.targets[].forecast`), computed the way
/// the sweep does (one range query over the history, the model, the rule) on the same real history:
/// ten minutes into the morning ramp with a 10-minute pod start it asks for more replicas than the
/// current demand needs; at night it holds; with no history it says why and asks for nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_operators_forecast_status_scales_ahead_of_the_morning_ramp() {
    use homeostat::{
        controller::forecast::compute,
        v1alpha1::{ForecastMode, TargetRef, WorkloadKind},
    };
    let at = past_anchor();
    let prom = demand_prom(at);
    let client = prom.client(Duration::from_secs(30));
    let policy: RemediationPolicy = serde_saphyr::from_str(FORECAST_POLICY).unwrap();
    let target = TargetRef {
        kind: WorkloadKind::Deployment,
        name: "search".into(),
    };
    // The last 08:10 and 02:00 (UTC) with three days of history before them.
    let last = |clock: f64| at - ((at - clock).rem_euclid(86_400.0));
    let ts = |t: f64| jiff::Timestamp::from_second(t as i64).unwrap();
    let ready = [(0.0, 600.0), (1000.0, 1600.0)];
    let morning = compute(
        &client,
        &policy.spec,
        "shop",
        &target,
        2,
        &ready,
        ts(last(8.0 * 3600.0 + 600.0)),
    )
    .await;
    println!("morning: {morning:?}");
    assert_eq!(morning.mode, ForecastMode::Shadow);
    assert_eq!(morning.pod_ready_seconds, 600.0);
    assert_eq!(morning.current_need, Some(3), "140 rps at 50 per pod");
    let (need, rec) = (morning.forecast_need.unwrap(), morning.recommended.unwrap());
    assert!(need >= 4 && rec == need.min(30), "{morning:?}");
    assert!(
        morning.message.contains("would scale out to") && morning.message.contains("ahead"),
        "{}",
        morning.message
    );

    let night = compute(
        &client,
        &policy.spec,
        "shop",
        &target,
        2,
        &ready,
        ts(last(2.0 * 3600.0)),
    )
    .await;
    println!("night: {night:?}");
    assert_eq!(night.current_need, Some(2));
    assert_eq!(night.recommended, None, "{night:?}");
    assert!(night.forecast_peak.is_some());

    let none = compute(&client, &policy.spec, "elsewhere", &target, 2, &[], ts(at)).await;
    println!("no history: {none:?}");
    assert_eq!(none.recommended, None);
    assert_eq!(
        none.pod_ready_seconds, 60.0,
        "the default without a measured start"
    );
    assert!(none.message.starts_with("no forecast:"), "{}", none.message);
}
