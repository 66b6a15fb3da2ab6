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
    /// Storage key (the type's map shares this allocation; the name is its
    /// last segment).
    pub key: Arc<str>,
    /// Namespace, for namespaced types ([interned](switchboard_api::intern)).
    pub namespace: Option<Arc<str>>,
    /// Labels, for label selectors.
    pub labels: LabelSet,
    /// Values of the selectable fields of this kind beside name and
    /// namespace.
    pub fields: FieldValues,
    /// The object's JSON with `metadata.resourceVersion` set, packed
    /// ([`crate::pack`]).
    pub json: Packed,
    /// The revision of the last change to this object.
    pub rv: Revision,
    /// `metadata.deletionTimestamp` as Unix seconds, if the object is being deleted.
    pub deletion: Option<i64>,
}

impl Cached {
    /// `metadata.name`: the key's last segment (a name holds no `/`, and
    /// `from_stored` keeps only objects whose key ends in their name).
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or_default()
    }

    /// The value of a selectable field, for field selectors; `rt` is the
    /// object's type.
    pub fn field(&self, rt: &ResourceType, path: &str) -> Option<&str> {
        match path {
            "metadata.name" => Some(self.name()),
            "metadata.namespace" => Some(self.namespace.as_deref().unwrap_or("")),
            _ => self.fields.get(rt, path),
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
        let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str)?;
        if key.rsplit('/').next() != Some(name) {
            // The registry writes every object under its own name; a value
            // that says otherwise is not one of its objects.
            return None;
        }
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
        let fields = FieldValues::of(rt, &obj);
        let json = packer.pack(&serde_json::to_vec(&obj).ok()?);
        Some(Cached {
            key: Arc::from(key),
            namespace,
            labels,
            fields,
            json,
            rv,
            deletion,
        })
    }
}

/// The values of an object's selectable fields (beside name and namespace)
/// in one allocation: for each field present, its index in
/// [`switchboard_api::fields::supported_fields`] (one byte), its length (two
/// bytes, little-endian) and its bytes.
///
/// A pod has eight such fields; as a slice of (name, interned value) pairs
/// they took 256 bytes per cached version, and each pod IP an interned
/// string of its own. Packed they take about 80. A value longer than 64 KiB
/// (none of these fields holds one) counts as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldValues(Box<[u8]>);

impl FieldValues {
    /// The values of `obj`, an object of type `rt`.
    pub fn of(rt: &ResourceType, obj: &Value) -> FieldValues {
        let mut out = Vec::new();
        for (i, f) in switchboard_api::fields::supported_fields(rt.kind)
            .iter()
            .enumerate()
        {
            if f.starts_with("metadata.") {
                continue;
            }
            let Some(value) = switchboard_api::fields::json_field(obj, f) else {
                continue;
            };
            let (Ok(index), Ok(len)) = (u8::try_from(i), u16::try_from(value.len())) else {
                continue;
            };
            out.push(index);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        FieldValues(out.into_boxed_slice())
    }

    /// The value of `path` for an object of type `rt`, if present.
    pub fn get(&self, rt: &ResourceType, path: &str) -> Option<&str> {
        let want = switchboard_api::fields::supported_fields(rt.kind)
            .iter()
            .position(|f| *f == path)?;
        let mut rest: &[u8] = &self.0;
        while let [index, l0, l1, tail @ ..] = rest {
            let len = usize::from(u16::from_le_bytes([*l0, *l1]));
            let (value, after) = tail.split_at_checked(len)?;
            if usize::from(*index) == want {
                // Written from a `str` by `of`, whole.
                return std::str::from_utf8(value).ok();
            }
            rest = after;
        }
        None
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
    objects: BTreeMap<Arc<str>, Arc<Cached>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Sum of [`CacheEvent::weight`] over `history`.
    history_bytes: usize,
    /// Every event of this type after this revision is in `history`.
    oldest: Revision,
}

/// Events a type's broadcast buffer holds for watchers that are behind.
pub const BROADCAST_SLOTS: usize = 512;

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
    live: broadcast::Receiver<Arc<CacheEvent>>,
    /// Events taken from the history after falling behind, still to hand out.
    replay: VecDeque<Arc<CacheEvent>>,
    /// The revision of the last event handed out (or accounted for by the
    /// backlog): the next one is after it.
    at: Revision,
}

impl Subscription {
    /// The next event after the backlog, in revision order; `None` when the
    /// feed ends: the cache is gone, or the subscriber fell so far behind
    /// that the history no longer holds what it missed (its client then
    /// resumes from its last revision, or relists on 410).
    ///
    /// The broadcast buffer is only the fast path: a subscriber that falls
    /// behind it catches up from the history of `cache`, the type cache it
    /// came from. Cancel-safe: nothing is lost when the future is dropped.
    pub async fn next(&mut self, cache: &TypeCache) -> Option<Arc<CacheEvent>> {
        loop {
            if let Some(event) = self.replay.pop_front() {
                self.at = event.rv();
                return Some(event);
            }
            match self.live.recv().await {
                Ok(event) => {
                    self.at = event.rv();
                    return Some(event);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let fresh = cache.subscribe(Some(self.at)).ok()?;
                    // The backlog is every event after `at` up to where the
                    // new live feed starts; `at` moves on as they go out.
                    self.live = fresh.live;
                    self.replay = fresh.backlog.into();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Whether no event is waiting to be handed out right now.
    pub fn is_idle(&self) -> bool {
        self.replay.is_empty() && self.live.is_empty()
    }
}

impl TypeCache {
    fn new(rt: &'static ResourceType, limits: History, start: Revision) -> Self {
        // The broadcast buffer is only the fast path: a watcher that falls
        // further behind resumes from the history (`subscribe` at its last
        // revision). Sized like the history, every type would hold 16k slots
        // and keep that many superseded objects alive past the history's
        // byte limit.
        let (tx, _) = broadcast::channel(BROADCAST_SLOTS);
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
            Some(k) if k >= prefix => std::ops::Bound::Excluded(k),
            _ => std::ops::Bound::Included(prefix),
        };
        state
            .objects
            .range::<str, _>((lower, std::ops::Bound::Unbounded))
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
        let at = state.history.back().map_or(state.oldest, |e| e.rv());
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
        Ok(Subscription {
            backlog,
            live,
            replay: VecDeque::new(),
            at,
        })
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
    fn resync(&self, fresh: BTreeMap<Arc<str>, Arc<Cached>>, rv: Revision) {
        let mut state = self.write();
        let old = std::mem::take(&mut state.objects);
        for (key, obj) in &old {
            if !fresh.contains_key(key) {
                let gone = Arc::new(Cached {
                    key: obj.key.clone(),
                    namespace: obj.namespace.clone(),
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
    ) -> HashMap<&'static ResourceType, BTreeMap<Arc<str>, Arc<Cached>>> {
        let mut out: HashMap<&'static ResourceType, BTreeMap<Arc<str>, Arc<Cached>>> =
            HashMap::new();
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
                        .insert(obj.key.clone(), Arc::new(obj));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config_maps() -> &'static ResourceType {
        switchboard_api::RESOURCES
            .iter()
            .find(|rt| rt.kind == "ConfigMap")
            .expect("ConfigMaps are served")
    }

    fn put(cache: &TypeCache, i: i64) {
        let json = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c{i}","namespace":"default"}},"data":{{"v":"{i}"}}}}"#
        );
        let key = format!("/registry/configmaps/default/c{i}");
        let obj = Cached::from_stored(cache.rt, &key, json.as_bytes(), i, &cache.packer)
            .expect("a valid object");
        cache.apply(EventKind::Put, obj);
    }

    #[test]
    fn field_values_come_back_as_the_json_has_them() {
        let pods = ResourceType::lookup("pods").expect("Pods are served");
        let pod = serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIP": "127.244.0.7", "podIPs": [{"ip": "127.244.0.7"}]}
        });
        let fields = FieldValues::of(pods, &pod);
        for (path, want) in [
            ("spec.nodeName", Some("node-1")),
            ("spec.restartPolicy", Some("Always")),
            ("spec.hostNetwork", Some("false")),
            ("status.phase", Some("Running")),
            ("status.podIP", Some("127.244.0.7")),
            ("status.podIPs", Some("127.244.0.7")),
            ("spec.schedulerName", None),
            ("status.nominatedNodeName", None),
            ("no.such.field", None),
        ] {
            assert_eq!(fields.get(pods, path), want, "{path}");
        }
        let bytes = serde_json::to_vec(&pod).expect("serializes");
        let cached =
            Cached::from_stored(pods, "/registry/pods/ns/p", &bytes, 3, &Packer::default())
                .expect("a valid pod");
        assert_eq!(cached.field(pods, "metadata.name"), Some("p"));
        assert_eq!(cached.field(pods, "metadata.namespace"), Some("ns"));
        assert_eq!(cached.field(pods, "spec.nodeName"), Some("node-1"));
        // A value under another object's key is not served.
        assert!(
            Cached::from_stored(pods, "/registry/pods/ns/q", &bytes, 3, &Packer::default())
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_subscriber_behind_the_broadcast_buffer_catches_up_from_the_history() {
        let limits = History {
            events: 10_000,
            bytes: 64 << 20,
        };
        let cache = TypeCache::new(config_maps(), limits, 0);
        let mut sub = cache.subscribe(Some(0)).expect("at the start");
        let n = (BROADCAST_SLOTS * 3) as i64;
        for i in 1..=n {
            put(&cache, i);
        }
        // Nothing was received while the events went out, so the receiver
        // has lagged; every event still arrives, once, in order.
        for i in 1..=n {
            let event = sub.next(&cache).await.expect("the feed goes on");
            assert_eq!(event.rv(), i);
        }
        assert!(sub.is_idle());
        put(&cache, n + 1);
        let event = sub.next(&cache).await.expect("the live feed again");
        assert_eq!(event.rv(), n + 1);
    }

    #[tokio::test]
    async fn a_subscriber_behind_the_whole_history_is_ended() {
        let limits = History {
            events: 10,
            bytes: 64 << 20,
        };
        let cache = TypeCache::new(config_maps(), limits, 0);
        let mut sub = cache.subscribe(Some(0)).expect("at the start");
        for i in 1..=(BROADCAST_SLOTS * 2) as i64 {
            put(&cache, i);
        }
        assert!(sub.next(&cache).await.is_none());
    }
}
