//! The sync loop against real sockets: tables from the discovery cache,
//! listeners on 127.97.x.x, testkit backends.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use serde_json::json;
use switchboard_discovery::cache::Cache;
use switchboard_testkit::Backend;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

use super::*;

fn service(i: usize, ip: IpAddr) -> core::Service {
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
        "spec": {"clusterIP": ip.to_string(), "ports": [{"port": 8080}]}
    }))
    .expect("test Service parses")
}

fn slice(i: usize, endpoints: &[SocketAddr]) -> EndpointSlice {
    let eps: Vec<_> = endpoints
        .iter()
        .map(|a| json!({"addresses": [a.ip().to_string()], "conditions": {"ready": true}}))
        .collect();
    let port = endpoints.first().map_or(1, |a| a.port());
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}-x"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"port": port}],
        "endpoints": eps
    }))
    .expect("test EndpointSlice parses")
}

fn ip_of(base: u8, i: usize) -> IpAddr {
    IpAddr::from([127, base, (i / 250) as u8, (i % 250 + 1) as u8])
}

async fn read_name(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out.trim().to_owned())
}

fn config() -> Config {
    Config {
        metrics_listen: None,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_follow_the_table_and_other_services_are_untouched() {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let mut cache = Cache::new();
    let (s0, s1) = (ip_of(97, 0), ip_of(97, 1));
    cache.service_event(Event::Init);
    cache.service_event(Event::InitApply(service(0, s0)));
    cache.service_event(Event::InitApply(service(1, s1)));
    cache.service_event(Event::InitDone);
    cache.slice_event(Event::Init);
    cache.slice_event(Event::InitApply(slice(0, &[a.addr()])));
    cache.slice_event(Event::InitDone);
    let (tx, rx) = watch::channel(Arc::new(cache.publish().unwrap()));
    let running = start(config(), rx, None).await.unwrap();

    let svc0 = SocketAddr::new(s0, 8080);
    let svc1 = SocketAddr::new(s1, 8080);
    let wait = |addr, want: Option<&'static str>| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = read_name(addr).await.ok();
            if got.as_deref() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{addr}: got {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    wait(svc0, Some("a")).await;
    let err = TcpStream::connect(svc1).await.unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "no endpoints: refused"
    );

    // A connection to svc-0 stays open while svc-1 gains an endpoint.
    a.set_delay(Duration::from_millis(300));
    let open = tokio::spawn(read_name(svc0));
    cache.apply_slice(slice(1, &[b.addr()]));
    tx.send_replace(Arc::new(cache.publish().unwrap()));
    wait(svc1, Some("b")).await;
    assert_eq!(open.await.unwrap().unwrap(), "a");
    a.set_delay(Duration::ZERO);

    // svc-1 deleted: its listener closes, svc-0 keeps serving.
    cache.delete_service(&service(1, s1));
    tx.send_replace(Arc::new(cache.publish().unwrap()));
    wait(svc1, None).await;
    wait(svc0, Some("a")).await;
    running.task.abort();
}

/// One endpoint change with 10k services: from the watch event to the
/// listener accepting, through the discovery cache (publish), the watch
/// channel and the proxy's sync. Prints the figure for BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_among_10k_services_is_served_within_milliseconds() {
    const N: usize = 10_000;
    let backend = Backend::start("late").await.unwrap();
    let mut cache = Cache::new();
    cache.service_event(Event::Init);
    for i in 0..N {
        cache.service_event(Event::InitApply(service(i, ip_of(98, i))));
    }
    cache.service_event(Event::InitDone);
    cache.slice_event(Event::Init);
    cache.slice_event(Event::InitDone);
    let (tx, rx) = watch::channel(Arc::new(cache.publish().unwrap()));
    let running = start(config(), rx, None).await.unwrap();
    // Let the first full sync finish: a service with an endpoint answers.
    cache.apply_slice(slice(0, &[backend.addr()]));
    tx.send_replace(Arc::new(cache.publish().unwrap()));
    let first = SocketAddr::new(ip_of(98, 0), 8080);
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_name(first).await.is_err() {
        assert!(Instant::now() < deadline, "the first sync finishes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut samples = Vec::new();
    let mut publish = Vec::new();
    for round in 0..20 {
        let i = 1 + round;
        let addr = SocketAddr::new(ip_of(98, i), 8080);
        let started = Instant::now();
        cache.apply_slice(slice(i, &[backend.addr()]));
        let table = Arc::new(cache.publish().unwrap());
        publish.push(started.elapsed());
        drop(tx.send_replace(table));
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{addr} never served"
            );
            tokio::task::yield_now().await;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    publish.sort();
    println!(
        "10k services: discovery publish p50 {:?}",
        publish[publish.len() / 2]
    );
    let p50 = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    println!("10k services: endpoint change -> listener serving: p50 {p50:?}, max {max:?}");
    // Generous for debug builds on a shared machine; the release figure
    // is in BENCHMARKS.md.
    assert!(p50 < Duration::from_millis(100), "p50 {p50:?}");
    running.task.abort();
}
