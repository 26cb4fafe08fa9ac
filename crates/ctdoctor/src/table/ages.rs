//! [`Ages`]: how many entries of each timeout class (a TCP state, UDP,
//! UDP stream, ICMP, ICMPv6, generic) have each idle age, from one pass
//! over any entry source — what `plan --what-if` predicts from. An age is
//! the class's timeout minus the entry's seconds left, so it is exact to
//! the second the kernel truncates; entries whose age cannot be told
//! (custom or capped timeouts, sctp/dccp/gre) are counted apart.
//!
//! Not for: dumping (`host::entries`) or predicting (`plan::whatif`).

use super::counters::FastMap;
use super::entry::{self, Entry, TcpState};
use super::text::Sink;
use super::timeouts::Timeouts;

/// A group of entries that share one timeout knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Tcp(TcpState),
    /// UDP (and UDP-Lite) without a reply seen both ways: `udp_timeout`.
    Udp,
    /// Assured UDP: `udp_timeout_stream`.
    UdpStream,
    Icmp,
    Icmpv6,
    /// Protocols without a tracker of their own: `generic_timeout`.
    Generic,
    /// sctp, dccp, gre: per-state timeouts of their own, not read here.
    Other,
}

/// Slots: 10 TCP states, then the six others.
const SLOTS: usize = 16;

impl Class {
    /// The class of an entry (as [`Timeouts::for_entry`] chooses its timeout).
    pub fn of(e: &Entry) -> Class {
        match e.l4 {
            entry::IPPROTO_TCP => Class::Tcp(e.state),
            entry::IPPROTO_UDP | entry::IPPROTO_UDPLITE => {
                if e.assured() {
                    Class::UdpStream
                } else {
                    Class::Udp
                }
            }
            entry::IPPROTO_ICMP => Class::Icmp,
            entry::IPPROTO_ICMPV6 => Class::Icmpv6,
            entry::IPPROTO_SCTP | entry::IPPROTO_DCCP | entry::IPPROTO_GRE => Class::Other,
            _ => Class::Generic,
        }
    }

    fn slot(self) -> usize {
        match self {
            Class::Tcp(s) => s as usize,
            Class::Udp => 10,
            Class::UdpStream => 11,
            Class::Icmp => 12,
            Class::Icmpv6 => 13,
            Class::Generic => 14,
            Class::Other => 15,
        }
    }

    fn from_slot(i: usize) -> Class {
        match i {
            0..=9 => Class::Tcp(TcpState::from_u8(i as u8)),
            10 => Class::Udp,
            11 => Class::UdpStream,
            12 => Class::Icmp,
            13 => Class::Icmpv6,
            14 => Class::Generic,
            _ => Class::Other,
        }
    }

    /// The name reports use: the TCP state (`TIME_WAIT`), or `UDP`,
    /// `UDP_STREAM`, `ICMP`, `ICMPV6`, `GENERIC`, `OTHER`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Tcp(s) => s.as_str(),
            Class::Udp => "UDP",
            Class::UdpStream => "UDP_STREAM",
            Class::Icmp => "ICMP",
            Class::Icmpv6 => "ICMPV6",
            Class::Generic => "GENERIC",
            Class::Other => "OTHER",
        }
    }

    /// The timeout sysctl (without `nf_conntrack_`) that sets this class's
    /// timeout; None for `OTHER` and for TCP entries without a state.
    pub fn timeout_name(self) -> Option<&'static str> {
        Some(match self {
            Class::Tcp(TcpState::None) | Class::Other => return None,
            Class::Tcp(s) => s.timeout_name(),
            Class::Udp => "udp_timeout",
            Class::UdpStream => "udp_timeout_stream",
            Class::Icmp => "icmp_timeout",
            Class::Icmpv6 => "icmpv6_timeout",
            Class::Generic => "generic_timeout",
        })
    }

    /// This class's timeout in `t` (seconds); None where it has no knob.
    pub fn timeout(self, t: &Timeouts) -> Option<u32> {
        self.timeout_name()?;
        Some(match self {
            Class::Tcp(s) => t.tcp[s as usize],
            Class::Udp => t.udp,
            Class::UdpStream => t.udp_stream,
            Class::Icmp => t.icmp,
            Class::Icmpv6 => t.icmpv6,
            Class::Generic => t.generic,
            Class::Other => return None,
        })
    }
}

/// One class's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassAges {
    pub entries: u64,
    /// Entries whose age is unknown (see [`Timeouts::age`]).
    pub unknown: u64,
    /// The most seconds left of any entry: the class has drained of
    /// today's entries after that long.
    pub max_left: u32,
    /// Idle age (seconds) -> entries.
    pub by_age: FastMap<u32, u64>,
}

impl ClassAges {
    /// Entries whose age is known and at most `secs`.
    pub fn at_most(&self, secs: u32) -> u64 {
        self.by_age
            .iter()
            .filter(|(a, _)| **a <= secs)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The sink: idle ages by class, with the timeouts they were computed with.
#[derive(Debug, Clone)]
pub struct Ages {
    pub timeouts: Timeouts,
    classes: [ClassAges; SLOTS],
}

impl Ages {
    /// An empty table; ages with `timeouts` (the namespace's own).
    pub fn new(timeouts: Timeouts) -> Ages {
        Ages {
            timeouts,
            classes: Default::default(),
        }
    }

    /// The classes that hold entries, in kernel order (TCP states first).
    pub fn classes(&self) -> impl Iterator<Item = (Class, &ClassAges)> {
        self.classes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.entries > 0)
            .map(|(i, c)| (Class::from_slot(i), c))
    }

    pub fn class(&self, c: Class) -> &ClassAges {
        &self.classes[c.slot()]
    }

    /// Every entry seen.
    pub fn entries(&self) -> u64 {
        self.classes.iter().map(|c| c.entries).sum()
    }
}

impl Sink for Ages {
    fn push(&mut self, e: &Entry) {
        let age = self.timeouts.age(e);
        let c = &mut self.classes[Class::of(e).slot()];
        c.entries += 1;
        c.max_left = c.max_left.max(e.timeout);
        match age {
            Some(a) => *c.by_age.entry(a).or_insert(0) += 1,
            None => c.unknown += 1,
        }
    }

    fn merge(&mut self, other: Self) {
        for (a, b) in self.classes.iter_mut().zip(other.classes) {
            a.entries += b.entries;
            a.unknown += b.unknown;
            a.max_left = a.max_left.max(b.max_left);
            for (age, n) in b.by_age {
                *a.by_age.entry(age).or_insert(0) += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_by_class_from_text() {
        // time_wait 120: 119 left is 1 s old, 105 left is 15 s, 104 is 16 s.
        let text = "\
tcp 6 119 TIME_WAIT src=10.0.0.1 dst=10.9.9.9 sport=1000 dport=443 src=10.9.9.9 dst=10.0.0.1 sport=443 dport=1000 [ASSURED] mark=0 use=1
tcp 6 105 TIME_WAIT src=10.0.0.1 dst=10.9.9.9 sport=1001 dport=443 src=10.9.9.9 dst=10.0.0.1 sport=443 dport=1001 [ASSURED] mark=0 use=1
tcp 6 104 TIME_WAIT src=10.0.0.1 dst=10.9.9.9 sport=1002 dport=443 src=10.9.9.9 dst=10.0.0.1 sport=443 dport=1002 [ASSURED] mark=0 use=1
tcp 6 500 TIME_WAIT src=10.0.0.1 dst=10.9.9.9 sport=1003 dport=443 src=10.9.9.9 dst=10.0.0.1 sport=443 dport=1003 [ASSURED] mark=0 use=1
tcp 6 431000 ESTABLISHED src=10.0.0.2 dst=10.9.9.8 sport=1000 dport=80 src=10.9.9.8 dst=10.0.0.2 sport=80 dport=1000 [ASSURED] mark=0 use=1
udp 17 25 src=10.0.0.4 dst=10.9.9.7 sport=999 dport=53 [UNREPLIED] src=10.9.9.7 dst=10.0.0.4 sport=53 dport=999 mark=0 use=1
udp 17 100 src=10.0.0.4 dst=10.9.9.7 sport=998 dport=53 src=10.9.9.7 dst=10.0.0.4 sport=53 dport=998 [ASSURED] mark=0 use=1
";
        let mut a = Ages::new(Timeouts::default());
        crate::table::text::parse_bytes(text.as_bytes(), &mut a);
        assert_eq!(a.entries(), 7);
        let tw = a.class(Class::Tcp(TcpState::TimeWait));
        assert_eq!((tw.entries, tw.unknown, tw.max_left), (4, 1, 500));
        assert_eq!(tw.at_most(15), 2);
        assert_eq!(tw.at_most(16), 3);
        assert_eq!(a.class(Class::Tcp(TcpState::Established)).at_most(1000), 1);
        assert_eq!(a.class(Class::Udp).at_most(5), 1);
        assert_eq!(a.class(Class::UdpStream).at_most(20), 1);
        let names: Vec<&str> = a.classes().map(|(c, _)| c.name()).collect();
        assert_eq!(names, ["ESTABLISHED", "TIME_WAIT", "UDP", "UDP_STREAM"]);
        assert_eq!(
            Class::Tcp(TcpState::TimeWait).timeout_name(),
            Some("tcp_timeout_time_wait")
        );
        assert_eq!(Class::Other.timeout_name(), None);
        // Merging two halves is the whole.
        let mut b = Ages::new(Timeouts::default());
        let mut c = Ages::new(Timeouts::default());
        let lines: Vec<&str> = text.lines().collect();
        crate::table::text::parse_bytes(lines[..3].join("\n").as_bytes(), &mut b);
        crate::table::text::parse_bytes(lines[3..].join("\n").as_bytes(), &mut c);
        b.merge(c);
        let (tb, ta) = (
            b.class(Class::Tcp(TcpState::TimeWait)),
            a.class(Class::Tcp(TcpState::TimeWait)),
        );
        assert_eq!(
            (tb.entries, tb.unknown, tb.max_left),
            (ta.entries, ta.unknown, ta.max_left)
        );
        assert_eq!(tb.at_most(16), 3);
    }
}
