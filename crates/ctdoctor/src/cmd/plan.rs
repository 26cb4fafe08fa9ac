//! `ctdoctor plan`: size the conntrack table and predict what a timeout
//! change will do. Thin: flags → facts (`host::collect_one` or a
//! snapshot) and, when asked, one pass over the table's entries (a live
//! dump, a tree's /proc/net/nf_conntrack, or `--file`) → `plan::plan` →
//! text or JSON (`plan::render`).
//!
//! Not for: any sizing or prediction logic (that is `plan`).

use super::args::{NetnsArg, ReadRoot};
use crate::advice::suggest;
use crate::host::{self, entries, netns::Target, Collect, Select, Source};
use crate::knobs;
use crate::plan::{self, render, Inputs};
use crate::snapfile::SnapFile;
use crate::snapshot::Facts;
use crate::table::ages::Ages;
use crate::table::mix::{MixSink, TableMix};
use crate::util::{parse_headroom, parse_peak, parse_rate};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Size the conntrack table (max, buckets, memory; kernel-aware) and
/// predict what new timeouts would leave in it.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Sizing: the recommended nf_conntrack_max is --headroom × the demand (the count
now, --peak, or --rate × the seconds a connection stays in the table), at
least this kernel's default, within --mem-budget of RAM; buckets keep a full
table's mean chain at 2. While the table is full the demand is unknown: the
plan starts from the max and says so. Shown beside it: the current setting,
the kernel default (its boot log line, else the mainline rule for the
version), kube-proxy's formula and the seed's old rule, each with the memory
of a full table. `check` suggests the same numbers.

What-if (--what-if KEY=VALUE[,KEY=VALUE]; state timeouts such as
tcp_timeout_time_wait, tcp_timeout_established, udp_timeout): one pass over
the table's entries gives each entry's idle age; under a shorter timeout a
state keeps the entries at most that old. The entries come from a live dump
of the namespace (ctnetlink, needs root), a fixture tree's
proc/net/nf_conntrack (--root), or --file (a /proc/net/nf_conntrack or
`conntrack -L` dump; ages use the timeouts of the namespace read). A snapshot
holds no entries: give --file with it.

--file alone (no --peak, --rate or --what-if) sizes for the dump: when it
holds more entries than the table now (a dump taken at the incident), that is
the demand; a dump of a full table is planned from the max, like a full table.
--file with --peak and nothing else is refused (the dump would inform nothing).

Exit status: 0 the plan was printed, 3 ctdoctor failed (bad flags, no
conntrack, unreadable input).

JSON (--json): schema_version, netns, kernel_release, mem_total_bytes, cpus,
demand, sizing{recommended, alternatives[{name, max, buckets,
full_table_bytes, ram_pct, mean_chain_now, mean_chain_at_max,
seed_formula_bytes, basis}], changes, …}, what_if{timeouts, states{NAME:
{now, predicted, unknown_age, at_least, evictable_now}}, total,
converges_within_s, changes} — see docs/plan.md.

Examples:
  ctdoctor plan                                    size this host's table
  ctdoctor plan --peak 500000                      for a known peak of entries
  ctdoctor plan --rate 2000                        for 2,000 new connections/s
  ctdoctor plan --what-if tcp_timeout_time_wait=15 what a 15 s TIME_WAIT leaves
  ctdoctor plan --netns gw --what-if tcp_timeout_time_wait=30,tcp_timeout_fin_wait=30 --json
  ctdoctor plan --snapshot host.ctd --file dump.txt --what-if tcp_timeout_established=7875")]
pub struct Args {
    #[command(flatten)]
    pub netns: NetnsArg,

    /// Plan from a snapshot captured with `ctdoctor snapshot` instead of this
    /// host (a file of at most 256 MiB, `-` for stdin, or a FIFO).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["netns", "root"])]
    pub snapshot: Option<PathBuf>,

    #[command(flatten)]
    pub root: ReadRoot,

    /// Plan for this many entries at peak instead of the count now (1 to
    /// 2,147,483,647: nf_conntrack_max is a 32-bit signed sysctl).
    #[arg(long, value_name = "N", conflicts_with = "rate", value_parser = parse_peak)]
    pub peak: Option<u64>,

    /// Plan for this many new connections per second: each holds an entry
    /// for TIME_WAIT's timeout plus what the other TCP states add at
    /// today's mix (one pass over the table). More than 0, at most
    /// 10,000,000.
    #[arg(long, value_name = "CONN_PER_S", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Room over the demand, as a factor (1 to 100).
    #[arg(long, value_name = "X", default_value_t = crate::advice::sizing::HEADROOM, value_parser = parse_headroom)]
    pub headroom: f64,

    /// The share of RAM a full table may take (percent: 10, 10%, 2.5%).
    #[arg(long, value_name = "PCT", default_value = "10%", value_parser = parse_pct)]
    pub mem_budget: f64,

    /// Predict the table under these timeouts: KEY=VALUE[,KEY=VALUE]
    /// (e.g. tcp_timeout_time_wait=15; the key forms `tune --set` takes).
    #[arg(long, value_name = "LIST")]
    pub what_if: Option<String>,

    /// Read the entries from a text dump (/proc/net/nf_conntrack or
    /// `conntrack -L` format, gzip detected, `-` for stdin, or a FIFO;
    /// a directory or a device is refused) instead of dumping the table.
    /// Without --peak or --rate, a dump holding more entries than the table
    /// now is the demand sized for.
    #[arg(long, value_name = "PATH|-")]
    pub file: Option<PathBuf>,

    /// Print JSON (schema: docs/plan.md).
    #[arg(long)]
    pub json: bool,
}

/// "10", "10%", "2.5 %" -> 0.10, 0.10, 0.025; within (0, 100].
pub fn parse_pct(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%').trim();
    let v: f64 = t
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage (try 10 or 10%)"))?;
    if !v.is_finite() || v <= 0.0 || v > 100.0 {
        return Err(format!("{s:?} is out of range: more than 0, at most 100 %"));
    }
    Ok(v / 100.0)
}

/// The sources a plan reads (no sockets, fds, NICs, consumers or nginx; the
/// table's entries are read by the plan's own pass when it needs them).
fn select() -> Select {
    Select::ALL
        .without(Source::Consumers)
        .without(Source::Sockets)
        .without(Source::Fds)
        .without(Source::Nic)
        .without(Source::Table)
        .without(Source::Nginx)
}

/// One pass over the entries: idle ages and the state mix.
type Pass = (Ages, MixSink);

fn pass_of(facts: &Facts) -> impl Fn() -> Pass + Sync {
    let t = crate::host::fact::timeouts_of(&facts.conntrack);
    move || (Ages::new(t), MixSink::new(t))
}

/// Where the entries come from, and the pass over them.
fn read_entries(
    args: &Args,
    facts: &Facts,
    target: &Target,
    root: &Path,
) -> Result<(Ages, TableMix, String)> {
    let make = pass_of(facts);
    let ((ages, mix), source) = if let Some(path) = &args.file {
        let (sink, info) = entries::file_into(path, &make)?;
        if info.empty {
            eprintln!("ctdoctor: warning: {} is empty: 0 entries", info.source);
        }
        (sink, info.source)
    } else if args.snapshot.is_some() {
        bail!(
            "a snapshot holds no table entries: give --file with a dump of the same namespace \
             (`conntrack -L > dump.txt`, or /proc/net/nf_conntrack)"
        );
    } else if host::netns::has_real_proc(root) {
        entries::check_access(target)?;
        let (sink, st) = entries::dump_into(target, make())?;
        if st.interrupted {
            eprintln!("ctdoctor: warning: the table changed during the dump (NLM_F_DUMP_INTR): ages may miss or repeat entries");
        }
        let source = match target.name() {
            Some(n) => format!("live, netns {n}"),
            None => "live".to_string(),
        };
        (sink, source)
    } else {
        let path = root.join("proc/net/nf_conntrack");
        if !path.exists() {
            bail!(
                "{} does not exist: a tree needs it for --what-if/--rate (or give --file)",
                path.display()
            );
        }
        let (sink, info) = entries::file_into(&path, &make)?;
        (sink, info.source)
    };
    Ok((ages, mix.finish(), source))
}

pub fn run(args: Args) -> Result<u8> {
    if !args.headroom.is_finite() || args.headroom < 1.0 {
        bail!(
            "--headroom {}: must be a factor of at least 1",
            args.headroom
        );
    }
    if let Some(r) = args.rate {
        if !r.is_finite() || r <= 0.0 {
            bail!("--rate {r}: must be a positive number of connections per second");
        }
    }
    if args.peak == Some(0) {
        bail!("--peak must be at least 1");
    }
    let what_if = match &args.what_if {
        Some(s) => {
            let set = knobs::parse_list(s)
                .map_err(anyhow::Error::msg)
                .context("--what-if")?;
            plan::whatif::check_settings(&set)
                .map_err(anyhow::Error::msg)
                .context("--what-if")?;
            Some(set)
        }
        None => None,
    };
    let root = args.root.dir.clone();
    let target = args.netns.target()?;
    let mut facts = match &args.snapshot {
        Some(path) => host::from_captures(SnapFile::read(path)?.captures)?.now,
        None => {
            let opts = Collect {
                select: select(),
                ..Collect::default()
            };
            host::collect_one(&root, &target, &opts)?.snapshot.now
        }
    };
    if let Err(u) = &facts.conntrack {
        bail!("no conntrack to plan: {u}");
    }
    // A --file is always read: without --what-if or --rate its entries are
    // the demand when they exceed the count now (the table as dumped, e.g.
    // at the incident), and its state mix is shown. With --peak alone it
    // would inform nothing: refused rather than ignored.
    if args.file.is_some() && args.peak.is_some() && what_if.is_none() && args.rate.is_none() {
        bail!(
            "--file with --peak: the dump would inform nothing (--peak sets the demand); \
             drop --peak to plan for the dump's entries, or add --what-if"
        );
    }
    let need_entries =
        what_if.is_some() || args.file.is_some() || (args.rate.is_some() && facts.table.is_err());
    let pass = if need_entries {
        Some(read_entries(&args, &facts, &target, &root)?)
    } else {
        None
    };
    if let Some((_, mix, _)) = &pass {
        facts.table = Ok(mix.clone());
    }
    let inputs = Inputs {
        peak: args.peak,
        rate: args.rate,
        headroom: args.headroom,
        mem_budget: args.mem_budget,
        dump: match (&args.file, &pass) {
            (Some(_), Some((_, mix, _))) => Some(mix.entries),
            _ => None,
        },
    };
    let wi = match (what_if, &pass) {
        (Some(set), Some((ages, _, source))) => Some((set, ages, source.clone())),
        _ => None,
    };
    let Some(p) = plan::plan(&facts, &inputs, wi) else {
        let why = facts
            .conntrack
            .as_ref()
            .ok()
            .and_then(|c| c.max.as_ref().err())
            .map(|u| u.to_string())
            .unwrap_or_else(|| "nf_conntrack_max unreadable".into());
        bail!("cannot size the table: {why}");
    };
    if let Some(Err(e)) = p.what_if.as_ref().map(|w| &w.result) {
        bail!("--what-if: {e}");
    }
    if args.json {
        super::print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&render::to_json(&p))?
        ))?;
    } else {
        super::print(&render::to_text(&p, &suggest::render_context(&facts)))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(parse_pct("10").unwrap(), 0.10);
        assert_eq!(parse_pct("10%").unwrap(), 0.10);
        assert_eq!(parse_pct(" 2.5 % ").unwrap(), 0.025);
        assert!(parse_pct("0").is_err());
        assert!(parse_pct("101").is_err());
        assert!(parse_pct("ten").is_err());
        assert!(parse_pct("nan").is_err());
    }
}
