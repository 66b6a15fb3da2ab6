//! A small backend for proxy tests that answers with its own name:
//!
//! - HTTP/1.1 (keep-alive): `GET /` → `<name>\n`; `GET /download?bytes=N&chunk_ms=M`
//!   → N bytes (`x`), sent in 16 KiB chunks M ms apart, for long transfers;
//! - raw TCP: a client that sends nothing (or a line that is not HTTP) within
//!   50 ms gets `<name>\n` and the connection closes;
//! - UDP on the same port number: every datagram is answered with `<name>\n`.
//!
//! It can be made slow ([`Backend::set_delay`]) and killed ([`Backend::kill`]:
//! listeners and open connections close; connects are then refused).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

/// How long a silent client waits before it is treated as raw TCP.
const RAW_AFTER: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Shared {
    name: String,
    delay_ms: AtomicU64,
    requests: AtomicUsize,
    open: AtomicUsize,
}

/// A running backend; dropping it kills it.
#[derive(Debug)]
pub struct Backend {
    name: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Backend {
    /// Starts `name` on 127.0.0.1 with a free port (TCP and UDP).
    pub async fn start(name: &str) -> anyhow::Result<Backend> {
        Backend::start_on(name, IpAddr::from([127, 0, 0, 1])).await
    }

    /// Starts `name` on `ip` (any 127.x address works on Linux, e.g. a pod
    /// address from 127.244.0.0/16) with a free port for both TCP and UDP.
    pub async fn start_on(name: &str, ip: IpAddr) -> anyhow::Result<Backend> {
        // TCP takes a free port; UDP then needs the same number, which is
        // almost always free too. Try a few times otherwise.
        let mut last = None;
        for _ in 0..20 {
            let tcp = TcpListener::bind((ip, 0))
                .await
                .with_context(|| format!("cannot bind TCP on {ip}"))?;
            let addr = tcp.local_addr()?;
            match UdpSocket::bind(addr).await {
                Ok(udp) => return Ok(Backend::run(name, tcp, udp)),
                Err(e) => last = Some(e),
            }
        }
        Err(anyhow::anyhow!(
            "no port free for both TCP and UDP on {ip}: {last:?}"
        ))
    }

    fn run(name: &str, tcp: TcpListener, udp: UdpSocket) -> Backend {
        let addr = tcp.local_addr().expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            delay_ms: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept(tcp, Arc::clone(&shared), stopped.clone()));
        tokio::spawn(answer_udp(udp, Arc::clone(&shared), stopped));
        Backend {
            name: name.to_owned(),
            addr,
            shared,
            stop,
        }
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address (TCP and UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delays every answer by `delay` (a slow backend).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Requests, raw connections and datagrams answered so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// TCP connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Closes the listeners and every open connection.
    pub fn kill(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                let stop = stop.clone();
                tokio::spawn(async move {
                    shared.open.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = serve(stream, &shared) => {}
                        _ = stopped(stop) => {}
                    }
                    shared.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
            _ = stopped(stop.clone()) => return,
        }
    }
}

async fn delay(shared: &Shared) {
    let ms = shared.delay_ms.load(Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

async fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    // Raw TCP: nothing arrives soon.
    match tokio::time::timeout(RAW_AFTER, stream.read(&mut chunk)).await {
        Err(_) => return answer_raw(stream, shared).await,
        Ok(Ok(0)) => return Ok(()),
        Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        Ok(Err(e)) => return Err(e),
    }
    let is_http = [b"GET ".as_slice(), b"HEAD ", b"POST "]
        .iter()
        .any(|m| buf.starts_with(m) || m.starts_with(&buf));
    if !is_http {
        return answer_raw(stream, shared).await;
    }
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let close = head.to_ascii_lowercase().contains("connection: close");
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        delay(shared).await;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let conn = if close { "close" } else { "keep-alive" };
        if let Some(query) = target.strip_prefix("/download") {
            let param = |k: &str| -> u64 {
                query
                    .trim_start_matches('?')
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                    .unwrap_or(0)
            };
            let (total, chunk_ms) = (param("bytes"), param("chunk_ms"));
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nContent-Type: application/octet-stream\r\nX-Backend: {}\r\nConnection: {conn}\r\n\r\n",
                shared.name
            );
            stream.write_all(head.as_bytes()).await?;
            let block = vec![b'x'; 16 * 1024];
            let mut left = total;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                stream.write_all(&block[..n]).await?;
                left -= n as u64;
                if chunk_ms > 0 && left > 0 {
                    tokio::time::sleep(Duration::from_millis(chunk_ms)).await;
                }
            }
        } else {
            let body = format!("{}\n", shared.name);
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: {conn}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await?;
        }
        if close {
            return stream.shutdown().await;
        }
    }
}

async fn answer_raw(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    delay(shared).await;
    shared.requests.fetch_add(1, Ordering::Relaxed);
    stream
        .write_all(format!("{}\n", shared.name).as_bytes())
        .await?;
    stream.shutdown().await
}

async fn answer_udp(socket: UdpSocket, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65536];
    let reply = format!("{}\n", shared.name);
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let Ok((_, from)) = got else { continue };
                delay(&shared).await;
                shared.requests.fetch_add(1, Ordering::Relaxed);
                let _ = socket.send_to(reply.as_bytes(), from).await;
            }
            _ = stopped(stop.clone()) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_http_raw_tcp_and_udp_with_its_name_and_dies_on_kill() {
        let b = Backend::start("alpha").await.unwrap();
        let mut s = TcpStream::connect(b.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert_eq!(out.matches("alpha\n").count(), 2, "{out}");

        let mut s = TcpStream::connect(b.addr()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "alpha\n");

        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        u.send_to(b"hi", b.addr()).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), u.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"alpha\n");
        assert_eq!(from, b.addr());
        assert_eq!(b.requests(), 4);

        b.kill();
        crate::wait_for(Duration::from_secs(5), "connects to be refused", || async {
            TcpStream::connect(b.addr()).await.is_err().then_some(())
        })
        .await
        .unwrap();
    }
}
