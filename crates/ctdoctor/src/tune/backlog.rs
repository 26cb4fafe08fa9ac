//! Raise a listener's accept backlog now, without restarting the process
//! that owns it (`tune --listen-backlog PORT=N`).
//!
//! A listener's accept queue holds min(the backlog its process passed to
//! listen(), net.core.somaxconn of its netns at that call). Calling
//! listen() again on a listening socket changes only that limit
//! (inet_listen). Only the owning process holds the socket, so ctdoctor
//! borrows it: pidfd_open(2) + pidfd_getfd(2) (Linux 5.6; needs ptrace
//! rights over the process, which root has) give a duplicate of the same
//! socket. Its inode is checked against the one sock_diag reported, so a
//! pid reused since the scan is never touched. The new backlog is read back
//! through sock_diag.
//!
//! Not journaled: the undo is the same command with the old backlog, and
//! the report prints it. The process's own next listen() (nginx -s reload,
//! a restart) sets its configured backlog again: persist it there.
//!
//! Not for: finding which listeners overflow (checks::sockets).

use crate::host::fds::{socket_owners, SocketOwner};
use crate::host::sockdiag::{self, Listener};
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The largest backlog accepted (the kernel caps it at somaxconn anyway).
pub const MAX_BACKLOG: u32 = 1 << 20;

/// One listener and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct Raised {
    pub addr: String,
    pub port: u16,
    pub inode: u64,
    pub owner: Option<SocketOwner>,
    /// The effective backlog before and after (read back).
    pub before: u32,
    pub after: Option<u32>,
    pub error: Option<String>,
}

/// The outcome for one port.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub port: u16,
    pub backlog: u32,
    /// net.core.somaxconn of the namespace: the backlog's ceiling.
    pub somaxconn: Option<u32>,
    pub dry_run: bool,
    pub listeners: Vec<Raised>,
}

impl Outcome {
    pub fn errors(&self) -> usize {
        self.listeners.iter().filter(|l| l.error.is_some()).count()
    }
}

/// `8080=4096` -> (8080, 4096).
pub fn parse_spec(s: &str) -> Result<(u16, u32), String> {
    let (p, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PORT=BACKLOG, e.g. 443=4096"))?;
    let port: u16 = p
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("{p:?}: not a TCP port (1-65535)"))?;
    let n: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|&n| (1..=MAX_BACKLOG).contains(&n))
        .ok_or_else(|| format!("{n:?}: a backlog is 1 to {MAX_BACKLOG}"))?;
    Ok((port, n))
}

/// The listeners on `port` in `target`, with their owners, and the
/// namespace's somaxconn.
fn read(target: &netns::Target, port: u16) -> Result<(Vec<Listener>, Option<u32>)> {
    let (ls, somaxconn) = netns::run_in(target, || {
        let ls = sockdiag::listeners_live();
        let max = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        (ls, max)
    })
    .map_err(|e| anyhow!("entering netns {target}: {e}"))?;
    let mut ls: Vec<Listener> = ls
        .map_err(|u| anyhow!("listing listeners: {u}"))?
        .into_iter()
        .filter(|l| l.port == port)
        .collect();
    let inodes = ls.iter().map(|l| l.inode).collect();
    let owners = socket_owners(
        std::path::Path::new("/proc"),
        &inodes,
        std::time::Duration::from_secs(5),
    );
    for l in &mut ls {
        l.owner = owners.get(&l.inode).cloned();
    }
    ls.sort_by(|a, b| a.addr.cmp(&b.addr).then(a.inode.cmp(&b.inode)));
    Ok((ls, somaxconn))
}

/// Set the backlog of every listener on `port` in `target` to `backlog`
/// (with `dry`, only say what would be done). Listeners whose owner was
/// not found or cannot be borrowed carry an error; the others go on.
pub fn raise(target: &netns::Target, port: u16, backlog: u32, dry: bool) -> Result<Outcome> {
    let (ls, somaxconn) = read(target, port)?;
    let mut out = Outcome {
        port,
        backlog,
        somaxconn,
        dry_run: dry,
        listeners: Vec::new(),
    };
    for l in ls {
        let error = match (&l.owner, dry) {
            (None, _) => Some("no process holding it was found (it may have exited)".into()),
            (Some(_), true) => None,
            (Some(o), false) => relisten(o, l.inode, backlog).err(),
        };
        out.listeners.push(Raised {
            addr: l.addr,
            port: l.port,
            inode: l.inode,
            owner: l.owner,
            before: l.backlog,
            after: None,
            error,
        });
    }
    if !dry {
        let (now, _) = read(target, port)?;
        for r in &mut out.listeners {
            r.after = now.iter().find(|l| l.inode == r.inode).map(|l| l.backlog);
        }
    }
    Ok(out)
}

/// listen(backlog) on a duplicate of `owner`'s fd, once it is checked to be
/// the socket `inode`.
fn relisten(owner: &SocketOwner, inode: u64, backlog: u32) -> Result<(), String> {
    let pid = libc::pid_t::try_from(owner.pid).map_err(|_| "pid out of range".to_string())?;
    // SAFETY: pidfd_open takes a pid and flags; a returned fd is ours.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = own(pidfd, "pidfd_open", owner)?;
    // SAFETY: pidfd is a valid pidfd; fd is a number in that process.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), owner.fd, 0) };
    let fd = own(fd, "pidfd_getfd", owner)?;
    let file = std::fs::File::from(fd);
    use std::os::unix::fs::MetadataExt;
    let ino = file.metadata().map_err(|e| e.to_string())?.ino();
    if ino != inode {
        return Err(format!(
            "fd {} of pid {} is no longer the listener (inode {ino}, not {inode}): not touched",
            owner.fd, owner.pid
        ));
    }
    let n = i32::try_from(backlog).unwrap_or(i32::MAX);
    // SAFETY: the fd is an open socket we hold; listen takes an int.
    if unsafe { libc::listen(file.as_raw_fd(), n) } != 0 {
        return Err(format!("listen: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A syscall's returned fd, or what its failure means here.
fn own(r: libc::c_long, call: &str, o: &SocketOwner) -> Result<OwnedFd, String> {
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOSYS) => format!("{call}: this kernel lacks it (Linux 5.6 or later)"),
            Some(libc::EPERM) | Some(libc::EACCES) => format!(
                "{call} on {}[{}]: not permitted (needs root with CAP_SYS_PTRACE; \
                 kernel.yama.ptrace_scope=3 forbids it)",
                o.comm, o.pid
            ),
            Some(libc::ESRCH) => format!("{}[{}] has exited", o.comm, o.pid),
            _ => format!("{call} on {}[{}]: {e}", o.comm, o.pid),
        });
    }
    let fd = i32::try_from(r).map_err(|_| format!("{call}: fd out of range"))?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse_spec("8080=4096"), Ok((8080, 4096)));
        assert_eq!(parse_spec(" 443 = 8 "), Ok((443, 8)));
        for bad in ["8080", "0=8", "70000=8", "80=0", "80=x", "80=2000000"] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }

    /// Our own listener, re-listened through a pidfd: the kernel's backlog
    /// (sock_diag) changes, capped by somaxconn.
    #[test]
    fn relisten_changes_the_backlog_sock_diag_reports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let here = netns::Target::Current;
        let before = raise(&here, port, 8, true).unwrap();
        assert_eq!(before.listeners.len(), 1, "{before:?}");
        assert_eq!(before.listeners[0].before, 128, "std's listen backlog");
        let o = raise(&here, port, 8, false).unwrap();
        assert_eq!(o.errors(), 0, "{o:?}");
        assert_eq!(o.listeners[0].after, Some(8));
        assert_eq!(
            o.listeners[0].owner.as_ref().unwrap().pid,
            std::process::id()
        );
    }
}
