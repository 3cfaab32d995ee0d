//! Fencing and sharding between operator replicas, end to end: a leader frozen past its Lease
//! acts zero times after the standby took over; a rollout with two contenders acts once; shards of
//! the fleet are split over two replicas and taken over by the survivor when one is killed.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Instant;

use homeostat::v1alpha1::{AttemptResult, Phase};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Event};
use kube::{Api, api::ListParams};
use support::*;

const LEASE_DURATION: &str = "6s";

fn lease_namespace() -> String {
    std::env::var("HOMEOSTAT_E2E_RELEASE_NAMESPACE").unwrap_or_else(|_| "homeostat-system".into())
}

fn election_args<'a>(lease: &'a str, ns: &'a str) -> Vec<&'a str> {
    vec![
        "--leader-elect",
        "--lease-namespace",
        ns,
        "--lease-name",
        lease,
        "--lease-duration",
        LEASE_DURATION,
    ]
}

async fn holder(env: &Env, lease: &str) -> Option<String> {
    Api::<Lease>::namespaced(env.client.clone(), &lease_namespace())
        .get_opt(lease)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// The process state letter of `pid` (`T` when stopped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// `ActionApplied`/`ActionFailed`/`ActionBlocked` Events on policies in `ns` (each action has a
/// twin on its target), with their reporting instance.
async fn action_events(env: &Env, ns: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("RemediationPolicy"))
        .filter_map(|e| {
            let reason = e.reason.clone()?;
            reason.starts_with("Action").then(|| {
                (
                    reason,
                    e.reporting_instance
                        .clone()
                        .or_else(|| e.source.as_ref().and_then(|s| s.host.clone()))
                        .unwrap_or_default(),
                    e.count.unwrap_or(1).max(1) as usize,
                )
            })
        })
        // An Event repeated with the same note is one object with a count.
        .flat_map(|(r, who, n)| std::iter::repeat_n((r, who), n))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_frozen_past_its_lease_acts_zero_times_after_the_standby_took_over() {
    let _case = support::matrix::Case::asserted(
        "leader frozen (SIGSTOP) at its action, past its lease, then resumed",
        "the standby takes over and acts once; the woken leader acts zero times",
        "standby took the Lease and finished the incident; woken leader refused at its fence check; 1 attempt, 1 pod evicted",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "freeze").await;
    let lease = format!("fence-{}", ns.name);
    let lns = lease_namespace();
    let args = election_args(&lease, &lns);
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let before = running_pods(&env, &ns.name, "web").await;
    // a freezes (SIGSTOP) right before the fence check of its first action, as a stalled VM or a
    // long pause would, after its attempt is saved.
    let mut a = Operator::start(
        &env,
        &ns.name,
        "a",
        &args,
        &[("HOMEOSTAT_FAILPOINT", "before-fence-check")],
    )
    .await;
    let a_id = format!("{}-a", ns.name);
    let b_id = format!("{}-b", ns.name);
    wait_for("a holds the Lease", 60, || async {
        (holder(&env, &lease).await.as_deref() == Some(a_id.as_str())).then_some(())
    })
    .await;
    let mut b = Operator::start(&env, &ns.name, "b", &args, &[]).await;
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .expect("policy accepted");
    let pid = a.child.id().expect("a runs");
    wait_for("a frozen at its fence check", 240, || async {
        (proc_state(pid) == Some('T')).then_some(())
    })
    .await;
    let frozen = Instant::now();
    let mid = remediations(&env, &ns.name).await;
    assert_eq!(mid.len(), 1, "one incident opened by a");
    let s = mid[0].status.clone().unwrap();
    assert_eq!(
        s.attempts.last().map(|a| a.result),
        Some(AttemptResult::Pending)
    );
    wait_for("b takes the Lease over", 60, || async {
        (holder(&env, &lease).await.as_deref() == Some(b_id.as_str())).then_some(())
    })
    .await;
    let takeover = frozen.elapsed().as_secs_f64();
    // b resumes the saved attempt and finishes the incident.
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    // a wakes up with its old belief that it leads, right before acting.
    signal(pid, "-CONT");
    // On waking a goes on from its failpoint: it either refuses at its fence check or makes the
    // call (and logs its outcome). Wait for whichever comes, then judge it.
    let acted = [
        "action applied",
        "action blocked",
        "action refused for good",
    ];
    let woke = wait_for("a decides on waking", 60, || async {
        let log = a.log_text();
        if acted.iter().any(|l| log.contains(l)) {
            return Some(true);
        }
        log.contains("lost leadership before acting")
            .then_some(false)
    })
    .await;
    assert!(
        !woke,
        "the frozen leader acted after waking, with the standby leading: {}",
        a.log_text()
    );
    wait_for("a stands by", 60, || async {
        a.log_text().contains("no longer acting").then_some(())
    })
    .await;
    let s = r.status.unwrap();
    assert_eq!(s.attempts.len(), 1, "one attempt, acted once: {s:?}");
    assert_eq!(s.attempts[0].result, AttemptResult::Applied);
    let events = action_events(&env, &ns.name).await;
    assert!(
        events.iter().all(|(_, who)| !who.contains(&a_id)),
        "the frozen leader acted after waking: {events:?}"
    );
    let after = running_pods(&env, &ns.name, "web").await;
    let evicted = before.iter().filter(|p| !after.contains(p)).count();
    assert_eq!(
        evicted, 1,
        "exactly one pod evicted: {before:?} → {after:?}"
    );
    assert_eq!(remediations(&env, &ns.name).await.len(), 1);
    println!(
        "FIGURE fencing frozen_leader_takeover_s={takeover:.1} lease_duration={LEASE_DURATION}"
    );
    b.kill().await;
    a.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_with_two_contenders_acts_once() {
    let _case = support::matrix::Case::asserted(
        "rollout: two replicas contend, the leader ends mid-incident",
        "acted once",
        "1 attempt, 1 ActionApplied Event, 1 pod evicted; the other replica took the Lease and finished",
    );
    let env = Env::get().await;
    let ns = TestNs::new(&env, "rollout").await;
    let lease = format!("fence-{}", ns.name);
    let lns = lease_namespace();
    let args = election_args(&lease, &lns);
    deploy(&env, &ns.name, "web", 3, "runaway", &[("sick-after", "5s")]).await;
    let before = running_pods(&env, &ns.name, "web").await;
    // Two replicas contend from the same instant, as an old and a new pod in a rollout.
    let mut ops = [
        Operator::start(&env, &ns.name, "old", &args, &[]).await,
        Operator::start(&env, &ns.name, "new", &args, &[]).await,
    ];
    apply_policy(
        &env,
        &ns.name,
        &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .expect("policy accepted");
    wait_for("the runaway pod evicted", 240, || async {
        let r = remediations(&env, &ns.name).await;
        r.first()?
            .status
            .as_ref()?
            .attempts
            .iter()
            .any(|a| a.result == AttemptResult::Applied)
            .then_some(())
    })
    .await;
    // The rollout ends the leader (SIGTERM: it releases the Lease) while the incident verifies.
    let first = holder(&env, &lease).await.expect("a holder");
    let (leader, other) = if first.ends_with("-old") {
        (0, 1)
    } else {
        (1, 0)
    };
    signal(ops[leader].child.id().expect("leader runs"), "-TERM");
    let handover = Instant::now();
    let second = wait_for("the other replica takes the Lease", 60, || async {
        holder(&env, &lease).await.filter(|h| *h != first)
    })
    .await;
    let handover_s = handover.elapsed().as_secs_f64();
    assert!(second.ends_with(if other == 0 { "-old" } else { "-new" }));
    let r = wait_phase(&env, &ns.name, Phase::Succeeded, 240).await;
    let s = r.status.unwrap();
    assert_eq!(s.attempts.len(), 1, "acted once: {s:?}");
    let applied = action_events(&env, &ns.name)
        .await
        .into_iter()
        .filter(|(r, _)| r == "ActionApplied")
        .count();
    assert_eq!(applied, 1, "one ActionApplied Event");
    let after = running_pods(&env, &ns.name, "web").await;
    assert_eq!(
        before.iter().filter(|p| !after.contains(p)).count(),
        1,
        "exactly one pod evicted"
    );
    assert_eq!(remediations(&env, &ns.name).await.len(), 1);
    println!("FIGURE fencing graceful_handover_s={handover_s:.1}");
    for op in &mut ops {
        op.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_split_the_fleet_and_the_survivor_takes_every_shard() {
    let _case = support::matrix::Case::asserted(
        "4 shards over 2 replicas, one killed (SIGKILL)",
        "shards split 2+2; the survivor takes all and heals the orphaned namespace once",
        "split 2+2; survivor held all 4 shards; the new fault in a former shard Succeeded with 1 attempt",
    );
    let env = Env::get().await;
    const SHARDS: u32 = 4;
    // Namespaces until every shard has one.
    let mut spaces: Vec<TestNs> = vec![];
    let mut covered = [false; SHARDS as usize];
    while covered.iter().any(|c| !c) && spaces.len() < 40 {
        let ns = TestNs::new(&env, "shard").await;
        let s = homeostat::leader::shard_of(&ns.name, SHARDS) as usize;
        if covered[s] {
            continue;
        }
        covered[s] = true;
        spaces.push(ns);
    }
    assert!(covered.iter().all(|c| *c), "a namespace for every shard");
    for ns in &spaces {
        deploy(&env, &ns.name, "web", 2, "healthy", &[]).await;
        apply_policy(
            &env,
            &ns.name,
            &policy_yaml("web", "web", RUNAWAY_FAULTS, FAST_GUARDS),
        )
        .await
        .expect("policy accepted");
    }
    let lease = format!("fence-{}", spaces[0].name);
    let lns = lease_namespace();
    let shards = SHARDS.to_string();
    let mut args = election_args(&lease, &lns);
    args.extend(["--shards", shards.as_str()]);
    for ns in &spaces[1..] {
        args.extend(["--namespace", ns.name.as_str()]);
    }
    let home = spaces[0].name.clone();
    let mut a = Operator::start(&env, &home, "a", &args, &[]).await;
    let mut b = Operator::start(&env, &home, "b", &args, &[]).await;
    let (a_id, b_id) = (format!("{home}-a"), format!("{home}-b"));
    let shard_leases: Vec<String> = (0..SHARDS).map(|i| format!("{lease}-{i}")).collect();
    let split = wait_for("the shards split two and two", 90, || async {
        let mut h = vec![];
        for l in &shard_leases {
            h.push(holder(&env, l).await?);
        }
        let na = h.iter().filter(|x| **x == a_id).count();
        let nb = h.iter().filter(|x| **x == b_id).count();
        (na == 2 && nb == 2).then_some(h)
    })
    .await;
    wait_for("every policy evaluated", 120, || async {
        for ns in &spaces {
            let p = policy(&env, &ns.name, "web").await;
            ready(&p).filter(|(s, _)| s == "True")?;
        }
        Some(())
    })
    .await;
    // Kill a without warning: its Leases are taken over only after they expire.
    a.kill().await;
    let killed = Instant::now();
    wait_for("b holds every shard", 90, || async {
        for l in &shard_leases {
            (holder(&env, l).await? == b_id).then_some(())?;
        }
        Some(())
    })
    .await;
    let takeover = killed.elapsed().as_secs_f64();
    // A fault in one of a's former namespaces is healed by b, once.
    let orphan = spaces
        .iter()
        .find(|ns| {
            let s = homeostat::leader::shard_of(&ns.name, SHARDS) as usize;
            split[s] == a_id
        })
        .expect("a held some namespace");
    deploy(
        &env,
        &orphan.name,
        "sick",
        3,
        "runaway",
        &[("sick-after", "5s")],
    )
    .await;
    apply_policy(
        &env,
        &orphan.name,
        &policy_yaml("sick", "sick", RUNAWAY_FAULTS, FAST_GUARDS),
    )
    .await
    .expect("policy accepted");
    let r = wait_phase(&env, &orphan.name, Phase::Succeeded, 240).await;
    assert_eq!(r.status.unwrap().attempts.len(), 1);
    assert!(
        b.log_text().contains("acquired a leader Lease"),
        "{}",
        b.log_text()
    );
    println!(
        "FIGURE sharding shards={SHARDS} replicas=2 killed_replica_takeover_s={takeover:.1} lease_duration={LEASE_DURATION}"
    );
    b.kill().await;
}
