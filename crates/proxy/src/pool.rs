//! One pool per service port and scope: the balancer over its current
//! endpoints, session affinity, passive health (ejection after a failed
//! connect) and draining of endpoints that left.
//!
//! The pool is updated in place on every table sync; listeners hold an
//! `Arc<Pool>` and read an immutable [`State`] snapshot per connection, so
//! a sync never waits for connections and connections never see half an
//! update.
//!
//! Until its first connection a pool only keeps the endpoints' addresses
//! (`Members::Planned`); the balancer and the endpoint entries are built
//! when a connection first needs them. Why: a node proxy listens for every
//! Service of the cluster, and most of them never carry traffic through a
//! given node, while a built pool of five endpoints costs ~1.5 KB more
//! (the balancer with its per-backend load, five entries with their
//! counters; `tests/memory.rs`). The first connection builds it, on its
//! worker (for Maglev that includes the 65537-slot table).
//!
//! Each endpoint has an [`EndpointEntry`] that outlives its membership:
//! when the endpoint leaves the pool, its entry moves to `draining` and a
//! timer closes whatever connections are still open after the drain
//! timeout; if it comes back before that, the timer is cancelled.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use switchboard_lb::{Affinity, Algorithm, Backend, Balancer};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::Config;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{EndpointMetrics, Metrics};
use crate::plan::{PoolKey, Target};

/// Per-endpoint state shared by the pool, its drain timer and every
/// connection to the endpoint.
#[derive(Debug)]
pub(crate) struct EndpointEntry {
    pub addr: SocketAddr,
    pub metrics: EndpointMetrics,
    /// Ejected until this many nanoseconds after the pool's epoch (0: not).
    ejected_until: AtomicU64,
    /// Consecutive ejections, for the doubling back-off.
    ejections: AtomicU32,
    /// Becomes true (once, for good) when the endpoint's connections must
    /// close; `drain_now` wakes them. A flag and a `Notify` rather than a
    /// `watch` channel: this is per endpoint (50k of them with 10k
    /// Services), and a watch channel's shared state is ~340 bytes.
    drained: AtomicBool,
    drain_now: Notify,
}

impl EndpointEntry {
    fn new(addr: SocketAddr) -> Self {
        EndpointEntry {
            addr,
            metrics: EndpointMetrics::default(),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            drained: AtomicBool::new(false),
            drain_now: Notify::new(),
        }
    }

    /// True once this endpoint's connections must close.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// Resolves when this endpoint's connections must close.
    pub fn drained(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let entry = Arc::clone(self);
        async move {
            let notified = entry.drain_now.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a drain between the
            // two is not missed (`notify_waiters` wakes registered ones).
            notified.as_mut().enable();
            if entry.is_drained() {
                return;
            }
            notified.await;
        }
    }

    /// Closes the endpoint's connections, now and any opened later.
    fn drain(&self) {
        self.drained.store(true, Ordering::Release);
        self.drain_now.notify_waiters();
    }
}

/// What one connection reads: the balancer and the entries it indexes.
#[derive(Debug)]
pub(crate) struct State {
    pub balancer: Balancer<SocketAddr>,
    /// Aligned with `balancer.backends()`.
    pub entries: Vec<Arc<EndpointEntry>>,
    pub affinity: Option<Arc<Affinity<IpAddr, SocketAddr>>>,
}

/// Candidates for one new connection, best first.
pub(crate) struct Choice {
    pub state: Arc<State>,
    /// Indices into `state.entries`.
    pub candidates: Vec<usize>,
}

#[derive(Debug)]
pub(crate) struct Pool {
    pub key: PoolKey,
    config: Arc<Config>,
    /// Connections with nowhere to go (the proxy-wide counter).
    pub no_endpoint: Counter,
    epoch: Instant,
    members: RwLock<Members>,
    /// Entries of endpoints that left and may still have connections,
    /// with their drain timers. A vector, usually empty; the current
    /// members are not kept a second time in a map (with 10k pools of a
    /// few endpoints each, a map of them cost ~0.4 KB per pool).
    draining: Mutex<Vec<(Arc<EndpointEntry>, AbortHandle)>>,
}

/// The current endpoints of a pool.
#[derive(Debug)]
enum Members {
    /// No connection has needed them yet: what to build. Nothing can be
    /// connected, ejected or draining, so updates just replace this.
    Planned {
        algorithm: Algorithm,
        affinity: Option<Duration>,
        /// Without duplicates.
        targets: Box<[Target]>,
    },
    /// Built (for good): the snapshot connections read.
    Built(Arc<State>),
}

impl Members {
    fn planned(algorithm: Algorithm, affinity: Option<Duration>, targets: &[Target]) -> Self {
        let mut unique: Vec<Target> = Vec::with_capacity(targets.len());
        let mut seen = std::collections::HashSet::with_capacity(targets.len());
        for t in targets {
            if seen.insert(t.addr) {
                unique.push(t.clone());
            }
        }
        Members::Planned {
            algorithm,
            affinity,
            targets: unique.into_boxed_slice(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the list consistent, so a panic
    // elsewhere while holding the lock does not make it unusable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    pub fn new(
        key: PoolKey,
        config: Arc<Config>,
        metrics: Metrics,
        algorithm: Algorithm,
        affinity: Option<Duration>,
        targets: &[Target],
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            key,
            config,
            no_endpoint: metrics.no_endpoint.clone(),
            epoch: Instant::now(),
            members: RwLock::new(Members::planned(algorithm, affinity, targets)),
            draining: Mutex::new(Vec::new()),
        });
        metrics.track(&pool);
        pool
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Members> {
        self.members.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Members> {
        self.members.write().unwrap_or_else(|p| p.into_inner())
    }

    /// How many endpoints take new connections.
    pub fn size(&self) -> usize {
        match &*self.read() {
            Members::Planned { targets, .. } => targets.len(),
            Members::Built(state) => state.entries.len(),
        }
    }

    /// Calls `f` with every entry that may have open connections: current
    /// members and draining endpoints.
    pub fn for_each_entry(&self, mut f: impl FnMut(&Arc<EndpointEntry>)) {
        // Under the draining lock, which `update` holds until the new
        // state is in place: each entry is in exactly one of the two.
        let draining = lock(&self.draining);
        if let Some(state) = self.built() {
            state.entries.iter().for_each(&mut f);
        }
        draining.iter().for_each(|(e, _)| f(e));
    }

    /// The proxy's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current snapshot, built now if no connection needed it before.
    pub fn state(&self) -> Arc<State> {
        if let Some(state) = self.built() {
            return state;
        }
        let mut members = self.write();
        let state = match &*members {
            Members::Built(state) => return Arc::clone(state),
            Members::Planned {
                algorithm,
                affinity,
                targets,
            } => {
                // Nothing is draining yet and there is no old state.
                let (state, gone) =
                    self.next_state(None, &mut Vec::new(), *algorithm, *affinity, targets);
                debug_assert!(gone.is_empty());
                Arc::new(state)
            }
        };
        *members = Members::Built(Arc::clone(&state));
        state
    }

    /// The snapshot if it is built.
    fn built(&self) -> Option<Arc<State>> {
        match &*self.read() {
            Members::Built(state) => Some(Arc::clone(state)),
            Members::Planned { .. } => None,
        }
    }

    /// True when no endpoint may take new connections.
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// Applies a new endpoint set, scheduler and affinity. Load state and
    /// the rotation position survive for unchanged endpoints; removed ones
    /// start draining.
    pub fn update(
        self: &Arc<Self>,
        algorithm: Algorithm,
        affinity: Option<Duration>,
        targets: &[Target],
    ) {
        let mut draining = lock(&self.draining);
        let old = {
            let mut members = self.write();
            match &*members {
                Members::Planned { .. } => {
                    *members = Members::planned(algorithm, affinity, targets);
                    return;
                }
                // Built stays built, and only this (the sync loop) writes.
                Members::Built(state) => Arc::clone(state),
            }
        };
        let (state, gone) =
            self.next_state(Some(&old), &mut draining, algorithm, affinity, targets);
        for entry in gone {
            self.start_drain(&mut draining, entry);
        }
        // Written before the draining list is unlocked, so a scrape
        // (`for_each_entry`) sees each entry exactly once.
        *self.write() = Members::Built(Arc::new(state));
        drop(draining);
    }

    /// The state for `targets` after `old`, and the entries of `old` that
    /// are no longer members (to drain). Entries of unchanged endpoints,
    /// their load and the rotation position carry over; an endpoint back
    /// from `draining` gets its entry back.
    fn next_state(
        &self,
        old: Option<&State>,
        draining: &mut Vec<(Arc<EndpointEntry>, AbortHandle)>,
        algorithm: Algorithm,
        affinity: Option<Duration>,
        targets: &[Target],
    ) -> (State, Vec<Arc<EndpointEntry>>) {
        let old_entries = old.map_or(&[][..], |o| &o.entries[..]);
        // By address, for this update only: the current entries and the
        // targets already taken (a target may be listed twice).
        let mut current: HashMap<SocketAddr, Option<&Arc<EndpointEntry>>> =
            old_entries.iter().map(|e| (e.addr, Some(e))).collect();
        let mut entries = Vec::with_capacity(targets.len());
        for t in targets {
            let entry = match current.insert(t.addr, None) {
                Some(None) => continue, // listed twice
                Some(Some(e)) => Arc::clone(e),
                // Back before its drain timeout: the same entry, so its
                // connections stay (unless the timer has just fired).
                None => match draining
                    .iter()
                    .position(|(e, _)| e.addr == t.addr && !e.is_drained())
                {
                    Some(i) => {
                        let (e, timer) = draining.swap_remove(i);
                        timer.abort();
                        e
                    }
                    None => Arc::new(EndpointEntry::new(t.addr)),
                },
            };
            entries.push(entry);
        }
        // Still `Some`: members that are not among the targets.
        let gone: Vec<Arc<EndpointEntry>> = current.into_values().flatten().cloned().collect();
        let old_affinity = old.and_then(|o| o.affinity.as_ref());
        if let Some(aff) = old_affinity {
            for entry in &gone {
                aff.remove_backend(&entry.addr);
            }
        }

        let backends: Vec<Backend<SocketAddr>> =
            entries.iter().map(|e| Backend::new(e.addr)).collect();
        let balancer = match old {
            Some(o) if o.balancer.algorithm() == algorithm => o.balancer.rebuild(backends),
            _ => Balancer::new(algorithm, backends),
        };
        let affinity = match (affinity, old_affinity) {
            (None, _) => None,
            (Some(t), Some(a)) if a.timeout() == t => Some(Arc::clone(a)),
            (Some(t), _) => Some(Arc::new(Affinity::new(t))),
        };
        let state = State {
            balancer,
            entries,
            affinity,
        };
        (state, gone)
    }

    /// Every endpoint drains (the pool is going away).
    pub fn retire(self: &Arc<Self>) {
        self.update(Algorithm::RoundRobin, None, &[]);
    }

    fn start_drain(
        self: &Arc<Self>,
        draining: &mut Vec<(Arc<EndpointEntry>, AbortHandle)>,
        entry: Arc<EndpointEntry>,
    ) {
        let timeout = self.config.drain_timeout;
        let weak: Weak<Pool> = Arc::downgrade(self);
        let fired = Arc::clone(&entry);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            fired.drain();
            if let Some(pool) = weak.upgrade() {
                let mut draining = lock(&pool.draining);
                if let Some(i) = draining.iter().position(|(e, _)| Arc::ptr_eq(e, &fired)) {
                    draining.swap_remove(i);
                    // Gives back the capacity a mass removal left.
                    if draining.capacity() > 2 * draining.len() + 4 {
                        draining.shrink_to_fit();
                    }
                }
            }
        });
        draining.push((entry, timer.abort_handle()));
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn is_ejected(&self, entry: &EndpointEntry, now_ns: u64) -> bool {
        entry.ejected_until.load(Ordering::Relaxed) > now_ns
    }

    /// The endpoints to try for a client, best first, at most
    /// `max_attempts`: its affinity endpoint (if any and healthy), then the
    /// scheduler's order without ejected endpoints. When every endpoint is
    /// ejected they are all tried anyway (Envoy's panic mode): a guess beats
    /// a certain refusal.
    pub fn choose(&self, client: IpAddr) -> Choice {
        let state = self.state();
        let now_ns = self.now_ns();
        let max = self.config.max_attempts;
        let mut candidates = Vec::with_capacity(max.min(state.entries.len()));
        if let Some(aff) = &state.affinity
            && let Some(addr) = aff.get(&client, Instant::now().into_std())
            && let Some(i) = state.entries.iter().position(|e| e.addr == addr)
            && !self.is_ejected(&state.entries[i], now_ns)
        {
            // A sticky client does not consume a pick (the rotation stays
            // where it was); its fallbacks are the others in index order.
            candidates.push(i);
            candidates.extend(
                (0..state.entries.len())
                    .filter(|&j| j != i && !self.is_ejected(&state.entries[j], now_ns))
                    .take(max - 1),
            );
            return Choice { state, candidates };
        }
        let mut ejected = Vec::new();
        for (i, _) in state.balancer.pick(switchboard_lb::hash_ip(client)) {
            if candidates.len() >= max {
                break;
            }
            if self.is_ejected(&state.entries[i], now_ns) {
                ejected.push(i);
            } else {
                candidates.push(i);
            }
        }
        if candidates.is_empty() {
            ejected.truncate(max);
            candidates = ejected;
        }
        Choice { state, candidates }
    }

    /// A connection to `entry` failed: keep new connections away from it
    /// for the back-off period (doubling per consecutive ejection).
    pub fn eject(&self, entry: &EndpointEntry) {
        let n = entry.ejections.fetch_add(1, Ordering::Relaxed);
        let factor = 1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX);
        let period = self
            .config
            .ejection_base
            .saturating_mul(factor)
            .min(self.config.ejection_max);
        let until = self
            .now_ns()
            .saturating_add(u64::try_from(period.as_nanos()).unwrap_or(u64::MAX));
        entry.ejected_until.store(until, Ordering::Relaxed);
        entry.metrics.ejections.inc();
        if let Some(state) = self.built()
            && let Some(aff) = &state.affinity
        {
            aff.remove_backend(&entry.addr);
        }
        tracing::info!(
            service = %self.key.service,
            port = self.key.port,
            endpoint = %entry.addr,
            ?period,
            "endpoint ejected after a failed connect"
        );
    }

    /// A connection to `entry` succeeded: its back-off starts over.
    pub fn healthy(&self, entry: &EndpointEntry) {
        if entry.ejections.load(Ordering::Relaxed) != 0 {
            entry.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Records the client's endpoint for session affinity.
    pub fn stick(&self, state: &State, client: IpAddr, addr: SocketAddr) {
        if let Some(aff) = &state.affinity {
            aff.insert(client, addr, Instant::now().into_std());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_discovery::{Protocol, ServiceKey};

    fn key() -> PoolKey {
        PoolKey {
            service: ServiceKey::new("default", "web"),
            port_name: String::new(),
            port: 80,
            protocol: Protocol::Tcp,
            scope: crate::plan::Scope::Internal,
        }
    }

    fn targets(ports: &[u16]) -> Vec<Target> {
        ports
            .iter()
            .map(|&p| Target {
                addr: SocketAddr::from(([127, 0, 0, 1], p)),
            })
            .collect()
    }

    fn pool(config: Config, ports: &[u16], affinity: Option<Duration>) -> Arc<Pool> {
        Pool::new(
            key(),
            Arc::new(config),
            Metrics::new(),
            Algorithm::RoundRobin,
            affinity,
            &targets(ports),
        )
    }

    fn first(p: &Pool, client: [u8; 4]) -> u16 {
        let c = p.choose(IpAddr::from(client));
        c.state.entries[c.candidates[0]].addr.port()
    }

    #[tokio::test(start_paused = true)]
    async fn ejected_endpoints_are_skipped_until_the_back_off_ends() {
        let config = Config {
            ejection_base: Duration::from_secs(10),
            ..Config::default()
        };
        let p = pool(config, &[1, 2, 3], None);
        let c = p.choose(IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.candidates.len(), 3, "max_attempts bounds the candidates");
        let bad = Arc::clone(&c.state.entries[1]);
        p.eject(&bad);
        for _ in 0..10 {
            let c = p.choose(IpAddr::from([127, 0, 0, 1]));
            assert!(
                c.candidates
                    .iter()
                    .all(|&i| c.state.entries[i].addr.port() != 2)
            );
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        let seen: Vec<u16> = (0..3).map(|_| first(&p, [127, 0, 0, 1])).collect();
        assert!(seen.contains(&2), "back after the ejection: {seen:?}");
        // A second consecutive ejection lasts twice as long.
        p.eject(&bad);
        tokio::time::advance(Duration::from_secs(15)).await;
        let seen: Vec<u16> = (0..6).map(|_| first(&p, [127, 0, 0, 1])).collect();
        assert!(!seen.contains(&2), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn all_ejected_still_yields_candidates() {
        let p = pool(Config::default(), &[1, 2], None);
        let s = p.state();
        for e in &s.entries {
            p.eject(e);
        }
        assert_eq!(p.choose(IpAddr::from([127, 0, 0, 1])).candidates.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn affinity_sticks_and_leaves_with_the_endpoint() {
        let p = pool(Config::default(), &[1, 2, 3], Some(Duration::from_secs(5)));
        let client = IpAddr::from([127, 0, 0, 9]);
        let c = p.choose(client);
        let addr = c.state.entries[c.candidates[0]].addr;
        p.stick(&c.state, client, addr);
        for _ in 0..15 {
            assert_eq!(first(&p, [127, 0, 0, 9]), addr.port());
        }
        let rest: Vec<u16> = [1, 2, 3]
            .into_iter()
            .filter(|&x| x != addr.port())
            .collect();
        p.update(
            Algorithm::RoundRobin,
            Some(Duration::from_secs(5)),
            &targets(&rest),
        );
        assert_ne!(first(&p, [127, 0, 0, 9]), addr.port());
    }

    #[tokio::test(start_paused = true)]
    async fn removed_endpoints_drain_after_the_timeout_unless_they_return() {
        let config = Config {
            drain_timeout: Duration::from_secs(30),
            ..Config::default()
        };
        let p = pool(config, &[1, 2], None);
        let s = p.state();
        let (one, two) = (Arc::clone(&s.entries[0]), Arc::clone(&s.entries[1]));
        let d1 = tokio::spawn(one.drained());
        p.update(Algorithm::RoundRobin, None, &targets(&[2]));
        assert!(p.choose(IpAddr::from([127, 0, 0, 1])).candidates.len() == 1);
        tokio::time::advance(Duration::from_secs(29)).await;
        tokio::task::yield_now().await;
        assert!(
            !one.is_drained() && !d1.is_finished(),
            "still within the drain timeout"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        d1.await.expect("the drain future resolves");
        assert!(one.is_drained());
        assert!(!two.is_drained(), "a current endpoint never drains");

        // Removed and back within the timeout: the same entry, no cut.
        p.update(Algorithm::RoundRobin, None, &targets(&[]));
        assert!(p.is_empty());
        p.update(Algorithm::RoundRobin, None, &targets(&[2]));
        tokio::time::advance(Duration::from_secs(60)).await;
        tokio::task::yield_now().await;
        assert!(!two.is_drained());
        assert!(Arc::ptr_eq(&p.state().entries[0], &two));
    }
}
