//! The rules `ctdoctor notrack` prints: the nftables form (a table of its
//! own, `inet ctdoctor_notrack`, with raw-priority chains on prerouting and
//! output) or the iptables-restore form (IPv4 or IPv6: chains of its own in
//! the raw table), each with the `ct state untracked accept` rules that
//! stateful chains need ([`Insert`], placed where those chains accept
//! established packets). Every rule added to someone else's chain carries
//! the comment [`MARK`], which is how `--remove` finds it.
//!
//! Pure: a selection and inserts in, text out. Not for: finding the inserts
//! (conflicts.rs) or loading the text (apply.rs).

use super::select::{Class, Fam, PortRange, Role, Selection, Side};
use crate::host::ruleset::Backend;
use crate::table::filter::Cidr;
use serde::Serialize;
use std::fmt::Write as _;

pub use crate::advice::notrack::{MARK, TABLE};
/// Our iptables chains in the raw table.
pub const IPT_PRE: &str = "ctdoctor-notrack-pre";
pub const IPT_OUT: &str = "ctdoctor-notrack-out";

/// Which form to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    Nft,
    /// iptables-restore, IPv4.
    Iptables,
    /// ip6tables-restore, IPv6.
    Ip6tables,
}

impl Form {
    /// The families this form's rules see.
    pub fn families(self) -> &'static [Fam] {
        match self {
            Form::Nft => &[Fam::V4, Fam::V6],
            Form::Iptables => &[Fam::V4],
            Form::Ip6tables => &[Fam::V6],
        }
    }

    /// Whether this form can add a rule to a chain of `backend`/`family`.
    pub fn handles(self, backend: Backend, family: &str) -> bool {
        match self {
            Form::Nft => backend == Backend::Nft,
            Form::Iptables => backend != Backend::Nft && family == "ip",
            Form::Ip6tables => backend != Backend::Nft && family == "ip6",
        }
    }

    /// The flag that prints this form.
    pub fn flag(self) -> &'static str {
        match self {
            Form::Nft => "",
            Form::Iptables => " --iptables",
            Form::Ip6tables => " --ip6tables",
        }
    }
}

/// A `ct state untracked accept` for one class in someone else's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Insert {
    pub backend: Backend,
    pub family: String,
    pub table: String,
    pub chain: String,
    /// 0-based index of the rule it goes before; `rules` = appended.
    pub index: usize,
    /// Rules in the chain now.
    pub rules: usize,
    /// The chain's hook (the input chain needs no `fib daddr type local`).
    pub hook: String,
    #[serde(skip)]
    pub class: Class,
}

impl Insert {
    /// The nft command.
    pub fn nft(&self) -> String {
        let m = nft_match(&self.class, self.hook != "input");
        let rule = format!("{m} ct state untracked accept comment \"{MARK}\"");
        let (f, t, c) = (&self.family, &self.table, &self.chain);
        if self.index >= self.rules {
            format!("add rule {f} {t} {c} {rule}")
        } else {
            format!("insert rule {f} {t} {c} index {} {rule}", self.index)
        }
    }

    /// The iptables-restore lines (`-I CHAIN N …`, several when the ports
    /// need more than one multiport match).
    pub fn iptables(&self) -> Vec<String> {
        ipt_matches(&self.class, self.hook != "input")
            .into_iter()
            .map(|m| {
                format!(
                    "-I {} {} {m}-m conntrack --ctstate UNTRACKED -m comment --comment {MARK} -j ACCEPT",
                    self.chain,
                    self.index + 1
                )
            })
            .collect()
    }
}

fn set<T: ToString>(v: &[T]) -> String {
    match v {
        [one] => one.to_string(),
        many => format!(
            "{{ {} }}",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// nft matches for a class; `fib` adds `fib daddr type local` where the
/// class wants a local destination (not needed in an input chain); the
/// upstream leg always says its far end is not local.
pub fn nft_match(c: &Class, fib: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    match (c.role, c.side) {
        (Role::Loopback, Side::In) => parts.push("iif \"lo\"".into()),
        (Role::Loopback, Side::Out) => parts.push("oif \"lo\"".into()),
        _ => {}
    }
    match c.role {
        Role::Inbound | Role::LocalClient if fib => parts.push("fib daddr type local".into()),
        Role::Upstream => parts.push("fib daddr type != local".into()),
        Role::UpstreamReply if fib => {
            parts.push("fib saddr type != local fib daddr type local".into())
        }
        Role::UpstreamReply => parts.push("fib saddr type != local".into()),
        _ => {}
    }
    if let Some(f) = c.family {
        if !c.saddr.is_empty() {
            parts.push(format!("{} saddr {}", f.nft(), set(&c.saddr)));
        }
        if !c.daddr.is_empty() {
            parts.push(format!("{} daddr {}", f.nft(), set(&c.daddr)));
        }
    }
    if let Some(p) = c.proto {
        if !c.ports.is_empty() {
            let side = if c.port_is_dport() { "dport" } else { "sport" };
            parts.push(format!("{} {side} {}", p.as_str(), set(&c.ports)));
        }
    }
    parts.join(" ")
}

/// Up to 15 ports per multiport match (a range counts 2).
fn chunks(ports: &[PortRange]) -> Vec<Vec<PortRange>> {
    let mut out: Vec<Vec<PortRange>> = Vec::new();
    let mut used = 0;
    for p in ports {
        let w = if p.lo == p.hi { 1 } else { 2 };
        if out.is_empty() || used + w > 15 {
            out.push(Vec::new());
            used = 0;
        }
        if let Some(last) = out.last_mut() {
            last.push(*p);
        }
        used += w;
    }
    out
}

fn ipt_list(v: &[Cidr]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// iptables matches for a class, each ending in a space (one per multiport
/// chunk); `addrtype` as `fib` above.
pub fn ipt_matches(c: &Class, addrtype: bool) -> Vec<String> {
    let mut head = String::new();
    match (c.role, c.side) {
        (Role::Loopback, Side::In) => head.push_str("-i lo "),
        (Role::Loopback, Side::Out) => head.push_str("-o lo "),
        _ => {}
    }
    if !c.saddr.is_empty() {
        let _ = write!(head, "-s {} ", ipt_list(&c.saddr));
    }
    if !c.daddr.is_empty() {
        let _ = write!(head, "-d {} ", ipt_list(&c.daddr));
    }
    let local = match c.role {
        Role::Inbound | Role::LocalClient if addrtype => "-m addrtype --dst-type LOCAL ",
        Role::Upstream => "-m addrtype ! --dst-type LOCAL ",
        Role::UpstreamReply if addrtype => "-m addrtype ! --src-type LOCAL --dst-type LOCAL ",
        Role::UpstreamReply => "-m addrtype ! --src-type LOCAL ",
        _ => "",
    };
    match c.proto {
        Some(p) if !c.ports.is_empty() => {
            let opt = if c.port_is_dport() {
                "--dports"
            } else {
                "--sports"
            };
            chunks(&c.ports)
                .into_iter()
                .map(|ch| {
                    let list: Vec<String> =
                        ch.iter().map(|r| r.to_string().replace('-', ":")).collect();
                    format!(
                        "{head}-p {} {local}-m multiport {opt} {} ",
                        p.as_str(),
                        list.join(",")
                    )
                })
                .collect()
        }
        _ => vec![format!("{head}{local}")],
    }
}

/// Inserts in the order to load them: within one chain the highest index
/// first, so an earlier insert never shifts a later one's place.
fn load_order(inserts: &[Insert]) -> Vec<&Insert> {
    let mut v: Vec<&Insert> = inserts.iter().collect();
    v.sort_by(|a, b| {
        (&a.family, &a.table, &a.chain)
            .cmp(&(&b.family, &b.table, &b.chain))
            .then(b.index.cmp(&a.index))
    });
    v
}

fn classes_by_side(sel: &Selection, side: Side) -> Vec<Class> {
    sel.classes(false)
        .into_iter()
        .filter(|c| c.side == side)
        .collect()
}

/// The nft table alone (what `--persist` also writes).
pub fn nft_table(sel: &Selection) -> String {
    let mut out = String::new();
    // Create-then-delete: loading twice replaces the table, never doubles it.
    let _ = writeln!(out, "table inet {TABLE}");
    let _ = writeln!(out, "delete table inet {TABLE}");
    let _ = writeln!(out, "table inet {TABLE} {{");
    let mut first = true;
    for (side, name) in [(Side::In, "prerouting"), (Side::Out, "output")] {
        let classes = classes_by_side(sel, side);
        if classes.is_empty() {
            continue;
        }
        if !first {
            out.push('\n');
        }
        first = false;
        let _ = writeln!(out, "\tchain {name} {{");
        let _ = writeln!(
            out,
            "\t\ttype filter hook {name} priority raw; policy accept;"
        );
        for c in &classes {
            let _ = writeln!(out, "\t\t{} notrack", nft_match(c, true));
        }
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "}}");
    out
}

/// The whole nft script: header, our table, the inserts.
pub fn nft_script(sel: &Selection, inserts: &[Insert]) -> String {
    let mut out = String::from("#!/usr/sbin/nft -f\n");
    let _ = writeln!(
        out,
        "# ctdoctor notrack {}: {}",
        sel.flags(),
        sel.describe()
    );
    let _ = writeln!(
        out,
        "# Load as one transaction: nft -f FILE (check first: nft -c -f FILE); undo: ctdoctor notrack --remove"
    );
    out.push_str(&nft_table(sel));
    let ours: Vec<&Insert> = load_order(inserts)
        .into_iter()
        .filter(|i| i.backend == Backend::Nft)
        .collect();
    if !ours.is_empty() {
        let _ = writeln!(
            out,
            "# Untracked packets match no `ct state` rule: accept them where these chains accept established ones."
        );
        for i in ours {
            let _ = writeln!(out, "{}", i.nft());
        }
    }
    out
}

/// The iptables-restore script for one family.
pub fn iptables_script(sel: &Selection, inserts: &[Insert], form: Form) -> String {
    let v6 = form == Form::Ip6tables;
    let (tool, fam) = if v6 {
        ("ip6tables-restore", "IPv6")
    } else {
        ("iptables-restore", "IPv4")
    };
    let family = if v6 { "ip6" } else { "ip" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ctdoctor notrack {}{} ({fam}): {}",
        sel.flags(),
        form.flag(),
        sel.describe()
    );
    let _ = writeln!(
        out,
        "# Load on top of the running rules: {tool} --noflush FILE (without --noflush it replaces every table it names);"
    );
    let _ = writeln!(out, "# check first: {tool} --test --noflush FILE");
    let _ = writeln!(out, "*raw");
    let sides: Vec<(Side, &str, &str)> = [
        (Side::In, "PREROUTING", IPT_PRE),
        (Side::Out, "OUTPUT", IPT_OUT),
    ]
    .into_iter()
    .filter(|(s, _, _)| !classes_by_side(sel, *s).is_empty())
    .collect();
    for (_, _, chain) in &sides {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for (_, builtin, chain) in &sides {
        let _ = writeln!(out, "-A {builtin} -m comment --comment {MARK} -j {chain}");
    }
    for (side, _, chain) in &sides {
        for c in classes_by_side(sel, *side) {
            if c.family.is_some_and(|f| f != form.families()[0]) {
                continue;
            }
            for m in ipt_matches(&c, true) {
                let _ = writeln!(out, "-A {chain} {m}-j CT --notrack");
            }
        }
    }
    let _ = writeln!(out, "COMMIT");
    let ours: Vec<&Insert> = load_order(inserts)
        .into_iter()
        .filter(|i| form.handles(i.backend, &i.family) && i.family == family)
        .collect();
    let mut tables: Vec<&str> = ours.iter().map(|i| i.table.as_str()).collect();
    tables.sort();
    tables.dedup();
    for t in tables {
        let _ = writeln!(
            out,
            "# Untracked packets match no state rule: accept them where these chains accept established ones."
        );
        let _ = writeln!(out, "*{t}");
        for i in ours.iter().filter(|i| i.table == t) {
            for l in i.iptables() {
                let _ = writeln!(out, "{l}");
            }
        }
        let _ = writeln!(out, "COMMIT");
    }
    out
}

/// Whether an iptables selection can be printed in `form`: IPv4 prefixes
/// need --iptables, IPv6 ones --ip6tables.
pub fn check_family(sel: &Selection, form: Form) -> Result<(), String> {
    let want_v4 = match form {
        Form::Nft => return Ok(()),
        Form::Iptables => true,
        Form::Ip6tables => false,
    };
    let other: Vec<String> = sel
        .src
        .iter()
        .chain(&sel.dst)
        .filter(|c| c.is_v4() != want_v4)
        .map(ToString::to_string)
        .collect();
    let same = sel.src.iter().chain(&sel.dst).any(|c| c.is_v4() == want_v4);
    if !other.is_empty() && !same {
        let (this, that) = if want_v4 {
            ("--iptables is IPv4", "--ip6tables")
        } else {
            ("--ip6tables is IPv6", "--iptables")
        };
        return Err(format!(
            "{this}: {} (use {that}, or the nftables form, which holds both)",
            other.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notrack::select::Proto;

    fn sel(lo: bool, ports: &[&str]) -> Selection {
        Selection {
            lo,
            ports: ports.iter().map(|p| PortRange::parse(p).unwrap()).collect(),
            ..Selection::default()
        }
    }

    #[test]
    fn nft_table_for_lo_and_ports() {
        let t = nft_table(&sel(true, &["80", "443"]));
        assert_eq!(
            t,
            "table inet ctdoctor_notrack\ndelete table inet ctdoctor_notrack\ntable inet ctdoctor_notrack {\n\
             \tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tiif \"lo\" notrack\n\t\tfib daddr type local tcp dport { 80, 443 } notrack\n\t}\n\n\
             \tchain output {\n\t\ttype filter hook output priority raw; policy accept;\n\
             \t\toif \"lo\" notrack\n\t\ttcp sport { 80, 443 } notrack\n\
             \t\tfib daddr type local tcp dport { 80, 443 } notrack\n\t}\n}\n"
        );
    }

    #[test]
    fn directions_addresses_and_protocols() {
        let s = Selection {
            dir: super::super::select::Dir::In,
            protos: vec![Proto::Udp],
            src: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            ..sel(false, &["53"])
        };
        let t = nft_table(&s);
        assert!(
            t.contains("fib daddr type local ip saddr 10.0.0.0/8 udp dport 53 notrack"),
            "{t}"
        );
        assert!(!t.contains("chain output"), "{t}");
    }

    #[test]
    fn iptables_form_uses_its_own_chains_and_multiport_chunks() {
        let ports: Vec<String> = (1..=20).map(|p| (8000 + p).to_string()).collect();
        let refs: Vec<&str> = ports.iter().map(String::as_str).collect();
        let t = iptables_script(&sel(true, &refs), &[], Form::Iptables);
        assert!(t.contains(":ctdoctor-notrack-pre - [0:0]\n"), "{t}");
        assert!(t.contains(
            "-A PREROUTING -m comment --comment ctdoctor-notrack -j ctdoctor-notrack-pre\n"
        ));
        assert!(
            t.contains("-A ctdoctor-notrack-pre -i lo -j CT --notrack\n"),
            "{t}"
        );
        let multi: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("-A ctdoctor-notrack-pre -p tcp"))
            .collect();
        assert_eq!(multi.len(), 2, "15 + 5 ports: {t}");
        assert!(multi[0].contains("-m addrtype --dst-type LOCAL -m multiport --dports 8001,"));
        assert!(t
            .lines()
            .any(|l| l.starts_with("-A ctdoctor-notrack-out -p tcp -m multiport --sports 8001,")));
        assert!(t.trim_end().ends_with("COMMIT"));
    }

    #[test]
    fn upstream_ports_untrack_the_proxys_other_leg() {
        let s = Selection {
            upstream_ports: vec![PortRange::parse("8080").unwrap()],
            ..sel(false, &["80"])
        };
        let t = nft_table(&s);
        assert!(
            t.contains("\t\tfib saddr type != local fib daddr type local tcp sport 8080 notrack\n"),
            "{t}"
        );
        assert!(
            t.contains("\t\tfib daddr type != local tcp dport 8080 notrack\n"),
            "{t}"
        );
        assert!(
            t.contains("fib daddr type local tcp dport 80 notrack"),
            "{t}"
        );
        let t = iptables_script(&s, &[], Form::Iptables);
        assert!(
            t.contains("-A ctdoctor-notrack-out -p tcp -m addrtype ! --dst-type LOCAL -m multiport --dports 8080 -j CT --notrack\n"),
            "{t}"
        );
        assert!(
            t.contains("-A ctdoctor-notrack-pre -p tcp -m addrtype ! --src-type LOCAL --dst-type LOCAL -m multiport --sports 8080 -j CT --notrack\n"),
            "{t}"
        );
        // In an input chain (an insert) the local destination goes without saying.
        let reply = s
            .classes(false)
            .into_iter()
            .find(|c| c.role == Role::UpstreamReply)
            .unwrap();
        assert_eq!(
            nft_match(&reply, false),
            "fib saddr type != local tcp sport 8080"
        );
    }

    #[test]
    fn family_of_the_form() {
        let v6 = Selection {
            src: vec![Cidr::parse("2001:db8::/32").unwrap()],
            ..sel(false, &["80"])
        };
        assert!(check_family(&v6, Form::Iptables)
            .unwrap_err()
            .contains("--ip6tables"));
        assert!(check_family(&v6, Form::Ip6tables).is_ok());
        assert!(check_family(&v6, Form::Nft).is_ok());
    }
}
