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

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

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

/// A held cross-process lock; released on drop.
pub struct KernelLock {
    _file: File,
}

fn lock(op: libc::c_int) -> KernelLock {
    let path = std::env::temp_dir().join("ctdoctor-kernel-tests.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open kernel test lock");
    // SAFETY: flock on an fd we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), op) };
    assert_eq!(
        rc,
        0,
        "flock {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    KernelLock { _file: f }
}

/// Shared: any number of ordinary kernel tests at once.
pub fn lock_shared() -> KernelLock {
    lock(libc::LOCK_SH)
}

/// Exclusive: for a test that changes a global knob.
pub fn lock_exclusive() -> KernelLock {
    lock(libc::LOCK_EX)
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

/// A throwaway network namespace with conntrack enabled. Removed on drop.
pub struct Netns {
    pub name: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// `ctdt-<tag>-<pid>-<n>`, loopback up, nft `ct state` rules in input
    /// and output so conntrack tracks every packet here.
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "ctdt-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec("ip", &["link", "set", "lo", "up"]);
        ns.nft(
            "table inet ctdt { chain in { type filter hook input priority 0; ct state established,related accept; }; \
             chain out { type filter hook output priority 0; ct state new accept; }; }",
        );
        ns
    }

    /// Run a command inside the namespace; panics on failure.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", &self.name, cmd];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Run a command inside the namespace and return stdout.
    pub fn exec_text(&self, cmd: &str, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.exec(cmd, args).stdout).into_owned()
    }

    /// Load an nft ruleset fragment.
    pub fn nft(&self, rules: &str) {
        let path = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&path, rules).expect("write nft file");
        self.exec("nft", &["-f", path.to_str().expect("utf-8 temp path")]);
        let _ = std::fs::remove_file(path);
    }

    /// Write a per-namespace sysctl (e.g. `net.netfilter.nf_conntrack_tcp_timeout_time_wait`).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")]);
    }

    /// Read a per-namespace file under /proc/sys (e.g. `net/netfilter/nf_conntrack_count`).
    pub fn proc_sys(&self, rel: &str) -> String {
        self.exec_text("cat", &[&format!("/proc/sys/{rel}")])
            .trim()
            .to_string()
    }

    /// The namespace's nsfs inode (as in "table full in netns N").
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .expect("stat netns")
            .ino()
    }

    /// The number of entries in this namespace's table, from the kernel.
    pub fn count(&self) -> u64 {
        self.proc_sys("net/netfilter/nf_conntrack_count")
            .parse()
            .expect("nf_conntrack_count")
    }

    /// Load a `conntrack -R` batch file here.
    pub fn load_batch(&self, file: &std::path::Path) {
        self.exec("conntrack", &["-R", file.to_str().expect("utf-8 path")]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A global /proc/sys value changed for one test, restored on drop.
/// Hold [`lock_exclusive`] while it lives.
pub struct GlobalKnob {
    path: String,
    old: String,
}

impl GlobalKnob {
    /// Set `/proc/sys/<rel>` to `value`, remembering the old value.
    pub fn set(rel: &str, value: &str) -> GlobalKnob {
        let path = format!("/proc/sys/{rel}");
        let old = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {path}: {e}"))
            .trim()
            .to_string();
        let knob = GlobalKnob { path, old };
        std::fs::write(&knob.path, value).unwrap_or_else(|e| panic!("write {}: {e}", knob.path));
        knob
    }
}

impl Drop for GlobalKnob {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, &self.old) {
            eprintln!("FAILED to restore {} to {}: {e}", self.path, self.old);
        }
    }
}
