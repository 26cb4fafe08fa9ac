//! nginx's own words on the findings that explain them: the errors its
//! error logs held in the last hour (the `nginx` fact, host::nginx), put
//! as evidence on the rules whose shortage makes nginx log them ([`TIES`]):
//!
//! | nginx logged | evidence on |
//! |---|---|
//! | `connect() … failed (99: Cannot assign requested address)` | `sockets.ports` |
//! | `(24: Too many open files)` (accept4(), socket(), open()) | `fds.process` |
//! | `(23: Too many open files in system)` | `fds.system` |
//! | `upstream timed out (110: …) while connecting to upstream`, `connect() … failed (110: …)` | `conntrack.table_full`, `conntrack.usage`, `sockets.ports` |
//!
//! Not a rule: nginx's errors are the symptom users see; whether a table,
//! the ports or a limit is short is what the rules judge, and a severity
//! of its own would count one incident twice. The evidence never changes a
//! severity; where the rule is ok, `nginx_while_ok` says that nginx logged
//! them all the same and what that means (no false alarm, no silence).
//! Timeouts after the connection was made (`while reading response header
//! from upstream`) are the upstream's slowness: counted in the fact, tied
//! to no rule.
//!
//! Pure: a pass over the findings with the facts, after the rules ran.
//! Not for: reading the logs (host::nginx), or judging anything.

use super::{conntrack, fds, sockets, Finding, Severity};
use crate::snapshot::{Facts, NginxClass as Class, NginxErrors};
use crate::util::thousands;
use serde_json::{Map, Value};

/// A rule and the nginx errors its shortage explains.
pub struct Tie {
    pub rule: &'static str,
    pub classes: &'static [Class],
    /// What nginx's errors mean when the rule is ok.
    pub when_ok: &'static str,
}

/// Every tie, by rule.
pub const TIES: &[Tie] = &[
    Tie {
        rule: conntrack::TABLE_FULL,
        classes: &[Class::ConnectTimeout],
        when_ok: "no sign of a full table here: the SYNs were lost elsewhere (the upstream \
                  down or overloaded, a firewall, the NIC, a table further on the path)",
    },
    Tie {
        rule: conntrack::USAGE,
        classes: &[Class::ConnectTimeout],
        when_ok: "the table has room now (whether it was full when they were logged: \
                  conntrack.table_full)",
    },
    Tie {
        rule: sockets::PORTS,
        classes: &[Class::AddrNotAvail, Class::ConnectTimeout],
        when_ok: "no destination is short of ports now: a burst of new upstream connections \
                  that passed, or not a port shortage",
    },
    Tie {
        rule: fds::PROCESS,
        classes: &[Class::TooManyOpenFiles],
        when_ok: "no process is near its open-files limit now: a burst that passed (a proxied \
                  request holds 2 fds in a worker, whose limit is worker_rlimit_nofile)",
    },
    Tie {
        rule: fds::SYSTEM,
        classes: &[Class::TooManyFilesInSystem],
        when_ok: "the system-wide file table has room now: a burst that passed",
    },
];

/// "the last hour", "the last 30 min".
fn window_text(secs: u64) -> String {
    if secs == 3600 {
        "the last hour".into()
    } else {
        format!("the last {} min", secs / 60)
    }
}

/// "45 s", "12 min", "3.5 h".
fn ago(secs: u64) -> String {
    if secs < 90 {
        format!("{secs} s")
    } else if secs < 5400 {
        format!("{} min", (secs + 30) / 60)
    } else {
        format!("{:.1} h", secs as f64 / 3600.0)
    }
}

/// The evidence of `classes` in `n`: the human lines, the counts by class
/// key, and how far back the counts reach when a busy log was read only in
/// part (they are then a lower bound); None when nginx logged none of
/// them in the window.
struct Said {
    lines: Vec<String>,
    counts: Map<String, Value>,
    covers_secs: Option<u64>,
}

fn evidence(n: &NginxErrors, classes: &[Class]) -> Option<Said> {
    let mut s = Said {
        lines: Vec::new(),
        counts: Map::new(),
        covers_secs: None,
    };
    for c in classes {
        let Some(x) = n.classes.get(c).filter(|x| x.lines > 0) else {
            continue;
        };
        let when = match x.covers_secs {
            Some(secs) => format!(
                "the last {} (as far back as the tail read reaches; more in {})",
                ago(secs),
                window_text(n.window_secs)
            ),
            None => window_text(n.window_secs),
        };
        s.lines.push(format!(
            "{} ×{} in {when}, newest {} ({} ago, {})",
            c.label(),
            thousands(x.lines),
            x.newest,
            ago(x.newest_age_secs),
            x.log
        ));
        if let Ok(Value::String(k)) = serde_json::to_value(c) {
            s.counts.insert(k, x.lines.into());
        }
        s.covers_secs = match (s.covers_secs, x.covers_secs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    (!s.lines.is_empty()).then_some(s)
}

/// Put nginx's errors on the findings they tie to (see the module docs).
pub fn annotate(findings: &mut [Finding], facts: &Facts) {
    let Ok(n) = &facts.nginx else { return };
    for f in findings.iter_mut() {
        let Some(tie) = TIES.iter().find(|t| t.rule == f.id) else {
            continue;
        };
        let Some(said) = evidence(n, tie.classes) else {
            continue;
        };
        f.evidence.insert("nginx_errors".into(), said.lines.into());
        f.evidence
            .insert("nginx_lines".into(), Value::Object(said.counts));
        if let Some(secs) = said.covers_secs {
            f.evidence
                .insert("nginx_lines_cover_secs".into(), secs.into());
        }
        if f.severity == Severity::Ok && f.is_checked() {
            f.evidence.insert(
                "nginx_while_ok".into(),
                format!(
                    "nginx logged these in {} all the same: {}",
                    window_text(n.window_secs),
                    tie.when_ok
                )
                .into(),
            );
        }
    }
}

/// "nginx logged 99: Cannot assign requested address ×1,234 and upstream
/// connect timed out (110) ×57 in the last hour", from the `nginx_lines`
/// of `findings` (each class once), for the headline; None without any.
/// Counts of a log read in part say how far back they reach.
pub fn headline(findings: &[&Finding]) -> Option<String> {
    let mut seen: Vec<(Class, u64)> = Vec::new();
    let cover = findings
        .iter()
        .filter_map(|f| f.evidence.get("nginx_lines_cover_secs")?.as_u64())
        .min();
    for f in findings {
        let Some(Value::Object(m)) = f.evidence.get("nginx_lines") else {
            continue;
        };
        for (k, v) in m {
            let (Some(c), Some(n)) = (Class::from_key(k), v.as_u64()) else {
                continue;
            };
            if !seen.iter().any(|(s, _)| *s == c) {
                seen.push((c, n));
            }
        }
    }
    if seen.is_empty() {
        return None;
    }
    seen.sort();
    let parts: Vec<String> = seen
        .iter()
        .map(|(c, n)| format!("{} ×{}", c.label(), thousands(*n)))
        .collect();
    let when = match cover {
        Some(secs) => format!("the last {} (the part of its log read)", ago(secs)),
        None => window_text(crate::snapshot::NGINX_WINDOW_SECS),
    };
    Some(format!("nginx logged {} in {when}", parts.join(" and ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{NginxClassCount, Unavailable};

    fn summary(classes: &[(Class, u64)]) -> NginxErrors {
        NginxErrors {
            window_secs: 3600,
            classes: classes
                .iter()
                .map(|&(c, lines)| {
                    let x = NginxClassCount {
                        lines,
                        newest: "2026/12/07 09:00:01".into(),
                        newest_age_secs: 120,
                        log: "/var/log/nginx/error.log".into(),
                        covers_secs: None,
                    };
                    (c, x)
                })
                .collect(),
            ..NginxErrors::default()
        }
    }

    fn facts(n: NginxErrors) -> Facts {
        let mut f = crate::host::read_facts(&crate::host::Root::captured(Default::default()));
        f.nginx = Ok(n);
        f
    }

    #[test]
    fn errors_go_to_the_rules_that_explain_them() {
        let n = summary(&[
            (Class::AddrNotAvail, 1234),
            (Class::ConnectTimeout, 57),
            (Class::UpstreamTimeout, 3),
        ]);
        let mut v = vec![
            Finding::new(sockets::PORTS, Severity::Critical, "ports"),
            Finding::new(conntrack::USAGE, Severity::Ok, "room"),
            Finding::new(fds::PROCESS, Severity::Ok, "fine"),
            Finding::unavailable(
                conntrack::TABLE_FULL,
                &Unavailable::Missing { what: "x".into() },
            ),
        ];
        annotate(&mut v, &facts(n));
        let e = &v[0].evidence;
        assert_eq!(
            e["nginx_errors"][0],
            "99: Cannot assign requested address ×1,234 in the last hour, newest \
             2026/12/07 09:00:01 (2 min ago, /var/log/nginx/error.log)"
        );
        assert_eq!(e["nginx_lines"]["addr_not_avail"], 1234);
        assert_eq!(e["nginx_lines"]["connect_timeout"], 57);
        assert!(
            !e.contains_key("nginx_while_ok"),
            "a problem needs no excuse"
        );
        // Ok, yet nginx logged them: said, severity untouched.
        let e = &v[1].evidence;
        assert_eq!(e["nginx_lines"]["connect_timeout"], 57);
        assert!(e["nginx_while_ok"]
            .as_str()
            .unwrap()
            .contains("the table has room now"));
        assert_eq!(v[1].severity, Severity::Ok);
        // Nothing of its own logged: nothing added.
        assert!(v[2].evidence.is_empty());
        // Not checked: the evidence, no "ok" reading of it.
        assert_eq!(v[3].evidence["nginx_lines"]["connect_timeout"], 57);
        assert!(!v[3].evidence.contains_key("nginx_while_ok"));
        assert!(!v[3].is_checked());
    }

    #[test]
    fn a_busy_log_read_in_part_says_its_counts_are_a_lower_bound() {
        let mut n = summary(&[(Class::AddrNotAvail, 5000)]);
        n.classes.get_mut(&Class::AddrNotAvail).unwrap().covers_secs = Some(240);
        let mut v = vec![Finding::new(sockets::PORTS, Severity::Critical, "ports")];
        annotate(&mut v, &facts(n));
        let e = &v[0].evidence;
        assert_eq!(e["nginx_lines_cover_secs"], 240);
        assert_eq!(
            headline(&[&v[0]]).unwrap(),
            "nginx logged 99: Cannot assign requested address ×5,000 in the last 4 min (the \
             part of its log read)"
        );
        assert!(
            e["nginx_errors"][0]
                .as_str()
                .unwrap()
                .contains("×5,000 in the last 4 min (as far back as the tail read reaches; more in the last hour)"),
            "{e:?}"
        );
    }

    #[test]
    fn no_fact_or_no_lines_adds_nothing() {
        let mut v = vec![Finding::new(sockets::PORTS, Severity::Ok, "ports")];
        let mut f = facts(summary(&[(Class::UpstreamTimeout, 9)]));
        annotate(&mut v, &f);
        assert!(v[0].evidence.is_empty());
        f.nginx = Err(Unavailable::Missing { what: "p".into() });
        annotate(&mut v, &f);
        assert!(v[0].evidence.is_empty());
    }

    #[test]
    fn the_headline_names_each_class_once() {
        let mut v = vec![
            Finding::new(sockets::PORTS, Severity::Critical, "ports"),
            Finding::new(conntrack::USAGE, Severity::Ok, "room"),
        ];
        let n = summary(&[(Class::ConnectTimeout, 57), (Class::AddrNotAvail, 1234)]);
        annotate(&mut v, &facts(n));
        assert_eq!(
            headline(&[&v[0], &v[1]]).unwrap(),
            "nginx logged 99: Cannot assign requested address ×1,234 and upstream connect \
             timed out (110) ×57 in the last hour"
        );
        assert_eq!(headline(&[]), None);
    }
}
