//! Controllers that talk to the apiserver as any client does, through kube-rs:
//! the EndpointSlice controller and its legacy `Endpoints` mirror.
//!
//! The reconcilers ([`endpointslice::reconcile`], [`endpoints::endpoints_for`])
//! are pure functions; [`controller::run`] wires them to kube-runtime
//! watchers and a work queue.

pub mod controller;
pub mod endpoints;
pub mod endpointslice;
mod index;
mod podcache;
mod podutil;
mod queue;

pub use controller::{Config, Error, Metrics, run};
pub use podutil::PodInfo;
