//! A deduplicating work queue with client-go `workqueue` semantics: a key
//! waits in the queue at most once, is handed to one worker at a time, and
//! a key added while a worker holds it runs again once that worker is done.
//! Delayed adds and per-key exponential backoff ride on tokio timers, so
//! tests with paused time control them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// First retry delay after a failed sync; doubles per consecutive failure.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(10);
/// Longest retry delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// See the module docs.
pub(crate) struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

struct State<K> {
    /// Keys ready for a worker, in arrival order.
    queue: VecDeque<K>,
    /// Keys that need a sync (queued, or to be queued when their worker is
    /// done).
    dirty: HashSet<K>,
    /// Keys a worker holds.
    processing: HashSet<K>,
    /// Earliest pending delayed add per key.
    waiting: HashMap<K, Instant>,
    /// Consecutive failures per key, for backoff.
    failures: HashMap<K, u32>,
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: HashMap::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // state itself is always consistent between statements.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mark `key` as needing a sync now.
    pub(crate) fn add(&self, key: K) {
        let mut st = self.lock();
        if !st.dirty.insert(key.clone()) {
            return;
        }
        if !st.processing.contains(&key) {
            st.queue.push_back(key);
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Mark `key` as needing a sync after `delay` (immediately when zero).
    /// Of several pending delayed adds of one key, the earliest wins.
    pub(crate) fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let at = Instant::now() + delay;
        {
            let mut st = self.lock();
            match st.waiting.get(&key) {
                Some(earlier) if *earlier <= at => return,
                _ => {
                    st.waiting.insert(key.clone(), at);
                }
            }
        }
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let fire = {
                let mut st = queue.lock();
                // Only the timer of the recorded (earliest) deadline adds.
                if st.waiting.get(&key) == Some(&at) {
                    st.waiting.remove(&key);
                    true
                } else {
                    false
                }
            };
            if fire {
                queue.add(key);
            }
        });
    }

    /// Retry `key` after its backoff delay, which doubles per consecutive
    /// failure until [`forget`](Self::forget).
    pub(crate) fn add_with_backoff(self: &Arc<Self>, key: K) {
        let failures = {
            let mut st = self.lock();
            let n = st.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        self.add_after(key, backoff(failures));
    }

    /// Reset `key`'s backoff after a successful sync.
    pub(crate) fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// The next key to sync; the caller must call [`done`](Self::done)
    /// with it. No other caller gets the same key until then.
    pub(crate) async fn next(&self) -> K {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register interest before looking, so an add between the look
            // and the await is not missed.
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if let Some(key) = st.queue.pop_front() {
                    st.dirty.remove(&key);
                    st.processing.insert(key.clone());
                    let more = !st.queue.is_empty();
                    drop(st);
                    if more {
                        // Pass the baton: another worker may take the rest.
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// The worker finished `key`; if it was added meanwhile it is queued
    /// again.
    pub(crate) fn done(&self, key: &K) {
        let mut st = self.lock();
        st.processing.remove(key);
        if st.dirty.contains(key) {
            st.queue.push_back(key.clone());
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Keys waiting for a worker.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicate_adds_collapse() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, "a");
        assert_eq!(q.next().await, "b");
    }

    #[tokio::test]
    async fn key_added_while_processing_runs_again_after_done_not_concurrently() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.next().await;
        q.add("a");
        assert_eq!(q.len(), 0, "held key is not handed to a second worker");
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_add_fires_at_the_earliest_deadline() {
        let q = WorkQueue::new();
        q.add_after("a", Duration::from_millis(100));
        q.add_after("a", Duration::from_millis(20));
        let start = Instant::now();
        assert_eq!(q.next().await, "a");
        assert_eq!(start.elapsed(), Duration::from_millis(20));
        q.done(&"a");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(q.len(), 0, "the later timer does not add again");
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_and_resets() {
        let q = WorkQueue::new();
        let mut delays = Vec::new();
        for _ in 0..4 {
            let start = Instant::now();
            q.add_with_backoff("a");
            let k = q.next().await;
            delays.push(start.elapsed().as_millis());
            q.done(&k);
        }
        assert_eq!(delays, vec![10, 20, 40, 80]);
        q.forget(&"a");
        let start = Instant::now();
        q.add_with_backoff("a");
        q.next().await;
        assert_eq!(start.elapsed(), BACKOFF_BASE);
        assert_eq!(backoff(60), BACKOFF_MAX);
    }

    #[tokio::test]
    async fn waiting_worker_wakes_on_add() {
        let q = WorkQueue::new();
        let q2 = Arc::clone(&q);
        let worker = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        q.add(7);
        let got = tokio::time::timeout(Duration::from_secs(5), worker)
            .await
            .expect("worker wakes within the deadline")
            .expect("worker task does not panic");
        assert_eq!(got, 7);
    }
}
