//! The snapshot every data plane reads: one [`Service`] per Kubernetes
//! Service, with its endpoints merged from all of its EndpointSlices.
//!
//! Snapshots are immutable and shared (`Arc`). A new snapshot keeps the same
//! `Arc<Service>` for every service that did not change, so a consumer that
//! skipped intermediate snapshots can still find what changed with
//! [`Arc::ptr_eq`]; [`ServiceTable::changed`] lists the keys that differ
//! from the immediately preceding snapshot.
//!
//! The map of a snapshot ([`Services`]) is persistent: a snapshot after one
//! change shares all but O(log n) of its nodes with the one before, so
//! publishing (and freeing the superseded snapshot) costs microseconds at
//! 10k services instead of a copy of every key.

use std::collections::BTreeMap;
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

/// Services by key: a persistent hash trie (HAMT), so cloning is O(1) and
/// a clone changed in one key shares every other node with the original.
/// Iteration order is unspecified.
#[derive(Debug, Clone, Default)]
pub struct Services(Map);

type Map = rpds::HashTrieMapSync<ServiceKey, Arc<Service>>;

/// Iterator over [`Services`], in unspecified order.
pub struct Iter<'a>(<&'a Map as IntoIterator>::IntoIter);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a ServiceKey, &'a Arc<Service>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl Services {
    /// An empty map.
    pub fn new() -> Services {
        Services::default()
    }

    /// The service with this key.
    pub fn get(&self, key: &ServiceKey) -> Option<&Arc<Service>> {
        self.0.get(key)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &ServiceKey) -> bool {
        self.0.contains_key(key)
    }

    /// Sets `key`, returning the service it replaces. O(log n); other
    /// clones of this map are not affected.
    pub fn insert(&mut self, key: ServiceKey, service: Arc<Service>) -> Option<Arc<Service>> {
        let old = self.0.get(&key).cloned();
        self.0.insert_mut(key, service);
        old
    }

    /// Removes `key`, returning its service. O(log n); other clones of
    /// this map are not affected.
    pub fn remove(&mut self, key: &ServiceKey) -> Option<Arc<Service>> {
        let old = self.0.get(key).cloned();
        if old.is_some() {
            self.0.remove_mut(key);
        }
        old
    }

    /// The number of services.
    pub fn len(&self) -> usize {
        self.0.size()
    }

    /// True when there is no service.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every (key, service), in unspecified order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.0.iter())
    }

    /// Every key, in unspecified order.
    pub fn keys(&self) -> impl Iterator<Item = &ServiceKey> {
        self.0.keys()
    }

    /// Every service, in unspecified order.
    pub fn values(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.0.values()
    }

    /// Every key whose service differs between `old` and `self` (added,
    /// changed or removed), by [`Arc::ptr_eq`]. O(n): for a consumer whose
    /// last table is older than [`ServiceTable::changed_since`] reaches.
    pub fn diff_keys(&self, old: &Services) -> Vec<ServiceKey> {
        let mut keys: Vec<ServiceKey> = self
            .iter()
            .filter(|(k, s)| !old.get(k).is_some_and(|o| Arc::ptr_eq(o, s)))
            .map(|(k, _)| k.clone())
            .collect();
        keys.extend(old.keys().filter(|k| !self.contains_key(k)).cloned());
        keys
    }
}

impl std::ops::Index<&ServiceKey> for Services {
    type Output = Arc<Service>;

    /// Panics when `key` is absent, as `HashMap`'s indexing does.
    fn index(&self, key: &ServiceKey) -> &Arc<Service> {
        &self.0[key]
    }
}

impl<'a> IntoIterator for &'a Services {
    type Item = (&'a ServiceKey, &'a Arc<Service>);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<(ServiceKey, Arc<Service>)> for Services {
    fn from_iter<I: IntoIterator<Item = (ServiceKey, Arc<Service>)>>(iter: I) -> Services {
        Services(iter.into_iter().collect())
    }
}

/// An immutable snapshot of every Service.
#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    /// Services by key; an unchanged service keeps its `Arc` across snapshots.
    pub services: Services,
    /// Keys added, changed or removed since the preceding snapshot.
    pub changed: Vec<ServiceKey>,
    /// Increases by one with every snapshot published.
    pub generation: u64,
    /// True once the initial list of Services and EndpointSlices is complete;
    /// before that, consumers should not act on absences.
    pub synced: bool,
    /// The `changed` lists of the snapshots just before this one, newest
    /// first (a few dozen at most), so a consumer that skipped snapshots
    /// catches up with [`ServiceTable::changed_since`] instead of scanning
    /// every service. Empty in hand-built tables, which is always correct.
    pub history: Arc<[PastChange]>,
}

/// What one earlier snapshot changed, kept in [`ServiceTable::history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastChange {
    /// That snapshot's generation.
    pub generation: u64,
    /// Its `changed` keys; `None` when there were too many to keep (a
    /// relist), which sends consumers to a full comparison.
    pub keys: Option<Arc<[ServiceKey]>>,
}

impl ServiceTable {
    /// The service with this key.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.services.get(&ServiceKey::new(namespace, name))
    }

    /// Every key added, changed or removed since the snapshot of
    /// `generation` (sorted, without duplicates), or `None` when the
    /// history does not reach back that far: compare the whole maps then
    /// (an unchanged service keeps its `Arc`, so [`Arc::ptr_eq`] tells).
    pub fn changed_since(&self, generation: u64) -> Option<Vec<ServiceKey>> {
        if generation >= self.generation {
            return (generation == self.generation).then(Vec::new);
        }
        let mut keys = self.changed.clone();
        // Snapshots generation+1 ..= self.generation-1 must all be in the history.
        let mut next = self.generation - 1;
        for past in self.history.iter() {
            if next == generation {
                break;
            }
            if past.generation != next {
                return None;
            }
            keys.extend(past.keys.as_ref()?.iter().cloned());
            next -= 1;
        }
        if next != generation {
            return None;
        }
        keys.sort();
        keys.dedup();
        Some(keys)
    }
}
