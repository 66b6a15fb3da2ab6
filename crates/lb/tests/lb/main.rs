//! Integration tests of the `lb` crate: each scheduler's invariant as a
//! property over random backend sets and loads, plus the behaviour a proxy
//! relies on (rebuild keeps load, candidates for failover, affinity).

mod hashing;
mod load_aware;
mod properties;
mod rotation;

use switchboard_lb::Backend;

/// Backends `b0..bN` with the given weights.
pub fn named(weights: &[u32]) -> Vec<Backend<String>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Backend {
            id: format!("b{i}"),
            weight,
        })
        .collect()
}
