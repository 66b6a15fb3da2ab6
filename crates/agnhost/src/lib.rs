//! A compatible subset of the Kubernetes e2e test image `agnhost`
//! (`serve-hostname`, `netexec`, `pause`), run by the node agent as the
//! workload of test pods, since pods here are plain processes.
//!
//! [`main`] is the whole program: it parses the subcommand and its
//! Go-style flags, reads the two environment variables the node agent sets
//! for a pod (`HOSTNAME`, the pod name, and `POD_IP`, the pod's own
//! loopback address), and runs the servers on a tokio runtime of its own.
//! The servers themselves ([`netexec::Server`], [`serve_hostname::Server`])
//! take a typed config and bind first, so tests can listen on port 0 and
//! read the bound addresses back.

use std::ffi::OsString;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

mod duration;
mod http;
mod log;
pub mod netexec;
pub mod serve_hostname;

/// Why a subcommand could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listening socket could not be bound (port taken, address absent).
    #[error("cannot listen on {protocol} {addr}")]
    Bind {
        /// `TCP`, `UDP` or `HTTP`.
        protocol: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The flags contradict each other.
    #[error("{reason}")]
    InvalidFlags {
        /// What is wrong.
        reason: &'static str,
    },
    /// The signal handlers could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers")]
    Signal {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime")]
    Runtime {
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `agnhost`: the e2e test workload.
#[derive(Debug, Parser)]
#[command(
    name = "agnhost",
    about = "Kubernetes e2e test workload (a subset of agnhost)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the hostname through HTTP / TCP / UDP on the given port.
    ServeHostname(ServeHostnameArgs),
    /// HTTP and UDP servers with the netexec endpoints (/hostname, /echo, /clientip, ...).
    Netexec(NetexecArgs),
    /// Waits for SIGTERM or SIGINT, then exits 0.
    Pause,
}

// Booleans take Go's pflag form: `--tcp` means true, `--http=false` turns
// one off (`require_equals`, so a following word is never eaten as a value).
#[derive(Debug, Args)]
struct ServeHostnameArgs {
    /// Serve raw over TCP (write the hostname, close).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    tcp: bool,
    /// Serve raw over UDP (answer every datagram with the hostname).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    udp: bool,
    /// Serve HTTP (every path answers the hostname). Give `--http=false` with `--tcp`/`--udp`.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = true, default_missing_value = "true")]
    http: bool,
    /// Close the connection after each HTTP response.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    close: bool,
    /// Port number.
    #[arg(long, default_value_t = 9376)]
    port: u16,
}

#[derive(Debug, Args)]
struct NetexecArgs {
    /// HTTP listen port.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// UDP listen port; -1 disables the UDP server.
    #[arg(long, default_value_t = 8081, allow_negative_numbers = true, value_parser = port_or_disabled)]
    udp_port: i32,
    /// SCTP listen port: accepted for compatibility, no SCTP server is started.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    sctp_port: i32,
    /// Comma-separated IP addresses for the UDP servers (default: the pod IP).
    #[arg(long, default_value = "")]
    udp_listen_addresses: String,
    /// Answer every HTTP request as if it were a GET of this path and query.
    #[arg(long, default_value = "")]
    http_override: String,
    /// Seconds to wait after SIGTERM before exiting (/readyz answers 503 meanwhile).
    #[arg(long, default_value_t = 0)]
    delay_shutdown: u64,
}

fn port_or_disabled(s: &str) -> Result<i32, String> {
    let port: i32 = s.parse().map_err(|e| format!("{e}"))?;
    if port == -1 || (0..=65535).contains(&port) {
        Ok(port)
    } else {
        Err("must be a port number (0-65535) or -1".to_string())
    }
}

/// Runs `agnhost` with `args` (`args[0]` is the program name) and returns
/// its exit status: 0 after SIGTERM/SIGINT, the code asked for by netexec's
/// `/exit`, 1 when a server cannot start, 2 for bad flags.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version land here too, with exit code 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let env = PodEnv::from_process();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(source) => return fail(&Error::Runtime { source }),
    };
    match runtime.block_on(run(cli.command, env)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}

/// What the node agent tells a pod through its environment.
struct PodEnv {
    /// The pod name (`HOSTNAME`), else the system host name.
    hostname: String,
    /// The pod's own IP (`POD_IP`), else the unspecified address.
    ip: IpAddr,
}

impl PodEnv {
    fn from_process() -> PodEnv {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(system_hostname);
        let ip = match std::env::var("POD_IP") {
            Ok(v) if !v.is_empty() => match v.parse() {
                Ok(ip) => ip,
                Err(_) => {
                    log::line(format_args!("ignoring POD_IP={v:?}: not an IP address"));
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                }
            },
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        PodEnv { hostname, ip }
    }
}

fn system_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

async fn run(command: Command, env: PodEnv) -> Result<u8, Error> {
    let terminated = terminated()?;
    match command {
        Command::Pause => {
            println!("Paused");
            terminated.await;
            Ok(0)
        }
        Command::ServeHostname(a) => {
            let config = serve_hostname::Config {
                ip: env.ip,
                port: a.port,
                tcp: a.tcp,
                udp: a.udp,
                http: a.http,
                close: a.close,
                hostname: env.hostname,
            };
            let server = serve_hostname::Server::bind(config).await?;
            Ok(server.run(terminated).await)
        }
        Command::Netexec(a) => {
            let udp = if a.udp_port == -1 {
                Vec::new()
            } else {
                let port = u16::try_from(a.udp_port).unwrap_or(0); // checked by port_or_disabled
                udp_addresses(&a.udp_listen_addresses, env.ip)?
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect()
            };
            let config = netexec::Config {
                http: SocketAddr::new(env.ip, a.http_port),
                udp,
                sctp_requested: a.sctp_port != -1,
                http_override: Some(a.http_override).filter(|o| !o.is_empty()),
                delay_shutdown: Duration::from_secs(a.delay_shutdown),
                hostname: env.hostname,
            };
            let server = netexec::Server::bind(config).await?;
            Ok(server.run(terminated).await)
        }
    }
}

fn udp_addresses(list: &str, default: IpAddr) -> Result<Vec<IpAddr>, Error> {
    if list.is_empty() {
        return Ok(vec![default]);
    }
    let mut ips = Vec::new();
    for part in list.split(',') {
        let ip: IpAddr = part.trim().parse().map_err(|_| Error::InvalidFlags {
            reason: "--udp-listen-addresses must be a comma-separated list of IP addresses",
        })?;
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

/// Resolves on the first SIGTERM or SIGINT. Installed before any socket is
/// bound, so a signal sent right after start is never missed.
fn terminated() -> Result<impl Future<Output = ()>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|source| Error::Signal { source })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| Error::Signal { source })?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => log::line(format_args!("Received SIGTERM")),
            _ = int.recv() => log::line(format_args!("Received SIGINT")),
        }
    })
}

fn fail(e: &Error) -> ExitCode {
    let mut message = format!("agnhost: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    eprintln!("{message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("agnhost").chain(args.iter().copied()))
    }

    #[test]
    fn serve_hostname_flags_follow_go_booleans() {
        let Command::ServeHostname(a) = parse(&["serve-hostname"]).expect("parses").command else {
            panic!("wrong subcommand");
        };
        assert!(a.http && !a.tcp && !a.udp && !a.close);
        assert_eq!(a.port, 9376);
        let Command::ServeHostname(a) =
            parse(&["serve-hostname", "--udp", "--http=false", "--port=12345"])
                .expect("parses")
                .command
        else {
            panic!("wrong subcommand");
        };
        assert!(a.udp && !a.http);
        assert_eq!(a.port, 12345);
    }

    #[test]
    fn netexec_flags_accept_disabled_udp() {
        let Command::Netexec(a) = parse(&["netexec", "--http-port=8080", "--udp-port=-1"])
            .expect("parses")
            .command
        else {
            panic!("wrong subcommand");
        };
        assert_eq!((a.http_port, a.udp_port, a.sctp_port), (8080, -1, -1));
        let Command::Netexec(a) = parse(&["netexec", "--udp-port", "-1"])
            .expect("parses")
            .command
        else {
            panic!("wrong subcommand");
        };
        assert_eq!(a.udp_port, -1);
        assert!(parse(&["netexec", "--udp-port=-2"]).is_err());
        assert!(parse(&["netexec", "--http-port=70000"]).is_err());
    }

    #[test]
    fn udp_addresses_default_to_the_pod_ip() {
        let pod: IpAddr = "127.244.0.7".parse().expect("ip");
        assert_eq!(udp_addresses("", pod).expect("ok"), vec![pod]);
        assert_eq!(
            udp_addresses("127.0.0.1,127.0.0.1, ::1", pod).expect("ok"),
            vec![
                "127.0.0.1".parse::<IpAddr>().expect("ip"),
                "::1".parse().expect("ip")
            ]
        );
        assert!(udp_addresses("nope", pod).is_err());
    }

    #[test]
    fn bad_flags_exit_2_and_help_exits_0() {
        let code = main(vec!["agnhost".into(), "netexec".into(), "--bogus".into()]);
        assert_eq!(code, ExitCode::from(2));
        let code = main(vec!["agnhost".into(), "--help".into()]);
        assert_eq!(code, ExitCode::from(0));
    }
}
