//! The proxy's Prometheus metrics and the `/metrics` listener that serves them.
//!
//! The per-endpoint and per-pool series are not registered families: their
//! values are plain atomics inside each endpoint's entry (the connection
//! path touches only those), and a [`Collector`] walks the live pools at
//! scrape time to write them with their labels. With 10k Services × 5
//! endpoints, families of owned label sets cost about 1.7 KB per endpoint
//! (seven series, each with four label strings and an `Arc`'d value) for
//! data that is only read when scraped; the collector costs nothing
//! between scrapes, and the series of an endpoint end with its entry
//! (after its drain), where families kept every label set ever seen. A
//! pool that has not had a connection yet has no entries (see `pool`), so
//! its endpoints have no series until then; its `endpoints` gauge does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::plan::{PoolKey, Scope};
use crate::pool::{EndpointEntry, Pool};

/// A monotonic count read at scrape time.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A level (open connections) read at scrape time.
#[derive(Debug, Default)]
pub(crate) struct Level(AtomicI64);

impl Level {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The series of one endpoint of one pool, held in its entry.
#[derive(Debug, Default)]
pub(crate) struct EndpointMetrics {
    pub active: Level,
    pub connections: Count,
    pub bytes_to_endpoint: Count,
    pub bytes_to_client: Count,
    pub connect_errors: Count,
    pub ejections: Count,
    pub picks: Count,
}

/// Every pool that may still have series: pools register on creation and
/// are forgotten once dropped (by the sync loop and by their last
/// connection).
#[derive(Debug, Default)]
struct Pools(Mutex<Vec<Weak<Pool>>>);

impl Pools {
    fn live(&self) -> Vec<Arc<Pool>> {
        let mut pools = self.0.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|w| w.strong_count() > 0);
        pools.iter().filter_map(Weak::upgrade).collect()
    }
}

/// Every family the proxy exports. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pools: Arc<Pools>,
    /// Table change observed → listeners and pools updated.
    pub sync_duration: Histogram,
    /// Connections accepted with nowhere to go (every attempt failed).
    pub no_endpoint: Counter,
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
        let pools = Arc::new(Pools::default());
        // 50 µs .. ~1.6 s.
        let sync_duration = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        let no_endpoint = Counter::default();
        registry.register_collector(Box::new(PoolSeries(Arc::clone(&pools))));
        registry.register(
            "sync_duration_seconds",
            "From a ServiceTable change to the listeners and pools updated",
            sync_duration.clone(),
        );
        registry.register(
            "unserved_connections",
            "Connections closed because no endpoint could be reached",
            no_endpoint.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            pools,
            sync_duration,
            no_endpoint,
        }
    }

    /// Reports `pool`'s series from now on, while it lives.
    pub(crate) fn track(&self, pool: &Arc<Pool>) {
        let mut pools = self.pools.0.lock().unwrap_or_else(|p| p.into_inner());
        // Amortised clean-up, so churn of services cannot grow the list
        // without bound between scrapes.
        if pools.len() >= 64 && pools.len() == pools.capacity() {
            pools.retain(|w| w.strong_count() > 0);
        }
        pools.push(Arc::downgrade(pool));
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

/// Writes the per-endpoint and per-pool series of the live pools.
#[derive(Debug)]
struct PoolSeries(Arc<Pools>);

/// One endpoint's values at scrape time, summed over the pools that share
/// its labels (a removed Service's pool that still drains connections and
/// the pool of a Service re-created under the same name), so each series
/// appears once.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    active: i64,
    connections: u64,
    bytes_to_endpoint: u64,
    bytes_to_client: u64,
    connect_errors: u64,
    ejections: u64,
    picks: u64,
}

impl Sample {
    fn add(&mut self, m: &EndpointMetrics) {
        self.active += m.active.get();
        self.connections += m.connections.get();
        self.bytes_to_endpoint += m.bytes_to_endpoint.get();
        self.bytes_to_client += m.bytes_to_client.get();
        self.connect_errors += m.connect_errors.get();
        self.ejections += m.ejections.get();
        self.picks += m.picks.get();
    }
}

/// How a family reads its value from a sample.
enum Read {
    Counter(fn(&Sample) -> u64),
    Gauge(fn(&Sample) -> i64),
}

/// The single-valued per-endpoint families: name, help, value.
const ENDPOINT_FAMILIES: [(&str, &str, Read); 5] = [
    (
        "active_connections",
        "Open connections (TCP) or flows (UDP) per endpoint",
        Read::Gauge(|s| s.active),
    ),
    (
        "connections",
        "Connections (TCP) or flows (UDP) per endpoint",
        Read::Counter(|s| s.connections),
    ),
    (
        "connect_errors",
        "Failed connection attempts per endpoint",
        Read::Counter(|s| s.connect_errors),
    ),
    (
        "ejections",
        "Times an endpoint was ejected after a failure (passive health check)",
        Read::Counter(|s| s.ejections),
    ),
    (
        "picks",
        "Times the scheduler chose an endpoint (including failover attempts)",
        Read::Counter(|s| s.picks),
    ),
];

/// A pool's labels, rendered once per scrape.
struct PoolLabels {
    service: String,
    port: String,
    protocol: &'static str,
    scope: &'static str,
}

impl PoolLabels {
    fn of(key: &PoolKey) -> Self {
        PoolLabels {
            service: key.service.to_string(),
            port: port_label(key),
            protocol: key.protocol.as_lower_str(),
            scope: match key.scope {
                Scope::Internal => "internal",
                Scope::External => "external",
            },
        }
    }

    fn endpoint<'a>(&'a self, endpoint: &'a str) -> [(&'static str, &'a str); 4] {
        [
            ("service", self.service.as_str()),
            ("port", self.port.as_str()),
            ("protocol", self.protocol),
            ("endpoint", endpoint),
        ]
    }
}

impl Collector for PoolSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Gather first (sorted, duplicates summed), then write: every
        // family lists the same series in the same order.
        let mut sizes: BTreeMap<PoolKey, usize> = BTreeMap::new();
        let mut samples: BTreeMap<(PoolKey, SocketAddr), Sample> = BTreeMap::new();
        for pool in self.0.live() {
            *sizes.entry(pool.key.clone()).or_default() += pool.size();
            pool.for_each_entry(|e: &Arc<EndpointEntry>| {
                samples
                    .entry((pool.key.clone(), e.addr))
                    .or_default()
                    .add(&e.metrics);
            });
        }
        let labels: BTreeMap<&PoolKey, PoolLabels> =
            sizes.keys().map(|k| (k, PoolLabels::of(k))).collect();
        let series: Vec<(&PoolLabels, String, &Sample)> = samples
            .iter()
            .filter_map(|((key, addr), s)| Some((labels.get(key)?, addr.to_string(), s)))
            .collect();

        for (name, help, read) in &ENDPOINT_FAMILIES {
            let metric_type = match read {
                Read::Counter(_) => MetricType::Counter,
                Read::Gauge(_) => MetricType::Gauge,
            };
            let mut m = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (l, endpoint, s) in &series {
                let set = l.endpoint(endpoint);
                match read {
                    Read::Counter(f) => ConstCounter::new(f(s)).encode(m.encode_family(&set)?)?,
                    Read::Gauge(f) => ConstGauge::new(f(s)).encode(m.encode_family(&set)?)?,
                }
            }
        }

        let mut m = encoder.encode_descriptor(
            "bytes",
            "Bytes proxied per endpoint and direction",
            None,
            MetricType::Counter,
        )?;
        for (l, endpoint, s) in &series {
            let [a, b, c, d] = l.endpoint(endpoint);
            for (direction, v) in [
                ("to_endpoint", s.bytes_to_endpoint),
                ("to_client", s.bytes_to_client),
            ] {
                let set = [a, b, c, d, ("direction", direction)];
                ConstCounter::new(v).encode(m.encode_family(&set)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "endpoints",
            "Endpoints taking new connections per service port and scope",
            None,
            MetricType::Gauge,
        )?;
        for (key, size) in &sizes {
            let Some(l) = labels.get(key) else { continue };
            let set = [
                ("service", l.service.as_str()),
                ("port", l.port.as_str()),
                ("protocol", l.protocol),
                ("scope", l.scope),
            ];
            let size = i64::try_from(*size).unwrap_or(i64::MAX);
            ConstGauge::new(size).encode(m.encode_family(&set)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::plan::Target;
    use switchboard_discovery::{Protocol, ServiceKey};
    use switchboard_lb::Algorithm;

    fn key() -> PoolKey {
        PoolKey {
            service: ServiceKey::new("default", "web"),
            port_name: "http".to_owned(),
            port: 80,
            protocol: Protocol::Tcp,
            scope: Scope::Internal,
        }
    }

    fn pool(metrics: &Metrics, ports: &[u16]) -> Arc<Pool> {
        let targets: Vec<Target> = ports
            .iter()
            .map(|&p| Target {
                addr: SocketAddr::from(([127, 0, 0, 1], p)),
            })
            .collect();
        Pool::new(
            key(),
            Arc::new(Config::default()),
            metrics.clone(),
            Algorithm::RoundRobin,
            None,
            &targets,
        )
    }

    fn line<'a>(text: &'a str, prefix: &str, endpoint: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains(endpoint))
    }

    #[tokio::test]
    async fn series_follow_the_live_pools_and_duplicates_are_summed() {
        let metrics = Metrics::new();
        let first = pool(&metrics, &[1, 2]);
        first.state().entries[0].metrics.connections.inc_by(3);
        first.state().entries[0].metrics.bytes_to_client.inc_by(10);
        let text = metrics.encode();
        let labels = r#"service="default/web",port="http",protocol="tcp",endpoint="127.0.0.1:1""#;
        assert_eq!(
            line(&text, "switchboard_proxy_connections_total{", labels),
            Some(format!("switchboard_proxy_connections_total{{{labels}}} 3").as_str()),
            "{text}"
        );
        assert!(
            text.contains(r#"endpoint="127.0.0.1:1",direction="to_client"} 10"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"switchboard_proxy_endpoints{service="default/web",port="http",protocol="tcp",scope="internal"} 2"#
            ),
            "{text}"
        );

        // A second pool under the same key (a Service re-created while the
        // first still drains): one series each, values summed.
        let second = pool(&metrics, &[1]);
        second.state().entries[0].metrics.connections.inc();
        let text = metrics.encode();
        let ones: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("switchboard_proxy_connections_total{") && l.contains(labels))
            .collect();
        assert_eq!(ones.len(), 1, "{text}");
        assert!(ones[0].ends_with(" 4"), "{text}");

        // Pools that are gone leave no series.
        drop(first);
        drop(second);
        let text = metrics.encode();
        assert!(!text.contains("endpoint="), "{text}");
        assert!(
            text.contains("switchboard_proxy_unserved_connections_total 0"),
            "{text}"
        );
    }
}
