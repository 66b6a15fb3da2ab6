//! Invariants every algorithm keeps.

use crate::named;
use proptest::prelude::*;
use switchboard_lb::{Algorithm, Balancer};

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

proptest! {
    /// Candidates list every backend of weight > 0 exactly once and never
    /// one of weight 0, whatever the load; the first is the choice.
    #[test]
    fn candidates_cover_each_eligible_backend_once(
        algorithm in algorithm(),
        weights in prop::collection::vec(0u32..4, 0..40),
        load in prop::collection::vec(0usize..40, 0..20),
        key in any::<u64>(),
    ) {
        let b = Balancer::new(algorithm, named(&weights));
        let _guards: Vec<_> = load.iter().filter(|&&i| i < weights.len()).map(|&i| b.start(i)).collect();
        let mut seen = vec![false; weights.len()];
        let cands = b.pick(key);
        let hint = cands.len();
        let mut count = 0;
        for (i, backend) in cands {
            prop_assert!(!seen[i], "{} yielded twice", i);
            prop_assert!(weights[i] > 0, "weight-0 backend {} yielded", i);
            prop_assert_eq!(&backend.id, &format!("b{i}"));
            seen[i] = true;
            count += 1;
        }
        let eligible = weights.iter().filter(|&&w| w > 0).count();
        prop_assert_eq!(count, eligible);
        prop_assert_eq!(hint, eligible);
        prop_assert_eq!(b.is_empty(), eligible == 0);
    }

    /// Weight 0 is never the first choice either, over many picks.
    #[test]
    fn weight_zero_never_chosen(algorithm in algorithm(), weights in prop::collection::vec(0u32..3, 1..10)) {
        let b = Balancer::new(algorithm, named(&weights));
        for k in 0..200u64 {
            if let Some((i, _)) = b.pick(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).next() {
                prop_assert!(weights[i] > 0);
            }
        }
    }
}

#[test]
fn empty_balancer_yields_nothing() {
    for algorithm in Algorithm::ALL {
        let b = Balancer::<String>::new(algorithm, Vec::new());
        assert!(b.is_empty());
        assert_eq!(b.pick(42).count(), 0, "{algorithm}");
        let all_zero = Balancer::new(algorithm, named(&[0, 0]));
        assert!(all_zero.is_empty());
        assert_eq!(all_zero.pick(42).count(), 0, "{algorithm}");
    }
}
