//! The legacy `core/v1` Endpoints mirror, computed purely from a Service and
//! its Pods as Kubernetes' endpoints controller does: ready and not-ready
//! addresses per port set, repacked into subsets, truncated at 1000
//! addresses with the `endpoints.kubernetes.io/over-capacity: truncated`
//! annotation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::podutil::{self, PodInfo};

/// Most addresses an Endpoints object carries (Kubernetes `maxCapacity`).
pub const MAX_ADDRESSES: usize = 1000;
/// Annotation set on an Endpoints object that was truncated.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Value of [`OVER_CAPACITY_ANNOTATION`] when addresses were dropped.
pub const TRUNCATED: &str = "truncated";

/// The Endpoints object the controller wants for `service`, or `None` when
/// the controller manages no Endpoints for it (no selector, or
/// `ExternalName`): those belong to whoever wrote them.
///
/// Pods are filtered here (namespace, selector, has an IP, not terminal,
/// not terminating unless the Service publishes not-ready addresses), so any
/// superset may be passed.
pub fn endpoints_for<P: AsRef<PodInfo>>(service: &Service, pods: &[P]) -> Option<Endpoints> {
    podutil::selector_of(service)?;
    let publish = podutil::publish_not_ready(service);
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let headless = podutil::is_headless(service);

    // For each port: the addresses that serve it, with readiness.
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddrKey, (EndpointAddress, bool)>> =
        BTreeMap::new();
    let mut portless: BTreeMap<AddrKey, (EndpointAddress, bool)> = BTreeMap::new();
    for pod in pods {
        let pod = pod.as_ref();
        if !pod.selected_by(service) || pod.terminal || (pod.terminating && !publish) {
            continue;
        }
        let Some(address) = address_for(service, pod) else {
            continue;
        };
        let ready = publish || pod.ready;
        let key = AddrKey::of(&address);
        if service_ports.is_empty() {
            // Headless Services may have no ports: addresses without ports.
            if headless {
                portless.insert(key, (address, ready));
            }
            continue;
        }
        for sp in service_ports {
            let Some(port) = pod.resolve_target_port(sp) else {
                continue;
            };
            let pk = PortKey {
                name: sp.name.clone().unwrap_or_default(),
                port,
                protocol: podutil::port_protocol(sp).to_owned(),
                app_protocol: sp.app_protocol.clone(),
            };
            by_port
                .entry(pk)
                .or_default()
                .insert(key.clone(), (address.clone(), ready));
        }
    }

    // Repack (Kubernetes `RepackSubsets`): ports served by exactly the same
    // addresses share one subset.
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Group> = BTreeMap::new();
    for (port, addrs) in by_port {
        let set: Vec<(AddrKey, bool)> = addrs.iter().map(|(k, (_, r))| (k.clone(), *r)).collect();
        let entry = groups.entry(set).or_insert_with(|| {
            let (ready, not_ready): (Vec<_>, Vec<_>) = addrs.into_values().partition(|(_, r)| *r);
            (
                ready.into_iter().map(|(a, _)| a).collect(),
                not_ready.into_iter().map(|(a, _)| a).collect(),
                Vec::new(),
            )
        });
        entry.2.push(port);
    }
    let mut subsets: Vec<EndpointSubset> = groups
        .into_values()
        .map(|(ready, not_ready, ports)| subset(ready, not_ready, Some(ports)))
        .collect();
    if !portless.is_empty() {
        let (ready, not_ready): (Vec<_>, Vec<_>) = portless.into_values().partition(|(_, r)| *r);
        subsets.push(subset(
            ready.into_iter().map(|(a, _)| a).collect(),
            not_ready.into_iter().map(|(a, _)| a).collect(),
            None,
        ));
    }

    let truncated = truncate(&mut subsets);
    let annotations = truncated
        .then(|| BTreeMap::from([(OVER_CAPACITY_ANNOTATION.to_owned(), TRUNCATED.to_owned())]));
    Some(Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            labels: Some(podutil::inherited_labels(service)).filter(|l| !l.is_empty()),
            annotations,
            ..Default::default()
        },
        subsets: Some(subsets).filter(|s| !s.is_empty()),
    })
}

/// Ready addresses, not-ready addresses and the ports they serve.
type Group = (Vec<EndpointAddress>, Vec<EndpointAddress>, Vec<PortKey>);

/// What to write given the current Endpoints (if any) and the desired one
/// from [`endpoints_for`].
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Nothing differs.
    Unchanged,
    /// No Endpoints exists yet.
    Create(Endpoints),
    /// Replace the current one; metadata (resourceVersion, other
    /// annotations) is carried over so the replace is a compare-and-swap.
    Replace(Endpoints),
}

/// Compare as Kubernetes does (subsets, labels, the over-capacity
/// annotation) and build the object to write.
pub fn plan_write(current: Option<&Endpoints>, desired: Endpoints) -> Write {
    let Some(current) = current else {
        return Write::Create(desired);
    };
    let annotation = |e: &Endpoints| {
        e.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION).cloned())
    };
    let same = normalized(&current.subsets) == normalized(&desired.subsets)
        && current.metadata.labels.clone().unwrap_or_default()
            == desired.metadata.labels.clone().unwrap_or_default()
        && annotation(current) == annotation(&desired);
    if same {
        return Write::Unchanged;
    }
    let mut next = current.clone();
    next.subsets = desired.subsets.clone();
    next.metadata.labels = desired.metadata.labels.clone();
    let mut annotations = next.metadata.annotations.take().unwrap_or_default();
    annotations.remove(OVER_CAPACITY_ANNOTATION);
    if let Some(v) = annotation(&desired) {
        annotations.insert(OVER_CAPACITY_ANNOTATION.to_owned(), v);
    }
    next.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
    Write::Replace(next)
}

/// Subsets with empty lists and absent lists made equal, for comparison
/// with what the server returns.
fn normalized(subsets: &Option<Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    subsets
        .iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: s.addresses.clone().filter(|v| !v.is_empty()),
            not_ready_addresses: s.not_ready_addresses.clone().filter(|v| !v.is_empty()),
            ports: s.ports.clone().filter(|v| !v.is_empty()),
        })
        .collect()
}

fn subset(
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
    ports: Option<Vec<PortKey>>,
) -> EndpointSubset {
    EndpointSubset {
        addresses: Some(ready).filter(|v| !v.is_empty()),
        not_ready_addresses: Some(not_ready).filter(|v| !v.is_empty()),
        ports: ports
            .map(|ps| {
                ps.into_iter()
                    .map(|p| EndpointPort {
                        name: Some(p.name).filter(|n| !n.is_empty()),
                        port: p.port,
                        protocol: Some(p.protocol),
                        app_protocol: p.app_protocol,
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty()),
    }
}

/// Kubernetes `truncateEndpoints`: keep at most [`MAX_ADDRESSES`]
/// addresses, ready ones first, spread over the subsets in proportion to
/// their size (rounded up, so the last subsets may get fewer). Returns
/// whether anything was dropped.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let len = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| len(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| len(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= MAX_ADDRESSES {
        return false;
    }
    let truncate_ready = total_ready > MAX_ADDRESSES;
    let (max, total) = if truncate_ready {
        (MAX_ADDRESSES, total_ready)
    } else {
        (MAX_ADDRESSES - total_ready, total_not_ready)
    };
    let mut can_add = max;
    for s in subsets.iter_mut() {
        let in_subset = if truncate_ready {
            len(&s.addresses)
        } else {
            len(&s.not_ready_addresses)
        };
        // total > 0 here: the sum exceeds MAX_ADDRESSES.
        let share = (in_subset * max).div_ceil(total).min(can_add);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(share);
            }
            s.not_ready_addresses = None;
            can_add -= len(&s.addresses);
        } else {
            if let Some(a) = s.not_ready_addresses.as_mut() {
                a.truncate(share);
            }
            can_add -= len(&s.not_ready_addresses);
        }
        if s.addresses.as_ref().is_some_and(Vec::is_empty) {
            s.addresses = None;
        }
        if s.not_ready_addresses.as_ref().is_some_and(Vec::is_empty) {
            s.not_ready_addresses = None;
        }
    }
    true
}

/// The pod's address for this Service (Kubernetes
/// `podToEndpointAddressForService`): the pod IP of the Service's primary
/// family (`ipFamilies[0]`, else the ClusterIP's family, else the pod IP's).
fn address_for(service: &Service, pod: &PodInfo) -> Option<EndpointAddress> {
    let ips = &pod.ips;
    let spec = service.spec.as_ref();
    let want_v6 = match spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        Some(family) => family == "IPv6",
        None => match spec.and_then(|s| s.cluster_ip.as_deref()) {
            Some(ip) if !ip.is_empty() && ip != "None" => ip.contains(':'),
            _ => ips.first()?.is_ipv6(),
        },
    };
    let ip = ips.iter().find(|ip| ip.is_ipv6() == want_v6)?;
    Some(EndpointAddress {
        ip: ip.to_string(),
        hostname: pod.hostname_for(service),
        node_name: pod.node_name.as_deref().map(str::to_owned),
        target_ref: Some(pod.target_ref()),
    })
}

/// Orders addresses as Kubernetes sorts them: by IP, then pod uid. IPs
/// compare numerically so the truncation keeps a stable, sensible prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AddrKey {
    ip: Option<std::net::IpAddr>,
    ip_text: String,
    uid: String,
}

impl AddrKey {
    fn of(a: &EndpointAddress) -> Self {
        AddrKey {
            ip: a.ip.parse().ok(),
            ip_text: a.ip.clone(),
            uid: a
                .target_ref
                .as_ref()
                .and_then(|t| t.uid.clone())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

#[cfg(test)]
mod tests;
