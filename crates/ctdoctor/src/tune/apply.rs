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

use super::journal::{self, create_dirs, ChangeSet, Entry, FileState, Journal, NetnsRef, State};
use super::plan::{BootCheck, BootFacts, KnobNow, Plan};
use crate::change;
use crate::checks::persist::same;
use crate::host::{self, persist, Root};
use crate::snapshot::Facts;
use anyhow::{Context, Result};
use netns::Target;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The environment variable that makes apply kill itself (SIGKILL) at a
/// point, for the crash-safety tests: `journal` (after the journal is
/// fsync'd, before any write), `runtime` (after the runtime values, before
/// the files) or `files` (after the files, before the journal says applied).
pub const KILL_AT_ENV: &str = "CTDOCTOR_TUNE_KILL_AT";

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

fn kill_at(point: &str) {
    if std::env::var(KILL_AT_ENV).is_ok_and(|v| v == point) {
        eprintln!("ctdoctor: {KILL_AT_ENV}={point}: killing myself (test of crash safety)");
        // SAFETY: signalling our own process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
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
fn read_knob(rel: &str) -> KnobNow {
    let path = Path::new("/").join(rel);
    let value = std::fs::read(&path)
        .map(|b| crate::snapshot::normalize_value(&String::from_utf8_lossy(&b)))
        .map_err(|e| format!("/{rel}: {e}"));
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
        paths
            .iter()
            .map(|p| (p.clone(), read_knob(p)))
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

/// Pids of running kube-proxy processes (from the live /proc).
pub fn kube_proxy() -> Vec<u32> {
    persist::kube_proxy_pids(&Root::live())
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

/// Directories missing above `path` (up to `root`), relative, outermost first.
fn missing_dirs(root: &Path, path: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let mut d = path.parent();
    while let Some(dir) = d {
        if dir.exists() || !dir.starts_with(root) || dir == root {
            break;
        }
        if let Ok(r) = dir.strip_prefix(root) {
            v.push(r.display().to_string());
        }
        d = dir.parent();
    }
    v.reverse();
    v
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
    let (sets, _) = journal.list()?;
    if let Some(p) = sets.iter().find(|s| s.state == State::Pending) {
        return Err(refused(format!(
            "change set {} ({}) was interrupted before it finished: roll it back first \
             (ctdoctor tune --rollback {}{})",
            p.id,
            p.created,
            p.id,
            root_flag(root)
        )));
    }
    let _global = if lock == Lock::Take && plan.runtime.iter().any(|w| w.global) {
        global_lock()?
    } else {
        None
    };
    // What is there now must still be what the plan was made from.
    let paths: Vec<String> = plan.runtime.iter().map(|w| w.path.clone()).collect();
    let now = read_knobs(target, &paths)?;
    let mut entries = Vec::new();
    for w in &plan.runtime {
        match now.get(&w.path).map(|k| &k.value) {
            Some(Ok(v)) if same(v, &w.old) => {}
            other => {
                return Err(refused(format!(
                    "{} changed since it was read ({} then, {:?} now): run again",
                    w.key, w.old, other
                )))
            }
        }
        entries.push(Entry::Sysctl {
            key: w.key.clone(),
            path: w.path.clone(),
            netns: plan.netns.clone(),
            old: w.old.clone(),
            new: w.expect.clone(),
        });
    }
    for f in &plan.files {
        let abs = root.join(&f.path);
        let cur = persist::read_exact(&Root::live_at(root.to_path_buf()), &f.path)
            .map_err(anyhow::Error::msg)?;
        if cur != f.old {
            return Err(refused(format!(
                "{} changed since it was read: run again",
                abs.display()
            )));
        }
        entries.push(Entry::File {
            path: f.path.clone(),
            old: f.old.clone().map(|text| FileState {
                text,
                mode: mode_of(&abs).unwrap_or(0o644),
            }),
            new: f.new.clone(),
            created_dirs: missing_dirs(root, &abs),
        });
    }
    let mut cs = ChangeSet::new(command, root, plan.netns.clone(), entries);
    let jpath = journal.write(&cs)?;
    kill_at("journal");

    let undo = |cs: &mut ChangeSet, why: String| -> anyhow::Error {
        let errors = restore(cs, root, true);
        if errors.is_empty() {
            cs.mark(
                State::RolledBack,
                format!("apply failed: {why}; rolled back"),
            );
            let _ = journal.write(cs);
            refused(format!(
                "{why}; everything already written was restored (change set {})",
                cs.id
            ))
        } else {
            cs.events.push(journal::Event {
                time_unix: journal::now_unix(),
                what: format!(
                    "apply failed: {why}; restoring failed: {}",
                    errors.join("; ")
                ),
            });
            let _ = journal.write(cs);
            anyhow::anyhow!(
                "{why}; restoring what was written failed too ({}): run `ctdoctor tune --rollback {}{}`",
                errors.join("; "),
                cs.id,
                root_flag(root)
            )
        }
    };

    // Runtime values, in the target namespace.
    let written = netns::run_in(target, || {
        for w in &plan.runtime {
            if let Err(e) = write_knob(&w.path, &w.new) {
                return Err(format!("the kernel refused {} = {}: {e}", w.key, w.new));
            }
        }
        Ok(())
    })?;
    if let Err(why) = written {
        return Err(undo(&mut cs, why));
    }
    kill_at("runtime");

    // Files, each atomically.
    for f in &plan.files {
        let abs = root.join(&f.path);
        let mode = mode_of(&abs).unwrap_or(0o644);
        let r = abs
            .parent()
            .map_or(Ok(Vec::new()), create_dirs)
            .and_then(|_| journal::write_atomic(&abs, f.new.as_bytes(), mode));
        if let Err(e) = r {
            return Err(undo(&mut cs, format!("writing {}: {e}", abs.display())));
        }
    }
    kill_at("files");
    cs.mark(State::Applied, "applied");
    journal.write(&cs)?;

    // Read everything back.
    let mut checks = Vec::new();
    let back = read_knobs(target, &paths)?;
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
    for f in &plan.files {
        let got = persist::read_exact(&fresh, &f.path);
        checks.push(Check {
            what: format!("{}", root.join(&f.path).display()),
            ok: got
                .as_ref()
                .is_ok_and(|g| g.as_deref() == Some(f.new.as_str())),
            want: format!("{} bytes as planned", f.new.len()),
            got: match got {
                Ok(Some(t)) if t == f.new => format!("{} bytes as planned", t.len()),
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
    Ok(Applied {
        id: cs.id.clone(),
        journal: jpath,
        checks,
        boot,
    })
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

/// A namespace of a change set, entered again: Ok(target) when it is still
/// the one the entries were written in.
fn reach(ns: &NetnsRef) -> Result<Target, String> {
    let t = target_of(ns).map_err(|e| e.to_string())?;
    let inode = netns::run_in(&t, own_inode).map_err(|e| e.to_string())?;
    match (ns.inode, inode) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "{} is now another namespace (inode {b}, not {a}): the one changed is gone",
            ns.describe()
        )),
        _ => Ok(t),
    }
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
            let k = netns::run_in(t, || read_knob(path)).map_err(|e| e.to_string())?;
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
fn marked_rules(t: &Target, mark: &str) -> Result<crate::notrack::apply::Applied, String> {
    use crate::notrack::apply::Writer as _;
    let mut a = crate::notrack::apply::Direct
        .ours(t)
        .map_err(|e| format!("{e:#}"))?;
    a.table = false;
    // `ours` finds rules by notrack's mark; a journal naming another mark
    // (none is written today) has nothing here to find.
    if mark != crate::notrack::rules::MARK {
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
            }),
            Entry::File {
                path,
                old,
                created_dirs,
                ..
            } => restore_file(root, path, old.as_ref(), created_dirs),
            Entry::NftTable {
                netns,
                family,
                name,
            } => reach(netns).and_then(|t| match nft_table_exists(&t, family, name) {
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
            }),
            Entry::NftMarked { netns, mark } => reach(netns).and_then(|t| {
                use crate::notrack::apply::Writer as _;
                let a = marked_rules(&t, mark)?;
                crate::notrack::apply::Direct
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
    created_dirs: &[String],
) -> Result<(), String> {
    let abs = root.join(path);
    match old {
        Some(o) => journal::write_atomic(&abs, o.text.as_bytes(), o.mode)
            .map_err(|e| format!("restoring {}: {e}", abs.display()))?,
        None => match std::fs::remove_file(&abs) {
            Ok(()) => {
                if let Some(d) = abs.parent() {
                    let _ = journal::fsync_dir(d);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", abs.display())),
        },
    }
    for d in created_dirs.iter().rev() {
        let dir = root.join(d);
        // Only when empty: someone may have put files there since.
        if std::fs::remove_dir(&dir).is_ok() {
            if let Some(p) = dir.parent() {
                let _ = journal::fsync_dir(p);
            }
        }
    }
    Ok(())
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
    crate::settings::KNOBS
        .iter()
        .any(|k| k.path == path && k.scope == crate::settings::KnobScope::Global)
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
    let mut notes = Vec::new();
    if pending {
        notes.push(format!(
            "change set {id} was interrupted (state pending): entries not yet written are left as they are"
        ));
    }
    // Namespaces, entered again.
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
    // Read back.
    let mut checks = Vec::new();
    for e in &todo.entries {
        let (what, want, got, ok) = match e {
            Entry::Sysctl {
                key,
                path,
                netns,
                old,
                ..
            } => {
                let got = reach(netns).and_then(|t| {
                    netns::run_in(&t, || read_knob(path))
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
            Entry::Unknown => continue,
        };
        checks.push(Check {
            what,
            want,
            got,
            ok,
        });
    }
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
    journal
        .write(&cs)
        .with_context(|| format!("recording the rollback of {id}"))?;
    Ok(out)
}
