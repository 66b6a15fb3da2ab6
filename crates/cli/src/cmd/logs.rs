//! `switchboard logs POD [-c CONTAINER] [-f]`: a container's output, read
//! through the apiserver's `pods/log`, which relays it from the node agent
//! running the pod (so `kubectl logs` works the same way).

use std::process::ExitCode;

use anyhow::anyhow;
use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use crate::GlobalArgs;
use crate::client;

/// Flags of `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The pod (or `pod/NAME`).
    pub pod: String,
    /// The container; needed when the pod has several.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new output until interrupted or the pod goes.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<i64>,
    /// The output of the previous run of a restarted container.
    #[arg(short = 'p', long)]
    pub previous: bool,
}

/// Runs `logs`.
pub async fn run(global: &GlobalArgs, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .pod
        .strip_prefix("pod/")
        .or_else(|| args.pod.strip_prefix("pods/"))
        .unwrap_or(&args.pod)
        .to_string();
    let client = client::client(global).await?;
    let pods: Api<Pod> = Api::namespaced(client, client::namespace(global));
    let params = LogParams {
        container: args.container.clone(),
        follow: args.follow,
        tail_lines: args.tail.filter(|n| *n >= 0),
        previous: args.previous,
        ..LogParams::default()
    };
    let failed = |e: kube::Error| {
        anyhow!(
            "cannot read the logs of pod {name:?}: {}",
            client::describe_error(&e)
        )
    };
    use std::io::Write as _;
    if args.follow {
        let mut lines = pods
            .log_stream(&name, &params)
            .await
            .map_err(failed)?
            .lines();
        while let Some(line) = lines.try_next().await? {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
    } else {
        let text = pods.logs(&name, &params).await.map_err(failed)?;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
