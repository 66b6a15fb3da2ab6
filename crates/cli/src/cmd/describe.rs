//! `switchboard describe`: a readable multi-line view of an object, in
//! kubectl's layout for Services and Pods, as YAML for other kinds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;

use super::to_value;
use crate::GlobalArgs;
use crate::client;
use crate::table;

/// Flags of `describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// Resource type (svc, pod, ep, ...).
    pub kind: String,
    /// Names of the objects to describe.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Runs `describe`.
pub async fn run(global: &GlobalArgs, args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let rt = client::lookup(&args.kind)?;
    let client = client::client(global).await?;
    let ns = client::namespace(global);
    let api = client::api(&client, rt, Some(ns));
    let mut failed = false;
    for (i, name) in args.names.iter().enumerate() {
        let obj = match api.get(name).await {
            Ok(o) => to_value(rt, &o),
            Err(e) => {
                eprintln!("{}", client::describe_error(&e));
                failed = true;
                continue;
            }
        };
        if i > 0 {
            println!();
        }
        let text = match rt.kind {
            "Service" => {
                let slices_api = client::api(&client, slice_type(), Some(ns));
                let lp =
                    ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
                // Endpoints are a courtesy: a failure to list them shows as none.
                let slices: Vec<EndpointSlice> = match slices_api.list(&lp).await {
                    Ok(list) => list
                        .items
                        .iter()
                        .filter_map(|o| serde_json::from_value(to_value(slice_type(), o)).ok())
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list EndpointSlices");
                        Vec::new()
                    }
                };
                let svc: Service = serde_json::from_value(obj)?;
                describe_service(&svc, &slices)
            }
            "Pod" => describe_pod(&serde_json::from_value(obj)?),
            _ => serde_yaml::to_string(&obj)?,
        };
        print!("{text}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn slice_type() -> &'static switchboard_api::ResourceType {
    switchboard_api::ResourceType::from_kind("discovery.k8s.io/v1", "EndpointSlice")
        .expect("EndpointSlice is in the static registry")
}

const WIDTH: usize = 26;

fn line(out: &mut String, key: &str, value: &str) {
    let text = format!("{:<WIDTH$}{value}", format!("{key}:"));
    let _ = writeln!(out, "{}", text.trim_end());
}

fn map_lines(out: &mut String, key: &str, map: Option<&BTreeMap<String, String>>) {
    match map.filter(|m| !m.is_empty()) {
        None => line(out, key, "<none>"),
        Some(m) => {
            for (i, (k, v)) in m.iter().enumerate() {
                let entry = format!("{k}={v}");
                if i == 0 {
                    line(out, key, &entry);
                } else {
                    let _ = writeln!(out, "{:WIDTH$}{entry}", "");
                }
            }
        }
    }
}

/// kubectl's description of a Service, endpoints from its EndpointSlices.
pub fn describe_service(svc: &Service, slices: &[EndpointSlice]) -> String {
    let mut out = String::new();
    let spec = svc.spec.clone().unwrap_or_default();
    line(
        &mut out,
        "Name",
        svc.metadata.name.as_deref().unwrap_or_default(),
    );
    line(
        &mut out,
        "Namespace",
        svc.metadata.namespace.as_deref().unwrap_or_default(),
    );
    map_lines(&mut out, "Labels", svc.metadata.labels.as_ref());
    map_lines(&mut out, "Annotations", svc.metadata.annotations.as_ref());
    line(
        &mut out,
        "Selector",
        &table::selector_string(spec.selector.as_ref()),
    );
    let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    line(&mut out, "Type", &kind);
    if let Some(p) = &spec.ip_family_policy {
        line(&mut out, "IP Family Policy", p);
    }
    if let Some(f) = spec.ip_families.as_ref().filter(|f| !f.is_empty()) {
        line(&mut out, "IP Families", &f.join(","));
    }
    if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()) {
        line(&mut out, "IP", ip);
    }
    if let Some(ips) = spec.cluster_ips.as_ref().filter(|ips| !ips.is_empty()) {
        line(&mut out, "IPs", &ips.join(","));
    }
    if let Some(name) = &spec.external_name {
        line(&mut out, "External Name", name);
    }
    let lb: Vec<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    if !lb.is_empty() {
        line(&mut out, "LoadBalancer Ingress", &lb.join(", "));
    }
    for p in spec.ports.iter().flatten() {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let pname = p.name.clone().filter(|n| !n.is_empty());
        let shown = pname.as_deref().unwrap_or("<unset>");
        line(&mut out, "Port", &format!("{shown}  {}/{proto}", p.port));
        let target = match &p.target_port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                n.to_string()
            }
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => s.clone(),
            None => p.port.to_string(),
        };
        line(&mut out, "TargetPort", &format!("{target}/{proto}"));
        if let Some(np) = p.node_port.filter(|n| *n != 0) {
            line(&mut out, "NodePort", &format!("{shown}  {np}/{proto}"));
        }
        if spec.selector.as_ref().is_some_and(|s| !s.is_empty()) || !slices.is_empty() {
            let eps = endpoints_for_port(slices, pname.as_deref().unwrap_or(""));
            line(
                &mut out,
                "Endpoints",
                &if eps.is_empty() {
                    String::new()
                } else {
                    eps.join(",")
                },
            );
        }
    }
    line(
        &mut out,
        "Session Affinity",
        spec.session_affinity.as_deref().unwrap_or("None"),
    );
    if let Some(p) = &spec.external_traffic_policy {
        line(&mut out, "External Traffic Policy", p);
    }
    if let Some(p) = &spec.internal_traffic_policy {
        line(&mut out, "Internal Traffic Policy", p);
    }
    line(&mut out, "Events", "<none>");
    out
}

/// Ready `ip:port` endpoints for the service port named `port_name`.
fn endpoints_for_port(slices: &[EndpointSlice], port_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for slice in slices {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port);
        let Some(port) = port else { continue };
        for ep in &slice.endpoints {
            // A missing `ready` means ready, per the EndpointSlice API.
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if ready {
                out.extend(ep.addresses.iter().map(|a| format!("{a}:{port}")));
            }
        }
    }
    out
}

/// kubectl's description of a Pod (the parts Switchboard's pods have).
pub fn describe_pod(pod: &Pod) -> String {
    let mut out = String::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    line(
        &mut out,
        "Name",
        pod.metadata.name.as_deref().unwrap_or_default(),
    );
    line(
        &mut out,
        "Namespace",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    line(
        &mut out,
        "Node",
        spec.node_name.as_deref().unwrap_or("<none>"),
    );
    if let Some(t) = &status.start_time {
        line(&mut out, "Start Time", &t.0.to_string());
    }
    map_lines(&mut out, "Labels", pod.metadata.labels.as_ref());
    map_lines(&mut out, "Annotations", pod.metadata.annotations.as_ref());
    line(&mut out, "Status", &table::pod_status(pod));
    line(&mut out, "IP", status.pod_ip.as_deref().unwrap_or(""));
    line(&mut out, "Containers", "");
    for c in &spec.containers {
        let _ = writeln!(out, "  {}:", c.name);
        let sub = |out: &mut String, k: &str, v: &str| {
            let _ = writeln!(out, "    {:<WIDTH$}{v}", format!("{k}:"), WIDTH = WIDTH - 4);
        };
        sub(&mut out, "Image", c.image.as_deref().unwrap_or(""));
        let ports: Vec<String> = c
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let proto = p.protocol.as_deref().unwrap_or("TCP");
                match &p.name {
                    Some(n) => format!("{}/{proto} ({n})", p.container_port),
                    None => format!("{}/{proto}", p.container_port),
                }
            })
            .collect();
        let ports = if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(", ")
        };
        sub(&mut out, "Port", &ports);
        let cs = status
            .container_statuses
            .iter()
            .flatten()
            .find(|s| s.name == c.name);
        sub(
            &mut out,
            "Ready",
            if cs.is_some_and(|s| s.ready) {
                "True"
            } else {
                "False"
            },
        );
        sub(
            &mut out,
            "Restart Count",
            &cs.map(|s| s.restart_count).unwrap_or(0).to_string(),
        );
    }
    let conditions = status.conditions.clone().unwrap_or_default();
    if conditions.is_empty() {
        line(&mut out, "Conditions", "<none>");
    } else {
        let _ = writeln!(out, "Conditions:");
        let width = conditions
            .iter()
            .map(|c| c.type_.len())
            .max()
            .unwrap_or(0)
            .max(4)
            + 3;
        let _ = writeln!(out, "  {:<width$}Status", "Type");
        for c in &conditions {
            let _ = writeln!(out, "  {:<width$}{}", c.type_, c.status);
        }
    }
    line(&mut out, "Events", "<none>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_description_lists_ready_endpoints_per_port() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"type": "NodePort", "clusterIP": "127.96.0.20", "selector": {"app": "web"},
                     "ports": [{"port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"}],
                     "sessionAffinity": "None"}})).unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-x"}, "addressType": "IPv4",
            "ports": [{"name": "", "port": 8080}],
            "endpoints": [{"addresses": ["127.244.0.1"], "conditions": {"ready": true}},
                          {"addresses": ["127.244.0.2"], "conditions": {"ready": false}},
                          {"addresses": ["127.244.0.3"]}]}))
        .unwrap();
        let text = describe_service(&svc, &[slice]);
        let want = [
            "Name:                     web",
            "Labels:                   app=web",
            "                          tier=fe",
            "Selector:                 app=web",
            "Type:                     NodePort",
            "IP:                       127.96.0.20",
            "Port:                     <unset>  80/TCP",
            "TargetPort:               http/TCP",
            "NodePort:                 <unset>  30080/TCP",
            "Endpoints:                127.244.0.1:8080,127.244.0.3:8080",
            "Session Affinity:         None",
        ];
        for w in want {
            assert!(text.lines().any(|l| l == w), "missing {w:?} in\n{text}");
        }
    }

    #[test]
    fn pod_description_shows_containers_and_conditions() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "echo", "image": "switchboard/echo",
                     "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "127.244.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        let text = describe_pod(&pod);
        assert!(text.contains("Node:                     n1\n"), "{text}");
        assert!(
            text.contains("    Port:                 8080/TCP (http)\n"),
            "{text}"
        );
        assert!(text.contains("  Ready   True\n"), "{text}");
    }
}
