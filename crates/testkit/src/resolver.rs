//! A tiny authoritative DNS server on loopback, standing in for the
//! upstream resolvers of `/etc/resolv.conf`, so that forwarding tests never
//! reach the outside network.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata};

type Records = Arc<Mutex<HashMap<(String, RecordType), Vec<Record>>>>;

/// A loopback resolver answering from records the test adds; NXDOMAIN for
/// anything else. Stops when dropped.
pub struct Upstream {
    /// UDP and TCP address.
    pub addr: SocketAddr,
    records: Records,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    /// Starts on `127.0.0.1` with a free port (the same for UDP and TCP).
    pub fn start() -> anyhow::Result<Upstream> {
        let (udp, tcp) = bind()?;
        let addr = udp.local_addr()?;
        let records: Records = Arc::default();
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        // Timeouts let the threads notice `stop` without a wake-up socket.
        udp.set_read_timeout(Some(Duration::from_millis(100)))?;
        tcp.set_nonblocking(true)?;
        {
            let (records, queries, stop) = (records.clone(), queries.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    if let Some(answer) = respond(&records, &buf[..n]) {
                        let _ = udp.send_to(&answer, peer);
                    }
                }
            });
        }
        {
            let (records, queries, stop) = (records.clone(), queries.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).is_ok() {
                        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut packet).is_err() {
                            break;
                        }
                        queries.fetch_add(1, Ordering::Relaxed);
                        let Some(answer) = respond(&records, &packet) else {
                            break;
                        };
                        let n = u16::try_from(answer.len()).unwrap_or(0).to_be_bytes();
                        if stream
                            .write_all(&n)
                            .and_then(|_| stream.write_all(&answer))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            });
        }
        Ok(Upstream {
            addr,
            records,
            queries,
            stop,
        })
    }

    /// Adds an A or AAAA record for `name` (TTL 300).
    pub fn add_address(&self, name: &str, ip: IpAddr) {
        let owner = fqdn(name);
        let (t, data) = match ip {
            IpAddr::V4(v4) => (RecordType::A, RData::A(rdata::A(v4))),
            IpAddr::V6(v6) => (RecordType::AAAA, RData::AAAA(rdata::AAAA(v6))),
        };
        self.add(owner, t, data);
    }

    /// Adds a TXT record for `name` (TTL 300).
    pub fn add_txt(&self, name: &str, text: &str) {
        self.add(
            fqdn(name),
            RecordType::TXT,
            RData::TXT(rdata::TXT::new(vec![text.to_string()])),
        );
    }

    fn add(&self, owner: Name, t: RecordType, data: RData) {
        let key = (owner.to_lowercase().to_ascii(), t);
        let record = Record::from_rdata(owner, 300, data);
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .push(record);
    }

    /// Queries received so far (UDP and TCP).
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn fqdn(name: &str) -> Name {
    let mut n = Name::from_ascii(name).unwrap_or_else(|_| Name::root());
    n.set_fqdn(true);
    n
}

fn bind() -> anyhow::Result<(UdpSocket, TcpListener)> {
    for _ in 0..16 {
        let udp = UdpSocket::bind("127.0.0.1:0").context("cannot bind a loopback UDP socket")?;
        let addr = udp.local_addr()?;
        if let Ok(tcp) = TcpListener::bind(addr) {
            return Ok((udp, tcp));
        }
    }
    anyhow::bail!("no port free for both UDP and TCP on 127.0.0.1")
}

fn respond(records: &Records, packet: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let q = query.queries.first()?.clone();
    let mut m = Message::response(query.id, query.op_code);
    m.metadata.message_type = MessageType::Response;
    m.metadata.recursion_desired = query.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = true;
    m.add_query(q.clone());
    let key = (q.name().to_lowercase().to_ascii(), q.query_type());
    let found = records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    match found {
        Some(answers) => {
            m.add_answers(answers);
        }
        None => m.metadata.response_code = ResponseCode::NXDomain,
    }
    m.to_vec().ok()
}
