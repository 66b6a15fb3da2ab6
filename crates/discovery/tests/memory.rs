//! Where discovery's memory goes at scale: heap bytes held by the cache
//! and the table it publishes for N services (each ClusterIP with one port
//! and one EndpointSlice without endpoints, as the EndpointSlice controller
//! makes them), read from jemalloc's statistics. The same services as the
//! DNS crate's `tests/memory.rs`, without the zone, so discovery is
//! measured on its own. Not a pass/fail check; run with
//! `cargo test --release -p switchboard-discovery --test memory -- --ignored --nocapture`.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use serde_json::json;
use switchboard_discovery::cache::Cache;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn allocated() -> f64 {
    tikv_jemalloc_ctl::epoch::advance().expect("jemalloc epoch");
    tikv_jemalloc_ctl::stats::allocated::read().expect("jemalloc stats") as f64
}

fn service(i: usize) -> Service {
    let a = i + 2;
    let ip = format!("127.{}.{}.{}", 96 + a / 65536, (a / 256) % 256, a % 256);
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench",
            "labels": {"app": format!("svc-{i}"), "bench": "switchboard"},
            "uid": "0b6c1a4e-5d7e-4a3b-9c1d-2e3f4a5b6c7d", "resourceVersion": "123456",
            "creationTimestamp": "2026-12-02T05:00:00Z"},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
            "selector": {"app": format!("svc-{i}")},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}
    }))
    .expect("bench Service parses")
}

fn slice(i: usize) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}-abcde"), "namespace": "bench",
            "labels": {"kubernetes.io/service-name": format!("svc-{i}"),
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": format!("svc-{i}"),
                "uid": "0b6c1a4e-5d7e-4a3b-9c1d-2e3f4a5b6c7d", "controller": true, "blockOwnerDeletion": true}]},
        "addressType": "IPv4",
        "endpoints": [],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))
    .expect("bench EndpointSlice parses")
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn heap_per_service_at_100k() {
    let n = 100_000;
    let mb = |b: f64| b / 1e6;
    let start = allocated();
    let mut cache = Cache::new();
    cache.service_event(Event::Init);
    for i in 0..n {
        cache.service_event(Event::InitApply(service(i)));
    }
    cache.service_event(Event::InitDone);
    cache.slice_event(Event::Init);
    for i in 0..n {
        cache.slice_event(Event::InitApply(slice(i)));
    }
    cache.slice_event(Event::InitDone);
    let listed = allocated();
    let mut table = cache.publish().expect("the first snapshot");
    let published = allocated();
    println!(
        "{n} services: objects waiting for the first snapshot {:.1} MB; \
         discovery cache + table after it {:.1} MB ({:.0} B/service)",
        mb(listed - start),
        mb(published - start),
        (published - start) / n as f64,
    );
    // The first snapshot's `changed` lists every service; later ones list
    // a few, so what stays is the cache and the map it shares.
    table.changed = Vec::new();
    let steady = allocated();
    println!(
        "without the first snapshot's changed list {:.1} MB ({:.0} B/service)",
        mb(steady - start),
        (steady - start) / n as f64,
    );
    drop(table);
    let dropped = allocated();
    println!(
        "cache alone (table snapshot dropped) {:.1} MB ({:.0} B/service)",
        mb(dropped - start),
        (dropped - start) / n as f64,
    );
}
