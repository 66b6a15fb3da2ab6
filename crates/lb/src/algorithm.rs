//! The scheduler names users write (`--scheduler`, the
//! `switchboard.io/scheduler` annotation), spelled as IPVS and `ipvsadm` spell
//! them where IPVS has the scheduler.

use std::fmt;
use std::str::FromStr;

/// A scheduling algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `rr`: each backend in turn, exactly (IPVS `rr`). Weights only exclude
    /// weight-0 backends.
    #[default]
    RoundRobin,
    /// `wrr`: smooth weighted round robin: over every cycle of
    /// `sum(weights)/gcd` picks each backend appears exactly `weight/gcd`
    /// times, interleaved (5:1:1 gives `a a a b c a a`, close to nginx's
    /// smooth WRR), rather than IPVS's gcd rounds, which send the heaviest
    /// backend a burst first (`a a a a a b c`).
    WeightedRoundRobin,
    /// `lc`: the backend with the fewest active connections (IPVS `lc`).
    LeastConn,
    /// `wlc`: the smallest `active / weight` (IPVS `wlc`).
    WeightedLeastConn,
    /// `sed`: shortest expected delay, the smallest `(active + 1) / weight`
    /// (IPVS `sed`).
    ShortestExpectedDelay,
    /// `nq`: never queue: an idle backend if there is one, else `sed`
    /// (IPVS `nq`).
    NeverQueue,
    /// `dh`: destination hashing; the caller passes a hash of the
    /// destination. Maglev table, so removing one of N backends remaps about
    /// 1/N of the keys.
    DestinationHash,
    /// `sh`: source hashing; the caller passes a hash of the client address.
    /// Maglev table, as `dh`.
    SourceHash,
    /// `random`: a random backend, with probability proportional to weight.
    Random,
    /// `p2c`: power of two choices: two random backends (weighted draw), the
    /// one with fewer active connections per unit of weight.
    PowerOfTwo,
    /// `peak-ewma`: linkerd's latency-aware P2C: cost = peak-EWMA of the
    /// observed latency × (active + 1), the estimate decaying over time.
    PeakEwma,
    /// `maglev`: Maglev consistent hashing on the caller's key (for callers
    /// that hash something other than an address, e.g. a header).
    Maglev,
}

impl Algorithm {
    /// Every algorithm, in the order of [`Algorithm::NAMES`].
    pub const ALL: [Algorithm; 12] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConn,
        Algorithm::WeightedLeastConn,
        Algorithm::ShortestExpectedDelay,
        Algorithm::NeverQueue,
        Algorithm::DestinationHash,
        Algorithm::SourceHash,
        Algorithm::Random,
        Algorithm::PowerOfTwo,
        Algorithm::PeakEwma,
        Algorithm::Maglev,
    ];

    /// The accepted names, as [`Algorithm::name`] gives them.
    pub const NAMES: [&'static str; 12] = [
        "rr",
        "wrr",
        "lc",
        "wlc",
        "sed",
        "nq",
        "dh",
        "sh",
        "random",
        "p2c",
        "peak-ewma",
        "maglev",
    ];

    /// The name users write (`rr`, `wlc`, `peak-ewma`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "rr",
            Algorithm::WeightedRoundRobin => "wrr",
            Algorithm::LeastConn => "lc",
            Algorithm::WeightedLeastConn => "wlc",
            Algorithm::ShortestExpectedDelay => "sed",
            Algorithm::NeverQueue => "nq",
            Algorithm::DestinationHash => "dh",
            Algorithm::SourceHash => "sh",
            Algorithm::Random => "random",
            Algorithm::PowerOfTwo => "p2c",
            Algorithm::PeakEwma => "peak-ewma",
            Algorithm::Maglev => "maglev",
        }
    }

    /// Whether the choice depends on the `hash_key` (and so needs a Maglev table).
    pub fn is_hashing(&self) -> bool {
        matches!(
            self,
            Algorithm::DestinationHash | Algorithm::SourceHash | Algorithm::Maglev
        )
    }

    /// Whether the choice depends on the feedback of [`crate::Guard`]s.
    pub fn is_load_aware(&self) -> bool {
        matches!(
            self,
            Algorithm::LeastConn
                | Algorithm::WeightedLeastConn
                | Algorithm::ShortestExpectedDelay
                | Algorithm::NeverQueue
                | Algorithm::PowerOfTwo
                | Algorithm::PeakEwma
        )
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An algorithm name that is not one of [`Algorithm::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scheduler {name:?}; valid schedulers: rr, wrr, lc, wlc, sed, nq, dh, sh, random, p2c, peak-ewma, maglev"
)]
pub struct UnknownAlgorithm {
    /// The name that was given.
    pub name: String,
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Exact, case-sensitive names, as `ipvsadm` accepts them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .iter()
            .find(|a| a.name() == s)
            .copied()
            .ok_or_else(|| UnknownAlgorithm { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (a, n) in Algorithm::ALL.iter().zip(Algorithm::NAMES) {
            assert_eq!(a.name(), n);
            assert_eq!(n.parse::<Algorithm>(), Ok(*a));
            assert_eq!(a.to_string(), n);
        }
    }

    #[test]
    fn unknown_name_is_named_with_the_valid_ones() {
        let err = "least-conn".parse::<Algorithm>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"least-conn\""), "{msg}");
        for n in Algorithm::NAMES {
            assert!(msg.contains(n), "{msg} lacks {n}");
        }
        assert!("RR".parse::<Algorithm>().is_err());
        assert!("".parse::<Algorithm>().is_err());
    }
}
