//! Fuzz target: the DNS query handler on arbitrary bytes, over both
//! transports. It must never panic; every reply must carry the query's id
//! and fit the transport; the worker's answer cache, primed with the
//! same query under another id, must give byte-for-byte what the handler
//! gives; and where the fast path (`switchboard_dns::fast`) answers, it
//! must answer byte-for-byte as the handler (the reference).
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use switchboard_discovery::{
    Endpoint, EndpointPort, Protocol, Service, ServiceKey, ServicePort, ServiceTable, ServiceType,
    Services,
};
use switchboard_dns::cache::AnswerCache;
use switchboard_dns::fast;
use switchboard_dns::handler::{Action, Options, Transport, handle};
use switchboard_dns::zone::{Builder, PodRecords, Settings, Zone};

fn service(name: &str, kind: ServiceType, headless: bool) -> Service {
    let port = |name: &str, protocol| ServicePort {
        name: name.into(),
        protocol,
        port: 80,
        node_port: None,
    };
    let endpoint = |i: u8, hostname: Option<&str>| Endpoint {
        address: [10, 0, 0, i].into(),
        hostname: hostname.map(str::to_string),
        node_name: None,
        pod_name: Some(format!("p{i}")),
        ready: i % 3 != 0,
        serving: true,
        terminating: false,
        ports: vec![EndpointPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }]
        .into(),
    };
    Service {
        key: ServiceKey::new("default", name),
        service_type: kind,
        cluster_ips: if headless || kind == ServiceType::ExternalName {
            vec![]
        } else {
            vec!["10.96.0.1".parse().unwrap(), "fd00::1".parse().unwrap()]
        },
        headless,
        external_name: (kind == ServiceType::ExternalName).then(|| "www.example.com".into()),
        external_ips: vec![],
        load_balancer_ips: vec![],
        ports: vec![
            port("http", Protocol::Tcp),
            port("dns", Protocol::Udp),
            port("", Protocol::Tcp),
        ],
        session_affinity: None,
        internal_traffic_local: false,
        external_traffic_local: false,
        publish_not_ready_addresses: false,
        annotations: BTreeMap::new(),
        endpoints: (1..80)
            .map(|i| endpoint(i, (i % 2 == 0).then_some("h")))
            .collect(),
    }
}

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let services: Services = [
            service("web", ServiceType::ClusterIp, false),
            service("db", ServiceType::ClusterIp, true),
            service("ext", ServiceType::ExternalName, false),
        ]
        .into_iter()
        .map(|s| (s.key.clone(), Arc::new(s)))
        .collect();
        let table = ServiceTable {
            changed: services.keys().cloned().collect(),
            services,
            generation: 1,
            synced: true,
            ..ServiceTable::default()
        };
        let mut b = Builder::new(&Settings {
            domain: "cluster.local".into(),
            ttl: 5,
            pods: PodRecords::Insecure,
            ns_address: Some("127.96.0.10".parse().unwrap()),
        })
        .unwrap();
        b.apply(&table);
        b.zone().clone()
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let zone = zone();
    for recursion in [false, true] {
        let opts = Options {
            recursion,
            ..Options::default()
        };
        for transport in [Transport::Udp, Transport::Tcp] {
            let mut fast_out = Vec::new();
            let fast_answered = fast::answer(zone, true, data, transport, opts, &mut fast_out);
            let Action::Reply(r) = handle(zone, true, data, transport, opts) else {
                assert!(fast_answered.is_none(), "the fast path answered a dropped query");
                continue;
            };
            if fast_answered.is_some() {
                assert_eq!(fast_out, r.bytes, "the fast path differs from the handler");
            }
            assert!(r.bytes.len() >= 12);
            assert_eq!(r.bytes[0..2], data[0..2]);
            if transport == Transport::Udp {
                assert!(r.bytes.len() <= usize::from(opts.max_udp_payload));
                // Prime the cache with the same query under another id.
                let mut other = data.to_vec();
                other[0] ^= 0xff;
                let Action::Reply(primed) = handle(zone, true, &other, transport, opts) else {
                    panic!("the same query under another id was not answered");
                };
                let mut cache = AnswerCache::new(4);
                cache.insert(&other, &primed);
                let mut out = Vec::new();
                if cache.get(data, &mut out).is_some() {
                    assert_eq!(out, r.bytes, "the answer cache differs from the handler");
                }
            }
        }
    }
});
