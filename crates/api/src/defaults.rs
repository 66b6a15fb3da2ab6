//! Defaulting as the Kubernetes apiserver applies it before validation
//! (`pkg/apis/core/v1/defaults.go` and the Service REST strategy).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Namespace, NamespaceSpec, NamespaceStatus, Pod, PodSpec, PodStatus,
    PodTemplateSpec, Probe, Secret, Service, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// ClientIP affinity timeout when none is given: three hours.
pub const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i32 = 10800;
/// Pod termination grace period when none is given.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;

fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    spec.type_.as_deref() != Some("ExternalName")
}

fn needs_node_port(spec: &ServiceSpec) -> bool {
    match spec.type_.as_deref() {
        Some("NodePort") => true,
        Some("LoadBalancer") => spec.allocate_load_balancer_node_ports != Some(false),
        _ => false,
    }
}

fn needs_hc_node_port(spec: &ServiceSpec) -> bool {
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec.external_traffic_policy.as_deref() == Some("Local")
}

/// Fills in a Service's defaults: type ClusterIP, sessionAffinity None (and a
/// 10800 s timeout for ClientIP), protocol TCP and targetPort = port on each
/// port, internalTrafficPolicy Cluster (not for ExternalName),
/// externalTrafficPolicy Cluster where the Service is reachable from outside,
/// allocateLoadBalancerNodePorts true for LoadBalancer, `clusterIPs` from a
/// lone `clusterIP`, and ipFamilyPolicy SingleStack with the family of the
/// cluster IP (IPv4 when it is still to be allocated).
pub fn default_service(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    if spec.type_.as_deref().unwrap_or("").is_empty() {
        spec.type_ = Some("ClusterIP".into());
    }
    let ty = spec.type_.clone().unwrap_or_default();
    if spec.session_affinity.as_deref().unwrap_or("").is_empty() {
        spec.session_affinity = Some("None".into());
    }
    if spec.session_affinity.as_deref() == Some("ClientIP")
        && spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .is_none()
    {
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(DEFAULT_CLIENT_IP_AFFINITY_SECONDS),
            }),
        });
    }
    for p in spec.ports.iter_mut().flatten() {
        if p.protocol.as_deref().unwrap_or("").is_empty() {
            p.protocol = Some("TCP".into());
        }
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if ty != "ExternalName" && spec.internal_traffic_policy.is_none() {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    let external_ips = spec.external_ips.as_ref().is_some_and(|v| !v.is_empty());
    let externally_accessible =
        ty == "NodePort" || ty == "LoadBalancer" || (ty == "ClusterIP" && external_ips);
    if externally_accessible
        && spec
            .external_traffic_policy
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        spec.external_traffic_policy = Some("Cluster".into());
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }
    // Kubernetes' strategy copies a lone singular clusterIP into the plural
    // (old clients only know the singular).
    if let Some(ip) = spec.cluster_ip.clone().filter(|s| !s.is_empty())
        && spec.cluster_ips.as_ref().is_none_or(|v| v.is_empty())
    {
        spec.cluster_ips = Some(vec![ip]);
    }
    if needs_cluster_ip(spec) {
        if spec.ip_family_policy.is_none() {
            spec.ip_family_policy = Some("SingleStack".into());
        }
        if spec.ip_families.as_ref().is_none_or(|v| v.is_empty()) {
            let families: Vec<String> = spec
                .cluster_ips
                .iter()
                .flatten()
                .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
                .map(|ip| if ip.is_ipv6() { "IPv6" } else { "IPv4" }.to_string())
                .collect();
            spec.ip_families = Some(if families.is_empty() {
                vec!["IPv4".into()]
            } else {
                families
            });
        }
    }
}

/// Prepares an updated Service from the stored one, as the Kubernetes
/// Service REST does before defaulting and validating an update:
///
/// - values the server allocated (`clusterIP(s)`, `nodePort`s matched by port
///   name, `healthCheckNodePort`) are kept when the new object leaves them
///   out (a `kubectl apply` of the original manifest), as long as the type
///   still needs them;
/// - a changed singular `clusterIP` with unchanged plural updates the plural;
/// - a type change that no longer needs a cluster IP, node ports or a health
///   check port wipes the values the user did not change (so ClusterIP ->
///   ExternalName just works), and load-balancer status is cleared when the
///   type stops being LoadBalancer.
pub fn prepare_service_update(new: &mut Service, old: &Service) {
    let default_spec = ServiceSpec::default();
    let os = old.spec.as_ref().unwrap_or(&default_spec);
    let ns = new.spec.get_or_insert_with(Default::default);
    if ns.type_.as_deref().unwrap_or("").is_empty() {
        ns.type_ = Some("ClusterIP".into());
    }

    // Singular changed, plural untouched: follow the singular.
    if ns.cluster_ip != os.cluster_ip && ns.cluster_ips == os.cluster_ips {
        ns.cluster_ips = ns
            .cluster_ip
            .clone()
            .filter(|s| !s.is_empty())
            .map(|ip| vec![ip]);
    }

    // Singular given, plural left out (an old client, or a manifest that
    // only knows `clusterIP`): the plural follows the singular.
    if let Some(ip) = ns.cluster_ip.clone().filter(|s| !s.is_empty())
        && ns.cluster_ips.as_ref().is_none_or(|v| v.is_empty())
    {
        ns.cluster_ips = Some(vec![ip]);
    }

    // patchAllocatedValues
    if needs_cluster_ip(os) && needs_cluster_ip(ns) {
        if ns.cluster_ip.as_deref().unwrap_or("").is_empty() {
            ns.cluster_ip = os.cluster_ip.clone();
        }
        if ns.cluster_ips.as_ref().is_none_or(|v| v.is_empty())
            && os.cluster_ips.as_ref().is_some_and(|v| !v.is_empty())
        {
            ns.cluster_ips = os.cluster_ips.clone();
        }
    }
    if needs_node_port(os) && needs_node_port(ns) {
        let used_by = |s: &ServiceSpec| -> Vec<i32> {
            s.ports
                .iter()
                .flatten()
                .filter_map(|p| p.node_port)
                .filter(|&n| n != 0)
                .collect()
        };
        let new_used = used_by(ns);
        let used: Vec<i32> = used_by(os)
            .into_iter()
            .filter(|n| new_used.contains(n))
            .collect();
        let by_name: BTreeMap<String, i32> = os
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.node_port.unwrap_or(0)))
            .collect();
        for p in ns.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) == 0 {
                let old_val = by_name
                    .get(p.name.as_deref().unwrap_or(""))
                    .copied()
                    .unwrap_or(0);
                if old_val != 0 && !used.contains(&old_val) {
                    p.node_port = Some(old_val);
                }
            }
        }
    }
    if needs_hc_node_port(os)
        && needs_hc_node_port(ns)
        && ns.health_check_node_port.unwrap_or(0) == 0
    {
        ns.health_check_node_port = os.health_check_node_port;
    }

    // dropTypeDependentFields
    if needs_cluster_ip(os) && !needs_cluster_ip(ns) {
        if ns.cluster_ip == os.cluster_ip && ns.cluster_ips == os.cluster_ips {
            ns.cluster_ip = None;
            ns.cluster_ips = None;
        }
        if ns.ip_families == os.ip_families {
            ns.ip_families = None;
        }
        if ns.ip_family_policy == os.ip_family_policy {
            ns.ip_family_policy = None;
        }
        if ns.internal_traffic_policy == os.internal_traffic_policy {
            ns.internal_traffic_policy = None;
        }
    }
    let node_ports = |s: &ServiceSpec| -> Vec<Option<i32>> {
        s.ports.iter().flatten().map(|p| p.node_port).collect()
    };
    if needs_node_port(os) && !needs_node_port(ns) && node_ports(os) == node_ports(ns) {
        for p in ns.ports.iter_mut().flatten() {
            p.node_port = None;
        }
    }
    if needs_hc_node_port(os)
        && !needs_hc_node_port(ns)
        && os.health_check_node_port == ns.health_check_node_port
    {
        ns.health_check_node_port = None;
    }
    if ns.type_.as_deref() != Some("LoadBalancer") {
        ns.allocate_load_balancer_node_ports = None;
    }
    let external_ips = ns.external_ips.as_ref().is_some_and(|v| !v.is_empty());
    let externally_accessible = matches!(ns.type_.as_deref(), Some("NodePort" | "LoadBalancer"))
        || (ns.type_.as_deref() == Some("ClusterIP") && external_ips);
    if !externally_accessible {
        ns.external_traffic_policy = None;
    }
    if os.type_.as_deref() == Some("LoadBalancer")
        && ns.type_.as_deref() != Some("LoadBalancer")
        && let Some(st) = &mut new.status
    {
        st.load_balancer = None;
    }
}

/// Fills in a Pod's defaults: those of its spec (see [`default_pod_spec`])
/// and status.phase Pending when the Pod has no status yet (a create).
pub fn default_pod(pod: &mut Pod) {
    default_pod_spec(pod.spec.get_or_insert_with(Default::default));
    let status = pod.status.get_or_insert_with(PodStatus::default);
    status.phase.get_or_insert_with(|| "Pending".into());
}

/// Fills in a pod spec's defaults, for Pods and for the templates of
/// workloads alike: restartPolicy Always, terminationGracePeriodSeconds 30,
/// dnsPolicy ClusterFirst, schedulerName, enableServiceLinks, per container
/// imagePullPolicy, termination message settings, port protocol TCP and the
/// probes' timing fields.
pub fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.enable_service_links.get_or_insert(true);
    spec.security_context.get_or_insert_with(Default::default);
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        if c.image_pull_policy.is_none() {
            // Kubernetes pulls `:latest` (or untagged) images every time.
            let image = c.image.as_deref().unwrap_or("");
            let last = image.rsplit('/').next().unwrap_or(image);
            let tagged = last.contains(':') && !last.ends_with(":latest");
            let pinned = image.contains('@');
            c.image_pull_policy = Some(
                if tagged || pinned {
                    "IfNotPresent"
                } else {
                    "Always"
                }
                .into(),
            );
        }
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy
            .get_or_insert_with(|| "File".into());
        for p in c.ports.iter_mut().flatten() {
            if p.protocol.as_deref().unwrap_or("").is_empty() {
                p.protocol = Some("TCP".into());
            }
        }
        for probe in [
            &mut c.readiness_probe,
            &mut c.liveness_probe,
            &mut c.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            default_probe(probe);
        }
    }
}

/// A probe's timing defaults (`SetDefaults_Probe`): every 10 s, a 1 s
/// timeout, one success and three failures to flip; an httpGet probe's
/// scheme is HTTP and its path `/`.
fn default_probe(probe: &mut Probe) {
    probe.period_seconds.get_or_insert(10);
    probe.timeout_seconds.get_or_insert(1);
    probe.success_threshold.get_or_insert(1);
    probe.failure_threshold.get_or_insert(3);
    if let Some(http) = probe.http_get.as_mut() {
        http.scheme.get_or_insert_with(|| "HTTP".into());
        http.path.get_or_insert_with(|| "/".into());
    }
}

/// Fills in a Deployment's defaults (`apps/v1` `SetDefaults_Deployment`):
/// one replica, the RollingUpdate strategy with 25% surge and 25%
/// unavailable, ten old ReplicaSets kept, a 600 s progress deadline, and the
/// template's pod defaults.
pub fn default_deployment(deploy: &mut Deployment) {
    let spec = deploy.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
    if kind == "RollingUpdate" {
        let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
        rolling
            .max_surge
            .get_or_insert_with(|| IntOrString::String("25%".into()));
        rolling
            .max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".into()));
    }
    default_template(&mut spec.template);
}

/// Fills in a ReplicaSet's defaults: one replica and the template's pod
/// defaults.
pub fn default_replica_set(rs: &mut ReplicaSet) {
    let spec = rs.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    if let Some(template) = spec.template.as_mut() {
        default_template(template);
    }
}

fn default_template(template: &mut PodTemplateSpec) {
    default_pod_spec(template.spec.get_or_insert_with(Default::default));
}

/// Fills in an EndpointSlice's defaults: each port's protocol TCP and name "".
pub fn default_endpoint_slice(slice: &mut EndpointSlice) {
    for p in slice.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
        p.name.get_or_insert_with(String::new);
    }
}

/// Fills in a Namespace's defaults: the `kubernetes.io/metadata.name` label,
/// the `kubernetes` finalizer and phase Active.
pub fn default_namespace(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone() {
        ns.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("kubernetes.io/metadata.name".into(), name);
    }
    let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
    spec.finalizers
        .get_or_insert_with(|| vec!["kubernetes".into()]);
    let status = ns.status.get_or_insert_with(NamespaceStatus::default);
    status.phase.get_or_insert_with(|| "Active".into());
}

/// Fills in a Secret's default type, `Opaque`.
pub fn default_secret(secret: &mut Secret) {
    if secret.type_.as_deref().unwrap_or("").is_empty() {
        secret.type_ = Some("Opaque".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_defaults_match_kubernetes() {
        let mut s: Service = serde_json::from_value(json!({"metadata": {"name": "w"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}))
        .unwrap();
        default_service(&mut s);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v["spec"],
            json!({"type": "LoadBalancer", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                   "externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": true,
                   "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                   "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]})
        );
        let mut e: Service = serde_json::from_value(
            json!({"spec": {"type": "ExternalName", "externalName": "a.b"}}),
        )
        .unwrap();
        default_service(&mut e);
        let spec = e.spec.unwrap();
        assert_eq!(spec.internal_traffic_policy, None);
        assert_eq!(spec.ip_families, None);
        let mut c: Service = serde_json::from_value(
            json!({"spec": {"clusterIP": "::1", "ports": [{"port": 1, "targetPort": "http"}]}}),
        )
        .unwrap();
        default_service(&mut c);
        let spec = c.spec.unwrap();
        assert_eq!(spec.cluster_ips, Some(vec!["::1".to_string()]));
        assert_eq!(spec.ip_families, Some(vec!["IPv6".to_string()]));
        assert_eq!(
            spec.ports.unwrap()[0].target_port,
            Some(IntOrString::String("http".into()))
        );
    }

    #[test]
    fn pod_defaults() {
        let mut p: Pod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "reg:5000/x:1.2"}]}}))
        .unwrap();
        default_pod(&mut p);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Always")
        );
        assert_eq!(
            spec.containers[1].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
        assert_eq!(
            spec.containers[0].ports.as_ref().unwrap()[0]
                .protocol
                .as_deref(),
            Some("TCP")
        );
        assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn node_ports_survive_an_apply_and_drop_on_type_change() {
        let old: Service = serde_json::from_value(json!({"spec": {"type": "NodePort", "clusterIP": "127.96.0.9",
            "clusterIPs": ["127.96.0.9"], "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}})).unwrap();
        let mut new: Service = serde_json::from_value(json!({"spec": {"type": "NodePort",
            "ports": [{"name": "http", "port": 80}]}}))
        .unwrap();
        prepare_service_update(&mut new, &old);
        let spec = new.spec.as_ref().unwrap();
        assert_eq!(spec.ports.as_ref().unwrap()[0].node_port, Some(30080));
        assert_eq!(spec.cluster_ip.as_deref(), Some("127.96.0.9"));

        let mut back = old.clone();
        back.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        prepare_service_update(&mut back, &old);
        assert_eq!(back.spec.unwrap().ports.unwrap()[0].node_port, None);
    }
}
