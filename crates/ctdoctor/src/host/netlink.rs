//! A minimal netlink dump loop (raw libc) shared by the sock_diag and
//! rtnetlink probes: open a socket of one protocol on the calling thread
//! (so it belongs to that thread's netns), send one dump request, walk
//! every reply message until NLMSG_DONE.
//!
//! ```text
//! nlmsghdr (16 bytes, native-endian)
//!  0 u32 len (header included) | 4 u16 type | 6 u16 flags | 8 u32 seq | 12 u32 pid
//! ```
//! Messages are 4-byte aligned inside a datagram.
//!
//! Not for: ctnetlink (crates/ctnetlink), multicast, or requests that are not dumps.

use super::Unavailable;

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

/// What one received datagram held.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// More messages follow.
    More,
    /// NLMSG_DONE seen.
    Done,
    /// NLMSG_ERROR with this (positive) errno.
    Error(i32),
}

/// A dump request: nlmsghdr with NLM_F_REQUEST|NLM_F_DUMP, then `body`.
pub fn request(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + body.len()) as u32;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(body);
    b
}

/// Walk the messages of one datagram; `on_msg(type, payload)` for every
/// message that is not DONE/ERROR.
pub fn walk(
    buf: &[u8],
    mut on_msg: impl FnMut(u16, &[u8]) -> Result<(), String>,
) -> Result<Batch, String> {
    let mut off = 0usize;
    while off < buf.len() {
        let rest = &buf[off..];
        if rest.len() < NLMSG_HDRLEN {
            return Err(format!("truncated netlink header at byte {off}"));
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(format!("bad nlmsg_len {len} at byte {off}"));
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        match ty {
            NLMSG_DONE => return Ok(Batch::Done),
            NLMSG_ERROR => {
                let Some(e) = payload.get(..4) else {
                    return Err("short NLMSG_ERROR".into());
                };
                let err = i32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
                if err != 0 {
                    return Ok(Batch::Error(err.saturating_neg()));
                }
            }
            _ => on_msg(ty, payload).map_err(|e| format!("{e} (message at byte {off})"))?,
        }
        off = off.saturating_add((len + 3) & !3);
    }
    Ok(Batch::More)
}

struct Fd(libc::c_int);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

/// An open netlink socket of `protocol` (5 s receive timeout).
pub struct Socket {
    fd: Fd,
    what: &'static str,
}

impl Socket {
    pub fn open(protocol: libc::c_int, what: &'static str) -> Result<Socket, Unavailable> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(Unavailable::from_io(what, &std::io::Error::last_os_error()));
        }
        let fd = Fd(fd);
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: valid fd and a timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd.0,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Socket { fd, what })
    }

    /// Send one dump request and feed every reply message to `on_msg`.
    pub fn dump(
        &self,
        req: &[u8],
        mut on_msg: impl FnMut(u16, &[u8]) -> Result<(), String>,
    ) -> Result<(), Unavailable> {
        let what = self.what;
        // SAFETY: zeroed sockaddr_nl is valid (pid 0 = kernel).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: buffer and address are valid for the given lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.0,
                req.as_ptr() as *const libc::c_void,
                req.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(Unavailable::from_io(what, &std::io::Error::last_os_error()));
        }
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded: a dump ends with NLMSG_DONE; a stuck one times out (5 s).
        for _ in 0..10_000_000u32 {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.0,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Unavailable::from_io(what, &e));
            }
            match walk(&buf[..n as usize], &mut on_msg)
                .map_err(|d| Unavailable::malformed(what, d))?
            {
                Batch::More => {}
                Batch::Done => return Ok(()),
                Batch::Error(errno) => {
                    return Err(Unavailable::from_io(
                        what,
                        &std::io::Error::from_raw_os_error(errno),
                    ))
                }
            }
        }
        Err(Unavailable::Failed {
            what: what.into(),
            detail: "dump did not end".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn walks_messages() {
        let mut dg = request(20, 1, &[1, 2, 3, 4]); // 20 bytes, aligned
        dg.extend(request(20, 2, &[9, 9])); // 18 bytes: padded to 20
        dg.extend([0, 0]);
        let mut done = Vec::new();
        done.extend_from_slice(&20u32.to_ne_bytes());
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&[0u8; 14]);
        dg.extend(&done);
        let mut seen = Vec::new();
        let r = walk(&dg, |t, p| {
            seen.push((t, p.to_vec()));
            Ok(())
        });
        assert_eq!(r.unwrap(), Batch::Done);
        assert_eq!(seen, vec![(20, vec![1, 2, 3, 4]), (20, vec![9, 9])]);
        let mut err = Vec::new();
        err.extend_from_slice(&20u32.to_ne_bytes());
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0u8; 10]);
        err.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            walk(&err, |_, _| Ok(())).unwrap(),
            Batch::Error(libc::EPERM)
        );
        assert!(walk(&[1, 2], |_, _| Ok(())).is_err());
        assert!(walk(&dg, |_, _| Err("no".into())).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = walk(&b, |_, _| Ok(()));
        }
    }
}
