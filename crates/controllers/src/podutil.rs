//! Pod and Service facts shared by the EndpointSlice and Endpoints
//! reconcilers: which pods a Service selects, readiness, and targetPort
//! resolution, each as the Kubernetes controllers compute them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use switchboard_api::intern::intern;
use switchboard_api::labels::{LabelSet, Labels as _};

use crate::uid::Uid;

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
#[cfg(test)]
pub(crate) fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// What the endpoints controllers need of a Pod, and nothing else.
///
/// The controllers hold every Pod of the cluster in memory. A typed
/// `k8s_openapi` Pod costs several kilobytes even when most fields are
/// empty (every optional field of the spec and status is laid out inline,
/// and a Deployment's pods carry resources, probes and env), so each Pod is
/// reduced to this view as it arrives from the watch: a few hundred bytes.
/// Two views compare equal exactly when no endpoint could differ between
/// them, which is what decides whether a pod event needs a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// `metadata.namespace`.
    pub namespace: Arc<str>,
    /// `metadata.name`.
    pub name: Box<str>,
    /// `metadata.uid` (empty when unset).
    pub uid: Uid,
    /// `metadata.labels`.
    pub labels: LabelSet,
    /// `status.podIPs` (or `status.podIP`), parsed, in status order.
    pub ips: Box<[IpAddr]>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Phase `Succeeded` or `Failed`: such pods never appear in endpoints.
    pub terminal: bool,
    /// `spec.nodeName`, when scheduled.
    pub node_name: Option<Arc<str>>,
    hostname: Option<Box<str>>,
    subdomain: Option<Box<str>>,
    /// Named ports of the containers and of restartable init containers
    /// (sidecars), in the order Kubernetes searches them.
    named_ports: Box<[NamedPort]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NamedPort {
    name: Arc<str>,
    protocol: Arc<str>,
    port: i32,
}

fn boxed(s: &Option<String>) -> Option<Box<str>> {
    s.as_deref().filter(|s| !s.is_empty()).map(Box::from)
}

/// For strings most pods share (node names).
fn interned(s: &Option<String>) -> Option<Arc<str>> {
    s.as_deref().filter(|s| !s.is_empty()).map(intern)
}

impl From<&Pod> for PodInfo {
    fn from(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let labels = meta.labels.as_ref().map(LabelSet::from).unwrap_or_default();
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        if ips.is_empty()
            && let Some(ip) = status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok())
        {
            ips.push(ip);
        }
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let terminal = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let named_ports = spec
            .map(|spec| {
                let sidecars = spec
                    .init_containers
                    .iter()
                    .flatten()
                    .filter(|c| c.restart_policy.as_deref() == Some("Always"));
                spec.containers
                    .iter()
                    .chain(sidecars)
                    .flat_map(|c| c.ports.iter().flatten())
                    .filter_map(|cp| {
                        Some(NamedPort {
                            name: cp.name.as_deref().filter(|n| !n.is_empty()).map(intern)?,
                            protocol: intern(cp.protocol.as_deref().unwrap_or("TCP")),
                            port: cp.container_port,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        PodInfo {
            namespace: intern(meta.namespace.as_deref().unwrap_or_default()),
            name: Box::from(meta.name.as_deref().unwrap_or_default()),
            uid: Uid::new(meta.uid.as_deref().unwrap_or_default()),
            labels,
            ips: ips.into(),
            ready,
            terminating: meta.deletion_timestamp.is_some(),
            terminal,
            node_name: spec.and_then(|s| interned(&s.node_name)),
            hostname: spec.and_then(|s| boxed(&s.hostname)),
            subdomain: spec.and_then(|s| boxed(&s.subdomain)),
            named_ports,
        }
    }
}

impl AsRef<PodInfo> for PodInfo {
    fn as_ref(&self) -> &PodInfo {
        self
    }
}

impl PodInfo {
    /// Whether the labels satisfy an equality-based Service selector.
    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(k, v)| self.labels.label(k) == Some(v.as_str()))
    }

    /// Whether the Service selects this pod (same namespace, labels match).
    pub fn selected_by(&self, service: &Service) -> bool {
        let Some(selector) = selector_of(service) else {
            return false;
        };
        service.metadata.namespace.as_deref() == Some(&*self.namespace) && self.matches(selector)
    }

    /// Resolve a Service port's targetPort for this pod (Kubernetes
    /// `podutil.FindPort`): an int is used as is, an absent targetPort means
    /// the service port itself, and a name is looked up among the pod's
    /// container ports (and sidecars') with the same protocol. `None` when
    /// the name is not found: Kubernetes then leaves this port out of the
    /// pod's endpoint ports.
    pub fn resolve_target_port(&self, port: &ServicePort) -> Option<i32> {
        match &port.target_port {
            None => Some(port.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(name)) => {
                let protocol = port_protocol(port);
                self.named_ports
                    .iter()
                    .find(|p| &*p.name == name.as_str() && &*p.protocol == protocol)
                    .map(|p| p.port)
            }
        }
    }

    /// Kubernetes `ShouldSetHostname`: the pod's hostname is published only
    /// when its subdomain names this Service in the same namespace.
    pub fn hostname_for(&self, service: &Service) -> Option<String> {
        let hostname = self.hostname.as_deref()?;
        let same_subdomain = self.subdomain.as_deref() == service.metadata.name.as_deref();
        let same_namespace = service.metadata.namespace.as_deref() == Some(&*self.namespace);
        (same_subdomain && same_namespace).then(|| hostname.to_owned())
    }

    /// The reference an endpoint carries to this pod.
    pub fn target_ref(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: Some(self.namespace.to_string()),
            name: Some(self.name.to_string()),
            uid: Some(self.uid.to_string()).filter(|u| !u.is_empty()),
            ..Default::default()
        }
    }
}

/// The protocol of a Service port, defaulted as the apiserver does.
pub(crate) fn port_protocol(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
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

    fn pod_with_ports(ports: &[(&str, i32, &str)]) -> PodInfo {
        PodInfo::from(&Pod {
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
        })
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
        assert_eq!(pod.resolve_target_port(&udp), Some(5353));
        assert_eq!(pod.resolve_target_port(&tcp), Some(5354));
        let missing = ServicePort {
            target_port: Some(IntOrString::String("web".into())),
            ..udp
        };
        assert_eq!(pod.resolve_target_port(&missing), None);
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
