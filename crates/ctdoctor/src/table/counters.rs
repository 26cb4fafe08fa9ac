//! Count maps for the aggregates: a fast hasher ([`FxHasher`], [`FastMap`])
//! and counters keyed by value ([`Counter`]), by address ([`AddrCounter`],
//! IPv4 keys kept as `u32`) and by (address, port) ([`PairCounter`]).
//!
//! Not for: deciding what to count (that is `agg`) or naming keys.

use super::entry::Addr;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast non-cryptographic hasher (FxHash-style multiply-rotate). Keys
/// are addresses and ports from the kernel; HashDoS is not a concern for a
/// one-shot local count.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    #[inline]
    fn add(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Keys a [`Counter`] keeps in a plain array before switching to a hash map.
const SMALL: usize = 16;

/// Counts per key: a short array searched linearly while there are few
/// keys (zones, marks, destinations, ports: usually a handful, so no
/// hashing at all), a hash map once there are more.
#[derive(Debug, Clone)]
pub struct Counter<K> {
    small: Vec<(K, u32)>,
    map: FastMap<K, u32>,
}

impl<K> Default for Counter<K> {
    fn default() -> Self {
        Counter {
            small: Vec::new(),
            map: FastMap::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy> Counter<K> {
    #[inline]
    pub fn add(&mut self, k: K, n: u32) {
        if self.map.is_empty() {
            for (kk, c) in self.small.iter_mut() {
                if *kk == k {
                    *c += n;
                    return;
                }
            }
            if self.small.len() < SMALL {
                self.small.push((k, n));
                return;
            }
            self.map.reserve(SMALL * 4);
            for (kk, c) in self.small.drain(..) {
                self.map.insert(kk, c);
            }
        }
        *self.map.entry(k).or_insert(0) += n;
    }
    #[inline]
    pub fn bump(&mut self, k: K) {
        self.add(k, 1)
    }
    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.small.len() + self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> impl Iterator<Item = (&K, u32)> {
        self.small
            .iter()
            .map(|(k, c)| (k, *c))
            .chain(self.map.iter().map(|(k, c)| (k, *c)))
    }
    pub fn merge(&mut self, mut o: Counter<K>) {
        if o.len() > self.len() {
            std::mem::swap(self, &mut o);
        }
        for (k, c) in o.small.into_iter().chain(o.map) {
            self.add(k, c);
        }
    }
}

/// Counts per address: IPv4 keys as `u32` (4× smaller than an IPv6 key,
/// so the map of a million-entry table stays in cache), IPv6 as [`Addr`].
#[derive(Debug, Clone, Default)]
pub struct AddrCounter {
    v4: Counter<u32>,
    v6: Counter<Addr>,
}

impl AddrCounter {
    #[inline]
    pub fn add(&mut self, a: Addr, n: u32) {
        match a.v4_bits() {
            Some(v4) => self.v4.add(v4, n),
            None => self.v6.add(a, n),
        }
    }
    #[inline]
    pub fn bump(&mut self, a: Addr) {
        self.add(a, 1)
    }
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> impl Iterator<Item = (Addr, u32)> + '_ {
        self.v4
            .iter()
            .map(|(k, c)| (Addr::v4(*k), c))
            .chain(self.v6.iter().map(|(k, c)| (*k, c)))
    }
    pub fn merge(&mut self, o: AddrCounter) {
        self.v4.merge(o.v4);
        self.v6.merge(o.v6);
    }
}

/// Counts per (address, `l4 << 16 | port`): IPv4 pairs packed in a `u64`.
#[derive(Debug, Clone, Default)]
pub struct PairCounter {
    v4: Counter<u64>,
    v6: Counter<(Addr, u32)>,
}

impl PairCounter {
    #[inline]
    pub fn bump(&mut self, a: Addr, pk: u32) {
        match a.v4_bits() {
            Some(v4) => self.v4.add((v4 as u64) << 32 | pk as u64, 1),
            None => self.v6.add((a, pk), 1),
        }
    }
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> impl Iterator<Item = ((Addr, u32), u32)> + '_ {
        self.v4
            .iter()
            .map(|(k, c)| ((Addr::v4((*k >> 32) as u32), *k as u32), c))
            .chain(self.v6.iter().map(|(k, c)| (*k, c)))
    }
    pub fn merge(&mut self, o: PairCounter) {
        self.v4.merge(o.v4);
        self.v6.merge(o.v6);
    }
}
