//! Zero-copy walks over netlink bytes: [`Messages`] iterates `nlmsghdr`s in a
//! receive buffer, [`Attrs`] iterates `nlattr`s in a payload. Nothing here
//! allocates or knows conntrack semantics; it is the layer every decoder in
//! this crate (and a fuzzer) stands on.
//!
//! Rules: a length that runs past its buffer or is smaller than its header is
//! an error naming the field; a missing final alignment pad is accepted (the
//! kernel's `nla_ok` accepts it too); the flag bits NLA_F_NESTED and
//! NLA_F_NET_BYTEORDER are stripped from the type.

use crate::consts::*;
use crate::error::DecodeError;

/// Round up to the 4-byte netlink alignment.
#[inline]
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink attribute: its type (flag bits stripped) and value bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// Nested attributes inside this one. `field` names this attribute for errors.
    #[inline]
    pub fn nested(&self, field: &'static str) -> Attrs<'a> {
        Attrs::new(self.value, field)
    }
    #[inline]
    pub fn u8(&self, field: &'static str) -> Result<u8, DecodeError> {
        match self.value {
            [b, ..] => Ok(*b),
            [] => Err(DecodeError::size(field, 1, 0)),
        }
    }
    #[inline]
    pub fn be16(&self, field: &'static str) -> Result<u16, DecodeError> {
        match self.value {
            [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
            v => Err(DecodeError::size(field, 2, v.len())),
        }
    }
    #[inline]
    pub fn be32(&self, field: &'static str) -> Result<u32, DecodeError> {
        match self.value {
            [a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
            v => Err(DecodeError::size(field, 4, v.len())),
        }
    }
    #[inline]
    pub fn be64(&self, field: &'static str) -> Result<u64, DecodeError> {
        match self.value.get(..8) {
            Some(v) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(v);
                Ok(u64::from_be_bytes(b))
            }
            None => Err(DecodeError::size(field, 8, self.value.len())),
        }
    }
    /// Exactly `N` bytes (addresses).
    #[inline]
    pub fn array<const N: usize>(&self, field: &'static str) -> Result<[u8; N], DecodeError> {
        match self.value.get(..N) {
            Some(v) if self.value.len() == N => {
                let mut b = [0u8; N];
                b.copy_from_slice(v);
                Ok(b)
            }
            _ => Err(DecodeError::size(field, N, self.value.len())),
        }
    }
}

/// Iterator over the attributes in a byte slice. Yields an error once (then
/// stops) when a header is malformed.
#[derive(Clone, Debug)]
pub struct Attrs<'a> {
    buf: &'a [u8],
    field: &'static str,
}

impl<'a> Attrs<'a> {
    /// Walk `buf`; `field` names the enclosing attribute for errors.
    #[inline]
    pub fn new(buf: &'a [u8], field: &'static str) -> Self {
        Attrs { buf, field }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let buf = self.buf;
        if buf.is_empty() {
            return None;
        }
        let (hdr, _) = match buf.split_first_chunk::<4>() {
            Some(h) => h,
            None => {
                self.buf = &[];
                return Some(Err(DecodeError::truncated(
                    self.field,
                    NLA_HDRLEN,
                    buf.len(),
                )));
            }
        };
        let len = u16::from_ne_bytes([hdr[0], hdr[1]]) as usize;
        let kind = u16::from_ne_bytes([hdr[2], hdr[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN {
            self.buf = &[];
            return Some(Err(DecodeError::bad_len(self.field, len)));
        }
        let value = match buf.get(NLA_HDRLEN..len) {
            Some(v) => v,
            None => {
                self.buf = &[];
                return Some(Err(DecodeError::truncated(self.field, len, buf.len())));
            }
        };
        self.buf = buf.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(Attr { kind, value }))
    }
}

/// The fixed netlink message header (`struct nlmsghdr`), host byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlMsgHdr {
    pub len: u32,
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

/// One netlink message: header and payload (after the 16-byte header).
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub hdr: NlMsgHdr,
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// For nfnetlink messages: (subsystem, message type).
    #[inline]
    pub fn subsys_msg(&self) -> (u8, u8) {
        ((self.hdr.kind >> 8) as u8, self.hdr.kind as u8)
    }
    /// Split the payload into nfgenmsg (family, version, res_id) and attributes.
    #[inline]
    pub fn nfgen(&self) -> Result<(NfGenMsg, &'a [u8]), DecodeError> {
        match self.payload.split_first_chunk::<4>() {
            Some((h, rest)) => Ok((
                NfGenMsg {
                    family: h[0],
                    version: h[1],
                    res_id: u16::from_be_bytes([h[2], h[3]]),
                },
                rest,
            )),
            None => Err(DecodeError::truncated(
                "nfgenmsg",
                NFGENMSG_LEN,
                self.payload.len(),
            )),
        }
    }
    /// For NLMSG_ERROR: the (positive) errno, 0 for an ACK.
    #[inline]
    pub fn error_code(&self) -> Result<i32, DecodeError> {
        match self.payload.first_chunk::<4>() {
            Some(e) => Ok(i32::from_ne_bytes(*e).wrapping_neg()),
            None => Err(DecodeError::truncated("nlmsgerr", 4, self.payload.len())),
        }
    }
    /// For NLMSG_ERROR: the sequence number of the request it answers
    /// (from the echoed request header), when present.
    #[inline]
    pub fn error_seq(&self) -> Option<u32> {
        let b = self.payload.get(4 + 8..4 + 12)?;
        Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// `struct nfgenmsg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfGenMsg {
    pub family: u8,
    pub version: u8,
    pub res_id: u16,
}

/// Iterator over the netlink messages in a receive buffer.
#[derive(Clone, Debug)]
pub struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let buf = self.buf;
        if buf.is_empty() {
            return None;
        }
        let Some((h, _)) = buf.split_first_chunk::<16>() else {
            self.buf = &[];
            return Some(Err(DecodeError::truncated(
                "nlmsghdr",
                NLMSG_HDRLEN,
                buf.len(),
            )));
        };
        let hdr = NlMsgHdr {
            len: u32::from_ne_bytes([h[0], h[1], h[2], h[3]]),
            kind: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
            pid: u32::from_ne_bytes([h[12], h[13], h[14], h[15]]),
        };
        let len = hdr.len as usize;
        if len < NLMSG_HDRLEN {
            self.buf = &[];
            return Some(Err(DecodeError::bad_len("nlmsghdr.nlmsg_len", len)));
        }
        let Some(payload) = buf.get(NLMSG_HDRLEN..len) else {
            self.buf = &[];
            return Some(Err(DecodeError::truncated(
                "nlmsghdr.nlmsg_len",
                len,
                buf.len(),
            )));
        };
        self.buf = buf.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(Message { hdr, payload }))
    }
}

/// Append-only writer for netlink messages into a reusable `Vec<u8>`.
/// Used by the builders; lengths are patched when a message or nest ends.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }
    /// Begin a ctnetlink message; returns its start offset for [`Writer::end_msg`].
    pub fn begin_msg(&mut self, msg: u8, flags: u16, seq: u32, family: u8) -> usize {
        let start = self.buf.len();
        let kind = ((NFNL_SUBSYS_CTNETLINK as u16) << 8) | msg as u16;
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&[family, NFNETLINK_V0, 0, 0]);
        start
    }
    pub fn end_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }
    pub fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = (NLA_HDRLEN + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        let pad = align4(self.buf.len()) - self.buf.len();
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
    }
    pub fn u8(&mut self, kind: u16, v: u8) {
        self.attr(kind, &[v]);
    }
    pub fn be16(&mut self, kind: u16, v: u16) {
        self.attr(kind, &v.to_be_bytes());
    }
    pub fn be32(&mut self, kind: u16, v: u32) {
        self.attr(kind, &v.to_be_bytes());
    }
    /// Begin a nested attribute; returns its offset for [`Writer::end_nest`].
    pub fn begin_nest(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }
    pub fn end_nest(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_walk_accepts_missing_final_pad_and_strips_flags() {
        // u8 attr type 1 value 7 (len 5, no pad: last attr), preceded by a
        // nested-flagged empty attr type 2.
        let buf = [4, 0, 0x02, 0x80, 5, 0, 1, 0, 7];
        let v: Vec<_> = Attrs::new(&buf, "t").collect::<Result<_, _>>().unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].kind, v[0].value.len()), (2, 0));
        assert_eq!((v[1].kind, v[1].u8("x").unwrap()), (1, 7));
    }

    #[test]
    fn attrs_walk_errors_once_and_names_the_parent() {
        let short = [3, 0, 1, 0];
        let mut it = Attrs::new(&short, "PARENT");
        let e = it.next().unwrap().unwrap_err();
        assert_eq!(e.field, "PARENT");
        assert_eq!(e.reason, crate::DecodeReason::BadLength { len: 3 });
        assert!(it.next().is_none());
        let e = Attrs::new(&[1, 2], "P2").next().unwrap().unwrap_err();
        assert_eq!(
            e.reason,
            crate::DecodeReason::Truncated { need: 4, have: 2 }
        );
    }

    #[test]
    fn writer_output_walks_back() {
        let mut w = Writer::new();
        let m = w.begin_msg(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 9, AF_INET6);
        let n = w.begin_nest(CTA_TUPLE_ORIG);
        w.be16(CTA_PROTO_SRC_PORT, 443);
        w.end_nest(n);
        w.be32(CTA_MARK, 5);
        w.end_msg(m);
        assert_eq!(w.buf.len() % 4, 0);
        let msgs: Vec<_> = Messages::new(&w.buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 1);
        let m = msgs[0];
        assert_eq!(m.hdr.len as usize, w.buf.len());
        assert_eq!(m.hdr.seq, 9);
        assert_eq!(m.subsys_msg(), (NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET));
        let (g, attrs) = m.nfgen().unwrap();
        assert_eq!(g.family, AF_INET6);
        let a: Vec<_> = Attrs::new(attrs, "m").collect::<Result<_, _>>().unwrap();
        assert_eq!(a[0].kind, CTA_TUPLE_ORIG);
        let inner: Vec<_> = a[0].nested("o").collect::<Result<_, _>>().unwrap();
        assert_eq!(inner[0].be16("p").unwrap(), 443);
        assert_eq!(a[1].be32("mark").unwrap(), 5);
    }
}
