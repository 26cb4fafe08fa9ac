//! Readers: every byte ctdoctor learns about a machine comes in here.
//!
//! All reads go through one [`Root`]: live (`/`, or a prefix such as
//! `/host` for containerised deployments) or a [`Capture`] loaded from a
//! snapshot file. A live `Root` can record what it read, which is how
//! `ctdoctor snapshot` works: the same readers, the same bytes, offline.
//!
//! Each source has its own module with a pure `parse_*` function (bytes in,
//! typed fact out: proptest-able) and a `read(&Root)` that fetches the bytes.
//! A source that cannot be read is a typed [`Unavailable`], never a panic and
//! never a failed run. The one streaming source is [`entries`]: table dumps
//! (ctnetlink) and text dumps (files, stdin) feed `table`'s aggregates entry
//! by entry instead of becoming a fact.
//!
//! Not for: interpreting facts (that is `checks`), or writing anything.

pub mod capture;
pub mod collect;
pub mod conntrack;
pub mod consumers;
pub mod creators;
pub mod drops;
pub mod entries;
pub mod ethtool;
pub mod fact;
pub mod fds;
pub mod kmsg;
pub mod mix;
pub mod netlink;
pub mod netns;
pub mod nginx;
pub mod nic;
pub mod persist;
pub mod rtnl;
pub mod ruleset;
pub mod sockdiag;
pub mod sockets;
pub mod stat;
pub mod system;
pub mod tracefs;

pub use capture::{Capture, Root};

pub use fact::{Fact, Unavailable};

/// Parse a whole file holding one unsigned integer (sysctl style).
pub fn parse_u64(what: &str, bytes: &[u8]) -> Fact<u64> {
    let s = std::str::from_utf8(bytes).map_err(|_| Unavailable::malformed(what, "not UTF-8"))?;
    s.trim().parse::<u64>().map_err(|_| {
        Unavailable::malformed(
            what,
            format!("expected an integer, got {:?}", truncate(s.trim(), 40)),
        )
    })
}

/// Read a file holding one unsigned integer.
pub fn read_u64(root: &Root, path: &str) -> Fact<u64> {
    let bytes = root.read(path)?;
    parse_u64(path, &bytes)
}

pub use crate::util::truncate;

pub use collect::{
    collect, collect_live, collect_one, from_captures, read_facts, read_facts_with, Collect,
    Collected, Select, Source, SOURCES,
};
