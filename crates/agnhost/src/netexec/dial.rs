//! `/dial`: the pod under test connects to another address and reports
//! what it got, as e2e tests use netexec to probe pod-to-Service paths.
//! HTTP GETs `http://host:port/<request>`; UDP sends `<request>` and reads
//! one datagram. Answers `{"errors":[...],"responses":[...]}`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

use super::Form;
use crate::http::{Reply, text};
use crate::log;

/// The real image's per-try timeout (its HTTP client and UDP read deadline).
const TRY_TIMEOUT: Duration = Duration::from_secs(5);

/// A dial answer larger than this is cut (the real UDP buffer is 2048).
const MAX_HTTP_RESPONSE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    Udp,
}

/// Dials from `source` (the pod IP) where it can reach the target, so the
/// far side sees the pod's address as it would in a cluster.
pub(super) async fn dial(form: &Form, source: Option<IpAddr>) -> Reply {
    let (host, port, request) = (form.get("host"), form.get("port"), form.get("request"));
    let (protocol, tries) = (form.get("protocol"), form.get("tries"));
    log::line(format_args!(
        "GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={tries}"
    ));
    let tries: i64 = if tries.is_empty() {
        1
    } else {
        match tries.parse() {
            Ok(n) => n,
            Err(e) => return bad_request(format!("tries parameter is invalid. {e}")),
        }
    };
    if request.is_empty() {
        return bad_request("request parameter not specified. <nil>".to_string());
    }
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "" | "http" => Protocol::Http,
        "udp" => Protocol::Udp,
        other => return bad_request(format!("unsupported protocol. {other}")),
    };
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let addr = match tokio::net::lookup_host(&target).await.map(|mut a| a.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            return bad_request(format!(
                "host and/or port param are invalid. no address for {target}"
            ));
        }
        Err(e) => return bad_request(format!("host and/or port param are invalid. {e}")),
    };

    let source = source
        .filter(|s| s.is_ipv4() == addr.is_ipv4() && s.is_loopback() == addr.ip().is_loopback());
    let local = SocketAddr::new(
        source.unwrap_or(if addr.is_ipv4() {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u16; 8])
        }),
        0,
    );
    let mut responses = Vec::new();
    let mut errors = Vec::new();
    let mut last = String::new();
    for _ in 0..tries.max(0) {
        let result = match protocol {
            Protocol::Http => dial_http(local, addr, request).await,
            Protocol::Udp => dial_udp(local, addr, request).await,
        };
        match result {
            Ok(response) => {
                last.clone_from(&response);
                responses.push(response);
            }
            Err(e) => {
                last.clear();
                errors.push(e);
            }
        }
    }
    // As the real image: "responses" only when the last try answered something.
    let mut output: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    if !last.is_empty() {
        output.insert("responses", responses);
    }
    if !errors.is_empty() {
        output.insert("errors", errors);
    }
    match serde_json::to_string(&output) {
        Ok(json) => text(StatusCode::OK, json),
        Err(e) => text(
            StatusCode::EXPECTATION_FAILED,
            format!("response could not be serialized. {e}\n"),
        ),
    }
}

fn bad_request(message: String) -> Reply {
    text(StatusCode::BAD_REQUEST, format!("{message}\n"))
}

async fn dial_http(local: SocketAddr, addr: SocketAddr, request: &str) -> Result<String, String> {
    let attempt = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        let socket = socket
            .and_then(|s| s.bind(local).map(|()| s))
            .map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let mut stream = socket
            .connect(addr)
            .await
            .map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let path = request.trim_start_matches('/');
        let head = format!(
            "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("write to {addr}: {e}"))?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_HTTP_RESPONSE as u64)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        http_body(&raw).ok_or_else(|| format!("malformed HTTP response from {addr}"))
    };
    match tokio::time::timeout(TRY_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "Get \"http://{addr}/{request}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// The body of a whole HTTP/1.1 response (`Content-Length`, chunked, or
/// up to the close).
fn http_body(raw: &[u8]) -> Option<String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split])
        .ok()?
        .to_ascii_lowercase();
    let body = &raw[split + 4..];
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let body: Vec<u8> = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(body)?
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.get(..len)?.to_vec()
    } else {
        body.to_vec()
    };
    Some(String::from_utf8_lossy(&body).into_owned())
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&body[..line_end]).ok()?;
        let size_hex = size_field.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

async fn dial_udp(local: SocketAddr, addr: SocketAddr, request: &str) -> Result<String, String> {
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("udp dial failed. err:{e}"))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("udp dial failed. err:{e}"))?;
    socket
        .send(request.as_bytes())
        .await
        .map_err(|e| format!("udp connection write failed. err:{e}"))?;
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(TRY_TIMEOUT, socket.recv(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Ok(_)) => Err("reading from udp connection failed. err:'<nil>'".to_string()),
        Ok(Err(e)) => Err(format!("reading from udp connection failed. err:'{e}'")),
        Err(_) => Err(format!(
            "reading from udp connection failed. err:'read udp {addr}: i/o timeout'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_by_length_chunks_or_close() {
        let fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(http_body(fixed).as_deref(), Some("hello"));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).as_deref(), Some("hello"));
        let closed = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert_eq!(http_body(closed).as_deref(), Some("hello"));
        assert_eq!(http_body(b"garbage"), None);
    }

    #[tokio::test]
    async fn bad_arguments_are_400() {
        for query in [
            "host=127.0.0.1&port=1",
            "host=127.0.0.1&port=1&request=x&tries=many",
            "host=127.0.0.1&port=1&request=x&protocol=sctp",
            "host=127.0.0.1&port=notaport&request=x",
        ] {
            let reply = dial(&Form::from_query(query), None).await;
            assert_eq!(reply.status(), StatusCode::BAD_REQUEST, "{query}");
        }
    }
}
