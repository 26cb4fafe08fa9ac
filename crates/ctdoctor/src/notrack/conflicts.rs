//! The conflict scan: which rules of the running rulesets a selection's
//! untracked packets would break, and where stateful chains need a
//! `ct state untracked accept` ([`Insert`]).
//!
//! For every class of packets the selection untracks, split into units
//! (one family, one port range), every base chain at the hooks those
//! packets pass is walked (eval.rs):
//! - **nat**: NAT rules a connection's first packet could meet (untracked
//!   packets are never NATed; a connection whose replies go untracked loses
//!   its NAT too, so every direction counts here). Blocks `--apply`.
//! - **stateful_drop**: a chain that accepts the unit when it is tracked
//!   and established, and drops it when untracked (its accept was a `ct
//!   state` rule). The generated rules insert the untracked accept at the
//!   place the established packets are accepted; blocks `--apply` only when
//!   the printed form cannot write to that chain (nft vs iptables).
//! - **bypass**: arriving packets only — from that place on, the chain
//!   refuses some *new* connections of the unit (a port it does not open,
//!   peers it does not allow, a blocklist): an untracked accept there
//!   would let them in. Blocks `--apply`.
//! - **ct_metadata**: rules that read or set a conntrack mark, label or
//!   helper for the unit: untracked packets have none. Blocks `--apply`.
//!
//! Our own table, chains and marked rules (a previous `--apply`) are left
//! out of the scan. Pure. Not for: reading rulesets (host) or printing.

use super::eval::{family_applies, walk, End, Mode, Walk};
use super::rules::{Form, Insert, IPT_OUT, IPT_PRE, MARK, TABLE};
use super::select::{Class, Fam, PortRange, Role, Selection, Side};
use crate::advice::owners;
use crate::host::ruleset::{Backend, Chain, Rule, Ruleset, Verdict};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Nat,
    StatefulDrop,
    Bypass,
    CtMetadata,
}

/// One rule (or policy) the selection would break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub kind: Kind,
    pub backend: Backend,
    pub family: String,
    pub table: String,
    pub chain: String,
    /// nft's rule handle (None for a policy and for iptables-legacy).
    pub handle: Option<u64>,
    /// 1-based position in the chain (None for a policy).
    pub position: Option<u32>,
    /// The rule's text, or `policy drop`.
    pub rule: String,
    /// The program that made the chain, when known (`docker`, `ufw`, …).
    pub owner: Option<&'static str>,
    pub why: String,
    /// Whether `--apply` refuses because of it (it would drop or mis-route
    /// traffic the generated rules do not take care of).
    pub blocks: bool,
    /// The generated rule that takes care of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_by: Option<String>,
}

/// A conflict being gathered over the units of a class.
struct Pending {
    conflict: Conflict,
    class: Class,
    ports: Vec<PortRange>,
}

/// The scan's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scan {
    pub conflicts: Vec<Conflict>,
    pub inserts: Vec<Insert>,
    /// Advice that is no rule's conflict (one direction only, ephemeral ports).
    pub warnings: Vec<String>,
    /// What of ours is already loaded (a previous `--apply`).
    pub already: Vec<String>,
}

impl Scan {
    pub fn blocking(&self) -> impl Iterator<Item = &Conflict> {
        self.conflicts.iter().filter(|c| c.blocks)
    }
}

/// Whether a rule or chain is ours.
pub fn is_ours_chain(c: &Chain) -> bool {
    (c.family == "inet" && c.table == TABLE) || c.name == IPT_PRE || c.name == IPT_OUT
}

pub fn is_ours_rule(r: &Rule) -> bool {
    (r.family == "inet" && r.table == TABLE)
        || r.chain == IPT_PRE
        || r.chain == IPT_OUT
        || r.comment.as_deref() == Some(MARK)
        || matches!(&r.verdict, Verdict::Jump(t) if t == IPT_PRE || t == IPT_OUT)
}

/// A ruleset without our own table, chains and marked rules; and what of
/// ours was there.
pub fn without_ours(rs: &Ruleset) -> (Ruleset, Vec<String>) {
    let mut found = Vec::new();
    if rs.has_table("inet", TABLE) {
        found.push(format!("table inet {TABLE}"));
    }
    for r in rs.rules.iter().filter(|r| is_ours_rule(r)) {
        if !(r.family == "inet" && r.table == TABLE) && r.chain != IPT_PRE && r.chain != IPT_OUT {
            found.push(format!("{} {} {}: {}", r.family, r.table, r.chain, r.text));
        }
    }
    for c in rs
        .chains
        .iter()
        .filter(|c| is_ours_chain(c) && c.table != TABLE)
    {
        found.push(format!("{} {} chain {}", c.family, c.table, c.name));
    }
    let mut out = rs.clone();
    out.tables
        .retain(|t| !(t.family == "inet" && t.name == TABLE));
    out.chains.retain(|c| !is_ours_chain(c));
    out.rules.retain(|r| !is_ours_rule(r));
    // Positions as they will be once ours are gone.
    let mut pos: std::collections::HashMap<(String, String, String), u32> = Default::default();
    for r in &mut out.rules {
        let p = pos
            .entry((r.family.clone(), r.table.clone(), r.chain.clone()))
            .or_insert(0);
        *p += 1;
        r.position = *p;
    }
    (out, found)
}

fn sees(chain: &Chain, side: Side, fam: Fam) -> bool {
    let Some(b) = &chain.base else { return false };
    if !side.hooks().contains(&b.hook.as_str()) || !family_applies(&chain.family, fam) {
        return false;
    }
    // Before conntrack (-200) every packet looks the same, tracked or not.
    !(matches!(b.hook.as_str(), "prerouting" | "output") && b.priority < -200 && b.kind != "nat")
}

fn conflict(
    kind: Kind,
    backend: Backend,
    chain: &Chain,
    rule: Option<&Rule>,
    why: String,
) -> Conflict {
    let owner = owners::owner_of(&chain.table, &chain.name).map(|o| o.id);
    Conflict {
        kind,
        backend,
        family: chain.family.clone(),
        table: chain.table.clone(),
        chain: rule
            .map(|r| r.chain.clone())
            .unwrap_or_else(|| chain.name.clone()),
        handle: rule.and_then(|r| r.handle),
        position: rule.map(|r| r.position),
        rule: rule
            .map(|r| r.text.clone())
            .unwrap_or_else(|| "policy drop".into()),
        owner,
        why,
        blocks: true,
        fixed_by: None,
    }
}

fn end_text(w: &Walk) -> String {
    match &w.end {
        End::Drop(None) => "the chain's policy drop".into(),
        End::Drop(Some(r)) => format!("`{}` (position {})", r.text, r.position),
        End::Unknown(r) => format!("`{}` (not followed)", r.text),
        End::Accept(_) => match w.trace.maybe_drop.first() {
            Some(r) => format!("`{}` (position {}), for part of them", r.text, r.position),
            None => "nothing".into(),
        },
    }
}

fn end_rule<'a>(w: &Walk<'a>) -> Option<&'a Rule> {
    match &w.end {
        End::Drop(r) => *r,
        End::Unknown(r) => Some(*r),
        End::Accept(_) => w.trace.maybe_drop.first().copied(),
    }
}

fn nat_why(r: &Rule, owner: Option<&owners::Owner>) -> String {
    let nat = r.nat.as_ref();
    let kind = nat.map(|n| n.kind.as_str()).unwrap_or("nat");
    let to = nat
        .and_then(|n| n.to.as_deref())
        .map(|t| format!(" to {t}"))
        .unwrap_or_default();
    let effect = match kind {
        "dnat" | "redirect" => "they would stay addressed as sent instead of being redirected",
        _ => "they would keep their own source address",
    };
    let mut why = format!(
        "untracked packets are never NATed: this {kind}{to} would no longer apply to {{WHAT}} — {effect}"
    );
    if let Some(o) = owner.filter(|o| o.needs_nat) {
        why.push_str(&format!(" ({} needs conntrack for its NAT)", o.id));
    }
    why
}

/// Scan `views` (each backend's ruleset) for `sel` printed in `form`.
/// `ephemeral`: this netns's ip_local_port_range, when known.
pub fn scan(
    sel: &Selection,
    views: &[(Backend, Ruleset)],
    form: Form,
    ephemeral: Option<(u32, u32)>,
) -> Scan {
    let mut out = Scan::default();
    // Conflicts as found, per unit: merged by rule, with the ports that hit
    // it; `{WHAT}` in a why is the class of packets, named at the end.
    let mut pending: Vec<Pending> = Vec::new();
    for (backend, raw) in views {
        let (rs, found) = without_ours(raw);
        out.already.extend(found);
        let cx = Cx {
            sel,
            form,
            backend: *backend,
            rs: &rs,
        };
        scan_nat(&cx, &mut pending);
        scan_filter(&cx, &mut out, &mut pending);
    }
    name_pending(pending, &mut out);
    out.already.sort();
    out.already.dedup();
    warn(sel, ephemeral, &mut out);
    out
}

/// What every step of the scan of one backend's ruleset reads.
struct Cx<'a> {
    sel: &'a Selection,
    form: Form,
    backend: Backend,
    /// The ruleset without ours.
    rs: &'a Ruleset,
}

/// Add `c` (found for `class`, on `port`) to `pending`, merged with an
/// earlier finding of the same rule.
fn push(pending: &mut Vec<Pending>, c: Conflict, class: &Class, port: Option<PortRange>) {
    let key = |x: &Conflict| {
        (
            x.kind,
            x.backend,
            x.family.clone(),
            x.table.clone(),
            x.chain.clone(),
            x.handle,
            x.position,
            x.rule.clone(),
        )
    };
    match pending.iter_mut().find(|p| key(&p.conflict) == key(&c)) {
        Some(p) => p.ports.extend(port),
        None => pending.push(Pending {
            conflict: c,
            class: class.clone(),
            ports: port.into_iter().collect(),
        }),
    }
}

/// NAT: the NAT rules the first packet of each selected connection meets.
fn scan_nat(cx: &Cx, pending: &mut Vec<Pending>) {
    let rs = cx.rs;
    for class in cx.sel.classes(true).iter().filter(|c| c.is_first_packet()) {
        for unit in class.units(cx.form.families()) {
            for chain in rs.chains.iter().filter(|c| {
                c.base.as_ref().is_some_and(|b| b.kind == "nat") && sees(c, class.side, unit.family)
            }) {
                let w = walk(rs, chain, &unit, Mode::New, 0);
                for r in w.trace.nat {
                    let owner = owners::owner_of(&r.table, &r.chain);
                    let why = nat_why(r, owner);
                    let chain_of_rule = rs.chain(&r.family, &r.table, &r.chain).unwrap_or(chain);
                    push(
                        pending,
                        conflict(Kind::Nat, cx.backend, chain_of_rule, Some(r), why),
                        class,
                        unit.dport.or(unit.sport),
                    );
                }
            }
        }
    }
}

/// Filtering: every class in the directions asked, through every filter
/// chain that sees it: conntrack metadata, stateful drops, bypasses.
fn scan_filter(cx: &Cx, out: &mut Scan, pending: &mut Vec<Pending>) {
    let rs = cx.rs;
    for class in cx.sel.classes(false) {
        for unit in class.units(cx.form.families()) {
            for chain in rs.chains.iter().filter(|c| {
                c.base.as_ref().is_some_and(|b| b.kind != "nat") && sees(c, class.side, unit.family)
            }) {
                let est = walk(rs, chain, &unit, Mode::Established, 0);
                let port = unit.dport.or(unit.sport);
                for r in &est.trace.ct_meta {
                    let c = rs.chain(&r.family, &r.table, &r.chain).unwrap_or(chain);
                    let why = "untracked packets have no conntrack entry: this rule's conntrack \
                               mark, label or helper would not exist for {WHAT}"
                        .to_string();
                    push(
                        pending,
                        conflict(Kind::CtMetadata, cx.backend, c, Some(r), why),
                        &class,
                        port,
                    );
                }
                if !matches!(est.end, End::Accept(_)) {
                    continue; // dropped even when tracked: nothing changes
                }
                let unt = walk(rs, chain, &unit, Mode::Untracked, 0);
                if matches!(unt.end, End::Accept(_)) {
                    continue;
                }
                let index = est.at.min(unt.at);
                stateful_drop(cx, chain, &class, port, (&est, &unt), out, pending);
                // Arriving packets: would the accept also let in new
                // connections this chain refuses?
                if class.side == Side::In {
                    let new = walk(rs, chain, &unit, Mode::New, index);
                    if !new.all_accepted() {
                        push(
                            pending,
                            bypass(cx, chain, &class, index, &new),
                            &class,
                            port,
                        );
                    }
                }
            }
        }
    }
}

/// A chain that accepts the class tracked (`est`) and drops it untracked
/// (`unt`): its conflict, and the untracked accept to insert when `form`
/// can write to the chain.
fn stateful_drop(
    cx: &Cx,
    chain: &Chain,
    class: &Class,
    port: Option<PortRange>,
    (est, unt): (&Walk, &Walk),
    out: &mut Scan,
    pending: &mut Vec<Pending>,
) {
    let backend = cx.backend;
    let index = est.at.min(unt.at);
    let rules = cx.rs.rules_of(chain).count();
    let hook = chain
        .base
        .as_ref()
        .map(|b| b.hook.clone())
        .unwrap_or_default();
    let at_rule = cx.rs.rules_of(chain).nth(est.at);
    let handled = cx.form.handles(backend, &chain.family);
    let ins = Insert {
        backend,
        family: chain.family.clone(),
        table: chain.table.clone(),
        chain: chain.name.clone(),
        index,
        rules,
        hook,
        class: class.clone(),
    };
    let fixed = if backend == Backend::Nft {
        ins.nft()
    } else {
        ins.iptables().join("\n")
    };
    let why = stateful_why(cx, chain, at_rule, unt, handled);
    let mut c = conflict(Kind::StatefulDrop, backend, chain, end_rule(unt), why);
    c.blocks = !handled;
    c.fixed_by = handled.then(|| fixed.clone());
    push(pending, c, class, port);
    if handled {
        let key = (&ins.family, &ins.table, &ins.chain, &ins.class);
        match out
            .inserts
            .iter_mut()
            .find(|i| (&i.family, &i.table, &i.chain, &i.class) == key)
        {
            Some(i) => i.index = i.index.min(index),
            None => out.inserts.push(ins.clone()),
        }
    }
}

/// Why a stateful chain drops the class untracked, and who can add the
/// accept (`handled`: the generated rules; else the other form).
fn stateful_why(
    cx: &Cx,
    chain: &Chain,
    at_rule: Option<&Rule>,
    unt: &Walk,
    handled: bool,
) -> String {
    let backend = cx.backend;
    let mut why = format!(
        "untracked packets match no `ct state` rule: {{WHAT}} are accepted here when tracked{}, \
         untracked they fall to {}",
        at_rule
            .map(|r| format!(" (by `{}`, position {})", r.text, r.position))
            .unwrap_or_default(),
        end_text(unt)
    );
    if handled {
        why.push_str("; the generated rules accept them where established packets are accepted");
    } else {
        let other = if backend == Backend::Nft {
            ""
        } else if chain.family == "ip6" {
            " --ip6tables"
        } else {
            " --iptables"
        };
        why.push_str(&format!(
            "; this chain is {}'s: the form that can add the accept is `ctdoctor notrack {}{other}`",
            backend.as_str(),
            cx.sel.flags()
        ));
    }
    why
}

/// The bypass conflict: an untracked accept at `index` would let in the new
/// connections `new` shows the chain refusing.
fn bypass(cx: &Cx, chain: &Chain, class: &Class, index: usize, new: &Walk) -> Conflict {
    let advice = if class.role == Role::UpstreamReply {
        "untracked, a packet from that port is not known to be a reply: any \
         host sending from it would reach every local port; keep the upstream \
         leg tracked here, or accept that (--force)"
    } else {
        "narrow the selection (--src, --port) to what the chain accepts, or \
         accept it here first"
    };
    let why = format!(
        "an untracked accept in this chain (position {}) would also let in new \
         connections it refuses now: {{WHAT}} are stopped by {}; {advice}",
        index + 1,
        end_text(new)
    );
    conflict(Kind::Bypass, cx.backend, chain, end_rule(new), why)
}

/// The gathered conflicts into `out`, `{WHAT}` named by their class with
/// the ports that hit them.
fn name_pending(pending: Vec<Pending>, out: &mut Scan) {
    for p in pending {
        let mut class = p.class;
        if !class.ports.is_empty() && !p.ports.is_empty() {
            let mut ports = p.ports;
            ports.sort();
            ports.dedup();
            class.ports = ports;
        }
        let mut c = p.conflict;
        c.why = c.why.replace("{WHAT}", &class.describe());
        out.conflicts.push(c);
    }
}

/// The warnings that are no rule's conflict: one direction only, ports in
/// this host's or other hosts' ephemeral ranges.
fn warn(sel: &Selection, ephemeral: Option<(u32, u32)>, out: &mut Scan) {
    if sel.dir != super::select::Dir::Both {
        out.warnings.push(format!(
            "--dir {}: the other direction stays tracked; for TCP its packets then start entries that \
             conntrack may see as invalid (a `ct state invalid drop` rule drops them)",
            if sel.dir == super::select::Dir::In { "in" } else { "out" }
        ));
    }
    if let Some((lo, hi)) = ephemeral {
        let eph = PortRange {
            lo: u16::try_from(lo).unwrap_or(u16::MAX),
            hi: u16::try_from(hi).unwrap_or(u16::MAX),
        };
        for p in sel.ports.iter().filter(|p| p.overlaps(&eph)) {
            out.warnings.push(format!(
                "port {p} is in the ephemeral range {lo}-{hi} (net.ipv4.ip_local_port_range): this host's \
                 own outgoing connections may use it as their source port and go untracked"
            ));
        }
    }
    // Other hosts pick their source ports from their own ephemeral ranges
    // (Linux 32768-60999, Windows and the BSDs 49152-65535): a client
    // connecting from such a port to this host would see its packets match
    // the upstream reply rule, our replies the upstream rule: untracked.
    let clients = PortRange {
        lo: 32768,
        hi: 65535,
    };
    for p in sel.upstream_ports.iter().filter(|p| p.overlaps(&clients)) {
        out.warnings.push(format!(
            "upstream port {p} is in the range other hosts choose source ports from (32768-65535): \
             a client connecting to this host from it would go untracked too, both ways, and pass \
             the untracked accepts"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ruleset::{parse_iptables_save, parse_nft_text};

    fn sel(lo: bool, ports: &[&str]) -> Selection {
        Selection {
            lo,
            ports: ports.iter().map(|p| PortRange::parse(p).unwrap()).collect(),
            ..Selection::default()
        }
    }

    fn nft(text: &str) -> Vec<(Backend, Ruleset)> {
        vec![(Backend::Nft, parse_nft_text(text))]
    }

    /// testns's ruleset: `ct state` rules, accept policies.
    const CLEAN: &str = "table inet ctdt {\n\tchain in {\n\t\ttype filter hook input priority filter; policy accept;\n\
        \t\tct state established,related accept\n\t}\n\tchain out {\n\t\ttype filter hook output priority filter; policy accept;\n\
        \t\tct state new accept\n\t}\n}\n";

    #[test]
    fn a_clean_ruleset_has_no_conflicts() {
        let s = scan(&sel(true, &["80"]), &nft(CLEAN), Form::Nft, None);
        assert!(s.conflicts.is_empty(), "{:#?}", s.conflicts);
        assert!(s.inserts.is_empty());
    }

    #[test]
    fn dnat_on_the_port_blocks_and_another_port_does_not() {
        let rs = nft(&format!(
            "{CLEAN}table ip nat {{\n\tchain pre {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\ttcp dport 8080 dnat to 10.0.0.2:80\n\t}}\n}}\n"
        ));
        let s = scan(&sel(false, &["8080"]), &rs, Form::Nft, None);
        assert_eq!(s.conflicts.len(), 1, "{:#?}", s.conflicts);
        let c = &s.conflicts[0];
        assert_eq!((c.kind, c.blocks), (Kind::Nat, true));
        assert_eq!(
            (c.table.as_str(), c.chain.as_str(), c.position),
            ("nat", "pre", Some(1))
        );
        assert!(c.why.contains("never NATed"), "{}", c.why);
        // --dir out: the connection's first packet still meets the DNAT.
        let out = Selection {
            dir: super::super::select::Dir::Out,
            ..sel(false, &["8080"])
        };
        assert_eq!(scan(&out, &rs, Form::Nft, None).conflicts.len(), 1);
        assert!(scan(&sel(false, &["443"]), &rs, Form::Nft, None)
            .conflicts
            .is_empty());
    }

    #[test]
    fn stateful_drop_gets_an_insert_and_a_closed_port_is_a_bypass() {
        let rs = nft(
            "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\
             \t\tct state established,related accept\n\t\tct state invalid drop\n\
             \t\ttcp dport 22 accept\n\t\ttcp dport 80 ct state new accept\n\t}\n\
             \tchain output {\n\t\ttype filter hook output priority filter; policy drop;\n\
             \t\tct state established,related accept\n\t\tudp dport 53 accept\n\t}\n}\n",
        );
        let s = scan(&sel(false, &["80"]), &rs, Form::Nft, None);
        let kinds: Vec<(Kind, &str, bool)> = s
            .conflicts
            .iter()
            .map(|c| (c.kind, c.chain.as_str(), c.blocks))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::StatefulDrop, "input", false),
                (Kind::StatefulDrop, "output", false),
            ],
            "{:#?}",
            s.conflicts
        );
        let ins: Vec<String> = s.inserts.iter().map(Insert::nft).collect();
        assert_eq!(
            ins,
            vec![
                "insert rule inet filter input index 0 tcp dport 80 ct state untracked accept comment \"ctdoctor-notrack\"",
                "insert rule inet filter output index 0 tcp sport 80 ct state untracked accept comment \"ctdoctor-notrack\"",
                "insert rule inet filter output index 0 fib daddr type local tcp dport 80 ct state untracked accept comment \"ctdoctor-notrack\"",
            ]
        );
        // Port 8080 is not open: accepting it untracked would open it.
        let s = scan(&sel(false, &["8080"]), &rs, Form::Nft, None);
        let bypass: Vec<&Conflict> = s
            .conflicts
            .iter()
            .filter(|c| c.kind == Kind::Bypass)
            .collect();
        assert_eq!(bypass.len(), 1, "{:#?}", s.conflicts);
        assert!(bypass[0].blocks);
        assert_eq!(bypass[0].rule, "policy drop");
    }

    #[test]
    fn iptables_chains_need_the_iptables_form() {
        let t = "*filter\n:INPUT DROP [0:0]\n:OUTPUT DROP [0:0]\n:ufw-before-input - [0:0]\n\
                 :ufw-before-output - [0:0]\n-A INPUT -j ufw-before-input\n-A OUTPUT -j ufw-before-output\n\
                 -A ufw-before-input -i lo -j ACCEPT\n\
                 -A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                 -A ufw-before-input -p tcp -m tcp --dport 22 -j ACCEPT\n\
                 -A ufw-before-output -o lo -j ACCEPT\n\
                 -A ufw-before-output -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n";
        let views = vec![(Backend::IptablesNft, parse_iptables_save(t, "ip"))];
        // Loopback is accepted by ufw before any state rule: no conflict.
        assert!(scan(&sel(true, &[]), &views, Form::Nft, None)
            .conflicts
            .is_empty());
        // ssh arrives accepted by its port rule; its replies leave only by
        // the state rule: one conflict (replies and local clients).
        let s = scan(&sel(false, &["22"]), &views, Form::Nft, None);
        assert_eq!(s.conflicts.len(), 1, "{:#?}", s.conflicts);
        let c = &s.conflicts[0];
        assert_eq!(
            (c.kind, c.chain.as_str(), c.owner),
            (Kind::StatefulDrop, "OUTPUT", None)
        );
        assert!(c.blocks, "the nft form cannot add to iptables' chains");
        assert!(
            c.why.contains("ctdoctor notrack --port 22 --iptables"),
            "{}",
            c.why
        );
        assert!(s.inserts.is_empty());
        let s = scan(&sel(false, &["22"]), &views, Form::Iptables, None);
        assert!(!s.conflicts[0].blocks);
        // Local clients go out through lo, which ufw accepts: only the
        // replies need the accept.
        let lines: Vec<String> = s.inserts.iter().flat_map(Insert::iptables).collect();
        assert_eq!(
            lines,
            vec![
                "-I OUTPUT 1 -p tcp -m multiport --sports 22 -m conntrack --ctstate UNTRACKED -m comment --comment ctdoctor-notrack -j ACCEPT",
            ]
        );
        // ufw does not open 8080: an untracked accept would.
        let s = scan(&sel(false, &["8080"]), &views, Form::Iptables, None);
        let b: Vec<&Conflict> = s
            .conflicts
            .iter()
            .filter(|c| c.kind == Kind::Bypass)
            .collect();
        assert_eq!(b.len(), 1, "{:#?}", s.conflicts);
        assert_eq!(
            (b[0].chain.as_str(), b[0].rule.as_str(), b[0].blocks),
            ("INPUT", "policy drop", true)
        );
    }

    #[test]
    fn ours_are_left_out_and_reported() {
        let rs = nft(&format!(
            "{CLEAN}table inet ctdoctor_notrack {{\n\tchain prerouting {{\n\t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tiif \"lo\" notrack\n\t}}\n}}\n"
        ));
        let s = scan(&sel(true, &[]), &rs, Form::Nft, None);
        assert_eq!(s.already, vec!["table inet ctdoctor_notrack"]);
        assert!(s.conflicts.is_empty());
    }

    #[test]
    fn warnings_for_one_direction_and_ephemeral_ports() {
        let s = Selection {
            dir: super::super::select::Dir::In,
            ..sel(false, &["40000"])
        };
        let w = scan(&s, &[], Form::Nft, Some((32768, 60999))).warnings;
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[1].contains("ephemeral range 32768-60999"));
        let s = Selection {
            upstream_ports: vec![PortRange::parse("50000").unwrap()],
            ..Selection::default()
        };
        let w = scan(&s, &[], Form::Nft, Some((32768, 60999))).warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("upstream port 50000"));
        let s = Selection {
            upstream_ports: vec![PortRange::parse("8080").unwrap()],
            ..Selection::default()
        };
        assert!(scan(&s, &[], Form::Nft, None).warnings.is_empty());
    }
}
