//! The node agent (Switchboard's kubelet): registers its Node, runs the Pods
//! bound to it as local processes with their own loopback addresses,
//! probes them, reports their status, and serves their logs.
//!
//! Pure parts (no IO): [`expand`], [`env`](mod@env), [`backoff`], [`probe`],
//! [`ipam`], [`status`], [`config`]. IO: [`state`] (what survives a
//! restart) and the private modules: processes (process groups, `/proc`),
//! the prober, the Node, the pod supervisors and the HTTP server. [`spawn`]
//! starts it all; every pod has its own task.

pub mod backoff;
pub mod config;
pub mod env;
mod events;
pub mod expand;
pub mod ipam;
mod node;
mod pod;
pub mod probe;
mod prober;
mod process;
mod server;
pub mod state;
pub mod status;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigError, host_name};
pub use pod::IMAGE_NOT_RUNNABLE;

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid agent configuration: {0}")]
    Config(#[from] ConfigError),
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file cannot be read.
    #[error(transparent)]
    State(#[from] state::Error),
    /// The HTTP listener cannot be bound or failed.
    #[error("agent HTTP server on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Node cannot be registered.
    #[error("cannot register node {node}: {source}")]
    Register {
        /// The node name.
        node: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The agent's task panicked or was cancelled.
    #[error("the agent task ended abnormally: {0}")]
    Task(String),
}

/// A running agent. Dropping it aborts the agent without stopping the
/// processes (as a crash would; the next agent on the same data directory
/// adopts them); [`Agent::shutdown`] stops them.
#[derive(Debug)]
pub struct Agent {
    /// The bound address of the agent's HTTP server.
    pub listen_addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<Result<(), Error>>>,
    stop: CancellationToken,
}

impl Agent {
    /// Resolves when the agent stops by itself (it failed), with the
    /// reason. Cancel-safe; after it resolved, it resolves at once.
    pub async fn wait(&mut self) -> Result<(), Error> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let result = task.await;
        self.task = None;
        flatten(result)
    }

    /// Stops every pod's processes (SIGTERM, then SIGKILL after the pod's
    /// grace period capped by [`Config::shutdown_grace`]) and the agent.
    /// The pods stay in the API; their IPs are kept for the next start.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => flatten(task.await),
            None => Ok(()),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn flatten(r: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    match r {
        Ok(r) => r,
        Err(e) => Err(Error::Task(e.to_string())),
    }
}

/// Starts the agent: validates `config`, binds its HTTP server, registers
/// the Node, then (in the background) heart-beats, watches the pods bound
/// to the node and runs them.
pub async fn spawn(client: kube::Client, config: Config) -> Result<Agent, Error> {
    config.validate()?;
    let pods_dir = config.data_dir.join("pods");
    std::fs::create_dir_all(&pods_dir).map_err(|source| Error::DataDir {
        path: pods_dir.clone(),
        source,
    })?;
    let state = state::File::load(&config.data_dir.join("state.json"))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let listen_addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    let facts = node::Facts::gather();
    node::register(&client, &config, &facts, listen_addr.port())
        .await
        .map_err(|source| Error::Register {
            node: config.node_name.clone(),
            source,
        })?;

    let ipam = ipam::Ipam::new(config.pod_cidr, state.snapshot().pod_ips);
    let (services, services_writer) = reflector::store::<Service>();
    let host_ip = config
        .node_addresses
        .first()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let ctx = Arc::new(pod::Ctx {
        client,
        config,
        host_ip,
        state,
        ipam: Mutex::new(ipam),
        services,
        logs: Arc::new(server::Registry::default()),
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(ctx, listener, facts, services_writer, stop.clone()));
    Ok(Agent {
        listen_addr,
        task: Some(task),
        stop,
    })
}

struct Entry {
    tx: watch::Sender<Arc<Pod>>,
}

async fn run(
    ctx: Arc<pod::Ctx>,
    listener: tokio::net::TcpListener,
    facts: node::Facts,
    services_writer: reflector::store::Writer<Service>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let listen = ctx.config.listen;
    // Background work, aborted with this task.
    let mut background: JoinSet<Result<(), Error>> = JoinSet::new();
    let router = server::router(Arc::clone(&ctx.logs));
    background.spawn(async move {
        axum::serve(listener, router)
            .await
            .map_err(|source| Error::Listen {
                addr: listen,
                source,
            })
    });
    {
        let ctx = Arc::clone(&ctx);
        background.spawn(async move {
            let mut tick = tokio::time::interval(ctx.config.heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let beat = match node::heartbeat(&ctx.client, &ctx.config, &facts, port).await {
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        // Someone deleted the Node: register again.
                        node::register(&ctx.client, &ctx.config, &facts, port).await
                    }
                    other => other,
                };
                if let Err(e) = beat {
                    tracing::warn!(error = %e, "node heartbeat failed");
                }
            }
        });
    }
    {
        let api: Api<Service> = Api::all(ctx.client.clone());
        background.spawn(async move {
            let stream = reflector::reflector(
                services_writer,
                watcher(api, watcher::Config::default()).default_backoff(),
            );
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::debug!(error = %e, "service watch error");
                }
            }
            Ok(())
        });
    }

    let api: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", ctx.config.node_name);
    let events = watcher(api, watcher::Config::default().fields(&selector)).default_backoff();
    futures::pin_mut!(events);

    let mut pods: HashMap<String, Entry> = HashMap::new();
    let mut supervisors: JoinSet<()> = JoinSet::new();
    let mut supervisor_stop = stop.child_token();
    let mut listing: Option<Vec<Pod>> = None;
    let mut recovered = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(done) = background.join_next() => {
                match done {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => { stop_supervisors(&mut supervisor_stop, &mut supervisors).await; return Err(e) }
                    Err(e) => { stop_supervisors(&mut supervisor_stop, &mut supervisors).await; return Err(Error::Task(e.to_string())) }
                }
            }
            Some(_) = supervisors.join_next() => {
                pods.retain(|_, e| !e.tx.is_closed());
            }
            ev = events.next() => {
                let Some(ev) = ev else { break };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch error");
                        continue;
                    }
                };
                match ev {
                    watcher::Event::Init => listing = Some(Vec::new()),
                    watcher::Event::InitApply(pod) => {
                        if let Some(l) = listing.as_mut() {
                            l.push(pod);
                        }
                    }
                    watcher::Event::InitDone => {
                        let listed = listing.take().unwrap_or_default();
                        let uids: HashSet<String> = listed.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                        // Pods deleted while the watch was down.
                        pods.retain(|uid, _| uids.contains(uid));
                        let mut adopt = if recovered {
                            HashMap::new()
                        } else {
                            recovered = true;
                            recover(&ctx, &listed)
                        };
                        for pod in listed {
                            let uid = pod.metadata.uid.clone().unwrap_or_default();
                            let adopted = adopt.remove(&uid).unwrap_or_default();
                            apply(&ctx, &mut pods, &mut supervisors, &supervisor_stop, pod, adopted);
                        }
                    }
                    watcher::Event::Apply(pod) => {
                        apply(&ctx, &mut pods, &mut supervisors, &supervisor_stop, pod, Vec::new());
                    }
                    watcher::Event::Delete(pod) => {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        if pods.remove(&uid).is_none() {
                            ctx.release_ip(&uid);
                        }
                    }
                }
            }
        }
    }
    stop_supervisors(&mut supervisor_stop, &mut supervisors).await;
    Ok(())
}

async fn stop_supervisors(stop: &mut CancellationToken, supervisors: &mut JoinSet<()>) {
    stop.cancel();
    while supervisors.join_next().await.is_some() {}
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod was added or changed.
fn apply(
    ctx: &Arc<pod::Ctx>,
    pods: &mut HashMap<String, Entry>,
    supervisors: &mut JoinSet<()>,
    stop: &CancellationToken,
    pod: Pod,
    adopt: Vec<state::Process>,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(entry) = pods.get(&uid) {
        entry.tx.send_replace(Arc::new(pod));
        return;
    }
    if terminal(&pod) {
        // Finished before (this agent or an earlier one): nothing runs. A
        // deletion of it completes at once.
        for p in adopt {
            kill_stale(p);
        }
        if pod.metadata.deletion_timestamp.is_some() {
            let api: Api<Pod> = Api::namespaced(
                ctx.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let name = pod.metadata.name.clone().unwrap_or_default();
            tokio::spawn(async move {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let _ = api.delete(&name, &params).await;
            });
        }
        return;
    }
    let (tx, rx) = watch::channel(Arc::new(pod));
    pods.insert(uid, Entry { tx });
    supervisors.spawn(pod::supervise(
        Arc::clone(ctx),
        rx,
        adopt,
        stop.child_token(),
    ));
}

/// After an agent restart: the recorded processes that still run and whose
/// pod is still here are adopted (by pod uid); the others are killed. Pod
/// IPs of pods that are gone are released.
fn recover(ctx: &pod::Ctx, listed: &[Pod]) -> HashMap<String, Vec<state::Process>> {
    let live: HashSet<&str> = listed
        .iter()
        .filter(|p| !terminal(p))
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let all: HashSet<&str> = listed
        .iter()
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let snapshot = ctx.state.snapshot();
    let mut adopt: HashMap<String, Vec<state::Process>> = HashMap::new();
    let mut forget = Vec::new();
    for (key, p) in snapshot.processes {
        let same = process::start_time(p.pid) == Some(p.start_time);
        if same && live.contains(p.pod_uid.as_str()) {
            adopt.entry(p.pod_uid.clone()).or_default().push(p);
        } else {
            if same {
                kill_stale(p);
            }
            forget.push(key);
        }
    }
    let gone_ips: Vec<String> = snapshot
        .pod_ips
        .keys()
        .filter(|uid| !all.contains(uid.as_str()))
        .cloned()
        .collect();
    for uid in &gone_ips {
        ctx.release_ip(uid);
    }
    ctx.state.update(|s| {
        for k in &forget {
            s.processes.remove(k);
        }
    });
    adopt
}

/// Stops a process that belongs to no pod any more: SIGTERM, SIGKILL after 2 s.
fn kill_stale(p: state::Process) {
    tracing::info!(pod_uid = %p.pod_uid, container = %p.container, pid = p.pid, "stopping a process whose pod is gone");
    process::signal_group(p.pid, Signal::SIGTERM);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), process::wait_gone(p.pid)).await;
        process::signal_group(p.pid, Signal::SIGKILL);
    });
}
