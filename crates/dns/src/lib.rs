//! Cluster DNS per the Kubernetes DNS-Based Service Discovery spec 1.1.0:
//! the records of every Service in a [`switchboard_discovery::ServiceTable`]
//! under the cluster domain, served over UDP and TCP, with names outside the
//! zone forwarded to upstream resolvers.
//!
//! Layers, from pure to IO: [`zone`] files the table's services in hash tables
//! ([`zone::Builder`] keeps it current incrementally); [`handler`] turns a
//! query packet into a response packet from a zone; [`fast`] answers the
//! commonest query straight from its bytes; [`cache`] remembers a
//! worker's finished answers; [`forward`] talks to upstreams; [`server`]
//! runs the sockets; [`metrics`] counts.

pub mod cache;
pub mod fast;
pub mod forward;
pub mod handler;
pub mod metrics;
pub mod server;
pub mod zone;

pub use server::{Config, Error, Running, Server};
pub use zone::{PodRecords, Settings};
