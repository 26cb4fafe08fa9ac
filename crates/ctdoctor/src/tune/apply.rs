//! The edge of `tune`: read what a plan needs (runtime values in the target
//! namespace, the boot files under the root), apply a plan — journal first
//! (fsync'd), then runtime values, then files (each atomically) — read
//! everything back, and roll change sets back.
//!
//! Verification is by reading back, never by exit codes or write(2)
//! results alone (procps `sysctl -p` exits 0 when a key fails; a bucket
//! count comes back rounded). A write the kernel refuses undoes everything
//! already written from the journal before the error is returned: a change
//! set is applied whole or not at all.
//!
//! Not for: deciding what to write (tune::plan) or the journal's format
//! (tune::journal).

use super::diff::{BootCheck, BootFacts, KnobNow, Plan};
use super::journal::{self, ChangeSet, Entry, FileState, Journal, NetnsRef, State};
use super::write::{self, step};
use crate::advice::change;
use crate::host::{self, persist, Root};
use crate::knobs::same;
use crate::snapshot::Facts;
use anyhow::Result;
use netns::Target;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use super::write::{KILL_AT_ENV, STEP_DELAY_ENV};

/// A refusal: nothing was written (or what was written has been restored).
/// Commands exit 2 on it.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A [`Refused`] error.
pub fn refused(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refused(msg.into()))
}

/// The namespace a journal entry names, to enter again.
pub fn target_of(ns: &NetnsRef) -> Result<Target> {
    match &ns.arg {
        Some(a) => Target::parse(a).map_err(anyhow::Error::msg),
        None => Ok(Target::Current),
    }
}

pub(crate) fn own_inode() -> Option<u64> {
    let l = std::fs::read_link("/proc/thread-self/ns/net").ok()?;
    host::netns::parse_ns_link(&l.to_string_lossy())
}

/// Read one runtime knob (relative path) in the calling thread's namespace.
fn read_knob(root: &Root, rel: &str) -> KnobNow {
    let value = root
        .read(rel)
        .map(|b| crate::knobs::normalize_value(&String::from_utf8_lossy(&b)))
        .map_err(|u| format!("/{u}"));
    // Writable is a property of the live file: its mode and its mount.
    let path = root.live_prefix().unwrap_or(Path::new("/")).join(rel);
    let writable = match std::fs::metadata(&path) {
        Ok(m) if m.permissions().mode() & 0o222 == 0 => Err(format!(
            "/{rel} is read-only here (mode 0{:o})",
            m.permissions().mode() & 0o777
        )),
        Ok(_) if read_only_mount(&path) => Err(format!("/{rel} is on a read-only mount")),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("/{rel}: {e}")),
    };
    KnobNow { value, writable }
}

fn read_only_mount(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs into a zeroed struct with a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 }
}

/// Read the runtime knobs at `paths` inside `target`.
pub fn read_knobs(target: &Target, paths: &[String]) -> Result<BTreeMap<String, KnobNow>> {
    Ok(netns::run_in(target, || {
        // A fresh live Root inside the namespace: /proc/sys is per netns.
        let root = Root::live();
        paths
            .iter()
            .map(|p| (p.clone(), read_knob(&root, p)))
            .collect::<BTreeMap<_, _>>()
    })?)
}

/// The files tune writes, relative.
pub fn own_files() -> [String; 3] {
    [
        change::SYSCTL_FILE,
        change::MODPROBE_FILE,
        change::MODULES_LOAD_FILE,
    ]
    .map(|f| f.trim_start_matches('/').to_string())
}

/// Read what boot reads under `root`, completed from the live facts where
/// the root is not the machine (module state).
pub fn read_boot(root: &Path, facts: &Facts) -> BootFacts {
    let r = Root::live_at(root.to_path_buf());
    let mut texts = persist::read_texts(&r);
    let mut ours = BTreeMap::new();
    for f in own_files() {
        match persist::read_exact(&r, &f) {
            Ok(t) => {
                ours.insert(f, t);
            }
            Err(e) => texts.unreadable.push((f, e)),
        }
    }
    let bp = persist::read(&r).ok();
    // How the kernel has nf_conntrack: the persist reader's answer (it also
    // reads /proc/modules and modules.builtin), else conntrack's.
    let module = facts
        .persist
        .as_ref()
        .ok()
        .and_then(|p| p.module.as_ref().ok())
        .map(|m| m.is_module())
        .or_else(|| {
            facts
                .conntrack
                .as_ref()
                .ok()
                .and_then(|c| c.is_module.as_ref().ok().copied())
        });
    BootFacts {
        texts,
        ours,
        module,
        loads_early: bp.as_ref().is_some_and(|p| !p.modules_load.is_empty()),
        cmdline_hashsize: bp.and_then(|p| p.hashsize.cmdline),
        root: root_prefix(root),
    }
}

/// One thing read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub what: String,
    pub want: String,
    pub got: String,
    pub ok: bool,
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub id: String,
    pub journal: PathBuf,
    /// Every runtime value and file, read back.
    pub checks: Vec<Check>,
    /// What boot sets now, from the files read back.
    pub boot: Vec<BootCheck>,
    /// What else happened (temporaries of an interrupted run removed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Applied {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok) && self.boot.iter().all(|b| b.ok)
    }
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Write one runtime value in the calling thread's namespace.
fn write_knob(rel: &str, value: &str) -> std::io::Result<()> {
    let mut f = std::fs::File::options()
        .write(true)
        .open(Path::new("/").join(rel))?;
    f.write_all(format!("{value}\n").as_bytes())
}

/// Apply `plan` (which must have no refusal) to the machine: `root` for the
/// files and the journal, `target` for runtime values.
pub fn apply(plan: &Plan, root: &Path, target: &Target, command: String) -> Result<Applied> {
    apply_with(plan, root, target, command, Lock::Take)
}

/// Whether [`apply_with`] / [`rollback_with`] take the global-knob lock for
/// a global change, or the caller holds it already (`ctdoctor lab`, which
/// holds it for its whole run: a second flock in the same process would
/// see it taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    Take,
    Held,
}

/// Remove the temporaries a killed run left beside the files tune writes
/// and in the journal (holding the journal lock): notes saying what went.
fn sweep_temps(root: &Path, journal: &Journal, rels: &[String]) -> Vec<String> {
    let mut dirs: Vec<PathBuf> = vec![journal.dir.clone()];
    for r in rels
        .iter()
        .map(String::as_str)
        .chain(own_files().iter().map(String::as_str))
    {
        if let Some(d) = root.join(r).parent() {
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_path_buf());
            }
        }
    }
    dirs.iter()
        .flat_map(|d| write::sweep(d))
        .map(|p| format!("removed {}, left by an interrupted ctdoctor", p.display()))
        .collect()
}

/// Remove what killed runs left under `root` (temporaries in the journal
/// and beside tune's own files), holding the journal lock: notes saying
/// what went. Nothing when there is no journal.
pub fn sweep(root: &Path) -> Result<Vec<String>> {
    let journal = Journal::at(root);
    if std::fs::symlink_metadata(&journal.dir).is_err() {
        return Ok(Vec::new());
    }
    let _lock = journal.lock()?;
    Ok(sweep_temps(root, &journal, &[]))
}

/// Refused when the journal holds a file that cannot be used: rollback and
/// apply do not go past a change set they cannot read.
pub fn refuse_unreadable(journal: &Journal, bad: &[journal::Unreadable]) -> Result<()> {
    match journal::unusable(&journal.dir, bad) {
        None => Ok(()),
        Some(why) => Err(refused(why)),
    }
}

/// Refused while an interrupted change set waits to be rolled back.
pub fn refuse_pending(sets: &[ChangeSet], root: &Path) -> Result<()> {
    match sets.iter().find(|s| s.state == State::Pending) {
        None => Ok(()),
        Some(p) => Err(refused(format!(
            "change set {} ({}) was interrupted before it finished: roll it back first \
             (ctdoctor tune --rollback {}{})",
            p.id,
            p.created,
            p.id,
            root_flag(root)
        ))),
    }
}

/// What to say when a step after the first write failed: what was changed
/// and the exact command that undoes it.
fn after_write(why: &str, changed: &[String], id: &str, root: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{why}\nchanged so far: {}\nundo: ctdoctor tune --rollback {id}{}",
        if changed.is_empty() {
            "nothing".to_string()
        } else {
            changed.join("; ")
        },
        root_flag(root)
    )
}

/// [`apply`], saying who holds the global-knob lock.
pub fn apply_with(
    plan: &Plan,
    root: &Path,
    target: &Target,
    command: String,
    lock: Lock,
) -> Result<Applied> {
    if !plan.refusals.is_empty() {
        return Err(refused(plan.refusals.join("\n")));
    }
    let journal = Journal::at(root);
    let _lock = journal.lock()?;
    let (sets, bad) = journal.list()?;
    refuse_unreadable(&journal, &bad)?;
    refuse_pending(&sets, root)?;
    let _global = if lock == Lock::Take && plan.runtime.iter().any(|w| w.global) {
        global_lock()?
    } else {
        None
    };
    let plan_files: Vec<String> = plan.files.iter().map(|f| f.path.clone()).collect();
    let notes = sweep_temps(root, &journal, &plan_files);
    // What is there now must still be what the plan was made from.
    let paths: Vec<String> = plan.runtime.iter().map(|w| w.path.clone()).collect();
    let mut entries = runtime_entries(plan, target, &paths)?;
    let (files, writes) = file_entries(plan, root)?;
    entries.extend(files);
    let mut cs = ChangeSet::new(command, root, plan.netns.clone(), entries);
    // Relief already done (deleted entries are not restorable): said, dated.
    for r in &plan.relief {
        cs.events.push(journal::Event {
            time_unix: journal::now_unix(),
            what: format!("relief (not restorable): {r}"),
        });
    }
    let jpath = journal.begin(&mut cs)?;
    step("journal");

    let undo = |cs: &mut ChangeSet, why: String| undo_apply(&journal, cs, root, why);

    // Runtime values, in the target namespace.
    let written = netns::run_in(target, || {
        for w in &plan.runtime {
            if let Err(e) = write_knob(&w.path, &w.new) {
                return Err(format!("the kernel refused {} = {}: {e}", w.key, w.new));
            }
            step("runtime value");
        }
        Ok(())
    });
    match written {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Err(undo(&mut cs, why)),
        Err(e) => {
            return Err(undo(
                &mut cs,
                format!("entering {}: {e}", plan.netns.describe()),
            ))
        }
    }
    step("runtime");

    // Files, each atomically.
    for (abs, text, mode) in &writes {
        let r = abs
            .parent()
            .map_or(Ok(Vec::new()), |d| write::create_dirs(d, 0o755))
            .and_then(|_| write::atomic(abs, text.as_bytes(), *mode));
        if let Err(e) = r {
            return Err(undo(&mut cs, format!("writing {}: {e}", abs.display())));
        }
    }
    step("files");
    cs.mark(State::Applied, "applied");
    if let Err(e) = journal.write(&cs) {
        return Err(after_write(
            &format!(
                "everything was written, but the journal could not record it ({e:#}): \
                 change set {} still says pending",
                cs.id
            ),
            &cs.entries.iter().map(Entry::describe).collect::<Vec<_>>(),
            &cs.id,
            root,
        ));
    }

    let (checks, boot) = read_back_applied(plan, root, target, &paths, &cs)?;
    Ok(Applied {
        id: cs.id.clone(),
        journal: jpath,
        checks,
        boot,
        notes,
    })
}

/// Something failed after the journal was written: put back what was
/// written and say exactly where things are (restored, or what changed and
/// the undo command).
fn undo_apply(journal: &Journal, cs: &mut ChangeSet, root: &Path, why: String) -> anyhow::Error {
    let errors = restore(cs, root, true);
    if errors.is_empty() {
        cs.mark(
            State::RolledBack,
            format!("apply failed: {why}; rolled back"),
        );
        match journal.write(cs) {
            Ok(_) => refused(format!(
                "{why}; everything already written was restored (change set {})",
                cs.id
            )),
            Err(e) => anyhow::anyhow!(
                "{why}; everything already written was restored, but the journal could not \
                 record it ({e:#}): change set {} still says pending. Run \
                 `ctdoctor tune --rollback {}{}` (it finds the old values in place and closes it)",
                cs.id,
                cs.id,
                root_flag(root)
            ),
        }
    } else {
        cs.events.push(journal::Event {
            time_unix: journal::now_unix(),
            what: format!(
                "apply failed: {why}; restoring failed: {}",
                errors.join("; ")
            ),
        });
        let _ = journal.write(cs);
        after_write(
            &format!(
                "{why}; restoring what was written failed too ({})",
                errors.join("; ")
            ),
            &cs.entries.iter().map(Entry::describe).collect::<Vec<_>>(),
            &cs.id,
            root,
        )
    }
}

/// The journal entries of a plan's runtime values: refused unless each is
/// still what the plan was made from.
fn runtime_entries(plan: &Plan, target: &Target, paths: &[String]) -> Result<Vec<Entry>> {
    let now = read_knobs(target, paths)?;
    let mut entries = Vec::new();
    for w in &plan.runtime {
        match now.get(&w.path).map(|k| &k.value) {
            Some(Ok(v)) if same(v, &w.old) => {}
            Some(Ok(v)) => {
                return Err(refused(format!(
                    "{} changed since it was read ({} then, {v} now): run again",
                    w.key, w.old
                )))
            }
            Some(Err(e)) => {
                return Err(refused(format!(
                    "{} cannot be read again ({e}): nothing written",
                    w.key
                )))
            }
            None => return Err(refused(format!("{} was not read: nothing written", w.key))),
        }
        entries.push(Entry::Sysctl {
            key: w.key.clone(),
            path: w.path.clone(),
            netns: plan.netns.clone(),
            old: w.old.clone(),
            new: w.expect.clone(),
        });
    }
    Ok(entries)
}

/// A file to write: where, what, with which mode.
type FileWriteAt<'p> = (PathBuf, &'p str, u32);

/// The journal entries of a plan's files, each as it will be written: its
/// path resolved under the root (a link is written through, never
/// replaced), a regular file or none, unchanged since it was read, of a
/// mode tune may restore.
fn file_entries<'p>(plan: &'p Plan, root: &Path) -> Result<(Vec<Entry>, Vec<FileWriteAt<'p>>)> {
    let mut entries = Vec::new();
    let mut writes: Vec<FileWriteAt<'p>> = Vec::new();
    for f in &plan.files {
        let rel = write::target(root, &f.path).map_err(refused)?;
        let abs = root.join(&rel);
        let cur = persist::read_exact(&Root::live_at(root.to_path_buf()), &rel)
            .map_err(anyhow::Error::msg)?;
        if cur != f.old {
            return Err(refused(if rel == f.path {
                format!("{} changed since it was read: run again", abs.display())
            } else {
                format!(
                    "{} (where /{} leads) is not what was read from /{}: run again",
                    abs.display(),
                    f.path,
                    f.path
                )
            }));
        }
        let mode = mode_of(&abs).unwrap_or(0o644);
        if cur.is_some() && mode & !write::MAX_MODE != 0 {
            return Err(refused(format!(
                "{} has mode {mode:04o}: tune writes files of mode {:04o} or less \
                 (chmod go-w,a-x,-s it first)",
                abs.display(),
                write::MAX_MODE
            )));
        }
        entries.push(Entry::File {
            path: rel.clone(),
            old: cur.map(|text| FileState { text, mode }),
            new: f.new.clone(),
            created_dirs: write::missing_dirs(root, &rel),
        });
        writes.push((abs, f.new.as_str(), mode));
    }
    Ok((entries, writes))
}

/// Everything an apply wrote, read back: each runtime value and file, and
/// what boot sets from the files as they now are.
fn read_back_applied(
    plan: &Plan,
    root: &Path,
    target: &Target,
    paths: &[String],
    cs: &ChangeSet,
) -> Result<(Vec<Check>, Vec<BootCheck>)> {
    let mut checks = Vec::new();
    let back = read_knobs(target, paths)?;
    for w in &plan.runtime {
        let got = match back.get(&w.path).map(|k| &k.value) {
            Some(Ok(v)) => v.clone(),
            Some(Err(e)) => e.clone(),
            None => "not read".into(),
        };
        checks.push(Check {
            what: format!("{} ({})", w.key, plan.netns.describe()),
            ok: same(&got, &w.expect),
            want: w.expect.clone(),
            got,
        });
    }
    let fresh = Root::live_at(root.to_path_buf());
    for e in &cs.entries {
        let Entry::File { path, new, .. } = e else {
            continue;
        };
        let got = persist::read_exact(&fresh, path);
        checks.push(Check {
            what: format!("{}", root.join(path).display()),
            ok: got
                .as_ref()
                .is_ok_and(|g| g.as_deref() == Some(new.as_str())),
            want: format!("{} bytes as planned", new.len()),
            got: match got {
                Ok(Some(t)) if t == *new => format!("{} bytes as planned", t.len()),
                Ok(Some(t)) => format!("{} bytes, different", t.len()),
                Ok(None) => "absent".into(),
                Err(e) => e,
            },
        });
    }
    let boot = super::files::Boot::new(&persist::read_texts(&fresh));
    let boot = plan
        .boot
        .iter()
        .map(|b| BootCheck::new(&b.key, &b.value, &boot, &root_prefix(root)))
        .collect();
    Ok((checks, boot))
}

/// How messages show the root before an absolute path: empty for `/`.
pub fn root_prefix(root: &Path) -> String {
    if root == Path::new("/") {
        String::new()
    } else {
        root.display().to_string().trim_end_matches('/').to_string()
    }
}

/// ` --root DIR` when the root is not `/`, for hints.
pub fn root_flag(root: &Path) -> String {
    if root == Path::new("/") {
        String::new()
    } else {
        format!(" --root {}", change::sh_quote(&root.display().to_string()))
    }
}

// ---- rollback --------------------------------------------------------------

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    pub id: String,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl RolledBack {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// A namespace of a change set, entered again: Ok(target) when the one
/// the entries were written in is still there — through its `--netns`
/// argument when that still leads to it, else found by its inode among
/// the namespaces pinned under /run/netns and held by processes (a pid
/// that exited while a container runtime keeps its namespace). Err only
/// when nothing holds that inode: the namespace is gone.
fn reach(ns: &NetnsRef) -> Result<Target, String> {
    let by_arg = target_of(ns).map_err(|e| e.to_string()).and_then(|t| {
        netns::run_in(&t, own_inode)
            .map(|i| (t, i))
            .map_err(|e| e.to_string())
    });
    let Some(want) = ns.inode else {
        return by_arg.map(|(t, _)| t);
    };
    match by_arg {
        Ok((t, Some(got))) if got == want => Ok(t),
        Ok((t, None)) => Ok(t),
        other => match find_netns(want) {
            Some(t) => Ok(t),
            None => Err(match other {
                Ok((_, Some(got))) => format!(
                    "{} is now another namespace (inode {got}, not {want}) and no process or \
                     /run/netns pin holds inode {want}: the one changed is gone",
                    ns.describe()
                ),
                Err(e) => format!(
                    "{} cannot be entered ({e}) and no process or /run/netns pin holds its \
                     inode {want}: it is gone",
                    ns.describe()
                ),
                Ok(_) => unreachable!("handled above"),
            }),
        },
    }
}

/// A way into the network namespace of nsfs inode `inode`: a pin under
/// /run/netns, else a process's /proc/PID/ns/net.
fn find_netns(inode: u64) -> Option<Target> {
    use std::os::unix::fs::MetadataExt;
    let is = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.ino() == inode);
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            if is(&e.path()) {
                return Some(Target::Path(e.path()));
            }
        }
    }
    let rd = std::fs::read_dir("/proc").ok()?;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let p = PathBuf::from(format!("/proc/{pid}/ns/net"));
        if is(&p) {
            return Some(Target::Path(p));
        }
    }
    None
}

/// The state of one entry now: Ok(true) when it is as the change set left
/// it, Ok(false) when already as before (a `pending` change set may not
/// have written it), Err(why) when someone else changed it.
fn entry_now(e: &Entry, root: &Path, t: Option<&Target>) -> Result<bool, String> {
    match e {
        Entry::Sysctl {
            key,
            path,
            old,
            new,
            ..
        } => {
            let t = t.ok_or("namespace gone")?;
            let k =
                netns::run_in(t, || read_knob(&Root::live(), path)).map_err(|e| e.to_string())?;
            let cur = k.value?;
            if same(&cur, new) {
                Ok(!same(&cur, old))
            } else if same(&cur, old) {
                Ok(false)
            } else {
                Err(format!(
                    "{key} is {cur} now, not the {new} this change set wrote (changed since: \
                     by hand, or by a later change set — roll that back first)"
                ))
            }
        }
        Entry::File { path, old, new, .. } => {
            let cur = persist::read_exact(&Root::live_at(root.to_path_buf()), path)?;
            let old_text = old.as_ref().map(|o| o.text.as_str());
            if cur.as_deref() == Some(new.as_str()) {
                Ok(cur.as_deref() != old_text)
            } else if cur.as_deref() == old_text {
                Ok(false)
            } else {
                Err(format!(
                    "{} was changed since this change set wrote it",
                    root.join(path).display()
                ))
            }
        }
        Entry::NftTable { family, name, .. } => {
            let t = t.ok_or("namespace gone")?;
            nft_table_exists(t, family, name)
        }
        Entry::NftMarked { mark, .. } => {
            let t = t.ok_or("namespace gone")?;
            marked_rules(t, mark).map(|a| !a.rules.is_empty())
        }
        Entry::Unknown => Err("an entry of a kind this ctdoctor does not know".into()),
    }
}

/// The rules commented `mark` outside notrack's own table, in `t`.
fn marked_rules(t: &Target, mark: &str) -> Result<super::nft::Applied, String> {
    use super::nft::Writer as _;
    let mut a = super::nft::Direct.ours(t).map_err(|e| format!("{e:#}"))?;
    a.table = false;
    // `ours` finds rules by notrack's mark; a journal naming another mark
    // (none is written today) has nothing here to find.
    if mark != crate::advice::notrack::MARK {
        a.rules.clear();
    }
    Ok(a)
}

fn nft_table_exists(t: &Target, family: &str, name: &str) -> Result<bool, String> {
    let out = netns::run_in(t, || {
        std::process::Command::new("nft")
            .args(["list", "table", family, name])
            .output()
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("running nft: {e}"))?;
    Ok(out.status.success())
}

/// Put every entry of `cs` back as it was, last first; best effort: returns
/// what failed. `pending`: entries may not have been written yet.
fn restore(cs: &ChangeSet, root: &Path, pending: bool) -> Vec<String> {
    let mut errors = Vec::new();
    for e in cs.entries.iter().rev() {
        let r: Result<(), String> = match e {
            Entry::Sysctl {
                key,
                path,
                netns,
                old,
                ..
            } => reach(netns).and_then(|t| {
                netns::run_in(&t, || write_knob(path, old))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("writing {key} = {old}: {e}"))
                    .inspect(|_| step("runtime value restored"))
            }),
            Entry::File {
                path,
                old,
                new,
                created_dirs,
            } => restore_file(root, path, old.as_ref(), new, created_dirs),
            Entry::NftTable {
                netns,
                family,
                name,
            } => reach(netns)
                .and_then(|t| match nft_table_exists(&t, family, name) {
                    Ok(true) => netns::run_in(&t, || {
                        std::process::Command::new("nft")
                            .args(["delete", "table", family, name])
                            .status()
                    })
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
                    .and_then(|s| {
                        s.success()
                            .then_some(())
                            .ok_or(format!("nft delete table {family} {name} failed"))
                    }),
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                })
                .inspect(|_| step("nft table deleted")),
            Entry::NftMarked { netns, mark } => reach(netns).and_then(|t| {
                use super::nft::Writer as _;
                let a = marked_rules(&t, mark)?;
                super::nft::Direct
                    .unload(&t, &a)
                    .map_err(|e| format!("{e:#}"))
            }),
            Entry::Unknown => Err("unknown entry kind".into()),
        };
        if let Err(why) = r {
            if !(pending && why.contains("namespace gone")) {
                errors.push(why);
            }
        }
    }
    errors
}

fn restore_file(
    root: &Path,
    path: &str,
    old: Option<&FileState>,
    new: &str,
    created_dirs: &[String],
) -> Result<(), String> {
    // The journal names the file as resolved when it was written: a link
    // planted there since is not followed, and nothing but a regular file
    // is replaced or removed.
    let resolved = write::target(root, path)?;
    if resolved != path {
        return Err(format!(
            "/{path} is now a link (to /{resolved}): not followed; restore it by hand"
        ));
    }
    let abs = root.join(path);
    match old {
        Some(o) => write::atomic(&abs, o.text.as_bytes(), o.mode & write::MAX_MODE)
            .map_err(|e| format!("restoring {}: {e}", abs.display()))?,
        None => {
            // Remove only what this change set wrote.
            match std::fs::read(&abs) {
                Ok(b) if b == new.as_bytes() => match std::fs::remove_file(&abs) {
                    Ok(()) => {
                        if let Some(d) = abs.parent() {
                            let _ = write::fsync_dir(d);
                        }
                        step("file removed");
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("removing {}: {e}", abs.display())),
                },
                Ok(_) => {
                    return Err(format!(
                        "{} holds text this change set did not write: not removed",
                        abs.display()
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("reading {}: {e}", abs.display())),
            }
        }
    }
    for d in created_dirs.iter().rev() {
        let dir = root.join(d);
        // Only a real directory, only when empty: someone may have put
        // files there since.
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir())
            && std::fs::remove_dir(&dir).is_ok()
        {
            if let Some(p) = dir.parent() {
                let _ = write::fsync_dir(p);
            }
        }
    }
    Ok(())
}

/// Which entries of `cs` a rollback restores: the namespaces entered again
/// (one that is gone took its values with it: skipped, with a note), and
/// every entry changed since the change set wrote it (a conflict). Returns
/// (conflicts, indexes of entries to skip).
fn what_to_restore(
    cs: &ChangeSet,
    root: &Path,
    notes: &mut Vec<String>,
) -> (Vec<String>, Vec<usize>) {
    let mut reached: BTreeMap<Option<String>, Option<Target>> = BTreeMap::new();
    for e in &cs.entries {
        let ns = match e {
            Entry::Sysctl { netns, .. }
            | Entry::NftTable { netns, .. }
            | Entry::NftMarked { netns, .. } => netns,
            _ => continue,
        };
        reached
            .entry(ns.arg.clone())
            .or_insert_with(|| match reach(ns) {
                Ok(t) => Some(t),
                Err(why) => {
                    notes.push(format!(
                        "{why}: its runtime values went with it, nothing to restore there"
                    ));
                    None
                }
            });
    }
    let target_for = |e: &Entry| -> Option<Option<&Target>> {
        match e {
            Entry::Sysctl { netns, .. }
            | Entry::NftTable { netns, .. }
            | Entry::NftMarked { netns, .. } => {
                Some(reached.get(&netns.arg).and_then(|t| t.as_ref()))
            }
            _ => None,
        }
    };
    let mut conflicts = Vec::new();
    let mut skip = Vec::new();
    for (i, e) in cs.entries.iter().enumerate() {
        let t = target_for(e);
        if t == Some(None) {
            skip.push(i);
            continue;
        }
        match entry_now(e, root, t.flatten()) {
            Ok(_) => {}
            Err(why) => conflicts.push(why),
        }
    }
    (conflicts, skip)
}

/// One entry of a rollback, read back: what it should be and what it is.
fn read_back_restored(e: &Entry, root: &Path) -> Option<Check> {
    let (what, want, got, ok) = match e {
        Entry::Sysctl {
            key,
            path,
            netns,
            old,
            ..
        } => {
            let got = reach(netns).and_then(|t| {
                netns::run_in(&t, || read_knob(&Root::live(), path))
                    .map_err(|e| e.to_string())
                    .and_then(|k| k.value)
            });
            let got = got.unwrap_or_else(|e| e);
            let ok = same(&got, old);
            (
                format!("{key} ({})", netns.describe()),
                old.clone(),
                got,
                ok,
            )
        }
        Entry::File { path, old, .. } => {
            let got = persist::read_exact(&Root::live_at(root.to_path_buf()), path);
            let want = old.as_ref().map(|o| o.text.clone());
            let ok = got.as_ref().is_ok_and(|g| *g == want);
            let desc = |t: &Option<String>| match t {
                Some(t) => format!("{} bytes as before", t.len()),
                None => "absent".to_string(),
            };
            (
                root.join(path).display().to_string(),
                desc(&want),
                match got {
                    Ok(g) if g == want => desc(&g),
                    Ok(Some(t)) => format!("{} bytes, different", t.len()),
                    Ok(None) => "absent".into(),
                    Err(e) => e,
                },
                ok,
            )
        }
        Entry::NftTable {
            netns,
            family,
            name,
        } => {
            let gone = reach(netns)
                .and_then(|t| nft_table_exists(&t, family, name))
                .map(|exists| !exists);
            (
                format!("nft table {family} {name} ({})", netns.describe()),
                "absent".into(),
                match &gone {
                    Ok(true) => "absent".into(),
                    Ok(false) => "still there".into(),
                    Err(e) => e.clone(),
                },
                gone == Ok(true),
            )
        }
        Entry::NftMarked { netns, mark } => {
            let left = reach(netns).and_then(|t| marked_rules(&t, mark));
            (
                format!("nft rules commented \"{mark}\" ({})", netns.describe()),
                "none".into(),
                match &left {
                    Ok(a) if a.rules.is_empty() => "none".into(),
                    Ok(a) => format!("{} still there", a.rules.len()),
                    Err(e) => e.clone(),
                },
                left.is_ok_and(|a| a.rules.is_empty()),
            )
        }
        Entry::Unknown => return None,
    };
    Some(Check {
        what,
        want,
        got,
        ok,
    })
}

/// The global-knob lock, exclusive, for a change set that writes a global
/// knob: refused at once while another ctdoctor holds it (`ctdoctor lab`
/// has the max lowered for its run, or a kernel test is changing it).
/// None when the caller said it holds it ([`netns::guard::HELD_ENV`]).
fn global_lock() -> Result<Option<netns::guard::GlobalLock>> {
    if std::env::var_os(netns::guard::HELD_ENV).is_some() {
        return Ok(None);
    }
    match netns::guard::GlobalLock::try_exclusive()? {
        Some(l) => Ok(Some(l)),
        None => Err(refused(format!(
            "another ctdoctor holds the global-knob lock {} (a `ctdoctor lab` run has \
             nf_conntrack_max lowered, or a kernel test is changing it): wait for it to finish",
            netns::guard::global_lock_path().display()
        ))),
    }
}

/// Whether a runtime path is one of the machine-wide knobs.
fn is_global_path(path: &str) -> bool {
    crate::knobs::KNOBS
        .iter()
        .any(|k| k.path == path && k.scope == crate::knobs::KnobScope::Global)
}

/// After `notrack --remove` undid notrack's rules and files by hand (it
/// goes straight to the kernel): every change set of notrack's for the
/// namespace of inode `inode` that is not rolled back and of which nothing
/// is left now is marked rolled back, noting `why`, so it neither blocks
/// the next apply (pending) nor shows as applied. The ids marked.
pub fn settle(root: &Path, inode: Option<u64>, why: &str) -> Result<Vec<String>> {
    let journal = Journal::at(root);
    if std::fs::symlink_metadata(&journal.dir).is_err() {
        return Ok(Vec::new());
    }
    let _lock = journal.lock()?;
    write::sweep(&journal.dir);
    let (sets, _) = journal.list()?;
    let mut done = Vec::new();
    for mut cs in sets {
        let notrack_here = cs.entries.iter().any(|e| {
            matches!(e, Entry::NftTable { netns, .. } | Entry::NftMarked { netns, .. }
                if netns.inode == inode)
        });
        let only_notrack = cs.entries.iter().all(|e| {
            matches!(
                e,
                Entry::NftTable { .. } | Entry::NftMarked { .. } | Entry::File { .. }
            )
        });
        if cs.state == State::RolledBack
            || !notrack_here
            || !only_notrack
            || Path::new(&cs.root) != root
        {
            continue;
        }
        let left = cs.entries.iter().any(|e| match e {
            Entry::NftTable { netns, .. } | Entry::NftMarked { netns, .. } => {
                reach(netns).is_ok_and(|t| entry_now(e, root, Some(&t)) != Ok(false))
            }
            _ => entry_now(e, root, None) != Ok(false),
        });
        if !left {
            cs.mark(State::RolledBack, why);
            journal.write(&cs)?;
            done.push(cs.id);
        }
    }
    Ok(done)
}

/// Which change set `--rollback` without an id means: the latest one not
/// rolled back whose namespace is `netns` (by its `--netns` argument).
pub fn latest(sets: &[ChangeSet], netns_arg: Option<&str>) -> Option<String> {
    sets.iter()
        .rev()
        .find(|s| s.state != State::RolledBack && s.netns.arg.as_deref() == netns_arg)
        .map(|s| s.id.clone())
}

/// Roll change set `id` back (see the module docs): refused, with nothing
/// written, when an entry was changed since (unless `force`) or is of an
/// unknown kind.
pub fn rollback(root: &Path, id: &str, force: bool, command: &str) -> Result<RolledBack> {
    rollback_with(root, id, force, command, Lock::Take)
}

/// [`rollback`], saying who holds the global-knob lock.
pub fn rollback_with(
    root: &Path,
    id: &str,
    force: bool,
    command: &str,
    lock: Lock,
) -> Result<RolledBack> {
    let journal = Journal::at(root);
    let _lock = journal.lock()?;
    let (_, bad) = journal.list()?;
    refuse_unreadable(&journal, &bad)?;
    let mut cs = journal.read(id)?;
    if cs.state == State::RolledBack {
        let when = cs.events.last().map(|e| journal::rfc3339(e.time_unix));
        return Err(refused(format!(
            "change set {id} is already rolled back{}",
            when.map(|w| format!(" ({w})")).unwrap_or_default()
        )));
    }
    let _global = if lock == Lock::Take
        && cs
            .entries
            .iter()
            .any(|e| matches!(e, Entry::Sysctl { path, .. } if is_global_path(path)))
    {
        global_lock()?
    } else {
        None
    };
    if cs.entries.iter().any(|e| matches!(e, Entry::Unknown)) {
        return Err(refused(format!(
            "change set {id} has entries this ctdoctor does not know (written by a newer one): \
             roll it back with that version"
        )));
    }
    if Path::new(&cs.root) != root {
        return Err(refused(format!(
            "change set {id} was made with root {}, not {}",
            cs.root,
            root.display()
        )));
    }
    let pending = cs.state == State::Pending;
    let file_paths: Vec<String> = cs
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::File { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    let mut notes = sweep_temps(root, &journal, &file_paths);
    if pending {
        notes.push(format!(
            "change set {id} was interrupted (state pending): entries not yet written are left as they are"
        ));
    }
    let (conflicts, skip) = what_to_restore(&cs, root, &mut notes);
    if !conflicts.is_empty() {
        if !force {
            return Err(refused(format!(
                "nothing rolled back: {}\n(run again with --force to restore the old values anyway)",
                conflicts.join("; ")
            )));
        }
        notes.extend(conflicts.iter().map(|c| format!("(--force) {c}")));
    }
    let todo = ChangeSet {
        entries: cs
            .entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(_, e)| e.clone())
            .collect(),
        ..cs.clone()
    };
    let errors = restore(&todo, root, pending);
    let checks = todo
        .entries
        .iter()
        .filter_map(|e| read_back_restored(e, root))
        .collect();
    let out = RolledBack {
        id: id.to_string(),
        checks,
        notes,
    };
    if errors.is_empty() && out.ok() {
        cs.mark(State::RolledBack, format!("rolled back by: {command}"));
    } else {
        cs.events.push(journal::Event {
            time_unix: journal::now_unix(),
            what: format!(
                "rollback incomplete ({}): run it again",
                if errors.is_empty() {
                    "a value did not read back as restored".to_string()
                } else {
                    errors.join("; ")
                }
            ),
        });
    }
    if let Err(e) = journal.write(&cs) {
        let restored = out.checks.iter().filter(|c| c.ok).map(|c| c.what.clone());
        return Err(anyhow::anyhow!(
            "the journal could not record the rollback of {id} ({e:#}); restored: {}; \
             the change set still says {}: run `ctdoctor tune --rollback {id}{}` again once \
             the journal can be written (it finds what is restored and closes it)",
            restored.collect::<Vec<_>>().join("; "),
            cs.state.as_str(),
            root_flag(root)
        ));
    }
    Ok(out)
}
