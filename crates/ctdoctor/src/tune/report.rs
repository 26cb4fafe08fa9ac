//! Text for people: a plan's diff, what an apply or a rollback read back,
//! the journal's history, an eviction. Pure (the JSON forms are the
//! structs themselves, serialised by the command).
//!
//! Not for: deciding or writing anything.

use super::apply::{root_flag, Applied, Check, RolledBack};
use super::diff::{BootCheck, Plan};
use super::evict::Evicted;
use super::files::{diff, DiffLine};
use super::journal::{ChangeSet, Entry};
use crate::util::thousands;
use std::fmt::Write as _;
use std::path::Path;

fn shown(root: &Path, rel: &str) -> String {
    root.join(rel).display().to_string()
}

fn boot_line(out: &mut String, b: &BootCheck) {
    let (mark, detail) = match (&b.procps, &b.systemd) {
        _ if b.ok => (
            "ok  ",
            format!(
                "from {}",
                b.procps.as_ref().map(|p| p.0.as_str()).unwrap_or("?")
            ),
        ),
        (p, s) => {
            let mut why = Vec::new();
            for (who, w) in [("sysctl --system", p), ("systemd-sysctl", s)] {
                match w {
                    Some((place, v)) if !crate::knobs::same(v, &b.value) => {
                        why.push(format!("{who} would set {v} from {place}"))
                    }
                    None => why.push(format!("{who} would not set it")),
                    _ => {}
                }
            }
            ("FAIL", why.join("; "))
        }
    };
    let _ = writeln!(out, "  {mark} {} = {}  {detail}", b.key, b.value);
}

/// The diff of a plan (runtime now → new, each file's changed lines, what
/// boot will set), then what is done by hand, notes and refusals.
pub fn plan_text(p: &Plan, root: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ctdoctor tune: {}\n", p.netns.describe());
    if !p.runtime.is_empty() || !p.unchanged.is_empty() {
        let _ = writeln!(out, "runtime (now -> new):");
        let w = p.runtime.iter().map(|r| r.key.len()).max().unwrap_or(0);
        for r in &p.runtime {
            let mut extra = Vec::new();
            if r.global {
                extra.push("global".to_string());
            }
            if !r.path.starts_with("proc/sys/") {
                extra.push(format!("/{}", r.path));
            }
            if r.expect != r.new {
                extra.push(format!("reads back as {}", r.expect));
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!("   ({})", extra.join(", "))
            };
            let _ = writeln!(out, "  {:w$}  {} -> {}{extra}", r.key, r.old, r.new);
        }
        for u in &p.unchanged {
            let _ = writeln!(out, "  unchanged: {u}");
        }
        out.push('\n');
    }
    if !p.files.is_empty() {
        let _ = writeln!(out, "files:");
        for f in &p.files {
            let state = if f.old.is_some() {
                "edited"
            } else {
                "new file"
            };
            let _ = writeln!(out, "  {} ({state}): {}", shown(root, &f.path), f.why);
            for l in diff(f.old.as_deref().unwrap_or(""), &f.new) {
                let _ = match l {
                    DiffLine::Same(s) => writeln!(out, "      {s}"),
                    DiffLine::Removed(s) => writeln!(out, "    - {s}"),
                    DiffLine::Added(s) => writeln!(out, "    + {s}"),
                };
            }
        }
        out.push('\n');
    }
    if !p.boot.is_empty() {
        let _ = writeln!(out, "at boot, with these files:");
        for b in &p.boot {
            boot_line(&mut out, b);
        }
        out.push('\n');
    }
    if !p.by_hand.is_empty() {
        let _ = writeln!(out, "by hand (tune does not edit these):");
        for h in &p.by_hand {
            let _ = writeln!(out, "  - {h}");
        }
        out.push('\n');
    }
    for n in &p.notes {
        let _ = writeln!(out, "note: {n}");
    }
    if !p.notes.is_empty() {
        out.push('\n');
    }
    if !p.refusals.is_empty() {
        let _ = writeln!(out, "refused, nothing written:");
        for r in &p.refusals {
            let _ = writeln!(out, "  - {r}");
        }
    } else if p.is_empty() {
        let _ = writeln!(out, "nothing to change.");
    }
    out
}

fn check_line(out: &mut String, c: &Check) {
    if c.ok {
        let _ = writeln!(out, "  ok   {}: {}", c.what, c.got);
    } else {
        let _ = writeln!(out, "  FAIL {}: wanted {}, got {}", c.what, c.want, c.got);
    }
}

/// What an apply read back, and how to undo it.
pub fn applied_text(a: &Applied, root: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "applied change set {} (journal {})",
        a.id,
        a.journal.display()
    );
    for n in &a.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(out, "read back:");
    for c in &a.checks {
        check_line(&mut out, c);
    }
    if !a.boot.is_empty() {
        let _ = writeln!(out, "at boot, from the files as written:");
        for b in &a.boot {
            boot_line(&mut out, b);
        }
    }
    if !a.ok() {
        let _ = writeln!(
            out,
            "not everything took (FAIL above): the change set stays in the journal"
        );
    }
    let _ = writeln!(
        out,
        "undo: ctdoctor tune --rollback {}{}",
        a.id,
        root_flag(root)
    );
    out
}

/// What a rollback restored and read back.
pub fn rolled_back_text(r: &RolledBack) -> String {
    let mut out = String::new();
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(
        out,
        "{} change set {}; read back:",
        if r.ok() {
            "rolled back"
        } else {
            "could not fully roll back"
        },
        r.id
    );
    for c in &r.checks {
        check_line(&mut out, c);
    }
    out
}

/// One line per change set, oldest first, then its entries indented.
pub fn history_text(sets: &[ChangeSet], bad: &[(std::path::PathBuf, String)]) -> String {
    let mut out = String::new();
    if sets.is_empty() {
        let _ = writeln!(out, "no change sets in the journal");
    }
    for s in sets {
        let _ = writeln!(
            out,
            "{}  {}  {:<11}  {}  {}",
            s.id,
            s.created,
            s.state.as_str(),
            s.netns.describe(),
            printable(&s.command)
        );
        for e in &s.entries {
            let _ = writeln!(out, "    {}", e.describe());
        }
        for ev in s.events.iter().filter(|e| e.what.starts_with("relief")) {
            let _ = writeln!(out, "    {}", printable(&ev.what));
        }
        if let Some(ev) = s.events.last() {
            if !matches!(s.entries.first(), Some(Entry::Unknown)) {
                let _ = writeln!(
                    out,
                    "    last: {} at {}",
                    printable(&ev.what),
                    super::journal::rfc3339(ev.time_unix)
                );
            }
        }
    }
    for (p, e) in bad {
        let _ = writeln!(
            out,
            "cannot be used (apply and rollback stop here): {}: {}",
            p.display(),
            printable(e)
        );
    }
    out
}

/// Text from the journal made safe for a terminal: control characters
/// (escape sequences, line breaks) shown escaped.
fn printable(t: &str) -> String {
    t.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// An eviction's counts and time.
pub fn evicted_text(e: &Evicted, where_: &str) -> String {
    let mut out = String::new();
    let states: Vec<String> = e
        .matched
        .iter()
        .map(|(s, n)| format!("{s} {}", thousands(*n)))
        .collect();
    let states = if states.is_empty() {
        "none".to_string()
    } else {
        states.join(", ")
    };
    let matched = e.matched_total();
    if e.age_unknown > 0 {
        let _ = writeln!(
            out,
            "{} selected entries were kept: their idle age is unknown (more seconds left than any \
             timeout known for their state — refreshed under an earlier, longer timeout the \
             journal does not record — or capped while data was in flight)",
            thousands(e.age_unknown)
        );
    }
    if e.dry_run {
        let _ = writeln!(
            out,
            "{where_}: {} of {} entries match ({states}); dry run, nothing deleted: add --apply to delete them",
            thousands(matched),
            thousands(e.scanned)
        );
        return out;
    }
    let rate = if e.seconds > 0.0 {
        e.freed as f64 / e.seconds
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "{where_}: freed {} entries in {:.2} s ({}/s); matched {} ({states}) of {} scanned",
        thousands(e.freed),
        e.seconds,
        thousands(rate as u64),
        thousands(matched),
        thousands(e.scanned)
    );
    let _ = writeln!(
        out,
        "table: {} entries before, {} after",
        thousands(e.count_before),
        thousands(e.count_after)
    );
    if e.gone > 0 {
        let _ = writeln!(
            out,
            "{} were gone before their delete arrived (expired, or replaced by a new flow)",
            thousands(e.gone)
        );
    }
    for (errno, n) in &e.errors {
        let _ = writeln!(
            out,
            "{} deletes failed: {}",
            thousands(*n),
            std::io::Error::from_raw_os_error(*errno)
        );
    }
    if e.interrupted {
        let _ = writeln!(
            out,
            "the dump was interrupted (the table changed during the walk): some entries may remain; run it again"
        );
    }
    out
}

/// What `tune --listen-backlog` did (or, dry, would do), each listener
/// with its owner, backlog before → after, and the undo line (`undo(old)`).
pub fn backlog_text(
    o: &super::backlog::Outcome,
    where_: &str,
    undo: impl Fn(u32) -> String,
) -> String {
    let mut out = String::new();
    if o.listeners.is_empty() {
        let _ = writeln!(out, "{where_}: no TCP listener on port {}", o.port);
        return out;
    }
    let capped = o.somaxconn.filter(|&m| m < o.backlog);
    for l in &o.listeners {
        let who = l
            .owner
            .as_ref()
            .map(|w| format!("{}[{}] fd {}", w.comm, w.pid, w.fd))
            .unwrap_or_else(|| "owner unknown".into());
        let now = match (&l.error, l.after, o.dry_run) {
            (Some(e), _, _) => format!("backlog {}, not changed: {e}", l.before),
            (None, _, true) => format!("backlog {} -> {} (dry run)", l.before, o.backlog),
            (None, Some(a), false) => format!("backlog {} -> {a}", l.before),
            (None, None, false) => format!("backlog {} -> ? (gone when read back)", l.before),
        };
        let _ = writeln!(out, "{where_}: {}:{} ({who}): {now}", l.addr, l.port);
    }
    if let Some(m) = capped {
        let _ = writeln!(
            out,
            "net.core.somaxconn is {m} here: the kernel caps a backlog there; raise it first, then run this again"
        );
    }
    if o.dry_run {
        let _ = writeln!(out, "dry run, nothing changed: add --apply");
        return out;
    }
    let mut olds: Vec<u32> = o
        .listeners
        .iter()
        .filter(|l| l.error.is_none())
        .map(|l| l.before)
        .collect();
    olds.sort_unstable();
    olds.dedup();
    for old in olds {
        let _ = writeln!(out, "undo: {}", undo(old));
    }
    let _ = writeln!(
        out,
        "the process's next listen() (a reload or restart) sets its own backlog again: set it in its configuration"
    );
    out
}
