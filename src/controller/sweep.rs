//! One sweep over every due policy: observe → evaluate → decide → apply → status.
//!
//! - **observe** (caches): due policies, their targets, pods and incident history.
//! - **evaluate** (Prometheus): one batched plan per Prometheus for every due target.
//! - **decide** (pure): [`engine::decide`] per target.
//! - **apply** (apiserver): the intents, a bounded number at a time.
//! - **status** (pure build, then a write only when something a person would see changed).

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash, Hasher},
    time::Instant,
};

use futures::{StreamExt, stream};
use jiff::Timestamp;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
};
use serde_json::json;
use tracing::{debug, info, warn};

use super::{
    Context,
    apply::{self, PolicyCtx},
    cache::{PolicyEntry, Snapshot, WorkloadEntry},
    events,
    forecast::{self, ForecastState},
    retention,
    status::{self, PolicyOutcome, TargetOutcome},
    validate,
};
use crate::{
    diagnosis::{EvalContext, Evaluated, Subject, choose, fetch::PodRef, sweep as batch},
    metrics::{FaultLabel, ResultLabel},
    prometheus::PromClient,
    remediation::{
        actions::{LivePod, MANAGER},
        engine::{self, Intent},
        fleet::{self, FleetState},
        guards::Refusal,
        owners,
    },
    v1alpha1::{Remediation, RemediationPolicy, RemediationPolicyStatus, TargetRef, WorkloadKind},
};

/// What the sweep loop remembers between sweeps.
#[derive(Default)]
pub struct SweepState {
    /// Per policy UID: the interval slot and generation last evaluated.
    slots: HashMap<String, (i64, Option<i64>)>,
    /// Per policy UID: the digest of the status last written, and when.
    written: HashMap<String, (String, Instant)>,
    /// Per policy UID: the validation result of a generation.
    validity: HashMap<String, (Option<i64>, Result<(), String>)>,
    /// Per policy UID and target: whether its last evaluation found a fault, or one starting
    /// (for the storm brake).
    faulty: HashMap<(String, TargetRef), bool>,
    /// Disruptive actions granted in the last minute.
    fleet: FleetState,
    /// Per policy UID and target: the guard that held it on the last sweep (Events on change).
    held: HashMap<(String, TargetRef), &'static str>,
    /// What the trail's retention already did.
    trail: retention::State,
    /// When this replica's first sweep (since start or since it last led) ran.
    started: Option<Timestamp>,
    /// The last forecast of each forecasting target.
    forecasts: ForecastState,
}

impl SweepState {
    /// Forgets what was written (on losing leadership: the next leader's writes are unknown).
    pub fn forget_writes(&mut self) {
        self.written.clear();
        self.slots.clear();
        self.started = None;
    }
}

/// One target of a due policy, as the caches show it.
struct TargetObs {
    target: TargetRef,
    workload: Option<WorkloadEntry>,
    pods: Vec<LivePod>,
    pod_refs: Vec<PodRef>,
    history: Vec<Remediation>,
    /// The highest incident number on record for this policy name and target, earlier policy
    /// objects of the same name included.
    last_seq: u32,
    /// Another policy also targets this workload: the note, and whether this policy is held.
    conflict: Option<(String, bool)>,
}

/// A due policy and what was observed about it.
struct Due {
    entry: PolicyEntry,
    problem: Option<PolicyOutcome>,
    prom: Option<PromClient>,
    targets: Vec<TargetObs>,
}

impl Due {
    fn policy(&self) -> Option<&RemediationPolicy> {
        self.entry.policy.as_ref().as_ref().ok()
    }
}

/// Runs one sweep.
pub async fn run_once(ctx: &Context, state: &mut SweepState) {
    let started = Instant::now();
    let now_ts = Timestamp::now();
    let step = ctx.settings.query.step;
    let now = (now_ts.as_millisecond() as f64 / 1000.0 / step).floor() * step;
    let snap = ctx.caches.snapshot();
    retention::run(ctx, &mut state.trail, &snap, now_ts).await;
    let due = observe(ctx, state, &snap, now_ts).await;
    if due.is_empty() {
        return;
    }
    let (evaluated, queries) = evaluate(ctx, &due, now).await;
    state
        .forecasts
        .refresh(ctx, forecast_jobs(&due), now_ts)
        .await;
    let mut intents = decide(&due, &evaluated, &state.forecasts, now_ts);
    let fleet_held = fleet_gate(ctx, state, &due, &evaluated, &mut intents, now_ts);
    ctx.metrics
        .sweep_decided
        .observe(started.elapsed().as_secs_f64());
    let applied = apply_all(ctx, &due, intents, fleet_held).await;
    refusal_events(ctx, state, &due, &applied).await;
    let decided_ms = started.elapsed().as_millis() as u64;
    let writes = write_statuses(ctx, state, &due, evaluated, applied, now_ts).await;
    ctx.metrics
        .sweep_duration
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics.sweep_queries.set(queries as i64);
    ctx.metrics.sweep_policies.set(due.len() as i64);
    info!(
        policies = due.len(),
        targets = due.iter().map(|d| d.targets.len()).sum::<usize>(),
        queries,
        status_writes = writes,
        decided_ms,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "sweep done"
    );
}

/// The forecasting targets of the due policies that were evaluated.
fn forecast_jobs(due: &[Due]) -> Vec<forecast::Job<'_>> {
    due.iter()
        .filter(|d| d.problem.is_none())
        .filter_map(|d| Some((d, d.policy()?, d.prom.as_ref()?)))
        .filter(|(_, p, _)| crate::forecast::query::forecast_of(&p.spec).is_some())
        .flat_map(|(d, p, prom)| {
            d.targets.iter().filter_map(move |t| {
                let w = t.workload.as_ref()?;
                Some(forecast::Job {
                    key: (d.entry.uid.clone(), t.target.clone()),
                    generation: d.entry.generation,
                    spec: &p.spec,
                    namespace: &d.entry.namespace,
                    replicas: w.workload.replicas,
                    ready: t.pods.iter().filter_map(|p| p.start_to_ready).collect(),
                    prom,
                })
            })
        })
        .collect()
}

/// The longest a policy waits for its first evaluation after this replica starts or takes over.
const STARTUP_SPREAD_MS: i64 = 30_000;
/// From this many policies on, the first evaluations spread over the whole of
/// [`STARTUP_SPREAD_MS`]; a smaller fleet over a proportional part (a few policies at once).
const STARTUP_SPREAD_FLEET: usize = 200;

/// Whether a policy this replica has not evaluated yet waits for its turn in the startup spread.
fn awaits_first_turn(
    uid: &str,
    interval_ms: i64,
    policies: usize,
    started_ms: i64,
    now_ms: i64,
) -> bool {
    let share = policies.min(STARTUP_SPREAD_FLEET) as i64;
    let spread = interval_ms.min(STARTUP_SPREAD_MS) * share / STARTUP_SPREAD_FLEET as i64;
    spread > 0 && now_ms < started_ms + phase_ms(uid, spread)
}

/// When a policy became due: the start of the first slot it missed since its last evaluation
/// (a policy not evaluated yet: its current slot).
fn due_since(last_slot: Option<i64>, slot: i64, interval_ms: i64, phase_ms: i64) -> i64 {
    let missed = last_slot.map_or(slot, |s| (s + 1).min(slot));
    missed * interval_ms + phase_ms
}

/// How many of the due policies (their pod counts, longest-waiting first) one sweep takes: up to
/// `max_pods` pods, and always the first, however many pods it has.
fn within_budget(pods: &[usize], max_pods: usize) -> usize {
    let mut total = 0;
    for (i, &n) in pods.iter().enumerate() {
        if i > 0 && total + n > max_pods {
            return i;
        }
        total += n;
    }
    pods.len()
}

/// A stable phase for a policy inside its interval, so policies spread over the ticks.
fn phase_ms(uid: &str, interval_ms: i64) -> i64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut h);
    (h.finish() % (interval_ms.max(1) as u64)) as i64
}

// ---------------------------------------------------------------------------------------------
// observe

/// Which policy owns each workload that more than one policy could change: the oldest one.
/// Policies whose faults only escalate cannot conflict and are left out.
type Owners = HashMap<(String, TargetRef), Vec<(Option<Timestamp>, String)>>;

/// Every policy's targets (by UID), resolved once per sweep, and the owners they imply.
struct Targeting {
    targets: HashMap<String, Vec<TargetRef>>,
    owners: Owners,
}

fn targeting(snap: &Snapshot) -> Targeting {
    let mut owners: Owners = HashMap::new();
    let mut targets = HashMap::new();
    for e in &snap.policies {
        let Ok(p) = e.policy.as_ref() else { continue };
        let ts = targets_of(snap, &e.namespace, p);
        // A shadow policy changes nothing: like one that only escalates, it cannot conflict.
        let mutates = p.spec.mode.is_enforce()
            && p.spec.faults.iter().any(|f| {
                crate::remediation::memory::ladder(f)
                    .iter()
                    .any(|a| a.type_.mutates())
            });
        if mutates {
            for t in &ts {
                owners
                    .entry((e.namespace.clone(), t.clone()))
                    .or_default()
                    .push((
                        p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        e.name.clone(),
                    ));
            }
        }
        targets.insert(e.uid.clone(), ts);
    }
    for v in owners.values_mut() {
        v.sort();
    }
    owners.retain(|_, v| v.len() > 1);
    Targeting { targets, owners }
}

fn targets_of(snap: &Snapshot, ns: &str, policy: &RemediationPolicy) -> Vec<TargetRef> {
    match (&policy.spec.target_ref, &policy.spec.selector) {
        (Some(t), _) => vec![t.clone()],
        (None, Some(sel)) => snap
            .workloads
            .range((ns.to_string(), WorkloadKind::Deployment, String::new())..)
            .take_while(|((n, _, _), _)| n == ns)
            .filter(|((_, kind, _), w)| sel.matches(*kind, &w.labels))
            .map(|(_, w)| w.workload.target.clone())
            .collect(),
        (None, None) => vec![],
    }
}

/// The conflict note of one policy on one target, and whether it is held (not the owner).
fn conflict_of(owners: &Owners, ns: &str, policy: &str, t: &TargetRef) -> Option<(String, bool)> {
    let all = owners.get(&(ns.to_string(), t.clone()))?;
    let owner = &all.first()?.1;
    let others: Vec<&str> = all
        .iter()
        .map(|(_, n)| n.as_str())
        .filter(|n| *n != policy)
        .collect();
    Some(if owner == policy {
        (
            format!(
                "{t} is also targeted by {}; this policy (the oldest) acts, they are held",
                others.join(", ")
            ),
            false,
        )
    } else {
        (
            format!(
                "{t} is owned by policy {owner} (the oldest of {}); this one reports but does not act",
                all.iter()
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            true,
        )
    })
}

async fn observe(
    ctx: &Context,
    state: &mut SweepState,
    snap: &Snapshot,
    now: Timestamp,
) -> Vec<Due> {
    let mut due = vec![];
    let targeting = targeting(snap);
    let now_ms = now.as_millisecond();
    let started_ms = state.started.get_or_insert(now).as_millisecond();
    // Due policies, the longest-waiting first: when a sweep cannot take them all, the ones left
    // go first in the next.
    let mut candidates = vec![];
    for entry in &snap.policies {
        if !ctx.fence.holds_namespace(&entry.namespace) {
            // Another replica's shard.
            continue;
        }
        let interval_ms = match entry.policy.as_ref() {
            Ok(p) => p
                .spec
                .interval
                .get()
                .as_millis()
                .clamp(1000, i64::MAX as u128) as i64,
            Err(_) => 60_000,
        };
        let phase = phase_ms(&entry.uid, interval_ms);
        let slot = (now_ms - phase).div_euclid(interval_ms);
        let key = (slot, entry.generation);
        let last = state.slots.get(&entry.uid);
        if last == Some(&key) {
            continue;
        }
        // After a start or a takeover every policy is new to this replica: their first
        // evaluations spread over at most STARTUP_SPREAD_MS (by phase; less for a small fleet),
        // not all in the first sweep (at 1,000 policies, one sweep over every pod, 1,000 status
        // writes and an answer over the size cap). A policy created later is evaluated at once.
        if last.is_none()
            && awaits_first_turn(
                &entry.uid,
                interval_ms,
                snap.policies.len(),
                started_ms,
                now_ms,
            )
        {
            continue;
        }
        candidates.push((
            due_since(last.map(|(s, _)| *s), slot, interval_ms, phase),
            key,
            entry,
        ));
    }
    candidates.sort_by_key(|(since, _, e)| (*since, e.uid.as_str()));
    let waiting = candidates.len();
    let mut observed = vec![];
    for (_, key, entry) in candidates {
        let d = observe_policy(ctx, state, snap, &targeting, entry.clone()).await;
        observed.push((key, d));
    }
    let pods: Vec<usize> = observed
        .iter()
        .map(|(_, d)| d.targets.iter().map(|t| t.pods.len()).sum())
        .collect();
    let taken = within_budget(&pods, ctx.settings.max_pods);
    for (key, d) in observed.into_iter().take(taken) {
        state.slots.insert(d.entry.uid.clone(), key);
        due.push(d);
    }
    let pods: usize = pods[..taken].iter().sum();
    let deferred = waiting - due.len();
    ctx.metrics.sweep_deferred.set(deferred as i64);
    if deferred > 0 {
        warn!(
            deferred,
            taken = due.len(),
            pods,
            max_pods = ctx.settings.max_pods,
            "this sweep reached its pod budget; the policies left wait for the next, the longest-waiting first (the fleet needs more than one tick: more shards or longer intervals)"
        );
    }
    let live: std::collections::HashSet<&str> = snap
        .policies
        .iter()
        .filter(|p| ctx.fence.holds_namespace(&p.namespace))
        .map(|p| p.uid.as_str())
        .collect();
    state.slots.retain(|k, _| live.contains(k.as_str()));
    state.written.retain(|k, _| live.contains(k.as_str()));
    state.validity.retain(|k, _| live.contains(k.as_str()));
    state.faulty.retain(|(k, _), _| live.contains(k.as_str()));
    state.held.retain(|(k, _), _| live.contains(k.as_str()));
    state.forecasts.retain(|(k, _)| live.contains(k.as_str()));
    due
}

async fn observe_policy(
    ctx: &Context,
    state: &mut SweepState,
    snap: &Snapshot,
    targeting: &Targeting,
    entry: PolicyEntry,
) -> Due {
    let mut d = Due {
        entry,
        problem: None,
        prom: None,
        targets: vec![],
    };
    let policy = match d.entry.policy.as_ref() {
        Ok(p) => p.clone(),
        Err(e) => {
            warn!(policy = %d.entry.name, namespace = %d.entry.namespace, error = %e, "cannot decode the policy; reporting it in its status and skipping it until it changes");
            d.problem = Some(PolicyOutcome::Undecodable(format!(
                "this operator cannot read the object: {e}; fix the spec"
            )));
            return d;
        }
    };
    let validity = match state.validity.get(&d.entry.uid) {
        Some((g, v)) if *g == d.entry.generation => v.clone(),
        _ => {
            let v = validate(&policy.spec).map_err(|p| p.join("; "));
            state
                .validity
                .insert(d.entry.uid.clone(), (d.entry.generation, v.clone()));
            v
        }
    };
    if let Err(msg) = validity {
        d.problem = Some(PolicyOutcome::Invalid(format!("invalid policy: {msg}")));
        return d;
    }
    match ctx
        .prom_for(&d.entry.namespace, policy.spec.prometheus.as_ref())
        .await
    {
        Ok(p) => d.prom = Some(p),
        Err(msg) => {
            d.problem = Some(PolicyOutcome::PrometheusConfig(msg));
            return d;
        }
    }
    let ns = d.entry.namespace.clone();
    let targets = targeting
        .targets
        .get(&d.entry.uid)
        .map_or(&[][..], Vec::as_slice);
    for t in targets.iter().cloned() {
        let workload = snap.workload(&ns, &t).cloned();
        let pods = workload
            .as_ref()
            .map(|w| snap.pods_of(&ns, w).to_vec())
            .unwrap_or_default();
        let pod_refs = pods
            .iter()
            .map(|p| PodRef {
                namespace: ns.clone(),
                name: p.name.clone(),
                started_at: p.started_at,
            })
            .collect();
        let history = snap.history(&ns, &d.entry.name, &d.entry.uid, &t);
        let last_seq = snap.last_seq(&ns, &d.entry.name, &t);
        let conflict = conflict_of(&targeting.owners, &ns, &d.entry.name, &t);
        d.targets.push(TargetObs {
            target: t,
            workload,
            pods,
            pod_refs,
            history,
            last_seq,
            conflict,
        });
    }
    if let (Some(t), [only]) = (&policy.spec.target_ref, d.targets.as_slice())
        && only.workload.is_none()
        && !only
            .history
            .iter()
            .any(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
    {
        d.problem = Some(PolicyOutcome::TargetNotFound(format!(
            "{t} not found in namespace {ns}; evaluating again in {}",
            policy.spec.interval
        )));
        d.targets.clear();
    }
    d
}

// ---------------------------------------------------------------------------------------------
// evaluate

async fn evaluate(ctx: &Context, due: &[Due], now: f64) -> (Vec<Vec<Evaluated>>, usize) {
    let settings = &ctx.settings.query;
    let eval_ctx = EvalContext {
        now,
        step: settings.step,
        stale_after: settings.stale_after,
    };
    // Group every target by the Prometheus it is read from.
    let mut groups: BTreeMap<String, (PromClient, Vec<(usize, usize)>)> = BTreeMap::new();
    for (di, d) in due.iter().enumerate() {
        let Some(prom) = &d.prom else { continue };
        for ti in 0..d.targets.len() {
            groups
                .entry(prom.url().to_string())
                .or_insert_with(|| (prom.clone(), vec![]))
                .1
                .push((di, ti));
        }
    }
    let mut out: Vec<Vec<Option<Evaluated>>> = due
        .iter()
        .map(|d| d.targets.iter().map(|_| None).collect())
        .collect();
    let mut queries = 0;
    for (prom, members) in groups.values() {
        let subjects: Vec<Subject> = members
            .iter()
            .filter_map(|&(di, ti)| {
                let spec = &due[di].policy()?.spec;
                let t = &due[di].targets[ti];
                Some(Subject {
                    spec,
                    namespace: &due[di].entry.namespace,
                    workload: &t.target.name,
                    pods: &t.pod_refs,
                })
            })
            .collect();
        let plan = batch::plan(&subjects, settings);
        queries += plan.len();
        let q_started = Instant::now();
        let answers = batch::fetch(prom, &plan, now, settings).await;
        ctx.metrics
            .query_duration
            .observe(q_started.elapsed().as_secs_f64());
        for (i, &(di, ti)) in members.iter().enumerate() {
            let Some(subject) = subjects.get(i) else {
                continue;
            };
            let started = Instant::now();
            let ev = batch::evaluate(&plan, &answers, i, subject, &eval_ctx);
            ctx.metrics
                .evaluation_duration
                .observe(started.elapsed().as_secs_f64());
            count_verdicts(ctx, &ev);
            out[di][ti] = Some(ev);
        }
    }
    let out = out
        .into_iter()
        .map(|evs| {
            evs.into_iter()
                .map(|e| {
                    e.unwrap_or_else(|| Evaluated {
                        verdicts: vec![],
                        queries: 0,
                        fetch_error: None,
                        no_data: false,
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    (out, queries)
}

fn count_verdicts(ctx: &Context, ev: &Evaluated) {
    for v in &ev.verdicts {
        ctx.metrics
            .verdicts
            .get_or_create(&FaultLabel {
                fault: v.verdict.kind.as_str().into(),
            })
            .inc();
    }
    let result = match &ev.fetch_error {
        Some(_) => "no_data",
        None => "ok",
    };
    ctx.metrics
        .evaluations
        .get_or_create(&ResultLabel {
            result: result.into(),
        })
        .inc();
    if let Some(e) = &ev.fetch_error {
        ctx.metrics
            .query_errors
            .get_or_create(&ResultLabel {
                result: e.category().into(),
            })
            .inc();
    }
}

// ---------------------------------------------------------------------------------------------
// decide

fn decide(
    due: &[Due],
    evaluated: &[Vec<Evaluated>],
    forecasts: &ForecastState,
    now: Timestamp,
) -> Vec<Vec<Intent>> {
    due.iter()
        .zip(evaluated)
        .map(|(d, evs)| {
            let Some(policy) = d.policy() else {
                return vec![];
            };
            d.targets
                .iter()
                .zip(evs)
                .map(|(t, ev)| {
                    let ask = t.workload.as_ref().and_then(|w| {
                        forecasts.ask(
                            &d.entry.uid,
                            &t.target,
                            d.entry.generation,
                            &policy.spec,
                            w.workload.replicas,
                            now,
                        )
                    });
                    let intent = engine::decide(&engine::Observed {
                        policy: &d.entry.name,
                        spec: &policy.spec,
                        target: &t.target,
                        workload: t.workload.as_ref().map(|w| &w.workload),
                        replicas_owner: t
                            .workload
                            .as_ref()
                            .map_or(&owners::NO_OWNER, |w| &w.replicas_owner),
                        pods: &t.pods,
                        history: &t.history,
                        evaluated: ev,
                        forecast: ask.as_ref(),
                        now,
                    });
                    match (&t.conflict, intent) {
                        // One owner per target: the others report, and open nothing.
                        (Some((note, true)), Intent::Open(o)) => Intent::Hold {
                            fault: o.spec.fault.clone(),
                            refusal: Refusal {
                                reason: "OwnedByAnotherPolicy",
                                message: note.clone(),
                            },
                        },
                        // A policy re-created with an old name: number past the earlier
                        // object's incidents, which are kept but are not this one's history.
                        (_, Intent::Open(mut o)) if o.seq <= t.last_seq => {
                            o.seq = t.last_seq.saturating_add(1);
                            o.name = engine::incident_name(
                                &d.entry.name,
                                &t.target,
                                &o.spec.fault,
                                o.seq,
                            );
                            Intent::Open(o)
                        }
                        (_, intent) => intent,
                    }
                })
                .collect()
        })
        .collect()
}

/// The fleet-wide limits: the storm brake over every watched target's latest finding, then the
/// cluster-wide disruption budget. Returns the refusals, per policy and target.
fn fleet_gate(
    ctx: &Context,
    state: &mut SweepState,
    due: &[Due],
    evaluated: &[Vec<Evaluated>],
    intents: &mut [Vec<Intent>],
    now: Timestamp,
) -> Vec<Vec<Option<Refusal>>> {
    for (d, evs) in due.iter().zip(evaluated) {
        let Some(policy) = d.policy() else { continue };
        for (t, ev) in d.targets.iter().zip(evs) {
            // Firing, or starting to: a shared cause's faults complete their holds seconds
            // apart, and each policy is evaluated at its own phase of the interval.
            let firing = ev.fetch_error.is_none()
                && (choose(&policy.spec.faults, &ev.verdicts).is_some()
                    || ev.verdicts.iter().any(|v| v.verdict.onset));
            state
                .faulty
                .insert((d.entry.uid.clone(), t.target.clone()), firing);
        }
    }
    let faulty = state.faulty.values().filter(|f| **f).count();
    let storm = fleet::storm(&ctx.settings.fleet, faulty, state.faulty.len());
    ctx.metrics.storm_brake.set(i64::from(storm.is_some()));
    if let Some(r) = &storm {
        warn!(
            faulty,
            watched = state.faulty.len(),
            "storm brake on: {}",
            r.message
        );
    }
    let limits = fleet::share(
        &ctx.settings.fleet,
        ctx.fence.held().len() as u32,
        ctx.fence.shards(),
    );
    intents
        .iter_mut()
        .map(|list| fleet::gate(list, &limits, &mut state.fleet, storm.as_ref(), now))
        .collect()
}

/// An Event and a metric when a target's firing fault becomes held by a guard (not on every
/// sweep while it stays held).
async fn refusal_events(
    ctx: &Context,
    state: &mut SweepState,
    due: &[Due],
    applied: &[Vec<Applied>],
) {
    for (d, apps) in due.iter().zip(applied) {
        for (t, a) in d.targets.iter().zip(apps) {
            let key = (d.entry.uid.clone(), t.target.clone());
            let Some(r) = &a.held else {
                state.held.remove(&key);
                continue;
            };
            ctx.metrics
                .holds
                .get_or_create(&ResultLabel {
                    result: r.reason.into(),
                })
                .inc();
            if state.held.insert(key, r.reason) == Some(r.reason) {
                continue;
            }
            events::publish_policy(
                &ctx.recorder,
                &d.entry.namespace,
                &d.entry.name,
                &d.entry.uid,
                r.reason,
                &format!("{}: {}", t.target, r.message),
            )
            .await;
            ctx.count_write("event");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// apply

/// What applying left for one target: the open incident and why a fault is held.
struct Applied {
    open: Option<(String, &'static str)>,
    held: Option<Refusal>,
}

async fn apply_all(
    ctx: &Context,
    due: &[Due],
    intents: Vec<Vec<Intent>>,
    fleet_held: Vec<Vec<Option<Refusal>>>,
) -> Vec<Vec<Applied>> {
    let mut jobs = vec![];
    for (di, ((d, list), fheld)) in due.iter().zip(intents).zip(fleet_held).enumerate() {
        let Some(policy) = d.policy() else { continue };
        for (ti, (intent, fh)) in list.into_iter().zip(fheld).enumerate() {
            let t = &d.targets[ti];
            let open = t
                .history
                .iter()
                .rev()
                .find(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_terminal()));
            let held = match &intent {
                Intent::Hold { refusal, .. } => Some(refusal.clone()),
                _ => fh,
            };
            let p = PolicyCtx {
                namespace: &d.entry.namespace,
                name: &d.entry.name,
                uid: &d.entry.uid,
                spec: &policy.spec,
            };
            jobs.push(async move {
                let idle = matches!(intent, Intent::Idle | Intent::Hold { .. });
                let result = if idle {
                    Ok(None)
                } else {
                    apply::apply(ctx, &p, intent, open).await
                };
                let now_open = match result {
                    Ok(Some(r)) => Some(r),
                    Ok(None) => None,
                    Err(e) => {
                        warn!(policy = %p.name, namespace = %p.namespace, target = %t.target, error = %e, "applying the incident step failed; retrying on the next sweep");
                        ctx.metrics
                            .reconcile_errors
                            .get_or_create(&ResultLabel {
                                result: e.category().into(),
                            })
                            .inc();
                        open.cloned()
                    }
                };
                let open = now_open
                    .filter(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
                    .map(|r| {
                        let phase = r.status.as_ref().map_or("Detected", |s| s.phase.as_str());
                        (r.metadata.name.clone().unwrap_or_default(), phase)
                    });
                (di, ti, Applied { open, held })
            });
        }
    }
    let mut out: Vec<Vec<Option<Applied>>> = due
        .iter()
        .map(|d| d.targets.iter().map(|_| None).collect())
        .collect();
    let mut results = stream::iter(jobs).buffer_unordered(ctx.settings.write_concurrency.max(1));
    while let Some((di, ti, a)) = results.next().await {
        out[di][ti] = Some(a);
    }
    let active = out
        .iter()
        .flatten()
        .filter(|a| a.as_ref().is_some_and(|a| a.open.is_some()))
        .count();
    ctx.metrics.active_remediations.set(active as i64);
    out.into_iter()
        .map(|v| {
            v.into_iter()
                .map(|a| {
                    a.unwrap_or(Applied {
                        open: None,
                        held: None,
                    })
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// status

async fn write_statuses(
    ctx: &Context,
    state: &mut SweepState,
    due: &[Due],
    evaluated: Vec<Vec<Evaluated>>,
    applied: Vec<Vec<Applied>>,
    now: Timestamp,
) -> usize {
    let mut writes = vec![];
    for ((d, evs), apps) in due.iter().zip(evaluated).zip(applied) {
        let policy = d.policy();
        let prev = policy.and_then(|p| p.status.as_ref());
        let outcome = match &d.problem {
            Some(PolicyOutcome::Undecodable(m)) => PolicyOutcome::Undecodable(m.clone()),
            Some(PolicyOutcome::Invalid(m)) => PolicyOutcome::Invalid(m.clone()),
            Some(PolicyOutcome::PrometheusConfig(m)) => PolicyOutcome::PrometheusConfig(m.clone()),
            Some(PolicyOutcome::TargetNotFound(m)) => PolicyOutcome::TargetNotFound(m.clone()),
            Some(PolicyOutcome::Evaluated { .. }) | None => PolicyOutcome::Evaluated {
                queries: evs.iter().map(|e| e.queries).max().unwrap_or_default(),
                targets: d
                    .targets
                    .iter()
                    .zip(evs)
                    .zip(apps)
                    .map(|((t, ev), a)| TargetOutcome {
                        target: t.target.clone(),
                        evaluated: ev,
                        open: a.open,
                        held: a.held,
                        conflict: t.conflict.as_ref().map(|(n, _)| n.clone()),
                        shadow: crate::remediation::shadow::summary(&t.history),
                        skipping: policy.map_or_else(Vec::new, |p| {
                            crate::remediation::memory::skipping(&p.spec, &t.history, now)
                        }),
                        template_drift: crate::remediation::resize::template_drift(
                            &t.history, &t.pods,
                        ),
                        forecast: policy
                            .filter(|p| crate::forecast::query::forecast_of(&p.spec).is_some())
                            .and_then(|_| state.forecasts.get(&d.entry.uid, &t.target).cloned()),
                    })
                    .collect(),
            },
        };
        let next = status::build(
            prev,
            policy.map(|p| &p.spec),
            d.entry.generation,
            &outcome,
            now,
        );
        let digest = status::digest(&next);
        // The heartbeat refreshes lastEvaluation.time; a status without one has nothing to refresh.
        let heartbeat_due = prev
            .and_then(|s| s.last_evaluation.as_ref())
            .is_some_and(|e| {
                now.duration_since(e.time.0).as_secs_f64() >= ctx.settings.heartbeat.as_secs_f64()
            });
        let unchanged_on_record = prev.is_some_and(|p| status::digest(p) == digest);
        let just_written = state
            .written
            .get(&d.entry.uid)
            .is_some_and(|(dg, at)| *dg == digest && at.elapsed() < ctx.settings.heartbeat);
        if (unchanged_on_record && !heartbeat_due) || just_written {
            ctx.metrics.status_unchanged.inc();
            continue;
        }
        writes.push((d, next, digest));
    }
    let n = writes.len();
    let mut results = stream::iter(writes.into_iter().map(|(d, st, digest)| async move {
        let r = if ctx.fence.holds_namespace(&d.entry.namespace) {
            save_policy_status(ctx, &d.entry, &st).await
        } else {
            Err(kube::Error::Service(
                "this replica no longer holds the policy's shard".into(),
            ))
        };
        (d.entry.uid.clone(), r, digest, d)
    }))
    .buffer_unordered(ctx.settings.write_concurrency.max(1));
    while let Some((uid, r, digest, d)) = results.next().await {
        match r {
            Ok(()) => {
                state.written.insert(uid, (digest, Instant::now()));
            }
            Err(e) => {
                warn!(policy = %d.entry.name, namespace = %d.entry.namespace, error = %crate::kube_message(&e), "writing the policy status failed; retrying on the next sweep");
                // Evaluate again on the next sweep.
                state.slots.remove(&uid);
            }
        }
    }
    debug!(writes = n, "statuses written");
    n
}

/// Writes a policy's status (server-side apply, carrying the resourceVersion it was built from).
async fn save_policy_status(
    ctx: &Context,
    entry: &PolicyEntry,
    st: &RemediationPolicyStatus,
) -> Result<(), kube::Error> {
    let ar = ApiResource::erase::<RemediationPolicy>(&());
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &entry.namespace, &ar);
    let mut patch = json!({
        "apiVersion": "homeostat.dev/v1alpha1",
        "kind": "RemediationPolicy",
        "metadata": {"name": entry.name},
        "status": st,
    });
    if let Some(rv) = entry_rv(ctx, entry) {
        patch["metadata"]["resourceVersion"] = json!(rv);
    }
    api.patch_status(
        &entry.name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    ctx.count_write("status");
    Ok(())
}

fn entry_rv(_ctx: &Context, entry: &PolicyEntry) -> Option<String> {
    entry
        .policy
        .as_ref()
        .as_ref()
        .ok()
        .and_then(|p| p.metadata.resource_version.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_takes_due_policies_up_to_its_pod_budget_and_always_the_first() {
        assert_eq!(within_budget(&[10, 10, 10], 25), 2);
        assert_eq!(within_budget(&[10, 10, 5], 25), 3);
        assert_eq!(
            within_budget(&[5000, 10], 2000),
            1,
            "one huge policy still runs, alone"
        );
        assert_eq!(within_budget(&[0, 0, 3000], 2000), 2);
        assert_eq!(within_budget(&[], 2000), 0);
    }

    #[test]
    fn the_longest_waiting_policy_goes_first() {
        // 30 s interval, phases 1 s and 20 s. A policy last evaluated three slots ago has waited
        // since the slot after that one, longer than one that only missed the current slot.
        let (i, now_slot) = (30_000, 100);
        let behind = due_since(Some(97), now_slot, i, 20_000);
        let current = due_since(Some(99), now_slot, i, 1_000);
        let new = due_since(None, now_slot, i, 1_000);
        assert!(behind < current && current == new);
        assert_eq!(behind, 98 * i + 20_000);
    }

    #[test]
    fn first_evaluations_after_a_start_spread_over_thirty_seconds() {
        let uids: Vec<String> = (0..1000).map(|i| format!("uid-{i}")).collect();
        let waiting = |interval_ms: i64, after_ms: i64| {
            uids.iter()
                .filter(|u| awaits_first_turn(u, interval_ms, 1000, 0, after_ms))
                .count()
        };
        // A 30 s interval, 5 s ticks: about a sixth of the fleet per tick, everyone within 30 s.
        assert_eq!(waiting(30_000, 0), 1000, "no burst in the first sweep");
        let first = 1000 - waiting(30_000, 5_000);
        assert!((100..250).contains(&first), "{first} due in the first 5 s");
        assert!(waiting(30_000, 15_000) > 350 && waiting(30_000, 15_000) < 650);
        assert_eq!(waiting(30_000, 30_000), 0);
        // A long interval still starts within 30 s; a short one within its interval.
        assert_eq!(waiting(3_600_000, 30_000), 0);
        assert_eq!(waiting(5_000, 5_000), 0);
        // Later, a new policy is due at once.
        assert!(!awaits_first_turn("new", 30_000, 1000, 0, 10 * 60_000));
        // A small fleet starts within a proportional part: 10 policies within 1.5 s.
        assert!(!awaits_first_turn("a", 30_000, 10, 0, 1_500));
        assert!(!awaits_first_turn("a", 30_000, 1, 0, 150));
    }
}
