//! One sweep for many workloads: the queries of every subject are planned together, deduplicated,
//! sent once, and each subject is evaluated on its own slice of the answers.
//!
//! A standard signal whose template a subject does not override is read with **one** range query
//! for all subjects at once (`namespace=~"a|b|…"`, `pod=~"p1|p2|…"` over the subjects' own pods,
//! grouped by namespace and pod), so an answer holds the due pods' series, not the whole fleet's.
//! Overridden templates and user signals mention the subject's own workload or pods, so they are
//! rendered per subject and deduplicated by their rendered text. Queries per sweep therefore grow
//! with the number of distinct templates, not with policies or pods.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, stream};

use super::{
    EvalContext, FaultVerdict, StdSignal, Verdict, WorkloadSeries, evaluate_all,
    fetch::{
        FetchError, Indexed, PodRef, QuerySet, assemble_indexed, needed, signal_span, workload_vars,
    },
};
use crate::{
    prometheus::{PromClient, template::exact_alternation},
    v1alpha1::RemediationPolicySpec,
};

/// How series are read: resolution, windows, staleness and timeouts. Shared by the operator,
/// `diagnose` and `backtest`.
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
    /// Queries in flight at once towards one Prometheus.
    pub query_concurrency: usize,
}

impl Default for Settings {
    /// The command-line defaults: 15 s step, 1 m window, stale after 45 s, 10 s timeout, all
    /// namespaces, 4 queries in flight.
    fn default() -> Self {
        Self {
            step: 15.0,
            window: "60s".into(),
            stale_after: 45.0,
            query_timeout: Duration::from_secs(10),
            namespaces: vec![],
            query_concurrency: 4,
        }
    }
}

/// One workload to evaluate under one policy spec.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    /// The policy's spec (faults, signals, query overrides).
    pub spec: &'a RemediationPolicySpec,
    /// Namespace.
    pub namespace: &'a str,
    /// The workload's name (for `{{ workload }}`).
    pub workload: &'a str,
    /// Its live pods.
    pub pods: &'a [PodRef],
}

/// The result of evaluating one subject.
#[derive(Debug)]
pub struct Evaluated {
    /// One verdict per fault (Inconclusive for all when the fetch failed).
    pub verdicts: Vec<FaultVerdict>,
    /// Queries this subject's evaluation read (shared queries count for every subject using them).
    pub queries: u32,
    /// Why no data could be read, if so.
    pub fetch_error: Option<Arc<FetchError>>,
    /// Prometheus answered, but no series of any signal had a point for this subject's pods
    /// (wrong labels or metric names, or nothing scrapes them). False for a subject without pods.
    pub no_data: bool,
}

impl Evaluated {
    /// Every fault Inconclusive because no data could be read.
    pub fn blind(spec: &RemediationPolicySpec, e: Arc<FetchError>) -> Self {
        Self {
            verdicts: spec
                .faults
                .iter()
                .map(|f| FaultVerdict {
                    fault: f.name.clone(),
                    pattern: f.pattern,
                    verdict: Verdict::inconclusive(format!("no data: {e}")),
                })
                .collect(),
            queries: 0,
            fetch_error: Some(e),
            no_data: false,
        }
    }
}

/// Where a subject reads a signal from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Std(StdSignal),
    User(String),
}

/// One query of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedQuery {
    /// The rendered PromQL.
    pub promql: String,
    /// Seconds of history it reads before the evaluation time.
    pub span: f64,
    /// The signal's name, for errors.
    pub signal: String,
}

/// The sources a subject reads and the query index of each.
type Uses = Vec<(Source, usize)>;

/// A subject's source before the shared queries are rendered: its query, or the shared key.
type PendingUse = (Source, Result<usize, (StdSignal, String)>);

/// The queries of a sweep and which subject reads which.
#[derive(Debug, Default)]
pub struct Plan {
    /// Distinct queries.
    pub queries: Vec<PlannedQuery>,
    /// Per subject: its sources and the query each reads, or why it could not be planned.
    uses: Vec<Result<Uses, Arc<FetchError>>>,
}

impl Plan {
    /// Number of distinct queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// Whether there is nothing to query.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

/// Plans the queries of a sweep over `subjects` (pure).
pub fn plan(subjects: &[Subject<'_>], settings: &Settings) -> Plan {
    let mut plan = Plan::default();
    let mut by_text: BTreeMap<String, usize> = BTreeMap::new();
    // Shared standard queries: template -> (namespaces, pods, longest span).
    type Shared<'s> = BTreeMap<(StdSignal, String), (BTreeSet<&'s str>, BTreeSet<&'s str>, f64)>;
    let mut shared: Shared = BTreeMap::new();
    let mut pending: Vec<Vec<PendingUse>> = vec![];
    for s in subjects {
        let mut uses = vec![];
        let mut err = None;
        let overrides = QuerySet::with_overrides(s.spec.queries.as_ref());
        let standard = QuerySet::standard();
        let vars = workload_vars(
            s.namespace,
            s.workload,
            &s.pods.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            &settings.window,
        );
        for sig in needed(&s.spec.faults) {
            let span = signal_span(&s.spec.faults, sig, settings.step);
            let template = overrides.template(sig);
            if template == standard.template(sig) {
                let e = shared
                    .entry((sig, template.to_string()))
                    .or_insert_with(|| (BTreeSet::new(), BTreeSet::new(), 0.0));
                e.0.insert(s.namespace);
                e.1.extend(s.pods.iter().map(|p| p.name.as_str()));
                e.2 = e.2.max(span);
                uses.push((Source::Std(sig), Err((sig, template.to_string()))));
                continue;
            }
            match vars.render(template) {
                Ok(q) => {
                    let i = intern(&mut plan, &mut by_text, q, span, sig.as_str());
                    uses.push((Source::Std(sig), Ok(i)));
                }
                Err(source) => {
                    err.get_or_insert(FetchError::Template {
                        signal: sig.as_str().into(),
                        source,
                    });
                }
            }
        }
        for sig in s.spec.signals.iter().filter(|sig| {
            s.spec
                .faults
                .iter()
                .any(|f| f.signal.as_deref() == Some(&sig.name))
        }) {
            let span = s
                .spec
                .faults
                .iter()
                .filter(|f| f.signal.as_deref() == Some(&sig.name))
                .map(|f| f.for_.as_secs_f64())
                .fold(settings.step, f64::max);
            match vars.render(&sig.query) {
                Ok(q) => {
                    let i = intern(&mut plan, &mut by_text, q, span, &sig.name);
                    uses.push((Source::User(sig.name.clone()), Ok(i)));
                }
                Err(source) => {
                    err.get_or_insert(FetchError::Template {
                        signal: sig.name.clone(),
                        source,
                    });
                }
            }
        }
        match err {
            Some(e) => {
                plan.uses.push(Err(Arc::new(e)));
                pending.push(vec![]);
            }
            None => {
                plan.uses.push(Ok(vec![]));
                pending.push(uses);
            }
        }
    }
    // Render each shared template once, for every namespace and pod that uses it. Naming the pods
    // keeps an answer proportional to the due pods (a sixth of the fleet per 5 s tick at a 30 s
    // interval) rather than to every pod of their namespaces, which at 10,000 pods outgrows the
    // answer cap for the 30-minute memory history.
    let mut shared_index: BTreeMap<(StdSignal, String), usize> = BTreeMap::new();
    for ((sig, template), (namespaces, pods, span)) in shared {
        let vars = workload_vars("", "", &[], &settings.window)
            .set("namespace", exact_alternation(namespaces.iter().copied()))
            .set("pods", exact_alternation(pods.iter().copied()));
        match vars.render(&template) {
            Ok(q) => {
                let i = intern(&mut plan, &mut by_text, q, span, sig.as_str());
                shared_index.insert((sig, template), i);
            }
            Err(source) => {
                // The standard templates always render; keep the error visible if one does not.
                for (uses, pend) in plan.uses.iter_mut().zip(&pending) {
                    if pend.iter().any(|(src, _)| *src == Source::Std(sig)) {
                        *uses = Err(Arc::new(FetchError::Template {
                            signal: sig.as_str().into(),
                            source: source.clone(),
                        }));
                    }
                }
            }
        }
    }
    for (uses, pend) in plan.uses.iter_mut().zip(pending) {
        if let Ok(list) = uses {
            *list = pend
                .into_iter()
                .filter_map(|(src, q)| match q {
                    Ok(i) => Some((src, i)),
                    Err(key) => shared_index.get(&key).map(|i| (src, *i)),
                })
                .collect();
        }
    }
    plan
}

fn intern(
    plan: &mut Plan,
    by_text: &mut BTreeMap<String, usize>,
    promql: String,
    span: f64,
    signal: &str,
) -> usize {
    if let Some(&i) = by_text.get(&promql) {
        let q = &mut plan.queries[i];
        q.span = q.span.max(span);
        return i;
    }
    plan.queries.push(PlannedQuery {
        promql: promql.clone(),
        span,
        signal: signal.to_string(),
    });
    by_text.insert(promql, plan.queries.len() - 1);
    plan.queries.len() - 1
}

/// The answers of a sweep's queries, in plan order.
pub type Answers = Vec<Result<Arc<Indexed>, Arc<FetchError>>>;

/// Sends every planned query, at most `settings.query_concurrency` at once, each as a range query
/// ending at `now` (unix seconds, aligned to the step).
pub async fn fetch(prom: &PromClient, plan: &Plan, now: f64, settings: &Settings) -> Answers {
    let step = settings.step;
    let mut out: Vec<Option<Result<Arc<Indexed>, Arc<FetchError>>>> =
        (0..plan.queries.len()).map(|_| None).collect();
    let mut results = stream::iter(plan.queries.iter().enumerate().map(|(i, q)| async move {
        let steps = (q.span / step).ceil() + 1.0;
        let r = prom
            .range(&q.promql, now - steps * step, now, step)
            .await
            .map(|s| Arc::new(Indexed::new(s)))
            .map_err(|source| {
                Arc::new(FetchError::Prometheus {
                    signal: q.signal.clone(),
                    source,
                })
            });
        (i, r)
    }))
    .buffer_unordered(settings.query_concurrency.max(1));
    while let Some((i, r)) = results.next().await {
        out[i] = Some(r);
    }
    out.into_iter().flatten().collect()
}

/// Evaluates subject `i` of `plan` on the sweep's answers at `ctx.now` (pure).
pub fn evaluate(
    plan: &Plan,
    answers: &Answers,
    i: usize,
    subject: &Subject<'_>,
    ctx: &EvalContext,
) -> Evaluated {
    let uses = match plan.uses.get(i) {
        Some(Ok(u)) => u,
        Some(Err(e)) => return Evaluated::blind(subject.spec, e.clone()),
        None => return Evaluated::blind(subject.spec, not_planned()),
    };
    let mut std = BTreeMap::new();
    let mut signals = BTreeMap::new();
    for (src, q) in uses {
        match answers.get(*q) {
            Some(Ok(series)) => match src {
                Source::Std(s) => {
                    std.insert(*s, series.clone());
                }
                Source::User(name) => {
                    signals.insert(name.clone(), series.clone());
                }
            },
            Some(Err(e)) => return Evaluated::blind(subject.spec, e.clone()),
            None => return Evaluated::blind(subject.spec, not_planned()),
        }
    }
    let w: WorkloadSeries = assemble_indexed(&std, &signals, subject.pods);
    Evaluated {
        verdicts: evaluate_all(&subject.spec.faults, &w, ctx),
        queries: uses.iter().map(|(_, q)| *q).collect::<BTreeSet<_>>().len() as u32,
        fetch_error: None,
        no_data: !subject.pods.is_empty() && !has_points(&w),
    }
}

/// Whether any signal of the workload has a point.
fn has_points(w: &WorkloadSeries) -> bool {
    w.pods.iter().any(|p| {
        [&p.cpu, &p.throttling, &p.memory, &p.restarts, &p.backoff]
            .iter()
            .any(|s| !s.is_empty())
            || p.last_terminated.is_some()
            || p.cpu_limit.is_some()
            || p.memory_limit.is_some()
    }) || w.signals.values().flatten().any(|s| !s.points.is_empty())
}

fn not_planned() -> Arc<FetchError> {
    Arc::new(FetchError::Prometheus {
        signal: "(sweep)".into(),
        source: crate::prometheus::PromError::Config(
            "the subject was not part of the sweep's plan".into(),
        ),
    })
}

/// Evaluates one workload on its own: the sweep with a single subject (used by `backtest`).
pub async fn evaluate_one(
    prom: &PromClient,
    subject: &Subject<'_>,
    now: f64,
    settings: &Settings,
) -> Evaluated {
    let plan = plan(std::slice::from_ref(subject), settings);
    let answers = fetch(prom, &plan, now, settings).await;
    let ctx = EvalContext {
        now,
        step: settings.step,
        stale_after: settings.stale_after,
    };
    evaluate(&plan, &answers, 0, subject, &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::{
        Duration as D, FaultSpec, Pattern, QueryOverrides, Signal, TargetRef, WorkloadKind,
    };

    fn spec(patterns: &[Pattern]) -> RemediationPolicySpec {
        let faults = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| FaultSpec {
                name: format!("f{i}"),
                pattern: *p,
                for_: D::from_secs(120),
                signal: None,
                condition: None,
                params: None,
                action: None,
                fallbacks: vec![],
            })
            .collect();
        serde_json::from_value::<RemediationPolicySpec>(serde_json::json!({
            "targetRef": {"kind": "Deployment", "name": "w"},
            "faults": [],
        }))
        .map(|mut s| {
            s.faults = faults;
            s
        })
        .expect("valid spec")
    }

    fn pods(ns: &str, n: usize) -> Vec<PodRef> {
        (0..n)
            .map(|i| PodRef {
                namespace: ns.into(),
                name: format!("p{i}"),
                started_at: None,
            })
            .collect()
    }

    #[test]
    fn queries_grow_with_templates_not_with_subjects() {
        let all = [
            Pattern::CrashLoop,
            Pattern::RunawayProcess,
            Pattern::MemoryLeak,
            Pattern::ResourceContention,
        ];
        let s = spec(&all);
        let pods: Vec<Vec<PodRef>> = (0..300)
            .map(|i| pods(&format!("ns{}", i % 7), 10))
            .collect();
        let names: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
        let subjects: Vec<Subject> = (0..300)
            .map(|i| Subject {
                spec: &s,
                namespace: pods[i][0].namespace.as_str(),
                workload: &names[i],
                pods: &pods[i],
            })
            .collect();
        let p = plan(&subjects, &Settings::default());
        // cpu, cpuLimit, throttling, memory, memoryLimit, restarts, backOff, lastTerminated.
        assert_eq!(
            p.len(),
            8,
            "one query per standard signal: {:#?}",
            p.queries
        );
        let cpu = p
            .queries
            .iter()
            .find(|q| q.signal == "cpu")
            .expect("a cpu query");
        assert!(
            cpu.promql
                .contains(r#"namespace=~"ns0|ns1|ns2|ns3|ns4|ns5|ns6""#),
            "{}",
            cpu.promql
        );
        // Only the subjects' own pods (p0..p9 in every namespace), each once.
        assert!(
            cpu.promql
                .contains(r#"pod=~"p0|p1|p2|p3|p4|p5|p6|p7|p8|p9""#),
            "{}",
            cpu.promql
        );
        // Restarts read the crash loop's 10-minute back-off lookback; cpu only the longest `for`.
        let restarts = p
            .queries
            .iter()
            .find(|q| q.signal == "restarts")
            .expect("restarts");
        assert!(restarts.span >= 600.0 && cpu.span < 600.0);
        let single = plan(&subjects[..1], &Settings::default());
        assert_eq!(single.len(), 8);
    }

    #[test]
    fn user_signals_and_overrides_are_deduplicated_by_rendered_text() {
        let mut a = spec(&[Pattern::RunawayProcess, Pattern::Threshold]);
        a.signals = vec![Signal {
            name: "errors".into(),
            query: r#"sum(rate(errors{namespace="{{ namespace }}"}[1m]))"#.into(),
        }];
        a.faults[1].signal = Some("errors".into());
        let mut b = a.clone();
        b.queries = Some(QueryOverrides {
            cpu: Some(r#"sum by (namespace, pod) (rate(my_cpu{namespace="{{ namespace }}", pod=~"{{ pods }}"}[1m]))"#.into()),
            ..QueryOverrides::default()
        });
        let pa = pods("shop", 2);
        let pb = pods("shop", 3);
        let pc = pods("other", 3);
        let subjects = [
            Subject {
                spec: &a,
                namespace: "shop",
                workload: "x",
                pods: &pa,
            },
            Subject {
                spec: &a,
                namespace: "shop",
                workload: "y",
                pods: &pa,
            },
            Subject {
                spec: &b,
                namespace: "shop",
                workload: "z",
                pods: &pb,
            },
            Subject {
                spec: &a,
                namespace: "other",
                workload: "x",
                pods: &pc,
            },
        ];
        let p = plan(&subjects, &Settings::default());
        let texts: Vec<&str> = p.queries.iter().map(|q| q.promql.as_str()).collect();
        // shared cpu + shared cpuLimit + z's own cpu + "errors" for shop + "errors" for other.
        assert_eq!(p.len(), 5, "{texts:#?}");
        assert_eq!(texts.iter().filter(|t| t.contains("errors")).count(), 2);
        assert_eq!(texts.iter().filter(|t| t.contains("my_cpu")).count(), 1);
        let _ = TargetRef {
            kind: WorkloadKind::Deployment,
            name: "w".into(),
        };
    }

    #[test]
    fn a_bad_template_blinds_only_its_subject() {
        let mut bad = spec(&[Pattern::RunawayProcess]);
        bad.queries = Some(QueryOverrides {
            cpu: Some("rate(x{{ nope }}[1m])".into()),
            ..QueryOverrides::default()
        });
        let good = spec(&[Pattern::RunawayProcess]);
        let p1 = pods("a", 2);
        let subjects = [
            Subject {
                spec: &bad,
                namespace: "a",
                workload: "x",
                pods: &p1,
            },
            Subject {
                spec: &good,
                namespace: "a",
                workload: "y",
                pods: &p1,
            },
        ];
        let p = plan(&subjects, &Settings::default());
        let answers: Answers = p
            .queries
            .iter()
            .map(|_| Ok(Arc::new(Indexed::new(vec![]))))
            .collect();
        let ctx = EvalContext {
            now: 1000.0,
            step: 15.0,
            stale_after: 45.0,
        };
        let e0 = evaluate(&p, &answers, 0, &subjects[0], &ctx);
        let e1 = evaluate(&p, &answers, 1, &subjects[1], &ctx);
        assert!(matches!(
            e0.fetch_error.as_deref(),
            Some(FetchError::Template { .. })
        ));
        assert!(e1.fetch_error.is_none());
    }
}
