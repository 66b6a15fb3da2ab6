//! The builder follows table snapshots incrementally.

use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};
use switchboard_discovery::{ServiceKey, ServiceTable, ServiceType};

use super::*;
use crate::handler::tests::{endpoint, service, settings, spec_table};

fn a(zone: &Zone, name: &str) -> Lookup {
    zone.lookup(&Name::from_ascii(name).unwrap(), RecordType::A)
}

fn next(table: &ServiceTable, changes: Vec<(ServiceKey, Option<Service>)>) -> ServiceTable {
    let mut t = table.clone();
    t.changed.clear();
    for (key, s) in changes {
        match s {
            Some(s) => t.services.insert(key.clone(), Arc::new(s)),
            None => t.services.remove(&key),
        };
        t.changed.push(key);
    }
    t.generation += 1;
    t
}

#[test]
fn only_changed_services_are_recompiled() {
    let t1 = spec_table();
    let mut b = Builder::new(&settings()).unwrap();
    assert_eq!(b.apply(&t1), t1.services.len());
    // Re-applying the same snapshot touches nothing.
    assert_eq!(b.apply(&t1), 0);

    let key = ServiceKey::new("default", "kubernetes");
    let mut k = (*t1.services[&key]).clone();
    k.cluster_ips = vec!["10.3.0.9".parse().unwrap()];
    let t2 = next(&t1, vec![(key.clone(), Some(k))]);
    assert_eq!(b.apply(&t2), 1);
    let Lookup::Answer { answers, .. } = a(b.zone(), "kubernetes.default.svc.cluster.local.")
    else {
        panic!()
    };
    assert_eq!(answers[0].data.to_string(), "10.3.0.9");
    // The old PTR is gone, the new one is there.
    let ptr = |zone: &Zone, n: &str| zone.lookup(&Name::from_ascii(n).unwrap(), RecordType::PTR);
    assert!(matches!(
        ptr(b.zone(), "9.0.3.10.in-addr.arpa."),
        Lookup::Answer { .. }
    ));
    let Lookup::Answer { answers, .. } = ptr(b.zone(), "1.0.3.10.in-addr.arpa.") else {
        panic!()
    };
    // 10.3.0.1 is still a headless endpoint.
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].data.to_string(),
        "10-3-0-1.headless.default.svc.cluster.local."
    );

    // Removal.
    let t3 = next(&t2, vec![(key, None)]);
    assert_eq!(b.apply(&t3), 1);
    assert_eq!(
        a(b.zone(), "kubernetes.default.svc.cluster.local."),
        Lookup::NxDomain
    );
}

#[test]
fn skipped_snapshots_are_diffed_by_pointer() {
    let t1 = spec_table();
    let mut b = Builder::new(&settings()).unwrap();
    b.apply(&t1);
    let key = ServiceKey::new("default", "v6");
    let t2 = next(&t1, vec![(key.clone(), None)]);
    let mut t3 = next(&t2, vec![]);
    t3.generation += 5;
    // t2 never applied: the builder finds the removal by comparing.
    assert_eq!(b.apply(&t3), 1);
    let zone = b.zone();
    let q = zone.lookup(
        &Name::from_ascii("v6.default.svc.cluster.local.").unwrap(),
        RecordType::AAAA,
    );
    assert_eq!(q, Lookup::NxDomain);
}

#[test]
fn skipped_snapshots_are_caught_up_from_the_history() {
    let t1 = spec_table();
    let mut b = Builder::new(&settings()).unwrap();
    b.apply(&t1);
    let key = ServiceKey::new("default", "v6");
    let t2 = next(&t1, vec![(key.clone(), None)]);
    let mut t3 = next(&t2, vec![]);
    // What discovery's cache records: t2's change, carried by t3.
    t3.history = vec![switchboard_discovery::PastChange {
        generation: t2.generation,
        keys: Some(vec![key].into()),
    }]
    .into();
    assert_eq!(t3.changed_since(t1.generation).map(|k| k.len()), Some(1));
    assert_eq!(b.apply(&t3), 1);
    let q = b.zone().lookup(
        &Name::from_ascii("v6.default.svc.cluster.local.").unwrap(),
        RecordType::AAAA,
    );
    assert_eq!(q, Lookup::NxDomain);
}

#[test]
fn an_endpoint_becoming_ready_publishes_the_headless_address() {
    let t1 = spec_table();
    let mut b = Builder::new(&settings()).unwrap();
    b.apply(&t1);
    assert_eq!(
        a(b.zone(), "empty.default.svc.cluster.local."),
        Lookup::NxDomain
    );
    let key = ServiceKey::new("default", "empty");
    let mut s = (*t1.services[&key]).clone();
    s.endpoints = vec![endpoint("10.3.0.50", Some("down"), true, &[("http", 80)])];
    b.apply(&next(&t1, vec![(key, Some(s))]));
    let Lookup::Answer { answers, .. } = a(b.zone(), "empty.default.svc.cluster.local.") else {
        panic!()
    };
    assert_eq!(answers[0].data.to_string(), "10.3.0.50");
    assert!(matches!(
        a(b.zone(), "down.empty.default.svc.cluster.local."),
        Lookup::Answer { .. }
    ));
}

#[test]
fn external_name_to_cluster_ip_is_reflected() {
    let t1 = spec_table();
    let mut b = Builder::new(&settings()).unwrap();
    b.apply(&t1);
    assert!(matches!(
        a(b.zone(), "foo.default.svc.cluster.local."),
        Lookup::Alias { .. }
    ));
    let key = ServiceKey::new("default", "foo");
    let mut s = service("default", "foo");
    s.service_type = ServiceType::ClusterIp;
    s.cluster_ips = vec!["10.3.0.77".parse().unwrap()];
    b.apply(&next(&t1, vec![(key, Some(s))]));
    let Lookup::Answer { answers, .. } = a(b.zone(), "foo.default.svc.cluster.local.") else {
        panic!()
    };
    assert_eq!(answers[0].data.to_string(), "10.3.0.77");
}

#[test]
fn the_soa_serial_moves_with_changes() {
    let t1 = spec_table();
    let mut b = Builder::new(&settings()).unwrap();
    let serial = |z: &Zone| match &z.soa().data {
        RData::SOA(s) => s.serial,
        _ => panic!(),
    };
    b.apply(&t1);
    let s1 = serial(b.zone());
    b.apply(&t1);
    assert_eq!(serial(b.zone()), s1);
    b.apply(&next(&t1, vec![(ServiceKey::new("default", "v6"), None)]));
    assert!(serial(b.zone()) > s1);
}

#[test]
fn a_namespace_exists_while_it_has_a_service() {
    let t1 = spec_table();
    let mut b = Builder::new(&settings()).unwrap();
    b.apply(&t1);
    assert_eq!(a(b.zone(), "other.svc.cluster.local."), Lookup::NoData);
    b.apply(&next(
        &t1,
        vec![(ServiceKey::new("other", "unready"), None)],
    ));
    assert_eq!(a(b.zone(), "other.svc.cluster.local."), Lookup::NxDomain);
}

#[test]
fn a_bad_cluster_domain_is_an_error_naming_it() {
    let mut s = settings();
    s.domain = ".".into();
    let e = Zone::new(&s).unwrap_err().to_string();
    assert!(e.contains("\".\""), "{e}");
    s.domain = "a..b".into();
    assert!(Zone::new(&s).is_err());
}

#[test]
fn sharded_table_is_copy_on_write() {
    let mut m: Counts<Arc<str>> = Counts::new();
    for i in 0..1000 {
        m.add(format!("svc-{i}.ns").into());
    }
    m.add("svc-1.ns".into());
    assert_eq!(
        m.0.len, 1000,
        "counting a key again does not grow the table"
    );
    let published = m.clone();
    m.sub(&"svc-7.ns".into());
    m.sub(&"absent.ns".into());
    m.sub(&"svc-1.ns".into());
    assert_eq!(m.0.len, 999);
    assert!(!m.contains("svc-7.ns"));
    assert!(m.contains("svc-1.ns"), "counted twice, taken once");
    assert!(
        published.contains("svc-7.ns"),
        "a published clone is unaffected"
    );
    assert_eq!(published.0.len, 1000);
    let shared = published
        .0
        .shards
        .iter()
        .zip(&m.0.shards)
        .filter(|(a, b)| Arc::ptr_eq(a, b))
        .count();
    assert!(
        shared >= SHARDS - 2,
        "only the touched shards were copied ({shared} shared)"
    );
}

#[test]
fn the_zone_shares_the_tables_services() {
    let t = spec_table();
    let mut b = Builder::new(&settings()).unwrap();
    b.apply(&t);
    let key = ServiceKey::new("default", "kubernetes");
    let before = Arc::strong_count(&t.services[&key]);
    let zone = b.zone().clone();
    assert_eq!(
        Arc::strong_count(&t.services[&key]),
        before,
        "a published zone copies pointers to shards, not services"
    );
    drop(zone);
    drop(b);
    assert!(Arc::strong_count(&t.services[&key]) < before);
}

#[test]
fn an_address_published_by_two_services_has_both_ptrs_until_one_goes() {
    let t1 = spec_table();
    let mut b = Builder::new(&settings()).unwrap();
    b.apply(&t1);
    // A second headless service selecting the endpoint 10.3.0.1 too.
    let mut other = (*t1.services[&ServiceKey::new("default", "headless")]).clone();
    other.key = ServiceKey::new("default", "mirror");
    let key = other.key.clone();
    let t2 = next(&t1, vec![(key.clone(), Some(other))]);
    b.apply(&t2);
    let ptr_targets = |zone: &Zone| -> Vec<String> {
        let name = Name::from_ascii("1.0.3.10.in-addr.arpa.").unwrap();
        let Lookup::Answer { answers, .. } = zone.lookup(&name, RecordType::PTR) else {
            panic!("no PTR for 10.3.0.1")
        };
        answers.iter().map(|r| r.data.to_string()).collect()
    };
    assert_eq!(
        ptr_targets(b.zone()),
        [
            "10-3-0-1.headless.default.svc.cluster.local.",
            // The ClusterIP of `kubernetes` in the spec's table.
            "kubernetes.default.svc.cluster.local.",
            "10-3-0-1.mirror.default.svc.cluster.local.",
        ]
    );
    let t3 = next(&t2, vec![(key, None)]);
    b.apply(&t3);
    assert_eq!(
        ptr_targets(b.zone()),
        [
            "10-3-0-1.headless.default.svc.cluster.local.",
            "kubernetes.default.svc.cluster.local.",
        ]
    );
}
