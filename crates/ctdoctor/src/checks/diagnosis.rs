//! The headline of a report: the symptom (the worst rule users would feel:
//! a full table, drops, ports, queues, fds), the rule that explains it (what
//! the table is full *of*, which timeout holds it), and one line saying so —
//! e.g. "conntrack table full in netns gw: 98.8 % of 4,096 entries are
//! TIME_WAIT (time_wait 120 s)". The cause is the rule that explains the
//! symptom, not merely the next severity.
//!
//! Pure: a function of the findings. Not for: judging (the rules did).

use super::{conntrack, sockets, state_mix, Finding, Severity};
use crate::util::thousands;
use serde::{Deserialize, Serialize};

/// The report's headline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The rule id of what users feel, or null when nothing is wrong.
    pub symptom: Option<String>,
    /// The rule id that explains it, or null when none does.
    pub cause: Option<String>,
    pub headline: String,
}

/// Rules that are symptoms, in the order they explain each other (a full
/// table first: drops and usage are its signs).
const SYMPTOMS: &[&str] = &[
    conntrack::TABLE_FULL,
    conntrack::USAGE,
    conntrack::DROPS,
    sockets::PORTS,
    sockets::LISTEN_OVERFLOW,
    super::fds::PROCESS,
    super::fds::SYSTEM,
    sockets::SOFTNET_DROPS,
    super::nic::DROPS,
    super::nic::ALLOWANCE,
    conntrack::EXPECT_TABLE,
    sockets::TIME_WAIT,
    conntrack::HASH_LOAD,
];

fn find<'a>(f: &'a [Finding], id: &str) -> Option<&'a Finding> {
    f.iter().find(|x| x.id == id)
}

fn num(f: &Finding, key: &str) -> Option<f64> {
    f.evidence.get(key).and_then(|v| v.as_f64())
}

fn text(f: &Finding, key: &str) -> Option<String> {
    f.evidence
        .get(key)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The share (percent) of the table a state-mix rule accounts for.
fn share(f: &Finding) -> f64 {
    num(f, "time_wait_percent")
        .or_else(|| num(f, "percent"))
        .unwrap_or(0.0)
}

/// What the table is full of, when a state-mix rule measured it. Never a
/// cause that was not measured: the timeouts alone explain nothing.
fn table_cause(f: &[Finding]) -> Option<(&Finding, String)> {
    let c = [
        state_mix::TIME_WAIT,
        state_mix::IDLE_ESTABLISHED,
        state_mix::UNREPLIED_SYN,
    ]
    .iter()
    .filter_map(|id| find(f, id))
    .filter(|x| x.severity >= Severity::Warning)
    .max_by(|a, b| share(a).total_cmp(&share(b)))
    .or_else(|| find(f, state_mix::LIVE_LOAD).filter(|x| x.severity >= Severity::Warning))?;
    let entries = num(c, "entries")
        .or_else(|| find(f, state_mix::TIME_WAIT).and_then(|t| num(t, "entries")))
        .map(|e| match num(c, "sample_of") {
            Some(of) => format!(
                " of a {} -entry sample of {}",
                thousands(e as u64),
                thousands(of as u64)
            ),
            None => format!(" of {} entries", thousands(e as u64)),
        })
        .unwrap_or_default();
    let p = share(c);
    let line = match c.id.as_str() {
        state_mix::TIME_WAIT => format!(
            "{p} %{entries} are TIME_WAIT (time_wait {} s)",
            num(c, "time_wait_timeout_secs").map_or("?".into(), |s| format!("{s:.0}"))
        ),
        state_mix::IDLE_ESTABLISHED => {
            let over = num(c, "idle_over_secs").unwrap_or(7875.0);
            let mut l = format!(
                "{p} %{entries} are ESTABLISHED idle > {:.1} h",
                over / 3600.0
            );
            if let (Some(top), Some(s)) = (text(c, "top_sources"), num(c, "top_sources_share")) {
                let n = top.split(", ").count();
                l.push_str(&format!(", {n} sources hold {s} % of them ({top})"));
            }
            l
        }
        state_mix::LIVE_LOAD => format!(
            "{p} %{entries} saw a packet in the last {} s: the table is too small for the live load",
            num(c, "active_secs").map_or("300".into(), |s| format!("{s:.0}"))
        ),
        _ => {
            let mut l = format!("{p} %{entries} are unanswered SYN_SENT");
            if let Some(top) = text(c, "top_destinations") {
                l.push_str(&format!(", most to {top}"));
            }
            l
        }
    };
    Some((c, line))
}

/// Why no cause is named for a table symptom: the table was not read, it
/// is no longer full, or no state rule fired on a table that was read.
fn no_table_cause(f: &[Finding], s: &Finding) -> String {
    let usage_f = find(f, conntrack::USAGE);
    let usage = usage_f.map_or(s.title.clone(), |u| u.title.clone());
    if let Some(why) = find(f, state_mix::TIME_WAIT).and_then(|m| text(m, "unavailable")) {
        let how = if why.contains("permission") {
            "run ctdoctor as root to read them"
        } else {
            "`ctdoctor check --deep` reads them"
        };
        return format!(
            "{usage}; cause unknown: the table's contents were not read ({why}); {how}"
        );
    }
    // A table that was full and has room now: table_full's title says how
    // full it is now (not "too small for the load").
    let pct = usage_f.and_then(|u| num(u, "usage_pct"));
    if s.id == conntrack::TABLE_FULL
        && s.severity < Severity::Critical
        && pct.is_some_and(|p| p < 75.0)
    {
        return s.title.clone();
    }
    format!("{usage}; cause unknown: no state or idle age dominates the entries read")
}

/// The headline when no rule found a problem: "no problem found" only when
/// every rule judged its input; else how many did and did not.
fn nothing_wrong(f: &[Finding], who: &str) -> String {
    let (checked, unchecked) = super::coverage(f);
    let first = f
        .iter()
        .filter(|x| !x.is_checked())
        .find_map(|x| text(x, "unavailable"));
    // A warning that is no symptom (e.g. settings lost at reboot) still
    // stands: "no problem found" is never said beside it.
    let warned: Vec<&Finding> = f
        .iter()
        .filter(|x| x.severity >= Severity::Warning)
        .collect();
    if let Some(w) = warned.first() {
        let of = match unchecked {
            0 => String::new(),
            n => format!(" ({checked} of {} rules checked)", checked + n),
        };
        return format!(
            "no packet loss found in {who}{of}; {} warning{}: {} ({})",
            warned.len(),
            if warned.len() == 1 { "" } else { "s" },
            w.title,
            w.id
        );
    }
    match (checked, unchecked) {
        (_, 0) => format!("no problem found in {who}"),
        (0, n) => format!(
            "nothing checked in {who}: none of the {n} rules could read its input{}",
            first.map(|u| format!(" (e.g. {u})")).unwrap_or_default()
        ),
        (c, n) => format!(
            "no problem in the {c} of {} rules checked in {who}; {n} not checked (their input was not read)",
            c + n
        ),
    }
}

/// The headline of findings about the namespace `who` ("netns gw", "the host").
pub fn diagnose(f: &[Finding], who: &str) -> Diagnosis {
    let symptom = SYMPTOMS
        .iter()
        .filter_map(|id| find(f, id))
        .filter(|x| x.severity >= Severity::Warning)
        .fold(None::<&Finding>, |best, x| match best {
            Some(b) if b.severity >= x.severity => Some(b),
            _ => Some(x),
        });
    let Some(s) = symptom else {
        return Diagnosis {
            symptom: None,
            cause: None,
            headline: nothing_wrong(f, who) + &nginx_while_ok(f),
        };
    };
    let table =
        [conntrack::TABLE_FULL, conntrack::USAGE, conntrack::DROPS].contains(&s.id.as_str());
    let (cause, why) = if table {
        match table_cause(f) {
            Some((c, line)) => (Some(c.id.clone()), line),
            None => (None, no_table_cause(f, s)),
        }
    } else if s.id == sockets::PORTS {
        match find(f, sockets::TIME_WAIT).filter(|t| t.severity >= Severity::Warning) {
            Some(t) => (Some(t.id.clone()), t.title.clone()),
            None => (None, s.title.clone()),
        }
    } else {
        (None, s.title.clone())
    };
    let what = match s.id.as_str() {
        conntrack::TABLE_FULL if s.severity == Severity::Critical => {
            format!("conntrack table full in {who}")
        }
        conntrack::TABLE_FULL => format!("conntrack table was full in {who}"),
        conntrack::USAGE => format!(
            "conntrack table {} % full in {who}",
            num(s, "usage_pct").map_or("?".into(), |p| format!("{p:.0}"))
        ),
        conntrack::DROPS => format!("conntrack drops in {who}"),
        sockets::PORTS => format!("ephemeral ports short in {who}"),
        sockets::LISTEN_OVERFLOW => format!("listen queues overflow in {who}"),
        _ => format!("{} in {who}", s.id),
    };
    let nginx = super::nginx::headline(&[s])
        .map(|n| format!("; {n}"))
        .unwrap_or_default();
    Diagnosis {
        symptom: Some(s.id.clone()),
        cause,
        headline: format!("{what}: {why}{nginx}"),
    }
}

/// nginx's errors on checked rules that are ok ("; nginx logged … (see
/// sockets.ports)"), or nothing: a 504 hunt must not read "no problem
/// found" alone while nginx logs connect timeouts.
fn nginx_while_ok(f: &[Finding]) -> String {
    let ok: Vec<&Finding> = f
        .iter()
        .filter(|x| x.evidence.contains_key("nginx_while_ok"))
        .collect();
    let ids: Vec<&str> = ok.iter().map(|x| x.id.as_str()).collect();
    super::nginx::headline(&ok)
        .map(|n| format!("; {n} (see {})", ids.join(", ")))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Unavailable;

    fn f(id: &str, sev: Severity) -> Finding {
        Finding::new(id, sev, format!("{id} title"))
    }

    #[test]
    fn nothing_wrong() {
        let d = diagnose(&[f(conntrack::USAGE, Severity::Ok)], "the host");
        assert_eq!(d.symptom, None);
        assert_eq!(d.headline, "no problem found in the host");
    }

    #[test]
    fn no_problem_is_never_said_of_rules_that_were_not_checked() {
        let gone = Unavailable::Missing {
            what: "proc/net/dev".into(),
        };
        let v = vec![
            f(conntrack::USAGE, Severity::Ok),
            Finding::unavailable(super::super::nic::DROPS, &gone),
        ];
        let d = diagnose(&v, "the host");
        assert_eq!(d.symptom, None);
        assert_eq!(
            d.headline,
            "no problem in the 1 of 2 rules checked in the host; 1 not checked (their input was not read)"
        );
        let none = diagnose(&v[1..], "this netns");
        assert_eq!(
            none.headline,
            "nothing checked in this netns: none of the 1 rules could read its input (e.g. proc/net/dev: not present)"
        );
    }

    #[test]
    fn a_full_table_is_explained_by_what_fills_it() {
        let v = vec![
            f(conntrack::TABLE_FULL, Severity::Critical),
            f(conntrack::USAGE, Severity::Critical),
            f(conntrack::TIMEOUTS, Severity::Warning),
            f(state_mix::TIME_WAIT, Severity::Warning)
                .with("time_wait_percent", 98.8)
                .with("entries", 4096)
                .with("time_wait_timeout_secs", 120),
            f(state_mix::UNREPLIED_SYN, Severity::Warning).with("percent", 1.0),
        ];
        let d = diagnose(&v, "netns gw");
        assert_eq!(d.symptom.as_deref(), Some(conntrack::TABLE_FULL));
        assert_eq!(d.cause.as_deref(), Some(state_mix::TIME_WAIT));
        assert_eq!(
            d.headline,
            "conntrack table full in netns gw: 98.8 % of 4,096 entries are TIME_WAIT (time_wait 120 s)"
        );
    }

    #[test]
    fn idle_clients_name_their_sources() {
        let v = vec![
            f(conntrack::TABLE_FULL, Severity::Critical),
            f(state_mix::IDLE_ESTABLISHED, Severity::Warning)
                .with("percent", 83.0)
                .with("idle_over_secs", 7875)
                .with(
                    "top_sources",
                    "10.0.0.1 (500), 10.0.0.2 (300), 10.0.0.3 (20)",
                )
                .with("top_sources_share", 61.0),
        ];
        let d = diagnose(&v, "netns gw");
        assert_eq!(d.cause.as_deref(), Some(state_mix::IDLE_ESTABLISHED));
        assert!(
            d.headline.contains("83 % are ESTABLISHED idle > 2.2 h"),
            "{}",
            d.headline
        );
        assert!(
            d.headline.contains("3 sources hold 61 % of them"),
            "{}",
            d.headline
        );
    }

    /// "no problem found" never stands beside a warning (issue 21: after
    /// `tune --netns X --apply`, not_persistent warned under that headline).
    #[test]
    fn a_warning_that_is_no_symptom_is_named_in_the_headline() {
        let mut w = f(super::super::persist::NOT_PERSISTENT, Severity::Warning);
        w.title = "1 setting(s) in this netns differ".into();
        let d = diagnose(&[f(conntrack::USAGE, Severity::Ok), w], "netns gw");
        assert_eq!(d.symptom, None);
        assert_eq!(
            d.headline,
            "no packet loss found in netns gw; 1 warning: 1 setting(s) in this netns differ (conntrack.not_persistent)"
        );
    }

    #[test]
    fn the_cause_is_not_merely_the_next_severity() {
        // A critical usage with an unrelated warning: no cause claimed.
        let v = vec![
            f(conntrack::USAGE, Severity::Critical).with("usage_pct", 95.0),
            f(sockets::LISTEN_OVERFLOW, Severity::Warning),
        ];
        let d = diagnose(&v, "the host");
        assert_eq!(d.symptom.as_deref(), Some(conntrack::USAGE));
        assert_eq!(d.cause, None);
        assert!(
            d.headline
                .contains("cause unknown: no state or idle age dominates"),
            "{}",
            d.headline
        );
    }

    /// The timeouts rule alone is not a cause: nothing measured what fills
    /// the table (issue 21: plain check named timeouts for a table it had
    /// not read).
    #[test]
    fn an_unread_table_has_an_unknown_cause() {
        let gone = Unavailable::Failed {
            what: "table contents".into(),
            detail: "not dumped".into(),
        };
        let v = vec![
            f(conntrack::TABLE_FULL, Severity::Critical),
            f(conntrack::USAGE, Severity::Critical).with("usage_pct", 100.0),
            f(conntrack::TIMEOUTS, Severity::Warning),
            Finding::unavailable(state_mix::TIME_WAIT, &gone),
        ];
        let d = diagnose(&v, "netns gw");
        assert_eq!(d.cause, None);
        assert!(
            d.headline
                .contains("cause unknown: the table's contents were not read"),
            "{}",
            d.headline
        );
        assert!(d.headline.contains("--deep"), "{}", d.headline);
    }

    #[test]
    fn live_entries_mean_a_table_too_small() {
        let v = vec![
            f(conntrack::TABLE_FULL, Severity::Critical),
            f(state_mix::TIME_WAIT, Severity::Ok).with("entries", 262_144),
            f(state_mix::LIVE_LOAD, Severity::Warning)
                .with("percent", 99.9)
                .with("entries", 262_144)
                .with("active_secs", 300),
        ];
        let d = diagnose(&v, "netns gw");
        assert_eq!(d.cause.as_deref(), Some(state_mix::LIVE_LOAD));
        assert_eq!(
            d.headline,
            "conntrack table full in netns gw: 99.9 % of 262,144 entries saw a packet in the last 300 s: the table is too small for the live load"
        );
    }

    /// Issue 21: a 504 hunt reads the gateway's own words in the headline:
    /// on the symptom, and where every rule is ok.
    #[test]
    fn nginx_errors_join_the_headline() {
        let mut ports = f(sockets::PORTS, Severity::Critical);
        ports.title = "ports short".into();
        ports = ports.with("nginx_lines", serde_json::json!({"addr_not_avail": 1234}));
        let d = diagnose(&[ports], "netns gw");
        assert_eq!(
            d.headline,
            "ephemeral ports short in netns gw: ports short; nginx logged 99: Cannot assign \
             requested address ×1,234 in the last hour"
        );
        let ok = f(conntrack::USAGE, Severity::Ok)
            .with("nginx_lines", serde_json::json!({"connect_timeout": 5}))
            .with("nginx_while_ok", "…");
        let d = diagnose(&[ok], "netns gw");
        assert_eq!(d.symptom, None);
        assert_eq!(
            d.headline,
            "no problem found in netns gw; nginx logged upstream connect timed out (110) ×5 \
             in the last hour (see conntrack.usage)"
        );
    }

    /// After relief, a table that was full is not "too small" at 0.1 %.
    #[test]
    fn a_relieved_table_says_so() {
        let mut full = f(conntrack::TABLE_FULL, Severity::Warning);
        full.title =
            "conntrack table was full earlier: last \"table full\" line 40 s ago; 0.1 % full now"
                .into();
        let v = vec![
            full,
            f(conntrack::USAGE, Severity::Ok).with("usage_pct", 0.1),
            f(state_mix::TIME_WAIT, Severity::Ok),
        ];
        let d = diagnose(&v, "netns gw");
        assert_eq!(d.cause, None);
        assert!(d.headline.ends_with("; 0.1 % full now"), "{}", d.headline);
        assert!(!d.headline.contains("too small"), "{}", d.headline);
    }
}
