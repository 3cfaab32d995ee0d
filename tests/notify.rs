//! Notifications against a local receiver: payload shapes, retry after failures, timeout.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, routing::post};
use homeostat::{
    egress::AllowList,
    notify::{Notification, Notifier},
    v1alpha1::{WebhookFormat, WebhookSpec},
};

#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Status codes to answer, in order; 200 once exhausted.
    script: Arc<Mutex<Vec<u16>>>,
    delay: Duration,
}

async fn hook(State(r): State<Receiver>, body: String) -> StatusCode {
    tokio::time::sleep(r.delay).await;
    r.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap());
    let code = {
        let mut s = r.script.lock().unwrap();
        if s.is_empty() { 200 } else { s.remove(0) }
    };
    StatusCode::from_u16(code).unwrap()
}

async fn start(r: Receiver) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(hook)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

/// A notifier that allows only `url`.
fn notifier(url: &str) -> Notifier {
    Notifier::new(AllowList::parse("webhooks", "--webhook-allow", &[url.to_string()]).unwrap())
        .unwrap()
}

fn incident() -> Notification {
    Notification {
        namespace: "shop".into(),
        policy: "checkout".into(),
        remediation: "checkout-crashloop-x7k2p".into(),
        target: "Deployment/checkout".into(),
        pattern: "CrashLoop".into(),
        action: "Escalate".into(),
        phase: "Escalated".into(),
        message: "3 of 3 pods restarting repeatedly".into(),
    }
}

fn hook_spec(url: String, format: WebhookFormat) -> WebhookSpec {
    WebhookSpec {
        url,
        format,
        on_every_action: false,
    }
}

#[tokio::test]
async fn generic_and_slack_payloads_arrive() {
    let r = Receiver::default();
    let url = start(r.clone()).await;
    let http = notifier(&url);
    http.send(
        &hook_spec(url.clone(), WebhookFormat::Generic),
        &incident(),
        3,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    http.send(
        &hook_spec(url, WebhookFormat::Slack),
        &incident(),
        3,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let bodies = r.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["incident"]["phase"], "Escalated");
    assert_eq!(bodies[0]["incident"]["target"], "Deployment/checkout");
    let text = bodies[1]["text"].as_str().unwrap();
    assert!(
        text.contains("CrashLoop")
            && text.contains("Escalated")
            && text.contains("checkout-crashloop-x7k2p"),
        "{text}"
    );
}

#[tokio::test]
async fn failures_are_retried_then_given_up() {
    let r = Receiver {
        script: Arc::new(Mutex::new(vec![500, 502])),
        ..Receiver::default()
    };
    let url = start(r.clone()).await;
    let http = notifier(&url);
    let spec = hook_spec(url, WebhookFormat::Generic);
    http.send(&spec, &incident(), 3, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        r.bodies.lock().unwrap().len(),
        3,
        "two failures, then delivered"
    );

    *r.script.lock().unwrap() = vec![500, 500, 500];
    let err = http
        .send(&spec, &incident(), 3, Duration::from_secs(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("after 3 attempt(s)") && err.contains("500"),
        "{err}"
    );
}

#[tokio::test]
async fn a_slow_receiver_times_out() {
    let r = Receiver {
        delay: Duration::from_secs(5),
        ..Receiver::default()
    };
    let url = start(r).await;
    let started = Instant::now();
    let err = notifier(&url)
        .send(
            &hook_spec(url, WebhookFormat::Generic),
            &incident(),
            1,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up on time"
    );
    assert!(err.contains("failed after 1 attempt"), "{err}");
}
