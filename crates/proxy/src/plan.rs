//! What to serve, decided from one table [`Service`] alone (pure): the
//! frontends (protocol + address + port) a Service needs, and for each of
//! its ports the endpoints new connections may go to, chosen as kube-proxy
//! chooses them.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr as _;

use switchboard_discovery::{Endpoint, Protocol, Service, ServiceKey, ServicePort, ServiceType};
use switchboard_lb::Algorithm;

/// Annotation that picks a Service's scheduler.
pub const SCHEDULER_ANNOTATION: &str = "switchboard.io/scheduler";

/// Which traffic policy applies: ClusterIP traffic follows
/// `internalTrafficPolicy`; NodePort, LoadBalancer and external IPs follow
/// `externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// ClusterIP traffic.
    Internal,
    /// NodePort, LoadBalancer ingress and externalIP traffic.
    External,
}

/// One service port seen through one scope: the unit that owns a balancer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    /// The Service.
    pub service: ServiceKey,
    /// The service port's name ("" when unnamed).
    pub port_name: String,
    /// The service port's number (for labels: names are often empty).
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Which policy applies.
    pub scope: Scope,
}

/// A socket the proxy listens on for one pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frontend {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The address and port to bind.
    pub addr: SocketAddr,
    /// Where its traffic goes.
    pub pool: PoolKey,
}

/// The frontends of `svc`: each port on every ClusterIP (internal scope);
/// its NodePort on each of `node_addresses`, each external IP and each
/// LoadBalancer ingress IP (external scope). ExternalName and headless
/// Services have none; SCTP ports are not proxied in userspace.
pub fn frontends(svc: &Service, node_addresses: &[IpAddr]) -> Vec<Frontend> {
    let mut out = Vec::new();
    if svc.service_type == ServiceType::ExternalName || svc.headless {
        return out;
    }
    for port in &svc.ports {
        if port.protocol == Protocol::Sctp {
            continue;
        }
        let pool = |scope| PoolKey {
            service: svc.key.clone(),
            port_name: port.name.clone(),
            port: port.port,
            protocol: port.protocol,
            scope,
        };
        let mut add = |ip: IpAddr, p: u16, scope| {
            out.push(Frontend {
                protocol: port.protocol,
                addr: SocketAddr::new(ip, p),
                pool: pool(scope),
            })
        };
        for &ip in &svc.cluster_ips {
            add(ip, port.port, Scope::Internal);
        }
        if matches!(
            svc.service_type,
            ServiceType::NodePort | ServiceType::LoadBalancer
        ) && let Some(node_port) = port.node_port
        {
            for &ip in node_addresses {
                add(ip, node_port, Scope::External);
            }
        }
        for &ip in &svc.external_ips {
            add(ip, port.port, Scope::External);
        }
        if svc.service_type == ServiceType::LoadBalancer {
            for &ip in &svc.load_balancer_ips {
                add(ip, port.port, Scope::External);
            }
        }
    }
    // One address can be named twice (an external IP equal to an LB IP).
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert((f.protocol, f.addr)));
    out
}

/// An endpoint new connections of a pool may go to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Endpoint address and the port that serves the service port.
    pub addr: SocketAddr,
}

/// The endpoints for new connections to `port` of `svc` in `scope`, as
/// kube-proxy's `CategorizeEndpoints`: the ready ones; when none is ready,
/// the serving-and-terminating ones; with the scope's traffic policy
/// `Local`, only those on `node_name` (and none at all when this node has
/// none: the traffic is refused, not sent elsewhere).
pub fn targets(svc: &Service, port: &ServicePort, scope: Scope, node_name: &str) -> Vec<Target> {
    let local = match scope {
        Scope::Internal => svc.internal_traffic_local,
        Scope::External => svc.external_traffic_local,
    };
    let serving: Vec<(&Endpoint, u16)> = svc
        .endpoints
        .iter()
        .filter(|e| !local || e.node_name.as_deref() == Some(node_name))
        .filter_map(|e| Some((e, e.port_for(port)?)))
        .collect();
    let ready: Vec<Target> = serving
        .iter()
        .filter(|(e, _)| e.ready)
        .map(|&(e, p)| Target {
            addr: SocketAddr::new(e.address, p),
        })
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    serving
        .iter()
        .filter(|(e, _)| e.serving && e.terminating)
        .map(|&(e, p)| Target {
            addr: SocketAddr::new(e.address, p),
        })
        .collect()
}

/// The service port a pool serves.
pub fn port_of<'a>(svc: &'a Service, pool: &PoolKey) -> Option<&'a ServicePort> {
    svc.ports
        .iter()
        .find(|p| p.name == pool.port_name && p.protocol == pool.protocol && p.port == pool.port)
}

/// The scheduler named by the Service's annotation, or `default` with the
/// reason when the annotation names no scheduler.
pub fn scheduler(svc: &Service, default: Algorithm) -> (Algorithm, Option<String>) {
    match svc.annotations.get(SCHEDULER_ANNOTATION) {
        None => (default, None),
        Some(name) => match Algorithm::from_str(name.trim()) {
            Ok(a) => (a, None),
            Err(e) => (
                default,
                Some(format!(
                    "annotation {SCHEDULER_ANNOTATION}: {e}; using the default scheduler {default}"
                )),
            ),
        },
    }
}

#[cfg(test)]
mod tests;
