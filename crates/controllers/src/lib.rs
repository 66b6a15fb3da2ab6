//! Controllers that talk to the apiserver as any client does, through kube-rs:
//! the EndpointSlice controller and its legacy `Endpoints` mirror, and the
//! workload controllers: Deployments, ReplicaSets, the scheduler, node
//! lifecycle and the garbage collector.
//!
//! The decisions are pure functions: [`endpointslice::reconcile()`],
//! [`endpoints::endpoints_for`], [`replicaset::plan_replicaset`],
//! [`deployment::plan_deployment`], [`scheduler::choose_node`],
//! [`nodelifecycle::decide`], [`gc::verdict`]. [`controller::run`] (the one
//! entry point) wires them to kube-runtime watchers and work queues; the
//! workload controllers run when [`Config::workloads`] is set
//! ([`workloads::run`]).

pub mod controller;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod gc;
mod index;
mod jsonstore;
pub mod nodelifecycle;
pub mod ownership;
mod podcache;
mod podfeed;
mod podutil;
pub mod podview;
mod queue;
pub mod replicaset;
pub mod scheduler;
pub mod uid;
pub mod workloads;

pub use controller::{Config, Error, Metrics, run};
pub use podutil::PodInfo;
