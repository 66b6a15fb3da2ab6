//! UDP: one socket per frontend; each client address is a flow with its own
//! connected socket to the endpoint picked for it. Replies go back through
//! the frontend socket, so the client sees them come from the service
//! address it sent to. A flow ends after `udp_idle_timeout` without
//! traffic either way, when its endpoint drains, or when the endpoint
//! answers with ICMP port unreachable (the endpoint is then ejected).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::pool::{EndpointEntry, Pool};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65536;

struct Flow {
    upstream: Arc<UdpSocket>,
    entry: Arc<EndpointEntry>,
    /// Milliseconds since `epoch` of the last datagram either way.
    last: Arc<AtomicU64>,
}

/// Serves `socket` until the task is aborted.
pub(crate) async fn serve(socket: UdpSocket, pool: Arc<Pool>) {
    let socket = Arc::new(socket);
    let epoch = Instant::now();
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<(SocketAddr, Arc<UdpSocket>)>();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, client) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "UDP receive failed");
                        continue;
                    }
                };
                let now = elapsed_ms(epoch);
                if let std::collections::hash_map::Entry::Vacant(slot) = flows.entry(client) {
                    match open(&pool, client).await {
                        Some(flow) => {
                            tokio::spawn(replies(
                                Arc::clone(&socket),
                                Arc::clone(&pool),
                                client,
                                Arc::clone(&flow.upstream),
                                Arc::clone(&flow.entry),
                                Arc::clone(&flow.last),
                                epoch,
                                ended_tx.clone(),
                            ));
                            slot.insert(flow);
                        }
                        None => {
                            pool.no_endpoint.inc();
                            continue;
                        }
                    }
                }
                let Some(flow) = flows.get(&client) else { continue };
                flow.last.store(now, Ordering::Relaxed);
                match flow.upstream.send(&buf[..n]).await {
                    Ok(sent) => {
                        flow.entry.metrics.bytes_to_endpoint.inc_by(sent as u64);
                    }
                    Err(e) => tracing::debug!(endpoint = %flow.entry.addr, error = %e, "UDP send failed"),
                }
            }
            Some((client, upstream)) = ended_rx.recv() => {
                // Only the flow that ended: the client may have a new one.
                if flows.get(&client).is_some_and(|f| Arc::ptr_eq(&f.upstream, &upstream)) {
                    flows.remove(&client);
                }
            }
        }
    }
}

fn elapsed_ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A new flow for `client`: the first candidate whose socket connects.
/// (A UDP connect only fixes the peer; an endpoint that is down shows up
/// as ICMP port unreachable on the first reply read.)
async fn open(pool: &Arc<Pool>, client: SocketAddr) -> Option<Flow> {
    let choice = pool.choose(client.ip());
    for &i in &choice.candidates {
        let entry = &choice.state.entries[i];
        entry.metrics.picks.inc();
        let local: SocketAddr = match entry.addr.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let upstream = match UdpSocket::bind(local).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a UDP socket for a flow");
                return None;
            }
        };
        if let Err(e) = upstream.connect(entry.addr).await {
            tracing::debug!(endpoint = %entry.addr, error = %e, "UDP connect failed");
            entry.metrics.connect_errors.inc();
            pool.eject(entry);
            continue;
        }
        pool.stick(&choice.state, client.ip(), entry.addr);
        entry.metrics.connections.inc();
        entry.metrics.active.inc();
        return Some(Flow {
            upstream: Arc::new(upstream),
            entry: Arc::clone(entry),
            last: Arc::new(AtomicU64::new(0)),
        });
    }
    None
}

#[allow(clippy::too_many_arguments)] // one flow's parts; a struct would only rename them
async fn replies(
    frontend: Arc<UdpSocket>,
    pool: Arc<Pool>,
    client: SocketAddr,
    upstream: Arc<UdpSocket>,
    entry: Arc<EndpointEntry>,
    last: Arc<AtomicU64>,
    epoch: Instant,
    ended: mpsc::UnboundedSender<(SocketAddr, Arc<UdpSocket>)>,
) {
    let idle = pool.config().udp_idle_timeout;
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let drained = entry.drained();
    tokio::pin!(drained);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let since = elapsed_ms(epoch).saturating_sub(last.load(Ordering::Relaxed));
        if since >= idle_ms {
            break;
        }
        let wait = std::time::Duration::from_millis(idle_ms - since);
        tokio::select! {
            got = tokio::time::timeout(wait, upstream.recv(&mut buf)) => match got {
                Err(_) => continue, // re-check: the client may have sent meanwhile
                Ok(Ok(n)) => {
                    last.store(elapsed_ms(epoch), Ordering::Relaxed);
                    match frontend.send_to(&buf[..n], client).await {
                        Ok(sent) => {
                            entry.metrics.bytes_to_client.inc_by(sent as u64);
                        }
                        Err(e) => tracing::debug!(%client, error = %e, "UDP reply failed"),
                    }
                }
                Ok(Err(e)) => {
                    // ECONNREFUSED: ICMP port unreachable from the endpoint.
                    tracing::debug!(endpoint = %entry.addr, error = %e, "UDP endpoint failed");
                    entry.metrics.connect_errors.inc();
                    pool.eject(&entry);
                    break;
                }
            },
            () = &mut drained => break,
        }
    }
    entry.metrics.active.dec();
    let _ = ended.send((client, upstream));
}
