//! Test support for kernel tests (dev-dependency only, never shipped).
//!
//! - [`kernel_test`]: decides whether a kernel test runs. Root runs it;
//!   without root it prints why it is skipped — except under `CI=true`,
//!   where it must run, so a missing privilege fails loudly.
//! - [`need`] / [`need_tool`]: the same for any other precondition (a tool,
//!   a setting): skip with a word outside CI, fail under `CI=true`. A test
//!   that returns early without them can pass without testing anything.
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

/// Whether this run is CI's (`CI=true`): there every test must run.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The running test's name (cargo names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_string()
}

/// A test's precondition: true when `ok`. Otherwise it prints
/// "skipping NAME: WHAT" and returns false — except under `CI=true`, where
/// it panics: CI installs and sets up everything a test needs, so a test
/// that could not run there is a failure, never a silent pass. Use it for
/// every early return of a test (`if !testns::need(cond, "why") { return; }`).
pub fn need(ok: bool, what: &str) -> bool {
    need_as(&test_name(), ok, what)
}

fn need_as(name: &str, ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if ci() {
        panic!("{name}: {what}, and CI=true requires this test to run");
    }
    eprintln!("skipping {name}: {what}");
    false
}

/// [`need`] for a tool on PATH (scripts/test.sh installs each one a test uses).
pub fn need_tool(tool: &str) -> bool {
    need_tool_as(&test_name(), tool)
}

fn need_tool_as(name: &str, tool: &str) -> bool {
    need_as(
        name,
        have(tool),
        &format!("`{tool}` is not installed (scripts/test.sh installs it)"),
    )
}

/// True when a kernel test should run; prints the reason when it should not.
/// Panics under CI=true when not root or a tool is missing: CI must run
/// every kernel test.
pub fn kernel_test(name: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if !need_as(
        name,
        root,
        "kernel tests need root (they create network namespaces)",
    ) {
        return false;
    }
    ["ip", "nft", "conntrack"]
        .into_iter()
        .all(|t| need_tool_as(name, t))
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

    /// Remove it now (`ip netns del`), as an operator would; panics on failure.
    pub fn remove(self) {
        ok("ip netns del", self.inner.remove())
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
