//! Leader election on a `coordination.k8s.io` Lease: only the holder acts and writes status.

use std::{sync::Arc, time::Duration};

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::metrics::Metrics;

/// The Lease's default name.
pub const LEASE_NAME: &str = "homeostat-leader";

/// This replica's identity: the pod name, else the host name plus the process id.
pub fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "homeostat".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Holds or waits for the Lease until `shutdown`, publishing leadership on `leading`.
/// On shutdown the Lease is released, so a standby takes over at once.
pub async fn run(
    client: Client,
    namespace: String,
    lease_name: String,
    duration: Duration,
    leading: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let secs = duration.as_secs().max(2);
    let id = identity();
    let manager = loop {
        match LeaseManagerBuilder::new(client.clone(), lease_name.clone())
            .with_namespace(namespace.clone())
            .with_identity(id.clone())
            .with_duration(secs)
            .with_grace((secs / 3).max(1))
            .with_field_manager("homeostat")
            .build()
            .await
        {
            Ok(m) => break m,
            Err(e) => {
                let e = match &e {
                    kube_lease_manager::LeaseManagerError::KubeError(k) => crate::kube_message(k),
                    other => other.to_string(),
                };
                error!(error = %e, lease = %format!("{namespace}/{lease_name}"), "cannot set up the leader Lease; retrying in 5s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {},
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    };
    info!(identity = %id, lease = %format!("{namespace}/{lease_name}"), duration_s = secs, "waiting for the leader Lease");
    let (mut rx, handle) = manager.watch().await;
    loop {
        let is = *rx.borrow_and_update();
        metrics.leader.set(i64::from(is));
        if leading.send_replace(is) != is {
            if is {
                info!(identity = %id, "acquired the leader Lease: acting");
            } else {
                warn!(identity = %id, "lost the leader Lease: standing by");
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    leading.send_replace(false);
    drop(rx);
    match handle.await {
        Ok(Ok(_)) => info!("released the leader Lease"),
        Ok(Err(e)) => warn!(error = %e, "releasing the leader Lease failed; it expires on its own"),
        Err(e) => warn!(error = %e, "lease task ended abnormally"),
    }
}
