//! kubectl-like tables: columns per kind, `AGE` and `PORT(S)` formatting, and
//! column alignment.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::Value;

/// A table: a header and rows of cells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Rows, each as long as the header.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Renders with kubectl's layout: left-aligned columns separated by at
    /// least three spaces, no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Output options that change the columns.
#[derive(Debug, Clone, Copy)]
pub struct Columns {
    /// Prefix a NAMESPACE column (`-A`).
    pub namespace: bool,
    /// Extra columns (`-o wide`).
    pub wide: bool,
}

/// Builds the table for objects of `kind`, ages relative to `now`.
pub fn build(kind: &str, objects: &[Value], columns: Columns, now: Timestamp) -> Table {
    let (mut header, row): (Vec<&str>, RowFn) = match (kind, columns.wide) {
        ("Service", false) => (
            vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            |o, now| service_row(o, now, false),
        ),
        ("Service", true) => (
            vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
                "SELECTOR",
            ],
            |o, now| service_row(o, now, true),
        ),
        ("Pod", false) => (
            vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            |o, now| pod_row(o, now, false),
        ),
        ("Pod", true) => (
            vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
            |o, now| pod_row(o, now, true),
        ),
        ("EndpointSlice", _) => (
            vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            |o, now| endpointslice_row(o, now),
        ),
        ("Endpoints", _) => (vec!["NAME", "ENDPOINTS", "AGE"], |o, now| {
            endpoints_row(o, now)
        }),
        ("Namespace", _) => (vec!["NAME", "STATUS", "AGE"], |o, now| {
            namespace_row(o, now)
        }),
        ("Node", _) => (vec!["NAME", "STATUS", "AGE"], |o, now| node_row(o, now)),
        ("Deployment", _) => (
            vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            |o, now| deployment_row(o, now),
        ),
        ("ReplicaSet", _) => (
            vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            |o, now| replicaset_row(o, now),
        ),
        ("Ingress", _) => (
            vec!["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
            |o, now| ingress_row(o, now),
        ),
        _ => (vec!["NAME", "AGE"], |o, now| {
            vec![name_of(o), age_of(o, now)]
        }),
    };
    let mut rows = Vec::new();
    for o in objects {
        let mut row = row(o, now);
        if columns.namespace {
            row.insert(
                0,
                str_at(o, "/metadata/namespace")
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        rows.push(row);
    }
    if columns.namespace {
        header.insert(0, "NAMESPACE");
    }
    Table {
        header: header.into_iter().map(String::from).collect(),
        rows,
    }
}

type RowFn = fn(&Value, Timestamp) -> Vec<String>;

fn str_at<'a>(o: &'a Value, pointer: &str) -> Option<&'a str> {
    o.pointer(pointer).and_then(Value::as_str)
}

fn name_of(o: &Value) -> String {
    str_at(o, "/metadata/name").unwrap_or_default().to_string()
}

fn age_of(o: &Value, now: Timestamp) -> String {
    str_at(o, "/metadata/creationTimestamp")
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|created| {
            let secs = now.as_second() - created.as_second();
            human_duration(secs)
        })
        .unwrap_or_else(|| "<unknown>".into())
}

/// Deserialises a typed object; on a shape the type refuses, the default
/// (a table row should not fail the whole listing).
fn typed<T: serde::de::DeserializeOwned + Default>(o: &Value) -> T {
    serde_json::from_value(o.clone()).unwrap_or_default()
}

/// kubectl's `duration.HumanDuration` for a number of seconds.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The `PORT(S)` cell: `80/TCP`, `80:30080/TCP`, comma-separated; `<none>`.
pub fn service_ports(svc: &Service) -> String {
    let ports: Vec<String> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(np) if np != 0 => format!("{}:{np}/{proto}", p.port),
                _ => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

/// `k=v,k=v` sorted by key, or `<none>`.
pub fn selector_string(selector: Option<&BTreeMap<String, String>>) -> String {
    match selector {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

fn service_external_ip(svc: &Service) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let external: Vec<String> = spec.external_ips.clone().unwrap_or_default();
    match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "LoadBalancer" => {
            let mut ips: Vec<String> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => spec.external_name.unwrap_or_else(|| "<none>".into()),
        _ if !external.is_empty() => external.join(","),
        _ => "<none>".into(),
    }
}

fn service_row(o: &Value, now: Timestamp, wide: bool) -> Vec<String> {
    let svc: Service = typed(o);
    let spec = svc.spec.clone().unwrap_or_default();
    let cluster_ip = match spec.cluster_ip.as_deref() {
        Some(ip) if !ip.is_empty() => ip.to_string(),
        _ => "<none>".into(),
    };
    let mut row = vec![
        name_of(o),
        spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
        cluster_ip,
        service_external_ip(&svc),
        service_ports(&svc),
        age_of(o, now),
    ];
    if wide {
        row.push(selector_string(spec.selector.as_ref()));
    }
    row
}

/// The `STATUS` cell of a pod, following kubectl's printer in its common cases.
pub fn pod_status(pod: &Pod) -> String {
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let status = pod.status.clone().unwrap_or_default();
    let mut reason = status
        .reason
        .clone()
        .or(status.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    for cs in status.container_statuses.iter().flatten() {
        if let Some(state) = &cs.state {
            if let Some(w) = state.waiting.as_ref().and_then(|w| w.reason.clone()) {
                reason = w;
            } else if let Some(t) = &state.terminated {
                reason = t
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("ExitCode:{}", t.exit_code));
            }
        }
    }
    reason
}

fn pod_row(o: &Value, now: Timestamp, wide: bool) -> Vec<String> {
    let pod: Pod = typed(o);
    let total = pod.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let ready = statuses.iter().filter(|c| c.ready).count();
    let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
    let mut row = vec![
        name_of(o),
        format!("{ready}/{total}"),
        pod_status(&pod),
        restarts.to_string(),
        age_of(o, now),
    ];
    if wide {
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        row.push(ip.unwrap_or_else(|| "<none>".into()));
        row.push(node.unwrap_or_else(|| "<none>".into()));
    }
    row
}

/// Joins at most three items and says how many more there are, as kubectl.
fn first_three(items: &[String], empty: &str) -> String {
    match items.len() {
        0 => empty.into(),
        n if n <= 3 => items.join(","),
        n => format!("{} + {} more...", items[..3].join(","), n - 3),
    }
}

fn endpointslice_row(o: &Value, now: Timestamp) -> Vec<String> {
    let slice: EndpointSlice = typed(o);
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port.map(|n| n.to_string()))
        .collect();
    let addrs: Vec<String> = slice
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    vec![
        name_of(o),
        slice.address_type.clone(),
        first_three(&ports, "<unset>"),
        first_three(&addrs, "<unset>"),
        age_of(o, now),
    ]
}

/// `ip:port` pairs of an Endpoints object.
pub fn endpoints_addresses(ep: &Endpoints) -> Vec<String> {
    let mut out = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<i32> = subset.ports.iter().flatten().map(|p| p.port).collect();
        for addr in subset.addresses.iter().flatten() {
            if ports.is_empty() {
                out.push(addr.ip.clone());
            }
            for port in &ports {
                out.push(format!("{}:{port}", addr.ip));
            }
        }
    }
    out
}

fn endpoints_row(o: &Value, now: Timestamp) -> Vec<String> {
    let ep: Endpoints = typed(o);
    vec![
        name_of(o),
        first_three(&endpoints_addresses(&ep), "<none>"),
        age_of(o, now),
    ]
}

fn namespace_row(o: &Value, now: Timestamp) -> Vec<String> {
    let ns: Namespace = typed(o);
    let phase = ns
        .status
        .and_then(|s| s.phase)
        .unwrap_or_else(|| "Active".into());
    vec![name_of(o), phase, age_of(o, now)]
}

fn node_row(o: &Value, now: Timestamp) -> Vec<String> {
    let node: Node = typed(o);
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| match c.status.as_str() {
            "True" => "Ready",
            "False" => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    vec![name_of(o), ready.to_string(), age_of(o, now)]
}

fn count_at(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn deployment_row(o: &Value, now: Timestamp) -> Vec<String> {
    let want = o
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    vec![
        name_of(o),
        format!("{}/{want}", count_at(o, "/status/readyReplicas")),
        count_at(o, "/status/updatedReplicas").to_string(),
        count_at(o, "/status/availableReplicas").to_string(),
        age_of(o, now),
    ]
}

fn replicaset_row(o: &Value, now: Timestamp) -> Vec<String> {
    vec![
        name_of(o),
        o.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .to_string(),
        count_at(o, "/status/replicas").to_string(),
        count_at(o, "/status/readyReplicas").to_string(),
        age_of(o, now),
    ]
}

fn ingress_row(o: &Value, now: Timestamp) -> Vec<String> {
    let ing: Ingress = typed(o);
    let spec = ing.spec.clone().unwrap_or_default();
    let hosts: Vec<String> = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.host.clone())
        .collect();
    let address: Vec<String> = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    let ports = if spec.tls.as_ref().is_some_and(|t| !t.is_empty()) {
        "80, 443"
    } else {
        "80"
    };
    vec![
        name_of(o),
        spec.ingress_class_name
            .clone()
            .unwrap_or_else(|| "<none>".into()),
        if hosts.is_empty() {
            "*".into()
        } else {
            hosts.join(",")
        },
        address.join(","),
        ports.into(),
        age_of(o, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (4 * 3600 + 5 * 60, "4h5m"),
            (30 * 3600, "30h"),
            (2 * 86400, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (100 * 86400, "100d"),
            (3 * 365 * 86400, "3y"),
            (-5, "<invalid>"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    fn svc(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": spec})).unwrap()
    }

    #[test]
    fn ports_column_shows_node_ports_and_protocols() {
        let s = svc(json!({"ports": [
            {"port": 80, "protocol": "TCP", "nodePort": 30080},
            {"port": 53, "protocol": "UDP"}
        ]}));
        assert_eq!(service_ports(&s), "80:30080/TCP,53/UDP");
        assert_eq!(
            service_ports(&svc(json!({"ports": [{"port": 443}]}))),
            "443/TCP"
        );
        assert_eq!(service_ports(&svc(json!({}))), "<none>");
    }

    #[test]
    fn service_table_has_kubectl_columns() {
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let objects = [
            json!({"metadata": {"name": "web", "namespace": "default",
                       "creationTimestamp": "2026-01-01T00:09:55Z"},
                   "spec": {"type": "ClusterIP", "clusterIP": "127.96.0.20",
                            "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}]}}),
            json!({"metadata": {"name": "lb", "namespace": "apps",
                       "creationTimestamp": "2026-01-01T00:00:00Z"},
                   "spec": {"type": "LoadBalancer", "clusterIP": "127.96.0.21",
                            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "127.240.0.1"}]}}}),
        ];
        let t = build(
            "Service",
            &objects,
            Columns {
                namespace: true,
                wide: true,
            },
            now,
        );
        assert_eq!(
            t.render(),
            "\
NAMESPACE   NAME   TYPE           CLUSTER-IP    EXTERNAL-IP   PORT(S)        AGE   SELECTOR
default     web    ClusterIP      127.96.0.20   <none>        80/TCP         5s    app=web
apps        lb     LoadBalancer   127.96.0.21   127.240.0.1   80:30080/TCP   10m   <none>
"
        );
    }

    #[test]
    fn workload_tables_have_kubectl_columns() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let narrow = Columns {
            namespace: false,
            wide: false,
        };
        let deploy = json!({"metadata": {"name": "hello", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 3},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            build("Deployment", &[deploy], narrow, now).render(),
            "NAME    READY   UP-TO-DATE   AVAILABLE   AGE\nhello   2/3     3            2           60s\n"
        );
        let rs = json!({"metadata": {"name": "hello-5d8c", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 3}, "status": {"replicas": 3, "readyReplicas": 1}});
        assert_eq!(
            build("ReplicaSet", &[rs], narrow, now).render(),
            "NAME         DESIRED   CURRENT   READY   AGE\nhello-5d8c   3         3         1       60s\n"
        );
    }

    #[test]
    fn pending_load_balancer_and_headless_service() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let objects = [
            json!({"metadata": {"name": "a"}, "spec": {"type": "LoadBalancer", "clusterIP": "None"}}),
        ];
        let t = build(
            "Service",
            &objects,
            Columns {
                namespace: false,
                wide: false,
            },
            now,
        );
        assert_eq!(t.rows[0][2], "None");
        assert_eq!(t.rows[0][3], "<pending>");
        assert_eq!(t.rows[0][5], "<unknown>");
    }

    #[test]
    fn pod_rows_count_ready_containers() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let pod = json!({"metadata": {"name": "web-0", "creationTimestamp": "2025-12-31T23:00:00Z"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "127.244.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 1, "image": "", "imageID": ""},
                {"name": "b", "ready": false, "restartCount": 2, "image": "", "imageID": ""}]}});
        let t = build(
            "Pod",
            &[pod],
            Columns {
                namespace: false,
                wide: true,
            },
            now,
        );
        assert_eq!(
            t.rows[0],
            [
                "web-0",
                "1/2",
                "Running",
                "3",
                "60m",
                "127.244.0.5",
                "node-1"
            ]
        );
    }

    #[test]
    fn endpoint_lists_are_cut_at_three() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": [{"addresses": ["127.244.0.1"]}, {"addresses": ["127.244.0.2"]},
                          {"addresses": ["127.244.0.3"]}, {"addresses": ["127.244.0.4"]}]});
        let t = build(
            "EndpointSlice",
            &[slice],
            Columns {
                namespace: false,
                wide: false,
            },
            now,
        );
        assert_eq!(
            t.rows[0][1..4],
            [
                "IPv4".to_string(),
                "8080".to_string(),
                "127.244.0.1,127.244.0.2,127.244.0.3 + 1 more...".to_string()
            ]
        );
    }
}
