//! Every Pod of the cluster, as the shared [`PodView`] (the endpoints
//! controllers read its [`PodInfo`](crate::PodInfo)), with the Services
//! that select each one.
//!
//! This takes the place of a kube-runtime reflector store for Pods, for two
//! reasons: a reflector keeps the whole typed object (kilobytes per pod,
//! most of the controller's memory in a large cluster), and it has no
//! index, so finding a Service's pods meant looking at every pod. Here the
//! cache also keeps, for each Service, the names of the pods its selector
//! matches: maintained on every pod event (one lookup per pod label, through
//! [`Selectors`]) and recomputed for one Service when its selector changes.
//! Pods, selectors and memberships change under one lock, so no interleaving
//! of pod and Service events can leave a selected pod out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::index::{Selectors, ServiceKey};
use crate::podview::PodView;

type Namespaces = HashMap<Arc<str>, HashMap<Box<str>, Arc<PodView>>>;

#[derive(Default)]
struct State {
    pods: Namespaces,
    /// Pods of a relist in progress (between `Init` and `InitDone`); they
    /// replace `pods` at once when the list is complete, as a reflector's
    /// buffer does, so readers never see half a list.
    relist: Option<Namespaces>,
    selectors: Selectors,
    /// Names of the pods each Service's selector matches (a superset for a
    /// moment is harmless: the reconcilers check the selector again).
    members: HashMap<ServiceKey, HashSet<Box<str>>>,
}

impl State {
    fn file(&mut self, services: &[ServiceKey], pod: &str) {
        for key in services {
            self.members
                .entry(key.clone())
                .or_default()
                .insert(Box::from(pod));
        }
    }

    fn unfile(&mut self, services: &[ServiceKey], pod: &str) {
        for key in services {
            if let Some(names) = self.members.get_mut(key) {
                names.remove(pod);
                if names.is_empty() {
                    self.members.remove(key);
                }
            }
        }
    }

    /// Recomputes every membership from the pods (after a relist).
    fn refile_all(&mut self) {
        self.members.clear();
        let pods: Vec<Arc<PodView>> = self
            .pods
            .values()
            .flat_map(|ns| ns.values().cloned())
            .collect();
        for pod in &pods {
            let services = self.selectors.selecting(pod);
            self.file(&services, &pod.name);
        }
    }
}

/// The pods, shared between the watch tasks and the workers.
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
        // update is a few inserts or removes), so a poisoned lock is usable:
        // at worst a membership is a superset, which syncs tolerate.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `pod`; returns the version it replaced and the Services that
    /// select the pod now or did before (so a pod that stops matching still
    /// gets its old Service synced).
    pub(crate) fn insert(&self, pod: Arc<PodView>) -> (Option<Arc<PodView>>, Vec<ServiceKey>) {
        let mut state = self.write();
        let old = state
            .pods
            .entry(pod.namespace.clone())
            .or_default()
            .insert(pod.name.clone(), pod.clone());
        let now = state.selectors.selecting(&pod);
        let before = old
            .as_deref()
            .map(|o| state.selectors.selecting(o))
            .unwrap_or_default();
        state.unfile(&before, &pod.name);
        state.file(&now, &pod.name);
        let mut concerned = now;
        concerned.extend(before);
        (old, concerned)
    }

    /// Forgets `namespace/name`; returns what was stored and the Services
    /// that selected it.
    pub(crate) fn remove(
        &self,
        namespace: &str,
        name: &str,
    ) -> (Option<Arc<PodView>>, Vec<ServiceKey>) {
        let mut state = self.write();
        let Some(ns) = state.pods.get_mut(namespace) else {
            return (None, Vec::new());
        };
        let gone = ns.remove(name);
        if ns.is_empty() {
            state.pods.remove(namespace);
        }
        let concerned = gone
            .as_deref()
            .map(|o| state.selectors.selecting(o))
            .unwrap_or_default();
        state.unfile(&concerned, name);
        (gone, concerned)
    }

    /// A relist starts: pods arrive with [`PodCache::relist_add`].
    pub(crate) fn relist_begin(&self) {
        self.write().relist = Some(Namespaces::new());
    }

    /// One pod of the relist in progress.
    pub(crate) fn relist_add(&self, pod: Arc<PodView>) {
        let mut state = self.write();
        let relist = state.relist.get_or_insert_with(Namespaces::new);
        relist
            .entry(pod.namespace.clone())
            .or_default()
            .insert(pod.name.clone(), pod);
    }

    /// The relist is complete: its pods become the content, and the cache
    /// is ready from now on.
    pub(crate) fn relist_done(&self) {
        {
            let mut state = self.write();
            let fresh = state.relist.take().unwrap_or_default();
            state.pods = fresh;
            state.refile_all();
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

    /// Records a Service's selector (`None`: it selects no pods) and finds
    /// its pods among those of its namespace.
    pub(crate) fn set_selector(
        &self,
        service: ServiceKey,
        selector: Option<&BTreeMap<String, String>>,
    ) {
        let mut state = self.write();
        let selector = selector.filter(|s| !s.is_empty());
        if state.selectors.is(&service, selector) {
            // Most Service updates leave the selector alone; the
            // memberships stand.
            return;
        }
        state.selectors.set(service.clone(), selector);
        let names: HashSet<Box<str>> = match selector {
            Some(selector) => state
                .pods
                .get(service.0.as_str())
                .into_iter()
                .flat_map(|pods| pods.values())
                .filter(|p| p.matches(selector))
                .map(|p| p.name.clone())
                .collect(),
            None => HashSet::new(),
        };
        if names.is_empty() {
            state.members.remove(&service);
        } else {
            state.members.insert(service, names);
        }
    }

    /// Forgets a deleted Service's selector.
    pub(crate) fn remove_selector(&self, service: &ServiceKey) {
        let mut state = self.write();
        state.selectors.remove(service);
        state.members.remove(service);
    }

    /// Replaces every selector (after a relist of Services).
    pub(crate) fn reset_selectors<'a>(
        &self,
        selectors: impl IntoIterator<Item = (ServiceKey, Option<&'a BTreeMap<String, String>>)>,
    ) {
        let mut state = self.write();
        state.selectors.clear();
        for (service, selector) in selectors {
            state.selectors.set(service, selector);
        }
        state.refile_all();
    }

    /// The pods the Service's selector matches.
    pub(crate) fn selected_by(&self, service: &ServiceKey) -> Vec<Arc<PodView>> {
        let state = self.read();
        let (Some(names), Some(pods)) = (
            state.members.get(service),
            state.pods.get(service.0.as_str()),
        ) else {
            return Vec::new();
        };
        names.iter().filter_map(|n| pods.get(n).cloned()).collect()
    }

    /// Every pod, for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.read().pods.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use switchboard_api::labels::Labels as _;

    fn pod(ns: &str, name: &str, app: &str) -> Arc<PodView> {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.labels = Some([("app".to_owned(), app.to_owned())].into());
        Arc::new(PodView::from(&p))
    }

    fn selects(app: &str) -> BTreeMap<String, String> {
        [("app".to_owned(), app.to_owned())].into()
    }

    fn key(ns: &str, name: &str) -> ServiceKey {
        (ns.into(), name.into())
    }

    fn names(cache: &PodCache, service: &ServiceKey) -> Vec<String> {
        let mut v: Vec<String> = cache
            .selected_by(service)
            .iter()
            .map(|p| p.name.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn membership_follows_pods_and_selectors_in_either_order() {
        let cache = PodCache::default();
        cache.insert(pod("a", "before", "web"));
        cache.set_selector(key("a", "web"), Some(&selects("web")));
        let (_, concerned) = cache.insert(pod("a", "after", "web"));
        assert_eq!(concerned, [key("a", "web")]);
        cache.insert(pod("a", "other", "db"));
        cache.insert(pod("b", "elsewhere", "web"));
        assert_eq!(names(&cache, &key("a", "web")), ["after", "before"]);
    }

    #[test]
    fn a_pod_that_changes_labels_concerns_old_and_new_services() {
        let cache = PodCache::default();
        cache.set_selector(key("a", "web"), Some(&selects("web")));
        cache.set_selector(key("a", "db"), Some(&selects("db")));
        cache.insert(pod("a", "p", "web"));
        let (old, mut concerned) = cache.insert(pod("a", "p", "db"));
        concerned.sort();
        assert_eq!(
            old.map(|o| o.labels.label("app").map(str::to_owned)),
            Some(Some("web".into()))
        );
        assert_eq!(concerned, [key("a", "db"), key("a", "web")]);
        assert!(names(&cache, &key("a", "web")).is_empty());
        assert_eq!(names(&cache, &key("a", "db")), ["p"]);
        let (gone, concerned) = cache.remove("a", "p");
        assert!(gone.is_some());
        assert_eq!(concerned, [key("a", "db")]);
        assert!(names(&cache, &key("a", "db")).is_empty());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_changed_selector_finds_its_pods_again() {
        let cache = PodCache::default();
        cache.insert(pod("a", "w", "web"));
        cache.insert(pod("a", "d", "db"));
        cache.set_selector(key("a", "s"), Some(&selects("web")));
        assert_eq!(names(&cache, &key("a", "s")), ["w"]);
        cache.set_selector(key("a", "s"), Some(&selects("db")));
        assert_eq!(names(&cache, &key("a", "s")), ["d"]);
        cache.remove_selector(&key("a", "s"));
        assert!(names(&cache, &key("a", "s")).is_empty());
    }

    #[test]
    fn a_relist_replaces_the_content_only_when_complete() {
        let cache = PodCache::default();
        cache.set_selector(key("a", "web"), Some(&selects("web")));
        cache.insert(pod("a", "old", "web"));
        cache.relist_begin();
        cache.relist_add(pod("a", "new", "web"));
        // Mid-relist, readers still see the previous content.
        assert_eq!(names(&cache, &key("a", "web")), ["old"]);
        cache.relist_done();
        assert_eq!(names(&cache, &key("a", "web")), ["new"]);
        cache.reset_selectors([(key("a", "web"), None)]);
        assert!(names(&cache, &key("a", "web")).is_empty());
    }
}
