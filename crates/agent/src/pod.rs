//! One pod's supervisor: a task that owns the pod's containers (processes,
//! restarts with back-off, probes), writes the pod's status when it
//! changes, and on deletion runs `preStop`, stops the processes within the
//! grace period and removes the pod. Every event of the pod (a process
//! exit, a probe result, a spec update, a timer) arrives in this one task,
//! so the state needs no lock; a failure here touches no other pod.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::env;
use crate::events::{Recorder, Type};
use crate::ipam::Ipam;
use crate::probe::{Kind, Timing, Tracker, Verdict};
use crate::prober::{self, Action, Target};
use crate::process::{self, Exit};
use crate::server::{self, PodLogs};
use crate::state;
use crate::status::{self, Observed};

/// A ConfigMap or Secret error is retried after this long.
const CONFIG_RETRY: Duration = Duration::from_secs(10);
/// A failed status write is retried after this long.
const WRITE_RETRY: Duration = Duration::from_secs(1);
/// How long processes get after SIGKILL before the agent stops waiting.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The status message of an image the agent cannot run.
pub const IMAGE_NOT_RUNNABLE: &str = "this runtime runs commands; set command";

/// What every supervisor shares.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub config: Config,
    pub host_ip: String,
    pub state: state::File,
    pub ipam: Mutex<Ipam>,
    pub services: reflector::Store<Service>,
    pub logs: Arc<server::Registry>,
}

impl Ctx {
    fn allocate_ip(&self, uid: &str) -> Option<Ipv4Addr> {
        let ip = self
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allocate(uid)?;
        self.state.update(|s| {
            s.pod_ips.insert(uid.to_owned(), ip);
        });
        Some(ip)
    }

    pub fn release_ip(&self, uid: &str) {
        self.ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(uid);
        self.state.update(|s| {
            s.pod_ips.remove(uid);
        });
    }

    fn pod_dir(&self, pod: &Pod) -> PathBuf {
        let m = &pod.metadata;
        self.config.data_dir.join("pods").join(format!(
            "{}_{}_{}",
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or(""),
            m.uid.as_deref().unwrap_or("")
        ))
    }
}

/// Whether `image` is the Kubernetes e2e test image agnhost (any registry,
/// any tag or digest).
pub fn is_agnhost(image: &str) -> bool {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next() == Some("agnhost")
}

/// The argv of a container whose image the agent can run: its command and
/// args; for agnhost, the built-in agnhost in place of the image's
/// entrypoint (no command, or the image's own `/agnhost` path).
fn argv(
    spec: &Container,
    vars: &BTreeMap<String, String>,
    agnhost_command: &[String],
) -> Vec<String> {
    let agnhost = is_agnhost(spec.image.as_deref().unwrap_or(""));
    let has_command = spec.command.as_ref().is_some_and(|c| !c.is_empty());
    if !has_command {
        let mut argv = agnhost_command.to_vec();
        argv.extend(env::args_line(spec, vars));
        return argv;
    }
    let mut argv = env::command_line(spec, vars);
    if agnhost
        && matches!(
            argv.first().map(String::as_str),
            Some("/agnhost" | "agnhost")
        )
    {
        argv.splice(0..1, agnhost_command.iter().cloned());
    }
    argv
}

fn now() -> String {
    rfc3339(&jiff::Timestamp::now())
}

/// Kubernetes times have second precision.
fn rfc3339(t: &jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

enum Msg {
    Exited {
        c: usize,
        generation: u64,
        exit: Exit,
    },
    Probe {
        c: usize,
        generation: u64,
        kind: Kind,
        result: Result<(), String>,
    },
}

#[derive(Debug, Clone)]
struct Term {
    exit_code: i32,
    reason: String,
    message: Option<String>,
    started_at: Option<String>,
    finished_at: String,
    pid: Option<i32>,
}

#[derive(Debug, Clone)]
enum CState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        pgid: i32,
        started_at: String,
        since: Instant,
    },
    Terminated(Term),
}

struct Ctr {
    spec: Container,
    /// An init container: runs to completion, in order, before the others.
    init: bool,
    state: CState,
    last: Option<Term>,
    restarts: i32,
    /// An instance ran before (here or before an agent restart): the next
    /// start is a restart.
    has_run: bool,
    backoff: Backoff,
    restart_at: Option<Instant>,
    /// Incremented per instance: messages of an older one are ignored.
    generation: u64,
    started: bool,
    ready: bool,
    trackers: HashMap<Kind, Tracker>,
    probe_tasks: Vec<AbortHandle>,
    killer: Option<AbortHandle>,
    env: BTreeMap<String, String>,
    /// Will not run again.
    done: bool,
}

impl Ctr {
    fn running_pgid(&self) -> Option<i32> {
        match self.state {
            CState::Running { pgid, .. } => Some(pgid),
            _ => None,
        }
    }

    fn stop_probes(&mut self) {
        for h in self.probe_tasks.drain(..) {
            h.abort();
        }
        self.trackers.clear();
    }
}

struct Supervisor {
    ctx: Arc<Ctx>,
    pod: Arc<Pod>,
    uid: String,
    namespace: String,
    name: String,
    ip: Option<Ipv4Addr>,
    dir: PathBuf,
    gone: CancellationToken,
    /// Containers that will not run again, for log followers.
    finished: watch::Sender<std::collections::HashSet<String>>,
    containers: Vec<Ctr>,
    tasks: JoinSet<()>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    events: Recorder,
    /// Condition type → (status, lastTransitionTime).
    conditions: HashMap<&'static str, (bool, String)>,
    start_time: String,
    written: Option<Value>,
    write_failed: bool,
    terminating: bool,
}

/// Runs pod `pod_rx` until it is deleted (then removes it from the API),
/// disappears from the API, or `stop` (the agent stops: processes are
/// stopped, the pod left as it is). `adopt` are its processes that survived
/// an agent restart.
pub(crate) async fn supervise(
    ctx: Arc<Ctx>,
    mut pod_rx: watch::Receiver<Arc<Pod>>,
    adopt: Vec<state::Process>,
    stop: CancellationToken,
) {
    let pod = pod_rx.borrow_and_update().clone();
    let mut s = Supervisor::new(ctx, pod);
    s.adopt(adopt);
    s.write_status().await;
    loop {
        if s.pod.metadata.deletion_timestamp.is_some() {
            s.terminate().await;
            s.cleanup();
            return;
        }
        s.start_due().await;
        s.write_status().await;
        let next = s.next_wakeup();
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                let grace = s.grace().min(s.ctx.config.shutdown_grace);
                s.stop_all(grace, false).await;
                s.gone.cancel();
                return;
            }
            changed = pod_rx.changed() => match changed {
                Ok(()) => s.pod = pod_rx.borrow_and_update().clone(),
                Err(_) => {
                    // Removed from the API without waiting for us (a forced
                    // delete): stop quickly, nothing left to report to.
                    let grace = s.grace().min(s.ctx.config.shutdown_grace);
                    s.stop_all(grace, false).await;
                    s.cleanup();
                    return;
                }
            },
            Some(msg) = s.rx.recv() => s.handle(msg),
            () = sleep_until(next) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    fn new(ctx: Arc<Ctx>, pod: Arc<Pod>) -> Supervisor {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let dir = ctx.pod_dir(&pod);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create the pod's log directory");
        }
        let gone = CancellationToken::new();
        let (finished, finished_rx) = watch::channel(Default::default());
        ctx.logs.insert(
            &namespace,
            &name,
            PodLogs {
                dir: dir.clone(),
                gone: gone.clone(),
                finished: finished_rx,
            },
        );
        let mut events = Recorder::new(ctx.client.clone(), ctx.config.node_name.clone(), &pod);
        let ip = ctx.allocate_ip(&uid);
        if ip.is_none() {
            events.record(
                Type::Warning,
                None,
                "FailedCreatePodSandBox",
                format!("no free pod IP in {}", ctx.config.pod_cidr),
            );
        }
        let previous = pod.status.as_ref();
        // After an agent restart, a pod already initialized does not run its
        // init containers again (the kubelet keeps them with the sandbox).
        let initialized = previous
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Initialized" && c.status == "True")
            });
        let spec = pod.spec.clone().unwrap_or_default();
        let inits = spec.init_containers.unwrap_or_default();
        let has_inits = !inits.is_empty() && !initialized;
        let mut containers: Vec<Ctr> = inits
            .into_iter()
            .map(|c| (c, true))
            .chain(spec.containers.into_iter().map(|c| (c, false)))
            .map(|(spec, init)| {
                let list = if init {
                    previous.and_then(|st| st.init_container_statuses.as_ref())
                } else {
                    previous.and_then(|st| st.container_statuses.as_ref())
                };
                let before = list.and_then(|cs| cs.iter().find(|c| c.name == spec.name));
                let has_run = before.is_some_and(|b| {
                    b.last_state
                        .as_ref()
                        .is_some_and(|l| l.terminated.is_some() || l.running.is_some())
                        || b.state
                            .as_ref()
                            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                });
                let last = before
                    .and_then(|b| b.last_state.as_ref())
                    .and_then(|l| l.terminated.as_ref())
                    .map(|t| Term {
                        exit_code: t.exit_code,
                        reason: t.reason.clone().unwrap_or_default(),
                        message: t.message.clone(),
                        started_at: t.started_at.as_ref().map(|x| rfc3339(&x.0)),
                        finished_at: t.finished_at.as_ref().map_or_else(now, |x| rfc3339(&x.0)),
                        pid: None,
                    });
                let skip = init && initialized;
                Ctr {
                    spec,
                    init,
                    state: if skip {
                        CState::Terminated(Term {
                            exit_code: 0,
                            reason: "Completed".to_owned(),
                            message: None,
                            started_at: None,
                            finished_at: now(),
                            pid: None,
                        })
                    } else if !init && has_inits {
                        CState::Waiting {
                            reason: "PodInitializing".to_owned(),
                            message: None,
                        }
                    } else {
                        CState::Waiting {
                            reason: "ContainerCreating".to_owned(),
                            message: None,
                        }
                    },
                    last,
                    restarts: before.map_or(0, |b| b.restart_count),
                    has_run,
                    backoff: Backoff::default(),
                    restart_at: None,
                    generation: 0,
                    started: false,
                    ready: skip,
                    trackers: HashMap::new(),
                    probe_tasks: Vec::new(),
                    killer: None,
                    env: BTreeMap::new(),
                    done: skip,
                }
            })
            .collect();
        if ip.is_some() {
            // The first init container still to run, else every container.
            match containers.iter_mut().find(|c| c.init && !c.done) {
                Some(first) => first.restart_at = Some(Instant::now()),
                None => {
                    for c in &mut containers {
                        if !c.init {
                            c.restart_at = Some(Instant::now());
                        }
                    }
                }
            }
        }
        let start_time = previous
            .and_then(|s| s.start_time.as_ref())
            .map(|t| rfc3339(&t.0))
            .unwrap_or_else(now);
        let mut conditions = HashMap::new();
        for c in previous
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
        {
            let Some(kind) = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                .into_iter()
                .find(|k| *k == c.type_)
            else {
                continue;
            };
            if let Some(t) = &c.last_transition_time {
                conditions.insert(kind, (c.status == "True", rfc3339(&t.0)));
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        Supervisor {
            ctx,
            pod,
            uid,
            namespace,
            name,
            ip,
            dir,
            gone,
            finished,
            containers,
            tasks: JoinSet::new(),
            tx,
            rx,
            events,
            conditions,
            start_time,
            written: None,
            write_failed: false,
            terminating: false,
        }
    }

    fn policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    /// The pod's grace period for stopping: the deletion's, else the spec's, else 30 s.
    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0);
        Duration::from_secs(secs as u64)
    }

    fn pod_ip(&self) -> IpAddr {
        IpAddr::V4(self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED))
    }

    /// Takes over processes a previous agent started.
    fn adopt(&mut self, adopt: Vec<state::Process>) {
        for p in adopt {
            let Some(i) = self
                .containers
                .iter()
                .position(|c| c.spec.name == p.container)
            else {
                process::signal_group(p.pid, Signal::SIGKILL);
                continue;
            };
            tracing::info!(pod = %self.name, container = %p.container, pid = p.pid, "adopting a running process");
            let started = jiff::Timestamp::now().duration_since(
                p.started_at
                    .parse()
                    .unwrap_or_else(|_| jiff::Timestamp::now()),
            );
            let ran = Duration::try_from(started).unwrap_or_default();
            let since = Instant::now().checked_sub(ran).unwrap_or_else(Instant::now);
            let env = self.base_env_guess(i);
            let c = &mut self.containers[i];
            c.generation += 1;
            c.restarts = p.restart_count;
            c.has_run = true;
            c.restart_at = None;
            c.env = env;
            c.state = CState::Running {
                pgid: p.pid,
                started_at: p.started_at.clone(),
                since,
            };
            let (tx, generation, pgid) = (self.tx.clone(), c.generation, p.pid);
            self.tasks.spawn(async move {
                process::wait_gone(pgid).await;
                let _ = tx.send(Msg::Exited {
                    c: i,
                    generation,
                    exit: Exit::Unknown,
                });
            });
            self.start_probes(i);
        }
    }

    /// The environment an adopted process's exec probes get: the base one
    /// with the pod's own values (the full one needs the API; exec probes
    /// of adopted containers are rare enough).
    fn base_env_guess(&self, i: usize) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self.ctx.config.base_env.iter().cloned().collect();
        for v in self.containers[i].spec.env.iter().flatten() {
            if let Some(val) = &v.value {
                env.insert(v.name.clone(), val.clone());
            }
        }
        env.insert("POD_IP".to_owned(), self.pod_ip().to_string());
        env
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let restart = self
            .containers
            .iter()
            .filter(|c| !c.done)
            .filter_map(|c| c.restart_at)
            .min();
        let retry = self.write_failed.then(|| Instant::now() + WRITE_RETRY);
        match (restart, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn start_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.containers.len() {
            let c = &self.containers[i];
            if c.done || c.running_pgid().is_some() || c.restart_at.is_none_or(|t| t > now) {
                continue;
            }
            self.containers[i].restart_at = None;
            self.start(i).await;
        }
    }

    async fn start(&mut self, i: usize) {
        let spec = self.containers[i].spec.clone();
        let name = spec.name.clone();
        let image = spec.image.clone().unwrap_or_default();
        let has_command = spec.command.as_ref().is_some_and(|c| !c.is_empty());
        if !has_command && !is_agnhost(&image) {
            let c = &mut self.containers[i];
            c.state = CState::Waiting {
                reason: "ImageNotRunnable".to_owned(),
                message: Some(IMAGE_NOT_RUNNABLE.to_owned()),
            };
            c.done = true;
            self.events.record(
                Type::Warning,
                Some(&name),
                "Failed",
                format!("Error: ImageNotRunnable: image \"{image}\" has no command: {IMAGE_NOT_RUNNABLE}"),
            );
            return;
        }
        let environment = match self.environment(&spec).await {
            Ok(e) => e,
            Err(message) => {
                let c = &mut self.containers[i];
                c.state = CState::Waiting {
                    reason: "CreateContainerConfigError".to_owned(),
                    message: Some(message.clone()),
                };
                c.restart_at = Some(Instant::now() + CONFIG_RETRY);
                self.events.record(
                    Type::Warning,
                    Some(&name),
                    "Failed",
                    format!("Error: {message}"),
                );
                return;
            }
        };
        let argv = argv(
            &spec,
            &environment.expansion,
            &self.ctx.config.agnhost_command,
        );

        let c = &mut self.containers[i];
        if c.has_run {
            c.restarts += 1;
        }
        c.has_run = true;
        c.generation += 1;
        c.env = environment.process.clone();
        let log = server::log_path(&self.dir, &name, false);
        if log.exists() {
            // Keep the instance before for `logs --previous`.
            let _ = std::fs::rename(&log, server::log_path(&self.dir, &name, true));
        }
        let started = process::start(&process::Spec {
            argv: &argv,
            env: &environment.process,
            working_dir: spec.working_dir.as_deref(),
            log: &log,
        });
        let started_at = now();
        let child = match started {
            Ok(child) => child,
            Err(e) => {
                let message = format!("failed to start container process: {e}");
                self.events.record(
                    Type::Warning,
                    Some(&name),
                    "Failed",
                    format!("Error: {message}"),
                );
                let term = Term {
                    exit_code: 128,
                    reason: "StartError".to_owned(),
                    message: Some(message),
                    started_at: None,
                    finished_at: started_at,
                    pid: None,
                };
                self.finished(i, term, Duration::ZERO);
                return;
            }
        };
        let Some(pid) = child.id().map(|p| p as i32) else {
            // Already reaped: it exited at once; the waiter below reports it.
            self.spawn_waiter(i, child, 0);
            return;
        };
        let start_time = process::start_time(pid).unwrap_or(0);
        let (uid, restarts) = (self.uid.clone(), c.restarts);
        self.ctx.state.update(|s| {
            s.processes.insert(
                state::key(&uid, &name),
                state::Process {
                    pod_uid: uid.clone(),
                    container: name.clone(),
                    pid,
                    start_time,
                    started_at: started_at.clone(),
                    restart_count: restarts,
                },
            );
        });
        self.containers[i].state = CState::Running {
            pgid: pid,
            started_at,
            since: Instant::now(),
        };
        self.events.clear(Some(&name), "Failed");
        self.events.record(
            Type::Normal,
            Some(&name),
            "Started",
            format!("Started container {name}"),
        );
        self.spawn_waiter(i, child, pid);
        self.start_probes(i);
    }

    fn spawn_waiter(&mut self, i: usize, mut child: tokio::process::Child, pgid: i32) {
        let (tx, generation) = (self.tx.clone(), self.containers[i].generation);
        self.tasks.spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => Exit::from_status(status),
                Err(_) => Exit::Unknown,
            };
            // The container ends with its main process: what it left
            // behind in its group goes too, as with a PID namespace.
            process::signal_group(pgid, Signal::SIGKILL);
            let _ = tx.send(Msg::Exited {
                c: i,
                generation,
                exit,
            });
        });
    }

    /// The environment of `spec`, or the `CreateContainerConfigError` message.
    async fn environment(&self, spec: &Container) -> Result<env::Environment, String> {
        let (cms, secrets) = env::references(spec);
        let mut objects = env::Objects::default();
        let client = &self.ctx.client;
        for name in cms {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
            match api.get_opt(&name).await {
                Ok(Some(cm)) => {
                    let mut data = cm.data.unwrap_or_default();
                    for (k, v) in cm.binary_data.unwrap_or_default() {
                        data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                    }
                    objects.config_maps.insert(name, data);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("cannot get configmap \"{name}\": {e}")),
            }
        }
        for name in secrets {
            let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
            match api.get_opt(&name).await {
                Ok(Some(secret)) => {
                    let mut data: BTreeMap<String, String> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect();
                    data.extend(secret.string_data.unwrap_or_default());
                    objects.secrets.insert(name, data);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("cannot get secret \"{name}\": {e}")),
            }
        }
        // The kubelet waits for its service informer before starting pods;
        // so do we, boundedly.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.ctx.services.wait_until_ready())
            .await;
        let all: Vec<Service> = self
            .ctx
            .services
            .state()
            .iter()
            .map(|s| Service::clone(s))
            .collect();
        let links = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let service_env = switchboard_api::envvars::for_pod(&all, &self.namespace, links);
        let pod_ip = self.pod_ip().to_string();
        env::build(
            spec,
            &env::Inputs {
                pod: &self.pod,
                pod_ip: &pod_ip,
                host_ip: &self.ctx.host_ip,
                services: &service_env,
                objects: &objects,
                base: &self.ctx.config.base_env,
            },
        )
        .map_err(|e| e.to_string())
    }

    fn start_probes(&mut self, i: usize) {
        if self.containers[i].init {
            return;
        }
        let spec = self.containers[i].spec.clone();
        if let Some(p) = &spec.startup_probe {
            self.spawn_probe(i, Kind::Startup, p);
            self.containers[i].started = false;
        } else {
            self.containers[i].started = true;
            self.start_main_probes(i);
        }
    }

    /// Readiness and liveness, once the container has started.
    fn start_main_probes(&mut self, i: usize) {
        let spec = self.containers[i].spec.clone();
        if let Some(p) = &spec.readiness_probe {
            self.spawn_probe(i, Kind::Readiness, p);
        } else {
            self.containers[i].ready = true;
        }
        if let Some(p) = &spec.liveness_probe {
            self.spawn_probe(i, Kind::Liveness, p);
        }
    }

    fn spawn_probe(&mut self, i: usize, kind: Kind, p: &k8s_openapi::api::core::v1::Probe) {
        let timing = Timing::of(p);
        let c = &mut self.containers[i];
        c.trackers.insert(kind, Tracker::new(kind, &timing));
        let action = Action::of_probe(p);
        let target = Target {
            pod_ip: IpAddr::V4(self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED)),
            container: c.spec.clone(),
            env: c.env.clone(),
        };
        let (tx, generation) = (self.tx.clone(), c.generation);
        let handle = self
            .tasks
            .spawn(prober::worker(timing, action, target, move |result| {
                let msg = Msg::Probe {
                    c: i,
                    generation,
                    kind,
                    result,
                };
                tx.send(msg).is_ok()
            }));
        c.probe_tasks.push(handle);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Exited {
                c,
                generation,
                exit,
            } => {
                if self.containers[c].generation == generation {
                    self.exited(c, exit);
                }
            }
            Msg::Probe {
                c,
                generation,
                kind,
                result,
            } => {
                let ctr = &self.containers[c];
                if ctr.generation != generation || ctr.running_pgid().is_none() || self.terminating
                {
                    return;
                }
                self.probed(c, kind, result);
            }
        }
    }

    fn probed(&mut self, i: usize, kind: Kind, result: Result<(), String>) {
        let name = self.containers[i].spec.name.clone();
        let verdict = match &result {
            Ok(()) => {
                self.events.clear(Some(&name), "Unhealthy");
                Verdict::Success
            }
            Err(message) => {
                self.events.record(
                    Type::Warning,
                    Some(&name),
                    "Unhealthy",
                    format!("{} probe failed: {message}", kind.title()),
                );
                Verdict::Failure
            }
        };
        let Some(tracker) = self.containers[i].trackers.get_mut(&kind) else {
            return;
        };
        let Some(changed) = tracker.record(verdict) else {
            return;
        };
        match (kind, changed) {
            (Kind::Readiness, v) => {
                let c = &mut self.containers[i];
                c.ready = c.started && v == Verdict::Success;
            }
            (Kind::Startup, Verdict::Success) => {
                self.containers[i].started = true;
                self.start_main_probes(i);
            }
            (Kind::Liveness, Verdict::Success) => {}
            (Kind::Startup | Kind::Liveness, Verdict::Failure) => {
                let word = if kind == Kind::Startup {
                    "startup"
                } else {
                    "liveness"
                };
                self.events.record(
                    Type::Normal,
                    Some(&name),
                    "Killing",
                    format!("Container {name} failed {word} probe, will be restarted"),
                );
                let probe_grace = {
                    let spec = &self.containers[i].spec;
                    let p = if kind == Kind::Startup {
                        spec.startup_probe.as_ref()
                    } else {
                        spec.liveness_probe.as_ref()
                    };
                    p.and_then(|p| p.termination_grace_period_seconds)
                };
                let grace = probe_grace
                    .map(|s| Duration::from_secs(s.max(0) as u64))
                    .unwrap_or_else(|| self.grace());
                self.kill(i, grace);
            }
        }
    }

    /// SIGTERM now, SIGKILL after `grace` if the group is still there.
    fn kill(&mut self, i: usize, grace: Duration) {
        let c = &mut self.containers[i];
        let Some(pgid) = c.running_pgid() else {
            return;
        };
        c.stop_probes();
        c.ready = false;
        process::signal_group(pgid, Signal::SIGTERM);
        let handle = self.tasks.spawn(async move {
            tokio::time::sleep(grace).await;
            if process::group_alive(pgid) {
                process::signal_group(pgid, Signal::SIGKILL);
            }
        });
        if let Some(old) = c.killer.replace(handle) {
            old.abort();
        }
    }

    fn exited(&mut self, i: usize, exit: Exit) {
        let c = &mut self.containers[i];
        let CState::Running {
            pgid,
            started_at,
            since,
        } = c.state.clone()
        else {
            return;
        };
        c.stop_probes();
        if let Some(k) = c.killer.take() {
            k.abort();
        }
        c.ready = false;
        c.started = false;
        let name = c.spec.name.clone();
        let key = state::key(&self.uid, &name);
        self.ctx.state.update(|s| {
            s.processes.remove(&key);
        });
        let (exit_code, reason, message) = match exit {
            Exit::Code(0) => (0, "Completed", None),
            Exit::Code(code) => (code, "Error", None),
            Exit::Unknown => (
                137,
                "ContainerStatusUnknown",
                Some("The container exited while the agent was not its parent; its exit code is unknown".to_owned()),
            ),
        };
        let term = Term {
            exit_code,
            reason: reason.to_owned(),
            message,
            started_at: Some(started_at),
            finished_at: now(),
            pid: Some(pgid),
        };
        self.finished(i, term, since.elapsed());
    }

    /// An instance ended (or never started): restart it per policy.
    fn finished(&mut self, i: usize, term: Term, ran_for: Duration) {
        let init = self.containers[i].init;
        if init && term.exit_code == 0 && !self.terminating {
            let c = &mut self.containers[i];
            c.state = CState::Terminated(term);
            c.done = true;
            c.ready = true;
            self.advance_init();
            return;
        }
        // An init container that failed is retried unless the policy is
        // Never (then the pod fails); Always behaves as OnFailure for it.
        let restart = !self.terminating
            && match self.policy() {
                "Never" => false,
                "OnFailure" => term.exit_code != 0,
                _ => true,
            };
        let (pod, ns, uid) = (self.name.clone(), self.namespace.clone(), self.uid.clone());
        let c = &mut self.containers[i];
        if !restart {
            c.state = CState::Terminated(term);
            c.done = true;
            return;
        }
        let delay = c.backoff.next(ran_for);
        c.last = Some(term);
        c.restart_at = Some(Instant::now() + delay);
        let name = c.spec.name.clone();
        if delay.is_zero() {
            c.state = CState::Waiting {
                reason: "ContainerCreating".to_owned(),
                message: None,
            };
        } else {
            c.state = CState::Waiting {
                reason: "CrashLoopBackOff".to_owned(),
                message: Some(format!(
                    "back-off {} restarting failed container={name} pod={pod}_{ns}({uid})",
                    status::go_duration(delay)
                )),
            };
            self.events.record(
                Type::Warning,
                Some(&name),
                "BackOff",
                format!("Back-off restarting failed container {name} in pod {pod}_{ns}({uid})"),
            );
        }
    }

    /// An init container completed: start the next, or every container.
    fn advance_init(&mut self) {
        let now = Instant::now();
        if let Some(next) = self.containers.iter_mut().find(|c| c.init && !c.done) {
            next.restart_at = Some(now);
            return;
        }
        for c in self.containers.iter_mut().filter(|c| !c.init) {
            c.restart_at = Some(now);
            c.state = CState::Waiting {
                reason: "ContainerCreating".to_owned(),
                message: None,
            };
        }
    }

    /// Whether every init container completed.
    fn initialized(&self) -> bool {
        self.containers
            .iter()
            .filter(|c| c.init)
            .all(|c| matches!(&c.state, CState::Terminated(t) if t.exit_code == 0))
    }

    /// Whether an init container failed for good (policy Never).
    fn init_failed(&self) -> bool {
        self.containers
            .iter()
            .filter(|c| c.init)
            .any(|c| c.done && matches!(&c.state, CState::Terminated(t) if t.exit_code != 0))
    }

    /// Stops every running container: `preStop` (when `hooks`), SIGTERM,
    /// SIGKILL after `grace`; returns when all have exited.
    async fn stop_all(&mut self, grace: Duration, hooks: bool) {
        let deadline = Instant::now() + grace;
        for c in &mut self.containers {
            c.restart_at = None;
            c.stop_probes();
            c.ready = false;
        }
        if hooks {
            let mut hook_runs = Vec::new();
            for c in &self.containers {
                let Some(hook) = c.spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
                    continue;
                };
                if c.running_pgid().is_none() {
                    continue;
                }
                let action = Action::of_hook(hook);
                let target = Target {
                    pod_ip: self.pod_ip(),
                    container: c.spec.clone(),
                    env: c.env.clone(),
                };
                let name = c.spec.name.clone();
                hook_runs.push(async move {
                    let result = prober::run(&action, &target, grace).await;
                    (name, result)
                });
            }
            let results =
                tokio::time::timeout_at(deadline, futures::future::join_all(hook_runs)).await;
            for (name, result) in results.unwrap_or_default() {
                if let Err(message) = result {
                    self.events.record(
                        Type::Warning,
                        Some(&name),
                        "FailedPreStopHook",
                        format!("PreStopHook failed: {message}"),
                    );
                }
            }
        }
        let mut running = Vec::new();
        for c in &self.containers {
            if let Some(pgid) = c.running_pgid() {
                running.push(pgid);
                let name = c.spec.name.clone();
                self.events.record(
                    Type::Normal,
                    Some(&name),
                    "Killing",
                    format!("Stopping container {name}"),
                );
            }
        }
        for pgid in &running {
            process::signal_group(*pgid, Signal::SIGTERM);
        }
        let mut killed = false;
        let mut deadline = deadline;
        while self.containers.iter().any(|c| c.running_pgid().is_some()) {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(Msg::Exited { c, generation, exit }) => {
                        if self.containers[c].generation == generation {
                            self.exited(c, exit);
                        }
                    }
                    Some(Msg::Probe { .. }) => {}
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    if killed {
                        // Unkillable (or not reaped): report what we know.
                        for i in 0..self.containers.len() {
                            if self.containers[i].running_pgid().is_some() {
                                self.exited(i, Exit::Unknown);
                            }
                        }
                        break;
                    }
                    for c in &self.containers {
                        if let Some(pgid) = c.running_pgid() {
                            process::signal_group(pgid, Signal::SIGKILL);
                        }
                    }
                    killed = true;
                    deadline = Instant::now() + KILL_WAIT;
                }
            }
        }
        // Containers that never got to run will not now.
        for c in &mut self.containers {
            c.done = true;
        }
    }

    /// Graceful deletion: not ready at once (the endpoint turns
    /// terminating), stop the processes within the grace period, report the
    /// final status and remove the pod, as the kubelet does.
    async fn terminate(&mut self) {
        self.terminating = true;
        for c in &mut self.containers {
            c.ready = false;
        }
        self.write_status().await;
        let grace = self.grace();
        self.stop_all(grace, true).await;
        self.write_status().await;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        for attempt in 0..5u32 {
            match api.delete(&self.name, &params).await {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                Err(e) => {
                    tracing::warn!(pod = %self.name, error = %e, "cannot delete the pod; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }

    /// The pod is done here: forget it.
    fn cleanup(&mut self) {
        self.tasks.abort_all();
        let uid = self.uid.clone();
        self.ctx.state.update(|s| {
            s.processes.retain(|_, p| p.pod_uid != uid);
        });
        self.ctx.release_ip(&self.uid);
        self.ctx.logs.remove(&self.namespace, &self.name, &self.dir);
        self.gone.cancel();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "cannot remove the pod's logs");
        }
    }

    fn status(&mut self) -> Value {
        let terminal =
            self.terminating && self.containers.iter().all(|c| c.running_pgid().is_none());
        let observed: Vec<Observed> = self
            .containers
            .iter()
            .filter(|c| !c.init)
            .map(|c| match &c.state {
                CState::Waiting { .. } => Observed::Waiting {
                    restarting: c.last.is_some(),
                },
                CState::Running { .. } => Observed::Running,
                CState::Terminated(t) => Observed::Terminated {
                    exit_code: t.exit_code,
                },
            })
            .collect();
        let initialized = self.initialized();
        let phase = if self.init_failed() {
            "Failed"
        } else if !initialized {
            "Pending"
        } else {
            status::phase(self.policy(), &observed, terminal)
        };
        let unready: Vec<&str> = self
            .containers
            .iter()
            .filter(|c| !c.init && !c.ready)
            .map(|c| c.spec.name.as_str())
            .collect();
        let incomplete: Vec<&str> = self
            .containers
            .iter()
            .filter(|c| c.init && !matches!(&c.state, CState::Terminated(t) if t.exit_code == 0))
            .map(|c| c.spec.name.as_str())
            .collect();
        let containers_ready = unready.is_empty();
        let ready = containers_ready && !self.terminating;
        let now = now();
        let mut conditions = Vec::new();
        for (kind, ok) in [
            ("Initialized", initialized),
            ("Ready", ready),
            ("ContainersReady", containers_ready),
            ("PodScheduled", true),
        ] {
            let entry = self
                .conditions
                .entry(kind)
                .or_insert_with(|| (ok, now.clone()));
            if entry.0 != ok {
                *entry = (ok, now.clone());
            }
            let mut cond = json!({
                "type": kind,
                "status": if ok { "True" } else { "False" },
                "lastTransitionTime": entry.1,
            });
            if !ok {
                if kind == "Initialized" {
                    cond["reason"] = json!("ContainersNotInitialized");
                    cond["message"] = json!(format!(
                        "containers with incomplete status: [{}]",
                        incomplete.join(" ")
                    ));
                } else {
                    cond["reason"] = json!("ContainersNotReady");
                    cond["message"] = json!(format!(
                        "containers with unready status: [{}]",
                        unready.join(" ")
                    ));
                }
            }
            conditions.push(cond);
        }
        let mut statuses: Vec<Value> = Vec::new();
        let mut init_statuses: Vec<Value> = Vec::new();
        for c in &self.containers {
            let state = match &c.state {
                CState::Waiting { reason, message } => {
                    let mut w = json!({"reason": reason});
                    if let Some(m) = message {
                        w["message"] = json!(m);
                    }
                    json!({"waiting": w})
                }
                CState::Running { started_at, .. } => {
                    json!({"running": {"startedAt": started_at}})
                }
                CState::Terminated(t) => json!({"terminated": term_json(t)}),
            };
            let last = c
                .last
                .as_ref()
                .map_or_else(|| json!({}), |t| json!({"terminated": term_json(t)}));
            let pid = match &c.state {
                CState::Running { pgid, .. } => Some(*pgid),
                CState::Terminated(t) => t.pid,
                CState::Waiting { .. } => c.last.as_ref().and_then(|t| t.pid),
            };
            let mut s = json!({
                "name": c.spec.name,
                "image": c.spec.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": c.ready,
                "started": c.started && c.running_pgid().is_some(),
                "restartCount": c.restarts,
                "state": state,
                "lastState": last,
            });
            if let Some(pid) = pid {
                s["containerID"] = json!(format!("process://{pid}"));
            }
            if c.init {
                init_statuses.push(s);
            } else {
                statuses.push(s);
            }
        }
        let mut st = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.ctx.host_ip,
            "hostIPs": [{"ip": self.ctx.host_ip}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        });
        if !init_statuses.is_empty() {
            st["initContainerStatuses"] = json!(init_statuses);
        }
        if let Some(ip) = self.ip {
            st["podIP"] = json!(ip.to_string());
            st["podIPs"] = json!([{"ip": ip.to_string()}]);
        }
        st
    }

    /// Writes the status if it differs from the last one written.
    async fn write_status(&mut self) {
        let done: std::collections::HashSet<String> = self
            .containers
            .iter()
            .filter(|c| c.done && c.running_pgid().is_none())
            .map(|c| c.spec.name.clone())
            .collect();
        self.finished.send_if_modified(|f| {
            let changed = *f != done;
            *f = done;
            changed
        });
        let status = self.status();
        if self.written.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = json!({"status": status});
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.written = Some(status);
                self.write_failed = false;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // Gone: the watch will say so.
                self.written = Some(status);
                self.write_failed = false;
            }
            Err(e) => {
                tracing::warn!(pod = %self.name, error = %e, "cannot write the pod status");
                self.write_failed = true;
            }
        }
    }
}

fn term_json(t: &Term) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "finishedAt": t.finished_at,
    });
    if let Some(m) = &t.message {
        v["message"] = json!(m);
    }
    if let Some(s) = &t.started_at {
        v["startedAt"] = json!(s);
    }
    if let Some(pid) = t.pid {
        v["containerID"] = json!(format!("process://{pid}"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agnhost_runs_built_in() {
        let builtin = vec!["/bin/switchboard".to_owned(), "agnhost".to_owned()];
        let vars: BTreeMap<String, String> = [("PORT".to_owned(), "8080".to_owned())].into();
        let c = |v: serde_json::Value| -> Container {
            serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
        };
        let image = "registry.k8s.io/e2e-test-images/agnhost:2.52";
        let args_only = c(serde_json::json!({
            "name": "a", "image": image, "args": ["netexec", "--http-port=$(PORT)"]
        }));
        assert_eq!(
            argv(&args_only, &vars, &builtin),
            ["/bin/switchboard", "agnhost", "netexec", "--http-port=8080"]
        );
        let entrypoint = c(serde_json::json!({
            "name": "a", "image": image, "command": ["/agnhost", "serve-hostname"]
        }));
        assert_eq!(
            argv(&entrypoint, &vars, &builtin),
            ["/bin/switchboard", "agnhost", "serve-hostname"]
        );
        // Any other command runs as written, agnhost image or not.
        let shell = c(serde_json::json!({
            "name": "a", "image": image, "command": ["sh", "-c", "echo $(PORT)"]
        }));
        assert_eq!(argv(&shell, &vars, &builtin), ["sh", "-c", "echo 8080"]);
        let other = c(serde_json::json!({
            "name": "a", "image": "busybox", "command": ["/agnhost"]
        }));
        assert_eq!(argv(&other, &vars, &builtin), ["/agnhost"]);
    }

    #[test]
    fn agnhost_images() {
        for image in [
            "registry.k8s.io/e2e-test-images/agnhost:2.52",
            "agnhost",
            "agnhost:2.40",
            "localhost:5000/agnhost@sha256:abcd",
            "k8s.gcr.io/e2e-test-images/agnhost:2.32",
        ] {
            assert!(is_agnhost(image), "{image}");
        }
        for image in [
            "nginx",
            "registry.k8s.io/pause:3.9",
            "agnhost-fork:1",
            "busybox",
        ] {
            assert!(!is_agnhost(image), "{image}");
        }
    }
}
