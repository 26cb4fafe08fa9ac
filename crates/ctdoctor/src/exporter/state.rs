//! The table state the exporter keeps per namespace: entries by protocol
//! and state, kept up to date from ctnetlink events and reconciled by
//! paced resync dumps ([`TableState`]), and the plain copy a scrape renders
//! ([`TableView`]). Pure: the sockets and threads are in `track`.
//!
//! Why a map and not just counters: an UPDATE event carries only the new
//! state (not the old one), so moving a count needs each entry's last
//! state. Each entry costs one 8-byte slot ([`IdMap`]): a 48-bit key (the
//! kernel's 32-bit CTA_ID and 16 bits of a hash of the original tuple, so
//! two live entries share a key about once in 500 resyncs at 1M entries)
//! and a 16-bit value ([`val`]: class, ASSURED, and two resync marks).
//!
//! Resync (a dump while events keep flowing), in one line: an entry's last
//! event wins over the dump, the dump wins over what we had, and what
//! neither the dump nor an event confirmed is gone. Events are a complete
//! ordered log for every entry that has them, so the last event seen for an
//! entry after the dump started is its current state whether the dump saw
//! the entry before or after it; an entry destroyed during the dump is kept
//! in a tombstone set so a stale sighting cannot bring it back. Entries
//! created before any listener existed (nf_conntrack_events=2, the
//! default) never send events; only dumps see them: they are counted as
//! `dump_only` until the entry is gone.
//!
//! Not for: I/O (`track`), rendering (`metrics`).

use super::idmap::IdMap;
use crate::table::entry::{
    l4_name, IPPROTO_DCCP, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP,
    IPPROTO_UDP, IPPROTO_UDPLITE,
};
use ctnetlink::consts::IPS_ASSURED;
use std::collections::HashSet;

/// SCTP states as `conntrack -L` prints them (`enum sctp_conntrack`).
const SCTP_STATES: [&str; 10] = [
    "NONE",
    "CLOSED",
    "COOKIE_WAIT",
    "COOKIE_ECHOED",
    "ESTABLISHED",
    "SHUTDOWN_SENT",
    "SHUTDOWN_RECD",
    "SHUTDOWN_ACK_SENT",
    "HEARTBEAT_SENT",
    "HEARTBEAT_ACKED",
];
/// DCCP states as `conntrack -L` prints them (`enum ct_dccp_states`).
const DCCP_STATES: [&str; 10] = [
    "NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING", "TIMEWAIT", "IGNORE",
    "INVALID",
];
/// A state number this table does not know.
pub const UNKNOWN_STATE: &str = "UNKNOWN";

// Class numbers (never 0: a 0 slot is empty).
const TCP0: u8 = 1; // 1..=10 states 0..9, 11 unknown
const UDP: u8 = 12;
const UDPLITE: u8 = 13;
const ICMP: u8 = 14;
const ICMPV6: u8 = 15;
const GRE: u8 = 16;
const OTHER: u8 = 17;
const SCTP0: u8 = 18; // 18..=27, 28 unknown
const DCCP0: u8 = 29; // 29..=38, 39 unknown
/// Number of class slots (index 0 unused).
pub const NCLASS: usize = 40;

/// The protocol group of a class: its first class and how many states.
fn stateful(proto: u8) -> Option<(u8, usize)> {
    match proto {
        IPPROTO_TCP => Some((TCP0, 10)),
        IPPROTO_SCTP => Some((SCTP0, SCTP_STATES.len())),
        IPPROTO_DCCP => Some((DCCP0, DCCP_STATES.len())),
        _ => None,
    }
}

/// The class of an entry: protocol, and state for the protocols that have
/// one (None: this message did not say).
pub fn class_of(proto: u8, state: Option<u8>) -> u8 {
    if let Some((base, n)) = stateful(proto) {
        return match state {
            Some(s) if (s as usize) < n => base + s,
            _ => base + n as u8,
        };
    }
    match proto {
        IPPROTO_UDP => UDP,
        IPPROTO_UDPLITE => UDPLITE,
        IPPROTO_ICMP => ICMP,
        IPPROTO_ICMPV6 => ICMPV6,
        IPPROTO_GRE => GRE,
        _ => OTHER,
    }
}

/// Whether a class is a stateful protocol's "state not known" class.
fn is_unknown_state(class: u8) -> bool {
    [(TCP0, 10u8), (SCTP0, 10), (DCCP0, 10)]
        .iter()
        .any(|(b, n)| class == b + n)
}

/// The same protocol group (for keeping a state an UPDATE did not carry).
fn same_proto(a: u8, b: u8) -> bool {
    let group = |c: u8| match c {
        TCP0..=11 => 1,
        SCTP0..=28 => 2,
        DCCP0..=39 => 3,
        c => c + 10,
    };
    group(a) == group(b)
}

/// `(l4, state)` labels of a class, as `conntrack -L` prints them
/// (`state` is empty for protocols without one).
pub fn class_labels(class: u8) -> (&'static str, &'static str) {
    let name = |p: u8| l4_name(p).unwrap_or("unknown");
    match class {
        TCP0..=11 => (
            "tcp",
            ctnetlink::TcpState::from_u8(class - TCP0)
                .name()
                .filter(|_| class < 11)
                .unwrap_or(UNKNOWN_STATE),
        ),
        UDP => (name(IPPROTO_UDP), ""),
        UDPLITE => (name(IPPROTO_UDPLITE), ""),
        ICMP => (name(IPPROTO_ICMP), ""),
        ICMPV6 => (name(IPPROTO_ICMPV6), ""),
        GRE => (name(IPPROTO_GRE), ""),
        SCTP0..=28 => (
            "sctp",
            SCTP_STATES
                .get((class - SCTP0) as usize)
                .copied()
                .unwrap_or(UNKNOWN_STATE),
        ),
        DCCP0..=39 => (
            "dccp",
            DCCP_STATES
                .get((class - DCCP0) as usize)
                .copied()
                .unwrap_or(UNKNOWN_STATE),
        ),
        _ => ("unknown", ""),
    }
}

/// Value bits of a map slot.
pub mod val {
    /// Bits 0..=5: the class.
    pub const CLASS: u16 = 0x3f;
    /// The entry is ASSURED (early drop never evicts it).
    pub const ASSURED: u16 = 1 << 6;
    /// Confirmed during the resync in progress (by the dump or an event).
    pub const FRESH: u16 = 1 << 7;
    /// Known from a dump only: no event has been seen for it.
    pub const DUMP_ONLY: u16 = 1 << 8;
}

/// What one event or dump message says about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub key: u64,
    pub proto: u8,
    /// The protocol state, when the message carries one (UPDATE events
    /// carry it only when it changed).
    pub state: Option<u8>,
    pub assured: bool,
    /// The original direction's source and destination port: who made
    /// it, to where (`creators`).
    pub src: std::net::IpAddr,
    pub dport: u16,
}

/// The 48-bit key of an entry: CTA_ID and a hash of its original tuple.
pub fn key_of(id: u32, orig: &ctnetlink::Tuple) -> u64 {
    let ip = |a: std::net::IpAddr| -> u128 {
        match a {
            std::net::IpAddr::V4(v) => u32::from(v) as u128 | 1 << 64,
            std::net::IpAddr::V6(v) => u128::from(v),
        }
    };
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    let mut add = |x: u64| {
        h = (h ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    };
    let (s, d) = (ip(orig.src), ip(orig.dst));
    add(s as u64);
    add((s >> 64) as u64);
    add(d as u64);
    add((d >> 64) as u64);
    add((orig.proto as u64) << 48 | (orig.src_port as u64) << 32 | orig.dst_port as u64);
    add((orig.icmp_id as u64) << 16 | (orig.icmp_type as u64) << 8 | orig.icmp_code as u64);
    add(orig.zone.map_or(0x1_0000, |z| z as u64));
    (id as u64) << 16 | (h ^ h >> 32) & 0xffff
}

/// A sighting from a decoded message; None without an id or original
/// tuple (then it cannot be followed). `other_state` is the SCTP/DCCP
/// state byte ([`ctnetlink::Entry::other_proto_state`]).
pub fn sighting(f: &ctnetlink::EntryFields, other_state: Option<u8>) -> Option<Sighting> {
    let orig = f.orig?;
    let id = f.id?;
    let state = match orig.proto {
        IPPROTO_TCP => f.tcp_state.map(|s| s.as_u8()),
        IPPROTO_SCTP | IPPROTO_DCCP => other_state,
        _ => None,
    };
    Some(Sighting {
        key: key_of(id, &orig),
        proto: orig.proto,
        state,
        assured: f.status.0 & IPS_ASSURED != 0,
        src: orig.src,
        dport: orig.dst_port,
    })
}

/// Counts of one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCount {
    pub entries: u64,
    /// Not ASSURED: early drop may evict them when the table is full.
    pub early_droppable: u64,
    pub dump_only: u64,
}

/// Counts by class (index = class number).
pub type Counts = [ClassCount; NCLASS];

/// Why a resync ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The first dump, right after subscribing.
    Start,
    /// `--table-resync` elapsed.
    Periodic,
    /// Events were lost (ENOBUFS).
    Lost,
    /// The per-state sum and the kernel's count disagree beyond
    /// [`TOLERANCE`] (entries that expired without a DESTROY event, e.g.
    /// made before the exporter started).
    Mismatch,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::Start,
        Reason::Periodic,
        Reason::Lost,
        Reason::Mismatch,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Periodic => "periodic",
            Reason::Lost => "lost",
            Reason::Mismatch => "mismatch",
        }
    }
}

/// How far the per-state sum may be from the kernel's count and still be
/// called in sync: 2 % of the count, at least 256 entries (what churn of a
/// few thousand connections per second moves between an event and the
/// count's reading).
pub const TOLERANCE: (u64, u64) = (256, 2);

/// Whether a per-state `sum` agrees with the kernel's `count`.
pub fn agrees(sum: u64, count: u64) -> bool {
    let (floor, pct) = TOLERANCE;
    sum.abs_diff(count) <= floor.max(count * pct / 100)
}

/// The per-state sum of `counts`.
pub fn sum(counts: &Counts) -> u64 {
    counts.iter().map(|c| c.entries).sum()
}

/// Event counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    pub new: u64,
    pub update: u64,
    pub destroy: u64,
    /// ENOBUFS: the kernel dropped events for this socket.
    pub lost: u64,
    /// Messages without an id or original tuple.
    pub undecodable: u64,
}

/// One namespace's table, followed by events and resynced by dumps.
#[derive(Debug)]
pub struct TableState {
    map: IdMap,
    counts: Counts,
    /// During a resync: entries destroyed since it began.
    tombstones: Option<HashSet<u64>>,
    /// Events were lost during the resync in progress.
    tainted: bool,
    /// False from a loss of events until a clean resync completes.
    in_sync: bool,
    pub events: EventCounts,
}

impl Default for TableState {
    fn default() -> Self {
        TableState {
            map: IdMap::new(),
            counts: [ClassCount::default(); NCLASS],
            tombstones: None,
            tainted: false,
            in_sync: false,
            events: EventCounts::default(),
        }
    }
}

impl TableState {
    pub fn new() -> TableState {
        TableState::default()
    }

    fn count(&mut self, v: u16, add: bool) {
        let c = &mut self.counts[(v & val::CLASS) as usize % NCLASS];
        let step = |n: &mut u64| {
            *n = if add {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        step(&mut c.entries);
        if v & val::ASSURED == 0 {
            step(&mut c.early_droppable);
        }
        if v & val::DUMP_ONLY != 0 {
            step(&mut c.dump_only);
        }
    }

    fn put(&mut self, key: u64, v: u16) {
        if let Some(old) = self.map.insert(key, v) {
            self.count(old, false);
        }
        self.count(v, true);
    }

    fn value(s: &Sighting, class: u8) -> u16 {
        class as u16 | if s.assured { val::ASSURED } else { 0 }
    }

    /// A NEW or UPDATE event.
    pub fn upsert(&mut self, s: &Sighting, new: bool) {
        if new {
            self.events.new += 1;
        } else {
            self.events.update += 1;
        }
        let old = self.map.get(s.key);
        let mut class = class_of(s.proto, s.state);
        if let Some(o) = old {
            let oc = (o & val::CLASS) as u8;
            // An UPDATE without the state keeps the state we knew.
            if s.state.is_none() && same_proto(oc, class) && !is_unknown_state(oc) {
                class = oc;
            }
        }
        let mut v = Self::value(s, class);
        if self.tombstones.is_some() {
            v |= val::FRESH;
        }
        self.put(s.key, v);
    }

    /// A DESTROY event.
    pub fn destroy(&mut self, key: u64) {
        self.events.destroy += 1;
        if let Some(old) = self.map.remove(key) {
            self.count(old, false);
        }
        if let Some(t) = &mut self.tombstones {
            t.insert(key & ((1 << super::idmap::KEY_BITS) - 1));
        }
    }

    /// The kernel dropped events (ENOBUFS): counts are wrong until the
    /// next complete resync.
    pub fn lost(&mut self) {
        self.events.lost += 1;
        self.in_sync = false;
        if self.tombstones.is_some() {
            self.tainted = true;
        }
    }

    /// A message that could not be keyed.
    pub fn undecodable(&mut self) {
        self.events.undecodable += 1;
    }

    /// Start a resync: every sighting until [`TableState::end_resync`]
    /// comes from one dump.
    pub fn begin_resync(&mut self) {
        self.tombstones = Some(HashSet::new());
        self.tainted = false;
    }

    /// One entry of the resync dump. `followed`: events follow this
    /// namespace (false in dump-only tracking, where nothing is "dump only").
    pub fn dumped(&mut self, s: &Sighting, followed: bool) {
        let key = s.key & ((1 << super::idmap::KEY_BITS) - 1);
        if self.tombstones.as_ref().is_some_and(|t| t.contains(&key)) {
            return; // destroyed after the dump read it
        }
        let old = self.map.get(key);
        if old.is_some_and(|o| o & val::FRESH != 0) {
            return; // an event since the dump began is newer (or a repeat)
        }
        let mut v = Self::value(s, class_of(s.proto, s.state)) | val::FRESH;
        let dump_only = match old {
            Some(o) => o & val::DUMP_ONLY != 0,
            None => followed,
        };
        if dump_only && followed {
            v |= val::DUMP_ONLY;
        }
        self.put(key, v);
    }

    /// The dump completed: drop what nobody confirmed. Returns whether the
    /// counts are now in sync (no events were lost meanwhile).
    pub fn end_resync(&mut self) -> bool {
        let mut gone: Vec<u16> = Vec::new();
        self.map.retain(|_, v| {
            if v & val::FRESH != 0 {
                Some(v & !val::FRESH)
            } else {
                gone.push(v);
                None
            }
        });
        for v in gone {
            self.count(v, false);
        }
        self.tombstones = None;
        self.in_sync = !self.tainted;
        self.tainted = false;
        self.in_sync
    }

    /// The dump failed: keep what we had (unconfirmed), stay out of sync.
    pub fn abort_resync(&mut self) {
        self.map.retain(|_, v| Some(v & !val::FRESH));
        self.tombstones = None;
        self.tainted = false;
        self.in_sync = false;
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn in_sync(&self) -> bool {
        self.in_sync
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes the map's slots take.
    pub fn map_bytes(&self) -> usize {
        self.map.capacity() * 8
    }

    /// Every followed entry as (key, class, assured) — tests.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u8, bool)> + '_ {
        self.map
            .iter()
            .map(|(k, v)| (k, (v & val::CLASS) as u8, v & val::ASSURED != 0))
    }
}

/// Count one sighting into `c` (dump-only tracking).
pub fn add_to(c: &mut Counts, s: &Sighting) {
    let e = &mut c[class_of(s.proto, s.state) as usize % NCLASS];
    e.entries += 1;
    if !s.assured {
        e.early_droppable += 1;
    }
}

/// How the table is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// ctnetlink events, reconciled by paced dumps.
    Events,
    /// Paced dumps only.
    Dump,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Events => "events",
            Mode::Dump => "dump",
        }
    }
}

/// What a scrape renders of one namespace's table: plain data, copied
/// under the tracker's lock.
#[derive(Debug, Clone, PartialEq)]
pub struct TableView {
    pub mode: Mode,
    /// Counts by class; None until the first dump completed.
    pub counts: Option<Counts>,
    pub events: EventCounts,
    /// Completed resyncs by [`Reason`] (in `Reason::ALL` order).
    pub resyncs: [u64; 4],
    /// Failed resync dumps.
    pub resync_failures: u64,
    /// Seconds since the last completed resync.
    pub resync_age_secs: Option<f64>,
    /// Wall time of the last completed resync dump.
    pub resync_secs: Option<f64>,
    /// False from a loss of events (or a failed dump) until a clean resync.
    pub in_sync: bool,
    /// Why the tracker cannot follow the table (no ctnetlink, no
    /// privilege), when it cannot.
    pub error: Option<String>,
    /// Entries followed and the bytes of their map.
    pub followed: u64,
    pub map_bytes: u64,
    /// The top creators over the last minute (events mode): sources and
    /// (protocol, destination port).
    pub top_sources: Vec<crate::table::creators::Ranked<std::net::IpAddr>>,
    pub top_dports: Vec<crate::table::creators::Ranked<(u8, u16)>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn class_labels_as_conntrack_prints_them() {
        assert_eq!(class_labels(class_of(6, Some(7))), ("tcp", "TIME_WAIT"));
        assert_eq!(class_labels(class_of(6, Some(3))), ("tcp", "ESTABLISHED"));
        assert_eq!(class_labels(class_of(6, Some(0))), ("tcp", "NONE"));
        assert_eq!(class_labels(class_of(6, Some(42))), ("tcp", "UNKNOWN"));
        assert_eq!(class_labels(class_of(6, None)), ("tcp", "UNKNOWN"));
        assert_eq!(class_labels(class_of(17, Some(3))), ("udp", ""));
        assert_eq!(class_labels(class_of(1, None)), ("icmp", ""));
        assert_eq!(class_labels(class_of(58, None)), ("icmpv6", ""));
        assert_eq!(
            class_labels(class_of(132, Some(4))),
            ("sctp", "ESTABLISHED")
        );
        assert_eq!(class_labels(class_of(33, Some(7))), ("dccp", "TIMEWAIT"));
        assert_eq!(class_labels(class_of(47, None)), ("gre", ""));
        assert_eq!(class_labels(class_of(253, None)), ("unknown", ""));
        // Every class fits the value bits and has distinct labels.
        let mut seen = std::collections::HashSet::new();
        for c in 1..NCLASS as u8 {
            assert!(c as u16 & !val::CLASS == 0);
            assert!(seen.insert(class_labels(c)), "{c}");
        }
    }

    fn s(key: u64, state: u8, assured: bool) -> Sighting {
        Sighting {
            key,
            proto: 6,
            state: Some(state),
            assured,
            src: std::net::Ipv4Addr::LOCALHOST.into(),
            dport: 80,
        }
    }

    fn by_label(t: &TableState) -> BTreeMap<(&'static str, &'static str), u64> {
        t.counts()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.entries > 0)
            .map(|(i, c)| (class_labels(i as u8), c.entries))
            .collect()
    }

    #[test]
    fn update_without_state_keeps_it() {
        let mut t = TableState::new();
        t.upsert(&s(1, 1, false), true);
        t.upsert(&s(1, 3, false), false);
        t.upsert(
            &Sighting {
                state: None,
                assured: true,
                ..s(1, 0, true)
            },
            false,
        );
        assert_eq!(by_label(&t), [(("tcp", "ESTABLISHED"), 1)].into());
        assert_eq!(t.counts()[class_of(6, Some(3)) as usize].early_droppable, 0);
        t.destroy(1);
        assert!(by_label(&t).is_empty());
        assert_eq!((t.events.new, t.events.update, t.events.destroy), (1, 2, 1));
    }

    #[test]
    fn resync_rules_by_hand() {
        let mut t = TableState::new();
        t.upsert(&s(1, 3, true), true); // will vanish silently (missed DESTROY)
        t.upsert(&s(2, 3, true), true); // changes during the dump
        t.upsert(&s(3, 3, true), true); // destroyed during the dump
        t.begin_resync();
        t.dumped(&s(2, 3, true), true); // dump read 2 before its update...
        t.upsert(&s(2, 7, true), false); // ...which then arrives
        t.dumped(&s(3, 3, true), true);
        t.destroy(3);
        t.dumped(&s(4, 3, true), true); // silent: created before the listener
        t.upsert(&s(5, 1, false), true); // new during the dump
        t.dumped(&s(5, 1, false), true); // the dump saw it too: the event is as new
        assert!(t.end_resync());
        let got: BTreeMap<u64, u8> = t.entries().map(|(k, c, _)| (k, c)).collect();
        assert_eq!(
            got,
            [
                (2, class_of(6, Some(7))),
                (4, class_of(6, Some(3))),
                (5, class_of(6, Some(1)))
            ]
            .into()
        );
        let c = t.counts();
        assert_eq!(c[class_of(6, Some(3)) as usize].dump_only, 1, "entry 4");
        assert_eq!(
            c[class_of(6, Some(1)) as usize].dump_only,
            0,
            "entry 5 had an event"
        );
        // A stale sighting of 3 after the resync ended is a new dump's business.
        t.lost();
        assert!(!t.in_sync());
        t.begin_resync();
        t.lost();
        assert!(!t.end_resync(), "events lost during the resync");
    }

    /// A kernel: entries with states; some created before the listener
    /// (silent: no events ever). Operations produce events into a queue;
    /// the tracker applies events and the dump's sightings in any
    /// interleaving; when everything queued is applied after a complete
    /// resync, the tracker equals the kernel.
    #[derive(Debug, Clone)]
    enum Op {
        Create(u8, u8, bool),
        Change(u8, u8),
        Destroy(u8),
        /// The dump reads one more entry (in key order).
        DumpStep,
        /// The tracker applies one queued event.
        Apply,
        /// The tracker applies one dump sighting it received.
        ApplyDump,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..24, 0u8..10, any::<bool>()).prop_map(|(k, st, silent)| Op::Create(k, st, silent)),
            3 => (0u8..24, 0u8..10).prop_map(|(k, st)| Op::Change(k, st)),
            2 => (0u8..24).prop_map(Op::Destroy),
            3 => Just(Op::DumpStep),
            4 => Just(Op::Apply),
            3 => Just(Op::ApplyDump),
        ]
    }

    #[derive(Debug)]
    enum Ev {
        Up(Sighting, bool),
        Del(u64),
    }

    proptest! {
        #[test]
        fn converges_to_the_kernel(
            before in proptest::collection::vec((0u8..24, 0u8..10, any::<bool>()), 0..24),
            during in proptest::collection::vec(op(), 0..120),
        ) {
            // kernel: key -> (state, eventful)
            let mut kernel: BTreeMap<u64, (u8, bool)> = BTreeMap::new();
            let mut t = TableState::new();
            let mut queue: std::collections::VecDeque<Ev> = Default::default();
            // Before the exporter: every entry is silent.
            for (k, st, _) in before {
                kernel.insert(k as u64, (st, false));
            }
            // Subscribe, then dump while the kernel keeps changing.
            t.begin_resync();
            let mut cursor: Option<u64> = None; // last key the dump read
            let mut dump_done = false;
            let mut dumped: std::collections::VecDeque<Sighting> = Default::default();
            let mut silent_seen: BTreeMap<u64, u8> = BTreeMap::new();
            let apply = |t: &mut TableState, e: Ev| match e {
                Ev::Up(s, new) => t.upsert(&s, new),
                Ev::Del(k) => t.destroy(k),
            };
            for o in during {
                match o {
                    Op::Create(k, st, silent) => {
                        let k = k as u64;
                        if let std::collections::btree_map::Entry::Vacant(v) = kernel.entry(k) {
                            // After subscribing every new entry is eventful;
                            // `silent` only varies the states.
                            let _ = silent;
                            v.insert((st, true));
                            // A key reused by an eventful entry: its events win.
                            silent_seen.remove(&k);
                            queue.push_back(Ev::Up(s(k, st, false), true));
                        }
                    }
                    Op::Change(k, st) => {
                        if let Some((old, ev)) = kernel.get_mut(&(k as u64)) {
                            *old = st;
                            if *ev {
                                queue.push_back(Ev::Up(s(k as u64, st, false), false));
                            }
                        }
                    }
                    Op::Destroy(k) => {
                        if let Some((_, ev)) = kernel.remove(&(k as u64)) {
                            if ev {
                                queue.push_back(Ev::Del(k as u64));
                            }
                        }
                    }
                    Op::DumpStep if !dump_done => {
                        let next = kernel
                            .range(cursor.map_or(0, |c| c + 1)..)
                            .next()
                            .map(|(k, (st, _))| (*k, *st));
                        match next {
                            Some((k, st)) => {
                                cursor = Some(k);
                                if !kernel[&k].1 {
                                    silent_seen.insert(k, st);
                                }
                                dumped.push_back(s(k, st, false));
                            }
                            None => dump_done = true,
                        }
                    }
                    Op::DumpStep => {}
                    Op::Apply => {
                        if let Some(e) = queue.pop_front() {
                            apply(&mut t, e);
                        }
                    }
                    Op::ApplyDump => {
                        if let Some(d) = dumped.pop_front() {
                            t.dumped(&d, true);
                        }
                    }
                }
            }
            // Finish the dump, apply its sightings, end the resync, drain events.
            while let Some((k, st)) = kernel
                .range(cursor.map_or(0, |c| c + 1)..)
                .next()
                .map(|(k, (st, _))| (*k, *st))
            {
                cursor = Some(k);
                if !kernel[&k].1 {
                    silent_seen.insert(k, st);
                }
                dumped.push_back(s(k, st, false));
            }
            for d in dumped {
                t.dumped(&d, true);
            }
            prop_assert!(t.end_resync());
            for e in queue {
                apply(&mut t, e);
            }
            let got: BTreeMap<u64, u8> = t.entries().map(|(k, c, _)| (k, c)).collect();
            // Eventful entries: as the kernel has them. Silent ones: as the
            // dump saw them (changes and removals after that are the
            // drift a later resync corrects, counted as dump-only).
            let mut want: BTreeMap<u64, u8> = kernel
                .iter()
                .filter(|(_, (_, ev))| *ev)
                .map(|(k, (st, _))| (*k, class_of(6, Some(*st))))
                .collect();
            for (k, st) in &silent_seen {
                want.insert(*k, class_of(6, Some(*st)));
            }
            prop_assert_eq!(&got, &want);
            let total: u64 = t.counts().iter().map(|c| c.entries).sum();
            prop_assert_eq!(total, want.len() as u64);
            let dump_only: u64 = t.counts().iter().map(|c| c.dump_only).sum();
            prop_assert_eq!(dump_only, silent_seen.len() as u64, "silent entries are dump-only");
        }
    }
}
