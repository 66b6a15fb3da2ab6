//! Cost of one snapshot after one endpoint change, with 10k services of 5
//! endpoints each: the work discovery does per watch batch. Two shapes:
//! the snapshot dropped at once, and the snapshot kept until the next one
//! (as a consumer holds the table it applied), so the superseded one is
//! freed inside the measurement.
//!
//! `cargo bench -p switchboard-discovery --bench publish`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use serde_json::json;
use switchboard_discovery::cache::Cache;

const SERVICES: usize = 10_000;

fn service(i: usize) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
        "spec": {"clusterIP": format!("127.96.{}.{}", i / 250, i % 250 + 1), "ports": [{"name": "http", "port": 80}]}
    }))
    .expect("bench Service parses")
}

fn slice(i: usize, ready_last: bool) -> EndpointSlice {
    let endpoints: Vec<_> = (0..5)
        .map(|e| {
            let ready = e < 4 || ready_last;
            json!({"addresses": [format!("127.{}.{}.{}", 200 + e, i / 250, i % 250 + 1)],
                   "conditions": {"ready": ready}, "nodeName": "node"})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}-abcde"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .expect("bench EndpointSlice parses")
}

fn publish(c: &mut Criterion) {
    let mut cache = Cache::new();
    cache.service_event(Event::Init);
    for i in 0..SERVICES {
        cache.service_event(Event::InitApply(service(i)));
    }
    cache.service_event(Event::InitDone);
    cache.slice_event(Event::Init);
    for i in 0..SERVICES {
        cache.slice_event(Event::InitApply(slice(i, true)));
    }
    cache.slice_event(Event::InitDone);
    let first = cache.publish().expect("the first snapshot");
    assert_eq!(first.services.len(), SERVICES);

    let changed = [slice(1234, false), slice(1234, true)];
    let mut flip = 1;
    let mut held = first;
    c.bench_function(
        "publish one endpoint change, 10k services x 5 endpoints, previous snapshot held",
        |b| {
            b.iter(|| {
                flip ^= 1;
                cache.apply_slice(changed[flip].clone());
                held = cache.publish().expect("the change publishes");
                black_box(held.changed.len())
            })
        },
    );
    c.bench_function(
        "publish one endpoint change, 10k services x 5 endpoints",
        |b| {
            b.iter(|| {
                flip ^= 1;
                cache.apply_slice(changed[flip].clone());
                let table = cache.publish().expect("the change publishes");
                black_box(table.changed.len())
            })
        },
    );
}

criterion_group!(benches, publish);
criterion_main!(benches);
