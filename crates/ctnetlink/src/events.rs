//! Event subscription: join the NEW / UPDATE / DESTROY multicast groups and
//! decode each event into the same [`Entry`] view as dumps.
//!
//! New vs update: both arrive as IPCTNL_MSG_CT_NEW; the kernel sets
//! NLM_F_CREATE | NLM_F_EXCL on the first event of an entry. Destroy is
//! IPCTNL_MSG_CT_DELETE. A full socket buffer drops events and makes recv
//! fail with ENOBUFS: that is delivered as [`Event::Lost`] (resync with a
//! dump), never as an error.
//!
//! Note (kernel): with nf_conntrack_events=2 (default) entries created while
//! no listener existed never send events, not even DESTROY.

use std::time::Duration;

use crate::attr::Messages;
use crate::consts::*;
use crate::entry::Entry;
use crate::error::Error;
use crate::socket::Socket;

/// Multicast groups (bit masks for [`Socket::subscribe`]).
pub mod groups {
    /// NFNLGRP_CONNTRACK_NEW.
    pub const NEW: u32 = 1 << 0;
    /// NFNLGRP_CONNTRACK_UPDATE.
    pub const UPDATE: u32 = 1 << 1;
    /// NFNLGRP_CONNTRACK_DESTROY.
    pub const DESTROY: u32 = 1 << 2;
    /// All three.
    pub const ALL: u32 = NEW | UPDATE | DESTROY;
}

/// One conntrack event.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    New(Entry<'a>),
    Update(Entry<'a>),
    Destroy(Entry<'a>),
    /// The kernel dropped events (ENOBUFS): counts kept from events are now
    /// wrong; resync with a dump.
    Lost,
}

impl Socket {
    /// Join event groups (a mask of [`groups`] bits).
    pub fn subscribe(&mut self, mask: u32) -> Result<(), Error> {
        for (bit, group) in [
            (groups::NEW, NFNLGRP_CONNTRACK_NEW),
            (groups::UPDATE, NFNLGRP_CONNTRACK_UPDATE),
            (groups::DESTROY, NFNLGRP_CONNTRACK_DESTROY),
        ] {
            if mask & bit == 0 {
                continue;
            }
            let g = group as i32;
            // SAFETY: setsockopt with an int on our socket.
            let rc = unsafe {
                libc::setsockopt(
                    self.raw_fd(),
                    SOL_NETLINK,
                    NETLINK_ADD_MEMBERSHIP,
                    &g as *const i32 as *const libc::c_void,
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(Error::last_os("setsockopt(NETLINK_ADD_MEMBERSHIP)"));
            }
        }
        Ok(())
    }

    /// Wait up to `timeout` (None: forever) for one datagram of events and
    /// call `f` for each event in it. Returns the number of events
    /// delivered (0 on timeout). ENOBUFS becomes `Event::Lost`.
    pub fn recv_events(
        &mut self,
        timeout: Option<Duration>,
        mut f: impl FnMut(Event<'_>),
    ) -> Result<usize, Error> {
        let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
        let mut pfd = libc::pollfd {
            fd: self.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = Error::last_os("poll");
            return if e.errno() == Some(libc::EINTR) {
                Ok(0)
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(0);
        }
        let n = match self.recv(libc::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(e) if e.errno() == Some(libc::ENOBUFS) => {
                f(Event::Lost);
                return Ok(1);
            }
            Err(e) if e.errno() == Some(libc::EAGAIN) => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut count = 0;
        for m in Messages::new(&self.buf[..n]) {
            let m = m?;
            let (subsys, msg) = m.subsys_msg();
            if subsys != NFNL_SUBSYS_CTNETLINK {
                continue;
            }
            let e = Entry::from_message(&m)?;
            let ev = match msg {
                IPCTNL_MSG_CT_NEW if m.hdr.flags & (NLM_F_CREATE | NLM_F_EXCL) != 0 => {
                    Event::New(e)
                }
                IPCTNL_MSG_CT_NEW => Event::Update(e),
                IPCTNL_MSG_CT_DELETE => Event::Destroy(e),
                _ => continue,
            };
            count += 1;
            f(ev);
        }
        Ok(count)
    }
}
