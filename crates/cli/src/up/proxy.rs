//! Node proxy flags of `up` and `switchboard proxy`, and starting the proxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use switchboard_discovery::ServiceTable;
use switchboard_lb::Algorithm;
use tokio::sync::watch;

/// Node proxy flags (`up` and `switchboard proxy`; `server` runs no proxy).
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Data plane for Service traffic: "userspace" (TCP/UDP proxy in this
    /// process) or "none".
    #[arg(long, default_value = "userspace", value_parser = parse_mode)]
    pub proxy_mode: ProxyMode,
    /// Default scheduler (rr, wrr, lc, wlc, sed, nq, dh, sh, random, p2c,
    /// peak-ewma, maglev); a Service overrides it with the annotation
    /// switchboard.io/scheduler.
    #[arg(long, default_value = "rr", value_parser = parse_scheduler)]
    pub scheduler: Algorithm,
    /// This node's name, for internal/externalTrafficPolicy: Local
    /// (default: the host name, lower-cased, as kube-proxy).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address(es) NodePorts listen on (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub node_address: Vec<IpAddr>,
    /// How long connections to a removed or terminating endpoint may stay
    /// open (e.g. 30s, 500ms, 2m; 0 closes them at once).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// A UDP flow without traffic for this long is closed.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub udp_idle_timeout: Duration,
    /// Time to connect to one endpoint before trying the next.
    #[arg(long, default_value = "2s", value_parser = parse_positive_duration)]
    pub proxy_connect_timeout: Duration,
    /// First ejection of an endpoint that refused a connection (doubles per
    /// consecutive failure, at most 10x).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub proxy_ejection_time: Duration,
    /// Prometheus metrics of the proxy at http://ADDR/metrics ("none"
    /// disables).
    #[arg(long, default_value = "127.0.0.1:10249", value_parser = parse_optional_addr)]
    pub proxy_metrics_listen: OptionalAddr,
    /// Threads that carry Service traffic, each with its own
    /// single-threaded runtime (apart from the control plane's) and, when
    /// more than one, its own SO_REUSEPORT socket per TCP address.
    #[arg(long, default_value_t = 1, value_parser = parse_threads)]
    pub proxy_threads: usize,
}

fn parse_threads(s: &str) -> Result<usize, String> {
    let max = switchboard_proxy::MAX_WORKER_THREADS;
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a thread count: expected 1 to {max}")),
    }
}

/// `--proxy-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// The userspace TCP/UDP proxy.
    Userspace,
    /// No proxy.
    None,
}

/// An address, or "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_mode(s: &str) -> Result<ProxyMode, String> {
    match s {
        "userspace" => Ok(ProxyMode::Userspace),
        "none" => Ok(ProxyMode::None),
        "nftables" | "iptables" | "ipvs" => Err(format!(
            "proxy mode {s:?} is not available yet: use \"userspace\" or \"none\""
        )),
        _ => Err(format!(
            "unknown proxy mode {s:?}: expected \"userspace\" or \"none\""
        )),
    }
}

fn parse_scheduler(s: &str) -> Result<Algorithm, String> {
    s.parse::<Algorithm>().map_err(|e| e.to_string())
}

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(OptionalAddr(None));
    }
    s.parse::<SocketAddr>()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|_| format!("{s:?} is not an address: expected IP:PORT or \"none\""))
}

/// Parses `500ms`, `30s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("{s:?} is not a duration: expected a number with ms, s, m or h (e.g. 30s)")
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit {unit:?}: use ms, s, m or h"
            ));
        }
    };
    Ok(d)
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?} must be greater than zero")),
        d => Ok(d),
    }
}

/// The host name as kube-proxy defaults `--hostname-override`: lower-cased,
/// from the kernel; "switchboard" when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchboard".to_owned())
}

/// The proxy configuration, or `None` with `--proxy-mode none`.
pub fn config(args: &ProxyArgs) -> Option<switchboard_proxy::Config> {
    if args.proxy_mode == ProxyMode::None {
        return None;
    }
    Some(switchboard_proxy::Config {
        node_name: args.node_name.clone().unwrap_or_else(host_name),
        node_addresses: args.node_address.clone(),
        default_scheduler: args.scheduler,
        drain_timeout: args.drain_timeout,
        udp_idle_timeout: args.udp_idle_timeout,
        connect_timeout: args.proxy_connect_timeout,
        ejection_base: args.proxy_ejection_time,
        ejection_max: args.proxy_ejection_time.saturating_mul(10),
        metrics_listen: args.proxy_metrics_listen.0,
        worker_threads: args.proxy_threads,
        ..switchboard_proxy::Config::default()
    })
}

/// Starts the proxy on the shared table.
pub async fn start(
    config: switchboard_proxy::Config,
    table: watch::Receiver<Arc<ServiceTable>>,
    client: kube::Client,
) -> anyhow::Result<switchboard_proxy::Running> {
    let metrics = config.metrics_listen;
    let running = switchboard_proxy::start(config, table, Some(client))
        .await
        .with_context(|| match metrics {
            Some(addr) => format!(
                "cannot start the proxy (metrics on {addr}); choose another address with \
                 --proxy-metrics-listen (e.g. 127.0.0.1:0) or disable it with \
                 --proxy-metrics-listen none"
            ),
            None => "cannot start the proxy".to_owned(),
        })?;
    tracing::info!(metrics = ?running.metrics_addr, "userspace proxy running");
    Ok(running)
}

/// Flags of `switchboard proxy`: the node proxy alone (as kube-proxy runs),
/// against the apiserver of `--kubeconfig`, which may be any Kubernetes
/// apiserver.
#[derive(Debug, Clone, Args)]
pub struct ProxyCommandArgs {
    /// The proxy.
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// Runs `switchboard proxy` until SIGINT/SIGTERM or a failure: its own
/// discovery watch feeds the proxy.
pub async fn run_standalone(
    global: &crate::GlobalArgs,
    args: ProxyCommandArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let Some(config) = config(&args.proxy) else {
        anyhow::bail!("`switchboard proxy` with --proxy-mode none has nothing to do");
    };
    let node = config.node_name.clone();
    let client = crate::client::client(global).await?;
    let discovery = switchboard_discovery::spawn(client.clone());
    let mut proxy = Some(start(config, discovery.table.clone(), client).await?);
    let metrics_note = proxy
        .as_ref()
        .and_then(|p| p.metrics_addr)
        .map(|a| format!(", proxy-metrics http://{a}/metrics"))
        .unwrap_or_default();
    {
        // Tests and scripts wait for this line.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "switchboard proxy is up: node {node}{metrics_note}")?;
        out.flush()?;
    }
    let outcome = tokio::select! {
        stopped = wait(&mut proxy) => Err(stopped.err().unwrap_or_else(|| anyhow::anyhow!("the proxy stopped"))),
        signal = super::shutdown_signal() => {
            tracing::info!(signal = signal?, "shutting down");
            Ok(())
        }
    };
    discovery.task.abort();
    outcome.map(|()| std::process::ExitCode::SUCCESS)
}

/// Resolves when the proxy stops (only on failure); pending forever when
/// there is no proxy.
pub async fn wait(proxy: &mut Option<switchboard_proxy::Running>) -> anyhow::Result<()> {
    match proxy {
        Some(running) => match (&mut running.task).await {
            Ok(Ok(())) => Err(anyhow::anyhow!("the proxy stopped")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("the proxy failed")),
            Err(e) => Err(anyhow::anyhow!("the proxy panicked: {e}")),
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Harness {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    #[test]
    fn defaults() {
        let h = Harness::try_parse_from(["x"]).unwrap();
        let c = config(&h.proxy).expect("userspace is the default");
        assert_eq!(c.default_scheduler, Algorithm::RoundRobin);
        assert_eq!(c.node_addresses, vec![IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.metrics_listen, Some("127.0.0.1:10249".parse().unwrap()));
        assert_eq!(c.worker_threads, 1);
        assert!(!c.node_name.is_empty());
    }

    #[test]
    fn flags_reach_the_config_and_bad_values_are_refused_with_a_reason() {
        let h = Harness::try_parse_from([
            "x",
            "--scheduler=maglev",
            "--node-name=n1",
            "--node-address=127.0.0.2,127.0.0.3",
            "--drain-timeout=500ms",
            "--udp-idle-timeout=2m",
            "--proxy-metrics-listen=none",
            "--proxy-threads=2",
        ])
        .unwrap();
        let c = config(&h.proxy).unwrap();
        assert_eq!(c.default_scheduler, Algorithm::Maglev);
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.node_addresses.len(), 2);
        assert_eq!(c.drain_timeout, Duration::from_millis(500));
        assert_eq!(c.udp_idle_timeout, Duration::from_secs(120));
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.worker_threads, 2);

        let h = Harness::try_parse_from(["x", "--proxy-mode=none"]).unwrap();
        assert!(config(&h.proxy).is_none());

        for (flag, needle) in [
            ("--proxy-mode=nftables", "not available yet"),
            ("--proxy-mode=kernel", "unknown proxy mode"),
            ("--scheduler=fastest", "unknown scheduler \"fastest\""),
            ("--drain-timeout=5 parsecs", "unknown unit"),
            ("--udp-idle-timeout=0s", "greater than zero"),
            ("--proxy-threads=0", "not a thread count"),
            ("--proxy-threads=many", "not a thread count"),
        ] {
            let e = Harness::try_parse_from(["x", flag])
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{flag}: {e}");
        }
    }
}
