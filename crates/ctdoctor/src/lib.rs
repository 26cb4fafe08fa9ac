//! ctdoctor: find and fix the packet loss behind 504s on busy Linux
//! gateways — a full connection-tracking table first, and its companions
//! (fd limits, ephemeral ports, listen queues, NIC and cloud allowances).
//!
//! Shape: `host` readers do all I/O through one `Root` and produce a
//! `snapshot::Snapshot` of plain data; `checks` are pure functions of it;
//! `report` renders; `plan` sizes the table and predicts what a timeout
//! change will do, as pure functions too. `table` turns a stream of
//! conntrack entries (from `host::entries`: a netlink dump or text) into
//! one-pass aggregates, with no I/O of its own. `counters` holds the
//! counter arithmetic checks and `top` share. `tune` is the only code that
//! writes sysctls and config files (journaled, read back, reversible);
//! `notrack` builds NOTRACK rules and `lab` reproduces the incident in
//! namespaces. `cmd` holds the thin command-line layer, `tui` the live view.
//! `infile` and `outfile` open the paths a user names on the command line
//! (inputs bounded and never hanging, outputs never replacing a device).

pub mod advice;
pub mod checks;
pub mod cmd;
pub mod confine;
pub mod counters;
pub mod drops;
pub mod exporter;
pub mod host;
pub mod infile;
pub mod kernel;
pub mod knobs;
pub mod lab;
pub mod notrack;
pub mod outfile;
pub mod plan;
pub mod report;

pub mod snapfile;
pub mod snapshot;
pub mod table;
pub mod tui;
pub mod tune;
pub mod util;
