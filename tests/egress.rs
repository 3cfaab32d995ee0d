//! Nothing to steal: a policy cannot make the operator send its Prometheus credentials, a query or
//! a notification anywhere the operator's allow-lists do not name, redirects are not followed and
//! answers are read up to a cap. Real local listeners stand for the attacker's server; the
//! apiserver is a tower-test service that counts the requests made to it (a Secret read).
#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use homeostat::{
    controller::prom::{self, Sources},
    egress::{AllowList, UrlPrefix},
    notify::{Notification, Notifier, NotifyError},
    prometheus::{ClientConfig, PromClient, PromError},
    v1alpha1::{PrometheusSource, SecretRef, WebhookFormat, WebhookSpec},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// What a local listener saw.
#[derive(Clone, Default)]
struct Seen {
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// How a listener answers every request.
#[derive(Clone)]
enum Answer {
    /// A fixed HTTP response (head and body).
    Fixed(String),
    /// 200 with a chunked body of `n` bytes.
    Chunked(usize),
}

async fn listen(answer: Answer) -> (String, Seen) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                let mut have = 0;
                // Read the head and a Content-Length body.
                loop {
                    let Ok(n) = sock.read(&mut buf[have..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    have += n;
                    let text = String::from_utf8_lossy(&buf[..have]).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if have >= end + 4 + len {
                            s.requests.lock().unwrap().push(text);
                            break;
                        }
                    }
                }
                match answer {
                    Answer::Fixed(r) => {
                        let _ = sock.write_all(r.as_bytes()).await;
                    }
                    Answer::Chunked(n) => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b' '; 64 << 10];
                        let mut sent = 0;
                        while sent < n {
                            let part = &chunk[..chunk.len().min(n - sent)];
                            let frame = format!("{:x}\r\n", part.len());
                            if sock.write_all(frame.as_bytes()).await.is_err()
                                || sock.write_all(part).await.is_err()
                                || sock.write_all(b"\r\n").await.is_err()
                            {
                                return; // the client hung up: good
                            }
                            sent += part.len();
                        }
                        let _ = sock.write_all(b"0\r\n\r\n").await;
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, seen)
}

fn empty_vector() -> Answer {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    Answer::Fixed(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// A kube client whose apiserver answers every request with a Secret holding `token`, counting them.
fn fake_apiserver(token: &'static str) -> (kube::Client, Arc<AtomicUsize>) {
    let (svc, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            c.fetch_add(1, Ordering::SeqCst);
            assert!(req.uri().path().contains("/secrets/"), "{}", req.uri());
            let secret = serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "prom-token", "namespace": "shop"},
                "data": {"token": base64(token)},
            });
            let body = kube::client::Body::from(serde_json::to_vec(&secret).unwrap());
            send.send_response(http::Response::builder().status(200).body(body).unwrap());
        }
    });
    (kube::Client::new(svc, "shop"), calls)
}

fn base64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn source(url: &str) -> PrometheusSource {
    PrometheusSource {
        url: url.to_string(),
        auth_secret_ref: Some(SecretRef {
            name: "prom-token".into(),
        }),
        timeout: None,
    }
}

fn sources(default_url: &str, extra: &[&str]) -> Sources {
    let default = PromClient::new(ClientConfig::new(default_url)).unwrap();
    let extra = extra.iter().map(|e| UrlPrefix::parse(e).unwrap()).collect();
    Sources::new(Some(default), extra, Duration::from_secs(5), 1 << 20)
}

#[tokio::test]
async fn a_policy_pointing_elsewhere_never_gets_the_token() {
    let (theirs, their_seen) = listen(empty_vector()).await;
    let (ours, _) = listen(empty_vector()).await;
    let (client, api_calls) = fake_apiserver("s3cr3t-token");
    let s = sources(&ours, &[]);

    let err = prom::client_for_policy(&client, "shop", Some(&source(&theirs)), &s)
        .await
        .expect_err("a URL outside the allow-list is refused");
    assert_eq!(err.reason(), "PrometheusURLNotAllowed", "{err}");
    assert!(err.is_spec_error());
    let msg = err.to_string();
    assert!(
        msg.contains(&theirs) && msg.contains("--prometheus-allow"),
        "{msg}"
    );
    // The same through the original entry point (what the controller called before).
    let err = prom::client_for(
        &client,
        "shop",
        Some(&source(&format!("{theirs}/api"))),
        s.default.as_ref(),
        Duration::from_secs(5),
    )
    .await
    .expect_err("refused");
    assert!(err.contains("is not allowed for Prometheus"), "{err}");
    // Neither the Secret was read nor a connection made.
    assert_eq!(api_calls.load(Ordering::SeqCst), 0, "the Secret was read");
    assert_eq!(their_seen.connections.load(Ordering::SeqCst), 0);

    // Hostile spellings of the allowed URL, each refused before the Secret is read.
    let port = ours.rsplit(':').next().unwrap();
    for hostile in [
        format!(
            "http://127.0.0.1:{port}@{}",
            theirs.trim_start_matches("http://")
        ),
        format!("{theirs}/?u={ours}"),
        format!("http://localhost:{port}"),
        format!("https://127.0.0.1:{port}"),
    ] {
        let err = prom::client_for_policy(&client, "shop", Some(&source(&hostile)), &s)
            .await
            .expect_err(&hostile);
        assert!(
            matches!(err, prom::SourceError::NotAllowed(_)),
            "{hostile}: {err}"
        );
    }
    assert_eq!(api_calls.load(Ordering::SeqCst), 0);
    assert_eq!(their_seen.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_allowed_url_gets_the_token_so_the_listener_would_see_it() {
    // The control: the same listener, allow-listed, does receive the token.
    let (theirs, seen) = listen(empty_vector()).await;
    let (client, api_calls) = fake_apiserver("s3cr3t-token");
    let s = sources("http://127.0.0.1:1", &[&theirs]);
    let c = prom::client_for_policy(&client, "shop", Some(&source(&theirs)), &s)
        .await
        .expect("allowed");
    assert_eq!(api_calls.load(Ordering::SeqCst), 1);
    c.instant("up", 1_700_000_000.0).await.expect("query");
    let reqs = seen.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    assert!(
        reqs[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cr3t-token"),
        "{}",
        reqs[0]
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (evil, evil_seen) = listen(empty_vector()).await;
    let redirect = Answer::Fixed(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {evil}/api/v1/query\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ));
    let (ours, _) = listen(redirect).await;
    let (client, _) = fake_apiserver("s3cr3t-token");
    let s = sources(&ours, &[]);
    let c = prom::client_for_policy(&client, "shop", Some(&source(&ours)), &s)
        .await
        .expect("allowed");
    let err = c
        .instant("up", 1_700_000_000.0)
        .await
        .expect_err("redirect");
    assert!(matches!(err, PromError::Http { status: 307, .. }), "{err}");
    assert!(err.to_string().contains("not followed"), "{err}");
    assert_eq!(evil_seen.connections.load(Ordering::SeqCst), 0);

    // Webhooks: an allow-listed receiver's redirect is not followed either.
    let notifier = Notifier::new(
        AllowList::parse("webhooks", "--webhook-allow", std::slice::from_ref(&ours)).unwrap(),
    )
    .unwrap();
    let err = notifier
        .send(
            &hook(&format!("{ours}/hook")),
            &incident(),
            1,
            Duration::from_secs(2),
        )
        .await
        .expect_err("redirect");
    assert!(
        err.to_string().contains("redirects are not followed"),
        "{err}"
    );
    assert_eq!(evil_seen.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_oversized_answer_is_refused_with_the_cap_and_the_query() {
    // Streamed (no Content-Length): the client stops reading past the cap.
    let (url, _) = listen(Answer::Chunked(8 << 20)).await;
    let mut cfg = ClientConfig::new(url.clone());
    cfg.max_body = 1 << 20;
    let c = PromClient::new(cfg).unwrap();
    let err = c
        .instant(
            "sum by (pod) (rate(container_cpu_usage_seconds_total[1m]))",
            1.0,
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(err, PromError::TooLarge { cap: 1_048_576, .. }),
        "{err}"
    );
    assert_eq!(err.category(), "PrometheusAnswerTooLarge");
    let msg = err.to_string();
    assert!(
        msg.contains("1048576 bytes") && msg.contains("container_cpu_usage_seconds_total"),
        "{msg}"
    );

    // Announced by Content-Length: refused before the body is read.
    let (url, _) = listen(Answer::Fixed(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n{"
            .into(),
    ))
    .await;
    let mut cfg = ClientConfig::new(url);
    cfg.max_body = 1 << 20;
    let err = PromClient::new(cfg)
        .unwrap()
        .range("up", 0.0, 60.0, 15.0)
        .await
        .expect_err("too large");
    assert!(matches!(err, PromError::TooLarge { .. }), "{err}");

    // Just under the cap is read.
    let (url, _) = listen(empty_vector()).await;
    let mut cfg = ClientConfig::new(url);
    cfg.max_body = 64;
    PromClient::new(cfg)
        .unwrap()
        .instant("up", 1.0)
        .await
        .expect("64 bytes are enough");
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

fn hook(url: &str) -> WebhookSpec {
    WebhookSpec {
        url: url.into(),
        format: WebhookFormat::Generic,
        on_every_action: false,
    }
}

#[tokio::test]
async fn webhooks_go_only_where_the_operator_allows() {
    let ok =
        Answer::Fixed("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into());
    let (receiver, seen) = listen(ok).await;

    // The default: no destination at all.
    let err = Notifier::deny_all()
        .send(
            &hook(&format!("{receiver}/hook")),
            &incident(),
            3,
            Duration::from_secs(2),
        )
        .await
        .expect_err("denied by default");
    assert!(matches!(err, NotifyError::Refused(_)), "{err}");
    assert_eq!(err.reason(), "URLNotAllowed");

    // Public mode never reaches an internal address, by literal or by name.
    let public =
        Notifier::new(AllowList::new("webhooks", "--webhook-allow", vec![]).allow_public(true))
            .unwrap();
    let port = receiver.rsplit(':').next().unwrap();
    let err = public
        .send(
            &hook(&format!("https://127.0.0.1:{port}/hook")),
            &incident(),
            1,
            Duration::from_secs(2),
        )
        .await
        .expect_err("internal literal");
    assert_eq!(err.reason(), "URLInternalAddress", "{err}");
    let err = public
        .send(
            &hook(&format!("https://localhost:{port}/hook")),
            &incident(),
            1,
            Duration::from_secs(2),
        )
        .await
        .expect_err("internal by name");
    assert!(err.to_string().contains("internal address"), "{err}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 0);

    // Listed: delivered.
    let listed = Notifier::new(
        AllowList::parse("webhooks", "--webhook-allow", &[format!("{receiver}/hook")]).unwrap(),
    )
    .unwrap();
    listed
        .send(
            &hook(&format!("{receiver}/hook")),
            &incident(),
            1,
            Duration::from_secs(2),
        )
        .await
        .expect("delivered");
    assert_eq!(seen.requests.lock().unwrap().len(), 1);
    // A sibling path is not.
    let err = listed
        .send(
            &hook(&format!("{receiver}/hook2")),
            &incident(),
            1,
            Duration::from_secs(2),
        )
        .await
        .expect_err("other path");
    assert_eq!(err.reason(), "URLNotAllowed");
    assert_eq!(seen.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_webhook_error_answer_is_read_up_to_a_cap() {
    let big = "e".repeat(5 << 20);
    let (receiver, _) = listen(Answer::Fixed(format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{big}",
        big.len()
    )))
    .await;
    let n = Notifier::new(
        AllowList::parse(
            "webhooks",
            "--webhook-allow",
            std::slice::from_ref(&receiver),
        )
        .unwrap(),
    )
    .unwrap();
    let err = n
        .send(
            &hook(&format!("{receiver}/x")),
            &incident(),
            1,
            Duration::from_secs(5),
        )
        .await
        .expect_err("500");
    let msg = err.to_string();
    assert!(
        msg.contains("500") && msg.contains("over 1024 bytes"),
        "{msg}"
    );
    assert!(msg.len() < 2048, "{}", msg.len());
}
