//! [`Netns`]: a network namespace we created, removed when the guard drops
//! (panics included). For the lab and the kernel tests: a uniquely named
//! namespace with loopback up and nft `ct state` rules so conntrack tracks
//! its traffic. Not for namespaces someone else made (use [`Target`]).
//!
//! Driven through iproute2 (`ip netns add/exec/del`), nftables (`nft`) and
//! conntrack-tools (`conntrack -R`), so a missing tool is a
//! [`SetupError::Spawn`] naming it. Processes started inside keep the
//! namespace alive after removal: stop them first.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cmd::run;
use crate::guard::{read_value, sys_path, write_value};
use crate::target::RUN_NETNS;
use crate::{run_in, SetupError, Target};

/// The nft ruleset [`Netns::create`] loads: a `ct state` match in input
/// and output, so conntrack tracks every packet here.
pub const TRACK_ALL: &str = "table inet ctdt { \
    chain in { type filter hook input priority 0; ct state established,related accept; }; \
    chain out { type filter hook output priority 0; ct state new accept; }; }";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A namespace pinned at /run/netns/NAME that we created; `ip netns del`
/// on [`Netns::remove`] or drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    armed: bool,
}

fn check_name(what: &'static str, s: &str) -> Result<(), SetupError> {
    let why = if s.is_empty() {
        Some("empty")
    } else if s.contains('/') || s == "." || s == ".." {
        Some("must be a file name under /run/netns")
    } else if s.len() > 200 {
        Some("longer than 200 bytes")
    } else {
        None
    };
    match why {
        Some(why) => Err(SetupError::Invalid {
            what,
            value: s.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

impl Netns {
    /// A fresh namespace named `<prefix>-<pid>-<n>` (unique in this
    /// process), loopback up, [`TRACK_ALL`] loaded. Half-made namespaces
    /// are removed before the error returns.
    pub fn create(prefix: &str) -> Result<Netns, SetupError> {
        check_name("namespace name prefix", prefix)?;
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns::add(&name)?;
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        ns.nft(TRACK_ALL)?;
        Ok(ns)
    }

    /// `ip netns add NAME`, nothing more. [`SetupError::NameTaken`] when
    /// /run/netns/NAME exists.
    pub fn add(name: &str) -> Result<Netns, SetupError> {
        check_name("namespace name", name)?;
        if Path::new(RUN_NETNS).join(name).exists() {
            return Err(SetupError::NameTaken {
                name: name.to_string(),
            });
        }
        run("ip", &["netns", "add", name], None)?;
        Ok(Netns {
            name: name.to_string(),
            armed: true,
        })
    }

    /// The name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How to enter it ([`run_in`], `Socket::open_in`).
    pub fn target(&self) -> Target {
        Target::Named(self.name.clone())
    }

    /// Run `cmd args…` inside (`ip netns exec`, which also gives it this
    /// namespace's /sys); an error when it fails.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<Output, SetupError> {
        let mut a = vec!["netns", "exec", &self.name, cmd];
        a.extend_from_slice(args);
        run("ip", &a, None)
    }

    /// [`Netns::exec`] and its stdout as text.
    pub fn exec_text(&self, cmd: &str, args: &[&str]) -> Result<String, SetupError> {
        let out = self.exec(cmd, args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Load an nft ruleset fragment here (`nft -f -`, fed on stdin).
    pub fn nft(&self, rules: &str) -> Result<(), SetupError> {
        run(
            "ip",
            &["netns", "exec", &self.name, "nft", "-f", "-"],
            Some(rules.as_bytes()),
        )
        .map(drop)
    }

    /// Write a per-namespace sysctl: `key` in sysctl's dotted form
    /// (`net.netfilter.nf_conntrack_tcp_timeout_time_wait`) or as a path
    /// under /proc/sys (with '/').
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), SetupError> {
        let rel = if key.contains('/') {
            key.to_string()
        } else {
            key.replace('.', "/")
        };
        let path = sys_path(&rel)?;
        run_in(&self.target(), || {
            let file = std::fs::File::options()
                .write(true)
                .open(&path)
                .map_err(|error| SetupError::Io {
                    op: "open",
                    path: path.clone(),
                    error,
                })?;
            write_value(&file, &path, value)
        })?
    }

    /// Read a file under /proc/sys as this namespace sees it (e.g.
    /// `net/netfilter/nf_conntrack_count`), trimmed.
    pub fn proc_sys(&self, rel: &str) -> Result<String, SetupError> {
        let path = sys_path(rel)?;
        run_in(&self.target(), || {
            let file = std::fs::File::open(&path).map_err(|error| SetupError::Io {
                op: "open",
                path: path.clone(),
                error,
            })?;
            Ok(read_value(&file, &path)?.trim().to_string())
        })?
    }

    /// The namespace's nsfs inode (as in "table full in netns N").
    pub fn inode(&self) -> Result<u64, SetupError> {
        use std::os::unix::fs::MetadataExt;
        let path = Path::new(RUN_NETNS).join(&self.name);
        std::fs::metadata(&path)
            .map(|m| m.ino())
            .map_err(|error| SetupError::Io {
                op: "stat",
                path,
                error,
            })
    }

    /// The number of entries in this namespace's conntrack table, from the
    /// kernel (nf_conntrack_count).
    pub fn count(&self) -> Result<u64, SetupError> {
        const REL: &str = "net/netfilter/nf_conntrack_count";
        let text = self.proc_sys(REL)?;
        text.parse().map_err(|_| SetupError::Parse {
            what: "an entry count",
            path: Path::new("/proc/sys").join(REL),
            text,
        })
    }

    /// Load a `conntrack -R` batch file here.
    pub fn load_batch(&self, file: &Path) -> Result<(), SetupError> {
        let f = file.to_str().ok_or_else(|| SetupError::Invalid {
            what: "batch file path",
            value: file.display().to_string(),
            why: "not UTF-8",
        })?;
        self.exec("conntrack", &["-R", f]).map(drop)
    }

    /// Leave the namespace in place when this guard goes (the lab's
    /// `--keep`): returns its name; removing it is then the caller's job.
    pub fn keep(mut self) -> String {
        self.armed = false;
        std::mem::take(&mut self.name)
    }

    /// Remove the namespace now, saying whether that worked (drop only
    /// reports a failure on stderr).
    pub fn remove(mut self) -> Result<(), SetupError> {
        self.armed = false;
        run("ip", &["netns", "del", &self.name], None).map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = run("ip", &["netns", "del", &self.name], None) {
                eprintln!("FAILED to remove network namespace {}: {e}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_anything_runs() {
        for bad in ["", "a/b", "..", &"x".repeat(201)] {
            assert!(
                matches!(Netns::add(bad), Err(SetupError::Invalid { .. })),
                "{bad}"
            );
            assert!(matches!(
                Netns::create(bad),
                Err(SetupError::Invalid { .. })
            ));
        }
    }
}
