//! Network namespaces: run a closure on a dedicated thread that has
//! entered another netns (setns(CLONE_NEWNET)), so sockets it opens belong
//! there. The caller's thread never changes namespace. Sockets returned out
//! of the closure stay bound to that namespace.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use crate::error::Error;
use crate::socket::Socket;

/// Which namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Netns {
    /// A named namespace: /run/netns/NAME (as `ip netns add` makes).
    Named(String),
    /// The namespace of a process: /proc/PID/ns/net.
    Pid(u32),
    /// Any nsfs path.
    Path(PathBuf),
}

impl Netns {
    /// The nsfs path to open.
    pub fn path(&self) -> PathBuf {
        match self {
            Netns::Named(n) => PathBuf::from("/run/netns").join(n),
            Netns::Pid(p) => PathBuf::from(format!("/proc/{p}/ns/net")),
            Netns::Path(p) => p.clone(),
        }
    }
    fn label(&self) -> String {
        self.path().display().to_string()
    }
}

/// Run `f` on a new thread inside `ns` and return its result. A panic in
/// `f` is propagated to the caller.
pub fn run_in<R: Send>(ns: &Netns, f: impl FnOnce() -> R + Send) -> Result<R, Error> {
    let path = ns.path();
    std::thread::scope(|s| {
        let h = s.spawn(|| -> Result<R, Error> {
            let file = std::fs::File::open(&path).map_err(|e| Error::Netns {
                target: ns.label(),
                op: "open",
                errno: e.raw_os_error().unwrap_or(0),
            })?;
            // SAFETY: setns on an fd we hold, affecting only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return Err(Error::Netns {
                    target: ns.label(),
                    op: "setns",
                    errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
                });
            }
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

impl Socket {
    /// Open a socket inside another network namespace.
    pub fn open_in(ns: &Netns) -> Result<Socket, Error> {
        run_in(ns, Socket::open)?
    }
}
