//! `switchboard env`: the service environment variables a pod of the
//! namespace would be started with, as the kubelet builds them
//! (`switchboard_api::envvars`), one `NAME=value` line each.

use std::process::ExitCode;

use anyhow::anyhow;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use switchboard_api::envvars;

use crate::GlobalArgs;
use crate::client;

/// Flags of `env`.
#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// As for a pod with `enableServiceLinks: false`: only the `kubernetes`
    /// service's variables.
    #[arg(long)]
    pub no_service_links: bool,
}

/// Runs `env`.
pub async fn run(global: &GlobalArgs, args: EnvArgs) -> anyhow::Result<ExitCode> {
    let client = client::client(global).await?;
    let env = service_env(&client, client::namespace(global), !args.no_service_links).await?;
    let mut out = String::new();
    for (name, value) in env {
        out.push_str(&name);
        out.push('=');
        out.push_str(&value);
        out.push('\n');
    }
    use std::io::Write as _;
    std::io::stdout().write_all(out.as_bytes())?;
    std::io::stdout().flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The environment of a pod in `namespace`, from the Services of that
/// namespace and of the master service namespace (`default`), sorted by name.
pub async fn service_env(
    client: &kube::Client,
    namespace: &str,
    enable_service_links: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut namespaces = vec![envvars::MASTER_SERVICE_NAMESPACE];
    if namespace != envvars::MASTER_SERVICE_NAMESPACE && enable_service_links {
        namespaces.push(namespace);
    }
    let mut services: Vec<Service> = Vec::new();
    for ns in namespaces {
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            anyhow!(
                "cannot list services in namespace {ns:?}: {}",
                client::describe_error(&e)
            )
        })?;
        services.extend(list.items);
    }
    Ok(envvars::for_pod(&services, namespace, enable_service_links))
}
