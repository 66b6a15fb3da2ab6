//! Where the proxy's memory goes at 10k Services: heap bytes the proxy
//! holds for a hand-built [`ServiceTable`] (one TCP port and ClusterIP per
//! Service, as `bench/proxy-rss.sh` makes), read from jemalloc's statistics,
//! split by differences between runs: services whose pools have no
//! endpoint (no listener opens), one endpoint (adds the listener), five
//! endpoints (adds four endpoints), and five endpoints with one connection
//! to every Service (a pool builds its balancer and endpoint entries on
//! its first connection; the endpoints refuse it, so nothing is left
//! open). Not a pass/fail check (the process's
//! RSS is in BENCHMARKS.md); it binds a socket per Service on
//! 127.130.0.0/16, so run it with enough descriptors:
//! `ulimit -n 20000; cargo test --release -p switchboard-proxy --test memory -- --ignored --nocapture`
//! (`SB_MEMORY_SERVICES` changes the count, `SB_MEMORY_THREADS` the
//! worker threads).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_discovery::{
    Endpoint, EndpointPort, Protocol, Service, ServiceKey, ServicePort, ServiceTable, ServiceType,
};
use tokio::sync::watch;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn allocated() -> f64 {
    tikv_jemalloc_ctl::epoch::advance().expect("jemalloc epoch");
    tikv_jemalloc_ctl::stats::allocated::read().expect("jemalloc stats") as f64
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The table `switchboard-bench rss` makes: Service `i` on 127.130.x.y:80,
/// `endpoints` ready endpoints on 127.10.x.y:8080 (never connected to).
fn table(n: usize, endpoints: usize) -> ServiceTable {
    let ports: Arc<[EndpointPort]> = Arc::from(vec![EndpointPort {
        name: "http".to_owned(),
        protocol: Protocol::Tcp,
        port: 8080,
    }]);
    let services = (0..n)
        .map(|i| {
            let key = ServiceKey::new("bench", format!("svc-{i}"));
            let svc = Service {
                key: key.clone(),
                service_type: ServiceType::ClusterIp,
                cluster_ips: vec![cluster_ip(i)],
                headless: false,
                external_name: None,
                external_ips: Vec::new(),
                load_balancer_ips: Vec::new(),
                ports: vec![ServicePort {
                    name: "http".to_owned(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: None,
                }],
                session_affinity: None,
                internal_traffic_local: false,
                external_traffic_local: false,
                publish_not_ready_addresses: false,
                annotations: BTreeMap::new(),
                endpoints: (0..endpoints)
                    .map(|e| {
                        let p = i * endpoints + e;
                        Endpoint {
                            address: IpAddr::from([
                                127,
                                10,
                                (p / 256 % 256) as u8,
                                (p % 256) as u8,
                            ]),
                            hostname: None,
                            node_name: Some("bench-node".to_owned()),
                            pod_name: Some(format!("svc-{i}-{e}")),
                            ready: true,
                            serving: true,
                            terminating: false,
                            ports: Arc::clone(&ports),
                        }
                    })
                    .collect(),
            };
            (key, Arc::new(svc))
        })
        .collect();
    ServiceTable {
        services,
        synced: true,
        generation: 1,
        ..ServiceTable::default()
    }
}

fn cluster_ip(i: usize) -> IpAddr {
    let a = i + 2;
    IpAddr::from([127, 130, (a / 256) as u8, (a % 256) as u8])
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Heap the proxy holds once synced on `n` services of `endpoints`
/// endpoints each (after one connection to each when `connect`), and the
/// heap of the table itself.
async fn measure(n: usize, endpoints: usize, threads: usize, connect: bool) -> (f64, f64) {
    let start = allocated();
    let (_tx, rx) = watch::channel(Arc::new(table(n, endpoints)));
    let tabled = allocated();
    let fds = open_fds();
    let config = switchboard_proxy::Config {
        node_name: "bench-node".to_owned(),
        metrics_listen: None,
        worker_threads: threads,
        ..switchboard_proxy::Config::default()
    };
    let running = switchboard_proxy::start(config, rx, None)
        .await
        .expect("the proxy starts");
    // Synced when the listeners are open (one socket per Service and
    // worker) or, without endpoints, when the sync task has had its turn.
    let want = if endpoints == 0 { 0 } else { n * threads };
    let mut last = 0;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = open_fds().saturating_sub(fds);
        if now >= want && now == last {
            break;
        }
        last = now;
    }
    // The workers register their sockets after the accept tasks start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if connect {
        for i in 0..n {
            let addr = std::net::SocketAddr::new(cluster_ip(i), 80);
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                // The proxy resets it once every endpoint has refused.
                let mut buf = [0u8; 16];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let synced = allocated();
    running.task.abort();
    let _ = running.task.await;
    // The workers' threads end with the proxy; wait for their sockets.
    for _ in 0..100 {
        if open_fds() <= fds {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (synced - tabled, tabled - start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture (and ulimit -n 20000)"]
async fn heap_per_service_at_10k() {
    let n = env("SB_MEMORY_SERVICES", 10_000);
    let threads = env("SB_MEMORY_THREADS", 1);
    let per = |b: f64| b / n as f64;
    let (none, _) = measure(n, 0, threads, false).await;
    let (one, _) = measure(n, 1, threads, false).await;
    let (five, table) = measure(n, 5, threads, false).await;
    let (used, _) = measure(n, 5, threads, true).await;
    let endpoint = (five - one) / 4.0;
    let listener = one - none - endpoint;
    println!(
        "{n} services x 5 endpoints, {threads} worker thread(s): proxy {:.1} MB \
         ({:.0} B/service); table {:.1} MB ({:.0} B/service)",
        five / 1e6,
        per(five),
        table / 1e6,
        per(table),
    );
    println!(
        "  per service without endpoints (state, pool) {:.0} B; per TCP listener \
         (per worker) {:.0} B; per endpoint {:.0} B",
        per(none),
        per(listener) / threads as f64,
        per(endpoint),
    );
    println!(
        "  after one connection to every service: proxy {:.1} MB ({:.0} B/service)",
        used / 1e6,
        per(used),
    );
}
