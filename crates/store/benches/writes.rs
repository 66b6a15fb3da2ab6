//! Throughput of concurrent creates against the embedded store (fsync per
//! group commit). Each iteration runs 64 concurrent creates.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_store::embedded::Options;
use switchboard_store::{Embedded, Store};

const CONCURRENCY: u64 = 64;

fn concurrent_creates(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Embedded::open(&dir.path().join("bench.redb"), Options::default()).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    // A Service object is a few hundred bytes of JSON.
    let value = Bytes::from(vec![b'x'; 512]);
    let next = AtomicU64::new(0);

    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(CONCURRENCY));
    group.bench_function("create_x64_concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..CONCURRENCY)
                    .map(|_| {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let store = store.clone();
                        let value = value.clone();
                        tokio::spawn(async move {
                            store
                                .create(&format!("/registry/services/default/svc-{n}"), value)
                                .await
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task").expect("create");
                }
            });
        });
    });
    group.finish();
}

criterion_group!(benches, concurrent_creates);
criterion_main!(benches);
