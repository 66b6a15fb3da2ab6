//! Every Pod of the cluster as a [`PodView`], indexed the ways the
//! workload controllers look them up: by namespace (ReplicaSet syncs), by
//! owner uid (the garbage collector, Recreate's wait for old pods) and the
//! count of unfinished pods bound to each node (the scheduler's score).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::podview::PodView;

type Name = (Arc<str>, Box<str>);

#[derive(Default)]
struct State {
    by_namespace: HashMap<Arc<str>, HashMap<Box<str>, Arc<PodView>>>,
    /// Pods of a relist in progress; they replace the rest at `InitDone`.
    relist: Option<Vec<Arc<PodView>>>,
    by_owner: HashMap<Box<str>, HashSet<Name>>,
    per_node: HashMap<Arc<str>, usize>,
}

impl State {
    fn index(&mut self, pod: &PodView, add: bool) {
        let key: Name = (pod.namespace.clone(), pod.name.clone());
        for o in pod.owners.iter() {
            let uid: &str = &o.uid;
            if add {
                self.by_owner
                    .entry(Box::from(uid))
                    .or_default()
                    .insert(key.clone());
            } else if let Some(set) = self.by_owner.get_mut(uid) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_owner.remove(uid);
                }
            }
        }
        if let Some(node) = pod.node_name.as_ref()
            && !pod.phase.is_terminal()
        {
            if add {
                *self.per_node.entry(Arc::clone(node)).or_default() += 1;
            } else if let Some(n) = self.per_node.get_mut(&**node) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_node.remove(node);
                }
            }
        }
    }

    fn insert(&mut self, pod: Arc<PodView>) -> Option<Arc<PodView>> {
        let old = self
            .by_namespace
            .entry(pod.namespace.clone())
            .or_default()
            .insert(pod.name.clone(), Arc::clone(&pod));
        if let Some(old) = &old {
            self.index(old, false);
        }
        self.index(&pod, true);
        old
    }
}

/// See the module docs.
pub(crate) struct Pods {
    state: RwLock<State>,
    ready: watch::Sender<bool>,
}

impl Default for Pods {
    fn default() -> Self {
        Pods {
            state: RwLock::default(),
            ready: watch::channel(false).0,
        }
    }
}

impl Pods {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Every update is a few inserts and removes; a poisoned lock still
        // holds usable maps.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `pod`; returns what it replaced.
    pub(crate) fn insert(&self, pod: Arc<PodView>) -> Option<Arc<PodView>> {
        self.write().insert(pod)
    }

    /// Forgets a pod; returns what was stored.
    pub(crate) fn remove(&self, namespace: &str, name: &str) -> Option<Arc<PodView>> {
        let mut st = self.write();
        let ns = st.by_namespace.get_mut(namespace)?;
        let gone = ns.remove(name);
        if ns.is_empty() {
            st.by_namespace.remove(namespace);
        }
        if let Some(g) = &gone {
            st.index(g, false);
        }
        gone
    }

    pub(crate) fn relist_begin(&self) {
        self.write().relist = Some(Vec::new());
    }

    pub(crate) fn relist_add(&self, pod: Arc<PodView>) {
        if let Some(buf) = self.write().relist.as_mut() {
            buf.push(pod);
        }
    }

    /// The relist replaces the cache; the pods as now listed.
    pub(crate) fn relist_done(&self) -> Vec<Arc<PodView>> {
        let mut st = self.write();
        let listed = st.relist.take().unwrap_or_default();
        let mut fresh = State::default();
        for pod in &listed {
            fresh.insert(Arc::clone(pod));
        }
        *st = fresh;
        drop(st);
        self.ready.send_replace(true);
        listed
    }

    pub(crate) async fn wait_until_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives in `self`, so the wait can only end by the flag.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<PodView>> {
        self.read().by_namespace.get(namespace)?.get(name).cloned()
    }

    pub(crate) fn in_namespace(&self, namespace: &str) -> Vec<Arc<PodView>> {
        self.read()
            .by_namespace
            .get(namespace)
            .map(|ns| ns.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Pods with an owner reference to `uid`.
    pub(crate) fn owned_by(&self, uid: &str) -> Vec<Arc<PodView>> {
        let st = self.read();
        let Some(names) = st.by_owner.get(uid) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|(ns, name)| st.by_namespace.get(ns)?.get(name).cloned())
            .collect()
    }

    /// Unfinished pods bound to each node.
    pub(crate) fn node_counts(&self) -> HashMap<String, usize> {
        self.read()
            .per_node
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    /// Every pod (a relist's follow-up, a node's pods).
    pub(crate) fn all(&self) -> Vec<Arc<PodView>> {
        self.read()
            .by_namespace
            .values()
            .flat_map(|ns| ns.values().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(name: &str, owner: &str, node: Option<&str>) -> Arc<PodView> {
        Arc::new(PodView::from(&Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: None,
        }))
    }

    #[test]
    fn indexes_follow_inserts_replacements_and_removals() {
        let pods = Pods::default();
        pods.insert(pod("a", "rs1", Some("n1")));
        pods.insert(pod("b", "rs1", None));
        assert_eq!(pods.owned_by("rs1").len(), 2);
        assert_eq!(pods.node_counts().get("n1"), Some(&1));
        // b gets bound, a changes owner.
        pods.insert(pod("b", "rs1", Some("n1")));
        pods.insert(pod("a", "rs2", Some("n1")));
        assert_eq!(pods.node_counts().get("n1"), Some(&2));
        assert_eq!(pods.owned_by("rs1").len(), 1);
        assert_eq!(pods.owned_by("rs2").len(), 1);
        pods.remove("default", "a");
        pods.remove("default", "b");
        assert!(pods.node_counts().is_empty());
        assert!(pods.owned_by("rs1").is_empty());
        assert!(pods.in_namespace("default").is_empty());
    }
}
