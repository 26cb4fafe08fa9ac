//! Conntrack entries as a stream, and one-pass aggregates over them
//! (`summary`, `top`, `check`'s `conntrack.state_mix`). Pure: no file,
//! socket, namespace or process is opened here; the sources that feed it
//! (ctnetlink dumps, files, stdin) are in `host::entries`.
//!
//! - [`entry`]: the small `Copy` [`Entry`] every source produces.
//! - [`text`]: /proc/net/nf_conntrack and `conntrack -L [-o extended]` text,
//!   parsed in parallel chunks from any `Read` (gzip detected).
//! - [`agg`]: the aggregator: counts, breakdowns, exact top-N, idle ages,
//!   built on [`counters`] (count maps), [`filter`] (which entries count)
//!   and [`timeouts`] (seconds left → idle age).
//! - [`mix`]: the state mix `check` judges ([`mix::TableMix`]).
//! - [`ages`]: idle ages by timeout class, what `plan --what-if` predicts from.
//! - [`creators`]: who creates entries (top sources and destination ports
//!   by rate over the last minute), bounded whatever the traffic.
//! - [`source`]: where entries came from and how reading went ([`source::SourceInfo`]).
//!
//! Not for: I/O (`host`), rendering (`cmd::summary`, `tui`) or netlink
//! itself (the `ctnetlink` crate).

pub mod ages;
pub mod agg;
pub mod counters;
pub mod creators;
pub mod entry;
pub mod filter;
pub mod mix;
pub mod source;
pub mod text;
pub mod timeouts;

pub use entry::{Entry, TcpState};
