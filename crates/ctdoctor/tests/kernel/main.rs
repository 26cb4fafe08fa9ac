//! The `kernel` test target: every test that creates network namespaces
//! or otherwise works on the real kernel (root; under `CI=true` a test
//! that cannot run fails instead of skipping):
//!
//!     cargo test --release -p ctdoctor --test kernel
//!     cargo test --release -p ctdoctor --test kernel lab_kernel::
//!
//! One module per former test file (one crate, linked once); helpers
//! shared with the `offline` target are in tests/common/.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

#[path = "../common/mod.rs"]
mod common;

mod check_conntrack_kernel;
mod check_persist_kernel;
mod check_sockets_kernel;
mod deploy_kernel;
mod exporter_kernel;
mod issue19;
mod issue8_kernel;
mod lab_kernel;
mod netns_kernel;
mod notrack_kernel;
mod plan_kernel;
mod stat_fallback_kernel;
mod summary_check;
mod summary_kernel;
mod summary_top;
mod tune_kernel;
mod tune_safety_kernel;
