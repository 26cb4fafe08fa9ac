//! [`Timeouts`]: the conntrack timeouts (seconds) that turn an entry's
//! "seconds left" into its idle age, parsed from `--timeouts` lists or
//! built from the sysctl values a reader found; the defaults are the
//! kernel's (`kernel::DEFAULT_TIMEOUTS`).
//!
//! Not for: reading sysctls (that is `host::conntrack`, whose `timeouts` map
//! [`Timeouts::from_sysctls`] takes) or aggregating.

use super::entry::{self, Entry, TcpState};
use serde::Serialize;
use std::collections::BTreeMap;

/// Conntrack timeouts (seconds) used to turn "seconds left" into idle age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    /// By [`TcpState`] number.
    pub tcp: [u32; 10],
    pub udp: u32,
    pub udp_stream: u32,
    pub icmp: u32,
    pub icmpv6: u32,
    pub generic: u32,
    /// tcp_timeout_max_retrans and tcp_timeout_unacknowledged: caps the
    /// kernel puts on a TCP state's timeout (retransmissions or a zero
    /// window; data in flight).
    pub tcp_max_retrans: u32,
    pub tcp_unacknowledged: u32,
}

/// The timeout names `--timeouts` accepts (short form), in kernel order.
pub const TIMEOUT_NAMES: &[&str] = &[
    "syn_sent",
    "syn_recv",
    "established",
    "fin_wait",
    "close_wait",
    "last_ack",
    "time_wait",
    "close",
    "udp",
    "udp_stream",
    "icmp",
    "icmpv6",
    "generic",
    "max_retrans",
    "unacknowledged",
];

impl Default for Timeouts {
    fn default() -> Self {
        let mut t = Timeouts {
            tcp: [0; 10],
            udp: 0,
            udp_stream: 0,
            icmp: 0,
            icmpv6: 0,
            generic: 0,
            tcp_max_retrans: 0,
            tcp_unacknowledged: 0,
        };
        for (name, v) in crate::kernel::DEFAULT_TIMEOUTS {
            let _ = t.set(name, *v);
        }
        t
    }
}

impl Timeouts {
    /// Set one timeout by sysctl suffix (`tcp_timeout_time_wait`), full
    /// sysctl name (`nf_conntrack_tcp_timeout_time_wait`) or short name
    /// (`time_wait`, `udp_stream`).
    pub fn set(&mut self, name: &str, v: u64) -> Result<(), String> {
        let v = u32::try_from(v).map_err(|_| format!("timeout {name}={v} out of range"))?;
        let n = name.trim();
        let n = n.strip_prefix("net.netfilter.").unwrap_or(n);
        let n = n.strip_prefix("nf_conntrack_").unwrap_or(n);
        let n = n.strip_prefix("tcp_timeout_").unwrap_or(n);
        match n {
            "udp_timeout" | "udp" => self.udp = v,
            "udp_timeout_stream" | "udp_stream" => self.udp_stream = v,
            "icmp_timeout" | "icmp" => self.icmp = v,
            "icmpv6_timeout" | "icmpv6" => self.icmpv6 = v,
            "generic_timeout" | "generic" => self.generic = v,
            // Caps on a state's timeout (see `age`).
            "max_retrans" => self.tcp_max_retrans = v,
            "unacknowledged" => self.tcp_unacknowledged = v,
            s => {
                let st = TcpState::from_name(s.as_bytes())
                    .filter(|st| *st != TcpState::None)
                    .ok_or_else(|| {
                        format!(
                            "unknown timeout {name:?} (known: {})",
                            TIMEOUT_NAMES.join(", ")
                        )
                    })?;
                self.tcp[st as usize] = v;
                if st == TcpState::SynSent {
                    self.tcp[TcpState::SynSent2 as usize] = v;
                }
            }
        }
        Ok(())
    }

    /// One timeout by any name [`Timeouts::set`] takes; None for a name
    /// it does not know.
    pub fn get(&self, name: &str) -> Option<u32> {
        let mut probe = *self;
        // The field a name sets is the one that changes.
        probe.set(name, 0).ok()?;
        let mut marked = *self;
        marked.set(name, 1).ok()?;
        let fields = |t: &Timeouts| {
            let mut v = t.tcp.to_vec();
            v.extend([
                t.udp,
                t.udp_stream,
                t.icmp,
                t.icmpv6,
                t.generic,
                t.tcp_max_retrans,
                t.tcp_unacknowledged,
            ]);
            v
        };
        let (a, b, now) = (fields(&probe), fields(&marked), fields(self));
        a.iter().zip(&b).position(|(x, y)| x != y).map(|i| now[i])
    }

    /// Parse `established=432000,time_wait=120` over the defaults.
    pub fn parse_list(s: &str) -> Result<Timeouts, String> {
        let mut t = Timeouts::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("expected NAME=SECONDS, got {part:?}"))?;
            let secs = crate::util::parse_duration(v)?.as_secs();
            t.set(k, secs)?;
        }
        Ok(t)
    }

    /// The timeouts a namespace's sysctls give, keyed as
    /// `host::conntrack` keys them (file name without `nf_conntrack_`:
    /// `tcp_timeout_established`); the default for any name absent (or out
    /// of range). Names this type does not use (sctp, gre, frag) are ignored.
    pub fn from_sysctls(sysctls: &BTreeMap<String, u64>) -> Timeouts {
        let mut t = Timeouts::default();
        for (name, _) in crate::kernel::DEFAULT_TIMEOUTS {
            if let Some(v) = sysctls.get(*name) {
                let _ = t.set(name, *v);
            }
        }
        t
    }

    /// The timeout an entry's state starts from.
    pub fn for_entry(&self, e: &Entry) -> u32 {
        match e.l4 {
            entry::IPPROTO_TCP => self.tcp[e.state as usize],
            entry::IPPROTO_UDP | entry::IPPROTO_UDPLITE => {
                if e.assured() {
                    self.udp_stream
                } else {
                    self.udp
                }
            }
            entry::IPPROTO_ICMP => self.icmp,
            entry::IPPROTO_ICMPV6 => self.icmpv6,
            _ => self.generic,
        }
    }

    /// Seconds since the entry's last packet, or `None` when its seconds
    /// left exceed its state's timeout (custom timeout: age unknown), or
    /// for sctp, dccp and gre, whose per-state timeouts are not read here.
    ///
    /// The kernel shortens a TCP state's timeout to max_retrans
    /// (retransmissions, zero window) or unacknowledged (data in flight)
    /// when that is shorter: an entry with at most that many seconds left
    /// is either that young or a full state timeout old, so its age is
    /// unknown too (on a busy gateway: many ESTABLISHED entries at once).
    pub fn age(&self, e: &Entry) -> Option<u32> {
        let t = match e.l4 {
            entry::IPPROTO_SCTP | entry::IPPROTO_DCCP | entry::IPPROTO_GRE => return None,
            _ => self.for_entry(e),
        };
        if e.is_tcp()
            && [self.tcp_max_retrans, self.tcp_unacknowledged]
                .iter()
                .any(|&cap| t > cap && e.timeout <= cap)
        {
            return None;
        }
        t.checked_sub(e.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_with_their_own_timeouts_have_unknown_ages() {
        // sctp, dccp and gre have per-state timeouts of their own (not
        // nf_conntrack_generic_timeout): 600 − seconds left is not their age.
        let t = Timeouts::default();
        for l4 in [entry::IPPROTO_SCTP, entry::IPPROTO_DCCP, entry::IPPROTO_GRE] {
            let e = Entry {
                l3: entry::AF_INET,
                l4,
                timeout: 100,
                ..Entry::default()
            };
            assert_eq!(t.age(&e), None, "l4 {l4}");
        }
        // A protocol without a tracker of its own (esp, 50) uses generic.
        let esp = Entry {
            l3: entry::AF_INET,
            l4: 50,
            timeout: 100,
            ..Entry::default()
        };
        assert_eq!(t.age(&esp), Some(500));
    }

    #[test]
    fn established_entries_under_the_retrans_or_unack_cap_have_unknown_ages() {
        // Seen on 6.18: a loopback connection whose last packet was data
        // not yet acked shows `ESTABLISHED` with 299 s left one second
        // after that packet — the kernel caps the timeout at
        // tcp_timeout_unacknowledged (300). 432000 − 299 is not its age.
        let t = Timeouts::default();
        let est = |left: u32| Entry {
            l3: entry::AF_INET,
            l4: entry::IPPROTO_TCP,
            state: TcpState::Established,
            timeout: left,
            ..Entry::default()
        };
        assert_eq!(t.age(&est(299)), None);
        assert_eq!(t.age(&est(300)), None);
        assert_eq!(t.age(&est(301)), Some(432_000 - 301));
        // States whose timeout is below the caps are never capped.
        let tw = Entry {
            state: TcpState::TimeWait,
            timeout: 100,
            ..est(0)
        };
        assert_eq!(t.age(&tw), Some(20));
        // The caps are the namespace's own.
        let t = Timeouts::parse_list("max_retrans=60,unacknowledged=90").unwrap();
        assert_eq!(t.age(&est(91)), Some(432_000 - 91));
        assert_eq!(t.age(&est(90)), None);
    }

    #[test]
    fn from_sysctls_takes_known_names_and_defaults_the_rest() {
        let m: BTreeMap<String, u64> = [
            ("tcp_timeout_established", 600),
            ("tcp_timeout_syn_sent", 30),
            ("udp_timeout_stream", 90),
            ("tcp_timeout_unacknowledged", 200),
            // Not ours: ignored.
            ("gre_timeout_stream", 1),
            ("frag6_timeout", 2),
            // Out of range: the default stays.
            ("tcp_timeout_time_wait", u64::MAX),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
        let t = Timeouts::from_sysctls(&m);
        let d = Timeouts::default();
        assert_eq!(t.tcp[TcpState::Established as usize], 600);
        assert_eq!(t.tcp[TcpState::SynSent as usize], 30);
        assert_eq!(t.tcp[TcpState::SynSent2 as usize], 30);
        assert_eq!(t.udp_stream, 90);
        assert_eq!(t.tcp_unacknowledged, 200);
        assert_eq!(t.tcp[TcpState::TimeWait as usize], 120);
        assert_eq!((t.udp, t.icmp, t.generic), (d.udp, d.icmp, d.generic));
        assert_eq!(Timeouts::from_sysctls(&BTreeMap::new()), d);
    }

    #[test]
    fn get_reads_what_set_writes() {
        let t = Timeouts::parse_list("time_wait=15,udp_stream=90,max_retrans=200").unwrap();
        assert_eq!(
            t.get("net.netfilter.nf_conntrack_tcp_timeout_time_wait"),
            Some(15)
        );
        assert_eq!(t.get("tcp_timeout_syn_sent"), Some(120));
        assert_eq!(t.get("udp_timeout_stream"), Some(90));
        assert_eq!(t.get("udp_timeout"), Some(30));
        assert_eq!(t.get("tcp_timeout_max_retrans"), Some(200));
        assert_eq!(t.get("nope"), None);
    }

    #[test]
    fn timeouts_names() {
        let t = Timeouts::parse_list("established=600,time_wait=10s,udp_stream=2m").unwrap();
        assert_eq!(t.tcp[3], 600);
        assert_eq!(t.tcp[7], 10);
        assert_eq!(t.udp_stream, 120);
        assert_eq!(t.tcp[1], 120);
        assert!(Timeouts::parse_list("nope=1").is_err());
        assert!(Timeouts::parse_list("established").is_err());
        let mut t = Timeouts::default();
        t.set("nf_conntrack_tcp_timeout_close_wait", 5).unwrap();
        assert_eq!(t.tcp[5], 5);
    }
}
