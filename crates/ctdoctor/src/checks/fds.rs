//! File-descriptor rules: `fds.system` (fs.file-nr vs fs.file-max) and
//! `fds.process` (the process closest to its own "Max open files").
//!
//! Not for: reading (host::fds).

use super::{Finding, Severity};
use crate::advice::change::{self, Change};
use crate::advice::suggest;
use crate::snapshot::{Facts, Fds, ProcFds, Snapshot};
use crate::util::percent as pct;
use serde_json::json;

pub const SYSTEM: &str = "fds.system";
pub const PROCESS: &str = "fds.process";

pub const WARN_PCT: f64 = 80.0;
pub const CRIT_PCT: f64 = 95.0;

pub fn run(snap: &Snapshot) -> Vec<Finding> {
    match &snap.now.fds {
        Ok(f) => vec![system(&snap.now, f), process(f)],
        Err(u) => vec![
            Finding::unavailable(SYSTEM, u),
            Finding::unavailable(PROCESS, u),
        ],
    }
}

fn severity(p: f64) -> Severity {
    if p >= CRIT_PCT {
        Severity::Critical
    } else if p >= WARN_PCT {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

fn system(facts: &Facts, fds: &Fds) -> Finding {
    const ID: &str = SYSTEM;
    let nr = match &fds.file_nr {
        Ok(n) => n,
        Err(u) => return Finding::unavailable(ID, u),
    };
    let max = fds.file_max.as_ref().ok().copied().unwrap_or(nr.max);
    let p = pct(nr.allocated, max);
    let sev = severity(p);
    let f = Finding::new(
        ID,
        sev,
        format!(
            "{} of {} file handles allocated system-wide ({p}%)",
            nr.allocated, max
        ),
    )
    .with("allocated", nr.allocated)
    .with("file_max", max)
    .with("percent", p)
    .with("nr_open", json!(fds.nr_open.as_ref().ok()))
    .why(
        "fs.file-max caps open files for the whole machine; at the cap every open(), socket() \
         and accept() fails with ENFILE (\"Too many open files in system\") in every process.",
    );
    if sev == Severity::Ok {
        return f;
    }
    f.changes(suggest::sysctls(
        facts,
        [("fs.file-max", suggest::file_max(max, nr.allocated))],
    ))
    .note("find the holders: fds.process lists the processes closest to their own limit")
}

fn label(p: &ProcFds) -> String {
    format!("{}[{}]", p.comm, p.pid)
}

fn process(fds: &Fds) -> Finding {
    const ID: &str = PROCESS;
    let u = match &fds.processes {
        Ok(u) => u,
        Err(e) => return Finding::unavailable(ID, e),
    };
    let Some(worst) = u.top.first() else {
        if u.skipped == 0 {
            return Finding::new(
                ID,
                Severity::Ok,
                format!(
                    "no process lives in this network namespace ({} in others{})",
                    u.other_netns,
                    match u.unknown_netns {
                        0 => String::new(),
                        n => format!(", {n} whose namespace could not be read"),
                    }
                ),
            )
            .with("processes_scanned", 0)
            .with("processes_other_netns", u.other_netns)
            .with("processes_unknown_netns", u.unknown_netns);
        }
        return Finding::unavailable(
            ID,
            &crate::snapshot::Unavailable::NeedsRoot {
                what: format!("/proc/PID/fd of {} processes (none readable)", u.skipped),
            },
        );
    };
    let p = (worst.percent() * 10.0).round() / 10.0;
    let sev = severity(p);
    let near: Vec<String> = u
        .top
        .iter()
        .filter(|x| x.percent() >= WARN_PCT)
        .map(|x| format!("{} {}/{}", label(x), x.open, x.soft))
        .collect();
    // Of the processes that could be read: say so when some could not.
    let unread = match u.skipped {
        0 => String::new(),
        n => format!("; {n} of {} processes not readable", n + u.scanned),
    };
    let mut f = Finding::new(
        ID,
        sev,
        format!(
            "{} has {} of {} open files (soft limit, {p}%){unread}",
            label(worst),
            worst.open,
            worst.soft
        ),
    )
    .with("pid", worst.pid)
    .with("comm", worst.comm.clone())
    .with("open", worst.open)
    .with("soft", worst.soft)
    .with("hard", worst.hard)
    .with("percent", p)
    .with("processes_scanned", u.scanned)
    .with("processes_skipped", u.skipped)
    .with("processes_other_netns", u.other_netns);
    if let Some(unit) = &worst.unit {
        f = f.with("unit", unit.clone());
    }
    if !near.is_empty() {
        f = f.with("near_limit", near);
    }
    f = f.why(
        "Every socket is a file descriptor. A process at its RLIMIT_NOFILE soft limit fails \
         accept() and connect() with EMFILE (\"Too many open files\"): nginx logs \
         \"accept4() failed (24)\" and stops taking connections while the kernel keeps \
         completing handshakes into its queue.",
    );
    if sev == Severity::Ok {
        return f;
    }
    let target = suggest::nofile(worst.open, fds.nr_open.as_ref().ok().copied());
    // Unknown capabilities: assume a root that has them (the usual host).
    let raise_hard = fds.sys_resource.as_ref().map_or(true, |&b| b);
    let (mut changes, mut notes) = (Vec::new(), Vec::new());
    // Above the hard limit only with CAP_SYS_RESOURCE.
    let capped = target > worst.hard && !raise_hard;
    let lacks = "raising a hard limit needs CAP_SYS_RESOURCE, which root here lacks (a \
                 container?)";
    match now_limit(worst, target, raise_hard) {
        Some((soft, hard)) => {
            changes.push(Change::command(
                "prlimit",
                &format!("prlimit --pid {} --nofile={soft}:{hard}", worst.pid),
            ));
            let why = if capped {
                format!(", its hard limit: {lacks}")
            } else {
                String::new()
            };
            notes.push(format!(
                "prlimit: now, without a restart, {}'s limit becomes {soft}{why}; processes \
                 near theirs need the same: see near_limit",
                label(worst)
            ));
        }
        None => notes.push(format!(
            "nothing raises {}'s limit without a restart: its soft limit is its hard limit \
             ({}), and {lacks}",
            label(worst),
            worst.hard
        )),
    }
    match &worst.unit {
        Some(unit) => {
            let dir = format!("/etc/systemd/system/{unit}.d");
            changes.push(Change::command(
                "systemd drop-in",
                &format!(
                    "mkdir -p {d} && printf '[Service]\\nLimitNOFILE={target}\\n' > {d}/90-ctdoctor-nofile.conf && systemctl daemon-reload",
                    d = change::sh_quote(&dir)
                ),
            ));
            notes.push(format!(
                "the drop-in keeps it: it applies at {unit}'s next start; restarting it \
                 (systemctl restart {unit}) is your decision, not part of this fix"
            ));
        }
        None => notes.push(format!(
            "to keep it: no systemd unit runs it; raise the limit where it is started \
             (`ulimit -n {target}` in its start script, or its supervisor's setting)"
        )),
    }
    if worst.comm.starts_with("nginx") {
        notes.push(format!(
            "nginx: `worker_rlimit_nofile {target};` in the main context of nginx.conf sets its \
             workers' limit itself (takes effect at `nginx -s reload`)"
        ));
    }
    notes.into_iter().fold(f.changes(changes), Finding::note)
}

/// The limit `prlimit` can give a running process now, as (soft, hard):
/// the soft limit up to `target` within the hard limit; above it only
/// with CAP_SYS_RESOURCE (`raise_hard`), else up to the hard limit. Never
/// lowers either. None when nothing can be raised.
fn now_limit(p: &ProcFds, target: u64, raise_hard: bool) -> Option<(u64, u64)> {
    let hard = if raise_hard {
        p.hard.max(target)
    } else {
        p.hard
    };
    let soft = target.min(hard);
    (soft > p.soft).then_some((soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(soft: u64, hard: u64) -> ProcFds {
        ProcFds {
            pid: 1,
            comm: "x".into(),
            open: soft,
            soft,
            hard,
            unit: None,
        }
    }

    #[test]
    fn now_limit_never_lowers_and_needs_the_capability_above_hard() {
        // Within the hard limit: soft only, with or without the capability.
        assert_eq!(
            now_limit(&proc(1024, 524288), 65536, false),
            Some((65536, 524288))
        );
        assert_eq!(
            now_limit(&proc(1024, 524288), 65536, true),
            Some((65536, 524288))
        );
        // Above it: both with the capability, up to hard without.
        assert_eq!(
            now_limit(&proc(256, 20000), 65536, true),
            Some((65536, 65536))
        );
        assert_eq!(
            now_limit(&proc(256, 20000), 65536, false),
            Some((20000, 20000))
        );
        // Nothing to raise.
        assert_eq!(now_limit(&proc(20000, 20000), 65536, false), None);
        assert_eq!(now_limit(&proc(70000, 80000), 65536, true), None);
    }
}
