//! Interface counters through rtnetlink (RTM_GETLINK dump, IFLA_STATS64),
//! as the probe `probe:rtnl_link_stats64`: the separate rx_dropped,
//! rx_missed_errors, rx_over_errors, rx_nohandler, … that /proc/net/dev
//! folds together. The socket is opened on the calling thread, so the
//! dump shows that thread's netns (unlike /sys/class/net).
//!
//! ```text
//! RTM_NEWLINK payload: ifinfomsg (16 B: u8 family, u8 pad, u16 type,
//!   i32 index, u32 flags, u32 change), then attributes
//!   (u16 len incl. 4-byte header, u16 type; 4-byte aligned):
//!   IFLA_IFNAME 3 (NUL-terminated), IFLA_STATS64 23 (rtnl_link_stats64:
//!   u64 fields in the order of [`FIELDS`]; older kernels send fewer).
//! ```
//!
//! Not for: link settings, addresses, or judging.

use super::{Fact, Root, Unavailable};
use std::collections::BTreeMap;

pub const PROBE: &str = "probe:rtnl_link_stats64";

/// rtnl_link_stats64 field names, in kernel order (include/uapi/linux/if_link.h).
pub const FIELDS: [&str; 25] = [
    "rx_packets",
    "tx_packets",
    "rx_bytes",
    "tx_bytes",
    "rx_errors",
    "tx_errors",
    "rx_dropped",
    "tx_dropped",
    "multicast",
    "collisions",
    "rx_length_errors",
    "rx_over_errors",
    "rx_crc_errors",
    "rx_frame_errors",
    "rx_fifo_errors",
    "rx_missed_errors",
    "tx_aborted_errors",
    "tx_carrier_errors",
    "tx_fifo_errors",
    "tx_heartbeat_errors",
    "tx_window_errors",
    "rx_compressed",
    "tx_compressed",
    "rx_nohandler",
    "rx_otherhost_dropped",
];

/// Interface name -> counter name -> value.
pub type LinkStats = BTreeMap<String, BTreeMap<String, u64>>;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const IFLA_IFNAME: u16 = 3;
const IFLA_STATS64: u16 = 23;
const IFINFOMSG_LEN: usize = 16;

pub fn read(root: &Root) -> Fact<LinkStats> {
    let bytes = root.probe(PROBE, || {
        let s = read_live()?;
        Ok(serde_json::to_vec(&s).expect("LinkStats serialises"))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Unavailable::malformed(PROBE, e.to_string()))
}

/// One RTM_NEWLINK payload -> (name, counters); None without a name or stats.
pub fn parse_newlink(p: &[u8]) -> Option<(String, BTreeMap<String, u64>)> {
    let mut off = IFINFOMSG_LEN;
    let mut name = None;
    let mut stats = None;
    while off + 4 <= p.len() {
        let len = usize::from(u16::from_ne_bytes([p[off], p[off + 1]]));
        let ty = u16::from_ne_bytes([p[off + 2], p[off + 3]]) & 0x3fff;
        if len < 4 || off + len > p.len() {
            break;
        }
        let data = &p[off + 4..off + len];
        match ty {
            IFLA_IFNAME => {
                let end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
                name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
            }
            IFLA_STATS64 => {
                stats = Some(
                    data.chunks_exact(8)
                        .zip(FIELDS)
                        .map(|(c, n)| {
                            let v = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
                            (n.to_string(), v)
                        })
                        .collect(),
                );
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Some((name?, stats?))
}

/// Dump every link of the calling thread's netns.
pub fn read_live() -> Result<LinkStats, Unavailable> {
    let sock = super::netlink::Socket::open(libc::NETLINK_ROUTE, "rtnetlink (RTM_GETLINK)")?;
    let mut out = LinkStats::new();
    let req = super::netlink::request(RTM_GETLINK, 1, &[0u8; IFINFOMSG_LEN]);
    sock.dump(&req, |ty, payload| {
        if ty == RTM_NEWLINK {
            if let Some((n, s)) = parse_newlink(payload) {
                out.insert(n, s);
            }
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(data);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    #[test]
    fn newlink() {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p.extend(attr(IFLA_IFNAME, b"eth0\0"));
        p.extend(attr(4, &1500u32.to_ne_bytes())); // IFLA_MTU, skipped
        let vals: Vec<u8> = (1..=24u64).flat_map(|v| v.to_ne_bytes()).collect();
        p.extend(attr(IFLA_STATS64, &vals)); // an older kernel: 24 fields
        let (n, s) = parse_newlink(&p).unwrap();
        assert_eq!(n, "eth0");
        assert_eq!(s.len(), 24);
        assert_eq!(s["rx_packets"], 1);
        assert_eq!(s["rx_dropped"], 7);
        assert_eq!(s["rx_missed_errors"], 16);
        assert_eq!(s["rx_nohandler"], 24);
        assert!(!s.contains_key("rx_otherhost_dropped"));
        let mut no_stats = vec![0u8; IFINFOMSG_LEN];
        no_stats.extend(attr(IFLA_IFNAME, b"lo\0"));
        assert!(parse_newlink(&no_stats).is_none());
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_newlink(&b);
        }
    }
}
