//! Service environment variables, exactly as the kubelet builds them
//! (`pkg/kubelet/envvars/envvars.go` `FromServices`, and `getServiceEnvVarMap`
//! in `kubelet_pods.go` for which services a pod sees).
//!
//! For Service `redis-primary` with ClusterIP `10.0.0.11` and port 6379/TCP:
//!
//! ```text
//! REDIS_PRIMARY_SERVICE_HOST=10.0.0.11
//! REDIS_PRIMARY_SERVICE_PORT=6379
//! REDIS_PRIMARY_PORT=tcp://10.0.0.11:6379
//! REDIS_PRIMARY_PORT_6379_TCP=tcp://10.0.0.11:6379
//! REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp
//! REDIS_PRIMARY_PORT_6379_TCP_PORT=6379
//! REDIS_PRIMARY_PORT_6379_TCP_ADDR=10.0.0.11
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// The namespace of the master services (kubelet `--master-service-namespace`).
pub const MASTER_SERVICE_NAMESPACE: &str = "default";

/// The services every pod sees, whatever its namespace and `enableServiceLinks`.
pub const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// The environment of a pod in `namespace`: the variables of the master
/// services (`kubernetes` in `default`) always, and of every service of the
/// pod's namespace when `enable_service_links` (the `PodSpec` field; its
/// default is true). A service of the pod's namespace replaces a master
/// service of the same name, as in the kubelet. `services` may hold the
/// services of any namespaces; the others are ignored.
///
/// Sorted by variable name: the kubelet collects them in a map, so it gives
/// no order of its own, and a sorted list is the stable rendering of that map.
pub fn for_pod(
    services: &[Service],
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    // Service name → service, as the kubelet's `serviceMap`.
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in services {
        if !is_service_ip_set(svc) {
            continue;
        }
        let Some(name) = svc.metadata.name.as_deref() else {
            continue;
        };
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        if ns == MASTER_SERVICE_NAMESPACE && MASTER_SERVICES.contains(&name) {
            // Only if the pod's namespace has not already given its own.
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, svc);
        }
    }
    // The map dedups names: two services can only yield the same variable
    // through contrived names (service `a-port-80-tcp` vs port 80 of `a`);
    // the kubelet's winner then depends on Go map order, ours on name order.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for svc in chosen.into_values() {
        env.extend(from_service(svc));
    }
    env.into_iter().collect()
}

/// The kubelet's `IsServiceIPSet`: headless (`None`) and ExternalName (no
/// ClusterIP) services have no variables.
pub fn is_service_ip_set(svc: &Service) -> bool {
    let ip = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("");
    !ip.is_empty() && ip != "None"
}

/// The variables of one service, in the kubelet's order (`FromServices` for
/// a single service): host, first port, named ports, then the Docker-link
/// variables. Empty for a service without a ClusterIP. A service without
/// ports (which validation rejects unless headless) gets only `_SERVICE_HOST`.
pub fn from_service(svc: &Service) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !is_service_ip_set(svc) {
        return out;
    }
    let Some(spec) = svc.spec.as_ref() else {
        return out;
    };
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    let prefix = env_name(svc.metadata.name.as_deref().unwrap_or(""));
    let ports = spec.ports.as_deref().unwrap_or(&[]);

    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_owned()));
    let Some(first) = ports.first() else {
        return out;
    };
    let port_var = format!("{prefix}_SERVICE_PORT");
    out.push((port_var.clone(), first.port.to_string()));
    // Every named port (validation lets only a single port go unnamed).
    for sp in ports {
        if let Some(name) = sp.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{port_var}_{}", env_name(name)),
                sp.port.to_string(),
            ));
        }
    }
    // Docker-link variables.
    for (i, sp) in ports.iter().enumerate() {
        let protocol = sp
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        // net.JoinHostPort: an IPv6 ClusterIP goes in brackets in the URL.
        let url = if ip.contains(':') {
            format!("{lower}://[{ip}]:{}", sp.port)
        } else {
            format!("{lower}://{ip}:{}", sp.port)
        };
        if i == 0 {
            // Docker special-cases the first port.
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", sp.port, protocol.to_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), sp.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.to_owned()));
    }
    out
}

/// The kubelet's `makeEnvVariableName`: upper case, `-` → `_`. (Kubelets
/// before 1.3 also mapped `.` and prefixed a leading digit with `_`; neither
/// can occur in a valid Service name, a DNS-1035 label.)
pub fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: (!ip.is_empty()).then(|| ip.to_owned()),
                ports: Some(
                    ports
                        .iter()
                        .map(|&(name, port, protocol)| ServicePort {
                            name: name.map(str::to_owned),
                            port,
                            protocol: protocol.map(str::to_owned),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// The example of kubernetes.io/docs/concepts/services-networking/service#environment-variables.
    #[test]
    fn documentation_example() {
        let redis = svc(
            "default",
            "redis-primary",
            "10.0.0.11",
            &[(None, 6379, Some("TCP"))],
        );
        assert_eq!(
            from_service(&redis),
            pairs(&[
                ("REDIS_PRIMARY_SERVICE_HOST", "10.0.0.11"),
                ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
                ("REDIS_PRIMARY_PORT", "tcp://10.0.0.11:6379"),
                ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.0.0.11:6379"),
                ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
                ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
                ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.0.0.11"),
            ])
        );
        // And as a pod of `default` sees it, with the kubernetes service.
        let api = svc(
            "default",
            "kubernetes",
            "10.0.0.1",
            &[(Some("https"), 443, Some("TCP"))],
        );
        let env = for_pod(&[redis, api], "default", true);
        assert_eq!(env.len(), 7 + 8);
        assert!(env.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        assert!(env.contains(&("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into())));
        assert!(env.contains(&("REDIS_PRIMARY_SERVICE_HOST".into(), "10.0.0.11".into())));
    }

    /// The cases of the kubelet's own unit test (`envvars_test.go`
    /// `TestFromServices`): named ports, two protocols on one port number, a
    /// port named with digits, headless and empty ClusterIP skipped.
    #[test]
    fn kubelet_unit_test_cases() {
        let services = [
            svc(
                "default",
                "foo-bar",
                "1.2.3.4",
                &[(None, 8080, Some("TCP"))],
            ),
            svc(
                "default",
                "abc-123",
                "5.6.7.8",
                &[
                    (Some("u-d-p"), 8081, Some("UDP")),
                    (Some("t-c-p"), 8081, Some("TCP")),
                ],
            ),
            svc(
                "default",
                "q-u-u-x",
                "9.8.7.6",
                &[(None, 8082, Some("TCP")), (Some("8083"), 8083, Some("TCP"))],
            ),
            svc(
                "default",
                "svrc-clusterip-none",
                "None",
                &[(None, 8082, Some("TCP"))],
            ),
            svc(
                "default",
                "svrc-clusterip-empty",
                "",
                &[(None, 8082, Some("TCP"))],
            ),
        ];
        let vars: Vec<(String, String)> = services.iter().flat_map(from_service).collect();
        assert_eq!(
            vars,
            pairs(&[
                ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
                ("FOO_BAR_SERVICE_PORT", "8080"),
                ("FOO_BAR_PORT", "tcp://1.2.3.4:8080"),
                ("FOO_BAR_PORT_8080_TCP", "tcp://1.2.3.4:8080"),
                ("FOO_BAR_PORT_8080_TCP_PROTO", "tcp"),
                ("FOO_BAR_PORT_8080_TCP_PORT", "8080"),
                ("FOO_BAR_PORT_8080_TCP_ADDR", "1.2.3.4"),
                ("ABC_123_SERVICE_HOST", "5.6.7.8"),
                ("ABC_123_SERVICE_PORT", "8081"),
                ("ABC_123_SERVICE_PORT_U_D_P", "8081"),
                ("ABC_123_SERVICE_PORT_T_C_P", "8081"),
                ("ABC_123_PORT", "udp://5.6.7.8:8081"),
                ("ABC_123_PORT_8081_UDP", "udp://5.6.7.8:8081"),
                ("ABC_123_PORT_8081_UDP_PROTO", "udp"),
                ("ABC_123_PORT_8081_UDP_PORT", "8081"),
                ("ABC_123_PORT_8081_UDP_ADDR", "5.6.7.8"),
                ("ABC_123_PORT_8081_TCP", "tcp://5.6.7.8:8081"),
                ("ABC_123_PORT_8081_TCP_PROTO", "tcp"),
                ("ABC_123_PORT_8081_TCP_PORT", "8081"),
                ("ABC_123_PORT_8081_TCP_ADDR", "5.6.7.8"),
                ("Q_U_U_X_SERVICE_HOST", "9.8.7.6"),
                ("Q_U_U_X_SERVICE_PORT", "8082"),
                ("Q_U_U_X_SERVICE_PORT_8083", "8083"),
                ("Q_U_U_X_PORT", "tcp://9.8.7.6:8082"),
                ("Q_U_U_X_PORT_8082_TCP", "tcp://9.8.7.6:8082"),
                ("Q_U_U_X_PORT_8082_TCP_PROTO", "tcp"),
                ("Q_U_U_X_PORT_8082_TCP_PORT", "8082"),
                ("Q_U_U_X_PORT_8082_TCP_ADDR", "9.8.7.6"),
                ("Q_U_U_X_PORT_8083_TCP", "tcp://9.8.7.6:8083"),
                ("Q_U_U_X_PORT_8083_TCP_PROTO", "tcp"),
                ("Q_U_U_X_PORT_8083_TCP_PORT", "8083"),
                ("Q_U_U_X_PORT_8083_TCP_ADDR", "9.8.7.6"),
            ])
        );
    }

    #[test]
    fn protocol_defaults_to_tcp() {
        let unset = svc("default", "web", "5.6.7.8", &[(None, 80, None)]);
        let env = from_service(&unset);
        assert!(env.contains(&("WEB_PORT".into(), "tcp://5.6.7.8:80".into())));
        assert!(env.contains(&("WEB_PORT_80_TCP_PROTO".into(), "tcp".into())));
    }

    #[test]
    fn ipv6_cluster_ip_is_bracketed_in_urls_only() {
        let v6 = svc("default", "web", "fd00::10", &[(None, 80, Some("SCTP"))]);
        let env = from_service(&v6);
        assert!(env.contains(&("WEB_PORT".into(), "sctp://[fd00::10]:80".into())));
        assert!(env.contains(&("WEB_PORT_80_SCTP_ADDR".into(), "fd00::10".into())));
        assert!(env.contains(&("WEB_SERVICE_HOST".into(), "fd00::10".into())));
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter()
            .filter(|(k, _)| k.ends_with("_SERVICE_HOST"))
            .map(|(k, _)| k.as_str())
            .collect()
    }

    #[test]
    fn which_services_a_pod_sees() {
        let all = [
            svc(
                "default",
                "kubernetes",
                "10.0.0.1",
                &[(Some("https"), 443, None)],
            ),
            svc("default", "web", "10.0.0.2", &[(None, 80, None)]),
            svc("shop", "cart", "10.0.0.3", &[(None, 80, None)]),
            svc("shop", "db", "None", &[(None, 5432, None)]),
            svc("other", "mail", "10.0.0.4", &[(None, 25, None)]),
        ];
        assert_eq!(
            names(&for_pod(&all, "shop", true)),
            ["CART_SERVICE_HOST", "KUBERNETES_SERVICE_HOST"]
        );
        assert_eq!(
            names(&for_pod(&all, "default", true)),
            ["KUBERNETES_SERVICE_HOST", "WEB_SERVICE_HOST"]
        );
        // enableServiceLinks: false → only the master service.
        assert_eq!(
            names(&for_pod(&all, "shop", false)),
            ["KUBERNETES_SERVICE_HOST"]
        );
        assert_eq!(
            names(&for_pod(&all, "default", false)),
            ["KUBERNETES_SERVICE_HOST"]
        );
        assert_eq!(
            names(&for_pod(&all, "empty", true)),
            ["KUBERNETES_SERVICE_HOST"]
        );
    }

    #[test]
    fn own_namespace_service_overrides_the_master_one() {
        let master = svc("default", "kubernetes", "10.0.0.1", &[(None, 443, None)]);
        let own = svc("shop", "kubernetes", "10.0.9.9", &[(None, 8443, None)]);
        for order in [[master.clone(), own.clone()], [own.clone(), master.clone()]] {
            let env = for_pod(&order, "shop", true);
            assert!(
                env.contains(&("KUBERNETES_SERVICE_HOST".into(), "10.0.9.9".into())),
                "{env:?}"
            );
            // Without service links the namespace's own one is not seen.
            let env = for_pod(&order, "shop", false);
            assert!(
                env.contains(&("KUBERNETES_SERVICE_HOST".into(), "10.0.0.1".into())),
                "{env:?}"
            );
        }
    }
}
