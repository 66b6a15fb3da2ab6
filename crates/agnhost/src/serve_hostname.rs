//! `agnhost serve-hostname`: answers the hostname over HTTP (any path),
//! raw TCP (write it, close) or UDP (one reply per datagram).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;

use crate::http::{Stop, text};
use crate::{Error, log};

/// What `serve-hostname` serves and where.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on (the pod IP, or unspecified).
    pub ip: IpAddr,
    /// The port for every protocol (0 picks one per protocol).
    pub port: u16,
    /// `--tcp`: raw TCP.
    pub tcp: bool,
    /// `--udp`: raw UDP.
    pub udp: bool,
    /// `--http`: HTTP (cannot be combined with `tcp` or `udp`).
    pub http: bool,
    /// `--close`: `Connection: close` on every HTTP response.
    pub close: bool,
    /// What is served.
    pub hostname: String,
}

/// A bound serve-hostname server; [`Server::run`] serves it.
pub struct Server {
    http: Option<TcpListener>,
    tcp: Option<TcpListener>,
    udp: Option<UdpSocket>,
    close: bool,
    hostname: Arc<str>,
    port: u16,
}

impl Server {
    /// Checks the flags and binds the listeners they ask for.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        if config.http && (config.tcp || config.udp) {
            return Err(Error::InvalidFlags {
                reason: "can't serve TCP/UDP mode and HTTP mode at the same time (add --http=false)",
            });
        }
        let addr = SocketAddr::new(config.ip, config.port);
        let tcp = if config.tcp {
            Some(crate::http::bind("TCP", addr).await?)
        } else {
            None
        };
        let udp = if config.udp {
            Some(UdpSocket::bind(addr).await.map_err(|source| Error::Bind {
                protocol: "UDP",
                addr,
                source,
            })?)
        } else {
            None
        };
        let http = if config.http {
            Some(crate::http::bind("HTTP", addr).await?)
        } else {
            None
        };
        Ok(Server {
            http,
            tcp,
            udp,
            close: config.close,
            hostname: Arc::from(config.hostname),
            port: config.port,
        })
    }

    /// The bound HTTP address, if HTTP is served.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound raw TCP address, if TCP is served.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound UDP address, if UDP is served.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Serves until `terminate` resolves, then returns exit code 0. (The
    /// real image then sleeps 60 s "awaiting pod deletion"; here the agent
    /// sends SIGTERM only at deletion, so leaving at once is the same end.)
    pub async fn run(self, terminate: impl Future<Output = ()>) -> u8 {
        let mut tasks = JoinSet::new();
        if let Some(listener) = self.tcp {
            tasks.spawn(serve_tcp(listener, Arc::clone(&self.hostname)));
        }
        if let Some(socket) = self.udp {
            tasks.spawn(serve_udp(socket, Arc::clone(&self.hostname)));
        }
        log::line(format_args!("Serving on port {}.", self.port));
        let code = match self.http {
            Some(listener) => {
                let hostname = Arc::clone(&self.hostname);
                let close = self.close;
                let handler = Arc::new(move |_request, peer: SocketAddr| {
                    let hostname = Arc::clone(&hostname);
                    async move {
                        log::line(format_args!("HTTP request from {peer}"));
                        let mut reply = text(StatusCode::OK, hostname.to_string());
                        if close {
                            reply
                                .headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        reply
                    }
                });
                let stop = async move {
                    terminate.await;
                    (Stop::Now, 0)
                };
                crate::http::serve(listener, handler, stop).await
            }
            None => {
                terminate.await;
                0
            }
        };
        log::line(format_args!("Shutting down after receiving signal."));
        tasks.abort_all();
        code
    }
}

async fn serve_tcp(listener: TcpListener, hostname: Arc<str>) {
    use tokio::io::AsyncWriteExt;
    loop {
        match listener.accept().await {
            Ok((mut stream, peer)) => {
                log::line(format_args!("TCP request from {peer}"));
                let hostname = Arc::clone(&hostname);
                tokio::spawn(async move {
                    // A client that left early is its own business.
                    let _ = stream.write_all(hostname.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            Err(e) => {
                log::line(format_args!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_udp(socket: UdpSocket, hostname: Arc<str>) {
    // The real image reads into 16 bytes: what is sent does not matter.
    let mut buf = [0u8; 16];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((_, peer)) => {
                log::line(format_args!("UDP request from {peer}"));
                if let Err(e) = socket.send_to(hostname.as_bytes(), peer).await {
                    log::line(format_args!("failed to answer UDP client {peer}: {e}"));
                }
            }
            Err(e) => {
                log::line(format_args!("UDP receive failed: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
