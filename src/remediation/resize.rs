//! `ResizePod`: raise the implicated pods' CPU or memory in place through `pods/resize`
//! (KEP-1287). Planned pure (bounds, QoS class kept), executed idempotently: the attempt records
//! every container's resources before and after, so an execution that finds the pod already at
//! the planned values does not step again, only reads how the kubelet is getting on.
//!
//! Quantities are parsed here by hand: k8s-openapi carries them as strings and no well-kept crate
//! in the dependency tree parses them; only the CPU and memory forms the apiserver emits matter.

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::{Node, Pod},
    apimachinery::pkg::api::resource::Quantity,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use super::{actions::LivePod, lifecycle::Outcome};
use crate::v1alpha1::{
    ContainerResize, PodResize, ResizeChange, ResizeSpec, ResourceStep, Resources,
};

/// A live pod's containers and their resources, as the planner needs them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerAlloc {
    /// The container's name.
    pub name: String,
    /// Its spec resources.
    pub resources: Resources,
}

/// The containers of a pod's spec.
pub fn containers_of(p: &Pod) -> Vec<ContainerAlloc> {
    p.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| ContainerAlloc {
                    name: c.name.clone(),
                    resources: resources_of(c.resources.as_ref()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A container's spec resources as a ResizePod plans from them.
pub fn resources_of(r: Option<&k8s_openapi::api::core::v1::ResourceRequirements>) -> Resources {
    let get = |m: Option<&std::collections::BTreeMap<String, Quantity>>, k: &str| {
        m.and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    let req = r.and_then(|r| r.requests.as_ref());
    let lim = r.and_then(|r| r.limits.as_ref());
    Resources {
        cpu_request: get(req, "cpu"),
        cpu_limit: get(lim, "cpu"),
        memory_request: get(req, "memory"),
        memory_limit: get(lim, "memory"),
    }
}

/// Parses a Kubernetes quantity into its value (cores for CPU, bytes for memory).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// CPU cores as a quantity, rounded up to the millicore.
pub fn cpu_quantity(cores: f64) -> String {
    let m = (cores * 1000.0 - 1e-6).ceil().max(1.0) as u64;
    if m.is_multiple_of(1000) {
        format!("{}", m / 1000)
    } else {
        format!("{m}m")
    }
}

/// Bytes as a quantity, rounded up to the byte (in Mi or Ki when exact).
pub fn memory_quantity(bytes: f64) -> String {
    let b = (bytes - 1e-6).ceil().max(1.0) as u64;
    const MI: u64 = 1 << 20;
    if b.is_multiple_of(MI) {
        format!("{}Mi", b / MI)
    } else if b.is_multiple_of(1024) {
        format!("{}Ki", b / 1024)
    } else {
        b.to_string()
    }
}

/// The QoS class of a pod from its containers (the apiserver's rule, for CPU and memory).
pub fn qos(containers: &[Resources]) -> &'static str {
    let any = containers.iter().any(|r| {
        r.cpu_request.is_some()
            || r.cpu_limit.is_some()
            || r.memory_request.is_some()
            || r.memory_limit.is_some()
    });
    if !any {
        return "BestEffort";
    }
    let same = |req: &Option<String>, lim: &Option<String>| match (req, lim) {
        (_, None) => false,
        // An unset request defaults to the limit.
        (None, Some(_)) => true,
        (Some(a), Some(b)) => parse_quantity(a) == parse_quantity(b),
    };
    if containers
        .iter()
        .all(|r| same(&r.cpu_request, &r.cpu_limit) && same(&r.memory_request, &r.memory_limit))
    {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Why a resize cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoResize {
    /// Every resource is at its maximum (or has nothing to raise): the fallback's turn.
    AtMaximum(String),
    /// The bounds cannot be read or the pods are gone.
    Invalid(String),
}

/// A new (request, limit) pair; `None` in either keeps that one as it is.
type Pair = (Option<String>, Option<String>);

/// One resource's request and limit, stepped: `None` if unchanged (unset, or at the maximum).
fn step_pair(
    req: &Option<String>,
    lim: &Option<String>,
    s: &ResourceStep,
    fmt: fn(f64) -> String,
) -> Result<Option<Pair>, String> {
    let max = parse_quantity(&s.max).ok_or_else(|| format!("max {:?} is not a quantity", s.max))?;
    let (r, l) = (
        req.as_deref().and_then(parse_quantity),
        lim.as_deref().and_then(parse_quantity),
    );
    // The limit bounds throttling; a resource without a limit grows its request.
    let Some(primary) = l.or(r) else {
        return Ok(None);
    };
    let grown = match (s.factor, &s.step) {
        (Some(f), _) => primary * f,
        (None, Some(q)) => {
            primary + parse_quantity(q).ok_or_else(|| format!("step {q:?} is not a quantity"))?
        }
        (None, None) => return Err("neither factor nor step is set".into()),
    };
    let new = grown.min(max);
    if new <= primary {
        return Ok(None);
    }
    let new_q = fmt(new);
    let Some(l) = l else {
        return Ok(Some((Some(new_q), None)));
    };
    let new_l = parse_quantity(&new_q).unwrap_or(new);
    let req = match r {
        // Guaranteed (or an unset request, which defaults to the limit): move together.
        None => None,
        Some(r) if r == l => Some(new_q.clone()),
        // Burstable: the request grows in proportion, staying below the limit.
        Some(r) => Some(fmt((r * new_l / l).min(new_l))),
    };
    Ok(Some((req, Some(new_q))))
}

/// The new resources of one container, or `None` if nothing of it grows.
fn step_container(from: &Resources, spec: &ResizeSpec) -> Result<Option<Resources>, String> {
    let mut to = from.clone();
    let mut changed = false;
    if let Some(s) = &spec.cpu
        && let Some((r, l)) = step_pair(&from.cpu_request, &from.cpu_limit, s, cpu_quantity)
            .map_err(|e| format!("resize.cpu: {e}"))?
    {
        to.cpu_request = r.or(to.cpu_request);
        to.cpu_limit = l.or(to.cpu_limit);
        changed = true;
    }
    if let Some(s) = &spec.memory
        && let Some((r, l)) =
            step_pair(&from.memory_request, &from.memory_limit, s, memory_quantity)
                .map_err(|e| format!("resize.memory: {e}"))?
    {
        to.memory_request = r.or(to.memory_request);
        to.memory_limit = l.or(to.memory_limit);
        changed = true;
    }
    Ok(changed.then_some(to))
}

/// Plans the resize of `targets` (pure): every container one step up within the maxima, the
/// QoS class of each pod unchanged.
pub fn plan(spec: &ResizeSpec, targets: &[&LivePod]) -> Result<ResizeChange, NoResize> {
    let mut pods = vec![];
    let mut at_max = vec![];
    for p in targets {
        let mut containers = vec![];
        for c in &p.containers {
            match step_container(&c.resources, spec) {
                Ok(Some(to)) => containers.push(ContainerResize {
                    name: c.name.clone(),
                    from: c.resources.clone(),
                    to,
                }),
                Ok(None) => {}
                Err(e) => return Err(NoResize::Invalid(e)),
            }
        }
        if containers.is_empty() {
            at_max.push(p.name.clone());
            continue;
        }
        let before: Vec<Resources> = p.containers.iter().map(|c| c.resources.clone()).collect();
        let after: Vec<Resources> = p
            .containers
            .iter()
            .map(|c| {
                containers
                    .iter()
                    .find(|x| x.name == c.name)
                    .map_or_else(|| c.resources.clone(), |x| x.to.clone())
            })
            .collect();
        let (q0, q1) = (qos(&before), qos(&after));
        if q0 != q1 {
            return Err(NoResize::Invalid(format!(
                "resizing {} would change its QoS class from {q0} to {q1}",
                p.name
            )));
        }
        pods.push(PodResize {
            pod: p.name.clone(),
            uid: p.uid.clone(),
            containers,
        });
    }
    if pods.is_empty() {
        return Err(NoResize::AtMaximum(format!(
            "{} already at the resize maximum ({}) or with nothing to raise",
            at_max.join(", "),
            bounds(spec)
        )));
    }
    Ok(ResizeChange {
        pods,
        deferred_wait: spec.deferred_wait,
    })
}

fn bounds(spec: &ResizeSpec) -> String {
    let mut b = vec![];
    if let Some(c) = &spec.cpu {
        b.push(format!("cpu {}", c.max));
    }
    if let Some(m) = &spec.memory {
        b.push(format!("memory {}", m.max));
    }
    b.join(", ")
}

/// One line per pod: `web-1: app cpu 200m→300m`.
pub fn describe(change: &ResizeChange) -> String {
    change
        .pods
        .iter()
        .map(|p| {
            let cs: Vec<String> = p
                .containers
                .iter()
                .map(|c| format!("{} {}", c.name, diff(&c.from, &c.to)))
                .collect();
            format!("{}: {}", p.pod, cs.join("; "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn diff(a: &Resources, b: &Resources) -> String {
    let mut out = vec![];
    let f = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    for (what, x, y) in [
        ("cpu request", &a.cpu_request, &b.cpu_request),
        ("cpu limit", &a.cpu_limit, &b.cpu_limit),
        ("memory request", &a.memory_request, &b.memory_request),
        ("memory limit", &a.memory_limit, &b.memory_limit),
    ] {
        if x != y {
            out.push(format!("{what} {}→{}", f(x), f(y)));
        }
    }
    out.join(", ")
}

/// How the kubelet is getting on with a pod's resize, from the pod's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// The status shows the new resources and no resize condition.
    Actuated,
    /// Not there yet (the kubelet has not seen it, or `PodResizeInProgress`).
    InProgress(String),
    /// `PodResizePending` reason `Deferred`: may fit later.
    Deferred(String),
    /// `PodResizePending` reason `Infeasible`, or `PodResizeInProgress` reason `Error`.
    Failed(String),
}

fn same_quantity(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(a), Some(b)) => parse_quantity(a) == parse_quantity(b),
        (Some(_), None) => false,
    }
}

/// Whether `have` matches every value `want` sets.
fn matches(want: &Resources, have: &Resources) -> bool {
    same_quantity(&want.cpu_request, &have.cpu_request)
        && same_quantity(&want.cpu_limit, &have.cpu_limit)
        && same_quantity(&want.memory_request, &have.memory_request)
        && same_quantity(&want.memory_limit, &have.memory_limit)
}

/// Whether the pod's spec already asks for the planned resources.
pub fn spec_at(p: &Pod, r: &PodResize, to: bool) -> bool {
    let cs = containers_of(p);
    r.containers.iter().all(|c| {
        cs.iter()
            .any(|x| x.name == c.name && matches(if to { &c.to } else { &c.from }, &x.resources))
    })
}

/// The resize state of a pod whose spec asks for `r`'s new values (pure).
pub fn state(p: &Pod, r: &PodResize) -> State {
    let status = p.status.as_ref();
    for c in status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if c.status != "True" {
            continue;
        }
        let why = format!(
            "{} {}: {}",
            c.type_,
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or("")
        );
        match (c.type_.as_str(), c.reason.as_deref()) {
            ("PodResizePending", Some("Infeasible")) => return State::Failed(why),
            ("PodResizePending", _) => return State::Deferred(why),
            ("PodResizeInProgress", Some("Error")) => return State::Failed(why),
            ("PodResizeInProgress", _) => return State::InProgress(why),
            _ => {}
        }
    }
    let statuses = status
        .and_then(|s| s.container_statuses.as_ref())
        .cloned()
        .unwrap_or_default();
    let actuated = r.containers.iter().all(|c| {
        statuses
            .iter()
            .any(|s| s.name == c.name && matches(&c.to, &resources_of(s.resources.as_ref())))
    });
    if actuated {
        State::Actuated
    } else {
        State::InProgress("the kubelet has not reported the new resources yet".into())
    }
}

/// The node-fit check: the pod's new requests against the node's allocatable minus what the
/// node's other pods request (pure). `others` is `None` when the pods could not be listed.
pub fn fits(node: &Node, others: Option<&[Pod]>, pod: &Pod, r: &PodResize) -> Result<(), String> {
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |k: &str| {
        alloc
            .and_then(|a| a.get(k))
            .and_then(|q| parse_quantity(&q.0))
    };
    let mine = |f: fn(&Resources) -> &Option<String>| -> f64 {
        containers_of(pod)
            .iter()
            .map(|c| {
                let planned = r.containers.iter().find(|x| x.name == c.name);
                let res = planned.map_or(&c.resources, |x| &x.to);
                f(res).as_deref().and_then(parse_quantity).unwrap_or(0.0)
            })
            .sum()
    };
    let used = |f: fn(&Resources) -> &Option<String>| -> f64 {
        others
            .unwrap_or_default()
            .iter()
            .filter(|o| o.uid() != pod.uid())
            .filter(|o| {
                !matches!(
                    o.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .flat_map(containers_of)
            .map(|c| {
                f(&c.resources)
                    .as_deref()
                    .and_then(parse_quantity)
                    .unwrap_or(0.0)
            })
            .sum()
    };
    let node_name = node.name_any();
    for (what, alloc, want, used, fmt) in [
        (
            "cpu",
            get("cpu"),
            mine(|r| &r.cpu_request),
            used(|r| &r.cpu_request),
            cpu_quantity as fn(f64) -> String,
        ),
        (
            "memory",
            get("memory"),
            mine(|r| &r.memory_request),
            used(|r| &r.memory_request),
            memory_quantity,
        ),
    ] {
        let Some(alloc) = alloc else { continue };
        if want + used > alloc {
            return Err(format!(
                "{} does not fit on node {node_name}: it would request {what} {}, the node's other \
                 pods request {} of {} allocatable",
                pod.name_any(),
                fmt(want),
                fmt(used),
                fmt(alloc)
            ));
        }
    }
    Ok(())
}

/// How often a fresh resize is re-read while the kubelet actuates it, and for how long, before
/// the sweep moves on (later sweeps read it again).
const POLL: std::time::Duration = std::time::Duration::from_millis(250);
const POLL_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Executes a resize, idempotently: pods already asking for the planned values are not patched
/// again; their status says whether it took. `started` is when the attempt was decided.
pub async fn execute(
    client: &Client,
    ns: &str,
    change: &ResizeChange,
    started: Timestamp,
) -> Outcome {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let mut notes = vec![];
    let mut patched = false;
    for r in &change.pods {
        let name = &r.pod;
        let pod = match api.get_opt(name).await {
            Ok(p) => p,
            Err(e) => return Outcome::Blocked(format!("reading pod {ns}/{name}: {e}")),
        };
        let Some(pod) = pod.filter(|p| {
            p.metadata.deletion_timestamp.is_none() && p.uid().as_deref() == Some(r.uid.as_str())
        }) else {
            notes.push(format!(
                "{name} was replaced (its replacement gets the template's resources)"
            ));
            continue;
        };
        if spec_at(&pod, r, true) {
            continue;
        }
        if !spec_at(&pod, r, false) {
            return Outcome::Fallback(format!(
                "the resources of {ns}/{name} changed since the resize was planned (another \
                 writer); not overriding them"
            ));
        }
        if let Err(why) = node_fit(client, &pod, r).await {
            return Outcome::Fallback(why);
        }
        let containers: Vec<serde_json::Value> = r
            .containers
            .iter()
            .map(|c| json!({"name": c.name, "resources": patch_resources(&c.to)}))
            .collect();
        let patch = Patch::Strategic(json!({"spec": {"containers": containers}}));
        let pp = PatchParams {
            field_manager: Some(super::actions::MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch_subresource("resize", name, &pp, &patch).await {
            Ok(_) => patched = true,
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 429 => {
                return Outcome::Blocked(format!("resizing {ns}/{name}: {}", s.message));
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                notes.push(format!("{name} is gone"));
            }
            Err(e) => {
                return Outcome::Fallback(format!("resizing {ns}/{name} was refused: {e}"));
            }
        }
    }
    // Only the call that patched waits a little (the kubelet usually actuates within a second);
    // a resumed one reads the state once.
    let wait = if patched {
        POLL_FOR
    } else {
        std::time::Duration::ZERO
    };
    let deadline = std::time::Instant::now() + wait;
    loop {
        match progress(&api, ns, change, started).await {
            Ok(Some(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            Ok(Some(waiting)) => return Outcome::Blocked(waiting),
            Ok(None) => {
                let secs = Timestamp::now().duration_since(started).as_secs_f64();
                let mut msg = format!(
                    "resized in place: {} (actuated by the kubelet {secs:.1}s after the decision)",
                    describe(change)
                );
                if !notes.is_empty() {
                    msg.push_str(&format!("; {}", notes.join("; ")));
                }
                return Outcome::Applied(msg);
            }
            Err(o) => return o,
        }
    }
}

/// `Ok(None)` once every live planned pod shows its new resources; `Ok(Some(why))` while one is
/// still on its way; `Err` for the fallback.
async fn progress(
    api: &Api<Pod>,
    ns: &str,
    change: &ResizeChange,
    started: Timestamp,
) -> Result<Option<String>, Outcome> {
    let mut waiting = vec![];
    for r in &change.pods {
        let pod = match api.get_opt(&r.pod).await {
            Ok(p) => p,
            Err(e) => {
                return Err(Outcome::Blocked(format!("reading pod {ns}/{}: {e}", r.pod)));
            }
        };
        let Some(pod) = pod.filter(|p| p.uid().as_deref() == Some(r.uid.as_str())) else {
            continue;
        };
        match state(&pod, r) {
            State::Actuated => {}
            State::InProgress(m) => waiting.push(format!("{}: {m}", r.pod)),
            State::Deferred(m) => {
                let waited = Timestamp::now().duration_since(started);
                let limit = jiff::SignedDuration::try_from(change.deferred_wait.get())
                    .unwrap_or(jiff::SignedDuration::MAX);
                if waited >= limit {
                    return Err(Outcome::Fallback(format!(
                        "the kubelet deferred the resize of {ns}/{} for longer than \
                         resize.deferredWait ({}): {m}",
                        r.pod, change.deferred_wait
                    )));
                }
                waiting.push(format!("{}: {m}", r.pod));
            }
            State::Failed(m) => {
                return Err(Outcome::Fallback(format!(
                    "the kubelet cannot resize {ns}/{}: {m}",
                    r.pod
                )));
            }
        }
    }
    Ok((!waiting.is_empty()).then(|| {
        format!(
            "resize requested, waiting for the kubelet: {}",
            waiting.join("; ")
        )
    }))
}

fn patch_resources(r: &Resources) -> serde_json::Value {
    let mut req = serde_json::Map::new();
    let mut lim = serde_json::Map::new();
    if let Some(v) = &r.cpu_request {
        req.insert("cpu".into(), json!(v));
    }
    if let Some(v) = &r.memory_request {
        req.insert("memory".into(), json!(v));
    }
    if let Some(v) = &r.cpu_limit {
        lim.insert("cpu".into(), json!(v));
    }
    if let Some(v) = &r.memory_limit {
        lim.insert("memory".into(), json!(v));
    }
    json!({"requests": req, "limits": lim})
}

/// The node-fit check through the apiserver: a GET of the pod's node and a list of the pods on
/// it (all namespaces). Without permission to read them the check is skipped (or made against the
/// node's allocatable only) and the kubelet's answer decides; that is said in the log.
async fn node_fit(client: &Client, pod: &Pod, r: &PodResize) -> Result<(), String> {
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return Ok(());
    };
    let node = match Api::<Node>::all(client.clone()).get(&node_name).await {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(pod = %pod.name_any(), node = %node_name, error = %e, "node-fit check skipped: cannot read the node; the kubelet decides (Infeasible or Deferred falls back)");
            return Ok(());
        }
    };
    let lp = ListParams::default().fields(&format!("spec.nodeName={node_name}"));
    let others = match Api::<Pod>::all(client.clone()).list(&lp).await {
        Ok(l) => Some(l.items),
        Err(e) => {
            tracing::info!(pod = %pod.name_any(), node = %node_name, error = %e, "node-fit check against the node's allocatable only: cannot list its pods");
            None
        }
    };
    fits(&node, others.as_deref(), pod, r)
}

/// What a Remediation says once a resize took effect: its pods run with more than their
/// template asks (pure; `None` until a ResizePod attempt was applied).
pub fn drift_of(s: &crate::v1alpha1::RemediationStatus) -> Option<String> {
    let a = s.attempts.iter().rev().find(|a| {
        a.action == crate::v1alpha1::ActionType::ResizePod
            && a.result == crate::v1alpha1::AttemptResult::Applied
    })?;
    let change = a.resize.as_ref()?;
    Some(format!(
        "pods run with more than their workload's template asks ({}); replacement pods get the \
         template's values (the template is not changed)",
        describe(change)
    ))
}

/// For the policy status: the live pods a past ResizePod left running with more than their
/// template asks, from the newest incident that resized pods still alive (matched by UID).
pub fn template_drift(
    history: &[crate::v1alpha1::Remediation],
    pods: &[LivePod],
) -> Option<String> {
    history.iter().rev().find_map(|r| {
        let s = r.status.as_ref()?;
        s.template_drift.as_ref()?;
        let resized: Vec<&str> = s
            .attempts
            .iter()
            .filter(|a| a.result == crate::v1alpha1::AttemptResult::Applied)
            .filter_map(|a| a.resize.as_ref())
            .flat_map(|c| c.pods.iter())
            .filter(|p| pods.iter().any(|l| l.uid == p.uid))
            .map(|p| p.pod.as_str())
            .collect();
        (!resized.is_empty()).then(|| {
            format!(
                "{} run with more than the template asks (resized in place by {}); replacement \
                 pods get the template's values",
                resized.join(", "),
                r.metadata.name.as_deref().unwrap_or("an incident")
            )
        })
    })
}

#[cfg(test)]
mod tests;
