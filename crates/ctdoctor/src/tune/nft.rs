//! `notrack --apply` / `--persist` through the journal: a
//! [`notrack::apply::Writer`](crate::notrack::apply::Writer) that records
//! each change before making it, so `ctdoctor tune --rollback` undoes a
//! notrack like any other change set (and `--history` lists it).
//!
//! Order, as for sysctls: take the journal lock (refusing while an
//! interrupted change set waits to be rolled back) → journal the intent
//! (`pending`, fsync'd) → load / write → journal `applied`. Loading is one
//! nft transaction, so a kill between the two journal writes leaves either
//! nothing or all of it, and rollback of a `pending` set handles both: our
//! table and our marked rules are found by what they are
//! ([`Entry::NftTable`], [`Entry::NftMarked`]), not by handles remembered.
//!
//! Also the nft primitives themselves ([`Writer`], [`Direct`]: load a
//! script as one transaction, find what of ours a namespace holds, delete
//! exactly that), so rollback needs nothing from `notrack`.
//!
//! Not for: deciding what to load (`notrack`), or removing by hand
//! (`notrack --remove` goes straight to the kernel: undoing an apply twice
//! is harmless, rollback finds nothing left and says so).

use super::journal::{self, ChangeSet, Entry, FileState, Journal, NetnsRef, State};
use crate::advice::notrack::{MARK, TABLE};
use crate::host::netns::Target;
use crate::host::ruleset::{parse_nft_json, Ruleset};
use anyhow::{anyhow, bail};
use anyhow::{Context, Result};
use serde::Serialize;
use std::cell::RefCell;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One rule we added to someone else's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Added {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub text: String,
}

/// What of ours a namespace holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Whether `table inet ctdoctor_notrack` exists.
    pub table: bool,
    /// The marked rules outside it.
    pub rules: Vec<Added>,
    /// `nft list table inet ctdoctor_notrack` as read back (empty without it).
    pub readback: String,
}

impl Applied {
    /// What of ours `rs` (an `nft -j list ruleset`) holds.
    pub fn found_in(rs: &Ruleset) -> Applied {
        Applied {
            table: rs.has_table("inet", TABLE),
            rules: rs
                .rules
                .iter()
                .filter(|r| {
                    r.comment.as_deref() == Some(MARK) && !(r.family == "inet" && r.table == TABLE)
                })
                .filter_map(|r| {
                    Some(Added {
                        family: r.family.clone(),
                        table: r.table.clone(),
                        chain: r.chain.clone(),
                        handle: r.handle?,
                        text: r.text.clone(),
                    })
                })
                .collect(),
            readback: String::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.table && self.rules.is_empty()
    }

    /// The nft script that deletes exactly this, as one transaction.
    pub fn undo_script(&self) -> String {
        let mut s = String::new();
        for r in &self.rules {
            s.push_str(&format!(
                "delete rule {} {} {} handle {}\n",
                r.family, r.table, r.chain, r.handle
            ));
        }
        if self.table {
            s.push_str(&format!("delete table inet {TABLE}\n"));
        }
        s
    }
}

/// What notrack needs from the system (see the module docs).
pub trait Writer {
    /// Load `script` with one `nft -f` (one transaction: all or nothing) in
    /// `netns`, and return what of ours the namespace then holds.
    fn load(&self, netns: &Target, script: &str) -> Result<Applied>;
    /// Delete exactly `applied`, in one transaction.
    fn unload(&self, netns: &Target, applied: &Applied) -> Result<()>;
    /// What of ours `netns` holds now.
    fn ours(&self, netns: &Target) -> Result<Applied>;
    /// Write `content` to `path` (atomically, by rename), or remove it with
    /// None; returns what was there before.
    fn write_file(&self, path: &Path, content: Option<&str>) -> Result<Option<String>>;
}

/// [`Writer`] straight to the kernel: `nft` run in the namespace.
pub struct Direct;

fn nft_path() -> Result<std::path::PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join("nft"))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("nft is not installed (Debian: apt-get install nftables)"))
}

/// Run nft with `args` (and `stdin`) inside `netns`; its stdout.
fn nft(netns: &Target, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let path = nft_path()?;
    let what = format!("nft {}", args.join(" "));
    let out = crate::host::netns::run_in(netns, || -> std::io::Result<std::process::Output> {
        let mut child = Command::new(&path)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())?;
        }
        child.wait_with_output()
    })
    .map_err(|e| anyhow!("{e}"))?
    .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Writer for Direct {
    fn load(&self, netns: &Target, script: &str) -> Result<Applied> {
        nft(netns, &["-f", "-"], Some(script))
            .context("loading the rules (nothing was changed)")?;
        self.ours(netns)
    }

    fn unload(&self, netns: &Target, applied: &Applied) -> Result<()> {
        let script = applied.undo_script();
        if script.is_empty() {
            return Ok(());
        }
        nft(netns, &["-f", "-"], Some(&script))
            .context("removing the rules (nothing was changed)")?;
        let left = self.ours(netns)?;
        let gone = |a: &Added| {
            !left
                .rules
                .iter()
                .any(|b| b.handle == a.handle && b.table == a.table)
        };
        if (applied.table && left.table) || !applied.rules.iter().all(gone) {
            bail!(
                "read back after removing: still there: {}",
                left.undo_script().trim()
            );
        }
        Ok(())
    }

    fn ours(&self, netns: &Target) -> Result<Applied> {
        let json = nft(netns, &["-j", "list", "ruleset"], None)?;
        let rs = parse_nft_json(&json).map_err(|e| anyhow!("nft -j list ruleset: {e}"))?;
        let mut a = Applied::found_in(&rs);
        if a.table {
            a.readback = nft(netns, &["list", "table", "inet", TABLE], None)?;
        }
        Ok(a)
    }

    fn write_file(&self, path: &Path, content: Option<&str>) -> Result<Option<String>> {
        let before = match std::fs::read_to_string(path) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        match content {
            None => {
                // Only a regular file is removed (a link stays).
                if before.is_some() && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
                    std::fs::remove_file(path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
            Some(text) => {
                if let Some(dir) = path.parent() {
                    crate::tune::write::create_dirs(dir, 0o755)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                crate::tune::write::atomic(path, text.as_bytes(), 0o644)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(before)
    }
}

/// The journaled writer: one change set for everything one `notrack` run
/// does (the load, then the boot file).
pub struct Journaled {
    journal: Journal,
    root: PathBuf,
    command: String,
    netns: NetnsRef,
    set: RefCell<Option<ChangeSet>>,
    _lock: journal::Lock,
}

impl Journaled {
    /// Take the journal lock under `root`; refused (an
    /// [`Refused`](super::apply::Refused) error) while an interrupted change
    /// set is waiting to be rolled back.
    pub fn open(root: &Path, command: String, netns: NetnsRef) -> Result<Journaled> {
        let journal = Journal::at(root);
        let lock = journal.lock()?;
        super::write::sweep(&journal.dir);
        let (sets, bad) = journal.list()?;
        super::apply::refuse_unreadable(&journal, &bad)?;
        super::apply::refuse_pending(&sets, root)?;
        Ok(Journaled {
            journal,
            root: root.to_path_buf(),
            command,
            netns,
            set: RefCell::new(None),
            _lock: lock,
        })
    }

    /// The id of the change set this run wrote, if it wrote one.
    pub fn id(&self) -> Option<String> {
        self.set.borrow().as_ref().map(|s| s.id.clone())
    }

    /// Journal `entries` as pending (in this run's change set), run `f`,
    /// then journal the outcome: `applied` when `f` succeeded; when it
    /// failed the set stays journaled with the failure noted and is marked
    /// rolled back only if nothing of it is left (`f` is all-or-nothing).
    fn journaled<T>(
        &self,
        entries: Vec<Entry>,
        what: &str,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let mut slot = self.set.borrow_mut();
        let cs = slot.get_or_insert_with(|| {
            ChangeSet::new(
                self.command.clone(),
                &self.root,
                self.netns.clone(),
                Vec::new(),
            )
        });
        for e in entries {
            if !cs.entries.contains(&e) {
                cs.entries.push(e);
            }
        }
        cs.mark(State::Pending, format!("{what}: started"));
        if cs.seq == 0 {
            self.journal.begin(cs)
        } else {
            self.journal.write(cs)
        }
        .with_context(|| format!("journaling before {what} (nothing was changed)"))?;
        match f() {
            Ok(v) => {
                cs.mark(State::Applied, format!("{what}: done"));
                self.journal.write(cs).with_context(|| {
                    format!(
                        "{what}: done, but the journal could not record it (change set {} \
                         still says pending); undo: ctdoctor tune --rollback {}{}",
                        cs.id,
                        cs.id,
                        super::apply::root_flag(&self.root)
                    )
                })?;
                Ok(v)
            }
            Err(e) => {
                let first = cs
                    .events
                    .iter()
                    .filter(|ev| ev.what.ends_with(": done"))
                    .count()
                    == 0;
                let state = if first {
                    State::RolledBack
                } else {
                    State::Applied
                };
                cs.mark(state, format!("{what}: failed, nothing changed: {e:#}"));
                self.journal.write(cs)?;
                Err(e)
            }
        }
    }

    /// Note in the change set that the load was undone again (its read
    /// back did not match).
    fn note_undone(&self) -> Result<()> {
        if let Some(cs) = self.set.borrow_mut().as_mut() {
            cs.mark(
                State::RolledBack,
                "undone at once: what the kernel held after loading was not what was loaded",
            );
            self.journal.write(cs)?;
        }
        Ok(())
    }
}

impl Writer for Journaled {
    fn load(&self, netns: &Target, script: &str) -> Result<Applied> {
        let entries = vec![
            Entry::NftTable {
                netns: self.netns.clone(),
                family: "inet".into(),
                name: TABLE.into(),
            },
            Entry::NftMarked {
                netns: self.netns.clone(),
                mark: MARK.into(),
            },
        ];
        self.journaled(entries, "loading the notrack rules", || {
            Direct.load(netns, script)
        })
    }

    fn unload(&self, netns: &Target, applied: &Applied) -> Result<()> {
        Direct.unload(netns, applied)?;
        self.note_undone()
    }

    fn ours(&self, netns: &Target) -> Result<Applied> {
        Direct.ours(netns)
    }

    fn write_file(&self, path: &Path, content: Option<&str>) -> Result<Option<String>> {
        let asked = path
            .strip_prefix("/")
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        // Resolved under the root: a link is written through, never replaced.
        let rel = super::write::target(&self.root, &asked).map_err(anyhow::Error::msg)?;
        let abs = self.root.join(&rel);
        let old = match std::fs::read_to_string(&abs) {
            Ok(text) => Some(FileState {
                text,
                mode: std::fs::metadata(&abs)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(0o644),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", abs.display())),
        };
        let Some(text) = content else {
            // Removal is `notrack --remove`'s, which does not journal.
            return Direct.write_file(&abs, None);
        };
        if let Some(o) = old
            .as_ref()
            .filter(|o| o.mode & !super::write::MAX_MODE != 0)
        {
            anyhow::bail!(
                "{} has mode {:04o}: ctdoctor writes files of mode {:04o} or less \
                 (chmod go-w,a-x,-s it first)",
                abs.display(),
                o.mode,
                super::write::MAX_MODE
            );
        }
        let created_dirs = super::write::missing_dirs(&self.root, &rel);
        let entry = Entry::File {
            path: rel.clone(),
            old: old.clone(),
            new: text.to_string(),
            created_dirs,
        };
        self.journaled(vec![entry], &format!("writing /{rel}"), || {
            let mode = old.as_ref().map_or(0o644, |o| o.mode);
            if let Some(dir) = abs.parent() {
                super::write::create_dirs(dir, 0o755)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            super::write::atomic(&abs, text.as_bytes(), mode)
                .with_context(|| format!("writing {}", abs.display()))?;
            Ok(old.map(|o| o.text))
        })
    }
}

/// The journal's name for the namespace `--netns arg` (None: ours) names,
/// read from inside it: its inode, and whether it is the host's.
pub fn netns_ref(arg: Option<String>, target: &Target) -> Result<NetnsRef> {
    let inode = crate::host::netns::run_in(target, super::apply::own_inode)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let init = std::fs::read_link("/proc/1/ns/net")
        .ok()
        .and_then(|l| crate::host::netns::parse_ns_link(&l.to_string_lossy()));
    let label = arg.as_ref().map(|a| {
        if a.bytes().all(|b| b.is_ascii_digit()) {
            format!("pid {a}")
        } else {
            a.clone()
        }
    });
    Ok(NetnsRef {
        is_init: inode.is_some() && inode == init,
        label: label.filter(|_| inode.is_none() || inode != init),
        arg,
        inode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_journaled_before_and_after_and_rolls_back() {
        let root = std::env::temp_dir().join(format!("ctd-nft-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let w = Journaled::open(
            &root,
            "ctdoctor notrack --persist".into(),
            NetnsRef::default(),
        )
        .unwrap();
        let before = w
            .write_file(
                Path::new("/etc/nftables.d/ctdoctor-notrack.nft"),
                Some("table\n"),
            )
            .unwrap();
        assert_eq!(before, None);
        let id = w.id().unwrap();
        drop(w);
        let cs = Journal::at(&root).read(&id).unwrap();
        assert_eq!(cs.state, State::Applied);
        let Entry::File {
            path,
            old,
            created_dirs,
            ..
        } = &cs.entries[0]
        else {
            panic!("{:?}", cs.entries)
        };
        assert_eq!(path, "etc/nftables.d/ctdoctor-notrack.nft");
        assert_eq!(old, &None);
        assert_eq!(created_dirs, &["etc", "etc/nftables.d"]);
        let rb = super::super::apply::rollback(&root, &id, false, "test").unwrap();
        assert!(rb.ok(), "{rb:?}");
        assert!(
            !root.join("etc").exists(),
            "the directories it made are gone"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
