//! Message builders and the write operations: create, update, delete, flush,
//! batch create and batch delete ([`Conntrack`], [`Socket::create`],
//! [`Socket::create_batch`], [`Socket::delete_batch`]).
//!
//! A batch packs many IPCTNL_MSG_CT_NEW or _DELETE messages (each with its
//! own seq) into one sendmsg and checks every outcome: a create asks an ack
//! of each message; a delete asks for errors only plus an ack of the last
//! message of the sendmsg (in-order processing makes it a barrier), which
//! saves the kernel an ack per deleted entry. The batch in flight
//! is bounded so all its acks fit the socket receive buffer (acks the kernel
//! cannot queue are dropped and the socket reports ENOBUFS) and the batch
//! fits the send buffer. NETLINK_CAP_ACK keeps each ack to 36 bytes.

use std::net::IpAddr;

use crate::attr::{Messages, Writer};
use crate::consts::*;
use crate::entry::{TcpState, Tuple};
use crate::error::Error;
use crate::socket::Socket;

/// An entry to create or update. Unset fields are not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conntrack {
    pub orig: Tuple,
    /// Defaults to `orig.reversed()` when creating.
    pub reply: Option<Tuple>,
    /// CTA_STATUS bits (e.g. IPS_SEEN_REPLY | IPS_ASSURED). IPS_CONFIRMED is
    /// always added when sent: the kernel marks entries made through
    /// ctnetlink confirmed and refuses (EBUSY) a status that clears it.
    pub status: Option<u32>,
    /// CTA_TIMEOUT seconds (required by the kernel to create).
    pub timeout: Option<u32>,
    /// CTA_PROTOINFO_TCP_STATE.
    pub tcp_state: Option<TcpState>,
    pub mark: Option<u32>,
    pub zone: Option<u16>,
}

impl Conntrack {
    /// An entry with this original tuple and nothing else set.
    pub fn new(orig: Tuple) -> Conntrack {
        Conntrack {
            orig,
            reply: None,
            status: None,
            timeout: None,
            tcp_state: None,
            mark: None,
            zone: None,
        }
    }
    pub fn reply(mut self, t: Tuple) -> Self {
        self.reply = Some(t);
        self
    }
    pub fn status(mut self, bits: u32) -> Self {
        self.status = Some(bits);
        self
    }
    pub fn timeout(mut self, secs: u32) -> Self {
        self.timeout = Some(secs);
        self
    }
    pub fn tcp_state(mut self, s: TcpState) -> Self {
        self.tcp_state = Some(s);
        self
    }
    pub fn mark(mut self, m: u32) -> Self {
        self.mark = Some(m);
        self
    }
    pub fn zone(mut self, z: u16) -> Self {
        self.zone = Some(z);
        self
    }
}

fn put_addr(w: &mut Writer, v4: u16, v6: u16, a: IpAddr) {
    match a {
        IpAddr::V4(a) => w.attr(v4, &a.octets()),
        IpAddr::V6(a) => w.attr(v6, &a.octets()),
    }
}

/// Append a tuple as nested attribute `kind` (CTA_TUPLE_ORIG / _REPLY).
pub fn put_tuple(w: &mut Writer, kind: u16, t: &Tuple) {
    let n = w.begin_nest(kind);
    let ip = w.begin_nest(CTA_TUPLE_IP);
    put_addr(w, CTA_IP_V4_SRC, CTA_IP_V6_SRC, t.src);
    put_addr(w, CTA_IP_V4_DST, CTA_IP_V6_DST, t.dst);
    w.end_nest(ip);
    let p = w.begin_nest(CTA_TUPLE_PROTO);
    w.u8(CTA_PROTO_NUM, t.proto);
    match t.proto {
        IPPROTO_ICMP => {
            w.be16(CTA_PROTO_ICMP_ID, t.icmp_id);
            w.u8(CTA_PROTO_ICMP_TYPE, t.icmp_type);
            w.u8(CTA_PROTO_ICMP_CODE, t.icmp_code);
        }
        IPPROTO_ICMPV6 => {
            w.be16(CTA_PROTO_ICMPV6_ID, t.icmp_id);
            w.u8(CTA_PROTO_ICMPV6_TYPE, t.icmp_type);
            w.u8(CTA_PROTO_ICMPV6_CODE, t.icmp_code);
        }
        _ => {
            w.be16(CTA_PROTO_SRC_PORT, t.src_port);
            w.be16(CTA_PROTO_DST_PORT, t.dst_port);
        }
    }
    w.end_nest(p);
    if let Some(z) = t.zone {
        w.be16(CTA_TUPLE_ZONE, z);
    }
    w.end_nest(n);
}

/// Append one IPCTNL_MSG_CT_NEW message for `ct` (create when `flags`
/// has NLM_F_CREATE, update otherwise).
pub fn encode_new(w: &mut Writer, ct: &Conntrack, seq: u32, flags: u16) {
    encode_ct(w, ct, seq, flags, true)
}

/// The body of a NEW message; an update sends no reply tuple (the kernel
/// finds the entry by its original tuple).
fn encode_ct(w: &mut Writer, ct: &Conntrack, seq: u32, flags: u16, with_reply: bool) {
    let m = w.begin_msg(IPCTNL_MSG_CT_NEW, flags, seq, ct.orig.family());
    put_tuple(w, CTA_TUPLE_ORIG, &ct.orig);
    if with_reply {
        let reply = ct.reply.unwrap_or_else(|| ct.orig.reversed());
        put_tuple(w, CTA_TUPLE_REPLY, &reply);
    }
    if let Some(s) = ct.status {
        w.be32(CTA_STATUS, s | IPS_CONFIRMED);
    }
    if let Some(t) = ct.timeout {
        w.be32(CTA_TIMEOUT, t);
    }
    if let Some(st) = ct.tcp_state {
        let pi = w.begin_nest(CTA_PROTOINFO);
        let tcp = w.begin_nest(CTA_PROTOINFO_TCP);
        w.u8(CTA_PROTOINFO_TCP_STATE, st.as_u8());
        w.end_nest(tcp);
        w.end_nest(pi);
    }
    if let Some(mk) = ct.mark {
        w.be32(CTA_MARK, mk);
    }
    if let Some(z) = ct.zone {
        w.be16(CTA_ZONE, z);
    }
    w.end_msg(m);
}

/// Append one IPCTNL_MSG_CT_DELETE message for the entry with this
/// original tuple (and zone).
pub fn encode_delete(w: &mut Writer, orig: &Tuple, zone: Option<u16>, seq: u32) {
    encode_delete_key(
        w,
        &DeleteKey {
            orig: *orig,
            zone,
            id: None,
        },
        seq,
    )
}

/// Which entry a DELETE names: its original tuple, its zone, and
/// optionally its id (CTA_ID, as a dump reports it). With an id the kernel
/// deletes the entry only if it is still that one: an entry that expired
/// and was replaced by a new flow with the same tuple answers ENOENT
/// instead of being deleted (ctnetlink_del_conntrack compares
/// `nf_ct_get_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeleteKey {
    pub orig: Tuple,
    pub zone: Option<u16>,
    pub id: Option<u32>,
}

/// Append one IPCTNL_MSG_CT_DELETE message (with NLM_F_ACK) for `key`.
pub fn encode_delete_key(w: &mut Writer, key: &DeleteKey, seq: u32) {
    encode_delete_flags(w, key, seq, NLM_F_REQUEST | NLM_F_ACK)
}

fn encode_delete_flags(w: &mut Writer, key: &DeleteKey, seq: u32, flags: u16) {
    let m = w.begin_msg(IPCTNL_MSG_CT_DELETE, flags, seq, key.orig.family());
    put_tuple(w, CTA_TUPLE_ORIG, &key.orig);
    if let Some(z) = key.zone {
        w.be16(CTA_ZONE, z);
    }
    if let Some(id) = key.id {
        w.be32(CTA_ID, id);
    }
    w.end_msg(m);
}

/// Outcome of a batch: how many succeeded and which failed (index into
/// the input, positive errno: EEXIST for a create, ENOENT for a delete of
/// an entry that is gone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub ok: usize,
    pub failed: Vec<(usize, i32)>,
    /// sendmsg calls used.
    pub sends: usize,
}

/// Estimated receive-buffer cost (skb truesize) of one queued ack. Measured
/// acks are 36 bytes of data but each sits in its own skb.
const ACK_COST: usize = 1024;
/// Upper bound on messages per sendmsg.
pub const MAX_BATCH: usize = 4096;

impl Socket {
    fn simple(&mut self, op: &'static str, seq: u32) -> Result<(), Error> {
        self.request(op, seq, |_| Ok(true)).map(|_| ())
    }

    /// Create one entry (NLM_F_CREATE | NLM_F_EXCL: EEXIST if it exists).
    pub fn create(&mut self, ct: &Conntrack) -> Result<(), Error> {
        let seq = self.next_seq();
        self.wbuf.buf.clear();
        encode_new(
            &mut self.wbuf,
            ct,
            seq,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        );
        self.simple("create", seq)
    }

    /// Update an existing entry (found by its original tuple): status,
    /// timeout, TCP state, mark. ENOENT if it does not exist.
    pub fn update(&mut self, ct: &Conntrack) -> Result<(), Error> {
        let seq = self.next_seq();
        self.wbuf.buf.clear();
        encode_ct(&mut self.wbuf, ct, seq, NLM_F_REQUEST | NLM_F_ACK, false);
        self.simple("update", seq)
    }

    /// Delete the entry with this original tuple (in `zone`, default 0).
    pub fn delete(&mut self, orig: &Tuple, zone: Option<u16>) -> Result<(), Error> {
        let seq = self.next_seq();
        self.wbuf.buf.clear();
        encode_delete(&mut self.wbuf, orig, zone, seq);
        self.simple("delete", seq)
    }

    /// Delete every entry of a family (AF_UNSPEC: all) in this netns.
    pub fn flush(&mut self, family: u8) -> Result<(), Error> {
        let seq = self.next_seq();
        self.wbuf.buf.clear();
        let m = self
            .wbuf
            .begin_msg(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, family);
        self.wbuf.end_msg(m);
        self.simple("flush", seq)
    }

    /// How many messages one sendmsg may carry so its acks fit the receive
    /// buffer and the messages fit the send buffer (`msg_len` bytes each).
    pub fn batch_limit(&self, msg_len: usize) -> usize {
        let by_rcv = self.rcvbuf() / 2 / ACK_COST;
        let by_snd = self.sndbuf() / 2 / msg_len.max(1);
        by_rcv.min(by_snd).clamp(1, MAX_BATCH)
    }

    /// Create many entries: messages packed into few sendmsg calls, every
    /// ack checked. Per-entry kernel errors are reported in
    /// [`BatchReport::failed`], not as `Err`; `Err` means the socket failed
    /// (e.g. ENOBUFS: acks lost) and the outcome of the batch in flight is
    /// unknown.
    pub fn create_batch(&mut self, entries: &[Conntrack]) -> Result<BatchReport, Error> {
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        self.batch(entries, Acks::Each, |w, ct, seq, _| {
            encode_new(w, ct, seq, flags)
        })
    }

    /// Delete many entries (IPCTNL_MSG_CT_DELETE), packed like
    /// [`Socket::create_batch`], with every outcome checked: each DELETE
    /// the kernel refuses is answered by an error message naming it — an
    /// entry already gone (expired, deleted by someone else, or, with
    /// [`DeleteKey::id`], replaced by a new flow with the same tuple) is
    /// reported in [`BatchReport::failed`] with ENOENT — and the last DELETE
    /// of each sendmsg carries NLM_F_ACK: the kernel handles one sendmsg's
    /// messages in order, so its ack means every earlier DELETE is done and
    /// every error has arrived. The others ask for no ack on success, which
    /// spares the kernel one ack message (an skb) per deleted entry.
    pub fn delete_batch(&mut self, keys: &[DeleteKey]) -> Result<BatchReport, Error> {
        self.batch(keys, Acks::ErrorsAndLast, |w, k, seq, ack| {
            let flags = if ack {
                NLM_F_REQUEST | NLM_F_ACK
            } else {
                NLM_F_REQUEST
            };
            encode_delete_flags(w, k, seq, flags)
        })
    }

    /// Send `items` encoded by `encode(writer, item, seq, ask_ack)` in
    /// bounded chunks, one sendmsg per chunk, and read every chunk's answers
    /// before sending the next.
    fn batch<T>(
        &mut self,
        items: &[T],
        acks: Acks,
        encode: impl Fn(&mut Writer, &T, u32, bool),
    ) -> Result<BatchReport, Error> {
        let mut report = BatchReport::default();
        let mut i = 0;
        // Probe the encoded size of one message for the send bound.
        let mut limit = MAX_BATCH;
        if let Some(first) = items.first() {
            let mut probe = Writer::new();
            encode(&mut probe, first, 0, true);
            limit = self.batch_limit(probe.buf.len() * 2);
        }
        while i < items.len() {
            let chunk = &items[i..(i + limit).min(items.len())];
            let last = chunk.len() - 1;
            let base = self.seq.wrapping_add(1);
            self.wbuf.buf.clear();
            let mut w = std::mem::take(&mut self.wbuf);
            for (k, item) in chunk.iter().enumerate() {
                let seq = self.next_seq();
                encode(&mut w, item, seq, acks == Acks::Each || k == last);
            }
            self.wbuf = w;
            self.send_wbuf()?;
            report.sends += 1;
            let mut answered = 0usize;
            let mut failed = 0usize;
            let mut done = false;
            while !done {
                let n = self.recv(0)?;
                let buf = std::mem::take(&mut self.buf);
                let mut res = Ok(());
                for m in Messages::new(&buf[..n]) {
                    let m = match m {
                        Ok(m) => m,
                        Err(e) => {
                            res = Err(Error::Decode(e));
                            break;
                        }
                    };
                    if m.hdr.kind != NLMSG_ERROR {
                        continue;
                    }
                    let off = m.hdr.seq.wrapping_sub(base) as usize;
                    if off >= chunk.len() {
                        continue;
                    }
                    answered += 1;
                    match m.error_code() {
                        Ok(0) => {}
                        Ok(e) => {
                            failed += 1;
                            report.failed.push((i + off, e));
                        }
                        Err(e) => {
                            res = Err(Error::Decode(e));
                            break;
                        }
                    }
                    done = match acks {
                        Acks::Each => answered == chunk.len(),
                        Acks::ErrorsAndLast => off == last,
                    };
                }
                self.buf = buf;
                res?;
            }
            report.ok += chunk.len() - failed;
            i += chunk.len();
        }
        Ok(report)
    }
}

/// Which answers a batch asks the kernel for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Acks {
    /// An ack (or error) for every message.
    Each,
    /// Errors only, and an ack for the last message of each sendmsg.
    ErrorsAndLast,
}

impl Socket {
    /// Look one entry up by its original tuple (IPCTNL_MSG_CT_GET without
    /// NLM_F_DUMP) and pass it to `f`. `Ok(None)` when it does not exist.
    pub fn get<R>(
        &mut self,
        orig: &Tuple,
        zone: Option<u16>,
        f: impl FnOnce(&crate::Entry<'_>) -> R,
    ) -> Result<Option<R>, Error> {
        let seq = self.next_seq();
        self.wbuf.buf.clear();
        let m = self.wbuf.begin_msg(
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            orig.family(),
        );
        put_tuple(&mut self.wbuf, CTA_TUPLE_ORIG, orig);
        if let Some(z) = zone {
            self.wbuf.be16(CTA_ZONE, z);
        }
        self.wbuf.end_msg(m);
        let mut f = Some(f);
        let mut out = None;
        let r = self.request("get", seq, |m| {
            if m.hdr.kind != ((NFNL_SUBSYS_CTNETLINK as u16) << 8 | IPCTNL_MSG_CT_NEW as u16) {
                return Ok(true);
            }
            let e = crate::Entry::from_message(m)?;
            if let Some(f) = f.take() {
                out = Some(f(&e));
            }
            Ok(true)
        });
        match r {
            Ok(_) => Ok(out),
            Err(Error::Netlink { errno, .. }) if errno == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }
}
