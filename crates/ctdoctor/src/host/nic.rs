//! Network interfaces of one netns: kernel counters from /proc/net/dev and
//! driver counters (`ethtool -S`, including AWS ENA allowances) from the
//! probe in [`super::ethtool`].
//!
//! Why /proc/net/dev and not /sys/class/net/*/statistics: /sys/class/net
//! shows the netns of the sysfs mount, not the reading thread's, so after
//! setns it would silently show the host's interfaces. /proc/net/dev is
//! read through /proc/thread-self/net and follows the thread. The price:
//! its columns are aggregates — `drop` (receive) = rx_dropped +
//! rx_missed_errors, `fifo` = rx_fifo_errors, `frame` = rx_length +
//! rx_over + rx_crc + rx_frame errors; transmit `drop` = tx_dropped,
//! `carrier` = tx_carrier + aborted + window + heartbeat errors. The
//! separate counters (rx_missed_errors, rx_nohandler, ...) come from the
//! rtnetlink probe in [`super::rtnl`] (IFLA_STATS64, also per netns), when
//! it is available; the rules judge /proc/net/dev and show those as detail.
//!
//! Not for: judging (checks::nic), or link settings.

use super::ethtool::{self, Ethtool};
use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nics {
    /// /proc/net/dev, by interface name.
    pub dev: BTreeMap<String, DevCounters>,
    /// Driver statistics (probe `probe:ethtool_stats`).
    pub ethtool: Fact<Ethtool>,
    /// rtnl_link_stats64 by interface (probe `probe:rtnl_link_stats64`).
    pub link_stats: Fact<super::rtnl::LinkStats>,
}

/// The 16 columns of one /proc/net/dev line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    /// rx_dropped + rx_missed_errors.
    pub rx_drop: u64,
    /// rx_fifo_errors.
    pub rx_fifo: u64,
    pub rx_frame: u64,
    pub rx_compressed: u64,
    pub rx_multicast: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    /// tx_dropped.
    pub tx_drop: u64,
    pub tx_fifo: u64,
    pub tx_colls: u64,
    pub tx_carrier: u64,
    pub tx_compressed: u64,
}

impl DevCounters {
    /// Packets lost on this interface: rx drop + rx fifo + tx drop + tx fifo.
    pub fn drops(&self) -> u64 {
        self.rx_drop
            .saturating_add(self.rx_fifo)
            .saturating_add(self.tx_drop)
            .saturating_add(self.tx_fifo)
    }

    pub fn packets(&self) -> u64 {
        self.rx_packets.saturating_add(self.tx_packets)
    }
}

pub fn read(root: &Root) -> Fact<Nics> {
    let dev = parse_dev(&root.read_text("proc/net/dev")?)?;
    let names: Vec<String> = dev.keys().cloned().collect();
    let ethtool = root
        .probe(ethtool::PROBE, || {
            let e = ethtool::read_live(&names)?;
            Ok(serde_json::to_vec(&e).expect("Ethtool serialises"))
        })
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| Unavailable::malformed(ethtool::PROBE, e.to_string()))
        });
    Ok(Nics {
        dev,
        ethtool,
        link_stats: super::rtnl::read(root),
    })
}

/// /proc/net/dev: two header lines, then `name: 16 numbers` per interface.
pub fn parse_dev(s: &str) -> Fact<BTreeMap<String, DevCounters>> {
    let what = "proc/net/dev";
    let mut out = BTreeMap::new();
    for (i, line) in s.lines().enumerate() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains(['|', ' ']) {
            continue; // header
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| Unavailable::malformed(what, format!("line {}: not a number", i + 1)))?;
        let Ok::<[u64; 16], _>(c) = v.try_into() else {
            return Err(Unavailable::malformed(
                what,
                format!("line {}: expected 16 numbers", i + 1),
            ));
        };
        out.insert(
            name.to_string(),
            DevCounters {
                rx_bytes: c[0],
                rx_packets: c[1],
                rx_errs: c[2],
                rx_drop: c[3],
                rx_fifo: c[4],
                rx_frame: c[5],
                rx_compressed: c[6],
                rx_multicast: c[7],
                tx_bytes: c[8],
                tx_packets: c[9],
                tx_errs: c[10],
                tx_drop: c[11],
                tx_fifo: c[12],
                tx_colls: c[13],
                tx_carrier: c[14],
                tx_compressed: c[15],
            },
        );
    }
    if out.is_empty() {
        return Err(Unavailable::malformed(what, "no interface lines"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dev_real() {
        let s = include_str!("../../tests/fixtures/sock-real/proc/net/dev");
        let d = parse_dev(s).unwrap();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["eth0", "ifb0", "ifb1", "lo"]);
        // Hand-read from the sample (this VM).
        assert_eq!(d["lo"].rx_bytes, 3245);
        assert_eq!(d["lo"].tx_packets, 30);
        assert_eq!(d["eth0"].rx_bytes, 105496902);
        assert_eq!(d["eth0"].rx_packets, 6388);
        assert_eq!(d["eth0"].tx_bytes, 390127);
        assert_eq!(d["eth0"].tx_packets, 4046);
        assert_eq!(d["eth0"].drops(), 0);
        // Old format without a space after the colon; drops in columns.
        let old = "h|\n h|\n  eth1:10 20 1 7 2 0 0 0 30 40 0 3 4 0 0 0\n";
        let d = parse_dev(old).unwrap();
        assert_eq!(
            (d["eth1"].rx_drop, d["eth1"].rx_fifo, d["eth1"].tx_drop),
            (7, 2, 3)
        );
        assert_eq!(d["eth1"].drops(), 16);
        assert!(parse_dev("x: 1 2 3\n").is_err());
        assert!(parse_dev("").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,400}") {
            let _ = parse_dev(&s);
        }
    }
}
