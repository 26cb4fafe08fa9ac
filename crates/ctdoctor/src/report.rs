//! Reports: findings for one namespace, rendered as text for people or as
//! JSON (schema below) for scripts.
//!
//! JSON schema, version 1 (stable; fields are only ever added):
//! ```text
//! { "schema_version": 1,
//!   "netns": {"inode": u64|null, "name": str|null, "is_init": bool,
//!             "pinned_since_unix": i64|null},
//!   "processes": [{"pid","comm","container"}],      // --all-netns only
//!   "worst": "ok"|"info"|"warning"|"critical",
//!   "checked": u32, "not_checked": u32,   // rules that judged / could not read their input
//!   "diagnosis": {"symptom": id|null, "cause": id|null, "headline": str},
//!   "findings": [{"id","severity","title","evidence":{..},"why","fix",
//!                 "changes":[{"key","value","scope",("netns"),("file")}]}],
//!   "unavailable": [{"kind","what",("detail")}],
//!   "sources": [{"name","ok","duration_us",("error")}],
//!   "creators": {"window_ms","new_events","lost",        // --sample only
//!                "sources": [{"key": addr, "per_sec", "err_per_sec"}],
//!                "dports": [{"key": [proto, port], "per_sec", "err_per_sec"}]},
//!   "drops": {..} }      // --sample only: the `ctdoctor drops --json` object
//! ```
//! `--all-netns` prints `{"schema_version": 1, "worst": .., "namespaces": [report, ..],
//! "not_read": [{"netns": u64|null, "name": str|null, "error": str}]}` where each
//! report is the object above without `schema_version`.
//!
//! A run that checked nothing (every rule "not checked"), or that could not
//! read a namespace it was asked for, also has `"error": str` at the top and
//! exits 3 ([`failure`] says why).

use crate::checks::{Finding, Severity};
use crate::host::creators::Creation;
pub use crate::snapshot::ProcessRef;
use crate::snapshot::{NetnsId, SourceStatus, Unavailable};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

pub const SCHEMA_VERSION: u32 = 1;

/// The findings for one namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub netns: Option<NetnsId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessRef>,
    pub worst: Severity,
    pub findings: Vec<Finding>,
    pub unavailable: Vec<Unavailable>,
    /// How reading each source went (empty for hand-made reports).
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
    /// The headline: symptom, cause, one line.
    pub diagnosis: crate::checks::diagnosis::Diagnosis,
    /// Findings whose rule judged its input.
    #[serde(default)]
    pub checked: usize,
    /// Findings whose rule could not (its input unavailable): "not checked".
    #[serde(default)]
    pub not_checked: usize,
    /// Who created entries during `--sample` (absent without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creators: Option<Creation>,
    /// The drop census of `--sample` (absent without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<crate::drops::report::DropReport>,
}

impl Report {
    pub fn new(
        netns: Option<NetnsId>,
        findings: Vec<Finding>,
        unavailable: Vec<Unavailable>,
    ) -> Report {
        let worst = findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok);
        let (checked, not_checked) = crate::checks::coverage(&findings);
        Report {
            netns: netns.clone(),
            processes: Vec::new(),
            worst,
            diagnosis: crate::checks::diagnosis::diagnose(&findings, &who(&netns)),
            checked,
            not_checked,
            findings,
            unavailable,
            sources: Vec::new(),
            creators: None,
            drops: None,
        }
    }

    /// Add who created entries during the sample; when the headline is a
    /// filling table and one source made at least half of the new
    /// entries, the headline names it (measured, not guessed).
    pub fn with_creators(mut self, c: Creation) -> Report {
        let filling = matches!(
            self.diagnosis.symptom.as_deref(),
            Some(crate::checks::conntrack::TABLE_FULL)
                | Some(crate::checks::conntrack::USAGE)
                | Some(crate::checks::conntrack::DROPS)
        );
        if let (true, Some((src, share))) = (filling, top_share(&c)) {
            if share >= 0.5 {
                self.diagnosis.headline.push_str(&format!(
                    "; {src} made {:.0} % of the new entries during the sample",
                    share * 100.0
                ));
            }
        }
        self.creators = Some(c);
        self
    }
}

/// The top source and its share of the new entries.
fn top_share(c: &Creation) -> Option<(std::net::IpAddr, f64)> {
    let total = c.per_sec();
    let top = c.sources.first()?;
    (total > 0.0).then(|| (top.key, (top.per_sec / total).min(1.0)))
}

/// The creators block of the text report.
fn creators_text(c: &Creation) -> String {
    let secs = c.window_ms as f64 / 1000.0;
    let mut out = String::new();
    if c.new_events == 0 {
        let _ = writeln!(
            out,
            "\nno entry was created during the sample ({secs:.1} s)"
        );
        return out;
    }
    let total = c.per_sec();
    let _ = writeln!(
        out,
        "\nwho created entries during the sample ({secs:.1} s, {} new, {}/s):",
        crate::util::thousands(c.new_events),
        crate::util::thousands(total.round() as u64)
    );
    let line = |items: Vec<(String, f64)>| -> String {
        items
            .iter()
            .take(5)
            .map(|(k, r)| {
                format!(
                    "{k} {}/s ({:.0} %)",
                    crate::util::thousands(r.round() as u64),
                    (r / total * 100.0).min(100.0)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "  sources    {}",
        line(
            c.sources
                .iter()
                .map(|r| (r.key.to_string(), r.per_sec))
                .collect()
        )
    );
    let _ = writeln!(
        out,
        "  dst ports  {}",
        line(
            c.dports
                .iter()
                .map(|r| (crate::table::entry::proto_port(r.key.0, r.key.1), r.per_sec))
                .collect()
        )
    );
    if c.lost > 0 {
        let _ = writeln!(
            out,
            "  ({} bursts of events were lost: rates are lower bounds)",
            c.lost
        );
    }
    out
}

/// How a headline names a namespace: "the host", "netns gw", "netns 4026532177".
pub fn who(n: &Option<NetnsId>) -> String {
    match n {
        Some(id) if id.is_init => "the host".into(),
        Some(id) => match (&id.name, id.inode) {
            (Some(name), _) => format!("netns {name}"),
            (None, Some(i)) => format!("netns {i}"),
            (None, None) => "this netns".into(),
        },
        None => "this netns".into(),
    }
}

/// A namespace that was asked for and could not be read (`--all-netns`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotRead {
    pub netns: Option<u64>,
    pub name: Option<String>,
    pub error: String,
}

/// Why a run failed although it printed reports: nothing was checked in a
/// report (every rule lacked its input), no namespace could be read, or a
/// namespace asked for could not be. None when the verdict stands; with
/// Some the run exits 3 (`cmd::EXIT_FAILED`), whatever the findings say.
pub fn failure(rs: &[Report], not_read: &[NotRead]) -> Option<String> {
    let asked = rs.len() + not_read.len();
    if asked > 0 && rs.is_empty() {
        let first = not_read
            .first()
            .map_or(String::new(), |n| format!(": {}", n.error));
        return Some(format!(
            "none of the {asked} network namespaces could be read{first}"
        ));
    }
    if !not_read.is_empty() {
        let list: Vec<String> = not_read
            .iter()
            .map(|n| {
                let who = match (&n.name, n.netns) {
                    (Some(name), _) => name.clone(),
                    (None, Some(i)) => format!("netns {i}"),
                    (None, None) => "a namespace".into(),
                };
                format!("{who}: {}", n.error)
            })
            .collect();
        return Some(format!(
            "not every network namespace asked for could be read: {}",
            safe(&list.join("; "))
        ));
    }
    let blind: Vec<String> = rs
        .iter()
        .filter(|r| r.checked == 0 && r.not_checked > 0)
        .map(|r| who(&r.netns))
        .collect();
    if !blind.is_empty() {
        let n = rs
            .iter()
            .find(|r| r.checked == 0)
            .map_or(0, |r| r.not_checked);
        return Some(format!(
            "nothing was checked in {}: none of the {n} rules could read its input (see \"not read\")",
            blind.join(", ")
        ));
    }
    None
}

/// Process exit code for a worst severity: 0 ok/info, 1 warning, 2 critical.
pub fn exit_code(worst: Severity) -> u8 {
    match worst {
        Severity::Ok | Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// JSON for one report.
pub fn to_json(r: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("report serialises");
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("schema_version".into(), SCHEMA_VERSION.into());
        if let Some(e) = failure(std::slice::from_ref(r), &[]) {
            m.insert("error".into(), e.into());
        }
    }
    v
}

/// JSON for several namespaces (and those that could not be read).
pub fn to_json_many(rs: &[Report], not_read: &[NotRead]) -> serde_json::Value {
    let worst = rs.iter().map(|r| r.worst).max().unwrap_or(Severity::Ok);
    let mut v = serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "worst": worst,
        "namespaces": rs,
        "not_read": not_read,
    });
    if let (Some(e), serde_json::Value::Object(m)) = (failure(rs, not_read), &mut v) {
        m.insert("error".into(), e.into());
    }
    v
}

/// Text styling: ANSI colour or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
    /// Show passing checks, the why of every finding, and the evidence
    /// and fix of info findings too.
    pub verbose: bool,
}

fn paint(style: Style, code: &str, s: &str) -> String {
    if style.color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn sev_label(style: Style, s: Severity) -> String {
    let (code, label) = match s {
        Severity::Critical => ("1;31", "CRIT"),
        Severity::Warning => ("1;33", "WARN"),
        Severity::Info => ("36", "info"),
        Severity::Ok => ("32", " ok "),
    };
    paint(style, code, label)
}

/// One evidence value for people: strings bare, lists joined, empty ones
/// dropped (JSON keeps everything).
fn human_value(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) if a.is_empty() => None,
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().filter_map(human_value).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .filter_map(|(k, v)| human_value(v).map(|h| format!("{k}: {h}")))
                .collect();
            (!parts.is_empty()).then(|| format!("{{{}}}", parts.join(", ")))
        }
        other => Some(other.to_string()),
    }
}

fn evidence_line(f: &Finding) -> String {
    f.evidence
        .iter()
        .filter_map(|(k, v)| human_value(v).map(|h| format!("{k}={h}")))
        .collect::<Vec<_>>()
        .join("  ")
}

fn netns_label(n: &Option<NetnsId>) -> String {
    match n {
        None => "network namespace: unknown".into(),
        Some(id) => {
            let mut s = String::from(if id.is_init {
                "host network namespace"
            } else {
                "network namespace"
            });
            if let Some(name) = &id.name {
                let _ = write!(s, " {}", safe(name));
            }
            if let Some(ino) = id.inode {
                let _ = write!(s, " (inode {ino})");
            }
            s
        }
    }
}

/// Text from the machine (process and interface names, log lines, file
/// contents) with its control characters shown as `\xNN` instead of sent
/// to the terminal; newlines and tabs kept.
/// `nginx[42]`, or `nginx[42] container 0123456789ab`.
fn process_label(p: &ProcessRef) -> String {
    match &p.container {
        Some(c) => format!(
            "{}[{}] container {}",
            safe(&p.comm),
            p.pid,
            safe(crate::util::truncate(c, 12))
        ),
        None => format!("{}[{}]", safe(&p.comm), p.pid),
    }
}

/// `s` with control characters (but newline and tab) shown as `\xNN`: text
/// from the machine (process names, rule comments) cannot drive the terminal.
pub fn safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

fn indent(text: &str, pad: &str) -> String {
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line per namespace, worst first: who it is, its worst finding and
/// its table's count of max — printed before the reports of `--all-netns`;
/// then one line per namespace that could not be read.
pub fn overview(rs: &[Report], not_read: &[NotRead], style: Style) -> String {
    let mut order: Vec<&Report> = rs.iter().collect();
    order.sort_by_key(|r| std::cmp::Reverse(r.worst));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        paint(
            style,
            "1",
            &match not_read.len() {
                0 => format!(
                    "ctdoctor check: {} network namespaces, worst first",
                    rs.len()
                ),
                _ => format!(
                    "ctdoctor check: {} network namespaces read, worst first; not every one could be (FAIL below)",
                    rs.len()
                ),
            }
        )
    );
    for r in order {
        let who = match &r.netns {
            Some(id) if id.is_init => "host".to_string(),
            Some(id) => match (&id.name, id.inode) {
                (Some(n), _) => safe(n),
                (None, Some(i)) => format!("inode {i}"),
                (None, None) => "?".into(),
            },
            None => "?".into(),
        };
        let owner = r
            .processes
            .first()
            .filter(|_| !r.netns.as_ref().is_some_and(|n| n.is_init))
            .map(|p| format!(" {}", process_label(p)))
            .unwrap_or_default();
        let usage = r
            .findings
            .iter()
            .find(|f| f.id == crate::checks::conntrack::USAGE)
            .and_then(|f| {
                Some((
                    f.evidence.get("count")?.as_u64()?,
                    f.evidence.get("max")?.as_u64()?,
                ))
            })
            .map(|(c, m)| {
                format!(
                    "{}/{}",
                    crate::util::thousands(c),
                    crate::util::thousands(m)
                )
            })
            .unwrap_or_else(|| "-".into());
        let worst = r
            .findings
            .first()
            .filter(|f| f.severity > Severity::Info)
            .map(|f| format!("{} {}", f.id, safe(&f.title)))
            .unwrap_or_else(|| match (r.checked, r.not_checked) {
                (_, 0) => "no problem found".into(),
                (0, n) => format!("nothing checked ({n} rules lacked their input)"),
                (c, n) => format!("no problem in {c} of {} rules checked", c + n),
            });
        let _ = writeln!(
            out,
            "{} {:<28} {:>17}  {}",
            sev_label(style, r.worst),
            format!("{who}{owner}"),
            usage,
            worst
        );
    }
    for n in not_read {
        let who = match (&n.name, n.netns) {
            (Some(name), _) => safe(name),
            (None, Some(i)) => format!("inode {i}"),
            (None, None) => "?".into(),
        };
        let _ = writeln!(
            out,
            "{} {:<28} {:>17}  could not be read: {}",
            paint(style, "1;31", "FAIL"),
            who,
            "-",
            safe(&n.error)
        );
    }
    out
}

/// Human text for one report, worst first.
pub fn to_text(r: &Report, style: Style) -> String {
    let mut out = String::new();
    // The headline first: at 3 a.m. the cause comes before the details.
    let _ = writeln!(
        out,
        "{}",
        paint(
            style,
            "1",
            &format!("ctdoctor check: {}", safe(&r.diagnosis.headline))
        )
    );
    let _ = writeln!(out, "  {}", netns_label(&r.netns));
    if !r.processes.is_empty() {
        let names: Vec<String> = r.processes.iter().take(8).map(process_label).collect();
        let more = r.processes.len().saturating_sub(8);
        let _ = write!(out, "  processes: {}", names.join(", "));
        if more > 0 {
            let _ = write!(out, " and {more} more");
        }
        out.push('\n');
    }
    out.push('\n');
    // At 3 a.m. the problems and their fixes: warnings and criticals with
    // their evidence and fix, other findings as one line each, passing
    // checks counted — but one that is ok while nginx logged the errors it
    // explains is shown with them; `why` and everything else under -v.
    // A fix already printed for an earlier finding is named, not repeated.
    let mut shown: Vec<(&str, &str)> = Vec::new();
    let mut hidden = 0usize;
    for f in &r.findings {
        let problem = f.severity >= Severity::Warning;
        let nginx_ok = f.evidence.contains_key("nginx_while_ok");
        if f.severity == Severity::Ok && f.is_checked() && !style.verbose && !nginx_ok {
            hidden += 1;
            continue;
        }
        let _ = writeln!(
            out,
            "{} {:<26} {}",
            sev_label(style, f.severity),
            f.id,
            safe(&f.title)
        );
        if (problem || style.verbose) && !f.evidence.is_empty() {
            let _ = writeln!(
                out,
                "{}",
                indent(&format!("evidence: {}", safe(&evidence_line(f))), "     ")
            );
        } else if nginx_ok {
            let mut only = f.clone();
            only.evidence.retain(|k, _| k.starts_with("nginx_"));
            let _ = writeln!(
                out,
                "{}",
                indent(
                    &format!("evidence: {}", safe(&evidence_line(&only))),
                    "     "
                )
            );
        }
        if style.verbose && !f.why.is_empty() {
            let _ = writeln!(
                out,
                "{}",
                indent(&format!("why: {}", safe(&f.why)), "     ")
            );
        }
        if (problem || style.verbose) && !f.fix.is_empty() {
            match shown.iter().find(|(_, fix)| *fix == f.fix) {
                Some((id, _)) => {
                    let _ = writeln!(out, "     fix: the same as {id} above");
                }
                None => {
                    let _ = writeln!(out, "     fix:");
                    let _ = writeln!(out, "{}", indent(&safe(&f.fix), "       "));
                    shown.push((&f.id, &f.fix));
                }
            }
        }
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "{} {hidden} more checks passed (-v lists them, with the why of every finding)",
            sev_label(style, Severity::Ok)
        );
    }
    if let Some(c) = &r.creators {
        out.push_str(&safe(&creators_text(c)));
    }
    if let Some(d) = &r.drops {
        let mut block = "\npackets dropped during the sample (ctdoctor drops):\n".to_string();
        for l in crate::drops::report::to_text(d).lines() {
            block.push_str(&format!("  {l}\n").replace("  \n", "\n"));
        }
        out.push_str(&safe(&block));
    }
    if !r.unavailable.is_empty() {
        let _ = writeln!(out, "\nnot read ({}):", r.unavailable.len());
        for u in &r.unavailable {
            let _ = writeln!(out, "  - {}", safe(&u.to_string()));
        }
    }
    let count = |s: Severity| {
        r.findings
            .iter()
            .filter(|f| f.severity == s && f.is_checked())
            .count()
    };
    let _ = write!(
        out,
        "\n{} critical, {} warning, {} info, {} ok",
        count(Severity::Critical),
        count(Severity::Warning),
        count(Severity::Info),
        count(Severity::Ok)
    );
    if r.not_checked > 0 {
        let _ = write!(
            out,
            "; {} of {} rules not checked (input not read)",
            r.not_checked,
            r.checked + r.not_checked
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creation(shares: &[(&str, f64)]) -> Creation {
        use crate::table::creators::Ranked;
        let total: f64 = shares.iter().map(|s| s.1).sum();
        Creation {
            window_ms: 5000,
            new_events: (total * 5.0) as u64,
            lost: 2,
            sources: shares
                .iter()
                .map(|(ip, r)| Ranked {
                    key: ip.parse().unwrap(),
                    per_sec: *r,
                    err_per_sec: 0.0,
                })
                .collect(),
            dports: vec![Ranked {
                key: (17, 53),
                per_sec: total,
                err_per_sec: 0.0,
            }],
        }
    }

    #[test]
    fn the_headline_names_a_source_making_half_of_a_filling_table() {
        let full = || {
            Finding::new(
                crate::checks::conntrack::USAGE,
                Severity::Critical,
                "table 95 % full",
            )
            .with("usage_pct", 95.0)
        };
        let r = Report::new(None, vec![full()], vec![])
            .with_creators(creation(&[("10.1.2.3", 600.0), ("10.1.2.4", 400.0)]));
        assert!(
            r.diagnosis
                .headline
                .ends_with("; 10.1.2.3 made 60 % of the new entries during the sample"),
            "{}",
            r.diagnosis.headline
        );
        let text = to_text(
            &r,
            Style {
                color: false,
                verbose: false,
            },
        );
        assert!(text.contains("who created entries during the sample (5.0 s, 5,000 new, 1,000/s):"));
        assert!(text.contains("  sources    10.1.2.3 600/s (60 %), 10.1.2.4 400/s (40 %)"));
        assert!(text.contains("  dst ports  udp/53 1,000/s (100 %)"));
        assert!(text.contains("(2 bursts of events were lost: rates are lower bounds)"));
        // Under half: listed, not named in the headline.
        let r = Report::new(None, vec![full()], vec![])
            .with_creators(creation(&[("10.1.2.3", 450.0), ("10.1.2.4", 550.0)]));
        assert!(
            !r.diagnosis.headline.contains("made"),
            "{}",
            r.diagnosis.headline
        );
        // A healthy table: never in the headline, whoever creates.
        let ok = Finding::new(
            crate::checks::conntrack::USAGE,
            Severity::Ok,
            "table 1 % full",
        );
        let r = Report::new(None, vec![ok], vec![]).with_creators(creation(&[("10.1.2.3", 9.0)]));
        assert!(
            !r.diagnosis.headline.contains("made"),
            "{}",
            r.diagnosis.headline
        );
    }

    #[test]
    fn exit_codes_follow_worst() {
        assert_eq!(exit_code(Severity::Ok), 0);
        assert_eq!(exit_code(Severity::Info), 0);
        assert_eq!(exit_code(Severity::Warning), 1);
        assert_eq!(exit_code(Severity::Critical), 2);
    }

    #[test]
    fn json_has_schema_and_findings() {
        let f = Finding::new("conntrack.usage", Severity::Warning, "80 % full")
            .with("count", 80)
            .with("max", 100);
        let r = Report::new(None, vec![f], vec![]);
        let v = to_json(&r);
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["worst"], "warning");
        assert_eq!(v["findings"][0]["id"], "conntrack.usage");
        assert_eq!(v["findings"][0]["evidence"]["max"], 100);
    }

    #[test]
    fn empty_evidence_is_left_out_of_text() {
        let f = Finding::new("x.y", Severity::Info, "t")
            .with("empty", serde_json::json!({"a": {}, "b": []}))
            .with("list", serde_json::json!(["eth0", "eth1"]))
            .with("n", 3);
        assert_eq!(evidence_line(&f), "list=eth0, eth1  n=3");
    }

    #[test]
    fn control_characters_from_the_machine_are_shown_not_obeyed() {
        // Process names, interface names and log text are set by anyone on
        // the machine: an ESC in them must not reach the terminal.
        let mut f = Finding::new("x.y", Severity::Critical, "nginx\x1b]0;owned\x07")
            .with("iface", "eth\x1b[2J0")
            .why("w\x1b[31m");
        f.fix = "line one\n\tline two\x08".into();
        let mut r = Report::new(
            Some(NetnsId {
                name: Some("gw\x1b[8m".into()),
                ..NetnsId::default()
            }),
            vec![f],
            vec![Unavailable::Missing {
                what: "x\x1b".into(),
            }],
        );
        r.processes.push(ProcessRef {
            pid: 1,
            comm: "evil\x1b[2J".into(),
            container: None,
        });
        let t = to_text(
            &r,
            Style {
                color: false,
                verbose: true,
            },
        );
        assert!(!t.contains(['\x1b', '\x07', '\x08']), "{t:?}");
        assert!(t.contains("nginx\\x1b]0;owned\\x07"), "{t}");
        assert!(t.contains("line one\n"), "newlines in a fix are kept");
        assert!(t.contains("\tline two"), "tabs are kept");
    }

    #[test]
    fn text_has_no_escape_codes_without_colour() {
        let mut f = Finding::new("x.y", Severity::Critical, "bad").why("because");
        f.fix = "do this".into();
        let r = Report::new(None, vec![f], vec![]);
        let t = to_text(
            &r,
            Style {
                color: false,
                verbose: false,
            },
        );
        assert!(!t.contains('\x1b'));
        assert!(t.contains("CRIT x.y"));
        assert!(t.contains("do this"));
    }
}
