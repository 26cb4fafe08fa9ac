//! Conntrack entries as a stream, and one-pass aggregates over them
//! (`summary`, `check`'s `conntrack.state_mix`).
//!
//! - [`entry`]: the small `Copy` [`Entry`] every source produces.
//! - [`text`]: /proc/net/nf_conntrack and `conntrack -L [-o extended]` text,
//!   parsed in parallel chunks (file, stdin, gzip).
//! - [`agg`]: the aggregator: counts, breakdowns, exact top-N, idle ages,
//!   built on [`counters`] (count maps), [`filter`] (which entries count)
//!   and [`timeouts`] (seconds left → idle age).
//! - [`mix`]: the state mix `check` judges ([`mix::TableMix`]).
//! - [`source`]: where entries came from and how reading went ([`source::SourceInfo`]).
//!
//! Not for: rendering (that is `cmd::summary`) or netlink itself (that is
//! the `ctnetlink` crate).

pub mod agg;
pub mod counters;
pub mod entry;
pub mod filter;
pub mod mix;
pub mod source;
pub mod text;
pub mod timeouts;

pub use entry::{Entry, TcpState};
