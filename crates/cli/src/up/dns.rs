//! Cluster DNS flags of `up` and `switchboard dns`, and starting the server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use switchboard_discovery::ServiceTable;
use tokio::sync::watch;

/// Cluster DNS flags (`up` and `switchboard dns`).
#[derive(Debug, Clone, Args)]
pub struct DnsArgs {
    /// Address of cluster DNS, UDP and TCP ("none" disables it).
    #[arg(long, default_value = "127.96.0.10:53", value_parser = parse_optional_addr)]
    pub dns_listen: Listen,
    /// Upstream resolvers for names outside the cluster domain, as
    /// ADDR[:PORT][,...]; default: the nameservers of /etc/resolv.conf;
    /// "none" disables forwarding (such names get REFUSED).
    #[arg(long, value_parser = parse_upstreams)]
    pub dns_upstream: Option<Upstreams>,
    /// TTL of cluster DNS records, in seconds (CoreDNS: 0-3600).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub dns_ttl: u32,
    /// Pod records a-b-c-d.<ns>.pod.<zone> (CoreDNS `pods`).
    #[arg(long, value_enum, default_value_t = PodMode::Disabled)]
    pub dns_pod_records: PodMode,
    /// Threads serving DNS (1: one thread serves UDP and TCP).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub dns_threads: u16,
    /// Most finished zone answers each DNS thread keeps (0 disables the
    /// cache; CoreDNS's `cache` holds 9984). A repeated question is then a
    /// hash lookup and a copy; a zone with more names than this that are all
    /// asked in turn mostly misses.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub dns_answer_cache_size: u32,
    /// Prometheus metrics of DNS at http://ADDR/metrics ("none" disables).
    #[arg(long, default_value = "127.0.0.1:9153", value_parser = parse_optional_addr)]
    pub dns_metrics_listen: Listen,
}

/// A listen address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

/// Upstream resolvers given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams(pub Vec<SocketAddr>);

/// `--dns-pod-records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PodMode {
    /// Never answered (NXDOMAIN).
    Disabled,
    /// Any dashed address is answered.
    Insecure,
    /// Only addresses of pods behind a Service in that namespace.
    Verified,
}

fn parse_optional_addr(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Listen(None));
    }
    s.parse::<SocketAddr>()
        .map(|a| Listen(Some(a)))
        .map_err(|_| {
            format!("{s:?} is not an address: expected IP:PORT (e.g. 127.0.0.1:5353) or \"none\"")
        })
}

fn parse_upstreams(s: &str) -> Result<Upstreams, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Upstreams(Vec::new()));
    }
    s.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<SocketAddr>()
                .or_else(|_| a.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    format!("{a:?} is not an upstream: expected IP or IP:PORT, comma-separated, or \"none\"")
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| {
            if v.is_empty() {
                Err("no upstream given: expected IP[:PORT][,...] or \"none\"".to_string())
            } else {
                Ok(Upstreams(v))
            }
        })
}

/// The server configuration from the flags; `None` when DNS is disabled.
pub fn config(
    args: &DnsArgs,
    cluster_domain: &str,
) -> anyhow::Result<Option<switchboard_dns::Config>> {
    let Some(listen) = args.dns_listen.0 else {
        return Ok(None);
    };
    let upstreams = match &args.dns_upstream {
        Some(u) => u.0.clone(),
        None => match std::fs::read_to_string("/etc/resolv.conf") {
            Ok(text) => switchboard_dns::forward::parse_resolv_conf(&text),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /etc/resolv.conf; DNS forwarding is off");
                Vec::new()
            }
        },
    };
    let settings = switchboard_dns::Settings {
        domain: cluster_domain.to_string(),
        ttl: args.dns_ttl,
        pods: match args.dns_pod_records {
            PodMode::Disabled => switchboard_dns::PodRecords::Disabled,
            PodMode::Insecure => switchboard_dns::PodRecords::Insecure,
            PodMode::Verified => switchboard_dns::PodRecords::Verified,
        },
        ns_address: Some(listen.ip()),
    };
    let mut config = switchboard_dns::Config::new(listen, settings);
    config.upstreams = upstreams;
    config.threads = usize::from(args.dns_threads);
    config.answer_cache_size = args.dns_answer_cache_size as usize;
    config.metrics_listen = args.dns_metrics_listen.0;
    Ok(Some(config))
}

/// Binds and starts cluster DNS; a bind failure says why and how to choose
/// another address.
pub fn start(
    config: switchboard_dns::Config,
    table: watch::Receiver<Arc<ServiceTable>>,
) -> anyhow::Result<switchboard_dns::Running> {
    let listen = config.listen;
    let server = switchboard_dns::Server::bind(config).with_context(|| {
        format!(
            "cannot start cluster DNS on {listen}; choose another address with \
             --dns-listen (e.g. --dns-listen 127.0.0.1:5353, and \
             --dns-metrics-listen 127.0.0.1:0 if the metrics port is taken) \
             or disable it with --dns-listen none"
        )
    })?;
    let running = server.spawn(table).context("cannot start cluster DNS")?;
    tracing::info!(addr = %running.addr, metrics = ?running.metrics_addr, "cluster DNS serving");
    Ok(running)
}

/// Flags of `switchboard dns`: cluster DNS alone, as CoreDNS runs beside
/// an apiserver, fed by its own discovery watch through `--kubeconfig`.
#[derive(Debug, Clone, Args)]
pub struct DnsCommandArgs {
    /// Cluster DNS domain (a DNS-1123 subdomain).
    #[arg(long, default_value = "cluster.local", value_parser = super::parse_cluster_domain)]
    pub cluster_domain: String,
    /// Cluster DNS.
    #[command(flatten)]
    pub dns: DnsArgs,
}

/// Runs `switchboard dns` until SIGINT/SIGTERM or until DNS or its watch
/// fails.
pub async fn run_standalone(
    global: &crate::GlobalArgs,
    args: DnsCommandArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let Some(config) = config(&args.dns, &args.cluster_domain)? else {
        anyhow::bail!("`switchboard dns` with --dns-listen none has nothing to do");
    };
    let client = crate::client::client(global).await?;
    let mut discovery = switchboard_discovery::spawn(client);
    let running = start(config, discovery.table.clone())?;
    {
        use std::io::Write as _;
        let metrics = running
            .metrics_addr
            .map(|a| format!(", metrics http://{a}/metrics"))
            .unwrap_or_default();
        let mut out = std::io::stdout().lock();
        // Tests and the benchmark wait for this line and read the address.
        writeln!(
            out,
            "switchboard dns is up: dns://{}{metrics}",
            running.addr
        )?;
        out.flush()?;
    }
    let mut dns = Some(running);
    let outcome = tokio::select! {
        stopped = wait(&mut dns) => Err(stopped.err().unwrap_or_else(|| anyhow::anyhow!("cluster DNS stopped"))),
        watched = &mut discovery.task => match watched {
            Ok(Ok(())) => Err(anyhow::anyhow!("the discovery watch stopped")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("the discovery watch failed")),
            Err(e) => Err(anyhow::anyhow!("the discovery watch panicked: {e}")),
        },
        signal = super::shutdown_signal() => {
            tracing::info!(signal = signal?, "shutting down");
            Ok(())
        }
    };
    outcome.map(|()| std::process::ExitCode::SUCCESS)
}

/// Resolves when DNS stops (never, unless it failed); pending forever when
/// DNS is disabled.
pub async fn wait(dns: &mut Option<switchboard_dns::Running>) -> anyhow::Result<()> {
    match dns {
        Some(running) => running.wait().await.context("cluster DNS stopped"),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_and_upstream_flags_parse_with_clear_errors() {
        assert_eq!(parse_optional_addr("none"), Ok(Listen(None)));
        assert_eq!(
            parse_optional_addr("127.0.0.1:5353"),
            Ok(Listen(Some("127.0.0.1:5353".parse().unwrap())))
        );
        assert!(
            parse_optional_addr("localhost")
                .unwrap_err()
                .contains("IP:PORT")
        );
        assert_eq!(
            parse_upstreams("127.0.0.1,127.0.0.2:5300").unwrap().0,
            vec![
                "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "127.0.0.2:5300".parse().unwrap()
            ]
        );
        assert_eq!(parse_upstreams("none").unwrap().0, vec![]);
        assert!(parse_upstreams("x").unwrap_err().contains("\"x\""));
        assert!(parse_upstreams(",").is_err());
    }
}
