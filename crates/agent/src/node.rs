//! The agent's Node: created or updated at start, its status (addresses,
//! capacity, `Ready`, the agent's HTTP port, system info) renewed every
//! heartbeat with a status update, as the kubelet's `tryUpdateNodeStatus`.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::config::Config;

/// The `kubeletVersion` the Node reports.
pub const VERSION: &str = concat!("v1.33.0-switchboard-", env!("CARGO_PKG_VERSION"));

/// What the Node says about this machine, read once at start.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    node_info: Value,
    cpu: String,
    memory: String,
    /// When the agent came up: the `Ready` condition's `lastTransitionTime`.
    since: String,
}

impl Facts {
    pub fn gather() -> Facts {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".to_owned());
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        Facts {
            node_info: json!({
                "machineID": read("/etc/machine-id"),
                "systemUUID": read("/etc/machine-id"),
                "bootID": read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": read("/proc/sys/kernel/osrelease"),
                "osImage": os_image,
                "containerRuntimeVersion": concat!("process://", env!("CARGO_PKG_VERSION")),
                "kubeletVersion": VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch,
            }),
            cpu: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .to_string(),
            memory: format!("{memory_kib}Ki"),
            since: now(),
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

/// The Node's status now.
fn status(config: &Config, facts: &Facts, port: u16) -> Value {
    let mut addresses: Vec<Value> = config
        .node_addresses
        .iter()
        .map(|a| json!({"type": "InternalIP", "address": a.to_string()}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": config.node_name}));
    let heartbeat = now();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": heartbeat, "lastTransitionTime": facts.since,
        })
    };
    let resources = json!({
        "pods": config.max_pods.to_string(),
        "cpu": facts.cpu,
        "memory": facts.memory,
    });
    json!({
        "addresses": addresses,
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": facts.node_info,
    })
}

/// Creates the Node if it does not exist, then writes its status.
pub(crate) async fn register(
    client: &kube::Client,
    config: &Config,
    facts: &Facts,
    port: u16,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let labels = json!({
        "kubernetes.io/hostname": config.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": facts.node_info["architecture"],
    });
    match api.get_opt(&config.node_name).await? {
        None => {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": config.node_name, "labels": labels},
                "spec": {"podCIDR": config.pod_cidr.to_string(), "podCIDRs": [config.pod_cidr.to_string()]},
            }))
            .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                // Another instance (or a retry) got there first.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Some(existing) => {
            let meta: &ObjectMeta = &existing.metadata;
            tracing::debug!(node = ?meta.name, "the Node exists; updating it");
            let patch = json!({
                "metadata": {"labels": labels},
                "spec": {"podCIDR": config.pod_cidr.to_string(), "podCIDRs": [config.pod_cidr.to_string()]},
            });
            api.patch(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
    }
    heartbeat(client, config, facts, port).await
}

/// Renews the Node's status.
pub(crate) async fn heartbeat(
    client: &kube::Client,
    config: &Config,
    facts: &Facts,
    port: u16,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": status(config, facts, port)});
    api.patch_status(
        &config.node_name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
