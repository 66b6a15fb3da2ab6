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
//! next snapshot; each slice is kept as its endpoints. A service whose
//! slices change is rebuilt from its table entry with the new endpoints.
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

/// A slice is known by namespace and name.
type SliceId = (String, String);

/// One slice of a service: its name and the endpoints it contributes.
type SliceEndpoints = (Box<str>, Vec<Endpoint>);

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
    /// Each service's slices, as (slice name, its endpoints): a service
    /// has one slice per 100 endpoints, so a short vector (a B-tree's
    /// first node alone would be half a kilobyte per service).
    slices: HashMap<ServiceKey, Vec<SliceEndpoints>>,
    /// Which service each stored slice is filed under, so a slice whose
    /// label changes (or is deleted without labels) is found again.
    slice_owner: HashMap<SliceId, ServiceKey>,
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
                let mut gone: HashSet<SliceId> = self.slice_owner.keys().cloned().collect();
                for prepared in listed {
                    gone.remove(&prepared.id);
                    self.set_slice(prepared);
                }
                for id in gone {
                    self.remove_slice(&id);
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
            id,
            owner,
            endpoints,
        }: Prepared,
    ) {
        // Filed under its old service if the label changed (or went away).
        self.remove_slice(&id);
        let Some(owner) = owner else {
            return;
        };
        let slices = self.slices.entry(owner.clone()).or_default();
        slices.push((id.1.as_str().into(), endpoints));
        // Slice order decides nothing (endpoints are merged by address);
        // sorted so the table is the same whatever the arrival order.
        slices.sort_by(|a, b| a.0.cmp(&b.0));
        self.slice_owner.insert(id, owner.clone());
        self.dirty.insert(owner);
    }

    /// An EndpointSlice was deleted.
    pub fn delete_slice(&mut self, slice: &EndpointSlice) {
        if let Some(id) = slice_id(slice) {
            self.remove_slice(&id);
        }
    }

    fn remove_slice(&mut self, id: &SliceId) {
        let Some(owner) = self.slice_owner.remove(id) else {
            return;
        };
        if let Some(slices) = self.slices.get_mut(&owner) {
            slices.retain(|(name, _)| **name != *id.1);
            if slices.is_empty() {
                self.slices.remove(&owner);
            }
        }
        self.dirty.insert(owner);
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
            let endpoints = || {
                let slices = self.slices.get(&key).into_iter().flatten();
                build::merge_endpoints(slices.flat_map(|(_, e)| e.iter().cloned()))
            };
            let built = match self.pending.remove(&key) {
                Some(Some(mut base)) => {
                    base.endpoints = endpoints();
                    Some(*base)
                }
                Some(None) => None,
                // Only its slices changed: the same Service, new endpoints.
                None => self.built.get(&key).map(|old| Service {
                    endpoints: endpoints(),
                    ..Service::clone(old)
                }),
            };
            match (built, self.built.get(&key)) {
                (Some(new), Some(old)) if new == **old => {}
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
        }
        // Every pending key was dirty, so the map is empty now.
        self.pending.shrink_to_fit();
        if changed.is_empty() && self.published_synced {
            return None;
        }
        self.published_synced = true;
        changed.sort();
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

/// What the cache keeps of a slice: which slice, whose, and its endpoints.
#[derive(Debug)]
struct Prepared {
    id: SliceId,
    /// `None` without a `kubernetes.io/service-name` label.
    owner: Option<ServiceKey>,
    endpoints: Vec<Endpoint>,
}

fn prepare(slice: &EndpointSlice) -> Option<Prepared> {
    Some(Prepared {
        id: slice_id(slice)?,
        owner: build::slice_service(slice),
        endpoints: build::slice_endpoints(slice),
    })
}

fn slice_id(slice: &EndpointSlice) -> Option<SliceId> {
    let name = slice.metadata.name.clone().filter(|n| !n.is_empty())?;
    Some((
        slice
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        name,
    ))
}

#[cfg(test)]
mod tests;
