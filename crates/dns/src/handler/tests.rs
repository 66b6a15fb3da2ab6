//! Every record form of the spec, from hand-built tables, through the
//! handler's wire format (the spec's own examples where it has them).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use switchboard_discovery::{
    Endpoint, EndpointPort, Protocol, Service, ServiceKey, ServicePort, ServiceTable, ServiceType,
    Services,
};

use super::*;
use crate::zone::{Builder, PodRecords, Settings};

pub(crate) fn service(ns: &str, name: &str) -> Service {
    Service {
        key: ServiceKey::new(ns, name),
        service_type: ServiceType::ClusterIp,
        cluster_ips: Vec::new(),
        headless: false,
        external_name: None,
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        ports: Vec::new(),
        session_affinity: None,
        internal_traffic_local: false,
        external_traffic_local: false,
        publish_not_ready_addresses: false,
        annotations: BTreeMap::new(),
        endpoints: Vec::new(),
    }
}

pub(crate) fn port(name: &str, protocol: Protocol, port: u16) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol,
        port,
        node_port: None,
    }
}

pub(crate) fn endpoint(
    ip: &str,
    hostname: Option<&str>,
    ready: bool,
    ports: &[(&str, u16)],
) -> Endpoint {
    Endpoint {
        address: ip.parse().unwrap(),
        hostname: hostname.map(str::to_string),
        node_name: None,
        pod_name: Some(format!("pod-{ip}")),
        ready,
        serving: ready,
        terminating: false,
        ports: ports
            .iter()
            .map(|(n, p)| EndpointPort {
                name: (*n).into(),
                protocol: Protocol::Tcp,
                port: *p,
            })
            .collect::<Vec<_>>()
            .into(),
    }
}

pub(crate) fn table(services: Vec<Service>) -> ServiceTable {
    let services: Services = services
        .into_iter()
        .map(|s| (s.key.clone(), Arc::new(s)))
        .collect();
    ServiceTable {
        changed: services.keys().cloned().collect(),
        services,
        generation: 1,
        synced: true,
        history: Default::default(),
    }
}

/// The spec's examples: kubernetes (ClusterIP 10.3.0.1, port https/443),
/// headless (3 ready endpoints + my-pet 10.3.0.100), foo (ExternalName
/// www.example.com), a v6 service, and a headless one with no ready
/// endpoint.
pub(crate) fn spec_table() -> ServiceTable {
    let mut kubernetes = service("default", "kubernetes");
    kubernetes.cluster_ips = vec!["10.3.0.1".parse().unwrap()];
    kubernetes.ports = vec![
        port("https", Protocol::Tcp, 443),
        port("dns", Protocol::Udp, 53),
    ];

    let mut headless = service("default", "headless");
    headless.headless = true;
    headless.ports = vec![
        port("https", Protocol::Tcp, 443),
        port("", Protocol::Tcp, 80),
    ];
    headless.endpoints = vec![
        endpoint("10.3.0.1", None, true, &[("https", 8443)]),
        endpoint("10.3.0.2", None, true, &[("https", 8443)]),
        endpoint("10.3.0.3", None, true, &[("https", 8443)]),
        endpoint("10.3.0.100", Some("my-pet"), true, &[("https", 8443)]),
        endpoint("10.3.0.200", Some("not-ready"), false, &[("https", 8443)]),
    ];

    let mut foo = service("default", "foo");
    foo.service_type = ServiceType::ExternalName;
    foo.external_name = Some("www.example.com".into());

    let mut v6 = service("default", "v6");
    v6.cluster_ips = vec!["2001:db8::1".parse().unwrap()];

    let mut empty = service("default", "empty");
    empty.headless = true;
    empty.ports = vec![port("http", Protocol::Tcp, 80)];
    empty.endpoints = vec![endpoint("10.3.0.50", Some("down"), false, &[("http", 80)])];

    let mut unready = service("other", "unready");
    unready.headless = true;
    unready.publish_not_ready_addresses = true;
    unready.endpoints = vec![endpoint("10.4.0.7", None, false, &[])];

    table(vec![kubernetes, headless, foo, v6, empty, unready])
}

pub(crate) fn settings() -> Settings {
    Settings {
        domain: "cluster.local".into(),
        ttl: 5,
        pods: PodRecords::Disabled,
        ns_address: Some("127.96.0.10".parse().unwrap()),
    }
}

pub(crate) fn zone_of(table: &ServiceTable, settings: &Settings) -> Zone {
    let mut b = Builder::new(settings).unwrap();
    b.apply(table);
    b.zone().clone()
}

pub(crate) fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn respond(zone: &Zone, packet: &[u8], transport: Transport, opts: Options) -> Message {
    match handle(zone, true, packet, transport, opts) {
        Action::Reply(r) => Message::from_vec(&r.bytes).unwrap(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn ask(name: &str, qtype: RecordType) -> Message {
    let zone = zone_of(&spec_table(), &settings());
    respond(
        &zone,
        &query(name, qtype, None),
        Transport::Udp,
        Options::default(),
    )
}

fn rdata(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

fn names(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.name.to_string()).collect()
}

fn assert_negative(m: &Message, rcode: ResponseCode) {
    assert_eq!(m.response_code, rcode, "{m}");
    assert!(m.answers.is_empty(), "{m}");
    assert_eq!(m.authorities.len(), 1, "{m}");
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].name.to_string(), "cluster.local.");
}

#[test]
fn schema_version_txt() {
    let m = ask("dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!(rdata(&m), ["1.1.0"]);
    assert_eq!(m.answers[0].ttl, 5);
    assert!(m.authoritative);
    assert_eq!(m.id, 0x1234);
    assert!(m.recursion_desired && !m.recursion_available);
}

#[test]
fn cluster_ip_a_and_aaaa() {
    let m = ask("kubernetes.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata(&m), ["10.3.0.1"]);
    assert_eq!(names(&m), ["kubernetes.default.svc.cluster.local."]);
    // A v4-only service has no AAAA: NODATA.
    let m = ask("kubernetes.default.svc.cluster.local.", RecordType::AAAA);
    assert_negative(&m, ResponseCode::NoError);
    let m = ask("v6.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(rdata(&m), ["2001:db8::1"]);
}

#[test]
fn cluster_ip_srv_per_named_port_with_the_address_in_additional() {
    let m = ask(
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        rdata(&m),
        ["0 100 443 kubernetes.default.svc.cluster.local."]
    );
    assert_eq!(m.additionals.len(), 1);
    assert_eq!(
        m.additionals[0].name.to_string(),
        "kubernetes.default.svc.cluster.local."
    );
    assert_eq!(m.additionals[0].data.to_string(), "10.3.0.1");
    let m = ask(
        "_dns._udp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        rdata(&m),
        ["0 100 53 kubernetes.default.svc.cluster.local."]
    );
    // Wrong protocol or unknown port: no such name.
    let m = ask(
        "_https._udp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_negative(&m, ResponseCode::NXDomain);
    // The protocol label alone is an empty non-terminal.
    let m = ask(
        "_tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_negative(&m, ResponseCode::NoError);
    // The SRV name exists; asking it for A is NODATA.
    let m = ask(
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_negative(&m, ResponseCode::NoError);
}

#[test]
fn cluster_ip_ptr_v4_and_v6() {
    let m = ask("1.0.3.10.in-addr.arpa.", RecordType::PTR);
    assert!(rdata(&m).contains(&"kubernetes.default.svc.cluster.local.".to_string()));
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    let m = ask(v6, RecordType::PTR);
    assert_eq!(rdata(&m), ["v6.default.svc.cluster.local."]);
}

#[test]
fn headless_a_per_ready_endpoint() {
    let m = ask("headless.default.svc.cluster.local.", RecordType::A);
    let mut got = rdata(&m);
    got.sort();
    assert_eq!(got, ["10.3.0.1", "10.3.0.100", "10.3.0.2", "10.3.0.3"]);
    // With publishNotReadyAddresses, not-ready endpoints are published.
    let m = ask("unready.other.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata(&m), ["10.4.0.7"]);
}

#[test]
fn headless_hostname_records() {
    let m = ask("my-pet.headless.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata(&m), ["10.3.0.100"]);
    // An endpoint without hostname is named by its dashed address.
    let m = ask(
        "10-3-0-2.headless.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(rdata(&m), ["10.3.0.2"]);
    // Not ready: not published.
    let m = ask(
        "not-ready.headless.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_negative(&m, ResponseCode::NXDomain);
}

#[test]
fn headless_srv_per_endpoint_and_named_port() {
    let m = ask(
        "_https._tcp.headless.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let mut got = rdata(&m);
    got.sort();
    assert_eq!(
        got,
        [
            "0 100 8443 10-3-0-1.headless.default.svc.cluster.local.",
            "0 100 8443 10-3-0-2.headless.default.svc.cluster.local.",
            "0 100 8443 10-3-0-3.headless.default.svc.cluster.local.",
            "0 100 8443 my-pet.headless.default.svc.cluster.local.",
        ]
    );
    // Each target's address is in the additional section.
    let glue: Vec<(String, String)> = m
        .additionals
        .iter()
        .map(|r| (r.name.to_string(), r.data.to_string()))
        .collect();
    assert!(glue.contains(&(
        "my-pet.headless.default.svc.cluster.local.".into(),
        "10.3.0.100".into()
    )));
    assert_eq!(glue.len(), 4);
    // The unnamed port has no SRV record.
    let m = ask(
        "_._tcp.headless.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_negative(&m, ResponseCode::NXDomain);
}

#[test]
fn headless_ptr_names_the_endpoint() {
    let m = ask("100.0.3.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdata(&m), ["my-pet.headless.default.svc.cluster.local."]);
    // 10.3.0.1 is both the kubernetes ClusterIP and a headless endpoint:
    // both names are published.
    let m = ask("1.0.3.10.in-addr.arpa.", RecordType::PTR);
    let mut got = rdata(&m);
    got.sort();
    assert_eq!(
        got,
        [
            "10-3-0-1.headless.default.svc.cluster.local.",
            "kubernetes.default.svc.cluster.local."
        ]
    );
}

#[test]
fn headless_without_ready_endpoints_is_nxdomain() {
    let m = ask("empty.default.svc.cluster.local.", RecordType::A);
    assert_negative(&m, ResponseCode::NXDomain);
    let m = ask(
        "_http._tcp.empty.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_negative(&m, ResponseCode::NXDomain);
}

#[test]
fn external_name_is_a_cname() {
    let m = ask("foo.default.svc.cluster.local.", RecordType::CNAME);
    assert_eq!(rdata(&m), ["www.example.com."]);
    // Without an upstream the CNAME alone answers other types.
    let m = ask("foo.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!(rdata(&m), ["www.example.com."]);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
}

#[test]
fn external_name_with_upstream_forwards_the_target() {
    let zone = zone_of(&spec_table(), &settings());
    let opts = Options {
        recursion: true,
        ..Options::default()
    };
    let packet = query("foo.default.svc.cluster.local.", RecordType::A, None);
    let Action::Forward(f) = handle(&zone, true, &packet, Transport::Udp, opts) else {
        panic!("expected a forward");
    };
    assert_eq!(f.name.to_string(), "www.example.com.");
    assert_eq!(f.prefix.len(), 1);
    // The upstream's answer follows the CNAME.
    let mut up = Message::new(1, MessageType::Response, OpCode::Query);
    up.add_answer(hickory_proto::rr::Record::from_rdata(
        f.name.clone(),
        300,
        RData::A(hickory_proto::rr::rdata::A("192.0.2.53".parse().unwrap())),
    ));
    let r = finish_forward(&f, Some(&up), opts);
    let m = Message::from_vec(&r.bytes).unwrap();
    assert_eq!(rdata(&m), ["www.example.com.", "192.0.2.53"]);
    assert_eq!(m.id, 0x1234);
    assert!(m.recursion_available);
    // Every upstream failed: SERVFAIL.
    let r = finish_forward(&f, None, opts);
    assert_eq!(r.rcode, ResponseCode::ServFail);
}

#[test]
fn names_compare_case_insensitively() {
    let m = ask("KuBeRnEtEs.DEFAULT.Svc.Cluster.LOCAL.", RecordType::A);
    assert_eq!(rdata(&m), ["10.3.0.1"]);
    // The question is echoed as asked.
    assert_eq!(
        m.queries[0].name().to_string(),
        "KuBeRnEtEs.DEFAULT.Svc.Cluster.LOCAL."
    );
    let m = ask(
        "_HTTPS._TCP.My-Pet.Headless.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_negative(&m, ResponseCode::NXDomain);
    let m = ask(
        "_HTTPS._TCP.Headless.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(m.answers.len(), 4);
    let m = ask("DNS-VERSION.CLUSTER.LOCAL.", RecordType::TXT);
    assert_eq!(rdata(&m), ["1.1.0"]);
}

#[test]
fn nodata_versus_nxdomain() {
    // Existing names without the type: NOERROR, empty, SOA.
    for (name, t) in [
        ("kubernetes.default.svc.cluster.local.", RecordType::MX),
        ("cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
        ("default.svc.cluster.local.", RecordType::A),
        ("dns-version.cluster.local.", RecordType::A),
    ] {
        assert_negative(&ask(name, t), ResponseCode::NoError);
    }
    // Missing names: NXDOMAIN with SOA.
    for name in [
        "nope.default.svc.cluster.local.",
        "kubernetes.nope.svc.cluster.local.",
        "nope.svc.cluster.local.",
        "x.kubernetes.default.svc.cluster.local.",
        "a.b.c.d.e.cluster.local.",
        "nope.cluster.local.",
        // Search-path expansions of a full name.
        "kubernetes.default.svc.cluster.local.default.svc.cluster.local.",
    ] {
        assert_negative(&ask(name, RecordType::A), ResponseCode::NXDomain);
    }
}

#[test]
fn apex_soa_and_ns() {
    let m = ask("cluster.local.", RecordType::SOA);
    assert_eq!(m.answers.len(), 1);
    let soa = m.answers[0].data.to_string();
    assert!(
        soa.starts_with("ns.dns.cluster.local. hostmaster.cluster.local."),
        "{soa}"
    );
    let m = ask("cluster.local.", RecordType::NS);
    assert_eq!(rdata(&m), ["ns.dns.cluster.local."]);
    assert_eq!(m.additionals[0].data.to_string(), "127.96.0.10");
    let m = ask("ns.dns.cluster.local.", RecordType::A);
    assert_eq!(rdata(&m), ["127.96.0.10"]);
}

#[test]
fn pod_records_by_mode() {
    let t = spec_table();
    let mut s = settings();
    let ask_pod = |s: &Settings, name: &str| {
        let zone = zone_of(&t, s);
        respond(
            &zone,
            &query(name, RecordType::A, None),
            Transport::Udp,
            Options::default(),
        )
    };
    // disabled (default): NXDOMAIN.
    let m = ask_pod(&s, "1-2-3-4.default.pod.cluster.local.");
    assert_negative(&m, ResponseCode::NXDomain);
    // insecure: any dashed address.
    s.pods = PodRecords::Insecure;
    let m = ask_pod(&s, "1-2-3-4.default.pod.cluster.local.");
    assert_eq!(rdata(&m), ["1.2.3.4"]);
    let m = ask_pod(&s, "not-an-ip.default.pod.cluster.local.");
    assert_negative(&m, ResponseCode::NXDomain);
    // verified: only a pod endpoint's address in that namespace.
    s.pods = PodRecords::Verified;
    let m = ask_pod(&s, "1-2-3-4.default.pod.cluster.local.");
    assert_negative(&m, ResponseCode::NXDomain);
    let m = ask_pod(&s, "10-3-0-100.default.pod.cluster.local.");
    assert_eq!(rdata(&m), ["10.3.0.100"]);
    let m = ask_pod(&s, "10-3-0-100.other.pod.cluster.local.");
    assert_negative(&m, ResponseCode::NXDomain);
}

#[test]
fn any_is_answered_with_one_rrset() {
    let m = ask("kubernetes.default.svc.cluster.local.", RecordType::ANY);
    assert_eq!(rdata(&m), ["10.3.0.1"]);
}

#[test]
fn outside_the_zone_without_upstream_is_refused_and_with_one_is_forwarded() {
    let m = ask("example.com.", RecordType::A);
    assert_eq!(m.response_code, ResponseCode::Refused);
    let zone = zone_of(&spec_table(), &settings());
    let opts = Options {
        recursion: true,
        ..Options::default()
    };
    let packet = query("example.com.", RecordType::A, None);
    assert!(matches!(
        handle(&zone, true, &packet, Transport::Udp, opts),
        Action::Forward(_)
    ));
    // An unknown reverse name also goes upstream.
    let packet = query("9.9.9.10.in-addr.arpa.", RecordType::PTR, None);
    assert!(matches!(
        handle(&zone, true, &packet, Transport::Udp, opts),
        Action::Forward(_)
    ));
}

#[test]
fn before_the_first_sync_zone_names_are_servfail() {
    let zone = zone_of(&spec_table(), &settings());
    let packet = query("kubernetes.default.svc.cluster.local.", RecordType::A, None);
    let Action::Reply(r) = handle(&zone, false, &packet, Transport::Udp, Options::default()) else {
        panic!()
    };
    assert_eq!(r.rcode, ResponseCode::ServFail);
}

fn big_table() -> ServiceTable {
    let mut big = service("default", "big");
    big.headless = true;
    big.ports = vec![port("http", Protocol::Tcp, 80)];
    big.endpoints = (0..100)
        .map(|i| {
            endpoint(
                &format!("10.9.{}.{}", i / 250, i % 250 + 1),
                None,
                true,
                &[("http", 8080)],
            )
        })
        .collect();
    table(vec![big])
}

#[test]
fn a_udp_answer_that_does_not_fit_is_truncated_and_tcp_gets_it_whole() {
    let zone = zone_of(&big_table(), &settings());
    // 100 A records: 16 bytes each after the first, > 512.
    let packet = query("big.default.svc.cluster.local.", RecordType::A, None);
    let m = respond(&zone, &packet, Transport::Udp, Options::default());
    assert!(m.truncation);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);
    let bytes = match handle(&zone, true, &packet, Transport::Udp, Options::default()) {
        Action::Reply(r) => r.bytes,
        _ => panic!(),
    };
    assert!(bytes.len() <= 512);
    let m = respond(&zone, &packet, Transport::Tcp, Options::default());
    assert!(!m.truncation);
    assert_eq!(m.answers.len(), 100);
    // The client's EDNS payload size is honoured: 4096 asked, our 1232 cap
    // still fits 100 A records (~1.6 KB)? No: truncated; 100 records need
    // TCP, but 60 would fit, so check the limit itself.
    let packet = query("big.default.svc.cluster.local.", RecordType::A, Some(4096));
    let Action::Reply(r) = handle(&zone, true, &packet, Transport::Udp, Options::default()) else {
        panic!()
    };
    assert!(r.bytes.len() <= 1232);
    let m = Message::from_vec(&r.bytes).unwrap();
    assert!(m.truncation);
    assert_eq!(m.edns.as_ref().unwrap().max_payload(), 1232);
    // A larger server cap with a large client size: the answer fits.
    let opts = Options {
        max_udp_payload: 4096,
        ..Options::default()
    };
    let m = respond(&zone, &packet, Transport::Udp, opts);
    assert!(!m.truncation);
    assert_eq!(m.answers.len(), 100);
}

#[test]
fn srv_additionals_are_dropped_before_answers_are() {
    // 18 SRV answers (targets are never compressed, RFC 2782: ~58 bytes
    // each) fit in 1232 bytes; with their 18 glue records they do not: the
    // glue goes, TC stays clear.
    let mut t = big_table();
    let key = ServiceKey::new("default", "big");
    let mut s = (*t.services[&key]).clone();
    s.endpoints.truncate(18);
    t.services.insert(key, Arc::new(s));
    let zone = zone_of(&t, &settings());
    let packet = query(
        "_http._tcp.big.default.svc.cluster.local.",
        RecordType::SRV,
        Some(1232),
    );
    let m = respond(&zone, &packet, Transport::Udp, Options::default());
    assert!(!m.truncation, "{m}");
    assert_eq!(m.answers.len(), 18);
    assert!(m.additionals.is_empty());
    let m = respond(&zone, &packet, Transport::Tcp, Options::default());
    assert_eq!(m.additionals.len(), 18);
}

#[test]
fn edns_is_answered_with_our_payload_size_and_badvers_for_version_1() {
    let zone = zone_of(&spec_table(), &settings());
    let packet = query(
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
        Some(4096),
    );
    let m = respond(&zone, &packet, Transport::Udp, Options::default());
    assert_eq!(m.edns.as_ref().unwrap().max_payload(), 1232);
    let mut q = Message::from_vec(&packet).unwrap();
    q.edns.as_mut().unwrap().set_version(1);
    let m = respond(
        &zone,
        &q.to_vec().unwrap(),
        Transport::Udp,
        Options::default(),
    );
    // 16 is BADVERS in an OPT (and BADSIG in a TSIG: hickory decodes the
    // shared value under the latter name).
    assert_eq!(u16::from(m.response_code), 16);
    // Without OPT in the query, none in the answer.
    let m = respond(
        &zone,
        &query("kubernetes.default.svc.cluster.local.", RecordType::A, None),
        Transport::Udp,
        Options::default(),
    );
    assert!(m.edns.is_none());
}

#[test]
fn malformed_packets_get_formerr_or_nothing() {
    let zone = zone_of(&spec_table(), &settings());
    let opts = Options::default();
    // Too short for a header: dropped.
    assert!(matches!(
        handle(&zone, true, &[1, 2, 3], Transport::Udp, opts),
        Action::Drop
    ));
    // A header claiming a question that is not there: FORMERR, same id.
    let packet = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e'];
    let Action::Reply(r) = handle(&zone, true, &packet, Transport::Udp, opts) else {
        panic!()
    };
    let m = Message::from_vec(&r.bytes).unwrap();
    assert_eq!(m.response_code, ResponseCode::FormErr);
    assert_eq!(m.id, 0xabcd);
    assert_eq!(m.message_type, MessageType::Response);
    // Two questions: FORMERR.
    let mut q = Message::from_vec(&query("a.cluster.local.", RecordType::A, None)).unwrap();
    q.add_query(Query::query(
        Name::from_ascii("b.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let m = respond(&zone, &q.to_vec().unwrap(), Transport::Udp, opts);
    assert_eq!(m.response_code, ResponseCode::FormErr);
    // A response is never answered.
    let mut r = Message::from_vec(&query("a.cluster.local.", RecordType::A, None)).unwrap();
    r.metadata.message_type = MessageType::Response;
    assert!(matches!(
        handle(&zone, true, &r.to_vec().unwrap(), Transport::Udp, opts),
        Action::Drop
    ));
    // A compression pointer loop.
    let mut packet = query("a.cluster.local.", RecordType::A, None);
    packet.truncate(12);
    packet.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let Action::Reply(r) = handle(&zone, true, &packet, Transport::Udp, opts) else {
        panic!()
    };
    assert_eq!(r.rcode, ResponseCode::FormErr);
}

#[test]
fn other_opcodes_are_notimp_and_transfers_refused() {
    let zone = zone_of(&spec_table(), &settings());
    let mut q = Message::from_vec(&query("cluster.local.", RecordType::SOA, None)).unwrap();
    q.metadata.op_code = OpCode::Notify;
    let m = respond(
        &zone,
        &q.to_vec().unwrap(),
        Transport::Udp,
        Options::default(),
    );
    assert_eq!(m.response_code, ResponseCode::NotImp);
    let m = respond(
        &zone,
        &query("cluster.local.", RecordType::AXFR, None),
        Transport::Tcp,
        Options::default(),
    );
    assert_eq!(m.response_code, ResponseCode::Refused);
}

#[test]
fn the_answer_cache_returns_the_handlers_bytes_with_the_new_id() {
    let zone = zone_of(&spec_table(), &settings());
    let opts = Options::default();
    let mut cache = crate::cache::AnswerCache::new(16);
    let first = query(
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
        Some(1232),
    );
    let Action::Reply(r) = handle(&zone, true, &first, Transport::Udp, opts) else {
        panic!()
    };
    cache.insert(&first, &r);
    let mut second = first.clone();
    second[0] = 0x99;
    second[1] = 0x01;
    let mut out = Vec::new();
    let hit = cache.get(&second, &mut out).expect("a hit");
    let Action::Reply(direct) = handle(&zone, true, &second, Transport::Udp, opts) else {
        panic!()
    };
    assert_eq!(out, direct.bytes);
    assert_eq!(hit.rcode, ResponseCode::NoError);
    // Another case is another key.
    let upper = query(
        "KUBERNETES.default.svc.cluster.local.",
        RecordType::A,
        Some(1232),
    );
    assert!(cache.get(&upper, &mut out).is_none());
}

proptest::proptest! {
    /// Arbitrary bytes never panic the handler, and whatever it answers
    /// parses and carries the query's id.
    #[test]
    fn random_packets_never_panic(packet in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let zone = zone_of(&spec_table(), &settings());
        for transport in [Transport::Udp, Transport::Tcp] {
            if let Action::Reply(r) = handle(&zone, true, &packet, transport, Options::default()) {
                proptest::prop_assert!(r.bytes.len() >= 12);
                proptest::prop_assert_eq!(&r.bytes[0..2], &packet[0..2]);
                if transport == Transport::Udp {
                    proptest::prop_assert!(r.bytes.len() <= 1232);
                }
            }
        }
    }

    /// Mutations of valid queries (the interesting neighbourhood) never
    /// panic either.
    #[test]
    fn mutated_queries_never_panic(flips in proptest::collection::vec((0usize..64, proptest::num::u8::ANY), 1..6)) {
        let zone = zone_of(&spec_table(), &settings());
        let mut packet = query("_https._tcp.headless.default.svc.cluster.local.", RecordType::SRV, Some(1232));
        for (i, b) in flips {
            let n = packet.len();
            packet[i % n] = b;
        }
        let _ = handle(&zone, true, &packet, Transport::Udp, Options::default());
    }
}

#[test]
fn ip_parsing_helpers() {
    assert_eq!(crate::zone::dashed("10.3.0.1".parse().unwrap()), "10-3-0-1");
    assert_eq!(
        crate::zone::dashed("2001:db8::1".parse().unwrap()),
        "2001-db8--1"
    );
    assert_eq!(
        crate::zone::parse_dashed("2001-db8--1"),
        Some("2001:db8::1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(crate::zone::parse_dashed("1-2-3"), None);
}
