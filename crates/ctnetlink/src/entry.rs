//! Lazy, zero-copy views of one conntrack entry ([`Entry`]) as it sits in a
//! receive buffer, plus the small `Copy` value types the accessors return
//! ([`Tuple`], [`Status`], [`TcpState`], [`Counters`], [`EntryFields`]).
//!
//! Each accessor walks the attributes it needs; [`Entry::summary`] walks them
//! all once and is the fast path for consumers that want most fields.
//! Unknown attributes are skipped; a malformed attribute that an accessor
//! needs is an error naming it. Not here: sockets, message framing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::attr::{Attr, Attrs, Message};
use crate::consts::*;
use crate::error::DecodeError;

/// One direction of a connection: addresses, protocol and ports (or ICMP
/// type/code/id). Fields the entry does not carry are 0 / unspecified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// L4 protocol number (CTA_PROTO_NUM), e.g. 6 for TCP.
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP / ICMPv6 echo id, type, code.
    pub icmp_id: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// CTA_TUPLE_ZONE (directional zone), when present.
    pub zone: Option<u16>,
}

impl Default for Tuple {
    fn default() -> Self {
        Tuple {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            proto: 0,
            src_port: 0,
            dst_port: 0,
            icmp_id: 0,
            icmp_type: 0,
            icmp_code: 0,
            zone: None,
        }
    }
}

impl Tuple {
    /// A TCP tuple.
    pub fn tcp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Tuple {
        Tuple {
            src,
            dst,
            proto: IPPROTO_TCP,
            src_port,
            dst_port,
            ..Tuple::default()
        }
    }
    /// A UDP tuple.
    pub fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Tuple {
        Tuple {
            proto: IPPROTO_UDP,
            ..Tuple::tcp(src, src_port, dst, dst_port)
        }
    }
    /// An ICMP (v4) or ICMPv6 tuple, by the address family of `src`.
    pub fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8, icmp_code: u8, icmp_id: u16) -> Tuple {
        Tuple {
            src,
            dst,
            proto: if src.is_ipv6() {
                IPPROTO_ICMPV6
            } else {
                IPPROTO_ICMP
            },
            icmp_type,
            icmp_code,
            icmp_id,
            ..Tuple::default()
        }
    }
    /// The same flow seen from the other side (addresses and ports swapped;
    /// an ICMP echo request (8 / v6 128) becomes a reply (0 / 129)).
    pub fn reversed(&self) -> Tuple {
        let icmp_type = match (self.proto, self.icmp_type) {
            (IPPROTO_ICMP, 8) => 0,
            (IPPROTO_ICMPV6, 128) => 129,
            (_, t) => t,
        };
        Tuple {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            icmp_type,
            ..*self
        }
    }
    /// The address family (AF_INET / AF_INET6) of the source address.
    pub fn family(&self) -> u8 {
        if self.src.is_ipv6() {
            AF_INET6
        } else {
            AF_INET
        }
    }

    /// Decode the value of a CTA_TUPLE_ORIG / CTA_TUPLE_REPLY attribute.
    pub fn decode(value: &[u8], field: &'static str) -> Result<Tuple, DecodeError> {
        let mut t = Tuple::default();
        for a in Attrs::new(value, field) {
            let a = a?;
            match a.kind {
                CTA_TUPLE_IP => {
                    for ip in a.nested("CTA_TUPLE_IP") {
                        let ip = ip?;
                        match ip.kind {
                            CTA_IP_V4_SRC => {
                                t.src = Ipv4Addr::from(ip.array::<4>("CTA_IP_V4_SRC")?).into()
                            }
                            CTA_IP_V4_DST => {
                                t.dst = Ipv4Addr::from(ip.array::<4>("CTA_IP_V4_DST")?).into()
                            }
                            CTA_IP_V6_SRC => {
                                t.src = Ipv6Addr::from(ip.array::<16>("CTA_IP_V6_SRC")?).into()
                            }
                            CTA_IP_V6_DST => {
                                t.dst = Ipv6Addr::from(ip.array::<16>("CTA_IP_V6_DST")?).into()
                            }
                            _ => {}
                        }
                    }
                }
                CTA_TUPLE_PROTO => {
                    for p in a.nested("CTA_TUPLE_PROTO") {
                        let p = p?;
                        match p.kind {
                            CTA_PROTO_NUM => t.proto = p.u8("CTA_PROTO_NUM")?,
                            CTA_PROTO_SRC_PORT => t.src_port = p.be16("CTA_PROTO_SRC_PORT")?,
                            CTA_PROTO_DST_PORT => t.dst_port = p.be16("CTA_PROTO_DST_PORT")?,
                            CTA_PROTO_ICMP_ID => t.icmp_id = p.be16("CTA_PROTO_ICMP_ID")?,
                            CTA_PROTO_ICMP_TYPE => t.icmp_type = p.u8("CTA_PROTO_ICMP_TYPE")?,
                            CTA_PROTO_ICMP_CODE => t.icmp_code = p.u8("CTA_PROTO_ICMP_CODE")?,
                            CTA_PROTO_ICMPV6_ID => t.icmp_id = p.be16("CTA_PROTO_ICMPV6_ID")?,
                            CTA_PROTO_ICMPV6_TYPE => t.icmp_type = p.u8("CTA_PROTO_ICMPV6_TYPE")?,
                            CTA_PROTO_ICMPV6_CODE => t.icmp_code = p.u8("CTA_PROTO_ICMPV6_CODE")?,
                            _ => {}
                        }
                    }
                }
                CTA_TUPLE_ZONE => t.zone = Some(a.be16("CTA_TUPLE_ZONE")?),
                _ => {}
            }
        }
        Ok(t)
    }
}

/// Status bits (CTA_STATUS, `enum ip_conntrack_status`). Unknown bits are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

/// Names of the status bits, by bit number, as the kernel spells them (IPS_ dropped).
pub const STATUS_NAMES: [&str; 16] = [
    "EXPECTED",
    "SEEN_REPLY",
    "ASSURED",
    "CONFIRMED",
    "SRC_NAT",
    "DST_NAT",
    "SEQ_ADJUST",
    "SRC_NAT_DONE",
    "DST_NAT_DONE",
    "DYING",
    "FIXED_TIMEOUT",
    "TEMPLATE",
    "UNTRACKED",
    "HELPER",
    "OFFLOAD",
    "HW_OFFLOAD",
];

impl Status {
    pub const EXPECTED: Status = Status(IPS_EXPECTED);
    pub const SEEN_REPLY: Status = Status(IPS_SEEN_REPLY);
    pub const ASSURED: Status = Status(IPS_ASSURED);
    pub const CONFIRMED: Status = Status(IPS_CONFIRMED);
    pub const SRC_NAT: Status = Status(IPS_SRC_NAT);
    pub const DST_NAT: Status = Status(IPS_DST_NAT);
    pub const DYING: Status = Status(IPS_DYING);
    pub const FIXED_TIMEOUT: Status = Status(IPS_FIXED_TIMEOUT);
    pub const OFFLOAD: Status = Status(IPS_OFFLOAD);

    /// All bits of `other` are set.
    #[inline]
    pub fn contains(self, other: Status) -> bool {
        self.0 & other.0 == other.0
    }
    /// The names of the set bits; unknown bits as `BIT<n>`.
    pub fn names(self) -> impl Iterator<Item = std::borrow::Cow<'static, str>> {
        (0..32u32).filter(move |b| self.0 & (1 << b) != 0).map(|b| {
            match STATUS_NAMES.get(b as usize) {
                Some(n) => std::borrow::Cow::Borrowed(*n),
                None => std::borrow::Cow::Owned(format!("BIT{b}")),
            }
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for n in self.names() {
            if !first {
                f.write_str("|")?;
            }
            first = false;
            f.write_str(&n)?;
        }
        Ok(())
    }
}

/// TCP conntrack state (`enum tcp_conntrack`), named as `conntrack -L` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    None,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    SynSent2,
    /// A number this crate does not know (kept, never fatal).
    Other(u8),
}

impl TcpState {
    /// From the kernel number.
    pub fn from_u8(v: u8) -> TcpState {
        match v {
            0 => TcpState::None,
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::LastAck,
            7 => TcpState::TimeWait,
            8 => TcpState::Close,
            9 => TcpState::SynSent2,
            n => TcpState::Other(n),
        }
    }
    /// The kernel number.
    pub fn as_u8(self) -> u8 {
        match self {
            TcpState::None => 0,
            TcpState::SynSent => 1,
            TcpState::SynRecv => 2,
            TcpState::Established => 3,
            TcpState::FinWait => 4,
            TcpState::CloseWait => 5,
            TcpState::LastAck => 6,
            TcpState::TimeWait => 7,
            TcpState::Close => 8,
            TcpState::SynSent2 => 9,
            TcpState::Other(n) => n,
        }
    }
    /// The name `conntrack -L` prints (`ESTABLISHED`, `TIME_WAIT`, ...);
    /// `None` for an unknown number.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
            TcpState::Other(_) => return None,
        })
    }
    /// Parse a `conntrack -L` state name.
    pub fn from_name(s: &str) -> Option<TcpState> {
        (0..10).map(TcpState::from_u8).find(|t| t.name() == Some(s))
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "STATE{}", self.as_u8()),
        }
    }
}

/// Packet and byte counters of one direction (present with nf_conntrack_acct=1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

impl Counters {
    fn decode(a: &Attr<'_>, field: &'static str) -> Result<Counters, DecodeError> {
        let mut c = Counters::default();
        for x in a.nested(field) {
            let x = x?;
            match x.kind {
                CTA_COUNTERS_PACKETS => c.packets = x.be64("CTA_COUNTERS_PACKETS")?,
                CTA_COUNTERS_BYTES => c.bytes = x.be64("CTA_COUNTERS_BYTES")?,
                CTA_COUNTERS32_PACKETS => c.packets = x.be32("CTA_COUNTERS32_PACKETS")? as u64,
                CTA_COUNTERS32_BYTES => c.bytes = x.be32("CTA_COUNTERS32_BYTES")? as u64,
                _ => {}
            }
        }
        Ok(c)
    }
}

/// Every field a summary needs, decoded in one pass ([`Entry::summary`]).
/// `None` = the kernel did not send that attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EntryFields {
    /// nfgenmsg family (AF_INET 2 / AF_INET6 10).
    pub family: u8,
    pub orig: Option<Tuple>,
    pub reply: Option<Tuple>,
    /// CTA_STATUS (0 when absent).
    pub status: Status,
    pub tcp_state: Option<TcpState>,
    /// Seconds left (CTA_TIMEOUT).
    pub timeout: Option<u32>,
    pub mark: Option<u32>,
    /// CTA_ZONE (entries in zone 0 usually carry none).
    pub zone: Option<u16>,
    pub id: Option<u32>,
    pub use_count: Option<u32>,
    pub counters_orig: Option<Counters>,
    pub counters_reply: Option<Counters>,
}

impl EntryFields {
    /// L4 protocol number from the original tuple (0 if absent).
    #[inline]
    pub fn l4proto(&self) -> u8 {
        self.orig.map_or(0, |t| t.proto)
    }
}

/// A conntrack entry as it sits in a netlink message: a lazy view; each
/// accessor decodes only what it needs. Borrowed from the receive buffer,
/// so it lives for one callback.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    family: u8,
    msg: u8,
    flags: u16,
    attrs: &'a [u8],
}

fn find<'a>(attrs: &'a [u8], kind: u16) -> Result<Option<Attr<'a>>, DecodeError> {
    for a in Attrs::new(attrs, "ctnetlink message") {
        let a = a?;
        if a.kind == kind {
            return Ok(Some(a));
        }
    }
    Ok(None)
}

impl<'a> Entry<'a> {
    /// View a ctnetlink message (IPCTNL_MSG_CT_NEW or _DELETE).
    #[inline]
    pub fn from_message(m: &Message<'a>) -> Result<Entry<'a>, DecodeError> {
        let (g, attrs) = m.nfgen()?;
        Ok(Entry {
            family: g.family,
            msg: m.hdr.kind as u8,
            flags: m.hdr.flags,
            attrs,
        })
    }
    /// View the attributes of an entry directly (after nfgenmsg).
    pub fn from_attrs(family: u8, attrs: &'a [u8]) -> Entry<'a> {
        Entry {
            family,
            msg: IPCTNL_MSG_CT_NEW,
            flags: 0,
            attrs,
        }
    }
    /// nfgenmsg family: AF_INET (2) or AF_INET6 (10).
    #[inline]
    pub fn family(&self) -> u8 {
        self.family
    }
    /// The ctnetlink message type (IPCTNL_MSG_CT_NEW for dumps and new/update
    /// events, IPCTNL_MSG_CT_DELETE for destroy events).
    pub fn msg_type(&self) -> u8 {
        self.msg
    }
    /// nlmsghdr flags of the carrying message.
    pub fn nlmsg_flags(&self) -> u16 {
        self.flags
    }
    /// The raw attribute bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.attrs
    }
    /// Walk the top-level attributes (including ones this crate does not know).
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.attrs, "ctnetlink message")
    }
    /// The first top-level attribute of a kind.
    pub fn find(&self, kind: u16) -> Result<Option<Attr<'a>>, DecodeError> {
        find(self.attrs, kind)
    }
    /// CTA_TUPLE_ORIG.
    pub fn orig(&self) -> Result<Option<Tuple>, DecodeError> {
        self.find(CTA_TUPLE_ORIG)?
            .map(|a| Tuple::decode(a.value, "CTA_TUPLE_ORIG"))
            .transpose()
    }
    /// CTA_TUPLE_REPLY.
    pub fn reply(&self) -> Result<Option<Tuple>, DecodeError> {
        self.find(CTA_TUPLE_REPLY)?
            .map(|a| Tuple::decode(a.value, "CTA_TUPLE_REPLY"))
            .transpose()
    }
    /// L4 protocol number of the original tuple.
    pub fn l4proto(&self) -> Result<Option<u8>, DecodeError> {
        Ok(self.orig()?.map(|t| t.proto))
    }
    /// CTA_PROTOINFO / CTA_PROTOINFO_TCP / CTA_PROTOINFO_TCP_STATE.
    pub fn tcp_state(&self) -> Result<Option<TcpState>, DecodeError> {
        match self.find(CTA_PROTOINFO)? {
            Some(a) => decode_tcp_state(&a),
            None => Ok(None),
        }
    }
    /// The protocol state byte of SCTP (CTA_PROTOINFO_SCTP_STATE, `enum
    /// sctp_conntrack`: 4 = ESTABLISHED) or DCCP (CTA_PROTOINFO_DCCP_STATE)
    /// entries, as (protoinfo kind, state). TCP: see [`Entry::tcp_state`].
    pub fn other_proto_state(&self) -> Result<Option<(u16, u8)>, DecodeError> {
        let Some(a) = self.find(CTA_PROTOINFO)? else {
            return Ok(None);
        };
        for p in a.nested("CTA_PROTOINFO") {
            let p = p?;
            if p.kind == CTA_PROTOINFO_SCTP || p.kind == CTA_PROTOINFO_DCCP {
                for t in p.nested("CTA_PROTOINFO_SCTP/DCCP") {
                    let t = t?;
                    // CTA_PROTOINFO_SCTP_STATE and CTA_PROTOINFO_DCCP_STATE are both 1.
                    if t.kind == 1 {
                        return Ok(Some((p.kind, t.u8("CTA_PROTOINFO_SCTP/DCCP_STATE")?)));
                    }
                }
            }
        }
        Ok(None)
    }
    /// CTA_STATUS.
    pub fn status(&self) -> Result<Option<Status>, DecodeError> {
        self.find(CTA_STATUS)?
            .map(|a| a.be32("CTA_STATUS").map(Status))
            .transpose()
    }
    fn be32_of(&self, kind: u16, field: &'static str) -> Result<Option<u32>, DecodeError> {
        self.find(kind)?.map(|a| a.be32(field)).transpose()
    }
    /// CTA_TIMEOUT: seconds left.
    pub fn timeout(&self) -> Result<Option<u32>, DecodeError> {
        self.be32_of(CTA_TIMEOUT, "CTA_TIMEOUT")
    }
    /// CTA_MARK.
    pub fn mark(&self) -> Result<Option<u32>, DecodeError> {
        self.be32_of(CTA_MARK, "CTA_MARK")
    }
    /// CTA_ZONE.
    pub fn zone(&self) -> Result<Option<u16>, DecodeError> {
        self.find(CTA_ZONE)?.map(|a| a.be16("CTA_ZONE")).transpose()
    }
    /// CTA_ID.
    pub fn id(&self) -> Result<Option<u32>, DecodeError> {
        self.be32_of(CTA_ID, "CTA_ID")
    }
    /// CTA_USE (reference count).
    pub fn use_count(&self) -> Result<Option<u32>, DecodeError> {
        self.be32_of(CTA_USE, "CTA_USE")
    }
    /// CTA_COUNTERS_ORIG.
    pub fn counters_orig(&self) -> Result<Option<Counters>, DecodeError> {
        self.find(CTA_COUNTERS_ORIG)?
            .map(|a| Counters::decode(&a, "CTA_COUNTERS_ORIG"))
            .transpose()
    }
    /// CTA_COUNTERS_REPLY.
    pub fn counters_reply(&self) -> Result<Option<Counters>, DecodeError> {
        self.find(CTA_COUNTERS_REPLY)?
            .map(|a| Counters::decode(&a, "CTA_COUNTERS_REPLY"))
            .transpose()
    }

    /// All summary fields in one pass over the attributes.
    #[inline]
    pub fn summary(&self) -> Result<EntryFields, DecodeError> {
        let mut f = EntryFields {
            family: self.family,
            ..EntryFields::default()
        };
        for a in Attrs::new(self.attrs, "ctnetlink message") {
            let a = a?;
            match a.kind {
                CTA_TUPLE_ORIG => f.orig = Some(Tuple::decode(a.value, "CTA_TUPLE_ORIG")?),
                CTA_TUPLE_REPLY => f.reply = Some(Tuple::decode(a.value, "CTA_TUPLE_REPLY")?),
                CTA_STATUS => f.status = Status(a.be32("CTA_STATUS")?),
                CTA_PROTOINFO => f.tcp_state = decode_tcp_state(&a)?,
                CTA_TIMEOUT => f.timeout = Some(a.be32("CTA_TIMEOUT")?),
                CTA_MARK => f.mark = Some(a.be32("CTA_MARK")?),
                CTA_ZONE => f.zone = Some(a.be16("CTA_ZONE")?),
                CTA_ID => f.id = Some(a.be32("CTA_ID")?),
                CTA_USE => f.use_count = Some(a.be32("CTA_USE")?),
                CTA_COUNTERS_ORIG => {
                    f.counters_orig = Some(Counters::decode(&a, "CTA_COUNTERS_ORIG")?)
                }
                CTA_COUNTERS_REPLY => {
                    f.counters_reply = Some(Counters::decode(&a, "CTA_COUNTERS_REPLY")?)
                }
                _ => {}
            }
        }
        Ok(f)
    }
}

fn decode_tcp_state(a: &Attr<'_>) -> Result<Option<TcpState>, DecodeError> {
    for p in a.nested("CTA_PROTOINFO") {
        let p = p?;
        if p.kind == CTA_PROTOINFO_TCP {
            for t in p.nested("CTA_PROTOINFO_TCP") {
                let t = t?;
                if t.kind == CTA_PROTOINFO_TCP_STATE {
                    return Ok(Some(TcpState::from_u8(t.u8("CTA_PROTOINFO_TCP_STATE")?)));
                }
            }
        }
    }
    Ok(None)
}
