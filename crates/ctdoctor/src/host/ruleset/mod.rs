//! The ruleset model: nftables and iptables rules read into plain data —
//! tables, chains (hook, priority, policy), and rules (handle, position,
//! text, what they match and what they do). One model serves
//! `conntrack.consumers` (who uses conntrack here) and `ctdoctor notrack`
//! (which rules untracked packets would break).
//!
//! Three pure parsers, bytes in, [`Ruleset`] out, none of them failing on
//! what it does not know (an unknown match is kept as [`Field::Other`], an
//! unknown statement leaves the rule's verdict alone):
//! - [`parse_nft_json`]: `nft -j list ruleset` (nft ≥ 0.9 built with JSON);
//! - [`parse_nft_text`]: `nft [-a] list ruleset` text — older captures, and
//!   nft built without JSON;
//! - [`parse_iptables_save`]: `iptables-save` of either backend (the nft
//!   view of iptables-nft rules loses their `-m` matches to opaque `xt`
//!   expressions, so [`effective`] takes those chains from iptables-nft-save).
//!
//! Not for: running the tools (host/consumers.rs, with its guards that never
//! load a module) or judging rules (checks, notrack).

mod iptables;
mod nft_json;
mod nft_text;

pub use iptables::parse_iptables_save;
pub use nft_json::parse_nft_json;
pub use nft_text::parse_nft_text;

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Which program's view a ruleset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// nf_tables as `nft` shows it (minus iptables-nft's chains, in [`effective`]).
    Nft,
    /// iptables-nft-save / ip6tables-nft-save (nf_tables underneath).
    IptablesNft,
    /// iptables-legacy-save / ip6tables-legacy-save (x_tables).
    IptablesLegacy,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::IptablesNft => "iptables_nft",
            Backend::IptablesLegacy => "iptables_legacy",
        }
    }
}

/// One ruleset: its tables, chains and rules, rules in chain order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub tables: Vec<Table>,
    pub chains: Vec<Chain>,
    /// Every rule, grouped by chain in the order the tool listed them.
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// `ip`, `ip6`, `inet`, `arp`, `bridge`, `netdev`.
    pub family: String,
    pub name: String,
    pub handle: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub family: String,
    pub table: String,
    pub name: String,
    pub handle: Option<u64>,
    /// Set for a base chain (one attached to a hook).
    pub base: Option<Base>,
}

/// Where a base chain hooks in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// `prerouting`, `input`, `forward`, `output`, `postrouting`, `ingress`.
    pub hook: String,
    /// `filter`, `nat` or `route`.
    pub kind: String,
    /// Numeric priority (raw -300, mangle -150, dstnat -100, filter 0,
    /// security 50, srcnat 100).
    pub priority: i32,
    /// What happens to a packet that reaches the end of the chain.
    pub policy: Policy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Accept,
    Drop,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// nft's rule handle (iptables-legacy rules have none).
    pub handle: Option<u64>,
    /// 1-based position in its chain (what `iptables -I CHAIN N` counts).
    pub position: u32,
    /// The rule as the tool prints it (nft syntax for nft, the `-A` line
    /// for iptables).
    pub text: String,
    pub comment: Option<String>,
    /// Conditions, all of which must hold (an unknown one is [`Field::Other`]).
    pub matches: Vec<Match>,
    pub verdict: Verdict,
    /// The address translation this rule does.
    pub nat: Option<Nat>,
    /// `notrack` / `-j CT --notrack` / `-j NOTRACK`.
    pub notrack: bool,
    /// conntrack keys this rule sets: `zone`, `mark`, `label`, `helper`.
    pub ct_set: Vec<String>,
    /// Packets its `counter` statement has counted, when it has one and the
    /// listing showed the value (`nft -j list ruleset` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
}

/// One condition of a rule: `field [!=] values` (any value matches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub field: Field,
    /// `!=` / `! -s`: the rule matches when none of the values does.
    pub neg: bool,
    /// As the tool wrote them: `80`, `1000-2000` (ranges with `-`),
    /// `10.0.0.0/8`, `lo`, `eth+` (iptables' wildcard) or `eth*` (nft's),
    /// `established`; `@name` for a named set (contents unknown).
    pub values: Vec<String>,
}

/// What a [`Match`] looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Input interface (`iif`, `iifname`, `-i`).
    Iif,
    /// Output interface (`oif`, `oifname`, `-o`).
    Oif,
    /// Transport protocol (`meta l4proto`, `ip protocol`, `-p`, implied by `tcp dport`).
    L4proto,
    /// Network family (`ip`, `ip6`), implied by `ip saddr` in an inet table.
    Nfproto,
    Sport,
    Dport,
    Saddr,
    Daddr,
    /// Destination address type (`fib daddr type`, `-m addrtype --dst-type`): `local`, …
    DaddrType,
    /// Source address type (`fib saddr type`, `--src-type`).
    SaddrType,
    /// conntrack state: `new`, `established`, `related`, `invalid`, `untracked`.
    CtState,
    /// Another conntrack key read by the rule (`status`, `mark`, `zone`,
    /// `helper`, `direction`, `original saddr`, …).
    Ct(String),
    /// Anything else (`meta mark`, `limit`, `-m set`, an `xt` match …):
    /// the rule may or may not match.
    Other(String),
}

/// What a rule does with a packet it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No verdict: the next rule is evaluated (counter, log, mark set, notrack).
    Continue,
    Accept,
    Drop,
    Reject,
    /// Back to the calling chain.
    Return,
    Jump(String),
    Goto(String),
    /// To user space (NFQUEUE): the outcome is unknown.
    Queue,
    /// A verdict this model does not follow (a verdict map, TPROXY …).
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatKind {
    Dnat,
    Snat,
    Masquerade,
    Redirect,
}

impl NatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NatKind::Dnat => "dnat",
            NatKind::Snat => "snat",
            NatKind::Masquerade => "masquerade",
            NatKind::Redirect => "redirect",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nat {
    pub kind: NatKind,
    /// The translation target as written (`10.0.0.2:8080`, `:443`), if any.
    pub to: Option<String>,
}

impl Rule {
    /// A rule of `chain` at `position` with no conditions and no verdict.
    pub fn new(family: &str, table: &str, chain: &str, position: u32) -> Rule {
        Rule {
            family: family.into(),
            table: table.into(),
            chain: chain.into(),
            handle: None,
            position,
            text: String::new(),
            comment: None,
            matches: Vec::new(),
            verdict: Verdict::Continue,
            nat: None,
            notrack: false,
            ct_set: Vec::new(),
            packets: None,
        }
    }

    /// Add a condition, once (`tcp dport` and `tcp sport` both imply tcp).
    pub fn add_match(&mut self, field: Field, neg: bool, values: Vec<String>) {
        let m = Match { field, neg, values };
        if !self.matches.contains(&m) {
            self.matches.push(m);
        }
    }

    /// The conntrack keys other than state this rule reads.
    pub fn ct_reads(&self) -> impl Iterator<Item = &str> {
        self.matches.iter().filter_map(|m| match &m.field {
            Field::Ct(k) => Some(k.as_str()),
            _ => None,
        })
    }
}

impl Ruleset {
    pub fn chain(&self, family: &str, table: &str, name: &str) -> Option<&Chain> {
        self.chains
            .iter()
            .find(|c| c.family == family && c.table == table && c.name == name)
    }

    /// The rules of one chain, in order.
    pub fn rules_of<'a>(&'a self, chain: &'a Chain) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| {
            r.family == chain.family && r.table == chain.table && r.chain == chain.name
        })
    }

    /// Whether the ruleset has a table `family name`.
    pub fn has_table(&self, family: &str, name: &str) -> bool {
        self.tables
            .iter()
            .any(|t| t.family == family && t.name == name)
    }
}

/// Chain key.
fn key(family: &str, table: &str, chain: &str) -> (String, String, String) {
    (family.to_string(), table.to_string(), chain.to_string())
}

/// The rules the kernel runs, each once, with the backend it is best read
/// from. Chains iptables-nft manages are nf_tables chains too, so `nft`
/// lists them — with their `-m` matches as opaque `xt` expressions: those
/// chains are taken from iptables-nft-save (with nft's handles, by
/// position, when both list the same number of rules) and dropped from
/// nft's view. A chain iptables-nft-save prints but nft does not have, in a
/// table nft has, is an empty placeholder it made up (it prints the
/// built-in chains of a table it half understands): dropped. The legacy
/// backend is a separate set of tables and is kept as it is.
pub fn effective(
    nft: Option<&Ruleset>,
    iptables_nft: Option<&Ruleset>,
    legacy: Option<&Ruleset>,
) -> Vec<(Backend, Ruleset)> {
    let mut out = Vec::new();
    match (nft, iptables_nft) {
        (Some(n), Some(i)) => {
            let mut n = n.clone();
            let mut i = i.clone();
            let in_nft: HashSet<_> = n
                .chains
                .iter()
                .map(|c| key(&c.family, &c.table, &c.name))
                .collect();
            let with_rules: HashSet<_> = i
                .rules
                .iter()
                .map(|r| key(&r.family, &r.table, &r.chain))
                .collect();
            // Placeholders: no rules, and nft has the table but not the chain.
            i.chains.retain(|c| {
                let k = key(&c.family, &c.table, &c.name);
                in_nft.contains(&k) || with_rules.contains(&k) || !n.has_table(&c.family, &c.table)
            });
            let ours: HashSet<_> = i
                .chains
                .iter()
                .map(|c| key(&c.family, &c.table, &c.name))
                .chain(with_rules)
                .collect();
            // nft's handles for iptables' rules, by position.
            for k in &ours {
                let handles: Vec<Option<u64>> = n
                    .rules
                    .iter()
                    .filter(|r| key(&r.family, &r.table, &r.chain) == *k)
                    .map(|r| r.handle)
                    .collect();
                let rules: Vec<&mut Rule> = i
                    .rules
                    .iter_mut()
                    .filter(|r| key(&r.family, &r.table, &r.chain) == *k)
                    .collect();
                if rules.len() == handles.len() {
                    for (r, h) in rules.into_iter().zip(handles) {
                        r.handle = h;
                    }
                }
            }
            n.chains
                .retain(|c| !ours.contains(&key(&c.family, &c.table, &c.name)));
            n.rules
                .retain(|r| !ours.contains(&key(&r.family, &r.table, &r.chain)));
            out.push((Backend::Nft, n));
            out.push((Backend::IptablesNft, i));
        }
        (Some(n), None) => out.push((Backend::Nft, n.clone())),
        (None, Some(i)) => out.push((Backend::IptablesNft, i.clone())),
        (None, None) => {}
    }
    if let Some(l) = legacy {
        out.push((Backend::IptablesLegacy, l.clone()));
    }
    out
}

/// Append `other` (the IPv6 save after the IPv4 one).
impl Ruleset {
    pub fn extend(&mut self, other: Ruleset) {
        self.tables.extend(other.tables);
        self.chains.extend(other.chains);
        self.rules.extend(other.rules);
    }
}

/// The numeric priority of a named nft priority (`raw`, `filter + 10`),
/// for family `family` and hook `hook` (`dstnat`/`srcnat` differ in bridge).
pub fn priority_value(text: &str) -> Option<i32> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Some(n);
    }
    let (name, rest) = match t.find(['+', '-']) {
        Some(i) if i > 0 => (t[..i].trim(), t[i..].replace(' ', "")),
        _ => (t, String::new()),
    };
    let base = match name {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        _ => return None,
    };
    let off = if rest.is_empty() {
        0
    } else {
        rest.parse::<i32>().ok()?
    };
    Some(base + off)
}

/// `lo`, `eth+` (iptables) or `eth*` (nft) matching interface `name`.
pub fn iface_matches(pattern: &str, name: &str) -> bool {
    let p = pattern.trim_matches('"');
    match p.strip_suffix(['+', '*']) {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(priority_value("raw"), Some(-300));
        assert_eq!(priority_value("filter + 10"), Some(10));
        assert_eq!(priority_value("mangle-5"), Some(-155));
        assert_eq!(priority_value("-300"), Some(-300));
        assert_eq!(priority_value("bogus"), None);
    }

    #[test]
    fn interface_wildcards() {
        assert!(iface_matches("lo", "lo"));
        assert!(iface_matches("\"lo\"", "lo"));
        assert!(iface_matches("l+", "lo"));
        assert!(iface_matches("veth*", "veth1"));
        assert!(!iface_matches("eth0", "lo"));
    }

    #[test]
    fn iptables_nft_chains_come_from_iptables_once() {
        let nft = parse_nft_json(include_str!("testdata/mixed.json")).unwrap();
        let ipt = parse_iptables_save(include_str!("testdata/mixed.v4"), "ip");
        let eff = effective(Some(&nft), Some(&ipt), None);
        assert_eq!(eff.len(), 2);
        let (b, n) = &eff[0];
        assert_eq!(*b, Backend::Nft);
        // Native chains stay with nft: the ctdt table, nat's and raw's pre.
        let names: Vec<&str> = n.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["in", "out", "pre", "pre"]);
        let (b, i) = &eff[1];
        assert_eq!(*b, Backend::IptablesNft);
        let masq: Vec<&Rule> = i
            .rules
            .iter()
            .filter(|r| r.nat.as_ref().map(|n| n.kind) == Some(NatKind::Masquerade))
            .collect();
        assert_eq!(masq.len(), 1);
        // nft's handle carried over, and the matches iptables shows.
        assert!(masq[0].handle.is_some());
        assert!(masq[0]
            .matches
            .iter()
            .any(|m| m.field == Field::Oif && m.neg && m.values == ["docker0"]));
        // Placeholder built-in chains of the raw table are gone.
        assert!(i.chains.iter().all(|c| c.table != "raw"), "{:?}", i.chains);
    }
}
