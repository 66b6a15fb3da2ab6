//! The sync loop: each new [`ServiceTable`] updates the pools and opens or
//! closes listeners of the services that changed, and only those, so the
//! connections of other services are never touched.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_discovery::{Protocol, Service, ServiceKey, ServiceTable};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::plan;
use crate::pool::Pool;
use crate::workers::Workers;
use crate::{Error, accept, tcp, udp};

/// How often listeners that failed to bind are tried again.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

type Addr = (Protocol, SocketAddr);

struct Listener {
    /// The pool it feeds (its sockets' acceptors hold it too).
    pool: Arc<Pool>,
    /// Dropping this closes the sockets; accepted connections run in
    /// their own tasks.
    _serving: Serving,
}

/// Held for what its drop does.
enum Serving {
    /// One socket per worker, in the workers' acceptors.
    Tcp { _sockets: accept::Listening },
    /// One socket with its own task (flows live with the socket).
    Udp { _task: AbortOnDrop },
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A service's pools and listeners. Small exact-sized vectors, not maps: a
/// service has a few ports, and with 10k services two small hash maps each
/// cost ~0.9 KB per service (heaptrack).
#[derive(Default)]
struct ServiceState {
    pools: Vec<Arc<Pool>>,
    listeners: Vec<(Addr, Listener)>,
}

/// Removes and returns the element of `items` that `matches`.
fn take<T>(items: &mut Vec<T>, matches: impl Fn(&T) -> bool) -> Option<T> {
    let i = items.iter().position(matches)?;
    Some(items.swap_remove(i))
}

/// The proxy's state between syncs.
pub(crate) struct Proxy {
    config: Arc<Config>,
    workers: Workers,
    metrics: Metrics,
    events: Events,
    services: HashMap<ServiceKey, ServiceState>,
    /// Every bound address. A set: the owner is looked up only to name it
    /// in a warning, and a copy of its key per address was ~90 B per
    /// service with 10k services.
    bound: HashSet<Addr>,
    /// Services with a frontend that could not be bound yet.
    retry: HashSet<ServiceKey>,
}

/// Handle of a running proxy.
#[derive(Debug)]
pub struct Running {
    /// Where `/metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The sync task; it returns only on failure. Abort it to stop: the
    /// worker threads then end, closing their listeners and connections
    /// (with `worker_threads: 0`, open connections run until closed).
    pub task: JoinHandle<Result<(), Error>>,
}

/// Starts the proxy on `table`; `client`, when given, records Events.
/// Fails at once when the configuration is invalid or the metrics address
/// cannot be bound.
pub async fn start(
    config: Config,
    table: watch::Receiver<Arc<ServiceTable>>,
    client: Option<kube::Client>,
) -> Result<Running, Error> {
    config.validate()?;
    let workers =
        Workers::start(config.worker_threads, config.connect_timeout).map_err(|source| {
            Error::Workers {
                threads: config.worker_threads,
                source,
            }
        })?;
    let metrics = Metrics::new();
    let metrics_addr = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            tokio::spawn(metrics.clone().serve(listener));
            Some(local)
        }
    };
    let proxy = Proxy {
        events: Events::new(client, config.node_name.clone()),
        config: Arc::new(config),
        workers,
        metrics,
        services: HashMap::new(),
        bound: HashSet::new(),
        retry: HashSet::new(),
    };
    Ok(Running {
        metrics_addr,
        task: tokio::spawn(proxy.run(table)),
    })
}

impl Proxy {
    async fn run(mut self, mut rx: watch::Receiver<Arc<ServiceTable>>) -> Result<(), Error> {
        let mut applied: Option<Arc<ServiceTable>> = None;
        let mut retry = tokio::time::interval(RETRY_INTERVAL);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let table = Arc::clone(&rx.borrow_and_update());
            if table.synced {
                let started = Instant::now();
                self.sync(applied.as_deref(), &table);
                self.metrics
                    .sync_duration
                    .observe(started.elapsed().as_secs_f64());
                applied = Some(table);
            }
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return Err(Error::TableClosed);
                        }
                        break;
                    }
                    _ = retry.tick(), if !self.retry.is_empty() => {
                        if let Some(t) = &applied {
                            for key in std::mem::take(&mut self.retry) {
                                let svc = t.services.get(&key).cloned();
                                self.sync_service(&key, svc.as_ref());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Brings the proxy from `old` to `new`, looking only at the services
    /// that changed in between: from the table's change history when it
    /// reaches back to `old` (always after a consecutive snapshot), else
    /// every service whose `Arc` differs.
    fn sync(&mut self, old: Option<&ServiceTable>, new: &ServiceTable) {
        let keys: Vec<ServiceKey> = match old {
            Some(old) => new
                .changed_since(old.generation)
                .unwrap_or_else(|| new.services.diff_keys(&old.services)),
            None => new.services.keys().cloned().collect(),
        };
        for key in keys {
            let svc = new.services.get(&key).cloned();
            self.sync_service(&key, svc.as_ref());
        }
    }

    /// The service listening on `addr` (a scan: only for warnings).
    fn owner(&self, addr: &Addr) -> Option<&ServiceKey> {
        self.services
            .iter()
            .find(|(_, s)| s.listeners.iter().any(|(a, _)| a == addr))
            .map(|(k, _)| k)
    }

    fn sync_service(&mut self, key: &ServiceKey, svc: Option<&Arc<Service>>) {
        let frontends = svc
            .map(|s| plan::frontends(s, &self.config.node_addresses))
            .unwrap_or_default();
        let mut state = self.services.remove(key).unwrap_or_default();

        // Pools first, so listeners opened below already have endpoints.
        let mut wanted: Vec<Arc<Pool>> = Vec::new();
        if let Some(svc) = svc {
            let (algorithm, problem) = plan::scheduler(svc, self.config.default_scheduler);
            match problem {
                Some(message) => self.events.warn(key, "UnknownScheduler", message),
                None => self.events.clear(key),
            }
            for f in &frontends {
                if wanted.iter().any(|p| p.key == f.pool) {
                    continue;
                }
                let Some(port) = plan::port_of(svc, &f.pool) else {
                    continue;
                };
                let targets = plan::targets(svc, port, f.pool.scope, &self.config.node_name);
                let pool = match take(&mut state.pools, |p| p.key == f.pool) {
                    Some(pool) => {
                        pool.update(algorithm, svc.session_affinity, &targets);
                        pool
                    }
                    None => Pool::new(
                        f.pool.clone(),
                        Arc::clone(&self.config),
                        self.metrics.clone(),
                        algorithm,
                        svc.session_affinity,
                        &targets,
                    ),
                };
                wanted.push(pool);
            }
        } else {
            self.events.clear(key);
        }
        for pool in state.pools.drain(..) {
            pool.retire();
        }
        wanted.shrink_to_fit();
        state.pools = wanted;

        // Listeners: open where the pool has endpoints, close elsewhere.
        let mut listeners: Vec<(Addr, Listener)> = Vec::new();
        let mut failed = false;
        for f in &frontends {
            let addr = (f.protocol, f.addr);
            let Some(pool) = state.pools.iter().find(|p| p.key == f.pool) else {
                continue;
            };
            if pool.is_empty() || listeners.iter().any(|(a, _)| *a == addr) {
                continue;
            }
            if let Some((_, l)) = take(&mut state.listeners, |(a, _)| *a == addr) {
                if l.pool.key == f.pool {
                    listeners.push((addr, l));
                    continue;
                }
                // Same address, other port entry (renamed): reopen below.
                drop(l);
                self.bound.remove(&addr);
            }
            if self.bound.contains(&addr) {
                let owner = self
                    .owner(&addr)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                tracing::warn!(service = %key, %owner, addr = %f.addr, "address already served by another service; not listening");
                failed = true;
                continue;
            }
            match listen(&self.workers, f.protocol, f.addr, pool) {
                Ok(serving) => {
                    tracing::debug!(service = %key, addr = %f.addr, protocol = ?f.protocol, "listening");
                    self.bound.insert(addr);
                    listeners.push((
                        addr,
                        Listener {
                            pool: Arc::clone(pool),
                            _serving: serving,
                        },
                    ));
                }
                Err(e) => {
                    tracing::warn!(service = %key, addr = %f.addr, error = %e, "cannot listen; retrying");
                    failed = true;
                }
            }
        }
        for (addr, l) in state.listeners.drain(..) {
            tracing::debug!(service = %key, addr = %addr.1, "closing listener");
            self.bound.remove(&addr);
            drop(l);
        }
        listeners.shrink_to_fit();
        state.listeners = listeners;
        if failed {
            self.retry.insert(key.clone());
        } else {
            self.retry.remove(key);
        }
        if svc.is_some() {
            self.services.insert(key.clone(), state);
        }
    }
}

/// Opens a frontend: for TCP one socket per worker, each accepted by its
/// own worker's acceptor (all bound before any is handed over, so a
/// failure leaves nothing half-open); for UDP one socket on the first
/// worker, since a flow's state lives with the socket that received it.
fn listen(
    workers: &Workers,
    protocol: Protocol,
    addr: SocketAddr,
    pool: &Arc<Pool>,
) -> std::io::Result<Serving> {
    match protocol {
        Protocol::Tcp => {
            let shared = workers.len() > 1;
            let sockets = (0..workers.len())
                .map(|_| tcp::bind(addr, shared))
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok(Serving::Tcp {
                _sockets: workers.acceptors().listen(sockets, pool),
            })
        }
        Protocol::Udp => {
            let socket = std::net::UdpSocket::bind(addr)?;
            socket.set_nonblocking(true)?;
            let pool = Arc::clone(pool);
            let task = workers.spawn(0, async move {
                match tokio::net::UdpSocket::from_std(socket) {
                    Ok(socket) => udp::serve(socket, pool).await,
                    Err(e) => tracing::warn!(%addr, error = %e, "cannot register a UDP socket"),
                }
            });
            Ok(Serving::Udp {
                _task: AbortOnDrop(task),
            })
        }
        Protocol::Sctp => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "SCTP is not proxied in userspace",
        )),
    }
}

#[cfg(test)]
mod tests;
