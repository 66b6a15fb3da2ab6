//! The `switchboard` binary: a thin main that turns flags into typed
//! configurations and hands them to the components (`up`, `server`), plus a
//! small kubectl-like client (`apply`, `get`, `describe`, `delete`).

mod client;
mod cmd;
mod manifest;
mod table;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// jemalloc rather than glibc's malloc: the server's heap is many small
/// objects replaced at different times (cache entries, pod views), which
/// leaves glibc's arenas fragmented, about 1.45 bytes resident per byte live
/// in the control-plane benchmark; jemalloc's size classes and background
/// purging (options in `.cargo/config.toml`) keep that lower.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Command line of `switchboard`.
#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Kubernetes service discovery and load balancing"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Kubeconfig of the cluster to talk to (else $KUBECONFIG, else
    /// ./switchboard-data/kubeconfig).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace for namespaced objects (default: "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Log filter (tracing `EnvFilter` syntax); RUST_LOG is used when absent.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the all-in-one system: apiserver, controllers (later DNS, proxy, ingress).
    Up(up::UpArgs),
    /// Run the control plane only: apiserver and controllers.
    Server(up::UpArgs),
    /// Create or update objects from manifests.
    Apply(cmd::apply::ApplyArgs),
    /// List objects in a table, or print them as YAML/JSON.
    Get(cmd::get::GetArgs),
    /// Describe one object in readable form.
    Describe(cmd::describe::DescribeArgs),
    /// Delete objects by manifest, by name or by label selector.
    Delete(cmd::delete::DeleteArgs),
    /// Print the service environment variables a pod of the namespace gets.
    Env(cmd::env::EnvArgs),
    /// Run a command with the namespace's service environment variables.
    Run(cmd::run::RunArgs),
    /// Print a container's output (`-f` to follow).
    Logs(cmd::logs::LogsArgs),
    /// Set the replicas of a Deployment or ReplicaSet.
    Scale(cmd::rollout::ScaleArgs),
    /// Follow a Deployment's rollout.
    Rollout(cmd::rollout::RolloutArgs),
    /// Run a node agent alone, joining the cluster of --kubeconfig.
    Agent(up::agent::AgentCommandArgs),
    /// Run the node proxy alone against the apiserver of --kubeconfig (as
    /// kube-proxy).
    Proxy(up::proxy::ProxyCommandArgs),
    /// Serve cluster DNS alone for the cluster of --kubeconfig (as CoreDNS).
    Dns(up::dns::DnsCommandArgs),
    /// The Kubernetes e2e test server (serve-hostname, netexec, pause) that
    /// agnhost pods run.
    #[command(disable_help_flag = true)]
    Agnhost {
        /// The agnhost subcommand and its flags (`switchboard agnhost --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // agnhost runs its own runtime and flags, as the real image's binary.
    if let Command::Agnhost { args } = cli.command {
        let argv = std::iter::once(std::ffi::OsString::from("agnhost")).chain(args);
        return switchboard_agnhost::main(argv.collect());
    }
    let server_mode = matches!(
        cli.command,
        Command::Up(_)
            | Command::Server(_)
            | Command::Agent(_)
            | Command::Dns(_)
            | Command::Proxy(_)
    );
    init_logging(&cli.global, server_mode);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::run(up::Mode::AllInOne, args).await,
            Command::Server(args) => up::run(up::Mode::ControlPlane, args).await,
            Command::Apply(args) => cmd::apply::run(&cli.global, args).await,
            Command::Get(args) => cmd::get::run(&cli.global, args).await,
            Command::Describe(args) => cmd::describe::run(&cli.global, args).await,
            Command::Delete(args) => cmd::delete::run(&cli.global, args).await,
            Command::Env(args) => cmd::env::run(&cli.global, args).await,
            Command::Run(args) => cmd::run::run(&cli.global, args).await,
            Command::Logs(args) => cmd::logs::run(&cli.global, args).await,
            Command::Scale(args) => cmd::rollout::scale(&cli.global, args).await,
            Command::Rollout(args) => cmd::rollout::rollout(&cli.global, args).await,
            Command::Agent(args) => up::agent::run_standalone(&cli.global, args).await,
            Command::Proxy(args) => up::proxy::run_standalone(&cli.global, args).await,
            Command::Dns(args) => up::dns::run_standalone(&cli.global, args).await,
            Command::Agnhost { .. } => unreachable!("agnhost returned before the runtime started"),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sends logs to stderr; client commands default to warnings only so their
/// stdout/stderr stay as terse as kubectl's.
fn init_logging(global: &GlobalArgs, server_mode: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if server_mode { "info" } else { "warn" };
    let filter = match &global.log_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(default)),
    }
    .unwrap_or_else(|e| {
        eprintln!("warning: bad log filter ({e}); using {default}");
        EnvFilter::new(default)
    });
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
