//! Conntrack statistics of one network namespace: /proc/net/stat/nf_conntrack,
//! parsed by header name, each counter summed over the per-CPU rows except
//! `entries` (the netns total, repeated on every row). Values are hex.
//! Unknown columns are kept by name. What each column is, on which kernels,
//! and its `conntrack -S` name: [`COLUMNS`], the one table `check` and the
//! exporter both read, so neither reports a renamed column under its old
//! name.
//!
//! Headers seen (the kernel matrix, docs/kernels.md; ct_cpu_seq_show in
//! net/netfilter/nf_conntrack_standalone.c):
//! - 5.4: `entries  searched found new invalid ignore delete delete_list
//!   insert insert_failed drop early_drop icmp_error  expect_new
//!   expect_create expect_delete search_restart`;
//! - 5.10 (Debian's 5.10.262): `clashres` where `searched` was, still
//!   `delete_list`;
//! - 6.1 to 7.3: `chainlength` where `delete_list` was.
//!
//! When the file is absent (CONFIG_NF_CONNTRACK_PROCFS off), the same
//! counters come from ctnetlink IPCTNL_MSG_CT_GET_STATS_CPU instead
//! ([`read_ctnetlink`]).
//!
//! Not for: judging the counters (checks::conntrack).

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PATH: &str = "proc/net/stat/nf_conntrack";

/// Where the counters came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatSource {
    /// /proc/net/stat/nf_conntrack.
    Proc,
    /// ctnetlink GET_STATS_CPU (as `conntrack -S`).
    Ctnetlink,
}

/// The counters of one namespace, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub source: StatSource,
    /// Number of per-CPU rows (possible CPUs).
    pub cpus: u32,
    /// The netns's entry count (`entries`, one row's value), if present.
    pub entries: Option<u64>,
    /// Every other column by its /proc header name, summed over CPUs.
    pub counters: BTreeMap<String, u64>,
}

/// What a column says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A live counter.
    Live,
    /// Printed but never counted on the kernels that print it.
    AlwaysZero,
}

/// One column of /proc/net/stat/nf_conntrack.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The /proc header name.
    pub proc: &'static str,
    /// The `conntrack -S` (ctnetlink) name; None when ctnetlink has none.
    pub netlink: Option<&'static str>,
    pub kind: Kind,
    /// Which kernels print it, and what it replaced.
    pub kernels: &'static str,
}

/// Every column a kernel of the matrix printed (docs/kernels.md).
#[rustfmt::skip]
pub const COLUMNS: &[Column] = &[
    Column { proc: "searched", netlink: None, kind: Kind::AlwaysZero,
        kernels: "up to 5.9; replaced by clashres" },
    Column { proc: "clashres", netlink: Some("clash_resolve"), kind: Kind::Live,
        kernels: "5.10+ (seen on 5.10.262): races resolved without a drop" },
    Column { proc: "found", netlink: Some("found"), kind: Kind::Live, kernels: "all" },
    Column { proc: "new", netlink: None, kind: Kind::AlwaysZero, kernels: "all" },
    Column { proc: "invalid", netlink: Some("invalid"), kind: Kind::Live, kernels: "all" },
    Column { proc: "ignore", netlink: None, kind: Kind::AlwaysZero, kernels: "all" },
    Column { proc: "delete", netlink: None, kind: Kind::AlwaysZero, kernels: "all" },
    Column { proc: "delete_list", netlink: None, kind: Kind::AlwaysZero,
        kernels: "up to 5.14 (still on 5.10.262); replaced by chainlength" },
    Column { proc: "chainlength", netlink: Some("chaintoolong"), kind: Kind::Live,
        kernels: "5.15+ (seen from 6.1): inserts refused for a long chain" },
    Column { proc: "insert", netlink: Some("insert"), kind: Kind::Live,
        kernels: "all: ctnetlink inserts only" },
    Column { proc: "insert_failed", netlink: Some("insert_failed"), kind: Kind::Live,
        kernels: "all" },
    Column { proc: "drop", netlink: Some("drop"), kind: Kind::Live, kernels: "all" },
    Column { proc: "early_drop", netlink: Some("early_drop"), kind: Kind::Live,
        kernels: "all" },
    Column { proc: "icmp_error", netlink: Some("error"), kind: Kind::Live, kernels: "all" },
    Column { proc: "expect_new", netlink: None, kind: Kind::Live, kernels: "all" },
    Column { proc: "expect_create", netlink: None, kind: Kind::Live, kernels: "all" },
    Column { proc: "expect_delete", netlink: None, kind: Kind::Live, kernels: "all" },
    Column { proc: "search_restart", netlink: Some("search_restart"), kind: Kind::Live,
        kernels: "all" },
];

/// A column by its /proc name.
pub fn column(proc: &str) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.proc == proc)
}

/// The `conntrack -S` name of a /proc column (its own name when the same
/// or unknown).
pub fn netlink_name(proc: &str) -> &str {
    column(proc).and_then(|c| c.netlink).unwrap_or(proc)
}

/// The /proc column of a `conntrack -S` name (its own name when the same
/// or unknown).
pub fn proc_name(netlink: &str) -> &str {
    COLUMNS
        .iter()
        .find(|c| c.netlink == Some(netlink))
        .map_or(netlink, |c| c.proc)
}

impl Stat {
    /// A counter by /proc column name (None when this kernel has no such column).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }
    /// Packets dropped because tracking failed (table full among them).
    pub fn drop(&self) -> Option<u64> {
        self.get("drop")
    }
    pub fn early_drop(&self) -> Option<u64> {
        self.get("early_drop")
    }
    pub fn insert_failed(&self) -> Option<u64> {
        self.get("insert_failed")
    }
    /// Inserts refused for chain length (5.15+; None on older kernels).
    pub fn chainlength(&self) -> Option<u64> {
        self.get("chainlength")
    }

    /// Build from per-CPU rows named as ctnetlink / `conntrack -S` name
    /// them (the fallback when /proc/net/stat/nf_conntrack is absent).
    pub fn from_ctnetlink_rows(rows: &[BTreeMap<String, u64>]) -> Stat {
        let mut counters = BTreeMap::new();
        for row in rows {
            for (k, v) in row {
                let name = proc_name(k);
                let e = counters.entry(name.to_string()).or_insert(0u64);
                *e = e.saturating_add(*v);
            }
        }
        Stat {
            source: StatSource::Ctnetlink,
            cpus: rows.len().min(u32::MAX as usize) as u32,
            entries: None,
            counters,
        }
    }
}

/// Parse the text of /proc/net/stat/nf_conntrack. Pure.
pub fn parse(text: &str) -> Fact<Stat> {
    let bad = |detail: String| Unavailable::malformed(PATH, detail);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad("empty file".into()))?
        .split_whitespace()
        .collect();
    if header.iter().all(|h| u64::from_str_radix(h, 16).is_ok()) {
        return Err(bad("first line is not a header".into()));
    }
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    for h in &header {
        if *h != "entries" {
            counters.insert((*h).to_string(), 0);
        }
    }
    let mut entries = None;
    let mut cpus = 0u32;
    for (i, line) in lines.enumerate() {
        let vals: Vec<&str> = line.split_whitespace().collect();
        if vals.len() != header.len() {
            return Err(bad(format!(
                "row {} has {} values for {} columns",
                i + 1,
                vals.len(),
                header.len()
            )));
        }
        for (h, v) in header.iter().zip(&vals) {
            let n = u64::from_str_radix(v, 16).map_err(|_| {
                bad(format!(
                    "row {}: {h} = {:?} is not hex",
                    i + 1,
                    super::truncate(v, 20)
                ))
            })?;
            if *h == "entries" {
                entries = Some(n);
            } else if let Some(c) = counters.get_mut(*h) {
                *c = c.saturating_add(n);
            }
        }
        cpus = cpus.saturating_add(1);
    }
    if cpus == 0 {
        return Err(bad("no per-CPU rows".into()));
    }
    Ok(Stat {
        source: StatSource::Proc,
        cpus,
        entries,
        counters,
    })
}

pub fn read(root: &Root) -> Fact<Stat> {
    match root.read_text(PATH) {
        Ok(t) => parse(&t),
        Err(Unavailable::Missing { .. }) => read_ctnetlink(root),
        Err(u) => Err(u),
    }
}

/// Probe key of the ctnetlink fallback in captures.
pub const PROBE_STATS_CPU: &str = "probe:ct_stats_cpu";

/// The same counters through ctnetlink IPCTNL_MSG_CT_GET_STATS_CPU (what
/// `conntrack -S` prints), for kernels built without conntrack procfs
/// support. Recorded as a probe (JSON: one name→value map per CPU) so
/// captures replay it.
pub fn read_ctnetlink(root: &Root) -> Fact<Stat> {
    let bytes = root.probe(PROBE_STATS_CPU, || {
        stats_cpu_live(std::path::Path::new("/"))
    })?;
    let rows: Vec<BTreeMap<String, u64>> = serde_json::from_slice(&bytes)
        .map_err(|e| Unavailable::malformed(PROBE_STATS_CPU, e.to_string()))?;
    Ok(Stat::from_ctnetlink_rows(&rows))
}

/// The live GET_STATS_CPU rows as JSON. `sysroot` is where /proc, /sys
/// and /lib of the machine are (`/` live).
fn stats_cpu_live(sysroot: &std::path::Path) -> Result<Vec<u8>, Unavailable> {
    // Asking a kernel without nf_conntrack_netlink would load it (and
    // nf_conntrack): check never loads a module.
    super::consumers::module_present(sysroot, "nf_conntrack_netlink")?;
    let fail = |e: ctnetlink::Error| Unavailable::Failed {
        what: "ctnetlink GET_STATS_CPU".into(),
        detail: e.to_string(),
    };
    let all = ctnetlink::Socket::open()
        .and_then(|mut s| s.stats_cpu())
        .map_err(fail)?;
    let rows: Vec<BTreeMap<String, u64>> = all
        .cpus
        .iter()
        .map(|c| {
            c.iter()
                .filter_map(|(_, name, v)| Some((name?.to_string(), u64::from(v))))
                .collect()
        })
        .collect();
    Ok(serde_json::to_vec(&rows).expect("rows serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// This VM (6.18), header as the kernel prints it (two spaces included).
    const NEW: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
0000002a  00000001 00000010 00000000 000000ff 00000000 00000000 00000002 00000000 00000003 000001bf 0000000a 00000001  00000000 00000000 00000000 00000004\n\
0000002a  00000002 00000020 00000000 00000001 00000000 00000000 00000001 00000000 00000000 00000001 00000000 00000000  00000000 00000000 00000000 00000000\n";

    /// A 5.4-like kernel: `searched` and `delete_list`.
    const OLD: &str = "entries  searched found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
00000100  00000000 00000005 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000010 00000020 00000000  00000000 00000000 00000000 00000000\n";

    #[test]
    fn new_header_summed_over_cpus() {
        let s = parse(NEW).unwrap();
        assert_eq!(s.cpus, 2);
        assert_eq!(s.entries, Some(42));
        assert_eq!(s.drop(), Some(0x1bf + 1)); // 448
        assert_eq!(s.early_drop(), Some(10));
        assert_eq!(s.insert_failed(), Some(3));
        assert_eq!(s.chainlength(), Some(3));
        assert_eq!(s.get("clashres"), Some(3));
        assert_eq!(s.get("invalid"), Some(256));
        assert_eq!(s.get("found"), Some(48));
        assert_eq!(s.get("search_restart"), Some(4));
        assert_eq!(s.get("searched"), None);
        assert_eq!(s.counters.len(), 16);
    }

    #[test]
    fn the_5_10_header_has_clashres_and_delete_list() {
        // Debian's 5.10.262, byte for byte (docs/kernels.md).
        let s = parse(
            "entries  clashres found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
             00000010  00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000003 00000000 00000000  00000000 00000000 00000000 00000000\n",
        )
        .unwrap();
        assert_eq!(s.get("clashres"), Some(2));
        assert_eq!(s.chainlength(), None, "no chain limit on 5.10");
        assert_eq!(column("delete_list").unwrap().kind, Kind::AlwaysZero);
        assert_eq!((s.insert_failed(), s.drop()), (Some(1), Some(3)));
        // Every column of every header seen is known.
        for h in s.counters.keys() {
            assert!(column(h).is_some(), "{h}");
        }
        assert_eq!(netlink_name("chainlength"), "chaintoolong");
        assert_eq!(proc_name("clash_resolve"), "clashres");
        assert_eq!(proc_name("unknown_new"), "unknown_new");
    }

    #[test]
    fn old_header_by_name() {
        let s = parse(OLD).unwrap();
        assert_eq!(s.entries, Some(256));
        assert_eq!(s.chainlength(), None);
        assert_eq!(s.get("delete_list"), Some(0));
        assert_eq!(s.get("searched"), Some(0));
        assert_eq!(s.drop(), Some(16));
        assert_eq!(s.early_drop(), Some(32));
        assert_eq!(s.insert_failed(), Some(1));
    }

    #[test]
    fn unknown_columns_kept() {
        let s = parse(
            "entries drop future_thing\n00000001 00000002 00000003\n00000001 00000002 00000004\n",
        )
        .unwrap();
        assert_eq!(s.get("future_thing"), Some(7));
        assert_eq!(s.drop(), Some(4));
    }

    #[test]
    fn malformed() {
        assert!(parse("").is_err());
        assert!(parse("entries drop\n").is_err());
        assert!(parse("entries drop\n00000001\n").is_err());
        assert!(parse("entries drop\n00000001 zz\n").is_err());
        assert!(parse("00000001 00000002\n00000001 00000002\n").is_err());
    }

    #[test]
    fn ctnetlink_names_mapped() {
        let row: BTreeMap<String, u64> = [
            ("drop", 5),
            ("clash_resolve", 1),
            ("chaintoolong", 2),
            ("error", 3),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
        let s = Stat::from_ctnetlink_rows(&[row.clone(), row]);
        assert_eq!(s.drop(), Some(10));
        assert_eq!(s.chainlength(), Some(4));
        assert_eq!(s.get("clashres"), Some(2));
        assert_eq!(s.get("icmp_error"), Some(6));
        assert_eq!(s.cpus, 2);
    }

    #[test]
    fn ctnetlink_fallback_never_makes_the_kernel_load_a_module() {
        // A machine that can load modules (it has /proc/modules) where
        // nf_conntrack_netlink is neither loaded nor built in: a
        // GET_STATS_CPU request would make nfnetlink request_module() it
        // (and nf_conntrack with it). `check` is read-only: not asked.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("proc/sys/kernel")).unwrap();
        std::fs::write(
            d.join("proc/modules"),
            "nf_conntrack 184320 0 - Live 0x0\nnfnetlink 20480 0 - Live 0x0\n",
        )
        .unwrap();
        std::fs::write(d.join("proc/sys/kernel/osrelease"), "6.18.0\n").unwrap();
        std::fs::create_dir_all(d.join("lib/modules/6.18.0")).unwrap();
        std::fs::write(
            d.join("lib/modules/6.18.0/modules.builtin"),
            "kernel/net/netfilter/nf_conntrack.ko\n",
        )
        .unwrap();
        assert!(matches!(
            stats_cpu_live(d),
            Err(Unavailable::Missing { .. })
        ));
    }

    #[test]
    fn absent_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::live_at(dir.path().to_path_buf());
        assert!(matches!(read(&root), Err(Unavailable::Missing { .. })));
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&String::from_utf8_lossy(&b));
        }
        #[test]
        fn never_panics_on_hexish(s in "[0-9a-f ]{0,30}(\n[0-9a-fz ]{0,40}){0,4}") {
            let _ = parse(&s);
        }
    }
}
