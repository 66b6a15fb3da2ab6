//! The userspace proxy end to end: the built binary, pods whose status is
//! written through `pods/status` (as the node agent will), testkit backends
//! that answer with their names on the pods' addresses, and real clients
//! (`curl`, TCP and UDP sockets).
//!
//! Each test runs its own `switchboard up` with its own service range,
//! node address and LB pool (tests run in parallel and every 127.x address
//! is local), so frontends never collide.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use switchboard_testkit::{Backend, NodeProxy, Switchboard, wait_for};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use super::binary;

const PORT: u16 = 8080;

struct Env {
    _dir: tempfile::TempDir,
    sb: Switchboard,
    /// A `switchboard proxy` of its own, when `sb` is a `server`.
    node_proxy: Option<NodeProxy>,
    client: kube::Client,
    /// Distinguishes this test's addresses: 127.(100+n).0.0/16 services,
    /// pods on 127.244.n.x, node address 127.1.n.1.
    n: u8,
}

async fn env(n: u8, extra: &[&str]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cidr = format!("127.{}.0.0/16", 100 + n);
    let node = format!("127.1.{n}.1");
    let pool = format!("127.2.{n}.0/24");
    let mut args = vec![
        "--service-cidr",
        &cidr,
        "--node-address",
        &node,
        "--lb-ip-pool",
        &pool,
        "--node-name",
        "node-a",
    ];
    args.extend_from_slice(extra);
    let sb = Switchboard::up_with(binary(), dir.path(), &args).unwrap();
    let client = sb.client().await.unwrap();
    Env {
        _dir: dir,
        sb,
        node_proxy: None,
        client,
        n,
    }
}

impl Env {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn service(&self, spec: serde_json::Value) -> Service {
        let svc: Service = serde_json::from_value(spec).unwrap();
        self.services()
            .create(&PostParams::default(), &svc)
            .await
            .unwrap()
    }

    /// A backend on a fresh pod address, and a Ready pod for it labelled
    /// `app: <app>` whose container port `http` is the backend's port.
    async fn pod(&self, app: &str, name: &str, index: u8, protocol: &str) -> Backend {
        let ip = IpAddr::from([127, 244, self.n, index]);
        let backend = Backend::start_on(name, ip).await.unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x",
                "ports": [{"name": "http", "containerPort": backend.addr().port(), "protocol": protocol}]}]}
        }))
        .unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        self.set_ready(name, ip, true).await;
        backend
    }

    /// Ready pods `<app>-<i>` for each `i`, each with its backend.
    async fn ready_pods(&self, app: &str, range: std::ops::RangeInclusive<u8>) -> Vec<Backend> {
        let mut out = Vec::new();
        for i in range {
            out.push(self.pod(app, &format!("{app}-{i}"), i, "TCP").await);
        }
        out
    }

    async fn set_ready(&self, name: &str, ip: IpAddr, ready: bool) {
        let status = json!({"status": {"podIP": ip.to_string(), "phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        self.pods()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }

    async fn cluster_ip(&self, name: &str) -> IpAddr {
        let svc = self.services().get(name).await.unwrap();
        svc.spec.unwrap().cluster_ip.unwrap().parse().unwrap()
    }

    /// Waits until the proxy's internal pool of `service` has `n` endpoints.
    async fn until_pool_size(&self, service: &str, n: usize) {
        let labels = format!("service=\"default/{service}\"");
        let what = format!("{service}'s pool to have {n} endpoints");
        wait_for(Duration::from_secs(15), &what, || async {
            let m = self.metrics().await;
            (metric(
                &m,
                "switchboard_proxy_endpoints",
                &[&labels, "scope=\"internal\""],
            ) == n as f64)
                .then_some(())
        })
        .await
        .unwrap();
    }

    async fn metrics(&self) -> String {
        let addr = match &self.node_proxy {
            Some(p) => p.metrics,
            None => self.sb.proxy_metrics,
        }
        .expect("the ready line names the proxy metrics");
        http_get(addr, "/metrics").await.unwrap_or_default()
    }
}

fn web(name: &str, extra_spec: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "selector": {"app": name},
        "ports": [{"name": "http", "port": PORT, "targetPort": "http"}]
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

/// One HTTP/1.1 GET with `Connection: close`; the body, or why not.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    http_get_from(None, addr, path).await
}

async fn http_get_from(
    source: Option<IpAddr>,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<String> {
    let mut s = match source {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let sock = TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(ip, 0))?;
            sock.connect(addr).await?
        }
    };
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("response timed out"))??;
    let text = String::from_utf8_lossy(&out).to_string();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.trim().to_owned()),
        _ => Err(std::io::Error::other(format!("bad response {text:?}"))),
    }
}

/// Waits until requests to `addr` have reached exactly the backends `names`.
async fn until_served_by(addr: SocketAddr, names: &[&str]) {
    let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    let what = format!("{addr} to be served by exactly {want:?}");
    wait_for(Duration::from_secs(15), &what, || {
        let want = want.clone();
        async move {
            let mut seen = BTreeSet::new();
            for _ in 0..(want.len() * 4) {
                seen.insert(http_get(addr, "/").await.ok()?);
            }
            (seen == want).then_some(())
        }
    })
    .await
    .unwrap();
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn rr_visits_each_backend_in_turn_on_every_frontend() {
    let e = env(1, &[]).await;
    e.service(web("web", json!({"type": "LoadBalancer"}))).await;
    let _b: Vec<Backend> = e.ready_pods("web", 1..=3).await;
    let ip = e.cluster_ip("web").await;
    let cluster = SocketAddr::new(ip, PORT);
    until_served_by(cluster, &["web-1", "web-2", "web-3"]).await;

    // curl, one connection per request: each backend once per round.
    let mut names = Vec::new();
    for _ in 0..9 {
        // tokio's Command: the backends run on this test's runtime.
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{cluster}/")])
            .output()
            .await
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        names.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    for round in names.chunks(3) {
        let distinct: BTreeSet<&String> = round.iter().collect();
        assert_eq!(distinct.len(), 3, "each backend once per round: {names:?}");
    }
    assert_eq!(
        names[0..3],
        names[3..6],
        "the same order every round: {names:?}"
    );

    // The NodePort on the node address and the LB ingress IP serve too.
    let svc = e.services().get("web").await.unwrap();
    let node_port = svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .unwrap() as u16;
    let lb_ip: IpAddr = svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
        .ip
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let node = SocketAddr::new(IpAddr::from([127, 1, e.n, 1]), node_port);
    until_served_by(node, &["web-1", "web-2", "web-3"]).await;
    until_served_by(SocketAddr::new(lb_ip, PORT), &["web-1", "web-2", "web-3"]).await;

    let m = e.metrics().await;
    assert!(
        metric(
            &m,
            "switchboard_proxy_connections_total",
            &["service=\"default/web\""]
        ) >= 9.0,
        "{m}"
    );
}

#[tokio::test]
async fn sh_maps_each_client_to_one_backend_and_unknown_names_fall_back_with_an_event() {
    let e = env(2, &[]).await;
    let mut svc = web("web", json!({}));
    svc["metadata"]["annotations"] = json!({"switchboard.io/scheduler": "sh"});
    e.service(svc).await;
    let _b: Vec<Backend> = e.ready_pods("web", 1..=3).await;
    let addr = SocketAddr::new(e.cluster_ip("web").await, PORT);
    e.until_pool_size("web", 3).await;
    let mut per_client: HashMap<IpAddr, BTreeSet<String>> = HashMap::new();
    for c in 1..=12u8 {
        let source = IpAddr::from([127, 3, e.n, c]);
        for _ in 0..5 {
            let name = http_get_from(Some(source), addr, "/").await.unwrap();
            per_client.entry(source).or_default().insert(name);
        }
    }
    for (client, names) in &per_client {
        assert_eq!(names.len(), 1, "{client} reached {names:?}");
    }
    let used: BTreeSet<&String> = per_client.values().flatten().collect();
    assert!(used.len() > 1, "12 clients all hashed to {used:?}");

    // An unknown scheduler: traffic still flows (default rr) and the
    // Service gets a Warning Event that names the problem.
    let mut odd = web("odd", json!({}));
    odd["metadata"]["annotations"] = json!({"switchboard.io/scheduler": "fastest"});
    e.service(odd).await;
    let _o = e.pod("odd", "odd-1", 10, "TCP").await;
    until_served_by(SocketAddr::new(e.cluster_ip("odd").await, PORT), &["odd-1"]).await;
    let events: Api<Event> = Api::namespaced(e.client.clone(), "default");
    let event = wait_for(
        Duration::from_secs(10),
        "an UnknownScheduler event",
        || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|ev| {
                    ev.reason.as_deref() == Some("UnknownScheduler")
                        && ev.involved_object.name.as_deref() == Some("odd")
                })
        },
    )
    .await
    .unwrap();
    let message = event.message.unwrap_or_default();
    assert!(
        message.contains("\"fastest\"") && message.contains("rr"),
        "{message}"
    );
    assert_eq!(event.type_.as_deref(), Some("Warning"));
}

#[tokio::test]
async fn client_ip_affinity_holds_for_15_connections_then_expires() {
    let e = env(3, &[]).await;
    e.service(web(
        "web",
        json!({"sessionAffinity": "ClientIP",
               "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 1}}}),
    ))
    .await;
    let _b: Vec<Backend> = e.ready_pods("web", 1..=3).await;
    let addr = SocketAddr::new(e.cluster_ip("web").await, PORT);
    e.until_pool_size("web", 3).await;
    let mut names = Vec::new();
    for _ in 0..15 {
        names.push(http_get(addr, "/").await.unwrap());
    }
    let first = names[0].clone();
    assert!(names.iter().all(|n| *n == first), "15 in a row: {names:?}");
    // After the timeout without traffic, a fresh pick: rr moves on.
    tokio::time::sleep(Duration::from_millis(1200)).await; // the affinity timeout under test
    let next = http_get(addr, "/").await.unwrap();
    assert_ne!(next, first, "a new pick after the affinity timeout");
}

#[tokio::test]
async fn no_usable_endpoint_is_connection_refused() {
    let e = env(4, &[]).await;
    e.service(web("web", json!({"type": "NodePort"}))).await;
    let _b = e.pod("web", "web-1", 1, "TCP").await;
    let addr = SocketAddr::new(e.cluster_ip("web").await, PORT);
    until_served_by(addr, &["web-1"]).await;
    let svc = e.services().get("web").await.unwrap();
    let node_port = svc.spec.unwrap().ports.unwrap()[0].node_port.unwrap() as u16;
    let node = SocketAddr::new(IpAddr::from([127, 1, e.n, 1]), node_port);
    until_served_by(node, &["web-1"]).await;

    e.set_ready("web-1", IpAddr::from([127, 244, e.n, 1]), false)
        .await;
    for target in [addr, node] {
        let err = wait_for(
            Duration::from_secs(10),
            "connection refused",
            || async move { TcpStream::connect(target).await.err() },
        )
        .await
        .unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    }
    // A Service that never had an endpoint refuses as well.
    e.service(web("empty", json!({}))).await;
    let empty = SocketAddr::new(e.cluster_ip("empty").await, PORT);
    let err = TcpStream::connect(empty).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn a_killed_backend_is_ejected_and_clients_keep_succeeding() {
    let e = env(5, &[]).await;
    e.service(web("web", json!({}))).await;
    let b: Vec<Backend> = e.ready_pods("web", 1..=3).await;
    let addr = SocketAddr::new(e.cluster_ip("web").await, PORT);
    until_served_by(addr, &["web-1", "web-2", "web-3"]).await;

    // Killed without any endpoint change (no readiness probe noticed yet).
    b[1].kill();
    let dead_addr = b[1].addr();
    // The backend's tasks stop asynchronously; "killed" means refusing.
    wait_for(
        Duration::from_secs(5),
        "the killed backend to refuse",
        || async { TcpStream::connect(dead_addr).await.is_err().then_some(()) },
    )
    .await
    .unwrap();
    let dead = dead_addr.to_string();
    let mut names = Vec::new();
    for _ in 0..30 {
        names.push(http_get(addr, "/").await.expect("every request succeeds"));
    }
    assert!(!names.contains(&"web-2".to_owned()), "{names:?}");
    let m = e.metrics().await;
    let labels = [&format!("endpoint=\"{dead}\"") as &str];
    assert_eq!(
        metric(&m, "switchboard_proxy_ejections_total", &labels),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "switchboard_proxy_connect_errors_total", &labels),
        1.0,
        "ejected after the first failure, not tried again: {m}"
    );
}

#[tokio::test]
async fn a_download_completes_after_its_endpoint_is_removed() {
    let e = env(6, &["--drain-timeout", "60s"]).await;
    e.service(web("web", json!({}))).await;
    let _b: Vec<Backend> = e.ready_pods("web", 1..=2).await;
    let addr = SocketAddr::new(e.cluster_ip("web").await, PORT);
    until_served_by(addr, &["web-1", "web-2"]).await;

    // 64 chunks of 16 KiB, 25 ms apart: about 1.6 s.
    let total: usize = 64 * 16 * 1024;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /download?bytes={total}&chunk_ms=25 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 256];
    let n = s.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    let serving = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Backend: "))
        .expect("the download names its backend")
        .to_owned();
    let other = if serving == "web-1" { "web-2" } else { "web-1" };
    let index: u8 = serving.trim_start_matches("web-").parse().unwrap();
    e.set_ready(&serving, IpAddr::from([127, 244, e.n, index]), false)
        .await;
    until_served_by(addr, &[other]).await;

    let body_start = head.find("\r\n\r\n").map(|i| n - i - 4).unwrap_or(0);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest))
        .await
        .expect("the download finishes")
        .unwrap();
    assert_eq!(body_start + rest.len(), total, "every byte arrives");
}

#[tokio::test]
async fn scaling_3_to_5_to_1_under_load_fails_no_connection() {
    let e = env(7, &[]).await;
    e.service(web("web", json!({}))).await;
    let mut backends: Vec<Backend> = e.ready_pods("web", 1..=3).await;
    let addr = SocketAddr::new(e.cluster_ip("web").await, PORT);
    until_served_by(addr, &["web-1", "web-2", "web-3"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            // Bounded: at most 20k requests per worker.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match http_get(addr, "/").await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(err) => {
                        failed.lock().unwrap().push(err.to_string());
                        0
                    }
                };
            }
        }));
    }
    for i in 4..=5 {
        backends.push(e.pod("web", &format!("web-{i}"), i, "TCP").await);
    }
    until_served_by(addr, &["web-1", "web-2", "web-3", "web-4", "web-5"]).await;
    for i in 1..=4u8 {
        e.set_ready(&format!("web-{i}"), IpAddr::from([127, 244, e.n, i]), false)
            .await;
    }
    until_served_by(addr, &["web-5"]).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    assert!(ok.load(Ordering::Relaxed) > 50, "the load ran");
}

#[tokio::test]
async fn udp_round_trip_replies_from_the_service_address() {
    let e = env(8, &["--udp-idle-timeout", "2s"]).await;
    e.service(json!({"metadata": {"name": "dns"}, "spec": {
        "selector": {"app": "dns"},
        "ports": [{"name": "http", "port": PORT, "protocol": "UDP", "targetPort": "http"}]}}))
        .await;
    let _b = e.pod("dns", "dns-1", 1, "UDP").await;
    let addr = SocketAddr::new(e.cluster_ip("dns").await, PORT);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (body, from) = wait_for(Duration::from_secs(15), "a UDP reply", || async {
        sock.send_to(b"who?", addr).await.ok()?;
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some((String::from_utf8_lossy(&buf[..n]).to_string(), from))
    })
    .await
    .unwrap();
    assert_eq!(body, "dns-1\n");
    assert_eq!(from, addr, "the reply comes from the service address");
    // The same flow answers again.
    sock.send_to(b"again", addr).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (b"dns-1\n".as_slice(), addr));
}

#[tokio::test]
async fn proxy_mode_none_serves_nothing_and_bad_modes_are_refused() {
    let out = Command::new(binary())
        .args(["up", "--proxy-mode", "nftables"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not available yet"), "{err}");

    let e = env(9, &["--proxy-mode", "none"]).await;
    assert!(e.sb.proxy_metrics.is_none(), "no proxy, no proxy metrics");
}

#[tokio::test]
async fn lc_sends_less_to_a_slow_backend() {
    let e = env(10, &[]).await;
    let mut svc = web("web", json!({}));
    svc["metadata"]["annotations"] = json!({"switchboard.io/scheduler": "lc"});
    e.service(svc).await;
    let b: Vec<Backend> = e.ready_pods("web", 1..=3).await;
    let addr = SocketAddr::new(e.cluster_ip("web").await, PORT);
    e.until_pool_size("web", 3).await;
    until_served_by(addr, &["web-1", "web-2", "web-3"]).await;
    b[0].set_delay(Duration::from_millis(300));
    let before: Vec<usize> = b.iter().map(Backend::requests).collect();
    // 6 clients × 8 requests each; the slow backend holds its connections.
    let workers: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..8 {
                    http_get(addr, "/").await.expect("every request succeeds");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let got: Vec<usize> = b
        .iter()
        .zip(&before)
        .map(|(b, n)| b.requests() - n)
        .collect();
    assert_eq!(got.iter().sum::<usize>(), 48);
    assert!(
        got[0] * 4 < got[1] + got[2],
        "the slow backend got {} of 48 (fast ones {} and {})",
        got[0],
        got[1],
        got[2]
    );
}

/// `switchboard proxy` alone, as kube-proxy runs, against a `switchboard
/// server` (which runs no proxy of its own): it serves the ClusterIPs and
/// NodePorts of that cluster with two worker threads, and when it stops
/// nothing serves them any more.
#[tokio::test]
async fn the_standalone_proxy_serves_a_control_plane_it_does_not_run() {
    let n = 11;
    let dir = tempfile::tempdir().unwrap();
    let cidr = format!("127.{}.0.0/16", 100 + n);
    let pool = format!("127.2.{n}.0/24");
    let sb = Switchboard::server_with(
        binary(),
        dir.path(),
        &["--service-cidr", &cidr, "--lb-ip-pool", &pool],
    )
    .unwrap();
    assert!(sb.proxy_metrics.is_none(), "the server runs no proxy");
    let node = format!("127.1.{n}.1");
    let proxy = NodeProxy::start(
        binary(),
        &sb.kubeconfig(),
        &[
            "--node-name",
            "node-a",
            "--node-address",
            &node,
            "--proxy-threads",
            "2",
        ],
    )
    .unwrap();
    let client = sb.client().await.unwrap();
    let mut e = Env {
        _dir: dir,
        sb,
        node_proxy: Some(proxy),
        client,
        n,
    };
    e.service(web("web", json!({"type": "NodePort"}))).await;
    let _b: Vec<Backend> = e.ready_pods("web", 1..=2).await;
    e.until_pool_size("web", 2).await;
    let cluster = SocketAddr::new(e.cluster_ip("web").await, PORT);
    until_served_by(cluster, &["web-1", "web-2"]).await;
    let svc = e.services().get("web").await.unwrap();
    let node_port = svc.spec.unwrap().ports.unwrap()[0].node_port.unwrap() as u16;
    let node_addr = SocketAddr::new(IpAddr::from([127, 1, n, 1]), node_port);
    until_served_by(node_addr, &["web-1", "web-2"]).await;

    // Many connections in a row all succeed, whichever worker's socket
    // the kernel hands each one to.
    for _ in 0..40 {
        http_get(cluster, "/").await.unwrap();
    }

    if let Some(mut p) = e.node_proxy.take() {
        p.stop(Duration::from_secs(5));
    }
    let err = TcpStream::connect(cluster).await.unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "nothing serves the ClusterIP once the proxy is gone"
    );

    // With nothing to do it says so instead of running.
    let out = Command::new(binary())
        .arg("--kubeconfig")
        .arg(e.sb.kubeconfig())
        .args(["proxy", "--proxy-mode", "none"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to do"), "{err}");
}
