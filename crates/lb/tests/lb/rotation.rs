//! `rr`, `wrr`, `random`: order and weight shares.

use crate::named;
use proptest::prelude::*;
use std::collections::HashMap;
use switchboard_lb::{Algorithm, Backend, Balancer};

fn first(b: &Balancer<String>) -> usize {
    b.pick(0)
        .next()
        .expect("balancer has an eligible backend")
        .0
}

proptest! {
    /// rr visits the weight>0 backends in order, each exactly once per cycle.
    #[test]
    fn rr_rotates_exactly(weights in prop::collection::vec(0u32..4, 1..20), cycles in 1usize..4) {
        let b = Balancer::new(Algorithm::RoundRobin, named(&weights));
        let eligible: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
        prop_assume!(!eligible.is_empty());
        let picks: Vec<usize> = (0..eligible.len() * cycles).map(|_| first(&b)).collect();
        for (k, &p) in picks.iter().enumerate() {
            prop_assert_eq!(p, eligible[k % eligible.len()]);
        }
    }

    /// wrr: over one cycle (sum of weights / gcd) each backend gets exactly
    /// its weight / gcd turns.
    #[test]
    fn wrr_gives_exact_shares_per_cycle(weights in prop::collection::vec(0u32..8, 1..12)) {
        let b = Balancer::new(Algorithm::WeightedRoundRobin, named(&weights));
        let g = weights.iter().fold(0u32, |g, &w| gcd(g, w));
        prop_assume!(g > 0);
        let cycle: u32 = weights.iter().map(|w| w / g).sum();
        for _round in 0..2 {
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..cycle {
                counts[first(&b)] += 1;
            }
            for (i, &w) in weights.iter().enumerate() {
                prop_assert_eq!(counts[i], w / g, "backend {} of {:?}", i, weights);
            }
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[test]
fn wrr_interleaves_instead_of_bursting() {
    let b = Balancer::new(Algorithm::WeightedRoundRobin, named(&[5, 1, 1]));
    let seq: Vec<usize> = (0..7).map(|_| first(&b)).collect();
    assert_eq!(seq, [0, 0, 0, 1, 2, 0, 0]);
}

#[test]
fn random_follows_weights() {
    let b = Balancer::new(Algorithm::Random, named(&[1, 2, 0, 5]));
    let n = 80_000;
    let mut counts = [0usize; 4];
    for _ in 0..n {
        counts[first(&b)] += 1;
    }
    assert_eq!(counts[2], 0, "weight 0 picked");
    for (i, w) in [(0, 1.0), (1, 2.0), (3, 5.0)] {
        let expected = n as f64 * w / 8.0;
        // Binomial sd < 150 here; 5 sd of slack.
        assert!(
            (counts[i] as f64 - expected).abs() < 750.0,
            "backend {i}: {} vs {expected} ({counts:?})",
            counts[i]
        );
    }
}

#[test]
fn rr_from_many_threads_still_shares_exactly() {
    let b = std::sync::Arc::new(Balancer::new(Algorithm::RoundRobin, named(&[1; 5])));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut c = HashMap::new();
                for _ in 0..1000 {
                    *c.entry(first(&b)).or_insert(0usize) += 1;
                }
                c
            })
        })
        .collect();
    let mut total = HashMap::new();
    for t in threads {
        for (k, v) in t.join().expect("picker thread panicked") {
            *total.entry(k).or_insert(0) += v;
        }
    }
    // 4000 picks over 5 backends: every pick takes its own cursor slot.
    assert!(total.values().all(|&v| v == 800), "{total:?}");
}

#[test]
fn rebuild_continues_the_rotation() {
    let b = Balancer::new(Algorithm::RoundRobin, named(&[1, 1, 1, 1]));
    assert_eq!(first(&b), 0);
    assert_eq!(first(&b), 1);
    // Next would be b2; remove it: the rotation goes on with b3, then wraps.
    let mut set = named(&[1, 1, 1, 1]);
    set.remove(2);
    let b = b.rebuild(set);
    let ids: Vec<String> = (0..4)
        .map(|_| {
            let (_, be) = b.pick(0).next().expect("three backends");
            be.id.clone()
        })
        .collect();
    assert_eq!(ids, ["b3", "b0", "b1", "b3"]);
    // Adding one keeps the position too: next after b3 is b0.
    let mut bigger = named(&[1, 1, 1, 1]);
    bigger.push(Backend {
        id: "b9".into(),
        weight: 1,
    });
    let b = b.rebuild(bigger);
    assert_eq!(
        b.pick(0).next().map(|(_, be)| be.id.clone()).as_deref(),
        Some("b0")
    );
}
