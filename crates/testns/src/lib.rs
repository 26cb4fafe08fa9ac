//! Test support for kernel tests (dev-dependency only, never shipped).
//!
//! - [`kernel_test`]: decides whether a kernel test runs. Root runs it;
//!   without root it prints why it is skipped — except under `CI=true`,
//!   where it must run, so a missing privilege fails loudly.
//! - [`lock_shared`] / [`lock_exclusive`]: the one cross-process lock every
//!   kernel test takes (a file lock). Tests that change a global knob
//!   (`nf_conntrack_max`, buckets) take it exclusive, so no other test ever
//!   sees the changed value.
//! - [`Netns`]: a fresh, uniquely named namespace with loopback up and an
//!   nft `ct state` rule (so conntrack tracks its traffic); removed on drop.
//! - [`GlobalKnob`]: sets a /proc/sys value and restores it on drop, panics
//!   included.
//!
//! The last two are thin panicking wrappers over the shipped guards in the
//! `netns` crate (`netns::owned::Netns`, `netns::guard::Knob`), which
//! return errors instead; the lab uses those.

use std::process::{Command, Output};

/// True when a kernel test should run; prints the reason when it should not.
/// Panics under CI=true when not root: CI must run every kernel test.
pub fn kernel_test(name: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !root {
        if ci {
            panic!("{name}: kernel tests need root and CI=true requires them to run");
        }
        eprintln!("skipping {name}: kernel tests need root (they create network namespaces)");
        return false;
    }
    for tool in ["ip", "nft", "conntrack"] {
        if !have(tool) {
            if ci {
                panic!("{name}: `{tool}` is missing; run scripts/test.sh (it installs it)");
            }
            eprintln!("skipping {name}: `{tool}` is not installed (scripts/test.sh installs it)");
            return false;
        }
    }
    true
}

/// Whether an executable is on PATH.
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// A held cross-process lock; released on drop. The same lock `ctdoctor
/// lab` takes while it changes global knobs (`netns::guard::GlobalLock`).
pub type KernelLock = netns::guard::GlobalLock;

/// Shared: any number of ordinary kernel tests at once.
pub fn lock_shared() -> KernelLock {
    KernelLock::shared().expect("the kernel test lock")
}

/// Exclusive: for a test that changes a global knob.
pub fn lock_exclusive() -> KernelLock {
    KernelLock::exclusive().expect("the kernel test lock")
}

/// Run a command; panic with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd} {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Run a command and return its stdout as text.
pub fn run_text(cmd: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&run(cmd, args).stdout).into_owned()
}

/// A throwaway network namespace with conntrack enabled, removed on drop:
/// [`netns::owned::Netns`] with test-style panics instead of errors.
pub struct Netns {
    pub name: String,
    inner: netns::owned::Netns,
}

/// Panic with the operation and the error (tests only).
fn ok<T>(what: &str, r: Result<T, netns::SetupError>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

impl Netns {
    /// `ctdt-<tag>-<pid>-<n>`, loopback up, nft `ct state` rules in input
    /// and output so conntrack tracks every packet here.
    pub fn new(tag: &str) -> Netns {
        let inner = ok(
            "creating a test netns",
            netns::owned::Netns::create(&format!("ctdt-{tag}")),
        );
        Netns {
            name: inner.name().to_string(),
            inner,
        }
    }

    /// The shipped guard underneath (for code under test that takes one).
    pub fn owned(&self) -> &netns::owned::Netns {
        &self.inner
    }

    /// How to enter it (`netns::run_in`, `Socket::open_in`).
    pub fn target(&self) -> netns::Target {
        self.inner.target()
    }

    /// Run a command inside the namespace; panics on failure.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        ok("netns exec", self.inner.exec(cmd, args))
    }

    /// Run a command inside the namespace and return stdout.
    pub fn exec_text(&self, cmd: &str, args: &[&str]) -> String {
        ok("netns exec", self.inner.exec_text(cmd, args))
    }

    /// Load an nft ruleset fragment.
    pub fn nft(&self, rules: &str) {
        ok("loading nft rules", self.inner.nft(rules))
    }

    /// Write a per-namespace sysctl (e.g. `net.netfilter.nf_conntrack_tcp_timeout_time_wait`).
    pub fn sysctl(&self, key: &str, value: &str) {
        ok("netns sysctl", self.inner.sysctl(key, value))
    }

    /// Read a per-namespace file under /proc/sys (e.g. `net/netfilter/nf_conntrack_count`).
    pub fn proc_sys(&self, rel: &str) -> String {
        ok("reading netns /proc/sys", self.inner.proc_sys(rel))
    }

    /// The namespace's nsfs inode (as in "table full in netns N").
    pub fn inode(&self) -> u64 {
        ok("netns inode", self.inner.inode())
    }

    /// The number of entries in this namespace's table, from the kernel.
    pub fn count(&self) -> u64 {
        ok("nf_conntrack_count", self.inner.count())
    }

    /// Load a `conntrack -R` batch file here.
    pub fn load_batch(&self, file: &std::path::Path) {
        ok("conntrack -R", self.inner.load_batch(file))
    }
}

/// A global /proc/sys value changed for one test, restored on drop
/// ([`netns::guard::Knob`], panicking on errors). Hold [`lock_exclusive`]
/// while it lives.
pub struct GlobalKnob {
    _knob: netns::guard::Knob,
}

impl GlobalKnob {
    /// Set `/proc/sys/<rel>` to `value`, remembering the old value, which
    /// goes back on drop whatever the test set since (a test changing a
    /// global knob holds [`lock_exclusive`]: no one else writes it).
    pub fn set(rel: &str, value: &str) -> GlobalKnob {
        GlobalKnob {
            _knob: ok(
                "setting a knob",
                netns::guard::Knob::set_exclusive(rel, value),
            ),
        }
    }
}
