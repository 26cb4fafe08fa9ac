//! The conntrack table's knobs for one network namespace: count, max,
//! buckets, every timeout, and the per-netns switches (acct, events,
//! timestamp, tcp_loose, tcp_be_liberal, ...). Sources: the files under
//! /proc/sys/net/netfilter (per netns after setns; `nf_conntrack_max` and
//! `nf_conntrack_buckets` are global) and /sys/module/nf_conntrack
//! (hashsize; whether conntrack is a module or built in).
//!
//! Not for: statistics (`stat`), log lines (`kmsg`), or judging anything.

use super::{parse_u64, Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The directory of the per-netns conntrack sysctls.
pub const SYSCTL_DIR: &str = "proc/sys/net/netfilter";
/// The module parameter holding the bucket count (global).
pub const HASHSIZE: &str = "sys/module/nf_conntrack/parameters/hashsize";

/// Conntrack as one namespace sees it. Exists only when
/// `nf_conntrack_count` does (otherwise the whole fact is `Missing`:
/// conntrack is not loaded / not built).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conntrack {
    /// Entries in this netns's table now.
    pub count: u64,
    /// `nf_conntrack_max`: global, compared with each netns's own count.
    pub max: Fact<u64>,
    /// `nf_conntrack_buckets`: the one hash table shared by all netns.
    pub buckets: Fact<u64>,
    /// /sys/module/nf_conntrack/parameters/hashsize (same number as
    /// buckets on current kernels).
    pub hashsize: Fact<u64>,
    /// Whether nf_conntrack is a loadable module (true) or built into the
    /// kernel (false): decides where a persistent hashsize goes
    /// (modprobe.d vs. the kernel command line).
    pub is_module: Fact<bool>,
    /// Every `nf_conntrack_*timeout*` file, by name without the
    /// `nf_conntrack_` prefix (e.g. "tcp_timeout_established"), in
    /// seconds. Unknown (newer) ones are kept.
    pub timeouts: BTreeMap<String, u64>,
    pub acct: Fact<u64>,
    pub events: Fact<u64>,
    pub timestamp: Fact<u64>,
    pub tcp_loose: Fact<u64>,
    pub tcp_be_liberal: Fact<u64>,
    pub tcp_max_retrans: Fact<u64>,
    pub log_invalid: Fact<u64>,
    pub checksum: Fact<u64>,
    pub expect_max: Fact<u64>,
    /// Expectations in this netns now (/proc/net/nf_conntrack_expect lines;
    /// absent without conntrack procfs support).
    #[serde(default = "expect_count_unknown")]
    pub expect_count: Fact<u64>,
}

fn expect_count_unknown() -> Fact<u64> {
    Err(Unavailable::Missing {
        what: EXPECT_PATH.into(),
    })
}

/// This netns's expectation table (one line per expectation).
pub const EXPECT_PATH: &str = "proc/net/nf_conntrack_expect";

impl Conntrack {
    /// One timeout by name (e.g. "tcp_timeout_time_wait").
    pub fn timeout(&self, name: &str) -> Option<u64> {
        self.timeouts.get(name).copied()
    }
}

/// The raw files that make up a [`Conntrack`]: file name (under
/// [`SYSCTL_DIR`], or the keys `hashsize` / `module_refcnt`) to bytes.
pub type Files = BTreeMap<String, Fact<Vec<u8>>>;

/// Build the fact from raw file contents. Pure: no I/O.
pub fn parse(files: &Files) -> Fact<Conntrack> {
    let get = |name: &str| -> Fact<u64> {
        let path = format!("{SYSCTL_DIR}/{name}");
        match files.get(name) {
            Some(Ok(b)) => parse_u64(&path, b),
            Some(Err(u)) => Err(u.clone()),
            None => Err(Unavailable::Missing { what: path }),
        }
    };
    let count = get("nf_conntrack_count")?;
    let mut timeouts = BTreeMap::new();
    for (name, bytes) in files {
        let Some(short) = name.strip_prefix("nf_conntrack_") else {
            continue;
        };
        if !short.contains("timeout") {
            continue;
        }
        if let Ok(b) = bytes {
            if let Ok(v) = parse_u64(name, b) {
                timeouts.insert(short.to_string(), v);
            }
        }
    }
    let hashsize = match files.get("hashsize") {
        Some(Ok(b)) => parse_u64(HASHSIZE, b),
        Some(Err(u)) => Err(u.clone()),
        None => Err(Unavailable::Missing {
            what: HASHSIZE.into(),
        }),
    };
    // /sys/module/X/refcnt exists only for loadable modules; a built-in
    // one has just its parameters directory.
    let is_module = match (files.get("module_refcnt"), &hashsize) {
        (Some(Ok(_)), _) => Ok(true),
        (_, Ok(_)) => Ok(false),
        (_, Err(u)) => Err(u.clone()),
    };
    Ok(Conntrack {
        count,
        max: get("nf_conntrack_max"),
        buckets: get("nf_conntrack_buckets"),
        hashsize,
        is_module,
        timeouts,
        acct: get("nf_conntrack_acct"),
        events: get("nf_conntrack_events"),
        timestamp: get("nf_conntrack_timestamp"),
        tcp_loose: get("nf_conntrack_tcp_loose"),
        tcp_be_liberal: get("nf_conntrack_tcp_be_liberal"),
        tcp_max_retrans: get("nf_conntrack_tcp_max_retrans"),
        log_invalid: get("nf_conntrack_log_invalid"),
        checksum: get("nf_conntrack_checksum"),
        expect_max: get("nf_conntrack_expect_max"),
        expect_count: match files.get("expect") {
            Some(Ok(b)) => Ok(b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count() as u64),
            Some(Err(u)) => Err(u.clone()),
            None => expect_count_unknown(),
        },
    })
}

/// The fixed files read besides the timeouts.
const KNOBS: &[&str] = &[
    "nf_conntrack_count",
    "nf_conntrack_max",
    "nf_conntrack_buckets",
    "nf_conntrack_acct",
    "nf_conntrack_events",
    "nf_conntrack_timestamp",
    "nf_conntrack_tcp_loose",
    "nf_conntrack_tcp_be_liberal",
    "nf_conntrack_tcp_max_retrans",
    "nf_conntrack_log_invalid",
    "nf_conntrack_checksum",
    "nf_conntrack_expect_max",
];

pub fn read(root: &Root) -> Fact<Conntrack> {
    let mut files = Files::new();
    let count_path = format!("{SYSCTL_DIR}/nf_conntrack_count");
    let count = root.read(&count_path);
    if let Err(u) = &count {
        // No count file: no conntrack here at all. Say so once.
        return Err(match u {
            Unavailable::Missing { .. } => Unavailable::Missing {
                what: format!("{count_path} (conntrack not loaded or not built)"),
            },
            other => other.clone(),
        });
    }
    files.insert("nf_conntrack_count".into(), count);
    for k in &KNOBS[1..] {
        files.insert((*k).to_string(), root.read(&format!("{SYSCTL_DIR}/{k}")));
    }
    if let Ok(names) = root.list_dir(SYSCTL_DIR) {
        for n in names {
            if n.starts_with("nf_conntrack_") && n.contains("timeout") {
                let r = root.read(&format!("{SYSCTL_DIR}/{n}"));
                files.insert(n, r);
            }
        }
    }
    files.insert("hashsize".into(), root.read(HASHSIZE));
    files.insert("expect".into(), root.read(EXPECT_PATH));
    files.insert(
        "module_refcnt".into(),
        root.read("sys/module/nf_conntrack/refcnt"),
    );
    parse(&files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Ok(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn this_vm_defaults() {
        let f = files(&[
            ("nf_conntrack_count", "17\n"),
            ("nf_conntrack_max", "262144\n"),
            ("nf_conntrack_buckets", "262144\n"),
            ("nf_conntrack_tcp_timeout_established", "432000\n"),
            ("nf_conntrack_tcp_timeout_time_wait", "120\n"),
            ("nf_conntrack_frag6_timeout", "60\n"),
            ("nf_conntrack_gre_timeout_stream", "180\n"),
            ("nf_conntrack_tcp_loose", "1\n"),
            ("nf_conntrack_frag6_high_thresh", "4194304\n"),
            ("hashsize", "262144\n"),
        ]);
        let c = parse(&f).unwrap();
        assert_eq!(c.count, 17);
        assert_eq!(c.max, Ok(262_144));
        assert_eq!(c.buckets, Ok(262_144));
        assert_eq!(c.hashsize, Ok(262_144));
        assert_eq!(c.is_module, Ok(false));
        assert_eq!(c.tcp_loose, Ok(1));
        assert_eq!(c.timeout("tcp_timeout_established"), Some(432_000));
        assert_eq!(c.timeout("gre_timeout_stream"), Some(180));
        assert_eq!(c.timeouts.len(), 4);
        assert!(matches!(c.acct, Err(Unavailable::Missing { .. })));
    }

    #[test]
    fn no_count_means_no_conntrack() {
        let f = files(&[("nf_conntrack_max", "65536")]);
        assert!(matches!(parse(&f), Err(Unavailable::Missing { .. })));
        let f = files(&[("nf_conntrack_count", "lots")]);
        assert!(matches!(parse(&f), Err(Unavailable::Malformed { .. })));
    }

    #[test]
    fn module_detected_by_refcnt() {
        let f = files(&[
            ("nf_conntrack_count", "0"),
            ("hashsize", "16384"),
            ("module_refcnt", "3"),
        ]);
        assert_eq!(parse(&f).unwrap().is_module, Ok(true));
    }

    #[test]
    fn missing_tree_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::live_at(dir.path().to_path_buf());
        assert!(matches!(read(&root), Err(Unavailable::Missing { .. })));
    }

    proptest! {
        #[test]
        fn never_panics(a in proptest::collection::vec(any::<u8>(), 0..40),
                        b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut f = Files::new();
            f.insert("nf_conntrack_count".into(), Ok(a.clone()));
            f.insert("nf_conntrack_max".into(), Ok(b.clone()));
            f.insert("nf_conntrack_tcp_timeout_x".into(), Ok(b));
            f.insert("hashsize".into(), Ok(a));
            let _ = parse(&f);
        }
    }
}
