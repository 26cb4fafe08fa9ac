//! [`Snapshot`]: every fact about one network namespace at one instant (and,
//! with `check --sample`, a second reading for rates). Plain data: checks
//! and plans are pure functions of it.

use crate::host::{self, Fact, Root};
use serde::{Deserialize, Serialize};

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

/// The facts read from one [`Root`] at one instant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Facts {
    /// Milliseconds since the first reading of this run.
    pub elapsed_ms: u64,
    pub netns: Fact<NetnsId>,
    pub system: Fact<host::system::System>,
    pub conntrack: Fact<host::conntrack::Conntrack>,
    pub stat: Fact<host::stat::Stat>,
    pub kmsg: Fact<host::kmsg::Kmsg>,
    pub persist: Fact<host::persist::Persist>,
    pub consumers: Fact<host::consumers::Consumers>,
    pub sockets: Fact<host::sockets::Sockets>,
    pub fds: Fact<host::fds::Fds>,
    pub nic: Fact<host::nic::Nics>,
    pub table: Fact<host::table::TableMix>,
}

impl Facts {
    /// Read every source through `root`. Never fails: each source that
    /// cannot be read is an `Err(Unavailable)` in its field.
    pub fn read(root: &Root) -> Facts {
        Facts {
            elapsed_ms: root.elapsed_ms(),
            netns: host::netns::read_id(root),
            system: host::system::read(root),
            conntrack: host::conntrack::read(root),
            stat: host::stat::read(root),
            kmsg: host::kmsg::read(root),
            persist: host::persist::read(root),
            consumers: host::consumers::read(root),
            sockets: host::sockets::read(root),
            fds: host::fds::read(root),
            nic: host::nic::read(root),
            table: host::table::read(root),
        }
    }

    /// Every source that could not be read, for reports.
    pub fn unavailable(&self) -> Vec<&host::Unavailable> {
        let mut v = Vec::new();
        macro_rules! push {
            ($($f:ident),*) => { $( if let Err(u) = &self.$f { v.push(u); } )* };
        }
        push!(netns, system, conntrack, stat, kmsg, persist, consumers, sockets, fds, nic, table);
        v
    }
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
