//! The incremental state between watch events and snapshots: the built
//! table, each EndpointSlice's endpoints, the Services changed since the
//! last snapshot, and the keys touched. Pure (no IO), so it is unit tested
//! and benchmarked without an apiserver; [`crate::spawn`] feeds it.
//!
//! Memory: no Kubernetes object is kept. A typed Service is several times
//! the size of its table entry and a typed slice holds far more than its
//! endpoints, which at 100k services made the objects most of the process;
//! so each Service is turned into its table entry without endpoints
//! ([`build::base`]) as it arrives, and waits in `pending` only until the
//! next snapshot; each slice is kept as its name and endpoints, filed under
//! its service. A service whose slices change is rebuilt from its table
//! entry with the new endpoints.
//!
//! What the cache adds to the table per service is kept small, as it is
//! paid 100k times:
//! - services and slices are known by one boxed `"namespace/name"`
//!   (`Id`) rather than a [`ServiceKey`]'s two `String`s;
//! - a service's first slice is stored inline (`Slices`), as most
//!   services have one (one slice per 100 endpoints);
//! - which service a slice belongs to is recorded only when the slice's
//!   name does not say it: the EndpointSlice controller names slices
//!   `<service>-<suffix>` (`implied_service`), so a slice is looked for
//!   under that service first;
//! - the endpoints of a service's only slice are not kept twice: once
//!   published, the service's table entry holds them, and the slice keeps
//!   `None` until a second slice joins or the service goes away. Merging
//!   is idempotent, so the entry's merged endpoints stand for the slice's
//!   own wherever they are merged again.
//!
//! Cost of a snapshot: only the touched services are rebuilt (each compared
//! with its previous version, so an unchanged one keeps its `Arc`), and
//! each is set in the persistent [`Services`] map in O(log n); the new
//! immutable table takes an O(1) clone of that map, sharing every node the
//! change did not touch. Nothing is proportional to the number of services.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;

use crate::build;
use crate::table::{Endpoint, PastChange, Service, ServiceKey, ServiceTable, Services};

/// A service or a slice as the cache knows it: `"namespace/name"` in one
/// allocation. Neither part can contain `/` (both are DNS names), so the
/// pair is never ambiguous.
type Id = Box<str>;

fn id(namespace: &str, name: &str) -> Id {
    format!("{namespace}/{name}").into()
}

/// How many earlier `changed` lists a snapshot carries
/// ([`ServiceTable::history`]): enough for a consumer that falls a few
/// snapshots behind during a rollout, cheap to copy (one pointer each).
const HISTORY: usize = 32;

/// A `changed` list longer than this is not kept in the history: a
/// consumer that missed it compares the maps, which costs no more.
const HISTORY_MAX_KEYS: usize = 1024;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Cache {
    /// Services changed since the last snapshot, as their table entry
    /// without endpoints ([`build::base`]), or `None` when deleted. The map
    /// is shrunk once drained, so an initial list of 100k does not leave
    /// its buckets behind.
    pending: HashMap<ServiceKey, Option<Box<Service>>>,
    /// Each service's slices, by the service's [`Id`]; kept for a service
    /// that does not exist (yet), as its slices may arrive first.
    slices: HashMap<Id, Slices>,
    /// The service of each slice whose name does not imply it
    /// ([`implied_service`]), by the slice's [`Id`]; every other slice is
    /// filed under the service its name implies. Empty in a cluster whose
    /// slices all come from the EndpointSlice controller.
    owners: HashMap<Id, Box<str>>,
    built: Services,
    dirty: HashSet<ServiceKey>,
    /// A (re)list in progress, applied at its `InitDone`; converted as
    /// they arrive, so the list's objects are never all held at once.
    service_init: Option<Vec<Service>>,
    slice_init: Option<Vec<Prepared>>,
    services_listed: bool,
    slices_listed: bool,
    published_synced: bool,
    generation: u64,
    /// The `changed` lists of the last [`HISTORY`] snapshots, newest first.
    history: VecDeque<PastChange>,
}

/// One stored slice.
#[derive(Debug)]
struct Slice {
    name: Box<str>,
    /// The endpoints it contributes; `None` while they are its service's
    /// table entry's endpoints: at the last snapshot it was the service's
    /// only slice, the service was in the table, and neither has changed
    /// since (either would have made the service dirty). Merged again
    /// with another slice, the entry's endpoints give the same as the
    /// slice's own would, unless one address appears twice within this
    /// slice (which the EndpointSlice controller never writes).
    endpoints: Option<Vec<Endpoint>>,
}

/// A service's slices, sorted by name: one inline, since a service has one
/// slice per 100 endpoints and a `Vec` would be an allocation more for
/// nearly every service.
#[derive(Debug)]
enum Slices {
    One(Slice),
    /// Two or more.
    Many(Vec<Slice>),
}

impl Slices {
    fn as_slice(&self) -> &[Slice] {
        match self {
            Slices::One(slice) => std::slice::from_ref(slice),
            Slices::Many(slices) => slices,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Slice] {
        match self {
            Slices::One(slice) => std::slice::from_mut(slice),
            Slices::Many(slices) => slices,
        }
    }

    /// `None` for no slice.
    fn from_vec(mut slices: Vec<Slice>) -> Option<Slices> {
        match slices.len() {
            0 => None,
            1 => slices.pop().map(Slices::One),
            _ => {
                slices.shrink_to_fit();
                Some(Slices::Many(slices))
            }
        }
    }

    fn into_vec(self) -> Vec<Slice> {
        match self {
            Slices::One(slice) => vec![slice],
            Slices::Many(slices) => slices,
        }
    }

    /// These slices with `slice` added (or replacing the one of its name).
    fn with(self, slice: Slice) -> Slices {
        let mut slices = self.into_vec();
        slices.retain(|s| s.name != slice.name);
        slices.push(slice);
        // Slice order decides nothing (endpoints are merged by address);
        // sorted so the table is the same whatever the arrival order.
        slices.sort_by(|a, b| a.name.cmp(&b.name));
        Slices::from_vec(slices).expect("one slice at least was just added")
    }

    /// These slices without the one named `name`; `None` if none is left.
    fn without(self, name: &str) -> Option<Slices> {
        let mut slices = self.into_vec();
        slices.retain(|s| *s.name != *name);
        Slices::from_vec(slices)
    }
}

/// The service a slice's name implies: the EndpointSlice controller names
/// slices with `generateName: <service>-`, so the name without its last
/// `-suffix`. A guess to look under first, never trusted alone.
fn implied_service(slice: &str) -> Option<&str> {
    slice
        .rsplit_once('-')
        .map(|(service, _)| service)
        .filter(|s| !s.is_empty())
}

impl Cache {
    /// An empty cache; nothing is published until both initial lists are in.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Applies one Service watch event.
    pub fn service_event(&mut self, ev: Event<core::Service>) {
        match ev {
            Event::Apply(svc) => self.apply_service(svc),
            Event::Delete(svc) => self.delete_service(&svc),
            Event::Init => self.service_init = Some(Vec::new()),
            Event::InitApply(svc) => {
                if let Some(base) = build::base(&svc) {
                    self.service_init.get_or_insert_with(Vec::new).push(base);
                }
            }
            Event::InitDone => {
                let listed = self.service_init.take().unwrap_or_default();
                let mut gone: HashSet<ServiceKey> = self.built.keys().cloned().collect();
                gone.extend(
                    self.pending
                        .iter()
                        .filter(|(_, svc)| svc.is_some())
                        .map(|(key, _)| key.clone()),
                );
                for base in listed {
                    gone.remove(&base.key);
                    self.set_pending(base);
                }
                for key in gone {
                    self.pending.insert(key.clone(), None);
                    self.dirty.insert(key);
                }
                self.services_listed = true;
            }
        }
    }

    /// Applies one EndpointSlice watch event.
    pub fn slice_event(&mut self, ev: Event<EndpointSlice>) {
        match ev {
            Event::Apply(slice) => self.apply_slice(slice),
            Event::Delete(slice) => self.delete_slice(&slice),
            Event::Init => self.slice_init = Some(Vec::new()),
            Event::InitApply(slice) => {
                if let Some(prepared) = prepare(&slice) {
                    self.slice_init.get_or_insert_with(Vec::new).push(prepared);
                }
            }
            Event::InitDone => {
                let listed = self.slice_init.take().unwrap_or_default();
                let mut gone: HashSet<Id> = self
                    .slices
                    .iter()
                    .flat_map(|(service, slices)| {
                        let namespace = service.split_once('/').map_or("", |(ns, _)| ns);
                        slices.as_slice().iter().map(|s| id(namespace, &s.name))
                    })
                    .collect();
                for prepared in listed {
                    gone.remove(&*id(&prepared.namespace, &prepared.name));
                    self.set_slice(prepared);
                }
                for slice in gone {
                    if let Some((namespace, name)) = slice.split_once('/') {
                        self.remove_slice(namespace, name);
                    }
                }
                self.slices_listed = true;
            }
        }
    }

    /// A Service was added or changed.
    pub fn apply_service(&mut self, svc: core::Service) {
        if let Some(base) = build::base(&svc) {
            self.set_pending(base);
        }
    }

    fn set_pending(&mut self, base: Service) {
        let key = base.key.clone();
        self.pending.insert(key.clone(), Some(Box::new(base)));
        self.dirty.insert(key);
    }

    /// A Service was deleted.
    pub fn delete_service(&mut self, svc: &core::Service) {
        if let Some(key) = build::key_of(&svc.metadata) {
            self.pending.insert(key.clone(), None);
            self.dirty.insert(key);
        }
    }

    /// An EndpointSlice was added or changed.
    pub fn apply_slice(&mut self, slice: EndpointSlice) {
        if let Some(prepared) = prepare(&slice) {
            self.set_slice(prepared);
        }
    }

    fn set_slice(
        &mut self,
        Prepared {
            namespace,
            name,
            service,
            endpoints,
        }: Prepared,
    ) {
        // Filed under its old service if the label changed (or went away).
        self.remove_slice(&namespace, &name);
        let Some(service) = service else {
            return;
        };
        if implied_service(&name) != Some(service.as_str()) {
            self.owners
                .insert(id(&namespace, &name), service.as_str().into());
        }
        let slice = Slice {
            name: name.into(),
            endpoints: Some(endpoints),
        };
        let service_id = id(&namespace, &service);
        let (service_id, slices) = match self.slices.remove_entry(&*service_id) {
            Some((service_id, slices)) => (service_id, slices.with(slice)),
            None => (service_id, Slices::One(slice)),
        };
        self.slices.insert(service_id, slices);
        self.dirty.insert(ServiceKey::new(namespace, service));
    }

    /// An EndpointSlice was deleted.
    pub fn delete_slice(&mut self, slice: &EndpointSlice) {
        if let Some((namespace, name)) = slice_name(slice) {
            self.remove_slice(namespace, name);
        }
    }

    /// The service the stored slice `namespace/name` is filed under.
    fn owner(&self, namespace: &str, name: &str) -> Option<String> {
        if let Some(service) = self.owners.get(&*id(namespace, name)) {
            return Some(service.to_string());
        }
        let service = implied_service(name)?;
        let slices = self.slices.get(&*id(namespace, service))?;
        slices
            .as_slice()
            .iter()
            .any(|s| *s.name == *name)
            .then(|| service.to_owned())
    }

    fn remove_slice(&mut self, namespace: &str, name: &str) {
        let Some(service) = self.owner(namespace, name) else {
            return;
        };
        self.owners.remove(&*id(namespace, name));
        if let Some((service_id, slices)) = self.slices.remove_entry(&*id(namespace, &service))
            && let Some(rest) = slices.without(name)
        {
            self.slices.insert(service_id, rest);
        }
        self.dirty.insert(ServiceKey::new(namespace, service));
    }

    /// True once both initial lists are complete.
    pub fn synced(&self) -> bool {
        self.services_listed && self.slices_listed
    }

    /// The next snapshot, when there is something new to tell: the first
    /// one after both initial lists, then one whenever a touched service
    /// actually changed. Rebuilds only the touched services.
    pub fn publish(&mut self) -> Option<ServiceTable> {
        if !self.synced() {
            return None;
        }
        let mut changed = Vec::new();
        for key in std::mem::take(&mut self.dirty) {
            let service_id = id(&key.namespace, &key.name);
            // The entry as of the last snapshot: it holds the endpoints of
            // a slice that keeps `None`.
            let old = self.built.get(&key).cloned();
            let endpoints = || {
                let slices = self.slices.get(&*service_id);
                let slices = slices.map(Slices::as_slice).unwrap_or_default();
                build::merge_endpoints(
                    slices
                        .iter()
                        .flat_map(|s| endpoints_of(s, old.as_deref()).iter().cloned()),
                )
            };
            let built = match self.pending.remove(&key) {
                Some(Some(mut base)) => {
                    base.endpoints = endpoints();
                    Some(*base)
                }
                Some(None) => None,
                // Only its slices changed: the same Service, new endpoints.
                None => old.as_deref().map(|old| Service {
                    endpoints: endpoints(),
                    ..Service::clone(old)
                }),
            };
            let in_table = built.is_some();
            match (built, old.as_deref()) {
                (Some(new), Some(old)) if new == *old => {}
                (Some(new), _) => {
                    self.built.insert(key.clone(), Arc::new(new));
                    changed.push(key);
                }
                (None, Some(_)) => {
                    self.built.remove(&key);
                    changed.push(key);
                }
                (None, None) => {}
            }
            // Hand the endpoints of a lone slice to the table entry, or
            // take them back from the old one when it no longer holds
            // exactly them (a second slice, or the service gone).
            match self.slices.get_mut(&*service_id) {
                Some(Slices::One(slice)) if in_table => slice.endpoints = None,
                Some(slices) => {
                    for slice in slices.as_mut_slice() {
                        if slice.endpoints.is_none() {
                            slice.endpoints = Some(endpoints_of(slice, old.as_deref()).to_vec());
                        }
                    }
                }
                None => {}
            }
        }
        // Every pending key was dirty, so the map is empty now.
        self.pending.shrink_to_fit();
        if changed.is_empty() && self.published_synced {
            return None;
        }
        self.published_synced = true;
        changed.sort();
        // The first snapshot lists every service, and growing by doubling
        // can leave nearly as many slots again unused, for as long as a
        // consumer holds the snapshot.
        changed.shrink_to_fit();
        self.generation += 1;
        let history: Arc<[PastChange]> = self.history.iter().cloned().collect();
        self.history.push_front(PastChange {
            generation: self.generation,
            keys: (changed.len() <= HISTORY_MAX_KEYS).then(|| changed.as_slice().into()),
        });
        self.history.truncate(HISTORY);
        Some(ServiceTable {
            // O(1): the persistent map shares its nodes with the snapshot.
            services: self.built.clone(),
            changed,
            generation: self.generation,
            synced: true,
            history,
        })
    }
}

/// The endpoints `slice` contributes; `old` is its service's entry in the
/// last snapshot, which holds them when the slice keeps `None`.
fn endpoints_of<'a>(slice: &'a Slice, old: Option<&'a Service>) -> &'a [Endpoint] {
    match &slice.endpoints {
        Some(endpoints) => endpoints,
        None => {
            debug_assert!(old.is_some(), "a slice without endpoints has a table entry");
            old.map_or(&[], |old| &old.endpoints)
        }
    }
}

/// What the cache keeps of a slice as it arrives: which slice, whose, and
/// its endpoints.
#[derive(Debug)]
struct Prepared {
    namespace: String,
    name: String,
    /// The service's name (in the slice's namespace); `None` without a
    /// `kubernetes.io/service-name` label.
    service: Option<String>,
    endpoints: Vec<Endpoint>,
}

fn prepare(slice: &EndpointSlice) -> Option<Prepared> {
    let (namespace, name) = slice_name(slice)?;
    Some(Prepared {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        service: build::slice_service(slice).map(|key| key.name),
        endpoints: build::slice_endpoints(slice),
    })
}

/// A slice's namespace and name (`None` without a name).
fn slice_name(slice: &EndpointSlice) -> Option<(&str, &str)> {
    let name = slice.metadata.name.as_deref().filter(|n| !n.is_empty())?;
    Some((
        slice.metadata.namespace.as_deref().unwrap_or("default"),
        name,
    ))
}

#[cfg(test)]
mod tests;
