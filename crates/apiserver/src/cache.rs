//! The watch cache: every object of every served type held in memory,
//! already serialized, fed by one watch on the store.
//!
//! Lists are served from here and each change is serialized once and fanned
//! out to every watcher through a broadcast channel, so N watchers cost one
//! store watch, not N. A bounded per-type history lets a watch resume from
//! an older `resourceVersion`; older than that is `410 Gone`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use switchboard_api::intern::intern;
use switchboard_api::{LabelSet, ResourceType};
use switchboard_store::{EventKind, KeyValue, Revision, Store};
use tokio::sync::{broadcast, watch};

use crate::object;
use crate::pack::{Packed, Packer};

/// One object as the cache holds it.
#[derive(Debug)]
pub struct Cached {
    /// Storage key.
    pub key: String,
    /// Namespace, for namespaced types ([interned](switchboard_api::intern)).
    pub namespace: Option<Arc<str>>,
    /// Name.
    pub name: String,
    /// Labels, for label selectors.
    pub labels: LabelSet,
    /// Values of the selectable fields of this kind beside name and
    /// namespace (interned: `spec.nodeName`, `status.phase` repeat).
    pub fields: Box<[(&'static str, Arc<str>)]>,
    /// The object's JSON with `metadata.resourceVersion` set, packed
    /// ([`crate::pack`]).
    pub json: Packed,
    /// The revision of the last change to this object.
    pub rv: Revision,
    /// `metadata.deletionTimestamp` as Unix seconds, if the object is being deleted.
    pub deletion: Option<i64>,
}

impl Cached {
    /// The value of a selectable field, for field selectors.
    pub fn field(&self, path: &str) -> Option<&str> {
        match path {
            "metadata.name" => Some(&self.name),
            "metadata.namespace" => Some(self.namespace.as_deref().unwrap_or("")),
            _ => self
                .fields
                .iter()
                .find(|(f, _)| *f == path)
                .map(|(_, v)| &**v),
        }
    }

    /// Builds the cached form of a stored value; `rv` is the revision to
    /// show. `packer` is the one of the value's type.
    pub fn from_stored(
        rt: &ResourceType,
        key: &str,
        value: &[u8],
        rv: Revision,
        packer: &Packer,
    ) -> Option<Cached> {
        let mut obj: Value = serde_json::from_slice(value).ok()?;
        object::set_resource_version(&mut obj, rv);
        let meta = obj.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)?
            .to_string();
        let namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .map(intern)
            .filter(|_| rt.namespaced);
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|l| {
                LabelSet::from_pairs(
                    l.iter()
                        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))),
                )
            })
            .unwrap_or_default();
        let deletion = meta
            .and_then(|m| m.get("deletionTimestamp"))
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second());
        let fields = switchboard_api::fields::supported_fields(rt.kind)
            .iter()
            .filter(|f| !f.starts_with("metadata."))
            .filter_map(|f| Some((*f, intern(&switchboard_api::fields::json_field(&obj, f)?))))
            .collect();
        let json = packer.pack(&serde_json::to_vec(&obj).ok()?);
        Some(Cached {
            key: key.to_string(),
            namespace,
            name,
            labels,
            fields,
            json,
            rv,
            deletion,
        })
    }
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A new object.
    Added,
    /// A changed object.
    Modified,
    /// A deleted object (carries its last state).
    Deleted,
}

impl EventType {
    /// The Kubernetes wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug)]
pub struct CacheEvent {
    /// What happened.
    pub kind: EventType,
    /// The object after the change (its last state for a delete).
    pub obj: Arc<Cached>,
    /// The object before the change, so filtered watches can tell when an
    /// object stops or starts matching.
    pub prev: Option<Arc<Cached>>,
}

impl CacheEvent {
    /// The revision of the change.
    pub fn rv(&self) -> Revision {
        self.obj.rv
    }
}

/// Why a watch cannot start where it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// The revision is older than the history kept (the caller answers 410).
    TooOld {
        /// The oldest revision a watch can resume from.
        oldest: Revision,
    },
}

/// How much history each type keeps: the oldest events are dropped when
/// either limit is exceeded (at least one event always stays).
#[derive(Debug, Clone, Copy)]
pub struct History {
    /// Most events.
    pub events: usize,
    /// Most bytes of packed objects ([`crate::pack`]) referenced by the
    /// events (an object version shared by two events is counted twice: a
    /// bound, not an exact figure).
    pub bytes: usize,
}

impl CacheEvent {
    fn weight(&self) -> usize {
        self.obj.json.packed_len() + self.prev.as_ref().map_or(0, |p| p.json.packed_len())
    }
}

struct TypeState {
    objects: BTreeMap<String, Arc<Cached>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Sum of [`CacheEvent::weight`] over `history`.
    history_bytes: usize,
    /// Every event of this type after this revision is in `history`.
    oldest: Revision,
}

/// The cache of one resource type.
pub struct TypeCache {
    rt: &'static ResourceType,
    state: RwLock<TypeState>,
    tx: broadcast::Sender<Arc<CacheEvent>>,
    limits: History,
    packer: Packer,
}

/// What a new watch starts from: the events it must replay, and the live feed.
pub struct Subscription {
    /// Events after the requested revision, oldest first.
    pub backlog: Vec<Arc<CacheEvent>>,
    /// Live events after the backlog.
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
}

impl TypeCache {
    fn new(rt: &'static ResourceType, limits: History, start: Revision) -> Self {
        // The broadcast buffer bounds how far a slow watcher may fall behind
        // before it is closed (it then resumes from its last revision).
        let (tx, _) = broadcast::channel(limits.events.max(1024));
        Self {
            rt,
            state: RwLock::new(TypeState {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_bytes: 0,
                oldest: start,
            }),
            tx,
            limits,
            packer: Packer::default(),
        }
    }

    /// The resource type cached here.
    pub fn resource(&self) -> &'static ResourceType {
        self.rt
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, TypeState> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way readers could misread, so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, TypeState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Objects whose key starts with `prefix` (the type's prefix, or a
    /// namespace within it), in key order, after `start_after` if given.
    pub fn list(&self, prefix: &str, start_after: Option<&str>) -> Vec<Arc<Cached>> {
        let state = self.read();
        let lower = match start_after {
            Some(k) if k >= prefix => std::ops::Bound::Excluded(k.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        state
            .objects
            .range((lower, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Number of objects cached.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a watch at `after`: `None` means "now" with the current objects
    /// replayed as `ADDED` (the Kubernetes semantics of a watch without a
    /// resourceVersion, or with `0`).
    pub fn subscribe(&self, after: Option<Revision>) -> Result<Subscription, StartError> {
        let state = self.read();
        // Subscribing under the lock that publication takes for writing means
        // no event falls between the backlog and the live feed.
        let live = self.tx.subscribe();
        let backlog = match after {
            None => state
                .objects
                .values()
                .map(|o| {
                    Arc::new(CacheEvent {
                        kind: EventType::Added,
                        obj: o.clone(),
                        prev: None,
                    })
                })
                .collect(),
            Some(rv) if rv < state.oldest => {
                return Err(StartError::TooOld {
                    oldest: state.oldest,
                });
            }
            Some(rv) => {
                let skip = state.history.partition_point(|e| e.rv() <= rv);
                state.history.iter().skip(skip).cloned().collect()
            }
        };
        Ok(Subscription { backlog, live })
    }

    fn publish(&self, state: &mut TypeState, event: CacheEvent) {
        let event = Arc::new(event);
        state.history_bytes += event.weight();
        state.history.push_back(event.clone());
        while state.history.len() > 1
            && (state.history.len() > self.limits.events || state.history_bytes > self.limits.bytes)
            && let Some(dropped) = state.history.pop_front()
        {
            state.history_bytes -= dropped.weight();
            state.oldest = dropped.rv();
        }
        // No receivers is fine: nobody is watching this type right now.
        let _ = self.tx.send(event);
    }

    fn apply(&self, kind: EventKind, obj: Cached) {
        let mut state = self.write();
        let obj = Arc::new(obj);
        let event = match kind {
            EventKind::Put => {
                let prev = state.objects.insert(obj.key.clone(), obj.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CacheEvent { kind, obj, prev }
            }
            EventKind::Delete => {
                let prev = state.objects.remove(&obj.key);
                CacheEvent {
                    kind: EventType::Deleted,
                    obj,
                    prev,
                }
            }
        };
        self.publish(&mut state, event);
    }

    /// Replaces the whole content after the store watch broke: publishes the
    /// difference as events at `rv`, so watchers stay consistent.
    fn resync(&self, fresh: BTreeMap<String, Arc<Cached>>, rv: Revision) {
        let mut state = self.write();
        let old = std::mem::take(&mut state.objects);
        for (key, obj) in &old {
            if !fresh.contains_key(key) {
                let gone = Arc::new(Cached {
                    key: obj.key.clone(),
                    namespace: obj.namespace.clone(),
                    name: obj.name.clone(),
                    labels: obj.labels.clone(),
                    fields: obj.fields.clone(),
                    json: obj.json.clone(),
                    rv,
                    deletion: obj.deletion,
                });
                self.publish(
                    &mut state,
                    CacheEvent {
                        kind: EventType::Deleted,
                        obj: gone,
                        prev: Some(obj.clone()),
                    },
                );
            }
        }
        for (key, obj) in &fresh {
            match old.get(key) {
                Some(prev) if prev.rv == obj.rv => {}
                Some(prev) => self.publish(
                    &mut state,
                    CacheEvent {
                        kind: EventType::Modified,
                        obj: obj.clone(),
                        prev: Some(prev.clone()),
                    },
                ),
                None => self.publish(
                    &mut state,
                    CacheEvent {
                        kind: EventType::Added,
                        obj: obj.clone(),
                        prev: None,
                    },
                ),
            }
        }
        state.objects = fresh;
    }
}

/// The cache of every served type.
pub struct WatchCache {
    types: HashMap<&'static str, Arc<TypeCache>>,
    /// The store revision the cache has caught up with.
    rv: watch::Sender<Revision>,
}

impl WatchCache {
    /// Loads every object from `store` and starts following its changes.
    pub async fn start(
        store: Arc<dyn Store>,
        history: History,
    ) -> Result<Arc<WatchCache>, switchboard_store::Error> {
        let list = store.list("/registry/").await?;
        let types = switchboard_api::RESOURCES
            .iter()
            .map(|rt| {
                (
                    rt.kind,
                    Arc::new(TypeCache::new(rt, history, list.revision)),
                )
            })
            .collect();
        let (rv, _) = watch::channel(list.revision);
        let cache = Arc::new(WatchCache { types, rv });
        for (rt, objects) in cache.load(&list.kvs) {
            cache.types[rt.kind].write().objects = objects;
        }
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(store, list.revision).await });
        Ok(cache)
    }

    /// The cache of `rt`.
    pub fn of(&self, rt: &ResourceType) -> &Arc<TypeCache> {
        // `types` has an entry for every element of RESOURCES, and every
        // ResourceType handed around comes from RESOURCES.
        &self.types[rt.kind]
    }

    /// The revision the cache has caught up with.
    pub fn revision(&self) -> Revision {
        *self.rv.borrow()
    }

    /// Waits until the cache has caught up with `rv`; false on timeout.
    pub async fn wait_for(&self, rv: Revision, timeout: Duration) -> bool {
        let mut rx = self.rv.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|seen| *seen >= rv))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn type_of_key(&self, key: &str) -> Option<&'static ResourceType> {
        // Longest prefix wins, though no served prefix is a prefix of another.
        switchboard_api::RESOURCES
            .iter()
            .find(|rt| key.starts_with(&rt.key_prefix()))
    }

    fn load(
        &self,
        kvs: &[KeyValue],
    ) -> HashMap<&'static ResourceType, BTreeMap<String, Arc<Cached>>> {
        let mut out: HashMap<&'static ResourceType, BTreeMap<String, Arc<Cached>>> = HashMap::new();
        for rt in switchboard_api::RESOURCES {
            out.insert(rt, BTreeMap::new());
        }
        for kv in kvs {
            let Some(rt) = self.type_of_key(&kv.key) else {
                continue;
            };
            let packer = &self.types[rt.kind].packer;
            match Cached::from_stored(rt, &kv.key, &kv.value, kv.mod_revision, packer) {
                Some(obj) => {
                    out.entry(rt)
                        .or_default()
                        .insert(kv.key.clone(), Arc::new(obj));
                }
                None => {
                    tracing::warn!(key = %kv.key, "stored object is not valid JSON; not served")
                }
            }
        }
        out
    }

    async fn follow(self: Arc<Self>, store: Arc<dyn Store>, mut after: Revision) {
        loop {
            match store.watch("/registry/", after).await {
                Ok(mut events) => {
                    while let Some(event) = events.next().await {
                        let event = match event {
                            Ok(e) => e,
                            Err(err) => {
                                tracing::warn!(%err, "store watch ended; resynchronising the watch cache");
                                break;
                            }
                        };
                        let rv = event.revision();
                        if let Some(rt) = self.type_of_key(&event.kv.key) {
                            let packer = &self.types[rt.kind].packer;
                            match Cached::from_stored(
                                rt,
                                &event.kv.key,
                                &event.kv.value,
                                rv,
                                packer,
                            ) {
                                Some(obj) => self.types[rt.kind].apply(event.kind, obj),
                                None => {
                                    tracing::warn!(key = %event.kv.key, "stored object is not valid JSON; not served")
                                }
                            }
                        }
                        after = rv;
                        self.rv.send_replace(rv);
                    }
                }
                Err(err) => tracing::warn!(%err, "cannot watch the store; resynchronising"),
            }
            // The watch broke (lagged, compacted or failed): relist and
            // publish the difference, then follow again from the list.
            match store.list("/registry/").await {
                Ok(list) => {
                    for (rt, objects) in self.load(&list.kvs) {
                        self.types[rt.kind].resync(objects, list.revision);
                    }
                    after = list.revision;
                    self.rv.send_replace(list.revision);
                }
                Err(err) => {
                    tracing::error!(%err, "cannot list the store; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
