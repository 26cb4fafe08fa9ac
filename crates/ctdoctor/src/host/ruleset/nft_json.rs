//! `nft -j list ruleset` into a [`Ruleset`]: tables, chains and rules from
//! the JSON schema of libnftables-json(5), each rule's expressions turned
//! into matches, a verdict and what it does — and back into nft syntax for
//! the rule's text (the JSON has no text of its own).
//!
//! Not for: running nft (host/consumers.rs).

use super::{Base, Chain, Field, Nat, NatKind, Policy, Rule, Ruleset, Table, Verdict};
use serde_json::Value;
use std::collections::HashMap;

/// Parse the JSON; an error only when it is not nft's JSON at all.
/// Objects other than tables, chains and rules (sets, maps, counters,
/// flowtables) are skipped; an expression this model does not know becomes
/// an opaque match, never an error.
pub fn parse_nft_json(text: &str) -> Result<Ruleset, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("no \"nftables\" array")?;
    let mut rs = Ruleset::default();
    let mut positions: HashMap<(String, String, String), u32> = HashMap::new();
    for item in items {
        let Some((kind, o)) = item.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let handle = o.get("handle").and_then(Value::as_u64);
        match kind.as_str() {
            "table" => rs.tables.push(Table {
                family: s("family"),
                name: s("name"),
                handle,
            }),
            "chain" => {
                let base = o.get("hook").and_then(Value::as_str).map(|hook| Base {
                    hook: hook.to_string(),
                    kind: o
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("filter")
                        .to_string(),
                    priority: o
                        .get("prio")
                        .and_then(Value::as_i64)
                        .and_then(|p| i32::try_from(p).ok())
                        .unwrap_or(0),
                    policy: match o.get("policy").and_then(Value::as_str) {
                        Some("drop") => Policy::Drop,
                        _ => Policy::Accept,
                    },
                });
                rs.chains.push(Chain {
                    family: s("family"),
                    table: s("table"),
                    name: s("name"),
                    handle,
                    base,
                });
            }
            "rule" => {
                let (f, t, c) = (s("family"), s("table"), s("chain"));
                let pos = positions
                    .entry((f.clone(), t.clone(), c.clone()))
                    .or_insert(0);
                *pos += 1;
                let mut r = Rule::new(&f, &t, &c, *pos);
                r.handle = handle;
                r.comment = o.get("comment").and_then(Value::as_str).map(String::from);
                let exprs = o.get("expr").and_then(Value::as_array);
                let mut text = Vec::new();
                for e in exprs.into_iter().flatten() {
                    expr(&mut r, e);
                    text.push(render_stmt(e));
                }
                if let Some(c) = &r.comment {
                    text.push(format!("comment {}", quote(c)));
                }
                r.text = text.join(" ");
                rs.rules.push(r);
            }
            _ => {}
        }
    }
    Ok(rs)
}

/// One statement of a rule into the model.
fn expr(r: &mut Rule, e: &Value) {
    let Some((k, v)) = e.as_object().and_then(|m| m.iter().next()) else {
        return;
    };
    match k.as_str() {
        "match" => match_expr(r, v),
        "accept" => r.verdict = Verdict::Accept,
        "drop" => r.verdict = Verdict::Drop,
        "reject" => r.verdict = Verdict::Reject,
        "return" => r.verdict = Verdict::Return,
        "continue" => r.verdict = Verdict::Continue,
        "queue" => r.verdict = Verdict::Queue,
        "jump" | "goto" => {
            let target = v
                .get("target")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            r.verdict = if k == "jump" {
                Verdict::Jump(target)
            } else {
                Verdict::Goto(target)
            };
        }
        "dnat" | "snat" | "masquerade" | "redirect" => {
            let kind = match k.as_str() {
                "dnat" => NatKind::Dnat,
                "snat" => NatKind::Snat,
                "masquerade" => NatKind::Masquerade,
                _ => NatKind::Redirect,
            };
            r.nat = Some(Nat {
                kind,
                to: nat_to(v),
            });
            // A NAT statement ends the chain for the packet (NF_ACCEPT).
            r.verdict = Verdict::Accept;
        }
        "notrack" => r.notrack = true,
        "counter" => r.packets = v.get("packets").and_then(Value::as_u64),
        "mangle" => {
            if let Some(ct) = v.get("key").and_then(|k| k.get("ct")) {
                let key = ct.get("key").and_then(Value::as_str).unwrap_or("?");
                push_once(&mut r.ct_set, key);
            }
        }
        "ct helper" => push_once(&mut r.ct_set, "helper"),
        "xt" => xt(r, v),
        "vmap" => r.verdict = Verdict::Other("vmap".into()),
        "tproxy" | "synproxy" | "fwd" => r.verdict = Verdict::Other(k.clone()),
        "limit" | "quota" | "meter" | "set" | "map" => {
            // Statements that also decide whether the rule goes on.
            if matches!(k.as_str(), "limit" | "quota") {
                r.add_match(Field::Other(k.clone()), false, Vec::new());
            }
        }
        _ => {}
    }
}

/// iptables-nft's compatibility expressions: only their names are shown.
fn xt(r: &mut Rule, v: &Value) {
    let name = v.get("name").and_then(Value::as_str).unwrap_or("?");
    match v.get("type").and_then(Value::as_str) {
        Some("target") => match name {
            "MASQUERADE" | "SNAT" | "DNAT" | "REDIRECT" => {
                let kind = match name {
                    "MASQUERADE" => NatKind::Masquerade,
                    "SNAT" => NatKind::Snat,
                    "DNAT" => NatKind::Dnat,
                    _ => NatKind::Redirect,
                };
                r.nat = Some(Nat { kind, to: None });
                r.verdict = Verdict::Accept;
            }
            "NOTRACK" => r.notrack = true,
            "CT" => r.verdict = Verdict::Other("xt CT".into()),
            "REJECT" => r.verdict = Verdict::Reject,
            "CONNMARK" => push_once(&mut r.ct_set, "mark"),
            "LOG" | "NFLOG" | "MARK" | "TCPMSS" | "TOS" | "DSCP" | "TTL" | "HL" | "CLASSIFY"
            | "CHECKSUM" => {}
            other => r.verdict = Verdict::Other(format!("xt {other}")),
        },
        _ => match name {
            "conntrack" | "state" => {
                r.add_match(Field::Ct(format!("xt {name}")), false, Vec::new())
            }
            "connmark" => r.add_match(Field::Ct("mark".into()), false, Vec::new()),
            "helper" => r.add_match(Field::Ct("helper".into()), false, Vec::new()),
            "comment" => {}
            other => r.add_match(Field::Other(format!("xt {other}")), false, Vec::new()),
        },
    }
}

fn push_once(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn nat_to(v: &Value) -> Option<String> {
    let addr = v.get("addr").map(value_text);
    let port = v.get("port").map(value_text);
    match (addr, port) {
        (Some(a), Some(p)) => Some(format!("{a}:{p}")),
        (Some(a), None) => Some(a),
        (None, Some(p)) => Some(format!(":{p}")),
        (None, None) => None,
    }
}

/// A `match` expression into conditions.
fn match_expr(r: &mut Rule, m: &Value) {
    let op = m.get("op").and_then(Value::as_str).unwrap_or("==");
    let left = m.get("left").unwrap_or(&Value::Null);
    let right = m.get("right").unwrap_or(&Value::Null);
    let field = left_field(r, left);
    let (neg, values) = match op {
        "==" | "in" => (false, values_of(right)),
        "!=" => (true, values_of(right)),
        "<" | ">" | "<=" | ">=" if matches!(field, Field::Sport | Field::Dport) => {
            match right.as_u64() {
                Some(n) => {
                    let (lo, hi) = match op {
                        "<" => (0, n.saturating_sub(1)),
                        "<=" => (0, n),
                        ">" => (n + 1, 65535),
                        _ => (n, 65535),
                    };
                    (false, vec![format!("{lo}-{hi}")])
                }
                None => (false, vec!["?".into()]),
            }
        }
        _ => {
            r.add_match(
                Field::Other(format!("{} {op}", render_left(left))),
                false,
                Vec::new(),
            );
            return;
        }
    };
    r.add_match(field, neg, values);
}

/// What the left side of a match looks at; adds the protocol or family a
/// payload field implies (`tcp dport` → tcp, `ip saddr` → ip).
fn left_field(r: &mut Rule, left: &Value) -> Field {
    if let Some(p) = left.get("payload") {
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("");
        let field = p.get("field").and_then(Value::as_str).unwrap_or("");
        return match (proto, field) {
            ("tcp" | "udp" | "sctp" | "dccp" | "udplite" | "th", "dport" | "sport") => {
                if proto != "th" {
                    r.add_match(Field::L4proto, false, vec![proto.to_string()]);
                }
                if field == "dport" {
                    Field::Dport
                } else {
                    Field::Sport
                }
            }
            ("ip" | "ip6", "saddr" | "daddr") => {
                r.add_match(Field::Nfproto, false, vec![proto.to_string()]);
                if field == "saddr" {
                    Field::Saddr
                } else {
                    Field::Daddr
                }
            }
            ("ip", "protocol") | ("ip6", "nexthdr") => {
                r.add_match(Field::Nfproto, false, vec![proto.to_string()]);
                Field::L4proto
            }
            _ => {
                if matches!(proto, "tcp" | "udp") {
                    r.add_match(Field::L4proto, false, vec![proto.to_string()]);
                }
                Field::Other(render_left(left))
            }
        };
    }
    if let Some(m) = left.get("meta") {
        return match m.get("key").and_then(Value::as_str).unwrap_or("") {
            "iif" | "iifname" => Field::Iif,
            "oif" | "oifname" => Field::Oif,
            "l4proto" => Field::L4proto,
            "nfproto" => Field::Nfproto,
            _ => Field::Other(render_left(left)),
        };
    }
    if let Some(ct) = left.get("ct") {
        let key = ct.get("key").and_then(Value::as_str).unwrap_or("?");
        return match (key, ct.get("dir")) {
            ("state", None) => Field::CtState,
            (k, None) => Field::Ct(k.to_string()),
            (k, Some(d)) => Field::Ct(format!("{} {k}", d.as_str().unwrap_or("?"))),
        };
    }
    if let Some(fib) = left.get("fib") {
        let flags = values_of(fib.get("flags").unwrap_or(&Value::Null));
        if fib.get("result").and_then(Value::as_str) == Some("type") {
            if flags.iter().any(|f| f == "daddr") {
                return Field::DaddrType;
            }
            if flags.iter().any(|f| f == "saddr") {
                return Field::SaddrType;
            }
        }
    }
    Field::Other(render_left(left))
}

/// The values of a right-hand side: a number, a string, a list of flags, a
/// set, a range (`a-b`), a prefix (`a/len`); `?` for what is not a value.
fn values_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().map(value_text).collect(),
        Value::Object(o) => match o.get("set") {
            Some(Value::Array(a)) => a.iter().map(value_text).collect(),
            Some(other) => vec![value_text(other)],
            None => vec![value_text(v)],
        },
        Value::Null => Vec::new(),
        _ => vec![value_text(v)],
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(o) => {
            if let Some(Value::Array(r)) = o.get("range") {
                if let [a, b] = r.as_slice() {
                    return format!("{}-{}", value_text(a), value_text(b));
                }
            }
            if let Some(p) = o.get("prefix") {
                return format!(
                    "{}/{}",
                    p.get("addr").map(value_text).unwrap_or_default(),
                    p.get("len").map(value_text).unwrap_or_default()
                );
            }
            "?".into()
        }
        _ => "?".into(),
    }
}

/// nft syntax for the left side of a match.
fn render_left(left: &Value) -> String {
    let Some((k, v)) = left.as_object().and_then(|m| m.iter().next()) else {
        return value_text(left);
    };
    let s = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or("?");
    match k.as_str() {
        "payload" => match v.get("protocol") {
            Some(_) => format!("{} {}", s("protocol"), s("field")),
            None => "@payload".into(),
        },
        "meta" => match s("key") {
            k @ ("iif" | "oif" | "iifname" | "oifname" | "iiftype" | "oiftype" | "skuid"
            | "skgid" | "iifgroup" | "oifgroup") => k.to_string(),
            k => format!("meta {k}"),
        },
        "ct" => match v.get("dir").and_then(Value::as_str) {
            Some(d) => format!("ct {d} {}", s("key")),
            None => format!("ct {}", s("key")),
        },
        "fib" => {
            let flags = values_of(v.get("flags").unwrap_or(&Value::Null)).join(" . ");
            format!("fib {flags} {}", s("result"))
        }
        other => other.to_string(),
    }
}

/// nft syntax for a right-hand side; interface names quoted as nft does.
fn render_right(left: &Value, v: &Value) -> String {
    let iface = left
        .get("meta")
        .and_then(|m| m.get("key"))
        .and_then(Value::as_str)
        .is_some_and(|k| matches!(k, "iif" | "oif" | "iifname" | "oifname"));
    let one = |x: &Value| {
        let t = value_text(x);
        if iface && x.is_string() {
            quote(&t)
        } else {
            t
        }
    };
    match v {
        Value::Array(a) => a.iter().map(one).collect::<Vec<_>>().join(","),
        Value::Object(o) if o.contains_key("set") => {
            let items: Vec<String> = match o.get("set") {
                Some(Value::Array(a)) => a.iter().map(one).collect(),
                Some(x) => vec![one(x)],
                None => Vec::new(),
            };
            format!("{{ {} }}", items.join(", "))
        }
        _ => one(v),
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

/// One statement in nft syntax (approximate for the rarer ones).
fn render_stmt(e: &Value) -> String {
    let Some((k, v)) = e.as_object().and_then(|m| m.iter().next()) else {
        return "?".into();
    };
    match k.as_str() {
        "match" => {
            let left = v.get("left").unwrap_or(&Value::Null);
            let right = v.get("right").unwrap_or(&Value::Null);
            let op = match v.get("op").and_then(Value::as_str) {
                Some("==") | Some("in") | None => String::new(),
                Some(op) => format!("{op} "),
            };
            format!("{} {op}{}", render_left(left), render_right(left, right))
        }
        "jump" | "goto" => format!(
            "{k} {}",
            v.get("target").and_then(Value::as_str).unwrap_or("?")
        ),
        "counter" => match (v.get("packets"), v.get("bytes")) {
            (Some(p), Some(b)) => format!("counter packets {p} bytes {b}"),
            _ => "counter".into(),
        },
        "dnat" | "snat" => {
            let fam = v
                .get("family")
                .and_then(Value::as_str)
                .map(|f| format!("{f} "))
                .unwrap_or_default();
            match nat_to(v) {
                Some(to) => format!("{k} {fam}to {to}"),
                None => k.clone(),
            }
        }
        "masquerade" | "redirect" => match v.get("port").map(value_text) {
            Some(p) => format!("{k} to :{p}"),
            None => k.clone(),
        },
        "mangle" => {
            let key = v.get("key").map(render_left).unwrap_or_default();
            let val = v.get("value").map(value_text).unwrap_or_default();
            format!("{key} set {val}")
        }
        "log" => match v.get("prefix").and_then(Value::as_str) {
            Some(p) => format!("log prefix {}", quote(p)),
            None => "log".into(),
        },
        "xt" => format!(
            "xt {} {}",
            v.get("type").and_then(Value::as_str).unwrap_or("?"),
            v.get("name").and_then(Value::as_str).unwrap_or("?")
        ),
        "vmap" => format!(
            "{} vmap {{ … }}",
            v.get("key").map(render_left).unwrap_or_default()
        ),
        "limit" => match (v.get("rate"), v.get("per").and_then(Value::as_str)) {
            (Some(r), Some(p)) => format!("limit rate {r}/{p}"),
            _ => "limit".into(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ruleset::{Match, Policy};

    /// `nft -j list ruleset` of a netns (nft 1.0.6, kernel 6.18) holding:
    /// inet filter input (policy drop; ct state, iif lo, a port set, a
    /// prefix), ip nat pre/post (dnat, redirect, masquerade, snat) and a
    /// raw chain (notrack, ct zone set, ct status).
    const JSON: &str = include_str!("testdata/basic.json");

    fn m(field: Field, neg: bool, v: &[&str]) -> Match {
        Match {
            field,
            neg,
            values: v.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tables_chains_and_rules() {
        let rs = parse_nft_json(JSON).unwrap();
        assert_eq!(rs.tables.len(), 3);
        let input = rs.chain("inet", "filter", "input").unwrap();
        let base = input.base.as_ref().unwrap();
        assert_eq!((base.hook.as_str(), base.priority), ("input", 0));
        assert_eq!(base.policy, Policy::Drop);
        let rules: Vec<&Rule> = rs.rules_of(input).collect();
        assert_eq!(rules.len(), 5);
        assert_eq!(rules[0].text, "ct state established,related accept");
        assert_eq!(rules[0].handle, Some(2));
        assert_eq!(rules[0].position, 1);
        assert_eq!(
            rules[0].matches,
            vec![m(Field::CtState, false, &["established", "related"])]
        );
        assert_eq!(rules[0].verdict, Verdict::Accept);
        assert_eq!(rules[2].text, "iif \"lo\" accept");
        assert_eq!(rules[2].matches, vec![m(Field::Iif, false, &["lo"])]);
        assert_eq!(rules[3].text, "tcp dport { 22, 80, 443 } accept");
        assert_eq!(
            rules[3].matches,
            vec![
                m(Field::L4proto, false, &["tcp"]),
                m(Field::Dport, false, &["22", "80", "443"])
            ]
        );
        assert_eq!(rules[4].text, "ip saddr 10.0.0.0/8 tcp dport 8080 accept");
        assert!(rules[4]
            .matches
            .contains(&m(Field::Saddr, false, &["10.0.0.0/8"])));
        assert!(rules[4]
            .matches
            .contains(&m(Field::Nfproto, false, &["ip"])));
    }

    #[test]
    fn nat_notrack_and_ct_keys() {
        let rs = parse_nft_json(JSON).unwrap();
        let nat: Vec<(NatKind, Option<String>, &str)> = rs
            .rules
            .iter()
            .filter_map(|r| {
                r.nat
                    .as_ref()
                    .map(|n| (n.kind, n.to.clone(), r.text.as_str()))
            })
            .collect();
        assert_eq!(
            nat,
            vec![
                (
                    NatKind::Dnat,
                    Some("10.0.0.2:8080".into()),
                    "tcp dport 80 dnat to 10.0.0.2:8080"
                ),
                (
                    NatKind::Redirect,
                    Some(":443".into()),
                    "iifname \"eth0\" tcp dport 8443 redirect to :443"
                ),
                (NatKind::Masquerade, None, "oifname \"eth0\" masquerade"),
                (
                    NatKind::Snat,
                    Some("192.0.2.1".into()),
                    "ip saddr 10.0.0.0/8 snat to 192.0.2.1"
                ),
            ]
        );
        let raw = rs.chain("ip", "raw", "pre").unwrap();
        let r: Vec<&Rule> = rs.rules_of(raw).collect();
        assert!(r[0].notrack);
        assert_eq!(r[1].ct_set, vec!["zone"]);
        assert_eq!(r[1].text, "ct zone set 2");
        assert_eq!(r[2].ct_reads().collect::<Vec<_>>(), vec!["status"]);
    }

    #[test]
    fn not_json_is_an_error_and_unknown_objects_are_skipped() {
        assert!(parse_nft_json("table inet x {}").is_err());
        assert!(parse_nft_json("{}").is_err());
        let rs = parse_nft_json(
            r#"{"nftables":[{"metainfo":{}},{"set":{"name":"s"}},
               {"rule":{"family":"inet","table":"t","chain":"c","handle":9,
                 "expr":[{"frobnicate":{"x":1}},{"match":{"op":"==","left":{"meta":{"key":"mark"}},"right":1}},{"drop":null}]}}]}"#,
        )
        .unwrap();
        assert_eq!(rs.rules.len(), 1);
        assert_eq!(rs.rules[0].verdict, Verdict::Drop);
        assert_eq!(
            rs.rules[0].matches,
            vec![m(Field::Other("meta mark".into()), false, &["1"])]
        );
    }
}
