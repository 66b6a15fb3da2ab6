//! The cluster zone: every record the Kubernetes DNS spec 1.1.0 defines,
//! compiled from a [`ServiceTable`] into hash maps so that a lookup is a
//! hash lookup and a few small copies.
//!
//! The zone is rebuilt incrementally: [`Builder::apply`] recompiles only the
//! services listed in [`ServiceTable::changed`] (or, when snapshots were
//! skipped, the services whose `Arc` differs from the last one seen).
//! The zone's maps are split into [`SHARDS`] copy-on-write hash maps, so
//! publishing a snapshot copies one pointer per shard and an update copies
//! only the shards it touches (1/256 of the zone each): with 100k services
//! a whole hash map clone per update cost 20 ms and a second copy of every
//! map while the old snapshot was still being read. Lookups stay one hash
//! map probe; a persistent hash trie (tried first) made the lookup 18% of
//! the server's CPU at 100k services, its pointer chase missing the cache.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::rdata::{self, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use switchboard_discovery::{Service, ServiceKey, ServiceTable, ServiceType, Services};

/// Shards of a [`Map`].
const SHARDS: usize = 256;

/// A copy-on-write map in [`SHARDS`] shared shards (see the module docs).
/// foldhash, not SipHash: the keys are names and addresses of the
/// cluster's own objects (a client's query cannot choose where they sit),
/// and a lookup is on every query's path.
#[derive(Debug, Clone)]
struct Map<K, V> {
    hasher: foldhash::fast::RandomState,
    shards: Vec<Arc<HashMap<K, V, foldhash::fast::RandomState>>>,
    len: usize,
}

fn map<K, V>() -> Map<K, V> {
    let hasher = foldhash::fast::RandomState::default();
    Map {
        shards: (0..SHARDS)
            .map(|_| Arc::new(HashMap::with_hasher(hasher.clone())))
            .collect(),
        hasher,
        len: 0,
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Map<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // Middle bits: hashbrown indexes each shard by the low bits of the
        // same hash and filters by the top seven.
        (self.hasher.hash_one(key) >> 32) as usize % SHARDS
    }

    fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.shards[self.shard(key)].get(key)
    }

    fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// Sets `key`; copies its shard first if a published snapshot shares it.
    fn insert_mut(&mut self, key: K, value: V) {
        let i = self.shard(&key);
        if Arc::make_mut(&mut self.shards[i])
            .insert(key, value)
            .is_none()
        {
            self.len += 1;
        }
    }

    /// Removes `key`; copies its shard first if shared and the key is there.
    fn remove_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        let i = self.shard(key);
        if self.shards[i].contains_key(key) {
            Arc::make_mut(&mut self.shards[i]).remove(key);
            self.len -= 1;
        }
    }

    fn size(&self) -> usize {
        self.len
    }
}

/// Adds `delta` to the count at `key`, removing the key at zero.
fn count<K: Eq + Hash + Clone>(m: &mut Map<K, usize>, key: K, delta: isize) {
    let n = m
        .get(&key)
        .copied()
        .unwrap_or(0)
        .saturating_add_signed(delta);
    if n == 0 {
        m.remove_mut(&key);
    } else {
        m.insert_mut(key, n);
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

/// PTR targets of one address (several services can publish one address).
type PtrTargets = Arc<Vec<PtrTarget>>;

/// One PTR target: the service's own name, or the host name of one of its
/// endpoints. It points into the compiled service rather than holding a
/// copy of the name: a name is about 130 bytes, once per service already.
#[derive(Debug, Clone)]
struct PtrTarget {
    /// `"<svc>.<ns>"` of the service publishing it.
    owner: Arc<str>,
    service: Arc<Compiled>,
    /// Index into the service's endpoints; `None` for its ClusterIP.
    endpoint: Option<usize>,
}

impl PtrTarget {
    fn name(&self) -> &Name {
        match self.endpoint {
            Some(i) => &self.service.endpoints[i].fqdn,
            None => &self.service.fqdn,
        }
    }
}

/// One compiled Service: its names relative to the zone and its records.
#[derive(Debug)]
struct Compiled {
    /// `<svc>.<ns>.svc.<zone>.`
    fqdn: Name,
    kind: Kind,
    /// Named ports: (lower-case `_<name>`, `_<proto>`, port on the ClusterIP).
    ports: Vec<NamedPort>,
    /// Endpoints that are published (ready, or all with
    /// `publishNotReadyAddresses`), in the table's order.
    endpoints: Vec<PublishedEndpoint>,
    /// Endpoint host label -> indices into `endpoints`.
    hosts: HashMap<String, Vec<usize>>,
}

#[derive(Debug)]
enum Kind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    ExternalName(Name),
}

#[derive(Debug)]
struct NamedPort {
    name: String,
    protocol: String,
    port: u16,
    /// The matching port on each published endpoint (same order), for
    /// headless SRV records.
    endpoint_ports: Vec<Option<u16>>,
}

#[derive(Debug)]
struct PublishedEndpoint {
    address: IpAddr,
    /// `<host>.<svc>.<ns>.svc.<zone>.`
    fqdn: Name,
    /// Whether the endpoint is a Pod (for verified pod records).
    is_pod: bool,
}

/// The zone: built from settings, kept current with [`Zone::apply`].
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    origin_labels: usize,
    ttl: u32,
    pods: PodRecords,
    soa: Record,
    ns: Record,
    ns_glue: Option<Record>,
    version: Record,
    /// `"<svc>.<ns>"` -> compiled service.
    services: Map<Arc<str>, Arc<Compiled>>,
    /// Namespace -> number of services in it (`<ns>.svc.<zone>` exists
    /// while it has one).
    namespaces: Map<Arc<str>, usize>,
    /// Reverse map: address -> PTR targets (several services can publish
    /// the same endpoint address).
    reverse: Map<IpAddr, PtrTargets>,
    /// (namespace, pod address) -> count, for verified pod records.
    pod_addresses: Map<(Arc<str>, IpAddr), usize>,
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

    /// Brings the zone up to `table`, recompiling only what changed.
    /// Returns the number of services recompiled or removed.
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
            origin,
            ttl,
            pods: settings.pods,
            soa,
            ns,
            ns_glue,
            version,
            services: map(),
            namespaces: map(),
            reverse: map(),
            pod_addresses: map(),
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

    /// Number of services compiled.
    pub fn len(&self) -> usize {
        self.services.size()
    }

    /// True when no service is compiled.
    pub fn is_empty(&self) -> bool {
        self.services.size() == 0
    }

    fn bump_serial(&mut self) {
        if let RData::SOA(soa) = &self.soa.data {
            let mut next = soa.clone();
            next.increment_serial();
            self.soa = Record::from_rdata(self.origin.clone(), self.ttl, RData::SOA(next));
        }
    }

    fn remove(&mut self, service: &Service) {
        let key = &service.key;
        let id: Arc<str> = service_id(&service.key).into();
        let ns: Arc<str> = key.namespace.as_str().into();
        if let Some(compiled) = self.services.get(&id).cloned() {
            self.services.remove_mut(&id);
            for (address, _) in compiled.ptr_targets() {
                let Some(mut list) = self.reverse.get(&address).cloned() else {
                    continue;
                };
                Arc::make_mut(&mut list).retain(|t| t.owner != id);
                if list.is_empty() {
                    self.reverse.remove_mut(&address);
                } else {
                    self.reverse.insert_mut(address, list);
                }
            }
            for e in compiled.endpoints.iter().filter(|e| e.is_pod) {
                count(&mut self.pod_addresses, (ns.clone(), e.address), -1);
            }
        }
        count(&mut self.namespaces, ns, -1);
    }

    fn insert(&mut self, service: &Service) {
        let ns: Arc<str> = service.key.namespace.as_str().into();
        count(&mut self.namespaces, ns.clone(), 1);
        let Some(compiled) = compile(service, &self.origin) else {
            tracing::warn!(service = %service.key, "service name is not a valid DNS name; no records");
            return;
        };
        let id: Arc<str> = service_id(&service.key).into();
        let compiled = Arc::new(compiled);
        for (address, endpoint) in compiled.ptr_targets() {
            let mut list = self.reverse.get(&address).cloned().unwrap_or_default();
            Arc::make_mut(&mut list).push(PtrTarget {
                owner: id.clone(),
                service: compiled.clone(),
                endpoint,
            });
            self.reverse.insert_mut(address, list);
        }
        for e in compiled.endpoints.iter().filter(|e| e.is_pod) {
            count(&mut self.pod_addresses, (ns.clone(), e.address), 1);
        }
        self.services.insert_mut(id, compiled);
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
                Some(c) => self.service_lookup(c, rest, &name, qtype),
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
        std::str::from_utf8(ns).is_ok_and(|ns| self.namespaces.contains_key(ns))
    }

    fn service(&self, svc: &[u8], ns: &[u8]) -> Option<&Compiled> {
        let (svc, ns) = (
            std::str::from_utf8(svc).ok()?,
            std::str::from_utf8(ns).ok()?,
        );
        let compiled = self.services.get(format!("{svc}.{ns}").as_str())?;
        // A headless service with no published endpoint has no name at all:
        // the one NXDOMAIN the spec prescribes.
        if matches!(compiled.kind, Kind::Headless) && compiled.endpoints.is_empty() {
            return None;
        }
        Some(compiled)
    }

    fn service_lookup(
        &self,
        c: &Compiled,
        rest: &[&[u8]],
        name: &Name,
        qtype: RecordType,
    ) -> Lookup {
        let ttl = self.ttl;
        match rest {
            [] => match &c.kind {
                Kind::ExternalName(target) => {
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
                            target: target.clone(),
                        }
                    }
                }
                Kind::ClusterIp(ips) => addresses(name, ttl, ips.iter().copied(), qtype),
                Kind::Headless => addresses(
                    name,
                    ttl,
                    unique(c.endpoints.iter().map(|e| e.address)),
                    qtype,
                ),
            },
            [host] => {
                if matches!(c.kind, Kind::ExternalName(_)) {
                    return Lookup::NxDomain;
                }
                let Some(idx) = std::str::from_utf8(host).ok().and_then(|h| c.hosts.get(h)) else {
                    // `_tcp.<svc>...` exists while a named port uses it.
                    return if host.starts_with(b"_")
                        && c.ports.iter().any(|p| p.protocol.as_bytes() == *host)
                    {
                        Lookup::NoData
                    } else {
                        Lookup::NxDomain
                    };
                };
                addresses(
                    name,
                    ttl,
                    unique(idx.iter().map(|&i| c.endpoints[i].address)),
                    qtype,
                )
            }
            [port, proto] => {
                let ports: Vec<&NamedPort> = c
                    .ports
                    .iter()
                    .filter(|p| p.name.as_bytes() == *port && p.protocol.as_bytes() == *proto)
                    .collect();
                if ports.is_empty() || matches!(c.kind, Kind::ExternalName(_)) {
                    return Lookup::NxDomain;
                }
                if qtype != RecordType::SRV && qtype != RecordType::ANY {
                    return Lookup::NoData;
                }
                let mut answers = Vec::new();
                let mut additionals = Vec::new();
                for p in ports {
                    match &c.kind {
                        Kind::ClusterIp(ips) => {
                            answers.push(srv(name, ttl, p.port, &c.fqdn));
                            if additionals.is_empty() {
                                additionals.extend(
                                    ips.iter()
                                        .map(|ip| address_record(c.fqdn.clone(), ttl, *ip)),
                                );
                            }
                        }
                        Kind::Headless => {
                            for (e, port) in c.endpoints.iter().zip(&p.endpoint_ports) {
                                let Some(port) = port else { continue };
                                answers.push(srv(name, ttl, *port, &e.fqdn));
                                let glue = address_record(e.fqdn.clone(), ttl, e.address);
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

    fn pod_lookup(&self, ip: &[u8], ns: &[u8], name: &Name, qtype: RecordType) -> Lookup {
        let Some(address) = std::str::from_utf8(ip).ok().and_then(parse_dashed) else {
            return Lookup::NxDomain;
        };
        if self.pods == PodRecords::Verified {
            let Ok(ns) = std::str::from_utf8(ns) else {
                return Lookup::NxDomain;
            };
            if !self.pod_addresses.contains_key(&(Arc::from(ns), address)) {
                return Lookup::NxDomain;
            }
        }
        addresses(name, self.ttl, std::iter::once(address), qtype)
    }

    fn reverse_lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        let Some(address) = parse_reverse(name) else {
            return Lookup::Outside;
        };
        match self.reverse.get(&address) {
            Some(targets) if qtype == RecordType::PTR || qtype == RecordType::ANY => {
                let mut answers: Vec<Record> = Vec::new();
                for target in targets.iter() {
                    let r = Record::from_rdata(
                        name.clone(),
                        self.ttl,
                        RData::PTR(rdata::PTR(target.name().clone())),
                    );
                    if !answers.contains(&r) {
                        answers.push(r);
                    }
                }
                answer(answers, vec![])
            }
            Some(_) => Lookup::NoData,
            None => Lookup::ReverseMiss,
        }
    }
}

impl Compiled {
    /// (address, PTR target) pairs this service publishes.
    /// (address, which name) pairs this service publishes: `None` for the
    /// service's own name, else the endpoint's index.
    fn ptr_targets(&self) -> Vec<(IpAddr, Option<usize>)> {
        match &self.kind {
            Kind::ClusterIp(ips) => ips.iter().map(|ip| (*ip, None)).collect(),
            Kind::Headless => self
                .endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| (e.address, Some(i)))
                .collect(),
            Kind::ExternalName(_) => Vec::new(),
        }
    }
}

fn service_id(key: &ServiceKey) -> String {
    format!("{}.{}", key.name, key.namespace)
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

/// Compiles one service; `None` when its names are not valid DNS names.
fn compile(service: &Service, origin: &Name) -> Option<Compiled> {
    let key = &service.key;
    let fqdn = Name::from_ascii(format!("{}.{}.svc", key.name, key.namespace))
        .ok()?
        .append_domain(origin)
        .ok()?
        .to_lowercase();
    let kind = match service.service_type {
        ServiceType::ExternalName => {
            let target = service.external_name.as_deref()?.trim_end_matches('.');
            let mut name = Name::from_ascii(target).ok()?;
            name.set_fqdn(true);
            Kind::ExternalName(name)
        }
        _ if service.headless || service.cluster_ips.is_empty() => Kind::Headless,
        _ => Kind::ClusterIp(service.cluster_ips.clone()),
    };
    let publish_all = service.publish_not_ready_addresses
        || service
            .annotations
            .get(TOLERATE_UNREADY)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut endpoints = Vec::new();
    let mut hosts: HashMap<String, Vec<usize>> = HashMap::new();
    let mut published = Vec::new();
    if !matches!(kind, Kind::ExternalName(_)) {
        for e in service.endpoints.iter().filter(|e| e.ready || publish_all) {
            // The spec: the endpoint's hostname, else a unique
            // system-assigned identifier; like CoreDNS, the dashed address.
            let host = e
                .hostname
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase)
                .unwrap_or_else(|| dashed(e.address));
            let Some(efqdn) = Name::from_ascii(&host)
                .ok()
                .and_then(|h| h.append_domain(&fqdn).ok())
            else {
                continue;
            };
            hosts.entry(host).or_default().push(endpoints.len());
            published.push(e);
            endpoints.push(PublishedEndpoint {
                address: e.address,
                fqdn: efqdn,
                is_pod: e.pod_name.is_some(),
            });
        }
    }
    let ports = service
        .ports
        .iter()
        .filter(|p| !p.name.is_empty())
        .map(|p| NamedPort {
            name: format!("_{}", p.name.to_ascii_lowercase()),
            protocol: format!("_{}", p.protocol.as_lower_str()),
            port: p.port,
            endpoint_ports: published.iter().map(|e| e.port_for(p)).collect(),
        })
        .collect();
    Some(Compiled {
        fqdn,
        kind,
        ports,
        endpoints,
        hosts,
    })
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
