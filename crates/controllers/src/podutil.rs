//! Pod and Service facts shared by the EndpointSlice and Endpoints
//! reconcilers: which pods a Service selects, readiness, and targetPort
//! resolution, each as the Kubernetes controllers compute them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The selector the controllers act on, or `None` when the Service gets no
/// endpoints from them.
///
/// Kubernetes skips `ExternalName` services and services whose selector is
/// nil. An empty selector map never survives a round trip through the
/// Kubernetes apiserver (it is stored as nil), so it counts as no selector
/// here rather than as "select every pod".
pub(crate) fn selector_of(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether `labels` satisfy an equality-based Service selector.
///
/// A Service selector is a plain `key=value` map, so this small matcher is
/// enough; `switchboard_api::labels` did not exist when this was written.
pub(crate) fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the Service selects this pod (same namespace, labels match).
pub(crate) fn service_selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = selector_of(service) else {
        return false;
    };
    pod.metadata.namespace == service.metadata.namespace
        && selector_matches(selector, pod.metadata.labels.as_ref())
}

/// Pod `Ready` condition is `True`.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod has a deletion timestamp.
pub(crate) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Succeeded and Failed pods never appear in endpoints.
pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod's IPs in status order: `status.podIPs`, falling back to
/// `status.podIP` for servers that only set the singular field. Unparsable
/// entries are skipped.
pub(crate) fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
    {
        ips.push(ip);
    }
    ips
}

/// The protocol of a Service port, defaulted as the apiserver does.
pub(crate) fn port_protocol(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
}

/// Resolve a Service port's targetPort for one pod (Kubernetes
/// `podutil.FindPort`): an int is used as is, an absent targetPort means the
/// service port itself, and a name is looked up among the pod's container
/// ports (and restartable init containers, i.e. sidecars) with the same
/// protocol. `None` when the name is not found: Kubernetes then leaves this
/// port out of the pod's endpoint ports.
pub(crate) fn resolve_target_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let protocol = port_protocol(port);
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| {
                    cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|cp| cp.container_port)
        }
    }
}

/// Kubernetes `ShouldSetHostname`: the pod's hostname is published only when
/// its subdomain names this Service in the same namespace.
pub(crate) fn hostname_for(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_subdomain = spec.subdomain.as_deref() == service.metadata.name.as_deref();
    let same_namespace = pod.metadata.namespace == service.metadata.namespace;
    (same_subdomain && same_namespace).then(|| hostname.to_owned())
}

/// The pod's node, if scheduled.
pub(crate) fn node_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// `spec.publishNotReadyAddresses`.
pub(crate) fn publish_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// A headless Service (`clusterIP: None`).
pub(crate) fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Labels for objects the controllers write for a Service: the Service's
/// own labels, with the `service.kubernetes.io/headless` label set exactly
/// when the Service is headless (Kubernetes does this for both Endpoints
/// and EndpointSlices).
pub(crate) fn inherited_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    }
    labels
}

/// Label Kubernetes puts on endpoints objects of headless Services.
pub(crate) const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    fn pod_with_ports(ports: &[(&str, i32, &str)]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(n, p, proto)| ContainerPort {
                                name: Some((*n).into()),
                                container_port: *p,
                                protocol: Some((*proto).into()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn named_target_port_matches_name_and_protocol() {
        let pod = pod_with_ports(&[("dns", 5353, "UDP"), ("dns", 5354, "TCP")]);
        let udp = ServicePort {
            port: 53,
            protocol: Some("UDP".into()),
            target_port: Some(IntOrString::String("dns".into())),
            ..Default::default()
        };
        let tcp = ServicePort {
            protocol: None,
            ..udp.clone()
        };
        assert_eq!(resolve_target_port(&pod, &udp), Some(5353));
        assert_eq!(resolve_target_port(&pod, &tcp), Some(5354));
        let missing = ServicePort {
            target_port: Some(IntOrString::String("web".into())),
            ..udp
        };
        assert_eq!(resolve_target_port(&pod, &missing), None);
    }

    #[test]
    fn selector_requires_every_pair() {
        let sel: BTreeMap<_, _> = [("app".to_owned(), "web".to_owned())].into();
        let both: BTreeMap<_, _> = [
            ("app".to_owned(), "web".to_owned()),
            ("tier".to_owned(), "x".to_owned()),
        ]
        .into();
        let other: BTreeMap<_, _> = [("app".to_owned(), "db".to_owned())].into();
        assert!(selector_matches(&sel, Some(&both)));
        assert!(!selector_matches(&sel, Some(&other)));
        assert!(!selector_matches(&sel, None));
    }
}
