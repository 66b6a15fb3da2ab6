//! The commonest query answered straight from its bytes: A or AAAA for a
//! ClusterIP service's name (`<svc>.<ns>.svc.<zone>`), asked in lower case
//! with no more than an EDNS0 OPT record without options — what a pod's
//! stub resolver sends once its search list reaches the right name.
//!
//! Why: the handler parses every query into a hickory `Message` and
//! encodes a response `Message`, and the per-worker answer cache that
//! skips both cannot hold every name of a large cluster. At 100k services,
//! asked in turn, every query missed the cache and the server answered 55%
//! of the queries per second it answers with 1000. This path needs one
//! hash probe and no allocation, so it is as fast as a cache hit for any
//! number of services, and it leaves the cache to the other names.
//!
//! It is an optimisation only: for anything it does not recognise exactly
//! (another type or shape, upper case, a name that is not a ClusterIP
//! service's, a response that would not fit) it returns `None` and the
//! caller takes the handler's path. Where it answers, its bytes are the
//! handler's bytes: a property test and the fuzz target hold the two equal.

use hickory_proto::rr::RecordType;
use std::net::IpAddr;

use crate::handler::{Options, Transport};
use crate::zone::Zone;

/// Most labels looked at: `<svc>.<ns>.svc.` and the zone's own.
const MAX_LABELS: usize = 16;

/// DNS header flags (RFC 1035 §4.1.1, RFC 4035 §3.2).
const QR: u8 = 0x80;
const AA: u8 = 0x04;
const RD: u8 = 0x01;
const RA: u8 = 0x80;
const AD: u8 = 0x20;
const CD: u8 = 0x10;

/// The OPT pseudo-record's type (RFC 6891).
const OPT: u16 = 41;

/// Writes the response to `packet` into `out` and returns the type asked
/// for, when the query is one this path answers (see the module docs);
/// `None` leaves `out` unspecified and the query to the handler.
pub fn answer(
    zone: &Zone,
    synced: bool,
    packet: &[u8],
    transport: Transport,
    opts: Options,
    out: &mut Vec<u8>,
) -> Option<RecordType> {
    // Before the first full list every name is SERVFAIL: the handler's.
    if !synced || packet.len() < 12 {
        return None;
    }
    let (flags, flags2) = (packet[2], packet[3]);
    // A query (QR 0), opcode QUERY, no AA or TC; RD is copied. AD and CD
    // may be set (dig sets AD); Z and RCODE must be zero.
    if flags & !RD != 0 || flags2 & !(AD | CD) != 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([packet[i], packet[i + 1]]);
    let additional = count(10);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || additional > 1 {
        return None;
    }

    // The question's name: uncompressed labels of lower-case letters,
    // digits, '-' and '_' (so the handler's case folding and name
    // compression agree with copying the bytes).
    let mut labels = [(0usize, 0usize); MAX_LABELS];
    let mut n = 0;
    let mut pos = 12;
    loop {
        let len = usize::from(*packet.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        if len > 63 || n == MAX_LABELS || pos + 1 + len > packet.len() {
            return None;
        }
        let label = &packet[pos + 1..pos + 1 + len];
        if !label
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return None;
        }
        labels[n] = (pos, len);
        n += 1;
        pos += 1 + len;
    }
    if pos - 12 > 255 {
        return None;
    }
    let question_end = pos + 4;
    if question_end > packet.len() {
        return None;
    }
    let qtype = u16::from_be_bytes([packet[pos], packet[pos + 1]]);
    let qclass = u16::from_be_bytes([packet[pos + 2], packet[pos + 3]]);
    let qtype = match qtype {
        1 => RecordType::A,
        28 => RecordType::AAAA,
        _ => return None,
    };
    if qclass != 1 {
        return None;
    }

    // The OPT record, if any: root name, version 0, no options, and
    // nothing after it.
    let edns_payload = if additional == 1 {
        let opt = packet.get(question_end..question_end + 11)?;
        let [0, t0, t1, p0, p1, _ext_rcode, version, _, _, 0, 0] = *opt else {
            return None;
        };
        if u16::from_be_bytes([t0, t1]) != OPT || version != 0 {
            return None;
        }
        if packet.len() != question_end + 11 {
            return None;
        }
        Some(u16::from_be_bytes([p0, p1]))
    } else {
        if packet.len() != question_end {
            return None;
        }
        None
    };

    // `<svc>.<ns>.svc.` then exactly the zone's apex.
    let origin = zone.origin_wire();
    if n != 3 + zone.origin_label_count() {
        return None;
    }
    let label = |i: usize| {
        let (at, len) = labels[i];
        &packet[at + 1..at + 1 + len]
    };
    if label(2) != b"svc" || &packet[labels[3].0..pos] != origin {
        return None;
    }
    let ips = zone.cluster_ips(label(0), label(1))?;
    let wanted = |ip: &&IpAddr| match qtype {
        RecordType::A => ip.is_ipv4(),
        _ => ip.is_ipv6(),
    };
    let answers = ips.iter().filter(wanted).count();
    if answers == 0 {
        // NODATA carries the SOA: the handler's.
        return None;
    }

    // As the handler limits a UDP response (see `handler::udp_limit`);
    // one that does not fit is the handler's to shorten.
    let ours = opts.max_udp_payload.max(512);
    let limit = match (transport, edns_payload) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(theirs)) => usize::from(theirs.clamp(512, ours)),
    };
    let rdata_len = if qtype == RecordType::A { 4 } else { 16 };
    let size =
        question_end + answers * (12 + rdata_len) + if edns_payload.is_some() { 11 } else { 0 };
    if size > limit {
        return None;
    }

    out.clear();
    out.extend_from_slice(&packet[0..2]);
    out.push(QR | AA | (flags & RD));
    out.push(if opts.recursion { RA } else { 0 } | (flags2 & CD));
    out.extend_from_slice(&[0, 1]);
    // At most a few ClusterIPs (one per family): far below u16::MAX.
    out.extend_from_slice(&u16::try_from(answers).ok()?.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, u8::from(edns_payload.is_some())]);
    out.extend_from_slice(&packet[12..question_end]);
    let ttl = zone.ttl().to_be_bytes();
    for ip in ips.iter().filter(wanted) {
        // The owner name is the question's: a pointer to offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&u16::from(qtype).to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&ttl);
        match ip {
            IpAddr::V4(v4) => {
                out.extend_from_slice(&[0, 4]);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.extend_from_slice(&[0, 16]);
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    if edns_payload.is_some() {
        let [p0, p1] = ours.to_be_bytes();
        out.extend_from_slice(&[0, 0, 41, p0, p1, 0, 0, 0, 0, 0, 0]);
    }
    Some(qtype)
}

#[cfg(test)]
mod tests;
