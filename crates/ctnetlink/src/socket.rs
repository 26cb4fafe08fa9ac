//! The netlink socket: open (NETLINK_NETFILTER via libc), buffer sizing,
//! send, receive, and the one request/response loop every operation uses
//! ([`Socket::transact`]). Not here: what the messages mean (dump.rs,
//! stats.rs, build.rs, events.rs).
//!
//! A socket belongs to the network namespace of the thread that opened it
//! ([`Socket::open_in`] opens one inside another namespace through
//! [`netns::run_in`]); it keeps working there whichever thread uses it later.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::attr::{Message, Messages};
use crate::consts::*;
use crate::error::Error;

/// Default socket receive buffer asked for (SO_RCVBUFFORCE, else SO_RCVBUF,
/// which the kernel caps at net.core.rmem_max).
pub const DEFAULT_RCVBUF: usize = 8 << 20;
/// Default socket send buffer (bounds one batch sendmsg).
pub const DEFAULT_SNDBUF: usize = 4 << 20;
/// Size of our user-space receive buffer. The kernel fills at most ~32 KiB
/// per dump datagram; events and acks are small; 1 MiB leaves headroom and
/// MSG_TRUNC still catches anything larger.
pub const RECV_BUF: usize = 1 << 20;

/// A ctnetlink socket.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    pub(crate) buf: Vec<u8>,
    pub(crate) seq: u32,
    portid: u32,
    rcvbuf: usize,
    sndbuf: usize,
    pub(crate) wbuf: crate::attr::Writer,
    /// A callback's stop ends the transaction at once, unread messages
    /// left in the socket: only for a socket about to be closed
    /// ([`Socket::dump_sample`]).
    pub(crate) abandon_on_stop: bool,
}

fn setsockopt_int(fd: RawFd, level: i32, opt: i32, v: i32) -> bool {
    // SAFETY: plain setsockopt with an int option on a socket we own.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        ) == 0
    }
}

fn getsockopt_int(fd: RawFd, level: i32, opt: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt into a local int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            &mut v as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

/// What one [`Socket::transact`] saw.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Transaction {
    pub interrupted: bool,
    pub messages: u64,
    pub bytes: u64,
    pub recvs: u64,
}

impl Socket {
    /// Open a ctnetlink socket in the calling thread's network namespace,
    /// with a [`DEFAULT_RCVBUF`] receive buffer.
    pub fn open() -> Result<Socket, Error> {
        Socket::open_with(DEFAULT_RCVBUF)
    }

    /// Open a socket inside another network namespace (on a dedicated
    /// thread that entered it; the caller's thread never moves). The socket
    /// stays bound to that namespace.
    pub fn open_in(target: &netns::Target) -> Result<Socket, Error> {
        netns::run_in(target, Socket::open)?
    }

    /// Open with a chosen socket receive buffer size in bytes. Tries
    /// SO_RCVBUFFORCE (needs CAP_NET_ADMIN), falls back to SO_RCVBUF.
    pub fn open_with(rcvbuf: usize) -> Result<Socket, Error> {
        // SAFETY: socket(2) with constant arguments.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(Error::last_os("socket(AF_NETLINK, NETLINK_NETFILTER)"));
        }
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is valid (pid 0: the kernel assigns one).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        let salen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: bind with a valid sockaddr_nl.
        if unsafe { libc::bind(raw, &sa as *const _ as *const libc::sockaddr, salen) } < 0 {
            return Err(Error::last_os("bind"));
        }
        let mut len = salen;
        // SAFETY: getsockname into a local sockaddr_nl.
        if unsafe { libc::getsockname(raw, &mut sa as *mut _ as *mut libc::sockaddr, &mut len) } < 0
        {
            return Err(Error::last_os("getsockname"));
        }
        let r = rcvbuf.min(i32::MAX as usize) as i32;
        if !setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, r) {
            setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, r);
        }
        let s = DEFAULT_SNDBUF as i32;
        if !setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, s) {
            setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, s);
        }
        // Acks carry only the header of the request (not the whole request):
        // keeps batch acks small. Best effort (kernel >= 4.3).
        setsockopt_int(raw, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        setsockopt_int(raw, SOL_NETLINK, NETLINK_EXT_ACK, 1);
        // The kernel reports double the value set (bookkeeping overhead).
        let rcvbuf =
            getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(212992) as usize;
        let sndbuf =
            getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(212992) as usize;
        Ok(Socket {
            fd,
            buf: vec![0u8; RECV_BUF],
            seq: (std::process::id() << 12) ^ 0x5a5a,
            portid: sa.nl_pid,
            rcvbuf,
            sndbuf,
            wbuf: crate::attr::Writer::new(),
            abandon_on_stop: false,
        })
    }

    /// The netlink port id the kernel assigned.
    pub fn portid(&self) -> u32 {
        self.portid
    }
    /// The effective socket receive buffer (as SO_RCVBUF reports it).
    pub fn rcvbuf(&self) -> usize {
        self.rcvbuf
    }
    /// The effective socket send buffer (as SO_SNDBUF reports it).
    pub fn sndbuf(&self) -> usize {
        self.sndbuf
    }

    pub(crate) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Send bytes as one datagram to the kernel.
    pub(crate) fn send(&self, bytes: &[u8]) -> Result<(), Error> {
        // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        loop {
            // SAFETY: sendto with a valid buffer and address.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr() as *const libc::c_void,
                    bytes.len(),
                    0,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = Error::last_os("sendto");
            if e.errno() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }

    /// Send the message(s) in the write buffer.
    pub(crate) fn send_wbuf(&mut self) -> Result<(), Error> {
        let buf = std::mem::take(&mut self.wbuf.buf);
        let r = self.send(&buf);
        self.wbuf.buf = buf;
        r
    }

    /// Receive one datagram into the internal buffer; returns its length.
    /// `flags` e.g. MSG_DONTWAIT. EINTR is retried.
    pub(crate) fn recv(&mut self, flags: i32) -> Result<usize, Error> {
        loop {
            // SAFETY: recv into our own buffer of its full length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr() as *mut libc::c_void,
                    self.buf.len(),
                    flags | libc::MSG_TRUNC,
                )
            };
            if n >= 0 {
                let n = n as usize;
                if n > self.buf.len() {
                    return Err(Error::Truncated { len: n });
                }
                return Ok(n);
            }
            let e = Error::last_os("recv");
            if e.errno() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }

    /// Read replies to request `seq` until NLMSG_DONE (dumps) or the final
    /// ack / error (requests with NLM_F_ACK). Every other message with our
    /// seq goes to `f` (stop calling it by returning false; the rest is read
    /// and discarded, since the kernel has no way to cancel a dump).
    /// Messages with another seq (stale replies) are skipped.
    pub(crate) fn transact(
        &mut self,
        op: &'static str,
        seq: u32,
        mut f: impl FnMut(&Message<'_>) -> Result<bool, Error>,
    ) -> Result<Transaction, Error> {
        let mut t = Transaction::default();
        let mut deliver = true;
        let mut pending: Option<Error> = None;
        loop {
            let n = self.recv(0)?;
            t.recvs += 1;
            t.bytes += n as u64;
            let buf = std::mem::take(&mut self.buf);
            let mut done = false;
            let mut abandoned = false;
            let mut result = Ok(());
            for m in Messages::new(&buf[..n]) {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        result = Err(Error::Decode(e));
                        break;
                    }
                };
                if m.hdr.seq != seq {
                    continue;
                }
                if m.hdr.flags & NLM_F_DUMP_INTR != 0 {
                    t.interrupted = true;
                }
                match m.hdr.kind {
                    NLMSG_NOOP => {}
                    NLMSG_DONE => {
                        // The DONE payload is the dump's final status (int).
                        if let Some(c) = m.payload.first_chunk::<4>() {
                            let code = i32::from_ne_bytes(*c);
                            if code < 0 && pending.is_none() {
                                pending = Some(Error::Netlink { op, errno: -code });
                            }
                        }
                        done = true;
                        break;
                    }
                    NLMSG_ERROR => {
                        match m.error_code() {
                            Ok(0) => {}
                            Ok(errno) => {
                                if pending.is_none() {
                                    pending = Some(Error::Netlink { op, errno });
                                }
                            }
                            Err(e) => {
                                if pending.is_none() {
                                    pending = Some(Error::Decode(e));
                                }
                            }
                        }
                        // An error/ack ends a request (and a dump the kernel refused).
                        done = true;
                        break;
                    }
                    NLMSG_OVERRUN => {}
                    _ => {
                        t.messages += 1;
                        if deliver {
                            match f(&m) {
                                Ok(true) => {}
                                Ok(false) if self.abandon_on_stop => {
                                    abandoned = true;
                                    break;
                                }
                                Ok(false) => deliver = false,
                                Err(e) => {
                                    deliver = false;
                                    if pending.is_none() {
                                        pending = Some(e);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            self.buf = buf;
            result?;
            if abandoned {
                return Ok(t);
            }
            if done {
                return match pending {
                    Some(e) => Err(e),
                    None => Ok(t),
                };
            }
        }
    }

    /// Send the write buffer as one request and run [`Socket::transact`].
    pub(crate) fn request(
        &mut self,
        op: &'static str,
        seq: u32,
        f: impl FnMut(&Message<'_>) -> Result<bool, Error>,
    ) -> Result<Transaction, Error> {
        self.send_wbuf()?;
        self.transact(op, seq, f)
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
