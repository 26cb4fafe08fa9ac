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
//! The journal is trusted only as far as apply could have written it
//! (ctdoctor runs as root and rollback carries out what a change set says):
//! its directories are made 0700 whatever the umask and refused when they
//! or a change set file are not owned by the effective user or are
//! writable by group or others; every change set read is validated
//! ([`ChangeSet::validate`]: keys tune accepts at their own paths, values
//! of digits, file paths confined to the files tune writes, modes within
//! 0644, nft names by grammar). Change sets are ordered by a sequence
//! number given under the lock, not by their ids' text; ids carry the
//! time, the pid and random bits, and a new one never overwrites a file.
//! Journals from before the sequence (none in the file) sort first, by
//! time then id.
//!
//! Not for: deciding what to change (tune::plan) or changing it
//! (tune::apply).

use super::write;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the journal lives, relative to the root.
pub const JOURNAL_DIR: &str = "var/lib/ctdoctor/journal";
/// The journal format this ctdoctor writes.
pub const VERSION: u32 = 1;
/// The largest change set file read (a change set holds a few files' texts).
pub const MAX_FILE: u64 = 8 << 20;

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
            label: crate::advice::suggest::netns_label(facts),
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
    /// `YYYYMMDDTHHMMSSZ-PID-RANDOM` (older journals: `YYYYMMDDTHHMMSSZ-PID`
    /// with `.N`): unique; not the order (see `seq`).
    pub id: String,
    /// Its place in the journal: one more than the largest before it,
    /// given under the lock ([`Journal::begin`]). 0 in journals written
    /// before it existed (they sort first, by time).
    #[serde(default)]
    pub seq: u64,
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
            id: new_id(now),
            seq: 0,
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

    /// Whether apply could have written this change set: its id, every
    /// entry and its namespace (see the module docs). Unknown entry kinds
    /// pass here and are refused by rollback.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_id(&self.id) {
            return Err(format!("{:?} is not a change set id", self.id));
        }
        self.netns.validate()?;
        for e in &self.entries {
            e.validate()?;
        }
        Ok(())
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

/// `YYYYMMDDTHHMMSSZ-PID-RANDOM`.
fn new_id(now: i64) -> String {
    format!(
        "{}-{}-{:08x}",
        compact_utc(now),
        std::process::id(),
        write::random_u64() as u32
    )
}

/// Whether `id` has the shape of a change set id (old or new): letters,
/// digits, `-` and `.`, not starting with `.`, at most 64 bytes.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A value as the kernel prints it and tune writes it: digits, or two
/// groups of digits (a port range).
fn valid_value(v: &str) -> bool {
    let w: Vec<&str> = v.split_whitespace().collect();
    v.len() <= 64
        && !v.contains(['\n', '\r'])
        && (1..=2).contains(&w.len())
        && w.iter()
            .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
}

/// An nft identifier (table names): a letter, then letters, digits, `_`.
pub fn valid_nft_name(n: &str) -> bool {
    n.len() <= 64
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A printable single-line text of at most `max` bytes.
fn plain_text(t: &str, max: usize) -> bool {
    t.len() <= max && !t.chars().any(char::is_control)
}

impl NetnsRef {
    /// Whether the reference is one `--netns` could have given.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.arg {
            if !plain_text(a, 4096) {
                return Err(format!("namespace {a:?} holds control characters"));
            }
            netns::Target::parse(a).map_err(|e| format!("namespace {a:?}: {e}"))?;
        }
        if self.label.as_deref().is_some_and(|l| !plain_text(l, 256)) {
            return Err("a namespace label holds control characters".into());
        }
        Ok(())
    }
}

impl Entry {
    /// Whether apply could have written this entry (see the module docs).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Entry::Sysctl {
                key,
                path,
                netns,
                old,
                new,
            } => {
                let Some(k) = crate::knobs::KNOBS.iter().find(|k| k.key == key) else {
                    return Err(format!("{key:?} is not a setting tune changes"));
                };
                if k.path != path {
                    return Err(format!("{key}: path {path:?} is not its file ({})", k.path));
                }
                for v in [old, new] {
                    if !valid_value(v) {
                        return Err(format!("{key}: {v:?} is not a value tune writes"));
                    }
                }
                netns.validate()
            }
            Entry::File {
                path,
                old,
                new: _,
                created_dirs,
            } => {
                write::plain_relative(path)?;
                if !write::writable(path) {
                    return Err(format!("/{path} is not a file tune writes"));
                }
                if let Some(o) = old {
                    if o.mode & !write::MAX_MODE != 0 {
                        return Err(format!(
                            "/{path}: mode {:04o} has bits outside {:04o}",
                            o.mode,
                            write::MAX_MODE
                        ));
                    }
                }
                for d in created_dirs {
                    write::plain_relative(d)?;
                    let p = Path::new(path);
                    if p == Path::new(d) || !p.starts_with(d) {
                        return Err(format!("/{d} is not a directory above /{path}"));
                    }
                }
                Ok(())
            }
            Entry::NftTable {
                netns,
                family,
                name,
            } => {
                if !["ip", "ip6", "inet", "arp", "bridge", "netdev"].contains(&family.as_str()) {
                    return Err(format!("{family:?} is not an nft family"));
                }
                if !valid_nft_name(name) {
                    return Err(format!("{name:?} is not an nft table name"));
                }
                netns.validate()
            }
            Entry::NftMarked { netns, mark } => {
                if mark.is_empty()
                    || mark.len() > 128
                    || !mark
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b" _.:-".contains(&b))
                {
                    return Err(format!("{mark:?} is not a rule comment notrack writes"));
                }
                netns.validate()
            }
            Entry::Unknown => Ok(()),
        }
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

pub use write::{atomic as write_atomic, fsync_dir};

/// A journal file that cannot be used: its path and why.
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

/// Why apply and rollback stop at the first journal file that cannot be
/// used (see [`Journal::list`]), and what to do about it; None when all
/// can be used.
pub fn unusable(dir: &Path, bad: &[Unreadable]) -> Option<String> {
    let (p, why) = bad.first()?;
    Some(format!(
        "the journal holds a change set that cannot be used, {}: {why}; look at it (a change \
         set ctdoctor did not write, or damaged); when it is not needed, move it out of {} and \
         run again",
        p.display(),
        dir.display()
    ))
}

impl Journal {
    /// The journal under `root` (`/` for the machine's own).
    pub fn at(root: &Path) -> Journal {
        Journal {
            dir: root.join(JOURNAL_DIR),
        }
    }

    /// `var/lib/ctdoctor` and its `journal` under the root.
    fn own_dirs(&self) -> [&Path; 2] {
        [self.dir.parent().unwrap_or(&self.dir), &self.dir]
    }

    /// Refused unless the journal's directories are ours and closed to
    /// others (see the module docs). Ok when they do not exist yet.
    pub fn trusted(&self) -> Result<()> {
        for d in self.own_dirs() {
            match std::fs::symlink_metadata(d) {
                Ok(m) if !m.is_dir() => anyhow::bail!(
                    "refusing the journal: {} is not a directory{}",
                    d.display(),
                    if m.file_type().is_symlink() {
                        " (a symbolic link)"
                    } else {
                        ""
                    }
                ),
                Ok(m) => {
                    if let Some(why) = write::untrusted(&m) {
                        anyhow::bail!(
                            "refusing the journal: {} is {why}, so a change set in it may not be \
                             ctdoctor's (rollback would carry out what it says). Check its files, \
                             then: chown root: {} && chmod 0700 {}",
                            d.display(),
                            d.display(),
                            d.display()
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading {}", d.display()))
                        .map_err(permission_hint)
                }
            }
        }
        Ok(())
    }

    /// Take the journal's lock (creating the directory, 0700): refused at
    /// once, naming the reason, when another ctdoctor holds it.
    pub fn lock(&self) -> Result<Lock> {
        if let Some(lib) = self.dir.parent().and_then(Path::parent) {
            write::create_dirs(lib, 0o755)
                .with_context(|| format!("creating {}", lib.display()))
                .map_err(permission_hint)?;
        }
        for d in self.own_dirs() {
            write::create_dirs(d, 0o700)
                .with_context(|| format!("creating the journal directory {}", d.display()))
                .map_err(permission_hint)?;
        }
        self.trusted()?;
        let path = self.dir.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
            .map_err(permission_hint)?;
        // SAFETY: flock on a file we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(super::apply::refused(format!(
                    "another ctdoctor tune holds the journal lock {} (wait for it to finish)",
                    path.display()
                )));
            }
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
        Ok(Lock { _file: f })
    }

    /// The file of change set `id`.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Write a new change set (holding the lock): its sequence number after
    /// every change set in the journal, an id no file has, then
    /// [`Journal::write`].
    pub fn begin(&self, cs: &mut ChangeSet) -> Result<PathBuf> {
        let (sets, bad) = self.list()?;
        if let Some(why) = unusable(&self.dir, &bad) {
            anyhow::bail!(why);
        }
        cs.seq = sets.iter().map(|s| s.seq).max().unwrap_or(0) + 1;
        while std::fs::symlink_metadata(self.path_of(&cs.id)).is_ok() {
            cs.id = new_id(cs.created_unix);
        }
        self.write(cs)
    }

    /// Write a change set (atomically, fsync'd with its directory).
    pub fn write(&self, cs: &ChangeSet) -> Result<PathBuf> {
        let path = self.path_of(&cs.id);
        let mut json = serde_json::to_vec_pretty(cs)?;
        json.push(b'\n');
        write::atomic(&path, &json, 0o600)
            .with_context(|| format!("writing the journal {}", path.display()))?;
        Ok(path)
    }

    /// Read and check one change set file (see the module docs).
    fn load(&self, path: &Path) -> Result<ChangeSet, String> {
        let mut f = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    "a symbolic link, not a change set file".to_string()
                } else {
                    e.to_string()
                }
            })?;
        let m = f.metadata().map_err(|e| e.to_string())?;
        if !m.is_file() {
            return Err("not a regular file".into());
        }
        if let Some(why) = write::untrusted(&m) {
            return Err(why);
        }
        if m.len() > MAX_FILE {
            return Err(format!("{} bytes, more than a change set holds", m.len()));
        }
        let mut bytes = Vec::new();
        f.by_ref()
            .take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        let cs: ChangeSet = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        cs.validate()
            .map_err(|e| format!("not as ctdoctor writes it: {e}"))?;
        if path.file_name() != self.path_of(&cs.id).file_name() {
            return Err(format!(
                "holds change set {}, not the one its name says",
                cs.id
            ));
        }
        Ok(cs)
    }

    /// Every change set, in order (sequence, then time and id for old
    /// journals); files that cannot be used are returned as (path, why)
    /// beside them.
    pub fn list(&self) -> Result<(Vec<ChangeSet>, Vec<Unreadable>)> {
        self.trusted()?;
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()))
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading {}", self.dir.display()))
                    .map_err(permission_hint);
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
            match self.load(&p) {
                Ok(cs) => sets.push(cs),
                Err(e) => bad.push((p, e)),
            }
        }
        sets.sort_by(|a, b| (a.seq, a.created_unix, &a.id).cmp(&(b.seq, b.created_unix, &b.id)));
        Ok((sets, bad))
    }

    /// Change set `id`.
    pub fn read(&self, id: &str) -> Result<ChangeSet> {
        if !valid_id(id) {
            anyhow::bail!("invalid change set id {id:?}");
        }
        self.trusted()?;
        let path = self.path_of(id);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "no change set {id} in {} (see `ctdoctor tune --history`)",
                self.dir.display()
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading {}", path.display()))
                    .map_err(permission_hint)
            }
            Ok(_) => {}
        }
        self.load(&path).map_err(|why| {
            anyhow::anyhow!(
                "{}",
                unusable(&self.dir, &[(path.clone(), why)]).unwrap_or_default()
            )
        })
    }
}

/// Add "(run as root)" to a permission error when not root.
pub fn permission_hint(e: anyhow::Error) -> anyhow::Error {
    let denied = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    });
    // SAFETY: geteuid has no failure mode.
    if denied && unsafe { libc::geteuid() } != 0 {
        e.context("permission denied: the journal is root's (run as root)")
    } else {
        e
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

    fn sysctl(old: &str) -> Entry {
        Entry::Sysctl {
            key: "net.netfilter.nf_conntrack_tcp_timeout_time_wait".into(),
            path: "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait".into(),
            netns: NetnsRef::default(),
            old: old.into(),
            new: "30".into(),
        }
    }

    fn file(path: &str, mode: u32, dirs: &[&str]) -> Entry {
        Entry::File {
            path: path.into(),
            old: Some(FileState {
                text: "x\n".into(),
                mode,
            }),
            new: "y\n".into(),
            created_dirs: dirs.iter().map(|d| d.to_string()).collect(),
        }
    }

    /// Defect 4 of issue 19: rollback did whatever a journal file said.
    #[test]
    fn a_journal_entry_apply_could_not_have_written_is_refused() {
        let good = [
            sysctl("120"),
            Entry::Sysctl {
                key: "net.ipv4.ip_local_port_range".into(),
                path: "proc/sys/net/ipv4/ip_local_port_range".into(),
                netns: NetnsRef::default(),
                old: "32768\t60999".into(),
                new: "1024 65000".into(),
            },
            file("etc/sysctl.d/90-ctdoctor.conf", 0o644, &["etc/sysctl.d"]),
            file("etc/sysctl.conf", 0o600, &[]),
            Entry::NftTable {
                netns: NetnsRef::default(),
                family: "inet".into(),
                name: "ctdoctor_notrack".into(),
            },
        ];
        for e in &good {
            assert_eq!(e.validate(), Ok(()), "{e:?}");
        }
        let bad = [
            // A sysctl path out of proc/sys, or not the key's own file.
            Entry::Sysctl {
                key: "net.netfilter.nf_conntrack_tcp_timeout_time_wait".into(),
                path: "proc/sys/kernel/core_pattern".into(),
                netns: NetnsRef::default(),
                old: "1".into(),
                new: "2".into(),
            },
            Entry::Sysctl {
                key: "kernel.core_pattern".into(),
                path: "proc/sys/kernel/core_pattern".into(),
                netns: NetnsRef::default(),
                old: "1".into(),
                new: "2".into(),
            },
            sysctl("|/tmp/x"),
            sysctl("1\n2"),
            // Files out of the root or not tune's.
            file("../etc/passwd", 0o644, &[]),
            file("/etc/passwd", 0o644, &[]),
            file("etc/shadow", 0o600, &[]),
            file("etc/sysctl.d/../../root/.ssh/authorized_keys", 0o644, &[]),
            // A set-uid or executable mode.
            file("etc/sysctl.d/90-ctdoctor.conf", 0o4777, &[]),
            file("etc/sysctl.d/90-ctdoctor.conf", 0o755, &[]),
            // A created directory that is not above the file.
            file("etc/sysctl.d/90-ctdoctor.conf", 0o644, &["home"]),
            file(
                "etc/sysctl.d/90-ctdoctor.conf",
                0o644,
                &["etc/sysctl.d/../.."],
            ),
            // A table name that smuggles a second command.
            Entry::NftTable {
                netns: NetnsRef::default(),
                family: "inet".into(),
                name: "x; flush ruleset".into(),
            },
            Entry::NftTable {
                netns: NetnsRef::default(),
                family: "inet; flush ruleset;".into(),
                name: "x".into(),
            },
            Entry::NftMarked {
                netns: NetnsRef::default(),
                mark: "a\" ; flush ruleset".into(),
            },
            // A namespace argument that is no namespace.
            Entry::NftTable {
                netns: NetnsRef {
                    arg: Some(String::new()),
                    ..NetnsRef::default()
                },
                family: "inet".into(),
                name: "t".into(),
            },
        ];
        for e in &bad {
            assert!(e.validate().is_err(), "accepted: {e:?}");
        }
    }

    #[test]
    fn journal_files_are_written_listed_and_locked() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let j = Journal::at(d.path());
        let lock = j.lock().unwrap();
        assert!(j.lock().is_err(), "a second lock fails at once");
        let mut cs = ChangeSet::new("x".into(), d.path(), NetnsRef::default(), vec![]);
        let p = j.begin(&mut cs).unwrap();
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
        for dir in [j.dir.clone(), j.dir.parent().unwrap().to_path_buf()] {
            let m = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o700, "{}", dir.display());
        }
    }

    /// Defect 2 of issue 19: one id for two change sets in the same second
    /// from pid namespaces, and same-second sets sorted as text.
    #[test]
    fn change_sets_are_ordered_by_sequence_and_never_overwrite_each_other() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::at(d.path());
        let _l = j.lock().unwrap();
        let mut a = ChangeSet::new(
            "a".into(),
            d.path(),
            NetnsRef::default(),
            vec![sysctl("120")],
        );
        let mut b = ChangeSet::new(
            "b".into(),
            d.path(),
            NetnsRef::default(),
            vec![sysctl("30")],
        );
        // Same second, same pid (two pid namespaces), and b's id sorting
        // before a's as text.
        b.id = format!("{}-1-00000000", compact_utc(a.created_unix));
        a.id = format!("{}-1-ffffffff", compact_utc(a.created_unix));
        b.created_unix = a.created_unix;
        j.begin(&mut a).unwrap();
        let taken = a.id.clone();
        b.id = taken.clone();
        j.begin(&mut b).unwrap();
        assert_ne!(b.id, taken, "a new set takes a fresh id, never a used one");
        let (sets, _) = j.list().unwrap();
        assert_eq!(
            sets.iter().map(|s| s.command.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(j.read(&taken).unwrap().command, "a", "a is still there");
        assert!(sets[1].seq > sets[0].seq);
    }

    #[test]
    fn journals_written_before_the_sequence_still_read_in_time_order() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::at(d.path());
        let _l = j.lock().unwrap();
        for (id, t) in [
            ("20261125T104900Z-77", 1_795_603_740),
            ("20261125T104859Z-9", 1_795_603_739),
        ] {
            let mut cs = ChangeSet::new(id.into(), d.path(), NetnsRef::default(), vec![]);
            cs.id = id.into();
            cs.created_unix = t;
            let mut v = serde_json::to_value(&cs).unwrap();
            v.as_object_mut().unwrap().remove("seq");
            std::fs::write(j.path_of(id), serde_json::to_vec(&v).unwrap()).unwrap();
            std::fs::set_permissions(
                j.path_of(id),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
        }
        let (sets, bad) = j.list().unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(sets[0].id, "20261125T104859Z-9");
        assert_eq!(sets[1].id, "20261125T104900Z-77");
    }

    /// Defect 4 of issue 19: a journal directory others can write.
    #[test]
    fn a_journal_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let j = Journal::at(d.path());
        drop(j.lock().unwrap());
        std::fs::set_permissions(&j.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = j.list().unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        assert!(j.lock().is_err());
        std::fs::set_permissions(&j.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A change set file others can write, or a link, is not used.
        let mut cs = ChangeSet::new("x".into(), d.path(), NetnsRef::default(), vec![]);
        j.begin(&mut cs).unwrap();
        std::fs::set_permissions(j.path_of(&cs.id), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        std::os::unix::fs::symlink("/etc/hostname", j.dir.join("20260101T000000Z-1.json")).unwrap();
        let (sets, bad) = j.list().unwrap();
        assert!(sets.is_empty());
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(j.read(&cs.id).is_err());
    }
}
