//! The controller: watches RemediationPolicies and runs one evaluation per policy per interval.

mod evaluate;
mod incident;
pub mod prom;
mod validate;

pub use evaluate::{Evaluated, evaluate_policy};
pub use validate::validate;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller, PredicateConfig, WatchStreamExt,
        controller::Action,
        events::{Recorder, Reporter},
        predicates,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    Error,
    metrics::{Metrics, ResultLabel},
    prometheus::PromClient,
    v1alpha1::{Remediation, RemediationPolicy},
};

/// Settings of the controller that are not per policy.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Resolution of range queries (seconds).
    pub step: f64,
    /// `rate()` / `last_over_time()` window (a PromQL duration).
    pub window: String,
    /// A series with no point this recent (seconds) is missing.
    pub stale_after: f64,
    /// Timeout per Prometheus request.
    pub query_timeout: Duration,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
}

impl Default for Settings {
    /// The command-line defaults: 15 s step, 1 m window, stale after 45 s, 10 s timeout, all namespaces.
    fn default() -> Self {
        Self {
            step: 15.0,
            window: "60s".into(),
            stale_after: 45.0,
            query_timeout: Duration::from_secs(10),
            namespaces: vec![],
        }
    }
}

/// Shared state of all reconciles.
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
    pub settings: Settings,
    /// Which Prometheus URLs policies may use (`--prometheus-allow`), and the answer cap.
    pub prom_sources: prom::Sources,
    /// Sends notifications to allow-listed webhooks only (`--webhook-allow`).
    pub notifier: crate::notify::Notifier,
    /// Whether this replica may act (leader); evaluation still runs when false.
    pub leading: watch::Receiver<bool>,
    failures: Mutex<HashMap<ObjectRef<RemediationPolicy>, u32>>,
    active: Mutex<std::collections::HashSet<ObjectRef<RemediationPolicy>>>,
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        default_prom: Option<PromClient>,
        metrics: Arc<Metrics>,
        settings: Settings,
        leading: watch::Receiver<bool>,
    ) -> Self {
        let reporter = Reporter {
            controller: "homeostat".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let prom_sources = prom::Sources::new(
            default_prom.clone(),
            vec![],
            settings.query_timeout,
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
            leading,
            failures: Mutex::new(HashMap::new()),
            active: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Replaces the default egress rules (only `--prometheus-url`, no webhook).
    pub fn with_egress(mut self, prom: prom::Sources, notifier: crate::notify::Notifier) -> Self {
        self.prom_sources = prom;
        self.notifier = notifier;
        self
    }

    /// Records whether a policy has an open incident and updates the `active_remediations` gauge.
    fn set_active(&self, key: ObjectRef<RemediationPolicy>, open: bool) {
        if let Ok(mut a) = self.active.lock() {
            if open {
                a.insert(key);
            } else {
                a.remove(&key);
            }
            self.metrics.active_remediations.set(a.len() as i64);
        }
    }

    fn reset_backoff(&self, key: &ObjectRef<RemediationPolicy>) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    /// Exponential backoff per policy: 5 s, 10 s, … up to 5 min.
    fn backoff(&self, key: ObjectRef<RemediationPolicy>) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let c = f.entry(key).or_insert(0);
                *c = c.saturating_add(1);
                *c
            })
            .unwrap_or(1);
        Duration::from_secs((5u64 << n.min(6).saturating_sub(1)).min(300))
    }
}

fn error_policy(policy: Arc<RemediationPolicy>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(ObjectRef::from_obj(&*policy));
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ResultLabel {
            result: err.category().into(),
        })
        .inc();
    warn!(
        policy = %policy.name_any(),
        namespace = %policy.namespace().unwrap_or_default(),
        error = %err,
        retry_in_s = delay.as_secs(),
        "reconcile failed; will retry"
    );
    Action::requeue(delay)
}

async fn reconcile(policy: Arc<RemediationPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let action = evaluate::reconcile(&policy, &ctx).await?;
    ctx.reset_backoff(&ObjectRef::from_obj(&*policy));
    Ok(action)
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
        match (policies.list(&lp).await, remediations.list(&lp).await) {
            (Ok(_), Ok(_)) => return,
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "homeostat CRDs not served yet (install crds/ or the Helm chart), or RBAC forbids listing them; retrying in {}s", delay.as_secs());
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let client = ctx.client.clone();
    let apis: Vec<(Api<RemediationPolicy>, Api<Remediation>)> =
        if ctx.settings.namespaces.is_empty() {
            vec![(Api::all(client.clone()), Api::all(client.clone()))]
        } else {
            ctx.settings
                .namespaces
                .iter()
                .map(|ns| {
                    (
                        Api::namespaced(client.clone(), ns),
                        Api::namespaced(client.clone(), ns),
                    )
                })
                .collect()
        };
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let controllers = apis.into_iter().map(|(policies, _)| {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        // Only spec changes (generation) trigger a reconcile; our own status writes do not.
        // Each reconcile requeues itself after the policy's interval.
        let (reader, writer) = reflector::store();
        let trigger = watcher(policies, watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(predicates::generation, PredicateConfig::default());
        Controller::for_stream(trigger, reader)
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, ctx)
            .for_each(|res| async move {
                match res {
                    Ok((obj, _)) => tracing::debug!(policy = %obj, "reconciled"),
                    Err(e) => tracing::debug!(error = %e, "reconcile loop error"),
                }
            })
    });
    info!("controller started");
    futures::future::join_all(controllers).await;
    info!("controller stopped");
}
