//! TCP: the listening sockets (accepted by `accept`), and each accepted
//! connection: connect to an endpoint with failover, copy both ways until
//! either side closes or the endpoint's drain timeout ends.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::pool::Pool;

/// Binds a listening socket with a deep backlog (connection-per-request
/// load arrives in bursts). `TCP_NODELAY` is set on the listener because
/// Linux copies it to every accepted socket (the child is a clone of the
/// listener's `struct sock`), which saves a `setsockopt` per connection.
/// `shared`: one of several workers' sockets on the same address
/// (`SO_REUSEPORT`; the kernel spreads new connections over them).
///
/// The socket is not yet registered with any runtime: the worker that
/// serves it does that (`TcpListener::from_std`), on its own reactor.
pub(crate) fn bind(addr: SocketAddr, shared: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// One accepted connection: connect to an endpoint (failing over to the
/// next candidate), then copy until done or drained.
pub(crate) async fn handle(pool: Arc<Pool>, mut client: TcpStream, peer: SocketAddr) {
    // `client` has TCP_NODELAY from the listener (see `bind`).
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
    pool.no_endpoint.inc();
    let _ = client.set_zero_linger();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_shared_listeners_coexist() {
        let first =
            TcpListener::from_std(bind("127.0.0.1:0".parse().unwrap(), true).unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        // A second worker's socket on the same address.
        let second = TcpListener::from_std(bind(addr, true).unwrap()).unwrap();
        // Without SO_REUSEPORT the address stays exclusive.
        assert!(bind(addr, false).is_err());
        let _client = TcpStream::connect(addr).await.unwrap();
        let accepted = tokio::select! {
            a = first.accept() => a,
            a = second.accept() => a,
        };
        let (server, _) = accepted.unwrap();
        assert!(
            server.nodelay().unwrap(),
            "the kernel copies TCP_NODELAY from the listener"
        );
    }
}
