//! `dns-load`: a closed-loop UDP DNS load generator that batches its system
//! calls (`sendmmsg`/`recvmmsg`), so one client thread can ask several
//! times what dnsperf's single thread can.
//!
//! Why it exists: on this 2-core machine dnsperf (one thread) is slower
//! than the servers it measures, so its QPS column measures dnsperf. This
//! client keeps the same shape of load (one socket, at most `--in-flight`
//! queries outstanding, the query file's names in order, a query that gets
//! no answer within `--timeout` is lost) at a lower cost per query, so the
//! server is what saturates. The results are in dnsperf's terms: queries
//! completed per second of the sending period, lost, average latency.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage};
use serde_json::json;

use crate::dnswire;
use crate::scenario::Report;
use crate::stats::Summary;

/// Datagrams per system call.
const BATCH: usize = 64;
/// Responses are plain DNS over UDP (no EDNS in the queries): at most 512
/// bytes.
const MAX_RESPONSE: usize = 512;

/// Flags of `dns-load`.
#[derive(Debug, Clone, Args)]
pub struct DnsLoadArgs {
    /// The server to ask (UDP).
    #[arg(long)]
    pub server: SocketAddr,
    /// Query file in dnsperf's format: one "NAME TYPE" per line.
    #[arg(long)]
    pub queries: PathBuf,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration: u64,
    /// Most queries outstanding at once (dnsperf's -q).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub in_flight: u32,
    /// Seconds after which an unanswered query counts as lost (dnsperf's -t).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=4))]
    pub timeout: u64,
}

/// Reads a dnsperf query file into wire-format queries.
fn load_queries(path: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the query file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(ty)) = (words.next(), words.next()) else {
            anyhow::bail!("{}:{}: expected \"NAME TYPE\"", path.display(), n + 1);
        };
        let ty = dnswire::qtype(ty)
            .with_context(|| format!("{}:{}: unknown record type {ty:?}", path.display(), n + 1))?;
        let q = dnswire::query(name, ty).with_context(|| {
            format!("{}:{}: {name:?} is not a valid name", path.display(), n + 1)
        })?;
        out.push(q);
    }
    anyhow::ensure!(!out.is_empty(), "{} holds no queries", path.display());
    Ok(out)
}

/// Counters of one run.
#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    completed: u64,
    lost: u64,
    noerror: u64,
    nxdomain: u64,
    other_rcode: u64,
    empty_answers: u64,
    truncated: u64,
    /// Answers with an ID nothing is waiting for (late after a timeout, or
    /// duplicated), or that are not DNS responses.
    unexpected: u64,
}

/// Runs the load and reports in dnsperf's terms.
pub fn run(args: &DnsLoadArgs) -> anyhow::Result<Report> {
    let queries = load_queries(&args.queries)?;
    let local: SocketAddr = if args.server.is_ipv4() {
        "127.0.0.1:0".parse()?
    } else {
        "[::1]:0".parse()?
    };
    let socket = UdpSocket::bind(local).context("cannot bind the client socket")?;
    socket
        .connect(args.server)
        .with_context(|| format!("cannot connect to {}", args.server))?;
    // The receive call blocks at most this long, so timeouts and the end of
    // the run are noticed while nothing arrives.
    socket.set_read_timeout(Some(Duration::from_millis(2)))?;
    let fd = socket.as_raw_fd();

    let in_flight_max = args.in_flight as usize;
    let timeout_ns = args.timeout * 1_000_000_000;
    let sending_for = Duration::from_secs(args.duration);
    // Per ID: when it was sent, in ns since `start`, plus one (0 = free).
    let mut sent_at = vec![0u64; 1 << 16];
    let mut order: VecDeque<(u16, u64)> = VecDeque::new();
    let mut latencies_ns: Vec<u32> = Vec::new();
    let mut counts = Counts::default();
    let mut in_flight = 0usize;
    let mut next_id: u16 = 0;
    let mut next_query = 0usize;
    let mut out: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(320)).collect();
    let mut ids = [0u16; BATCH];
    let mut bufs = vec![[0u8; MAX_RESPONSE]; BATCH];

    let start = Instant::now();
    let since = |t: Instant| t.duration_since(start).as_nanos() as u64 + 1;
    loop {
        let now = Instant::now();
        let now_ns = since(now);
        let sending = now.duration_since(start) < sending_for;
        if !sending && (in_flight == 0 || now_ns > sending_for.as_nanos() as u64 + timeout_ns) {
            break;
        }
        while let Some(&(id, t)) = order.front() {
            if now_ns - t < timeout_ns {
                break;
            }
            order.pop_front();
            if sent_at[usize::from(id)] == t {
                sent_at[usize::from(id)] = 0;
                in_flight -= 1;
                counts.lost += 1;
            }
        }

        let room = if sending {
            in_flight_max - in_flight
        } else {
            0
        };
        let n = room.min(BATCH);
        if n > 0 {
            for slot in 0..n {
                // Bounded: fewer than 10,001 of the 65,536 IDs are in use.
                while sent_at[usize::from(next_id)] != 0 {
                    next_id = next_id.wrapping_add(1);
                }
                ids[slot] = next_id;
                next_id = next_id.wrapping_add(1);
                let q = &queries[next_query];
                next_query = (next_query + 1) % queries.len();
                let buf = &mut out[slot];
                buf.clear();
                buf.extend_from_slice(q);
                buf[..2].copy_from_slice(&ids[slot].to_be_bytes());
            }
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(n, None);
            let slices: Vec<[IoSlice<'_>; 1]> =
                out[..n].iter().map(|b| [IoSlice::new(b)]).collect();
            let addrs: Vec<Option<SockaddrStorage>> = vec![None; n];
            let done = match nix::sys::socket::sendmmsg(
                fd,
                &mut headers,
                slices.iter(),
                addrs,
                [],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(r) => r.count(),
                // A full socket buffer: the next round sends them.
                Err(nix::errno::Errno::EAGAIN) => 0,
                // The server is not there (ICMP port unreachable).
                Err(nix::errno::Errno::ECONNREFUSED) => 0,
                Err(e) => return Err(std::io::Error::from(e)).context("sendmmsg"),
            };
            for &id in &ids[..done] {
                sent_at[usize::from(id)] = now_ns;
                order.push_back((id, now_ns));
            }
            in_flight += done;
            counts.sent += done as u64;
        }

        let mut lens = [0usize; BATCH];
        // The headers and slices borrow `bufs` only inside this block.
        let got = {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match nix::sys::socket::recvmmsg(
                fd,
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    let mut k = 0;
                    for r in results {
                        lens[k] = r.bytes;
                        k += 1;
                    }
                    k
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => 0,
                Err(nix::errno::Errno::ECONNREFUSED) => 0,
                Err(e) => return Err(std::io::Error::from(e)).context("recvmmsg"),
            }
        };
        if got == 0 {
            continue;
        }
        let arrived = since(Instant::now());
        for (buf, &len) in bufs.iter().zip(&lens[..got]) {
            let Some(h) = dnswire::header(&buf[..len.min(MAX_RESPONSE)]) else {
                counts.unexpected += 1;
                continue;
            };
            let t = sent_at[usize::from(h.id)];
            if t == 0 {
                counts.unexpected += 1;
                continue;
            }
            sent_at[usize::from(h.id)] = 0;
            in_flight -= 1;
            counts.completed += 1;
            latencies_ns.push((arrived - t).min(u64::from(u32::MAX)) as u32);
            match h.rcode {
                0 => counts.noerror += 1,
                3 => counts.nxdomain += 1,
                _ => counts.other_rcode += 1,
            }
            if h.rcode == 0 && h.answers == 0 {
                counts.empty_answers += 1;
            }
            if h.truncated {
                counts.truncated += 1;
            }
        }
    }
    // Whatever is still outstanding at the end waited the whole timeout.
    counts.lost += in_flight as u64;

    let qps = counts.completed as f64 / sending_for.as_secs_f64();
    let mut ms: Vec<f64> = latencies_ns.iter().map(|&n| f64::from(n) / 1e6).collect();
    let latency = Summary::of_ms(&mut ms);
    let human = format!(
        "dns-load {}: {:.0} QPS, {} lost of {} sent, latency {}",
        args.server,
        qps,
        counts.lost,
        counts.sent,
        latency
            .map(|s| format!("avg {:.3} ms, {}", s.mean_ms, s.short()))
            .unwrap_or_else(|| "n/a".into())
    );
    Ok(Report {
        json: json!({
            "scenario": "dns-load",
            "server": args.server.to_string(),
            "duration_s": args.duration,
            "in_flight": args.in_flight,
            "queries_per_second": qps.round(),
            "sent": counts.sent,
            "completed": counts.completed,
            "lost": counts.lost,
            "noerror": counts.noerror,
            "nxdomain": counts.nxdomain,
            "other_rcode": counts.other_rcode,
            "noerror_without_answer": counts.empty_answers,
            "truncated": counts.truncated,
            "unexpected": counts.unexpected,
            "latency": latency,
        }),
        human,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP echo "server" that turns each query into a NOERROR response
    /// with one answer: the generator must count every query completed and
    /// none lost.
    #[test]
    fn counts_every_answer_of_a_responder() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let responder = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut answered = 0u64;
            while let Ok((n, peer)) = server.recv_from(&mut buf) {
                buf[2] |= 0x80;
                buf[7] = 1;
                let _ = server.send_to(&buf[..n], peer);
                answered += 1;
            }
            answered
        });
        let dir = std::env::temp_dir().join(format!("sb-dnsload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("queries");
        std::fs::write(&file, "a.example A\n# comment\nb.example SRV\n").expect("write");
        let args = DnsLoadArgs {
            server: addr,
            queries: file,
            duration: 1,
            in_flight: 20,
            timeout: 1,
        };
        let report = run(&args).expect("runs");
        let answered = responder.join().expect("responder");
        let j = &report.json;
        assert_eq!(j["lost"], 0, "{j}");
        assert!(j["completed"].as_u64().unwrap_or(0) > 100, "{j}");
        assert_eq!(j["completed"].as_u64(), Some(answered), "{j}");
        assert_eq!(j["noerror_without_answer"], 0, "{j}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_query_files_are_named() {
        let dir = std::env::temp_dir().join(format!("sb-dnsload-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("q");
        std::fs::write(&file, "a.example A\nb.example WKS\n").expect("write");
        let e = load_queries(&file).expect_err("WKS is refused");
        assert!(
            format!("{e:#}").contains(":2: unknown record type"),
            "{e:#}"
        );
        std::fs::write(&file, "\n").expect("write");
        assert!(load_queries(&file).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
