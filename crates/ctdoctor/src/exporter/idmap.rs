//! [`IdMap`]: the compact conntrack id → state map the event tracker keeps
//! (one `u64` per slot: a 48-bit key and a 16-bit value), so a table of
//! 1M entries costs 16 MiB (2^21 slots at ≤ 75 % load) instead of the
//! ~36 MiB of a `HashMap<u64, u16>` (16-byte buckets plus control bytes),
//! and never both an old and a new copy of that size for long.
//!
//! Open addressing with linear probing and backward-shift deletion (no
//! tombstones, so a long-running map never degrades). A slot of 0 is
//! empty: values are never 0 (the caller's class numbers start at 1).
//!
//! Not for: knowing what keys or values mean (`table`).

/// Keys use the low 48 bits.
pub const KEY_BITS: u32 = 48;
const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
const MIN_CAP: usize = 1024;

/// A map from 48-bit keys to non-zero 16-bit values.
#[derive(Debug, Clone)]
pub struct IdMap {
    slots: Vec<u64>,
    len: usize,
}

impl Default for IdMap {
    fn default() -> Self {
        IdMap::new()
    }
}

#[inline]
fn key_of(slot: u64) -> u64 {
    slot >> 16
}

#[inline]
fn val_of(slot: u64) -> u16 {
    slot as u16
}

/// splitmix64's finaliser: the kernel id is already a hash, but the low
/// bits of our key are a tuple hash folded in, so mix once.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl IdMap {
    pub fn new() -> IdMap {
        IdMap {
            slots: vec![0; MIN_CAP],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots allocated (for memory accounting: 8 bytes each).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (mix(key) as usize) & self.mask()
    }

    /// The slot holding `key`, or the empty slot where it would go.
    #[inline]
    fn find(&self, key: u64) -> (usize, bool) {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return (i, false);
            }
            if key_of(s) == key {
                return (i, true);
            }
            i = (i + 1) & mask;
        }
    }

    pub fn get(&self, key: u64) -> Option<u16> {
        let key = key & KEY_MASK;
        match self.find(key) {
            (i, true) => Some(val_of(self.slots[i])),
            _ => None,
        }
    }

    /// Insert or replace; returns the old value. `val` must not be 0.
    pub fn insert(&mut self, key: u64, val: u16) -> Option<u16> {
        debug_assert!(val != 0, "0 marks an empty slot");
        let key = key & KEY_MASK;
        let slot = key << 16 | val.max(1) as u64;
        match self.find(key) {
            (i, true) => {
                let old = val_of(self.slots[i]);
                self.slots[i] = slot;
                Some(old)
            }
            (i, false) => {
                self.slots[i] = slot;
                self.len += 1;
                if self.len * 4 > self.slots.len() * 3 {
                    self.resize(self.slots.len() * 2);
                }
                None
            }
        }
    }

    /// Remove `key`; returns its value.
    pub fn remove(&mut self, key: u64) -> Option<u16> {
        let key = key & KEY_MASK;
        match self.find(key) {
            (i, true) => {
                let old = val_of(self.slots[i]);
                self.delete_at(i);
                Some(old)
            }
            _ => None,
        }
    }

    /// Empty slot `i`, shifting the rest of its cluster back so every key
    /// stays reachable from its home slot.
    fn delete_at(&mut self, mut i: usize) {
        let mask = self.mask();
        self.slots[i] = 0;
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == 0 {
                return;
            }
            let h = self.home(key_of(s));
            // Move s back to i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !stays {
                self.slots[i] = s;
                self.slots[j] = 0;
                i = j;
            }
        }
    }

    /// Visit every entry once: `f(key, value)` returns the new value, or
    /// None to remove the entry. Afterwards the map shrinks if it is mostly
    /// empty (a table that drained gives its memory back).
    pub fn retain(&mut self, mut f: impl FnMut(u64, u16) -> Option<u16>) {
        if self.len > 0 {
            // Start just after an empty slot: a backward shift then only
            // ever moves entries from slots not yet visited into the one
            // being visited (no cluster wraps past the start).
            let n = self.slots.len();
            let mask = self.mask();
            let start = match self.slots.iter().position(|s| *s == 0) {
                Some(e) => (e + 1) & mask,
                None => 0, // unreachable: load stays ≤ 75 %
            };
            let mut visited = 0;
            let mut i = start;
            while visited < n {
                let s = self.slots[i];
                if s == 0 {
                    i = (i + 1) & mask;
                    visited += 1;
                    continue;
                }
                match f(key_of(s), val_of(s)) {
                    Some(v) => {
                        debug_assert!(v != 0);
                        self.slots[i] = key_of(s) << 16 | v.max(1) as u64;
                        i = (i + 1) & mask;
                        visited += 1;
                    }
                    // Slot i now holds the next entry of the cluster (or
                    // nothing): look at it again without advancing.
                    None => self.delete_at(i),
                }
            }
        }
        let mut cap = self.slots.len();
        while cap > MIN_CAP && self.len * 8 < cap {
            cap /= 2;
        }
        if cap != self.slots.len() {
            self.resize(cap);
        }
    }

    fn resize(&mut self, cap: usize) {
        let old = std::mem::replace(&mut self.slots, vec![0; cap.max(MIN_CAP)]);
        self.len = 0;
        for s in old.into_iter().filter(|s| *s != 0) {
            let (i, _) = self.find(key_of(s));
            self.slots[i] = s;
            self.len += 1;
        }
    }

    /// Every (key, value), in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u16)> + '_ {
        self.slots
            .iter()
            .filter(|s| **s != 0)
            .map(|s| (key_of(*s), val_of(*s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u16),
        Remove(u64),
        /// Remove every key whose value is odd, bump the others.
        Sweep,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys so operations collide; some keys share a home.
        let key = prop_oneof![0u64..64, any::<u64>()];
        prop_oneof![
            6 => (key.clone(), 1u16..).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => key.prop_map(Op::Remove),
            1 => Just(Op::Sweep),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_hashmap(ops in proptest::collection::vec(op(), 0..1500)) {
            let mut m = IdMap::new();
            let mut h: HashMap<u64, u16> = HashMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(m.insert(k, v), h.insert(k & KEY_MASK, v));
                    }
                    Op::Remove(k) => prop_assert_eq!(m.remove(k), h.remove(&(k & KEY_MASK))),
                    Op::Sweep => {
                        let mut seen = 0;
                        m.retain(|_, v| { seen += 1; if v % 2 == 1 { None } else { Some(v.wrapping_add(2).max(2)) } });
                        prop_assert_eq!(seen, h.len(), "each entry visited once");
                        h.retain(|_, v| *v % 2 == 0);
                        for v in h.values_mut() { *v = v.wrapping_add(2).max(2); }
                    }
                }
                prop_assert_eq!(m.len(), h.len());
            }
            for (k, v) in &h {
                prop_assert_eq!(m.get(*k), Some(*v));
            }
            let mut got: Vec<_> = m.iter().collect();
            got.sort_unstable();
            let mut want: Vec<_> = h.into_iter().collect();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn grows_and_gives_memory_back() {
        let mut m = IdMap::new();
        for k in 0..100_000u64 {
            m.insert(k * 7919, 3);
        }
        assert_eq!(m.len(), 100_000);
        assert!(m.capacity() >= 100_000 * 4 / 3 && m.capacity() <= 262_144);
        m.retain(|k, v| (k % 100 == 0).then_some(v));
        assert_eq!(m.len(), 1000);
        assert!(m.capacity() <= 8192, "shrunk to {}", m.capacity());
        for k in 0..100_000u64 {
            assert_eq!(m.get(k * 7919).is_some(), (k * 7919) % 100 == 0);
        }
    }
}
