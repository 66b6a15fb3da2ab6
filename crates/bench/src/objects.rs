//! The objects the scenarios write (Services, Pods, ConfigMaps, status
//! patches) and the pure checks on what they read back (EndpointSlices,
//! /proc status). No IO here, so every shape is unit tested.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, Namespace, Pod, PodSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

/// Label every EndpointSlice carries with the name of its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Port the bench pods "listen" on; Services target it by name.
pub const POD_PORT: i32 = 8080;

/// A namespace object named `name`.
pub fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A ClusterIP Service `name` selecting pods labelled `app=<app>`, port 80
/// to the pods' named port `http` (as most manifests write it).
pub fn service(name: &str, app: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels(&[("app", app), ("bench", "switchboard")])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", app)])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::String("http".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// A Pod `name` labelled `app=<app>` with the spec a Deployment's pod
/// usually has: one container with an image, a named port, resources and a
/// readiness probe, and a node. Its status is written separately through
/// `pods/status` (an apiserver resets status on create).
pub fn pod(name: &str, app: &str) -> Pod {
    let container: Container = serde_json::from_value(json!({
        "name": "app",
        "image": "registry.example/bench/app:1.0.0",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": POD_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"memory": "128Mi"}
        },
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 5
        },
        "env": [{"name": "APP_MODE", "value": "bench"}]
    }))
    .unwrap_or_else(|_| Container {
        // The literal above is a valid Container; this branch only keeps
        // the function total.
        name: "app".into(),
        image: Some("registry.example/bench/app:1.0.0".into()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: POD_PORT,
            ..ContainerPort::default()
        }]),
        ..Container::default()
    });
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels(&[
                ("app", app),
                ("bench", "switchboard"),
                ("pod-template-hash", "5d8f7c9b6d"),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            node_name: Some("bench-node".into()),
            restart_policy: Some("Always".into()),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// The merge patch for `pods/status` that gives a running pod the address
/// `ip` and the Ready condition `ready` (the fields a kubelet writes).
pub fn pod_status_patch(ip: &str, ready: bool) -> Value {
    let status = if ready { "True" } else { "False" };
    json!({
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": "2026-11-23T12:00:00Z",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "PodScheduled", "status": "True"},
                {"type": "ContainersReady", "status": status},
                {"type": "Ready", "status": status}
            ],
            "containerStatuses": [{
                "name": "app",
                "ready": ready,
                "started": true,
                "restartCount": 0,
                "image": "registry.example/bench/app:1.0.0",
                "imageID": "registry.example/bench/app@sha256:0d1f2e3c",
                "state": {"running": {"startedAt": "2026-11-23T12:00:01Z"}}
            }]
        }
    })
}

/// A ConfigMap `name` with one small data entry (a watch event's payload).
pub fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        data: Some(labels(&[("value", value)])),
        ..ConfigMap::default()
    }
}

/// The address of bench pod `i` in the default pod CIDR 127.244.0.0/16
/// (data only: nothing dials it). `None` past the range's 65534 hosts.
pub fn pod_ip(i: usize) -> Option<String> {
    let host = i.checked_add(1)?;
    if host > 65534 {
        return None;
    }
    Some(format!("127.244.{}.{}", host >> 8, host & 0xff))
}

/// Whether `slice` holds an endpoint with address `ip` whose `ready`
/// condition is `true` (absent means unknown, which is not ready here).
pub fn slice_has_ready(slice: &EndpointSlice, ip: &str) -> bool {
    endpoint_state(slice, ip) == Some(true)
}

/// The ready condition of the endpoint with address `ip` in `slice`:
/// `None` when no endpoint has that address, else `Some(ready)`.
pub fn endpoint_state(slice: &EndpointSlice, ip: &str) -> Option<bool> {
    slice
        .endpoints
        .iter()
        .find(|e| e.addresses.iter().any(|a| a == ip))
        .map(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
}

/// The Service an EndpointSlice belongs to, from its label.
pub fn slice_service(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
}

/// Memory figures of a process from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcMemory {
    /// Resident set size (`VmRSS`).
    pub vm_rss_kib: u64,
    /// Peak resident set size (`VmHWM`).
    pub vm_hwm_kib: u64,
    /// Anonymous resident memory (`RssAnon`): the heap.
    pub rss_anon_kib: u64,
    /// File-backed resident memory (`RssFile`): binary and mapped files.
    pub rss_file_kib: u64,
}

/// Parses the memory lines of `/proc/PID/status`; `None` without `VmRSS`
/// (a zombie or kernel thread has none).
pub fn parse_proc_status(text: &str) -> Option<ProcMemory> {
    let mut m = ProcMemory::default();
    let mut seen_rss = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let kib = || -> Option<u64> { rest.split_whitespace().next()?.parse().ok() };
        match key {
            "VmRSS" => {
                m.vm_rss_kib = kib()?;
                seen_rss = true;
            }
            "VmHWM" => m.vm_hwm_kib = kib().unwrap_or(0),
            "RssAnon" => m.rss_anon_kib = kib().unwrap_or(0),
            "RssFile" => m.rss_file_kib = kib().unwrap_or(0),
            _ => {}
        }
    }
    seen_rss.then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};

    #[test]
    fn pod_ips_stay_inside_the_pod_cidr() {
        assert_eq!(pod_ip(0).as_deref(), Some("127.244.0.1"));
        assert_eq!(pod_ip(254).as_deref(), Some("127.244.0.255"));
        assert_eq!(pod_ip(255).as_deref(), Some("127.244.1.0"));
        assert_eq!(pod_ip(49_999).as_deref(), Some("127.244.195.80"));
        assert_eq!(pod_ip(65_533).as_deref(), Some("127.244.255.254"));
        assert_eq!(pod_ip(65_534), None);
    }

    #[test]
    fn service_selects_its_pods_by_named_port() {
        let svc = service("web-1", "web-1");
        let spec = svc.spec.expect("service has a spec");
        assert_eq!(spec.selector.expect("selector")["app"], "web-1".to_string());
        let port = &spec.ports.expect("ports")[0];
        assert_eq!(port.port, 80);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        let p = pod("web-1-abc", "web-1");
        assert_eq!(p.metadata.labels.expect("labels")["app"], "web-1");
        let c = &p.spec.expect("spec").containers[0];
        assert_eq!(c.ports.as_ref().expect("ports")[0].container_port, POD_PORT);
        assert!(
            c.readiness_probe.is_some(),
            "the full container literal parsed"
        );
    }

    #[test]
    fn status_patch_sets_ip_and_ready_condition() {
        let p = pod_status_patch("127.244.0.9", true);
        assert_eq!(p["status"]["podIP"], "127.244.0.9");
        let ready = p["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Ready")
            .expect("a Ready condition");
        assert_eq!(ready["status"], "True");
        let not = pod_status_patch("127.244.0.9", false);
        assert_eq!(not["status"]["conditions"][3]["status"], "False");
        // The patch deserialises as a Pod status, i.e. the server can accept it.
        let _: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(p["status"].clone()).expect("valid PodStatus");
    }

    fn slice(svc: &str, eps: &[(&str, Option<bool>)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                labels: Some(labels(&[(SERVICE_NAME_LABEL, svc)])),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps
                .iter()
                .map(|(ip, ready)| Endpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ports: None,
        }
    }

    #[test]
    fn ready_endpoint_is_found_by_address() {
        let s = slice(
            "web",
            &[("127.244.0.1", Some(false)), ("127.244.0.2", Some(true))],
        );
        assert_eq!(slice_service(&s), Some("web"));
        assert!(slice_has_ready(&s, "127.244.0.2"));
        assert!(!slice_has_ready(&s, "127.244.0.1"));
        assert!(!slice_has_ready(&s, "127.244.0.3"));
        assert_eq!(endpoint_state(&s, "127.244.0.1"), Some(false));
        assert_eq!(endpoint_state(&s, "127.244.0.3"), None);
        // Unknown readiness counts as not ready, as kube-proxy treats it.
        let u = slice("web", &[("127.244.0.4", None)]);
        assert!(!slice_has_ready(&u, "127.244.0.4"));
    }

    #[test]
    fn proc_status_memory_lines_parse() {
        let text = "Name:\tswitchboard\nVmHWM:\t  150000 kB\nVmRSS:\t  120000 kB\n\
                    RssAnon:\t  100000 kB\nRssFile:\t   20000 kB\nThreads:\t4\n";
        let m = parse_proc_status(text).expect("has VmRSS");
        assert_eq!(m.vm_rss_kib, 120_000);
        assert_eq!(m.vm_hwm_kib, 150_000);
        assert_eq!(m.rss_anon_kib, 100_000);
        assert_eq!(m.rss_file_kib, 20_000);
        assert_eq!(parse_proc_status("Name:\tkthreadd\n"), None);
    }
}
