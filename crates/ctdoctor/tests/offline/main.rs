//! The `offline` test target: everything that needs no network namespace
//! and changes nothing in the kernel — fixture trees, the command line,
//! golden reports, the import rule, bad input, deploy/ files, snapshot
//! files and dumps. Runs without root:
//!
//!     cargo test --release -p ctdoctor --test offline
//!     cargo test --release -p ctdoctor --test offline golden::
//!
//! One module per former test file (one crate, linked once); helpers
//! shared with the `kernel` target are in tests/common/.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod bad_input;
mod check_conntrack;
mod check_persist;
mod check_sockets;
mod cli;
mod deploy;
mod exporter;
mod golden;
mod layout;
mod nginx;
mod notrack;
mod plan;
mod snapshot;
mod snapshot_files;
mod summary_files;
