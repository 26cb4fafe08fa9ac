//! Reading a whole [`Facts`]: the explicit table of sources ([`SOURCES`]),
//! which of them a caller wants ([`Select`]), and the live collection of one
//! or many namespaces at the same instants ([`collect`]).
//!
//! Each source is read on its own, timed, and recorded as a
//! [`SourceStatus`]; one that fails never fails the others. Within one
//! instant every path is read once, and machine-wide paths (kernel log,
//! meminfo, slabinfo, config files, module state) once for all namespaces:
//! the namespaces of an instant share one [`InstantCache`].
//!
//! Not for: parsing a source (each has its module) or judging (checks).

use super::capture::InstantCache;
use super::fact::{Facts, Snapshot, SourceStatus};
use super::netns::Target;
use super::{Capture, Fact, Root, Unavailable};
use std::path::Path;
use std::time::{Duration, Instant};

/// One source of facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Netns,
    System,
    Conntrack,
    Stat,
    Kmsg,
    Persist,
    Consumers,
    Sockets,
    Fds,
    Nic,
    Table,
    Nginx,
}

/// A source's entry in [`SOURCES`].
#[derive(Debug, Clone, Copy)]
pub struct SourceDef {
    pub source: Source,
    /// Stable name (`sources[].name` in JSON reports, `source` label in metrics).
    pub name: &'static str,
    /// What it reads, in a few words.
    pub reads: &'static str,
    /// A counter source: read again for the earlier reading of `--sample`.
    pub counters: bool,
}

/// Every source, in reading order. Explicit, like the rule table: this is
/// the table of contents of what ctdoctor reads.
pub const SOURCES: &[SourceDef] = &[
    SourceDef {
        source: Source::Netns,
        name: "netns",
        reads: "the namespace's identity (nsfs inode, name, pin time)",
        counters: true,
    },
    SourceDef {
        source: Source::System,
        name: "system",
        reads: "kernel version, RAM, uptime, boot time, nf_conntrack slab",
        counters: false,
    },
    SourceDef {
        source: Source::Conntrack,
        name: "conntrack",
        reads: "count, max, buckets, timeouts and switches (/proc/sys/net/netfilter)",
        counters: true,
    },
    SourceDef {
        source: Source::Stat,
        name: "stat",
        reads: "conntrack statistics per CPU (/proc/net/stat/nf_conntrack or ctnetlink)",
        counters: true,
    },
    SourceDef {
        source: Source::Kmsg,
        name: "kmsg",
        reads: "kernel log lines: table full, SYN flooding, expectation table, TIME_WAIT overflow",
        counters: false,
    },
    SourceDef {
        source: Source::Persist,
        name: "persist",
        reads:
            "what boot sets: sysctl.d, sysctl.conf, modprobe.d, kernel command line, modules-load.d",
        counters: false,
    },
    SourceDef {
        source: Source::Consumers,
        name: "consumers",
        reads: "who uses conntrack: nft/iptables rules, modules, container interfaces",
        counters: false,
    },
    SourceDef {
        source: Source::Sockets,
        name: "sockets",
        reads:
            "sockstat, netstat, softnet_stat, socket sysctls, sock_diag destinations and listeners",
        counters: true,
    },
    SourceDef {
        source: Source::Fds,
        name: "fds",
        reads: "fs.file-nr, fs.file-max, fs.nr_open, processes nearest their fd limit",
        counters: false,
    },
    SourceDef {
        source: Source::Nic,
        name: "nic",
        reads: "interface counters (/proc/net/dev, rtnetlink, ethtool statistics)",
        counters: true,
    },
    SourceDef {
        source: Source::Table,
        name: "table",
        reads:
            "the table's state mix, from one ctnetlink dump (up to 100,000 entries unless --deep)",
        counters: false,
    },
    SourceDef {
        source: Source::Nginx,
        name: "nginx",
        reads: "the error logs of nginx masters in the netns: a bounded tail, counted by errno",
        counters: false,
    },
];

/// The definition of one source.
pub fn def(s: Source) -> &'static SourceDef {
    SOURCES
        .iter()
        .find(|d| d.source == s)
        .unwrap_or(&SOURCES[0])
}

/// Which sources to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Select(u32);

impl Select {
    /// Every source.
    pub const ALL: Select = Select(u32::MAX);

    fn bit(s: Source) -> u32 {
        1 << (s as u32)
    }

    /// The counter sources only (the earlier reading of `--sample`).
    pub fn counters() -> Select {
        Select(
            SOURCES
                .iter()
                .filter(|d| d.counters)
                .fold(0, |m, d| m | Select::bit(d.source)),
        )
    }

    /// This selection without `s`.
    pub fn without(self, s: Source) -> Select {
        Select(self.0 & !Select::bit(s))
    }

    pub fn contains(self, s: Source) -> bool {
        self.0 & Select::bit(s) != 0
    }
}

impl Default for Select {
    fn default() -> Self {
        Select::ALL
    }
}

/// Read one source if selected, timing it.
fn timed<T>(
    sel: Select,
    s: Source,
    status: &mut Vec<SourceStatus>,
    read: impl FnOnce() -> Fact<T>,
) -> Fact<T> {
    let name = def(s).name;
    if !sel.contains(s) {
        status.push(SourceStatus {
            name: name.into(),
            ok: false,
            duration_us: 0,
            error: Some("not selected".into()),
        });
        return Err(Unavailable::NotSelected { what: name.into() });
    }
    let t = Instant::now();
    let r = read();
    status.push(SourceStatus {
        name: name.into(),
        ok: r.is_ok(),
        duration_us: u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
        error: r.as_ref().err().map(|u| u.to_string()),
    });
    r
}

/// Read every selected source through `root`. Never fails: each source
/// that cannot be read is an `Err(Unavailable)` in its field.
pub fn read_facts_with(root: &Root, sel: Select) -> Facts {
    let mut st = Vec::with_capacity(SOURCES.len());
    let netns = timed(sel, Source::Netns, &mut st, || super::netns::read_id(root));
    let system = timed(sel, Source::System, &mut st, || super::system::read(root));
    let conntrack = timed(sel, Source::Conntrack, &mut st, || {
        super::conntrack::read(root)
    });
    let stat = timed(sel, Source::Stat, &mut st, || super::stat::read(root));
    let kmsg = timed(sel, Source::Kmsg, &mut st, || super::kmsg::read(root));
    let persist = timed(sel, Source::Persist, &mut st, || super::persist::read(root));
    let consumers = timed(sel, Source::Consumers, &mut st, || {
        super::consumers::read(root)
    });
    // Its point is the rulesets: with none read, the source is down
    // (`ctdoctor_source_up{source="consumers"} 0`), whatever else it read.
    if let (Ok(c), Some(s)) = (&consumers, st.last_mut()) {
        if let Some(why) = c.rulesets_unread() {
            s.ok = false;
            s.error = Some(why);
        }
    }
    let sockets = timed(sel, Source::Sockets, &mut st, || super::sockets::read(root));
    let fds = timed(sel, Source::Fds, &mut st, || super::fds::read(root));
    let nic = timed(sel, Source::Nic, &mut st, || super::nic::read(root));
    let timeouts = super::fact::timeouts_of(&conntrack);
    let recent_full = match (&kmsg, &system) {
        (Ok(k), Ok(s)) => s.uptime_secs.as_ref().is_ok_and(|&up| {
            let inode = netns.as_ref().ok().and_then(|n| n.inode);
            super::mix::recent_table_full(k, inode, up)
        }),
        _ => false,
    };
    let table = timed(sel, Source::Table, &mut st, || {
        super::mix::read(root, timeouts, recent_full)
    });
    let nginx = timed(sel, Source::Nginx, &mut st, || super::nginx::read(root));
    let creators = if sel.contains(Source::Table) {
        super::creators::read(root)
    } else {
        Err(Unavailable::NotSelected {
            what: super::creators::PROBE.into(),
        })
    };
    let drops = if sel.contains(Source::Table) {
        super::drops::read(root)
    } else {
        Err(Unavailable::NotSelected {
            what: super::drops::PROBE.into(),
        })
    };
    Facts {
        elapsed_ms: root.elapsed_ms(),
        netns,
        system,
        conntrack,
        stat,
        kmsg,
        persist,
        consumers,
        sockets,
        fds,
        nic,
        table,
        nginx,
        creators,
        drops,
        sources: st,
    }
}

/// Every source through `root` (fixture trees, captures, tests).
pub fn read_facts(root: &Root) -> Facts {
    read_facts_with(root, Select::ALL)
}

/// How [`collect`] reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Collect {
    /// Read the counters first, then everything this far apart, for rates.
    pub sample: Option<Duration>,
    /// Also return the captures (for a snapshot file).
    pub record: bool,
    /// Allow expensive reads (dumping a table of any size).
    pub deep: bool,
    /// The sources of the (last) full reading.
    pub select: Select,
}

/// One namespace's result of [`collect`].
pub struct Collected {
    pub snapshot: Snapshot,
    /// One capture per reading (earlier first), when recording.
    pub captures: Vec<Capture>,
}

/// Read every target's namespace from the live machine under `prefix`
/// (normally `/`). With a sample, every namespace's counters are read at
/// one instant, then — `sample` later — everything of every namespace:
/// the namespaces' readings share their instants (and the machine-wide
/// reads of each instant). A namespace that cannot be entered is an error
/// in its slot; the others are read.
pub fn collect(
    prefix: &Path,
    targets: &[Target],
    opts: &Collect,
) -> Vec<anyhow::Result<Collected>> {
    let start = Instant::now();
    let init_inode = super::netns::init_inode();
    let live_root = super::netns::has_real_proc(prefix);
    let read_all = |sel: Select,
                    creators: Vec<Option<Result<Vec<u8>, Unavailable>>>,
                    drops: Option<Result<Vec<u8>, Unavailable>>|
     -> Vec<anyhow::Result<(Facts, Option<Capture>)>> {
        let cache = InstantCache::default();
        targets
            .iter()
            .zip(creators)
            .map(|(t, created)| {
                let elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                super::netns::run_in(t, || {
                    let mut root = Root::live_at(prefix.to_path_buf())
                        .deep(opts.deep)
                        .sharing(&cache);
                    if opts.record {
                        root = root.recording(elapsed_ms);
                    }
                    if let Some(c) = created {
                        root = root.seeded(super::creators::PROBE, c);
                    }
                    if let Some(d) = &drops {
                        root = root.seeded(super::drops::PROBE, d.clone());
                    }
                    let mut facts = read_facts_with(&root, sel);
                    facts.elapsed_ms = elapsed_ms;
                    (facts, root.take_capture())
                })
                .map_err(anyhow::Error::from)
            })
            .collect()
    };
    let none = || targets.iter().map(|_| None).collect::<Vec<_>>();
    // With a sample, who creates entries is watched over its window, and
    // dropped packets are counted by reason (one census: it is
    // machine-wide; its netfilter drops explained by these targets).
    let mut created = none();
    let mut dropped = None;
    let earlier = opts.sample.map(|d| {
        let watch = live_root && opts.select.contains(Source::Table);
        let watches: Vec<_> = match watch {
            true => targets
                .iter()
                .map(|t| Some(super::creators::Watch::start(t)))
                .collect(),
            false => targets.iter().map(|_| None).collect(),
        };
        let mut census = watch.then(|| {
            let watched = targets.iter().map(super::drops::watched).collect();
            super::drops::Session::start(watched)
        });
        let first = read_all(Select::counters(), none(), None);
        let end = Instant::now() + d;
        while Instant::now() < end {
            std::thread::sleep(
                super::tracefs::POLL.min(end.saturating_duration_since(Instant::now())),
            );
            if let Some(Ok(s)) = &mut census {
                s.poll();
            }
        }
        created = watches
            .into_iter()
            .map(|w| w.map(|w| super::creators::encode(&w.and_then(|w| w.finish()))))
            .collect();
        dropped = census.map(|c| super::drops::encode(&c.map(|s| s.finish())));
        first
    });
    let now = read_all(opts.select, created, dropped);
    let mut earlier = earlier.map(|v| v.into_iter());
    now.into_iter()
        .zip(targets)
        .map(|(now, target)| {
            let before = earlier.as_mut().and_then(|e| e.next());
            let (now, now_cap) = now?;
            let (before, before_cap) = match before {
                Some(r) => {
                    let (f, c) = r?;
                    (Some(f), c)
                }
                None => (None, None),
            };
            let mut snapshot = Snapshot {
                now,
                earlier: before,
            };
            let mut captures: Vec<Capture> = before_cap.into_iter().chain(now_cap).collect();
            if live_root {
                name_netns(&mut snapshot, &mut captures, target, init_inode);
            }
            Ok(Collected { snapshot, captures })
        })
        .collect()
}

/// Fill the namespace's name, pin time and init-ness, which only the
/// caller knows (it chose the target), and store them in the captures.
/// A tree under another prefix describes itself (its probe/netns_id).
fn name_netns(snap: &mut Snapshot, caps: &mut [Capture], target: &Target, init: Option<u64>) {
    for facts in std::iter::once(&mut snap.now).chain(snap.earlier.as_mut()) {
        if let Ok(id) = &mut facts.netns {
            let naming = super::netns::naming(target, id.inode, init);
            id.name = naming.name;
            id.pinned_since_unix = naming.pinned_since_unix;
            id.is_init = match id.inode {
                Some(ino) => super::netns::is_init(ino, init),
                None => matches!(target, Target::Current),
            };
        }
    }
    if let Ok(id) = &snap.now.netns {
        if let Ok(text) = serde_json::to_string(id) {
            let blob = super::capture::Blob::Text(text);
            for c in caps {
                c.items
                    .insert(super::netns::PROBE_ID.to_string(), blob.clone());
            }
        }
    }
}

/// One namespace, read live (see [`collect`]).
pub fn collect_one(prefix: &Path, target: &Target, opts: &Collect) -> anyhow::Result<Collected> {
    collect(prefix, std::slice::from_ref(target), opts)
        .pop()
        .unwrap_or_else(|| Err(anyhow::anyhow!("no reading")))
}

/// [`collect_one`] with every source: the snapshot and, with `record`,
/// its captures.
pub fn collect_live(
    prefix: &Path,
    target: &Target,
    sample: Option<Duration>,
    record: bool,
) -> anyhow::Result<(Snapshot, Vec<Capture>)> {
    let c = collect_one(
        prefix,
        target,
        &Collect {
            sample,
            record,
            ..Collect::default()
        },
    )?;
    Ok((c.snapshot, c.captures))
}

/// Rebuild the snapshot a capture set describes (offline `check`): the
/// last capture is the full reading, the one before it (`--sample`) the
/// counters. Fails on an empty set.
pub fn from_captures(mut caps: Vec<Capture>) -> anyhow::Result<Snapshot> {
    let last = caps
        .pop()
        .ok_or_else(|| anyhow::anyhow!("the snapshot holds no capture"))?;
    let now = read_facts(&Root::captured(last));
    let earlier = caps
        .pop()
        .map(|c| read_facts_with(&Root::captured(c), Select::counters()));
    Ok(Snapshot { now, earlier })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, v) in [
            ("proc/meminfo", "MemTotal: 1024 kB\n"),
            ("proc/net/dev", "a\n"),
            ("proc/sys/net/netfilter/nf_conntrack_count", "5\n"),
        ] {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        }
        d
    }

    #[test]
    fn one_root_reads_each_path_once() {
        let d = tree();
        let root = Root::live_at(d.path().to_path_buf()).recording(0);
        let a = root.read("proc/net/dev").unwrap();
        std::fs::write(d.path().join("proc/net/dev"), "b\n").unwrap();
        assert_eq!(
            root.read("proc/net/dev").unwrap(),
            a,
            "second read served from memory"
        );
        let cap = root.take_capture().unwrap();
        assert_eq!(cap.items.len(), 1, "recorded once");
        let fresh = Root::live_at(d.path().to_path_buf());
        assert_eq!(
            fresh.read("proc/net/dev").unwrap(),
            b"b\n",
            "a new instant reads again"
        );
    }

    #[test]
    fn namespaces_of_one_instant_share_only_machine_wide_reads() {
        let d = tree();
        let cache = InstantCache::default();
        let a = Root::live_at(d.path().to_path_buf()).sharing(&cache);
        a.read("proc/meminfo").unwrap();
        a.read("proc/net/dev").unwrap();
        a.read("proc/sys/net/netfilter/nf_conntrack_count").unwrap();
        std::fs::write(d.path().join("proc/meminfo"), "changed\n").unwrap();
        std::fs::write(d.path().join("proc/net/dev"), "other netns\n").unwrap();
        std::fs::write(
            d.path().join("proc/sys/net/netfilter/nf_conntrack_count"),
            "9\n",
        )
        .unwrap();
        let b = Root::live_at(d.path().to_path_buf()).sharing(&cache);
        assert_eq!(b.read("proc/meminfo").unwrap(), b"MemTotal: 1024 kB\n");
        assert_eq!(b.read("proc/net/dev").unwrap(), b"other netns\n");
        assert_eq!(
            b.read("proc/sys/net/netfilter/nf_conntrack_count").unwrap(),
            b"9\n"
        );
    }

    #[test]
    fn machine_wide_paths() {
        for k in [
            "proc/meminfo",
            "proc/slabinfo",
            "probe:kmsg",
            "etc/sysctl.d/90-x.conf",
            "dir:etc/sysctl.d",
            "sys/module/nf_conntrack/parameters/hashsize",
            "proc/sys/fs/file-nr",
        ] {
            assert!(super::super::capture::machine_wide(k), "{k}");
        }
        for k in [
            "proc/net/dev",
            "proc/sys/net/netfilter/nf_conntrack_count",
            "dir:proc/sys/net/netfilter",
            "probe:sock_diag_tcp",
            "probe:table_mix",
            "probe:netns_id",
        ] {
            assert!(!super::super::capture::machine_wide(k), "{k}");
        }
    }

    #[test]
    fn unselected_sources_are_marked_and_not_reported_missing() {
        let d = tree();
        let f = read_facts_with(&Root::live_at(d.path().to_path_buf()), Select::counters());
        assert!(matches!(f.persist, Err(Unavailable::NotSelected { .. })));
        assert!(matches!(f.table, Err(Unavailable::NotSelected { .. })));
        assert!(f.conntrack.is_ok());
        assert_eq!(f.sources.len(), SOURCES.len());
        let persist = f.sources.iter().find(|s| s.name == "persist").unwrap();
        assert!(!persist.ok);
        assert!(f
            .unavailable()
            .iter()
            .all(|u| !matches!(u, Unavailable::NotSelected { .. })));
        let all = read_facts(&Root::live_at(d.path().to_path_buf()));
        assert!(!matches!(all.persist, Err(Unavailable::NotSelected { .. })));
        assert!(!Select::ALL.without(Source::Table).contains(Source::Table));
    }
}
