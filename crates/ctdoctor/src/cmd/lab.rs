//! `ctdoctor lab`: reproduce a full conntrack table behind nginx in
//! namespaces, then apply a fix and prove it (see `lab`). Thin: flags,
//! the SIGINT/SIGTERM handler that turns a signal into an orderly return
//! (so every guard undoes what it made), rendering.

use crate::lab::{self, Scenario};
use anyhow::{bail, Result};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Reproduce "table full" with real traffic in namespaces, then prove a fix.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Builds three namespaces, PREFIX-client — PREFIX-gw — PREFIX-backend, joined by veth
pairs (10.203.1.0/24, 10.203.2.0/24, nothing outside them), turns tracking on in the
gateway (an nft ct state rule), runs nginx there as the reverse proxy (a built-in proxy
when nginx is not installed, and the report says so) and a backend behind it, then:

  prepare  a warm-up; `check` on the gateway must show no critical
  fill     nf_conntrack_max is lowered (global; restored at the end) and the load,
           one request per connection, fills the gateway's table with TIME_WAIT
  before   the load against the full table: timeouts, 504s, drops, log lines
  fix      (with --fix) the changes applied through the same code as tune/notrack
  after    the same load again: is the fix enough?

Fixes (--fix KIND[,KIND]; every value comes from check, plan or notrack):
  timeouts  the timeout changes `check` printed for the gateway, TIME_WAIT sized
            by plan for the measured rate when check's does not fit, through
            tune (journaled, runtime only), and the entries they would already
            have expired evicted
  max       the max and hash `ctdoctor plan --rate` recommends for the load
            (2 entries per request), through tune
  notrack   `ctdoctor notrack --lo --port 80 --upstream-port 8080` in the
            gateway (both legs of the proxy), and their tracked entries evicted
  evict     relief only: every closing-state entry deleted
Every change set is rolled back at the end, before the max is put back; the
lab's journal is its own (never /var/lib/ctdoctor).

Needs root. Everything it makes is removed on success, error, Ctrl-C and SIGTERM;
it refuses to start while its namespaces exist (--force removes them first).
A fix is enough when nothing failed or dropped after it and the table will not fill
again: its count settled by the end of the after phase, or plan's steady state for the
measured rate fits the max with headroom. A clean phase whose count was still rising
is not proven (run longer with --phase).
Exit status: 0 when the run completed (and the fix, if any, was enough), 1 when a
fix was not enough or not proven, 3 when the lab itself failed.

Examples:
  ctdoctor lab --scenario table-full                  reproduce the failure, no fix
  ctdoctor lab --scenario table-full --fix timeouts   and prove shorter timeouts
  ctdoctor lab --fix notrack                          untrack both legs of the proxy
  ctdoctor lab --fix notrack,timeouts --rate 100      two fixes together
  ctdoctor lab --scenario table-full --json           for a script
  ctdoctor lab --teardown                             remove a kept (--keep) lab")]
pub struct Args {
    /// The incident to reproduce.
    #[arg(long, value_enum, default_value = lab::SCENARIOS[0].name)]
    pub scenario: Scenario,

    /// Requests per second (one connection each), 1 to 5000; default 300,
    /// 40 for the syn-flood (whose flood, not the load, must fill the table).
    #[arg(long, value_name = "N", value_parser = parse_lab_rate)]
    pub rate: Option<f64>,

    /// Length of the before and after phases, seconds (3 to 120).
    #[arg(long, default_value_t = 15, value_name = "SECS", value_parser = parse_phase)]
    pub phase: u64,

    /// Lower nf_conntrack_max (and the hash) to N for the run (default 4096,
    /// 32768 for the syn-flood, or twice the largest other namespace's count):
    /// 256 to 1,048,576, a table the lab's load (at most 5000 requests/s)
    /// can fill.
    #[arg(long, value_name = "N", value_parser = parse_max)]
    pub max: Option<u64>,

    /// Name prefix of the lab's namespaces: 1 to 32 letters, digits, `_`,
    /// `-` or `.`, starting with a letter or digit (it names files too).
    #[arg(long, default_value = "ctdlab", value_name = "PREFIX", value_parser = parse_prefix)]
    pub prefix: String,

    /// Remove namespaces an earlier run left, then run.
    #[arg(long)]
    pub force: bool,

    /// Leave the namespaces, nginx and the backend up at the end (the max is
    /// restored all the same); prints how to enter and remove them.
    #[arg(long)]
    pub keep: bool,

    /// Remove a lab left by --keep (or by a killed run) and exit.
    #[arg(long, conflicts_with_all = ["force", "keep"])]
    pub teardown: bool,

    /// After the failing phase apply these fixes (comma-separated), then run
    /// the same load again: timeouts, max, notrack, evict.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND[,KIND]")]
    pub fix: Vec<lab::fix::Kind>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Also draw the run as an SVG picture: requests/s ok and failed, the
    /// table against its max, drops per second, the fix marked. A file is
    /// replaced whole; `-` is stdout; a directory is refused before the run.
    #[arg(long, value_name = "FILE.svg", value_parser = parse_plot)]
    pub plot: Option<std::path::PathBuf>,
}

/// `--rate`: 1 to 5000 requests per second.
fn parse_lab_rate(s: &str) -> Result<f64, String> {
    crate::util::parse_f64_in(s, 1.0, 5000.0)
}

/// `--phase`: 3 to 120 seconds.
fn parse_phase(s: &str) -> Result<u64, String> {
    crate::util::parse_int_in(s, 3, 120)
}

/// `--max`: 256 to 1,048,576 entries.
fn parse_max(s: &str) -> Result<u64, String> {
    crate::util::parse_int_in(s, 256, 1 << 20)
}

/// `--plot`: a path [`crate::outfile`] would write, checked before the
/// run (a directory refused now, not after minutes of lab).
fn parse_plot(s: &str) -> Result<std::path::PathBuf, String> {
    let p = std::path::PathBuf::from(s);
    crate::outfile::check(&p).map_err(|e| format!("{e:#}"))?;
    Ok(p)
}

/// `--prefix`: it names namespaces (/run/netns/PREFIX-gw), the lab's
/// journal (/var/lib/ctdoctor/lab-PREFIX.json) and a temp directory, so
/// no `/`, no `..`, nothing a shell or `ip` would read differently.
fn parse_prefix(s: &str) -> Result<String, String> {
    let ok_first = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    let ok_rest = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok_first || !ok_rest || s.len() > 32 {
        return Err(format!(
            "{s:?}: 1 to 32 letters, digits, `_`, `-` or `.`, starting with a letter or digit"
        ));
    }
    Ok(s.to_string())
}

pub fn run(args: Args) -> Result<u8> {
    if args.teardown {
        for line in lab::journal::recover(&args.prefix)? {
            eprintln!("ctdoctor lab: {line}");
        }
        let removed = lab::topo::teardown(&args.prefix)?;
        if removed.is_empty() {
            eprintln!(
                "ctdoctor lab: no lab namespace ({}-*) to remove",
                args.prefix
            );
        } else {
            eprintln!("ctdoctor lab: removed {}", removed.join(", "));
        }
        return Ok(0);
    }
    let rate = args.rate.unwrap_or(args.scenario.default_rate);
    if !(1.0..=5000.0).contains(&rate) {
        bail!("--rate must be between 1 and 5000 requests/s");
    }
    if !(3..=120).contains(&args.phase) {
        bail!("--phase must be between 3 and 120 seconds");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let opts = lab::Options {
        scenario: args.scenario,
        rate,
        phase: std::time::Duration::from_secs(args.phase),
        max: args.max.unwrap_or(0),
        prefix: args.prefix.clone(),
        force: args.force,
        keep: args.keep,
        fix: args.fix.clone(),
    };
    let report = lab::run(&opts, &stop)?;
    if let Some(p) = &args.plot {
        crate::outfile::write(p, lab::plot::svg(&report).as_bytes(), 0o644)?;
        eprintln!("ctdoctor lab: wrote {}", crate::outfile::shown(p));
    }
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        super::print(&lab::report::to_text(&report))?;
    }
    if args.keep {
        let [c, g, b] = lab::topo::names(&args.prefix);
        eprintln!(
            "ctdoctor lab: kept. Enter: ip netns exec {g} bash (also {c}, {b});\n\
             check it: ctdoctor check --netns {g}; remove it: ctdoctor lab --teardown --prefix {}",
            args.prefix
        );
    }
    Ok(match report.outcome {
        lab::verdict::Outcome::NotEnough | lab::verdict::Outcome::NotProven => 1,
        lab::verdict::Outcome::Enough | lab::verdict::Outcome::NoFix => 0,
    })
}
