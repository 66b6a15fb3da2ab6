//! The workload controllers' runtime: the Deployment and ReplicaSet
//! controllers, the scheduler, the node lifecycle controller and the
//! garbage collector, sharing one set of watches.
//!
//! As for the EndpointSlice controller ([`crate::controller`]): watch
//! events fill caches (reflector stores for Deployments, ReplicaSets and
//! Nodes; a compact [`PodView`] cache for Pods), each event enqueues the
//! keys it concerns on a deduplicating work queue per controller, and
//! workers run the pure planners ([`crate::replicaset`],
//! [`crate::deployment`], [`crate::scheduler`], [`crate::nodelifecycle`],
//! [`crate::gc`]) against the caches and write through the Kubernetes API.
//! Writes record expectations (`expect.rs`) so a sync never acts on a cache
//! that has not caught up with its own writes.

mod events;
mod expect;
mod pods;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use switchboard_api::labels::Selector;
use tokio::task::JoinSet;

use crate::controller::{Error, describe, drive, watcher};
use crate::ownership::controller_of;
use crate::podfeed::PodFeed;
use crate::podview::PodView;
use crate::queue::WorkQueue;
use crate::{deployment, gc, nodelifecycle, replicaset, scheduler};

use events::Recorder;
use expect::Expectations;
use pods::Pods;

/// Settings of the workload controllers (kube-controller-manager and
/// kube-scheduler flags of the same meaning in brackets).
#[derive(Debug, Clone)]
pub struct Config {
    /// Deployments and ReplicaSets each synced in parallel, 1..=50
    /// (`--concurrent-deployment-syncs`, `--concurrent-replicaset-syncs`,
    /// default 5).
    pub workers: usize,
    /// How long a node's agent may be silent before the node turns
    /// `Ready=Unknown` (`--node-monitor-grace-period`, default 40 s).
    pub node_grace: Duration,
    /// Pods naming this scheduler (or none) are scheduled here
    /// (`--scheduler-name`, default `default-scheduler`).
    pub scheduler_name: String,
    /// Where to count syncs and writes; `None` keeps them unregistered.
    pub metrics: Option<Metrics>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 5,
            node_grace: nodelifecycle::DEFAULT_GRACE,
            scheduler_name: scheduler::DEFAULT_SCHEDULER.to_owned(),
            metrics: None,
        }
    }
}

impl Config {
    /// Check the ranges.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=50).contains(&self.workers) {
            return Err(Error::InvalidConfig {
                field: "workloads.workers",
                reason: format!("must be between 1 and 50, got {}", self.workers),
            });
        }
        if self.node_grace.is_zero() {
            return Err(Error::InvalidConfig {
                field: "workloads.node_grace",
                reason: "must be positive".to_owned(),
            });
        }
        if self.scheduler_name.is_empty() {
            return Err(Error::InvalidConfig {
                field: "workloads.scheduler_name",
                reason: "must not be empty".to_owned(),
            });
        }
        Ok(())
    }
}

type SyncLabels = [(&'static str, &'static str); 2];

/// The workload controllers' Prometheus metrics. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    syncs: Family<SyncLabels, Counter>,
    writes: Family<SyncLabels, Counter>,
    schedule_attempts: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Metrics {
    /// New metrics registered in `registry` as
    /// `workload_controller_syncs_total{controller,result}`,
    /// `workload_controller_writes_total{kind,operation}` and
    /// `scheduler_schedule_attempts_total{result}` (Kubernetes' name).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.register(
            "workload_controller_syncs",
            "Syncs by controller (deployment, replicaset, scheduler, nodelifecycle, garbagecollector) and result",
            m.syncs.clone(),
        );
        registry.register(
            "workload_controller_writes",
            "API writes of the workload controllers by kind and operation",
            m.writes.clone(),
        );
        registry.register(
            "scheduler_schedule_attempts",
            "Scheduling attempts by result (scheduled, unschedulable, error)",
            m.schedule_attempts.clone(),
        );
        m
    }

    fn write(&self, kind: &'static str, operation: &'static str) {
        self.writes
            .get_or_create(&[("kind", kind), ("operation", operation)])
            .inc();
    }
}

/// A namespaced object's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    namespace: String,
    name: String,
}

impl Key {
    fn new(namespace: &str, name: &str) -> Key {
        Key {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn of<K: kube::Resource>(obj: &K) -> Key {
        Key::new(
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default(),
        )
    }

    fn of_pod(pod: &PodView) -> Key {
        Key::new(&pod.namespace, &pod.name)
    }

    fn object_ref<K: kube::Resource<DynamicType = ()>>(&self) -> ObjectRef<K> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

/// What the garbage collector looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Item {
    /// A Pod, as a dependent.
    Pod,
    /// A ReplicaSet, as a dependent.
    ReplicaSet,
    /// A Deployment being deleted with the orphan finalizer.
    OrphaningDeployment,
    /// A ReplicaSet being deleted with the orphan finalizer.
    OrphaningReplicaSet,
}

pub(crate) struct Shared {
    client: Client,
    scheduler_name: String,
    node_grace: Duration,
    deployments: Store<Deployment>,
    replicasets: Store<ReplicaSet>,
    nodes: Store<Node>,
    pods: Pods,
    deployment_queue: Arc<WorkQueue<Key>>,
    replicaset_queue: Arc<WorkQueue<Key>>,
    schedule_queue: Arc<WorkQueue<Key>>,
    node_queue: Arc<WorkQueue<String>>,
    gc_queue: Arc<WorkQueue<(Item, Key)>>,
    /// Writes of the ReplicaSet controller, per ReplicaSet (names of pods).
    pod_expectations: Expectations<Key>,
    /// Writes of the Deployment controller, per Deployment (names of
    /// ReplicaSets).
    rs_expectations: Expectations<Key>,
    /// Pods bound by the scheduler that the cache still shows unbound, and
    /// their node: counted in the scores so a burst spreads.
    assumed: Mutex<HashMap<Key, String>>,
    /// Pods no node fits; tried again when nodes change.
    unschedulable: Mutex<HashSet<Key>>,
    /// Last seen readiness of each node, to act on the transition.
    node_ready: Mutex<HashMap<String, bool>>,
    /// Nodes whose pods still have to be marked not ready (a write failed).
    nodes_to_mark: Mutex<HashSet<String>>,
    events: Recorder,
    metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning only means a panic while held; the data stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run the workload controllers until a task stops (which does not happen
/// while the process is healthy). Drop the future to stop them.
pub(crate) async fn run(client: Client, config: Config, pods: &PodFeed) -> Result<(), Error> {
    config.validate()?;
    let (deployments, deployments_w) = reflector::store::<Deployment>();
    let (replicasets, replicasets_w) = reflector::store::<ReplicaSet>();
    let (nodes, nodes_w) = reflector::store::<Node>();
    let shared = Arc::new(Shared {
        client: client.clone(),
        scheduler_name: config.scheduler_name.clone(),
        node_grace: config.node_grace,
        deployments,
        replicasets,
        nodes,
        pods: Pods::default(),
        deployment_queue: WorkQueue::new(),
        replicaset_queue: WorkQueue::new(),
        schedule_queue: WorkQueue::new(),
        node_queue: WorkQueue::new(),
        gc_queue: WorkQueue::new(),
        pod_expectations: Expectations::default(),
        rs_expectations: Expectations::default(),
        assumed: Mutex::default(),
        unschedulable: Mutex::default(),
        node_ready: Mutex::default(),
        nodes_to_mark: Mutex::default(),
        events: Recorder::new(client.clone()),
        metrics: config.metrics.clone().unwrap_or_default(),
    });

    let mut tasks: JoinSet<&'static str> = JoinSet::new();
    {
        let s = Arc::clone(&shared);
        let stream = watcher(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        );
        let mut w = deployments_w;
        tasks.spawn(async move {
            drive(stream, |ev| s.on_deployment(&mut w, ev)).await;
            "Deployment watch"
        });
    }
    {
        let s = Arc::clone(&shared);
        let stream = watcher(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        );
        let mut w = replicasets_w;
        tasks.spawn(async move {
            drive(stream, |ev| s.on_replicaset(&mut w, ev)).await;
            "ReplicaSet watch"
        });
    }
    {
        let s = Arc::clone(&shared);
        let stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default());
        let mut w = nodes_w;
        tasks.spawn(async move {
            drive(stream, |ev| s.on_node(&mut w, ev)).await;
            "Node watch"
        });
    }
    {
        let s = Arc::clone(&shared);
        pods.subscribe(move |ev| s.on_pod(ev));
    }

    // Acting on partial caches would e.g. create pods a ReplicaSet already
    // has; each cache's first InitDone enqueues what it holds.
    let ready = async {
        shared.deployments.wait_until_ready().await?;
        shared.replicasets.wait_until_ready().await?;
        shared.nodes.wait_until_ready().await?;
        shared.pods.wait_until_ready().await;
        Ok::<(), reflector::store::WriterDropped>(())
    };
    tokio::select! {
        r = ready => {
            if r.is_err() {
                return Err(Error::Stopped { what: "a workload watch ended before its first list".to_owned() });
            }
        }
        ended = tasks.join_next() => return Err(Error::Stopped { what: describe(ended) }),
    }
    tracing::info!(
        workers = config.workers,
        "workload controllers caches synced"
    );

    for _ in 0..config.workers {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            let q = Arc::clone(&s.replicaset_queue);
            sync::work(&q, &s.metrics, "replicaset", |k| s.sync_replicaset(k)).await;
            "replicaset worker"
        });
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            let q = Arc::clone(&s.deployment_queue);
            sync::work(&q, &s.metrics, "deployment", |k| s.sync_deployment(k)).await;
            "deployment worker"
        });
    }
    // One scheduler worker: each decision sees the bindings before it.
    {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            let q = Arc::clone(&s.schedule_queue);
            sync::work(&q, &s.metrics, "scheduler", |k| s.schedule(k)).await;
            "scheduler worker"
        });
    }
    {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            let q = Arc::clone(&s.node_queue);
            sync::work(&q, &s.metrics, "nodelifecycle", |k| s.sync_node(k)).await;
            "node lifecycle worker"
        });
    }
    for _ in 0..2 {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            let q = Arc::clone(&s.gc_queue);
            sync::work(&q, &s.metrics, "garbagecollector", |k| s.collect(k)).await;
            "garbage collector worker"
        });
    }
    let ended = tasks.join_next().await;
    Err(Error::Stopped {
        what: describe(ended),
    })
}

/// Selector of a ReplicaSet or Deployment, if usable.
fn selector(
    ls: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Option<Selector> {
    replicaset::selector_of(ls?).ok()
}

impl Shared {
    // ---- watch event handlers: apply to the cache first, then enqueue.

    fn on_pod(&self, ev: &Event<Arc<PodView>>) {
        match ev {
            Event::Apply(view) => {
                let old = self.pods.insert(view.clone());
                if old.as_deref() == Some(&**view) {
                    return;
                }
                self.route_pod(old.as_deref(), Some(view));
            }
            Event::Delete(view) => {
                let old = self.pods.remove(&view.namespace, &view.name);
                self.route_pod(old.as_deref().or(Some(view)), None);
            }
            Event::Init => self.pods.relist_begin(),
            Event::InitApply(view) => self.pods.relist_add(view.clone()),
            Event::InitDone => {
                for pod in self.pods.relist_done() {
                    self.route_pod(None, Some(&pod));
                }
                lock(&self.assumed).clear();
            }
        }
    }

    /// Enqueue what a pod change concerns: its ReplicaSet (or, for an
    /// orphan, those that may adopt it), its scheduling, its owners' check.
    fn route_pod(&self, old: Option<&PodView>, new: Option<&PodView>) {
        for pod in old.iter().chain(new.iter()) {
            match pod.controller() {
                Some(c) if c.kind == replicaset::KIND => {
                    self.replicaset_queue.add(Key::new(&pod.namespace, &c.name));
                }
                Some(_) => {}
                None => self.enqueue_adopters_of_pod(pod),
            }
        }
        match new {
            Some(pod) => {
                let key = Key::of_pod(pod);
                if pod.node_name.is_some() || !pod.is_active() {
                    lock(&self.assumed).remove(&key);
                    lock(&self.unschedulable).remove(&key);
                }
                if scheduler::wants_scheduling(pod, &self.scheduler_name) {
                    self.schedule_queue.add(key.clone());
                }
                let owners_changed = old.is_none_or(|o| o.owners != pod.owners);
                if !pod.owners.is_empty() && owners_changed {
                    self.gc_queue.add((Item::Pod, key));
                }
            }
            None => {
                if let Some(pod) = old {
                    let key = Key::of_pod(pod);
                    lock(&self.assumed).remove(&key);
                    lock(&self.unschedulable).remove(&key);
                }
            }
        }
    }

    fn enqueue_adopters_of_pod(&self, pod: &PodView) {
        if pod.deleting {
            return;
        }
        for rs in self.replicasets.state() {
            if rs.metadata.namespace.as_deref() != Some(&*pod.namespace) {
                continue;
            }
            let sel = selector(rs.spec.as_ref().map(|s| &s.selector));
            if sel.is_some_and(|s| s.matches(&pod.labels)) {
                self.replicaset_queue.add(Key::of(rs.as_ref()));
            }
        }
    }

    fn on_replicaset(&self, w: &mut Writer<ReplicaSet>, ev: Event<ReplicaSet>) {
        match &ev {
            Event::Apply(rs) => {
                let old = self.replicasets.get(&ObjectRef::from_obj(rs));
                w.apply_watcher_event(&ev);
                let key = Key::of(rs);
                self.replicaset_queue.add(key.clone());
                for r in old.as_deref().into_iter().chain([rs]) {
                    self.route_replicaset(r);
                }
                if rs
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|o| !o.is_empty())
                {
                    self.gc_queue.add((Item::ReplicaSet, key.clone()));
                }
                if gc::orphaning(&rs.metadata) {
                    self.gc_queue.add((Item::OrphaningReplicaSet, key));
                }
            }
            Event::Delete(rs) => {
                w.apply_watcher_event(&ev);
                let key = Key::of(rs);
                self.replicaset_queue.add(key.clone());
                self.route_replicaset(rs);
                // Its pods may now have no owner left.
                if let Some(uid) = rs.metadata.uid.as_deref() {
                    for pod in self.pods.owned_by(uid) {
                        self.gc_queue.add((Item::Pod, Key::of_pod(&pod)));
                    }
                }
            }
            Event::Init | Event::InitApply(_) => w.apply_watcher_event(&ev),
            Event::InitDone => {
                w.apply_watcher_event(&ev);
                for rs in self.replicasets.state() {
                    let key = Key::of(rs.as_ref());
                    self.replicaset_queue.add(key.clone());
                    self.route_replicaset(&rs);
                    if rs
                        .metadata
                        .owner_references
                        .as_ref()
                        .is_some_and(|o| !o.is_empty())
                    {
                        self.gc_queue.add((Item::ReplicaSet, key));
                    }
                }
            }
        }
    }

    /// Enqueue the Deployment a ReplicaSet belongs to, or those that may
    /// adopt it.
    fn route_replicaset(&self, rs: &ReplicaSet) {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        match controller_of(rs.metadata.owner_references.as_deref().unwrap_or(&[])) {
            Some(c) if c.kind == deployment::KIND => {
                self.deployment_queue.add(Key::new(ns, &c.name));
            }
            Some(_) => {}
            None => {
                if rs.metadata.deletion_timestamp.is_some() {
                    return;
                }
                let labels = rs.metadata.labels.clone().unwrap_or_default();
                for d in self.deployments.state() {
                    if d.metadata.namespace.as_deref() != Some(ns) {
                        continue;
                    }
                    let sel = selector(d.spec.as_ref().map(|s| &s.selector));
                    if sel.is_some_and(|s| s.matches(&labels)) {
                        self.deployment_queue.add(Key::of(d.as_ref()));
                    }
                }
            }
        }
    }

    fn on_deployment(&self, w: &mut Writer<Deployment>, ev: Event<Deployment>) {
        match &ev {
            Event::Apply(d) => {
                w.apply_watcher_event(&ev);
                let key = Key::of(d);
                self.deployment_queue.add(key.clone());
                if gc::orphaning(&d.metadata) {
                    self.gc_queue.add((Item::OrphaningDeployment, key));
                }
            }
            Event::Delete(d) => {
                w.apply_watcher_event(&ev);
                let key = Key::of(d);
                self.rs_expectations.forget(&key);
                // Its ReplicaSets may now have no owner left.
                let uid = d.metadata.uid.as_deref().unwrap_or_default();
                for rs in self.replicasets.state() {
                    let owned = rs
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid);
                    if owned {
                        self.gc_queue.add((Item::ReplicaSet, Key::of(rs.as_ref())));
                    }
                }
            }
            Event::Init | Event::InitApply(_) => w.apply_watcher_event(&ev),
            Event::InitDone => {
                w.apply_watcher_event(&ev);
                for d in self.deployments.state() {
                    self.deployment_queue.add(Key::of(d.as_ref()));
                }
            }
        }
    }

    fn on_node(&self, w: &mut Writer<Node>, ev: Event<Node>) {
        match &ev {
            Event::Apply(node) => {
                let old = self.nodes.get(&ObjectRef::from_obj(node));
                w.apply_watcher_event(&ev);
                let name = node.metadata.name.clone().unwrap_or_default();
                self.node_queue.add(name);
                // Heartbeats change nothing a placement depends on.
                if old
                    .as_deref()
                    .is_none_or(|o| placement_facts(o) != placement_facts(node))
                {
                    self.retry_unschedulable();
                }
            }
            Event::Delete(node) => {
                w.apply_watcher_event(&ev);
                let name = node.metadata.name.clone().unwrap_or_default();
                lock(&self.node_ready).remove(&name);
                lock(&self.nodes_to_mark).remove(&name);
            }
            Event::Init | Event::InitApply(_) => w.apply_watcher_event(&ev),
            Event::InitDone => {
                w.apply_watcher_event(&ev);
                for node in self.nodes.state() {
                    self.node_queue
                        .add(node.metadata.name.clone().unwrap_or_default());
                }
                self.retry_unschedulable();
            }
        }
    }

    fn retry_unschedulable(&self) {
        let keys: Vec<Key> = lock(&self.unschedulable).iter().cloned().collect();
        for key in keys {
            self.schedule_queue.add(key);
        }
    }
}

/// What of a node the scheduler's decision depends on.
fn placement_facts(node: &Node) -> (Option<String>, String, bool) {
    let spec = node.spec.as_ref();
    (
        serde_json::to_string(&node.metadata.labels).ok(),
        serde_json::to_string(&spec.and_then(|s| s.taints.as_ref())).unwrap_or_default(),
        nodelifecycle::is_ready(node) && spec.and_then(|s| s.unschedulable) != Some(true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_ranges() {
        assert!(Config::default().validate().is_ok());
        let bad = Config {
            workers: 0,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        let bad = Config {
            node_grace: Duration::ZERO,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }
}
