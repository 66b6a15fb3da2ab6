//! `lc`, `wlc`, `sed`, `nq`, `p2c`, `peak-ewma`: choices follow the load
//! the guards report.

use crate::named;
use proptest::prelude::*;
use std::time::{Duration, Instant};
use switchboard_lb::{Algorithm, Balancer, Guard};

/// A balancer whose backend `i` has `active[i]` open connections.
fn loaded(
    algorithm: Algorithm,
    weights: &[u32],
    active: &[usize],
) -> (Balancer<String>, Vec<Guard>) {
    let b = Balancer::new(algorithm, named(weights));
    let guards = active
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| (0..n).map(move |_| i))
        .map(|i| b.start(i))
        .collect::<Vec<_>>();
    (b, guards)
}

fn backends_and_load() -> impl Strategy<Value = (Vec<u32>, Vec<usize>)> {
    (1usize..16).prop_flat_map(|n| {
        (
            prop::collection::vec(0u32..5, n),
            prop::collection::vec(0usize..6, n),
        )
    })
}

/// `a/wa < b/wb` exactly.
fn less(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 * b.1 < b.0 * a.1
}

proptest! {
    #[test]
    fn lc_never_picks_a_more_loaded_backend((weights, active) in backends_and_load()) {
        let (b, _g) = loaded(Algorithm::LeastConn, &weights, &active);
        prop_assume!(!b.is_empty());
        for _ in 0..weights.len() {
            let (p, _) = b.pick(0).next().expect("non-empty");
            for i in (0..weights.len()).filter(|&i| weights[i] > 0) {
                prop_assert!(active[p] <= active[i], "picked {} ({}) over {} ({})", p, active[p], i, active[i]);
            }
        }
    }

    #[test]
    fn wlc_picks_least_active_per_weight((weights, active) in backends_and_load()) {
        let (b, _g) = loaded(Algorithm::WeightedLeastConn, &weights, &active);
        prop_assume!(!b.is_empty());
        let (p, _) = b.pick(0).next().expect("non-empty");
        for i in (0..weights.len()).filter(|&i| weights[i] > 0) {
            prop_assert!(!less((active[i] as u64, weights[i] as u64), (active[p] as u64, weights[p] as u64)));
        }
    }

    #[test]
    fn sed_picks_shortest_expected_delay((weights, active) in backends_and_load()) {
        let (b, _g) = loaded(Algorithm::ShortestExpectedDelay, &weights, &active);
        prop_assume!(!b.is_empty());
        let (p, _) = b.pick(0).next().expect("non-empty");
        for i in (0..weights.len()).filter(|&i| weights[i] > 0) {
            prop_assert!(!less((active[i] as u64 + 1, weights[i] as u64), (active[p] as u64 + 1, weights[p] as u64)));
        }
    }

    #[test]
    fn nq_prefers_an_idle_backend((weights, active) in backends_and_load()) {
        let (b, _g) = loaded(Algorithm::NeverQueue, &weights, &active);
        prop_assume!(!b.is_empty());
        let (p, _) = b.pick(0).next().expect("non-empty");
        let any_idle = (0..weights.len()).any(|i| weights[i] > 0 && active[i] == 0);
        if any_idle {
            prop_assert_eq!(active[p], 0);
        } else {
            for i in (0..weights.len()).filter(|&i| weights[i] > 0) {
                prop_assert!(!less((active[i] as u64 + 1, weights[i] as u64), (active[p] as u64 + 1, weights[p] as u64)));
            }
        }
    }

    /// P2C never takes the most loaded backend unless it ties with another
    /// (it always had a choice of two distinct ones).
    #[test]
    fn p2c_avoids_the_strictly_busiest(active in prop::collection::vec(0usize..6, 2..10)) {
        let weights = vec![1; active.len()];
        let (b, _g) = loaded(Algorithm::PowerOfTwo, &weights, &active);
        let max = *active.iter().max().expect("non-empty");
        let busiest: Vec<usize> = (0..active.len()).filter(|&i| active[i] == max).collect();
        prop_assume!(busiest.len() == 1 && active.iter().any(|&a| a < max));
        for _ in 0..50 {
            let (p, _) = b.pick(0).next().expect("non-empty");
            prop_assert_ne!(p, busiest[0]);
        }
    }
}

#[test]
fn lc_spreads_concurrent_connections_and_sequential_ones() {
    // Concurrent: each new connection goes to a backend with the fewest.
    let b = Balancer::new(Algorithm::LeastConn, named(&[1, 1, 1]));
    let guards: Vec<_> = (0..9)
        .map(|_| b.start(b.pick(0).next().expect("three").0))
        .collect();
    assert_eq!((0..3).map(|i| b.active(i)).collect::<Vec<_>>(), [3, 3, 3]);
    drop(guards);
    // Sequential (each closed before the next): ties rotate, all get some.
    let mut seen = [0; 3];
    for _ in 0..30 {
        let (i, _) = b.pick(0).next().expect("three");
        let _g = b.start(i);
        seen[i] += 1;
    }
    assert_eq!(seen, [10, 10, 10]);
}

#[test]
fn lc_with_one_slow_backend_sends_it_less() {
    // Backend 0 holds its connections 10x longer: with lc it ends up with
    // far fewer of the connections than with rr.
    let run = |algorithm| {
        let b = Balancer::new(algorithm, named(&[1, 1, 1]));
        let mut open: Vec<(u32, Guard)> = Vec::new();
        let mut counts = [0u32; 3];
        for tick in 0..3000u32 {
            open.retain(|(until, _)| *until > tick);
            let (i, _) = b.pick(0).next().expect("three");
            counts[i] += 1;
            let hold = if i == 0 { 50 } else { 5 };
            open.push((tick + hold, b.start(i)));
        }
        counts
    };
    let rr = run(Algorithm::RoundRobin);
    let lc = run(Algorithm::LeastConn);
    assert_eq!(rr, [1000, 1000, 1000]);
    assert!(lc[0] < 300 && lc[1] > 1200 && lc[2] > 1200, "{lc:?}");
}

#[test]
fn p2c_idle_set_follows_weights() {
    let b = Balancer::new(Algorithm::PowerOfTwo, named(&[1, 3]));
    let n = 40_000;
    let heavy = (0..n)
        .filter(|_| b.pick(0).next().expect("two").0 == 1)
        .count();
    // Weighted draws, ties to the first: P(heavy) = 3/4.
    let share = heavy as f64 / n as f64;
    assert!((share - 0.75).abs() < 0.02, "{share}");
}

#[test]
fn peak_ewma_avoids_a_slow_backend_then_forgives_it() {
    let b = Balancer::new(Algorithm::PeakEwma, named(&[1, 1, 1]));
    let now = Instant::now();
    // Backend 0 was observed at 2 s, the others at 1 ms.
    for (i, ms) in [(0, 2000), (1, 1), (2, 1)] {
        let g = b.start(i);
        g.observe_latency_at(Duration::from_millis(ms), now);
    }
    let slow = (0..1000)
        .filter(|_| b.pick(0).next().expect("three").0 == 0)
        .count();
    // P2C only takes 0 when both draws are 0, which distinct draws never are.
    assert_eq!(slow, 0);
    // The fallbacks put it last.
    let order: Vec<usize> = b.pick(0).map(|(i, _)| i).collect();
    assert_eq!(order.last(), Some(&0), "{order:?}");
}

#[test]
fn peak_ewma_cost_grows_with_in_flight_requests() {
    let b = Balancer::new(Algorithm::PeakEwma, named(&[1, 1]));
    // Same (default) latency; backend 1 has 5 requests in flight.
    let _busy: Vec<_> = (0..5).map(|_| b.start(1)).collect();
    assert!((0..200).all(|_| b.pick(0).next().expect("two").0 == 0));
}

#[test]
fn rebuild_keeps_in_flight_counts() {
    let b = Balancer::new(Algorithm::LeastConn, named(&[1, 1]));
    let held: Vec<_> = (0..3).map(|_| b.start(0)).collect();
    // b0 stays (now at index 1), b1 goes, b2 arrives.
    let mut set = named(&[1, 1, 1]);
    set.swap(0, 1);
    set.remove(0); // drop b1; set = [b0, b2]
    let nb = b.rebuild(set);
    assert_eq!(nb.backends()[0].id, "b0");
    assert_eq!(nb.active(0), 3);
    assert!((0..10).all(|_| nb.pick(0).next().expect("two").1.id == "b2"));
    // Guards started on the old balancer still decrement the new one.
    drop(held);
    assert_eq!(nb.active(0), 0);
}

#[test]
fn guard_is_send_and_static_and_balancer_is_sync() {
    fn send_static<G: Send + 'static>() {}
    fn send_sync<B: Send + Sync>() {}
    send_static::<Guard>();
    send_sync::<Balancer<std::net::SocketAddr>>();
    send_sync::<switchboard_lb::Affinity<std::net::IpAddr, std::net::SocketAddr>>();
    // A guard outlives its balancer without harm.
    let b = Balancer::new(Algorithm::LeastConn, named(&[1]));
    let g = b.start(0);
    drop(b);
    g.observe_latency(Duration::from_millis(1));
    drop(g);
    // A bad index counts nothing and does not panic.
    let b = Balancer::new(Algorithm::LeastConn, named(&[1]));
    let g = b.start(7);
    assert_eq!(b.active(0), 0);
    drop(g);
}
