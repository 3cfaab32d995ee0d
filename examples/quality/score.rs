//! Scoring: confusion matrix, per-class precision/recall/F1, pod identification, wrong actions,
//! detection delay; for homeostat and for the static-threshold baseline.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use crate::scenarios::{Class, Label, Variant};

type Key = (String, String);

/// One workload's prediction at one time.
#[derive(Clone, Debug)]
pub struct Pred {
    /// None: Inconclusive.
    pub class: Option<Class>,
    pub action: String,
    /// Sorted.
    pub pods: Vec<String>,
    pub message: String,
    /// 0..1 (homeostat only).
    pub confidence: f64,
}

/// A baseline rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    Restarts,
    Throttling,
    Cpu,
    Memory,
}

impl Rule {
    const ALL: [Rule; 4] = [Rule::Restarts, Rule::Throttling, Rule::Cpu, Rule::Memory];

    fn class(self) -> Class {
        match self {
            Rule::Restarts => Class::CrashLoop,
            Rule::Throttling => Class::ResourceContention,
            Rule::Cpu => Class::RunawayProcess,
            Rule::Memory => Class::MemoryLeak,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Rule::Throttling => "Scale",
            _ => "RestartPod",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Rule::Restarts => "restarts increased in 5m -> RestartPod",
            Rule::Throttling => "throttling > 25% -> Scale",
            Rule::Cpu => "cpu > 80% of limit -> RestartPod",
            Rule::Memory => "memory > 80% of limit -> RestartPod",
        }
    }
}

/// Which pods each baseline rule fired on.
#[derive(Clone, Debug, Default)]
pub struct BaselineHits {
    pub pods: BTreeMap<Rule, Vec<String>>,
}

impl BaselineHits {
    fn pred(&self, order: &[Rule]) -> Pred {
        for r in order {
            if let Some(p) = self.pods.get(r) {
                return Pred {
                    class: Some(r.class()),
                    action: r.action().into(),
                    pods: p.clone(),
                    message: r.describe().into(),
                    confidence: 1.0,
                };
            }
        }
        Pred {
            class: Some(Class::Healthy),
            action: "None".into(),
            pods: vec![],
            message: "no threshold crossed".into(),
            confidence: 1.0,
        }
    }
}

/// Both predictions for every workload at one time.
pub struct Observation {
    pub at: f64,
    pub homeostat: BTreeMap<Key, Pred>,
    pub baseline: BTreeMap<Key, BaselineHits>,
}

/// Everything measured on one seed.
pub struct SeedResult {
    pub seed: u64,
    pub eval: f64,
    pub labels: Vec<Label>,
    /// In time order; the last is at `eval`.
    pub observations: Vec<Observation>,
    pub eval_times: Vec<Duration>,
    pub queries: u32,
}

#[derive(Clone, Copy)]
enum Who<'a> {
    Homeostat,
    Baseline(&'a [Rule]),
}

fn pred_of(o: &Observation, key: &Key, who: Who<'_>) -> Option<Pred> {
    match who {
        Who::Homeostat => o.homeostat.get(key).cloned(),
        Who::Baseline(order) => o.baseline.get(key).map(|h| h.pred(order)),
    }
}

fn correct(l: &Label, p: &Pred) -> bool {
    p.class == Some(l.class) && (!l.class.pod_level() || p.pods == l.pods)
}

fn mutates(action: &str) -> bool {
    matches!(action, "RestartPod" | "Scale" | "RolloutRestart")
}

#[derive(Default)]
struct Scores {
    n: usize,
    confusion: BTreeMap<(Class, Option<Class>), usize>,
    missing: usize,
    pod_total: usize,
    pod_class_ok: usize,
    pod_exact: usize,
    wrong_action: usize,
    /// The labelled action taken (with the labelled pods, for pod-level faults).
    action_right: usize,
    /// An action was due and none was taken.
    action_missed: usize,
    /// A leak restarted (the right pods) before its OOM entered the horizon.
    action_early: usize,
    /// (confidence, correct) of every fault finding at the evaluation time.
    calibration: Vec<(f64, bool)>,
    /// Right action, some labelled pods missing, no other pod.
    partial_target: usize,
    /// Right action naming a pod the fault is not in.
    healthy_target: usize,
    delays: BTreeMap<Class, Vec<f64>>,
    never: BTreeMap<Class, usize>,
    healthy_total: usize,
    healthy_ever_acted: usize,
    variants: BTreeMap<Variant, [usize; 4]>,
    by_interval: BTreeMap<u64, (usize, usize)>,
    errors: Vec<String>,
}

impl Scores {
    fn count(&self, truth: Class, pred: Option<Class>) -> usize {
        self.confusion.get(&(truth, pred)).copied().unwrap_or(0)
    }

    fn support(&self, c: Class) -> usize {
        Class::ALL
            .iter()
            .map(|p| self.count(c, Some(*p)))
            .sum::<usize>()
            + self.count(c, None)
    }

    fn predicted(&self, c: Class) -> usize {
        Class::ALL.iter().map(|t| self.count(*t, Some(c))).sum()
    }

    fn prf(&self, c: Class) -> (f64, f64, f64) {
        let tp = self.count(c, Some(c)) as f64;
        let pred = self.predicted(c) as f64;
        let sup = self.support(c) as f64;
        let p = if pred > 0.0 { tp / pred } else { 0.0 };
        let r = if sup > 0.0 { tp / sup } else { 0.0 };
        let f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        (p, r, f)
    }

    fn macro_f1(&self) -> f64 {
        Class::ALL.iter().map(|c| self.prf(*c).2).sum::<f64>() / Class::ALL.len() as f64
    }

    fn accuracy(&self) -> f64 {
        Class::ALL
            .iter()
            .map(|c| self.count(*c, Some(*c)))
            .sum::<usize>() as f64
            / self.n.max(1) as f64
    }
}

fn score(results: &[SeedResult], who: Who<'_>, details: bool) -> Scores {
    let mut s = Scores::default();
    for r in results {
        let Some(last) = r.observations.last() else {
            continue;
        };
        for l in &r.labels {
            let key = (l.namespace.clone(), l.name.clone());
            s.n += 1;
            let p = pred_of(last, &key, who);
            let Some(p) = p else {
                s.missing += 1;
                *s.confusion.entry((l.class, None)).or_default() += 1;
                if details {
                    s.errors.push(format!(
                        "seed {} {}/{} [{} {}]: not discovered",
                        r.seed,
                        l.namespace,
                        l.name,
                        l.class.as_str(),
                        l.variant.as_str()
                    ));
                }
                continue;
            };
            *s.confusion.entry((l.class, p.class)).or_default() += 1;
            let iv = s.by_interval.entry(l.interval as u64).or_default();
            iv.0 += 1;
            if p.class == Some(l.class) {
                iv.1 += 1;
            }
            if l.class.pod_level() {
                s.pod_total += 1;
                if p.class == Some(l.class) {
                    s.pod_class_ok += 1;
                    if p.pods == l.pods {
                        s.pod_exact += 1;
                    }
                }
            }
            let pods_ok = !l.class.pod_level() || p.pods == l.pods;
            if p.action == l.action && (l.action == "None" || pods_ok) {
                s.action_right += 1;
            } else if p.action == "None" {
                s.action_missed += 1;
            }
            if p.class.is_some_and(|c| c != Class::Healthy) {
                s.calibration.push((p.confidence, correct(l, &p)));
            }
            let early = l.class == Class::MemoryLeak
                && l.action == "None"
                && p.action == "RestartPod"
                && pods_ok;
            if early {
                s.action_early += 1;
            } else if mutates(&p.action) || p.action == "Escalate" {
                if p.action != l.action {
                    s.wrong_action += 1;
                    if details && correct(l, &p) {
                        s.errors.push(format!(
                            "seed {} {}/{} [{} {}, {} replicas, {}s scrapes, pods {:?}]: right class, wrong action: {} (labelled {}): {}",
                            r.seed,
                            l.namespace,
                            l.name,
                            l.class.as_str(),
                            l.variant.as_str(),
                            l.replicas,
                            l.interval,
                            l.pods,
                            p.action,
                            l.action,
                            p.message
                        ));
                    }
                } else if l.class.pod_level() && p.pods != l.pods {
                    if p.pods.iter().all(|x| l.pods.contains(x)) {
                        s.partial_target += 1;
                    } else {
                        s.healthy_target += 1;
                    }
                }
            }
            if l.class == Class::Healthy {
                let v = s.variants.entry(l.variant).or_default();
                v[0] += 1;
                match p.class {
                    Some(Class::Healthy) => v[1] += 1,
                    None => v[2] += 1,
                    Some(_) => v[3] += 1,
                }
            }
            if details && !correct(l, &p) {
                s.errors.push(format!(
                    "seed {} {}/{} [{} {}, {} replicas, {}s scrapes, pods {:?}]: got {} {} {:?}: {}",
                    r.seed,
                    l.namespace,
                    l.name,
                    l.class.as_str(),
                    l.variant.as_str(),
                    l.replicas,
                    l.interval,
                    l.pods,
                    p.class.map_or("Inconclusive", Class::as_str),
                    p.action,
                    p.pods,
                    p.message
                ));
            }
        }
        // The sweep: detection delay of faults, actions on healthy workloads at any time.
        for l in &r.labels {
            let key = (l.namespace.clone(), l.name.clone());
            if l.class == Class::Healthy {
                s.healthy_total += 1;
                let acted = r.observations.iter().find_map(|o| {
                    pred_of(o, &key, who)
                        .filter(|p| mutates(&p.action))
                        .map(|p| (o.at, p))
                });
                if let Some((at, p)) = acted {
                    s.healthy_ever_acted += 1;
                    if details {
                        s.errors.push(format!(
                            "seed {} {}/{} [Healthy {}]: acted on {:.0}s before the evaluation time: {} {:?}: {}",
                            r.seed,
                            l.namespace,
                            l.name,
                            l.variant.as_str(),
                            r.eval - at,
                            p.action,
                            p.pods,
                            p.message
                        ));
                    }
                }
                continue;
            }
            let Some(onset) = l.onset else { continue };
            // Delays only for faults that began within the sweep.
            if r.observations.first().is_none_or(|o| onset < o.at - 1e-6) {
                continue;
            }
            let first = r
                .observations
                .iter()
                .find(|o| o.at >= onset && pred_of(o, &key, who).is_some_and(|p| correct(l, &p)));
            match first {
                Some(o) => s.delays.entry(l.class).or_default().push(o.at - onset),
                None => *s.never.entry(l.class).or_default() += 1,
            }
        }
    }
    s
}

/// The baseline rule order with the best macro-F1 on `results` (ties: the first found).
pub fn best_baseline_order(results: &[SeedResult]) -> Vec<Rule> {
    let mut best: Option<(f64, Vec<Rule>)> = None;
    for perm in permutations(&Rule::ALL) {
        let f = score(results, Who::Baseline(&perm), false).macro_f1();
        if best.as_ref().is_none_or(|(b, _)| f > *b + 1e-12) {
            best = Some((f, perm));
        }
    }
    best.map_or_else(|| Rule::ALL.to_vec(), |b| b.1)
}

fn permutations(items: &[Rule]) -> Vec<Vec<Rule>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = vec![];
    for (i, first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, *first);
            out.push(p);
        }
    }
    out
}

pub fn seeds_label(seeds: &[u64]) -> String {
    let contiguous = seeds.windows(2).all(|w| w[1] == w[0] + 1);
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) if contiguous && a != b => format!("{a}-{b}"),
        _ => seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    // Nearest rank.
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

fn short(c: Option<Class>) -> &'static str {
    match c {
        Some(Class::RunawayProcess) => "Runaway",
        Some(Class::ResourceContention) => "Contention",
        Some(Class::MemoryLeak) => "Leak",
        Some(Class::CrashLoop) => "CrashLoop",
        Some(Class::Healthy) => "Healthy",
        None => "Inconcl.",
    }
}

fn section(out: &mut String, title: &str, s: &Scores, with_inconclusive: bool) {
    let _ = writeln!(out, "\n  {title}");
    let _ = writeln!(
        out,
        "    {:<12} {:>9} {:>7} {:>6} {:>8}",
        "class", "precision", "recall", "F1", "support"
    );
    for c in Class::ALL {
        let (p, r, f) = s.prf(c);
        let _ = writeln!(
            out,
            "    {:<12} {:>9.3} {:>7.3} {:>6.3} {:>8}",
            short(Some(c)),
            p,
            r,
            f,
            s.support(c)
        );
    }
    let _ = writeln!(
        out,
        "    macro-F1 {:.3}   accuracy {:.3}",
        s.macro_f1(),
        s.accuracy()
    );
    let mut cols: Vec<Option<Class>> = Class::ALL.iter().map(|c| Some(*c)).collect();
    if with_inconclusive {
        cols.push(None);
    }
    let _ = write!(
        out,
        "    confusion (rows: truth, columns: finding)\n    {:<12}",
        ""
    );
    for c in &cols {
        let _ = write!(out, " {:>10}", short(*c));
    }
    out.push('\n');
    for t in Class::ALL {
        let _ = write!(out, "    {:<12}", short(Some(t)));
        for c in &cols {
            let _ = write!(out, " {:>10}", s.count(t, *c));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "    pod identification (runaway + leak): {}/{} exact ({:.1}%); {}/{} of those classified correctly",
        s.pod_exact,
        s.pod_total,
        100.0 * s.pod_exact as f64 / s.pod_total.max(1) as f64,
        s.pod_exact,
        s.pod_class_ok
    );
    let _ = writeln!(
        out,
        "    wrong-action rate: {}/{} = {:.2}% (action taken, not None, differs from the labelled one)",
        s.wrong_action,
        s.n,
        100.0 * s.wrong_action as f64 / s.n.max(1) as f64,
    );
    let _ = writeln!(
        out,
        "    action (scored apart from the class): right {}/{} ({:.1}%), due but not taken {}, \
         leak restarted before its OOM entered the horizon {}",
        s.action_right,
        s.n,
        100.0 * s.action_right as f64 / s.n.max(1) as f64,
        s.action_missed,
        s.action_early
    );
    let _ = writeln!(
        out,
        "    right action, pods not exactly the labelled ones: {} naming only faulty pods (some missed), \
         {} naming a healthy pod",
        s.partial_target, s.healthy_target
    );
    let _ = writeln!(
        out,
        "    healthy workloads acted on (RestartPod/Scale) at any sweep time: {}/{}",
        s.healthy_ever_acted, s.healthy_total
    );
    if with_inconclusive && !s.calibration.is_empty() {
        let _ = writeln!(
            out,
            "    reliability of fault findings (confidence bin: n, mean confidence, share correct):"
        );
        let edges = [0.0, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001];
        let mut ece = 0.0;
        for w in edges.windows(2) {
            let bin: Vec<&(f64, bool)> = s
                .calibration
                .iter()
                .filter(|(c, _)| *c >= w[0] && *c < w[1])
                .collect();
            if bin.is_empty() {
                continue;
            }
            let n = bin.len() as f64;
            let mean = bin.iter().map(|x| x.0).sum::<f64>() / n;
            let acc = bin.iter().filter(|x| x.1).count() as f64 / n;
            ece += n / s.calibration.len() as f64 * (mean - acc).abs();
            let _ = writeln!(
                out,
                "      [{:.2}, {:.2}): {:>4}  {:.3}  {:.3}",
                w[0],
                w[1].min(1.0),
                bin.len(),
                mean,
                acc
            );
        }
        let _ = writeln!(out, "      expected calibration error {ece:.3}");
    }
    let _ = writeln!(
        out,
        "    detection delay from onset to first correct finding (s, sweep every 30 s):"
    );
    let mut all = vec![];
    for c in &Class::ALL[..4] {
        let d = s.delays.get(c).cloned().unwrap_or_default();
        all.extend(d.iter().copied());
        let never = s.never.get(c).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "      {:<12} median {:>6} p90 {:>6}  detected {}/{}",
            short(Some(*c)),
            quantile(&d, 0.5).map_or("-".into(), |x| format!("{x:.0}")),
            quantile(&d, 0.9).map_or("-".into(), |x| format!("{x:.0}")),
            d.len(),
            d.len() + never
        );
    }
    let never: usize = s.never.values().sum();
    let _ = writeln!(
        out,
        "      {:<12} median {:>6} p90 {:>6}  detected {}/{}",
        "all faults",
        quantile(&all, 0.5).map_or("-".into(), |x| format!("{x:.0}")),
        quantile(&all, 0.9).map_or("-".into(), |x| format!("{x:.0}")),
        all.len(),
        all.len() + never
    );
    let _ = writeln!(
        out,
        "    healthy by kind (n: healthy / inconclusive / a fault):"
    );
    for (v, [n, h, i, f]) in &s.variants {
        let _ = writeln!(
            out,
            "      {:<22} {n:>3}: {h:>3} / {i:>3} / {f:>3}",
            v.as_str()
        );
    }
    let _ = write!(out, "    correct class by scrape interval:");
    for (iv, (n, ok)) in &s.by_interval {
        let _ = write!(out, "  {iv}s {ok}/{n}");
    }
    out.push('\n');
    if s.missing > 0 {
        let _ = writeln!(out, "    not discovered: {}", s.missing);
    }
}

/// The text report of one set of seeds.
pub fn report(
    name: &str,
    seeds: &[u64],
    results: &[SeedResult],
    order: &[Rule],
    verbose: bool,
) -> String {
    let mut out = String::new();
    let workloads: usize = results.iter().map(|r| r.labels.len()).sum();
    let pods: usize = results
        .iter()
        .flat_map(|r| r.labels.iter().map(|l| l.replicas))
        .sum();
    let mut times: Vec<f64> = results
        .iter()
        .flat_map(|r| r.eval_times.iter().map(Duration::as_secs_f64))
        .collect();
    times.sort_by(f64::total_cmp);
    let _ = writeln!(
        out,
        "\n== {name} seeds {} : {workloads} workloads (~{pods} pods), {} evaluations per seed ==",
        seeds_label(seeds),
        results.first().map_or(0, |r| r.observations.len())
    );
    let _ = writeln!(
        out,
        "  cost: {} queries per diagnose of every workload of a seed (~{} pods); wall time median {:.0} ms, p90 {:.0} ms",
        results.first().map_or(0, |r| r.queries),
        pods / results.len().max(1),
        quantile(&times, 0.5).unwrap_or(0.0) * 1000.0,
        quantile(&times, 0.9).unwrap_or(0.0) * 1000.0
    );
    let h = score(results, Who::Homeostat, verbose);
    section(&mut out, "homeostat (diagnose, default patterns)", &h, true);
    let b = score(results, Who::Baseline(order), verbose);
    section(&mut out, "baseline (static thresholds)", &b, false);
    if verbose {
        let _ = writeln!(out, "\n  homeostat mistakes:");
        for e in &h.errors {
            let _ = writeln!(out, "    {e}");
        }
        let _ = writeln!(out, "\n  baseline mistakes:");
        for e in b.errors.iter().take(40) {
            let _ = writeln!(out, "    {e}");
        }
        if b.errors.len() > 40 {
            let _ = writeln!(out, "    ... {} more", b.errors.len() - 40);
        }
    }
    out
}
