//! `agnhost netexec`: an HTTP server with the netexec endpoints and UDP
//! servers answering `hostname`, `echo <msg>` and `clientip`.
//!
//! Answers are those of the real image, byte for byte where tests compare
//! them (`/hostname`, `/echo`, `/clientip`, the UDP replies, `/dial`'s
//! JSON); the endpoints that run commands or write files (`/shell`,
//! `/upload`) answer `501 Not Implemented`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
#[cfg(test)]
use http_body_util::Full;
use http_body_util::{BodyExt, Limited};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::http::{Reply, Stop, text};
use crate::{Error, duration, log};

/// What `netexec` serves and where.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP listen address (port 0 picks one; see [`Server::http_addr`]).
    pub http: SocketAddr,
    /// One UDP server per address; empty disables UDP (`--udp-port=-1`).
    pub udp: Vec<SocketAddr>,
    /// `--sctp-port` was given. No SCTP server runs, but as with the real
    /// image the server then counts as ready without a UDP server.
    pub sctp_requested: bool,
    /// `--http-override`: answer every request as a GET of this path and query.
    pub http_override: Option<String>,
    /// `--delay-shutdown`: how long to keep serving after SIGTERM.
    pub delay_shutdown: Duration,
    /// What `/hostname` and the UDP `hostname` command answer.
    pub hostname: String,
}

/// A bound netexec server; [`Server::run`] serves it.
pub struct Server {
    http: TcpListener,
    udp: Vec<UdpSocket>,
    state: Arc<State>,
    exits: mpsc::Receiver<ExitRequest>,
    delay_shutdown: Duration,
}

/// Shared by every handler.
struct State {
    hostname: String,
    /// `/healthz`: a UDP (or, in the real image, SCTP) server is running.
    ready: AtomicBool,
    /// `/readyz` answers 503 once SIGTERM has arrived.
    terminating: AtomicBool,
    http_override: Option<String>,
    exits: mpsc::Sender<ExitRequest>,
    /// The pod IP, the source of `/dial` connections (`None`: the kernel's choice).
    source_ip: Option<std::net::IpAddr>,
}

/// `/exit` or `/shutdown`: leave with `code`, stopping as `stop` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExitRequest {
    code: u8,
    stop: Stop,
}

impl Server {
    /// Binds the HTTP listener and the UDP sockets.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        let http = crate::http::bind("HTTP", config.http).await?;
        let mut udp = Vec::with_capacity(config.udp.len());
        for &addr in &config.udp {
            let socket = UdpSocket::bind(addr).await.map_err(|source| Error::Bind {
                protocol: "UDP",
                addr,
                source,
            })?;
            udp.push(socket);
        }
        let (exit_tx, exit_rx) = mpsc::channel(4);
        let state = Arc::new(State {
            hostname: config.hostname,
            ready: AtomicBool::new(config.sctp_requested),
            terminating: AtomicBool::new(false),
            http_override: config.http_override,
            exits: exit_tx,
            source_ip: Some(config.http.ip()).filter(|ip| !ip.is_unspecified()),
        });
        Ok(Server {
            http,
            udp,
            state,
            exits: exit_rx,
            delay_shutdown: config.delay_shutdown,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.http
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The bound UDP addresses, in [`Config::udp`] order.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Serves until `terminate` resolves (exit code 0, after
    /// `delay_shutdown`) or a request to `/exit` or `/shutdown` arrives
    /// (its code). Returns the process exit code.
    pub async fn run(mut self, terminate: impl Future<Output = ()>) -> u8 {
        let http_addr = self.http_addr();
        let mut udp_servers = JoinSet::new();
        for socket in self.udp.drain(..) {
            if let Ok(addr) = socket.local_addr() {
                log::line(format_args!("Started UDP server on {addr}"));
            }
            udp_servers.spawn(serve_udp(socket, Arc::clone(&self.state)));
        }
        if !udp_servers.is_empty() {
            self.state.ready.store(true, Ordering::Release);
        }
        log::line(format_args!("Started HTTP server on {http_addr}"));

        let state = Arc::clone(&self.state);
        let handler = Arc::new(move |request, peer| {
            let state = Arc::clone(&state);
            async move { handle(&state, request, Some(peer)).await }
        });
        let mut exits = self.exits;
        let delay = self.delay_shutdown;
        let state = Arc::clone(&self.state);
        let stop = async move {
            tokio::select! {
                // The sender lives in `state`, so this never yields None.
                Some(exit) = exits.recv() => (exit.stop, exit.code),
                () = terminate => {
                    state.terminating.store(true, Ordering::Release);
                    if !delay.is_zero() {
                        log::line(format_args!("Sleeping {delay:?} before terminating..."));
                        tokio::time::sleep(delay).await;
                    }
                    (Stop::Now, 0)
                }
            }
        };
        let code = crate::http::serve(self.http, handler, stop).await;
        udp_servers.abort_all();
        code
    }
}

/// Answers one request. `peer` is `None` for an `--http-override`
/// request, which (as in the real image) carries no client address.
async fn handle<B>(state: &State, request: Request<B>, peer: Option<SocketAddr>) -> Reply
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    if let Some(target) = &state.http_override {
        // The real image builds a fresh GET from the override: no headers,
        // no body, no remote address.
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let form = Form::from_query(query);
        return route(state, path, &form, &HeaderMap::new(), None).await;
    }
    let mut form = match form_body(&parts.method, &parts.headers, body).await {
        Ok(form) => form,
        Err(reply) => return reply,
    };
    form.extend_query(parts.uri.query().unwrap_or(""));
    route(state, parts.uri.path(), &form, &parts.headers, peer).await
}

async fn route(
    state: &State,
    path: &str,
    form: &Form,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Reply {
    match path {
        "/clientip" => {
            log::line(format_args!("GET /clientip"));
            text(
                StatusCode::OK,
                peer.map(|p| p.to_string()).unwrap_or_default(),
            )
        }
        "/header" => header_reply(form.get("key"), headers),
        "/echo" => echo(form),
        "/exit" => exit(state, form).await,
        "/healthz" => {
            log::line(format_args!("GET /healthz"));
            if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "")
            } else {
                text(StatusCode::PRECONDITION_FAILED, "")
            }
        }
        "/readyz" => {
            log::line(format_args!("GET /readyz"));
            if state.terminating.load(Ordering::Acquire) {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            } else if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ok")
            } else {
                text(StatusCode::PRECONDITION_FAILED, "")
            }
        }
        "/hostname" | "/hostName" => {
            log::line(format_args!("GET {path}"));
            text(StatusCode::OK, state.hostname.clone())
        }
        "/redirect" => redirect(form),
        "/shutdown" => {
            log::line(format_args!("GET /shutdown"));
            exit_now(state, 0).await
        }
        "/dial" => dial::dial(form, state.source_ip).await,
        "/shell" | "/upload" => text(
            StatusCode::NOT_IMPLEMENTED,
            format!("{path} is not supported by switchboard's agnhost\n"),
        ),
        // Go's ServeMux sends every other path to the "/" handler.
        _ => {
            log::line(format_args!("GET /"));
            text(StatusCode::OK, format!("NOW: {}", go_time_now()))
        }
    }
}

fn echo(form: &Form) -> Reply {
    let msg = form.get("msg");
    let code = form.get("code");
    log::line(format_args!("GET /echo?msg={msg}&code={code}"));
    let status = if code.is_empty() {
        StatusCode::OK
    } else {
        let Ok(code) = code.parse::<i64>() else {
            return text(
                StatusCode::OK,
                format!("argument 'code' must be an integer or empty, got {code:?}\n"),
            );
        };
        match status_code(code) {
            Some(status) => status,
            None => return invalid_status(code),
        }
    };
    text(status, msg.to_string())
}

fn header_reply(key: &str, headers: &HeaderMap) -> Reply {
    if !key.is_empty() {
        log::line(format_args!("GET /header?key={key}"));
        let value = headers
            .get(key)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        return text(StatusCode::OK, value);
    }
    log::line(format_args!("GET /header"));
    // Go's Request.Header: canonical names, Host taken out into Request.Host;
    // json.Marshal sorts the keys.
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if name == header::HOST {
            continue;
        }
        all.entry(canonical_header_name(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    match serde_json::to_string(&all) {
        Ok(json) => text(StatusCode::OK, json),
        Err(e) => text(
            StatusCode::OK,
            format!("error marshalling header, err: {e}"),
        ),
    }
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-forwarded-for` -> `X-Forwarded-For`.
fn canonical_header_name(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

async fn exit(state: &State, form: &Form) -> Reply {
    let (wait_s, timeout_s, code_s) = (form.get("wait"), form.get("timeout"), form.get("code"));
    log::line(format_args!(
        "GET /exit?code={code_s}&timeout={timeout_s}&wait={wait_s}"
    ));
    let Some(timeout) = optional_duration(timeout_s) else {
        return text(
            StatusCode::OK,
            format!(
                "argument 'timeout' must be a valid golang duration or empty, got {timeout_s:?}\n"
            ),
        );
    };
    let Some(wait) = optional_duration(wait_s) else {
        return text(
            StatusCode::OK,
            format!("argument 'wait' must be a valid golang duration or empty, got {wait_s:?}\n"),
        );
    };
    let code = if code_s.is_empty() {
        Some(0)
    } else {
        code_s.parse::<i64>().ok()
    };
    let Some(code) = code else {
        return text(
            StatusCode::OK,
            format!("argument 'code' must be an integer [0-127] or empty, got {code_s:?}\n"),
        );
    };
    // What the OS keeps of Go's os.Exit(code): its low byte.
    let code = code as u8;
    log::line(format_args!(
        "Will begin shutdown in {wait:?}, allowing {timeout:?} for connections to close, then will exit with {code}"
    ));
    if wait > 0 {
        tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
    }
    if timeout == 0 {
        return exit_now(state, code).await;
    }
    let stop = Stop::Graceful(Duration::from_nanos(timeout.max(0) as u64));
    // The receiver lives as long as the server that runs this handler.
    let _ = state.exits.send(ExitRequest { code, stop }).await;
    text(StatusCode::OK, "")
}

/// Go's `os.Exit` from a handler: the client gets no answer.
async fn exit_now(state: &State, code: u8) -> Reply {
    let _ = state
        .exits
        .send(ExitRequest {
            code,
            stop: Stop::Now,
        })
        .await;
    // The server cuts this connection; never answer.
    std::future::pending().await
}

/// An empty argument is zero, as Go's handlers treat a failed parse of "".
fn optional_duration(s: &str) -> Option<i128> {
    if s.is_empty() {
        Some(0)
    } else {
        duration::parse_go(s)
    }
}

fn redirect(form: &Form) -> Reply {
    let location = form.get("location");
    let code = form.get("code");
    log::line(format_args!("GET /redirect?msg={location}&code={code}"));
    let status = if code.is_empty() {
        StatusCode::FOUND
    } else {
        let Ok(code) = code.parse::<i64>() else {
            return text(
                StatusCode::OK,
                format!("argument 'code' must be an integer or empty, got {code:?}\n"),
            );
        };
        match status_code(code) {
            Some(status) => status,
            None => return invalid_status(code),
        }
    };
    // Go's http.Redirect makes a relative location absolute against the
    // request's directory, which for /redirect is the root.
    let location = if location.contains("://") || location.starts_with('/') {
        location.to_string()
    } else {
        format!("/{location}")
    };
    let escaped = location
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;");
    let body = format!(
        "<a href=\"{escaped}\">{}</a>.\n\n",
        status.canonical_reason().unwrap_or("")
    );
    let mut reply = text(status, body);
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(value) = http::HeaderValue::from_str(&location) {
        reply.headers_mut().insert(header::LOCATION, value);
    }
    reply
}

fn status_code(code: i64) -> Option<StatusCode> {
    u16::try_from(code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
}

/// Go panics on `WriteHeader` outside 100-999 and drops the connection;
/// an error answer is kinder and as visible to a test.
fn invalid_status(code: i64) -> Reply {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("invalid status code {code}\n"),
    )
}

/// Go's `Request.FormValue`: the first value for a key, body values
/// (urlencoded POST/PUT/PATCH) before query values, "" when absent.
#[derive(Debug, Default)]
struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    fn from_query(query: &str) -> Form {
        let mut form = Form::default();
        form.extend_query(query);
        form
    }

    fn extend_query(&mut self, query: &str) {
        if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) {
            self.pairs.extend(pairs);
        }
    }

    fn get(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The largest form body read (Go reads up to 10 MB; tests send a few bytes).
const MAX_FORM_BODY: usize = 1 << 20;

async fn form_body<B>(method: &Method, headers: &HeaderMap, body: B) -> Result<Form, Reply>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let has_form = matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !has_form {
        return Ok(Form::default());
    }
    match Limited::new(body, MAX_FORM_BODY).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            Ok(Form::from_query(&String::from_utf8_lossy(&bytes)))
        }
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("cannot read the form: {e}\n"),
        )),
    }
}

/// Go's `time.Now().String()` without the monotonic clock reading.
fn go_time_now() -> String {
    jiff::Zoned::now()
        .strftime("%Y-%m-%d %H:%M:%S%.f %z %Z")
        .to_string()
}

async fn serve_udp(socket: UdpSocket, state: Arc<State>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                let Some(reply) = udp_reply(&buf[..n], &state.hostname, peer) else {
                    continue;
                };
                if let Err(e) = socket.send_to(reply.as_bytes(), peer).await {
                    log::line(format_args!("failed to answer UDP client {peer}: {e}"));
                }
            }
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                log::line(format_args!("UDP receive failed: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The UDP protocol: commands are trimmed and lowercased (so `echo Hi`
/// answers `hi`, as the real image does); unknown ones get no answer.
fn udp_reply(datagram: &[u8], hostname: &str, peer: SocketAddr) -> Option<String> {
    let text = String::from_utf8_lossy(datagram).trim().to_lowercase();
    if text == "hostname" {
        log::line(format_args!("Sending udp hostName response"));
        Some(hostname.to_string())
    } else if let Some(msg) = text.strip_prefix("echo ") {
        log::line(format_args!("Echoing {msg} to UDP client {peer}"));
        Some(msg.to_string())
    } else if text == "clientip" {
        log::line(format_args!("Sending clientip back to UDP client {peer}"));
        Some(peer.to_string())
    } else {
        if !text.is_empty() {
            log::line(format_args!(
                "Unknown UDP command received from {peer}: {text}"
            ));
        }
        None
    }
}

mod dial;

#[cfg(test)]
mod tests;
