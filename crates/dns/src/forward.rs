//! Forwarding names outside the zone to upstream resolvers, with a bounded
//! cache of their answers (CoreDNS `forward` + `cache 30`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::handler::MAX_UDP_PAYLOAD;

/// Longest time an upstream answer is cached, whatever its TTL (CoreDNS's
/// default Corefile has `cache 30`).
const MAX_CACHE_TTL: u32 = 30;

/// Why an upstream gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No upstream is configured.
    #[error("no upstream resolver is configured")]
    NoUpstream,
    /// The upstream did not answer in time.
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout {
        /// The upstream.
        upstream: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// A socket error talking to the upstream.
    #[error("cannot query upstream {upstream}: {source}")]
    Io {
        /// The upstream.
        upstream: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The upstream sent something that is not an answer to our question.
    #[error("upstream {upstream} sent an invalid answer: {reason}")]
    Invalid {
        /// The upstream.
        upstream: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// The upstream answered SERVFAIL or REFUSED.
    #[error("upstream {upstream} answered {rcode}")]
    Failed {
        /// The upstream.
        upstream: SocketAddr,
        /// Its answer.
        rcode: ResponseCode,
    },
}

/// The upstream resolvers and their answer cache.
#[derive(Debug)]
pub struct Upstreams {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    cache: Mutex<Cache>,
}

#[derive(Debug)]
struct Cache {
    entries: HashMap<(Name, RecordType), (Instant, Instant, Message)>,
    capacity: usize,
}

/// The outcome of [`Upstreams::resolve`].
#[derive(Debug)]
pub struct Resolved {
    /// The answer.
    pub message: Message,
    /// True when it came from the cache.
    pub cached: bool,
}

impl Upstreams {
    /// Upstreams tried in order, each for at most `timeout`, with a cache of
    /// at most `cache_size` answers.
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration, cache_size: usize) -> Upstreams {
        Upstreams {
            servers,
            timeout,
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                capacity: cache_size,
            }),
        }
    }

    /// The upstream addresses.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Resolves `name`/`qtype` through the cache, then each upstream in
    /// turn; `errors` is called for each upstream that failed.
    pub async fn resolve(
        &self,
        name: &Name,
        qtype: RecordType,
        tcp: bool,
        mut errors: impl FnMut(&Error),
    ) -> Result<Resolved, Error> {
        let key = (name.to_lowercase(), qtype);
        if let Some(message) = self.cached(&key) {
            return Ok(Resolved {
                message,
                cached: true,
            });
        }
        let mut last = Error::NoUpstream;
        for &upstream in &self.servers {
            match self.ask(upstream, name, qtype, tcp).await {
                Ok(message) => {
                    self.store(key, &message);
                    return Ok(Resolved {
                        message,
                        cached: false,
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "upstream failed");
                    errors(&e);
                    last = e;
                }
            }
        }
        Err(last)
    }

    fn cached(&self, key: &(Name, RecordType)) -> Option<Message> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (stored, expires, message) = cache.entries.get(key)?;
        let now = Instant::now();
        if now >= *expires {
            return None;
        }
        let elapsed = u32::try_from(now.duration_since(*stored).as_secs()).unwrap_or(u32::MAX);
        let mut m = message.clone();
        for r in m
            .answers
            .iter_mut()
            .chain(m.authorities.iter_mut())
            .chain(m.additionals.iter_mut())
        {
            r.decrement_ttl(elapsed);
        }
        Some(m)
    }

    fn store(&self, key: (Name, RecordType), message: &Message) {
        let ttl = cache_ttl(message);
        if ttl == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.capacity == 0 {
            return;
        }
        let now = Instant::now();
        if cache.entries.len() >= cache.capacity {
            cache.entries.retain(|_, (_, expires, _)| *expires > now);
            if cache.entries.len() >= cache.capacity {
                // Still full of live answers: drop an arbitrary one.
                if let Some(k) = cache.entries.keys().next().cloned() {
                    cache.entries.remove(&k);
                }
            }
        }
        let mut m = message.clone();
        m.edns = None;
        cache
            .entries
            .insert(key, (now, now + Duration::from_secs(u64::from(ttl)), m));
    }

    async fn ask(
        &self,
        upstream: SocketAddr,
        name: &Name,
        qtype: RecordType,
        tcp: bool,
    ) -> Result<Message, Error> {
        let id: u16 = rand::random();
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name.clone(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        query.set_edns(edns);
        let bytes = query.to_vec().map_err(|e| Error::Invalid {
            upstream,
            reason: format!("cannot encode the query: {e}"),
        })?;
        let io = |source| Error::Io { upstream, source };
        let exchange = async {
            let mut answer = if tcp {
                tcp_exchange(upstream, &bytes).await.map_err(io)?
            } else {
                udp_exchange(upstream, &bytes, id).await.map_err(io)?
            };
            if !tcp && answer.get(2).is_some_and(|b| b & 0x02 != 0) {
                // Truncated: ask again over TCP for the whole answer.
                answer = tcp_exchange(upstream, &bytes).await.map_err(io)?;
            }
            Ok::<_, Error>(answer)
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::Timeout {
                upstream,
                timeout: self.timeout,
            })??;
        let message = Message::from_vec(&answer).map_err(|e| Error::Invalid {
            upstream,
            reason: e.to_string(),
        })?;
        let invalid = |reason: &str| Error::Invalid {
            upstream,
            reason: reason.to_string(),
        };
        if message.id != id || message.message_type != MessageType::Response {
            return Err(invalid("id or message type does not match the query"));
        }
        let same_question = message.queries.len() == 1
            && message.queries[0].query_type() == qtype
            && message.queries[0].name().eq_ignore_root(name);
        if !same_question {
            return Err(invalid("the question does not match the query"));
        }
        if matches!(
            message.response_code,
            ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp
        ) {
            return Err(Error::Failed {
                upstream,
                rcode: message.response_code,
            });
        }
        Ok(message)
    }
}

async fn udp_exchange(upstream: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A stray datagram with another id is not our answer: keep waiting.
        if n >= 2 && buf[0..2] == id.to_be_bytes() {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::other("query longer than 65535 bytes"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// How long to keep an answer: its smallest TTL, or for a negative answer
/// the SOA's (RFC 2308), at most [`MAX_CACHE_TTL`].
fn cache_ttl(m: &Message) -> u32 {
    let ttl = if m.answers.is_empty() {
        m.authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
                _ => None,
            })
            .unwrap_or(0)
    } else {
        m.answers.iter().map(|r| r.ttl).min().unwrap_or(0)
    };
    ttl.min(MAX_CACHE_TTL)
}

/// The nameservers of a resolv.conf text, on port 53, in order.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next()?;
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            // A scoped IPv6 address (fe80::1%eth0) cannot be parsed by std;
            // such servers are skipped.
            addr.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}
