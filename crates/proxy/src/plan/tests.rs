use std::collections::BTreeMap;
use std::sync::Arc;

use switchboard_discovery::EndpointPort;

use super::*;

fn ep(addr: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Endpoint {
    Endpoint {
        address: addr.parse().expect("test address"),
        hostname: None,
        node_name: Some(node.to_owned()),
        pod_name: None,
        ready,
        serving,
        terminating,
        ports: Arc::from(vec![EndpointPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }]),
    }
}

fn svc(service_type: ServiceType, endpoints: Vec<Endpoint>) -> Service {
    Service {
        key: ServiceKey::new("default", "web"),
        service_type,
        cluster_ips: vec!["127.96.0.5".parse().unwrap()],
        headless: false,
        external_name: None,
        external_ips: vec!["127.1.0.1".parse().unwrap()],
        load_balancer_ips: vec!["127.240.0.1".parse().unwrap(), "127.1.0.1".parse().unwrap()],
        ports: vec![
            ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: Some(30080),
            },
            ServicePort {
                name: "q".into(),
                protocol: Protocol::Sctp,
                port: 99,
                node_port: None,
            },
        ],
        session_affinity: None,
        internal_traffic_local: false,
        external_traffic_local: false,
        publish_not_ready_addresses: false,
        annotations: BTreeMap::new(),
        endpoints,
    }
}

fn addrs(fs: &[Frontend]) -> Vec<(String, Scope)> {
    fs.iter()
        .map(|f| (f.addr.to_string(), f.pool.scope))
        .collect()
}

#[test]
fn frontends_per_service_type() {
    let node = ["127.0.0.1".parse().unwrap()];
    let s = svc(ServiceType::ClusterIp, vec![]);
    assert_eq!(
        addrs(&frontends(&s, &node)),
        vec![
            ("127.96.0.5:80".into(), Scope::Internal),
            ("127.1.0.1:80".into(), Scope::External)
        ],
        "ClusterIP: cluster IP and external IPs; no NodePort, no LB IPs; SCTP skipped"
    );
    let s = svc(ServiceType::LoadBalancer, vec![]);
    assert_eq!(
        addrs(&frontends(&s, &node)),
        vec![
            ("127.96.0.5:80".into(), Scope::Internal),
            ("127.0.0.1:30080".into(), Scope::External),
            ("127.1.0.1:80".into(), Scope::External),
            ("127.240.0.1:80".into(), Scope::External),
        ],
        "an address named twice is served once"
    );
    let mut s = svc(ServiceType::NodePort, vec![]);
    s.headless = true;
    s.cluster_ips.clear();
    assert!(frontends(&s, &node).is_empty());
}

#[test]
fn ready_endpoints_then_serving_terminating_fallback() {
    let port = svc(ServiceType::ClusterIp, vec![]).ports[0].clone();
    let s = svc(
        ServiceType::ClusterIp,
        vec![
            ep("127.244.0.1", "a", true, true, false),
            ep("127.244.0.2", "b", false, true, true),
            ep("127.244.0.3", "a", false, false, false),
        ],
    );
    let t: Vec<String> = targets(&s, &port, Scope::Internal, "a")
        .iter()
        .map(|t| t.addr.to_string())
        .collect();
    assert_eq!(t, ["127.244.0.1:8080"]);

    let s = svc(
        ServiceType::ClusterIp,
        vec![
            ep("127.244.0.2", "b", false, true, true),
            ep("127.244.0.3", "a", false, false, false),
        ],
    );
    let t: Vec<String> = targets(&s, &port, Scope::Internal, "a")
        .iter()
        .map(|t| t.addr.to_string())
        .collect();
    assert_eq!(
        t,
        ["127.244.0.2:8080"],
        "no ready endpoint: serving terminating ones"
    );
}

#[test]
fn local_policies_restrict_to_this_node_per_scope() {
    let port = svc(ServiceType::ClusterIp, vec![]).ports[0].clone();
    let mut s = svc(
        ServiceType::NodePort,
        vec![
            ep("127.244.0.1", "a", true, true, false),
            ep("127.244.0.2", "b", true, true, false),
        ],
    );
    s.internal_traffic_local = true;
    let at = |s: &Service, scope, node| -> Vec<String> {
        targets(s, &port, scope, node)
            .iter()
            .map(|t| t.addr.to_string())
            .collect()
    };
    assert_eq!(at(&s, Scope::Internal, "b"), ["127.244.0.2:8080"]);
    assert_eq!(
        at(&s, Scope::External, "b").len(),
        2,
        "external traffic is still Cluster"
    );
    assert!(
        at(&s, Scope::Internal, "c").is_empty(),
        "no local endpoint: refuse"
    );
    s.internal_traffic_local = false;
    s.external_traffic_local = true;
    assert_eq!(at(&s, Scope::External, "a"), ["127.244.0.1:8080"]);
    assert_eq!(at(&s, Scope::Internal, "c").len(), 2);
}

#[test]
fn scheduler_from_annotation_with_a_reason_for_unknown_names() {
    let mut s = svc(ServiceType::ClusterIp, vec![]);
    assert_eq!(
        scheduler(&s, Algorithm::RoundRobin),
        (Algorithm::RoundRobin, None)
    );
    s.annotations
        .insert(SCHEDULER_ANNOTATION.into(), "sh".into());
    assert_eq!(
        scheduler(&s, Algorithm::RoundRobin),
        (Algorithm::SourceHash, None)
    );
    s.annotations
        .insert(SCHEDULER_ANNOTATION.into(), "fastest".into());
    let (a, why) = scheduler(&s, Algorithm::LeastConn);
    assert_eq!(a, Algorithm::LeastConn);
    let why = why.expect("a reason");
    assert!(
        why.contains("\"fastest\"") && why.contains("using the default scheduler lc"),
        "{why}"
    );
}
