//! Load-balancing schedulers and session affinity, generic over the backend
//! type: the IPVS scheduler family (`rr`, `wrr`, `lc`, `wlc`, `sed`, `nq`,
//! `dh`, `sh`), `random`, power-of-two-choices, linkerd's peak-EWMA P2C and
//! Maglev consistent hashing.
//!
//! Pure: no IO, no async runtime, and the clock is read only for the
//! peak-EWMA estimates (`Instant::now()`, to decay them), so the L4
//! proxy, the ingress and the benches share it and it is property-tested alone.
//!
//! The seam, after pingora and linkerd: [`Balancer::pick`] decides (ordered
//! [`Candidates`], so a caller can skip a backend that just failed), the
//! caller decides when to [`Balancer::rebuild`] and swaps the new balancer in;
//! [`Balancer::start`] returns a [`Guard`] that feeds load back while a
//! connection is open.
//!
//! ```
//! use switchboard_lb::{Algorithm, Backend, Balancer};
//! let b = Balancer::new(Algorithm::LeastConn, vec![Backend::new("a"), Backend::new("b")]);
//! let (first, _) = b.pick(0).next().expect("two backends");
//! let _open = b.start(first);           // counts while the connection lives
//! let (second, _) = b.pick(0).next().expect("two backends");
//! assert_ne!(first, second);            // lc avoids the busy one
//! ```

mod affinity;
mod algorithm;
mod balancer;
mod hash;
mod load;
pub mod maglev;

pub use affinity::Affinity;
pub use algorithm::{Algorithm, UnknownAlgorithm};
pub use balancer::{Backend, Balancer, Candidates, Options, OptionsError, hash_id};
pub use hash::hash_ip;
pub use load::Guard;
