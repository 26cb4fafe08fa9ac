//! [`Knob`]: a /proc/sys value changed for a while and put back on drop
//! (panics included). For the lab and kernel tests; not the tuning path
//! (`tune` journals its changes so they survive a crash of ctdoctor).
//!
//! The knob's file is opened once, in whatever network namespace the
//! calling thread is in: per-namespace knobs (`net/netfilter/nf_conntrack_*`
//! timeouts) set inside [`crate::run_in`] are restored in that same
//! namespace even when the guard is dropped on another thread. Global knobs
//! (`nf_conntrack_max`, buckets) are shared by the whole machine: hold
//! whatever lock keeps others from seeing the changed value while it lives.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use crate::SetupError;

/// `/proc/sys/<rel>` for a relative path of plain components (no `..`).
pub(crate) fn sys_path(rel: &str) -> Result<PathBuf, SetupError> {
    let invalid = |why| SetupError::Invalid {
        what: "/proc/sys path",
        value: rel.to_string(),
        why,
    };
    let p = Path::new(rel);
    if rel.is_empty() {
        return Err(invalid("empty"));
    }
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid(
            "must be relative to /proc/sys, without `.` or `..`",
        ));
    }
    Ok(Path::new("/proc/sys").join(p))
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SetupError + 'a {
    move |error| SetupError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

/// The whole value of an open /proc/sys file, without its final newline.
pub(crate) fn read_value(file: &File, path: &Path) -> Result<String, SetupError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = file
            .read_at(&mut chunk, buf.len() as u64)
            .map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let s = String::from_utf8_lossy(&buf);
    Ok(s.strip_suffix('\n').unwrap_or(&s).to_string())
}

/// Write `value` to an open /proc/sys file, at offset 0 as sysctl does.
pub(crate) fn write_value(file: &File, path: &Path, value: &str) -> Result<(), SetupError> {
    file.write_all_at(value.as_bytes(), 0)
        .map_err(io("write", path))
}

/// A /proc/sys value set for the guard's lifetime; the old value is
/// written back by [`Knob::restore`] or on drop — unless someone else
/// changed it meanwhile (then it is theirs now: left as is, and said on
/// stderr).
#[derive(Debug)]
pub struct Knob {
    path: PathBuf,
    file: File,
    old: String,
    ours: String,
    armed: bool,
    /// Put the old value back whatever the knob holds then.
    always: bool,
}

impl Knob {
    /// Set `/proc/sys/<rel>` (e.g. `net/netfilter/nf_conntrack_max`) to
    /// `value`, remembering the old value.
    pub fn set(rel: &str, value: &str) -> Result<Knob, SetupError> {
        let path = sys_path(rel)?;
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let old = read_value(&file, &path)?;
        write_value(&file, &path, value)?;
        // What the kernel holds now (it may normalise what we wrote).
        let ours = read_value(&file, &path)?;
        Ok(Knob {
            path,
            file,
            old,
            ours,
            armed: true,
            always: false,
        })
    }

    /// [`Knob::set`] for a caller that holds the [`GlobalLock`] exclusive
    /// and changes the knob further itself (a test pasting a fix): the old
    /// value goes back on drop whatever the knob holds then.
    pub fn set_exclusive(rel: &str, value: &str) -> Result<Knob, SetupError> {
        let mut k = Knob::set(rel, value)?;
        k.always = true;
        Ok(k)
    }

    /// The file changed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value it had before, and gets back.
    pub fn old(&self) -> &str {
        &self.old
    }

    /// Put the old value back now, saying whether that worked (drop only
    /// reports a failure on stderr). [`SetupError::Changed`] when someone
    /// else changed the value since: it is left as they set it.
    pub fn restore(mut self) -> Result<(), SetupError> {
        self.armed = false;
        self.put_back()
    }

    fn put_back(&self) -> Result<(), SetupError> {
        let now = read_value(&self.file, &self.path)?;
        if !self.always && now.split_whitespace().ne(self.ours.split_whitespace()) {
            return Err(SetupError::Changed {
                path: self.path.clone(),
                now: now.trim().to_string(),
                ours: self.ours.trim().to_string(),
                old: self.old.trim().to_string(),
            });
        }
        write_value(&self.file, &self.path, &self.old)
    }
}

impl Drop for Knob {
    fn drop(&mut self) {
        if self.armed {
            match self.put_back() {
                Ok(()) => {}
                Err(e @ SetupError::Changed { .. }) => eprintln!("not restored: {e}"),
                Err(e) => eprintln!(
                    "FAILED to restore {} to {:?}: {e}",
                    self.path.display(),
                    self.old
                ),
            }
        }
    }
}

/// The machine-wide lock every ctdoctor process takes around changes to
/// global knobs (nf_conntrack_max, the hash): exclusive while it changes
/// them (`ctdoctor lab`, the kernel tests that change one), shared by work
/// that must not see them changed (the other kernel tests). An flock on a
/// file in the temp dir, released when the guard drops.
#[derive(Debug)]
pub struct GlobalLock {
    _file: File,
}

/// Set by a caller that already holds the lock exclusive for the process
/// it starts (the test suite, around a whole test): that process then
/// neither takes nor waits for it.
pub const HELD_ENV: &str = "CTDOCTOR_GLOBAL_LOCK_HELD";

/// The lock's file.
pub fn global_lock_path() -> PathBuf {
    std::env::temp_dir().join("ctdoctor-kernel-tests.lock")
}

impl GlobalLock {
    fn take(op: libc::c_int) -> Result<GlobalLock, SetupError> {
        let path = global_lock_path();
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        // SAFETY: flock(2) on an fd we own.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), op) } != 0 {
            return Err(SetupError::Io {
                op: "lock",
                path,
                error: std::io::Error::last_os_error(),
            });
        }
        Ok(GlobalLock { _file: f })
    }

    /// Exclusive: no other holder, shared or exclusive, until dropped (waits).
    pub fn exclusive() -> Result<GlobalLock, SetupError> {
        GlobalLock::take(libc::LOCK_EX)
    }

    /// Exclusive if free now, else None (someone else holds it).
    pub fn try_exclusive() -> Result<Option<GlobalLock>, SetupError> {
        match GlobalLock::take(libc::LOCK_EX | libc::LOCK_NB) {
            Ok(l) => Ok(Some(l)),
            Err(SetupError::Io { error, .. })
                if error.raw_os_error() == Some(libc::EWOULDBLOCK) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Shared with other shared holders (waits for an exclusive one).
    pub fn shared() -> Result<GlobalLock, SetupError> {
        GlobalLock::take(libc::LOCK_SH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knob_paths_stay_under_proc_sys() {
        assert_eq!(
            sys_path("net/netfilter/nf_conntrack_max").unwrap(),
            PathBuf::from("/proc/sys/net/netfilter/nf_conntrack_max")
        );
        for bad in ["", "/etc/passwd", "net/../../etc", "./net"] {
            assert!(sys_path(bad).is_err(), "{bad}");
        }
    }
}
