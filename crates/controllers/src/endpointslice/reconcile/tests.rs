//! Unit tests of the pure EndpointSlice reconcile.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", "web")])),
            cluster_ip: Some("10.96.0.10".to_owned()),
            ip_families: Some(vec!["IPv4".to_owned()]),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: 80,
                protocol: Some("TCP".to_owned()),
                target_port: Some(IntOrString::Int(8080)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-a".to_owned()),
            containers: vec![Container {
                name: "c".to_owned(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            pod_ip: Some(ip.to_owned()),
            pod_ips: Some(vec![PodIP { ip: ip.to_owned() }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn pods(n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| {
            pod(
                &format!("web-{i}"),
                &format!("10.1.{}.{}", i / 250, i % 250 + 1),
                true,
            )
        })
        .collect()
}

fn with_named_port(mut p: Pod, name: &str, port: i32) -> Pod {
    let spec = p.spec.as_mut().expect("test pods have a spec");
    spec.containers[0].ports = Some(vec![ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }]);
    p
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    p
}

/// The controller's view of the pods, as its pod cache holds them.
fn refs(pods: &[Pod]) -> Vec<PodInfo> {
    pods.iter().map(PodInfo::from).collect()
}

/// Play the apiserver: apply a plan to the current slices, naming created
/// slices and bumping resourceVersions, as a real server would.
struct Server {
    slices: Vec<EndpointSlice>,
    next: u64,
}

impl Server {
    fn new() -> Self {
        Server {
            slices: Vec::new(),
            next: 1,
        }
    }

    fn apply(&mut self, plan: &Plan) {
        for s in &plan.create {
            assert!(s.metadata.name.is_none(), "created slices use generateName");
            let mut s = s.clone();
            let prefix = s.metadata.generate_name.clone().unwrap_or_default();
            s.metadata.name = Some(format!("{prefix}{:05}", self.next));
            s.metadata.resource_version = Some(self.next.to_string());
            self.next += 1;
            self.slices.push(s);
        }
        for s in &plan.update {
            let slot = self
                .slices
                .iter_mut()
                .find(|e| e.metadata.name == s.metadata.name)
                .expect("updates name an existing slice");
            assert_eq!(
                slot.metadata.resource_version, s.metadata.resource_version,
                "update is based on the current version"
            );
            *slot = s.clone();
            slot.metadata.resource_version = Some(self.next.to_string());
            self.next += 1;
        }
        for s in &plan.delete {
            let before = self.slices.len();
            self.slices.retain(|e| e.metadata.name != s.metadata.name);
            assert_eq!(
                before,
                self.slices.len() + 1,
                "deletes name an existing slice"
            );
        }
    }

    fn sync(&mut self, svc: &Service, pods: &[Pod], max: usize) -> Plan {
        let plan = reconcile(svc, &refs(pods), &self.slices, max);
        self.apply(&plan);
        plan
    }

    fn sizes(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self.slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes
    }

    fn endpoint(&self, pod: &str) -> Endpoint {
        self.slices
            .iter()
            .flat_map(|s| &s.endpoints)
            .find(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some(pod))
            .cloned()
            .unwrap_or_else(|| panic!("no endpoint for pod {pod}"))
    }
}

fn conditions(ep: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
    let c = ep.conditions.clone().unwrap_or_default();
    (c.ready, c.serving, c.terminating)
}

#[test]
fn two_hundred_fifty_pods_make_three_slices() {
    let svc = service("web");
    let mut server = Server::new();
    let plan = server.sync(&svc, &pods(250), 100);
    assert_eq!(plan.create.len(), 3);
    assert!(plan.update.is_empty() && plan.delete.is_empty());
    assert_eq!(server.sizes(), vec![100, 100, 50]);
    for s in &server.slices {
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        let l = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(l.get(LABEL_SERVICE_NAME).map(String::as_str), Some("web"));
        assert_eq!(
            l.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        let owner = &s.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Service", "web", "uid-web")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let ports = s.ports.clone().unwrap_or_default();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(ports[0].port, Some(8080));
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    }
    let ep = server.endpoint("web-7");
    assert_eq!(ep.addresses, vec!["10.1.0.8".to_owned()]);
    assert_eq!(ep.node_name.as_deref(), Some("node-a"));
    let target = ep.target_ref.clone().unwrap_or_default();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    assert_eq!(target.namespace.as_deref(), Some("default"));
    assert_eq!(target.uid.as_deref(), Some("uid-web-7"));
    assert_eq!(conditions(&ep), (Some(true), Some(true), Some(false)));
}

#[test]
fn max_per_slice_is_respected() {
    let svc = service("web");
    for max in [1, 7, 33, 1000] {
        let mut server = Server::new();
        server.sync(&svc, &pods(100), max);
        assert!(
            server.sizes().iter().all(|n| *n <= max),
            "max {max}: {:?}",
            server.sizes()
        );
        assert_eq!(server.sizes().iter().sum::<usize>(), 100);
        assert_eq!(server.slices.len(), 100usize.div_ceil(max));
    }
}

#[test]
fn unchanged_input_gives_empty_plan() {
    let svc = service("web");
    let all = pods(250);
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    let plan = server.sync(&svc, &all, 100);
    assert!(plan.is_empty(), "{plan:?}");
    // Pod order and endpoint order within slices do not matter.
    let mut reversed = all.clone();
    reversed.reverse();
    for s in &mut server.slices {
        s.endpoints.reverse();
    }
    assert!(reconcile(&svc, &refs(&reversed), &server.slices, 100).is_empty());
}

#[test]
fn one_pod_becoming_ready_updates_exactly_one_slice() {
    let svc = service("web");
    let mut all = pods(250);
    all[120] = pod("web-120", "10.1.0.121", false);
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    assert_eq!(conditions(&server.endpoint("web-120")).0, Some(false));

    all[120] = pod("web-120", "10.1.0.121", true);
    let plan = server.sync(&svc, &all, 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.update.len(), 1);
    assert!(plan.update[0].metadata.name.is_some());
    assert_eq!(
        conditions(&server.endpoint("web-120")),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(server.sizes(), vec![100, 100, 50]);
}

#[test]
fn removed_pod_updates_its_slice() {
    let svc = service("web");
    let mut all = pods(150);
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    all.remove(3);
    let plan = server.sync(&svc, &all, 100);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(server.sizes().iter().sum::<usize>(), 149);
}

#[test]
fn new_pod_fills_the_slice_with_room_instead_of_creating() {
    let svc = service("web");
    let mut all = pods(250);
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    all.push(pod("late", "10.2.0.1", true));
    let plan = server.sync(&svc, &all, 100);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(plan.update[0].endpoints.len(), 51);
}

#[test]
fn many_new_pods_prefer_one_create_over_touching_unchanged_slices() {
    // Kubernetes' documented example: slices with room for 5 each and 10
    // new endpoints -> one new slice.
    let svc = service("web");
    let mut all = pods(190);
    // Two slices of 95 (built with a limit of 95), then the limit is 100.
    let mut server = Server::new();
    server.sync(&svc, &all, 95);
    assert_eq!(server.sizes(), vec![95, 95]);
    all.extend((0..10).map(|i| pod(&format!("new-{i}"), &format!("10.3.0.{}", i + 1), true)));
    let plan = server.sync(&svc, &all, 100);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (1, 0, 0)
    );
    assert_eq!(server.sizes(), vec![95, 95, 10]);
}

#[test]
fn emptied_slice_is_deleted() {
    let svc = service("web");
    let mut all = pods(150);
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    let small = server
        .slices
        .iter()
        .find(|s| s.endpoints.len() == 50)
        .expect("a 50-endpoint slice exists");
    let gone: Vec<String> = small
        .endpoints
        .iter()
        .filter_map(|e| e.target_ref.as_ref().and_then(|t| t.name.clone()))
        .collect();
    all.retain(|p| !gone.contains(p.metadata.name.as_ref().expect("test pods are named")));
    let plan = server.sync(&svc, &all, 100);
    // The 50-endpoint slice loses everything; the full one is untouched.
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 0, 1)
    );
    assert_eq!(server.sizes(), vec![100]);
}

#[test]
fn terminating_pods_are_serving_but_not_ready() {
    let svc = service("web");
    let all = vec![
        terminating(pod("ready", "10.0.0.1", true)),
        terminating(pod("unready", "10.0.0.2", false)),
    ];
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    assert_eq!(
        conditions(&server.endpoint("ready")),
        (Some(false), Some(true), Some(true))
    );
    assert_eq!(
        conditions(&server.endpoint("unready")),
        (Some(false), Some(false), Some(true))
    );
}

#[test]
fn publish_not_ready_addresses_makes_every_endpoint_ready() {
    let mut svc = service("web");
    if let Some(spec) = svc.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    let all = vec![
        pod("unready", "10.0.0.1", false),
        terminating(pod("term", "10.0.0.2", false)),
    ];
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    assert_eq!(
        conditions(&server.endpoint("unready")),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(
        conditions(&server.endpoint("term")),
        (Some(true), Some(true), Some(true))
    );
}

#[test]
fn named_ports_resolve_per_pod_into_separate_slices() {
    let mut svc = service("web");
    if let Some(spec) = svc.spec.as_mut() {
        spec.ports = Some(vec![ServicePort {
            name: Some("http".to_owned()),
            port: 80,
            target_port: Some(IntOrString::String("web".to_owned())),
            ..Default::default()
        }]);
    }
    let all = vec![
        with_named_port(pod("a", "10.0.0.1", true), "web", 8080),
        with_named_port(pod("b", "10.0.0.2", true), "web", 9090),
        with_named_port(pod("c", "10.0.0.3", true), "web", 8080),
        // No port named "web": the endpoint has no ports at all.
        pod("d", "10.0.0.4", true),
    ];
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    let mut by_port: Vec<(Vec<Option<i32>>, Vec<String>)> = server
        .slices
        .iter()
        .map(|s| {
            let ports = s.ports.iter().flatten().map(|p| p.port).collect();
            let names = s
                .endpoints
                .iter()
                .filter_map(|e| e.target_ref.as_ref().and_then(|t| t.name.clone()))
                .collect();
            (ports, names)
        })
        .collect();
    by_port.sort();
    assert_eq!(
        by_port,
        vec![
            (vec![], vec!["d".to_owned()]),
            (vec![Some(8080)], vec!["a".to_owned(), "c".to_owned()]),
            (vec![Some(9090)], vec!["b".to_owned()]),
        ]
    );
}

#[test]
fn service_without_selector_or_external_name_gets_nothing() {
    let mut svc = service("web");
    if let Some(spec) = svc.spec.as_mut() {
        spec.selector = None;
    }
    assert!(reconcile(&svc, &refs(&pods(3)), &[], 100).is_empty());

    let mut svc = service("web");
    if let Some(spec) = svc.spec.as_mut() {
        spec.type_ = Some("ExternalName".to_owned());
        spec.external_name = Some("example.com".to_owned());
    }
    assert!(reconcile(&svc, &refs(&pods(3)), &[], 100).is_empty());
}

#[test]
fn placeholder_slice_when_no_pods_and_kept_stable() {
    let svc = service("web");
    let mut server = Server::new();
    let plan = server.sync(&svc, &[], 100);
    assert_eq!(plan.create.len(), 1);
    let s = &server.slices[0];
    assert!(s.endpoints.is_empty());
    assert!(s.ports.as_ref().is_none_or(Vec::is_empty));
    assert_eq!(s.address_type, "IPv4");
    assert!(
        server.sync(&svc, &[], 100).is_empty(),
        "placeholder is not rewritten"
    );

    // Pods arrive: the placeholder is reused (update, not delete+create).
    let plan = server.sync(&svc, &pods(3), 100);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(server.sizes(), vec![3]);

    // And they leave again: back to one empty slice, in place.
    let plan = server.sync(&svc, &[], 100);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(server.sizes(), vec![0]);
}

#[test]
fn pods_not_eligible_are_left_out() {
    let svc = service("web");
    let mut other_ns = pod("other-ns", "10.0.0.1", true);
    other_ns.metadata.namespace = Some("prod".to_owned());
    let mut other_labels = pod("other-labels", "10.0.0.2", true);
    other_labels.metadata.labels = Some(labels(&[("app", "db")]));
    let mut no_ip = pod("no-ip", "10.0.0.3", true);
    if let Some(st) = no_ip.status.as_mut() {
        st.pod_ip = None;
        st.pod_ips = None;
    }
    let mut done = pod("done", "10.0.0.4", false);
    if let Some(st) = done.status.as_mut() {
        st.phase = Some("Succeeded".to_owned());
    }
    let all = vec![
        other_ns,
        other_labels,
        no_ip,
        done,
        pod("ok", "10.0.0.5", true),
    ];
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    assert_eq!(server.sizes(), vec![1]);
    server.endpoint("ok");
}

#[test]
fn hostname_only_when_subdomain_names_the_service() {
    let svc = service("web");
    let mut a = pod("a", "10.0.0.1", true);
    let mut b = pod("b", "10.0.0.2", true);
    if let Some(spec) = a.spec.as_mut() {
        spec.hostname = Some("a-host".to_owned());
        spec.subdomain = Some("web".to_owned());
    }
    if let Some(spec) = b.spec.as_mut() {
        spec.hostname = Some("b-host".to_owned());
        spec.subdomain = Some("other".to_owned());
    }
    let mut server = Server::new();
    server.sync(&svc, &[a, b], 100);
    assert_eq!(server.endpoint("a").hostname.as_deref(), Some("a-host"));
    assert_eq!(server.endpoint("b").hostname, None);
}

#[test]
fn dual_stack_pods_get_a_slice_per_family() {
    let mut svc = service("web");
    if let Some(spec) = svc.spec.as_mut() {
        spec.ip_families = Some(vec!["IPv4".to_owned(), "IPv6".to_owned()]);
    }
    let mut p = pod("a", "10.0.0.1", true);
    if let Some(st) = p.status.as_mut() {
        st.pod_ips = Some(vec![
            PodIP {
                ip: "10.0.0.1".to_owned(),
            },
            PodIP {
                ip: "fd00::1".to_owned(),
            },
        ]);
    }
    let mut server = Server::new();
    server.sync(&svc, &[p], 100);
    let mut families: Vec<(String, Vec<String>)> = server
        .slices
        .iter()
        .map(|s| (s.address_type.clone(), s.endpoints[0].addresses.clone()))
        .collect();
    families.sort();
    assert_eq!(
        families,
        vec![
            ("IPv4".to_owned(), vec!["10.0.0.1".to_owned()]),
            ("IPv6".to_owned(), vec!["fd00::1".to_owned()])
        ]
    );
}

#[test]
fn service_labels_are_copied_and_changes_rewrite_labels_only() {
    let mut svc = service("web");
    svc.metadata.labels = Some(labels(&[("team", "a"), (LABEL_MANAGED_BY, "someone-else")]));
    let all = pods(3);
    let mut server = Server::new();
    server.sync(&svc, &all, 100);
    let l = server.slices[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(l.get("team").map(String::as_str), Some("a"));
    assert_eq!(
        l.get(LABEL_MANAGED_BY).map(String::as_str),
        Some(CONTROLLER_NAME)
    );

    svc.metadata.labels = Some(labels(&[("team", "b")]));
    let plan = server.sync(&svc, &all, 100);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 1, 0)
    );
    let l = server.slices[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(l.get("team").map(String::as_str), Some("b"));
}

#[test]
fn slices_of_a_previous_service_with_the_same_name_are_replaced() {
    let old = service("web");
    let mut server = Server::new();
    server.sync(&old, &pods(3), 100);
    let mut new = service("web");
    new.metadata.uid = Some("uid-web-2".to_owned());
    let plan = server.sync(&new, &pods(3), 100);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (1, 0, 1)
    );
    let owner = &server.slices[0]
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()[0];
    assert_eq!(owner.uid, "uid-web-2");
}

#[test]
fn slices_managed_by_others_are_never_touched() {
    let svc = service("web");
    let mut foreign = EndpointSlice {
        metadata: ObjectMeta {
            name: Some("web-manual".to_owned()),
            namespace: Some("default".to_owned()),
            labels: Some(labels(&[
                (LABEL_SERVICE_NAME, "web"),
                (LABEL_MANAGED_BY, "someone-else"),
            ])),
            ..Default::default()
        },
        address_type: "IPv4".to_owned(),
        endpoints: Vec::new(),
        ports: None,
    };
    let plan = reconcile(&svc, &refs(&pods(2)), std::slice::from_ref(&foreign), 100);
    assert!(plan.delete.is_empty() && plan.update.is_empty());
    assert_eq!(plan.create.len(), 1);
    foreign.metadata.namespace = Some("prod".to_owned());
    assert!(
        reconcile(&svc, &refs(&pods(2)), &[foreign], 100)
            .delete
            .is_empty()
    );
}
