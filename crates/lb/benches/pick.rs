//! `pick()` cost per scheduler at 10 and 1000 backends: the first candidate
//! only (what the proxy takes on every connection), with a guard started
//! and dropped for the load-aware ones so their counters move as in use.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use switchboard_lb::{Algorithm, Backend, Balancer, hash_ip};

fn backends(n: usize) -> Vec<Backend<SocketAddr>> {
    (0..n)
        .map(|i| Backend {
            id: SocketAddr::from(([127, 244, (i / 250) as u8, (i % 250) as u8 + 1], 8080)),
            weight: 1 + (i % 3) as u32,
        })
        .collect()
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for n in [10usize, 1000] {
        for algorithm in Algorithm::ALL {
            let b = Balancer::new(algorithm, backends(n));
            // Some load so that the load-aware scans compare real numbers.
            let _held: Vec<_> = (0..n).step_by(3).map(|i| b.start(i)).collect();
            let mut client = 0u32;
            group.bench_with_input(BenchmarkId::new(algorithm.name(), n), &n, |bench, _| {
                bench.iter(|| {
                    client = client.wrapping_add(1);
                    let key = hash_ip(IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | (client & 0xffff))));
                    let (i, _) = b.pick(black_box(key)).next().expect("non-empty balancer");
                    black_box(i)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
