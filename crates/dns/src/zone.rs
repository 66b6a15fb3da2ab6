//! The cluster zone: every record the Kubernetes DNS spec 1.1.0 defines,
//! answered from a [`ServiceTable`] through hash tables, so that a lookup
//! is a hash probe and a few small copies.
//!
//! Memory: the zone keeps no copy of a service. Its tables hold the
//! table's own `Arc<Service>`s (shared with discovery), found by a hash of
//! the labels a query carries (`<svc>.<ns>`, an address for PTR), so no
//! key string is stored either; the names an answer carries are built
//! when it is asked (and then cached as wire bytes by the server). With
//! 100k services a compiled copy of each name, port and endpoint was
//! 1 KB per service, about as much as discovery's whole table.
//!
//! The zone is kept current incrementally: [`Builder::apply`] re-files only
//! the services listed in [`ServiceTable::changed`] (or, when snapshots
//! were skipped, the services whose `Arc` differs from the last one seen).
//! The tables are split into [`SHARDS`] copy-on-write shards, so publishing
//! a snapshot copies one pointer per shard and an update copies only the
//! shards it touches (1/256 of the zone each): with 100k services a whole
//! hash map clone per update cost 20 ms and a second copy of every map
//! while the old snapshot was still being read. Lookups stay one probe; a
//! persistent hash trie (tried first) made the lookup 18% of the server's
//! CPU at 100k services, its pointer chase missing the cache.

use std::borrow::{Borrow, Cow};
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hashbrown::HashTable;
use hickory_proto::rr::rdata::{self, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use switchboard_discovery::{
    Endpoint, Service, ServiceKey, ServicePort, ServiceTable, ServiceType, Services,
};

/// Shards of a [`Table`].
const SHARDS: usize = 256;

/// Longest name on the wire (RFC 1035 §2.3.4), labels and their lengths.
const MAX_NAME_WIRE: usize = 255;

/// A copy-on-write hash table in [`SHARDS`] shared shards (see the module
/// docs), whose entries are found by a hash the caller computes with
/// [`Table::hash`] and an equality test, so an entry need not carry its key.
/// foldhash, not SipHash: the keys are names and addresses of the
/// cluster's own objects (a client's query cannot choose where they sit),
/// and a lookup is on every query's path.
#[derive(Debug, Clone)]
struct Table<T> {
    hasher: foldhash::fast::RandomState,
    shards: Vec<Arc<HashTable<T>>>,
    len: usize,
}

impl<T: Clone> Table<T> {
    fn new() -> Table<T> {
        Table {
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Arc::new(HashTable::new())).collect(),
            len: 0,
        }
    }

    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(hash: u64) -> usize {
        // Middle bits: hashbrown indexes each shard by the low bits of the
        // same hash and filters by the top seven.
        (hash >> 32) as usize % SHARDS
    }

    fn find(&self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&T> {
        self.shards[Self::shard(hash)].find(hash, eq)
    }

    /// Every entry filed under `hash` (the caller filters by its key).
    fn matching(&self, hash: u64) -> impl Iterator<Item = &T> {
        self.shards[Self::shard(hash)].iter_hash(hash)
    }

    /// Adds `value` under `hash` (beside any entry already there); copies
    /// its shard first if a published snapshot shares it. `rehash` gives
    /// an entry's hash when the shard grows.
    fn insert(&mut self, hash: u64, value: T, rehash: impl Fn(&T) -> u64) {
        Arc::make_mut(&mut self.shards[Self::shard(hash)]).insert_unique(hash, value, rehash);
        self.len += 1;
    }

    /// Removes the entry under `hash` that `eq` accepts; copies its shard
    /// first if shared and the entry is there.
    fn remove(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<T> {
        let shard = &mut self.shards[Self::shard(hash)];
        shard.find(hash, &mut eq)?;
        let (value, _) = Arc::make_mut(shard).find_entry(hash, eq).ok()?.remove();
        self.len -= 1;
        Some(value)
    }

    /// The entry under `hash` that `eq` accepts, to change in place.
    fn find_mut(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        let shard = &mut self.shards[Self::shard(hash)];
        shard.find(hash, &mut eq)?;
        Arc::make_mut(shard).find_mut(hash, eq)
    }
}

/// Counts by key (namespaces, verified pod addresses), on a [`Table`].
#[derive(Debug, Clone)]
struct Counts<K>(Table<(K, usize)>);

impl<K: Eq + Hash + Clone> Counts<K> {
    fn new() -> Counts<K> {
        Counts(Table::new())
    }

    fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        let hash = self.0.hash(key);
        self.0.find(hash, |(k, _)| k.borrow() == key).is_some()
    }

    /// Adds one to `key`'s count.
    fn add(&mut self, key: K) {
        let hash = self.0.hash(&key);
        if let Some((_, n)) = self.0.find_mut(hash, |(k, _)| *k == key) {
            *n += 1;
            return;
        }
        let hasher = self.0.hasher.clone();
        self.0.insert(hash, (key, 1), |(k, _)| hasher.hash_one(k));
    }

    /// Takes one from `key`'s count, forgetting the key at zero.
    fn sub(&mut self, key: &K) {
        let hash = self.0.hash(key);
        match self.0.find_mut(hash, |(k, _)| k == key) {
            Some((_, n)) if *n > 1 => *n -= 1,
            Some(_) => {
                self.0.remove(hash, |(k, _)| k == key);
            }
            None => {}
        }
    }
}

/// The spec version served at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// Annotation that, like `publishNotReadyAddresses`, publishes endpoints that
/// are not ready (the spec's definition of "ready" names it).
const TOLERATE_UNREADY: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// Which `a-b-c-d.<ns>.pod.<zone>` queries are answered (CoreDNS `pods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodRecords {
    /// Never: every pod query is NXDOMAIN (the CoreDNS default).
    #[default]
    Disabled,
    /// Any well-formed dashed address is answered without checking that a
    /// pod has it (kube-dns compatibility).
    Insecure,
    /// Only addresses that an endpoint of a Service in that namespace has
    /// (from the EndpointSlices in the table, with a Pod `targetRef`).
    Verified,
}

/// What the zone is built with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The cluster domain, e.g. `cluster.local` (no trailing dot needed).
    pub domain: String,
    /// TTL of every record served, in seconds.
    pub ttl: u32,
    /// Pod record mode.
    pub pods: PodRecords,
    /// Address of this server, published as `ns.dns.<zone>` (the apex NS
    /// target), when it is a specific address.
    pub ns_address: Option<IpAddr>,
}

/// Error building a zone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster domain is not a valid DNS name.
    #[error("cluster domain {domain:?} is not a valid DNS name: {reason}")]
    Domain {
        /// The domain given.
        domain: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The outcome of a lookup in the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name exists and has records of the type asked for.
    Answer {
        /// Answer section.
        answers: Vec<Record>,
        /// Additional section (addresses of SRV/NS targets).
        additionals: Vec<Record>,
    },
    /// The name is an alias (ExternalName): the CNAME, then the target's
    /// records of the asked type, which may be outside the zone.
    Alias {
        /// The CNAME record.
        cname: Box<Record>,
        /// Its target.
        target: Name,
    },
    /// The name exists but has no record of this type (NOERROR, empty
    /// answer, SOA in authority).
    NoData,
    /// The name does not exist (NXDOMAIN, SOA in authority).
    NxDomain,
    /// A reverse name the zone has no PTR for: not ours to deny, so it goes
    /// to the upstream resolvers (CoreDNS `fallthrough in-addr.arpa ip6.arpa`).
    ReverseMiss,
    /// The name is outside the zone and the reverse zones.
    Outside,
}

/// One PTR record's source: a service's ClusterIP, or one of its
/// published endpoints. The address and the target name are read from the
/// service itself, so an entry is a pointer and an index.
#[derive(Debug, Clone)]
struct PtrTarget {
    service: Arc<Service>,
    /// Index into `cluster_ips`, or into `endpoints` when `endpoint`.
    index: u32,
    endpoint: bool,
}

impl PtrTarget {
    fn address(&self) -> IpAddr {
        if self.endpoint {
            self.service.endpoints[self.index as usize].address
        } else {
            self.service.cluster_ips[self.index as usize]
        }
    }
}

/// What kind of records a service name has.
enum Kind<'a> {
    ClusterIp(&'a [IpAddr]),
    Headless,
    ExternalName(&'a str),
}

fn kind(service: &Service) -> Kind<'_> {
    match service.service_type {
        // Validated when filed: an ExternalName service without a name is
        // not in the zone.
        ServiceType::ExternalName => Kind::ExternalName(
            service
                .external_name
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('.'),
        ),
        _ if service.headless || service.cluster_ips.is_empty() => Kind::Headless,
        _ => Kind::ClusterIp(&service.cluster_ips),
    }
}

/// The zone: built from settings, kept current with [`Builder::apply`].
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    origin_labels: usize,
    /// `origin` in wire form, for the fast path's comparison and the
    /// length of names under it.
    origin_wire: Box<[u8]>,
    ttl: u32,
    pods: PodRecords,
    soa: Record,
    ns: Record,
    ns_glue: Option<Record>,
    version: Record,
    /// Services with records, found by the hash of their lower-case
    /// (name, namespace) ([`Zone::service_hash`]).
    services: Table<Arc<Service>>,
    /// Namespace -> number of services in it (`<ns>.svc.<zone>` exists
    /// while it has one).
    namespaces: Counts<Arc<str>>,
    /// PTR sources by the hash of their address (several services can
    /// publish the same endpoint address: one entry each).
    reverse: Table<PtrTarget>,
    /// (namespace, pod address) -> count, for verified pod records; empty
    /// in the other modes.
    pod_addresses: Counts<(Arc<str>, IpAddr)>,
}

/// Keeps a [`Zone`] current with the [`ServiceTable`] snapshots.
#[derive(Debug)]
pub struct Builder {
    zone: Zone,
    /// The services of the last table applied (an O(1) clone of its
    /// persistent map), to find changes.
    seen: Services,
    generation: Option<u64>,
}

impl Builder {
    /// A builder of an empty zone.
    pub fn new(settings: &Settings) -> Result<Builder, Error> {
        Ok(Builder {
            zone: Zone::new(settings)?,
            seen: Services::new(),
            generation: None,
        })
    }

    /// The zone as of the last [`Builder::apply`].
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Brings the zone up to `table`, re-filing only what changed.
    /// Returns the number of services added, changed or removed.
    pub fn apply(&mut self, table: &ServiceTable) -> usize {
        // From the table's change history when it reaches back to the last
        // table applied (always after a consecutive snapshot); else every
        // service whose Arc differs from what the zone holds.
        let keys: Vec<ServiceKey> = match self.generation.and_then(|g| table.changed_since(g)) {
            Some(keys) => keys,
            None => {
                let mut keys: Vec<ServiceKey> = Vec::new();
                for (key, service) in &table.services {
                    if !self.seen.get(key).is_some_and(|s| Arc::ptr_eq(s, service)) {
                        keys.push(key.clone());
                    }
                }
                keys.extend(
                    self.seen
                        .keys()
                        .filter(|k| !table.services.contains_key(k))
                        .cloned(),
                );
                keys
            }
        };
        let mut touched = 0;
        for key in keys {
            let new = table.services.get(&key);
            let old = self.seen.get(&key);
            match (new, old) {
                (Some(a), Some(b)) if Arc::ptr_eq(a, b) => continue,
                (None, None) => continue,
                _ => {}
            }
            touched += 1;
            if let Some(old) = old {
                self.zone.remove(old);
            }
            if let Some(service) = new {
                self.zone.insert(service);
            }
        }
        if touched > 0 {
            self.zone.bump_serial();
        }
        self.seen = table.services.clone();
        self.generation = Some(table.generation);
        touched
    }
}
impl Zone {
    /// An empty zone.
    pub fn new(settings: &Settings) -> Result<Zone, Error> {
        let domain = settings.domain.trim_end_matches('.');
        let bad = |reason: String| Error::Domain {
            domain: settings.domain.clone(),
            reason,
        };
        let mut origin = Name::from_ascii(domain)
            .map_err(|e| bad(e.to_string()))?
            .to_lowercase();
        origin.set_fqdn(true);
        if origin.is_root() {
            return Err(bad("the root cannot be the cluster domain".into()));
        }
        let child = |label: &str| -> Result<Name, Error> {
            Name::from_ascii(label)
                .and_then(|l| l.append_domain(&origin))
                .map_err(|e| bad(format!("{label}.{domain} is too long: {e}")))
        };
        let ns_name = child("ns.dns")?;
        let ttl = settings.ttl;
        // CoreDNS's SOA: mname ns.dns.<zone>, rname hostmaster.<zone>,
        // refresh 7200, retry 1800, expire 86400, minimum = the TTL, so
        // negative answers are cached no longer than positive ones.
        let serial = 1;
        let soa = Record::from_rdata(
            origin.clone(),
            ttl,
            RData::SOA(SOA::new(
                ns_name.clone(),
                child("hostmaster")?,
                serial,
                7200,
                1800,
                86400,
                ttl,
            )),
        );
        let ns = Record::from_rdata(origin.clone(), ttl, RData::NS(rdata::NS(ns_name.clone())));
        let ns_glue = settings
            .ns_address
            .filter(|a| !a.is_unspecified())
            .map(|a| address_record(ns_name.clone(), ttl, a));
        let version = Record::from_rdata(
            child("dns-version")?,
            ttl,
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
        );
        Ok(Zone {
            origin_labels: origin.num_labels() as usize,
            origin_wire: origin
                .iter()
                .flat_map(|label| {
                    // A label is at most 63 bytes (hickory checked it).
                    std::iter::once(label.len() as u8).chain(label.iter().copied())
                })
                .chain([0])
                .collect(),
            origin,
            ttl,
            pods: settings.pods,
            soa,
            ns,
            ns_glue,
            version,
            services: Table::new(),
            namespaces: Counts::new(),
            reverse: Table::new(),
            pod_addresses: Counts::new(),
        })
    }

    /// The zone apex, e.g. `cluster.local.`.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA record, for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The apex in wire form (lower case, with the root's zero byte).
    pub(crate) fn origin_wire(&self) -> &[u8] {
        &self.origin_wire
    }

    /// Number of labels of the apex.
    pub(crate) fn origin_label_count(&self) -> usize {
        self.origin_labels
    }

    /// TTL of every record.
    pub(crate) fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The ClusterIPs of `<svc>.<ns>` (lower-case labels) when it is a
    /// ClusterIP service with records: what the fast path answers.
    pub(crate) fn cluster_ips(&self, svc: &[u8], ns: &[u8]) -> Option<&[IpAddr]> {
        match kind(self.service(svc, ns)?) {
            Kind::ClusterIp(ips) => Some(ips),
            Kind::Headless | Kind::ExternalName(_) => None,
        }
    }

    /// Number of services with records.
    pub fn len(&self) -> usize {
        self.services.len
    }

    /// True when no service has records.
    pub fn is_empty(&self) -> bool {
        self.services.len == 0
    }

    fn bump_serial(&mut self) {
        if let RData::SOA(soa) = &self.soa.data {
            let mut next = soa.clone();
            next.increment_serial();
            self.soa = Record::from_rdata(self.origin.clone(), self.ttl, RData::SOA(next));
        }
    }

    /// Files `service` under its name and its addresses. A service whose
    /// names are not valid DNS names has no records (its namespace still
    /// exists).
    fn insert(&mut self, service: &Arc<Service>) {
        let ns: Arc<str> = service.key.namespace.as_str().into();
        self.namespaces.add(ns.clone());
        if !self.has_records(service) {
            tracing::warn!(service = %service.key, "service name is not a valid DNS name; no records");
            return;
        }
        let hasher = self.services.hasher.clone();
        let hash = key_hash(&hasher, &service.key);
        self.services
            .insert(hash, service.clone(), |s| key_hash(&hasher, &s.key));
        let hasher = self.reverse.hasher.clone();
        for target in self.ptr_targets(service) {
            let hash = hasher.hash_one(target.address());
            self.reverse
                .insert(hash, target, |t| hasher.hash_one(t.address()));
        }
        if self.pods == PodRecords::Verified {
            for (_, e) in self
                .published(service)
                .filter(|(_, e)| e.pod_name.is_some())
            {
                self.pod_addresses.add((ns.clone(), e.address));
            }
        }
    }

    /// Undoes [`Zone::insert`] of the same `service`.
    fn remove(&mut self, service: &Arc<Service>) {
        let ns: Arc<str> = service.key.namespace.as_str().into();
        self.namespaces.sub(&ns);
        let hash = key_hash(&self.services.hasher, &service.key);
        if self
            .services
            .remove(hash, |s| Arc::ptr_eq(s, service))
            .is_none()
        {
            // It had no records.
            return;
        }
        for target in self.ptr_targets(service) {
            let hash = self.reverse.hash(&target.address());
            self.reverse.remove(hash, |t| {
                Arc::ptr_eq(&t.service, service)
                    && t.index == target.index
                    && t.endpoint == target.endpoint
            });
        }
        if self.pods == PodRecords::Verified {
            for (_, e) in self
                .published(service)
                .filter(|(_, e)| e.pod_name.is_some())
            {
                self.pod_addresses.sub(&(ns.clone(), e.address));
            }
        }
    }

    /// Whether `service`'s names (and an ExternalName's target) are valid.
    fn has_records(&self, service: &Service) -> bool {
        self.service_name(service).is_some()
            && match kind(service) {
                Kind::ExternalName(target) => external_target(target).is_some(),
                Kind::ClusterIp(_) | Kind::Headless => true,
            }
    }

    /// `<svc>.<ns>.svc.<zone>.` in lower case; `None` when not a valid name.
    fn service_name(&self, service: &Service) -> Option<Name> {
        let key = &service.key;
        Some(
            Name::from_ascii(format!("{}.{}.svc", key.name, key.namespace))
                .ok()?
                .append_domain(&self.origin)
                .ok()?
                .to_lowercase(),
        )
    }

    /// The PTR records `service` publishes: one per ClusterIP, or one per
    /// published endpoint of a headless service.
    fn ptr_targets(&self, service: &Arc<Service>) -> Vec<PtrTarget> {
        let target = |index: usize, endpoint: bool| PtrTarget {
            service: service.clone(),
            // Both are far below u32::MAX: a service has a handful of
            // ClusterIPs, and discovery at most a few thousand endpoints.
            index: u32::try_from(index).unwrap_or(u32::MAX),
            endpoint,
        };
        match kind(service) {
            Kind::ClusterIp(ips) => (0..ips.len()).map(|i| target(i, false)).collect(),
            Kind::Headless => self
                .published(service)
                .map(|(i, _)| target(i, true))
                .collect(),
            Kind::ExternalName(_) => Vec::new(),
        }
    }

    /// The endpoints that have records, with their index in
    /// `service.endpoints`: ready ones (all with `publishNotReadyAddresses`)
    /// whose host name is a valid name under the service's.
    fn published<'a>(
        &self,
        service: &'a Service,
    ) -> impl Iterator<Item = (usize, &'a Endpoint)> + use<'a> {
        let all = publishes_not_ready(service);
        // `<host>.` in front of `<svc>.<ns>.svc.<zone>.`.
        let room = MAX_NAME_WIRE.saturating_sub(
            service.key.name.len() + service.key.namespace.len() + 6 + self.origin_wire.len(),
        );
        service.endpoints.iter().enumerate().filter(move |(_, e)| {
            (e.ready || all)
                && match hostname(e) {
                    Some(h) => {
                        h.len() <= 63
                            && h.len() < room
                            && h.bytes()
                                .all(|b| b.is_ascii_graphic() && b != b'.' && b != b'\\')
                    }
                    // A dashed IPv6 address is at most 39 bytes.
                    None => 39 < room,
                }
        })
    }

    /// `<host>.<svc>.<ns>.svc.<zone>.` of a published endpoint.
    fn endpoint_name(service_name: &Name, e: &Endpoint) -> Option<Name> {
        let host = match hostname(e) {
            Some(h) => h.to_ascii_lowercase(),
            None => dashed(e.address),
        };
        Name::from_ascii(&host)
            .ok()?
            .append_domain(service_name)
            .ok()
    }

    /// The name a PTR record of `target` points to.
    fn ptr_name(&self, target: &PtrTarget) -> Option<Name> {
        let name = self.service_name(&target.service)?;
        if target.endpoint {
            Zone::endpoint_name(&name, &target.service.endpoints[target.index as usize])
        } else {
            Some(name)
        }
    }

    /// Looks `name` up for `qtype`. Names compare case-insensitively; the
    /// records returned carry the zone's (lower-case) names.
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        let name = name.to_lowercase();
        if !self.origin.zone_of(&name) {
            return self.reverse_lookup(&name, qtype);
        }
        let labels: Vec<&[u8]> = name.iter().collect();
        let rel = &labels[..labels.len() - self.origin_labels];
        // Walk from the right: rel = [..., x, y] relative to the apex.
        match rel {
            [] => match qtype {
                RecordType::SOA => answer(vec![self.soa.clone()], vec![]),
                RecordType::NS => answer(
                    vec![self.ns.clone()],
                    self.ns_glue.iter().cloned().collect(),
                ),
                RecordType::ANY => answer(vec![self.soa.clone()], vec![]),
                _ => Lookup::NoData,
            },
            [b"dns-version"] => match qtype {
                RecordType::TXT | RecordType::ANY => answer(vec![self.version.clone()], vec![]),
                _ => Lookup::NoData,
            },
            [b"dns"] => Lookup::NoData,
            [b"ns", b"dns"] => match (&self.ns_glue, qtype) {
                (Some(glue), t) if t == glue.record_type() || t == RecordType::ANY => {
                    answer(vec![glue.clone()], vec![])
                }
                (Some(_), _) => Lookup::NoData,
                (None, _) => Lookup::NxDomain,
            },
            [b"svc"] => Lookup::NoData,
            [ns, b"svc"] => {
                if self.namespace_exists(ns) {
                    Lookup::NoData
                } else {
                    Lookup::NxDomain
                }
            }
            [rest @ .., svc, ns, b"svc"] => match self.service(svc, ns) {
                Some(s) => self.service_lookup(s, rest, &name, qtype),
                None => Lookup::NxDomain,
            },
            [b"pod"] if self.pods != PodRecords::Disabled => Lookup::NoData,
            [_, b"pod"] if self.pods != PodRecords::Disabled => Lookup::NoData,
            [ip, ns, b"pod"] if self.pods != PodRecords::Disabled => {
                self.pod_lookup(ip, ns, &name, qtype)
            }
            _ => Lookup::NxDomain,
        }
    }

    fn namespace_exists(&self, ns: &[u8]) -> bool {
        std::str::from_utf8(ns).is_ok_and(|ns| self.namespaces.contains(ns))
    }

    /// The service `<svc>.<ns>` (lower-case labels), if it has a name: a
    /// headless service with no published endpoint has none at all, the
    /// one NXDOMAIN the spec prescribes.
    fn service(&self, svc: &[u8], ns: &[u8]) -> Option<&Service> {
        let hash = label_hash(&self.services.hasher, svc, ns);
        let service = self.services.find(hash, |s| {
            s.key.name.as_bytes().eq_ignore_ascii_case(svc)
                && s.key.namespace.as_bytes().eq_ignore_ascii_case(ns)
        })?;
        if matches!(kind(service), Kind::Headless) && self.published(service).next().is_none() {
            return None;
        }
        Some(service)
    }

    fn service_lookup(
        &self,
        s: &Service,
        rest: &[&[u8]],
        name: &Name,
        qtype: RecordType,
    ) -> Lookup {
        let ttl = self.ttl;
        match rest {
            [] => match kind(s) {
                Kind::ExternalName(target) => {
                    // Checked when the service was filed.
                    let Some(target) = external_target(target) else {
                        return Lookup::NxDomain;
                    };
                    let cname = Record::from_rdata(
                        name.clone(),
                        ttl,
                        RData::CNAME(rdata::CNAME(target.clone())),
                    );
                    if qtype == RecordType::CNAME {
                        answer(vec![cname], vec![])
                    } else {
                        Lookup::Alias {
                            cname: Box::new(cname),
                            target,
                        }
                    }
                }
                Kind::ClusterIp(ips) => addresses(name, ttl, ips.iter().copied(), qtype),
                Kind::Headless => addresses(
                    name,
                    ttl,
                    unique(self.published(s).map(|(_, e)| e.address)),
                    qtype,
                ),
            },
            [host] => {
                if matches!(kind(s), Kind::ExternalName(_)) {
                    return Lookup::NxDomain;
                }
                let mut named = self.named(s, host).peekable();
                if named.peek().is_none() {
                    // `_tcp.<svc>...` exists while a named port uses it.
                    let protocol = |p: &ServicePort| {
                        !p.name.is_empty() && underscored(host, p.protocol.as_lower_str())
                    };
                    return if s.ports.iter().any(protocol) {
                        Lookup::NoData
                    } else {
                        Lookup::NxDomain
                    };
                }
                addresses(name, ttl, unique(named.map(|e| e.address)), qtype)
            }
            [port, proto] => {
                let ports: Vec<&ServicePort> = s
                    .ports
                    .iter()
                    .filter(|p| {
                        !p.name.is_empty()
                            && underscored(port, &p.name)
                            && underscored(proto, p.protocol.as_lower_str())
                    })
                    .collect();
                if ports.is_empty() || matches!(kind(s), Kind::ExternalName(_)) {
                    return Lookup::NxDomain;
                }
                if qtype != RecordType::SRV && qtype != RecordType::ANY {
                    return Lookup::NoData;
                }
                // Checked when the service was filed.
                let Some(fqdn) = self.service_name(s) else {
                    return Lookup::NxDomain;
                };
                let mut answers = Vec::new();
                let mut additionals = Vec::new();
                for p in ports {
                    match kind(s) {
                        Kind::ClusterIp(ips) => {
                            answers.push(srv(name, ttl, p.port, &fqdn));
                            if additionals.is_empty() {
                                additionals.extend(
                                    ips.iter().map(|ip| address_record(fqdn.clone(), ttl, *ip)),
                                );
                            }
                        }
                        Kind::Headless => {
                            for (_, e) in self.published(s) {
                                let Some(port) = e.port_for(p) else { continue };
                                let Some(target) = Zone::endpoint_name(&fqdn, e) else {
                                    continue;
                                };
                                answers.push(srv(name, ttl, port, &target));
                                let glue = address_record(target, ttl, e.address);
                                if !additionals.contains(&glue) {
                                    additionals.push(glue);
                                }
                            }
                        }
                        Kind::ExternalName(_) => {}
                    }
                }
                if answers.is_empty() {
                    return Lookup::NoData;
                }
                answer(answers, additionals)
            }
            _ => Lookup::NxDomain,
        }
    }

    /// The published endpoints of `s` whose host label is `host`: their
    /// hostname, or for those without one the dashed address.
    fn named<'a>(&self, s: &'a Service, host: &'a [u8]) -> impl Iterator<Item = &'a Endpoint> {
        // Only the canonical dashed form names an address (`10-0-0-1`,
        // not `010-0-0-1`), as the single label the zone publishes.
        let dashed_address = std::str::from_utf8(host)
            .ok()
            .and_then(parse_dashed)
            .filter(|ip| dashed(*ip).as_bytes() == host);
        self.published(s)
            .map(|(_, e)| e)
            .filter(move |e| match hostname(e) {
                Some(h) => h.as_bytes().eq_ignore_ascii_case(host),
                None => Some(e.address) == dashed_address,
            })
    }

    fn pod_lookup(&self, ip: &[u8], ns: &[u8], name: &Name, qtype: RecordType) -> Lookup {
        let Some(address) = std::str::from_utf8(ip).ok().and_then(parse_dashed) else {
            return Lookup::NxDomain;
        };
        if self.pods == PodRecords::Verified {
            let Ok(ns) = std::str::from_utf8(ns) else {
                return Lookup::NxDomain;
            };
            if !self.pod_addresses.contains(&(Arc::from(ns), address)) {
                return Lookup::NxDomain;
            }
        }
        addresses(name, self.ttl, std::iter::once(address), qtype)
    }

    fn reverse_lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        let Some(address) = parse_reverse(name) else {
            return Lookup::Outside;
        };
        let mut targets: Vec<&PtrTarget> = self
            .reverse
            .matching(self.reverse.hash(&address))
            .filter(|t| t.address() == address)
            .collect();
        if targets.is_empty() {
            return Lookup::ReverseMiss;
        }
        if qtype != RecordType::PTR && qtype != RecordType::ANY {
            return Lookup::NoData;
        }
        // The table's order is arbitrary; answers are not.
        targets.sort_by(|a, b| (&a.service.key, a.index).cmp(&(&b.service.key, b.index)));
        let mut answers: Vec<Record> = Vec::new();
        for target in targets {
            let Some(target) = self.ptr_name(target) else {
                continue;
            };
            let r = Record::from_rdata(name.clone(), self.ttl, RData::PTR(rdata::PTR(target)));
            if !answers.contains(&r) {
                answers.push(r);
            }
        }
        if answers.is_empty() {
            return Lookup::NoData;
        }
        answer(answers, vec![])
    }
}

/// The hash a service is filed under: of its lower-case name and
/// namespace, the labels a query for it carries.
fn key_hash(hasher: &foldhash::fast::RandomState, key: &ServiceKey) -> u64 {
    label_hash(
        hasher,
        lower(&key.name).as_bytes(),
        lower(&key.namespace).as_bytes(),
    )
}

fn label_hash(hasher: &foldhash::fast::RandomState, name: &[u8], namespace: &[u8]) -> u64 {
    hasher.hash_one((name, namespace))
}

/// `s` in lower case, copied only when it has an upper-case letter
/// (Kubernetes names never do; hand-built tables may).
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// The endpoint's own hostname, when it has one.
fn hostname(e: &Endpoint) -> Option<&str> {
    e.hostname.as_deref().filter(|h| !h.is_empty())
}

/// `spec.publishNotReadyAddresses`, or the older annotation meaning the same.
fn publishes_not_ready(service: &Service) -> bool {
    service.publish_not_ready_addresses
        || service
            .annotations
            .get(TOLERATE_UNREADY)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The fully qualified target of an ExternalName; `None` when invalid.
fn external_target(target: &str) -> Option<Name> {
    if target.is_empty() {
        return None;
    }
    let mut name = Name::from_ascii(target).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// Whether the label `label` is `_<name>` (case-insensitively).
fn underscored(label: &[u8], name: &str) -> bool {
    label
        .split_first()
        .is_some_and(|(&first, rest)| first == b'_' && rest.eq_ignore_ascii_case(name.as_bytes()))
}

fn answer(answers: Vec<Record>, additionals: Vec<Record>) -> Lookup {
    Lookup::Answer {
        answers,
        additionals,
    }
}

fn unique(ips: impl Iterator<Item = IpAddr>) -> impl Iterator<Item = IpAddr> {
    let mut seen = Vec::new();
    ips.filter(move |ip| {
        if seen.contains(ip) {
            false
        } else {
            seen.push(*ip);
            true
        }
    })
}

/// A/AAAA answers for `name` from `ips`, or NODATA when none is of the type.
fn addresses(
    name: &Name,
    ttl: u32,
    ips: impl Iterator<Item = IpAddr>,
    qtype: RecordType,
) -> Lookup {
    let answers: Vec<Record> = ips
        .filter(|ip| match qtype {
            RecordType::A => ip.is_ipv4(),
            RecordType::AAAA => ip.is_ipv6(),
            // RFC 8482: one RRset is a complete answer to ANY.
            RecordType::ANY => true,
            _ => false,
        })
        .map(|ip| address_record(name.clone(), ttl, ip))
        .collect();
    let answers = if qtype == RecordType::ANY {
        let first = answers.first().map(Record::record_type);
        answers
            .into_iter()
            .filter(|r| Some(r.record_type()) == first)
            .collect()
    } else {
        answers
    };
    if answers.is_empty() {
        Lookup::NoData
    } else {
        answer(answers, vec![])
    }
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(rdata::A(v4)),
        IpAddr::V6(v6) => RData::AAAA(rdata::AAAA(v6)),
    };
    Record::from_rdata(name, ttl, data)
}

fn srv(name: &Name, ttl: u32, port: u16, target: &Name) -> Record {
    // Priority 0, weight 100: what CoreDNS serves (the spec's example uses
    // 10 100 and leaves the values to the implementation); one weight for
    // every target spreads load evenly.
    Record::from_rdata(
        name.clone(),
        ttl,
        RData::SRV(SRV::new(0, 100, port, target.clone())),
    )
}

/// `10.3.0.100` -> `10-3-0-100`; IPv6 `2001:db8::1` -> `2001-db8--1`.
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The inverse of [`dashed`].
pub fn parse_dashed(label: &str) -> Option<IpAddr> {
    if label.len() > 39 {
        return None;
    }
    let v4 = label.replace('-', ".");
    if let Ok(ip) = v4.parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(ip));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The address of a lower-case `in-addr.arpa.` / `ip6.arpa.` name, when it
/// names one whole address.
fn parse_reverse(name: &Name) -> Option<IpAddr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    match labels.as_slice() {
        [d, c, b, a, b"in-addr", b"arpa"] => {
            let octet = |l: &[u8]| -> Option<u8> {
                let s = std::str::from_utf8(l).ok()?;
                // No leading zeros: "01" is not the name of 1.
                if s.len() > 1 && s.starts_with('0') {
                    return None;
                }
                s.parse().ok()
            };
            Some(IpAddr::V4(Ipv4Addr::new(
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            )))
        }
        [nibbles @ .., b"ip6", b"arpa"] if nibbles.len() == 32 => {
            let mut value: u128 = 0;
            for n in nibbles.iter().rev() {
                let [c] = n else { return None };
                let digit = (*c as char).to_digit(16)?;
                value = (value << 4) | u128::from(digit);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
