//! The Prometheus client, the PromQL templating and the staleness rule against a real Prometheus
//! (Debian's `prometheus` and `promtool`, see `tests/support`). Error paths that a real Prometheus
//! cannot produce on demand (timeouts, credentials) use tiny local TCP servers.

mod support;

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::mpsc,
    time::{Duration, Instant},
};

use homeostat::{
    diagnose,
    diagnosis::{
        StdSignal,
        fetch::{QuerySet, workload_vars},
    },
    prometheus::{Auth, ClientConfig, PromClient, PromError, template::Vars},
    v1alpha1::FaultKind,
};
use support::{
    SeriesData, TestProm, client_for, free_port,
    k8s::{Emit, Pod, PodState, Scrape, pod_series, replicaset_owner},
    openmetrics, past_anchor,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A gauge stepping 0, 1, 2, ... and a counter growing 2/s, every 15 s over 10 minutes before `at`.
fn simple_data(at: f64) -> Vec<SeriesData> {
    let t0 = at - 600.0;
    let gauge = SeriesData::new(
        "homeostat_test_gauge",
        &[("namespace", "shop"), ("pod", "web-1")],
    )
    .with((0..=40).map(|i| (t0 + 15.0 * f64::from(i), f64::from(i))));
    let other = SeriesData::new(
        "homeostat_test_gauge",
        &[("namespace", "other"), ("pod", "db-1")],
    )
    .with((0..=40).map(|i| (t0 + 15.0 * f64::from(i), 100.0)));
    let counter = SeriesData::new(
        "homeostat_test_requests_total",
        &[("namespace", "shop"), ("pod", "web-1")],
    )
    .with((0..=40).map(|i| (t0 + 15.0 * f64::from(i), 30.0 * f64::from(i))));
    vec![counter, gauge, other]
}

#[tokio::test]
async fn instant_and_range_queries_return_the_backfilled_series() {
    let at = past_anchor();
    let prom = TestProm::start(&openmetrics(&simple_data(at)));
    let c = prom.client(TIMEOUT);

    // Instant: the newest sample at or before `at - 150` is sample 30.
    let s = c
        .instant(r#"homeostat_test_gauge{namespace="shop"}"#, at - 150.0)
        .await
        .expect("instant query");
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].label("pod"), Some("web-1"));
    assert_eq!(s[0].label("__name__"), Some("homeostat_test_gauge"));
    assert_eq!(s[0].points, vec![(at - 150.0, 30.0)]);

    // Both namespaces without a selector.
    let all = c
        .instant("homeostat_test_gauge", at)
        .await
        .expect("instant query");
    let mut ns: Vec<&str> = all.iter().filter_map(|s| s.label("namespace")).collect();
    ns.sort_unstable();
    assert_eq!(ns, ["other", "shop"]);

    // A counter through rate(): 30 per 15 s is 2 per second.
    let r = c
        .instant("rate(homeostat_test_requests_total[1m])", at - 60.0)
        .await
        .expect("rate");
    assert_eq!(r.len(), 1);
    assert!((r[0].points[0].1 - 2.0).abs() < 1e-9, "{r:?}");

    // Range: every 30 s over the last 5 minutes, 11 points, value = sample index.
    let r = c
        .range(
            r#"homeostat_test_gauge{namespace="shop"}"#,
            at - 300.0,
            at,
            30.0,
        )
        .await
        .expect("range query");
    assert_eq!(r.len(), 1);
    let want: Vec<(f64, f64)> = (0..=10)
        .map(|i| (at - 300.0 + 30.0 * f64::from(i), f64::from(20 + 2 * i)))
        .collect();
    assert_eq!(r[0].points, want);

    // Past the data: nothing within the 5-minute lookback.
    let none = c
        .instant("homeostat_test_gauge", at + 600.0)
        .await
        .expect("instant query");
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn a_query_prometheus_rejects_carries_its_own_message() {
    let at = past_anchor();
    let prom = TestProm::start(&openmetrics(&simple_data(at)));
    let c = prom.client(TIMEOUT);
    let err = c.instant("sum(", at).await.expect_err("`sum(` is invalid");
    match &err {
        PromError::Rejected {
            error_type,
            message,
            query,
        } => {
            assert_eq!(error_type, "bad_data");
            assert!(message.contains("parse error"), "{message}");
            assert_eq!(query, "sum(");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(err.is_spec_error());
    assert_eq!(err.category(), "QueryRejected");

    // A range query with more points than Prometheus allows is rejected too, with its words.
    let err = c
        .range("homeostat_test_gauge", at - 86_400.0 * 30.0, at, 1.0)
        .await
        .expect_err("too many points");
    assert!(
        matches!(&err, PromError::Rejected { message, .. } if message.contains("exceeded maximum resolution")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = free_port();
    let c = client_for(&format!("http://127.0.0.1:{port}"), TIMEOUT);
    let err = c.instant("up", 0.0).await.expect_err("nothing listens");
    assert!(
        matches!(&err, PromError::Unreachable { url, .. } if url.ends_with(&port.to_string())),
        "{err:?}"
    );
    assert_eq!(err.category(), "PrometheusUnreachable");
    assert!(!err.is_spec_error());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accept and hold connections without ever answering.
    std::thread::spawn(move || {
        let mut held = vec![];
        for s in listener.incoming().take(4).flatten() {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let c = client_for(&format!("http://{addr}"), Duration::from_millis(300));
    let t = Instant::now();
    let err = c.instant("up", 0.0).await.expect_err("no answer");
    assert!(
        matches!(&err, PromError::Timeout { timeout, .. } if *timeout == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(err.category(), "PrometheusTimeout");
}

/// Serves one request with an empty success answer and hands back the raw request.
fn capture_one() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = vec![];
        let mut chunk = [0u8; 4096];
        // Read the headers, then as much body as Content-Length says.
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
        }
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tx.send(String::from_utf8_lossy(&buf).to_string());
    });
    (format!("http://{addr}"), rx)
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

async fn request_with(auth: Auth) -> String {
    let (url, rx) = capture_one();
    support::install_crypto();
    let c = PromClient::new(ClientConfig {
        auth,
        timeout: Duration::from_secs(5),
        ..ClientConfig::new(url)
    })
    .expect("client");
    let r = c.instant("up", 1_700_000_000.0).await.expect("query");
    assert!(r.is_empty());
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the request was captured")
}

#[tokio::test]
async fn credentials_are_sent_as_authorization_headers() {
    let req = request_with(Auth::Bearer("tok-123".into())).await;
    assert!(req.starts_with("POST /api/v1/query "), "{req}");
    assert_eq!(header(&req, "authorization"), Some("Bearer tok-123"));
    assert!(req.contains("query=up"), "{req}");
    assert!(req.contains("time=1700000000.000"), "{req}");

    let req = request_with(Auth::Basic {
        username: "user".into(),
        password: "hunter2".into(),
    })
    .await;
    // base64("user:hunter2")
    assert_eq!(
        header(&req, "authorization"),
        Some("Basic dXNlcjpodW50ZXIy")
    );

    let req = request_with(Auth::None).await;
    assert_eq!(header(&req, "authorization"), None, "{req}");
}

const HOSTILE: &str = r#"x"} or vector(1) or x{a=""#;

#[tokio::test]
async fn hostile_label_values_cannot_escape_their_matcher() {
    let at = past_anchor();
    let pts = |v: f64| (0..=20).map(move |i| (at - 300.0 + 15.0 * f64::from(i), v));
    let probe = |ns: &str, pod: &str, v: f64| {
        SeriesData::new("homeostat_probe", &[("namespace", ns), ("pod", pod)]).with(pts(v))
    };
    let hostile_ns = format!("ns-{HOSTILE}");
    let mut data = vec![
        probe("shop", "web.1", 1.0),
        probe("shop", "webx1", 2.0),
        probe(&hostile_ns, "web-1", 7.0),
    ];
    // The real standard cpu query over a pod in a namespace with a hostile name.
    let pod = Pod::of_replicaset(&hostile_ns, "web-5d9c", "a1b2c", at - 3600.0);
    let scrape = Scrape {
        from: at - 1200.0,
        to: at + 1.0,
        interval: 15.0,
        offset: 0.0,
    };
    let state = |_| PodState {
        cpu: 0.25,
        throttle: 0.0,
        memory: 1e8,
        restarts: 0,
    };
    data.extend(pod_series(
        &pod,
        scrape,
        scrape,
        state,
        |_| true,
        |_| true,
        Emit { pod_level: true },
    ));
    let prom = TestProm::start(&openmetrics(&data));
    let c = prom.client(TIMEOUT);
    let template = r#"homeostat_probe{namespace="{{ namespace }}"}"#;

    // Escaped: a value that names no namespace finds nothing ...
    let missing = Vars::default()
        .set("namespace", HOSTILE)
        .render(template)
        .expect("renders");
    let r = c.instant(&missing, at).await.expect("a valid query");
    assert!(r.is_empty(), "{missing} returned {r:?}");
    // ... while the same value substituted unescaped injects `vector(1)`.
    let naive = template.replace("{{ namespace }}", HOSTILE);
    let r = c.instant(&naive, at).await.expect("the injection parses");
    assert_eq!(r.len(), 1, "{naive} returned {r:?}");
    assert!(r[0].labels.is_empty() && r[0].points[0].1 == 1.0, "{r:?}");

    // Escaped, the hostile value still matches exactly the series that carries it.
    let exact = Vars::default()
        .set("namespace", hostile_ns.clone())
        .render(template)
        .expect("renders");
    let r = c.instant(&exact, at).await.expect("a valid query");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].label("namespace"), Some(hostile_ns.as_str()));
    assert_eq!(r[0].points[0].1, 7.0);

    // Pod names are regex-escaped: `web.1` matches itself, not `webx1`.
    let pods = workload_vars("shop", "web", &["web.1".to_string()], "1m")
        .render(r#"homeostat_probe{namespace=~"{{ namespace }}", pod=~"{{ pods }}"}"#)
        .expect("renders");
    let r = c.instant(&pods, at).await.expect("a valid query");
    let names: Vec<&str> = r.iter().filter_map(|s| s.label("pod")).collect();
    assert_eq!(names, ["web.1"], "{pods}");
    let naive = r#"homeostat_probe{namespace=~"shop", pod=~"web.1"}"#;
    assert_eq!(c.instant(naive, at).await.expect("valid").len(), 2);

    // The operator's own cpu query, rendered for the hostile namespace, finds that pod alone,
    // summed over its app container only (not the pod-level or pause series).
    let q = workload_vars(&hostile_ns, "web", std::slice::from_ref(&pod.name), "1m")
        .render(QuerySet::standard().template(StdSignal::Cpu))
        .expect("renders");
    let r = c.instant(&q, at).await.expect("a valid query");
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    assert_eq!(r[0].label("pod"), Some(pod.name.as_str()));
    assert!((r[0].points[0].1 - 0.25).abs() < 1e-6, "{r:?}");
}

/// A three-pod Deployment in `ns` whose pod `-b` has no cAdvisor data after `at - cadvisor_gone`.
fn three_pods(ns: &str, at: f64, cadvisor_gone: Option<f64>) -> Vec<SeriesData> {
    let scrape = Scrape {
        from: at - 1800.0,
        to: at + 1.0,
        interval: 15.0,
        offset: 0.0,
    };
    let rs = "web-7f8d9";
    let mut out = vec![replicaset_owner(
        ns,
        rs,
        "web",
        scrape,
        at - 1800.0,
        at + 1.0,
    )];
    for suffix in ["a", "b", "c"] {
        let pod = Pod::of_replicaset(ns, rs, suffix, at - 7200.0);
        let stop = match (suffix, cadvisor_gone) {
            ("b", Some(gone)) => at - gone,
            _ => f64::INFINITY,
        };
        out.extend(pod_series(
            &pod,
            scrape,
            scrape,
            |_| PodState {
                // Zero CPU: "no data" read as zero would look perfectly healthy.
                cpu: 0.0,
                throttle: 0.0,
                memory: 50e6,
                restarts: 0,
            },
            move |t| t < stop,
            |_| true,
            Emit { pod_level: false },
        ));
    }
    out
}

#[tokio::test]
async fn a_stale_series_is_inconclusive_never_healthy_by_zero() {
    let at = past_anchor();
    let mut data = three_pods("fresh", at, None);
    data.extend(three_pods("stale", at, Some(300.0)));
    data.extend(three_pods("recent", at, Some(20.0)));
    let prom = TestProm::start(&openmetrics(&data));
    let c = prom.client(TIMEOUT);
    let finding = |ns: &'static str| {
        let c = c.clone();
        async move {
            let r = diagnose::run(
                &c,
                &diagnose::Options {
                    at,
                    namespace: Some(ns.into()),
                    policies: vec![],
                    settings: homeostat::diagnosis::Settings::default(),
                },
            )
            .await
            .expect("diagnose");
            assert_eq!(r.findings.len(), 1, "{ns}: {r:?}");
            r.findings.into_iter().next().expect("one finding")
        }
    };
    let fresh = finding("fresh").await;
    assert_eq!(fresh.fault, FaultKind::Healthy, "{fresh:?}");

    // cAdvisor lost pod b 5 minutes ago (kube-state-metrics still lists it).
    let stale = finding("stale").await;
    assert_eq!(stale.fault, FaultKind::Inconclusive, "{stale:?}");
    assert_eq!(stale.action.type_, "None");
    for fault in ["runaway", "leak", "contention"] {
        let v = stale
            .verdicts
            .iter()
            .find(|v| v.fault == fault)
            .expect("every default fault has a verdict");
        assert_eq!(v.verdict, FaultKind::Inconclusive, "{fault}: {v:?}");
        assert!(v.message.contains("web-7f8d9-b"), "{}", v.message);
    }

    // Lost 20 s ago: within the 45 s bound, still judged.
    let recent = finding("recent").await;
    assert_eq!(recent.fault, FaultKind::Healthy, "{recent:?}");
}

/// A Deployment in `ns` whose pod `-b` has been pinned at its 1-core limit for 20 minutes.
fn runaway_pods(ns: &str, at: f64) -> Vec<SeriesData> {
    let scrape = Scrape {
        from: at - 1800.0,
        to: at + 1.0,
        interval: 15.0,
        offset: 0.0,
    };
    let rs = "web-7f8d9";
    let mut out = vec![replicaset_owner(
        ns,
        rs,
        "web",
        scrape,
        scrape.from,
        scrape.to,
    )];
    for suffix in ["a", "b", "c"] {
        let pod = Pod::of_replicaset(ns, rs, suffix, at - 7200.0);
        let hot = suffix == "b";
        out.extend(pod_series(
            &pod,
            scrape,
            scrape,
            move |t| PodState {
                cpu: if hot && t >= at - 1200.0 { 0.98 } else { 0.1 },
                throttle: 0.0,
                memory: 50e6,
                restarts: 0,
            },
            |_| true,
            |_| true,
            Emit { pod_level: false },
        ));
    }
    out
}

#[tokio::test]
async fn a_partial_answer_is_no_data_never_a_complete_one() {
    use homeostat::diagnosis::{Settings, Subject, choose, default_faults, fetch::PodRef, sweep};

    let at = past_anchor();
    let data = openmetrics(&runaway_pods("shop", at));
    // The same series; the second Prometheus also reads a remote store that is down, so every
    // answer is `success` with the remote read's failure as a warning (what a Thanos Query with
    // partial responses on answers when a store is down).
    let complete = TestProm::start(&data);
    let dead = format!("http://127.0.0.1:{}/api/v1/read", free_port());
    let partial = TestProm::start_with_config(
        &data,
        &format!("remote_read:\n- url: {dead}\n  read_recent: true\n  remote_timeout: 2s\n"),
    );
    let mut spec: homeostat::v1alpha1::RemediationPolicySpec =
        serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Deployment", "name": "web"},
            "faults": [],
        }))
        .expect("a valid spec");
    spec.faults = default_faults();
    let pods: Vec<PodRef> = ["a", "b", "c"]
        .iter()
        .map(|s| PodRef {
            namespace: "shop".into(),
            name: format!("web-7f8d9-{s}"),
            started_at: None,
        })
        .collect();
    let subject = Subject {
        spec: &spec,
        namespace: "shop",
        workload: "web",
        pods: &pods,
    };
    let settings = Settings::default();

    let full = sweep::evaluate_one(&complete.client(TIMEOUT), &subject, at, &settings).await;
    assert!(full.fetch_error.is_none(), "{:?}", full.fetch_error);
    let (_, v) = choose(&spec.faults, &full.verdicts).expect("the runaway is found on full data");
    assert_eq!(v.verdict.kind, FaultKind::RunawayProcess, "{v:?}");

    let part = sweep::evaluate_one(&partial.client(TIMEOUT), &subject, at, &settings).await;
    let e = part
        .fetch_error
        .as_deref()
        .expect("a partial answer is a fetch error");
    assert_eq!(e.category(), "PrometheusPartialAnswer", "{e}");
    assert!(e.to_string().contains("treating it as no data"), "{e}");
    assert!(
        choose(&spec.faults, &part.verdicts).is_none(),
        "no action on a partial answer: {:?}",
        part.verdicts
    );
    for v in &part.verdicts {
        assert_eq!(v.verdict.kind, FaultKind::Inconclusive, "{v:?}");
        assert!(
            v.verdict.message.contains("incompletely"),
            "{}",
            v.verdict.message
        );
    }
    // `diagnose` stops at discovery with the same reason.
    let r = diagnose::run(
        &partial.client(TIMEOUT),
        &diagnose::Options {
            at,
            namespace: Some("shop".into()),
            policies: vec![],
            settings,
        },
    )
    .await;
    match r {
        Err(e) => assert!(e.to_string().contains("incompletely"), "{e}"),
        Ok(r) => panic!("diagnose read a partial answer as complete: {r:?}"),
    }
}
