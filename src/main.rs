//! The `homeostat` command: `run` (the operator), `crd`, `diagnose`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use homeostat::{
    controller::{self, Context, SweepSettings},
    crd, diagnose,
    diagnosis::Settings,
    metrics::Metrics,
    prometheus::{ClientConfig, PromClient},
    telemetry,
    v1alpha1::{Duration as SpecDuration, RemediationPolicy},
};
use prometheus_client::registry::Registry;

/// jemalloc with background purging hands freed memory back to the OS; glibc's per-thread arenas
/// keep the peaks of initial lists and sweep answers resident (measured in `e2e/bench scale`).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "homeostat",
    version,
    about = "Heals Kubernetes workloads from what Prometheus sees"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML (or write one file per CRD to --out).
    Crd {
        /// Directory to write `<plural>.<group>.yaml` files into.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Classify workloads straight from Prometheus, without a cluster.
    Diagnose(DiagnoseArgs),
    /// Replay a policy over a past time range: when would it have acted, and how.
    Backtest(BacktestArgs),
}

#[derive(clap::Args)]
struct BacktestArgs {
    /// Prometheus to read.
    #[arg(long, env = "HOMEOSTAT_PROMETHEUS_URL")]
    prometheus_url: String,
    /// The RemediationPolicy YAML to replay.
    #[arg(long)]
    policy: PathBuf,
    /// Start of the range (RFC 3339).
    #[arg(long)]
    from: jiff::Timestamp,
    /// End of the range (RFC 3339); now when absent.
    #[arg(long)]
    to: Option<jiff::Timestamp>,
    /// Time between evaluations; the policy's interval when absent.
    #[arg(long)]
    every: Option<SpecDuration>,
    /// Namespace of the policy when its metadata names none.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Write an SVG plot of the target's CPU with the decisions marked (with `--forecast`: needed,
    /// reactive and forecast replicas over the range).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    /// Replay the policy's `forecast:` block instead: reactive vs forecast replicas over the range,
    /// with this reactive delay (the policy hold) in seconds.
    #[arg(long, value_name = "HOLD_SECS")]
    forecast: Option<u64>,
    /// Pod-ready time in seconds for `--forecast`.
    #[arg(long, default_value_t = 60)]
    pod_ready: u64,
    #[command(flatten)]
    query: QueryArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Prometheus used by policies that name none.
    #[arg(long, env = "HOMEOSTAT_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Namespace to watch (repeat for several); all namespaces when absent.
    #[arg(
        long = "namespace",
        env = "HOMEOSTAT_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "HOMEOSTAT_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Log JSON lines instead of text.
    #[arg(long, env = "HOMEOSTAT_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    query: QueryArgs,
    /// Timeout of each Prometheus request.
    #[arg(long, default_value = "10s")]
    query_timeout: SpecDuration,
    /// Elect a leader on a Lease so that only one replica acts.
    #[arg(long, env = "HOMEOSTAT_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader Lease (defaults to the pod's namespace, else `default`).
    #[arg(long, env = "HOMEOSTAT_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Lease duration.
    #[arg(long, default_value = "15s")]
    lease_duration: SpecDuration,
    /// Name of the leader Lease (the base name of the shard Leases when --shards > 1).
    #[arg(long, env = "HOMEOSTAT_LEASE_NAME", default_value = homeostat::leader::LEASE_NAME)]
    lease_name: String,
    /// Split the watched namespaces into this many shards, each led through its own Lease, so
    /// that replicas share the fleet (needs --leader-elect; every replica must use the same value).
    #[arg(long, env = "HOMEOSTAT_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// Another Prometheus URL prefix policies may name in spec.prometheus.url (repeat); the
    /// --prometheus-url is always allowed. Matched on scheme, host, port and path prefix.
    #[arg(long, env = "HOMEOSTAT_PROMETHEUS_ALLOW", value_delimiter = ',')]
    prometheus_allow: Vec<String>,
    /// Largest Prometheus answer read, in bytes (default 16 MiB).
    #[arg(long, default_value_t = homeostat::prometheus::DEFAULT_MAX_BODY)]
    prometheus_max_response_bytes: usize,
    /// A webhook URL prefix policies may notify (repeat); none when absent.
    #[arg(long, env = "HOMEOSTAT_WEBHOOK_ALLOW", value_delimiter = ',')]
    webhook_allow: Vec<String>,
    /// Also allow webhooks to any public https destination (never to an internal address).
    #[arg(long, env = "HOMEOSTAT_WEBHOOK_ALLOW_PUBLIC")]
    webhook_allow_public: bool,
    /// Time between sweeps; a policy is evaluated on the first sweep after its interval.
    #[arg(long, default_value = "5s")]
    sweep_tick: SpecDuration,
    /// Rewrite a policy's status at least this often even when nothing changed.
    #[arg(long, default_value = "5m")]
    status_heartbeat: SpecDuration,
    /// Prometheus queries in flight at once, per Prometheus.
    #[arg(long, default_value_t = 4)]
    query_concurrency: usize,
    /// Apiserver writes in flight at once.
    #[arg(long, default_value_t = 16)]
    write_concurrency: usize,
    /// Pods one sweep reads at most; due policies past it wait for the next sweep, the
    /// longest-waiting first, so an overloaded operator falls behind evenly and its answers stay
    /// under the answer cap.
    #[arg(long, default_value_t = homeostat::controller::DEFAULT_SWEEP_MAX_PODS)]
    sweep_max_pods: usize,
    /// Disruptive actions (evict, scale, roll) allowed to start per minute across all policies.
    #[arg(
        long,
        env = "HOMEOSTAT_MAX_DISRUPTIONS_PER_MINUTE",
        default_value_t = 10
    )]
    max_disruptions_per_minute: u32,
    /// Hold every disruptive action while more than this share of watched workloads is faulty.
    #[arg(long, env = "HOMEOSTAT_STORM_FRACTION", default_value_t = 0.3)]
    storm_fraction: f64,
    /// ... and at least this many of them.
    #[arg(long, env = "HOMEOSTAT_STORM_MIN_FAULTY", default_value_t = 5)]
    storm_min_faulty: usize,
    /// Finished Remediations kept per policy and target (older ones are deleted once the
    /// policy's guards no longer read them). Remediations outlive their policy.
    #[arg(
        long,
        env = "HOMEOSTAT_REMEDIATION_HISTORY_LIMIT",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    remediation_history_limit: u32,
    /// Finished Remediations older than this are deleted, also after their policy is gone. An
    /// open one is never deleted; one whose policy was deleted is halted first.
    #[arg(long, env = "HOMEOSTAT_REMEDIATION_MAX_AGE", default_value = "720h")]
    remediation_max_age: SpecDuration,
}

/// How series are read: shared by `run`, `diagnose` and `backtest`.
#[derive(clap::Args)]
struct QueryArgs {
    /// Resolution of range queries.
    #[arg(long, default_value = "15s")]
    step: SpecDuration,
    /// Window of rate() and last_over_time() in the standard queries.
    #[arg(long, default_value = "1m")]
    window: SpecDuration,
    /// A series whose newest point is older than this counts as missing.
    #[arg(long, default_value = "45s")]
    stale_after: SpecDuration,
}

impl QueryArgs {
    fn settings(&self, query_timeout: Duration, namespaces: Vec<String>) -> Settings {
        Settings {
            step: self.step.as_secs_f64(),
            window: promql_duration(self.window),
            stale_after: self.stale_after.as_secs_f64(),
            query_timeout,
            namespaces,
            ..Settings::default()
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Table,
}

#[derive(clap::Args)]
struct DiagnoseArgs {
    /// Prometheus to read.
    #[arg(long, env = "HOMEOSTAT_PROMETHEUS_URL")]
    prometheus_url: String,
    /// Evaluation time (RFC 3339); now when absent.
    #[arg(long)]
    at: Option<jiff::Timestamp>,
    /// Only this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// RemediationPolicy YAML files to apply instead of the default patterns.
    #[arg(long)]
    policy: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    #[command(flatten)]
    query: QueryArgs,
}

fn promql_duration(d: SpecDuration) -> String {
    format!("{}s", d.get().as_secs().max(1))
}

fn main() -> anyhow::Result<()> {
    homeostat::heap::use_one_arena();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(homeostat::heap::use_one_arena)
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out } => print_crds(out),
        Command::Diagnose(a) => run_diagnose(a).await,
        Command::Backtest(a) => run_backtest(a).await,
        Command::Run(a) => {
            homeostat::heap::return_freed_pages_within(homeostat::heap::DECAY_MS);
            run_operator(a).await
        }
    }
}

fn print_crds(out: Option<PathBuf>) -> anyhow::Result<()> {
    for (file, c) in crd::all() {
        let yaml = crd::to_yaml(&c).context("rendering a CRD")?;
        match &out {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let p = dir.join(file);
                std::fs::write(&p, yaml).with_context(|| format!("writing {}", p.display()))?;
            }
            None => print!("{yaml}"),
        }
    }
    Ok(())
}

fn read_policy(p: &std::path::Path) -> anyhow::Result<RemediationPolicy> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let policy: RemediationPolicy = serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not a valid RemediationPolicy", p.display()))?;
    if let Err(problems) = controller::validate(&policy.spec) {
        bail!("{}: invalid policy: {}", p.display(), problems.join("; "));
    }
    Ok(policy)
}

async fn run_backtest(a: BacktestArgs) -> anyhow::Result<()> {
    let prom = PromClient::new(ClientConfig::new(a.prometheus_url.clone()))?;
    let policy = read_policy(&a.policy)?;
    let to = a.to.unwrap_or_else(jiff::Timestamp::now);
    if to <= a.from {
        bail!("--to ({to}) must be after --from ({})", a.from);
    }
    let secs = |t: jiff::Timestamp| t.as_millisecond() as f64 / 1000.0;
    if let Some(hold) = a.forecast {
        let ns = policy.metadata.namespace.as_deref().unwrap_or(&a.namespace);
        let r = homeostat::backtest::forecast::run(
            &prom,
            &policy.spec,
            ns,
            secs(a.from),
            secs(to),
            hold,
            a.pod_ready,
        )
        .await
        .with_context(|| format!("replaying the forecast against {}", a.prometheus_url))?;
        let step = homeostat::backtest::forecast::forecast_of(&policy.spec)
            .map_or(300, |(_, _, f)| f.step.get().as_secs().max(1));
        print!("{}", homeostat::backtest::forecast::table(&r, step));
        let every = (r.need.len() / 100).max(1);
        print!("{}", homeostat::forecast::replay::ascii_plot(&r, every, 12));
        if let Some(path) = &a.plot {
            let title = policy.metadata.name.as_deref().unwrap_or("forecast");
            homeostat::backtest::forecast::plot(&r, step, title, path)
                .map_err(|e| anyhow::anyhow!("writing the plot {}: {e}", path.display()))?;
            eprintln!("plot written to {}", path.display());
        }
        return Ok(());
    }
    let every = a
        .every
        .unwrap_or(policy.spec.interval)
        .as_secs_f64()
        .max(1.0);
    let opts = homeostat::backtest::Options {
        from: secs(a.from),
        to: secs(to),
        every,
        namespace: a.namespace.clone(),
        settings: a.query.settings(Duration::from_secs(30), vec![]),
    };
    let steps = ((opts.to - opts.from) / every).floor() as u64 + 1;
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} evaluations, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = homeostat::backtest::run(&prom, &policy, &opts, || bar.inc(1))
        .await
        .with_context(|| format!("backtesting against {}", a.prometheus_url))?;
    bar.finish_and_clear();
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", homeostat::backtest::table(&report)),
    }
    if let Some(path) = &a.plot {
        let ns = policy.metadata.namespace.clone().unwrap_or(a.namespace);
        homeostat::backtest::plot(&prom, &report, &opts, &ns, path)
            .await
            .map_err(|e| anyhow::anyhow!("plotting to {}: {e}", path.display()))?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}

async fn run_diagnose(a: DiagnoseArgs) -> anyhow::Result<()> {
    let prom = PromClient::new(ClientConfig::new(a.prometheus_url.clone()))?;
    let mut policies = vec![];
    for p in &a.policy {
        policies.push(read_policy(p)?);
    }
    let at = a.at.unwrap_or_else(jiff::Timestamp::now);
    let opts = diagnose::Options {
        at: at.as_millisecond() as f64 / 1000.0,
        namespace: a.namespace,
        policies,
        settings: a.query.settings(Duration::from_secs(30), vec![]),
    };
    let report = diagnose::run(&prom, &opts)
        .await
        .with_context(|| format!("diagnosing from {}", a.prometheus_url))?;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", diagnose::table(&report)),
    }
    Ok(())
}

async fn run_operator(a: RunArgs) -> anyhow::Result<()> {
    telemetry::init(a.log_json);
    let mut config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    // kube's default retry layer re-sends 429s for minutes; an eviction refused by a
    // PodDisruptionBudget answers 429 and must be retried on a later evaluation instead.
    config.default_retry = false;
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    let default_prom = match &a.prometheus_url {
        Some(url) => {
            let mut cfg = ClientConfig::new(url.clone());
            cfg.timeout = a.query_timeout.get();
            cfg.max_body = a.prometheus_max_response_bytes;
            Some(PromClient::new(cfg).context("--prometheus-url")?)
        }
        None => None,
    };
    let prom_allow = homeostat::egress::AllowList::parse(
        "Prometheus",
        "--prometheus-allow",
        &a.prometheus_allow,
    )
    .context("--prometheus-allow")?;
    let prom_sources = controller::prom::Sources::new(
        default_prom.clone(),
        prom_allow.entries().to_vec(),
        a.query_timeout.get(),
        a.prometheus_max_response_bytes,
    );
    let webhook_allow =
        homeostat::egress::AllowList::parse("webhooks", "--webhook-allow", &a.webhook_allow)
            .context("--webhook-allow")?
            .allow_public(a.webhook_allow_public);
    let notifier = homeostat::notify::Notifier::new(webhook_allow)
        .map_err(|e| anyhow::anyhow!("building the webhook client: {e}"))?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let registry = Arc::new(registry);
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);

    let server =
        homeostat::server::serve(a.listen, registry.clone(), ready_rx, shutdown_rx.clone());
    let server = tokio::spawn(server);

    controller::wait_for_crds(&client, &a.namespaces).await;
    if a.shards > 1 && !a.leader_elect {
        anyhow::bail!(
            "--shards {} needs --leader-elect: shards are divided through Leases",
            a.shards
        );
    }
    let (fence, lease) = if a.leader_elect {
        let ns = a
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let fence = homeostat::leader::Fence::new(a.shards);
        let cfg = homeostat::leader::Config {
            namespace: ns,
            name: a.lease_name.clone(),
            duration: a
                .lease_duration
                .get()
                .max(std::time::Duration::from_secs(2)),
            shards: a.shards,
            identity: homeostat::leader::identity(),
        };
        let task = tokio::spawn(homeostat::leader::run(
            client.clone(),
            cfg,
            fence.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        ));
        (fence, Some(task))
    } else {
        metrics.leader.set(1);
        metrics.shards_held.set(1);
        (homeostat::leader::Fence::always(), None)
    };
    let mut query = a
        .query
        .settings(a.query_timeout.get(), a.namespaces.clone());
    query.query_concurrency = a.query_concurrency.max(1);
    let settings = SweepSettings {
        query,
        tick: a.sweep_tick.get(),
        heartbeat: a.status_heartbeat.get(),
        write_concurrency: a.write_concurrency.max(1),
        max_pods: a.sweep_max_pods.max(1),
        fleet: homeostat::remediation::fleet::FleetLimits {
            max_per_minute: a.max_disruptions_per_minute,
            storm_fraction: a.storm_fraction.clamp(0.0, 1.0),
            storm_min_faulty: a.storm_min_faulty,
        },
        retention: controller::retention::Limits {
            history_limit: a.remediation_history_limit as usize,
            max_age: a.remediation_max_age.get(),
            ..Default::default()
        },
    };
    info!(
        prometheus = a.prometheus_url.as_deref().unwrap_or("(per policy)"),
        namespaces = ?a.namespaces,
        listen = %a.listen,
        leader_elect = a.leader_elect,
        shards = a.shards,
        prometheus_allow = ?a.prometheus_allow,
        webhook_allow = ?a.webhook_allow,
        webhook_allow_public = a.webhook_allow_public,
        "homeostat starting"
    );
    let ctx = Arc::new(
        Context::new(client, default_prom, metrics, settings, fence)
            .with_egress(prom_sources, notifier),
    );
    let mut stop = shutdown_rx.clone();
    let signal = async move {
        shutdown_signal().await;
        info!("shutdown requested; finishing in-flight reconciles");
        let _ = shutdown_tx.send(true);
    };
    tokio::spawn(signal);
    controller::run(ctx, ready_tx, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await;
    if let Some(l) = lease {
        // Give the lease task a moment to release the lease.
        let _ = tokio::time::timeout(Duration::from_secs(3), l).await;
    }
    if let Err(e) = server.await {
        error!(error = %e, "HTTP server task failed");
    }
    info!("homeostat stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
