//! Write expectations of the workload controllers: after a controller
//! creates, updates or deletes an object, its caches lag behind for a
//! moment, and a sync against them would e.g. create the same pods again.
//! So each write records what the cache must show (this name present, at
//! least this resourceVersion, or deleting/gone), and a sync of the owner
//! waits until it does (Kubernetes' `ControllerExpectations`, by name
//! rather than by count). The check is made when the owner is synced; the
//! awaited watch event enqueues the owner anyway, and an expectation
//! expires after [`crate::controller::EXPECTATION_TIMEOUT`] so that a lost
//! event cannot stall it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::controller::EXPECTATION_TIMEOUT;

/// What the cache must show of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Want {
    /// The object exists.
    Present,
    /// The object at this resourceVersion or later.
    Version(String),
    /// The object gone, or being deleted.
    Deleting,
}

/// What the cache shows of one object.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) resource_version: String,
    pub(crate) deleting: bool,
}

struct Expected {
    name: Box<str>,
    want: Want,
    deadline: Instant,
}

/// Expectations per owner key.
pub(crate) struct Expectations<K> {
    inner: Mutex<HashMap<K, Vec<Expected>>>,
}

impl<K> Default for Expectations<K> {
    fn default() -> Self {
        Expectations {
            inner: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Clone + Eq + Hash> Expectations<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Vec<Expected>>> {
        // A panic while holding the lock leaves whole vectors behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record that the cache must show `name` as `want` before `owner` is
    /// synced again.
    pub(crate) fn expect(&self, owner: &K, name: &str, want: Want) {
        self.lock()
            .entry(owner.clone())
            .or_default()
            .push(Expected {
                name: Box::from(name),
                want,
                deadline: Instant::now() + EXPECTATION_TIMEOUT,
            });
    }

    /// Drops met and expired expectations of `owner`, judged by `seen`
    /// (the cache's view of a name); the time until the earliest remaining
    /// one expires, if any remains.
    pub(crate) fn pending(
        &self,
        owner: &K,
        seen: impl Fn(&str) -> Option<Seen>,
    ) -> Option<Duration> {
        let now = Instant::now();
        let mut all = self.lock();
        let list = all.get_mut(owner)?;
        list.retain(|e| e.deadline > now && !met(&e.want, seen(&e.name)));
        let earliest = list.iter().map(|e| e.deadline).min();
        if list.is_empty() {
            all.remove(owner);
        }
        earliest.map(|d| d - now)
    }

    /// Forget every expectation of `owner` (it is gone).
    pub(crate) fn forget(&self, owner: &K) {
        self.lock().remove(owner);
    }
}

fn met(want: &Want, seen: Option<Seen>) -> bool {
    match (want, seen) {
        (Want::Present, seen) => seen.is_some(),
        (Want::Version(v), Some(s)) => crate::controller::version_reached(&s.resource_version, v),
        (Want::Version(_), None) => false,
        (Want::Deleting, seen) => seen.is_none_or(|s| s.deleting),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expectations_hold_until_met_or_expired() {
        let e: Expectations<&str> = Expectations::default();
        e.expect(&"rs", "pod-a", Want::Present);
        e.expect(&"rs", "pod-b", Want::Deleting);
        let nothing = |_: &str| None;
        assert_eq!(e.pending(&"rs", nothing), Some(EXPECTATION_TIMEOUT));
        let both = |name: &str| {
            Some(Seen {
                resource_version: "5".into(),
                deleting: name == "pod-b",
            })
        };
        assert_eq!(e.pending(&"rs", both), None, "both met");

        e.expect(&"rs", "x", Want::Version("10".into()));
        let old = |_: &str| {
            Some(Seen {
                resource_version: "9".into(),
                deleting: false,
            })
        };
        assert!(e.pending(&"rs", old).is_some());
        tokio::time::advance(EXPECTATION_TIMEOUT).await;
        assert_eq!(e.pending(&"rs", old), None, "expired");
    }
}
