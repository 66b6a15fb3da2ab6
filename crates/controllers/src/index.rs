//! Secondary indexes over the controller's caches, so that neither a pod
//! event nor a sync has to walk every object of the cluster.
//!
//! - [`Selectors`]: which Services may select a pod, found from the pod's
//!   labels. Each Service selector is filed under one of its `key=value`
//!   pairs (every pod it selects carries that pair), so a pod with L labels
//!   costs L hash lookups plus a full check of the few candidates found.
//! - [`Owned`]: the names of the EndpointSlices labelled with each Service.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use switchboard_api::intern::intern;
use switchboard_api::labels::LabelSet;

use crate::podutil::PodInfo;

/// A Service's namespace and name.
pub(crate) type ServiceKey = (String, String);

/// Namespace, label key and label value, all [interned](intern): a pod's
/// labels and namespace already are, so a lookup copies no string.
type Pair = (Arc<str>, Arc<str>, Arc<str>);

/// Service selectors, indexed by one of their pairs.
///
/// Selectors are held as [`LabelSet`]s: a one-pair `BTreeMap` costs a
/// half-kilobyte node, and a cluster has one selector per Service.
#[derive(Debug, Default)]
pub(crate) struct Selectors {
    selectors: HashMap<ServiceKey, LabelSet>,
    /// (namespace, label key, label value) → names of the Services whose
    /// selector is filed under that pair.
    by_pair: HashMap<Pair, HashSet<Box<str>>>,
}

impl Selectors {
    /// Records the selector of `service` (`None`: it selects no pods).
    pub(crate) fn set(&mut self, service: ServiceKey, selector: Option<&BTreeMap<String, String>>) {
        self.remove(&service);
        let Some(selector) = selector.filter(|s| !s.is_empty()) else {
            return;
        };
        let selector = LabelSet::from(selector);
        // The first pair in key order: any pair would do.
        let Some((k, v)) = selector.pairs().first() else {
            return;
        };
        self.by_pair
            .entry((intern(&service.0), k.clone(), v.clone()))
            .or_default()
            .insert(Box::from(service.1.as_str()));
        self.selectors.insert(service, selector);
    }

    /// Whether the selector recorded for `service` is `selector` (`None`:
    /// none recorded).
    pub(crate) fn is(
        &self,
        service: &ServiceKey,
        selector: Option<&BTreeMap<String, String>>,
    ) -> bool {
        match (self.selectors.get(service), selector) {
            (None, None) => true,
            (Some(have), Some(want)) => {
                have.len() == want.len()
                    && have
                        .iter()
                        .zip(want)
                        .all(|((hk, hv), (wk, wv))| hk == wk && hv == wv)
            }
            _ => false,
        }
    }

    /// Forgets `service`.
    pub(crate) fn remove(&mut self, service: &ServiceKey) {
        let Some(old) = self.selectors.remove(service) else {
            return;
        };
        if let Some((k, v)) = old.pairs().first() {
            let pair = (intern(&service.0), k.clone(), v.clone());
            if let Some(names) = self.by_pair.get_mut(&pair) {
                names.remove(service.1.as_str());
                if names.is_empty() {
                    self.by_pair.remove(&pair);
                }
            }
        }
    }

    /// Forgets everything (before a rebuild after a relist).
    pub(crate) fn clear(&mut self) {
        self.selectors.clear();
        self.by_pair.clear();
    }

    /// The Services of the pod's namespace whose selector matches it.
    pub(crate) fn selecting(&self, pod: &PodInfo) -> Vec<ServiceKey> {
        let mut out = Vec::new();
        for (k, v) in pod.labels.pairs() {
            let pair = (pod.namespace.clone(), k.clone(), v.clone());
            let Some(names) = self.by_pair.get(&pair) else {
                continue;
            };
            for name in names {
                let key = (pod.namespace.to_string(), name.to_string());
                if self
                    .selectors
                    .get(&key)
                    .is_some_and(|s| pod.labels.contains_all(s))
                {
                    out.push(key);
                }
            }
        }
        out
    }
}

/// EndpointSlice names by the Service they are labelled with.
#[derive(Debug, Default)]
pub(crate) struct Owned {
    by_service: HashMap<ServiceKey, HashSet<String>>,
    /// The Service each slice was filed under, so a relabelled or deleted
    /// slice leaves its old entry.
    of_slice: HashMap<(String, String), ServiceKey>,
}

impl Owned {
    /// Files slice `namespace/name` under `service` (`None`: unlabelled).
    pub(crate) fn set(&mut self, namespace: &str, name: &str, service: Option<ServiceKey>) {
        self.remove(namespace, name);
        if let Some(service) = service {
            self.by_service
                .entry(service.clone())
                .or_default()
                .insert(name.to_owned());
            self.of_slice
                .insert((namespace.to_owned(), name.to_owned()), service);
        }
    }

    /// Forgets slice `namespace/name`.
    pub(crate) fn remove(&mut self, namespace: &str, name: &str) {
        let Some(service) = self
            .of_slice
            .remove(&(namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        if let Some(names) = self.by_service.get_mut(&service) {
            names.remove(name);
            if names.is_empty() {
                self.by_service.remove(&service);
            }
        }
    }

    /// Forgets everything (before a rebuild after a relist).
    pub(crate) fn clear(&mut self) {
        self.by_service.clear();
        self.of_slice.clear();
    }

    /// Names of the slices filed under `service`.
    pub(crate) fn of(&self, service: &ServiceKey) -> Vec<String> {
        self.by_service
            .get(service)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(ns: &str, labels: &[(&str, &str)]) -> PodInfo {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some("p".into());
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        PodInfo::from(&p)
    }

    fn selector(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn key(ns: &str, name: &str) -> ServiceKey {
        (ns.into(), name.into())
    }

    #[test]
    fn finds_exactly_the_selecting_services() {
        let mut idx = Selectors::default();
        idx.set(key("a", "web"), Some(&selector(&[("app", "web")])));
        idx.set(
            key("a", "web-front"),
            Some(&selector(&[("app", "web"), ("tier", "front")])),
        );
        idx.set(key("a", "db"), Some(&selector(&[("app", "db")])));
        idx.set(key("b", "web"), Some(&selector(&[("app", "web")])));
        idx.set(key("a", "none"), None);

        let mut got = idx.selecting(&pod("a", &[("app", "web"), ("tier", "back")]));
        got.sort();
        assert_eq!(got, [key("a", "web")]);
        let mut got = idx.selecting(&pod("a", &[("app", "web"), ("tier", "front")]));
        got.sort();
        assert_eq!(got, [key("a", "web"), key("a", "web-front")]);
        assert!(idx.selecting(&pod("c", &[("app", "web")])).is_empty());
    }

    #[test]
    fn a_changed_or_removed_selector_is_forgotten() {
        let mut idx = Selectors::default();
        idx.set(key("a", "s"), Some(&selector(&[("app", "web")])));
        idx.set(key("a", "s"), Some(&selector(&[("app", "db")])));
        assert!(idx.selecting(&pod("a", &[("app", "web")])).is_empty());
        assert_eq!(idx.selecting(&pod("a", &[("app", "db")])), [key("a", "s")]);
        idx.remove(&key("a", "s"));
        assert!(idx.selecting(&pod("a", &[("app", "db")])).is_empty());
        assert!(idx.by_pair.is_empty());
    }

    #[test]
    fn slices_follow_their_service_label() {
        let mut owned = Owned::default();
        owned.set("a", "web-1", Some(key("a", "web")));
        owned.set("a", "web-2", Some(key("a", "web")));
        owned.set("a", "web-2", Some(key("a", "other")));
        assert_eq!(owned.of(&key("a", "web")), ["web-1"]);
        assert_eq!(owned.of(&key("a", "other")), ["web-2"]);
        owned.remove("a", "web-1");
        assert!(owned.of(&key("a", "web")).is_empty());
        assert!(owned.by_service.len() == 1);
    }
}
