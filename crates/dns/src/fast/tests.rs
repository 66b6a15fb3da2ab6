//! The fast path answers exactly what the handler answers, and answers the
//! queries it is for.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;

use super::*;
use crate::handler::tests::{query, settings, spec_table, zone_of};
use crate::handler::{Action, handle};

fn fast(zone: &Zone, packet: &[u8], transport: Transport, opts: Options) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    answer(zone, true, packet, transport, opts, &mut out).map(|_| out)
}

fn handler(zone: &Zone, packet: &[u8], transport: Transport, opts: Options) -> Vec<u8> {
    match handle(zone, true, packet, transport, opts) {
        Action::Reply(r) => r.bytes,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn a_and_aaaa_of_a_clusterip_service_take_the_fast_path() {
    let zone = zone_of(&spec_table(), &settings());
    let opts = Options::default();
    for (name, qtype) in [
        ("kubernetes.default.svc.cluster.local.", RecordType::A),
        ("v6.default.svc.cluster.local.", RecordType::AAAA),
    ] {
        for edns in [None, Some(1232), Some(4096), Some(100)] {
            for transport in [Transport::Udp, Transport::Tcp] {
                let q = query(name, qtype, edns);
                let got = fast(&zone, &q, transport, opts)
                    .unwrap_or_else(|| panic!("{name} {qtype} {edns:?} missed the fast path"));
                assert_eq!(got, handler(&zone, &q, transport, opts), "{name} {qtype}");
                let m = Message::from_vec(&got).unwrap();
                assert_eq!(m.answers.len(), 1);
                assert!(m.authoritative);
            }
        }
    }
}

#[test]
fn everything_else_is_left_to_the_handler() {
    let zone = zone_of(&spec_table(), &settings());
    let opts = Options::default();
    for (name, qtype) in [
        // No AAAA on a v4 service: NODATA with the SOA.
        ("kubernetes.default.svc.cluster.local.", RecordType::AAAA),
        ("kubernetes.default.svc.cluster.local.", RecordType::SRV),
        // Upper case: the handler folds it.
        ("Kubernetes.default.svc.cluster.local.", RecordType::A),
        ("headless.default.svc.cluster.local.", RecordType::A),
        ("foo.default.svc.cluster.local.", RecordType::A),
        ("missing.default.svc.cluster.local.", RecordType::A),
        (
            "kubernetes.default.svc.cluster.local.default.svc.cluster.local.",
            RecordType::A,
        ),
        ("kubernetes.default.svc.other.", RecordType::A),
        ("example.com.", RecordType::A),
    ] {
        let q = query(name, qtype, Some(1232));
        assert_eq!(
            fast(&zone, &q, Transport::Udp, opts),
            None,
            "{name} {qtype}"
        );
    }
    // Not synced: SERVFAIL is the handler's.
    let q = query("kubernetes.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(
        answer(&zone, false, &q, Transport::Udp, opts, &mut Vec::new()),
        None
    );
    // EDNS version 1: BADVERS is the handler's.
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("kubernetes.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.set_version(1);
    m.set_edns(e);
    assert_eq!(
        fast(&zone, &m.to_vec().unwrap(), Transport::Udp, opts),
        None
    );
}

/// A query built by hickory from drawn parts, then perhaps one byte changed.
fn arbitrary_query() -> impl Strategy<Value = Vec<u8>> {
    let names = prop::sample::select(vec![
        "kubernetes.default.svc.cluster.local.",
        "KUBERNETES.default.svc.cluster.local.",
        "v6.default.svc.cluster.local.",
        "headless.default.svc.cluster.local.",
        "my-pet.headless.default.svc.cluster.local.",
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        "foo.default.svc.cluster.local.",
        "empty.default.svc.cluster.local.",
        "nope.default.svc.cluster.local.",
        "default.svc.cluster.local.",
        "cluster.local.",
        "kubernetes.default.svc.cluster.local.cluster.local.",
        "1.0.3.10.in-addr.arpa.",
    ]);
    let types = prop::sample::select(vec![
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::TXT,
        RecordType::ANY,
        RecordType::PTR,
    ]);
    (
        names,
        types,
        any::<u16>(),
        prop::option::of((any::<u16>(), 0u8..2, any::<bool>())),
        any::<(bool, bool, bool)>(),
        prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(name, qtype, id, edns, (rd, cd, ad), flip)| {
            let mut m = Message::new(id, MessageType::Query, OpCode::Query);
            m.metadata.recursion_desired = rd;
            m.metadata.checking_disabled = cd;
            m.metadata.authentic_data = ad;
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
            if let Some((payload, version, dnssec_ok)) = edns {
                let mut e = Edns::new();
                e.set_max_payload(payload);
                e.set_version(version);
                e.set_dnssec_ok(dnssec_ok);
                m.set_edns(e);
            }
            let mut bytes = m.to_vec().unwrap();
            if let Some((at, value)) = flip {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes
        })
}

proptest! {
    #[test]
    fn where_the_fast_path_answers_it_answers_as_the_handler(
        packet in arbitrary_query(),
        tcp in any::<bool>(),
        recursion in any::<bool>(),
        max_udp_payload in prop::sample::select(vec![512u16, 1232, 4096]),
    ) {
        let zone = zone_of(&spec_table(), &settings());
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let opts = Options { recursion, max_udp_payload };
        if let Some(got) = fast(&zone, &packet, transport, opts) {
            prop_assert_eq!(got, handler(&zone, &packet, transport, opts));
        }
    }
}
