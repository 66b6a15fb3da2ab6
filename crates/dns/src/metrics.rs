//! Prometheus metrics of the DNS server, and the HTTP endpoint serving them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use http_body_util::Full;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a query counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueryLabels {
    /// Record type asked for (`A`, `SRV`, ...; `none` when unreadable).
    pub qtype: String,
    /// Response code sent (`NOERROR`, `NXDOMAIN`, ...).
    pub rcode: String,
    /// `udp` or `tcp`.
    pub proto: String,
}

/// Labels of an upstream error counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The upstream's address.
    pub upstream: String,
}

/// Every metric of the DNS server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    queries: Family<QueryLabels, Counter>,
    latency: Histogram,
    answer_cache_hits: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    upstream_errors: Family<UpstreamLabels, Counter>,
    zone_services: Gauge,
    zone_updates: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under `switchboard_dns_`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchboard_dns");
        let queries = Family::<QueryLabels, Counter>::default();
        registry.register(
            "queries",
            "Queries answered, by record type, response code and transport",
            queries.clone(),
        );
        // 10 us .. ~0.3 s: zone answers take microseconds, forwarded ones
        // milliseconds.
        let latency = Histogram::new(exponential_buckets(0.000_01, 2.0, 16));
        registry.register(
            "query_duration_seconds",
            "Time from receiving a query to having its response, excluding the send",
            latency.clone(),
        );
        let answer_cache_hits = Counter::default();
        registry.register(
            "answer_cache_hits",
            "Zone answers served from a worker's answer cache",
            answer_cache_hits.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "upstream_cache_hits",
            "Forwarded queries answered from the upstream answer cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "upstream_cache_misses",
            "Forwarded queries that went to an upstream",
            cache_misses.clone(),
        );
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream exchanges that failed (timeout, socket error, SERVFAIL/REFUSED, invalid answer)",
            upstream_errors.clone(),
        );
        let zone_services = Gauge::default();
        registry.register(
            "zone_services",
            "Services in the zone",
            zone_services.clone(),
        );
        let zone_updates = Counter::default();
        registry.register(
            "zone_updates",
            "Zone snapshots published after a ServiceTable change",
            zone_updates.clone(),
        );
        Metrics {
            registry,
            queries,
            latency,
            answer_cache_hits,
            cache_hits,
            cache_misses,
            upstream_errors,
            zone_services,
            zone_updates,
        }
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A query counter handle (cheap to keep; see [`Recorder`]).
    pub fn query_counter(
        &self,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        tcp: bool,
    ) -> Counter {
        self.queries
            .get_or_create(&QueryLabels {
                qtype: qtype.map_or_else(|| "none".to_string(), |t| t.to_string()),
                rcode: rcode_name(rcode),
                proto: if tcp { "tcp" } else { "udp" }.to_string(),
            })
            .clone()
    }

    /// Counts one forwarded query and its handling time (upstream included).
    pub fn forwarded(
        &self,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        tcp: bool,
        elapsed: Duration,
    ) {
        self.query_counter(qtype, rcode, tcp).inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Counts one upstream failure.
    pub fn upstream_error(&self, upstream: std::net::SocketAddr) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_string(),
            })
            .inc();
    }

    /// Counts an upstream cache hit or miss.
    pub fn upstream_cache(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }

    /// Records a published zone of `services` services.
    pub fn zone_published(&self, services: usize) {
        self.zone_updates.inc();
        self.zone_services
            .set(i64::try_from(services).unwrap_or(i64::MAX));
    }
}

/// The mnemonic dig prints (`NOERROR`, `NXDOMAIN`, ...).
fn rcode_name(rcode: ResponseCode) -> String {
    match u16::from(rcode) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        n => format!("RCODE{n}"),
    }
}

/// A worker's view of the metrics: keeps the counter handles it has used, so
/// counting a query is an atomic add, not a label lookup.
#[derive(Debug)]
pub struct Recorder {
    metrics: Arc<Metrics>,
    counters: HashMap<(Option<RecordType>, u16, bool), Counter>,
}

impl Recorder {
    /// A recorder over `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Recorder {
        Recorder {
            metrics,
            counters: HashMap::new(),
        }
    }

    /// The shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Counts one query and its handling time.
    pub fn query(
        &mut self,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        tcp: bool,
        elapsed: Duration,
        answer_cache_hit: bool,
    ) {
        let metrics = &self.metrics;
        self.counters
            .entry((qtype, u16::from(rcode), tcp))
            .or_insert_with(|| metrics.query_counter(qtype, rcode, tcp))
            .inc();
        self.metrics.latency.observe(elapsed.as_secs_f64());
        if answer_cache_hit {
            self.metrics.answer_cache_hits.inc();
        }
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let response = if req.uri().path() == "/metrics" {
                            hyper::Response::builder()
                                .header(
                                    "content-type",
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(Full::new(Bytes::from(metrics.encode())))
                        } else {
                            hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from_static(b"not found: try /metrics\n")))
                        };
                        // The builder is given only valid static parts.
                        Ok::<_, Infallible>(response.unwrap_or_default())
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}
