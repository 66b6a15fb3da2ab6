//! The snapshot every data plane reads: one [`Service`] per Kubernetes
//! Service, with its endpoints merged from all of its EndpointSlices.
//!
//! Snapshots are immutable and shared (`Arc`). A new snapshot keeps the same
//! `Arc<Service>` for every service that did not change, so a consumer that
//! skipped intermediate snapshots can still find what changed with
//! [`Arc::ptr_eq`]; [`ServiceTable::changed`] lists the keys that differ
//! from the immediately preceding snapshot.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Namespace and name of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ServiceKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceType {
    /// `ClusterIP` (the default).
    ClusterIp,
    /// `NodePort`.
    NodePort,
    /// `LoadBalancer`.
    LoadBalancer,
    /// `ExternalName`.
    ExternalName,
}

/// L4 protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Lower-case name, as used in DNS SRV labels (`_tcp`).
    pub fn as_lower_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePort {
    /// `name` (empty when the Service has a single unnamed port).
    pub name: String,
    /// `protocol`.
    pub protocol: Protocol,
    /// `port`: the port on the ClusterIP, external IPs and LB IPs.
    pub port: u16,
    /// `nodePort`, for NodePort and LoadBalancer services.
    pub node_port: Option<u16>,
}

/// One port of an endpoint, from its EndpointSlice's `ports`. Matched to a
/// [`ServicePort`] by `name` (and protocol), as kube-proxy does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointPort {
    /// Name of the service port this serves (empty for an unnamed port).
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The port on the endpoint's address (named targetPorts already resolved).
    pub port: u16,
}

/// One endpoint: an address (usually a Pod) with its conditions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The endpoint's address (EndpointSlices of one address family; the
    /// first of `addresses`, as kube-proxy uses).
    pub address: IpAddr,
    /// `hostname` (from the Pod's `spec.hostname` when its `subdomain` names
    /// the Service).
    pub hostname: Option<String>,
    /// `nodeName`.
    pub node_name: Option<String>,
    /// `targetRef` name when it is a Pod, for pod-verified DNS and metrics.
    pub pod_name: Option<String>,
    /// `conditions.ready` (absent counts as true, per the API).
    pub ready: bool,
    /// `conditions.serving` (absent: same as ready).
    pub serving: bool,
    /// `conditions.terminating` (absent: false).
    pub terminating: bool,
    /// The slice's ports, shared by every endpoint of that slice.
    pub ports: Arc<[EndpointPort]>,
}

impl Endpoint {
    /// The port on this endpoint that serves `service_port`, if any.
    pub fn port_for(&self, service_port: &ServicePort) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == service_port.name && p.protocol == service_port.protocol)
            .map(|p| p.port)
    }
}

/// Everything a data plane needs of one Service and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Namespace and name.
    pub key: ServiceKey,
    /// `spec.type`.
    pub service_type: ServiceType,
    /// `spec.clusterIPs`; empty for headless (`None`) and ExternalName services.
    pub cluster_ips: Vec<IpAddr>,
    /// True when `spec.clusterIP` is `None`.
    pub headless: bool,
    /// `spec.externalName`, for ExternalName services.
    pub external_name: Option<String>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `sessionAffinity: ClientIP` timeout; `None` without affinity.
    pub session_affinity: Option<Duration>,
    /// `spec.internalTrafficPolicy: Local`.
    pub internal_traffic_local: bool,
    /// `spec.externalTrafficPolicy: Local`.
    pub external_traffic_local: bool,
    /// `spec.publishNotReadyAddresses`.
    pub publish_not_ready_addresses: bool,
    /// `metadata.annotations` (e.g. `switchboard.io/scheduler`).
    pub annotations: BTreeMap<String, String>,
    /// Endpoints from every slice labelled with this service, de-duplicated
    /// by address, in a stable order (by address).
    pub endpoints: Vec<Endpoint>,
}

/// An immutable snapshot of every Service.
#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    /// Services by key; an unchanged service keeps its `Arc` across snapshots.
    pub services: HashMap<ServiceKey, Arc<Service>>,
    /// Keys added, changed or removed since the preceding snapshot.
    pub changed: Vec<ServiceKey>,
    /// Increases by one with every snapshot published.
    pub generation: u64,
    /// True once the initial list of Services and EndpointSlices is complete;
    /// before that, consumers should not act on absences.
    pub synced: bool,
}

impl ServiceTable {
    /// The service with this key.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.services.get(&ServiceKey::new(namespace, name))
    }
}
