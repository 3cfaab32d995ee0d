//! A TCP proxy in front of the real Prometheus that holds every answer back for a settable delay,
//! so an operator pointed at it sees a Prometheus that answers after its query timeout. Written
//! by hand (40 lines of tokio): the delay must apply per request on kept-alive connections, and
//! no maintained crate does only that.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The proxy; stops accepting when dropped.
pub struct SlowProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowProxy {
    /// Listens on 127.0.0.1 and forwards to `upstream` (host:port), each answer delayed by `delay`.
    pub async fn start(upstream: &str, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let delay_ms = Arc::new(AtomicU64::new(delay.as_millis() as u64));
        let upstream = upstream.to_string();
        let d = delay_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, d) = (upstream.clone(), d.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        relay(client, server, d).await;
                    }
                });
            }
        });
        Self {
            addr,
            delay_ms,
            task,
        }
    }

    /// The URL to give the operator.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the delay of answers to requests sent from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways; the first bytes of an answer after each request wait for the delay.
async fn relay(client: TcpStream, server: TcpStream, delay_ms: Arc<AtomicU64>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let asked = Arc::new(AtomicBool::new(false));
    let a = asked.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            a.store(true, Ordering::SeqCst);
        }
        let _ = sw.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = sr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if asked.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst))).await;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}
