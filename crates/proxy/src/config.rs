//! The proxy's typed configuration; the binary builds it from flags.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use switchboard_lb::Algorithm;

/// Most data-plane threads (far more than cores is only overhead).
pub const MAX_WORKER_THREADS: usize = 256;

/// Proxy settings. [`Config::default`] holds the defaults the flags document.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name: `Local` traffic policies keep endpoints whose
    /// `nodeName` equals it.
    pub node_name: String,
    /// Addresses NodePorts listen on.
    pub node_addresses: Vec<IpAddr>,
    /// Scheduler of Services without a (valid) `switchboard.io/scheduler`.
    pub default_scheduler: Algorithm,
    /// How long connections to a removed or terminating endpoint may stay
    /// open before the proxy closes them.
    pub drain_timeout: Duration,
    /// A UDP flow without traffic either way for this long is forgotten.
    pub udp_idle_timeout: Duration,
    /// Time allowed to connect to one endpoint before the next is tried.
    pub connect_timeout: Duration,
    /// Endpoints tried per connection (the first pick and its fallbacks).
    pub max_attempts: usize,
    /// First ejection of an endpoint that refused a connection; doubles
    /// with each consecutive ejection (Envoy's outlier detection: 30 s).
    pub ejection_base: Duration,
    /// Longest ejection (Envoy: 300 s).
    pub ejection_max: Duration,
    /// Where `/metrics` is served; `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// Largest copy buffer per direction of a TCP connection; each starts
    /// at 8 KiB and doubles while reads fill it.
    pub buffer_size: usize,
    /// Data-plane threads, each a single-threaded runtime with its own
    /// listening socket per TCP frontend (`SO_REUSEPORT` when more than
    /// one; UDP frontends are served by the first). 0 runs the data plane
    /// on the caller's runtime.
    pub worker_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: "switchboard".to_owned(),
            node_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            default_scheduler: Algorithm::RoundRobin,
            drain_timeout: Duration::from_secs(30),
            udp_idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            max_attempts: 3,
            ejection_base: Duration::from_secs(30),
            ejection_max: Duration::from_secs(300),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 10249))),
            buffer_size: 64 * 1024,
            worker_threads: 1,
        }
    }
}

impl Config {
    /// Checks the values that would make the proxy misbehave.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |field: &'static str, reason: &str| {
            Err(crate::Error::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.node_name.is_empty() {
            return bad("node_name", "must not be empty");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be positive");
        }
        if self.udp_idle_timeout.is_zero() {
            return bad("udp_idle_timeout", "must be positive");
        }
        if self.buffer_size < 1024 {
            return bad("buffer_size", "must be at least 1024 bytes");
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return bad("worker_threads", "must be at most 256");
        }
        Ok(())
    }
}
