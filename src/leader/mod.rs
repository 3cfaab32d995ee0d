//! Leader election and sharding on `coordination.k8s.io` Leases, with a fence.
//!
//! Policies are split into `shards` by namespace ([`fence::shard_of`]); each shard has its own
//! Lease (`<name>` when there is one shard, `<name>-<i>` otherwise), and replicas divide the shards
//! among themselves, rebalancing when one comes or goes (each replica heartbeats a member Lease
//! `<name>-member-<identity>` so the others can count it). Only the holder of a shard acts on, and
//! writes the status of, that shard's policies and Remediations.
//!
//! Written here rather than with a lease crate because the operator needs what none exposes: a
//! renew deadline on the monotonic clock that every mutating call checks ([`Fence`]), several
//! Leases per replica, and writes that carry the resourceVersion they were decided on.

pub mod election;
pub mod fence;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use tokio::sync::watch;
use tracing::{info, warn};

use self::election::{Record, Seen, Step};
pub use self::fence::{Fence, shard_of};
use crate::metrics::Metrics;

/// The Lease's default name.
pub const LEASE_NAME: &str = "homeostat-leader";

/// Label on the shard Leases: the base name they belong to.
const SHARD_LABEL: &str = "homeostat.dev/shard-of";
/// Label on the member Leases: the base name they belong to.
const MEMBER_LABEL: &str = "homeostat.dev/member-of";

/// This replica's identity: the pod name, else the host name plus the process id.
pub fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "homeostat".into());
        format!("{host}-{}", std::process::id())
    })
}

/// How the election runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespace of the Leases.
    pub namespace: String,
    /// Base name of the Leases.
    pub name: String,
    /// Lease duration: a standby takes a shard over after seeing it unrenewed this long.
    pub duration: Duration,
    /// Number of shards (1: classic leader election).
    pub shards: u32,
    /// This replica's identity (also its field manager, so writes of two replicas never merge).
    pub identity: String,
}

impl Config {
    /// The renew deadline: a shard is acted on for at most this long after the last renewal was
    /// sent (two thirds of the duration, as client-go's 10 s of 15 s).
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Time between rounds (a sixth of the duration, at least half a second).
    pub fn retry_period(&self) -> Duration {
        (self.duration / 6).max(Duration::from_millis(500))
    }

    fn shard_lease(&self, shard: u32) -> String {
        if self.shards <= 1 {
            self.name.clone()
        } else {
            format!("{}-{shard}", self.name)
        }
    }

    fn member_lease(&self) -> String {
        let id: String = self
            .identity
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let mut n = format!("{}-member-{}", self.name, id.trim_matches('-'));
        n.truncate(253);
        n.trim_end_matches('-').to_string()
    }

    fn field_manager(&self) -> String {
        let mut m = format!("homeostat/{}", self.identity);
        m.truncate(128);
        m
    }
}

/// Runs the election until `shutdown`, keeping `fence` up to date; on shutdown every held shard
/// is released so a standby takes over at once.
pub async fn run(
    client: Client,
    cfg: Config,
    fence: Fence,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api = Api::<Lease>::namespaced(client, &cfg.namespace);
    let mut seen = vec![Seen::default(); cfg.shards.max(1) as usize];
    let mut failing = false;
    let mut was_held: Vec<u32> = vec![];
    info!(identity = %cfg.identity, namespace = %cfg.namespace, lease = %cfg.name, shards = cfg.shards,
        duration_s = cfg.duration.as_secs_f64(), renew_deadline_s = cfg.renew_deadline().as_secs_f64(),
        "joining the leader election");
    loop {
        match round(&api, &cfg, &fence, &mut seen).await {
            Ok(()) => {
                if failing {
                    info!(lease = %cfg.name, "the Lease API answers again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    warn!(lease = %format!("{}/{}", cfg.namespace, cfg.name), error = %crate::kube_message(&e),
                        "reading or renewing the leader Leases failed; this replica stops acting when its renew deadline passes and retries");
                }
                failing = true;
            }
        }
        let held = fence.held();
        let lost: Vec<u32> = was_held
            .iter()
            .copied()
            .filter(|s| !held.contains(s))
            .collect();
        if !lost.is_empty() {
            warn!(identity = %cfg.identity, shards = ?lost, held = ?held,
                "no longer acting for these shards: their Lease was lost, released or not renewed within the renew deadline");
        }
        was_held.clone_from(&held);
        metrics.leader.set(i64::from(!held.is_empty()));
        metrics.shards_held.set(held.len() as i64);
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period()) => {},
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    release_all(&api, &cfg, &fence).await;
    metrics.leader.set(0);
    metrics.shards_held.set(0);
}

/// One round: heartbeat, read every shard Lease, then create, acquire, renew or release each.
async fn round(
    api: &Api<Lease>,
    cfg: &Config,
    fence: &Fence,
    seen: &mut [Seen],
) -> Result<(), kube::Error> {
    let live = if cfg.shards > 1 {
        heartbeat(api, cfg).await?
    } else {
        1
    };
    let mut leases = read_shards(api, cfg).await?;
    let records: Vec<Option<Record>> = leases.iter().map(|l| l.as_ref().map(record)).collect();
    let steps = election::plan(&records, seen, &cfg.identity, live, Instant::now());
    let pp = PostParams {
        field_manager: Some(cfg.field_manager()),
        ..Default::default()
    };
    for (i, step) in steps.into_iter().enumerate() {
        let shard = i as u32;
        let name = cfg.shard_lease(shard);
        let sent = Instant::now();
        let result = match step {
            Step::Wait => {
                if fence.holds(shard) {
                    warn!(identity = %cfg.identity, lease = %name, holder = ?records[i].as_ref().map(|r| &r.holder),
                        "lost a leader Lease: no longer acting for its policies");
                }
                fence.drop_shard(shard);
                continue;
            }
            Step::Release => {
                fence.drop_shard(shard);
                let Some(mut l) = leases[i].take() else {
                    continue;
                };
                let spec = l.spec.get_or_insert_with(Default::default);
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                api.replace(&name, &pp, &l).await.map(|_| {
                    info!(identity = %cfg.identity, lease = %name, "released a leader Lease to rebalance shards");
                })
            }
            Step::Create => api.create(&pp, &new_lease(cfg, &name)).await.map(|_| ()),
            Step::Acquire | Step::Renew => {
                let Some(mut l) = leases[i].take() else {
                    continue;
                };
                claim(&mut l, cfg, step == Step::Acquire);
                // A Lease from before sharding (or made by hand) gets the label it is listed by.
                l.metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(SHARD_LABEL.into(), cfg.name.clone());
                api.replace(&name, &pp, &l).await.map(|_| ())
            }
        };
        match result {
            Ok(()) if matches!(step, Step::Release) => {}
            Ok(()) => {
                if !fence.holds(shard) {
                    info!(identity = %cfg.identity, lease = %name, "acquired a leader Lease: acting for its policies");
                }
                fence.hold_until(shard, sent + cfg.renew_deadline());
            }
            // Another replica wrote first (or created it): it is theirs; read again next round.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                if fence.holds(shard) {
                    warn!(identity = %cfg.identity, lease = %name, "another replica took a leader Lease: no longer acting for its policies");
                }
                fence.drop_shard(shard);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Renews this replica's member Lease and counts the live members.
async fn heartbeat(api: &Api<Lease>, cfg: &Config) -> Result<usize, kube::Error> {
    let name = cfg.member_lease();
    let pp = PostParams {
        field_manager: Some(cfg.field_manager()),
        ..Default::default()
    };
    let mut lease = new_lease(cfg, &name);
    lease.metadata.labels = Some(BTreeMap::from([(MEMBER_LABEL.into(), cfg.name.clone())]));
    match api.get_opt(&name).await? {
        Some(mut l) => {
            claim(&mut l, cfg, false);
            api.replace(&name, &pp, &l).await?;
        }
        None => {
            api.create(&pp, &lease).await?;
        }
    }
    let members = api
        .list(&ListParams::default().labels(&format!("{MEMBER_LABEL}={}", cfg.name)))
        .await?;
    let now = Timestamp::now();
    let ages: Vec<Option<Duration>> = members
        .items
        .iter()
        .filter(|l| l.metadata.name.as_deref() != Some(name.as_str()))
        .map(|l| {
            let renewed = l.spec.as_ref()?.renew_time.as_ref()?.0;
            Some(Duration::try_from(now.duration_since(renewed)).unwrap_or(Duration::ZERO))
        })
        .collect();
    Ok(election::live_members(&ages, cfg.duration * 2))
}

/// Every shard Lease (`None` where it does not exist yet).
async fn read_shards(api: &Api<Lease>, cfg: &Config) -> Result<Vec<Option<Lease>>, kube::Error> {
    let n = cfg.shards.max(1);
    if n == 1 {
        return Ok(vec![api.get_opt(&cfg.name).await?]);
    }
    let list = api
        .list(&ListParams::default().labels(&format!("{SHARD_LABEL}={}", cfg.name)))
        .await?;
    let mut by_name: BTreeMap<String, Lease> = list
        .items
        .into_iter()
        .filter_map(|l| Some((l.metadata.name.clone()?, l)))
        .collect();
    Ok((0..n)
        .map(|i| by_name.remove(&cfg.shard_lease(i)))
        .collect())
}

fn record(l: &Lease) -> Record {
    let spec = l.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity.unwrap_or_default(),
        resource_version: l.metadata.resource_version.clone().unwrap_or_default(),
        duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64),
    }
}

fn new_lease(cfg: &Config, name: &str) -> Lease {
    let now = MicroTime(Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(cfg.namespace.clone()),
            labels: Some(BTreeMap::from([(SHARD_LABEL.into(), cfg.name.clone())])),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(cfg.duration.as_secs().max(1) as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    }
}

/// Makes `l` held by this replica (renewed now; a new acquisition counts a transition).
fn claim(l: &mut Lease, cfg: &Config, acquire: bool) {
    let now = MicroTime(Timestamp::now());
    let spec = l.spec.get_or_insert_with(Default::default);
    if acquire {
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(cfg.identity.clone());
    spec.lease_duration_seconds = Some(cfg.duration.as_secs().max(1) as i32);
    spec.renew_time = Some(now);
}

/// Gives up every held shard (on shutdown), fencing first.
async fn release_all(api: &Api<Lease>, cfg: &Config, fence: &Fence) {
    let held = fence.held();
    fence.drop_all();
    let pp = PostParams {
        field_manager: Some(cfg.field_manager()),
        ..Default::default()
    };
    for shard in held {
        let name = cfg.shard_lease(shard);
        let r = async {
            let Some(mut l) = api.get_opt(&name).await? else {
                return Ok(());
            };
            if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                != Some(cfg.identity.as_str())
            {
                return Ok(());
            }
            let spec = l.spec.get_or_insert_with(Default::default);
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            api.replace(&name, &pp, &l).await.map(|_| ())
        }
        .await;
        match r {
            Ok(()) => info!(lease = %name, "released the leader Lease"),
            Err(e) => {
                warn!(lease = %name, error = %crate::kube_message(&e), "releasing the leader Lease failed; it expires on its own")
            }
        }
    }
    if cfg.shards > 1 {
        let _ = api.delete(&cfg.member_lease(), &Default::default()).await;
    }
}
