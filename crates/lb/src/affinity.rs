//! `sessionAffinity: ClientIP`: a client keeps its backend while it keeps
//! coming back within the timeout, as kube-proxy's userspace mode does (the
//! timeout counts from the last use, not from the first pick).
//!
//! Time is an argument, never read here, so tests (and paused tokio clocks)
//! control expiry.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards: lookups from many tasks rarely wait on one another.
const SHARDS: usize = 16;

#[derive(Debug)]
struct Entry<T> {
    backend: T,
    last_used: Instant,
}

type Shard<K, T> = Mutex<HashMap<K, Entry<T>>>;

/// Client key → backend, with expiry after `timeout` without use. `Sync`:
/// one per service port, shared by all its connections.
#[derive(Debug)]
pub struct Affinity<K, T> {
    timeout: Duration,
    hasher: RandomState,
    shards: Box<[Shard<K, T>]>,
}

impl<K: Hash + Eq, T: Clone + Eq> Affinity<K, T> {
    /// An empty table; entries expire `timeout` after their last use
    /// (Kubernetes' default `timeoutSeconds` is 10800, three hours).
    pub fn new(timeout: Duration) -> Self {
        Affinity {
            timeout,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, Entry<T>>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A panic while holding a shard cannot leave an entry half-written
        // (every mutation is a single map call), so a poisoned lock is usable.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, e: &Entry<T>, now: Instant) -> bool {
        now.saturating_duration_since(e.last_used) >= self.timeout
    }

    /// The client's backend if its entry has not expired; the use refreshes
    /// it. An expired entry is removed.
    pub fn get(&self, key: &K, now: Instant) -> Option<T> {
        let mut shard = self.shard(key);
        let entry = shard.get_mut(key)?;
        if self.expired(entry, now) {
            shard.remove(key);
            return None;
        }
        entry.last_used = entry.last_used.max(now);
        Some(entry.backend.clone())
    }

    /// Records the client's backend (after a fresh pick).
    pub fn insert(&self, key: K, backend: T, now: Instant) {
        let mut shard = self.shard(&key);
        shard.insert(
            key,
            Entry {
                backend,
                last_used: now,
            },
        );
    }

    /// Forgets every client of `backend` (it was removed or failed), so they
    /// get a new pick instead of a dead backend.
    pub fn remove_backend(&self, backend: &T) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, e| e.backend != *backend);
        }
    }

    /// Drops every expired entry (call it now and then to bound memory).
    pub fn purge_expired(&self, now: Instant) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, e| !self.expired(e, now));
        }
    }

    /// Entries held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn sticks_while_used_and_expires_after_timeout() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let aff = Affinity::new(Duration::from_secs(10));
        assert_eq!(aff.get(&ip(1), t0), None);
        aff.insert(ip(1), "b", t0);
        // Uses every 6 s keep it alive well past 10 s after the first pick.
        assert_eq!(aff.get(&ip(1), t0 + 6 * s), Some("b"));
        assert_eq!(aff.get(&ip(1), t0 + 12 * s), Some("b"));
        assert_eq!(aff.get(&ip(1), t0 + 18 * s), Some("b"));
        // 10 s idle: gone (and removed).
        assert_eq!(aff.get(&ip(1), t0 + 28 * s), None);
        assert!(aff.is_empty());
    }

    #[test]
    fn just_before_timeout_is_still_valid() {
        let t0 = Instant::now();
        let aff = Affinity::new(Duration::from_secs(10));
        aff.insert(ip(1), 7u32, t0);
        assert_eq!(aff.get(&ip(1), t0 + Duration::from_millis(9_999)), Some(7));
        let aff2 = Affinity::new(Duration::from_secs(10));
        aff2.insert(ip(1), 7u32, t0);
        assert_eq!(aff2.get(&ip(1), t0 + Duration::from_secs(10)), None);
    }

    #[test]
    fn remove_backend_forgets_its_clients_only() {
        let t0 = Instant::now();
        let aff = Affinity::new(Duration::from_secs(10));
        for i in 0..50 {
            aff.insert(ip(i), if i % 2 == 0 { "even" } else { "odd" }, t0);
        }
        aff.remove_backend(&"even");
        assert_eq!(aff.len(), 25);
        assert_eq!(aff.get(&ip(2), t0), None);
        assert_eq!(aff.get(&ip(3), t0), Some("odd"));
    }

    #[test]
    fn purge_drops_only_expired() {
        let t0 = Instant::now();
        let aff = Affinity::new(Duration::from_secs(10));
        aff.insert(ip(1), 1u8, t0);
        aff.insert(ip(2), 2u8, t0 + Duration::from_secs(5));
        aff.purge_expired(t0 + Duration::from_secs(12));
        assert_eq!(aff.len(), 1);
        assert_eq!(aff.get(&ip(2), t0 + Duration::from_secs(12)), Some(2));
    }

    #[test]
    fn shared_across_threads() {
        let aff = std::sync::Arc::new(Affinity::new(Duration::from_secs(60)));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let aff = aff.clone();
                std::thread::spawn(move || {
                    for i in 0..100u8 {
                        aff.insert((t, i), u32::from(i), t0);
                        assert_eq!(aff.get(&(t, i), t0), Some(u32::from(i)));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker thread panicked");
        }
        assert_eq!(aff.len(), 400);
    }
}
