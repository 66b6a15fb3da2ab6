//! Unit tests of the legacy Endpoints mirror.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use k8s_openapi::api::core::v1::Pod;

fn service(publish_not_ready: bool) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".to_owned()),
            namespace: Some("default".to_owned()),
            labels: Some(BTreeMap::from([("team".to_owned(), "a".to_owned())])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
            cluster_ip: Some("10.96.0.10".to_owned()),
            publish_not_ready_addresses: Some(publish_not_ready),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: 80,
                target_port: Some(IntOrString::String("web".to_owned())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(i: usize, ready: bool, port: i32) -> Pod {
    let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("web-{i}")),
            namespace: Some("default".to_owned()),
            uid: Some(format!("uid-{i}")),
            labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".to_owned(),
                ports: Some(vec![ContainerPort {
                    name: Some("web".to_owned()),
                    container_port: port,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn count(e: &Endpoints) -> (usize, usize) {
    let subsets = e.subsets.clone().unwrap_or_default();
    let len = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    (
        subsets.iter().map(|s| len(&s.addresses)).sum(),
        subsets.iter().map(|s| len(&s.not_ready_addresses)).sum(),
    )
}

fn over_capacity(e: &Endpoints) -> Option<String> {
    e.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION).cloned())
}

#[test]
fn ready_and_not_ready_addresses_with_resolved_ports() {
    let pods = [pod(1, true, 8080), pod(2, false, 8080), pod(3, true, 9090)];
    let refs: Vec<PodInfo> = pods.iter().map(PodInfo::from).collect();
    let e = endpoints_for(&service(false), &refs).expect("service has a selector");
    assert_eq!(e.metadata.name.as_deref(), Some("web"));
    assert_eq!(
        e.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("team"))
            .map(String::as_str),
        Some("a")
    );
    let mut subsets = e.subsets.clone().unwrap_or_default();
    subsets.sort_by_key(|s| s.ports.as_ref().map(|p| p[0].port));
    assert_eq!(subsets.len(), 2, "{subsets:?}");
    let ips = |v: &Option<Vec<EndpointAddress>>| {
        v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.1"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.0.0.2"]);
    assert_eq!(subsets[0].ports.clone().unwrap_or_default()[0].port, 8080);
    assert_eq!(
        subsets[0].ports.clone().unwrap_or_default()[0]
            .name
            .as_deref(),
        Some("http")
    );
    assert_eq!(ips(&subsets[1].addresses), vec!["10.0.0.3"]);
    assert_eq!(subsets[1].ports.clone().unwrap_or_default()[0].port, 9090);
    assert_eq!(over_capacity(&e), None);
}

#[test]
fn terminating_pods_are_left_out_unless_publishing_not_ready() {
    let mut p = pod(1, true, 8080);
    p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    let pods = [p, pod(2, false, 8080)];
    let refs: Vec<PodInfo> = pods.iter().map(PodInfo::from).collect();
    let e = endpoints_for(&service(false), &refs).expect("selector");
    assert_eq!(count(&e), (0, 1));
    let e = endpoints_for(&service(true), &refs).expect("selector");
    assert_eq!(
        count(&e),
        (2, 0),
        "publishNotReadyAddresses makes all ready"
    );
}

#[test]
fn truncated_at_1000_addresses_with_annotation() {
    let pods: Vec<Pod> = (1..=1001).map(|i| pod(i, i % 2 == 0, 8080)).collect();
    let refs: Vec<PodInfo> = pods.iter().map(PodInfo::from).collect();
    let e = endpoints_for(&service(false), &refs).expect("selector");
    let (ready, not_ready) = count(&e);
    assert_eq!(ready + not_ready, 1000);
    assert_eq!(ready, 500, "ready addresses are kept first");
    assert_eq!(over_capacity(&e).as_deref(), Some(TRUNCATED));

    let e = endpoints_for(&service(false), &refs[..1000]).expect("selector");
    assert_eq!(count(&e), (500, 500));
    assert_eq!(over_capacity(&e), None);
}

#[test]
fn truncation_keeps_only_ready_when_ready_alone_overflow() {
    let pods: Vec<Pod> = (1..=1500)
        .map(|i| pod(i, i <= 1200, 8080 + (i % 2) as i32))
        .collect();
    let refs: Vec<PodInfo> = pods.iter().map(PodInfo::from).collect();
    let e = endpoints_for(&service(false), &refs).expect("selector");
    assert_eq!(count(&e), (1000, 0));
    assert_eq!(e.subsets.as_ref().map(Vec::len), Some(2));
}

#[test]
fn plan_write_is_minimal_and_clears_the_annotation() {
    let svc = service(false);
    let many: Vec<Pod> = (1..=1001).map(|i| pod(i, true, 8080)).collect();
    let refs: Vec<PodInfo> = many.iter().map(PodInfo::from).collect();
    let desired = endpoints_for(&svc, &refs).expect("selector");
    let Write::Create(mut current) = plan_write(None, desired.clone()) else {
        panic!("nothing exists yet: create");
    };
    current.metadata.resource_version = Some("7".to_owned());
    assert_eq!(plan_write(Some(&current), desired), Write::Unchanged);

    let desired = endpoints_for(&svc, &refs[..10]).expect("selector");
    let Write::Replace(next) = plan_write(Some(&current), desired) else {
        panic!("fewer pods: replace");
    };
    assert_eq!(next.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(over_capacity(&next), None);
    assert_eq!(count(&next), (10, 0));
}

#[test]
fn selectorless_services_are_not_managed() {
    let mut svc = service(false);
    if let Some(spec) = svc.spec.as_mut() {
        spec.selector = None;
    }
    assert!(endpoints_for::<PodInfo>(&svc, &[]).is_none());
}
