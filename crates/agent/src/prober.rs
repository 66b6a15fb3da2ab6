//! Running probes and lifecycle hooks: `httpGet`, `tcpSocket`, `exec`
//! (and a `preStop` `sleep`), with the kubelet's defaults (host = pod IP,
//! scheme HTTP, path `/`, success 200-399) and messages in its words.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The most output of an exec probe kept for its failure message.
const MAX_OUTPUT: usize = 10 * 1024;

/// What a probe or hook does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Run a command in the container's environment.
    Exec(ExecAction),
    /// An HTTP GET.
    Http(HTTPGetAction),
    /// A TCP connect.
    Tcp(TCPSocketAction),
    /// Wait (`lifecycle.preStop.sleep`).
    Sleep(Duration),
    /// A kind this agent cannot run (gRPC).
    Unsupported(&'static str),
}

impl Action {
    /// The action of a probe.
    pub fn of_probe(p: &Probe) -> Action {
        if let Some(e) = &p.exec {
            Action::Exec(e.clone())
        } else if let Some(h) = &p.http_get {
            Action::Http(h.clone())
        } else if let Some(t) = &p.tcp_socket {
            Action::Tcp(t.clone())
        } else if p.grpc.is_some() {
            Action::Unsupported("gRPC probes are not supported by this runtime")
        } else {
            Action::Unsupported("the probe has no handler")
        }
    }

    /// The action of a lifecycle hook.
    pub fn of_hook(h: &LifecycleHandler) -> Action {
        if let Some(e) = &h.exec {
            Action::Exec(e.clone())
        } else if let Some(g) = &h.http_get {
            Action::Http(g.clone())
        } else if let Some(t) = &h.tcp_socket {
            Action::Tcp(t.clone())
        } else if let Some(s) = &h.sleep {
            Action::Sleep(Duration::from_secs(s.seconds.max(0) as u64))
        } else {
            Action::Unsupported("the hook has no handler")
        }
    }
}

/// Where a probe runs.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod's IP (the default host).
    pub pod_ip: IpAddr,
    /// The container (named ports).
    pub container: Container,
    /// The container's environment (exec).
    pub env: BTreeMap<String, String>,
}

/// Runs `action` against `target` within `timeout`: `Err` holds the
/// failure message.
pub async fn run(action: &Action, target: &Target, timeout: Duration) -> Result<(), String> {
    match action {
        Action::Http(h) => http(h, target, timeout).await,
        Action::Tcp(t) => tcp(t, target, timeout).await,
        Action::Exec(e) => exec(e, target, timeout).await,
        Action::Sleep(d) => {
            tokio::time::sleep((*d).min(timeout)).await;
            Ok(())
        }
        Action::Unsupported(why) => Err((*why).to_owned()),
    }
}

/// Probes `target` on `timing`'s schedule (first after the initial delay,
/// then every period, a slow probe delaying the next) and hands each result
/// to `report` until it returns false.
pub async fn worker(
    timing: crate::probe::Timing,
    action: Action,
    target: Target,
    mut report: impl FnMut(Result<(), String>) -> bool,
) {
    tokio::time::sleep(timing.initial_delay).await;
    let mut tick = tokio::time::interval(timing.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = run(&action, &target, timing.timeout).await;
        if !report(result) {
            return;
        }
    }
}

/// A port number or a named container port.
fn port(p: &IntOrString, container: &Container) -> Result<u16, String> {
    let n = match p {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .map(|cp| cp.container_port)
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

fn host(h: Option<&str>, target: &Target) -> Result<IpAddr, String> {
    match h.filter(|h| !h.is_empty()) {
        None => Ok(target.pod_ip),
        Some("localhost") => Ok(IpAddr::from([127, 0, 0, 1])),
        // Names would need a resolver; the pods' addresses are IPs.
        Some(h) => h
            .parse()
            .map_err(|_| format!("host {h:?} is not an IP address")),
    }
}

async fn tcp(t: &TCPSocketAction, target: &Target, timeout: Duration) -> Result<(), String> {
    let addr = SocketAddr::new(
        host(t.host.as_deref(), target)?,
        port(&t.port, &target.container)?,
    );
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", os_text(&e))),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// The OS message without Rust's ` (os error N)` suffix, as Go prints it.
fn os_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

async fn http(h: &HTTPGetAction, target: &Target, timeout: Duration) -> Result<(), String> {
    let ip = host(h.host.as_deref(), target)?;
    let port = port(&h.port, &target.container)?;
    let addr = SocketAddr::new(ip, port);
    let scheme = h.scheme.as_deref().unwrap_or("HTTP");
    let path = match h.path.as_deref().filter(|p| !p.is_empty()) {
        Some(p) if p.starts_with('/') => p.to_owned(),
        Some(p) => format!("/{p}"),
        None => "/".to_owned(),
    };
    let url = format!("{}://{addr}{path}", scheme.to_lowercase());
    if !scheme.eq_ignore_ascii_case("HTTP") {
        return Err(format!(
            "Get \"{url}\": scheme {scheme} is not supported by this runtime"
        ));
    }
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("Get \"{url}\": dial tcp {addr}: connect: {}", os_text(&e)))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
        // The connection is driven beside the request and dropped with it.
        let conn = async move {
            let _ = conn.await;
            std::future::pending::<()>().await
        };
        let mut req = http::Request::get(path.as_str());
        let mut has_host = false;
        let mut has_agent = false;
        for hh in h.http_headers.iter().flatten() {
            has_host |= hh.name.eq_ignore_ascii_case("host");
            has_agent |= hh.name.eq_ignore_ascii_case("user-agent");
            req = req.header(hh.name.as_str(), hh.value.as_str());
        }
        if !has_host {
            req = req.header(http::header::HOST, addr.to_string());
        }
        if !has_agent {
            req = req.header(http::header::USER_AGENT, "kube-probe/1.33");
        }
        let req = req
            .header(http::header::ACCEPT, "*/*")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        let response = tokio::select! {
            r = sender.send_request(req) => r.map_err(|e| format!("Get \"{url}\": {e}"))?,
            () = conn => unreachable!("the connection future never completes"),
        };
        let code = response.status().as_u16();
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

async fn exec(e: &ExecAction, target: &Target, timeout: Duration) -> Result<(), String> {
    let argv = e.command.clone().unwrap_or_default();
    let Some((program, args)) = argv.split_first() else {
        return Err("exec: no command".to_owned());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(&target.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = target
        .container
        .working_dir
        .as_deref()
        .filter(|d| !d.is_empty())
    {
        cmd.current_dir(dir);
    }
    std::os::unix::process::CommandExt::process_group(cmd.as_std_mut(), 0);
    let child = cmd
        .spawn()
        .map_err(|err| format!("exec: \"{program}\": {}", os_text(&err)))?;
    let pgid = child.id().map(|p| p as i32);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            if out.status.success() {
                Ok(())
            } else {
                let mut text = out.stdout;
                text.extend_from_slice(&out.stderr);
                text.truncate(MAX_OUTPUT);
                let text = String::from_utf8_lossy(&text).trim_end().to_owned();
                let code = crate::process::Exit::from_status(out.status);
                Err(if text.is_empty() {
                    format!("command {argv:?} exited with {code:?}")
                } else {
                    text
                })
            }
        }
        Ok(Err(err)) => Err(format!("exec: {err}")),
        Err(_) => {
            if let Some(pgid) = pgid {
                crate::process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
            }
            Err(format!(
                "command {argv:?} timed out after {}s",
                timeout.as_secs()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target {
        Target {
            pod_ip: IpAddr::from([127, 0, 0, 1]),
            container: serde_json::from_value(json!({
                "name": "c", "ports": [{"name": "http", "containerPort": 8080}]
            }))
            .unwrap_or_else(|e| panic!("{e}")),
            env: [("PATH".to_string(), crate::config::DEFAULT_PATH.to_string())]
                .into_iter()
                .collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_worker_follows_initial_delay_and_period() {
        let timing = crate::probe::Timing {
            initial_delay: Duration::from_secs(5),
            period: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        };
        let start = tokio::time::Instant::now();
        let mut at = Vec::new();
        // A probe that takes 0.5 s: the period runs from one start to the next.
        let action = Action::Sleep(Duration::from_millis(500));
        worker(timing, action, target(), |r| {
            assert_eq!(r, Ok(()));
            at.push(start.elapsed().as_millis());
            at.len() < 4
        })
        .await;
        assert_eq!(at, [5500, 7500, 9500, 11500]);
    }

    #[test]
    fn named_ports_resolve() {
        let t = target();
        assert_eq!(
            port(&IntOrString::String("http".into()), &t.container),
            Ok(8080)
        );
        assert_eq!(port(&IntOrString::Int(81), &t.container), Ok(81));
        assert!(port(&IntOrString::String("nope".into()), &t.container).is_err());
        assert!(port(&IntOrString::Int(0), &t.container).is_err());
    }

    async fn serve(status: u16) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                    )
                    .await;
            }
        });
        port
    }

    fn get(port: u16) -> Action {
        Action::Http(HTTPGetAction {
            port: IntOrString::Int(i32::from(port)),
            path: Some("/healthz".into()),
            ..HTTPGetAction::default()
        })
    }

    #[tokio::test]
    async fn http_success_range() {
        let t = target();
        let second = Duration::from_secs(1);
        assert_eq!(run(&get(serve(200).await), &t, second).await, Ok(()));
        assert_eq!(run(&get(serve(302).await), &t, second).await, Ok(()));
        assert_eq!(
            run(&get(serve(500).await), &t, second).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[tokio::test]
    async fn refused_connections_fail() {
        // An address of the loopback range no test binds (a port freed by
        // this test could be taken by a parallel one).
        let port = 9;
        let mut t = target();
        t.pod_ip = IpAddr::from([127, 254, 254, 254]);
        let err = run(&get(port), &t, Duration::from_secs(1)).await;
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("connection refused")),
            "{err:?}"
        );
        let tcp = Action::Tcp(TCPSocketAction {
            port: IntOrString::Int(i32::from(port)),
            ..TCPSocketAction::default()
        });
        assert!(run(&tcp, &t, Duration::from_secs(1)).await.is_err());
    }

    #[tokio::test]
    async fn exec_exit_codes_and_output() {
        let t = target();
        let second = Duration::from_secs(5);
        let cmd = |c: &str| {
            Action::Exec(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), c.into()]),
            })
        };
        assert_eq!(run(&cmd("true"), &t, second).await, Ok(()));
        assert_eq!(
            run(&cmd("echo not yet; exit 1"), &t, second).await,
            Err("not yet".into())
        );
        let slow = run(&cmd("sleep 10"), &t, Duration::from_millis(200)).await;
        assert!(slow.is_err_and(|e| e.contains("timed out")));
    }
}
