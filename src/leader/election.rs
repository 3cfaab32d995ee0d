//! What to do with each shard's Lease on one round of the election loop (pure).
//!
//! The rules are client-go's, per shard: a Lease held by another replica is taken over only once
//! this replica has seen the same record (resourceVersion) for a whole lease duration on its own
//! monotonic clock, so wall-clock skew between replicas cannot shorten it; every write carries the
//! resourceVersion it was decided on, so two contenders cannot both win. Shards are balanced: with
//! `live` replicas none holds more than `ceil(shards / live)`, and a replica above that share
//! releases its highest shards so that a newcomer can take them.

use std::time::{Duration, Instant};

/// One shard Lease as read from the apiserver.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// `spec.holderIdentity` (empty when released).
    pub holder: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `spec.leaseDurationSeconds`.
    pub duration: Duration,
}

/// What this replica remembers of one shard's Lease: the record last seen and since when.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    rv: String,
    since: Option<Instant>,
}

/// The step for one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The Lease does not exist: create it, held by this replica.
    Create,
    /// Free or expired: take it over (with the resourceVersion read).
    Acquire,
    /// Held by this replica: renew it.
    Renew,
    /// Held by this replica above its share: give it up.
    Release,
    /// Held by another live replica, or not wanted: leave it.
    Wait,
}

/// The steps for every shard, given what was read (`None`: no such Lease), what this replica
/// remembers, and how many replicas are live (this one included).
pub fn plan(
    records: &[Option<Record>],
    seen: &mut [Seen],
    me: &str,
    live: usize,
    now: Instant,
) -> Vec<Step> {
    let shards = records.len();
    let share = shards.div_ceil(live.max(1));
    let mine: Vec<usize> = (0..shards)
        .filter(|i| records[*i].as_ref().is_some_and(|r| r.holder == me))
        .collect();
    // Keep the lowest shards up to the share; release the rest.
    let keep = mine.len().min(share);
    let mut holding = keep;
    let mut steps = vec![Step::Wait; shards];
    for (i, step) in steps.iter_mut().enumerate() {
        let Some(rec) = &records[i] else {
            seen[i] = Seen::default();
            if holding < share {
                holding += 1;
                *step = Step::Create;
            }
            continue;
        };
        let s = &mut seen[i];
        if s.rv != rec.resource_version || s.since.is_none() {
            *s = Seen {
                rv: rec.resource_version.clone(),
                since: Some(now),
            };
        }
        if rec.holder == me {
            let rank = mine.iter().position(|m| *m == i).unwrap_or(usize::MAX);
            *step = if rank < keep {
                Step::Renew
            } else {
                Step::Release
            };
            continue;
        }
        let expired = rec.holder.is_empty()
            || s.since
                .is_some_and(|t| now.saturating_duration_since(t) >= rec.duration);
        if expired && holding < share {
            holding += 1;
            *step = Step::Acquire;
        }
    }
    steps
}

/// How many replicas are live: this one, plus every other member whose heartbeat (its member
/// Lease's renew time, on the apiserver's record) is younger than `stale_after`. Only balance
/// depends on this count; safety never does (takeover waits for the shard Lease itself).
pub fn live_members(others_age: &[Option<Duration>], stale_after: Duration) -> usize {
    1 + others_age
        .iter()
        .filter(|a| a.is_some_and(|a| a < stale_after))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: &str, rv: &str) -> Option<Record> {
        Some(Record {
            holder: holder.into(),
            resource_version: rv.into(),
            duration: Duration::from_secs(15),
        })
    }

    #[test]
    fn a_lone_replica_creates_and_then_renews_every_shard() {
        let t0 = Instant::now();
        let mut seen = vec![Seen::default(); 3];
        assert_eq!(
            plan(&[None, None, None], &mut seen, "a", 1, t0),
            vec![Step::Create; 3]
        );
        let held = [rec("a", "1"), rec("a", "2"), rec("a", "3")];
        assert_eq!(plan(&held, &mut seen, "a", 1, t0), vec![Step::Renew; 3]);
    }

    #[test]
    fn another_holder_is_taken_over_only_after_a_whole_unchanged_duration() {
        let t0 = Instant::now();
        let mut seen = vec![Seen::default()];
        let other = [rec("b", "7")];
        assert_eq!(plan(&other, &mut seen, "a", 2, t0), vec![Step::Wait]);
        let t1 = t0 + Duration::from_secs(14);
        assert_eq!(plan(&other, &mut seen, "a", 2, t1), vec![Step::Wait]);
        // b renewed at t1: the clock starts again.
        let renewed = [rec("b", "8")];
        let t2 = t0 + Duration::from_secs(20);
        assert_eq!(plan(&renewed, &mut seen, "a", 2, t2), vec![Step::Wait]);
        let t3 = t2 + Duration::from_secs(15);
        assert_eq!(plan(&renewed, &mut seen, "a", 2, t3), vec![Step::Acquire]);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut seen = vec![Seen::default()];
        assert_eq!(
            plan(&[rec("", "9")], &mut seen, "a", 2, Instant::now()),
            vec![Step::Acquire]
        );
    }

    #[test]
    fn shards_are_balanced_over_live_replicas() {
        let t0 = Instant::now();
        let mut seen = vec![Seen::default(); 4];
        let all_mine = [rec("a", "1"), rec("a", "2"), rec("a", "3"), rec("a", "4")];
        // A second replica appears: a keeps two and releases two.
        assert_eq!(
            plan(&all_mine, &mut seen, "a", 2, t0),
            vec![Step::Renew, Step::Renew, Step::Release, Step::Release]
        );
        // b takes the released ones and no more.
        let mut seen_b = vec![Seen::default(); 4];
        let after = [rec("a", "5"), rec("a", "6"), rec("", "7"), rec("", "8")];
        assert_eq!(
            plan(&after, &mut seen_b, "b", 2, t0),
            vec![Step::Wait, Step::Wait, Step::Acquire, Step::Acquire]
        );
        // a's share never makes it grab a shard held by a live b.
        let split = [rec("a", "5"), rec("a", "6"), rec("b", "9"), rec("b", "10")];
        assert_eq!(
            plan(&split, &mut seen, "a", 2, t0 + Duration::from_secs(1)),
            vec![Step::Renew, Step::Renew, Step::Wait, Step::Wait]
        );
    }

    #[test]
    fn a_dead_replicas_shards_go_to_the_survivor_after_the_duration() {
        let t0 = Instant::now();
        let mut seen = vec![Seen::default(); 2];
        let split = [rec("a", "1"), rec("b", "2")];
        assert_eq!(
            plan(&split, &mut seen, "a", 1, t0),
            vec![Step::Renew, Step::Wait]
        );
        let later = t0 + Duration::from_secs(16);
        assert_eq!(
            plan(&split, &mut seen, "a", 1, later),
            vec![Step::Renew, Step::Acquire]
        );
    }

    #[test]
    fn stale_members_do_not_count() {
        let d = Duration::from_secs(30);
        assert_eq!(live_members(&[], d), 1);
        assert_eq!(
            live_members(
                &[
                    Some(Duration::from_secs(3)),
                    Some(Duration::from_secs(31)),
                    None
                ],
                d
            ),
            2
        );
    }
}
