//! Checks: pure functions from a [`Snapshot`] to [`Finding`]s.
//!
//! One rule = a stable id (`conntrack.usage`), a severity, a title, the
//! evidence (the numbers it judged), why it matters, and the fix: typed
//! [`Change`]s plus notes, rendered to shell text by one renderer
//! ([`crate::advice::change::render`]) once all rules ran. Each rule is documented
//! in docs/checks.md. No I/O, no clock, no environment here: everything
//! comes from the snapshot. Suggested values come from one table
//! ([`suggest`]), so two rules never suggest two values for one key.
//!
//! Every rule is declared in [`RULES`] and every family in [`FAMILIES`]:
//! explicit, not registered by side effect, so they read as the table of
//! contents of `check` (and feed the docs test and the exporter).

pub mod conntrack;
pub mod diagnosis;
pub mod fds;
pub mod nginx;
pub mod nic;
pub mod persist;
pub mod sockets;
pub mod state_mix;

use crate::advice::change::{self, Change};
use crate::snapshot::{Snapshot, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How bad a finding is. Ordered: `Ok < Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Evidence: named numbers and strings, in a stable order.
pub type Evidence = BTreeMap<String, serde_json::Value>;

/// One rule's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub title: String,
    pub evidence: Evidence,
    pub why: String,
    /// The fix as shell text: the rendered [`Finding::changes`], then the
    /// notes as comments; empty when nothing is to be done.
    pub fix: String,
    /// The typed changes the fix makes (what `tune --from-check` applies).
    #[serde(default)]
    pub changes: Vec<Change>,
    /// Advice that is not a knob (rendered as comments after the changes).
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Finding {
    pub fn new(id: &str, severity: Severity, title: impl Into<String>) -> Finding {
        Finding {
            id: id.to_string(),
            severity,
            title: title.into(),
            evidence: Evidence::new(),
            why: String::new(),
            fix: String::new(),
            changes: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Add one piece of evidence.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Finding {
        self.evidence.insert(key.to_string(), value.into());
        self
    }

    pub fn why(mut self, why: impl Into<String>) -> Finding {
        self.why = why.into();
        self
    }

    /// Add typed changes to the fix.
    pub fn changes(mut self, c: impl IntoIterator<Item = Change>) -> Finding {
        self.changes.extend(c);
        self
    }

    /// Add a note (advice that is not a knob) to the fix; empty notes are dropped.
    pub fn note(mut self, note: impl Into<String>) -> Finding {
        let n = note.into();
        if !n.trim().is_empty() {
            self.notes.push(n);
        }
        self
    }

    /// A rule whose input is unavailable: said as info, never a failure.
    pub fn unavailable(id: &str, what: &Unavailable) -> Finding {
        Finding::new(id, Severity::Info, format!("not checked: {what}"))
            .with("unavailable", what.to_string())
    }

    /// Whether the rule judged its input. A rule that could not (its input
    /// unavailable or not read) says why in its `unavailable` evidence:
    /// such a finding is neither an ok nor a problem, and reports count it
    /// as "not checked".
    pub fn is_checked(&self) -> bool {
        !self.evidence.contains_key("unavailable")
    }
}

/// How many findings judged their input, and how many could not.
pub fn coverage(findings: &[Finding]) -> (usize, usize) {
    let checked = findings.iter().filter(|f| f.is_checked()).count();
    (checked, findings.len() - checked)
}

/// One rule: its id, family and one-line summary (docs/checks.md has its page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub family: &'static str,
    pub summary: &'static str,
}

/// Every rule `check` can report, in report-index order.
pub const RULES: &[Rule] = &[
    Rule {
        id: conntrack::TABLE_FULL,
        family: "conntrack",
        summary: "the table is full now (packets dropped) or was full earlier",
    },
    Rule {
        id: conntrack::USAGE,
        family: "conntrack",
        summary: "entries in this netns against nf_conntrack_max",
    },
    Rule {
        id: conntrack::DROPS,
        family: "conntrack",
        summary: "drop, early_drop, insert_failed and chaintoolong counters",
    },
    Rule {
        id: conntrack::HASH_LOAD,
        family: "conntrack",
        summary: "mean hash chain length now and with a full table (machine-wide)",
    },
    Rule {
        id: conntrack::MEMORY,
        family: "conntrack",
        summary: "kernel memory a full table would take",
    },
    Rule {
        id: conntrack::TIMEOUTS,
        family: "conntrack",
        summary: "TCP timeouts longer than useful",
    },
    Rule {
        id: conntrack::EXPECT_TABLE,
        family: "conntrack",
        summary: "the expectation table (FTP, SIP helpers) is or was full",
    },
    Rule {
        id: persist::NOT_PERSISTENT,
        family: "persist",
        summary: "runtime values that the next boot would not set again",
    },
    Rule {
        id: persist::CONSUMERS,
        family: "persist",
        summary:
            "who needs conntrack here (NAT, stateful rules, containers) and what could go untracked",
    },
    Rule {
        id: sockets::TIME_WAIT,
        family: "sockets",
        summary: "TIME_WAIT sockets against tcp_max_tw_buckets, and overflows",
    },
    Rule {
        id: sockets::PORTS,
        family: "sockets",
        summary: "ephemeral ports used per destination ip:port",
    },
    Rule {
        id: sockets::LISTEN_OVERFLOW,
        family: "sockets",
        summary: "accept and SYN queue overflows, full listeners, SYN flooding",
    },
    Rule {
        id: sockets::SOFTNET_DROPS,
        family: "sockets",
        summary: "packets dropped by the per-CPU backlog before the stack",
    },
    Rule {
        id: nic::DROPS,
        family: "nic",
        summary: "interface drop and overrun counters",
    },
    Rule {
        id: nic::ALLOWANCE,
        family: "nic",
        summary: "cloud NIC allowances exceeded (AWS ENA)",
    },
    Rule {
        id: fds::SYSTEM,
        family: "fds",
        summary: "file handles allocated system-wide against fs.file-max",
    },
    Rule {
        id: fds::PROCESS,
        family: "fds",
        summary: "processes nearest their own open-files limit",
    },
    Rule {
        id: state_mix::TIME_WAIT,
        family: "state_mix",
        summary: "TIME_WAIT entries filling a table under pressure",
    },
    Rule {
        id: state_mix::UNREPLIED_SYN,
        family: "state_mix",
        summary: "connection attempts nobody answers (unreplied SYN_SENT)",
    },
    Rule {
        id: state_mix::IDLE_ESTABLISHED,
        family: "state_mix",
        summary: "ESTABLISHED entries idle past TCP keepalive's horizon",
    },
    Rule {
        id: state_mix::LIVE_LOAD,
        family: "state_mix",
        summary: "entries of live flows fill the table: too small for the load",
    },
];

/// The rule `id`, if declared.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// One family of rules (a module), run in this order.
pub struct Family {
    pub name: &'static str,
    pub run: fn(&Snapshot) -> Vec<Finding>,
}

/// Every rule family `check` runs.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "conntrack",
        run: conntrack::run,
    },
    Family {
        name: "persist",
        run: persist::run,
    },
    Family {
        name: "sockets",
        run: sockets::run,
    },
    Family {
        name: "fds",
        run: fds::run,
    },
    Family {
        name: "nic",
        run: nic::run,
    },
    Family {
        name: "state_mix",
        run: state_mix::run,
    },
];

/// Render each finding's fix (its changes, then its notes) for the facts it
/// judged: the one place fix text is made.
pub fn render_fixes(findings: &mut [Finding], facts: &crate::snapshot::Facts) {
    let ctx = crate::advice::suggest::render_context(facts);
    for f in findings {
        f.fix = change::fix_text(&f.changes, &f.notes, &ctx);
    }
}

/// One family's findings with their fixes rendered (tests, tools).
pub fn rendered(run: fn(&Snapshot) -> Vec<Finding>, snap: &Snapshot) -> Vec<Finding> {
    let mut v = run(snap);
    render_fixes(&mut v, &snap.now);
    v
}

/// One finding with its fix rendered.
pub fn render_one(f: Finding, facts: &crate::snapshot::Facts) -> Finding {
    let mut v = [f];
    render_fixes(&mut v, facts);
    let [f] = v;
    f
}

/// One value per key for the whole report: `conntrack.not_persistent`
/// persists today's runtime values, so where another rule suggests a new
/// value for the same key, its change yields (with a note saying which rule
/// sets and persists the new one).
pub fn reconcile(findings: &mut [Finding]) {
    let mut wanted: BTreeMap<String, (String, String)> = BTreeMap::new();
    for f in findings.iter().filter(|f| f.id != persist::NOT_PERSISTENT) {
        for c in &f.changes {
            wanted
                .entry(c.key.clone())
                .or_insert_with(|| (c.value.clone(), f.id.clone()));
        }
    }
    for f in findings
        .iter_mut()
        .filter(|f| f.id == persist::NOT_PERSISTENT)
    {
        let mut notes = Vec::new();
        f.changes.retain(|c| match wanted.get(&c.key) {
            Some((v, by)) if *v != c.value => {
                notes.push(format!(
                    "{}: not kept at {}: {by} suggests {v} (its fix sets and persists it)",
                    c.key, c.value
                ));
                false
            }
            _ => true,
        });
        f.notes.extend(notes);
    }
}

/// Run every rule, render each fix, put nginx's errors on the rules that
/// explain them; findings sorted worst first, then by id.
pub fn run_all(snap: &Snapshot) -> Vec<Finding> {
    let mut out: Vec<Finding> = FAMILIES.iter().flat_map(|f| (f.run)(snap)).collect();
    reconcile(&mut out);
    nginx::annotate(&mut out, &snap.now);
    render_fixes(&mut out, &snap.now);
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
    out
}
