//! What `ctdoctor notrack` leaves untracked: a [`Selection`] (loopback,
//! server ports, peers, this host's addresses, directions) and the packet
//! classes it stands for ([`Class`]), split into [`Unit`]s of one family
//! and one port range for the conflict scan.
//!
//! Server ports are connection-oriented: `--port 80` means connections *to*
//! this host's port 80, so inbound packets with dport 80 (to a local
//! address), outbound packets with sport 80 (the replies), and local
//! clients' packets to a local port 80. `--src` names the peers (clients),
//! `--dst` this host's addresses, in both directions.
//!
//! Upstream ports are the other leg of a proxy: `--upstream-port 8080`
//! means connections this host opens *to* port 8080 of another host, so
//! sent packets with dport 8080 to an address that is not local, and
//! arriving packets with sport 8080 from an address that is not local, to a
//! local one (the replies). Never loopback (that is `--lo`), never
//! forwarded traffic.
//!
//! Pure. Not for: rendering rules (rules.rs) or judging them (conflicts.rs).

use crate::table::filter::Cidr;
use serde::Serialize;
use std::fmt::Write as _;

/// Which directions to leave untracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Arriving packets only (prerouting).
    In,
    /// Sent packets only (output).
    Out,
    /// Both (the usual choice: one direction alone leaves the other tracked).
    #[default]
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// An inclusive port range (`80` is 80-80).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// `80` or `8000-8100` (also `8000:8100`); 1-65535.
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let s = s.trim();
        let num = |p: &str| -> Result<u16, String> {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("invalid port {p:?} (1-65535)"))
        };
        let (lo, hi) = match s.split_once(['-', ':']) {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(s)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("invalid port range {s:?}: {lo} > {hi}"));
        }
        Ok(PortRange { lo, hi })
    }

    /// Whether every port of `other` is in this range.
    pub fn covers(&self, other: &PortRange) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// A network family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fam {
    V4,
    V6,
}

impl Fam {
    /// nft's name (`ip`, `ip6`).
    pub fn nft(self) -> &'static str {
        match self {
            Fam::V4 => "ip",
            Fam::V6 => "ip6",
        }
    }
}

fn cidrs<S: serde::Serializer>(v: &[Cidr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// What the user asked to leave untracked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// All loopback traffic.
    pub lo: bool,
    /// This host's server ports.
    pub ports: Vec<PortRange>,
    /// Servers' ports this host connects to (the upstream leg of a proxy).
    pub upstream_ports: Vec<PortRange>,
    /// The protocols of `ports` and `upstream_ports` (tcp when none is given).
    pub protos: Vec<Proto>,
    pub dir: Dir,
    /// Peers (clients): only connections with them.
    #[serde(serialize_with = "cidrs")]
    pub src: Vec<Cidr>,
    /// This host's addresses: only connections to them.
    #[serde(serialize_with = "cidrs")]
    pub dst: Vec<Cidr>,
}

/// The role of a class of packets in a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every packet on lo.
    Loopback,
    /// Peers' packets to this host's ports: each connection's first packet.
    Inbound,
    /// This host's replies from those ports.
    Reply,
    /// Local clients' packets to a local port: their connections' first packet.
    LocalClient,
    /// This host's packets to another host's (upstream) port: the first
    /// packet of the connections it opens.
    Upstream,
    /// Those servers' replies, arriving.
    UpstreamReply,
}

/// Where a packet passes: arriving (prerouting, input) or sent (output, postrouting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    In,
    Out,
}

impl Side {
    /// The hooks a packet of this side passes (locally delivered or sent;
    /// the selection never covers forwarded traffic).
    pub fn hooks(self) -> &'static [&'static str] {
        match self {
            Side::In => &["prerouting", "input"],
            Side::Out => &["output", "postrouting"],
        }
    }
}

/// One class of packets the selection untracks, as one rule matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub role: Role,
    pub side: Side,
    /// One family when addresses are given, else both.
    pub family: Option<Fam>,
    /// None: any protocol (loopback; addresses without ports).
    pub proto: Option<Proto>,
    /// The ports this class matches, on the side [`Class::port_is_dport`] says.
    pub ports: Vec<PortRange>,
    pub saddr: Vec<Cidr>,
    pub daddr: Vec<Cidr>,
}

impl Class {
    /// Whether `ports` are destination ports (inbound, local clients) or
    /// source ports (replies).
    pub fn port_is_dport(&self) -> bool {
        !matches!(self.role, Role::Reply | Role::UpstreamReply)
    }

    /// Whether the destination is an address of this host: Some(true) it
    /// is, Some(false) it is not (the rules say so), None either.
    pub fn daddr_local(&self) -> Option<bool> {
        match self.role {
            Role::Loopback | Role::Inbound | Role::LocalClient | Role::UpstreamReply => Some(true),
            Role::Upstream => Some(false),
            Role::Reply => None,
        }
    }

    /// Whether the source is an address of this host, as [`Class::daddr_local`].
    pub fn saddr_local(&self) -> Option<bool> {
        match self.role {
            Role::Loopback | Role::Reply | Role::LocalClient | Role::Upstream => Some(true),
            Role::UpstreamReply => Some(false),
            Role::Inbound => None,
        }
    }

    /// Whether this class carries the first packet of its connections (what
    /// NAT rules are consulted for).
    pub fn is_first_packet(&self) -> bool {
        match self.role {
            Role::Loopback => self.side == Side::Out,
            Role::Inbound | Role::LocalClient | Role::Upstream => true,
            Role::Reply | Role::UpstreamReply => false,
        }
    }

    /// In words, for conflicts and headers.
    pub fn describe(&self) -> String {
        let ports = if self.ports.is_empty() {
            String::new()
        } else {
            let p: Vec<String> = self.ports.iter().map(ToString::to_string).collect();
            format!(
                " {} port {}",
                self.proto.map(Proto::as_str).unwrap_or("any"),
                p.join(",")
            )
        };
        let mut s = match (self.role, self.side) {
            (Role::Loopback, Side::In) => "loopback packets arriving".to_string(),
            (Role::Loopback, Side::Out) => "loopback packets sent".to_string(),
            (Role::Inbound, _) if ports.is_empty() => "packets to this host".to_string(),
            (Role::Inbound, _) => format!("packets to{ports} of this host"),
            (Role::Reply, _) if ports.is_empty() => "packets from this host".to_string(),
            (Role::Reply, _) => format!("replies from{ports} of this host"),
            (Role::LocalClient, _) => format!("local clients' packets to{ports}"),
            (Role::Upstream, _) => format!("this host's packets to{ports} of other hosts"),
            (Role::UpstreamReply, _) => format!("other hosts' replies from{ports} to this host"),
        };
        let list = |v: &[Cidr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        if !self.saddr.is_empty() {
            let _ = write!(s, ", from {}", list(&self.saddr));
        }
        if !self.daddr.is_empty() {
            let _ = write!(s, ", to {}", list(&self.daddr));
        }
        s
    }

    /// This class split into units of one family and one port range.
    pub fn units(&self, families: &[Fam]) -> Vec<Unit> {
        let fams: Vec<Fam> = match self.family {
            Some(f) => families.iter().copied().filter(|x| *x == f).collect(),
            None => families.to_vec(),
        };
        let ports: Vec<Option<PortRange>> = if self.ports.is_empty() {
            vec![None]
        } else {
            self.ports.iter().copied().map(Some).collect()
        };
        let mut out = Vec::new();
        for family in fams {
            for port in &ports {
                let fam_only = |v: &[Cidr]| -> Vec<Cidr> {
                    v.iter()
                        .copied()
                        .filter(|c| c.is_v4() == (family == Fam::V4))
                        .collect()
                };
                out.push(Unit {
                    class: self.clone(),
                    family,
                    dport: port.filter(|_| self.port_is_dport()),
                    sport: port.filter(|_| !self.port_is_dport()),
                    saddr: fam_only(&self.saddr),
                    daddr: fam_only(&self.daddr),
                });
            }
        }
        out
    }
}

/// One family and at most one port range of a [`Class`]: what a chain is
/// evaluated for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub class: Class,
    pub family: Fam,
    pub dport: Option<PortRange>,
    pub sport: Option<PortRange>,
    /// Empty: any.
    pub saddr: Vec<Cidr>,
    pub daddr: Vec<Cidr>,
}

impl Unit {
    pub fn iif(&self) -> Option<&'static str> {
        (self.class.role == Role::Loopback && self.class.side == Side::In).then_some("lo")
    }
    /// Loopback packets sent, and local clients' packets to a local
    /// address (routed through lo).
    pub fn oif(&self) -> Option<&'static str> {
        match (self.class.role, self.class.side) {
            (Role::Loopback, Side::Out) | (Role::LocalClient, _) => Some("lo"),
            _ => None,
        }
    }
}

fn family_of(c: &Cidr) -> Fam {
    if c.is_v4() {
        Fam::V4
    } else {
        Fam::V6
    }
}

impl Selection {
    /// Whether anything is selected and the parts fit together.
    pub fn validate(&self) -> Result<(), String> {
        if !self.lo
            && self.ports.is_empty()
            && self.upstream_ports.is_empty()
            && self.src.is_empty()
            && self.dst.is_empty()
        {
            return Err(
                "nothing selected: give --lo, --port, --upstream-port, --src or --dst (see ctdoctor notrack --help)"
                    .into(),
            );
        }
        if !self.upstream_ports.is_empty()
            && self.ports.is_empty()
            && !(self.src.is_empty() && self.dst.is_empty())
        {
            return Err(
                "--src and --dst narrow --port (they name clients and this host's addresses), not --upstream-port: \
                 give --port too, or drop them"
                    .into(),
            );
        }
        if !self.ports.is_empty() || !self.src.is_empty() || !self.dst.is_empty() {
            let src: Vec<Fam> = self.src.iter().map(family_of).collect();
            let dst: Vec<Fam> = self.dst.iter().map(family_of).collect();
            if !src.is_empty() && !dst.is_empty() && !src.iter().any(|f| dst.contains(f)) {
                return Err(format!(
                    "--src {} and --dst {} are of different families: no packet is both",
                    list(&self.src),
                    list(&self.dst)
                ));
            }
        }
        Ok(())
    }

    fn protos(&self) -> Vec<Proto> {
        if self.protos.is_empty() {
            vec![Proto::Tcp]
        } else {
            let mut p = self.protos.clone();
            p.sort();
            p.dedup();
            p
        }
    }

    /// The families of the address part: those of the prefixes given (both
    /// sides must allow it), or None (both).
    fn flow_families(&self) -> Vec<Option<Fam>> {
        let fams = |v: &[Cidr]| -> Vec<Fam> {
            let mut f: Vec<Fam> = v.iter().map(family_of).collect();
            f.sort();
            f.dedup();
            f
        };
        match (fams(&self.src), fams(&self.dst)) {
            (s, d) if s.is_empty() && d.is_empty() => vec![None],
            (s, d) if s.is_empty() => d.into_iter().map(Some).collect(),
            (s, d) if d.is_empty() => s.into_iter().map(Some).collect(),
            (s, d) => s.into_iter().filter(|f| d.contains(f)).map(Some).collect(),
        }
    }

    /// Every class the selection untracks, in the directions asked
    /// (`all_dirs`: both, whatever `--dir` says — for the NAT scan: a
    /// connection whose replies go untracked loses its NAT too).
    pub fn classes(&self, all_dirs: bool) -> Vec<Class> {
        let dir = if all_dirs { Dir::Both } else { self.dir };
        let want = |side: Side| match dir {
            Dir::Both => true,
            Dir::In => side == Side::In,
            Dir::Out => side == Side::Out,
        };
        let mut out = Vec::new();
        if self.lo {
            for side in [Side::In, Side::Out] {
                if want(side) {
                    out.push(Class {
                        role: Role::Loopback,
                        side,
                        family: None,
                        proto: None,
                        ports: Vec::new(),
                        saddr: Vec::new(),
                        daddr: Vec::new(),
                    });
                }
            }
        }
        // The upstream leg: any address that is not local, both families.
        for proto in self.protos() {
            if self.upstream_ports.is_empty() {
                break;
            }
            for (role, side) in [(Role::Upstream, Side::Out), (Role::UpstreamReply, Side::In)] {
                if want(side) {
                    out.push(Class {
                        role,
                        side,
                        family: None,
                        proto: Some(proto),
                        ports: self.upstream_ports.clone(),
                        saddr: Vec::new(),
                        daddr: Vec::new(),
                    });
                }
            }
        }
        if self.ports.is_empty() && self.src.is_empty() && self.dst.is_empty() {
            return out;
        }
        let protos: Vec<Option<Proto>> = if self.ports.is_empty() {
            vec![None]
        } else {
            self.protos().into_iter().map(Some).collect()
        };
        for family in self.flow_families() {
            let only = |v: &[Cidr]| -> Vec<Cidr> {
                v.iter()
                    .copied()
                    .filter(|c| family.is_none_or(|f| family_of(c) == f))
                    .collect()
            };
            let (peers, ours) = (only(&self.src), only(&self.dst));
            for proto in &protos {
                let class = |role: Role, side: Side, saddr: &[Cidr], daddr: &[Cidr]| Class {
                    role,
                    side,
                    family,
                    proto: *proto,
                    ports: self.ports.clone(),
                    saddr: saddr.to_vec(),
                    daddr: daddr.to_vec(),
                };
                if want(Side::In) {
                    out.push(class(Role::Inbound, Side::In, &peers, &ours));
                }
                if want(Side::Out) {
                    out.push(class(Role::Reply, Side::Out, &ours, &peers));
                    if !self.ports.is_empty() {
                        out.push(class(Role::LocalClient, Side::Out, &peers, &ours));
                    }
                }
            }
        }
        out
    }

    /// The flags that make this selection (`--lo --port 80,443`), for headers.
    pub fn flags(&self) -> String {
        let mut v = Vec::new();
        if self.lo {
            v.push("--lo".to_string());
        }
        if !self.ports.is_empty() {
            let p: Vec<String> = self.ports.iter().map(ToString::to_string).collect();
            v.push(format!("--port {}", p.join(",")));
            let protos = self.protos();
            if protos != [Proto::Tcp] {
                let p: Vec<&str> = protos.iter().map(|p| p.as_str()).collect();
                v.push(format!("--proto {}", p.join(",")));
            }
        }
        if !self.upstream_ports.is_empty() {
            let p: Vec<String> = self
                .upstream_ports
                .iter()
                .map(ToString::to_string)
                .collect();
            v.push(format!("--upstream-port {}", p.join(",")));
            let protos = self.protos();
            if self.ports.is_empty() && protos != [Proto::Tcp] {
                let p: Vec<&str> = protos.iter().map(|p| p.as_str()).collect();
                v.push(format!("--proto {}", p.join(",")));
            }
        }
        if self.dir != Dir::Both {
            v.push(format!(
                "--dir {}",
                if self.dir == Dir::In { "in" } else { "out" }
            ));
        }
        if !self.src.is_empty() {
            v.push(format!("--src {}", list(&self.src)));
        }
        if !self.dst.is_empty() {
            v.push(format!("--dst {}", list(&self.dst)));
        }
        v.join(" ")
    }

    /// In words: `loopback; tcp port 80,443 of this host`.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if self.lo {
            v.push("all loopback traffic".to_string());
        }
        if !self.ports.is_empty() || !self.src.is_empty() || !self.dst.is_empty() {
            let mut s = String::from("connections to this host");
            if !self.ports.is_empty() {
                let p: Vec<String> = self.ports.iter().map(ToString::to_string).collect();
                let protos: Vec<&str> = self.protos().iter().map(|p| p.as_str()).collect();
                let _ = write!(s, "'s {} port {}", protos.join("/"), p.join(","));
            }
            if !self.dst.is_empty() {
                let _ = write!(s, " at {}", list(&self.dst));
            }
            if !self.src.is_empty() {
                let _ = write!(s, " from {}", list(&self.src));
            }
            v.push(s);
        }
        if !self.upstream_ports.is_empty() {
            let p: Vec<String> = self
                .upstream_ports
                .iter()
                .map(ToString::to_string)
                .collect();
            let protos: Vec<&str> = self.protos().iter().map(|p| p.as_str()).collect();
            v.push(format!(
                "connections from this host to other hosts' {} port {}",
                protos.join("/"),
                p.join(",")
            ));
        }
        let mut d = v.join("; ");
        match self.dir {
            Dir::Both => {}
            Dir::In => d.push_str(" (arriving packets only)"),
            Dir::Out => d.push_str(" (sent packets only)"),
        }
        d
    }
}

fn list(v: &[Cidr]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn ports_parse() {
        assert_eq!(
            PortRange::parse("80").unwrap(),
            PortRange { lo: 80, hi: 80 }
        );
        assert_eq!(
            PortRange::parse("8000-8100").unwrap(),
            PortRange { lo: 8000, hi: 8100 }
        );
        assert_eq!(PortRange::parse("1:2").unwrap(), PortRange { lo: 1, hi: 2 });
        for bad in ["0", "65536", "x", "90-80", ""] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
        let r = PortRange::parse("8000-8100").unwrap();
        assert!(r.covers(&PortRange::parse("8050").unwrap()));
        assert!(!r.covers(&PortRange::parse("7999-8000").unwrap()));
        assert!(r.overlaps(&PortRange::parse("7999-8000").unwrap()));
    }

    #[test]
    fn lo_and_ports_make_classes_per_role_and_direction() {
        let s = Selection {
            lo: true,
            ports: vec![PortRange::parse("80").unwrap()],
            ..Selection::default()
        };
        let roles: Vec<(Role, Side)> = s.classes(false).iter().map(|c| (c.role, c.side)).collect();
        assert_eq!(
            roles,
            vec![
                (Role::Loopback, Side::In),
                (Role::Loopback, Side::Out),
                (Role::Inbound, Side::In),
                (Role::Reply, Side::Out),
                (Role::LocalClient, Side::Out),
            ]
        );
        let s = Selection { dir: Dir::In, ..s };
        assert_eq!(s.classes(false).len(), 2);
        assert_eq!(s.classes(true).len(), 5, "NAT is judged for both");
        assert_eq!(s.flags(), "--lo --port 80 --dir in");
    }

    #[test]
    fn peers_and_local_addresses_swap_on_replies() {
        let s = Selection {
            ports: vec![PortRange::parse("443").unwrap()],
            src: vec![cidr("10.0.0.0/8"), cidr("2001:db8::/32")],
            dst: vec![cidr("192.0.2.10")],
            ..Selection::default()
        };
        assert!(s.validate().is_ok());
        let c = s.classes(false);
        // Only IPv4: --dst has no IPv6 prefix.
        assert!(c.iter().all(|c| c.family == Some(Fam::V4)));
        let reply = c.iter().find(|c| c.role == Role::Reply).unwrap();
        assert_eq!(reply.saddr, vec![cidr("192.0.2.10")]);
        assert_eq!(reply.daddr, vec![cidr("10.0.0.0/8")]);
        assert_eq!(
            reply.describe(),
            "replies from tcp port 443 of this host, from 192.0.2.10, to 10.0.0.0/8"
        );
        let bad = Selection {
            src: vec![cidr("10.0.0.0/8")],
            dst: vec![cidr("2001:db8::1")],
            ..Selection::default()
        };
        assert!(bad.validate().unwrap_err().contains("different families"));
        assert!(Selection::default().validate().is_err());
    }

    #[test]
    fn upstream_ports_are_the_connections_this_host_opens() {
        let s = Selection {
            upstream_ports: vec![PortRange::parse("8080").unwrap()],
            ..Selection::default()
        };
        assert!(s.validate().is_ok());
        let c = s.classes(false);
        let roles: Vec<(Role, Side)> = c.iter().map(|c| (c.role, c.side)).collect();
        assert_eq!(
            roles,
            vec![(Role::Upstream, Side::Out), (Role::UpstreamReply, Side::In)]
        );
        assert!(c[0].is_first_packet() && !c[1].is_first_packet());
        assert_eq!(c[0].daddr_local(), Some(false));
        assert_eq!(c[1].saddr_local(), Some(false));
        let u = c[1].units(&[Fam::V4]);
        assert_eq!(
            (u[0].dport, u[0].sport),
            (None, Some(PortRange { lo: 8080, hi: 8080 }))
        );
        assert_eq!(s.flags(), "--upstream-port 8080");
        assert_eq!(
            s.describe(),
            "connections from this host to other hosts' tcp port 8080"
        );
        assert_eq!(
            c[1].describe(),
            "other hosts' replies from tcp port 8080 to this host"
        );
        let out = Selection {
            dir: Dir::Out,
            ..s.clone()
        };
        assert_eq!(out.classes(false).len(), 1);
        // --src/--dst name clients and local addresses: not for the upstream leg.
        let bad = Selection {
            src: vec![cidr("10.0.0.0/8")],
            ..s.clone()
        };
        assert!(bad.validate().unwrap_err().contains("--upstream-port"));
        let both = Selection {
            ports: vec![PortRange::parse("80").unwrap()],
            ..s
        };
        assert_eq!(both.flags(), "--port 80 --upstream-port 8080");
        assert_eq!(both.classes(false).len(), 5);
    }

    #[test]
    fn units_split_families_and_ports() {
        let s = Selection {
            ports: vec![
                PortRange::parse("80").unwrap(),
                PortRange::parse("8000-8100").unwrap(),
            ],
            protos: vec![Proto::Udp, Proto::Tcp],
            ..Selection::default()
        };
        let c = &s.classes(false)[0];
        assert_eq!(c.proto, Some(Proto::Tcp));
        let u = c.units(&[Fam::V4, Fam::V6]);
        assert_eq!(u.len(), 4);
        assert_eq!(u[1].dport, Some(PortRange { lo: 8000, hi: 8100 }));
        assert_eq!(u[1].sport, None);
        assert_eq!(c.units(&[Fam::V6]).len(), 2);
    }
}
