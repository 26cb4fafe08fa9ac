//! `ctdoctor check`: diagnose this host, a namespace, every namespace, or a
//! captured snapshot. Exit 0 ok/info, 1 warning, 2 critical, 3 failure —
//! including a run that checked nothing or could not read a namespace it
//! was asked for (the report is printed all the same, saying why).

use super::args::{NetnsArg, ReadRoot};
use crate::checks;
use crate::host::{self, netns::Target};
use crate::report::{self, NotRead, Report, Style};
use crate::snapfile::SnapFile;
use crate::util::parse_sample;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Diagnose packet loss: conntrack table, sockets, fds, NICs.
#[derive(clap::Args, Debug, Default)]
#[command(
    after_help = "Exit status: 0 ok, 1 warning, 2 critical, 3 ctdoctor itself failed, or \
could not check what it was asked to: no rule could read its input, or a namespace could not \
be read (the report says which and why).\n\n\
Examples:\n  ctdoctor check                      this host\n  \
ctdoctor check --sample 5s          also measure drop/insert_failed rates over 5 s,\n\
\x20                                     and who created entries meanwhile\n  \
ctdoctor check --netns gw           the namespace /run/netns/gw\n  \
ctdoctor check --netns 4242         the namespace of pid 4242 (a container)\n  \
ctdoctor check --all-netns --json   every namespace, for a script\n  \
ctdoctor check --snapshot host.ctd  offline, from `ctdoctor snapshot -o host.ctd`"
)]
pub struct Args {
    #[command(flatten)]
    pub netns: NetnsArg,

    /// Check every network namespace on the host (one report each).
    #[arg(long, conflicts_with_all = ["snapshot", "netns"])]
    pub all_netns: bool,

    /// Check a snapshot captured with `ctdoctor snapshot` instead of this
    /// host: a file of at most 256 MiB, `-` for stdin, or a FIFO (nothing
    /// written to it within 10 s is an error); a device is refused.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["netns", "root"])]
    pub snapshot: Option<PathBuf>,

    /// Read counters twice, DURATION apart (at least 1s), and judge rates (e.g. 5s, 1m);
    /// meanwhile, count who creates entries (ctnetlink NEW events; root).
    #[arg(long, value_name = "DURATION", value_parser = parse_sample, conflicts_with = "snapshot")]
    pub sample: Option<Duration>,

    #[command(flatten)]
    pub root: ReadRoot,

    /// Print a JSON report (schema: docs/checks.md).
    #[arg(long)]
    pub json: bool,

    /// Dump the live table for the state-mix rules even above 100,000 entries
    /// (a snapshot holds what was captured: use `ctdoctor snapshot --deep`).
    #[arg(long, conflicts_with = "snapshot")]
    pub deep: bool,

    /// Show every check: passing ones too, the why of every finding, and
    /// the evidence and fix of info findings (by default: problems with
    /// their evidence and fix, info titles, passing checks counted).
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let opts = host::Collect {
        sample: args.sample,
        deep: args.deep,
        ..host::Collect::default()
    };
    let root = args.root.dir.clone();
    let mut not_read: Vec<NotRead> = Vec::new();
    let reports: Vec<Report> = if let Some(path) = &args.snapshot {
        let file = SnapFile::read(path)?;
        vec![report_for(host::from_captures(file.captures)?)]
    } else if args.all_netns {
        if root.as_os_str() != "/" {
            bail!("--all-netns reads the live machine; it does not combine with --root");
        }
        let survey = host::netns::survey();
        for h in &survey.hidden {
            let first = h.processes.first();
            let who = match first {
                Some(p) => format!(
                    "the namespace of {}[{}]{}",
                    p.comm,
                    p.pid,
                    match h.processes.len() - 1 {
                        0 => String::new(),
                        n => format!(" and {n} more processes"),
                    }
                ),
                None => "a namespace".into(),
            };
            not_read.push(NotRead {
                netns: None,
                name: Some(who),
                error: h.why.to_string(),
            });
        }
        let found = survey.found;
        if found.is_empty() && not_read.is_empty() {
            bail!("no network namespace found under /proc (is /proc mounted?)");
        }
        let targets: Vec<Target> = found.iter().map(|ns| ns.target.clone()).collect();
        let mut v = Vec::new();
        for (ns, got) in found.into_iter().zip(host::collect(&root, &targets, &opts)) {
            match got {
                Ok(c) => {
                    let mut r = report_for(c.snapshot);
                    r.processes = ns.processes;
                    if let Some(id) = &mut r.netns {
                        id.name = id.name.take().or(ns.name);
                    }
                    v.push(r);
                }
                // A process can exit between discovery and entering its
                // namespace: not a failure. Anything else is one.
                Err(e) if vanished(&e) => {
                    eprintln!(
                        "ctdoctor: skipping network namespace {} (gone): {e:#}",
                        ns.inode
                    )
                }
                Err(e) => not_read.push(NotRead {
                    netns: Some(ns.inode),
                    name: ns.name.clone(),
                    error: format!("{e:#}"),
                }),
            }
        }
        v
    } else {
        let target = args.netns.target()?;
        let c = host::collect_one(&root, &target, &opts)?;
        vec![report_for(c.snapshot)]
    };

    let worst = reports
        .iter()
        .map(|r| r.worst)
        .max()
        .unwrap_or(checks::Severity::Ok);
    let failure = report::failure(&reports, &not_read);
    if args.json {
        let v = if args.all_netns {
            report::to_json_many(&reports, &not_read)
        } else {
            report::to_json(&reports[0])
        };
        super::print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
    } else {
        let style = Style {
            color: super::use_color(),
            verbose: args.verbose,
        };
        let mut text: Vec<String> = reports.iter().map(|r| report::to_text(r, style)).collect();
        if args.all_netns {
            text.insert(0, report::overview(&reports, &not_read, style));
        }
        super::print(&text.join("\n"))?;
    }
    if let Some(why) = failure {
        eprintln!("ctdoctor: check failed: {why}");
        return Ok(super::EXIT_FAILED);
    }
    Ok(report::exit_code(worst))
}

/// Whether entering a namespace failed because it is gone (its process
/// exited, its pin was removed) rather than for a reason to report.
fn vanished(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<host::netns::Error>()
            .is_some_and(|n| matches!(n.errno, libc::ENOENT | libc::ESRCH))
    })
}

/// Run every check on a snapshot and wrap the findings in a report.
pub fn report_for(snap: crate::snapshot::Snapshot) -> Report {
    let findings = checks::run_all(&snap);
    let unavailable = snap.now.unavailable().into_iter().cloned().collect();
    let mut r = Report::new(snap.now.netns.ok(), findings, unavailable);
    r.sources = snap.now.sources;
    r.drops = snap.now.drops.ok();
    match snap.now.creators {
        Ok(c) => r.with_creators(c),
        Err(_) => r,
    }
}
