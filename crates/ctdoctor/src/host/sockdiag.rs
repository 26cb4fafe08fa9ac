//! TCP sockets per destination through NETLINK_SOCK_DIAG (what `ss` speaks),
//! as the probe `probe:sock_diag_tcp`.
//!
//! Ephemeral ports run out per (src ip, dst ip, dst port), not globally, so
//! the probe counts outbound sockets grouped by that triple, plus totals per
//! TCP state and the listeners with their accept queues. Only the top
//! [`TOP`] destinations and listeners are kept, so captures stay small.
//!
//! "Outbound" = every non-listening socket whose local port is not a
//! listening port (accepted connections use the listener's port, not an
//! ephemeral one). To know the listening ports first, listeners are dumped
//! first, then every other state, for AF_INET and AF_INET6.
//!
//! The netlink socket is opened on the calling thread, so it belongs to the
//! netns that thread is in (inside `collect_live`: the target's).
//!
//! Wire layout (linux/inet_diag.h), request after the 16-byte nlmsghdr:
//! ```text
//!  inet_diag_req_v2 (56 bytes)
//!  0  u8 family | u8 protocol | u8 ext | u8 pad
//!  4  u32 states (bit per TCP state)
//!  8  inet_diag_sockid: be16 sport, be16 dport, be32 src[4], be32 dst[4],
//!     u32 if, u32 cookie[2]                                  (48 bytes)
//! ```
//! Reply payload, inet_diag_msg (72 bytes):
//! ```text
//!  0  u8 family | u8 state | u8 timer | u8 retrans
//!  4  inet_diag_sockid (sport 4, dport 6, src 8..24, dst 24..40, if 40, cookie 44)
//! 52  u32 expires | 56 u32 rqueue | 60 u32 wqueue | 64 u32 uid | 68 u32 inode
//! ```
//! For a listener, rqueue is the current accept queue and wqueue its backlog.
//!
//! Not for: other protocols, per-socket detail, or judging (checks::sockets).

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The probe key.
pub const PROBE: &str = "probe:sock_diag_tcp";
/// How many destinations and listeners a capture keeps.
pub const TOP: usize = 20;
/// Time spent at most looking for the processes that hold the listeners.
pub const OWNER_BUDGET: std::time::Duration = std::time::Duration::from_millis(500);
/// Stop counting after this many sockets (the result says `truncated`).
pub const MAX_SOCKETS: u64 = 4_000_000;

/// Kernel TCP state names (include/net/tcp_states.h), index = state number.
pub const TCP_STATES: [&str; 13] = [
    "UNKNOWN",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
];
const TCP_LISTEN: u8 = 10;
const TCP_TIME_WAIT: u8 = 6;

/// What the probe reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockDiag {
    /// Every TCP socket seen (both families, all states).
    pub total: u64,
    /// Sockets per state name (`ESTABLISHED`, `TIME_WAIT`, ...).
    pub states: BTreeMap<String, u64>,
    /// Distinct outbound (src, dst, dport) groups seen.
    pub destinations_seen: u64,
    /// The [`TOP`] outbound groups by socket count, largest first.
    pub destinations: Vec<Destination>,
    /// Listening sockets seen.
    pub listeners_seen: u64,
    /// The [`TOP`] listeners by accept-queue fill, fullest first.
    pub listeners: Vec<Listener>,
    /// Counting stopped at [`MAX_SOCKETS`].
    pub truncated: bool,
}

/// Outbound sockets from one source address to one destination ip:port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub src: String,
    pub dst: String,
    pub dport: u16,
    /// Sockets in any state (each holds one local port for this triple).
    pub sockets: u64,
    /// Of which in TIME_WAIT.
    pub time_wait: u64,
}

/// One listening socket and its accept queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub addr: String,
    pub port: u16,
    /// Connections waiting for accept() now.
    pub queue: u32,
    /// The effective backlog: min(listen() backlog, somaxconn).
    pub backlog: u32,
    /// The socket's inode (0 when unknown, e.g. an older capture).
    #[serde(default)]
    pub inode: u64,
    /// A process holding it (the lowest pid), when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<super::fds::SocketOwner>,
}

/// One decoded inet_diag_msg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagRecord {
    pub state: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub rqueue: u32,
    pub wqueue: u32,
    /// The socket's inode (`socket:[INODE]` in /proc/PID/fd).
    pub inode: u32,
}

/// Read the probe: live through netlink, else from the capture/fixture.
pub fn read(root: &Root) -> Fact<SockDiag> {
    let prefix = root.live_prefix().map(std::path::Path::to_path_buf);
    let bytes = root.probe(PROBE, || {
        let mut d = dump_live()?;
        let proc = prefix.unwrap_or_else(|| "/".into()).join("proc");
        let inodes: HashSet<u64> = d.listeners.iter().map(|l| l.inode).collect();
        let owners = super::fds::socket_owners(&proc, &inodes, OWNER_BUDGET);
        for l in &mut d.listeners {
            l.owner = owners.get(&l.inode).cloned();
        }
        Ok(serde_json::to_vec(&d).expect("SockDiag serialises"))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Unavailable::malformed(PROBE, e.to_string()))
}

/// Streaming aggregation of records into a [`SockDiag`]. Feed listeners
/// first (their ports decide what counts as outbound).
#[derive(Debug, Default)]
pub struct Aggregator {
    listen_ports: HashSet<u16>,
    listeners: Vec<Listener>,
    groups: HashMap<(IpAddr, IpAddr, u16), (u64, u64)>,
    states: BTreeMap<String, u64>,
    total: u64,
    truncated: bool,
}

impl Aggregator {
    pub fn add(&mut self, r: &DiagRecord) {
        if self.total >= MAX_SOCKETS {
            self.truncated = true;
            return;
        }
        self.total += 1;
        let name = TCP_STATES
            .get(usize::from(r.state))
            .copied()
            .unwrap_or("UNKNOWN");
        *self.states.entry(name.to_string()).or_insert(0) += 1;
        if r.state == TCP_LISTEN {
            self.listen_ports.insert(r.sport);
            self.listeners.push(Listener {
                addr: r.src.to_string(),
                port: r.sport,
                queue: r.rqueue,
                backlog: r.wqueue,
                inode: u64::from(r.inode),
                owner: None,
            });
            return;
        }
        if self.listen_ports.contains(&r.sport) {
            return; // accepted connection: the listener's port, not an ephemeral one
        }
        let e = self.groups.entry((r.src, r.dst, r.dport)).or_insert((0, 0));
        e.0 += 1;
        if r.state == TCP_TIME_WAIT {
            e.1 += 1;
        }
    }

    pub fn finish(self, top: usize) -> SockDiag {
        let mut groups: Vec<_> = self.groups.into_iter().collect();
        groups.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
        let destinations_seen = groups.len() as u64;
        let destinations = groups
            .into_iter()
            .take(top)
            .map(|((src, dst, dport), (sockets, time_wait))| Destination {
                src: src.to_string(),
                dst: dst.to_string(),
                dport,
                sockets,
                time_wait,
            })
            .collect();
        let mut listeners = self.listeners;
        let listeners_seen = listeners.len() as u64;
        // Fullest first: queue/backlog, compared without floats.
        listeners.sort_by(|a, b| {
            let l = u64::from(b.queue) * u64::from(a.backlog.max(1));
            let r = u64::from(a.queue) * u64::from(b.backlog.max(1));
            l.cmp(&r)
                .then_with(|| a.port.cmp(&b.port))
                .then_with(|| a.addr.cmp(&b.addr))
        });
        listeners.truncate(top);
        SockDiag {
            total: self.total,
            states: self.states,
            destinations_seen,
            destinations,
            listeners_seen,
            listeners,
            truncated: self.truncated,
        }
    }
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_MSG_LEN: usize = 72;

pub use super::netlink::Batch;

/// Decode one received datagram: every inet_diag_msg goes to `sink`.
pub fn parse_datagram(buf: &[u8], mut sink: impl FnMut(DiagRecord)) -> Result<Batch, String> {
    super::netlink::walk(buf, |ty, payload| feed(ty, payload, &mut sink))
}

/// One netlink message: an inet_diag_msg goes to `sink`; others are skipped
/// (NLMSG_NOOP, overrun).
fn feed(ty: u16, payload: &[u8], sink: &mut impl FnMut(DiagRecord)) -> Result<(), String> {
    if ty == SOCK_DIAG_BY_FAMILY {
        let r = parse_diag_msg(payload).ok_or("short or unknown-family inet_diag_msg")?;
        sink(r);
    }
    Ok(())
}

/// Decode the fixed part of one inet_diag_msg (attributes after it ignored).
pub fn parse_diag_msg(p: &[u8]) -> Option<DiagRecord> {
    if p.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let addr = |b: &[u8]| -> Option<IpAddr> {
        match i32::from(p[0]) {
            libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            libc::AF_INET6 => {
                let a: [u8; 16] = b.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => None,
        }
    };
    let u32_at = |i: usize| u32::from_ne_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    Some(DiagRecord {
        state: p[1],
        sport: u16::from_be_bytes([p[4], p[5]]),
        dport: u16::from_be_bytes([p[6], p[7]]),
        src: addr(&p[8..24])?,
        dst: addr(&p[24..40])?,
        rqueue: u32_at(56),
        wqueue: u32_at(60),
        inode: u32_at(68),
    })
}

/// The dump request for one family and state mask.
pub fn request(family: u8, states: u32, seq: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(56);
    body.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    body.extend_from_slice(&states.to_ne_bytes());
    body.extend_from_slice(&[0u8; 48]);
    super::netlink::request(SOCK_DIAG_BY_FAMILY, seq, &body)
}

/// Dump every TCP socket of the calling thread's netns (listeners first).
pub fn dump_live() -> Result<SockDiag, Unavailable> {
    let sock =
        super::netlink::Socket::open(libc::NETLINK_SOCK_DIAG, "sock_diag (NETLINK_SOCK_DIAG)")?;
    let mut agg = Aggregator::default();
    let listen = 1u32 << TCP_LISTEN;
    let mut seq = 1;
    for states in [listen, !listen] {
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let mut sink = |r: DiagRecord| agg.add(&r);
            sock.dump(&request(family, states, seq), |ty, payload| {
                feed(ty, payload, &mut sink)
            })?;
            seq += 1;
        }
    }
    Ok(agg.finish(TOP))
}

/// Every listening TCP socket of the calling thread's netns (both
/// families), unsorted and untruncated, owners not looked up.
pub fn listeners_live() -> Result<Vec<Listener>, Unavailable> {
    let sock =
        super::netlink::Socket::open(libc::NETLINK_SOCK_DIAG, "sock_diag (NETLINK_SOCK_DIAG)")?;
    let mut agg = Aggregator::default();
    for (seq, family) in [libc::AF_INET as u8, libc::AF_INET6 as u8]
        .into_iter()
        .enumerate()
    {
        let mut sink = |r: DiagRecord| agg.add(&r);
        sock.dump(
            &request(family, 1 << TCP_LISTEN, seq as u32 + 1),
            |ty, payload| feed(ty, payload, &mut sink),
        )?;
    }
    Ok(agg.listeners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(family: u8, state: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; INET_DIAG_MSG_LEN];
        p[0] = family;
        p[1] = state;
        p[4..6].copy_from_slice(&sport.to_be_bytes());
        p[6..8].copy_from_slice(&dport.to_be_bytes());
        p[8..12].copy_from_slice(&src);
        p[24..28].copy_from_slice(&dst);
        p[56..60].copy_from_slice(&3u32.to_ne_bytes()); // rqueue
        p[60..64].copy_from_slice(&511u32.to_ne_bytes()); // wqueue
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + p.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&p);
        m
    }

    fn done() -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&super::super::netlink::NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&[0u8; 14]);
        m
    }

    #[test]
    fn decodes_and_groups() {
        let lo = [127, 0, 0, 1];
        let up = [10, 0, 0, 9];
        let mut dg = msg(2, TCP_LISTEN, [0; 4], 8080, [0; 4], 0);
        for p in 0..5u16 {
            dg.extend(msg(2, 1, lo, 40000 + p, lo, 8080)); // clients -> 8080
            dg.extend(msg(2, 1, lo, 8080, lo, 40000 + p)); // accepted side
        }
        dg.extend(msg(2, TCP_TIME_WAIT, lo, 41000, lo, 8080));
        dg.extend(msg(2, 1, lo, 42000, up, 443));
        let mut agg = Aggregator::default();
        assert_eq!(parse_datagram(&dg, |r| agg.add(&r)).unwrap(), Batch::More);
        assert_eq!(
            parse_datagram(&done(), |r| agg.add(&r)).unwrap(),
            Batch::Done
        );
        let d = agg.finish(TOP);
        assert_eq!(d.total, 13);
        assert_eq!(d.states["ESTABLISHED"], 11);
        assert_eq!(d.states["TIME_WAIT"], 1);
        assert_eq!(d.states["LISTEN"], 1);
        assert_eq!(d.destinations_seen, 2);
        assert_eq!(
            d.destinations[0],
            Destination {
                src: "127.0.0.1".into(),
                dst: "127.0.0.1".into(),
                dport: 8080,
                sockets: 6,
                time_wait: 1
            }
        );
        assert_eq!(d.destinations[1].dst, "10.0.0.9");
        assert_eq!(d.destinations[1].sockets, 1);
        assert_eq!(
            d.listeners,
            vec![Listener {
                addr: "0.0.0.0".into(),
                port: 8080,
                queue: 3,
                backlog: 511,
                inode: 0,
                owner: None,
            }]
        );
        let mut top1 = Aggregator::default();
        parse_datagram(&dg, |r| top1.add(&r)).unwrap();
        assert_eq!(top1.finish(1).destinations.len(), 1);
    }

    #[test]
    fn errors_and_request() {
        let mut e = Vec::new();
        e.extend_from_slice(&36u32.to_ne_bytes());
        e.extend_from_slice(&super::super::netlink::NLMSG_ERROR.to_ne_bytes());
        e.extend_from_slice(&[0u8; 10]);
        e.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        e.extend_from_slice(&[0u8; 16]);
        assert_eq!(
            parse_datagram(&e, |_| {}).unwrap(),
            Batch::Error(libc::ENOENT)
        );
        assert!(parse_datagram(&[1, 2, 3], |_| {}).is_err());
        let mut bad = msg(2, 1, [1; 4], 1, [2; 4], 2);
        bad[0] = 200; // nlmsg_len beyond the buffer
        assert!(parse_datagram(&bad, |_| {}).is_err());
        let r = request(2, 0xffff, 7);
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]), 72);
        assert_eq!(r[16], 2);
        assert_eq!(r[17], 6);
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut agg = Aggregator::default();
            let _ = parse_datagram(&b, |r| agg.add(&r));
            let _ = parse_diag_msg(&b);
            let _ = agg.finish(3);
        }
    }
}
