//! [`Entry`]: one conntrack entry reduced to what the aggregates need, as a
//! small `Copy` value. Sources (the text parser, a ctnetlink dump through
//! [`Entry::from_fields`]) produce it; the aggregator consumes it.
//!
//! Not for: parsing text (`text`) or any I/O (dumps are `host::entries`).

use ctnetlink::consts::{IPS_ASSURED, IPS_HW_OFFLOAD, IPS_OFFLOAD, IPS_SEEN_REPLY};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Layer-3 family numbers as the kernel prints them (`ipv4 2`, `ipv6 10`)
/// and the IP protocol numbers the aggregates name: the protocol crate's.
pub use ctnetlink::consts::{
    AF_INET, AF_INET6, IPPROTO_DCCP, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
};

/// TCP conntrack states, numbered as the kernel numbers them
/// (`enum tcp_conntrack`, also `CTA_PROTOINFO_TCP_STATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum TcpState {
    /// Not TCP, or TCP state unknown.
    #[default]
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    SynSent2 = 9,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The kernel's number for a state; unknown numbers map to `None`.
    pub fn from_u8(n: u8) -> TcpState {
        Self::ALL.get(n as usize).copied().unwrap_or(TcpState::None)
    }

    /// The name as /proc and `conntrack -L` print it (`TIME_WAIT`): the
    /// protocol crate's spelling.
    pub fn as_str(self) -> &'static str {
        ctnetlink::TcpState::from_u8(self as u8)
            .name()
            .unwrap_or("NONE")
    }

    /// Parse a printed name, case-insensitively (`time_wait` works too).
    #[inline]
    pub fn from_name(s: &[u8]) -> Option<TcpState> {
        // The common spellings first, without a case-insensitive scan.
        match s {
            b"TIME_WAIT" => return Some(TcpState::TimeWait),
            b"ESTABLISHED" => return Some(TcpState::Established),
            b"SYN_SENT" => return Some(TcpState::SynSent),
            _ => {}
        }
        Self::ALL
            .iter()
            .copied()
            .find(|st| st.as_str().as_bytes().eq_ignore_ascii_case(s))
    }

    /// The sysctl suffix of this state's timeout (`tcp_timeout_time_wait`).
    pub fn timeout_name(self) -> &'static str {
        match self {
            TcpState::None => "tcp_timeout_close",
            TcpState::SynSent | TcpState::SynSent2 => "tcp_timeout_syn_sent",
            TcpState::SynRecv => "tcp_timeout_syn_recv",
            TcpState::Established => "tcp_timeout_established",
            TcpState::FinWait => "tcp_timeout_fin_wait",
            TcpState::CloseWait => "tcp_timeout_close_wait",
            TcpState::LastAck => "tcp_timeout_last_ack",
            TcpState::TimeWait => "tcp_timeout_time_wait",
            TcpState::Close => "tcp_timeout_close",
        }
    }
}

/// Status flags kept in [`Entry::flags`].
pub mod flags {
    /// `[ASSURED]` / IPS_ASSURED: early drop never evicts it.
    pub const ASSURED: u8 = 1;
    /// IPS_SEEN_REPLY; its absence is printed `[UNREPLIED]`.
    pub const SEEN_REPLY: u8 = 2;
    /// `[OFFLOAD]` / IPS_OFFLOAD (flowtable).
    pub const OFFLOAD: u8 = 4;
    /// `[HW_OFFLOAD]` / IPS_HW_OFFLOAD.
    pub const HW_OFFLOAD: u8 = 8;
}

/// An address in one compact form: IPv4 as IPv4-mapped IPv6
/// (`::ffff:a.b.c.d`), IPv6 as itself. Hashes and compares as one `u128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr(pub u128);

impl Addr {
    pub fn v4(a: u32) -> Addr {
        Addr(0xffff_0000_0000 | a as u128)
    }
    pub fn v6(a: u128) -> Addr {
        Addr(a)
    }
    pub fn from_ip(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(a) => Addr::v4(u32::from(a)),
            IpAddr::V6(a) => Addr(u128::from(a)),
        }
    }
    /// The address, IPv4-mapped ones shown as IPv4 (conntrack never tracks
    /// IPv4-mapped IPv6 addresses on the wire, so this is unambiguous in
    /// practice).
    pub fn ip(self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.0);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
    pub fn is_v4(self) -> bool {
        self.0 >> 32 == 0xffff
    }
    pub fn v4_bits(self) -> Option<u32> {
        self.is_v4().then_some(self.0 as u32)
    }
}

impl From<Ipv4Addr> for Addr {
    fn from(a: Ipv4Addr) -> Addr {
        Addr::v4(u32::from(a))
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.ip().fmt(f)
    }
}

/// One conntrack entry, original direction only (what `summary` counts).
///
/// For ICMP/ICMPv6, `sport` holds the echo id and `dport` holds
/// `type << 8 | code` (as the kernel's tuple does); [`Entry::has_ports`]
/// says whether the ports are real ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entry {
    /// [`AF_INET`] or [`AF_INET6`].
    pub l3: u8,
    /// IP protocol number (6 tcp, 17 udp, 1 icmp, …).
    pub l4: u8,
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    /// TCP state; `None` for other protocols.
    pub state: TcpState,
    /// Bits from [`flags`].
    pub flags: u8,
    /// Seconds left before the entry expires.
    pub timeout: u32,
    pub mark: u32,
    pub zone: u16,
}

impl Entry {
    pub fn is_tcp(&self) -> bool {
        self.l4 == IPPROTO_TCP
    }
    /// Whether `sport`/`dport` are ports (tcp, udp, sctp, dccp, udplite).
    pub fn has_ports(&self) -> bool {
        matches!(
            self.l4,
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_DCCP | IPPROTO_UDPLITE
        )
    }
    pub fn assured(&self) -> bool {
        self.flags & flags::ASSURED != 0
    }
    /// Never saw a reply (printed `[UNREPLIED]`).
    pub fn unreplied(&self) -> bool {
        self.flags & flags::SEEN_REPLY == 0
    }
    /// ICMP type and code (meaningful for icmp/icmpv6 only).
    pub fn icmp_type_code(&self) -> (u8, u8) {
        ((self.dport >> 8) as u8, self.dport as u8)
    }

    /// A decoded ctnetlink entry (all summary fields) as an [`Entry`];
    /// `None` when it has no original tuple.
    #[inline]
    pub fn from_fields(f: &ctnetlink::EntryFields) -> Option<Entry> {
        let o = f.orig?;
        let mut fl = 0;
        if f.status.0 & IPS_ASSURED != 0 {
            fl |= flags::ASSURED;
        }
        if f.status.0 & IPS_SEEN_REPLY != 0 {
            fl |= flags::SEEN_REPLY;
        }
        if f.status.0 & IPS_OFFLOAD != 0 {
            fl |= flags::OFFLOAD;
        }
        if f.status.0 & IPS_HW_OFFLOAD != 0 {
            fl |= flags::HW_OFFLOAD;
        }
        let mut e = Entry {
            l3: f.family,
            l4: o.proto,
            src: Addr::from_ip(o.src),
            dst: Addr::from_ip(o.dst),
            sport: o.src_port,
            dport: o.dst_port,
            state: TcpState::None,
            flags: fl,
            timeout: f.timeout.unwrap_or(0),
            mark: f.mark.unwrap_or(0),
            zone: f.zone.unwrap_or(0),
        };
        if e.is_tcp() {
            e.state = f
                .tcp_state
                .map_or(TcpState::None, |s| TcpState::from_u8(s.as_u8()));
        } else if !e.has_ports() {
            e.sport = o.icmp_id;
            e.dport = (o.icmp_type as u16) << 8 | o.icmp_code as u16;
        }
        Some(e)
    }
}

/// The usual name of an IP protocol number, as /proc prints it.
pub fn l4_name(n: u8) -> Option<&'static str> {
    Some(match n {
        IPPROTO_ICMP => "icmp",
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_DCCP => "dccp",
        IPPROTO_ICMPV6 => "icmpv6",
        IPPROTO_SCTP => "sctp",
        IPPROTO_UDPLITE => "udplite",
        IPPROTO_GRE => "gre",
        _ => return None,
    })
}

/// A destination port as `tcp/443`, `udp/53`, `47/0` (a protocol without
/// a name: its number).
pub fn proto_port(proto: u8, port: u16) -> String {
    match l4_name(proto) {
        Some(name) => format!("{name}/{port}"),
        None => format!("{proto}/{port}"),
    }
}

/// A protocol name or number (`tcp`, `17`) to its number.
pub fn l4_from_name(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    let s = s.to_ascii_lowercase();
    (0..=255u8).find(|&n| l4_name(n) == Some(s.as_str()))
}

/// `ipv4` / `ipv6` for a family number.
pub fn l3_name(n: u8) -> &'static str {
    match n {
        AF_INET => "ipv4",
        AF_INET6 => "ipv6",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_small_and_copy() {
        // Two u128 addresses dominate; keep it within one cache line.
        assert!(std::mem::size_of::<Entry>() <= 64);
        let e = Entry::default();
        let f = e;
        assert_eq!(e, f);
    }

    #[test]
    fn states_round_trip() {
        for (i, st) in TcpState::ALL.iter().enumerate() {
            assert_eq!(TcpState::from_u8(i as u8), *st);
            assert_eq!(TcpState::from_name(st.as_str().as_bytes()), Some(*st));
        }
        assert_eq!(TcpState::from_name(b"time_wait"), Some(TcpState::TimeWait));
        assert_eq!(TcpState::from_name(b"src=1"), None);
        assert_eq!(TcpState::from_u8(200), TcpState::None);
    }

    #[test]
    fn addresses_display_in_their_family() {
        let a = Addr::from(Ipv4Addr::new(10, 57, 0, 98));
        assert_eq!(a.to_string(), "10.57.0.98");
        assert!(a.is_v4());
        let b = Addr::from_ip("2001:db8::1".parse().unwrap());
        assert_eq!(b.to_string(), "2001:db8::1");
        assert!(!b.is_v4());
    }

    #[test]
    fn ctnetlink_fields_convert() {
        use ctnetlink::consts::{IPS_ASSURED, IPS_SEEN_REPLY};
        let tuple = |proto: u8| ctnetlink::Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto,
            src_port: 1000,
            dst_port: 443,
            icmp_id: 7,
            icmp_type: 8,
            icmp_code: 0,
            zone: None,
        };
        let f = ctnetlink::EntryFields {
            family: AF_INET,
            orig: Some(tuple(IPPROTO_TCP)),
            status: ctnetlink::Status(IPS_ASSURED | IPS_SEEN_REPLY),
            tcp_state: Some(ctnetlink::TcpState::TimeWait),
            timeout: Some(99),
            mark: Some(5),
            zone: Some(3),
            ..Default::default()
        };
        let e = Entry::from_fields(&f).unwrap();
        assert_eq!((e.l3, e.l4, e.sport, e.dport), (AF_INET, 6, 1000, 443));
        assert_eq!(
            (e.state, e.timeout, e.mark, e.zone),
            (TcpState::TimeWait, 99, 5, 3)
        );
        assert!(e.assured() && !e.unreplied());
        assert_eq!(e.src, Addr::from(Ipv4Addr::new(10, 0, 0, 1)));
        // ICMP: the echo id and type/code take the port fields.
        let i = Entry::from_fields(&ctnetlink::EntryFields {
            orig: Some(tuple(IPPROTO_ICMP)),
            ..f
        })
        .unwrap();
        assert_eq!(
            (i.sport, i.icmp_type_code(), i.state),
            (7, (8, 0), TcpState::None)
        );
        // No original tuple: not an entry.
        let none = ctnetlink::EntryFields { orig: None, ..f };
        assert_eq!(Entry::from_fields(&none), None);
    }

    #[test]
    fn protocol_names() {
        assert_eq!(l4_from_name("tcp"), Some(6));
        assert_eq!(l4_from_name("UDP"), Some(17));
        assert_eq!(l4_from_name("47"), Some(47));
        assert_eq!(l4_from_name("nope"), None);
    }
}
