//! The controller: watches fill caches, and one sweep per tick evaluates every due policy at once.
//!
//! A sweep is a pipeline of named steps (see [`sweep`]): observe (caches) → evaluate (batched
//! Prometheus queries) → decide (the pure incident engine) → apply (apiserver writes) → status
//! (written only when it changed).

mod apply;
mod cache;
mod events;
pub mod forecast;
pub mod prom;
pub mod retention;
mod status;
mod sweep;
mod validate;

pub use cache::{POLICY_LABEL, POLICY_UID_LABEL, TARGET_LABEL};
pub use status::{MAX_TARGETS, digest};
pub use sweep::SweepState;
pub use validate::validate;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use kube::{
    Api, Client,
    runtime::events::{Recorder, Reporter},
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    diagnosis::Settings,
    metrics::{Metrics, ResultLabel},
    prometheus::PromClient,
    v1alpha1::{PrometheusSource, Remediation, RemediationPolicy},
};

/// Pods one sweep reads by default: at 60 minutes of memory history at a 15 s step, an answer of
/// about 13 MB, under the 16 MiB answer cap; 1,000 policies of 10 pods at 30 s need 1,700 a tick.
pub const DEFAULT_SWEEP_MAX_PODS: usize = 2000;

/// Settings of the sweep loop.
#[derive(Clone, Debug)]
pub struct SweepSettings {
    /// How series are read.
    pub query: Settings,
    /// Time between sweeps; each policy is evaluated on the first sweep after its interval.
    pub tick: Duration,
    /// A policy's status is rewritten at least this often even when nothing changed.
    pub heartbeat: Duration,
    /// Apiserver writes in flight at once.
    pub write_concurrency: usize,
    /// Pods one sweep reads at most (its answers grow with them); due policies past it wait for
    /// the next sweep, the longest-waiting first. A single policy over more pods still runs.
    pub max_pods: usize,
    /// Limits across every policy.
    pub fleet: crate::remediation::fleet::FleetLimits,
    /// How long Remediations are kept.
    pub retention: retention::Limits,
}

impl Default for SweepSettings {
    /// A 5 s tick, a 5 min status heartbeat, 16 writes in flight, 2,000 pods per sweep.
    fn default() -> Self {
        Self {
            query: Settings::default(),
            tick: Duration::from_secs(5),
            heartbeat: Duration::from_secs(300),
            write_concurrency: 16,
            max_pods: DEFAULT_SWEEP_MAX_PODS,
            fleet: Default::default(),
            retention: Default::default(),
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// The operator-wide Prometheus (`--prometheus-url`).
    pub default_prom: Option<PromClient>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: SweepSettings,
    /// Which Prometheus URLs policies may use (`--prometheus-allow`), and the answer cap.
    pub prom_sources: prom::Sources,
    /// Sends notifications to allow-listed webhooks only (`--webhook-allow`).
    pub notifier: crate::notify::Notifier,
    /// Which shards (namespaces) this replica may act for, checked before every write.
    pub fence: crate::leader::Fence,
    caches: Arc<cache::Caches>,
    watches: Mutex<Vec<BoxFuture<'static, ()>>>,
    prom_clients: Mutex<HashMap<String, (Instant, PromClient)>>,
}

/// How long a policy's own Prometheus client (and the Secret it was built from) is reused.
const PROM_CLIENT_TTL: Duration = Duration::from_secs(300);

impl Context {
    /// Builds the context and the watches that fill its caches (started by [`run`]).
    pub fn new(
        client: Client,
        default_prom: Option<PromClient>,
        metrics: Arc<Metrics>,
        settings: SweepSettings,
        fence: crate::leader::Fence,
    ) -> Self {
        let reporter = Reporter {
            controller: "homeostat".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let (caches, watches) = cache::Caches::start(&client, &settings.query.namespaces);
        let prom_sources = prom::Sources::new(
            default_prom.clone(),
            vec![],
            settings.query.query_timeout,
            crate::prometheus::DEFAULT_MAX_BODY,
        );
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            default_prom,
            metrics,
            settings,
            prom_sources,
            notifier: crate::notify::Notifier::deny_all(),
            fence,
            caches,
            watches: Mutex::new(watches),
            prom_clients: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the default egress rules (only `--prometheus-url`, no webhook).
    pub fn with_egress(mut self, prom: prom::Sources, notifier: crate::notify::Notifier) -> Self {
        self.prom_sources = prom;
        self.notifier = notifier;
        self
    }

    fn count_write(&self, kind: &str) {
        self.metrics
            .apiserver_writes
            .get_or_create(&ResultLabel {
                result: kind.into(),
            })
            .inc();
    }

    fn caches_remember(&self, r: &Remediation) {
        self.caches.remember(r);
    }

    /// The Prometheus client of a policy: the operator's default, or one built from
    /// `spec.prometheus` (cached for a few minutes, so the Secret is not read every sweep). The
    /// URL must be in `prom_sources.allow`, checked before the Secret is read.
    async fn prom_for(
        &self,
        ns: &str,
        source: Option<&PrometheusSource>,
    ) -> Result<PromClient, String> {
        let Some(src) = source else {
            return self
                .default_prom
                .clone()
                .ok_or_else(|| prom::SourceError::NoPrometheus.to_string());
        };
        // Refuse before the cache: a URL outside the allow-list never gets a client.
        prom::check_source(Some(src), &self.prom_sources).map_err(|e| e.to_string())?;
        let key = format!(
            "{ns}\n{}\n{:?}\n{:?}",
            src.url,
            src.auth_secret_ref.as_ref().map(|s| &s.name),
            src.timeout
        );
        if let Ok(m) = self.prom_clients.lock()
            && let Some((at, c)) = m.get(&key)
            && at.elapsed() < PROM_CLIENT_TTL
        {
            return Ok(c.clone());
        }
        let c = prom::client_for_policy(&self.client, ns, Some(src), &self.prom_sources)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(mut m) = self.prom_clients.lock() {
            m.insert(key, (Instant::now(), c.clone()));
        }
        Ok(c)
    }
}

/// Waits until the CRDs are served (installed and established), logging while it waits. Probes the
/// first watched namespace, or the whole cluster when all namespaces are watched.
pub async fn wait_for_crds(client: &Client, namespaces: &[String]) {
    let (policies, remediations): (Api<RemediationPolicy>, Api<Remediation>) =
        match namespaces.first() {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    let lp = kube::api::ListParams::default().limit(1);
    let mut delay = Duration::from_secs(1);
    loop {
        // Metadata only: one undecodable object must not keep the operator from starting.
        match (
            policies.list_metadata(&lp).await,
            remediations.list_metadata(&lp).await,
        ) {
            (Ok(_), Ok(_)) => return,
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "homeostat CRDs not served yet (install crds/ or the Helm chart), or RBAC forbids listing them; retrying in {}s", delay.as_secs());
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Runs the watches and the sweep loop until `shutdown` resolves; `ready` turns true once every
/// cache has its first complete list.
pub async fn run(
    ctx: Arc<Context>,
    ready: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let watches: Vec<_> = ctx
        .watches
        .lock()
        .map(|mut w| std::mem::take(&mut *w))
        .unwrap_or_default();
    let handles: Vec<_> = watches.into_iter().map(tokio::spawn).collect();
    futures::pin_mut!(shutdown);
    tokio::select! {
        _ = ctx.caches.wait_ready() => {},
        _ = &mut shutdown => {
            handles.iter().for_each(|h| h.abort());
            return;
        }
    }
    let _ = ready.send(true);
    info!(
        tick_s = ctx.settings.tick.as_secs_f64(),
        "caches synced; sweeping"
    );
    let mut state = SweepState::default();
    let mut held = vec![];
    let mut ticker = tokio::time::interval(ctx.settings.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {},
            _ = &mut shutdown => break,
        }
        ctx.metrics.refresh_heap();
        let now_held = ctx.fence.held();
        if now_held != held {
            // Another replica wrote these shards' statuses meanwhile: what this one remembers of
            // its own writes no longer holds.
            info!(shards = ?now_held, of = ctx.fence.shards(), "acting for these shards");
            state.forget_writes();
            held = now_held;
        }
        if held.is_empty() {
            // A standby neither evaluates nor writes; it keeps its caches warm.
            continue;
        }
        sweep::run_once(&ctx, &mut state).await;
    }
    info!("sweep loop stopped");
    handles.iter().for_each(|h| h.abort());
}
