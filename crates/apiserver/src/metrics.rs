//! Prometheus metrics of the apiserver: request counts and latencies by verb
//! and resource, open watches, and the store revision.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// Resource plural, with `/status` for the subresource.
    pub resource: String,
    /// HTTP status code.
    pub code: String,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// Kubernetes verb.
    pub verb: String,
    /// Resource plural.
    pub resource: String,
}

/// The apiserver's metrics.
pub struct Metrics {
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency in seconds (for watches: time to establish).
    pub latency: Family<LatencyLabels, Histogram>,
    /// Watches open now.
    pub watches: Gauge,
    /// The store revision the watch cache has reached.
    pub revision: Gauge<i64, AtomicI64>,
    registry: Registry,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let watches = Gauge::default();
        let revision = Gauge::<i64, AtomicI64>::default();
        let mut registry = Registry::with_prefix("apiserver");
        registry.register(
            "requests",
            "Requests served, by verb, resource and code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency by verb and resource",
            latency.clone(),
        );
        registry.register("watches", "Watches open now", watches.clone());
        registry.register(
            "storage_revision",
            "The store revision the watch cache has reached",
            revision.clone(),
        );
        Self {
            requests,
            latency,
            watches,
            revision,
            registry,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
