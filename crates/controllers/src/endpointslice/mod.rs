//! The EndpointSlice controller: the pure reconcile ([`reconcile`]) that
//! turns a Service and its Pods into slice writes, and the label names the
//! Kubernetes EndpointSlice controller uses.

pub mod reconcile;

pub use reconcile::{Plan, reconcile};

/// Label naming the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on slices this controller writes (the same
/// value as Kubernetes' controller, so kube-proxy and other consumers treat
/// them alike).
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Kubernetes' default `--max-endpoints-per-slice`.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Largest value Kubernetes accepts for `--max-endpoints-per-slice` (the
/// API's limit on endpoints in one slice).
pub const MAX_ENDPOINTS_PER_SLICE_LIMIT: usize = 1000;
