//! `nft [-a] list ruleset` text into a [`Ruleset`]: for captures made
//! before ctdoctor read nft's JSON, and for nft built without JSON. Blocks
//! (`table`, `chain`, and sets/maps/flowtables, skipped) by their braces;
//! a chain's `type … hook … priority …; policy …;` line; every other line
//! of a chain is a rule (`# handle N` read off its end). Common matches and
//! statements are read word by word; any other word is kept as an opaque
//! match, so a rule this reader does not understand is never taken for one
//! that matches nothing.
//!
//! Not for: nft's full grammar (the JSON reader is the precise one).

use super::{
    priority_value, Base, Chain, Field, Nat, NatKind, Policy, Rule, Ruleset, Table, Verdict,
};

enum Block {
    Table { family: String, name: String },
    Chain { name: String },
    Other,
}

/// Parse; never fails (lines that are not understood are skipped).
pub fn parse_nft_text(text: &str) -> Ruleset {
    let mut rs = Ruleset::default();
    let mut stack: Vec<Block> = Vec::new();
    let mut pos = 0u32;
    for raw in text.lines() {
        let (line, handle) = split_handle(raw.trim());
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('}') {
            stack.pop();
            continue;
        }
        let table = stack.iter().rev().find_map(|b| match b {
            Block::Table { family, name } => Some((family.clone(), name.clone())),
            _ => None,
        });
        if let Some(head) = line.strip_suffix('{') {
            let w: Vec<&str> = head.split_whitespace().collect();
            match (w.first().copied(), table.as_ref(), stack.last()) {
                (Some("table"), None, _) => {
                    let (family, name) = match w.len() {
                        2 => ("ip".to_string(), w[1].to_string()),
                        _ => (
                            w.get(1).unwrap_or(&"ip").to_string(),
                            w.get(2).unwrap_or(&"").to_string(),
                        ),
                    };
                    rs.tables.push(Table {
                        family: family.clone(),
                        name: name.clone(),
                        handle,
                    });
                    stack.push(Block::Table { family, name });
                }
                (Some("chain"), Some((family, tname)), Some(Block::Table { .. })) => {
                    let name = w.get(1).unwrap_or(&"").to_string();
                    rs.chains.push(Chain {
                        family: family.clone(),
                        table: tname.clone(),
                        name: name.clone(),
                        handle,
                        base: None,
                    });
                    pos = 0;
                    stack.push(Block::Chain { name });
                }
                _ => stack.push(Block::Other),
            }
            continue;
        }
        let (Some(Block::Chain { name }), Some((family, tname))) = (stack.last(), table) else {
            continue;
        };
        if line.starts_with("type ") || line.starts_with("policy ") {
            if let Some(c) = rs.chains.last_mut() {
                chain_header(c, line);
            }
            continue;
        }
        // Chain attributes, not rules.
        if ["flags ", "comment ", "devices ", "device "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            continue;
        }
        pos += 1;
        let mut r = Rule::new(&family, &tname, name, pos);
        r.handle = handle;
        r.text = line.to_string();
        rule_words(&mut r, &tokens(line));
        rs.rules.push(r);
    }
    rs
}

/// `… # handle 12` → (`…`, Some(12)).
fn split_handle(line: &str) -> (&str, Option<u64>) {
    match line.rfind("# handle ") {
        Some(i) => {
            let h = line[i + 9..].trim().parse().ok();
            (line[..i].trim_end(), h)
        }
        None => (line, None),
    }
}

/// `type filter hook input priority filter; policy drop;`
fn chain_header(c: &mut Chain, line: &str) {
    let mut base = c.base.clone().unwrap_or(Base {
        hook: String::new(),
        kind: "filter".into(),
        priority: 0,
        policy: Policy::Accept,
    });
    for part in line.split(';') {
        let w: Vec<&str> = part.split_whitespace().collect();
        let mut i = 0;
        while i < w.len() {
            match w[i] {
                "type" => base.kind = w.get(i + 1).unwrap_or(&"filter").to_string(),
                "hook" => base.hook = w.get(i + 1).unwrap_or(&"").to_string(),
                "priority" => {
                    let p = w[i + 1..]
                        .iter()
                        .take_while(|x| !matches!(**x, "policy" | "device" | "devices"))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ");
                    base.priority = priority_value(&p).unwrap_or(0);
                }
                "policy" => {
                    base.policy = if w.get(i + 1) == Some(&"drop") {
                        Policy::Drop
                    } else {
                        Policy::Accept
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
    if !base.hook.is_empty() {
        c.base = Some(base);
    }
}

/// Words, with `"quoted strings"` and `{ set, elements }` as one token each
/// (a set token keeps its braces).
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                cur.push('"');
                for d in chars.by_ref() {
                    cur.push(d);
                    if d == '"' {
                        break;
                    }
                }
            }
            '{' if cur.is_empty() => {
                let mut depth = 1;
                let mut set = String::from("{");
                for d in chars.by_ref() {
                    set.push(d);
                    match d {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                out.push(set);
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The values of one token: a set `{ a, b }`, a flag list `a,b`, a
/// quoted name, one value.
fn values(tok: &str) -> Vec<String> {
    let t = tok.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(t);
    inner
        .split(',')
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

const OPS: &[&str] = &["==", "!=", "<", ">", "<=", ">="];
const VERDICTS: &[&str] = &["accept", "drop", "reject", "return", "continue", "queue"];

/// Read a rule's words into its matches, verdict and statements.
fn rule_words(r: &mut Rule, t: &[String]) {
    let mut i = 0;
    while i < t.len() {
        i = match statement(r, t, i) {
            Step::End => return,
            Step::At(j) => j,
            Step::Match => match_words(r, t, i),
        };
    }
}

/// Word `i` of `t` ("" past the end).
fn word_at(t: &[String], i: usize) -> &str {
    t.get(i).map(String::as_str).unwrap_or("")
}

/// What reading a word as a statement or verdict did.
enum Step {
    /// The rule is read (what follows `reject` or `queue` is their options).
    End,
    /// Go on at this word.
    At(usize),
    /// Not a statement or verdict: a match.
    Match,
}

/// The statement or verdict at word `i`, read into `r`.
fn statement(r: &mut Rule, t: &[String], mut i: usize) -> Step {
    let w = |i: usize| word_at(t, i);
    let word = w(i);
    match word {
        "accept" => r.verdict = Verdict::Accept,
        "drop" => r.verdict = Verdict::Drop,
        "reject" => {
            r.verdict = Verdict::Reject;
            return Step::End;
        }
        "return" => r.verdict = Verdict::Return,
        "continue" => r.verdict = Verdict::Continue,
        "queue" => {
            r.verdict = Verdict::Queue;
            return Step::End;
        }
        "jump" | "goto" => {
            let target = w(i + 1).to_string();
            r.verdict = if word == "jump" {
                Verdict::Jump(target)
            } else {
                Verdict::Goto(target)
            };
            return Step::At(i + 2);
        }
        "notrack" => r.notrack = true,
        "counter" if w(i + 1) == "packets" => i += 4,
        "comment" => {
            r.comment = Some(w(i + 1).trim_matches('"').to_string());
            return Step::At(i + 2);
        }
        "log" => {
            while matches!(w(i + 1), "prefix" | "level" | "flags" | "group") {
                i += 2;
            }
        }
        "masquerade" | "snat" | "dnat" | "redirect" => return Step::At(nat_words(r, t, i)),
        _ => {}
    }
    if VERDICTS.contains(&word)
        || matches!(
            word,
            "notrack" | "counter" | "log" | "masquerade" | "snat" | "dnat"
        )
    {
        return Step::At(i + 1);
    }
    Step::Match
}

/// A NAT statement at word `i` (`snat ip to 10.0.0.1 random`): into `r`;
/// returns the word after it.
fn nat_words(r: &mut Rule, t: &[String], i: usize) -> usize {
    let w = |i: usize| word_at(t, i);
    let kind = match w(i) {
        "masquerade" => NatKind::Masquerade,
        "snat" => NatKind::Snat,
        "dnat" => NatKind::Dnat,
        _ => NatKind::Redirect,
    };
    let mut j = i + 1;
    if matches!(w(j), "ip" | "ip6") {
        j += 1;
    }
    let mut to = None;
    if w(j) == "to" {
        to = Some(w(j + 1).to_string());
        j += 2;
    }
    while matches!(w(j), "random" | "persistent" | "fully-random") {
        j += 1;
    }
    r.nat = Some(Nat { kind, to });
    r.verdict = Verdict::Accept;
    j
}

/// How many words name the field at word `i` (`tcp dport`: 2); None for a
/// word that is no field this reader knows.
fn field_len(t: &[String], i: usize) -> Option<usize> {
    let w = |i: usize| word_at(t, i);
    Some(match w(i) {
        "ct" if matches!(w(i + 1), "original" | "reply") => 3,
        "tcp" | "udp" | "sctp" | "dccp" | "udplite" | "th" | "ip" | "ip6" | "ct" | "meta" => 2,
        "fib" => {
            let mut n = 1;
            while !matches!(w(i + n), "type" | "oif" | "oifname" | "") {
                n += 1;
            }
            n + 1
        }
        "iif" | "oif" | "iifname" | "oifname" | "mark" => 1,
        _ => return None,
    })
}

/// The match at word `i` (or a `… set` statement, or a verdict map), read
/// into `r`; returns the word after it. An unknown word is an opaque match.
fn match_words(r: &mut Rule, t: &[String], i: usize) -> usize {
    let w = |i: usize| word_at(t, i);
    let Some(field_len) = field_len(t, i) else {
        r.add_match(Field::Other(w(i).to_string()), false, Vec::new());
        return i + 1;
    };
    let name: Vec<&str> = (i..i + field_len).map(w).collect();
    let mut j = i + field_len;
    // `ct zone set 2`, `meta mark set 1`, `ct mark set meta mark`.
    if w(j) == "set" {
        if name[0] == "ct" {
            let key = name[name.len() - 1].to_string();
            if !r.ct_set.contains(&key) {
                r.ct_set.push(key);
            }
        }
        // The value (possibly `meta mark`, two words).
        return j + if matches!(w(j + 1), "meta" | "ct") {
            3
        } else {
            2
        };
    }
    if w(j) == "vmap" {
        r.verdict = Verdict::Other("vmap".into());
        return j + 2;
    }
    let mut neg = false;
    let mut op = "==";
    if OPS.contains(&w(j)) {
        op = w(j);
        neg = op == "!=";
        j += 1;
    }
    let mut vals = values(w(j));
    let field = field_of(r, &name);
    if matches!(op, "<" | ">" | "<=" | ">=") {
        vals = compared(op, &vals, &field);
    }
    r.add_match(field, neg, vals);
    j + 1
}

/// The values of a `<`, `>`, `<=` or `>=` match: a port range for a
/// port, else `?` (unknown).
fn compared(op: &str, vals: &[String], field: &Field) -> Vec<String> {
    match (vals.first().and_then(|v| v.parse::<u32>().ok()), field) {
        (Some(n), Field::Sport | Field::Dport) => {
            let (lo, hi) = match op {
                "<" => (0, n.saturating_sub(1)),
                "<=" => (0, n),
                ">" => (n + 1, 65535),
                _ => (n, 65535),
            };
            vec![format!("{lo}-{hi}")]
        }
        _ => vec!["?".into()],
    }
}

/// The field a match's words name (adding what they imply).
fn field_of(r: &mut Rule, name: &[&str]) -> Field {
    match name {
        ["iif" | "iifname"] | ["meta", "iif" | "iifname"] => Field::Iif,
        ["oif" | "oifname"] | ["meta", "oif" | "oifname"] => Field::Oif,
        ["meta", "l4proto"] => Field::L4proto,
        ["meta", "nfproto"] => Field::Nfproto,
        [p @ ("tcp" | "udp" | "sctp" | "dccp" | "udplite" | "th"), f @ ("dport" | "sport")] => {
            if *p != "th" {
                r.add_match(Field::L4proto, false, vec![p.to_string()]);
            }
            if *f == "dport" {
                Field::Dport
            } else {
                Field::Sport
            }
        }
        [p @ ("ip" | "ip6"), f @ ("saddr" | "daddr")] => {
            r.add_match(Field::Nfproto, false, vec![p.to_string()]);
            if *f == "saddr" {
                Field::Saddr
            } else {
                Field::Daddr
            }
        }
        ["ip", "protocol"] | ["ip6", "nexthdr"] => Field::L4proto,
        ["ct", "state"] => Field::CtState,
        ["ct", k] => Field::Ct(k.to_string()),
        ["ct", d, k] => Field::Ct(format!("{d} {k}")),
        ["fib", rest @ ..] if rest.last() == Some(&"type") && rest.contains(&"daddr") => {
            Field::DaddrType
        }
        ["fib", rest @ ..] if rest.last() == Some(&"type") && rest.contains(&"saddr") => {
            Field::SaddrType
        }
        _ => Field::Other(name.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ruleset::parse_nft_json;

    /// The text and the JSON of the same ruleset read the same (the texts
    /// differ only where the JSON text is rendered by us).
    #[test]
    fn text_reads_like_json() {
        for (text, json) in [
            (
                include_str!("testdata/basic.txt"),
                include_str!("testdata/basic.json"),
            ),
            (
                include_str!("testdata/mixed.txt"),
                include_str!("testdata/mixed.json"),
            ),
        ] {
            let a = parse_nft_text(text);
            let b = parse_nft_json(json).unwrap();
            assert_eq!(a.tables, b.tables);
            assert_eq!(a.chains, b.chains);
            assert_eq!(a.rules.len(), b.rules.len());
            for (x, y) in a.rules.iter().zip(&b.rules) {
                // iptables-nft's xt expressions print differently in text.
                if y.text.contains("xt ") {
                    continue;
                }
                assert_eq!(x.text, y.text);
                assert_eq!(x.handle, y.handle, "{}", x.text);
                assert_eq!(x.matches, y.matches, "{}", x.text);
                assert_eq!(x.verdict, y.verdict, "{}", x.text);
                assert_eq!(x.nat, y.nat, "{}", x.text);
                assert_eq!(x.notrack, y.notrack, "{}", x.text);
                assert_eq!(x.ct_set, y.ct_set, "{}", x.text);
            }
        }
    }

    #[test]
    fn old_capture_without_handles_sets_and_one_line_blocks() {
        let t = "table inet filter {\n\tset blocked {\n\t\ttype ipv4_addr\n\t\telements = { 1.2.3.4,\n\t\t\t     5.6.7.8 }\n\t}\n\
                 \tchain input {\n\t\ttype filter hook input priority filter + 10; policy drop;\n\
                 \t\tip saddr @blocked drop\n\t\ttcp dport != 22 ct state new limit rate 5/second accept\n\t}\n}\n";
        let rs = parse_nft_text(t);
        assert_eq!(rs.rules.len(), 2, "{:#?}", rs.rules);
        let b = rs.chains[0].base.as_ref().unwrap();
        assert_eq!((b.priority, b.policy), (10, Policy::Drop));
        assert_eq!(rs.rules[0].handle, None);
        assert!(rs.rules[0]
            .matches
            .iter()
            .any(|m| m.field == Field::Saddr && m.values == ["@blocked"]));
        let r = &rs.rules[1];
        assert!(r
            .matches
            .iter()
            .any(|m| m.field == Field::Dport && m.neg && m.values == ["22"]));
        assert!(r
            .matches
            .iter()
            .any(|m| m.field == Field::Other("limit".into())));
        assert_eq!(r.verdict, Verdict::Accept);
    }
}
