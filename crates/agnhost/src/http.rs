//! The HTTP/1.1 accept loop both servers share, with the two ways agnhost
//! stops: at once (connections cut, as Go's `os.Exit`) or gracefully
//! within a deadline (as Go's `http.Server.Shutdown`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A response with its whole body.
pub(crate) type Reply = Response<Full<Bytes>>;

/// How the server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Cut every connection now; in-flight requests get no answer.
    Now,
    /// Stop accepting, let in-flight requests finish for up to this long.
    Graceful(Duration),
}

/// Binds a TCP listener (a bind error names the protocol and address).
pub(crate) async fn bind(
    protocol: &'static str,
    addr: SocketAddr,
) -> Result<TcpListener, crate::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Bind {
            protocol,
            addr,
            source,
        })
}

/// Serves `handler` on `listener` until `stop` resolves, stops as it says
/// and returns its value.
pub(crate) async fn serve<H, Fut, T>(
    listener: TcpListener,
    handler: Arc<H>,
    stop: impl Future<Output = (Stop, T)>,
) -> T
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    // The connection tasks live in this set, so returning (dropping it)
    // aborts whatever is still open: nothing outlives the server.
    let mut connections = JoinSet::new();
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    let (how, value) = loop {
        tokio::select! {
            decided = &mut stop => break decided,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let handler = Arc::clone(&handler);
                    let service = hyper::service::service_fn(move |request| {
                        let reply = handler(request, peer);
                        async move { Ok::<_, Infallible>(reply.await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        // A client that goes away mid-request is not an error worth a line.
                        let _ = connection.await;
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    crate::log::line(format_args!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    drop(listener);
    if let Stop::Graceful(deadline) = how
        && tokio::time::timeout(deadline, graceful.shutdown())
            .await
            .is_err()
    {
        crate::log::line(format_args!(
            "graceful shutdown timed out after {deadline:?}"
        ));
    }
    value
}

/// A `text/plain` reply.
pub(crate) fn text(status: http::StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut reply = Response::new(Full::new(body.into()));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}
