//! The query handler: one wire-format query in, one wire-format response
//! (or a request to the upstream resolvers) out. Pure: no IO, no clock, so
//! it is unit tested, property tested and fuzzed on its own.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

use crate::zone::{Lookup, Zone};

/// The UDP payload size this server advertises and the largest UDP answer
/// it sends: 1232 bytes, the DNS flag day 2020 value that avoids IP
/// fragmentation.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Most CNAME hops followed inside the zone (ExternalName to ExternalName).
const MAX_CHAIN: usize = 8;

/// How the query arrived: decides the size limit of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: at most 512 bytes, or the client's EDNS payload size (capped at
    /// [`MAX_UDP_PAYLOAD`]); larger answers are truncated with TC set.
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

/// Options of the handler.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Whether names outside the zone go to upstream resolvers (sets RA).
    pub recursion: bool,
    /// Largest UDP response, also the advertised EDNS payload size.
    pub max_udp_payload: u16,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            recursion: false,
            max_udp_payload: MAX_UDP_PAYLOAD,
        }
    }
}

/// A finished response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The wire bytes.
    pub bytes: Vec<u8>,
    /// Type asked for, when the question could be read (for metrics).
    pub qtype: Option<RecordType>,
    /// Response code sent.
    pub rcode: ResponseCode,
    /// True when the answer came from the zone alone, so the same query
    /// (apart from its id) gets the same bytes until the zone changes.
    pub from_zone: bool,
}

/// What to do with a query.
#[derive(Debug)]
pub enum Action {
    /// Send this response.
    Reply(Response),
    /// Ask the upstream resolvers, then call [`finish_forward`].
    Forward(Box<Forward>),
    /// Send nothing (not a query, or too short to answer).
    Drop,
}

/// A query the zone cannot answer alone.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The client's query.
    pub request: Message,
    /// CNAME records already answered from the zone (ExternalName), to put
    /// before the upstream's answer.
    pub prefix: Vec<Record>,
    /// Name to ask the upstream for.
    pub name: Name,
    /// Type to ask for.
    pub qtype: RecordType,
    /// How the client asked.
    pub transport: Transport,
}

/// Answers one query packet from `zone`.
pub fn handle(
    zone: &Zone,
    synced: bool,
    packet: &[u8],
    transport: Transport,
    opts: Options,
) -> Action {
    // Too short for a header: nothing to address a reply to.
    if packet.len() < 12 {
        return Action::Drop;
    }
    // Never answer a response: that is how two servers loop.
    if packet[2] & 0x80 != 0 {
        return Action::Drop;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let op_code = OpCode::from_u8((packet[2] >> 3) & 0x0f);
    let request = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => {
            let mut m = Message::error_msg(id, op_code, ResponseCode::FormErr);
            m.metadata.recursion_desired = packet[2] & 0x01 != 0;
            return reply(m, None, transport, opts, 512, false);
        }
    };
    let limit = udp_limit(&request, opts);
    let mut response = response_for(&request, opts);
    let qtype = request.queries.first().map(Query::query_type);
    if request.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return reply(response, qtype, transport, opts, limit, false);
    }
    if request.queries.len() != 1 {
        response.metadata.response_code = ResponseCode::FormErr;
        return reply(response, qtype, transport, opts, limit, false);
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 6.1.3: only version 0 is known.
        response.metadata.response_code = ResponseCode::BADVERS;
        return reply(response, qtype, transport, opts, limit, false);
    }
    let query = request.queries[0].clone();
    let qtype = query.query_type();
    if query.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        // No other class is served and zone transfers are not offered.
        response.metadata.response_code = ResponseCode::Refused;
        return reply(response, Some(qtype), transport, opts, limit, false);
    }

    let mut name = query.name().clone();
    let mut prefix: Vec<Record> = Vec::new();
    for _ in 0..MAX_CHAIN {
        let found = zone.lookup(&name, qtype);
        let in_zone = !matches!(found, Lookup::Outside | Lookup::ReverseMiss);
        if in_zone && !synced {
            // Before the first full list an absence means nothing: a
            // SERVFAIL is retried, an NXDOMAIN would be cached.
            response.metadata.response_code = ResponseCode::ServFail;
            return reply(response, Some(qtype), transport, opts, limit, false);
        }
        if in_zone {
            response.metadata.authoritative = prefix.is_empty();
        }
        match found {
            Lookup::Answer {
                answers,
                additionals,
            } => {
                response.answers = prefix;
                response.answers.extend(answers);
                response.additionals = additionals;
                return reply(response, Some(qtype), transport, opts, limit, true);
            }
            Lookup::NoData | Lookup::NxDomain => {
                if matches!(found, Lookup::NxDomain) {
                    response.metadata.response_code = ResponseCode::NXDomain;
                }
                response.answers = prefix;
                response.authorities.push(zone.soa().clone());
                return reply(response, Some(qtype), transport, opts, limit, true);
            }
            Lookup::Alias { cname, target } => {
                prefix.push(*cname);
                name = target;
            }
            Lookup::Outside | Lookup::ReverseMiss => {
                if opts.recursion {
                    return Action::Forward(Box::new(Forward {
                        request,
                        prefix,
                        name,
                        qtype,
                        transport,
                    }));
                }
                if !prefix.is_empty() {
                    // An ExternalName without an upstream: the CNAME alone,
                    // which the client's resolver can follow itself.
                    response.answers = prefix;
                    return reply(response, Some(qtype), transport, opts, limit, true);
                }
                // Not our zone and no upstream: CoreDNS answers REFUSED for
                // a name no server block serves.
                response.metadata.response_code = ResponseCode::Refused;
                return reply(response, Some(qtype), transport, opts, limit, true);
            }
        }
    }
    // A CNAME loop among ExternalName services.
    response.metadata.response_code = ResponseCode::ServFail;
    response.answers = prefix;
    reply(response, Some(qtype), transport, opts, limit, true)
}

/// Builds the response to `forward` from the upstream's answer, or SERVFAIL
/// when every upstream failed (`None`).
pub fn finish_forward(forward: &Forward, upstream: Option<&Message>, opts: Options) -> Response {
    let request = &forward.request;
    let limit = udp_limit(request, opts);
    let mut response = response_for(request, opts);
    response.answers = forward.prefix.clone();
    match upstream {
        Some(up) => {
            response.metadata.response_code = up.response_code;
            response.answers.extend(up.answers.iter().cloned());
            if forward.prefix.is_empty() {
                response.authorities = up.authorities.clone();
                response.additionals = up.additionals.clone();
            } else if response.metadata.response_code == ResponseCode::NXDomain {
                // The alias exists; only its target does not.
                response.metadata.response_code = ResponseCode::NoError;
            }
        }
        None => response.metadata.response_code = ResponseCode::ServFail,
    }
    match reply(
        response,
        Some(forward.qtype),
        forward.transport,
        opts,
        limit,
        false,
    ) {
        Action::Reply(r) => r,
        // `reply` only ever returns `Reply`.
        _ => unreachable!("reply always builds a response"),
    }
}

/// The response skeleton: id, opcode, question, RD/CD copied, OPT when the
/// query had one.
fn response_for(request: &Message, opts: Options) -> Message {
    let mut m = Message::response(request.id, request.op_code);
    m.metadata.message_type = MessageType::Response;
    m.metadata.recursion_desired = request.recursion_desired;
    m.metadata.checking_disabled = request.checking_disabled;
    m.metadata.recursion_available = opts.recursion;
    m.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(opts.max_udp_payload.max(512));
        edns.set_version(0);
        m.set_edns(edns);
    }
    m
}

/// Largest UDP response for this request: 512 without EDNS, else the
/// client's payload size (at least 512) capped by ours.
fn udp_limit(request: &Message, opts: Options) -> usize {
    match &request.edns {
        None => 512,
        Some(e) => usize::from(e.max_payload().clamp(512, opts.max_udp_payload.max(512))),
    }
}

/// Encodes `m`, fitting it into the transport's limit: first without the
/// additional section (which may be dropped without TC, RFC 2181 9), then
/// as an empty truncated answer so that the client retries over TCP.
fn reply(
    mut m: Message,
    qtype: Option<RecordType>,
    transport: Transport,
    _opts: Options,
    udp_limit: usize,
    from_zone: bool,
) -> Action {
    let limit = match transport {
        Transport::Udp => udp_limit,
        Transport::Tcp => usize::from(u16::MAX),
    };
    let rcode = m.metadata.response_code;
    let mut bytes = encode(&m);
    if bytes.len() > limit && !m.additionals.is_empty() {
        m.additionals.clear();
        bytes = encode(&m);
    }
    if bytes.len() > limit {
        bytes = encode(&m.truncate());
    }
    if bytes.len() > limit {
        // Even the question does not fit (a 255-byte name in 512 bytes
        // cannot happen, but a huge OPT could): header only.
        let mut h = Message::error_msg(m.id, m.op_code, rcode);
        h.metadata = m.metadata;
        h.metadata.truncation = true;
        bytes = encode(&h);
    }
    Action::Reply(Response {
        bytes,
        qtype,
        rcode,
        from_zone,
    })
}

fn encode(m: &Message) -> Vec<u8> {
    match m.to_vec() {
        Ok(b) => b,
        Err(e) => {
            // Only records we built or parsed are encoded; should one fail,
            // answer SERVFAIL rather than nothing.
            tracing::warn!(error = %e, "cannot encode a response; sending SERVFAIL");
            let mut h = Message::error_msg(m.id, m.op_code, ResponseCode::ServFail);
            h.metadata.recursion_desired = m.recursion_desired;
            h.queries = m.queries.clone();
            h.to_vec()
                .unwrap_or_else(|_| header_only(m.id, ResponseCode::ServFail))
        }
    }
}

/// A 12-byte response header with no sections, for when nothing else can
/// be encoded.
fn header_only(id: u16, rcode: ResponseCode) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b[0..2].copy_from_slice(&id.to_be_bytes());
    b[2] = 0x80;
    b[3] = rcode.low();
    b
}

#[cfg(test)]
pub(crate) mod tests;
