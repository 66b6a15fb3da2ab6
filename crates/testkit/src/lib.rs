//! Test support: start the `switchboard` binary on loopback and wait on conditions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod backend;
pub mod inprocess;
pub mod resolver;

pub use backend::Backend;
pub use inprocess::InProcess;

/// A `switchboard up` process on a free loopback port, with its data directory.
pub struct Switchboard {
    /// The process.
    pub child: Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The data directory (kept by the caller's TempDir).
    pub data_dir: PathBuf,
    /// The cluster DNS address (UDP and TCP), from the ready line.
    pub dns: Option<std::net::SocketAddr>,
    /// The node proxy's metrics address, from the ready line.
    pub proxy_metrics: Option<std::net::SocketAddr>,
}

impl Switchboard {
    /// Starts `binary up` on `data_dir` and waits for its ready line.
    pub fn up(binary: &Path, data_dir: &Path) -> anyhow::Result<Switchboard> {
        Switchboard::up_with(binary, data_dir, &[])
    }

    /// Starts `binary up` with its node agent running pods as processes
    /// (on a pod CIDR of its own), and extra flags.
    pub fn up_with_agent(
        binary: &Path,
        data_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Switchboard> {
        let mut all = vec!["--agent-mode", "process"];
        all.extend_from_slice(args);
        Switchboard::up_with(binary, data_dir, &all)
    }

    /// Starts `binary up` on `data_dir` with extra flags. Cluster DNS and its
    /// metrics listen on free loopback ports unless `args` set
    /// `--dns-listen` / `--dns-metrics-listen` (tests run in parallel, so
    /// the default 127.96.0.10:53 would collide). Without `--agent-mode` in
    /// `args` no agent runs: the test sets pod status itself (see
    /// [`Switchboard::up_with_agent`]).
    pub fn up_with(binary: &Path, data_dir: &Path, args: &[&str]) -> anyhow::Result<Switchboard> {
        Switchboard::start("up", binary, data_dir, args)
    }

    /// Starts `binary server` (the control plane alone: no DNS, proxy or
    /// agent) on `data_dir` with extra flags, as [`Switchboard::up_with`].
    pub fn server_with(
        binary: &Path,
        data_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Switchboard> {
        Switchboard::start("server", binary, data_dir, args)
    }

    fn start(
        command: &str,
        binary: &Path,
        data_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Switchboard> {
        let mut defaults: Vec<&str> = Vec::new();
        if !args.iter().any(|a| a.starts_with("--dns-listen")) {
            defaults.extend(["--dns-listen", "127.0.0.1:0"]);
        }
        if !args.iter().any(|a| a.starts_with("--dns-metrics-listen")) {
            defaults.extend(["--dns-metrics-listen", "none"]);
        }
        if !args.iter().any(|a| a.starts_with("--proxy-metrics-listen")) {
            defaults.extend(["--proxy-metrics-listen", "127.0.0.1:0"]);
        }
        if !args.iter().any(|a| a.starts_with("--dns-upstream")) {
            // Never the host's resolvers from a test.
            defaults.extend(["--dns-upstream", "none"]);
        }
        if !args.iter().any(|a| a.starts_with("--agent-mode")) {
            // Most tests stand in for the agent, setting pod status by hand.
            defaults.extend(["--agent-mode", "none"]);
        }
        if !args.iter().any(|a| a.starts_with("--agent-listen")) {
            defaults.extend(["--agent-listen", "127.0.0.1:0"]);
        }
        let pod_cidr = unique_pod_cidr();
        if !args.iter().any(|a| a.starts_with("--pod-cidr")) {
            defaults.extend(["--pod-cidr", pod_cidr.as_str()]);
        }
        let (child, rx) = spawn_with_stdout(
            Command::new(binary)
                .args([command, "--api-listen", "127.0.0.1:0", "--data-dir"])
                .arg(data_dir)
                .args(defaults)
                .args(args),
        )?;
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .with_context(|| format!("no ready line from switchboard {command} within 30 s"))?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("https://"))
            .map(|w| w.trim_end_matches(',').to_string())
            .with_context(|| format!("unexpected ready line {line:?}"))?;
        let dns = line
            .split_whitespace()
            .find_map(|w| w.trim_end_matches(',').strip_prefix("dns://"))
            .and_then(|a| a.parse().ok());
        let proxy_metrics = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://")?.strip_suffix("/metrics"))
            .and_then(|a| a.parse().ok());
        Ok(Switchboard {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            dns,
            proxy_metrics,
        })
    }

    /// The kubeconfig the process wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// A kube-rs client from the kubeconfig.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Kills the process with SIGKILL and reaps it (a crash: pods it runs
    /// keep running, for the next start to adopt).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process with SIGTERM, as an operator would, so its node
    /// agent stops the pods' processes; SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        stop_child(&mut self.child, grace);
    }
}

impl Drop for Switchboard {
    /// A graceful stop, so no test leaves pod processes behind.
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

/// A `switchboard proxy` process (the node proxy alone) against the
/// cluster of a kubeconfig.
pub struct NodeProxy {
    /// The process.
    pub child: Child,
    /// Its metrics address, from the ready line (unless disabled).
    pub metrics: Option<std::net::SocketAddr>,
}

impl NodeProxy {
    /// Starts `binary --kubeconfig KUBECONFIG proxy ARGS` and waits for its
    /// ready line. Metrics listen on a free loopback port unless `args` set
    /// `--proxy-metrics-listen`.
    pub fn start(binary: &Path, kubeconfig: &Path, args: &[&str]) -> anyhow::Result<NodeProxy> {
        let mut defaults: Vec<&str> = Vec::new();
        if !args.iter().any(|a| a.starts_with("--proxy-metrics-listen")) {
            defaults.extend(["--proxy-metrics-listen", "127.0.0.1:0"]);
        }
        let (mut child, rx) = spawn_with_stdout(
            Command::new(binary)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .arg("proxy")
                .args(defaults)
                .args(args),
        )?;
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("switchboard proxy is up") => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("no ready line from switchboard proxy within 30 s: {other:?}");
            }
        };
        let metrics = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://")?.strip_suffix("/metrics"))
            .and_then(|a| a.parse().ok());
        Ok(NodeProxy { child, metrics })
    }

    /// Stops the process with SIGTERM, SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        stop_child(&mut self.child, grace);
    }
}

impl Drop for NodeProxy {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Starts `command` with stdout piped (stderr discarded) and returns its
/// stdout lines on a channel, read by a thread of their own so the process
/// never blocks on a full pipe. Callers wait on it for their ready line.
pub fn spawn_with_stdout(
    command: &mut Command,
) -> anyhow::Result<(Child, std::sync::mpsc::Receiver<String>)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Ok((child, rx))
}

/// Stops `child` with SIGTERM, as an operator would; SIGKILL after `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `sig` to process `pid`; a process already gone is not an error.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// A /24 for one test cluster's pods, distinct from every other cluster of
/// the same test process (tests run in parallel and pods bind their pod IP),
/// inside 127.160.0.0/11, which nothing else here uses.
fn unique_pod_cidr() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = (std::process::id().wrapping_mul(64) + NEXT.fetch_add(1, Ordering::Relaxed)) % 8192;
    format!("127.{}.{}.0/24", 160 + n / 256, n % 256)
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
