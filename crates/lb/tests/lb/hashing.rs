//! `sh`, `dh`, `maglev`: a key keeps its backend; changing the set moves
//! about 1/N of the keys.

use crate::named;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};
use switchboard_lb::{Algorithm, Backend, Balancer, Options, OptionsError, hash_ip};

fn owner(b: &Balancer<String>, key: u64) -> String {
    b.pick(key).next().expect("non-empty").1.id.clone()
}

fn client(i: u32) -> u64 {
    hash_ip(IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | i)))
}

const KEYS: u32 = 20_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Removing one of N backends moves the keys it had (1/N) and only a
    /// few others: Maglev's bound is not minimal disruption, but near it.
    #[test]
    fn removal_moves_about_one_nth(n in 3usize..40, victim_seed in 0usize..1000) {
        let set = named(&vec![1; n]);
        let victim = format!("b{}", victim_seed % n);
        let before = Balancer::new(Algorithm::SourceHash, set.clone());
        let after = before.rebuild(set.into_iter().filter(|b| b.id != victim).collect());
        let mut moved = 0;
        let mut moved_needlessly = 0;
        for k in 0..KEYS {
            let (a, b) = (owner(&before, client(k)), owner(&after, client(k)));
            if a != b {
                moved += 1;
                if a != victim {
                    moved_needlessly += 1;
                }
            }
        }
        let frac = moved as f64 / KEYS as f64;
        let ideal = 1.0 / n as f64;
        prop_assert!(frac < ideal * 1.3 + 0.01, "moved {} of keys, ideal {}", frac, ideal);
        prop_assert!((moved_needlessly as f64 / KEYS as f64) < 0.02 + ideal * 0.3,
            "{} keys moved off surviving backends (n={})", moved_needlessly, n);
    }

    /// The same key maps to the same backend on every pick, in a fresh
    /// balancer over the same set (another node, a restart), and listed in
    /// another order.
    #[test]
    fn stable_for_a_key(n in 1usize..30, key in any::<u64>()) {
        let set = named(&vec![1; n]);
        let a = Balancer::new(Algorithm::Maglev, set.clone());
        let mut reversed = set.clone();
        reversed.reverse();
        let b = Balancer::new(Algorithm::Maglev, reversed);
        let first = owner(&a, key);
        for _ in 0..5 {
            prop_assert_eq!(&owner(&a, key), &first);
        }
        prop_assert_eq!(&owner(&b, key), &first);
    }
}

#[test]
fn adding_a_backend_takes_about_one_nth() {
    let set = named(&[1; 9]);
    let before = Balancer::new(Algorithm::DestinationHash, set.clone());
    let mut more = set;
    more.push(Backend {
        id: "new".into(),
        weight: 1,
    });
    let after = before.rebuild(more);
    let mut to_new = 0;
    let mut shuffled = 0;
    for k in 0..KEYS {
        let (a, b) = (owner(&before, client(k)), owner(&after, client(k)));
        if b == "new" {
            to_new += 1;
        } else if a != b {
            shuffled += 1;
        }
    }
    let frac = to_new as f64 / KEYS as f64;
    assert!((frac - 0.1).abs() < 0.02, "new backend got {frac}");
    assert!(
        (shuffled as f64 / KEYS as f64) < 0.03,
        "{shuffled} keys moved between old backends"
    );
}

#[test]
fn keys_spread_by_weight() {
    let b = Balancer::new(Algorithm::SourceHash, named(&[1, 2, 0, 1]));
    let mut counts = [0u32; 4];
    for k in 0..KEYS {
        counts[b.pick(client(k)).next().expect("non-empty").0] += 1;
    }
    assert_eq!(counts[2], 0);
    let share = |i: usize| counts[i] as f64 / KEYS as f64;
    assert!((share(1) - 0.5).abs() < 0.03, "{counts:?}");
    assert!((share(0) - 0.25).abs() < 0.03, "{counts:?}");
}

#[test]
fn fallbacks_of_a_failed_backend_spread_over_the_others() {
    // The clients of b0 must not all fail over to the same second backend.
    let b = Balancer::new(Algorithm::SourceHash, named(&[1; 5]));
    let mut second = [0u32; 5];
    for k in 0..KEYS {
        let mut c = b.pick(client(k));
        if c.next().expect("five").0 == 0 {
            second[c.next().expect("five").0] += 1;
        }
    }
    assert_eq!(second[0], 0);
    let total: u32 = second.iter().sum();
    for &s in &second[1..] {
        let share = s as f64 / total as f64;
        assert!((share - 0.25).abs() < 0.06, "{second:?}");
    }
}

#[test]
fn table_size_is_configurable_and_must_be_prime() {
    let opts = Options {
        maglev_table_size: 251,
        ..Options::default()
    };
    let b = Balancer::with_options(Algorithm::Maglev, named(&[1, 1]), opts).expect("251 is prime");
    assert_eq!(b.table_size(), 251);
    assert_eq!(
        Balancer::new(Algorithm::SourceHash, named(&[1])).table_size(),
        65537
    );
    let bad = Options {
        maglev_table_size: 1000,
        ..Options::default()
    };
    let err = Balancer::with_options(Algorithm::Maglev, named(&[1]), bad).unwrap_err();
    assert_eq!(err, OptionsError::TableSizeNotPrime { size: 1000 });
    assert!(err.to_string().contains("1000"), "{err}");
}
