//! Who fills the table: the sources and destination ports that created the
//! most entries over the last minute, from the NEW events the tracker
//! already follows (no extra socket, no dump).
//!
//! Bounded by construction, whatever the traffic: the window is
//! [`BUCKETS`] buckets of [`BUCKET_SECS`] s, each a Space-Saving summary
//! (Metwally et al. 2005) of at most [`CAPACITY`] keys. A key that is not
//! tracked replaces the smallest one and inherits its count, so a count is
//! never below the truth and exceeds it by at most the bucket's events /
//! [`CAPACITY`] (the summary keeps that bound as each key's `err`); a
//! source making more than 1/[`CAPACITY`] of the events is never missed.
//! The top [`TOP_K`] keys of the merged window are exported; a key that
//! leaves the top leaves the series set. Memory: 2 × 6 × 256 keys per
//! namespace (~60 KB); an event costs a hash lookup, plus a scan of 256
//! counts when a new key displaces the smallest.
//!
//! Pure: the caller feeds events with their time and asks for the top.
//!
//! Not for: namespaces ranked by creation (that is PromQL over
//! `ctdoctor_conntrack_events_total{type="new"}`), or reading events.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// Buckets in the window.
pub const BUCKETS: usize = 6;
/// Seconds per bucket: the window is BUCKETS × BUCKET_SECS = 60 s.
pub const BUCKET_SECS: u64 = 10;
/// Keys a bucket's summary holds.
pub const CAPACITY: usize = 256;
/// Keys exported per namespace and family.
pub const TOP_K: usize = 20;

/// A Space-Saving summary: key → (count, overestimate bound).
#[derive(Debug, Clone)]
pub struct Summary<K> {
    counts: HashMap<K, (u64, u64)>,
    total: u64,
}

impl<K: Hash + Eq + Clone> Default for Summary<K> {
    fn default() -> Self {
        Summary {
            counts: HashMap::with_capacity(CAPACITY),
            total: 0,
        }
    }
}

impl<K: Hash + Eq + Clone> Summary<K> {
    pub fn add(&mut self, k: &K) {
        self.total += 1;
        if let Some(c) = self.counts.get_mut(k) {
            c.0 += 1;
            return;
        }
        if self.counts.len() < CAPACITY {
            self.counts.insert(k.clone(), (1, 0));
            return;
        }
        // Displace the smallest: the newcomer inherits its count as error.
        let (min_k, min_c) = self
            .counts
            .iter()
            .min_by_key(|(_, (c, _))| *c)
            .map(|(k, (c, _))| (k.clone(), *c))
            .expect("a full summary has keys");
        self.counts.remove(&min_k);
        self.counts.insert(k.clone(), (min_c + 1, min_c));
    }
}

/// One bucket: sources and (protocol, destination port).
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Which 10-s slot (time / BUCKET_SECS) it holds.
    slot: u64,
    src: Summary<IpAddr>,
    dport: Summary<(u8, u16)>,
}

/// One namespace's window.
#[derive(Debug, Clone, Default)]
pub struct Creators {
    buckets: Vec<Bucket>,
    /// When the first event was seen (seconds), for the rate's divisor
    /// while the window is not yet full.
    first: Option<u64>,
}

/// The top sources and (protocol, destination port)s.
pub type Top = (Vec<Ranked<IpAddr>>, Vec<Ranked<(u8, u16)>>);

/// A ranked key and its rate over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked<K> {
    pub key: K,
    /// Entries created per second over the window (an upper bound: see
    /// the module doc).
    pub per_sec: f64,
    /// Of those, at most this many per second may be overestimate.
    pub err_per_sec: f64,
}

impl Creators {
    /// A NEW entry at `now_secs` (monotonic seconds) from `src` to
    /// `proto`/`dport`.
    pub fn add(&mut self, now_secs: u64, src: IpAddr, proto: u8, dport: u16) {
        let slot = now_secs / BUCKET_SECS;
        self.first.get_or_insert(now_secs);
        let b = match self.buckets.iter().position(|b| b.slot == slot) {
            Some(i) => &mut self.buckets[i],
            None => {
                self.buckets
                    .retain(|b| b.slot + (BUCKETS as u64) > slot && b.slot <= slot);
                if self.buckets.len() >= BUCKETS {
                    // Clock went back: start over rather than grow.
                    self.buckets.clear();
                }
                self.buckets.push(Bucket {
                    slot,
                    ..Bucket::default()
                });
                self.buckets.last_mut().expect("just pushed")
            }
        };
        b.src.add(&src);
        b.dport.add(&(proto, dport));
    }

    /// The top [`TOP_K`] sources and destination ports at `now_secs`.
    pub fn top(&self, now_secs: u64) -> Top {
        let slot = now_secs / BUCKET_SECS;
        let live: Vec<&Bucket> = self
            .buckets
            .iter()
            .filter(|b| b.slot + (BUCKETS as u64) > slot && b.slot <= slot)
            .collect();
        let window = (BUCKETS as u64 * BUCKET_SECS) as f64;
        let age = self.first.map_or(0, |f| now_secs.saturating_sub(f) + 1) as f64;
        let secs = age.clamp(1.0, window);
        (
            rank(live.iter().map(|b| &b.src), secs),
            rank(live.iter().map(|b| &b.dport), secs),
        )
    }
}

/// Merge summaries and take the top [`TOP_K`] by count, rates over `secs`.
fn rank<'a, K: Hash + Eq + Clone + Ord + 'a>(
    sums: impl Iterator<Item = &'a Summary<K>>,
    secs: f64,
) -> Vec<Ranked<K>> {
    let mut all: HashMap<K, (u64, u64)> = HashMap::new();
    for s in sums {
        for (k, (c, e)) in &s.counts {
            let a = all.entry(k.clone()).or_insert((0, 0));
            a.0 += c;
            a.1 += e;
        }
    }
    let mut v: Vec<(K, (u64, u64))> = all.into_iter().collect();
    v.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
    v.truncate(TOP_K);
    v.into_iter()
        .map(|(key, (c, e))| Ranked {
            key,
            per_sec: c as f64 / secs,
            err_per_sec: e as f64 / secs,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn a_heavy_source_among_many_is_first_and_exact_enough() {
        let mut c = Creators::default();
        // 10 s: one source makes 1,000/s, 5,000 others one each.
        for t in 0..10u64 {
            for _ in 0..1000 {
                c.add(t, ip(1), 6, 80);
            }
            for i in 0..500 {
                c.add(t, ip(1000 + (t as u32) * 500 + i), 6, 443);
            }
        }
        let (src, dport) = c.top(9);
        assert_eq!(src[0].key, ip(1));
        // 10,000 in 10 s; the overestimate is bounded by the summary.
        assert!(src[0].per_sec >= 1000.0 && src[0].per_sec - src[0].err_per_sec <= 1000.0);
        assert_eq!(dport[0].key, (6, 80));
        assert!(src.len() <= TOP_K && dport.len() == 2);
    }

    #[test]
    fn the_window_forgets_after_a_minute() {
        let mut c = Creators::default();
        for _ in 0..100 {
            c.add(5, ip(7), 17, 53);
        }
        assert_eq!(c.top(30).0[0].key, ip(7));
        assert!(c.top(5 + 60).0.is_empty(), "gone after the window");
        // Memory stays bounded: at most BUCKETS buckets of CAPACITY keys.
        for t in 0..1000u64 {
            for i in 0..300 {
                c.add(t, ip(i + t as u32 * 300), 6, 1 + (i % 300) as u16);
            }
        }
        assert!(c.buckets.len() <= BUCKETS);
        assert!(c.buckets.iter().all(|b| b.src.counts.len() <= CAPACITY));
    }

    #[test]
    fn space_saving_never_undercounts() {
        let mut s: Summary<u32> = Summary::default();
        let mut truth: HashMap<u32, u64> = HashMap::new();
        let mut x: u64 = 12345;
        for _ in 0..50_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Skewed: small keys far more often.
            let k = ((x >> 33) % 1000) as u32 % (1 + ((x >> 50) % 1000) as u32);
            s.add(&k);
            *truth.entry(k).or_default() += 1;
        }
        let bound = s.total / CAPACITY as u64;
        for (k, (c, e)) in &s.counts {
            let t = truth[k];
            assert!(*c >= t && c - t <= *e && *e <= bound, "{k}: {c} {e} {t}");
        }
    }
}
