//! The client side shared by `apply`, `get`, `describe` and `delete`: finding
//! the kubeconfig, building a kube-rs client, typed access to any registered
//! resource type, and kubectl-like names and error lines.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kube::api::{Api, ApiResource, DynamicObject};
use switchboard_api::ResourceType;

use crate::GlobalArgs;

/// The kubeconfig to use: `--kubeconfig`, else `$KUBECONFIG`, else the
/// default data directory's.
pub fn kubeconfig_path(global: &GlobalArgs) -> PathBuf {
    if let Some(path) = &global.kubeconfig {
        return path.clone();
    }
    match std::env::var_os("KUBECONFIG") {
        // kubectl accepts a ':'-separated list; we use its first entry.
        Some(v) if !v.is_empty() => std::env::split_paths(&v)
            .next()
            .unwrap_or_else(|| PathBuf::from(v)),
        _ => crate::up::kubeconfig_in(Path::new("./switchboard-data")),
    }
}

/// Builds a client from a kubeconfig file.
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    kube::Client::try_from(config)
        .with_context(|| format!("cannot build a client from {}", path.display()))
}

/// Builds the client the client commands use.
pub async fn client(global: &GlobalArgs) -> anyhow::Result<kube::Client> {
    from_kubeconfig(&kubeconfig_path(global)).await
}

/// The kube-rs description of a registered resource type.
pub fn api_resource(rt: &ResourceType) -> ApiResource {
    ApiResource {
        group: rt.group.to_string(),
        version: rt.version.to_string(),
        api_version: rt.api_version(),
        kind: rt.kind.to_string(),
        plural: rt.plural.to_string(),
    }
}

/// An `Api` for `rt`: namespaced to `namespace` (all namespaces when `None`)
/// for namespaced types, cluster-wide otherwise.
pub fn api(
    client: &kube::Client,
    rt: &ResourceType,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = api_resource(rt);
    match (rt.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// Resolves a kind as typed on the command line, with kubectl's error text.
pub fn lookup(kind: &str) -> anyhow::Result<&'static ResourceType> {
    ResourceType::lookup(kind)
        .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type \"{kind}\""))
}

/// kubectl's `TYPE/NAME` form, e.g. `service/web`, `ingress.networking.k8s.io/web`.
pub fn type_name(rt: &ResourceType, name: &str) -> String {
    format!("{}/{name}", qualified_singular(rt))
}

/// kubectl's resource form in delete messages, e.g. `service "web"`.
pub fn quoted_name(rt: &ResourceType, name: &str) -> String {
    format!("{} \"{name}\"", qualified_singular(rt))
}

fn qualified_singular(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.singular.to_string()
    } else {
        format!("{}.{}", rt.singular, rt.group)
    }
}

/// The namespace the commands use when `-n` is absent.
pub fn namespace(global: &GlobalArgs) -> &str {
    global.namespace.as_deref().unwrap_or("default")
}

/// One line for an API error: kubectl's `Error from server (Reason): message`
/// for Status errors (with the field causes when the message lacks them),
/// the error chain otherwise.
pub fn describe_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let mut line = if status.reason.is_empty() {
                format!("Error from server: {}", status.message)
            } else {
                format!("Error from server ({}): {}", status.reason, status.message)
            };
            if let Some(details) = &status.details {
                let missing: Vec<String> = details
                    .causes
                    .iter()
                    .filter(|c| !c.message.is_empty() && !status.message.contains(&c.message))
                    .map(|c| {
                        if c.field.is_empty() {
                            c.message.clone()
                        } else {
                            format!("{}: {}", c.field, c.message)
                        }
                    })
                    .collect();
                if !missing.is_empty() {
                    line.push_str(&format!(" ({})", missing.join("; ")));
                }
            }
            line
        }
        other => {
            let mut line = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                line.push_str(&format!(": {s}"));
                source = s.source();
            }
            line
        }
    }
}

/// Whether `err` is a 404 from the server.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404 || s.reason == "NotFound")
}
