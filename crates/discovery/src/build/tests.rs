use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use super::*;

fn svc(v: serde_json::Value) -> core::Service {
    serde_json::from_value(v).expect("test Service parses")
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).expect("test EndpointSlice parses")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address parses")
}

fn web() -> core::Service {
    svc(json!({
        "metadata": {"name": "web", "namespace": "ns", "annotations": {"switchboard.io/scheduler": "lc"}},
        "spec": {
            "type": "NodePort",
            "clusterIP": "127.96.0.5", "clusterIPs": ["127.96.0.5"],
            "externalIPs": ["127.1.2.3", "not-an-ip"],
            "ports": [
                {"name": "http", "port": 80, "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ],
            "sessionAffinity": "ClientIP",
            "internalTrafficPolicy": "Local"
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "127.240.0.1"}, {"hostname": "lb.example"}]}}
    }))
}

fn web_slice(name: &str, endpoints: serde_json::Value) -> EndpointSlice {
    slice(json!({
        "metadata": {"name": name, "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": endpoints
    }))
}

#[test]
fn service_fields_follow_the_spec_with_api_defaults() {
    let s = service(&web(), []).expect("named service builds");
    assert_eq!(s.key, ServiceKey::new("ns", "web"));
    assert_eq!(s.service_type, ServiceType::NodePort);
    assert_eq!(s.cluster_ips, vec![ip("127.96.0.5")]);
    assert!(!s.headless);
    assert_eq!(
        s.external_ips,
        vec![ip("127.1.2.3")],
        "unparsable IPs are skipped"
    );
    assert_eq!(s.load_balancer_ips, vec![ip("127.240.0.1")]);
    assert_eq!(
        s.ports,
        vec![
            ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: Some(30080)
            },
            ServicePort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 53,
                node_port: None
            },
        ]
    );
    assert_eq!(s.session_affinity, Some(DEFAULT_AFFINITY_TIMEOUT));
    assert!(s.internal_traffic_local);
    assert!(!s.external_traffic_local);
    assert_eq!(
        s.annotations
            .get("switchboard.io/scheduler")
            .map(String::as_str),
        Some("lc")
    );
    assert!(s.endpoints.is_empty());
}

#[test]
fn headless_external_name_and_affinity_timeout() {
    let headless = svc(
        json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}),
    );
    let s = service(&headless, []).unwrap();
    assert!(s.headless);
    assert!(s.cluster_ips.is_empty());
    assert_eq!(s.key.namespace, "default");
    assert_eq!(s.service_type, ServiceType::ClusterIp);

    let ext = svc(
        json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
    );
    let s = service(&ext, []).unwrap();
    assert_eq!(s.external_name.as_deref(), Some("db.example.com"));
    assert!(s.cluster_ips.is_empty());

    let sticky = svc(json!({"metadata": {"name": "s"}, "spec": {
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 2}}}}));
    assert_eq!(
        service(&sticky, []).unwrap().session_affinity,
        Some(Duration::from_secs(2))
    );
    let none = svc(json!({"metadata": {"name": "n"}, "spec": {"sessionAffinity": "None"}}));
    assert_eq!(service(&none, []).unwrap().session_affinity, None);

    assert!(
        service(&core::Service::default(), []).is_none(),
        "no name, no entry"
    );
}

#[test]
fn endpoint_conditions_default_as_the_api_says() {
    let s = web_slice(
        "web-a",
        json!([
            {"addresses": ["127.244.0.1"]},
            {"addresses": ["127.244.0.2"], "conditions": {"ready": false}},
            {"addresses": ["127.244.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
        ]),
    );
    let eps = endpoints(&ServiceKey::new("ns", "web"), [&s]);
    let conds: Vec<(bool, bool, bool)> = eps
        .iter()
        .map(|e| (e.ready, e.serving, e.terminating))
        .collect();
    assert_eq!(
        conds,
        vec![
            (true, true, false),
            (false, false, false),
            (false, true, true)
        ]
    );
}

#[test]
fn ports_node_and_pod_come_from_the_slice() {
    let s = slice(json!({
        "metadata": {"name": "web-a", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"port": 8080}, {"name": "noport"}],
        "endpoints": [
            {"addresses": ["127.244.0.1"], "nodeName": "n1", "hostname": "h1",
             "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "ns"}},
            {"addresses": ["127.244.0.2"], "targetRef": {"kind": "Node", "name": "n2"}},
        ]
    }));
    let eps = endpoints(&ServiceKey::new("ns", "web"), [&s]);
    assert_eq!(eps.len(), 2);
    assert_eq!(
        &*eps[0].ports,
        &[EndpointPort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 8080
        }],
        "unnamed port has name \"\"; a port without a number is skipped"
    );
    assert_eq!(eps[0].node_name.as_deref(), Some("n1"));
    assert_eq!(eps[0].hostname.as_deref(), Some("h1"));
    assert_eq!(eps[0].pod_name.as_deref(), Some("web-0"));
    assert_eq!(
        eps[1].pod_name, None,
        "targetRef of another kind is not a pod"
    );
    let unnamed = ServicePort {
        name: String::new(),
        protocol: Protocol::Tcp,
        port: 80,
        node_port: None,
    };
    assert_eq!(eps[0].port_for(&unnamed), Some(8080));
}

#[test]
fn duplicates_across_slices_merge_and_other_slices_are_ignored() {
    let a = web_slice(
        "web-a",
        json!([{"addresses": ["127.244.0.2"], "conditions": {"ready": false}},
                                      {"addresses": ["127.244.0.1"]}]),
    );
    let mut b = web_slice(
        "web-b",
        json!([{"addresses": ["127.244.0.2"], "conditions": {"ready": true}}]),
    );
    b.ports = Some(vec![
        serde_json::from_value(json!({"name": "metrics", "port": 9090})).unwrap(),
    ]);
    let other = slice(json!({
        "metadata": {"name": "db-a", "namespace": "ns", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["127.244.0.9"]}]}));
    let fqdn = slice(json!({
        "metadata": {"name": "web-f", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "FQDN", "endpoints": [{"addresses": ["x.example"]}]}));
    let s = service(&web(), [&a, &b, &other, &fqdn]).unwrap();
    let addrs: Vec<IpAddr> = s.endpoints.iter().map(|e| e.address).collect();
    assert_eq!(
        addrs,
        vec![ip("127.244.0.1"), ip("127.244.0.2")],
        "sorted, de-duplicated"
    );
    let moved = &s.endpoints[1];
    assert!(moved.ready, "the ready copy's conditions win");
    let names: Vec<&str> = moved.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["http", "dns", "metrics"]);
}

#[test]
fn table_entries_hold_no_spare_room() {
    let s = service(
        &web(),
        [&web_slice(
            "web-1",
            json!([{"addresses": ["127.244.0.1"]}, {"addresses": ["not-an-ip"]}]),
        )],
    )
    .expect("named service builds");
    let exact = |len: usize, capacity: usize| assert_eq!(len, capacity);
    exact(s.cluster_ips.len(), s.cluster_ips.capacity());
    exact(s.external_ips.len(), s.external_ips.capacity());
    exact(s.load_balancer_ips.len(), s.load_balancer_ips.capacity());
    exact(s.ports.len(), s.ports.capacity());
    exact(s.endpoints.len(), s.endpoints.capacity());
    let endpoints = slice_endpoints(&web_slice(
        "web-1",
        json!([{"addresses": ["127.244.0.1"]}, {"addresses": ["not-an-ip"]}]),
    ));
    exact(endpoints.len(), endpoints.capacity());
}
