//! The aggregator: one pass over [`Entry`]s, bounded by the number of
//! distinct keys (not entries), answering every `summary` question at once:
//! totals; breakdowns by l3, l4, TCP state, flags, zone, mark; exact top-N
//! of sources, destinations, destination ports and (src, dport) /
//! (dst, dport) pairs (a hash map of counts, then a selection); idle-age
//! histograms per state; the share early drop could evict; the sources
//! holding the most long-idle ESTABLISHED entries.
//!
//! Idle age = the state's timeout − the seconds left. An entry whose
//! seconds left exceed its state's timeout (a timeout set via ctnetlink or a
//! timeout policy) has an unknown age: counted as such, never binned; so
//! has every sctp, dccp and gre entry (their per-state timeouts are not read).
//!
//! Counting structures are in `counters`, the filter in `filter`, timeouts in
//! `timeouts` (re-exported here).
//!
//! Not for: reading entries (see `text`, `host::entries`) or printing.

pub use super::counters::{AddrCounter, Counter, FastMap, FxHasher, PairCounter};
use super::entry::{self, Entry, TcpState};
pub use super::filter::{Cidr, Filter};
pub use super::timeouts::{Timeouts, TIMEOUT_NAMES};
use serde::Serialize;

/// Breakdowns `--by` can choose.
pub mod by {
    pub const L3: u32 = 1 << 0;
    pub const L4: u32 = 1 << 1;
    pub const STATE: u32 = 1 << 2;
    pub const FLAGS: u32 = 1 << 3;
    pub const ZONE: u32 = 1 << 4;
    pub const MARK: u32 = 1 << 5;
    pub const SRC: u32 = 1 << 6;
    pub const DST: u32 = 1 << 7;
    pub const DPORT: u32 = 1 << 8;
    pub const SRC_DPORT: u32 = 1 << 9;
    pub const DST_DPORT: u32 = 1 << 10;
    pub const AGE: u32 = 1 << 11;
    pub const IDLE_SRC: u32 = 1 << 12;
    pub const ALL: u32 = (1 << 13) - 1;
    /// Names for `--by`, with their bits.
    pub const NAMES: &[(&str, u32)] = &[
        ("l3", L3),
        ("proto", L4),
        ("state", STATE),
        ("flags", FLAGS),
        ("zone", ZONE),
        ("mark", MARK),
        ("src", SRC),
        ("dst", DST),
        ("dport", DPORT),
        ("src-dport", SRC_DPORT),
        ("dst-dport", DST_DPORT),
        ("age", AGE),
        ("idle-src", IDLE_SRC),
        ("all", ALL),
    ];

    /// `state,src,dport` to bits.
    pub fn parse(s: &str) -> Result<u32, String> {
        let mut bits = 0;
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p = if p == "l4" { "proto" } else { p };
            bits |= NAMES
                .iter()
                .find(|(n, _)| *n == p)
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                    format!("unknown breakdown {p:?} (known: {})", names.join(", "))
                })?;
        }
        Ok(bits)
    }
}

/// Everything that decides what the aggregator computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub filter: Filter,
    pub by: u32,
    pub top: usize,
    pub timeouts: Timeouts,
    /// ESTABLISHED entries idle at least this long count as long-idle.
    pub idle_over: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            filter: Filter::default(),
            by: by::ALL,
            top: 10,
            timeouts: Timeouts::default(),
            idle_over: 300,
        }
    }
}

/// Upper bounds (exclusive, seconds) of the idle-age bins; the last bin
/// is open. 7875 s is TCP keepalive's give-up horizon with Linux defaults.
pub const AGE_BOUNDS: &[u32] = &[10, 30, 60, 120, 300, 600, 1800, 3600, 7875, 86_400];
pub const AGE_BINS: usize = AGE_BOUNDS.len() + 1;

/// Age classes: TCP states 0..10, then udp, icmp (v4 and v6), other.
pub const CLASSES: usize = 13;
const CLASS_UDP: usize = 10;
const CLASS_ICMP: usize = 11;
const CLASS_OTHER: usize = 12;

fn class_of(e: &Entry) -> usize {
    match e.l4 {
        entry::IPPROTO_TCP => e.state as usize,
        entry::IPPROTO_UDP | entry::IPPROTO_UDPLITE => CLASS_UDP,
        entry::IPPROTO_ICMP | entry::IPPROTO_ICMPV6 => CLASS_ICMP,
        _ => CLASS_OTHER,
    }
}

/// The printed name of an age class.
pub fn class_name(i: usize) -> &'static str {
    match i {
        0..=9 => TcpState::from_u8(i as u8).as_str(),
        CLASS_UDP => "udp",
        CLASS_ICMP => "icmp",
        _ => "other",
    }
}

/// The label of an age bin (`<10s`, `10s–30s`, `≥1d`).
pub fn bin_label(i: usize) -> String {
    let f = |s: u32| -> String {
        match s {
            s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
            s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
            s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        }
    };
    if i == 0 {
        format!("<{}", f(AGE_BOUNDS[0]))
    } else if i >= AGE_BOUNDS.len() {
        format!(">={}", f(AGE_BOUNDS[AGE_BOUNDS.len() - 1]))
    } else {
        format!("{}-{}", f(AGE_BOUNDS[i - 1]), f(AGE_BOUNDS[i]))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeHist {
    pub entries: u64,
    pub unknown: u64,
    pub bins: [u64; AGE_BINS],
    pub min: u32,
    pub max: u32,
    pub sum: u64,
}

impl Default for AgeHist {
    fn default() -> Self {
        AgeHist {
            entries: 0,
            unknown: 0,
            bins: [0; AGE_BINS],
            min: u32::MAX,
            max: 0,
            sum: 0,
        }
    }
}

impl AgeHist {
    fn add(&mut self, age: Option<u32>) {
        self.entries += 1;
        match age {
            None => self.unknown += 1,
            Some(a) => {
                let bin = AGE_BOUNDS.partition_point(|b| *b <= a);
                self.bins[bin] += 1;
                self.min = self.min.min(a);
                self.max = self.max.max(a);
                self.sum += a as u64;
            }
        }
    }
    fn merge(&mut self, o: &AgeHist) {
        self.entries += o.entries;
        self.unknown += o.unknown;
        for (a, b) in self.bins.iter_mut().zip(o.bins.iter()) {
            *a += b;
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
    }
}

#[inline]
fn bump<K: std::hash::Hash + Eq + Copy>(m: &mut Counter<K>, k: K) {
    m.bump(k)
}

fn merge_map<K: std::hash::Hash + Eq + Copy>(a: &mut Counter<K>, b: Counter<K>) {
    a.merge(b)
}

/// The running aggregate. Feed entries with [`Agg::push`], combine
/// per-thread aggregates with [`Agg::merge`], then [`Agg::finish`].
#[derive(Debug, Clone)]
pub struct Agg {
    pub cfg: Config,
    /// Entries read, before the filter.
    pub seen: u64,
    /// Entries that passed the filter (everything below counts only these).
    pub total: u64,
    pub l3: [u64; 256],
    pub l4: [u64; 256],
    pub state: [u64; 10],
    pub assured: u64,
    pub unreplied: u64,
    pub offload: u64,
    pub hw_offload: u64,
    pub zone: Counter<u16>,
    pub mark: Counter<u32>,
    pub src: AddrCounter,
    pub dst: AddrCounter,
    /// Key: l4 << 16 | port.
    pub dport: Counter<u32>,
    pub src_dport: PairCounter,
    pub dst_dport: PairCounter,
    pub ages: [AgeHist; CLASSES],
    pub idle_src: AddrCounter,
    pub idle_established: u64,
}

impl Agg {
    pub fn new(cfg: Config) -> Agg {
        Agg {
            cfg,
            seen: 0,
            total: 0,
            l3: [0; 256],
            l4: [0; 256],
            state: [0; 10],
            assured: 0,
            unreplied: 0,
            offload: 0,
            hw_offload: 0,
            zone: Counter::default(),
            mark: Counter::default(),
            src: AddrCounter::default(),
            dst: AddrCounter::default(),
            dport: Counter::default(),
            src_dport: PairCounter::default(),
            dst_dport: PairCounter::default(),
            ages: [AgeHist::default(); CLASSES],
            idle_src: AddrCounter::default(),
            idle_established: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, e: &Entry) {
        self.seen += 1;
        if !self.cfg.filter.matches(e) {
            return;
        }
        self.total += 1;
        let by = self.cfg.by;
        self.l3[e.l3 as usize] += 1;
        self.l4[e.l4 as usize] += 1;
        if e.is_tcp() {
            self.state[e.state as usize] += 1;
        }
        self.assured += e.assured() as u64;
        self.unreplied += e.unreplied() as u64;
        self.offload += (e.flags & entry::flags::OFFLOAD != 0) as u64;
        self.hw_offload += (e.flags & entry::flags::HW_OFFLOAD != 0) as u64;
        if by & by::ZONE != 0 {
            bump(&mut self.zone, e.zone);
        }
        if by & by::MARK != 0 {
            bump(&mut self.mark, e.mark);
        }
        // With the (addr, dport) pairs counted, per-address totals of
        // entries with ports are derived from them in `finish` (one hash
        // operation per entry saved); only port-less entries count here.
        if by & by::SRC != 0 && !(e.has_ports() && by & by::SRC_DPORT != 0) {
            self.src.bump(e.src);
        }
        if by & by::DST != 0 && !(e.has_ports() && by & by::DST_DPORT != 0) {
            self.dst.bump(e.dst);
        }
        if e.has_ports() {
            let pk = (e.l4 as u32) << 16 | e.dport as u32;
            if by & by::DPORT != 0 {
                bump(&mut self.dport, pk);
            }
            if by & by::SRC_DPORT != 0 {
                self.src_dport.bump(e.src, pk);
            }
            if by & by::DST_DPORT != 0 {
                self.dst_dport.bump(e.dst, pk);
            }
        }
        if by & (by::AGE | by::IDLE_SRC) != 0 {
            let age = self.cfg.timeouts.age(e);
            self.ages[class_of(e)].add(age);
            if e.is_tcp() && e.state == TcpState::Established {
                if let Some(a) = age {
                    if a >= self.cfg.idle_over {
                        self.idle_established += 1;
                        if by & by::IDLE_SRC != 0 {
                            self.idle_src.bump(e.src);
                        }
                    }
                }
            }
        }
    }

    pub fn merge(&mut self, o: Agg) {
        self.seen += o.seen;
        self.total += o.total;
        for i in 0..256 {
            self.l3[i] += o.l3[i];
            self.l4[i] += o.l4[i];
        }
        for i in 0..10 {
            self.state[i] += o.state[i];
        }
        self.assured += o.assured;
        self.unreplied += o.unreplied;
        self.offload += o.offload;
        self.hw_offload += o.hw_offload;
        merge_map(&mut self.zone, o.zone);
        merge_map(&mut self.mark, o.mark);
        self.src.merge(o.src);
        self.dst.merge(o.dst);
        merge_map(&mut self.dport, o.dport);
        self.src_dport.merge(o.src_dport);
        self.dst_dport.merge(o.dst_dport);
        for (a, b) in self.ages.iter_mut().zip(o.ages.iter()) {
            a.merge(b);
        }
        self.idle_src.merge(o.idle_src);
        self.idle_established += o.idle_established;
    }

    /// Per-source totals (see `push`: derived from the pairs when counted).
    pub fn src_totals(&self) -> AddrCounter {
        let mut m = self.src.clone();
        if self.cfg.by & by::SRC_DPORT != 0 {
            for ((a, _), c) in self.src_dport.iter() {
                m.add(a, c);
            }
        }
        m
    }

    /// Per-destination totals.
    pub fn dst_totals(&self) -> AddrCounter {
        let mut m = self.dst.clone();
        if self.cfg.by & by::DST_DPORT != 0 {
            for ((a, _), c) in self.dst_dport.iter() {
                m.add(a, c);
            }
        }
        m
    }

    /// Select and sort; the result is plain, serialisable data.
    pub fn finish(&self) -> Summary {
        let total = self.total;
        let by = self.cfg.by;
        let on = |b: u32| by & b != 0;
        let t = self.tops();
        Summary {
            entries_seen: self.seen,
            entries: total,
            filtered: !self.cfg.filter.is_empty(),
            by_l3: on(by::L3).then(|| self.counted(&self.l3, &|i| entry::l3_name(i as u8).into())),
            by_proto: on(by::L4).then(|| {
                self.counted(&self.l4, &|i| {
                    entry::l4_name(i as u8).map_or_else(|| i.to_string(), str::to_string)
                })
            }),
            by_state: on(by::STATE).then(|| {
                self.counted(&self.state, &|i| TcpState::from_u8(i as u8).as_str().into())
            }),
            flags: on(by::FLAGS).then(|| Flags {
                assured: self.row("ASSURED".into(), self.assured),
                unreplied: self.row("UNREPLIED".into(), self.unreplied),
                offload: self.row("OFFLOAD".into(), self.offload),
                hw_offload: self.row("HW_OFFLOAD".into(), self.hw_offload),
            }),
            early_drop_evictable: self.row("not ASSURED".into(), total - self.assured),
            by_zone: t.zone,
            by_mark: t.mark,
            top_src: t.src,
            top_dst: t.dst,
            top_dport: t.dport,
            top_src_dport: t.src_dport,
            top_dst_dport: t.dst_dport,
            idle_age: on(by::AGE).then(|| self.idle_ages()),
            idle_established: on(by::AGE | by::IDLE_SRC).then(|| IdleEstablished {
                over_secs: self.cfg.idle_over,
                entries: self.idle_established,
                top_src: on(by::IDLE_SRC).then(|| {
                    top_of(
                        self.idle_src.iter(),
                        self.cfg.top,
                        |k| k.to_string(),
                        &|k, n| self.row(k, n),
                    )
                }),
            }),
            timeouts: self.cfg.timeouts,
        }
    }

    /// A key, `n` and `n`'s share of the counted entries.
    fn row(&self, key: String, n: u64) -> Count {
        let total = self.total;
        let percent = if total == 0 {
            0.0
        } else {
            (n as f64 * 10_000.0 / total as f64).round() / 100.0
        };
        Count {
            key,
            count: n,
            percent,
        }
    }

    /// The non-zero counts of `arr` (indexed by what `name` names), most first.
    fn counted(&self, arr: &[u64], name: &dyn Fn(usize) -> String) -> Vec<Count> {
        let mut v: Vec<Count> = arr
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| self.row(name(i), *n))
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        v
    }

    /// The top-N tables that were counted (zones: all of them).
    fn tops(&self) -> Tops {
        let by = self.cfg.by;
        let on = |b: u32| by & b != 0;
        let row = |k: String, n: u64| self.row(k, n);
        let n = self.cfg.top;
        Tops {
            zone: on(by::ZONE).then(|| {
                top_of(
                    self.zone.iter().map(|(k, c)| (*k, c)),
                    usize::MAX,
                    |k| k.to_string(),
                    &row,
                )
            }),
            mark: on(by::MARK).then(|| {
                top_of(
                    self.mark.iter().map(|(k, c)| (*k, c)),
                    n,
                    |k| k.to_string(),
                    &row,
                )
            }),
            src: on(by::SRC).then(|| top_of(self.src_totals().iter(), n, |k| k.to_string(), &row)),
            dst: on(by::DST).then(|| top_of(self.dst_totals().iter(), n, |k| k.to_string(), &row)),
            dport: on(by::DPORT).then(|| {
                top_of(
                    self.dport.iter().map(|(k, c)| (*k, c)),
                    n,
                    |k| port_key(*k),
                    &row,
                )
            }),
            src_dport: on(by::SRC_DPORT).then(|| {
                top_of(
                    self.src_dport.iter(),
                    n,
                    |(a, p)| format!("{a} {}", port_key(*p)),
                    &row,
                )
            }),
            dst_dport: on(by::DST_DPORT).then(|| {
                top_of(
                    self.dst_dport.iter(),
                    n,
                    |(a, p)| format!("{a} {}", port_key(*p)),
                    &row,
                )
            }),
        }
    }

    /// The idle age histograms of the state classes that have entries.
    fn idle_ages(&self) -> IdleAges {
        IdleAges {
            bins: (0..AGE_BINS).map(bin_label).collect(),
            classes: (0..CLASSES)
                .filter(|i| self.ages[*i].entries > 0)
                .map(|i| {
                    let h = &self.ages[i];
                    let known = h.entries - h.unknown;
                    AgeRow {
                        class: class_name(i).into(),
                        entries: h.entries,
                        unknown: h.unknown,
                        min_secs: (known > 0).then_some(h.min),
                        max_secs: (known > 0).then_some(h.max),
                        mean_secs: (known > 0).then(|| h.sum / known),
                        bins: h.bins.to_vec(),
                    }
                })
                .collect(),
        }
    }
}

/// The top-N tables of a [`Summary`], each when counted.
struct Tops {
    zone: Option<Top>,
    mark: Option<Top>,
    src: Option<Top>,
    dst: Option<Top>,
    dport: Option<Top>,
    src_dport: Option<Top>,
    dst_dport: Option<Top>,
}

/// A port key (l4 protocol << 16 | port) as `proto/port`.
fn port_key(k: u32) -> String {
    entry::proto_port((k >> 16) as u8, (k & 0xffff) as u16)
}

impl super::text::Sink for Agg {
    fn push(&mut self, e: &Entry) {
        Agg::push(self, e)
    }
    fn merge(&mut self, other: Self) {
        Agg::merge(self, other)
    }
}

/// Exact top `n` of a count map, with the number of distinct keys. Ties
/// are broken by the key's own order (addresses and ports numerically, not
/// as text), so the result does not depend on how parser threads split
/// the input.
fn top_of<K: Ord + Copy>(
    items: impl Iterator<Item = (K, u32)>,
    n: usize,
    name: impl Fn(&K) -> String,
    row: &dyn Fn(String, u64) -> Count,
) -> Top {
    let mut v: Vec<(K, u32)> = items.collect();
    let distinct = v.len() as u64;
    let cmp = |a: &(K, u32), b: &(K, u32)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
    if v.len() > n && n > 0 {
        v.select_nth_unstable_by(n - 1, cmp);
        v.truncate(n);
    }
    v.truncate(n);
    v.sort_by(cmp);
    Top {
        distinct,
        top: v
            .into_iter()
            .map(|(k, c)| row(name(&k), c as u64))
            .collect(),
    }
}

/// A key, its count, and its share of the counted entries (percent, two
/// decimals).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub key: String,
    pub count: u64,
    pub percent: f64,
}

/// The largest keys of a breakdown, and how many distinct keys it had.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Top {
    pub distinct: u64,
    pub top: Vec<Count>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flags {
    pub assured: Count,
    pub unreplied: Count,
    pub offload: Count,
    pub hw_offload: Count,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgeRow {
    /// TCP state name, `udp`, `icmp` or `other`.
    pub class: String,
    pub entries: u64,
    /// Entries whose seconds left exceed the state's timeout.
    pub unknown: u64,
    pub min_secs: Option<u32>,
    pub max_secs: Option<u32>,
    pub mean_secs: Option<u64>,
    /// Counts per bin of [`IdleAges::bins`].
    pub bins: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleAges {
    pub bins: Vec<String>,
    pub classes: Vec<AgeRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleEstablished {
    pub over_secs: u32,
    pub entries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_src: Option<Top>,
}

/// The result of one pass. Field names are stable (docs: `summary --help`
/// and docs/BENCHMARKS.md); breakdowns not asked for with `--by` are absent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub entries_seen: u64,
    pub entries: u64,
    pub filtered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_l3: Option<Vec<Count>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_proto: Option<Vec<Count>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_state: Option<Vec<Count>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<Flags>,
    /// Entries early drop may evict (not ASSURED).
    pub early_drop_evictable: Count,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_zone: Option<Top>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_mark: Option<Top>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_src: Option<Top>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_dst: Option<Top>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_dport: Option<Top>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_src_dport: Option<Top>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_dst_dport: Option<Top>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_age: Option<IdleAges>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_established: Option<IdleEstablished>,
    pub timeouts: Timeouts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::entry::Addr;
    use crate::table::text;

    fn agg_of(text_: &str, cfg: Config) -> Summary {
        let mut a = Agg::new(cfg);
        let st = text::parse_bytes(text_.as_bytes(), &mut a);
        assert_eq!(st.malformed, 0, "{:?}", st.first_malformed);
        a.finish()
    }

    const SMALL: &str = "\
tcp 6 100 TIME_WAIT src=10.0.0.1 dst=10.9.9.9 sport=1000 dport=443 src=10.9.9.9 dst=10.0.0.1 sport=443 dport=1000 [ASSURED] mark=0 use=1
tcp 6 100 TIME_WAIT src=10.0.0.1 dst=10.9.9.9 sport=1001 dport=443 src=10.9.9.9 dst=10.0.0.1 sport=443 dport=1001 [ASSURED] mark=0 use=1
tcp 6 431000 ESTABLISHED src=10.0.0.2 dst=10.9.9.8 sport=1000 dport=80 src=10.9.9.8 dst=10.0.0.2 sport=80 dport=1000 [ASSURED] mark=5 zone=2 use=1
tcp 6 500000 ESTABLISHED src=10.0.0.3 dst=10.9.9.8 sport=1000 dport=80 src=10.9.9.8 dst=10.0.0.3 sport=80 dport=1000 [ASSURED] mark=5 use=1
tcp 6 119 SYN_SENT src=10.0.0.1 dst=10.9.9.9 sport=1002 dport=443 [UNREPLIED] src=10.9.9.9 dst=10.0.0.1 sport=443 dport=1002 mark=0 use=1
udp 17 25 src=10.0.0.4 dst=10.9.9.7 sport=999 dport=53 [UNREPLIED] src=10.9.9.7 dst=10.0.0.4 sport=53 dport=999 mark=0 use=1
icmp 1 29 src=10.0.0.4 dst=10.9.9.7 type=8 code=0 id=7 [UNREPLIED] src=10.9.9.7 dst=10.0.0.4 type=0 code=0 id=7 mark=0 use=1
";

    #[test]
    fn counts_by_hand() {
        let s = agg_of(SMALL, Config::default());
        assert_eq!(s.entries, 7);
        let st = s.by_state.unwrap();
        assert_eq!(
            (st[0].key.as_str(), st[0].count, st[0].percent),
            ("ESTABLISHED", 2, 28.57)
        );
        assert_eq!((st[1].key.as_str(), st[1].count), ("TIME_WAIT", 2));
        let f = s.flags.unwrap();
        assert_eq!((f.assured.count, f.unreplied.count), (4, 3));
        assert_eq!(s.early_drop_evictable.count, 3);
        let src = s.top_src.unwrap();
        assert_eq!(src.distinct, 4);
        assert_eq!((src.top[0].key.as_str(), src.top[0].count), ("10.0.0.1", 3));
        let dp = s.top_dport.unwrap();
        // icmp has no port: 6 entries with ports.
        assert_eq!(dp.distinct, 3);
        assert_eq!((dp.top[0].key.as_str(), dp.top[0].count), ("tcp/443", 3));
        let sd = s.top_src_dport.unwrap();
        assert_eq!(
            (sd.top[0].key.as_str(), sd.top[0].count),
            ("10.0.0.1 tcp/443", 3)
        );
        let zone = s.by_zone.unwrap();
        assert_eq!((zone.top[0].key.as_str(), zone.top[0].count), ("0", 6));
        let mark = s.by_mark.unwrap();
        assert_eq!(mark.top[1].key, "5");
    }

    #[test]
    fn ages_and_unknown() {
        let s = agg_of(SMALL, Config::default());
        let ages = s.idle_age.unwrap();
        let est = ages
            .classes
            .iter()
            .find(|c| c.class == "ESTABLISHED")
            .unwrap();
        // 432000 − 431000 = 1000 s; 500000 > 432000: unknown.
        assert_eq!((est.entries, est.unknown), (2, 1));
        assert_eq!((est.min_secs, est.max_secs), (Some(1000), Some(1000)));
        assert_eq!(est.bins[AGE_BOUNDS.partition_point(|b| *b <= 1000)], 1);
        assert_eq!(ages.bins[6], "10m-30m");
        let tw = ages
            .classes
            .iter()
            .find(|c| c.class == "TIME_WAIT")
            .unwrap();
        assert_eq!((tw.min_secs, tw.bins[1]), (Some(20), 2));
        let udp = ages.classes.iter().find(|c| c.class == "udp").unwrap();
        assert_eq!(udp.min_secs, Some(5));
        let idle = s.idle_established.unwrap();
        assert_eq!(idle.entries, 1);
        assert_eq!(idle.top_src.unwrap().top[0].key, "10.0.0.2");
        // A shorter established timeout makes the same entry younger.
        let cfg = Config {
            timeouts: Timeouts::parse_list("established=431500").unwrap(),
            ..Config::default()
        };
        let s = agg_of(SMALL, cfg);
        assert_eq!(s.idle_established.unwrap().entries, 1);
        let est_max = s.idle_age.unwrap().classes[0].max_secs;
        assert!(est_max.is_some());
    }

    #[test]
    fn filters() {
        let f = |filter: Filter| {
            agg_of(
                SMALL,
                Config {
                    filter,
                    ..Config::default()
                },
            )
            .entries
        };
        assert_eq!(
            f(Filter {
                proto: Some(17),
                ..Filter::default()
            }),
            1
        );
        let tw = 1 << TcpState::TimeWait as u16 | 1 << TcpState::SynSent as u16;
        assert_eq!(
            f(Filter {
                states: tw,
                ..Filter::default()
            }),
            3
        );
        let c = Cidr::parse("10.0.0.0/31").unwrap();
        assert_eq!(
            f(Filter {
                src: Some(c),
                ..Filter::default()
            }),
            3
        );
        let c = Cidr::parse("10.9.9.8").unwrap();
        assert_eq!(
            f(Filter {
                dst: Some(c),
                ..Filter::default()
            }),
            2
        );
        assert_eq!(
            f(Filter {
                port: Some(1000),
                ..Filter::default()
            }),
            3
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(Addr::from_ip("2001:db8:1::5".parse().unwrap())));
        assert!(!Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(Addr::from_ip("2001:db8:1::5".parse().unwrap())));
    }

    #[test]
    fn by_limits_breakdowns_and_top_n_is_exact() {
        let cfg = Config {
            by: by::parse("state,src").unwrap(),
            top: 1,
            ..Config::default()
        };
        let s = agg_of(SMALL, cfg);
        assert!(s.top_dst.is_none() && s.idle_age.is_none());
        assert_eq!(s.top_src.unwrap().top.len(), 1);
        assert!(by::parse("bogus").is_err());
    }
}
