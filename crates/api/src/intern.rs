//! A process-wide string interner for the short strings that repeat across
//! every object of a cluster: namespaces, label keys and label values.
//!
//! The caches of the apiserver and the controllers hold the labels of every
//! object; 50,000 pods of a Deployment carry the same three keys and mostly
//! the same values, so one shared copy per distinct string replaces one
//! allocation per object and string.
//!
//! Strings nobody holds any more are dropped by a sweep that runs when the
//! table has doubled since the last one, so label churn (e.g. a
//! `pod-template-hash` per rollout) cannot make it grow without bound. The
//! sweep costs one pass over the table and is amortized over as many
//! insertions as the table held.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// Strings longer than this are not interned: they rarely repeat (e.g. an
/// annotation-sized label value) and would only grow the table.
pub const MAX_LEN: usize = 128;

/// Table sizes below this never trigger a sweep.
const MIN_SWEEP: usize = 1024;

struct Table {
    strings: HashSet<Arc<str>>,
    /// Size at which the next sweep runs.
    sweep_at: usize,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn table() -> MutexGuard<'static, Option<Table>> {
    // Poisoning only means a panic while held; the set is still valid.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared copy of `s` (a fresh one when `s` is longer than [`MAX_LEN`]).
pub fn intern(s: &str) -> Arc<str> {
    if s.len() > MAX_LEN {
        return Arc::from(s);
    }
    let mut guard = table();
    let t = guard.get_or_insert_with(|| Table {
        strings: HashSet::new(),
        sweep_at: MIN_SWEEP,
    });
    if let Some(found) = t.strings.get(s) {
        return Arc::clone(found);
    }
    if t.strings.len() >= t.sweep_at {
        // Only the table holds these.
        t.strings.retain(|s| Arc::strong_count(s) > 1);
        t.sweep_at = (t.strings.len() * 2).max(MIN_SWEEP);
        t.strings.shrink_to(t.sweep_at);
    }
    let fresh: Arc<str> = Arc::from(s);
    t.strings.insert(Arc::clone(&fresh));
    fresh
}

/// Number of strings in the table (held or not yet swept), for tests and
/// metrics.
pub fn len() -> usize {
    table().as_ref().map_or(0, |t| t.strings.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let a = intern("intern-test-app");
        let b = intern(&String::from("intern-test-app"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "intern-test-app");
        let long = "x".repeat(MAX_LEN + 1);
        assert!(!Arc::ptr_eq(&intern(&long), &intern(&long)));
    }

    #[test]
    fn unheld_strings_are_swept() {
        // Far more distinct strings than the sweep threshold, none kept:
        // the table stays within a small multiple of the threshold.
        for i in 0..(MIN_SWEEP * 20) {
            drop(intern(&format!("intern-sweep-{i}")));
        }
        assert!(len() <= MIN_SWEEP * 4, "table holds {}", len());
        // A held string survives sweeps.
        let kept = intern("intern-test-kept");
        for i in 0..(MIN_SWEEP * 4) {
            drop(intern(&format!("intern-sweep-again-{i}")));
        }
        assert!(Arc::ptr_eq(&kept, &intern("intern-test-kept")));
    }
}
