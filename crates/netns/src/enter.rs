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
    let file = std::fs::File::open(&path).map_err(|e| Error::new(target, Step::Open, &e))?;
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
    fn a_file_that_is_no_namespace_is_einval_at_setns() {
        // Any privilege: setns checks the file type first.
        let e = run_in(&Target::Path("/tmp".into()), || ()).unwrap_err();
        assert_eq!((e.step, e.errno), (Step::Setns, libc::EINVAL));
        assert_eq!(e.to_string(), "/tmp is not a network namespace file");
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
