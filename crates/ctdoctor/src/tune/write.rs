//! The one way `tune` (and `notrack --persist` through it) touches files:
//! paths confined under the change set's root, regular files only, written
//! atomically through a temporary file created `O_EXCL` beside the target
//! and removed on every error path, and the temporaries a killed run left
//! found and removed by the next run.
//!
//! Confinement ([`resolve`]): a relative path is walked component by
//! component under the root the way a chroot would see it — a symlink's
//! absolute target is taken relative to the root, `..` may not climb above
//! it — so `/etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf` (Debian's own
//! link) edits `/etc/sysctl.conf` and never replaces the link, and an
//! absolute link inside `--root` cannot send a write outside it. The
//! resolved path must be one tune may write ([`writable`]): the boot
//! configuration directories it reads, and notrack's persist files.
//!
//! Not for: what to write (tune::plan, tune::files) or the journal format
//! (tune::journal).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that makes tune kill itself (SIGKILL) at a
/// step, for the crash-safety tests: a step's name — `journal` (after the
/// journal is fsync'd, before any write), `runtime` (after the runtime
/// values, before the files), `files` (after the files, before the journal
/// says applied) — or `#N`, the N-th step of the run (every journal write,
/// runtime value, file written and renamed, and each rollback step counts).
pub const KILL_AT_ENV: &str = "CTDOCTOR_TUNE_KILL_AT";
/// Milliseconds to sleep at every step (so a test's kill from outside
/// lands between steps at random).
pub const STEP_DELAY_ENV: &str = "CTDOCTOR_TUNE_STEP_DELAY_MS";

/// A fault point: counts the step and, when the environment asks for it,
/// sleeps or kills the process here (see [`KILL_AT_ENV`]).
pub fn step(name: &str) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if let Some(ms) = std::env::var(STEP_DELAY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
    }
    let Ok(at) = std::env::var(KILL_AT_ENV) else {
        return;
    };
    if at == name || at.strip_prefix('#').and_then(|x| x.parse::<u64>().ok()) == Some(n) {
        eprintln!("ctdoctor: {KILL_AT_ENV}={at}: killing myself at step {n} ({name}), a test of crash safety");
        // SAFETY: signalling our own process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Files tune may write, relative to the root: exact paths and directories
/// (a file directly inside).
const WRITABLE_FILES: &[&str] = &["etc/sysctl.conf", "etc/modules"];
const WRITABLE_DIRS: &[&str] = &[
    "etc/sysctl.d",
    "run/sysctl.d",
    "usr/local/lib/sysctl.d",
    "usr/lib/sysctl.d",
    "lib/sysctl.d",
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/local/lib/modprobe.d",
    "usr/lib/modprobe.d",
    "lib/modprobe.d",
    "etc/modules-load.d",
    "run/modules-load.d",
    "usr/local/lib/modules-load.d",
    "usr/lib/modules-load.d",
    "lib/modules-load.d",
    "etc/nftables.d",
    "etc/iptables",
];

/// The most bits a file tune writes (or restores) may have: no execute,
/// no set-id, nothing writable by group or others.
pub const MAX_MODE: u32 = 0o644;

/// Whether `rel` (relative, already resolved) is a file tune may write.
pub fn writable(rel: &str) -> bool {
    let p = Path::new(rel);
    WRITABLE_FILES.contains(&rel)
        || p.parent().is_some_and(|d| {
            WRITABLE_DIRS
                .iter()
                .any(|w| d == Path::new(w) && p.file_name().is_some())
        })
}

pub use crate::confine::{plain_relative, resolve};

/// `rel` resolved under `root`, refused unless it is a file tune may write
/// and is a regular file or absent. The resolved relative path.
pub fn target(root: &Path, rel: &str) -> Result<String, String> {
    let r = resolve(root, rel)?;
    if !writable(&r) {
        return Err(if r == rel {
            format!("/{rel} is not a file tune writes")
        } else {
            format!("/{rel} leads to /{r}, which is not a file tune writes")
        });
    }
    match std::fs::symlink_metadata(root.join(&r)) {
        Ok(m) if m.is_file() => Ok(r),
        Ok(_) => Err(format!(
            "/{r} is not a regular file: tune replaces only regular files"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(r),
        Err(e) => Err(format!("/{r}: {e}")),
    }
}

/// Marker in the names of tune's temporary files.
const TMP_MARK: &str = ".ctdoctor-";
const TMP_EXT: &str = ".tmp";

/// A fresh temporary name beside `name`: `.NAME.ctdoctor-PID-RANDOM.tmp`.
fn temp_name(name: &str) -> String {
    format!(
        ".{name}{TMP_MARK}{}-{:016x}{TMP_EXT}",
        std::process::id(),
        random_u64()
    )
}

/// 64 random bits (getrandom; the clock and a counter if it fails).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom into a buffer of the length given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
    if n == 8 {
        return u64::from_ne_bytes(b);
    }
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ N
        .fetch_add(0x9e37_79b9_7f4a_7c15, std::sync::atomic::Ordering::Relaxed)
        .rotate_left(17)
}

/// The pid in a temporary name of ours, when `name` is one.
fn temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(TMP_EXT)?;
    let (_, tail) = rest.rsplit_once(TMP_MARK)?;
    let (pid, rand) = tail.split_once('-')?;
    (rand.len() == 16 && rand.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Remove the temporary files of ours in `dir` left by processes that are
/// gone (a kill -9 mid-write): what was removed. Only regular files whose
/// name has our exact shape; a live process's are left alone.
pub fn sweep(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut gone = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_pid(&name) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let p = e.path();
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file())
            && std::fs::remove_file(&p).is_ok()
        {
            gone.push(p);
        }
    }
    if !gone.is_empty() {
        let _ = fsync_dir(dir);
    }
    gone
}

/// Write `bytes` to `path` atomically: a temporary file created `O_EXCL`
/// in the same directory, fsync'd, renamed over `path`, then the directory
/// fsync'd. Refused when `path` exists and is not a regular file (a link,
/// a device, a FIFO, a directory). The temporary never outlives an error.
pub fn atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file: not replaced",
                path.display()
            )))
        }
        _ => {}
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(temp_name(&name));
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .mode(mode & 0o7777)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let result = (|| {
        f.write_all(bytes)?;
        // The umask may have narrowed the mode asked for.
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
        f.sync_all()?;
        step("file written, not yet renamed");
        std::fs::rename(&tmp, path)?;
        fsync_dir(dir)?;
        step("file renamed");
        Ok(())
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

/// Create `dir` and its missing parents with `mode` (whatever the umask);
/// returns the ones created, outermost first (so a rollback can remove
/// them, innermost first).
pub fn create_dirs(dir: &Path, mode: u32) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut d = dir;
    while std::fs::symlink_metadata(d).is_err() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    missing.reverse();
    for m in &missing {
        match std::fs::DirBuilder::new().mode(mode).create(m) {
            Ok(()) => std::fs::set_permissions(m, std::fs::Permissions::from_mode(mode))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = m.parent() {
            fsync_dir(p)?;
        }
    }
    Ok(missing)
}

/// Directories missing above `rel` under `root`, relative, outermost first.
pub fn missing_dirs(root: &Path, rel: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = Path::new(rel).parent();
    while let Some(d) = p {
        if d.as_os_str().is_empty() || std::fs::symlink_metadata(root.join(d)).is_ok() {
            break;
        }
        out.push(d.to_string_lossy().into_owned());
        p = d.parent();
    }
    out.reverse();
    out
}

/// Why a directory or file the journal lives in cannot be trusted: owned
/// by someone other than the effective user or root, or writable by group
/// or others (someone else could plant a change set that root's next
/// rollback would carry out). None when it is fine.
pub fn untrusted(meta: &std::fs::Metadata) -> Option<String> {
    // SAFETY: geteuid has no failure mode.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid && meta.uid() != 0 {
        return Some(format!("owned by uid {}, not {euid}", meta.uid()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!("writable by group or others (mode {mode:04o})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn writable_paths_are_the_boot_config_and_notrack_files() {
        assert!(writable("etc/sysctl.d/90-ctdoctor.conf"));
        assert!(writable("etc/sysctl.conf"));
        assert!(writable("etc/modprobe.d/ctdoctor.conf"));
        assert!(writable("etc/nftables.d/ctdoctor-notrack.nft"));
        assert!(!writable("etc/shadow"));
        assert!(!writable("etc/sysctl.d"));
        assert!(!writable("etc/sysctl.d/x/y.conf"));
        assert!(plain_relative("../etc/sysctl.conf").is_err());
        assert!(plain_relative("/etc/sysctl.conf").is_err());
        assert!(plain_relative("etc/./sysctl.conf").is_ok()); // `.` is dropped by components()
        assert!(plain_relative("etc/sysctl.d/a\nb").is_err());
    }

    #[test]
    fn links_resolve_inside_the_root_and_never_out_of_it() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
        std::fs::write(r.join("etc/sysctl.conf"), "x\n").unwrap();
        // Debian's own relative link.
        symlink("../sysctl.conf", r.join("etc/sysctl.d/99-sysctl.conf")).unwrap();
        assert_eq!(
            target(r, "etc/sysctl.d/99-sysctl.conf").unwrap(),
            "etc/sysctl.conf"
        );
        // An absolute link is taken relative to the root.
        symlink("/etc/sysctl.conf", r.join("etc/sysctl.d/98-abs.conf")).unwrap();
        assert_eq!(
            target(r, "etc/sysctl.d/98-abs.conf").unwrap(),
            "etc/sysctl.conf"
        );
        // A link out of the root, or to a file tune does not write.
        symlink("../../../../../tmp/x", r.join("etc/sysctl.d/97-out.conf")).unwrap();
        assert!(target(r, "etc/sysctl.d/97-out.conf").is_err());
        symlink("/etc/shadow", r.join("etc/sysctl.d/96-shadow.conf")).unwrap();
        assert!(target(r, "etc/sysctl.d/96-shadow.conf")
            .unwrap_err()
            .contains("etc/shadow"));
        // A loop.
        symlink("95-loop.conf", r.join("etc/sysctl.d/95-loop.conf")).unwrap();
        assert!(target(r, "etc/sysctl.d/95-loop.conf").is_err());
        // A directory in the place of the file.
        std::fs::create_dir(r.join("etc/sysctl.d/94-dir.conf")).unwrap();
        assert!(target(r, "etc/sysctl.d/94-dir.conf")
            .unwrap_err()
            .contains("not a regular file"));
        assert_eq!(
            target(r, "etc/sysctl.d/90-ctdoctor.conf").unwrap(),
            "etc/sysctl.d/90-ctdoctor.conf"
        );
    }

    #[test]
    fn atomic_writes_leave_no_temporary_and_refuse_what_is_not_a_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.conf");
        atomic(&f, b"one\n", 0o644).unwrap();
        atomic(&f, b"two\n", 0o600).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two\n");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        symlink(&f, d.path().join("link.conf")).unwrap();
        assert!(atomic(&d.path().join("link.conf"), b"x", 0o644).is_err());
        assert!(std::fs::symlink_metadata(d.path().join("link.conf"))
            .unwrap()
            .file_type()
            .is_symlink());
        // A write into a directory that does not exist leaves nothing.
        assert!(atomic(&d.path().join("no/such.conf"), b"x", 0o644).is_err());
    }

    #[test]
    fn sweep_removes_only_dead_processes_temporaries() {
        let d = tempfile::tempdir().unwrap();
        // pid 0x7ffffffe is never alive (above pid_max's limit).
        let dead = d
            .path()
            .join(".a.conf.ctdoctor-2147483646-0123456789abcdef.tmp");
        let mine = d.path().join(temp_name("a.conf"));
        let other = d.path().join(".a.conf.ctdoctor-notours.tmp");
        for p in [&dead, &mine, &other] {
            std::fs::write(p, "x").unwrap();
        }
        assert_eq!(sweep(d.path()), vec![dead.clone()]);
        assert!(!dead.exists() && mine.exists() && other.exists());
    }

    #[test]
    fn created_dirs_are_listed_outermost_first_with_their_mode() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        // 0777 is more than any umask lets mkdir give: set explicitly.
        let made = create_dirs(&deep, 0o777).unwrap();
        assert_eq!(
            made,
            vec![d.path().join("a"), d.path().join("a/b"), deep.clone()]
        );
        for m in &made {
            assert_eq!(
                std::fs::metadata(m).unwrap().permissions().mode() & 0o777,
                0o777
            );
        }
        assert!(create_dirs(&deep, 0o700).unwrap().is_empty());
        assert_eq!(
            missing_dirs(d.path(), "a/b/c/x/y/f"),
            vec!["a/b/c/x", "a/b/c/x/y"]
        );
    }
}
