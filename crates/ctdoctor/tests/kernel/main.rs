//! The `kernel` test target: every test that creates network namespaces
//! or otherwise works on the real kernel (root; under `CI=true` a test
//! that cannot run fails instead of skipping):
//!
//!     cargo test --release -p ctdoctor --test kernel
//!     cargo test --release -p ctdoctor --test kernel lab_kernel::
//!
//! One module per former test file (one crate, linked once); helpers
//! shared with the `offline` target are in tests/common/.
//!
//! # One process, many threads
//!
//! As separate binaries, the files ran one after another and only a file's
//! own tests ran side by side. Now every kernel test shares one process
//! and the harness's threads (one per CPU unless `--test-threads` says
//! otherwise), so tests of different modules meet. What keeps them apart:
//!
//! - testns's kernel lock ([`testns::lock_shared`] / [`testns::lock_exclusive`]):
//!   an flock on a file descriptor of its own for each call, so it
//!   separates threads as it separates processes. A test that changes a
//!   global knob (the lab, a full table, `dmesg_restrict`) holds it
//!   exclusive and runs alone among the tests that take it.
//! - A module's own mutex (check_sockets_kernel's `serial`) covers that
//!   module's tests, as before.
//! - [`heavy`]: the tests that fill a table with 100,000 entries or more
//!   under the shared lock take it as well, so two such fills never run at
//!   once (as files, no two of them ever did).
//! - [`nobody`]: every test that runs a process as user nobody holds it:
//!   issue19's read what nobody's processes are (`fds.process`), and such
//!   processes now come from check_conntrack_kernel, deploy_kernel and
//!   tune_safety_kernel too.
//!
//! Take testns's lock first, then these.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

#[path = "../common/mod.rs"]
mod common;

mod check_conntrack_kernel;
mod check_persist_kernel;
mod check_sockets_kernel;
mod deploy_kernel;
mod drops_kernel;
mod exporter_kernel;
mod incident_kernel;
mod issue19;
mod issue8_kernel;
mod lab_kernel;
mod netns_kernel;
mod nginx_kernel;
mod notrack_kernel;
mod package;
mod plan_kernel;
mod stat_fallback_kernel;
mod summary_check;
mod summary_kernel;
mod summary_top;
mod tune_kernel;
mod tune_safety_kernel;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn hold(m: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One big fill at a time: held, after the shared kernel lock, by the tests
/// that put 100,000 entries or more into a table (deploy_kernel's
/// Prometheus acceptance, summary_kernel's 200k, issue8_kernel's pressure
/// mix, tune_kernel's eviction). Each is CPU and memory for seconds, and
/// the acceptance test's alert timing is measured.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    hold(&HEAVY)
}

/// One test at a time runs processes as user nobody: held around every
/// such run (after the kernel lock, when the test takes that), since
/// issue19's tests judge what nobody's processes are and must see only
/// their own.
pub fn nobody() -> MutexGuard<'static, ()> {
    static NOBODY: Mutex<()> = Mutex::new(());
    hold(&NOBODY)
}

/// The binary under test ([`common::bin`]) copied into a temp dir user
/// nobody can enter (the build tree may sit under one it cannot); removed
/// on drop. Made by [`nobody_bin`].
pub struct NobodyBin {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// A [`NobodyBin`], once the copy runs. Until the copy's write descriptor
/// is gone from every child another test thread forked meanwhile, exec
/// fails with ETXTBSY: this waits that out (10 s at most). One copy per
/// test: a copy shared by the whole process would never be removed.
pub fn nobody_bin() -> NobodyBin {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("ctdoctor");
    std::fs::copy(common::bin(), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let t0 = Instant::now();
    loop {
        match Command::new(&path).arg("--version").output() {
            Ok(o) if o.status.success() => break,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {}
            other => panic!("running the copy: {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "ETXTBSY for 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    NobodyBin { _dir: dir, path }
}
