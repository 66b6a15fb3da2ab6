//! TCP: accept on a frontend, connect to an endpoint with failover, copy
//! both ways until either side closes or the endpoint's drain timeout ends.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::pool::Pool;

/// Binds a listening socket with a deep backlog (connection-per-request
/// load arrives in bursts).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Accepts until the task is aborted; each connection runs in its own task,
/// so aborting this one (closing the listener) leaves them open.
pub(crate) async fn serve(listener: TcpListener, pool: Arc<Pool>) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                tokio::spawn(handle(Arc::clone(&pool), client, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, service = %pool.key.service, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn handle(pool: Arc<Pool>, mut client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let choice = pool.choose(peer.ip());
    let connect_timeout = pool.config().connect_timeout;
    for &i in &choice.candidates {
        let entry = &choice.state.entries[i];
        entry.metrics.picks.inc();
        let started = Instant::now();
        let upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(entry.addr))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(endpoint = %entry.addr, error = %e, "connect failed; trying the next endpoint");
                entry.metrics.connect_errors.inc();
                pool.eject(entry);
                continue;
            }
            Err(_) => {
                tracing::debug!(endpoint = %entry.addr, "connect timed out; trying the next endpoint");
                entry.metrics.connect_errors.inc();
                pool.eject(entry);
                continue;
            }
        };
        let mut upstream = upstream;
        let _ = upstream.set_nodelay(true);
        let guard = choice.state.balancer.start(i);
        guard.observe_latency(started.elapsed());
        pool.healthy(entry);
        pool.stick(&choice.state, peer.ip(), entry.addr);
        let entry = Arc::clone(entry);
        // The connection no longer needs the snapshot; a sync may free it.
        drop(choice);
        entry.metrics.connections.inc();
        entry.metrics.active.inc();
        let drained = entry.drained();
        let size = pool.config().buffer_size;
        tokio::select! {
            copied = crate::copy::bidirectional(&mut client, &mut upstream, size) => {
                if let Ok((to_endpoint, to_client)) = copied {
                    entry.metrics.bytes_to_endpoint.inc_by(to_endpoint);
                    entry.metrics.bytes_to_client.inc_by(to_client);
                }
            }
            () = drained => {
                tracing::debug!(endpoint = %entry.addr, "drain timeout: closing the connection");
            }
        }
        entry.metrics.active.dec();
        drop(guard);
        return;
    }
    // Nowhere to go: reset, so the client sees a failure at once rather
    // than an empty reply.
    pool.metrics.no_endpoint.inc();
    let _ = client.set_zero_linger();
}
