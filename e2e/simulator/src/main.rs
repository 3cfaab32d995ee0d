//! homeostat-simulator binary: kube reflectors on Pods, ReplicaSets and
//! Deployments, a tick loop advancing the scenarios, and an HTTP server with
//! `/metrics` and `/healthz`.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Parser;
use futures::StreamExt as _;
use homeostat_simulator::cluster;
use homeostat_simulator::engine::{Engine, Level};
use homeostat_simulator::exporter::CONTENT_TYPE;
use homeostat_simulator::scenario::parse_duration;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt as _};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Fake cAdvisor + kube-state-metrics exporter simulating workload faults on
/// kwok pods of Deployments annotated with `homeostat.dev/scenario`.
#[derive(Debug, Parser)]
#[command(name = "homeostat-simulator", version, about)]
struct Args {
    /// Address serving /metrics and /healthz.
    #[arg(long, env = "HOMEOSTAT_SIM_LISTEN", default_value = "127.0.0.1:29100")]
    listen: SocketAddr,

    /// Namespace to watch; repeat or comma-separate. All namespaces if unset.
    #[arg(
        long = "namespace",
        env = "HOMEOSTAT_SIM_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,

    /// Simulation tick: how often counters are integrated ("1s", "500ms").
    #[arg(long, env = "HOMEOSTAT_SIM_TICK", default_value = "1s", value_parser = parse_tick)]
    tick: Duration,

    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config or in-cluster.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Log filter (tracing-subscriber EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

fn parse_tick(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).ok_or_else(|| format!("invalid duration {s:?}"))?;
    let d = Duration::try_from(d).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) {
        return Err("tick must be at least 100ms".into());
    }
    Ok(d)
}

type Shared = Arc<Mutex<Engine>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .with_context(|| format!("invalid log filter {:?}", args.log))?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // kube's rustls needs a process-wide crypto provider; an error only means
    // one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let client = make_client(args.kubeconfig.as_ref()).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown signal received");
        let _ = stop_tx.send(true);
    });

    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let mut tasks = Vec::new();
    let mut pods = Vec::new();
    let mut replicasets = Vec::new();
    let mut deployments = Vec::new();
    for scope in &scopes {
        let (store, task) = start_reflector::<Pod>(&client, scope.as_deref());
        pods.push(store);
        tasks.push(task);
        let (store, task) = start_reflector::<ReplicaSet>(&client, scope.as_deref());
        replicasets.push(store);
        tasks.push(task);
        let (store, task) = start_reflector::<Deployment>(&client, scope.as_deref());
        deployments.push(store);
        tasks.push(task);
    }

    let engine: Shared = Arc::new(Mutex::new(Engine::new()));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(engine.clone());
    info!(
        listen = %args.listen,
        namespaces = ?args.namespaces,
        tick = ?args.tick,
        "homeostat-simulator serving /metrics"
    );
    let server = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone()));

    let ticker = tick_loop(
        engine,
        Stores {
            pods,
            replicasets,
            deployments,
        },
        args.tick,
        stop_rx,
    );
    let (served, ()) = tokio::join!(async { server.await }, ticker);
    for t in tasks {
        t.abort();
    }
    served.context("HTTP server")?;
    info!("stopped");
    Ok(())
}

async fn make_client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .context("loading kubeconfig")?
        }
        None => kube::Config::infer()
            .await
            .context("inferring kube config")?,
    };
    Client::try_from(config).context("building kube client")
}

fn start_reflector<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let scope = namespace.unwrap_or("*").to_string();
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear());
    let task = tokio::spawn(async move {
        reflector::reflector(writer, stream)
            .for_each(|event| {
                if let Err(e) = event {
                    warn!(kind = %kind, namespace = %scope, error = %e, "watch error (retrying)");
                }
                futures::future::ready(())
            })
            .await;
    });
    (reader, task)
}

struct Stores {
    pods: Vec<Store<Pod>>,
    replicasets: Vec<Store<ReplicaSet>>,
    deployments: Vec<Store<Deployment>>,
}

impl Stores {
    async fn wait_until_ready(&self) {
        for s in &self.pods {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.replicasets {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.deployments {
            let _ = s.wait_until_ready().await;
        }
    }
}

async fn tick_loop(
    engine: Shared,
    stores: Stores,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        () = stores.wait_until_ready() => info!("caches synced; simulating"),
        () = stopped(stop.clone()) => return,
    }
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let pods: Vec<_> = stores.pods.iter().flat_map(Store::state).collect();
        let replicasets: Vec<_> = stores.replicasets.iter().flat_map(Store::state).collect();
        let deployments: Vec<_> = stores.deployments.iter().flat_map(Store::state).collect();
        let views = cluster::snapshot(&deployments, &replicasets, &pods);
        let now = jiff::Timestamp::now();
        let (events, n_deploy, n_pods) = {
            let mut engine = engine.lock().unwrap_or_else(PoisonError::into_inner);
            let events = engine.tick(now, views);
            (events, engine.deployments(), engine.pods())
        };
        for e in events {
            match e.level {
                Level::Debug => {
                    debug!(namespace = %e.namespace, deployment = %e.deployment, "{}", e.message)
                }
                Level::Info => {
                    info!(namespace = %e.namespace, deployment = %e.deployment, "{}", e.message)
                }
                Level::Warn => {
                    warn!(namespace = %e.namespace, deployment = %e.deployment, "{}", e.message)
                }
            }
        }
        debug!(deployments = n_deploy, pods = n_pods, "tick");
    }
}

async fn metrics(State(engine): State<Shared>) -> impl IntoResponse {
    let body = engine
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .render();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
