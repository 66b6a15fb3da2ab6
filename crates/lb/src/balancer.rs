//! The balancer: an immutable backend set with its precomputed tables, and
//! the per-backend load it shares with in-flight [`Guard`]s. The pick path is
//! lock-free: atomics for the round-robin cursor, the random state and the
//! load counters; the caller swaps a whole new balancer (from
//! [`Balancer::rebuild`]) when the backend set changes.

use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::Algorithm;
use crate::hash::{mix64, stable_hash};
use crate::load::{Guard, Load, nanos};
use crate::maglev::{self, Table};

/// A backend and its weight. Weight 0 is never picked (IPVS's quiesced
/// server: it keeps its open connections but gets no new ones).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend<T> {
    /// The caller's identity for the backend (an address, an endpoint key).
    /// Ids should be unique within one balancer: load state follows the id
    /// across [`Balancer::rebuild`].
    pub id: T,
    /// Relative weight; 0 excludes the backend from picks.
    pub weight: u32,
}

impl<T> Backend<T> {
    /// A backend of weight 1.
    pub fn new(id: T) -> Self {
        Backend { id, weight: 1 }
    }
}

/// Tunables; the defaults are those of Envoy (Maglev) and linkerd (EWMA).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Maglev table size, prime. Default 65537 (Envoy). It is grown to a
    /// prime ≥ 8 × backends when smaller than that.
    pub maglev_table_size: usize,
    /// Latency assumed for a backend before any observation (linkerd: 30 ms).
    pub ewma_default_rtt: Duration,
    /// Time over which a latency estimate decays (linkerd: 10 s).
    pub ewma_decay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            maglev_table_size: maglev::DEFAULT_TABLE_SIZE,
            ewma_default_rtt: Duration::from_millis(30),
            ewma_decay: Duration::from_secs(10),
        }
    }
}

/// Invalid [`Options`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// Maglev needs a prime table size.
    #[error("maglev table size {size} is not prime (Envoy's default is 65537)")]
    TableSizeNotPrime {
        /// The size given.
        size: usize,
    },
    /// A zero decay would divide by zero.
    #[error("EWMA decay must be positive, got {decay:?}")]
    ZeroDecay {
        /// The decay given.
        decay: Duration,
    },
    /// A zero default latency makes every unobserved backend cost nothing.
    #[error("EWMA default RTT must be positive, got {rtt:?}")]
    ZeroDefaultRtt {
        /// The RTT given.
        rtt: Duration,
    },
}

impl Options {
    fn validate(&self) -> Result<(), OptionsError> {
        if !maglev::is_prime(self.maglev_table_size) {
            return Err(OptionsError::TableSizeNotPrime {
                size: self.maglev_table_size,
            });
        }
        if self.ewma_decay.is_zero() {
            return Err(OptionsError::ZeroDecay {
                decay: self.ewma_decay,
            });
        }
        if self.ewma_default_rtt.is_zero() {
            return Err(OptionsError::ZeroDefaultRtt {
                rtt: self.ewma_default_rtt,
            });
        }
        Ok(())
    }
}

/// The WRR schedule is precomputed; above this many slots the weights are
/// scaled down to fit (each backend keeps at least one slot).
const MAX_SCHEDULE: u64 = 1 << 16;

/// Fallbacks of the hashing algorithms look this many rehashed keys up in
/// the Maglev table (per backend) before the remaining backends follow in
/// index order.
const WALK_SLOTS_PER_BACKEND: usize = 4;

/// Golden-ratio increment of the splitmix64 sequence.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Process-wide seed source, so that balancers built at the same time do not
/// draw the same random sequence.
static SEEDS: AtomicU64 = AtomicU64::new(0x5eed);

/// A scheduler over a fixed backend set. `Send + Sync`: share it in an `Arc`
/// across tasks, and replace it with [`Balancer::rebuild`] when the set changes.
#[derive(Debug)]
pub struct Balancer<T> {
    algorithm: Algorithm,
    options: Options,
    backends: Vec<Backend<T>>,
    loads: Vec<Arc<Load>>,
    /// Indices of the backends with weight > 0, in backend order.
    eligible: Vec<u32>,
    /// All eligible weights are equal (weights change nothing but exclusion).
    uniform: bool,
    /// Prefix sums of the eligible weights (weighted random draws), when not uniform.
    cumulative: Vec<u64>,
    /// Weighted round-robin order of backend indices, when not uniform.
    schedule: Vec<u32>,
    /// Maglev table, for the hashing algorithms.
    table: Table,
    /// Round-robin position (also rotates the tie-break of the scans).
    cursor: AtomicUsize,
    /// splitmix64 state for random draws.
    rng: AtomicU64,
}

impl<T: Clone + Eq + Hash> Balancer<T> {
    /// A balancer with default [`Options`].
    pub fn new(algorithm: Algorithm, backends: Vec<Backend<T>>) -> Self {
        Self::fresh(algorithm, backends, Options::default())
    }

    /// A balancer with the given [`Options`], or why they are invalid.
    pub fn with_options(
        algorithm: Algorithm,
        backends: Vec<Backend<T>>,
        options: Options,
    ) -> Result<Self, OptionsError> {
        options.validate()?;
        Ok(Self::fresh(algorithm, backends, options))
    }

    /// A balancer with no history: idle loads, a new seed, rr at the start.
    fn fresh(algorithm: Algorithm, backends: Vec<Backend<T>>, options: Options) -> Self {
        let seed = mix64(SEEDS.fetch_add(GOLDEN, Ordering::Relaxed));
        let now = Instant::now();
        let loads = backends
            .iter()
            .map(|_| Arc::new(Load::new(options.ewma_default_rtt, now)))
            .collect();
        Self::assemble(algorithm, options, backends, loads, 0, seed)
    }

    /// A balancer for a changed backend set that keeps the load (active
    /// count, EWMA) of every backend whose id is unchanged, so guards of
    /// connections already open keep counting, and the round-robin position:
    /// the next pick is the backend that would have come next, or the first
    /// surviving one after it.
    pub fn rebuild(&self, backends: Vec<Backend<T>>) -> Self {
        let old: HashMap<&T, usize> = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| (&b.id, i))
            .collect();
        let now = Instant::now();
        let loads: Vec<Arc<Load>> = backends
            .iter()
            .map(|b| match old.get(&b.id) {
                Some(&i) => self.loads[i].clone(),
                None => Arc::new(Load::new(self.options.ewma_default_rtt, now)),
            })
            .collect();

        // Where the old rotation would go next, mapped into the new set.
        let new_pos: HashMap<&T, usize> = {
            let mut m = HashMap::new();
            let mut pos = 0;
            for b in &backends {
                if b.weight > 0 {
                    m.insert(&b.id, pos);
                    pos += 1;
                }
            }
            m
        };
        let mut cursor = 0;
        let n = self.eligible.len();
        if n > 0 {
            let start = self.cursor.load(Ordering::Relaxed) % n;
            for k in 0..n {
                let id = &self.backends[self.eligible[(start + k) % n] as usize].id;
                if let Some(&p) = new_pos.get(id) {
                    cursor = p;
                    break;
                }
            }
        }
        Self::assemble(
            self.algorithm,
            self.options,
            backends,
            loads,
            cursor,
            self.rng.load(Ordering::Relaxed),
        )
    }

    fn assemble(
        algorithm: Algorithm,
        options: Options,
        backends: Vec<Backend<T>>,
        loads: Vec<Arc<Load>>,
        cursor: usize,
        seed: u64,
    ) -> Self {
        let eligible: Vec<u32> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .map(|(i, _)| i as u32)
            .collect();
        let first_weight = eligible.first().map(|&i| backends[i as usize].weight);
        let uniform = eligible
            .iter()
            .all(|&i| Some(backends[i as usize].weight) == first_weight);
        let cumulative = if uniform {
            Vec::new()
        } else {
            let mut sum = 0u64;
            eligible
                .iter()
                .map(|&i| {
                    sum += u64::from(backends[i as usize].weight);
                    sum
                })
                .collect()
        };
        let schedule = if !uniform && algorithm == Algorithm::WeightedRoundRobin {
            wrr_schedule(&backends, &eligible)
        } else {
            Vec::new()
        };
        let table = if algorithm.is_hashing() {
            let entries: Vec<(&T, u32, u32)> = eligible
                .iter()
                .map(|&i| (&backends[i as usize].id, backends[i as usize].weight, i))
                .collect();
            Table::build(
                &entries,
                maglev::fit_size(options.maglev_table_size, entries.len()),
            )
        } else {
            Table::default()
        };
        Balancer {
            algorithm,
            options,
            backends,
            loads,
            eligible,
            uniform,
            cumulative,
            schedule,
            table,
            cursor: AtomicUsize::new(cursor),
            rng: AtomicU64::new(seed),
        }
    }

    /// The scheduling algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The options the balancer was built with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The backends, in the order given; [`Balancer::pick`] yields indices into it.
    pub fn backends(&self) -> &[Backend<T>] {
        &self.backends
    }

    /// Whether no backend can be picked (none, or all of weight 0).
    pub fn is_empty(&self) -> bool {
        self.eligible.is_empty()
    }

    /// Connections currently active on backend `index` (0 for a bad index).
    pub fn active(&self, index: usize) -> usize {
        self.loads.get(index).map_or(0, |l| l.active())
    }

    /// The size of the Maglev table (0 for algorithms that do not hash).
    pub fn table_size(&self) -> usize {
        self.table.len()
    }

    /// Ordered candidates: first the scheduler's choice, then fallbacks for
    /// a caller whose connection to the choice failed; each backend of
    /// weight > 0 exactly once. `hash_key` is the client key for `sh`, the
    /// destination key for `dh`, any key for `maglev` (see [`crate::hash_ip`]);
    /// the other algorithms ignore it.
    ///
    /// Fallback order: rotation order after the choice (`rr`, `wrr`,
    /// `random`), increasing load (the load-aware ones), the next slots of
    /// the Maglev table for the key rehashed (hashing ones: stable per key,
    /// and the clients of a failed backend spread over the others instead
    /// of all moving to one).
    pub fn pick(&self, hash_key: u64) -> Candidates<'_, T> {
        let n = self.eligible.len();
        if n == 0 {
            return Candidates {
                balancer: self,
                first: None,
                origin: 0,
                remaining: 0,
                fallback: Fallback::Rotate { step: 1 },
            };
        }
        let (first, fallback) = match self.algorithm {
            Algorithm::RoundRobin => (self.rr(), Fallback::Rotate { step: 1 }),
            Algorithm::WeightedRoundRobin => {
                let i = if self.uniform {
                    self.rr()
                } else {
                    let c = self.cursor.fetch_add(1, Ordering::Relaxed);
                    self.schedule[c % self.schedule.len()] as usize
                };
                (i, Fallback::Rotate { step: 1 })
            }
            Algorithm::Random => (self.draw(), Fallback::Rotate { step: 1 }),
            Algorithm::LeastConn
            | Algorithm::WeightedLeastConn
            | Algorithm::ShortestExpectedDelay
            | Algorithm::NeverQueue => (
                self.scan(),
                Fallback::ByCost {
                    order: None,
                    next: 0,
                },
            ),
            Algorithm::PowerOfTwo | Algorithm::PeakEwma => (
                self.p2c(),
                Fallback::ByCost {
                    order: None,
                    next: 0,
                },
            ),
            Algorithm::DestinationHash | Algorithm::SourceHash | Algorithm::Maglev => {
                // Non-empty eligible set ⇒ the table was built non-empty.
                let i = self
                    .table
                    .lookup(hash_key)
                    .unwrap_or(self.eligible[0] as usize);
                (
                    i,
                    Fallback::Walk {
                        key: hash_key,
                        scanned: 0,
                        seen: Vec::new(),
                        rotate_step: 1,
                    },
                )
            }
        };
        Candidates {
            balancer: self,
            first: Some(first),
            origin: first,
            remaining: n,
            fallback,
        }
    }

    /// A connection (or request) to backend `index` starts: load-aware
    /// algorithms count it until the returned guard drops. An index that is
    /// not a backend gives a guard that counts nothing.
    pub fn start(&self, index: usize) -> Guard {
        match self.loads.get(index) {
            Some(load) => Guard::new(load.clone(), nanos(self.options.ewma_decay)),
            None => Guard::detached(),
        }
    }

    #[inline]
    fn rr(&self) -> usize {
        let c = self.cursor.fetch_add(1, Ordering::Relaxed);
        self.eligible[c % self.eligible.len()] as usize
    }

    #[inline]
    fn random(&self) -> u64 {
        mix64(
            self.rng
                .fetch_add(GOLDEN, Ordering::Relaxed)
                .wrapping_add(GOLDEN),
        )
    }

    /// A random eligible backend, with probability proportional to weight.
    /// Returns the backend index.
    #[inline]
    fn draw(&self) -> usize {
        self.eligible[self.draw_position()] as usize
    }

    /// Position in `eligible` of a weighted random draw.
    #[inline]
    fn draw_position(&self) -> usize {
        let r = self.random();
        if self.uniform {
            scale(r, self.eligible.len() as u64) as usize
        } else {
            // Non-uniform ⇒ at least two eligible backends, cumulative non-empty.
            let total = *self.cumulative.last().unwrap_or(&1);
            let x = scale(r, total);
            self.cumulative.partition_point(|&c| c <= x)
        }
    }

    /// `lc`, `wlc`, `sed`, `nq`: a full scan for the least cost, starting at
    /// a rotating position so that ties (all idle, say) take turns instead
    /// of all going to the first backend as in IPVS.
    fn scan(&self) -> usize {
        let n = self.eligible.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let never_queue = self.algorithm == Algorithm::NeverQueue;
        // Two plain ranges rather than `(start + k) % n`: a division per
        // backend was most of the scan's cost at 1000 backends.
        let (tail, head) = self.eligible.split_at(start);
        let mut best = head[0] as usize;
        let mut best_cost = self.exact_cost(best);
        for &i in head.iter().chain(tail) {
            let i = i as usize;
            if never_queue && self.loads[i].active() == 0 {
                return i;
            }
            let cost = self.exact_cost(i);
            if cost.less_than(&best_cost) {
                best = i;
                best_cost = cost;
            }
        }
        best
    }

    /// Cost as an exact fraction, so `lc` never picks a more loaded backend
    /// through rounding.
    #[inline]
    fn exact_cost(&self, i: usize) -> Ratio {
        let active = self.loads[i].active() as u64;
        let weight = u64::from(self.backends[i].weight);
        match self.algorithm {
            Algorithm::LeastConn => Ratio(active, 1),
            Algorithm::WeightedLeastConn | Algorithm::PowerOfTwo => Ratio(active, weight),
            _ => Ratio(active + 1, weight),
        }
    }

    /// `p2c` and `peak-ewma`: the cheaper of two distinct weighted random
    /// draws (ties to the first draw, so an idle set follows the weights).
    fn p2c(&self) -> usize {
        let n = self.eligible.len();
        let a = self.draw_position();
        if n == 1 {
            return self.eligible[0] as usize;
        }
        let mut b = self.draw_position();
        if b == a {
            // A second distinct draw without retry loops: uniform over the others.
            b = (a + 1 + scale(self.random(), n as u64 - 1) as usize) % n;
        }
        let (ia, ib) = (self.eligible[a] as usize, self.eligible[b] as usize);
        if self.algorithm == Algorithm::PeakEwma {
            let now = Instant::now();
            if self.ewma_cost(ib, now) < self.ewma_cost(ia, now) {
                ib
            } else {
                ia
            }
        } else if self.exact_cost(ib).less_than(&self.exact_cost(ia)) {
            ib
        } else {
            ia
        }
    }

    /// linkerd's cost: decayed peak-EWMA × (active + 1), per unit of weight.
    fn ewma_cost(&self, i: usize, now: Instant) -> f64 {
        let load = &self.loads[i];
        let decay = nanos(self.options.ewma_decay);
        load.ewma_ns(now, decay) * (load.active() as f64 + 1.0) / f64::from(self.backends[i].weight)
    }

    /// Sort key for the fallback order of the load-aware algorithms.
    fn cost_key(&self, i: usize, now: Instant) -> f64 {
        match self.algorithm {
            Algorithm::PeakEwma => self.ewma_cost(i, now),
            Algorithm::NeverQueue if self.loads[i].active() == 0 => -1.0,
            _ => self.exact_cost(i).as_f64(),
        }
    }
}

/// Maps a uniform `u64` onto `0..n` without modulo bias (multiply-shift).
#[inline]
fn scale(r: u64, n: u64) -> u64 {
    ((u128::from(r) * u128::from(n)) >> 64) as u64
}

/// A non-negative fraction `num / den`.
#[derive(Debug, Clone, Copy)]
struct Ratio(u64, u64);

impl Ratio {
    #[inline]
    fn less_than(&self, other: &Ratio) -> bool {
        u128::from(self.0) * u128::from(other.1) < u128::from(other.0) * u128::from(self.1)
    }

    fn as_f64(&self) -> f64 {
        self.0 as f64 / self.1.max(1) as f64
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One cycle of smooth weighted round robin by earliest deadline first:
/// backend `i`'s k-th turn is due at the middle of its k-th interval,
/// `(k - 1/2) / w_i`, and the earliest due turn goes next (ties to the lower
/// index). Over the cycle each backend gets exactly `w_i` turns (weights
/// reduced by their gcd), spread out: 5:1:1 gives `a a a b c a a`, where
/// deadlines at `k / w_i` (Envoy's EDF) would give `a a a a a b c` and IPVS's
/// gcd rounds `a a a a a b c` as well.
fn wrr_schedule<T>(backends: &[Backend<T>], eligible: &[u32]) -> Vec<u32> {
    let g = eligible
        .iter()
        .fold(0, |g, &i| gcd(g, u64::from(backends[i as usize].weight)));
    let mut weights: Vec<u64> = eligible
        .iter()
        .map(|&i| u64::from(backends[i as usize].weight) / g.max(1))
        .collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        // Proportional scale-down; every backend keeps a turn.
        for w in &mut weights {
            *w = ((*w as u128 * MAX_SCHEDULE as u128 / total as u128) as u64).max(1);
        }
    }
    let total: u64 = weights.iter().sum();

    #[derive(PartialEq, Eq)]
    struct Turn {
        /// Due at `num / den` = `(2k - 1) / 2w`.
        num: u64,
        den: u64,
        pos: usize,
    }
    impl Ord for Turn {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            // Reversed: BinaryHeap is a max-heap and we want the earliest.
            let a = u128::from(self.num) * u128::from(other.den);
            let b = u128::from(other.num) * u128::from(self.den);
            b.cmp(&a).then_with(|| other.pos.cmp(&self.pos))
        }
    }
    impl PartialOrd for Turn {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    let mut heap: BinaryHeap<Turn> = weights
        .iter()
        .enumerate()
        .map(|(pos, &w)| Turn {
            num: 1,
            den: 2 * w,
            pos,
        })
        .collect();
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        // The heap holds one turn per eligible backend and is never emptied.
        let Some(t) = heap.pop() else { break };
        schedule.push(eligible[t.pos]);
        heap.push(Turn {
            num: t.num + 2,
            ..t
        });
    }
    schedule
}

enum Fallback {
    /// Backend indices after the origin, wrapping.
    Rotate { step: usize },
    /// Eligible backends by increasing load, computed on first use.
    ByCost {
        order: Option<Vec<u32>>,
        next: usize,
    },
    /// Maglev lookups of the key rehashed, then the rest in rotation order.
    Walk {
        key: u64,
        scanned: usize,
        seen: Vec<u64>,
        rotate_step: usize,
    },
}

/// Candidates of one pick, from [`Balancer::pick`]: `(index, backend)`, the
/// scheduler's choice first. Computing the fallbacks costs more than the
/// first choice, and only callers that need them pay for it.
pub struct Candidates<'a, T> {
    balancer: &'a Balancer<T>,
    first: Option<usize>,
    origin: usize,
    /// Eligible backends not yet yielded.
    remaining: usize,
    fallback: Fallback,
}

impl<'a, T: Clone + Eq + Hash> Iterator for Candidates<'a, T> {
    type Item = (usize, &'a Backend<T>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.balancer;
        if let Some(i) = self.first.take() {
            self.remaining -= 1;
            return Some((i, &b.backends[i]));
        }
        if self.remaining == 0 {
            return None;
        }
        let n = b.backends.len();
        let i = match &mut self.fallback {
            Fallback::Rotate { step } => rotate(b, self.origin, step, |_| false)?,
            Fallback::ByCost { order, next } => {
                let order = order.get_or_insert_with(|| {
                    let now = Instant::now();
                    let mut keyed: Vec<(f64, u32)> = b
                        .eligible
                        .iter()
                        .filter(|&&i| i as usize != self.origin)
                        .map(|&i| (b.cost_key(i as usize, now), i))
                        .collect();
                    keyed.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
                    keyed.into_iter().map(|(_, i)| i).collect()
                });
                let i = *order.get(*next)? as usize;
                *next += 1;
                i
            }
            Fallback::Walk {
                key,
                scanned,
                seen,
                rotate_step,
            } => {
                if seen.is_empty() {
                    *seen = vec![0u64; n.div_ceil(64)];
                    mark(seen, self.origin);
                }
                let limit = (b.eligible.len() * WALK_SLOTS_PER_BACKEND).min(b.table.len());
                let mut found = None;
                while *scanned < limit {
                    *scanned += 1;
                    // Independent slots (not the neighbours, which Maglev's
                    // fill correlates), so a failed backend's clients
                    // spread over the others by their table shares.
                    *key = mix64(key.wrapping_add(GOLDEN));
                    let i = b.table.lookup(*key).unwrap_or(self.origin);
                    if !is_marked(seen, i) {
                        found = Some(i);
                        break;
                    }
                }
                let i = match found {
                    Some(i) => i,
                    None => {
                        let seen_ref: &Vec<u64> = seen;
                        rotate(b, self.origin, rotate_step, |i| is_marked(seen_ref, i))?
                    }
                };
                mark(seen, i);
                i
            }
        };
        self.remaining -= 1;
        Some((i, &b.backends[i]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T: Clone + Eq + Hash> ExactSizeIterator for Candidates<'_, T> {}

/// The next eligible backend after `origin` in index order, skipping `skip`.
fn rotate<T>(
    b: &Balancer<T>,
    origin: usize,
    step: &mut usize,
    skip: impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = b.backends.len();
    while *step < n {
        let i = (origin + *step) % n;
        *step += 1;
        if b.backends[i].weight > 0 && !skip(i) {
            return Some(i);
        }
    }
    None
}

fn mark(seen: &mut [u64], i: usize) {
    seen[i / 64] |= 1 << (i % 64);
}

fn is_marked(seen: &[u64], i: usize) -> bool {
    seen[i / 64] & (1 << (i % 64)) != 0
}

/// Stable hash of a backend id (exposed for callers that want to key
/// something on the id the way the Maglev table does).
pub fn hash_id<T: Hash>(id: &T) -> u64 {
    stable_hash(id, 0)
}
