//! Per-worker cache of finished zone answers, keyed by the query's bytes
//! after its id: a repeated question is answered with one hash lookup and a
//! copy, with the id patched in.
//!
//! The handler is a pure function of the query bytes and the zone, and the
//! id only appears in the response's first two bytes, so a hit is
//! byte-for-byte the response the handler would build; the cache is
//! cleared whenever the zone changes. Queries differing in case (0x20
//! randomisation) or in EDNS options are different keys, and simply miss.

use std::collections::HashMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::handler::Response;

/// Longest query cached: a normal query is far smaller; larger ones take the
/// handler's path.
const MAX_KEY: usize = 512;

/// A bounded answer cache.
#[derive(Debug)]
pub struct AnswerCache {
    map: HashMap<Box<[u8]>, Entry>,
    capacity: usize,
}

#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    qtype: Option<RecordType>,
    rcode: ResponseCode,
}

/// What a hit returns besides the bytes: for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Type asked for.
    pub qtype: Option<RecordType>,
    /// Response code.
    pub rcode: ResponseCode,
}

impl AnswerCache {
    /// A cache of at most `capacity` answers (0 disables it).
    pub fn new(capacity: usize) -> AnswerCache {
        AnswerCache {
            map: HashMap::new(),
            capacity,
        }
    }

    /// Writes the cached response to `packet` into `out`, if there is one.
    pub fn get(&self, packet: &[u8], out: &mut Vec<u8>) -> Option<Hit> {
        if packet.len() < 12 || packet.len() > MAX_KEY {
            return None;
        }
        let entry = self.map.get(&packet[2..])?;
        out.clear();
        out.extend_from_slice(&entry.bytes);
        out[0] = packet[0];
        out[1] = packet[1];
        Some(Hit {
            qtype: entry.qtype,
            rcode: entry.rcode,
        })
    }

    /// Remembers `response` to `packet` when it came from the zone alone.
    pub fn insert(&mut self, packet: &[u8], response: &Response) {
        if !response.from_zone
            || self.capacity == 0
            || packet.len() < 12
            || packet.len() > MAX_KEY
            || response.bytes.len() < 12
        {
            return;
        }
        if self.map.len() >= self.capacity {
            // Bounded without bookkeeping: start over. Hot names come back
            // after one miss each.
            self.map.clear();
        }
        self.map.insert(
            packet[2..].into(),
            Entry {
                bytes: response.bytes.as_slice().into(),
                qtype: response.qtype,
                rcode: response.rcode,
            },
        );
    }

    /// Forgets everything (the zone changed).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of answers held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
