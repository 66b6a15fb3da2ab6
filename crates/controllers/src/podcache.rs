//! Every Pod of the cluster, reduced to a [`PodInfo`], indexed by namespace
//! and fed by a watch.
//!
//! This takes the place of a kube-runtime reflector store for Pods, for two
//! reasons: a reflector keeps the whole typed object (kilobytes per pod,
//! most of the controller's memory in a large cluster), and it has no
//! index, so finding a Service's pods meant copying out every pod of the
//! cluster on each sync. Here a sync looks at the pods of one namespace,
//! as Kubernetes' `podLister.Pods(ns).List(selector)` does.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::Service;
use tokio::sync::watch;

use crate::podutil::{self, PodInfo};

type Namespaces = HashMap<Box<str>, HashMap<Box<str>, Arc<PodInfo>>>;

#[derive(Default)]
struct State {
    pods: Namespaces,
    /// Pods of a relist in progress (between `Init` and `InitDone`); they
    /// replace `pods` at once when the list is complete, as a reflector's
    /// buffer does, so readers never see half a list.
    relist: Option<Namespaces>,
}

/// The pods, shared between the watch task (the only writer) and the workers.
pub(crate) struct PodCache {
    state: RwLock<State>,
    ready: watch::Sender<bool>,
}

impl Default for PodCache {
    fn default() -> Self {
        PodCache {
            state: RwLock::default(),
            ready: watch::channel(false).0,
        }
    }
}

impl PodCache {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock leaves whole maps behind (every
        // update is a single insert or remove), so a poisoned lock is usable.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `pod`; returns the version it replaced.
    pub(crate) fn insert(&self, pod: PodInfo) -> Option<Arc<PodInfo>> {
        let mut state = self.write();
        let ns = state.pods.entry(pod.namespace.clone()).or_default();
        ns.insert(pod.name.clone(), Arc::new(pod))
    }

    /// Forgets `namespace/name`; returns what was stored.
    pub(crate) fn remove(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let mut state = self.write();
        let ns = state.pods.get_mut(namespace)?;
        let gone = ns.remove(name);
        if ns.is_empty() {
            state.pods.remove(namespace);
        }
        gone
    }

    /// A relist starts: pods arrive with [`PodCache::relist_add`].
    pub(crate) fn relist_begin(&self) {
        self.write().relist = Some(Namespaces::new());
    }

    /// One pod of the relist in progress.
    pub(crate) fn relist_add(&self, pod: PodInfo) {
        let mut state = self.write();
        let relist = state.relist.get_or_insert_with(Namespaces::new);
        relist
            .entry(pod.namespace.clone())
            .or_default()
            .insert(pod.name.clone(), Arc::new(pod));
    }

    /// The relist is complete: its pods become the content, and the cache
    /// is ready from now on.
    pub(crate) fn relist_done(&self) {
        {
            let mut state = self.write();
            let fresh = state.relist.take().unwrap_or_default();
            state.pods = fresh;
        }
        self.ready.send_replace(true);
    }

    /// Resolves once the first list is complete.
    pub(crate) async fn wait_until_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives in `self`, which outlives this borrow, so the
        // channel cannot close while we wait.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// The pods of the Service's namespace that its selector matches.
    pub(crate) fn selected_by(&self, service: &Service) -> Vec<Arc<PodInfo>> {
        let Some(selector) = podutil::selector_of(service) else {
            return Vec::new();
        };
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let state = self.read();
        state
            .pods
            .get(namespace)
            .into_iter()
            .flat_map(|pods| pods.values())
            .filter(|p| p.matches(selector))
            .cloned()
            .collect()
    }

    /// Every pod, for tests and metrics.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.read().pods.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, ServiceSpec};
    use switchboard_api::labels::Labels as _;

    fn pod(ns: &str, name: &str, app: &str) -> PodInfo {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.labels = Some([("app".to_owned(), app.to_owned())].into());
        PodInfo::from(&p)
    }

    fn service(ns: &str, app: &str) -> Service {
        let mut s = Service::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(app.into());
        s.spec = Some(ServiceSpec {
            selector: Some([("app".to_owned(), app.to_owned())].into()),
            ..ServiceSpec::default()
        });
        s
    }

    #[test]
    fn selection_stays_within_the_namespace() {
        let cache = PodCache::default();
        cache.insert(pod("a", "p1", "web"));
        cache.insert(pod("a", "p2", "db"));
        cache.insert(pod("b", "p3", "web"));
        let names: Vec<_> = cache
            .selected_by(&service("a", "web"))
            .iter()
            .map(|p| p.name.to_string())
            .collect();
        assert_eq!(names, ["p1"]);
    }

    #[test]
    fn insert_returns_the_previous_version_and_remove_forgets() {
        let cache = PodCache::default();
        assert!(cache.insert(pod("a", "p1", "web")).is_none());
        let old = cache.insert(pod("a", "p1", "db")).expect("p1 was stored");
        assert_eq!(old.labels.label("app"), Some("web"));
        let stored = cache.remove("a", "p1").expect("p1 is stored");
        assert_eq!(stored.labels.label("app"), Some("db"));
        assert!(cache.remove("a", "p1").is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_relist_replaces_the_content_only_when_complete() {
        let cache = PodCache::default();
        cache.insert(pod("a", "old", "web"));
        cache.relist_begin();
        cache.relist_add(pod("a", "new", "web"));
        let web = service("a", "web");
        let names = |c: &PodCache| -> Vec<String> {
            c.selected_by(&web)
                .iter()
                .map(|p| p.name.to_string())
                .collect()
        };
        // Mid-relist, readers still see the previous content.
        assert_eq!(names(&cache), ["old"]);
        cache.relist_done();
        assert_eq!(names(&cache), ["new"]);
    }
}
