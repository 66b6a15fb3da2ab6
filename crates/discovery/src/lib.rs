//! Service discovery: Services and EndpointSlices, watched through the
//! Kubernetes API, folded into an immutable [`ServiceTable`] that is swapped
//! atomically on every change. DNS, the userspace and kernel proxies and the
//! ingress all read the same table; it carries no proxy concerns.
//!
//! Layers: [`build`] turns one Service and its slices into a table entry
//! (pure); [`cache::Cache`] keeps what the table is built from and
//! rebuilds only what a batch of watch events touched (pure); [`spawn`]
//! runs the kube-runtime watchers and publishes each snapshot on a
//! `tokio::sync::watch` channel.

pub mod build;
pub mod cache;
mod runtime;
pub mod table;

pub use runtime::{Discovery, Error, spawn};
pub use table::{
    Endpoint, EndpointPort, PastChange, Protocol, Service, ServiceKey, ServicePort, ServiceTable,
    ServiceType, Services,
};
