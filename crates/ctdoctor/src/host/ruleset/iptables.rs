//! `iptables-save` / `ip6tables-save` text (either backend) into a
//! [`Ruleset`]: `*table` sections, `:CHAIN POLICY [p:b]` declarations
//! (built-in chains become base chains with their table's hook and
//! priority) and `-A CHAIN …` rules, whose options are read into matches:
//! `-i/-o/-s/-d/-p`, `! ` negations, `-m tcp/udp --dport/--sport`,
//! `-m multiport`, `-m state/conntrack`, `-m addrtype`, `-m comment`; the
//! options of any other module are kept as one opaque match. Targets: the
//! built-in verdicts, NAT (`DNAT/SNAT/MASQUERADE/REDIRECT/NETMAP`),
//! `NOTRACK`/`CT --notrack`, a declared chain (a jump); other targets
//! (`LOG`, `MARK` …) do not end the chain.
//!
//! Not for: running the tools (host/consumers.rs).

use super::{Base, Chain, Field, Nat, NatKind, Policy, Rule, Ruleset, Table, Verdict};

/// Parse one save's text; `family` is `ip` for iptables-save, `ip6` for
/// ip6tables-save. Never fails: lines that are not understood are skipped.
pub fn parse_iptables_save(text: &str, family: &str) -> Ruleset {
    let mut rs = Ruleset::default();
    let mut table: Option<String> = None;
    let mut positions: std::collections::HashMap<String, u32> = Default::default();
    for line in text.lines() {
        let l = line.trim();
        if let Some(t) = l.strip_prefix('*') {
            let t = t.trim().to_string();
            if !rs.has_table(family, &t) {
                rs.tables.push(Table {
                    family: family.into(),
                    name: t.clone(),
                    handle: None,
                });
            }
            positions.clear();
            table = Some(t);
            continue;
        }
        let Some(t) = table.as_deref() else { continue };
        if l == "COMMIT" {
            table = None;
            continue;
        }
        if let Some(decl) = l.strip_prefix(':') {
            let mut w = decl.split_whitespace();
            let name = w.next().unwrap_or("").to_string();
            let policy = w.next().unwrap_or("-");
            let base = builtin_hook(t, &name).map(|(hook, kind, priority)| Base {
                hook: hook.into(),
                kind: kind.into(),
                priority,
                policy: if policy == "DROP" {
                    Policy::Drop
                } else {
                    Policy::Accept
                },
            });
            if rs.chain(family, t, &name).is_none() {
                rs.chains.push(Chain {
                    family: family.into(),
                    table: t.into(),
                    name,
                    handle: None,
                    base,
                });
            }
            continue;
        }
        let Some(rest) = l.strip_prefix("-A ") else {
            continue;
        };
        let words = split_words(rest);
        let Some(chain) = words.first() else { continue };
        let pos = positions.entry(chain.clone()).or_insert(0);
        *pos += 1;
        let mut r = Rule::new(family, t, chain, *pos);
        r.text = l.to_string();
        options(&mut r, &words[1..], &rs);
        rs.rules.push(r);
    }
    rs
}

/// A built-in chain's hook, kind and priority in `table`.
fn builtin_hook(table: &str, chain: &str) -> Option<(&'static str, &'static str, i32)> {
    let hook = match chain {
        "PREROUTING" => "prerouting",
        "INPUT" => "input",
        "FORWARD" => "forward",
        "OUTPUT" => "output",
        "POSTROUTING" => "postrouting",
        _ => return None,
    };
    let (kind, prio) = match table {
        "raw" => ("filter", -300),
        "mangle" => (if hook == "output" { "route" } else { "filter" }, -150),
        "nat" => (
            "nat",
            if matches!(hook, "prerouting" | "output") {
                -100
            } else {
                100
            },
        ),
        "filter" => ("filter", 0),
        "security" => ("filter", 50),
        _ => return None,
    };
    Some((hook, kind, prio))
}

/// Split like a shell: whitespace, `"quoted strings"` with `\"` escapes.
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Ports: `80,8000:8100` → `80`, `8000-8100`.
fn ports(v: &str) -> Vec<String> {
    list(v).into_iter().map(|s| s.replace(':', "-")).collect()
}

fn proto_name(p: &str) -> String {
    match p {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "ipv6-icmp".into(),
        "132" => "sctp".into(),
        other => other.to_lowercase(),
    }
}

/// The options of one `-A` line after the chain name.
fn options(r: &mut Rule, w: &[String], rs: &Ruleset) {
    let mut i = 0;
    let mut neg = false;
    let mut module = String::new();
    let arg = |i: usize| w.get(i).cloned().unwrap_or_default();
    while i < w.len() {
        let o = w[i].as_str();
        if o == "!" {
            neg = true;
            i += 1;
            continue;
        }
        let mut consumed = 2;
        match o {
            "-p" | "--protocol" => {
                let p = proto_name(&arg(i + 1));
                if p != "all" && p != "0" {
                    r.add_match(Field::L4proto, neg, vec![p]);
                }
            }
            "-s" | "--source" | "--src" => r.add_match(Field::Saddr, neg, list(&arg(i + 1))),
            "-d" | "--destination" | "--dst" => r.add_match(Field::Daddr, neg, list(&arg(i + 1))),
            "-i" | "--in-interface" => r.add_match(Field::Iif, neg, vec![arg(i + 1)]),
            "-o" | "--out-interface" => r.add_match(Field::Oif, neg, vec![arg(i + 1)]),
            "-f" | "--fragment" => {
                r.add_match(Field::Other("fragment".into()), neg, Vec::new());
                consumed = 1;
            }
            "-c" | "--set-counters" => consumed = 3,
            "-m" | "--match" => {
                module = arg(i + 1);
                if !matches!(
                    module.as_str(),
                    "tcp"
                        | "udp"
                        | "sctp"
                        | "multiport"
                        | "state"
                        | "conntrack"
                        | "addrtype"
                        | "comment"
                ) {
                    let f = match module.as_str() {
                        "connmark" => Field::Ct("mark".into()),
                        "helper" => Field::Ct("helper".into()),
                        "connlabel" => Field::Ct("label".into()),
                        m => Field::Other(format!("-m {m}")),
                    };
                    r.add_match(f, false, Vec::new());
                }
            }
            "--dport" | "--destination-port" | "--dports" | "--destination-ports" => {
                r.add_match(Field::Dport, neg, ports(&arg(i + 1)))
            }
            "--sport" | "--source-port" | "--sports" | "--source-ports" => {
                r.add_match(Field::Sport, neg, ports(&arg(i + 1)))
            }
            "--state" | "--ctstate" => {
                r.add_match(Field::CtState, neg, list(&arg(i + 1).to_lowercase()))
            }
            "--ctstatus" => r.add_match(Field::Ct("status".into()), neg, list(&arg(i + 1))),
            "--ctdir" => r.add_match(Field::Ct("direction".into()), neg, vec![arg(i + 1)]),
            o if o.starts_with("--ctorig") || o.starts_with("--ctrepl") || o == "--ctproto" => r
                .add_match(
                    Field::Ct(o.trim_start_matches("--").into()),
                    neg,
                    vec![arg(i + 1)],
                ),
            "--ctexpire" => r.add_match(Field::Ct("expiration".into()), neg, vec![arg(i + 1)]),
            "--dst-type" => r.add_match(Field::DaddrType, neg, list(&arg(i + 1).to_lowercase())),
            "--src-type" => r.add_match(Field::SaddrType, neg, list(&arg(i + 1).to_lowercase())),
            "--comment" => r.comment = Some(arg(i + 1)),
            "-j" | "--jump" | "-g" | "--goto" => {
                let target = arg(i + 1);
                let goto = matches!(o, "-g" | "--goto");
                let opts = target_options(&w[i + 2..]);
                target_of(r, &target, goto, &opts, rs);
                return;
            }
            _ if o.starts_with("--") => {
                // An option of a module we do not model: skip its values.
                if module == "tcp" && matches!(o, "--tcp-flags" | "--syn" | "--tcp-option") {
                    r.add_match(Field::Other("tcp flags".into()), neg, Vec::new());
                }
                consumed = 1;
                while i + consumed < w.len()
                    && !w[i + consumed].starts_with('-')
                    && w[i + consumed] != "!"
                {
                    consumed += 1;
                }
            }
            _ => consumed = 1,
        }
        neg = false;
        i += consumed;
    }
}

/// `--opt value` pairs after a target (flags without a value get "").
fn target_options(w: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < w.len() {
        if !w[i].starts_with("--") {
            i += 1;
            continue;
        }
        match w.get(i + 1).filter(|v| !v.starts_with("--")) {
            Some(v) => {
                out.push((w[i].clone(), v.clone()));
                i += 2;
            }
            None => {
                out.push((w[i].clone(), String::new()));
                i += 1;
            }
        }
    }
    out
}

fn target_of(r: &mut Rule, target: &str, goto: bool, opts: &[(String, String)], rs: &Ruleset) {
    let opt = |name: &str| opts.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let nat = |kind: NatKind, key: &str| Nat {
        kind,
        to: opt(key).filter(|v| !v.is_empty()),
    };
    r.verdict = match target {
        "ACCEPT" => Verdict::Accept,
        "DROP" => Verdict::Drop,
        "REJECT" => Verdict::Reject,
        "RETURN" => Verdict::Return,
        "QUEUE" | "NFQUEUE" => Verdict::Queue,
        "DNAT" | "SNAT" | "MASQUERADE" | "REDIRECT" | "NETMAP" => {
            r.nat = Some(match target {
                "DNAT" => nat(NatKind::Dnat, "--to-destination"),
                "SNAT" => nat(NatKind::Snat, "--to-source"),
                "MASQUERADE" => nat(NatKind::Masquerade, "--to-ports"),
                "REDIRECT" => nat(NatKind::Redirect, "--to-ports"),
                _ => nat(
                    if matches!(r.chain.as_str(), "POSTROUTING" | "INPUT") {
                        NatKind::Snat
                    } else {
                        NatKind::Dnat
                    },
                    "--to",
                ),
            });
            Verdict::Accept
        }
        "NOTRACK" => {
            r.notrack = true;
            Verdict::Continue
        }
        "CT" => {
            if opt("--notrack").is_some() {
                r.notrack = true;
            }
            for (k, key) in [
                ("--zone", "zone"),
                ("--zone-orig", "zone"),
                ("--zone-reply", "zone"),
                ("--helper", "helper"),
            ] {
                if opt(k).is_some() && !r.ct_set.iter().any(|x| x == key) {
                    r.ct_set.push(key.into());
                }
            }
            Verdict::Continue
        }
        "CONNMARK" => {
            if opt("--restore-mark").is_some() {
                r.add_match(Field::Ct("mark".into()), false, Vec::new());
            } else if !r.ct_set.iter().any(|x| x == "mark") {
                r.ct_set.push("mark".into());
            }
            Verdict::Continue
        }
        "TPROXY" | "SYNPROXY" | "TEE" => Verdict::Other(target.into()),
        t if rs.chain(&r.family, &r.table, t).is_some() => {
            if goto {
                Verdict::Goto(t.into())
            } else {
                Verdict::Jump(t.into())
            }
        }
        // LOG, NFLOG, MARK, TCPMSS, TOS, CLASSIFY …: the next rule follows.
        _ => Verdict::Continue,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ruleset::Match;

    fn has(r: &Rule, field: Field, neg: bool, v: &[&str]) -> bool {
        r.matches.contains(&Match {
            field,
            neg,
            values: v.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn docker_save() {
        let t = "# Generated by iptables-nft-save v1.8.9\n*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n\
                 -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
                 -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n\
                 -A DOCKER -i docker0 -j RETURN\n\
                 -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n\
                 COMMIT\n*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n\
                 -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                 -A INPUT -p tcp -m multiport --dports 80,443,8000:8100 -m comment --comment \"web \\\"in\\\"\" -j ACCEPT\n\
                 -A INPUT -m set --match-set blocked src -m limit --limit 5/min -j LOG --log-prefix \"x y\"\n\
                 COMMIT\n";
        let rs = parse_iptables_save(t, "ip");
        assert_eq!(rs.tables.len(), 2);
        assert_eq!(rs.rules.len(), 7);
        let pre = rs.chain("ip", "nat", "PREROUTING").unwrap();
        assert_eq!(pre.base.as_ref().unwrap().priority, -100);
        assert!(rs.chain("ip", "nat", "DOCKER").unwrap().base.is_none());
        let r = &rs.rules[0];
        assert!(has(r, Field::DaddrType, false, &["local"]));
        assert_eq!(r.verdict, Verdict::Jump("DOCKER".into()));
        let r = &rs.rules[1];
        assert!(has(r, Field::Saddr, false, &["172.17.0.0/16"]));
        assert!(has(r, Field::Oif, true, &["docker0"]));
        assert_eq!(r.nat.as_ref().unwrap().kind, NatKind::Masquerade);
        let r = &rs.rules[3];
        assert_eq!((r.chain.as_str(), r.position), ("DOCKER", 2));
        assert!(has(r, Field::Iif, true, &["docker0"]));
        assert!(has(r, Field::L4proto, false, &["tcp"]));
        assert!(has(r, Field::Dport, false, &["8080"]));
        assert_eq!(
            r.nat,
            Some(Nat {
                kind: NatKind::Dnat,
                to: Some("172.17.0.2:80".into())
            })
        );
        let input = rs.chain("ip", "filter", "INPUT").unwrap();
        assert_eq!(input.base.as_ref().unwrap().policy, Policy::Drop);
        let r = &rs.rules[4];
        assert!(has(r, Field::CtState, false, &["related", "established"]));
        let r = &rs.rules[5];
        assert!(has(r, Field::Dport, false, &["80", "443", "8000-8100"]));
        assert_eq!(r.comment.as_deref(), Some("web \"in\""));
        assert_eq!(r.verdict, Verdict::Accept);
        let r = &rs.rules[6];
        assert!(has(r, Field::Other("-m set".into()), false, &[]));
        assert!(has(r, Field::Other("-m limit".into()), false, &[]));
        assert_eq!(r.verdict, Verdict::Continue, "LOG goes on");
    }

    #[test]
    fn raw_notrack_zones_and_ipv6() {
        let t = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                 -A PREROUTING -i lo -j CT --notrack\n-A OUTPUT -o lo -j NOTRACK\n\
                 -A PREROUTING -i veth1 -j CT --zone 5\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n\
                 -A INPUT -s 2001:db8::/32 -p ipv6-icmp -j ACCEPT\n-A INPUT -p 6 ! --dport 22 -j REJECT --reject-with tcp-reset\nCOMMIT\n";
        let rs = parse_iptables_save(t, "ip6");
        assert!(rs.rules[0].notrack && rs.rules[1].notrack);
        assert_eq!(rs.rules[2].ct_set, vec!["zone"]);
        assert!(!rs.rules[2].notrack);
        assert_eq!(rs.rules[3].family, "ip6");
        assert!(has(&rs.rules[3], Field::Saddr, false, &["2001:db8::/32"]));
        assert!(has(&rs.rules[4], Field::L4proto, false, &["tcp"]));
        assert!(has(&rs.rules[4], Field::Dport, true, &["22"]));
        assert_eq!(rs.rules[4].verdict, Verdict::Reject);
    }
}
