//! The servers on real loopback sockets, bound to port 0, run in-process.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_agnhost::{Error, netexec, serve_hostname};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

const LOOPBACK: [u8; 4] = [127, 0, 0, 1];

/// One HTTP/1.1 request on a fresh connection; `None` when the server
/// closed it without answering. Returns (status, raw head, body).
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    if raw.is_empty() {
        return None;
    }
    let raw = String::from_utf8(raw).expect("utf-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    Some((status, head.to_string(), body.to_string()))
}

async fn udp_ask(addr: SocketAddr, what: &str) -> String {
    let socket = UdpSocket::bind(SocketAddr::from((LOOPBACK, 0)))
        .await
        .expect("bind");
    socket.connect(addr).await.expect("connect");
    socket.send(what.as_bytes()).await.expect("send");
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("a UDP answer within 5 s")
        .expect("recv");
    String::from_utf8(buf[..n].to_vec()).expect("utf-8")
}

fn netexec_config() -> netexec::Config {
    netexec::Config {
        http: SocketAddr::from((LOOPBACK, 0)),
        udp: vec![SocketAddr::from((LOOPBACK, 0))],
        sctp_requested: false,
        http_override: None,
        delay_shutdown: Duration::ZERO,
        hostname: "echo-7d4f".to_string(),
    }
}

#[tokio::test]
async fn netexec_serves_http_and_udp_until_terminated() {
    let server = netexec::Server::bind(netexec_config()).await.expect("bind");
    let http = server.http_addr();
    let udp = server.udp_addrs()[0];
    let (term_tx, term_rx) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = term_rx.await;
    }));

    let (status, _, body) = http_get(http, "/hostname").await.expect("answer");
    assert_eq!((status, body.as_str()), (200, "echo-7d4f"));
    let (_, _, body) = http_get(http, "/echo?msg=hi").await.expect("answer");
    assert_eq!(body, "hi");
    let (status, _, _) = http_get(http, "/healthz").await.expect("answer");
    assert_eq!(status, 200);
    let (_, _, body) = http_get(http, "/clientip").await.expect("answer");
    assert!(body.starts_with("127.0.0.1:"), "{body}");

    assert_eq!(udp_ask(udp, "hostname").await, "echo-7d4f");
    assert_eq!(udp_ask(udp, "echo Hello").await, "hello");
    assert!(udp_ask(udp, "clientip").await.starts_with("127.0.0.1:"));

    term_tx.send(()).expect("server running");
    assert_eq!(running.await.expect("joins"), 0);
    assert!(TcpStream::connect(http).await.is_err(), "listener closed");
}

#[tokio::test]
async fn netexec_exit_cuts_the_connection_and_returns_the_code() {
    let mut config = netexec_config();
    config.udp.clear();
    let server = netexec::Server::bind(config).await.expect("bind");
    let http = server.http_addr();
    let running = tokio::spawn(server.run(std::future::pending()));
    // Without a UDP server the real image never reports healthy.
    assert_eq!(http_get(http, "/healthz").await.expect("answer").0, 412);
    assert_eq!(http_get(http, "/exit?code=5").await, None);
    assert_eq!(running.await.expect("joins"), 5);
}

#[tokio::test]
async fn netexec_graceful_exit_answers_first() {
    let server = netexec::Server::bind(netexec_config()).await.expect("bind");
    let http = server.http_addr();
    let running = tokio::spawn(server.run(std::future::pending()));
    let (status, _, body) = http_get(http, "/exit?code=4&timeout=5s")
        .await
        .expect("answered before stopping");
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(running.await.expect("joins"), 4);
}

#[tokio::test]
async fn a_taken_port_is_a_bind_error() {
    let taken = std::net::TcpListener::bind(SocketAddr::from((LOOPBACK, 0))).expect("bind");
    let mut config = netexec_config();
    config.http = taken.local_addr().expect("addr");
    match netexec::Server::bind(config).await {
        Err(Error::Bind { protocol, addr, .. }) => {
            assert_eq!(
                (protocol, addr),
                ("HTTP", taken.local_addr().expect("addr"))
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("bound a taken port"),
    }
}

fn serve_hostname_config() -> serve_hostname::Config {
    serve_hostname::Config {
        ip: LOOPBACK.into(),
        port: 0,
        tcp: false,
        udp: false,
        http: true,
        close: true,
        hostname: "hostnames-x1".to_string(),
    }
}

#[tokio::test]
async fn serve_hostname_over_http_closes_when_asked() {
    let server = serve_hostname::Server::bind(serve_hostname_config())
        .await
        .expect("bind");
    let http = server.http_addr().expect("http");
    assert_eq!((server.tcp_addr(), server.udp_addr()), (None, None));
    let (term_tx, term_rx) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = term_rx.await;
    }));
    let (status, head, body) = http_get(http, "/any/path").await.expect("answer");
    assert_eq!((status, body.as_str()), (200, "hostnames-x1"));
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    term_tx.send(()).expect("running");
    assert_eq!(running.await.expect("joins"), 0);
}

#[tokio::test]
async fn serve_hostname_over_raw_tcp_and_udp() {
    let mut config = serve_hostname_config();
    (config.http, config.tcp, config.udp) = (false, true, true);
    let server = serve_hostname::Server::bind(config).await.expect("bind");
    let (tcp, udp) = (
        server.tcp_addr().expect("tcp"),
        server.udp_addr().expect("udp"),
    );
    assert_eq!(server.http_addr(), None);
    let running = tokio::spawn(server.run(std::future::pending()));

    let mut stream = TcpStream::connect(tcp).await.expect("connect");
    let mut got = String::new();
    stream.read_to_string(&mut got).await.expect("read");
    assert_eq!(got, "hostnames-x1");
    assert_eq!(udp_ask(udp, "anything").await, "hostnames-x1");
    running.abort();
}

#[tokio::test]
async fn serve_hostname_refuses_http_with_raw_modes() {
    let mut config = serve_hostname_config();
    config.tcp = true;
    assert!(matches!(
        serve_hostname::Server::bind(config).await,
        Err(Error::InvalidFlags { .. })
    ));
}

#[test]
fn main_reports_bad_flag_combinations_with_exit_1() {
    let code = switchboard_agnhost::main(
        ["agnhost", "serve-hostname", "--udp"]
            .into_iter()
            .map(Into::into)
            .collect(),
    );
    assert_eq!(code, std::process::ExitCode::FAILURE);
}

#[tokio::test]
async fn netexec_dials_http_and_udp_from_the_pod_ip() {
    // Another loopback address, as a pod's 127.244.x.y would be.
    let pod_ip = [127, 0, 0, 2];
    let mut config = netexec_config();
    config.http = SocketAddr::from((pod_ip, 0));
    config.udp = vec![SocketAddr::from((pod_ip, 0))];
    let server = netexec::Server::bind(config).await.expect("bind");
    let (http, udp) = (server.http_addr(), server.udp_addrs()[0]);
    let running = tokio::spawn(server.run(std::future::pending()));
    let path = format!(
        "/dial?request=hostname&protocol=http&host=127.0.0.2&port={}&tries=2",
        http.port()
    );
    let (status, _, body) = http_get(http, &path).await.expect("answer");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"responses":["echo-7d4f","echo-7d4f"]}"#)
    );
    let path = format!(
        "/dial?request=echo%20hi&protocol=udp&host=127.0.0.2&port={}",
        udp.port()
    );
    let (_, _, body) = http_get(http, &path).await.expect("answer");
    assert_eq!(body, r#"{"responses":["hi"]}"#);
    let path = format!("/dial?request=clientip&host=127.0.0.2&port={}", http.port());
    let (_, _, body) = http_get(http, &path).await.expect("answer");
    assert!(
        body.starts_with(r#"{"responses":["127.0.0.2:"#),
        "the pod IP is the source: {body}"
    );
    // Nothing listens on the (closed) probe port: an error, no responses.
    let closed = std::net::TcpListener::bind(SocketAddr::from((LOOPBACK, 0))).expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let path = format!("/dial?request=hostname&host=127.0.0.1&port={port}");
    let (_, _, body) = http_get(http, &path).await.expect("answer");
    assert!(body.starts_with(r#"{"errors":["dial tcp"#), "{body}");
    running.abort();
}
