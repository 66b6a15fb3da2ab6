//! Maglev lookup table (Eisenbud et al., NSDI 2016, §3.4), with Envoy's
//! weighting: each backend fills table slots in the order of its own
//! permutation of `0..M`, and a backend of weight `w` takes a turn in `w` of
//! every `max_weight` rounds, so it ends with about `w / sum(w)` of the slots.

use crate::hash::stable_hash;
use std::hash::Hash;

/// Envoy's default table size (prime).
pub const DEFAULT_TABLE_SIZE: usize = 65537;

/// Slot → backend index (into the caller's backend list).
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    slots: Vec<u32>,
}

impl Table {
    /// Builds the table for `(id, weight, index)` entries with weight > 0.
    /// `size` must be prime and at least the number of entries (the caller
    /// guarantees both with [`fit_size`]).
    pub(crate) fn build<T: Hash>(entries: &[(&T, u32, u32)], size: usize) -> Table {
        if entries.is_empty() {
            return Table::default();
        }
        let m = size as u64;
        struct Perm {
            offset: u64,
            skip: u64,
            next: u64,
            weight: u64,
            target: u64,
            index: u32,
        }
        let mut perms: Vec<Perm> = entries
            .iter()
            .map(|&(id, weight, index)| Perm {
                offset: stable_hash(id, 0x6d61_676c_6576_0001) % m,
                skip: stable_hash(id, 0x6d61_676c_6576_0002) % (m - 1) + 1,
                next: 0,
                weight: u64::from(weight),
                target: 0,
                index,
            })
            .collect();
        let max_weight = perms.iter().map(|p| p.weight).max().unwrap_or(1);
        const EMPTY: u32 = u32::MAX;
        let mut slots = vec![EMPTY; size];
        let mut filled = 0usize;
        let mut round: u64 = 0;
        while filled < size {
            round += 1;
            for p in perms.iter_mut() {
                if filled == size {
                    break;
                }
                // A backend of the largest weight takes a turn every round,
                // one of a third of it every third round.
                if round * p.weight < p.target {
                    continue;
                }
                p.target += max_weight;
                // `skip` is in 1..m and m is prime, so the permutation visits
                // every slot within m steps: this terminates while a slot is empty.
                let mut c = (p.offset + p.next * p.skip) % m;
                while slots[c as usize] != EMPTY {
                    p.next += 1;
                    c = (p.offset + p.next * p.skip) % m;
                }
                slots[c as usize] = p.index;
                p.next += 1;
                filled += 1;
            }
        }
        Table { slots }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The backend index of slot `key % M` (`None` for an empty table).
    #[inline]
    pub(crate) fn lookup(&self, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        Some(self.slots[(key % self.slots.len() as u64) as usize] as usize)
    }
}

/// Whether `n` is prime (trial division; table sizes are small).
pub fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3usize;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The configured size, or the smallest prime ≥ 8 × `backends` when the
/// configured one is too small to give every backend slots (a table must be
/// much larger than the backend count for Maglev's balance).
pub(crate) fn fit_size(configured: usize, backends: usize) -> usize {
    if backends.saturating_mul(8) <= configured || backends == 0 {
        return configured;
    }
    let mut n = backends.saturating_mul(8) | 1;
    while !is_prime(n) {
        n += 2;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(2));
        assert!(is_prime(251));
        assert!(!is_prime(65536));
        assert!(!is_prime(1));
        assert!(!is_prime(0));
        assert!(!is_prime(65535));
    }

    #[test]
    fn weights_shape_the_table_as_envoy_documents() {
        // Envoy's documented example: weights 1:2 in 65537 slots give
        // 21,846 and 43,691 entries.
        let a = "a".to_owned();
        let b = "b".to_owned();
        let t = Table::build(&[(&a, 1, 0), (&b, 2, 1)], DEFAULT_TABLE_SIZE);
        let zeros = t.slots.iter().filter(|&&s| s == 0).count();
        let ones = t.slots.iter().filter(|&&s| s == 1).count();
        assert_eq!(zeros + ones, DEFAULT_TABLE_SIZE);
        assert!((21_800..=21_900).contains(&zeros), "{zeros}");
        assert!((43_600..=43_750).contains(&ones), "{ones}");
    }

    #[test]
    fn equal_weights_share_slots_evenly() {
        let ids: Vec<String> = (0..10).map(|i| format!("10.0.0.{i}:80")).collect();
        let entries: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id, 1, i as u32))
            .collect();
        let t = Table::build(&entries, DEFAULT_TABLE_SIZE);
        for i in 0..10u32 {
            let n = t.slots.iter().filter(|&&s| s == i).count();
            // Maglev's round-robin fill gives each backend ⌊M/N⌋ or ⌈M/N⌉.
            assert!((6553..=6554).contains(&n), "backend {i}: {n}");
        }
    }

    #[test]
    fn too_small_size_is_grown_to_a_prime() {
        assert_eq!(fit_size(65537, 10), 65537);
        let n = fit_size(7, 10);
        assert!(n >= 80 && is_prime(n), "{n}");
    }
}
