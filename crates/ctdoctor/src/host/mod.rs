//! Readers: every byte ctdoctor learns about a machine comes in here.
//!
//! All reads go through one [`Root`]: live (`/`, or a prefix such as
//! `/host` for containerised deployments) or a [`Capture`] loaded from a
//! snapshot file. A live `Root` can record what it read, which is how
//! `ctdoctor snapshot` works: the same readers, the same bytes, offline.
//!
//! Each source has its own module with a pure `parse_*` function (bytes in,
//! typed fact out: proptest-able) and a `read(&Root)` that fetches the bytes.
//! A source that cannot be read is a typed [`Unavailable`], never a panic and
//! never a failed run.
//!
//! Not for: interpreting facts (that is `checks`), or writing anything.

pub mod capture;
pub mod conntrack;
pub mod consumers;
pub mod ethtool;
pub mod fds;
pub mod kmsg;
pub mod netlink;
pub mod netns;
pub mod nic;
pub mod persist;
pub mod rtnl;
pub mod sockdiag;
pub mod sockets;
pub mod stat;
pub mod system;
pub mod table;

pub use capture::{Capture, Root};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a fact could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Unavailable {
    /// The file or interface does not exist (module not loaded, old kernel,
    /// procfs support not built, not in this capture).
    Missing { what: String },
    /// Reading needs privileges we do not have (usually root).
    NeedsRoot { what: String },
    /// The source exists but its content could not be understood.
    Malformed { what: String, detail: String },
    /// Any other failure, with the OS error or a reason.
    Failed { what: String, detail: String },
}

impl Unavailable {
    pub fn what(&self) -> &str {
        match self {
            Unavailable::Missing { what }
            | Unavailable::NeedsRoot { what }
            | Unavailable::Malformed { what, .. }
            | Unavailable::Failed { what, .. } => what,
        }
    }

    /// Classify an I/O error on `what`.
    pub fn from_io(what: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::NotFound => Unavailable::Missing { what: what.into() },
            ErrorKind::PermissionDenied => Unavailable::NeedsRoot { what: what.into() },
            _ => match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    Unavailable::NeedsRoot { what: what.into() }
                }
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::EOPNOTSUPP) => {
                    Unavailable::Missing { what: what.into() }
                }
                _ => Unavailable::Failed {
                    what: what.into(),
                    detail: e.to_string(),
                },
            },
        }
    }

    pub fn malformed(what: &str, detail: impl Into<String>) -> Self {
        Unavailable::Malformed {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Missing { what } => write!(f, "{what}: not present"),
            Unavailable::NeedsRoot { what } => write!(f, "{what}: permission denied (run as root)"),
            Unavailable::Malformed { what, detail } => {
                write!(f, "{what}: unreadable content: {detail}")
            }
            Unavailable::Failed { what, detail } => write!(f, "{what}: {detail}"),
        }
    }
}

/// A fact, or why it is not known.
pub type Fact<T> = Result<T, Unavailable>;

/// Parse a whole file holding one unsigned integer (sysctl style).
pub fn parse_u64(what: &str, bytes: &[u8]) -> Fact<u64> {
    let s = std::str::from_utf8(bytes).map_err(|_| Unavailable::malformed(what, "not UTF-8"))?;
    s.trim().parse::<u64>().map_err(|_| {
        Unavailable::malformed(
            what,
            format!("expected an integer, got {:?}", truncate(s.trim(), 40)),
        )
    })
}

/// Read a file holding one unsigned integer.
pub fn read_u64(root: &Root, path: &str) -> Fact<u64> {
    let bytes = root.read(path)?;
    parse_u64(path, &bytes)
}

/// At most `n` characters of `s`, for error messages.
pub fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Read every fact of `target`'s namespace from the live machine (under
/// `prefix`, normally `/`): once, or twice `sample` apart for rates. With
/// `record`, also returns the captures for a snapshot file.
pub fn collect_live(
    prefix: &std::path::Path,
    target: &netns::Target,
    sample: Option<std::time::Duration>,
    record: bool,
) -> anyhow::Result<(crate::snapshot::Snapshot, Vec<Capture>)> {
    collect_live_with(
        prefix,
        target,
        &Collect {
            sample,
            record,
            deep: false,
        },
    )
}

/// How [`collect_live_with`] reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Collect {
    /// Read twice, this far apart, for rates.
    pub sample: Option<std::time::Duration>,
    /// Also return the captures (for a snapshot file).
    pub record: bool,
    /// Allow expensive reads (dumping a table of any size).
    pub deep: bool,
}

/// [`collect_live`] with every option.
pub fn collect_live_with(
    prefix: &std::path::Path,
    target: &netns::Target,
    opts: &Collect,
) -> anyhow::Result<(crate::snapshot::Snapshot, Vec<Capture>)> {
    let Collect {
        sample,
        record,
        deep,
    } = *opts;
    use crate::snapshot::{Facts, Snapshot};
    let init_inode = netns::init_inode();
    let (mut snap, mut caps) = netns::run_in(target, || {
        let mut caps = Vec::new();
        let read_once = |elapsed_ms: u64, caps: &mut Vec<Capture>| {
            let root = Root::live_at(prefix.to_path_buf()).deep(deep);
            let root = if record {
                root.recording(elapsed_ms)
            } else {
                root
            };
            let mut facts = Facts::read(&root);
            facts.elapsed_ms = elapsed_ms;
            caps.extend(root.take_capture());
            facts
        };
        let start = std::time::Instant::now();
        let first = read_once(0, &mut caps);
        let snap = match sample {
            None => Snapshot {
                now: first,
                earlier: None,
            },
            Some(d) => {
                std::thread::sleep(d);
                let second = read_once(start.elapsed().as_millis() as u64, &mut caps);
                Snapshot {
                    now: second,
                    earlier: Some(first),
                }
            }
        };
        (snap, caps)
    })?;
    // A tree under another prefix describes itself (its probe/netns_id);
    // a real procfs under a prefix (a host's /proc at /host/proc) does not.
    let live_root = netns::has_real_proc(prefix);
    for facts in std::iter::once(&mut snap.now)
        .chain(snap.earlier.as_mut())
        .filter(|_| live_root)
    {
        if let Ok(id) = &mut facts.netns {
            let naming = netns::naming(target, id.inode, init_inode);
            id.name = naming.name;
            id.pinned_since_unix = naming.pinned_since_unix;
            id.is_init = match id.inode {
                Some(ino) => netns::is_init(ino, init_inode),
                None => matches!(target, netns::Target::Current),
            };
        }
    }
    if let (true, Ok(id)) = (live_root, &snap.now.netns) {
        let blob = capture::Blob::Text(serde_json::to_string(id).expect("NetnsId serialises"));
        for c in &mut caps {
            c.items.insert(netns::PROBE_ID.to_string(), blob.clone());
        }
    }
    Ok((snap, caps))
}

/// Rebuild the snapshot a capture set describes (offline `check`).
pub fn from_captures(caps: Vec<Capture>) -> crate::snapshot::Snapshot {
    use crate::snapshot::{Facts, Snapshot};
    let mut facts: Vec<Facts> = caps
        .into_iter()
        .map(|c| Facts::read(&Root::captured(c)))
        .collect();
    let now = facts
        .pop()
        .expect("a snapshot file has at least one capture");
    Snapshot {
        now,
        earlier: facts.pop(),
    }
}
