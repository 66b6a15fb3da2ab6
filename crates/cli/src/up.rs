//! `switchboard up` and `switchboard server`: flags → typed component
//! configurations → the embedded store, the apiserver and the controllers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use ipnet::Ipv4Net;

pub mod agent;
pub mod dns;
pub mod proxy;

pub use proxy::parse_duration;

/// Flags of `up` and `server`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Directory for the embedded store, TLS material and kubeconfig.
    #[arg(long, default_value = "./switchboard-data")]
    pub data_dir: PathBuf,
    /// Address of the apiserver (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api_listen: SocketAddr,
    /// ClusterIP range.
    #[arg(long, default_value = "127.96.0.0/16")]
    pub service_cidr: Ipv4Net,
    /// NodePort range, "A-B" inclusive.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub service_node_port_range: PortRange,
    /// LoadBalancer ingress IP pool.
    #[arg(long, default_value = "127.240.0.0/24")]
    pub lb_ip_pool: Ipv4Net,
    /// Cluster DNS domain (a DNS-1123 subdomain).
    #[arg(long, default_value = "cluster.local", value_parser = parse_cluster_domain)]
    pub cluster_domain: String,
    /// Most endpoints in one EndpointSlice.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_endpoints_per_slice: u16,
    /// Cluster DNS.
    #[command(flatten)]
    pub dns: dns::DnsArgs,
    /// Node proxy.
    #[command(flatten)]
    pub proxy: proxy::ProxyArgs,
    /// Node agent.
    #[command(flatten)]
    pub agent: agent::AgentArgs,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

/// Parses "A-B" with 1 <= A <= B <= 65535.
pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let (a, b) = s.split_once('-').ok_or_else(|| {
        format!("{s:?} is not a port range: expected FIRST-LAST, e.g. 30000-32767")
    })?;
    let port = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            Ok(n) => Err(format!(
                "port {n} in {s:?} is out of range: ports are 1-65535"
            )),
            Err(_) => Err(format!("{p:?} in {s:?} is not a port number")),
        }
    };
    let (first, last) = (port(a)?, port(b)?);
    if first > last {
        return Err(format!(
            "port range {s:?} is empty: {first} is greater than {last}"
        ));
    }
    Ok(PortRange { first, last })
}

/// Validates a DNS-1123 subdomain (what Kubernetes requires of the cluster
/// domain): at most 253 characters, dot-separated labels of lower-case
/// alphanumerics and '-', each starting and ending alphanumeric.
pub fn parse_cluster_domain(s: &str) -> Result<String, String> {
    let err = |why: &str| Err(format!("{s:?} is not a valid cluster domain: {why}"));
    if s.is_empty() {
        return err("must not be empty");
    }
    if s.len() > 253 {
        return err("must be no more than 253 characters");
    }
    for label in s.split('.') {
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = label.len() <= 63
            && label.starts_with(alnum)
            && label.ends_with(alnum)
            && label.chars().all(|c| alnum(c) || c == '-');
        if !ok {
            return err(
                "must consist of lower case alphanumeric characters, '-' or '.', \
                 and must start and end with an alphanumeric character (e.g. 'cluster.local')",
            );
        }
    }
    Ok(s.to_string())
}

/// Which components to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything on one machine (`up`); later issues add DNS, proxy, ingress.
    AllInOne,
    /// Control plane only (`server`).
    ControlPlane,
}

/// Typed configuration of every component `up`/`server` starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Apiserver configuration.
    pub apiserver: switchboard_apiserver::Config,
    /// Cluster DNS domain, kept for the DNS and agent components.
    pub cluster_domain: String,
    /// Most endpoints per EndpointSlice.
    pub max_endpoints_per_slice: u16,
    /// Cluster DNS flags (used by `up` only).
    pub dns: dns::DnsArgs,
    /// Node proxy flags (used by `up` only).
    pub proxy: proxy::ProxyArgs,
    /// Node agent flags (used by `up` only).
    pub agent: agent::AgentArgs,
}

impl Config {
    /// Builds the component configurations from validated flags.
    pub fn from_args(args: UpArgs) -> Config {
        let mut apiserver = switchboard_apiserver::Config::new(&args.data_dir);
        apiserver.listen = args.api_listen;
        apiserver.service_cidr = args.service_cidr;
        apiserver.node_port_range = (
            args.service_node_port_range.first,
            args.service_node_port_range.last,
        );
        apiserver.lb_ip_pool = args.lb_ip_pool;
        Config {
            data_dir: args.data_dir,
            apiserver,
            cluster_domain: args.cluster_domain,
            max_endpoints_per_slice: args.max_endpoints_per_slice,
            dns: args.dns,
            proxy: args.proxy,
            agent: args.agent,
        }
    }
}

/// Runs the components until SIGINT/SIGTERM or a component fails.
pub async fn run(mode: Mode, args: UpArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(args);
    tracing::info!(?mode, data_dir = %config.data_dir.display(), "starting");
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;

    let store_path = config.data_dir.join("store.redb");
    let store: Arc<dyn switchboard_store::Store> = switchboard_store::Embedded::open(
        &store_path,
        switchboard_store::embedded::Options::default(),
    )
    .with_context(|| format!("cannot open the store {}", store_path.display()))?;

    let server = switchboard_apiserver::Server::start(config.apiserver.clone(), store)
        .await
        .context("cannot start the apiserver")?;
    let addr = server.local_addr();
    let kubeconfig = server.kubeconfig_path().to_path_buf();

    let client = crate::client::from_kubeconfig(&kubeconfig)
        .await
        .context("cannot build a client for the controllers")?;
    let controllers = tokio::spawn(run_controllers(client.clone(), config.clone()));

    // One discovery watch for every data plane of `up` (DNS, proxy): each
    // clones the table receiver.
    let discovery = (mode == Mode::AllInOne).then(|| switchboard_discovery::spawn(client.clone()));
    let mut dns = match (
        &discovery,
        dns::config(&config.dns, &config.cluster_domain)?,
    ) {
        (Some(d), Some(c)) => Some(dns::start(c, d.table.clone())?),
        _ => None,
    };
    let dns_note = dns
        .as_ref()
        .map(|d| format!(", dns://{}", d.addr))
        .unwrap_or_default();
    let mut proxy = match (&discovery, proxy::config(&config.proxy)) {
        (Some(d), Some(c)) => Some(proxy::start(c, d.table.clone(), client.clone()).await?),
        _ => None,
    };
    let proxy_note = proxy
        .as_ref()
        .and_then(|p| p.metrics_addr)
        .map(|a| format!(", proxy-metrics http://{a}/metrics"))
        .unwrap_or_default();

    // The agent registers the same node the proxy serves.
    let mut agent = match mode {
        Mode::AllInOne => match agent::config(
            &config.agent,
            config
                .proxy
                .node_name
                .clone()
                .unwrap_or_else(proxy::host_name),
            config.proxy.node_address.clone(),
            &config.data_dir,
            &config.cluster_domain,
            dns.as_ref().map(|d| d.addr.ip()),
        )? {
            Some(c) => Some(agent::start(c, client.clone()).await?),
            None => None,
        },
        Mode::ControlPlane => None,
    };
    let agent_note = agent
        .as_ref()
        .map(|a| format!(", agent http://{}", a.listen_addr))
        .unwrap_or_default();

    // Tests wait for this exact line and parse the address from it.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "switchboard is up: apiserver https://{addr}, kubeconfig {}{dns_note}{proxy_note}{agent_note}",
            kubeconfig.display()
        )?;
        out.flush()?;
    }

    let outcome = tokio::select! {
        served = server.wait() => served.context("the apiserver stopped"),
        done = controllers => match done {
            Ok(Ok(())) => Err(anyhow::anyhow!("the controllers stopped")),
            Ok(Err(e)) => Err(e.context("the controllers failed")),
            Err(e) => Err(anyhow::anyhow!("the controllers panicked: {e}")),
        },
        stopped = proxy::wait(&mut proxy) => Err(stopped.err().unwrap_or_else(|| anyhow::anyhow!("the proxy stopped"))),
        stopped = dns::wait(&mut dns) => Err(stopped.err().unwrap_or_else(|| anyhow::anyhow!("cluster DNS stopped"))),
        stopped = agent::wait(&mut agent) => Err(stopped.err().unwrap_or_else(|| anyhow::anyhow!("the node agent stopped"))),
        signal = shutdown_signal() => {
            let name = signal?;
            tracing::info!(signal = name, "shutting down");
            Ok(())
        }
    };
    // The pods' processes stop first, while the apiserver still takes their
    // final status.
    if let Some(agent) = agent.take()
        && let Err(e) = agent.shutdown().await
    {
        tracing::warn!(error = %e, "the node agent did not stop cleanly");
    }
    // Leaving `select!` drops the apiserver future (closing its listener) and
    // the runtime's drop at the end of main aborts the controller task; the
    // store is closed when its last Arc goes.
    outcome.map(|()| ExitCode::SUCCESS)
}

/// The controllers `up` and `server` run, all as kube-rs clients of the apiserver.
async fn run_controllers(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let _ = config.cluster_domain;
    let controller = switchboard_controllers::Config {
        max_endpoints_per_slice: usize::from(config.max_endpoints_per_slice),
        workloads: Some(switchboard_controllers::workloads::Config::default()),
        ..Default::default()
    };
    switchboard_controllers::run(client, controller).await?;
    Ok(())
}

/// Resolves when SIGINT or SIGTERM arrives; returns the signal's name.
pub(crate) async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Where `up` writes the kubeconfig for a data directory.
pub fn kubeconfig_in(data_dir: &Path) -> PathBuf {
    data_dir.join("kubeconfig")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Harness {
        #[command(flatten)]
        up: UpArgs,
    }

    #[test]
    fn port_range_accepts_a_valid_range() {
        assert_eq!(
            parse_port_range("30000-32767"),
            Ok(PortRange {
                first: 30000,
                last: 32767
            })
        );
        assert_eq!(
            parse_port_range("80-80"),
            Ok(PortRange {
                first: 80,
                last: 80
            })
        );
    }

    #[test]
    fn port_range_rejects_bad_input_with_a_reason() {
        let e = parse_port_range("32767-30000").unwrap_err();
        assert!(e.contains("32767 is greater than 30000"), "{e}");
        let e = parse_port_range("0-100").unwrap_err();
        assert!(e.contains("ports are 1-65535"), "{e}");
        let e = parse_port_range("1-70000").unwrap_err();
        assert!(e.contains("port 70000"), "{e}");
        let e = parse_port_range("30000").unwrap_err();
        assert!(e.contains("expected FIRST-LAST"), "{e}");
        let e = parse_port_range("a-b").unwrap_err();
        assert!(e.contains("not a port number"), "{e}");
    }

    #[test]
    fn cluster_domain_must_be_a_dns_subdomain() {
        assert_eq!(
            parse_cluster_domain("cluster.local").as_deref(),
            Ok("cluster.local")
        );
        assert!(parse_cluster_domain("Cluster.Local").is_err());
        assert!(parse_cluster_domain("-bad.local").is_err());
        assert!(parse_cluster_domain("a..b").is_err());
        assert!(parse_cluster_domain("").is_err());
    }

    #[test]
    fn defaults_match_the_design() {
        let h = Harness::try_parse_from(["x"]).unwrap();
        let c = Config::from_args(h.up);
        assert_eq!(c.apiserver.listen.to_string(), "127.0.0.1:6443");
        assert_eq!(c.apiserver.service_cidr.to_string(), "127.96.0.0/16");
        assert_eq!(c.apiserver.node_port_range, (30000, 32767));
        assert_eq!(c.apiserver.lb_ip_pool.to_string(), "127.240.0.0/24");
        assert_eq!(c.cluster_domain, "cluster.local");
        assert_eq!(c.max_endpoints_per_slice, 100);
        assert_eq!(c.data_dir, PathBuf::from("./switchboard-data"));
    }

    #[test]
    fn flags_reach_the_component_configs() {
        let h = Harness::try_parse_from([
            "x",
            "--data-dir=/tmp/d",
            "--api-listen=127.0.0.1:0",
            "--service-node-port-range=31000-31010",
            "--max-endpoints-per-slice=5",
        ])
        .unwrap();
        let c = Config::from_args(h.up);
        assert_eq!(c.apiserver.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(c.apiserver.listen.port(), 0);
        assert_eq!(c.apiserver.node_port_range, (31000, 31010));
        assert_eq!(c.max_endpoints_per_slice, 5);
    }

    #[test]
    fn out_of_range_flags_are_refused() {
        for bad in [
            "--max-endpoints-per-slice=0",
            "--max-endpoints-per-slice=1001",
            "--service-node-port-range=5-4",
            "--cluster-domain=UPPER",
            "--service-cidr=nope",
        ] {
            assert!(
                Harness::try_parse_from(["x", bad]).is_err(),
                "{bad} accepted"
            );
        }
    }
}
