//! Socket-level facts of one network namespace: /proc/net/sockstat and
//! sockstat6 (by key), /proc/net/netstat `TcpExt` (by header name),
//! /proc/net/softnet_stat (per CPU, summed), the TCP sysctls that bound
//! ports, TIME_WAIT and listen queues, and the sock_diag probe
//! ([`super::sockdiag`]) that counts sockets per destination.
//!
//! `proc/net/*` and `proc/sys/net/*` follow the netns of the reading thread
//! (see [`Root`]); softnet_stat is per CPU and the same in every netns.
//!
//! Not for: judging any of it (that is `checks::sockets`).

use super::{parse_u64, Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::sockdiag::{Destination, Listener, SockDiag};

/// `TCP` -> {`inuse` -> 1, `orphan` -> 0, `tw` -> 0, ...}, one map per line.
pub type Sockstat = BTreeMap<String, BTreeMap<String, u64>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sockets {
    /// /proc/net/sockstat (`TCP: inuse N orphan N tw N alloc N mem N`, `UDP`, ...).
    pub sockstat: Fact<Sockstat>,
    /// /proc/net/sockstat6 (`TCP6: inuse N`, ...).
    pub sockstat6: Fact<Sockstat>,
    /// /proc/net/netstat `TcpExt` section, every counter by name.
    pub tcp_ext: Fact<BTreeMap<String, u64>>,
    /// /proc/net/softnet_stat, per CPU and summed.
    pub softnet: Fact<Softnet>,
    pub sysctls: TcpSysctls,
    /// TCP sockets per destination and per state (sock_diag probe).
    pub diag: Fact<SockDiag>,
}

impl Sockets {
    /// One value of the `TCP:` line of sockstat (`inuse`, `orphan`, `tw`, `alloc`, `mem`).
    pub fn tcp(&self, key: &str) -> Fact<u64> {
        stat_value(&self.sockstat, "proc/net/sockstat", "TCP", key)
    }

    /// One TcpExt counter by name.
    pub fn tcp_ext(&self, name: &str) -> Fact<u64> {
        match &self.tcp_ext {
            Ok(m) => m.get(name).copied().ok_or_else(|| Unavailable::Missing {
                what: format!("proc/net/netstat: TcpExt {name}"),
            }),
            Err(u) => Err(u.clone()),
        }
    }
}

fn stat_value(s: &Fact<Sockstat>, what: &str, line: &str, key: &str) -> Fact<u64> {
    match s {
        Ok(m) => m
            .get(line)
            .and_then(|l| l.get(key))
            .copied()
            .ok_or_else(|| Unavailable::Missing {
                what: format!("{what}: {line} {key}"),
            }),
        Err(u) => Err(u.clone()),
    }
}

/// The sysctls that bound ephemeral ports, TIME_WAIT and listen queues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcpSysctls {
    /// net.ipv4.ip_local_port_range (low, high), inclusive.
    pub ip_local_port_range: Fact<(u32, u32)>,
    /// net.ipv4.ip_local_reserved_ports: ranges (inclusive) connect() skips.
    #[serde(default = "no_reserved")]
    pub ip_local_reserved_ports: Fact<Vec<(u32, u32)>>,
    /// net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 loopback only (default).
    pub tcp_tw_reuse: Fact<u64>,
    pub tcp_max_tw_buckets: Fact<u64>,
    pub somaxconn: Fact<u64>,
    pub tcp_syncookies: Fact<u64>,
    pub tcp_fin_timeout: Fact<u64>,
    pub tcp_keepalive_time: Fact<u64>,
    pub tcp_keepalive_intvl: Fact<u64>,
    pub tcp_keepalive_probes: Fact<u64>,
    pub tcp_max_syn_backlog: Fact<u64>,
    /// net.core.netdev_max_backlog (softnet input queue per CPU).
    pub netdev_max_backlog: Fact<u64>,
    /// net.core.netdev_budget (packets per NAPI softirq run).
    pub netdev_budget: Fact<u64>,
}

fn no_reserved() -> Fact<Vec<(u32, u32)>> {
    Ok(Vec::new())
}

impl TcpSysctls {
    /// Number of ports in ip_local_port_range.
    pub fn port_range_size(&self) -> Option<u64> {
        let (lo, hi) = *self.ip_local_port_range.as_ref().ok()?;
        (hi >= lo).then(|| u64::from(hi - lo) + 1)
    }

    /// Ports of ip_local_port_range that are reserved (not handed out by
    /// connect()); 0 when the reserved list is unknown.
    pub fn reserved_in_range(&self) -> u64 {
        let (Ok((lo, hi)), Ok(res)) = (&self.ip_local_port_range, &self.ip_local_reserved_ports)
        else {
            return 0;
        };
        // Ranges may overlap each other: count each port once.
        let mut v: Vec<(u32, u32)> = res
            .iter()
            .map(|&(a, b)| (a.max(*lo), b.min(*hi)))
            .filter(|(a, b)| a <= b)
            .collect();
        v.sort_unstable();
        let mut n = 0u64;
        let mut next = 0u32; // first port not yet counted
        for (a, b) in v {
            let a = a.max(next);
            if a <= b {
                n += u64::from(b - a) + 1;
            }
            next = next.max(b.saturating_add(1));
        }
        n
    }

    /// Ports connect() can pick for one destination.
    pub fn usable_ports(&self) -> Option<u64> {
        Some(
            self.port_range_size()?
                .saturating_sub(self.reserved_in_range()),
        )
    }
}

/// /proc/net/softnet_stat: one row per CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Softnet {
    pub cpus: Vec<SoftnetCpu>,
    /// Sums over CPUs.
    pub processed: u64,
    pub dropped: u64,
    pub time_squeeze: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftnetCpu {
    /// Packets taken off the CPU's backlog.
    pub processed: u64,
    /// Packets dropped because the backlog (netdev_max_backlog) was full.
    pub dropped: u64,
    /// NAPI runs that stopped with work left (netdev_budget / budget_usecs spent).
    pub time_squeeze: u64,
}

pub fn read(root: &Root) -> Fact<Sockets> {
    let sockstat = root
        .read_text("proc/net/sockstat")
        .and_then(|s| parse_sockstat("proc/net/sockstat", &s));
    let tcp_ext = root
        .read_text("proc/net/netstat")
        .and_then(|s| parse_netstat_section(&s, "TcpExt"));
    if let (Err(a), Err(_)) = (&sockstat, &tcp_ext) {
        return Err(a.clone());
    }
    let sysctl = |p: &str| -> Fact<u64> {
        let b = root.read(p)?;
        parse_u64(p, &b)
    };
    let sysctls = TcpSysctls {
        ip_local_port_range: root
            .read_text("proc/sys/net/ipv4/ip_local_port_range")
            .and_then(|s| parse_port_range(&s)),
        ip_local_reserved_ports: match root.read_text("proc/sys/net/ipv4/ip_local_reserved_ports") {
            // Absent (very old kernel, or a tree without it): nothing reserved.
            Err(Unavailable::Missing { .. }) => Ok(Vec::new()),
            r => r.and_then(|s| parse_port_list(&s)),
        },
        tcp_tw_reuse: sysctl("proc/sys/net/ipv4/tcp_tw_reuse"),
        tcp_max_tw_buckets: sysctl("proc/sys/net/ipv4/tcp_max_tw_buckets"),
        somaxconn: sysctl("proc/sys/net/core/somaxconn"),
        tcp_syncookies: sysctl("proc/sys/net/ipv4/tcp_syncookies"),
        tcp_fin_timeout: sysctl("proc/sys/net/ipv4/tcp_fin_timeout"),
        tcp_keepalive_time: sysctl("proc/sys/net/ipv4/tcp_keepalive_time"),
        tcp_keepalive_intvl: sysctl("proc/sys/net/ipv4/tcp_keepalive_intvl"),
        tcp_keepalive_probes: sysctl("proc/sys/net/ipv4/tcp_keepalive_probes"),
        tcp_max_syn_backlog: sysctl("proc/sys/net/ipv4/tcp_max_syn_backlog"),
        netdev_max_backlog: sysctl("proc/sys/net/core/netdev_max_backlog"),
        netdev_budget: sysctl("proc/sys/net/core/netdev_budget"),
    };
    Ok(Sockets {
        sockstat,
        sockstat6: root
            .read_text("proc/net/sockstat6")
            .and_then(|s| parse_sockstat("proc/net/sockstat6", &s)),
        tcp_ext,
        softnet: root
            .read_text("proc/net/softnet_stat")
            .and_then(|s| parse_softnet(&s)),
        sysctls,
        diag: super::sockdiag::read(root),
    })
}

/// `TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 203` lines, parsed by key.
/// A value that is not a number is skipped (not fatal); no line at all is.
pub fn parse_sockstat(what: &str, s: &str) -> Fact<Sockstat> {
    let mut out = Sockstat::new();
    for line in s.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            continue;
        }
        let mut vals = BTreeMap::new();
        let mut it = rest.split_whitespace();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Ok(n) = v.parse::<u64>() {
                vals.insert(k.to_string(), n);
            }
        }
        out.insert(name.to_string(), vals);
    }
    if out.is_empty() {
        return Err(Unavailable::malformed(what, "no `NAME: key value` line"));
    }
    Ok(out)
}

/// One section of /proc/net/netstat (or /proc/net/snmp): a header line
/// `TcpExt: Name Name ...` followed by `TcpExt: N N ...`, zipped by name.
pub fn parse_netstat_section(s: &str, section: &str) -> Fact<BTreeMap<String, u64>> {
    let what = "proc/net/netstat";
    let prefix = format!("{section}:");
    let mut lines = s.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Err(Unavailable::malformed(
            what,
            format!("no {section} header and value lines"),
        ));
    };
    let names: Vec<&str> = names[prefix.len()..].split_whitespace().collect();
    let values: Vec<&str> = values[prefix.len()..].split_whitespace().collect();
    if names.len() != values.len() {
        return Err(Unavailable::malformed(
            what,
            format!(
                "{section}: {} names but {} values",
                names.len(),
                values.len()
            ),
        ));
    }
    let mut out = BTreeMap::new();
    for (n, v) in names.into_iter().zip(values) {
        // Some counters are signed (e.g. Tcp MaxConn -1); TcpExt are not.
        let v = v.parse::<u64>().map_err(|_| {
            Unavailable::malformed(
                what,
                format!("{section} {n}: not a counter: {:?}", super::truncate(v, 20)),
            )
        })?;
        out.insert(n.to_string(), v);
    }
    Ok(out)
}

/// /proc/net/softnet_stat: hex columns per CPU; col 1 processed, col 2
/// dropped, col 3 time_squeeze (the others vary with the kernel).
pub fn parse_softnet(s: &str) -> Fact<Softnet> {
    let what = "proc/net/softnet_stat";
    let mut out = Softnet::default();
    for (i, line) in s.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<u64> = line
            .split_whitespace()
            .take(3)
            .map(|c| u64::from_str_radix(c, 16))
            .collect::<Result<_, _>>()
            .map_err(|_| Unavailable::malformed(what, format!("line {}: not hex", i + 1)))?;
        let [processed, dropped, time_squeeze] = cols[..] else {
            return Err(Unavailable::malformed(
                what,
                format!("line {}: fewer than 3 columns", i + 1),
            ));
        };
        out.processed = out.processed.saturating_add(processed);
        out.dropped = out.dropped.saturating_add(dropped);
        out.time_squeeze = out.time_squeeze.saturating_add(time_squeeze);
        out.cpus.push(SoftnetCpu {
            processed,
            dropped,
            time_squeeze,
        });
    }
    if out.cpus.is_empty() {
        return Err(Unavailable::malformed(what, "no CPU rows"));
    }
    Ok(out)
}

/// `32768\t60999` -> (32768, 60999).
pub fn parse_port_range(s: &str) -> Fact<(u32, u32)> {
    let what = "proc/sys/net/ipv4/ip_local_port_range";
    let mut it = s.split_whitespace().map(|v| v.parse::<u32>());
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi)), None) if lo <= hi && hi <= 65535 => Ok((lo, hi)),
        _ => Err(Unavailable::malformed(
            what,
            format!(
                "expected `LOW HIGH`, got {:?}",
                super::truncate(s.trim(), 40)
            ),
        )),
    }
}

/// `8080,9000-9100` (or an empty line) -> [(8080, 8080), (9000, 9100)].
pub fn parse_port_list(s: &str) -> Fact<Vec<(u32, u32)>> {
    let bad = || {
        Unavailable::malformed(
            "proc/sys/net/ipv4/ip_local_reserved_ports",
            format!("bad port list {:?}", super::truncate(s.trim(), 40)),
        )
    };
    let mut out = Vec::new();
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a.trim().parse().map_err(|_| bad())?;
        let b: u32 = b.trim().parse().map_err(|_| bad())?;
        if a > b || b > 65535 {
            return Err(bad());
        }
        out.push((a, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Read on this VM (6.18.44, 2 CPUs).
    const SOCKSTAT: &str = "sockets: used 14\n\
TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 203\n\
UDP: inuse 0 mem 0\n\
UDPLITE: inuse 0\n\
RAW: inuse 0\n\
FRAG: inuse 0 memory 0\n";
    const SOCKSTAT6: &str =
        "TCP6: inuse 0\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n";
    const SOFTNET: &str = "0000000b 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n\
00001397 00000002 0000001a 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000\n";

    #[test]
    fn sockstat_by_key() {
        let s = parse_sockstat("x", SOCKSTAT).unwrap();
        assert_eq!(s["sockets"]["used"], 14);
        assert_eq!(s["TCP"]["inuse"], 1);
        assert_eq!(s["TCP"]["tw"], 0);
        assert_eq!(s["TCP"]["mem"], 203);
        assert_eq!(s["FRAG"]["memory"], 0);
        let s6 = parse_sockstat("x", SOCKSTAT6).unwrap();
        assert_eq!(s6["TCP6"]["inuse"], 0);
        // Keys in another order, and an unknown key, still parse.
        let s = parse_sockstat("x", "TCP: tw 7 inuse 3 newkey 9 orphan 2\n").unwrap();
        assert_eq!(
            (s["TCP"]["tw"], s["TCP"]["inuse"], s["TCP"]["newkey"]),
            (7, 3, 9)
        );
        assert!(parse_sockstat("x", "garbage\n").is_err());
    }

    #[test]
    fn netstat_by_name() {
        let text = include_str!("../../tests/fixtures/sock-real/proc/net/netstat");
        let t = parse_netstat_section(text, "TcpExt").unwrap();
        // Read off the sample by column name (this VM, 6.18.44).
        assert_eq!(t["TW"], 11);
        assert_eq!(t["ListenOverflows"], 0);
        assert_eq!(t["ListenDrops"], 0);
        assert_eq!(t["TCPTimeWaitOverflow"], 0);
        assert_eq!(t["TCPReqQFullDrop"], 0);
        assert_eq!(t["DelayedACKs"], 1);
        assert_eq!(t["TCPPureAcks"], 84);
        assert_eq!(t["TCPRcvCoalesce"], 4149);
        assert_eq!(t["TCPAutoCorking"], 335);
        let ip = parse_netstat_section(text, "IpExt").unwrap();
        assert_eq!(ip["InOctets"], 105410503);
        // Columns moved: still found by name.
        let moved = "TcpExt: ListenDrops Foo ListenOverflows\nTcpExt: 5 1 4\n";
        let t = parse_netstat_section(moved, "TcpExt").unwrap();
        assert_eq!((t["ListenDrops"], t["ListenOverflows"]), (5, 4));
        assert!(parse_netstat_section("TcpExt: A B\nTcpExt: 1\n", "TcpExt").is_err());
        assert!(parse_netstat_section("IpExt: A\nIpExt: 1\n", "TcpExt").is_err());
    }

    #[test]
    fn softnet_summed() {
        let s = parse_softnet(SOFTNET).unwrap();
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.processed, 0xb + 0x1397);
        assert_eq!(s.dropped, 2);
        assert_eq!(s.time_squeeze, 0x1a);
        // The real file from this VM (15 columns, col 13 is the CPU index).
        let real = parse_softnet(include_str!(
            "../../tests/fixtures/sock-real/proc/net/softnet_stat"
        ))
        .unwrap();
        assert_eq!(real.cpus.len(), 2);
        assert_eq!(real.processed, 0xb + 0x1907);
        assert_eq!((real.dropped, real.time_squeeze), (0, 0));
        // Old kernels: fewer columns.
        let old = parse_softnet("00000010 00000001 00000003 00000000\n").unwrap();
        assert_eq!((old.processed, old.dropped, old.time_squeeze), (16, 1, 3));
        assert!(parse_softnet("").is_err());
        assert!(parse_softnet("0000zz 0 0\n").is_err());
        assert!(parse_softnet("00000001 00000002\n").is_err());
    }

    #[test]
    fn port_range() {
        assert_eq!(parse_port_range("32768\t60999\n").unwrap(), (32768, 60999));
        assert!(parse_port_range("60999 32768").is_err());
        assert!(parse_port_range("1").is_err());
        assert!(parse_port_range("1 70000").is_err());
    }

    #[test]
    fn reserved_ports() {
        assert_eq!(parse_port_list("\n").unwrap(), vec![]);
        assert_eq!(
            parse_port_list("8080,9000-9100\n").unwrap(),
            vec![(8080, 8080), (9000, 9100)]
        );
        assert!(parse_port_list("9100-9000").is_err());
        assert!(parse_port_list("x").is_err());
        let mut s = TcpSysctls {
            ip_local_port_range: Ok((32768, 60999)),
            ip_local_reserved_ports: Ok(vec![
                (8080, 8080),
                (32000, 32999),
                (40000, 40099),
                (40050, 40149),
            ]),
            tcp_tw_reuse: Ok(2),
            tcp_max_tw_buckets: Ok(1),
            somaxconn: Ok(1),
            tcp_syncookies: Ok(1),
            tcp_fin_timeout: Ok(60),
            tcp_keepalive_time: Ok(7200),
            tcp_keepalive_intvl: Ok(75),
            tcp_keepalive_probes: Ok(9),
            tcp_max_syn_backlog: Ok(1),
            netdev_max_backlog: Ok(1),
            netdev_budget: Ok(1),
        };
        // 32768..=32999 (232) + 40000..=40149 (150, overlap counted once).
        assert_eq!(s.reserved_in_range(), 232 + 150);
        assert_eq!(s.usable_ports(), Some(28232 - 382));
        s.ip_local_reserved_ports = Ok(vec![]);
        assert_eq!(s.usable_ports(), Some(28232));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,400}") {
            let _ = parse_port_list(&s);
            let _ = parse_sockstat("x", &s);
            let _ = parse_netstat_section(&s, "TcpExt");
            let _ = parse_softnet(&s);
            let _ = parse_port_range(&s);
        }

        #[test]
        fn never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let s = String::from_utf8_lossy(&b);
            let _ = parse_sockstat("x", &s);
            let _ = parse_netstat_section(&s, "TcpExt");
            let _ = parse_softnet(&s);
        }
    }
}
