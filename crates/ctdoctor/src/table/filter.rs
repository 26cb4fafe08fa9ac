//! Which entries count: [`Filter`] (protocol, TCP states, source and
//! destination prefixes, port) and the address prefixes it matches
//! ([`Cidr`]). The one parser of the filter's values ([`Filter::set`]):
//! `summary --proto/--state/--src/--dst/--port` and `top`'s
//! `proto=tcp state=ESTABLISHED …` line ([`Filter::parse`]) both use it.
//!
//! Not for: counting (that is `agg`).

use super::entry::{self, Addr, Entry, TcpState};

/// An address prefix (`10.0.0.0/8`, `2001:db8::/32`, or one address).
/// IPv4 prefixes match only IPv4 entries and IPv6 prefixes only IPv6
/// entries, although both are kept as one `u128` (IPv4 as IPv4-mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: u128,
    mask: u128,
    /// The prefix lies inside ::ffff:0:0/96 (an IPv4 prefix).
    v4: bool,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: std::net::IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid address {a:?} in {s:?}"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: u32 = match len {
            Some(l) => l
                .trim()
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("invalid prefix length in {s:?}"))?,
            None => max,
        };
        let bits = len + (128 - max);
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        let addr = Addr::from_ip(ip).0 & mask;
        Ok(Cidr {
            addr,
            mask,
            v4: bits >= 96 && Addr(addr).is_v4(),
        })
    }
    #[inline]
    pub fn contains(&self, a: Addr) -> bool {
        a.0 & self.mask == self.addr && a.is_v4() == self.v4
    }

    /// Whether this is an IPv4 prefix.
    pub fn is_v4(&self) -> bool {
        self.v4
    }

    /// The prefix length in its own family (`/8`, `/32`, `/128`).
    pub fn prefix_len(&self) -> u32 {
        let bits = self.mask.count_ones();
        if self.v4 {
            bits.saturating_sub(96)
        } else {
            bits
        }
    }

    /// Whether every address of `other` is in this prefix.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.v4 == other.v4
            && self.mask & other.mask == self.mask
            && other.addr & self.mask == self.addr
    }

    /// Whether the two prefixes share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }
}

impl std::fmt::Display for Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`; a single address without its length.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let full = if self.v4 { 32 } else { 128 };
        if self.v4 {
            write!(f, "{}", std::net::Ipv4Addr::from(self.addr as u32))?;
        } else {
            write!(f, "{}", std::net::Ipv6Addr::from(self.addr))?;
        }
        if self.prefix_len() != full {
            write!(f, "/{}", self.prefix_len())?;
        }
        Ok(())
    }
}

/// Which entries count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    pub proto: Option<u8>,
    /// Bit per [`TcpState`] number; 0 = any. Set: only TCP entries in them.
    pub states: u16,
    pub src: Option<Cidr>,
    pub dst: Option<Cidr>,
    /// Original-direction source or destination port.
    pub port: Option<u16>,
}

impl Filter {
    #[inline]
    pub fn matches(&self, e: &Entry) -> bool {
        if let Some(p) = self.proto {
            if e.l4 != p {
                return false;
            }
        }
        if self.states != 0 && (!e.is_tcp() || self.states & (1 << e.state as u16) == 0) {
            return false;
        }
        if let Some(c) = &self.src {
            if !c.contains(e.src) {
                return false;
            }
        }
        if let Some(c) = &self.dst {
            if !c.contains(e.dst) {
                return false;
            }
        }
        if let Some(p) = self.port {
            if !e.has_ports() || (e.sport != p && e.dport != p) {
                return false;
            }
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Set one criterion from its text: `proto` (name or number), `state`
    /// (TCP state names, comma-separated; added to those already set),
    /// `src` / `dst` (an address or prefix), `port`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "proto" => {
                self.proto = Some(entry::l4_from_name(value).ok_or_else(|| {
                    format!("unknown protocol {value:?} (try tcp, udp, icmp or a number)")
                })?)
            }
            "state" => {
                for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let st = TcpState::from_name(name.as_bytes()).ok_or_else(|| {
                        let all: Vec<&str> = TcpState::ALL.iter().map(|s| s.as_str()).collect();
                        format!("unknown TCP state {name:?} (known: {})", all.join(", "))
                    })?;
                    self.states |= 1 << st as u16;
                }
            }
            "src" => self.src = Some(Cidr::parse(value)?),
            "dst" => self.dst = Some(Cidr::parse(value)?),
            "port" => {
                self.port = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad port {value:?} (0 to 65535)"))?,
                )
            }
            _ => {
                return Err(format!(
                    "unknown filter key {key:?} (proto, state, src, dst, port)"
                ))
            }
        }
        Ok(())
    }

    /// Parse `proto=tcp state=ESTABLISHED,TIME_WAIT src=10.0.0.0/8 dst=… port=443`
    /// (`top`'s filter line; empty: no filter).
    pub fn parse(s: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        for part in s.split_whitespace() {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("expected KEY=VALUE, got {part:?}"))?;
            f.set(k, v)?;
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse() {
        let f =
            Filter::parse("proto=tcp state=ESTABLISHED,time_wait src=10.0.0.0/8 port=443").unwrap();
        assert_eq!(f.proto, Some(6));
        assert_eq!(f.states, 1 << 3 | 1 << 7);
        assert_eq!(f.port, Some(443));
        assert!(f
            .src
            .unwrap()
            .contains(Addr::from(std::net::Ipv4Addr::new(10, 1, 2, 3))));
        assert_eq!(Filter::parse("").unwrap(), Filter::default());
        let err = |s: &str| Filter::parse(s).unwrap_err();
        assert_eq!(
            err("bogus=1"),
            "unknown filter key \"bogus\" (proto, state, src, dst, port)"
        );
        assert_eq!(err("port=x"), "bad port \"x\" (0 to 65535)");
        assert_eq!(err("port=65536"), "bad port \"65536\" (0 to 65535)");
        assert_eq!(
            err("proto=nope"),
            "unknown protocol \"nope\" (try tcp, udp, icmp or a number)"
        );
        assert!(err("state=OPEN").starts_with("unknown TCP state \"OPEN\" (known: NONE, SYN_SENT"));
        assert!(err("src=10.0.0.0/33").contains("invalid prefix length"));
        assert_eq!(err("port"), "expected KEY=VALUE, got \"port\"");
        // The flags' form: one value at a time, the same texts.
        let mut f = Filter::default();
        f.set("state", " ESTABLISHED , ").unwrap();
        f.set("state", "SYN_SENT").unwrap();
        assert_eq!(f.states, 1 << 3 | 1 << 1);
        assert_eq!(f.set("port", "x").unwrap_err(), err("port=x"));
    }

    #[test]
    fn prefixes_cover_overlap_and_print() {
        let p = |s: &str| Cidr::parse(s).unwrap();
        assert!(p("10.0.0.0/8").covers(&p("10.1.0.0/16")));
        assert!(!p("10.1.0.0/16").covers(&p("10.0.0.0/8")));
        assert!(p("10.1.0.0/16").overlaps(&p("10.0.0.0/8")));
        assert!(!p("10.0.0.0/8").overlaps(&p("192.168.0.0/16")));
        assert!(!p("::/0").covers(&p("10.0.0.1")), "families never mix");
        assert!(p("0.0.0.0/0").covers(&p("10.0.0.1")));
        assert_eq!(p("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(p("10.0.0.1").to_string(), "10.0.0.1");
        assert_eq!(p("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(p("10.0.0.0/8").prefix_len(), 8);
    }

    #[test]
    fn ipv6_prefixes_never_match_ipv4_entries() {
        // IPv4 addresses are kept as ::ffff:a.b.c.d, which every IPv6
        // prefix shorter than /81 starting with zeros would cover.
        let v4 = Addr::from(std::net::Ipv4Addr::new(10, 0, 0, 1));
        let v6 = Addr::from_ip("2001:db8::1".parse().unwrap());
        let low6 = Addr::from_ip("::5".parse().unwrap());
        let all6 = Cidr::parse("::/0").unwrap();
        assert!(all6.contains(v6) && all6.contains(low6));
        assert!(!all6.contains(v4), "::/0 matched an IPv4 entry");
        assert!(!Cidr::parse("::/1").unwrap().contains(v4));
        assert!(!Cidr::parse("::/80").unwrap().contains(v4));
        // /0 and /32 on the IPv4 side, /128 on the IPv6 side.
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(v4) && !all4.contains(v6) && !all4.contains(low6));
        assert!(Cidr::parse("10.0.0.1/32").unwrap().contains(v4));
        assert!(!Cidr::parse("10.0.0.2/32").unwrap().contains(v4));
        assert!(Cidr::parse("2001:db8::1/128").unwrap().contains(v6));
        assert!(!Cidr::parse("2001:db8::2/128").unwrap().contains(v6));
        // An IPv4-mapped prefix written in IPv6 notation is an IPv4 prefix.
        assert!(Cidr::parse("::ffff:10.0.0.0/104").unwrap().contains(v4));
    }
}
