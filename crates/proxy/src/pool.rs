//! One pool per service port and scope: the balancer over its current
//! endpoints, session affinity, passive health (ejection after a failed
//! connect) and draining of endpoints that left.
//!
//! The pool is updated in place on every table sync; listeners hold an
//! `Arc<Pool>` and read an immutable [`State`] snapshot per connection, so
//! a sync never waits for connections and connections never see half an
//! update.
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
    pub metrics: Metrics,
    epoch: Instant,
    state: RwLock<Arc<State>>,
    /// Entries of current members and of draining endpoints.
    members: Mutex<Members>,
}

#[derive(Debug, Default)]
struct Members {
    current: HashMap<SocketAddr, Arc<EndpointEntry>>,
    draining: HashMap<SocketAddr, (Arc<EndpointEntry>, AbortHandle)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the maps consistent, so a panic
    // elsewhere while holding the lock does not make them unusable.
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
            metrics,
            epoch: Instant::now(),
            state: RwLock::new(Arc::new(State {
                balancer: Balancer::new(algorithm, Vec::new()),
                entries: Vec::new(),
                affinity: None,
            })),
            members: Mutex::new(Members::default()),
        });
        pool.update(algorithm, affinity, targets);
        pool.metrics.track(&pool);
        pool
    }

    /// How many endpoints take new connections.
    pub fn size(&self) -> usize {
        self.state().entries.len()
    }

    /// Calls `f` with every entry that may have open connections: current
    /// members and draining endpoints.
    pub fn for_each_entry(&self, mut f: impl FnMut(&Arc<EndpointEntry>)) {
        let members = lock(&self.members);
        members.current.values().for_each(&mut f);
        members.draining.values().for_each(|(e, _)| f(e));
    }

    /// The proxy's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current snapshot.
    pub fn state(&self) -> Arc<State> {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&guard)
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
        let old = self.state();
        let mut members = lock(&self.members);
        let mut entries = Vec::with_capacity(targets.len());
        let mut next: HashMap<SocketAddr, Arc<EndpointEntry>> =
            HashMap::with_capacity(targets.len());
        for t in targets {
            if next.contains_key(&t.addr) {
                continue;
            }
            let entry = if let Some(e) = members.current.get(&t.addr) {
                Arc::clone(e)
            } else if let Some((e, timer)) = members.draining.remove(&t.addr) {
                timer.abort();
                e
            } else {
                Arc::new(EndpointEntry::new(t.addr))
            };
            next.insert(t.addr, Arc::clone(&entry));
            entries.push(entry);
        }
        let gone: Vec<Arc<EndpointEntry>> = members
            .current
            .drain()
            .filter(|(addr, _)| !next.contains_key(addr))
            .map(|(_, e)| e)
            .collect();
        members.current = next;
        for entry in gone {
            if let Some(aff) = &old.affinity {
                aff.remove_backend(&entry.addr);
            }
            self.start_drain(&mut members, entry);
        }
        drop(members);

        let backends: Vec<Backend<SocketAddr>> =
            entries.iter().map(|e| Backend::new(e.addr)).collect();
        let balancer = if old.balancer.algorithm() == algorithm {
            old.balancer.rebuild(backends)
        } else {
            Balancer::new(algorithm, backends)
        };
        let affinity = match (affinity, &old.affinity) {
            (None, _) => None,
            (Some(t), Some(a)) if a.timeout() == t => Some(Arc::clone(a)),
            (Some(t), _) => Some(Arc::new(Affinity::new(t))),
        };
        let state = Arc::new(State {
            balancer,
            entries,
            affinity,
        });
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Every endpoint drains (the pool is going away).
    pub fn retire(self: &Arc<Self>) {
        self.update(Algorithm::RoundRobin, None, &[]);
    }

    fn start_drain(self: &Arc<Self>, members: &mut Members, entry: Arc<EndpointEntry>) {
        let timeout = self.config.drain_timeout;
        let weak: Weak<Pool> = Arc::downgrade(self);
        let fired = Arc::clone(&entry);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            fired.drain();
            if let Some(pool) = weak.upgrade() {
                let mut m = lock(&pool.members);
                if m.draining
                    .get(&fired.addr)
                    .is_some_and(|(e, _)| Arc::ptr_eq(e, &fired))
                {
                    m.draining.remove(&fired.addr);
                }
            }
        });
        members
            .draining
            .insert(entry.addr, (entry, timer.abort_handle()));
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
        if let Some(aff) = &self.state().affinity {
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
