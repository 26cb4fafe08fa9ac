//! The journal: one JSON file per change set under
//! `/var/lib/ctdoctor/journal/` (under `--root DIR` when given), written and
//! fsync'd — file and directory — before anything it describes is touched,
//! so a change set interrupted at any point (kill -9, power loss) can be
//! rolled back from it.
//!
//! A [`ChangeSet`] holds the old state of everything it changes as
//! [`Entry`] values: a runtime value with its namespace, a file's old text
//! and mode or its absence, an nft table that was added. Its [`State`] goes
//! `pending` (journal written, writes may have started) → `applied` →
//! `rolled_back`; each move rewrites the file atomically. Entries are an
//! internally tagged enum (`"kind"`): a new kind (`notrack`'s rulesets, say)
//! is a new variant, and a journal from a newer ctdoctor with a kind this
//! one does not know reads as [`Entry::Unknown`] and is refused on
//! rollback rather than half undone.
//!
//! Writers hold [`Journal::lock`] (an flock) for the whole of an apply or
//! rollback, so a `pending` change set seen while holding it belongs to a
//! process that died.
//!
//! Not for: deciding what to change (tune::plan) or changing it
//! (tune::apply).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the journal lives, relative to the root.
pub const JOURNAL_DIR: &str = "var/lib/ctdoctor/journal";
/// The journal format this ctdoctor writes.
pub const VERSION: u32 = 1;

/// A network namespace as the journal names it: how to enter it again and
/// how to tell it is still the same one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsRef {
    /// As `--netns` takes it (a name under /run/netns, a pid, a path); None
    /// for the namespace ctdoctor itself ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<String>,
    /// What reports call it (`gw`, `pid 4242`); None for the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Its nsfs inode when the change was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// Whether it was the host's (init) namespace.
    pub is_init: bool,
}

impl NetnsRef {
    /// The namespace `--netns arg` named (None: ctdoctor's own), from the
    /// facts read in it.
    pub fn of(arg: Option<String>, facts: &crate::snapshot::Facts) -> NetnsRef {
        NetnsRef {
            arg,
            label: crate::checks::suggest::netns_label(facts),
            inode: facts.netns.as_ref().ok().and_then(|n| n.inode),
            is_init: facts.is_init(),
        }
    }

    /// How messages name it.
    pub fn describe(&self) -> String {
        match (&self.label, self.is_init) {
            (Some(l), _) => format!("netns {l}"),
            (None, true) => "the host netns".into(),
            (None, false) => match self.inode {
                Some(i) => format!("netns inode {i}"),
                None => "the current netns".into(),
            },
        }
    }
}

/// A file's content and permission bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub text: String,
    pub mode: u32,
}

/// One thing a change set changed, with what it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A runtime value (`proc/sys/...` or `sys/module/...`, relative) in
    /// `netns`: rollback writes `old` back there.
    Sysctl {
        key: String,
        path: String,
        netns: NetnsRef,
        old: String,
        new: String,
    },
    /// A file under the change set's root (relative path): rollback writes
    /// `old` back (its text and mode), or removes the file when it did not
    /// exist, then the directories tune created for it if they are empty.
    File {
        path: String,
        old: Option<FileState>,
        new: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        created_dirs: Vec<String>,
    },
    /// An nft table added in `netns` (`notrack --apply`): rollback deletes it.
    NftTable {
        netns: NetnsRef,
        family: String,
        name: String,
    },
    /// Rules carrying the comment `mark` that `notrack --apply` inserted
    /// into other tables' chains (`ct state untracked accept`) in `netns`:
    /// rollback deletes every rule so marked, found by its comment.
    NftMarked { netns: NetnsRef, mark: String },
    /// A kind this ctdoctor does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

impl Entry {
    /// One line for history and reports.
    pub fn describe(&self) -> String {
        match self {
            Entry::Sysctl {
                key,
                netns,
                old,
                new,
                ..
            } => format!("{key}: {old} -> {new} ({})", netns.describe()),
            Entry::File { path, old, .. } => match old {
                Some(_) => format!("/{path} edited"),
                None => format!("/{path} created"),
            },
            Entry::NftTable {
                netns,
                family,
                name,
            } => format!("nft table {family} {name} added ({})", netns.describe()),
            Entry::NftMarked { netns, mark } => {
                format!(
                    "nft rules commented \"{mark}\" added ({})",
                    netns.describe()
                )
            }
            Entry::Unknown => "an entry of a kind this ctdoctor does not know".into(),
        }
    }
}

/// Where a change set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Journal written; the writes may have started (and, if no ctdoctor
    /// holds the lock, were interrupted).
    Pending,
    Applied,
    RolledBack,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Applied => "applied",
            State::RolledBack => "rolled_back",
        }
    }
}

/// A dated line of what happened to a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time_unix: i64,
    pub what: String,
}

/// One change set: one file of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    pub version: u32,
    /// `YYYYMMDDTHHMMSSZ-PID`, then `.N` for the N-th further change set one
    /// process makes (the lab's fix makes several in one second): unique,
    /// and sorts by time.
    pub id: String,
    pub created_unix: i64,
    /// UTC, RFC 3339.
    pub created: String,
    /// The command line that made it.
    pub command: String,
    /// The root its files are under (`/` normally).
    pub root: String,
    /// The namespace the command was about.
    pub netns: NetnsRef,
    pub state: State,
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub events: Vec<Event>,
}

impl ChangeSet {
    /// A pending change set with a fresh id.
    pub fn new(command: String, root: &Path, netns: NetnsRef, entries: Vec<Entry>) -> ChangeSet {
        let now = now_unix();
        ChangeSet {
            version: VERSION,
            id: {
                static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let base = format!("{}-{}", compact_utc(now), std::process::id());
                if n == 0 {
                    base
                } else {
                    format!("{base}.{n}")
                }
            },
            created_unix: now,
            created: rfc3339(now),
            command,
            root: root.display().to_string(),
            netns,
            state: State::Pending,
            entries,
            events: Vec::new(),
        }
    }

    /// Move to `state`, noting why.
    pub fn mark(&mut self, state: State, what: impl Into<String>) {
        self.state = state;
        self.events.push(Event {
            time_unix: now_unix(),
            what: what.into(),
        });
    }
}

/// Seconds since the epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// (year, month, day, hour, minute, second) in UTC (proleptic Gregorian;
/// Howard Hinnant's days-to-civil).
fn utc(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `2026-11-25T10:49:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = utc(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20261125T104900Z`.
fn compact_utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = utc(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Write `bytes` to `path` atomically: a temporary file in the same
/// directory, fsync'd, renamed over `path`, then the directory fsync'd.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.ctdoctor-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have narrowed the mode asked for.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory (makes a rename or unlink in it durable).
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `dir` and its missing parents; returns the ones created, outermost
/// first (so a rollback can remove them, innermost first).
pub fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    missing.reverse();
    for m in &missing {
        match std::fs::create_dir(m) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = m.parent() {
            fsync_dir(p)?;
        }
    }
    Ok(missing)
}

/// A journal file that does not parse: its path and why.
pub type Unreadable = (PathBuf, String);

/// The journal directory of one root.
#[derive(Debug, Clone)]
pub struct Journal {
    pub dir: PathBuf,
}

/// The journal's lock, held while it lives.
pub struct Lock {
    _file: File,
}

impl Journal {
    /// The journal under `root` (`/` for the machine's own).
    pub fn at(root: &Path) -> Journal {
        Journal {
            dir: root.join(JOURNAL_DIR),
        }
    }

    /// Take the journal's lock (creating the directory): fails at once,
    /// naming the reason, when another ctdoctor holds it.
    pub fn lock(&self) -> Result<Lock> {
        create_dirs(&self.dir)
            .with_context(|| format!("creating the journal directory {}", self.dir.display()))?;
        let path = self.dir.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                anyhow::bail!(
                    "another ctdoctor tune holds the journal lock {} (wait for it to finish)",
                    path.display()
                );
            }
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
        Ok(Lock { _file: f })
    }

    /// The file of change set `id`.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Write a change set (atomically, fsync'd with its directory).
    pub fn write(&self, cs: &ChangeSet) -> Result<PathBuf> {
        let path = self.path_of(&cs.id);
        let mut json = serde_json::to_vec_pretty(cs)?;
        json.push(b'\n');
        write_atomic(&path, &json, 0o600)
            .with_context(|| format!("writing the journal {}", path.display()))?;
        Ok(path)
    }

    /// Every change set, oldest first; files that do not parse are returned
    /// as (path, error) beside them.
    pub fn list(&self) -> Result<(Vec<ChangeSet>, Vec<Unreadable>)> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()))
            }
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", self.dir.display()));
            }
        };
        let mut sets = Vec::new();
        let mut bad = Vec::new();
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        for p in paths {
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<ChangeSet>(&b).map_err(|e| e.to_string()))
            {
                Ok(cs) => sets.push(cs),
                Err(e) => bad.push((p, e)),
            }
        }
        sets.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
        Ok((sets, bad))
    }

    /// Change set `id`.
    pub fn read(&self, id: &str) -> Result<ChangeSet> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            anyhow::bail!("invalid change set id {id:?}");
        }
        let path = self.path_of(id);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "no change set {id} in {} (see `ctdoctor tune --history`)",
                self.dir.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_sets_made_in_one_second_by_one_process_get_distinct_ids() {
        let ids: Vec<String> = (0..3)
            .map(|_| ChangeSet::new(String::new(), Path::new("/"), NetnsRef::default(), vec![]).id)
            .collect();
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_603_740), "2026-11-25T10:49:00Z");
        assert_eq!(compact_utc(1_795_603_740), "20261125T104900Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn entries_round_trip_and_unknown_kinds_are_kept_apart() {
        let ns = NetnsRef {
            arg: Some("gw".into()),
            label: Some("gw".into()),
            inode: Some(4026532400),
            is_init: false,
        };
        let cs = ChangeSet::new(
            "ctdoctor tune --set x=1".into(),
            Path::new("/"),
            ns.clone(),
            vec![
                Entry::Sysctl {
                    key: "net.netfilter.nf_conntrack_tcp_timeout_time_wait".into(),
                    path: "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait".into(),
                    netns: ns.clone(),
                    old: "120".into(),
                    new: "30".into(),
                },
                Entry::File {
                    path: "etc/sysctl.d/90-ctdoctor.conf".into(),
                    old: None,
                    new: "a = 1\n".into(),
                    created_dirs: vec![],
                },
                Entry::NftTable {
                    netns: ns,
                    family: "inet".into(),
                    name: "ctdoctor_notrack".into(),
                },
            ],
        );
        let json = serde_json::to_string(&cs).unwrap();
        assert_eq!(serde_json::from_str::<ChangeSet>(&json).unwrap(), cs);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["entries"][0]["kind"], "sysctl");
        assert_eq!(v["entries"][1]["old"], serde_json::Value::Null);
        assert_eq!(v["state"], "pending");
        let future = json.replace("\"nft_table\"", "\"nft_set_element\"");
        let back: ChangeSet = serde_json::from_str(&future).unwrap();
        assert_eq!(back.entries[2], Entry::Unknown);
    }

    #[test]
    fn journal_files_are_written_listed_and_locked() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::at(d.path());
        let lock = j.lock().unwrap();
        assert!(j.lock().is_err(), "a second lock fails at once");
        let mut cs = ChangeSet::new("x".into(), d.path(), NetnsRef::default(), vec![]);
        let p = j.write(&cs).unwrap();
        cs.mark(State::Applied, "applied");
        j.write(&cs).unwrap();
        assert_eq!(j.read(&cs.id).unwrap().state, State::Applied);
        std::fs::write(j.dir.join("junk.json"), "{").unwrap();
        let (sets, bad) = j.list().unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(bad.len(), 1);
        assert!(p.starts_with(d.path().join(JOURNAL_DIR)));
        assert!(j.read("../x").is_err());
        drop(lock);
        assert!(j.lock().is_ok());
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn created_dirs_are_listed_outermost_first() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        let made = create_dirs(&deep).unwrap();
        assert_eq!(
            made,
            vec![d.path().join("a"), d.path().join("a/b"), deep.clone()]
        );
        assert!(create_dirs(&deep).unwrap().is_empty());
    }
}
