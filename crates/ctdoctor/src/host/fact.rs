//! The plain data one reading of a machine gives: [`Facts`] about one
//! network namespace at one instant (each a [`Fact`]: a value, or why it is
//! [`Unavailable`]), and the [`Snapshot`] checks judge (with `check
//! --sample`, an earlier reading for rates). The readers in `host` fill
//! these; deciders name them through `crate::snapshot`, which re-exports
//! them with every fact type. Lives in `host` (not above it) so the readers
//! need nothing from the layers that judge.
//!
//! Not for: reading (the other host modules), judging (checks).

use super::conntrack::Conntrack;
use super::consumers::Consumers;
use super::fds::Fds;
use super::kmsg::Kmsg;
use super::mix::TableMix;
use super::nginx::NginxErrors;
use super::nic::Nics;
use super::persist::Persist;
use super::sockets::Sockets;
use super::stat::Stat;
use super::system::System;
use crate::table::timeouts::Timeouts;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a fact could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Unavailable {
    /// The file or interface does not exist (module not loaded, old kernel,
    /// procfs support not built, not in this capture).
    Missing { what: String },
    /// Reading needs privileges we do not have (usually root).
    NeedsRoot { what: String },
    /// Refused although ctdoctor runs as root: `detail` says what blocks
    /// root (a user namespace, dropped capabilities, a security module).
    Denied { what: String, detail: String },
    /// The source exists but its content could not be understood.
    Malformed { what: String, detail: String },
    /// Any other failure, with the OS error or a reason.
    Failed { what: String, detail: String },
    /// The caller did not ask for this source (e.g. the exporter skips the
    /// persistence scan; the earlier reading of `--sample` reads counters only).
    NotSelected { what: String },
}

impl Unavailable {
    pub fn what(&self) -> &str {
        match self {
            Unavailable::Missing { what }
            | Unavailable::NeedsRoot { what }
            | Unavailable::Denied { what, .. }
            | Unavailable::Malformed { what, .. }
            | Unavailable::Failed { what, .. }
            | Unavailable::NotSelected { what } => what,
        }
    }

    /// A permission error on `what` while reading: [`Unavailable::NeedsRoot`]
    /// when ctdoctor is not root, else [`Unavailable::Denied`] with what
    /// blocks root (the one place this process's privileges are asked).
    pub fn permission(what: &str) -> Self {
        match netns::privilege::refusal_here() {
            None => Unavailable::NeedsRoot { what: what.into() },
            Some(detail) => Unavailable::Denied {
                what: what.into(),
                detail,
            },
        }
    }

    /// Whether reading was refused for privilege (as root or not).
    pub fn is_permission(&self) -> bool {
        matches!(
            self,
            Unavailable::NeedsRoot { .. } | Unavailable::Denied { .. }
        )
    }

    /// Classify an I/O error on `what`.
    pub fn from_io(what: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::NotFound => Unavailable::Missing { what: what.into() },
            ErrorKind::PermissionDenied => Unavailable::permission(what),
            _ => match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => Unavailable::permission(what),
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::EOPNOTSUPP) => {
                    Unavailable::Missing { what: what.into() }
                }
                _ => Unavailable::Failed {
                    what: what.into(),
                    detail: e.to_string(),
                },
            },
        }
    }

    pub fn malformed(what: &str, detail: impl Into<String>) -> Self {
        Unavailable::Malformed {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Missing { what } => write!(f, "{what}: not present"),
            Unavailable::NeedsRoot { what } => write!(f, "{what}: permission denied (run as root)"),
            Unavailable::Denied { what, detail } => {
                write!(f, "{what}: permission denied to root ({detail})")
            }
            Unavailable::Malformed { what, detail } => {
                write!(f, "{what}: unreadable content: {detail}")
            }
            Unavailable::Failed { what, detail } => write!(f, "{what}: {detail}"),
            Unavailable::NotSelected { what } => write!(f, "{what}: not read (not selected)"),
        }
    }
}

/// A fact, or why it is not known.
pub type Fact<T> = Result<T, Unavailable>;

/// Which namespace a snapshot describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsId {
    /// The nsfs inode, as in /proc/PID/ns/net and in "table full in netns N".
    pub inode: Option<u64>,
    /// Name under /run/netns, when it has one; else how it was entered:
    /// `pid N` (`--netns PID`) or the namespace file's path. None for the
    /// host's namespace. See `host::netns::naming`.
    pub name: Option<String>,
    /// Whether this is the host's (init) namespace.
    pub is_init: bool,
    /// For a namespace pinned under /run/netns: the pin's ctime (Unix
    /// seconds), a lower bound on the namespace's age. Log lines older than
    /// this naming the same inode came from an earlier namespace.
    #[serde(default)]
    pub pinned_since_unix: Option<i64>,
}

/// A process living in a namespace (for `--all-netns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: u32,
    pub comm: String,
    /// Container id from the cgroup path, when there is one.
    pub container: Option<String>,
}

/// How reading one source went: read or not, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// The source's name in `host::SOURCES` (`conntrack`, `kmsg`, …).
    pub name: String,
    /// Whether the fact was read (parts of it may still be unavailable).
    pub ok: bool,
    /// Wall time of the read, µs (0 when it was not selected).
    pub duration_us: u64,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The facts read from one root at one instant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Facts {
    /// Milliseconds since the first reading of this run.
    pub elapsed_ms: u64,
    pub netns: Fact<NetnsId>,
    pub system: Fact<System>,
    pub conntrack: Fact<Conntrack>,
    pub stat: Fact<Stat>,
    pub kmsg: Fact<Kmsg>,
    pub persist: Fact<Persist>,
    pub consumers: Fact<Consumers>,
    pub sockets: Fact<Sockets>,
    pub fds: Fact<Fds>,
    pub nic: Fact<Nics>,
    pub table: Fact<TableMix>,
    /// What nginx's error logs said in the last hour (absent from older
    /// snapshots).
    #[serde(default = "nginx_not_read")]
    pub nginx: Fact<NginxErrors>,
    /// Who created entries during `--sample` (absent without one, and
    /// from older snapshots).
    #[serde(default = "creators_not_read")]
    pub creators: Fact<super::creators::Creation>,
    /// The drop census of `--sample` (absent without one, and from older
    /// snapshots).
    #[serde(default = "drops_not_read")]
    pub drops: Fact<crate::drops::report::DropReport>,
    /// One entry per source, in `host::SOURCES` order.
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
}

fn creators_not_read() -> Fact<super::creators::Creation> {
    Err(Unavailable::Missing {
        what: super::creators::PROBE.into(),
    })
}

fn drops_not_read() -> Fact<crate::drops::report::DropReport> {
    Err(Unavailable::Missing {
        what: super::drops::PROBE.into(),
    })
}

fn nginx_not_read() -> Fact<NginxErrors> {
    Err(Unavailable::Missing {
        what: super::nginx::PROBE.into(),
    })
}

impl Facts {
    /// Every selected source — and every part of a source a rule judges —
    /// that could not be read, for reports ("not read"), each once.
    pub fn unavailable(&self) -> Vec<&Unavailable> {
        let mut v = Vec::new();
        macro_rules! push {
            ($($f:ident),*) => { $( if let Err(u) = &self.$f { v.push(u); } )* };
        }
        push!(netns, system, conntrack, stat, kmsg, persist, consumers, sockets, fds, nic, table);
        // No nginx probe (a tree or snapshot without one) is normal, and
        // no creators without a sample.
        for f in [
            self.nginx.as_ref().err(),
            self.creators.as_ref().err(),
            self.drops.as_ref().err(),
        ] {
            match f {
                Some(Unavailable::Missing { .. }) | None => {}
                Some(u) => v.push(u),
            }
        }
        v.retain(|u| !matches!(u, Unavailable::NotSelected { .. }));
        // Parts a rule judges: absent ones are normal (an old kernel, no
        // nft); one that could not be read for another reason is listed.
        fn err<T>(f: &Fact<T>) -> Option<&Unavailable> {
            f.as_ref().err()
        }
        let mut parts: Vec<Option<&Unavailable>> = Vec::new();
        if let Ok(s) = &self.system {
            parts.extend([err(&s.slab), err(&s.mem_total_bytes), err(&s.uptime_secs)]);
        }
        if let Ok(c) = &self.conntrack {
            parts.extend([err(&c.max), err(&c.buckets)]);
        }
        if let Ok(s) = &self.sockets {
            parts.extend([err(&s.tcp_ext), err(&s.softnet), err(&s.diag)]);
        }
        if let Ok(f) = &self.fds {
            parts.extend([err(&f.file_nr), err(&f.processes)]);
        }
        if let Ok(c) = &self.consumers {
            parts.extend([err(&c.nft), err(&c.iptables_nft)]);
        }
        if let Ok(n) = &self.nic {
            parts.push(err(&n.link_stats));
        }
        v.extend(parts.into_iter().flatten().filter(|u| {
            !matches!(
                u,
                Unavailable::Missing { .. } | Unavailable::NotSelected { .. }
            )
        }));
        let mut seen = std::collections::BTreeSet::new();
        v.retain(|u| seen.insert(u.to_string()));
        v
    }

    /// Whether this netns is the host's (init) one; unknown counts as init
    /// (a report that cannot tell is about the namespace ctdoctor runs in).
    pub fn is_init(&self) -> bool {
        self.netns.as_ref().map(|n| n.is_init).unwrap_or(true)
    }
}

/// The idle-age timeouts a conntrack fact gives (defaults when it is
/// unavailable).
pub fn timeouts_of(c: &Fact<Conntrack>) -> Timeouts {
    c.as_ref().map_or_else(
        |_| Timeouts::default(),
        |c| Timeouts::from_sysctls(&c.timeouts),
    )
}

/// What the checks see: the latest reading, and an earlier one when the
/// user asked for rates (`--sample`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub now: Facts,
    pub earlier: Option<Facts>,
}

impl Snapshot {
    /// Seconds between the two readings, when there are two.
    pub fn interval_secs(&self) -> Option<f64> {
        let e = self.earlier.as_ref()?;
        let ms = self.now.elapsed_ms.checked_sub(e.elapsed_ms)?;
        (ms > 0).then_some(ms as f64 / 1000.0)
    }
}
