//! The fence: which shards this replica may act for, and until when.
//!
//! A shard is held until a deadline measured on the monotonic clock from the moment *before* the
//! last successful renewal was sent (client-go's renew deadline). Every mutating call asks the fence
//! first, so a replica that was frozen, partitioned or slow to renew stops acting when its deadline
//! passes, whatever its election loop believes: it never waits for a failed renewal to be noticed.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

/// Read side of the fence, cloned into the controller.
#[derive(Clone, Debug)]
pub struct Fence {
    inner: Arc<Mutex<Vec<Option<Instant>>>>,
    /// Without leader election every shard is held forever.
    always: bool,
}

impl Fence {
    /// A fence for `shards` shards, none held yet.
    pub fn new(shards: u32) -> Self {
        Self {
            inner: Arc::new(Mutex::new(vec![None; shards.max(1) as usize])),
            always: false,
        }
    }

    /// A fence that holds every shard (no leader election: a single replica acts).
    pub fn always() -> Self {
        Self {
            inner: Arc::new(Mutex::new(vec![None])),
            always: true,
        }
    }

    /// The number of shards policies are divided into.
    pub fn shards(&self) -> u32 {
        self.inner.lock().map(|v| v.len() as u32).unwrap_or(1)
    }

    /// Whether this replica holds `shard` right now.
    pub fn holds(&self, shard: u32) -> bool {
        if self.always {
            return true;
        }
        let now = Instant::now();
        self.inner
            .lock()
            .ok()
            .and_then(|v| v.get(shard as usize).copied().flatten())
            .is_some_and(|until| now < until)
    }

    /// Whether this replica may act for policies and Remediations in `namespace`.
    pub fn holds_namespace(&self, namespace: &str) -> bool {
        self.holds(shard_of(namespace, self.shards()))
    }

    /// The shards held right now, ascending.
    pub fn held(&self) -> Vec<u32> {
        (0..self.shards()).filter(|s| self.holds(*s)).collect()
    }

    /// Whether any shard is held (this replica is a leader of something).
    pub fn any(&self) -> bool {
        !self.held().is_empty()
    }

    /// Holds `shard` until `until` (after a successful acquire or renewal).
    pub fn hold_until(&self, shard: u32, until: Instant) {
        if let Ok(mut v) = self.inner.lock()
            && let Some(slot) = v.get_mut(shard as usize)
        {
            *slot = Some(until);
        }
    }

    /// Stops holding `shard` at once (lost, released, or shutting down).
    pub fn drop_shard(&self, shard: u32) {
        if let Ok(mut v) = self.inner.lock()
            && let Some(slot) = v.get_mut(shard as usize)
        {
            *slot = None;
        }
    }

    /// Stops holding every shard.
    pub fn drop_all(&self) {
        if let Ok(mut v) = self.inner.lock() {
            v.iter_mut().for_each(|s| *s = None);
        }
    }
}

/// The shard of a namespace: FNV-1a of its name modulo `shards`. Stable across versions and
/// replicas (std's hasher is not), and by namespace so that every policy on one workload, and its
/// Remediations, land in one shard: the one-owner rule and the guards stay within one replica.
pub fn shard_of(namespace: &str, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(namespace.as_bytes());
    (h.finish() % u64::from(shards)) as u32
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_shard_is_held_until_its_deadline_only() {
        let f = Fence::new(3);
        assert!(!f.any());
        f.hold_until(1, Instant::now() + Duration::from_secs(60));
        f.hold_until(2, Instant::now() - Duration::from_millis(1));
        assert_eq!(f.held(), vec![1]);
        f.drop_shard(1);
        assert!(!f.holds(1));
        f.hold_until(7, Instant::now() + Duration::from_secs(60));
        assert!(!f.any(), "an unknown shard is ignored");
    }

    #[test]
    fn without_election_everything_is_held() {
        let f = Fence::always();
        assert!(f.holds(0) && f.holds_namespace("any") && f.any());
    }

    #[test]
    fn namespaces_spread_over_shards_stably() {
        assert_eq!(shard_of("team-a", 1), 0);
        let shards: Vec<u32> = (0..40).map(|i| shard_of(&format!("ns-{i}"), 4)).collect();
        for s in 0..4 {
            assert!(
                shards.contains(&s),
                "shard {s} got no namespace: {shards:?}"
            );
        }
        // Pinned: replicas of different versions must agree.
        assert_eq!(shard_of("default", 4), shard_of("default", 4));
        assert_eq!(shard_of("kube-system", 16), {
            let mut h: u64 = 0xcbf29ce484222325;
            for b in b"kube-system" {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x100000001b3);
            }
            (h % 16) as u32
        });
    }
}
