//! Checks: pure functions from a [`Snapshot`] to [`Finding`]s.
//!
//! One rule = a stable id (`conntrack.usage`), a severity, a title, the
//! evidence (the numbers it judged), why it matters, and the exact fix.
//! Each rule is documented in docs/checks.md. No I/O, no clock, no
//! environment here: everything comes from the snapshot.
//!
//! The list of rule families is [`FAMILIES`]: explicit, not registered by
//! side effect, so it reads as the table of contents of `check`.

pub mod conntrack;
pub mod fds;
pub mod nic;
pub mod persist;
pub mod sockets;
pub mod state_mix;

use crate::snapshot::Snapshot;
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
    /// Exact commands or `ctdoctor tune` flags; empty when nothing is to be done.
    pub fix: String,
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

    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = fix.into();
        self
    }

    /// A rule whose input is unavailable: said as info, never a failure.
    pub fn unavailable(id: &str, what: &crate::host::Unavailable) -> Finding {
        Finding::new(id, Severity::Info, format!("not checked: {what}"))
            .with("unavailable", what.to_string())
    }
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

/// Run every rule; findings sorted worst first, then by id.
pub fn run_all(snap: &Snapshot) -> Vec<Finding> {
    let mut out: Vec<Finding> = FAMILIES.iter().flat_map(|f| (f.run)(snap)).collect();
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
    out
}
