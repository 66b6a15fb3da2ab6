//! Per-backend load state, shared (by `Arc`) between every balancer built for
//! the backend and every [`Guard`] of a connection to it, so that a rebuild
//! after an endpoint change keeps counting the connections already open.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Load of one backend: active count and a peak-EWMA latency estimate.
#[derive(Debug)]
pub(crate) struct Load {
    active: AtomicUsize,
    /// Peak-EWMA estimate in nanoseconds, as `f64` bits.
    ewma_ns: AtomicU64,
    /// When the estimate was last written, in nanoseconds since `epoch`.
    updated_ns: AtomicU64,
    epoch: Instant,
    /// Serializes writers of (`ewma_ns`, `updated_ns`); readers do not take
    /// it: a reader racing a writer sees the old or the new estimate, either
    /// of which is a fine load signal.
    write: Mutex<()>,
}

impl Load {
    pub(crate) fn new(default_rtt: Duration, now: Instant) -> Self {
        Load {
            active: AtomicUsize::new(0),
            ewma_ns: AtomicU64::new(nanos(default_rtt).to_bits()),
            updated_ns: AtomicU64::new(0),
            epoch: now,
            write: Mutex::new(()),
        }
    }

    #[inline]
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// The estimate decayed to `now` (towards 0, as tower's `PeakEwma` does
    /// when it reads the load), without writing it back.
    pub(crate) fn ewma_ns(&self, now: Instant, decay_ns: f64) -> f64 {
        let est = f64::from_bits(self.ewma_ns.load(Ordering::Relaxed));
        let at = self.updated_ns.load(Ordering::Relaxed);
        let elapsed = (self.since_epoch(now).saturating_sub(at)) as f64;
        est * (-elapsed / decay_ns).exp()
    }

    /// Peak-EWMA update: a worse latency replaces the estimate at once (the
    /// "peak"); a better one moves it by the weight of the time elapsed since
    /// the last update.
    pub(crate) fn observe(&self, rtt: Duration, now: Instant, decay_ns: f64) {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let rtt = nanos(rtt);
        let est = f64::from_bits(self.ewma_ns.load(Ordering::Relaxed));
        let now_ns = self.since_epoch(now);
        let at = self.updated_ns.load(Ordering::Relaxed);
        let next = if est < rtt {
            rtt
        } else {
            let decay = (-(now_ns.saturating_sub(at) as f64) / decay_ns).exp();
            est * decay + rtt * (1.0 - decay)
        };
        self.ewma_ns.store(next.to_bits(), Ordering::Relaxed);
        self.updated_ns.store(now_ns.max(at), Ordering::Relaxed);
    }

    fn since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

pub(crate) fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// One connection or request in flight to a backend, from
/// [`crate::Balancer::start`]; dropping it ends it. It owns an `Arc` of the
/// backend's load, so it may outlive the balancer (and any rebuild).
#[derive(Debug)]
#[must_use = "the connection counts as active only while the guard lives"]
pub struct Guard {
    load: Option<Arc<Load>>,
    decay_ns: f64,
}

impl Guard {
    pub(crate) fn new(load: Arc<Load>, decay_ns: f64) -> Self {
        load.active.fetch_add(1, Ordering::Relaxed);
        Guard {
            load: Some(load),
            decay_ns,
        }
    }

    /// A guard that counts nothing (for an index that is not a backend).
    pub(crate) fn detached() -> Self {
        Guard {
            load: None,
            decay_ns: 1.0,
        }
    }

    /// Feeds a latency observation (connect time, time to first byte, request
    /// duration: whatever the caller measures consistently) into the
    /// backend's peak-EWMA estimate, as of now.
    pub fn observe_latency(&self, rtt: Duration) {
        self.observe_latency_at(rtt, Instant::now());
    }

    /// As [`Guard::observe_latency`], at a given instant (tests control time).
    pub fn observe_latency_at(&self, rtt: Duration, now: Instant) {
        if let Some(load) = &self.load {
            load.observe(rtt, now, self.decay_ns);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(load) = &self.load {
            load.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: f64 = 10e9;

    #[test]
    fn peak_replaces_and_lower_decays_in() {
        let t0 = Instant::now();
        let load = Arc::new(Load::new(Duration::from_millis(30), t0));
        assert!((load.ewma_ns(t0, DECAY) - 30e6).abs() < 1.0);
        load.observe(Duration::from_millis(100), t0, DECAY);
        assert!((load.ewma_ns(t0, DECAY) - 100e6).abs() < 1.0);
        // A low sample right after the peak barely moves it...
        load.observe(
            Duration::from_millis(1),
            t0 + Duration::from_millis(1),
            DECAY,
        );
        let e = load.ewma_ns(t0 + Duration::from_millis(1), DECAY);
        assert!(e > 99e6, "{e}");
        // ...a low sample after a long quiet period almost replaces it.
        let later = t0 + Duration::from_secs(100);
        load.observe(Duration::from_millis(1), later, DECAY);
        let e = load.ewma_ns(later, DECAY);
        assert!(e < 2e6, "{e}");
    }

    #[test]
    fn guards_count_while_alive() {
        let load = Arc::new(Load::new(Duration::from_millis(30), Instant::now()));
        let a = Guard::new(load.clone(), DECAY);
        let b = Guard::new(load.clone(), DECAY);
        assert_eq!(load.active(), 2);
        drop(a);
        assert_eq!(load.active(), 1);
        drop(b);
        assert_eq!(load.active(), 0);
    }
}
