//! The operator's own metrics, served on `/metrics`. Labels come from bounded sets only.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// A label set of one bounded value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// e.g. ok, error, or an error category.
    pub result: String,
}

/// Verdicts by fault kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabel {
    /// A `FaultKind` name.
    pub fault: String,
}

/// Actions by type and result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// An `ActionType` name.
    pub action: String,
    /// applied, blocked, failed, dry_run, shadow.
    pub result: String,
}

/// Incident durations by final phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// A terminal `Phase` name.
    pub phase: String,
}

/// Buckets of the sweep histograms: fine around the 1 s target of a sweep's decisions.
const SWEEP_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric homeostat exports.
pub struct Metrics {
    /// Policy evaluations by result.
    pub evaluations: Family<ResultLabel, Counter>,
    /// Verdicts by fault.
    pub verdicts: Family<FaultLabel, Counter>,
    /// Actions by type and result.
    pub actions: Family<ActionLabels, Counter>,
    /// Seconds from detection to the end of an incident, by final phase.
    pub remediation_duration: Family<PhaseLabel, Histogram>,
    /// Seconds per evaluation (queries and classification).
    pub evaluation_duration: Histogram,
    /// Seconds per Prometheus query batch.
    pub query_duration: Histogram,
    /// Prometheus failures by category.
    pub query_errors: Family<ResultLabel, Counter>,
    /// Reconcile failures by category.
    pub reconcile_errors: Family<ResultLabel, Counter>,
    /// Open incidents.
    pub active_remediations: Gauge,
    /// 1 while this replica holds the leader lease (or runs without election).
    pub leader: Gauge,
    /// Shards this replica holds (all of them without election).
    pub shards_held: Gauge,
    /// Apiserver writes by kind (status, remediation, remediation_status, action, event).
    pub apiserver_writes: Family<ResultLabel, Counter>,
    /// Webhook notifications by result.
    pub notifications: Family<ResultLabel, Counter>,
    /// Seconds from a sweep's start to every due policy decided and applied.
    pub sweep_duration: Histogram,
    /// Seconds from a sweep's start to every due policy decided (before anything is applied).
    pub sweep_decided: Histogram,
    /// Distinct Prometheus queries of the last sweep.
    pub sweep_queries: Gauge,
    /// Policies evaluated by the last sweep.
    pub sweep_policies: Gauge,
    /// Due policies the last sweep left for the next (its pod budget was reached).
    pub sweep_deferred: Gauge,
    /// Policy status writes skipped because nothing changed.
    pub status_unchanged: Counter,
    /// Firing faults held by a guard, by reason (Cooldown, ClusterBudget, StormBrake, ...).
    pub holds: Family<ResultLabel, Counter>,
    /// 1 while the storm brake holds every disruptive action.
    pub storm_brake: Gauge,
    /// Remediations pruned by retention, by reason (age, limit), and orphaned open incidents
    /// halted (halted).
    pub trail_pruned: Family<ResultLabel, Counter>,
    /// The allocator's heap in bytes, by kind (see `refresh_heap`).
    pub heap_bytes: Family<HeapLabel, Gauge>,
    /// Forecasts computed, by result (ahead, covered, hold, no_forecast, error).
    pub forecasts: Family<ResultLabel, Counter>,
    /// Seconds per forecast: the history query and the model fit.
    pub forecast_duration: Histogram,
}

impl Metrics {
    /// Creates the metrics and registers them under the `homeostat_` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            evaluations: Family::default(),
            verdicts: Family::default(),
            actions: Family::default(),
            remediation_duration: Family::new_with_constructor(|| {
                Histogram::new([30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0])
            }),
            evaluation_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            query_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            query_errors: Family::default(),
            reconcile_errors: Family::default(),
            active_remediations: Gauge::default(),
            leader: Gauge::default(),
            shards_held: Gauge::default(),
            apiserver_writes: Family::default(),
            notifications: Family::default(),
            sweep_duration: Histogram::new(SWEEP_BUCKETS),
            sweep_decided: Histogram::new(SWEEP_BUCKETS),
            sweep_queries: Gauge::default(),
            sweep_policies: Gauge::default(),
            sweep_deferred: Gauge::default(),
            status_unchanged: Counter::default(),
            holds: Family::default(),
            storm_brake: Gauge::default(),
            trail_pruned: Family::default(),
            heap_bytes: Family::default(),
            forecasts: Family::default(),
            forecast_duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        };
        let r = registry.sub_registry_with_prefix("homeostat");
        r.register(
            "evaluations",
            "Policy evaluations by result",
            m.evaluations.clone(),
        );
        r.register("verdicts", "Verdicts by fault kind", m.verdicts.clone());
        r.register("actions", "Actions by type and result", m.actions.clone());
        r.register(
            "remediation_duration_seconds",
            "Seconds from detection to the end of an incident",
            m.remediation_duration.clone(),
        );
        r.register(
            "evaluation_duration_seconds",
            "Seconds per policy evaluation",
            m.evaluation_duration.clone(),
        );
        r.register(
            "prometheus_query_duration_seconds",
            "Seconds per batch of Prometheus queries",
            m.query_duration.clone(),
        );
        r.register(
            "prometheus_query_errors",
            "Prometheus failures by category",
            m.query_errors.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconcile failures by category",
            m.reconcile_errors.clone(),
        );
        r.register(
            "active_remediations",
            "Open incidents",
            m.active_remediations.clone(),
        );
        r.register("leader", "1 while this replica may act", m.leader.clone());
        r.register(
            "shards_held",
            "Policy shards this replica holds and acts for",
            m.shards_held.clone(),
        );
        r.register(
            "apiserver_writes",
            "Apiserver writes by kind",
            m.apiserver_writes.clone(),
        );
        r.register(
            "notifications",
            "Webhook notifications by result",
            m.notifications.clone(),
        );
        r.register(
            "forecasts",
            "Forecasts of Scale actions' forecast blocks by result",
            m.forecasts.clone(),
        );
        r.register(
            "forecast_duration_seconds",
            "Seconds per forecast (history query and model fit)",
            m.forecast_duration.clone(),
        );
        r.register(
            "sweep_duration_seconds",
            "Seconds from a sweep's start to every due policy decided and applied",
            m.sweep_duration.clone(),
        );
        r.register(
            "sweep_decided_seconds",
            "Seconds from a sweep's start to every due policy decided, before anything is applied",
            m.sweep_decided.clone(),
        );
        r.register(
            "sweep_queries",
            "Distinct Prometheus queries of the last sweep",
            m.sweep_queries.clone(),
        );
        r.register(
            "sweep_policies",
            "Policies evaluated by the last sweep",
            m.sweep_policies.clone(),
        );
        r.register(
            "sweep_deferred",
            "Due policies the last sweep left for the next because it reached its pod budget",
            m.sweep_deferred.clone(),
        );
        r.register(
            "holds",
            "Firing faults held by a guard, by reason",
            m.holds.clone(),
        );
        r.register(
            "storm_brake",
            "1 while the storm brake holds every disruptive action",
            m.storm_brake.clone(),
        );
        r.register(
            "trail_pruned",
            "Remediations deleted by retention (age, limit) and orphaned open incidents halted",
            m.trail_pruned.clone(),
        );
        r.register(
            "heap_bytes",
            "The allocator's heap in bytes: allocated, active, resident, retained",
            m.heap_bytes.clone(),
        );
        r.register(
            "status_unchanged",
            "Policy status writes skipped because nothing changed",
            m.status_unchanged.clone(),
        );
        m
    }
}

/// One figure of the allocator's heap.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HeapLabel {
    /// allocated (live objects), active (their pages), resident (what RSS sees), retained
    /// (unmapped but kept for reuse).
    pub kind: String,
}

impl Metrics {
    /// Reads jemalloc's heap figures into `heap_bytes`. Cheap (a few atomics after one epoch
    /// advance); called once per sweep tick. Live objects far below `resident` mean the process
    /// holds freed memory, not data.
    pub fn refresh_heap(&self) {
        use tikv_jemalloc_ctl::{epoch, stats};
        if epoch::advance().is_err() {
            return;
        }
        let figures = [
            ("allocated", stats::allocated::read()),
            ("active", stats::active::read()),
            ("resident", stats::resident::read()),
            ("retained", stats::retained::read()),
        ];
        for (kind, v) in figures {
            if let Ok(v) = v {
                self.heap_bytes
                    .get_or_create(&HeapLabel { kind: kind.into() })
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        }
    }
}
