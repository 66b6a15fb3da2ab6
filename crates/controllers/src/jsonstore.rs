//! A reflector store that keeps each object as compact JSON, compressed
//! ([`switchboard_api::pack`]), rather than as the typed value, for the
//! kinds a controller holds one of per Service (Services, EndpointSlices,
//! Endpoints) but reads only a few of per sync.
//!
//! A typed `k8s_openapi` object lays out every optional field inline and
//! keeps its labels in a `BTreeMap` (whose smallest node is about half a
//! kilobyte): an EndpointSlice of five endpoints costs about 3 KB typed and
//! 1 KB as JSON; packed against another slice as the dictionary, about a
//! tenth of that. A sync unpacks and decodes the handful of objects it looks
//! at, which costs microseconds next to its API writes.
//!
//! It applies watcher events as kube-runtime's reflector `Writer` does:
//! objects listed between `Init` and `InitDone` replace the contents at
//! once at `InitDone`, so readers never see half a list.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::runtime::watcher::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_api::pack::{Packed, Packer};
use tokio::sync::watch;

/// Namespace and name.
type Key = (Box<str>, Box<str>);

struct Entry {
    resource_version: Box<str>,
    json: Packed,
}

#[derive(Default)]
struct State {
    objects: HashMap<Key, Entry>,
    /// The list in progress, between `Init` and `InitDone`.
    relist: Option<HashMap<Key, Entry>>,
}

/// See the module docs.
pub(crate) struct JsonStore<K> {
    state: RwLock<State>,
    packer: Packer,
    ready: watch::Sender<bool>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Default for JsonStore<K> {
    fn default() -> Self {
        JsonStore {
            state: RwLock::default(),
            packer: Packer::default(),
            ready: watch::channel(false).0,
            kind: PhantomData,
        }
    }
}

fn key_of<K: kube::Resource>(obj: &K) -> Key {
    let meta = obj.meta();
    (
        Box::from(meta.namespace.as_deref().unwrap_or_default()),
        Box::from(meta.name.as_deref().unwrap_or_default()),
    )
}

fn entry_of<K: kube::Resource + Serialize>(obj: &K, packer: &Packer) -> Option<Entry> {
    let json = match serde_json::to_vec(obj) {
        Ok(json) => json,
        Err(e) => {
            // A typed object always serializes; should one not, the store
            // treats it as absent and the next sync recreates what it needs.
            tracing::warn!(error = %e, "cannot encode a watched object; not stored");
            return None;
        }
    };
    Some(Entry {
        resource_version: Box::from(obj.meta().resource_version.as_deref().unwrap_or_default()),
        json: packer.pack(&json),
    })
}

impl<K> JsonStore<K>
where
    K: kube::Resource + Serialize + DeserializeOwned,
{
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while held cannot leave the map half-updated in a way
        // readers care about: each update is one insert or remove.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one watcher event.
    pub(crate) fn apply(&self, ev: &Event<K>) {
        match ev {
            Event::Apply(obj) => {
                let key = key_of(obj);
                let entry = entry_of(obj, &self.packer);
                let mut st = self.write();
                match entry {
                    Some(entry) => st.objects.insert(key, entry),
                    None => st.objects.remove(&key),
                };
            }
            Event::Delete(obj) => {
                self.write().objects.remove(&key_of(obj));
            }
            Event::Init => self.write().relist = Some(HashMap::new()),
            Event::InitApply(obj) => {
                let entry = entry_of(obj, &self.packer);
                let mut st = self.write();
                if let (Some(buf), Some(entry)) = (st.relist.as_mut(), entry) {
                    buf.insert(key_of(obj), entry);
                }
            }
            Event::InitDone => {
                let mut st = self.write();
                if let Some(mut listed) = st.relist.take() {
                    listed.shrink_to_fit();
                    st.objects = listed;
                }
                drop(st);
                self.ready.send_replace(true);
            }
        }
    }

    /// Resolves once the first list is complete.
    pub(crate) async fn wait_until_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives in `self`, so the wait can only end by the flag.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// The object `namespace/name`, decoded.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<K> {
        let st = self.read();
        let json = st
            .objects
            .get(&(Box::from(namespace), Box::from(name)))?
            .json
            .to_vec();
        drop(st);
        decode(&json)
    }

    /// The stored `metadata.resourceVersion` of `namespace/name`.
    pub(crate) fn resource_version(&self, namespace: &str, name: &str) -> Option<String> {
        let st = self.read();
        let entry = st.objects.get(&(Box::from(namespace), Box::from(name)))?;
        Some(entry.resource_version.to_string())
    }

    /// Namespace and name of every object.
    pub(crate) fn keys(&self) -> Vec<(String, String)> {
        self.read()
            .objects
            .keys()
            .map(|(ns, name)| (ns.to_string(), name.to_string()))
            .collect()
    }

    /// Every object, decoded (after a relist).
    pub(crate) fn all(&self) -> Vec<K> {
        self.read()
            .objects
            .values()
            .filter_map(|e| decode(&e.json.to_vec()))
            .collect()
    }
}

#[cfg(test)]
impl<K> JsonStore<K> {
    /// Bytes held for the objects' JSON, and the JSON's length.
    fn held_and_raw(&self) -> (usize, usize) {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.objects.values().fold((0, 0), |(held, raw), e| {
            (held + e.json.packed_len(), raw + e.json.len())
        })
    }
}

fn decode<K: DeserializeOwned>(json: &[u8]) -> Option<K> {
    match serde_json::from_slice(json) {
        Ok(obj) => Some(obj),
        Err(e) => {
            tracing::warn!(error = %e, "cannot decode a stored object");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(name: &str, rv: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn applies_events_like_a_reflector() {
        let store = JsonStore::<Service>::default();
        store.apply(&Event::Init);
        store.apply(&Event::InitApply(svc("a", "1")));
        // Half a list is not visible.
        assert!(store.get("default", "a").is_none());
        store.apply(&Event::InitDone);
        assert_eq!(store.get("default", "a"), Some(svc("a", "1")));
        store.apply(&Event::Apply(svc("a", "2")));
        store.apply(&Event::Apply(svc("b", "3")));
        assert_eq!(store.resource_version("default", "a").as_deref(), Some("2"));
        assert_eq!(store.keys().len(), 2);
        store.apply(&Event::Delete(svc("a", "2")));
        assert!(store.get("default", "a").is_none());
        // A relist replaces everything.
        store.apply(&Event::Init);
        store.apply(&Event::InitApply(svc("c", "4")));
        store.apply(&Event::InitDone);
        let names: Vec<_> = store
            .all()
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        assert_eq!(names, ["c"]);
    }

    #[test]
    fn similar_objects_are_held_packed_and_come_back_whole() {
        let store = JsonStore::<Service>::default();
        let full = |i: usize| {
            let mut s = svc(&format!("svc-{i}"), &i.to_string());
            s.metadata.labels = Some(
                [
                    ("app".to_owned(), format!("svc-{i}")),
                    ("bench".to_owned(), "switchboard".to_owned()),
                ]
                .into(),
            );
            s.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
                selector: Some([("app".to_owned(), format!("svc-{i}"))].into()),
                cluster_ip: Some(format!("10.96.{}.{}", i / 250, i % 250 + 1)),
                ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            s
        };
        for i in 0..500 {
            store.apply(&Event::Apply(full(i)));
        }
        for i in [0, 1, 63, 64, 65, 499] {
            assert_eq!(store.get("default", &format!("svc-{i}")), Some(full(i)));
        }
        let (held, raw) = store.held_and_raw();
        assert!(held * 3 < raw, "{held} bytes held for {raw} of JSON");
    }
}
