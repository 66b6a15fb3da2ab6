//! The DNS server: UDP and TCP listeners on their own runtime, a task that
//! follows the [`ServiceTable`] and publishes zone snapshots, forwarding to
//! the upstreams, and the metrics endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_discovery::ServiceTable;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use crate::cache::AnswerCache;
use crate::fast;
use crate::forward::Upstreams;
use crate::handler::{self, Action, Options, Transport};
use crate::metrics::{Metrics, Recorder};
use crate::zone::{self, Builder, Zone};
use hickory_proto::op::ResponseCode;

/// How long a TCP connection may stay idle between queries (RFC 7766
/// suggests seconds; CoreDNS uses 10 s).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Most TCP connections served at once; more wait in the accept queue.
const MAX_TCP_CONNECTIONS: usize = 1024;

/// Configuration of the DNS server.
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP and TCP address (port 0 picks a free port, the same for both).
    pub listen: SocketAddr,
    /// Threads of the server's runtime; with 1 every socket is served by
    /// one thread (the benchmark's single worker).
    pub threads: usize,
    /// Upstream resolvers for names outside the zone; empty disables
    /// forwarding (such names get REFUSED).
    pub upstreams: Vec<SocketAddr>,
    /// Time allowed to each upstream.
    pub upstream_timeout: Duration,
    /// Most upstream answers cached.
    pub upstream_cache_size: usize,
    /// Most zone answers cached per worker (0 disables the answer cache).
    pub answer_cache_size: usize,
    /// Largest UDP response and advertised EDNS payload.
    pub max_udp_payload: u16,
    /// Address of the metrics endpoint (`GET /metrics`), if any.
    pub metrics_listen: Option<SocketAddr>,
    /// The zone.
    pub zone: zone::Settings,
}

impl Config {
    /// Defaults for everything but the addresses and the zone.
    pub fn new(listen: SocketAddr, zone: zone::Settings) -> Config {
        Config {
            listen,
            threads: 1,
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
            upstream_cache_size: 10_000,
            answer_cache_size: 10_000,
            max_udp_payload: handler::MAX_UDP_PAYLOAD,
            metrics_listen: None,
            zone,
        }
    }
}

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen for DNS on {addr} ({proto}): {source}{hint}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// `udp`, `tcp` or `metrics http`.
        proto: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
        /// What usually causes this error.
        hint: &'static str,
    },
    /// The zone could not be created.
    #[error(transparent)]
    Zone(#[from] zone::Error),
    /// The server's runtime or thread could not be started.
    #[error("cannot start the DNS server's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The server's thread panicked.
    #[error("the DNS server thread panicked")]
    Panicked,
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        }
        std::io::ErrorKind::AddrInUse => {
            " (another process listens there, e.g. a local resolver such as \
             systemd-resolved or dnsmasq, or another switchboard)"
        }
        std::io::ErrorKind::AddrNotAvailable => " (the address is not on this machine)",
        _ => "",
    }
}

/// Bound listeners, not yet serving.
#[derive(Debug)]
pub struct Server {
    config: Config,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    metrics: Option<std::net::TcpListener>,
}

impl Server {
    /// Binds the UDP and TCP listeners (and the metrics listener).
    pub fn bind(config: Config) -> Result<Server, Error> {
        let (udp, tcp) = bind_pair(config.listen)?;
        let metrics = match config.metrics_listen {
            Some(addr) => {
                Some(
                    std::net::TcpListener::bind(addr).map_err(|source| Error::Bind {
                        addr,
                        proto: "metrics http",
                        hint: hint(&source),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Ok(Server {
            config,
            udp,
            tcp,
            metrics,
        })
    }

    /// The address served (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound socket has an address.
        self.udp.local_addr().unwrap_or(self.config.listen)
    }

    /// The metrics endpoint's address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Starts serving on a thread of its own; the zone follows `table`.
    pub fn spawn(self, table: watch::Receiver<Arc<ServiceTable>>) -> Result<Running, Error> {
        let addr = self.local_addr();
        let metrics_addr = self.metrics_addr();
        let builder = Builder::new(&self.config.zone)?;
        let runtime = if self.config.threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(self.config.threads)
                .thread_name("dns")
                .enable_all()
                .build()
        }
        .map_err(Error::Runtime)?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let metrics = Arc::new(Metrics::new());
        let shared = metrics.clone();
        std::thread::Builder::new()
            .name("dns".into())
            .spawn(move || {
                let result = runtime.block_on(async move {
                    tokio::select! {
                        r = self.serve(builder, table, shared) => r,
                        _ = stop_rx => Ok(()),
                    }
                });
                let _ = done_tx.send(result);
            })
            .map_err(Error::Runtime)?;
        Ok(Running {
            addr,
            metrics_addr,
            metrics,
            done: done_rx,
            stop: Some(stop_tx),
        })
    }

    async fn serve(
        self,
        builder: Builder,
        table: watch::Receiver<Arc<ServiceTable>>,
        metrics: Arc<Metrics>,
    ) -> Result<(), Error> {
        let Server {
            config,
            udp,
            tcp,
            metrics: metrics_listener,
        } = self;
        let listen = udp.local_addr().unwrap_or(config.listen);
        let upstreams: Vec<SocketAddr> = config
            .upstreams
            .iter()
            .copied()
            .filter(|u| {
                // Never forward to ourselves: that is a loop.
                let ours =
                    *u == listen || (u.port() == listen.port() && listen.ip().is_unspecified());
                if ours {
                    tracing::warn!(upstream = %u, "skipping an upstream that is this server");
                }
                !ours
            })
            .collect();
        let opts = Options {
            recursion: !upstreams.is_empty(),
            max_udp_payload: config.max_udp_payload,
        };
        let shared = Arc::new(Shared {
            upstreams: Upstreams::new(
                upstreams,
                config.upstream_timeout,
                config.upstream_cache_size,
            ),
            opts,
            answer_cache_size: config.answer_cache_size,
            metrics: metrics.clone(),
        });
        let bind_err = |proto, source: std::io::Error| Error::Bind {
            addr: listen,
            proto,
            hint: hint(&source),
            source,
        };
        udp.set_nonblocking(true).map_err(|e| bind_err("udp", e))?;
        tcp.set_nonblocking(true).map_err(|e| bind_err("tcp", e))?;
        let udp = Arc::new(tokio::net::UdpSocket::from_std(udp).map_err(|e| bind_err("udp", e))?);
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| bind_err("tcp", e))?;

        let (zone_tx, zone_rx) = watch::channel(Arc::new(Snapshot {
            zone: builder.zone().clone(),
            synced: false,
        }));
        tokio::spawn(follow(table, builder, zone_tx, metrics.clone()));
        if let Some(l) = metrics_listener {
            l.set_nonblocking(true)
                .map_err(|e| bind_err("metrics http", e))?;
            let l =
                tokio::net::TcpListener::from_std(l).map_err(|e| bind_err("metrics http", e))?;
            tokio::spawn(crate::metrics::serve(l, metrics.clone()));
        }
        tokio::spawn(accept_tcp(tcp, zone_rx.clone(), shared.clone()));
        // One UDP loop per runtime thread, all on the same socket.
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..config.threads.max(1) {
            #[cfg(target_os = "linux")]
            loops.spawn(batch::udp_loop(
                udp.clone(),
                zone_rx.clone(),
                shared.clone(),
            ));
            #[cfg(not(target_os = "linux"))]
            loops.spawn(udp_loop(udp.clone(), zone_rx.clone(), shared.clone()));
        }
        while let Some(done) = loops.join_next().await {
            if let Ok(Err(e)) = done {
                return Err(bind_err("udp", e));
            }
        }
        Ok(())
    }
}

fn bind_pair(listen: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), Error> {
    let err = |proto, source: std::io::Error| Error::Bind {
        addr: listen,
        proto,
        hint: hint(&source),
        source,
    };
    // With port 0 the TCP port must equal the UDP port picked; if another
    // process holds that TCP port, pick again.
    let attempts = if listen.port() == 0 { 8 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = udp_socket(listen).map_err(|e| err("udp", e))?;
        let addr = udp.local_addr().map_err(|e| err("udp", e))?;
        match tcp_listener(addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(err(
        "tcp",
        last.unwrap_or_else(|| std::io::Error::other("no attempt made")),
    ))
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // A deep receive queue absorbs bursts (dnsperf keeps 100 queries in
    // flight) instead of dropping them; the kernel caps it at rmem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The address served.
    pub addr: SocketAddr,
    /// The metrics endpoint's address.
    pub metrics_addr: Option<SocketAddr>,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    done: tokio::sync::oneshot::Receiver<Result<(), Error>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// Resolves when the server stops (it only stops on an error or
    /// [`Running::stop`]).
    pub async fn wait(&mut self) -> Result<(), Error> {
        match (&mut self.done).await {
            Ok(r) => r,
            Err(_) => Err(Error::Panicked),
        }
    }

    /// Asks the server to stop.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What every worker shares.
#[derive(Debug)]
struct Shared {
    upstreams: Upstreams,
    opts: Options,
    answer_cache_size: usize,
    metrics: Arc<Metrics>,
}

/// A published zone.
#[derive(Debug)]
struct Snapshot {
    zone: Zone,
    synced: bool,
}

/// Follows the table: applies each snapshot to the builder and publishes
/// the zone when something changed. No polling: it wakes on `changed()`.
async fn follow(
    mut table: watch::Receiver<Arc<ServiceTable>>,
    mut builder: Builder,
    zone_tx: watch::Sender<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
) {
    let mut synced = false;
    loop {
        let snapshot = table.borrow_and_update().clone();
        let touched = builder.apply(&snapshot);
        if touched > 0 || snapshot.synced != synced {
            synced = snapshot.synced;
            let zone = builder.zone().clone();
            metrics.zone_published(zone.len());
            zone_tx.send_replace(Arc::new(Snapshot { zone, synced }));
        }
        if table.changed().await.is_err() {
            // Discovery stopped: keep serving the last zone (its owner
            // reports the failure).
            tracing::warn!("the service table closed; DNS keeps serving the last zone");
            return;
        }
    }
}

/// A worker's state: its current zone, answer cache and metric handles.
struct Worker {
    zone_rx: watch::Receiver<Arc<Snapshot>>,
    snapshot: Arc<Snapshot>,
    cache: AnswerCache,
    recorder: Recorder,
    shared: Arc<Shared>,
}

impl Worker {
    fn new(mut zone_rx: watch::Receiver<Arc<Snapshot>>, shared: Arc<Shared>) -> Worker {
        let snapshot = zone_rx.borrow_and_update().clone();
        Worker {
            zone_rx,
            snapshot,
            cache: AnswerCache::new(shared.answer_cache_size),
            recorder: Recorder::new(shared.metrics.clone()),
            shared,
        }
    }

    /// Answers `packet` into `out`; returns a forward to run when the zone
    /// cannot answer alone, or false in `Ok` when nothing is to be sent.
    fn answer(
        &mut self,
        packet: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Result<bool, Box<handler::Forward>> {
        let started = Instant::now();
        // An atomic load: a new zone only costs when one was published.
        if self.zone_rx.has_changed().unwrap_or(false) {
            self.snapshot = self.zone_rx.borrow_and_update().clone();
            self.cache.clear();
        }
        let tcp = transport == Transport::Tcp;
        let snap = &self.snapshot;
        // The commonest query first: it costs no more than a cache hit and
        // keeps the cache for the others (see `fast`).
        if let Some(qtype) = fast::answer(
            &snap.zone,
            snap.synced,
            packet,
            transport,
            self.shared.opts,
            out,
        ) {
            self.recorder.query(
                Some(qtype),
                ResponseCode::NoError,
                tcp,
                started.elapsed(),
                false,
            );
            return Ok(true);
        }
        if transport == Transport::Udp
            && let Some(hit) = self.cache.get(packet, out)
        {
            self.recorder
                .query(hit.qtype, hit.rcode, tcp, started.elapsed(), true);
            return Ok(true);
        }
        match handler::handle(&snap.zone, snap.synced, packet, transport, self.shared.opts) {
            Action::Reply(response) => {
                if transport == Transport::Udp {
                    self.cache.insert(packet, &response);
                }
                self.recorder.query(
                    response.qtype,
                    response.rcode,
                    tcp,
                    started.elapsed(),
                    false,
                );
                out.clear();
                out.extend_from_slice(&response.bytes);
                Ok(true)
            }
            Action::Forward(f) => Err(f),
            Action::Drop => Ok(false),
        }
    }
}

/// Runs a forward and returns the response bytes.
async fn forward(shared: &Shared, f: Box<handler::Forward>) -> Vec<u8> {
    let started = Instant::now();
    let metrics = &shared.metrics;
    let resolved = shared
        .upstreams
        .resolve(&f.name, f.qtype, f.transport == Transport::Tcp, |e| {
            if let Some(u) = upstream_of(e) {
                metrics.upstream_error(u);
            }
        })
        .await;
    let message = match resolved {
        Ok(r) => {
            metrics.upstream_cache(r.cached);
            Some(r.message)
        }
        Err(e) => {
            metrics.upstream_cache(false);
            tracing::debug!(name = %f.name, error = %e, "forwarding failed");
            None
        }
    };
    let response = handler::finish_forward(&f, message.as_ref(), shared.opts);
    metrics.forwarded(
        response.qtype,
        response.rcode,
        f.transport == Transport::Tcp,
        started.elapsed(),
    );
    response.bytes
}

fn upstream_of(e: &crate::forward::Error) -> Option<SocketAddr> {
    use crate::forward::Error as E;
    match e {
        E::NoUpstream => None,
        E::Timeout { upstream, .. }
        | E::Io { upstream, .. }
        | E::Invalid { upstream, .. }
        | E::Failed { upstream, .. } => Some(*upstream),
    }
}

#[cfg_attr(target_os = "linux", allow(dead_code))]
async fn udp_loop(
    socket: Arc<tokio::net::UdpSocket>,
    zone_rx: watch::Receiver<Arc<Snapshot>>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let mut worker = Worker::new(zone_rx, shared.clone());
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP port unreachable from an earlier send shows up here on
            // some systems; it is about another client, not this socket.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        match worker.answer(&buf[..n], Transport::Udp, &mut out) {
            Ok(true) => {
                if let Err(e) = socket.send_to(&out, peer).await {
                    tracing::debug!(%peer, error = %e, "cannot send a DNS answer");
                }
            }
            Ok(false) => {}
            Err(f) => {
                let socket = socket.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let bytes = forward(&shared, f).await;
                    let _ = socket.send_to(&bytes, peer).await;
                });
            }
        }
    }
}

async fn accept_tcp(
    listener: tokio::net::TcpListener,
    zone_rx: watch::Receiver<Arc<Snapshot>>,
    shared: Arc<Shared>,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let worker = Worker::new(zone_rx.clone(), shared.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = serve_tcp(stream, worker, shared).await;
        });
    }
}

/// Serves length-prefixed queries on one connection, in order, until the
/// client closes or stays idle for [`TCP_IDLE`].
async fn serve_tcp(
    mut stream: tokio::net::TcpStream,
    mut worker: Worker,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(4096);
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let bytes = match worker.answer(&packet, Transport::Tcp, &mut out) {
            Ok(true) => std::mem::take(&mut out),
            Ok(false) => continue,
            Err(f) => forward(&shared, f).await,
        };
        let Ok(n) = u16::try_from(bytes.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
        out = bytes;
    }
}

/// The UDP loop on Linux: queries are received in batches with one
/// `recvmmsg` and answered with one `sendmmsg`, as knot does; under load
/// that divides the system calls per query by the batch size, and with a
/// single query waiting it costs the same as `recv_from`/`send_to`.
#[cfg(target_os = "linux")]
mod batch {
    use std::io::{IoSlice, IoSliceMut};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd as _;
    use std::sync::Arc;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage};
    use tokio::io::Interest;
    use tokio::sync::watch;

    use super::{Shared, Snapshot, Transport, Worker, forward};

    /// Datagrams per system call.
    const BATCH: usize = 32;
    /// Receive buffer per datagram: a DNS query over UDP fits easily; a
    /// longer datagram is cut and then answered FORMERR.
    const MAX_QUERY: usize = 4096;

    fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
    }

    pub(super) async fn udp_loop(
        socket: Arc<tokio::net::UdpSocket>,
        zone_rx: watch::Receiver<Arc<Snapshot>>,
        shared: Arc<Shared>,
    ) -> std::io::Result<()> {
        let mut worker = Worker::new(zone_rx, shared.clone());
        let mut bufs = vec![[0u8; MAX_QUERY]; BATCH];
        let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
        let mut received: Vec<(usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
        let fd = socket.as_raw_fd();
        loop {
            socket.readable().await?;
            received.clear();
            // The headers hold raw pointers (not Send), so they live only
            // inside this synchronous call.
            let got = socket.try_io(Interest::READABLE, || {
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                let results = nix::sys::socket::recvmmsg(
                    fd,
                    &mut headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                )
                .map_err(std::io::Error::from)?;
                for r in results {
                    if let Some(addr) = r.address {
                        received.push((r.bytes, addr));
                    }
                }
                Ok(())
            });
            match got {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            }
            let mut replies: Vec<usize> = Vec::with_capacity(received.len());
            for (i, (n, addr)) in received.iter().enumerate() {
                let packet = &bufs[i][..(*n).min(MAX_QUERY)];
                match worker.answer(packet, Transport::Udp, &mut outs[i]) {
                    Ok(true) => replies.push(i),
                    Ok(false) => {}
                    Err(f) => {
                        let Some(peer) = to_std(addr) else { continue };
                        let socket = socket.clone();
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            let bytes = forward(&shared, f).await;
                            let _ = socket.send_to(&bytes, peer).await;
                        });
                    }
                }
            }
            if replies.is_empty() {
                continue;
            }
            let sent = socket.try_io(Interest::WRITABLE, || {
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(replies.len(), None);
                let slices: Vec<[IoSlice<'_>; 1]> =
                    replies.iter().map(|&i| [IoSlice::new(&outs[i])]).collect();
                let addrs: Vec<Option<SockaddrStorage>> =
                    replies.iter().map(|&i| Some(received[i].1)).collect();
                nix::sys::socket::sendmmsg(
                    fd,
                    &mut headers,
                    slices.iter(),
                    addrs,
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(|r| r.count())
                .map_err(std::io::Error::from)
            });
            let done = sent.unwrap_or(0);
            // What the batch call did not send (full socket buffer, or an
            // error on one datagram) goes one by one.
            for &i in &replies[done.min(replies.len())..] {
                if let Some(peer) = to_std(&received[i].1)
                    && let Err(e) = socket.send_to(&outs[i], peer).await
                {
                    tracing::debug!(%peer, error = %e, "cannot send a DNS answer");
                }
            }
        }
    }
}
