//! The EndpointSlice + Endpoints controller runtime: kube-runtime watchers;
//! stores that keep Services, managed EndpointSlices and Endpoints as
//! compact JSON ([`crate::jsonstore`]) and a compact namespace-indexed cache
//! for Pods ([`crate::podcache`]); a deduplicating work queue keyed by
//! Service; workers that run the pure reconcilers and write through the
//! Kubernetes API.
//!
//! Why not `kube::runtime::Controller`: its applier drops a request whose
//! object is gone from the store, so a deleted Service would never be
//! reconciled; Kubernetes relies on the garbage collector there, which our
//! apiserver does not have. With our own queue a deletion is an ordinary
//! sync of an absent Service, serialised with every other sync of that key.
//!
//! Stale caches: right after a write, the store may not yet show
//! it, and reconciling against it would e.g. create a duplicate slice.
//! Like Kubernetes' `EndpointSliceTracker`, each write records an
//! expectation (this name at least at this resourceVersion, or gone) that
//! the watch event satisfies; a Service with unmet expectations is not
//! synced — the awaited event enqueues it again. Expectations expire after
//! [`EXPECTATION_TIMEOUT`] so a lost event cannot stall a Service.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::endpoints::{self, Write};
use crate::endpointslice::{
    self, CONTROLLER_NAME, DEFAULT_MAX_ENDPOINTS_PER_SLICE, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
    MAX_ENDPOINTS_PER_SLICE_LIMIT,
};
use crate::index::Owned;
use crate::jsonstore::JsonStore;
use crate::podcache::PodCache;
use crate::podfeed::PodFeed;
use crate::podutil;
use crate::podview::PodView;
use crate::queue::WorkQueue;

/// How long an unmet write expectation holds back a Service's sync.
pub const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Controller settings (Kubernetes' kube-controller-manager flags of the
/// same meaning in brackets).
#[derive(Debug, Clone)]
pub struct Config {
    /// Most endpoints in one slice, 1..=1000 (`--max-endpoints-per-slice`,
    /// default 100).
    pub max_endpoints_per_slice: usize,
    /// Delay before a pod-triggered sync, to batch pod changes
    /// (`--endpointslice-updates-batch-period`). Default zero: each change
    /// is written within milliseconds. Service changes are never delayed.
    pub batch_period: Duration,
    /// Services synced in parallel, 1..=50
    /// (`--concurrent-service-endpoint-syncs`, default 5). One Service is
    /// never synced by two workers at once.
    pub workers: usize,
    /// Where to count syncs; `None` keeps the counters unregistered.
    pub metrics: Option<Metrics>,
    /// The workload controllers (Deployments, ReplicaSets, the scheduler,
    /// node lifecycle, the garbage collector), run alongside when set; see
    /// [`crate::workloads`]. Default `None`: the EndpointSlice controller
    /// alone.
    pub workloads: Option<crate::workloads::Config>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_endpoints_per_slice: DEFAULT_MAX_ENDPOINTS_PER_SLICE,
            batch_period: Duration::ZERO,
            workers: 5,
            metrics: None,
            workloads: None,
        }
    }
}

impl Config {
    /// Check the ranges Kubernetes enforces for the same flags.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=MAX_ENDPOINTS_PER_SLICE_LIMIT).contains(&self.max_endpoints_per_slice) {
            return Err(Error::InvalidConfig {
                field: "max_endpoints_per_slice",
                reason: format!(
                    "must be between 1 and {MAX_ENDPOINTS_PER_SLICE_LIMIT}, got {}",
                    self.max_endpoints_per_slice
                ),
            });
        }
        if !(1..=50).contains(&self.workers) {
            return Err(Error::InvalidConfig {
                field: "workers",
                reason: format!("must be between 1 and 50, got {}", self.workers),
            });
        }
        if let Some(w) = &self.workloads {
            w.validate()?;
        }
        Ok(())
    }
}

/// Errors that stop the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A [`Config`] value is out of range.
    #[error("invalid controller config: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A watch or worker task ended; the controller cannot continue.
    #[error("controller task stopped: {what}")]
    Stopped {
        /// Which task.
        what: String,
    },
}

type ResultLabel = [(&'static str, &'static str); 1];
type WriteLabels = [(&'static str, &'static str); 2];

/// The controller's Prometheus metrics. Cheap to clone (shared counters).
#[derive(Debug, Clone)]
pub struct Metrics {
    syncs: Family<ResultLabel, Counter>,
    sync_duration: Histogram,
    writes: Family<WriteLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            syncs: Family::default(),
            // 0.5 ms .. ~16 s.
            sync_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            writes: Family::default(),
        }
    }
}

impl Metrics {
    /// New metrics registered in `registry` as
    /// `endpointslice_controller_syncs_total{result}`,
    /// `endpointslice_controller_sync_duration_seconds` and
    /// `endpointslice_controller_writes_total{kind,operation}`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.register(
            "endpointslice_controller_syncs",
            "Service syncs by result (success, error, deferred)",
            m.syncs.clone(),
        );
        registry.register(
            "endpointslice_controller_sync_duration_seconds",
            "Duration of one Service sync, including API writes",
            m.sync_duration.clone(),
        );
        registry.register(
            "endpointslice_controller_writes",
            "API writes by kind (EndpointSlice, Endpoints) and operation",
            m.writes.clone(),
        );
        m
    }

    fn write(&self, kind: &'static str, operation: &'static str) {
        self.writes
            .get_or_create(&[("kind", kind), ("operation", operation)])
            .inc();
    }
}

/// Run the controller (and the workload controllers when
/// [`Config::workloads`] is set) until a task stops (which does not happen
/// while the process is healthy; watch errors are retried with backoff).
/// Drop the future to stop it.
pub async fn run(client: Client, mut config: Config) -> Result<(), Error> {
    config.validate()?;
    // Both controllers' pod caches are fed by one watch; it starts once
    // each has subscribed.
    let pods = PodFeed::default();
    let stopped = || Error::Stopped {
        what: "Pod watch".to_owned(),
    };
    match config.workloads.take() {
        None => tokio::select! {
            r = run_endpointslices(client.clone(), config, &pods) => r,
            () = pods.run(client, 1) => Err(stopped()),
        },
        Some(workloads) => tokio::select! {
            r = run_endpointslices(client.clone(), config, &pods) => r,
            r = crate::workloads::run(client.clone(), workloads, &pods) => r,
            () = pods.run(client, 2) => Err(stopped()),
        },
    }
}

async fn run_endpointslices(client: Client, config: Config, pods: &PodFeed) -> Result<(), Error> {
    let metrics = config.metrics.clone().unwrap_or_default();

    let shared = Arc::new(Shared {
        client: client.clone(),
        max_per_slice: config.max_endpoints_per_slice,
        batch_period: config.batch_period,
        services: JsonStore::default(),
        pods: PodCache::default(),
        owned: Mutex::default(),
        slices: JsonStore::default(),
        endpoints: JsonStore::default(),
        queue: WorkQueue::new(),
        expectations: Mutex::new(HashMap::new()),
        tombstones: Mutex::new(HashSet::new()),
        metrics,
    });

    let mut tasks: JoinSet<&'static str> = JoinSet::new();
    let managed = format!("{LABEL_MANAGED_BY}={CONTROLLER_NAME}");
    {
        let s = Arc::clone(&shared);
        let stream = watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        );
        tasks.spawn(async move {
            drive(stream, |ev| s.on_service(ev)).await;
            "Service watch"
        });
    }
    {
        let s = Arc::clone(&shared);
        pods.subscribe(move |ev| s.on_pod(ev));
    }
    {
        let s = Arc::clone(&shared);
        let wc = watcher::Config::default().labels(&managed);
        let stream = watcher(Api::<EndpointSlice>::all(client.clone()), wc);
        tasks.spawn(async move {
            drive(stream, |ev| s.on_slice(ev)).await;
            "EndpointSlice watch"
        });
    }
    {
        let s = Arc::clone(&shared);
        let stream = watcher(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
        );
        tasks.spawn(async move {
            drive(stream, |ev| s.on_endpoints(ev)).await;
            "Endpoints watch"
        });
    }

    // Syncing before every cache is complete would delete slices of pods
    // not listed yet. Each store's initial InitDone enqueues what it knows.
    let ready = async {
        shared.services.wait_until_ready().await;
        shared.pods.wait_until_ready().await;
        shared.slices.wait_until_ready().await;
        shared.endpoints.wait_until_ready().await;
    };
    tokio::select! {
        () = ready => {}
        ended = tasks.join_next() => {
            return Err(Error::Stopped { what: describe(ended) });
        }
    }
    tracing::info!(
        workers = config.workers,
        "endpointslice controller caches synced"
    );

    for _ in 0..config.workers {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            s.work().await;
            "worker"
        });
    }
    let ended = tasks.join_next().await;
    Err(Error::Stopped {
        what: describe(ended),
    })
}

pub(crate) fn describe(ended: Option<Result<&'static str, tokio::task::JoinError>>) -> String {
    match ended {
        Some(Ok(what)) => what.to_owned(),
        Some(Err(e)) => format!("task failed: {e}"),
        None => "no tasks".to_owned(),
    }
}

pub(crate) fn watcher<K>(
    api: Api<K>,
    wc: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, wc).default_backoff()
}

/// Feed watch events to `handle`, which applies them to its store itself
/// (so it can look at the previous object first) and enqueues work.
pub(crate) async fn drive<K, S, F>(stream: S, mut handle: F)
where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
    F: FnMut(Event<K>),
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => handle(ev),
            Err(e) => tracing::warn!(error = %e, "watch failed; retrying with backoff"),
        }
    }
}

/// A Service's namespace and name: the unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    name: String,
}

impl From<(String, String)> for Key {
    fn from((namespace, name): (String, String)) -> Self {
        Key { namespace, name }
    }
}

impl Key {
    fn of<K: kube::Resource>(obj: &K) -> Self {
        Key {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }

    fn of_slice(slice: &EndpointSlice) -> Option<Self> {
        let name = slice.metadata.labels.as_ref()?.get(LABEL_SERVICE_NAME)?;
        Some(Key {
            namespace: slice.metadata.namespace.clone().unwrap_or_default(),
            name: name.clone(),
        })
    }

    fn pair(&self) -> crate::index::ServiceKey {
        (self.namespace.clone(), self.name.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Slice,
    Endpoints,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// The object at this resourceVersion or later.
    Version(String),
    /// The object gone.
    Gone,
}

#[derive(Debug, Clone)]
struct Expectation {
    kind: Kind,
    name: String,
    want: Want,
    deadline: Instant,
}

/// `seen` is at least `want`. resourceVersions are etcd revisions on a
/// Kubernetes apiserver; when they do not parse as numbers only equality
/// counts (the timeout covers the rest).
pub(crate) fn version_reached(seen: &str, want: &str) -> bool {
    seen == want || matches!((seen.parse::<u64>(), want.parse::<u64>()), (Ok(s), Ok(w)) if s >= w)
}

/// Outcome of one sync.
enum Outcome {
    Synced,
    /// Unmet expectations; look again after this long at the latest.
    Deferred(Duration),
}

struct Shared {
    client: Client,
    max_per_slice: usize,
    batch_period: Duration,
    services: JsonStore<Service>,
    pods: PodCache,
    /// Slice names by Service, for syncs.
    owned: Mutex<Owned>,
    slices: JsonStore<EndpointSlice>,
    endpoints: JsonStore<Endpoints>,
    queue: Arc<WorkQueue<Key>>,
    expectations: Mutex<HashMap<Key, Vec<Expectation>>>,
    /// Services seen deleted whose Endpoints object is still to delete.
    tombstones: Mutex<HashSet<Key>>,
    metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning only means a panic while held; the data stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    // ---- watch event handlers: apply to the store first, then enqueue, so
    // a worker that picks the key up sees the new state.

    fn on_service(&self, ev: Event<Service>) {
        match &ev {
            Event::Apply(svc) => {
                self.services.apply(&ev);
                let key = Key::of(svc);
                self.pods
                    .set_selector(key.pair(), podutil::selector_of(svc));
                lock(&self.tombstones).remove(&key);
                self.queue.add(key);
            }
            Event::Delete(svc) => {
                self.services.apply(&ev);
                let key = Key::of(svc);
                self.pods.remove_selector(&key.pair());
                lock(&self.tombstones).insert(key.clone());
                self.queue.add(key);
            }
            Event::Init | Event::InitApply(_) => self.services.apply(&ev),
            Event::InitDone => {
                // A relist: Services that vanished meanwhile were deleted
                // without an event.
                let before: HashSet<Key> =
                    self.services.keys().into_iter().map(Key::from).collect();
                self.services.apply(&ev);
                let services = self.services.all();
                self.pods.reset_selectors(
                    services
                        .iter()
                        .map(|svc| (Key::of(svc).pair(), podutil::selector_of(svc))),
                );
                let after: HashSet<Key> = services.iter().map(Key::of).collect();
                {
                    let mut tomb = lock(&self.tombstones);
                    for gone in before.difference(&after) {
                        tomb.insert(gone.clone());
                    }
                }
                for key in before.into_iter().chain(after) {
                    self.queue.add(key);
                }
            }
        }
    }

    fn on_pod(&self, ev: &Event<Arc<PodView>>) {
        let concerned = match ev {
            Event::Apply(pod) => {
                let (old, concerned) = self.pods.insert(pod.clone());
                if old.as_deref().map(|o| &o.info) == Some(&pod.info) {
                    // Nothing an endpoint shows changed (Kubernetes
                    // `podEndpointsChanged`): a status-only update.
                    return;
                }
                concerned
            }
            Event::Delete(pod) => self.pods.remove(&pod.namespace, &pod.name).1,
            Event::Init => return self.pods.relist_begin(),
            Event::InitApply(pod) => return self.pods.relist_add(pod.clone()),
            Event::InitDone => {
                self.pods.relist_done();
                return self.enqueue_all_services();
            }
        };
        for (namespace, name) in concerned {
            // The queue folds a key added twice into one sync.
            self.queue
                .add_after(Key { namespace, name }, self.batch_period);
        }
    }

    fn on_slice(&self, ev: Event<EndpointSlice>) {
        match &ev {
            Event::Apply(slice) | Event::Delete(slice) => {
                self.slices.apply(&ev);
                let (ns, name) = (
                    slice.metadata.namespace.as_deref().unwrap_or_default(),
                    slice.metadata.name.as_deref().unwrap_or_default(),
                );
                match ev {
                    Event::Delete(_) => lock(&self.owned).remove(ns, name),
                    _ => lock(&self.owned).set(ns, name, Key::of_slice(slice).map(|k| k.pair())),
                }
                let Some(key) = Key::of_slice(slice) else {
                    return;
                };
                self.observe(&key, Kind::Slice, slice, matches!(ev, Event::Delete(_)));
                self.queue.add(key);
            }
            Event::Init | Event::InitApply(_) => self.slices.apply(&ev),
            Event::InitDone => {
                self.slices.apply(&ev);
                // The store is authoritative again.
                self.clear_expectations(Kind::Slice);
                let slices = self.slices.all();
                let mut owned = lock(&self.owned);
                owned.clear();
                for slice in slices {
                    let key = Key::of_slice(&slice);
                    owned.set(
                        slice.metadata.namespace.as_deref().unwrap_or_default(),
                        slice.metadata.name.as_deref().unwrap_or_default(),
                        key.as_ref().map(Key::pair),
                    );
                    if let Some(key) = key {
                        self.queue.add(key);
                    }
                }
                drop(owned);
                self.enqueue_all_services();
            }
        }
    }

    fn on_endpoints(&self, ev: Event<Endpoints>) {
        match &ev {
            Event::Apply(e) | Event::Delete(e) => {
                self.endpoints.apply(&ev);
                let key = Key::of(e);
                self.observe(&key, Kind::Endpoints, e, matches!(ev, Event::Delete(_)));
                self.queue.add(key);
            }
            Event::Init | Event::InitApply(_) => self.endpoints.apply(&ev),
            Event::InitDone => {
                self.endpoints.apply(&ev);
                self.clear_expectations(Kind::Endpoints);
                self.enqueue_all_services();
            }
        }
    }

    fn enqueue_all_services(&self) {
        for key in self.services.keys() {
            self.queue.add(Key::from(key));
        }
    }

    // ---- expectations

    /// A watch event for an object we may have written.
    fn observe<K: kube::Resource>(&self, key: &Key, kind: Kind, obj: &K, deleted: bool) {
        let name = obj.meta().name.as_deref().unwrap_or_default();
        let rv = obj.meta().resource_version.as_deref().unwrap_or_default();
        let mut exp = lock(&self.expectations);
        let Some(list) = exp.get_mut(key) else {
            return;
        };
        list.retain(|e| {
            if e.kind != kind || e.name != name {
                return true;
            }
            let met = deleted
                || match &e.want {
                    Want::Version(v) => version_reached(rv, v),
                    Want::Gone => false,
                };
            !met
        });
        if list.is_empty() {
            exp.remove(key);
        }
    }

    fn clear_expectations(&self, kind: Kind) {
        let mut exp = lock(&self.expectations);
        exp.retain(|_, list| {
            list.retain(|e| e.kind != kind);
            !list.is_empty()
        });
    }

    /// Record that the store must show `name` (of `kind`) in the state
    /// `want` before the Service is synced again. Checked against the store
    /// under the lock: the event handler applies to the store before it
    /// takes the lock, so either we see the new state here or the handler
    /// sees our expectation.
    fn expect(&self, key: &Key, kind: Kind, name: &str, want: Want) {
        let mut exp = lock(&self.expectations);
        let current: Option<String> = match kind {
            Kind::Slice => self.slices.resource_version(&key.namespace, name),
            Kind::Endpoints => self.endpoints.resource_version(&key.namespace, name),
        };
        let met = match (&want, current) {
            (Want::Version(v), Some(seen)) => version_reached(&seen, v),
            (Want::Version(_), None) => false,
            (Want::Gone, current) => current.is_none(),
        };
        if !met {
            exp.entry(key.clone()).or_default().push(Expectation {
                kind,
                name: name.to_owned(),
                want,
                deadline: Instant::now() + EXPECTATION_TIMEOUT,
            });
        }
    }

    /// Time until the earliest unmet expectation of `key` expires, if any
    /// is unmet; expired ones are dropped.
    fn pending(&self, key: &Key) -> Option<Duration> {
        let now = Instant::now();
        let mut exp = lock(&self.expectations);
        let list = exp.get_mut(key)?;
        list.retain(|e| e.deadline > now);
        let earliest = list.iter().map(|e| e.deadline).min();
        if list.is_empty() {
            exp.remove(key);
        }
        earliest.map(|d| d - now)
    }

    // ---- workers

    async fn work(&self) {
        loop {
            let key = self.queue.next().await;
            let started = Instant::now();
            let result = self.sync(&key).await;
            self.metrics
                .sync_duration
                .observe(started.elapsed().as_secs_f64());
            self.queue.done(&key);
            let label = match result {
                Ok(Outcome::Synced) => {
                    self.queue.forget(&key);
                    "success"
                }
                Ok(Outcome::Deferred(wait)) => {
                    self.queue.add_after(key, wait);
                    "deferred"
                }
                Err(e) => {
                    tracing::warn!(namespace = %key.namespace, service = %key.name, error = %e, "endpoints sync failed; retrying");
                    self.queue.add_with_backoff(key);
                    "error"
                }
            };
            self.metrics.syncs.get_or_create(&[("result", label)]).inc();
        }
    }

    async fn sync(&self, key: &Key) -> Result<Outcome, kube::Error> {
        if let Some(wait) = self.pending(key) {
            return Ok(Outcome::Deferred(wait));
        }
        let slice_api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        let endpoints_api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let names = lock(&self.owned).of(&key.pair());
        let existing: Vec<EndpointSlice> = names
            .iter()
            .filter_map(|name| self.slices.get(&key.namespace, name))
            .collect();

        let Some(service) = self.services.get(&key.namespace, &key.name) else {
            // Deleted: our apiserver has no garbage collector, so remove
            // what the owner references would have cascaded to.
            for slice in &existing {
                self.delete_slice(&slice_api, key, slice).await?;
            }
            if lock(&self.tombstones).contains(key) {
                match endpoints_api
                    .delete(&key.name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => self.metrics.write("Endpoints", "delete"),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
                lock(&self.tombstones).remove(key);
            }
            return Ok(Outcome::Synced);
        };

        let pods = self.pods.selected_by(&key.pair());

        let plan = endpointslice::reconcile(&service, &pods, &existing, self.max_per_slice);
        // Creates, then updates, then deletes: endpoints that move between
        // slices are never missing in between.
        let pp = PostParams::default();
        for slice in &plan.create {
            let made = slice_api.create(&pp, slice).await?;
            self.metrics.write("EndpointSlice", "create");
            self.expect_written(key, Kind::Slice, &made.metadata);
        }
        for slice in &plan.update {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            let made = slice_api.replace(name, &pp, slice).await?;
            self.metrics.write("EndpointSlice", "update");
            self.expect_written(key, Kind::Slice, &made.metadata);
        }
        for slice in &plan.delete {
            self.delete_slice(&slice_api, key, slice).await?;
        }

        if let Some(desired) = endpoints::endpoints_for(&service, &pods) {
            let current = self.endpoints.get(&key.namespace, &key.name);
            match endpoints::plan_write(current.as_ref(), desired) {
                Write::Unchanged => {}
                Write::Create(e) => {
                    let made = endpoints_api.create(&pp, &e).await?;
                    self.metrics.write("Endpoints", "create");
                    self.expect_written(key, Kind::Endpoints, &made.metadata);
                }
                Write::Replace(e) => {
                    let made = endpoints_api.replace(&key.name, &pp, &e).await?;
                    self.metrics.write("Endpoints", "update");
                    self.expect_written(key, Kind::Endpoints, &made.metadata);
                }
            }
        }
        Ok(Outcome::Synced)
    }

    fn expect_written(
        &self,
        key: &Key,
        kind: Kind,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) {
        if let (Some(name), Some(rv)) = (meta.name.as_deref(), meta.resource_version.as_deref()) {
            self.expect(key, kind, name, Want::Version(rv.to_owned()));
        }
    }

    async fn delete_slice(
        &self,
        api: &Api<EndpointSlice>,
        key: &Key,
        slice: &EndpointSlice,
    ) -> Result<(), kube::Error> {
        let Some(name) = slice.metadata.name.as_deref() else {
            return Ok(());
        };
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.metrics.write("EndpointSlice", "delete");
                self.expect(key, Kind::Slice, name, Want::Gone);
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podutil::PodInfo;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn config_ranges_follow_kubernetes() {
        assert!(Config::default().validate().is_ok());
        for bad in [0, 1001] {
            let c = Config {
                max_endpoints_per_slice: bad,
                ..Config::default()
            };
            assert!(matches!(
                c.validate(),
                Err(Error::InvalidConfig {
                    field: "max_endpoints_per_slice",
                    ..
                })
            ));
        }
        let c = Config {
            workers: 0,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "workers",
                ..
            })
        ));
        let c = Config {
            max_endpoints_per_slice: 1000,
            workers: 50,
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn resource_versions_compare_numerically() {
        assert!(version_reached("10", "9"));
        assert!(version_reached("10", "10"));
        assert!(!version_reached("9", "10"));
        assert!(version_reached("abc", "abc"));
        assert!(!version_reached("abd", "abc"));
    }

    #[test]
    fn metrics_encode_after_registration() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.syncs.get_or_create(&[("result", "success")]).inc();
        m.write("EndpointSlice", "create");
        m.sync_duration.observe(0.002);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("encoding into a String cannot fail");
        assert!(
            out.contains("endpointslice_controller_syncs_total{result=\"success\"} 1"),
            "{out}"
        );
        assert!(out.contains("endpointslice_controller_writes_total{kind=\"EndpointSlice\",operation=\"create\"} 1"), "{out}");
        assert!(
            out.contains("endpointslice_controller_sync_duration_seconds_count 1"),
            "{out}"
        );
    }

    #[test]
    fn status_only_pod_changes_do_not_trigger() {
        let mut old = Pod::default();
        old.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
        let mut new = old.clone();
        new.metadata.resource_version = Some("2".to_owned());
        new.status = Some(k8s_openapi::api::core::v1::PodStatus {
            start_time: None,
            message: Some("pulled the image".to_owned()),
            ..Default::default()
        });
        assert_eq!(PodInfo::from(&old), PodInfo::from(&new));
        new.metadata.labels = Some([("app".to_owned(), "db".to_owned())].into());
        assert_ne!(PodInfo::from(&old), PodInfo::from(&new));
    }
}
