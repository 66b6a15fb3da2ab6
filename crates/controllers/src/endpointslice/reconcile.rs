//! Pure EndpointSlice reconciliation: `Service × Pods × existing slices →`
//! the creates, updates and deletes that bring the slices to the desired
//! state with as few writes as possible. No IO, so it is tested alone.
//!
//! The algorithm follows Kubernetes' `pkg/controller/endpointslice`
//! reconciler (`reconcileByAddressType` / `reconcileByPortMapping` /
//! `finalize`):
//!
//! 1. endpoints are grouped by (address type, resolved port list);
//! 2. within a group, existing slices keep the endpoints still desired
//!    (updated in place when their conditions changed) and drop the others;
//!    a slice left empty is deleted;
//! 3. slices already being updated are filled with new endpoints, fullest
//!    first; leftovers go into one unchanged slice only when they all fit
//!    (closest fit), otherwise into new slices — one create is preferred
//!    over touching several unchanged slices;
//! 4. a Service with a selector and no endpoints keeps one empty
//!    placeholder slice;
//! 5. a delete and a create of the same address type become one update.
//!
//! There is no active rebalancing: a slice is only written when its content
//! changes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME};
use crate::podutil::{self, PodInfo};

/// The writes that bring a Service's slices to the desired state. Apply
/// creates first, then updates, then deletes, so consumers never see a gap
/// in endpoints that only moved between slices.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// New slices (`metadata.generateName` set, no name).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new content; metadata (name, resourceVersion)
    /// comes from the existing slice, so a replace is a compare-and-swap.
    pub update: Vec<EndpointSlice>,
    /// Existing slices to delete, as they were passed in.
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Compute the slice writes for `service` given the pods (any superset of
/// the Service's pods: non-matching ones are ignored) and the slices that
/// currently exist for it (slices without both of this controller's labels
/// for this Service are ignored, never deleted).
///
/// Services without a selector and `ExternalName` Services get an empty
/// plan, as in Kubernetes: their slices, if any, are someone else's.
/// `max_per_slice` of 0 is treated as 1.
pub fn reconcile<P: AsRef<PodInfo>>(
    service: &Service,
    pods: &[P],
    existing: &[EndpointSlice],
    max_per_slice: usize,
) -> Plan {
    if podutil::selector_of(service).is_none() {
        return Plan::default();
    }
    let max = max_per_slice.max(1);
    let families = supported_address_types(service);
    let labels = desired_labels(service);
    let mut desired = desired_groups(service, pods, &families);

    let mut ours: Vec<&EndpointSlice> = existing
        .iter()
        .filter(|s| is_managed_for(s, service))
        .collect();
    ours.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut plan = Plan::default();
    let mut by_group: BTreeMap<GroupKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in &ours {
        let family_ok =
            AddressType::parse(&slice.address_type).is_some_and(|f| families.contains(&f));
        if owned_by(slice, service) && family_ok {
            by_group.entry(group_key_of(slice)).or_default().push(slice);
        } else {
            plan.delete.push((*slice).clone());
        }
    }

    let ctx = Ctx {
        service,
        labels: &labels,
        max,
    };
    for (key, group) in std::mem::take(&mut desired) {
        let existing_in_group = by_group.remove(&key).unwrap_or_default();
        ctx.reconcile_group(&key, group, existing_in_group, &mut plan);
    }
    // Port mappings (or address types) nobody wants any more.
    for (_, slices) in by_group {
        plan.delete.extend(slices.into_iter().cloned());
    }

    // A Service with a selector always has at least one slice, so consumers
    // can tell "no endpoints" from "not processed yet".
    if ours.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = ctx.new_slice(families[0], Vec::new(), Vec::new());
        let keep =
            plan.delete.len() == 1 && is_same_placeholder(&plan.delete[0], &placeholder, service);
        if keep {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }

    finalize(&mut plan, service);
    plan.update
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    plan
}

/// The IP families slices are made for (Kubernetes
/// `getAddressTypesForService`): `spec.ipFamilies` when set; else the
/// family of the ClusterIP; else, for headless Services without families,
/// both.
fn supported_address_types(service: &Service) -> Vec<AddressType> {
    let spec = service.spec.as_ref();
    let mut types: Vec<AddressType> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(AddressType::IPv4),
            "IPv6" => Some(AddressType::IPv6),
            _ => None,
        })
        .collect();
    if types.is_empty() {
        match spec.and_then(|s| s.cluster_ip.as_deref()) {
            Some(ip) if !ip.is_empty() && ip != "None" => {
                types.push(if ip.contains(':') {
                    AddressType::IPv6
                } else {
                    AddressType::IPv4
                });
            }
            _ => types.extend([AddressType::IPv4, AddressType::IPv6]),
        }
    }
    types.sort();
    types.dedup();
    types
}

/// Slice address types this controller produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AddressType {
    IPv4,
    IPv6,
}

impl AddressType {
    fn as_str(self) -> &'static str {
        match self {
            AddressType::IPv4 => "IPv4",
            AddressType::IPv6 => "IPv6",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(AddressType::IPv4),
            "IPv6" => Some(AddressType::IPv6),
            _ => None,
        }
    }

    fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddressType::IPv4,
            IpAddr::V6(_) => AddressType::IPv6,
        }
    }
}

/// One port of a slice in comparable form (absent name = "", absent
/// protocol = TCP, as the apiserver defaults them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    protocol: String,
    port: i32,
    app_protocol: Option<String>,
}

impl PortKey {
    fn of(p: &EndpointPort) -> Self {
        PortKey {
            name: p.name.clone().unwrap_or_default(),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            port: p.port.unwrap_or_default(),
            app_protocol: p.app_protocol.clone(),
        }
    }
}

/// Slices are grouped by address type and their (sorted) port list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    address_type: String,
    ports: Vec<PortKey>,
}

fn group_key_of(slice: &EndpointSlice) -> GroupKey {
    let mut ports: Vec<PortKey> = slice.ports.iter().flatten().map(PortKey::of).collect();
    ports.sort();
    GroupKey {
        address_type: slice.address_type.clone(),
        ports,
    }
}

/// Identity of an endpoint across slices (Kubernetes hashes the same
/// fields): a change in anything else is an in-place update.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EndpointKey {
    addresses: Vec<String>,
    namespace: String,
    name: String,
    hostname: String,
}

fn endpoint_key(ep: &Endpoint) -> EndpointKey {
    let mut addresses = ep.addresses.clone();
    addresses.sort();
    let target = ep.target_ref.as_ref();
    EndpointKey {
        addresses,
        namespace: target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        name: target.and_then(|t| t.name.clone()).unwrap_or_default(),
        hostname: ep.hostname.clone().unwrap_or_default(),
    }
}

/// Desired endpoints of one group.
struct DesiredGroup {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

/// Desired endpoints by group: one endpoint per selected pod and address
/// family, grouped by the pod's resolved ports.
fn desired_groups<P: AsRef<PodInfo>>(
    service: &Service,
    pods: &[P],
    families: &[AddressType],
) -> BTreeMap<GroupKey, DesiredGroup> {
    let publish = podutil::publish_not_ready(service);
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let mut groups: BTreeMap<GroupKey, DesiredGroup> = BTreeMap::new();
    for pod in pods {
        let pod = pod.as_ref();
        if !pod.selected_by(service) || pod.terminal {
            continue;
        }
        let ips = &pod.ips;
        if ips.is_empty() {
            continue;
        }
        let terminating = pod.terminating;
        let serving = publish || pod.ready;
        // Compatibility rule: `ready` is never true for a terminating pod,
        // unless the Service publishes not-ready addresses.
        let ready = publish || (serving && !terminating);

        let mut ports: Vec<(PortKey, EndpointPort)> = service_ports
            .iter()
            .filter_map(|sp| {
                let port = pod.resolve_target_port(sp)?;
                let ep = EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(port),
                    protocol: Some(podutil::port_protocol(sp).to_owned()),
                    app_protocol: sp.app_protocol.clone(),
                };
                Some((PortKey::of(&ep), ep))
            })
            .collect();
        ports.sort_by(|a, b| a.0.cmp(&b.0));
        let (port_keys, endpoint_ports): (Vec<PortKey>, Vec<EndpointPort>) =
            ports.into_iter().unzip();

        for family in families {
            let addresses: Vec<String> = ips
                .iter()
                .filter(|ip| AddressType::of(ip) == *family)
                .map(|ip| ip.to_string())
                .collect();
            if addresses.is_empty() {
                continue;
            }
            let endpoint = Endpoint {
                addresses,
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(serving),
                    terminating: Some(terminating),
                }),
                hostname: pod.hostname_for(service),
                node_name: pod.node_name.as_deref().map(str::to_owned),
                target_ref: Some(pod.target_ref()),
                ..Default::default()
            };
            let key = GroupKey {
                address_type: family.as_str().to_owned(),
                ports: port_keys.clone(),
            };
            groups
                .entry(key)
                .or_insert_with(|| DesiredGroup {
                    ports: endpoint_ports.clone(),
                    endpoints: BTreeMap::new(),
                })
                .endpoints
                .insert(endpoint_key(&endpoint), endpoint);
        }
    }
    groups
}

/// Labels of every slice of this Service: the Service's labels (except the
/// two this controller owns), the headless marker, then ours.
fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = podutil::inherited_labels(service);
    labels.insert(
        LABEL_SERVICE_NAME.to_owned(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.to_owned(), CONTROLLER_NAME.to_owned());
    labels
}

/// The slice carries both of our labels for this Service, in its namespace.
fn is_managed_for(slice: &EndpointSlice, service: &Service) -> bool {
    let labels = slice.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    slice.metadata.namespace == service.metadata.namespace
        && label(LABEL_SERVICE_NAME) == service.metadata.name.as_deref()
        && label(LABEL_MANAGED_BY) == Some(CONTROLLER_NAME)
}

/// The slice's controller owner is this Service (same uid). A slice left by
/// an earlier Service of the same name is not ours to update.
fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    slice.metadata.owner_references.iter().flatten().any(|o| {
        o.kind == "Service"
            && Some(&o.name) == service.metadata.name.as_ref()
            && service
                .metadata
                .uid
                .as_ref()
                .is_none_or(|uid| *uid == o.uid)
    })
}

fn is_same_placeholder(
    existing: &EndpointSlice,
    placeholder: &EndpointSlice,
    service: &Service,
) -> bool {
    owned_by(existing, service)
        && existing.address_type == placeholder.address_type
        && existing.endpoints.is_empty()
        && existing.ports.as_ref().is_none_or(Vec::is_empty)
        && existing.metadata.labels == placeholder.metadata.labels
}

/// Turn delete+create pairs of the same address type into updates of the
/// slice that would have been deleted: one write instead of two.
fn finalize(plan: &mut Plan, service: &Service) {
    let mut i = 0;
    while i < plan.delete.len() {
        let Some(last) = plan.create.last() else {
            break;
        };
        let reusable =
            plan.delete[i].address_type == last.address_type && owned_by(&plan.delete[i], service);
        if !reusable {
            i += 1;
            continue;
        }
        let old = plan.delete.remove(i);
        let mut slice = plan
            .create
            .pop()
            .expect("invariant: plan.create.last() was Some just above");
        let mut metadata = old.metadata;
        metadata.labels = slice.metadata.labels.take();
        metadata.owner_references = slice.metadata.owner_references.take();
        slice.metadata = metadata;
        plan.update.push(slice);
    }
}

/// What every group reconciliation needs.
struct Ctx<'a> {
    service: &'a Service,
    labels: &'a BTreeMap<String, String>,
    max: usize,
}

impl Ctx<'_> {
    fn new_slice(
        &self,
        family: AddressType,
        ports: Vec<EndpointPort>,
        endpoints: Vec<Endpoint>,
    ) -> EndpointSlice {
        let name = self.service.metadata.name.clone().unwrap_or_default();
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: self.service.metadata.namespace.clone(),
                labels: Some(self.labels.clone()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Service".to_owned(),
                    name,
                    uid: self.service.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            address_type: family.as_str().to_owned(),
            endpoints,
            ports: Some(ports),
        }
    }

    fn reconcile_group(
        &self,
        key: &GroupKey,
        desired: DesiredGroup,
        existing: Vec<&EndpointSlice>,
        plan: &mut Plan,
    ) {
        let DesiredGroup {
            ports,
            endpoints: mut wanted,
        } = desired;
        let mut updates: Vec<EndpointSlice> = Vec::new();
        let mut unchanged: Vec<&EndpointSlice> = Vec::new();

        // 1. Keep what is still desired where it is; drop the rest.
        for slice in existing {
            let mut kept = Vec::with_capacity(slice.endpoints.len());
            let mut changed = false;
            for ep in &slice.endpoints {
                if let Some(want) = wanted.remove(&endpoint_key(ep)) {
                    changed |= want != *ep;
                    kept.push(want);
                }
            }
            let labels_changed = slice.metadata.labels.as_ref() != Some(self.labels);
            if changed || kept.len() != slice.endpoints.len() {
                if kept.is_empty() {
                    plan.delete.push(slice.clone());
                } else {
                    let mut s = slice.clone();
                    s.endpoints = kept;
                    s.metadata.labels = Some(self.labels.clone());
                    updates.push(s);
                }
            } else if labels_changed {
                let mut s = slice.clone();
                s.metadata.labels = Some(self.labels.clone());
                updates.push(s);
            } else {
                unchanged.push(slice);
            }
        }

        // 2. Fill slices that are written anyway, fullest first.
        if !wanted.is_empty() {
            updates.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
            for s in &mut updates {
                fill(&mut s.endpoints, &mut wanted, self.max);
            }
        }

        // 3. Leftovers: into one unchanged slice if they all fit, else new
        // slices.
        let family = AddressType::parse(&key.address_type).unwrap_or(AddressType::IPv4);
        while !wanted.is_empty() {
            let fit = (wanted.len() < self.max)
                .then(|| closest_fit(&unchanged, wanted.len(), self.max))
                .flatten();
            match fit {
                Some(i) => {
                    let mut s = unchanged.remove(i).clone();
                    fill(&mut s.endpoints, &mut wanted, self.max);
                    updates.push(s);
                }
                None => {
                    let mut s = self.new_slice(family, ports.clone(), Vec::new());
                    fill(&mut s.endpoints, &mut wanted, self.max);
                    plan.create.push(s);
                }
            }
        }

        for mut s in updates {
            s.endpoints.sort_by_cached_key(endpoint_key);
            plan.update.push(s);
        }
    }
}

fn fill(endpoints: &mut Vec<Endpoint>, wanted: &mut BTreeMap<EndpointKey, Endpoint>, max: usize) {
    while endpoints.len() < max {
        let Some((_, ep)) = wanted.pop_first() else {
            break;
        };
        endpoints.push(ep);
    }
}

/// The unchanged slice with the least room left that still takes all `n`
/// endpoints (Kubernetes `getSliceToFill`).
fn closest_fit(slices: &[&EndpointSlice], n: usize, max: usize) -> Option<usize> {
    slices
        .iter()
        .enumerate()
        .filter(|(_, s)| s.endpoints.len() + n <= max)
        .max_by_key(|(_, s)| s.endpoints.len())
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests;
