//! Pod IP allocation from the node's pod CIDR. Pure: the allocations are
//! persisted with the rest of the agent state, so an agent restart keeps
//! every running pod's address.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Addresses handed out, by pod uid.
#[derive(Debug, Clone)]
pub struct Ipam {
    cidr: Ipv4Net,
    by_uid: BTreeMap<String, Ipv4Addr>,
    used: BTreeMap<Ipv4Addr, String>,
    /// Where the next search starts, so a released address is not handed
    /// out again at once (a client might still talk to the old pod).
    next: u32,
}

impl Ipam {
    /// An allocator over `cidr` holding `existing` (uid → address; entries
    /// outside the range or taken twice are dropped).
    pub fn new(cidr: Ipv4Net, existing: impl IntoIterator<Item = (String, Ipv4Addr)>) -> Ipam {
        let mut ipam = Ipam {
            cidr,
            by_uid: BTreeMap::new(),
            used: BTreeMap::new(),
            next: first(cidr),
        };
        for (uid, ip) in existing {
            if ipam.in_range(ip) && !ipam.used.contains_key(&ip) {
                ipam.used.insert(ip, uid.clone());
                ipam.by_uid.insert(uid, ip);
            }
        }
        ipam
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n >= first(self.cidr) && n <= last(self.cidr)
    }

    /// The address of pod `uid`, allocating one if it has none; `None` when
    /// the range is full.
    pub fn allocate(&mut self, uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_uid.get(uid) {
            return Some(*ip);
        }
        let (lo, hi) = (first(self.cidr), last(self.cidr));
        if hi < lo {
            return None;
        }
        let size = hi - lo + 1;
        let start = self.next.clamp(lo, hi);
        for i in 0..size {
            let n = lo + (start - lo + i) % size;
            let ip = Ipv4Addr::from(n);
            if let std::collections::btree_map::Entry::Vacant(slot) = self.used.entry(ip) {
                slot.insert(uid.to_owned());
                self.by_uid.insert(uid.to_owned(), ip);
                self.next = if n == hi { lo } else { n + 1 };
                return Some(ip);
            }
        }
        None
    }

    /// Returns pod `uid`'s address to the pool.
    pub fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_uid.remove(uid) {
            self.used.remove(&ip);
        }
    }

    /// Every allocation, uid → address.
    pub fn allocations(&self) -> &BTreeMap<String, Ipv4Addr> {
        &self.by_uid
    }
}

/// The first address handed out: network + 2 (network + 1 is the
/// gateway's by convention, as in a node's pod range).
fn first(cidr: Ipv4Net) -> u32 {
    u32::from(cidr.network()).saturating_add(2)
}

/// The last address handed out: broadcast - 1.
fn last(cidr: Ipv4Net) -> u32 {
    u32::from(cidr.broadcast()).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn starts_at_dot_two_and_is_stable_per_uid() {
        let mut ipam = Ipam::new(net("127.244.0.0/16"), []);
        assert_eq!(ipam.allocate("a"), Some(Ipv4Addr::new(127, 244, 0, 2)));
        assert_eq!(ipam.allocate("b"), Some(Ipv4Addr::new(127, 244, 0, 3)));
        assert_eq!(ipam.allocate("a"), Some(Ipv4Addr::new(127, 244, 0, 2)));
    }

    #[test]
    fn exhausts_and_reuses_after_release() {
        // /29: .0 network, .1 gateway, .2-.6 pods, .7 broadcast.
        let mut ipam = Ipam::new(net("10.1.0.0/29"), []);
        let got: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&i.to_string()).map(|ip| ip.octets()[3]))
            .collect();
        assert_eq!(got, [Some(2), Some(3), Some(4), Some(5), Some(6)]);
        assert_eq!(ipam.allocate("x"), None, "full");
        ipam.release("1");
        assert_eq!(ipam.allocate("x"), Some(Ipv4Addr::new(10, 1, 0, 3)));
    }

    #[test]
    fn a_released_address_is_not_reused_at_once() {
        let mut ipam = Ipam::new(net("10.1.0.0/24"), []);
        let a = ipam.allocate("a");
        ipam.release("a");
        let b = ipam.allocate("b");
        assert_ne!(a, b);
    }

    #[test]
    fn restored_allocations_are_kept_and_bad_ones_dropped() {
        let existing = [
            ("a".to_string(), Ipv4Addr::new(127, 244, 0, 9)),
            ("b".to_string(), Ipv4Addr::new(127, 244, 0, 9)),
            ("c".to_string(), Ipv4Addr::new(10, 0, 0, 1)),
        ];
        let mut ipam = Ipam::new(net("127.244.0.0/16"), existing);
        assert_eq!(ipam.allocations().len(), 1);
        assert_eq!(ipam.allocate("a"), Some(Ipv4Addr::new(127, 244, 0, 9)));
        assert_ne!(ipam.allocate("b"), Some(Ipv4Addr::new(127, 244, 0, 9)));
    }
}
