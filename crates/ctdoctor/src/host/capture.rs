//! [`Root`]: the one door to the machine, and [`Capture`]: what went through it.
//!
//! Paths are written relative, as in the kernel's tree (`proc/sys/net/...`,
//! `proc/net/stat/nf_conntrack`, `dev/kmsg`). Live under `/` (or a prefix
//! holding a real procfs), `proc/net/...` is read as
//! `proc/thread-self/net/...`: after `setns` on a thread,
//! `/proc/net` still shows the process leader's namespace, `thread-self`
//! shows ours.
//!
//! Facts that are not files (ioctl, netlink, the output of `nft`) are
//! *probes*: a named function run live, whose text result is recorded and
//! replayed from a capture like a file.
//!
//! A live `Root` stands for one instant: it reads each path once (a second
//! read of the same path — `proc/modules` by two readers — is served from
//! memory), and roots of the same instant in other namespaces share the
//! machine-wide paths through an [`InstantCache`].

use super::Unavailable;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One recorded read: the bytes (text, or hex when not UTF-8), or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blob {
    /// Bytes that are valid UTF-8.
    Text(String),
    /// Other bytes, hex-encoded.
    Hex(String),
    /// The read failed.
    Unavailable(Unavailable),
}

impl Blob {
    fn from_result(r: &Result<Vec<u8>, Unavailable>) -> Blob {
        match r {
            Ok(b) => match std::str::from_utf8(b) {
                Ok(s) => Blob::Text(s.to_string()),
                Err(_) => Blob::Hex(b.iter().map(|x| format!("{x:02x}")).collect()),
            },
            Err(u) => Blob::Unavailable(u.clone()),
        }
    }

    fn to_result(&self, what: &str) -> Result<Vec<u8>, Unavailable> {
        match self {
            Blob::Text(s) => Ok(s.as_bytes().to_vec()),
            Blob::Hex(h) => {
                let h = h.as_bytes();
                if !h.len().is_multiple_of(2) {
                    return Err(Unavailable::malformed(what, "odd-length hex in capture"));
                }
                h.chunks(2)
                    .map(|p| {
                        std::str::from_utf8(p)
                            .ok()
                            .and_then(|s| u8::from_str_radix(s, 16).ok())
                            .ok_or_else(|| Unavailable::malformed(what, "bad hex in capture"))
                    })
                    .collect()
            }
            Blob::Unavailable(u) => Err(u.clone()),
        }
    }
}

/// Everything read at one instant: files and probes by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// Milliseconds since the first capture of the same run (0 for the first;
    /// the interval for the second reading of `check --sample`).
    pub elapsed_ms: u64,
    pub items: BTreeMap<String, Blob>,
}

enum Source {
    Live { prefix: PathBuf },
    Captured(Capture),
}

type Read = Result<Vec<u8>, Unavailable>;

/// Reads of one instant shared by the roots of several namespaces: only
/// paths that are the same in every network namespace go in
/// ([`machine_wide`]).
#[derive(Clone, Default)]
pub struct InstantCache(Arc<Mutex<HashMap<String, Read>>>);

impl InstantCache {
    fn get_or(&self, key: &str, read: impl FnOnce() -> Read) -> Read {
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = lock().get(key) {
            return r.clone();
        }
        // Not held while reading: a probe may read other paths.
        let r = read();
        lock().insert(key.to_string(), r.clone());
        r
    }
}

/// Whether a path (or `dir:`/`probe:` key) reads the same in every network
/// namespace of the machine: the kernel log, memory, slabs, the command
/// line, modules, fs and kernel sysctls, and config files. Not
/// `proc/sys/net`, `proc/net` or the per-namespace probes.
pub fn machine_wide(key: &str) -> bool {
    let k = key.strip_prefix("dir:").unwrap_or(key);
    const EXACT: &[&str] = &[
        "proc/meminfo",
        "proc/uptime",
        "proc/stat",
        "proc/slabinfo",
        "proc/cmdline",
        "proc/modules",
        "dev/kmsg",
        "probe:kmsg",
    ];
    const UNDER: &[&str] = &[
        "proc/sys/kernel/",
        "proc/sys/fs/",
        "sys/module/",
        "etc/",
        "run/",
        "usr/",
        "lib/",
    ];
    EXACT.contains(&k) || UNDER.iter().any(|p| k.starts_with(p))
}

/// The one door through which readers see a machine.
pub struct Root {
    source: Source,
    record: Option<RefCell<Capture>>,
    deep: bool,
    /// This instant's reads so far (live roots).
    memo: RefCell<HashMap<String, Read>>,
    /// Machine-wide reads shared with other namespaces' roots of this instant.
    shared: Option<InstantCache>,
}

impl Root {
    /// The live machine under `/`.
    pub fn live() -> Root {
        Root::live_at(PathBuf::from("/"))
    }

    /// The live machine with its /proc, /sys, /etc under `prefix`
    /// (e.g. `/host` in a container with the host's filesystems mounted).
    pub fn live_at(prefix: PathBuf) -> Root {
        Root {
            source: Source::Live { prefix },
            record: None,
            deep: false,
            memo: RefCell::default(),
            shared: None,
        }
    }

    /// Replay a capture.
    pub fn captured(c: Capture) -> Root {
        Root {
            source: Source::Captured(c),
            record: None,
            deep: false,
            memo: RefCell::default(),
            shared: None,
        }
    }

    /// Record every read from now on (live roots; no effect on captures).
    pub fn recording(mut self, elapsed_ms: u64) -> Root {
        if let Source::Live { .. } = self.source {
            self.record = Some(RefCell::new(Capture {
                elapsed_ms,
                items: BTreeMap::new(),
            }));
        }
        self
    }

    /// Share machine-wide reads with the other roots of this instant.
    pub fn sharing(mut self, cache: &InstantCache) -> Root {
        self.shared = Some(cache.clone());
        self
    }

    /// A live read of `key`, at most once per instant: from this root's
    /// memory, else (machine-wide keys) the instant's shared cache, else `read`.
    fn once(&self, key: &str, read: impl FnOnce() -> Read) -> Read {
        if let Some(r) = self.memo.borrow().get(key) {
            return r.clone();
        }
        let r = match &self.shared {
            Some(c) if machine_wide(key) => c.get_or(key, read),
            _ => read(),
        };
        self.memo.borrow_mut().insert(key.to_string(), r.clone());
        self.remember(key, &r);
        r
    }

    /// A probe's result measured before this instant (the creators a
    /// `--sample` watched): [`Root::probe`] returns it, and a recording
    /// keeps it. No effect on captures, which replay what they hold.
    pub fn seeded(self, key: &str, r: Result<Vec<u8>, Unavailable>) -> Root {
        if let Source::Live { .. } = self.source {
            self.remember(key, &r);
            self.memo.borrow_mut().insert(key.to_string(), r);
        }
        self
    }

    /// Allow expensive live reads (dumping a large conntrack table): `--deep`.
    pub fn deep(mut self, on: bool) -> Root {
        self.deep = on;
        self
    }

    /// Whether expensive live reads are allowed.
    pub fn is_deep(&self) -> bool {
        self.deep
    }

    /// Milliseconds since the first reading of this run (see [`Capture::elapsed_ms`]).
    pub fn elapsed_ms(&self) -> u64 {
        match (&self.source, &self.record) {
            (Source::Captured(c), _) => c.elapsed_ms,
            (_, Some(r)) => r.borrow().elapsed_ms,
            _ => 0,
        }
    }

    /// What was recorded so far.
    pub fn take_capture(&self) -> Option<Capture> {
        self.record
            .as_ref()
            .map(|r| std::mem::take(&mut *r.borrow_mut()))
    }

    /// Read a whole file, e.g. `proc/sys/net/netfilter/nf_conntrack_max`.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, Unavailable> {
        let path = path.trim_start_matches('/');
        match &self.source {
            Source::Captured(c) => lookup(c, path),
            Source::Live { prefix } => self.once(path, || {
                read_live(&live_path(prefix, path)).map_err(|e| Unavailable::from_io(path, &e))
            }),
        }
    }

    /// Read a file as text (lossy: /proc is ASCII; a stray byte must not
    /// make a whole source unavailable).
    pub fn read_text(&self, path: &str) -> Result<String, Unavailable> {
        self.read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Names of the entries of a directory (sorted), recorded as `dir:PATH`.
    pub fn list_dir(&self, path: &str) -> Result<Vec<String>, Unavailable> {
        let path = path.trim_start_matches('/');
        let key = format!("dir:{path}");
        let bytes = match &self.source {
            Source::Captured(c) => lookup(c, &key)?,
            Source::Live { prefix } => self.once(&key, || {
                std::fs::read_dir(live_path(prefix, path))
                    .map(|rd| {
                        let mut names: Vec<String> = rd
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        names.sort();
                        names.join("\n").into_bytes()
                    })
                    .map_err(|e| Unavailable::from_io(path, &e))
            })?,
        };
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// A fact that is not a file: run `f` live (and record its bytes), or
    /// replay what a capture recorded under `key` (`probe:NAME`). Under a
    /// prefix other than `/` (a fixture tree) `f` is not run: the bytes are
    /// read from the file `probe/NAME` in the tree, so a tree can stand for
    /// a whole machine.
    pub fn probe(
        &self,
        key: &str,
        f: impl FnOnce() -> Result<Vec<u8>, Unavailable>,
    ) -> Result<Vec<u8>, Unavailable> {
        match &self.source {
            Source::Captured(c) => lookup(c, key),
            Source::Live { prefix } if prefix.as_os_str() != "/" => self.once(key, || {
                let name = key.strip_prefix("probe:").unwrap_or(key);
                read_live(&prefix.join("probe").join(name))
                    .map_err(|e| Unavailable::from_io(key, &e))
            }),
            Source::Live { .. } => self.once(key, f),
        }
    }

    /// The live path prefix, for code that must open files itself
    /// (e.g. /dev/kmsg non-blocking). None for captures.
    pub fn live_prefix(&self) -> Option<&std::path::Path> {
        match &self.source {
            Source::Live { prefix } => Some(prefix),
            Source::Captured(_) => None,
        }
    }

    fn remember(&self, key: &str, r: &Result<Vec<u8>, Unavailable>) {
        if let Some(rec) = &self.record {
            rec.borrow_mut()
                .items
                .insert(key.to_string(), Blob::from_result(r));
        }
    }
}

/// Where a relative kernel path lives under a live `prefix`. `proc/net/...`
/// goes through `proc/thread-self/net` whenever the tree has a real procfs
/// there (`/`, or a host's /proc mounted under `/host`): `proc/net` is the
/// process leader's namespace, not that of the thread that entered
/// `--netns`. A fixture tree (no thread-self) is read as laid out.
/// One live file, bounded: see [`crate::infile::read_regular`].
fn read_live(p: &std::path::Path) -> std::io::Result<Vec<u8>> {
    crate::infile::read_regular(p, crate::infile::MAX_TREE_FILE)
}

fn live_path(prefix: &std::path::Path, path: &str) -> PathBuf {
    match path.strip_prefix("proc/net/") {
        Some(rest) if super::netns::has_real_proc(prefix) => {
            prefix.join("proc/thread-self/net").join(rest)
        }
        // A mounted machine's (`--root /host`) config: its absolute links
        // lead into it, not into ours.
        _ if prefix != std::path::Path::new("/")
            && ["etc/", "run/", "usr/", "lib/"]
                .iter()
                .any(|d| path.starts_with(d)) =>
        {
            match crate::confine::resolve(prefix, path) {
                Ok(r) => prefix.join(r),
                Err(_) => prefix.join(path),
            }
        }
        _ => prefix.join(path),
    }
}

fn lookup(c: &Capture, key: &str) -> Result<Vec<u8>, Unavailable> {
    match c.items.get(key) {
        Some(b) => b.to_result(key),
        None => Err(Unavailable::Missing {
            what: format!("{key} (not in snapshot)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_replays_what_live_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/sys/net/netfilter")).unwrap();
        std::fs::write(
            dir.path().join("proc/sys/net/netfilter/nf_conntrack_max"),
            "262144\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bin.dat"), [0xffu8, 0x00, 0x41]).unwrap();
        let live = Root::live_at(dir.path().to_path_buf()).recording(0);
        let a = live
            .read("proc/sys/net/netfilter/nf_conntrack_max")
            .unwrap();
        let b = live.read("bin.dat").unwrap();
        let missing = live.read("proc/sys/net/netfilter/nope").unwrap_err();
        std::fs::create_dir_all(dir.path().join("probe")).unwrap();
        std::fs::write(dir.path().join("probe/x"), "hello").unwrap();
        let probed = live
            .probe("probe:x", || panic!("a tree replays probes from files"))
            .unwrap();
        assert_eq!(probed, b"hello");
        assert_eq!(live.list_dir("probe").unwrap(), vec!["x".to_string()]);
        let cap = live.take_capture().unwrap();

        let json = serde_json::to_string(&cap).unwrap();
        let back: Capture = serde_json::from_str(&json).unwrap();
        let replay = Root::captured(back);
        assert_eq!(
            replay
                .read("proc/sys/net/netfilter/nf_conntrack_max")
                .unwrap(),
            a
        );
        assert_eq!(replay.read("bin.dat").unwrap(), b);
        assert_eq!(
            replay.read("proc/sys/net/netfilter/nope").unwrap_err(),
            missing
        );
        assert_eq!(
            replay.probe("probe:x", || panic!("must not run")).unwrap(),
            probed
        );
        assert!(matches!(
            replay.read("never/read"),
            Err(Unavailable::Missing { .. })
        ));
    }
}
