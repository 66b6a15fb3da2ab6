//! The pure builder: a Kubernetes `Service` and its `EndpointSlice`s in, one
//! table [`Service`] out. No IO; the runtime calls it for each service that
//! changed.
//!
//! Defaults follow the API: a port without `protocol` is TCP, a Service
//! without `type` is ClusterIP, `ClientIP` affinity without a timeout lasts
//! 10800 s, and endpoint conditions that are absent mean ready = true,
//! serving = ready, terminating = false (the EndpointSlice API docs).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::table::{
    Endpoint, EndpointPort, Protocol, Service, ServiceKey, ServicePort, ServiceType,
};

/// Label that ties an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when absent (3 hours, as
/// the API defaults it).
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10800);

/// The key of a Kubernetes object from its metadata (`None` without a name).
pub fn key_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ServiceKey> {
    let name = meta.name.as_deref().filter(|n| !n.is_empty())?;
    Some(ServiceKey::new(
        meta.namespace.as_deref().unwrap_or("default"),
        name,
    ))
}

/// The Service a slice belongs to, from its `kubernetes.io/service-name` label.
pub fn slice_service(slice: &EndpointSlice) -> Option<ServiceKey> {
    let name = slice
        .metadata
        .labels
        .as_ref()?
        .get(LABEL_SERVICE_NAME)
        .filter(|n| !n.is_empty())?;
    Some(ServiceKey::new(
        slice.metadata.namespace.as_deref().unwrap_or("default"),
        name,
    ))
}

/// Parses a `protocol` field; absent means TCP. Unknown values (which the
/// apiserver's validation rejects) are read as TCP too.
pub fn protocol(p: Option<&str>) -> Protocol {
    match p {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// Builds the table entry of `svc` from the slices labelled with its name.
/// Slices of other services and FQDN slices are ignored; endpoints that
/// appear in several slices (an endpoint moving between slices) are merged
/// into one. Returns `None` for an object without a name.
pub fn service<'a>(
    svc: &core::Service,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Option<Service> {
    let mut service = base(svc)?;
    service.endpoints = endpoints(&service.key, slices);
    Some(service)
}

/// The table entry of `svc` without endpoints: everything the Service
/// object itself says. `None` for an object without a name.
pub fn base(svc: &core::Service) -> Option<Service> {
    let key = key_of(&svc.metadata)?;
    let empty = core::ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&empty);

    let service_type = match spec.type_.as_deref() {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        _ => ServiceType::ClusterIp,
    };
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let cluster_ips = if service_type == ServiceType::ExternalName || headless {
        Vec::new()
    } else {
        let ips = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.clone(),
            _ => spec.cluster_ip.iter().cloned().collect(),
        };
        parse_ips(&ips)
    };
    let external_name = (service_type == ServiceType::ExternalName)
        .then(|| spec.external_name.clone())
        .flatten();
    let load_balancer_ips = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| exact(ingress.iter().filter_map(|i| i.ip.as_deref()?.parse().ok())))
        .unwrap_or_default();
    let ports = exact(spec.ports.iter().flatten().filter_map(|p| {
        Some(ServicePort {
            name: p.name.clone().unwrap_or_default(),
            protocol: protocol(p.protocol.as_deref()),
            port: u16::try_from(p.port).ok().filter(|&p| p != 0)?,
            node_port: p
                .node_port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n != 0),
        })
    }));
    let session_affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u64::try_from(t).ok())
            .filter(|&t| t > 0)
            .map_or(DEFAULT_AFFINITY_TIMEOUT, Duration::from_secs)
    });

    Some(Service {
        service_type,
        cluster_ips,
        headless,
        external_name,
        external_ips: parse_ips(spec.external_ips.as_deref().unwrap_or_default()),
        load_balancer_ips,
        ports,
        session_affinity,
        internal_traffic_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_traffic_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
        annotations: svc.metadata.annotations.clone().unwrap_or_default(),
        endpoints: Vec::new(),
        key,
    })
}

fn parse_ips(ips: &[String]) -> Vec<IpAddr> {
    exact(ips.iter().filter_map(|ip| ip.parse().ok()))
}

/// Collected without spare room. A filtered iterator does not know its
/// length, so `collect` reserves four slots for its first item; a table
/// entry lives as long as its Service, and one port or one IP is usual,
/// so that room would be most of the entry's vectors.
fn exact<T>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.collect();
    items.shrink_to_fit();
    items
}

/// The endpoints of `key` from `slices`, merged and sorted by address.
pub fn endpoints<'a>(
    key: &ServiceKey,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<Endpoint> {
    merge_endpoints(
        slices
            .into_iter()
            .filter(|slice| slice_service(slice).as_ref() == Some(key))
            .flat_map(slice_endpoints),
    )
}

/// The endpoints one slice publishes, in the slice's order: those with a
/// parseable first address; none for FQDN slices. Which Service the slice
/// belongs to is the caller's business ([`slice_service`]).
pub fn slice_endpoints(slice: &EndpointSlice) -> Vec<Endpoint> {
    if slice.address_type == "FQDN" {
        return Vec::new();
    }
    let ports: Arc<[EndpointPort]> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(EndpointPort {
                name: p.name.clone().unwrap_or_default(),
                protocol: protocol(p.protocol.as_deref()),
                // A port without a number means "all ports", which no
                // proxy can forward to; kube-proxy skips it too.
                port: p
                    .port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|&n| n != 0)?,
            })
        })
        .collect();
    exact(slice.endpoints.iter().filter_map(|ep| {
        let address = ep.addresses.first()?.parse::<IpAddr>().ok()?;
        let conditions = ep.conditions.clone().unwrap_or_default();
        let ready = conditions.ready.unwrap_or(true);
        Some(Endpoint {
            address,
            hostname: ep.hostname.clone().filter(|h| !h.is_empty()),
            node_name: ep.node_name.clone().filter(|n| !n.is_empty()),
            pod_name: ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone()),
            ready,
            serving: conditions.serving.unwrap_or(ready),
            terminating: conditions.terminating.unwrap_or(false),
            ports: Arc::clone(&ports),
        })
    }))
}

/// One service's endpoints from all of its slices: an address that
/// appears in several slices (an endpoint moving between slices) becomes
/// one endpoint; sorted by address.
pub fn merge_endpoints(all: impl IntoIterator<Item = Endpoint>) -> Vec<Endpoint> {
    let mut by_address: BTreeMap<IpAddr, Endpoint> = BTreeMap::new();
    for endpoint in all {
        match by_address.get_mut(&endpoint.address) {
            None => {
                by_address.insert(endpoint.address, endpoint);
            }
            Some(existing) => merge(existing, endpoint),
        }
    }
    by_address.into_values().collect()
}

/// Two entries for one address (it is moving between slices): the ports of
/// both, and the conditions of the more usable one, so a move never makes
/// a ready endpoint look unready.
fn merge(existing: &mut Endpoint, other: Endpoint) {
    let rank = |e: &Endpoint| (e.ready, e.serving, !e.terminating);
    let extra: Vec<EndpointPort> = other
        .ports
        .iter()
        .filter(|p| {
            !existing
                .ports
                .iter()
                .any(|q| q.name == p.name && q.protocol == p.protocol)
        })
        .cloned()
        .collect();
    if rank(&other) > rank(existing) {
        existing.ready = other.ready;
        existing.serving = other.serving;
        existing.terminating = other.terminating;
        existing.node_name = other.node_name.or(existing.node_name.take());
        existing.pod_name = other.pod_name.or(existing.pod_name.take());
        existing.hostname = other.hostname.or(existing.hostname.take());
    }
    if !extra.is_empty() {
        let mut ports = existing.ports.to_vec();
        ports.extend(extra);
        existing.ports = ports.into();
    }
}

#[cfg(test)]
mod tests;
