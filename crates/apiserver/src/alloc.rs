//! ClusterIP, NodePort and LoadBalancer IP allocation.
//!
//! The allocators live in memory and are rebuilt from the stored Services at
//! every start (the repair pass), so the Services themselves are the record of
//! what is allocated: nothing can be handed out twice across restarts, and no
//! separate allocation state can drift from the objects. Kubernetes persists a
//! bitmap and repairs it; with a single apiserver process the objects suffice.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Why an allocation failed. The texts are the Kubernetes apiserver's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The requested value is taken.
    #[error("provided {what} is already allocated")]
    Taken {
        /// `IP` or `port`.
        what: &'static str,
    },
    /// The requested value is outside the range.
    #[error("{0}")]
    OutOfRange(String),
    /// Nothing is free.
    #[error("range is full")]
    Full,
}

/// A set of allocatable integers `base..base+len` as a bitmap, with a cursor
/// so dynamic allocation is amortised O(1) and cycles through the range
/// before reusing a freed value (freed values are reused only after the
/// cursor wraps, which keeps a just-deleted Service's address from being
/// handed straight to the next one).
#[derive(Debug, Clone)]
struct Bitmap {
    base: u32,
    len: u32,
    words: Vec<u64>,
    used: u32,
    cursor: u32,
}

impl Bitmap {
    fn new(base: u32, len: u32) -> Self {
        Self {
            base,
            len,
            words: vec![0; len.div_ceil(64) as usize],
            used: 0,
            cursor: 0,
        }
    }

    fn index(&self, value: u32) -> Option<u32> {
        value.checked_sub(self.base).filter(|i| *i < self.len)
    }

    fn is_set(&self, i: u32) -> bool {
        self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u32) {
        self.words[(i / 64) as usize] |= 1 << (i % 64);
        self.used += 1;
    }

    /// Marks `value` taken; false if it already was.
    fn claim(&mut self, value: u32) -> bool {
        match self.index(value) {
            Some(i) if !self.is_set(i) => {
                self.set(i);
                true
            }
            _ => false,
        }
    }

    fn release(&mut self, value: u32) {
        if let Some(i) = self.index(value)
            && self.is_set(i)
        {
            self.words[(i / 64) as usize] &= !(1 << (i % 64));
            self.used -= 1;
        }
    }

    /// Takes the next free value at or after the cursor, wrapping once.
    fn next(&mut self, skip: impl Fn(u32) -> bool) -> Option<u32> {
        if self.used >= self.len {
            return None;
        }
        for step in 0..self.len {
            let i = (self.cursor + step) % self.len;
            if !self.is_set(i) && !skip(self.base + i) {
                self.set(i);
                self.cursor = (i + 1) % self.len;
                return Some(self.base + i);
            }
        }
        None
    }
}

/// Allocates addresses from an IPv4 range, excluding its network and
/// broadcast addresses, plus a set of addresses reserved for static
/// assignment only (the `kubernetes` service's `.1`, cluster DNS's `.10`).
#[derive(Debug, Clone)]
pub struct IpAllocator {
    net: Ipv4Net,
    bits: Bitmap,
    reserved: Vec<Ipv4Addr>,
}

impl IpAllocator {
    /// An allocator over the usable addresses of `net`; `reserved` addresses
    /// are never handed out dynamically but can be requested by value.
    pub fn new(net: Ipv4Net, reserved: Vec<Ipv4Addr>) -> Self {
        let size = 1u64 << (32 - u32::from(net.prefix_len()));
        // /31 and /32 have no network and broadcast addresses to skip.
        let (first, len) = if size <= 2 {
            (u32::from(net.network()), size)
        } else {
            (u32::from(net.network()) + 1, size - 2)
        };
        // size - 2 < 2^32 for every prefix length.
        let len = u32::try_from(len).expect("a /0 minus two addresses fits in u32");
        Self {
            net,
            bits: Bitmap::new(first, len),
            reserved,
        }
    }

    /// The range this allocator serves.
    pub fn range(&self) -> Ipv4Net {
        self.net
    }

    /// Claims `ip`, which the user asked for.
    pub fn allocate(&mut self, ip: Ipv4Addr) -> Result<(), AllocError> {
        if self.bits.index(u32::from(ip)).is_none() {
            return Err(AllocError::OutOfRange(format!(
                "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                self.net
            )));
        }
        if self.bits.claim(u32::from(ip)) {
            Ok(())
        } else {
            Err(AllocError::Taken { what: "IP" })
        }
    }

    /// Claims the next free, non-reserved address.
    pub fn allocate_next(&mut self) -> Result<Ipv4Addr, AllocError> {
        let reserved: Vec<u32> = self.reserved.iter().map(|ip| u32::from(*ip)).collect();
        self.bits
            .next(|v| reserved.contains(&v))
            .map(Ipv4Addr::from)
            .ok_or(AllocError::Full)
    }

    /// Returns `ip` to the pool (a no-op if it was not allocated or is out of range).
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.bits.release(u32::from(ip));
    }

    /// Whether `ip` is currently allocated.
    pub fn is_allocated(&self, ip: Ipv4Addr) -> bool {
        self.bits
            .index(u32::from(ip))
            .is_some_and(|i| self.bits.is_set(i))
    }

    /// How many addresses are allocated.
    pub fn used(&self) -> u32 {
        self.bits.used
    }
}

/// Allocates ports from an inclusive range.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    first: u16,
    last: u16,
    bits: Bitmap,
}

impl PortAllocator {
    /// An allocator over `first..=last`.
    pub fn new(first: u16, last: u16) -> Self {
        Self {
            first,
            last,
            bits: Bitmap::new(u32::from(first), u32::from(last - first) + 1),
        }
    }

    /// Claims `port`, which the user asked for.
    pub fn allocate(&mut self, port: u16) -> Result<(), AllocError> {
        if port < self.first || port > self.last {
            return Err(AllocError::OutOfRange(format!(
                "provided port is not in the valid range. The range of valid ports is {}-{}",
                self.first, self.last
            )));
        }
        if self.bits.claim(u32::from(port)) {
            Ok(())
        } else {
            Err(AllocError::Taken { what: "port" })
        }
    }

    /// Claims the next free port.
    pub fn allocate_next(&mut self) -> Result<u16, AllocError> {
        // The bitmap spans first..=last, all within u16.
        self.bits
            .next(|_| false)
            .map(|p| u16::try_from(p).expect("port bitmap values fit in u16"))
            .ok_or(AllocError::Full)
    }

    /// Returns `port` to the pool.
    pub fn release(&mut self, port: u16) {
        self.bits.release(u32::from(port));
    }

    /// Whether `port` is currently allocated.
    pub fn is_allocated(&self, port: u16) -> bool {
        self.bits
            .index(u32::from(port))
            .is_some_and(|i| self.bits.is_set(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn dynamic_ips_skip_network_broadcast_and_reserved() {
        let mut a = IpAllocator::new(net("127.96.0.0/29"), vec![Ipv4Addr::new(127, 96, 0, 1)]);
        let got: Vec<_> = std::iter::from_fn(|| a.allocate_next().ok()).collect();
        // .0 is the network, .7 broadcast, .1 reserved: five usable.
        assert_eq!(
            got,
            (2..=6)
                .map(|d| Ipv4Addr::new(127, 96, 0, d))
                .collect::<Vec<_>>()
        );
        assert_eq!(a.allocate_next(), Err(AllocError::Full));
        // The reserved address is still available by request.
        assert_eq!(a.allocate(Ipv4Addr::new(127, 96, 0, 1)), Ok(()));
    }

    #[test]
    fn requested_ip_taken_and_out_of_range() {
        let mut a = IpAllocator::new(net("127.96.0.0/16"), vec![]);
        let ip = Ipv4Addr::new(127, 96, 3, 4);
        assert_eq!(a.allocate(ip), Ok(()));
        assert_eq!(
            a.allocate(ip).unwrap_err().to_string(),
            "provided IP is already allocated"
        );
        let err = a.allocate(Ipv4Addr::new(127, 97, 0, 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the provided IP (127.97.0.1) is not in the valid range. The range of valid IPs is 127.96.0.0/16"
        );
        assert!(a.is_allocated(ip));
    }

    #[test]
    fn exhaustion_then_reuse_after_release() {
        let mut a = PortAllocator::new(30000, 30002);
        assert_eq!(a.allocate_next(), Ok(30000));
        assert_eq!(a.allocate(30001), Ok(()));
        assert_eq!(a.allocate_next(), Ok(30002));
        assert_eq!(a.allocate_next(), Err(AllocError::Full));
        a.release(30001);
        assert!(!a.is_allocated(30001));
        assert_eq!(a.allocate_next(), Ok(30001));
    }

    #[test]
    fn port_errors_use_kubernetes_texts() {
        let mut a = PortAllocator::new(30000, 32767);
        assert_eq!(a.allocate(30080), Ok(()));
        assert_eq!(
            a.allocate(30080).unwrap_err().to_string(),
            "provided port is already allocated"
        );
        assert_eq!(
            a.allocate(80).unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
    }

    #[test]
    fn freed_values_are_not_reused_before_the_cursor_wraps() {
        let mut a = PortAllocator::new(30000, 30009);
        let first = a.allocate_next().unwrap();
        a.release(first);
        assert_ne!(a.allocate_next().unwrap(), first);
    }

    proptest::proptest! {
        /// Whatever the sequence of allocations and releases, no value is ever
        /// held twice and the used count matches the model.
        #[test]
        fn never_hands_out_a_value_twice(ops in proptest::collection::vec((proptest::bool::ANY, 0u16..20), 1..200)) {
            let mut a = PortAllocator::new(100, 115);
            let mut held = std::collections::BTreeSet::new();
            for (alloc, v) in ops {
                if alloc {
                    if let Ok(p) = a.allocate_next() {
                        proptest::prop_assert!(held.insert(p), "port {} handed out twice", p);
                    } else {
                        proptest::prop_assert_eq!(held.len(), 16);
                    }
                } else if let Some(p) = held.iter().nth(usize::from(v) % held.len().max(1)).copied() {
                    a.release(p);
                    held.remove(&p);
                }
            }
            proptest::prop_assert_eq!(a.bits.used as usize, held.len());
        }
    }
}
