//! Node agent flags of `up` and `switchboard agent`, and starting the agent.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use ipnet::Ipv4Net;

use super::proxy::parse_duration;

/// Node agent flags.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// How pods bound to this node run: "process" (each container a local
    /// process with its own loopback pod IP) or "none" (no agent; pods stay
    /// Pending unless another node runs them).
    #[arg(long, default_value = "process", value_parser = parse_agent_mode)]
    pub agent_mode: AgentMode,
    /// The range pod IPs come from (a loopback range needs no setup).
    #[arg(long, default_value = "127.244.0.0/16", value_parser = parse_pod_cidr)]
    pub pod_cidr: Ipv4Net,
    /// The agent's HTTP server, which the apiserver reads container logs
    /// from (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub agent_listen: SocketAddr,
    /// How often the Node's status heartbeat is renewed.
    #[arg(long, default_value = "10s", value_parser = parse_heartbeat)]
    pub node_status_update_frequency: Duration,
    /// Most pods this node runs (the Node's `status.capacity.pods`).
    #[arg(long, default_value_t = 110, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub max_pods: u32,
}

/// `--agent-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    /// Pods as local processes.
    Process,
    /// No agent.
    None,
}

fn parse_agent_mode(s: &str) -> Result<AgentMode, String> {
    match s {
        "process" => Ok(AgentMode::Process),
        "none" => Ok(AgentMode::None),
        _ => Err(format!(
            "unknown agent mode {s:?}: expected \"process\" or \"none\""
        )),
    }
}

fn parse_pod_cidr(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 CIDR (e.g. 127.244.0.0/16)"))?;
    if net.prefix_len() > 30 {
        return Err(format!(
            "pod CIDR {s} is too small: it needs a prefix of /30 or shorter to hold pods"
        ));
    }
    Ok(net.trunc())
}

fn parse_heartbeat(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?} must be greater than zero")),
        d => Ok(d),
    }
}

/// The agent configuration, or `None` with `--agent-mode none`.
pub fn config(
    args: &AgentArgs,
    node_name: String,
    node_addresses: Vec<IpAddr>,
    data_dir: &Path,
    cluster_domain: &str,
    cluster_dns: Option<IpAddr>,
) -> anyhow::Result<Option<switchboard_agent::Config>> {
    if args.agent_mode == AgentMode::None {
        return Ok(None);
    }
    // Pods whose image is agnhost run this same binary's built-in agnhost.
    let exe = std::env::current_exe()
        .context("cannot find this program's path, needed to run agnhost pods")?;
    let mut config = switchboard_agent::Config::new(node_name);
    config.node_addresses = node_addresses;
    config.pod_cidr = args.pod_cidr;
    config.data_dir = data_dir.join("agent");
    config.listen = args.agent_listen;
    config.agnhost_command = vec![exe.to_string_lossy().into_owned(), "agnhost".to_owned()];
    config.cluster_domain = cluster_domain.to_owned();
    config.cluster_dns = cluster_dns;
    config.heartbeat = args.node_status_update_frequency;
    config.max_pods = args.max_pods;
    // The host is every container's "image" here, so commands resolve on
    // the PATH the user started Switchboard with.
    if let Some(path) = std::env::var_os("PATH").filter(|p| !p.is_empty()) {
        config.base_env = vec![("PATH".to_owned(), path.to_string_lossy().into_owned())];
    }
    config
        .validate()
        .context("invalid node agent configuration")?;
    Ok(Some(config))
}

/// Starts the agent; a taken port says how to choose another.
pub async fn start(
    config: switchboard_agent::Config,
    client: kube::Client,
) -> anyhow::Result<switchboard_agent::Agent> {
    let listen = config.listen;
    let node = config.node_name.clone();
    let agent = switchboard_agent::spawn(client, config)
        .await
        .with_context(|| {
            format!(
                "cannot start the node agent for node {node:?} (HTTP on {listen}); choose \
                 another address with --agent-listen (e.g. 127.0.0.1:0) or run without \
                 pods with --agent-mode none"
            )
        })?;
    tracing::info!(node = %node, addr = %agent.listen_addr, "node agent running");
    Ok(agent)
}

/// Resolves when the agent stops (only on failure); pending forever when
/// there is no agent.
pub async fn wait(agent: &mut Option<switchboard_agent::Agent>) -> anyhow::Result<()> {
    match agent {
        Some(running) => match running.wait().await {
            Ok(()) => Err(anyhow::anyhow!("the node agent stopped")),
            Err(e) => Err(anyhow::Error::new(e).context("the node agent failed")),
        },
        None => std::future::pending().await,
    }
}

/// Flags of `switchboard agent`: a node of the cluster of `--kubeconfig`,
/// with what a Kubernetes node runs: the node agent (the kubelet's part)
/// and the node proxy (kube-proxy's), unless `--proxy-mode none`.
#[derive(Debug, Clone, Args)]
pub struct AgentCommandArgs {
    /// Directory for the agent's logs and state.
    #[arg(long, default_value = "./switchboard-agent-data")]
    pub data_dir: std::path::PathBuf,
    /// Cluster DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The cluster DNS address, if any.
    #[arg(long)]
    pub cluster_dns: Option<IpAddr>,
    /// The agent.
    #[command(flatten)]
    pub agent: AgentArgs,
    /// The node proxy; its `--node-name` and `--node-address` are the
    /// agent's too.
    #[command(flatten)]
    pub proxy: super::proxy::ProxyArgs,
}

/// Runs `switchboard agent` until SIGINT/SIGTERM (or the agent or proxy
/// fails), then stops its pods.
pub async fn run_standalone(
    global: &crate::GlobalArgs,
    args: AgentCommandArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let AgentCommandArgs {
        data_dir,
        cluster_domain,
        cluster_dns,
        agent: agent_args,
        proxy: proxy_args,
    } = args;
    if agent_args.agent_mode == AgentMode::None {
        anyhow::bail!(
            "`switchboard agent` with --agent-mode none has nothing to do (`switchboard proxy` \
             runs the node proxy alone)"
        );
    }
    super::parse_cluster_domain(&cluster_domain).map_err(anyhow::Error::msg)?;
    let node_name = proxy_args
        .node_name
        .clone()
        .unwrap_or_else(super::proxy::host_name);
    // `data_dir` here is the agent's own, not a cluster data directory.
    let Some(mut config) = config(
        &agent_args,
        node_name.clone(),
        proxy_args.node_address.clone(),
        &data_dir,
        &cluster_domain,
        cluster_dns,
    )?
    else {
        unreachable!("agent mode none was refused above");
    };
    config.data_dir = data_dir;
    let proxy_config = super::proxy::config(&proxy_args).map(|mut c| {
        // One name for the node, whichever way it was chosen.
        c.node_name = node_name;
        c
    });
    let client = crate::client::client(global).await?;
    let mut agent = start(config, client.clone()).await?;
    let mut discovery = None;
    let mut proxy = None;
    if let Some(proxy_config) = proxy_config {
        let watch = switchboard_discovery::spawn(client.clone());
        match super::proxy::start(proxy_config, watch.table.clone(), client).await {
            Ok(running) => {
                proxy = Some(running);
                discovery = Some(watch);
            }
            Err(e) => {
                watch.task.abort();
                // The pods started so far must not outlive a failed start.
                agent.shutdown().await.context("stopping the pods")?;
                return Err(e);
            }
        }
    }
    let metrics_note = proxy
        .as_ref()
        .and_then(|p| p.metrics_addr)
        .map(|a| format!(", proxy-metrics http://{a}/metrics"))
        .unwrap_or_default();
    {
        // Tests and scripts wait for this line.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "switchboard agent is up: http://{}{metrics_note}",
            agent.listen_addr
        )?;
        out.flush()?;
    }
    let outcome = tokio::select! {
        stopped = wait_ref(&mut agent) => stopped,
        stopped = super::proxy::wait(&mut proxy) => Err(stopped.err().unwrap_or_else(|| anyhow::anyhow!("the proxy stopped"))),
        signal = super::shutdown_signal() => {
            tracing::info!(signal = signal?, "shutting down");
            Ok(())
        }
    };
    if let Some(watch) = discovery {
        watch.task.abort();
    }
    agent.shutdown().await.context("stopping the pods")?;
    outcome.map(|()| std::process::ExitCode::SUCCESS)
}

async fn wait_ref(agent: &mut switchboard_agent::Agent) -> anyhow::Result<()> {
    match agent.wait().await {
        Ok(()) => Err(anyhow::anyhow!("the node agent stopped")),
        Err(e) => Err(anyhow::Error::new(e).context("the node agent failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Harness {
        #[command(flatten)]
        agent: AgentArgs,
    }

    #[test]
    fn defaults_and_bad_flags() {
        let h = Harness::try_parse_from(["x"]).unwrap();
        assert_eq!(h.agent.agent_mode, AgentMode::Process);
        assert_eq!(h.agent.pod_cidr.to_string(), "127.244.0.0/16");
        assert_eq!(h.agent.agent_listen.to_string(), "127.0.0.1:10250");
        assert_eq!(
            h.agent.node_status_update_frequency,
            Duration::from_secs(10)
        );
        for bad in [
            "--agent-mode=docker",
            "--pod-cidr=127.0.0.1/31",
            "--pod-cidr=nope",
            "--node-status-update-frequency=0s",
            "--max-pods=0",
        ] {
            assert!(
                Harness::try_parse_from(["x", bad]).is_err(),
                "{bad} accepted"
            );
        }
        let e = parse_pod_cidr("127.0.0.0/31").unwrap_err();
        assert!(e.contains("too small"), "{e}");
    }
}
