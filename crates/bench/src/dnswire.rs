//! The little of the DNS wire format the DNS scenarios need: a query
//! packet for a name and type, and the header fields of an answer. Both
//! sides of the benchmark speak plain RFC 1035 (no EDNS, as dnsperf by
//! default), so a hand-built query is enough and keeps the client's cost
//! per query to a copy and two byte stores.

/// Record types the query files name.
pub fn qtype(name: &str) -> Option<u16> {
    Some(match name.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        _ => return None,
    })
}

/// A query for `name` (absolute or not; a trailing dot is optional) of type
/// `qtype`, class IN, recursion desired, with ID 0 (the sender sets it in
/// bytes 0-1). `None` when a label is empty or longer than 63 bytes or the
/// name longer than 255.
pub fn query(name: &str, qtype: u16) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut p = Vec::with_capacity(17 + name.len() + 1);
    // ID 0, flags RD, QDCOUNT 1, AN/NS/AR 0.
    p.extend_from_slice(&[0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let mut wire_len = 1;
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        wire_len += 1 + label.len();
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    if wire_len > 255 {
        return None;
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    Some(p)
}

/// What a response's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message ID.
    pub id: u16,
    /// RCODE (low four bits; no extended RCODE without EDNS).
    pub rcode: u8,
    /// Answer records.
    pub answers: u16,
    /// TC bit.
    pub truncated: bool,
}

/// The header of a response; `None` when the packet is shorter than a
/// header or is not a response.
pub fn header(packet: &[u8]) -> Option<Header> {
    if packet.len() < 12 || packet[2] & 0x80 == 0 {
        return None;
    }
    Some(Header {
        id: u16::from_be_bytes([packet[0], packet[1]]),
        rcode: packet[3] & 0x0f,
        answers: u16::from_be_bytes([packet[6], packet[7]]),
        truncated: packet[2] & 0x02 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_the_rfc_1035_layout() {
        let q = query("web.default.svc.cluster.local.", 1).expect("valid name");
        assert_eq!(&q[..12], &[0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..16], b"\x03web");
        assert_eq!(&q[q.len() - 5..], &[0, 0, 1, 0, 1]);
        assert_eq!(query("a.b", 33), query("a.b.", 33));
        assert_eq!(query("a..b", 1), None);
        assert_eq!(query(&"x".repeat(64), 1), None);
        assert_eq!(query(&["abcdefghij"; 24].join("."), 1), None);
        assert_eq!(qtype("srv"), Some(33));
        assert_eq!(qtype("WKS"), None);
    }

    #[test]
    fn header_reads_id_rcode_and_counts() {
        let mut r = query("a.b", 1).expect("valid name");
        r[0] = 0x12;
        r[1] = 0x34;
        assert_eq!(header(&r), None, "a query is not a response");
        r[2] |= 0x80 | 0x02;
        r[3] = 0x83;
        r[7] = 2;
        assert_eq!(
            header(&r),
            Some(Header {
                id: 0x1234,
                rcode: 3,
                answers: 2,
                truncated: true
            })
        );
        assert_eq!(header(&r[..11]), None);
    }
}
