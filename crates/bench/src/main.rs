//! `switchboard-bench`: control-plane benchmarks against a running
//! Switchboard (or any Kubernetes) apiserver, through kube-rs as every
//! Switchboard component talks to it. Each subcommand prints one JSON line
//! of results, then one line for people; progress goes to stderr.

mod dnsload;
mod dnswire;
mod load;
mod objects;
mod scenario;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use scenario::{Ctx, Report};

/// Command line of `switchboard-bench`.
#[derive(Debug, Parser)]
#[command(name = "switchboard-bench", about = "Control-plane benchmarks")]
struct Cli {
    /// Kubeconfig of the server under test (`DATA_DIR/kubeconfig`).
    #[arg(long, global = true, default_value = "./switchboard-data/kubeconfig")]
    kubeconfig: PathBuf,
    /// Namespace the benchmark's objects go in (created if missing).
    #[arg(long, global = true, default_value = "bench")]
    namespace: String,
    /// Give up on the whole scenario after this many seconds.
    #[arg(long, global = true, default_value_t = 1800)]
    timeout_secs: u64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Service creates: writes/s and latency percentiles.
    Creates(scenario::creates::CreatesArgs),
    /// Latency of listing every Service in a namespace holding many.
    List(scenario::list::ListArgs),
    /// Many watchers each receiving every event of many writes.
    WatchFanout(scenario::fanout::FanoutArgs),
    /// Pod Ready (pods/status) -> EndpointSlice seen by a watcher.
    Propagation(scenario::propagation::PropagationArgs),
    /// RSS of the server process, filled with Services and Pods.
    Rss(scenario::rss::RssArgs),
    /// Service created -> its name answered by cluster DNS.
    DnsLatency(scenario::dns_latency::DnsLatencyArgs),
    /// UDP DNS load with batched system calls (no apiserver needed).
    DnsLoad(dnsload::DnsLoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The DNS load generator talks to a DNS server only, on this thread.
    if let Scenario::DnsLoad(args) = &cli.scenario {
        return print(dnsload::run(args));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    print(runtime.block_on(run(cli)))
}

/// Prints a scenario's outcome: its JSON line and its line for people, or
/// the error.
fn print(outcome: anyhow::Result<Report>) -> ExitCode {
    match outcome {
        Ok(report) => {
            println!("{}", report.json);
            println!("{}", report.human);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Report> {
    let client = load::client(&cli.kubeconfig).await?;
    let ctx = Ctx {
        client,
        namespace: cli.namespace,
    };
    let work = async {
        match &cli.scenario {
            Scenario::Creates(a) => scenario::creates::run(&ctx, a).await,
            Scenario::List(a) => scenario::list::run(&ctx, a).await,
            Scenario::WatchFanout(a) => scenario::fanout::run(&ctx, a).await,
            Scenario::Propagation(a) => scenario::propagation::run(&ctx, a).await,
            Scenario::Rss(a) => scenario::rss::run(&ctx, a).await,
            Scenario::DnsLatency(a) => scenario::dns_latency::run(&ctx, a).await,
            Scenario::DnsLoad(_) => unreachable!("dns-load runs before the client is built"),
        }
    };
    match tokio::time::timeout(Duration::from_secs(cli.timeout_secs), work).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!("the scenario did not finish within {} s", cli.timeout_secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_bounded_defaults() {
        let cli = Cli::try_parse_from(["b", "--kubeconfig", "/k", "creates"]).expect("parses");
        match cli.scenario {
            Scenario::Creates(a) => {
                assert_eq!((a.services, a.concurrency), (5000, 32));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["b", "rss", "--pid", "42", "--pods", "10"]).expect("parses");
        match cli.scenario {
            Scenario::Rss(a) => assert_eq!((a.pid, a.services, a.pods), (42, 10_000, 10)),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn sizes_out_of_bounds_are_refused() {
        for bad in [
            vec!["b", "creates", "--services", "0"],
            vec!["b", "watch-fanout", "--watchers", "100000"],
            vec!["b", "rss"],
            vec!["b", "propagation", "--services", "70000"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_scenario_has_its_subcommand() {
        for name in ["creates", "list", "watch-fanout", "propagation"] {
            assert!(Cli::try_parse_from(["b", name]).is_ok(), "{name}");
        }
    }
}
