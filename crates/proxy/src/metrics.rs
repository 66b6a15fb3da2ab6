//! The proxy's Prometheus metrics and the `/metrics` listener that serves them.
//!
//! Handles for one endpoint are looked up once per table sync and kept with
//! the endpoint, so the connection path touches only atomics.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::plan::PoolKey;

/// Labels of a per-endpoint series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `namespace/name`.
    pub service: String,
    /// Service port: its name, else its number.
    pub port: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `address:port` of the endpoint.
    pub endpoint: String,
}

/// Labels of a per-pool series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PoolLabels {
    /// `namespace/name`.
    pub service: String,
    /// Service port: its name, else its number.
    pub port: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `internal` (ClusterIP) or `external` (NodePort, LB, external IPs).
    pub scope: &'static str,
}

/// Labels of a byte counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ByteLabels {
    /// `namespace/name`.
    pub service: String,
    /// Service port: its name, else its number.
    pub port: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `address:port` of the endpoint.
    pub endpoint: String,
    /// `to_endpoint` or `to_client`.
    pub direction: &'static str,
}

/// Every family the proxy exports. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    active: Family<EndpointLabels, Gauge>,
    connections: Family<EndpointLabels, Counter>,
    bytes: Family<ByteLabels, Counter>,
    connect_errors: Family<EndpointLabels, Counter>,
    ejections: Family<EndpointLabels, Counter>,
    picks: Family<EndpointLabels, Counter>,
    endpoints: Family<PoolLabels, Gauge>,
    /// Table change observed → listeners and pools updated.
    pub sync_duration: Histogram,
    /// Connections accepted with nowhere to go (every attempt failed).
    pub no_endpoint: Counter,
}

/// The series of one endpoint of one pool.
#[derive(Debug, Clone, Default)]
pub(crate) struct EndpointMetrics {
    pub active: Gauge,
    pub connections: Counter,
    pub bytes_to_endpoint: Counter,
    pub bytes_to_client: Counter,
    pub connect_errors: Counter,
    pub ejections: Counter,
    pub picks: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh families in their own registry, named `switchboard_proxy_*`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard_proxy");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            active: Family::default(),
            connections: Family::default(),
            bytes: Family::default(),
            connect_errors: Family::default(),
            ejections: Family::default(),
            picks: Family::default(),
            endpoints: Family::default(),
            // 50 µs .. ~1.6 s.
            sync_duration: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            no_endpoint: Counter::default(),
        };
        registry.register(
            "active_connections",
            "Open connections (TCP) or flows (UDP) per endpoint",
            m.active.clone(),
        );
        registry.register(
            "connections",
            "Connections (TCP) or flows (UDP) per endpoint",
            m.connections.clone(),
        );
        registry.register(
            "bytes",
            "Bytes proxied per endpoint and direction",
            m.bytes.clone(),
        );
        registry.register(
            "connect_errors",
            "Failed connection attempts per endpoint",
            m.connect_errors.clone(),
        );
        registry.register(
            "ejections",
            "Times an endpoint was ejected after a failure (passive health check)",
            m.ejections.clone(),
        );
        registry.register(
            "picks",
            "Times the scheduler chose an endpoint (including failover attempts)",
            m.picks.clone(),
        );
        registry.register(
            "endpoints",
            "Endpoints taking new connections per service port and scope",
            m.endpoints.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "From a ServiceTable change to the listeners and pools updated",
            m.sync_duration.clone(),
        );
        registry.register(
            "unserved_connections",
            "Connections closed because no endpoint could be reached",
            m.no_endpoint.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    pub(crate) fn pool_size(&self, pool: &PoolKey) -> Gauge {
        self.endpoints.get_or_create_owned(&PoolLabels {
            service: pool.service.to_string(),
            port: port_label(pool),
            protocol: pool.protocol.as_lower_str().to_owned(),
            scope: match pool.scope {
                crate::plan::Scope::Internal => "internal",
                crate::plan::Scope::External => "external",
            },
        })
    }

    pub(crate) fn endpoint(&self, pool: &PoolKey, endpoint: SocketAddr) -> EndpointMetrics {
        let labels = EndpointLabels {
            service: pool.service.to_string(),
            port: port_label(pool),
            protocol: pool.protocol.as_lower_str().to_owned(),
            endpoint: endpoint.to_string(),
        };
        let bytes = |direction| ByteLabels {
            service: labels.service.clone(),
            port: labels.port.clone(),
            protocol: labels.protocol.clone(),
            endpoint: labels.endpoint.clone(),
            direction,
        };
        EndpointMetrics {
            active: self.active.get_or_create_owned(&labels),
            connections: self.connections.get_or_create_owned(&labels),
            bytes_to_endpoint: self.bytes.get_or_create_owned(&bytes("to_endpoint")),
            bytes_to_client: self.bytes.get_or_create_owned(&bytes("to_client")),
            connect_errors: self.connect_errors.get_or_create_owned(&labels),
            ejections: self.ejections.get_or_create_owned(&labels),
            picks: self.picks.get_or_create_owned(&labels),
        }
    }

    /// The text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Serves `GET /metrics` on `listener` until dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let metrics = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        if req.uri().path() == "/metrics" {
                            http::Response::builder()
                                .header(
                                    http::header::CONTENT_TYPE,
                                    "text/plain; version=0.0.4; charset=utf-8",
                                )
                                .body(Full::new(Bytes::from(metrics.encode())))
                        } else {
                            http::Response::builder()
                                .status(http::StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"only /metrics is served\n")))
                        }
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "metrics connection ended with an error");
                }
            });
        }
    }
}

fn port_label(pool: &PoolKey) -> String {
    if pool.port_name.is_empty() {
        pool.port.to_string()
    } else {
        pool.port_name.clone()
    }
}
