//! Walking a chain for one [`Unit`] of packets: which rules could match
//! it (none, part, all of it), where it ends (accept, drop, policy), and
//! which NAT and conntrack-metadata rules it passes on the way — for a
//! packet that is new, established, or untracked ([`Mode`]).
//!
//! Conservative where the model cannot tell: an unknown match may match
//! ([`Cover::Part`]), an unknown verdict may drop. Jumps and gotos are
//! followed (depth-limited, loops cut).
//!
//! Pure. Not for: deciding what is a conflict (conflicts.rs).

use super::select::{Fam, PortRange, Unit};
use crate::host::ruleset::{iface_matches, Chain, Field, Match, Policy, Rule, Ruleset, Verdict};
use crate::table::filter::Cidr;

/// The conntrack state a walk assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A connection's first packet, tracked.
    New,
    /// A later packet of a tracked connection.
    Established,
    /// A packet our rules left untracked.
    Untracked,
}

impl Mode {
    fn state(self) -> &'static str {
        match self {
            Mode::New => "new",
            Mode::Established => "established",
            Mode::Untracked => "untracked",
        }
    }
}

/// How much of a unit a rule (or one of its matches) matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cover {
    None,
    Part,
    All,
}

impl Cover {
    fn of(hit: bool) -> Cover {
        if hit {
            Cover::All
        } else {
            Cover::None
        }
    }
    fn negate(self, neg: bool) -> Cover {
        match (self, neg) {
            (c, false) => c,
            (Cover::All, true) => Cover::None,
            (Cover::None, true) => Cover::All,
            (Cover::Part, true) => Cover::Part,
        }
    }
}

/// Where a walk of a base chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End<'a> {
    /// Accepted by this rule, or by the policy (None).
    Accept(Option<&'a Rule>),
    /// Dropped or rejected by this rule, or by the policy (None).
    Drop(Option<&'a Rule>),
    /// Handed to something this model does not follow (a queue, a verdict map).
    Unknown(&'a Rule),
}

/// What a walk saw.
#[derive(Debug, Clone, Default)]
pub struct Trace<'a> {
    /// NAT rules that could match, in order.
    pub nat: Vec<&'a Rule>,
    /// Rules that read or set a conntrack mark, label or helper and could match.
    pub ct_meta: Vec<&'a Rule>,
    /// Rules that may drop part of the unit (a match the unit only partly meets).
    pub maybe_drop: Vec<&'a Rule>,
}

/// One walk's result.
#[derive(Debug, Clone)]
pub struct Walk<'a> {
    pub end: End<'a>,
    /// Index in the base chain of the rule the walk ended at (for an end
    /// inside a jumped-to chain: the jump); the chain's length at the policy.
    pub at: usize,
    pub trace: Trace<'a>,
}

impl Walk<'_> {
    /// Accepted, with no rule on the way that may have dropped part of it.
    pub fn all_accepted(&self) -> bool {
        matches!(self.end, End::Accept(_)) && self.trace.maybe_drop.is_empty()
    }
}

fn family_of_rule(r: &Rule) -> Option<Fam> {
    match r.family.as_str() {
        "ip" => Some(Fam::V4),
        "ip6" => Some(Fam::V6),
        _ => None,
    }
}

/// Whether a chain's rules can see packets of `fam` (inet sees both).
pub fn family_applies(family: &str, fam: Fam) -> bool {
    match family {
        "inet" => true,
        "ip" => fam == Fam::V4,
        "ip6" => fam == Fam::V6,
        _ => false,
    }
}

fn ports(values: &[String]) -> Option<Vec<PortRange>> {
    values.iter().map(|v| PortRange::parse(v).ok()).collect()
}

fn port_cover(values: &[String], unit: Option<PortRange>) -> Cover {
    let (Some(u), Some(set)) = (unit, ports(values)) else {
        return Cover::Part;
    };
    if set.iter().any(|r| r.covers(&u)) {
        Cover::All
    } else if set.iter().any(|r| r.overlaps(&u)) {
        Cover::Part
    } else {
        Cover::None
    }
}

fn addr_cover(values: &[String], fam: Fam, unit: &[Cidr]) -> Cover {
    let Some(set): Option<Vec<Cidr>> = values.iter().map(|v| Cidr::parse(v).ok()).collect() else {
        return Cover::Part;
    };
    let set: Vec<Cidr> = set
        .into_iter()
        .filter(|c| c.is_v4() == (fam == Fam::V4))
        .collect();
    if set.is_empty() {
        // Only the other family's prefixes: no packet of ours matches.
        return Cover::None;
    }
    if unit.is_empty() {
        return if set.iter().any(|c| c.prefix_len() == 0) {
            Cover::All
        } else {
            Cover::Part
        };
    }
    if unit.iter().all(|u| set.iter().any(|c| c.covers(u))) {
        Cover::All
    } else if unit.iter().any(|u| set.iter().any(|c| c.overlaps(u))) {
        Cover::Part
    } else {
        Cover::None
    }
}

fn proto_names(v: &str) -> &str {
    match v {
        "6" => "tcp",
        "17" => "udp",
        other => other,
    }
}

/// How much of `u` one match matches, in `mode`.
pub fn match_cover(m: &Match, u: &Unit, mode: Mode) -> Cover {
    let c = match &m.field {
        Field::Iif | Field::Oif => {
            let name = if m.field == Field::Iif {
                u.iif()
            } else {
                u.oif()
            };
            match name {
                Some(n) => Cover::of(m.values.iter().any(|v| iface_matches(v, n))),
                None => Cover::Part,
            }
        }
        Field::L4proto => match u.class.proto {
            Some(p) => Cover::of(m.values.iter().any(|v| proto_names(v) == p.as_str())),
            None => Cover::Part,
        },
        Field::Nfproto => {
            let want = match u.family {
                Fam::V4 => ["ip", "ipv4"],
                Fam::V6 => ["ip6", "ipv6"],
            };
            Cover::of(m.values.iter().any(|v| want.contains(&v.as_str())))
        }
        Field::Dport => port_cover(&m.values, u.dport),
        Field::Sport => port_cover(&m.values, u.sport),
        Field::Saddr => addr_cover(&m.values, u.family, &u.saddr),
        Field::Daddr => addr_cover(&m.values, u.family, &u.daddr),
        Field::DaddrType | Field::SaddrType => {
            let local = if m.field == Field::DaddrType {
                u.class.daddr_local()
            } else {
                u.class.saddr_local()
            };
            let says_local = m.values.iter().any(|v| v == "local");
            match local {
                Some(true) => Cover::of(says_local),
                // Not local: a match on `local` alone fails; one on other
                // types (unicast, …) may or may not hold.
                Some(false) if says_local && m.values.len() == 1 => Cover::None,
                _ => Cover::Part,
            }
        }
        Field::CtState => Cover::of(m.values.iter().any(|v| v == mode.state())),
        Field::Ct(k) if k.starts_with("xt ") => Cover::Part,
        // No conntrack entry: any other ct key fails, negated or not.
        Field::Ct(_) if mode == Mode::Untracked => return Cover::None,
        Field::Ct(_) | Field::Other(_) => Cover::Part,
    };
    c.negate(m.neg)
}

/// How much of `u` a rule matches: the least of its matches.
pub fn rule_cover(r: &Rule, u: &Unit, mode: Mode) -> Cover {
    if family_of_rule(r).is_some_and(|f| f != u.family) {
        return Cover::None;
    }
    let mut c = Cover::All;
    for m in &r.matches {
        c = c.min(match_cover(m, u, mode));
        if c == Cover::None {
            break;
        }
    }
    c
}

/// Whether a rule reads or sets conntrack metadata an untracked packet
/// does not have (mark, label, helper).
pub fn uses_ct_meta(r: &Rule) -> bool {
    r.ct_set.iter().any(|k| k != "zone")
        || r.ct_reads()
            .any(|k| matches!(k, "mark" | "label" | "helper" | "labels"))
}

enum Flow<'a> {
    Done(End<'a>),
    /// Fell off the end or returned.
    Back,
}

const MAX_DEPTH: usize = 16;

struct Walker<'a, 'u> {
    rs: &'a Ruleset,
    unit: &'u Unit,
    mode: Mode,
    trace: Trace<'a>,
    stack: Vec<&'a str>,
}

impl<'a> Walker<'a, '_> {
    fn chain(&mut self, c: &'a Chain, from: usize, partial: bool) -> (Flow<'a>, usize) {
        let rules: Vec<&'a Rule> = self.rs.rules_of(c).collect();
        if self.stack.len() >= MAX_DEPTH || self.stack.contains(&c.name.as_str()) {
            return (Flow::Back, rules.len());
        }
        self.stack.push(&c.name);
        let out = self.rules(c, &rules, from, partial);
        self.stack.pop();
        out
    }

    fn rules(
        &mut self,
        c: &'a Chain,
        rules: &[&'a Rule],
        from: usize,
        partial: bool,
    ) -> (Flow<'a>, usize) {
        for (i, r) in rules.iter().enumerate().skip(from) {
            let cov = rule_cover(r, self.unit, self.mode);
            if cov == Cover::None {
                continue;
            }
            if r.nat.is_some() {
                self.trace.nat.push(r);
            }
            if uses_ct_meta(r) {
                self.trace.ct_meta.push(r);
            }
            let all = cov == Cover::All && !partial;
            match &r.verdict {
                Verdict::Continue => {}
                Verdict::Accept if all => return (Flow::Done(End::Accept(Some(r))), i),
                Verdict::Drop | Verdict::Reject if all => {
                    return (Flow::Done(End::Drop(Some(r))), i)
                }
                Verdict::Drop | Verdict::Reject => self.trace.maybe_drop.push(r),
                Verdict::Accept => {}
                Verdict::Return if all => return (Flow::Back, i),
                Verdict::Return => {}
                Verdict::Jump(t) | Verdict::Goto(t) => {
                    let goto = matches!(r.verdict, Verdict::Goto(_));
                    let Some(target) = self.rs.chain(&c.family, &c.table, t) else {
                        continue;
                    };
                    match self.chain(target, 0, !all) {
                        (Flow::Done(e), _) if all => return (Flow::Done(e), i),
                        (Flow::Back, _) if all && goto => return (Flow::Back, i),
                        _ => {}
                    }
                }
                Verdict::Queue | Verdict::Other(_) if all => {
                    return (Flow::Done(End::Unknown(r)), i)
                }
                Verdict::Queue | Verdict::Other(_) => self.trace.maybe_drop.push(r),
            }
        }
        (Flow::Back, rules.len())
    }
}

/// Walk base chain `c` of `rs` for `unit` in `mode`, from rule index `from`.
pub fn walk<'a>(rs: &'a Ruleset, c: &'a Chain, unit: &Unit, mode: Mode, from: usize) -> Walk<'a> {
    let mut w = Walker {
        rs,
        unit,
        mode,
        trace: Trace::default(),
        stack: Vec::new(),
    };
    let (flow, at) = w.chain(c, from, false);
    let end = match flow {
        Flow::Done(e) => e,
        Flow::Back => match c.base.as_ref().map(|b| b.policy) {
            Some(Policy::Drop) => End::Drop(None),
            _ => End::Accept(None),
        },
    };
    Walk {
        end,
        at,
        trace: w.trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ruleset::parse_nft_text;
    use crate::notrack::select::{Role, Selection};

    fn units(sel: &Selection, role: Role) -> Vec<Unit> {
        sel.classes(false)
            .into_iter()
            .filter(|c| c.role == role)
            .flat_map(|c| c.units(&[Fam::V4]))
            .collect()
    }

    fn port(p: &str) -> Selection {
        Selection {
            ports: vec![PortRange::parse(p).unwrap()],
            ..Selection::default()
        }
    }

    const FILTER: &str = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\
        \t\tct state established,related accept\n\t\tct state invalid drop\n\t\tiif \"lo\" accept\n\
        \t\ttcp dport { 22, 80, 443 } accept\n\t\tip saddr 10.0.0.0/8 tcp dport 8080 accept\n\t}\n}\n";

    #[test]
    fn a_port_the_chain_accepts_is_accepted_untracked_too() {
        let rs = parse_nft_text(FILTER);
        let c = &rs.chains[0];
        let u = &units(&port("80"), Role::Inbound)[0];
        let w = walk(&rs, c, u, Mode::Untracked, 0);
        assert_eq!(w.end, End::Accept(Some(&rs.rules[3])));
        assert_eq!(w.at, 3);
        let w = walk(&rs, c, u, Mode::Established, 0);
        assert_eq!(w.at, 0);
    }

    #[test]
    fn a_port_only_some_peers_may_reach_falls_to_the_policy() {
        let rs = parse_nft_text(FILTER);
        let c = &rs.chains[0];
        let u = &units(&port("8080"), Role::Inbound)[0];
        let w = walk(&rs, c, u, Mode::New, 0);
        assert_eq!(w.end, End::Drop(None));
        assert_eq!(w.at, 5);
        // The same peers, named: accepted.
        let sel = Selection {
            src: vec![Cidr::parse("10.1.0.0/16").unwrap()],
            ..port("8080")
        };
        let u = &units(&sel, Role::Inbound)[0];
        assert!(walk(&rs, c, u, Mode::New, 0).all_accepted());
    }

    #[test]
    fn loopback_and_negation() {
        let rs = parse_nft_text(
            "table ip t {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\
             \t\tiif != \"lo\" drop\n\t\tct mark 0x1 accept\n\t}\n}\n",
        );
        let c = &rs.chains[0];
        let lo = &units(
            &Selection {
                lo: true,
                ..Selection::default()
            },
            Role::Loopback,
        )[0];
        let w = walk(&rs, c, lo, Mode::Untracked, 0);
        assert_eq!(w.end, End::Accept(None));
        assert!(w.trace.ct_meta.is_empty(), "no ct mark without an entry");
        let w = walk(&rs, c, lo, Mode::Established, 0);
        assert_eq!(w.trace.ct_meta.len(), 1);
        let flow = &units(&port("80"), Role::Inbound)[0];
        let w = walk(&rs, c, flow, Mode::New, 0);
        assert_eq!(w.trace.maybe_drop.len(), 1, "arriving on any interface");
    }

    #[test]
    fn the_upstream_leg_is_not_local_so_local_only_nat_passes_it_by() {
        // kube-proxy's shape: services DNATed only for local destinations
        // in prerouting, for any destination in output.
        let rs = parse_nft_text(
            "table ip nat {\n\tchain out {\n\t\ttype nat hook output priority -100; policy accept;\n\
             \t\tfib daddr type local tcp dport 8080 dnat to 127.0.0.1:9\n\
             \t\tfib daddr type != local tcp dport 8080 dnat to 10.0.0.9:8080\n\t}\n}\n",
        );
        let c = rs.chain("ip", "nat", "out").unwrap();
        let sel = Selection {
            upstream_ports: vec![PortRange::parse("8080").unwrap()],
            ..Selection::default()
        };
        let u = &units(&sel, Role::Upstream)[0];
        let w = walk(&rs, c, u, Mode::New, 0);
        assert_eq!(w.trace.nat.len(), 1, "only the non-local DNAT");
        assert!(
            w.trace.nat[0].text.contains("10.0.0.9"),
            "{:?}",
            w.trace.nat
        );
    }

    #[test]
    fn jumps_are_followed_and_loops_cut() {
        let rs = parse_nft_text(
            "table ip nat {\n\tchain pre {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\tfib daddr type local jump svc\n\t}\n\tchain svc {\n\t\tjump svc\n\t\ttcp dport 8080 dnat to 10.0.0.2:80\n\
             \t\ttcp dport 9090 dnat to 10.0.0.3:80\n\t}\n}\n",
        );
        let c = rs.chain("ip", "nat", "pre").unwrap();
        let u = &units(&port("8080"), Role::Inbound)[0];
        let w = walk(&rs, c, u, Mode::New, 0);
        assert_eq!(w.trace.nat.len(), 1);
        assert!(w.trace.nat[0].text.contains("8080"));
        assert_eq!(w.end, End::Accept(Some(w.trace.nat[0])));
        let u = &units(&port("443"), Role::Inbound)[0];
        assert!(walk(&rs, c, u, Mode::New, 0).trace.nat.is_empty());
    }
}
