//! Who fills the table: the sources and destination ports that created the
//! most entries over the last minute, from NEW events (the exporter's
//! tracker feeds the ones it already follows; `top` and `check --sample`
//! subscribe through `host::creators`).
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
//! Pure: the caller feeds events with their time (monotonic milliseconds
//! of its own clock) and asks for the top.
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
const BUCKET_MS: u64 = BUCKET_SECS * 1000;
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
    /// When watching began (ms): the rate's divisor while the window is
    /// not yet full.
    since_ms: u64,
    /// NEW events seen (all of them, not only the top's).
    total: u64,
}

/// The top sources and (protocol, destination port)s.
pub type Top = (Vec<Ranked<IpAddr>>, Vec<Ranked<(u8, u16)>>);

/// A ranked key and its rate over the window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ranked<K> {
    pub key: K,
    /// Entries created per second over the window (an upper bound: see
    /// the module doc).
    pub per_sec: f64,
    /// Of those, at most this many per second may be overestimate.
    pub err_per_sec: f64,
}

impl Creators {
    /// An empty window whose watching began at `since_ms`.
    pub fn since(since_ms: u64) -> Creators {
        Creators {
            since_ms,
            ..Creators::default()
        }
    }

    /// NEW events seen since watching began.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// A NEW entry at `now_ms` (monotonic milliseconds) from `src` to
    /// `proto`/`dport`.
    pub fn add(&mut self, now_ms: u64, src: IpAddr, proto: u8, dport: u16) {
        let slot = now_ms / BUCKET_MS;
        self.total += 1;
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

    /// The top [`TOP_K`] sources and destination ports at `now_ms`, with
    /// rates over the window (or over the time since watching began, when
    /// shorter).
    pub fn top(&self, now_ms: u64) -> Top {
        let slot = now_ms / BUCKET_MS;
        let live: Vec<&Bucket> = self
            .buckets
            .iter()
            .filter(|b| b.slot + (BUCKETS as u64) > slot && b.slot <= slot)
            .collect();
        let window = (BUCKETS as u64 * BUCKET_SECS) as f64;
        // The live slots cover from the oldest one's start to now: 50 to
        // 60 s, or less since watching began.
        let oldest = slot.saturating_sub(BUCKETS as u64 - 1) * BUCKET_MS;
        let covered = now_ms.saturating_sub(oldest.max(self.since_ms));
        let secs = (covered as f64 / 1000.0).clamp(0.1, window);
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
                c.add(t * 1000, ip(1), 6, 80);
            }
            for i in 0..500 {
                c.add(t * 1000, ip(1000 + (t as u32) * 500 + i), 6, 443);
            }
        }
        let (src, dport) = c.top(10_000);
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
            c.add(5_000, ip(7), 17, 53);
        }
        assert_eq!(c.top(30_000).0[0].key, ip(7));
        assert!(c.top(65_000).0.is_empty(), "gone after the window");
        // Memory stays bounded: at most BUCKETS buckets of CAPACITY keys.
        for t in 0..1000u64 {
            for i in 0..300 {
                c.add(t * 1000, ip(i + t as u32 * 300), 6, 1 + (i % 300) as u16);
            }
        }
        assert_eq!(c.total(), 100 + 300_000);
        assert!(c.buckets.len() <= BUCKETS);
        assert!(c.buckets.iter().all(|b| b.src.counts.len() <= CAPACITY));
    }

    #[test]
    fn rates_divide_by_the_time_watched_or_the_window() {
        // Watching began at 100 s; 50 events in the 2 s since: 25/s.
        let mut c = Creators::since(100_000);
        for i in 0..50 {
            c.add(100_000 + i * 40, ip(1), 6, 80);
        }
        assert_eq!(c.top(102_000).0[0].per_sec, 25.0);
        // Events only in the latest bucket, watched for 5 minutes: the
        // divisor is what the live slots cover (50-60 s), not the age of
        // the bucket that happens to hold events.
        let mut c = Creators::since(0);
        for _ in 0..55 {
            c.add(299_000, ip(2), 6, 80);
        }
        let r = c.top(300_000).0[0].per_sec;
        assert_eq!(r, 1.1, "55 events over the 50 s the live slots cover");
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
