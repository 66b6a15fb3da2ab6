//! The userspace L4 proxy (`--proxy-mode userspace`): listens on every
//! Service frontend (ClusterIPs, NodePorts, LoadBalancer ingress IPs,
//! external IPs) and forwards each TCP connection or UDP flow to an
//! endpoint chosen by the Service's scheduler from `switchboard-lb`.
//!
//! Layers: [`plan`] decides from one table entry what to listen on and
//! which endpoints may take new connections (pure, as kube-proxy chooses);
//! `pool` holds a port's balancer, affinity, ejections and draining;
//! `accept` takes TCP connections on every socket of a worker with one
//! task; `tcp` and `udp` move the bytes on the `workers` (single-threaded
//! runtimes);
//! [`start`] runs the sync loop that applies each new
//! [`switchboard_discovery::ServiceTable`].

mod accept;
mod config;
mod copy;
mod events;
mod metrics;
pub mod plan;
mod pool;
mod runtime;
mod tcp;
mod udp;
mod workers;

pub use config::{Config, MAX_WORKER_THREADS};
pub use events::COMPONENT;
pub use metrics::Metrics;
pub use runtime::{Running, start};

use std::net::SocketAddr;

/// Errors that stop the proxy or keep it from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A [`Config`] value is unusable.
    #[error("invalid proxy config: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The metrics listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The data-plane threads could not be started.
    #[error("cannot start {threads} proxy worker thread(s)")]
    Workers {
        /// How many were asked for.
        threads: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Discovery stopped publishing tables.
    #[error("the service table channel closed")]
    TableClosed,
}
