//! [`run_in`]: run a closure on a dedicated thread that has joined another
//! network namespace. The only `setns(CLONE_NEWNET)` in the workspace.
//! Not for other namespace types (mount, pid, user), and never moves the
//! calling thread or the process.

use std::os::fd::AsRawFd;

use crate::error::{Error, Step};
use crate::Target;

/// Run `f` on a thread that has joined `target`'s network namespace and
/// return its result. Sockets `f` opens belong to that namespace;
/// /proc/sys/net and /proc/thread-self/net show it. The calling thread
/// never changes namespace. [`Target::Current`] runs `f` right here, and
/// so does a target that is the calling thread's own namespace (joining it
/// would change nothing, and setns needs CAP_SYS_ADMIN even then).
///
/// A panic in `f` is propagated to the caller (resumed on its thread).
/// Errors name the target, the step (open, setns) and the errno.
pub fn run_in<T: Send>(target: &Target, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
    let Some(path) = target.path() else {
        return Ok(f());
    };
    let file = open_ns(target, &path)?;
    if is_current(&file) {
        return Ok(f());
    }
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("netns".into())
            .spawn_scoped(s, move || {
                // SAFETY: setns on this thread only, with a valid fd we own.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let e = std::io::Error::last_os_error();
                    return Err(Error::new(target, Step::Setns, &e));
                }
                drop(file);
                Ok(f())
            })
            .map_err(|e| Error::new(target, Step::Thread, &e))?;
        match h.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// nsfs's `f_type` (NSFS_MAGIC): what /proc/PID/ns/net and its bind
/// mounts (/run/netns/NAME) live on since Linux 3.19.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// procfs's `f_type`: namespace files lived there before nsfs (3.10–3.18).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Open a namespace file without ever blocking and without opening what
/// cannot be one: the path must be a regular file (nsfs inodes are) —
/// a FIFO would block `open`, a device could act on being opened — and
/// the open file must live on nsfs (or procfs on old kernels). A FIFO
/// swapped in between the two checks cannot block either: O_NONBLOCK.
fn open_ns(target: &Target, path: &std::path::Path) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let meta = std::fs::metadata(path).map_err(|e| Error::new(target, Step::Open, &e))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(Error::not_namespace(target, what));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::new(target, Step::Open, &e))?;
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs on a valid fd we own into a statfs we own.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::new(target, Step::Open, &e));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by target
    let fs = st.f_type as i64;
    if fs != NSFS_MAGIC && fs != PROC_SUPER_MAGIC {
        return Err(Error::not_namespace(target, "a file that is not on nsfs"));
    }
    Ok(file)
}

/// Whether `file` is the calling thread's network namespace (same nsfs
/// device and inode as /proc/thread-self/ns/net).
fn is_current(file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        file.metadata(),
        std::fs::metadata("/proc/thread-self/ns/net"),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_runs_here() {
        let me = std::thread::current().id();
        assert_eq!(
            run_in(&Target::Current, || std::thread::current().id()),
            Ok(me)
        );
    }

    #[test]
    fn our_own_namespace_runs_here_without_setns() {
        // Any privilege: no setns is needed to stay where we are.
        let me = std::thread::current().id();
        let t = Target::Path("/proc/thread-self/ns/net".into());
        assert_eq!(run_in(&t, || std::thread::current().id()), Ok(me));
    }

    #[test]
    fn a_file_that_is_no_namespace_is_refused_before_setns() {
        let e = run_in(&Target::Path("/tmp".into()), || ()).unwrap_err();
        assert_eq!((e.step, e.errno), (Step::Check, libc::EINVAL));
        assert_eq!(
            e.to_string(),
            "/tmp is not a network namespace file (it is a directory)"
        );
        let e = run_in(&Target::Path("/dev/zero".into()), || ()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/zero is not a network namespace file (it is a character device)"
        );
        let toml = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let e = run_in(&Target::Path(toml.into()), || ()).unwrap_err();
        assert_eq!((e.step, e.errno), (Step::Check, libc::EINVAL));
        assert!(e.to_string().contains("not on nsfs"), "{e}");
        // procfs passes the check (namespace files lived there before
        // Linux 3.19); setns then refuses what is not a namespace.
        let e = run_in(&Target::Path("/proc/self/status".into()), || ()).unwrap_err();
        assert_eq!((e.step, e.errno), (Step::Setns, libc::EINVAL));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = std::env::temp_dir().join(format!("netns-fifo-test-{}", std::process::id()));
        let c = std::ffi::CString::new(d.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = run_in(&Target::Path(d.clone()), || ()).unwrap_err();
        let _ = std::fs::remove_file(&d);
        assert_eq!((e.step, e.errno), (Step::Check, libc::EINVAL));
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }

    #[test]
    fn a_mount_namespace_is_not_a_network_one() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: setns needs root");
            return;
        }
        let e = run_in(&Target::Path("/proc/self/ns/mnt".into()), || ()).unwrap_err();
        assert_eq!((e.step, e.errno), (Step::Setns, libc::EINVAL));
    }

    #[test]
    fn a_missing_name_is_enoent_at_open() {
        let t = Target::Named("netns-crate-no-such-namespace".into());
        let e = run_in(&t, || ()).unwrap_err();
        assert_eq!((e.step, e.errno), (Step::Open, libc::ENOENT));
        assert_eq!(e.target, t);
    }

    #[test]
    fn panics_propagate() {
        // Run here (our own namespace: no setns, any privilege).
        let own = Target::Path("/proc/thread-self/ns/net".into());
        let r = std::panic::catch_unwind(|| run_in(&own, || panic!("inside")));
        let p = r.expect_err("the panic reaches the caller");
        assert_eq!(p.downcast_ref::<&str>(), Some(&"inside"));

        // Across the dedicated thread: another namespace (setns needs root).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "panics_propagate: setns needs root, and CI=true requires this test to run"
            );
            eprintln!("skipping panics_propagate across a thread: setns needs root");
            return;
        }
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            // SAFETY: unshare on this thread only; gettid has no preconditions.
            let ok = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
            tid_tx.send(ok.then(|| unsafe { libc::gettid() })).unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx
            .recv()
            .unwrap()
            .expect("unshare(CLONE_NEWNET) as root");
        let other = Target::Path(format!("/proc/self/task/{tid}/ns/net").into());
        let r = std::panic::catch_unwind(|| run_in(&other, || panic!("inside")));
        done_tx.send(()).unwrap();
        holder.join().unwrap();
        let p = r.expect_err("the panic reaches the caller");
        assert_eq!(p.downcast_ref::<&str>(), Some(&"inside"));
    }
}
