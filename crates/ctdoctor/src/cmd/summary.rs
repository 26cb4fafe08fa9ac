//! `ctdoctor summary`: the conntrack table at a glance, in one pass — from
//! a live dump (ctnetlink, default; `--netns`) or a text dump (`--file`,
//! `-` for stdin, gzip read transparently). Renders aligned tables or JSON.
//!
//! Thin: flags → `table::agg::Config` → a source (`host::entries`) →
//! `Summary` → text/JSON.

use super::args::NetnsArg;
use crate::host::entries;
use crate::table::agg::{self, Config, Filter, Summary, Timeouts};
use crate::table::source::SourceInfo;
use crate::util::{parse_duration, thousands};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::PathBuf;

/// The conntrack table at a glance: protocols, TCP states, flags, top
/// sources/destinations/ports, idle ages — one pass, any table size.
#[derive(clap::Args, Debug, Default)]
#[command(after_help = "\
Sources: the live table of this host or of --netns (ctnetlink, needs root), or a
text dump: /proc/net/nf_conntrack, `conntrack -L` or `conntrack -L -o extended`
(format detected; gzip detected; `-` reads stdin).

An empty input (0 bytes) is a table of 0 entries, exit status 0, with a
warning on stderr: an idle namespace's /proc/net/nf_conntrack is empty, but on
stdin an empty input usually means `conntrack -L` failed upstream. Input with
lines but no entry is an error (exit 3), and so are 64 MiB without one entry
(/dev/urandom). A line of 1 MiB or more counts as one malformed line.

Idle age = the state's timeout - the entry's seconds left. Live, timeouts come
from the namespace's sysctls; for files, from --timeouts (default: kernel
defaults). An entry with more seconds left than its state's timeout (custom
timeout) has an unknown age and is counted as such; so has a TCP entry with no
more seconds left than tcp_timeout_unacknowledged / max_retrans when its state's
timeout is longer (the kernel caps it there while data is in flight), and every
sctp, dccp and gre entry.

JSON (--json) fields, stable: schema_version, source, format, entries_seen,
entries, filtered, malformed{count,first[{line,reason,text}]}, by_l3, by_proto,
by_state ([{key,count,percent}]), flags{assured,unreplied,offload,hw_offload},
early_drop_evictable, by_zone, by_mark, top_src, top_dst, top_dport,
top_src_dport, top_dst_dport ({distinct, top:[{key,count,percent}]}),
idle_age{bins:[label], classes:[{class,entries,unknown,min_secs,max_secs,
mean_secs,bins}]}, idle_established{over_secs,entries,top_src}, timeouts.
Breakdowns not chosen with --by are absent.

Examples:
  ctdoctor summary                                   this host's table
  ctdoctor summary --netns gw --top 20               namespace /run/netns/gw
  ctdoctor summary --file /proc/net/nf_conntrack     via procfs
  conntrack -L | ctdoctor summary --file -           from conntrack-tools
  ctdoctor summary --file dump.txt.gz --timeouts established=86400,time_wait=60
  ctdoctor summary --state ESTABLISHED --idle-over 1h --by idle-src
  ctdoctor summary --proto tcp --dst 10.0.0.0/8 --port 443 --json")]
pub struct Args {
    /// Read a text dump instead of the live table (`-` for stdin): a file
    /// or a FIFO (nothing written to it within 10 s is an error); a
    /// directory or a device (/dev/zero) is refused.
    #[arg(long, value_name = "PATH|-", conflicts_with = "netns")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub netns: NetnsArg,

    /// How many rows each top list shows.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Breakdowns to compute, comma-separated: l3, proto, state, flags, zone,
    /// mark, src, dst, dport, src-dport, dst-dport, age, idle-src, all.
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub by: String,

    /// Count only this protocol (name or number: tcp, udp, icmp, 47).
    #[arg(long, value_name = "PROTO")]
    pub proto: Option<String>,

    /// Count only TCP entries in these states (comma-separated: ESTABLISHED,TIME_WAIT).
    #[arg(long, value_name = "STATES")]
    pub state: Option<String>,

    /// Count only entries whose original source is in CIDR.
    #[arg(long, value_name = "CIDR")]
    pub src: Option<String>,

    /// Count only entries whose original destination is in CIDR.
    #[arg(long, value_name = "CIDR")]
    pub dst: Option<String>,

    /// Count only entries with this original source or destination port.
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,

    /// Timeouts for idle ages, NAME=SECONDS comma-separated (established,
    /// time_wait, syn_sent, …, udp, udp_stream, icmp, generic). Default:
    /// live, the namespace's sysctls; files, the kernel defaults.
    #[arg(long, value_name = "LIST")]
    pub timeouts: Option<String>,

    /// ESTABLISHED entries idle at least this long are "long-idle".
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub idle_over: Option<std::time::Duration>,

    /// Parser threads for --file: 1 to 64 (default: every core, at most 64;
    /// one reader feeds them, so more would not parse faster).
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,

    /// Print JSON (field names above are stable).
    #[arg(long)]
    pub json: bool,
}

/// `--threads N`: 1 to [`entries::MAX_THREADS`].
fn parse_threads(s: &str) -> Result<usize, String> {
    crate::util::parse_int_in(s, 1, entries::MAX_THREADS)
}

/// Flags to an aggregation config (without timeouts from the system).
pub fn config(args: &Args) -> Result<Config> {
    let mut filter = Filter::default();
    for (key, value) in [
        ("proto", &args.proto),
        ("state", &args.state),
        ("src", &args.src),
        ("dst", &args.dst),
        ("port", &args.port),
    ] {
        if let Some(v) = value {
            filter
                .set(key, v)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--{key}"))?;
        }
    }
    let by = agg::by::parse(&args.by)
        .map_err(anyhow::Error::msg)
        .context("--by")?;
    let timeouts = match &args.timeouts {
        Some(t) => Timeouts::parse_list(t)
            .map_err(anyhow::Error::msg)
            .context("--timeouts")?,
        None => Timeouts::default(),
    };
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    Ok(Config {
        filter,
        by,
        top: args.top,
        timeouts,
        idle_over: args
            .idle_over
            .map_or(300, |d| d.as_secs().min(u32::MAX as u64) as u32),
    })
}

/// The JSON document `summary --json` prints.
#[derive(Debug, Serialize)]
pub struct Output<'a> {
    pub schema_version: u32,
    #[serde(flatten)]
    pub info: &'a SourceInfo,
    #[serde(flatten)]
    pub summary: &'a Summary,
}

pub fn run(args: Args) -> Result<u8> {
    let mut cfg = config(&args)?;
    let (summary, info) = match &args.file {
        Some(path) => {
            let threads = args.threads.unwrap_or_else(entries::default_threads);
            entries::summary_file(path, cfg, threads)?
        }
        None => {
            let target = args.netns.target()?;
            entries::summary(&target, &mut cfg, args.timeouts.is_none())?
        }
    };
    if info.empty {
        let hint = if args.file.as_deref() == Some(std::path::Path::new("-")) {
            ": did `conntrack -L` fail?"
        } else {
            ""
        };
        eprintln!(
            "ctdoctor: warning: {} was empty{hint} (reported as a table of 0 entries)",
            info.source
        );
    }
    if args.json {
        let out = Output {
            schema_version: 1,
            info: &info,
            summary: &summary,
        };
        super::print(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
    } else {
        super::print(&render(&summary, &info))?;
    }
    Ok(0)
}

fn pct(p: f64) -> String {
    format!("{p:.1}%")
}

/// Rows of (key, count, percent) as an aligned table under `title`.
fn table(out: &mut String, title: &str, rows: &[agg::Count]) {
    use std::fmt::Write;
    if rows.is_empty() {
        let _ = writeln!(out, "{title}: none\n");
        return;
    }
    let kw = rows.iter().map(|r| r.key.len()).max().unwrap_or(0).max(8);
    let cw = rows
        .iter()
        .map(|r| thousands(r.count).len())
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(out, "{title}");
    for r in rows {
        let _ = writeln!(
            out,
            "  {:<kw$}  {:>cw$}  {:>6}",
            r.key,
            thousands(r.count),
            pct(r.percent)
        );
    }
    out.push('\n');
}

fn top_table(out: &mut String, title: &str, t: &agg::Top) {
    table(
        out,
        &format!("{title} ({} distinct)", thousands(t.distinct)),
        &t.top,
    );
}

/// The human rendering.
pub fn render(s: &Summary, info: &SourceInfo) -> String {
    let mut out = String::new();
    render_header(&mut out, s, info);
    if let Some(v) = &s.by_l3 {
        table(&mut out, "Family", v);
    }
    if let Some(v) = &s.by_proto {
        table(&mut out, "Protocol", v);
    }
    if let Some(v) = &s.by_state {
        table(&mut out, "TCP state", v);
    }
    render_flags(&mut out, s);
    render_tops(&mut out, s);
    if let Some(a) = &s.idle_age {
        render_idle_age(&mut out, a);
    }
    if let Some(i) = &s.idle_established {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "ESTABLISHED idle ≥ {}s: {} entries",
            i.over_secs,
            thousands(i.entries)
        );
        if let Some(t) = &i.top_src {
            if !t.top.is_empty() {
                top_table(&mut out, "  sources holding them", t);
            }
        }
    }
    out
}

/// The first lines: how many entries from where, and what went wrong
/// reading them.
fn render_header(out: &mut String, s: &Summary, info: &SourceInfo) {
    use std::fmt::Write;
    let fmt = info
        .format
        .as_deref()
        .map(|f| format!(", {f} format"))
        .unwrap_or_default();
    let _ = write!(
        out,
        "conntrack table: {} entries",
        thousands(s.entries_seen)
    );
    if s.filtered {
        let _ = write!(out, ", {} match the filter", thousands(s.entries));
    }
    let _ = writeln!(out, " ({}{fmt})", info.source);
    if info.interrupted {
        let _ = writeln!(
            out,
            "note: the table changed during the dump; counts may miss or repeat a few entries"
        );
    }
    if info.malformed.count > 0 {
        let _ = writeln!(
            out,
            "warning: {} malformed lines skipped",
            thousands(info.malformed.count)
        );
        for m in &info.malformed.first {
            let _ = writeln!(out, "  line {}: {}: {}", m.line, m.reason, m.text);
        }
    }
    out.push('\n');
}

/// The flags line and what early drop could evict.
fn render_flags(out: &mut String, s: &Summary) {
    use std::fmt::Write;
    if let Some(f) = &s.flags {
        let _ = writeln!(
            out,
            "Flags: ASSURED {} ({}), UNREPLIED {} ({}){}{}",
            thousands(f.assured.count),
            pct(f.assured.percent),
            thousands(f.unreplied.count),
            pct(f.unreplied.percent),
            if f.offload.count > 0 {
                format!(", OFFLOAD {}", thousands(f.offload.count))
            } else {
                String::new()
            },
            if f.hw_offload.count > 0 {
                format!(", HW_OFFLOAD {}", thousands(f.hw_offload.count))
            } else {
                String::new()
            },
        );
    }
    let _ = writeln!(
        out,
        "Early drop could evict {} entries ({} not ASSURED)\n",
        thousands(s.early_drop_evictable.count),
        pct(s.early_drop_evictable.percent)
    );
}

/// Zones and marks (when more than one), then the top talkers and ports.
fn render_tops(out: &mut String, s: &Summary) {
    if let Some(t) = &s.by_zone {
        if t.distinct > 1 {
            top_table(out, "Zone", t);
        }
    }
    if let Some(t) = &s.by_mark {
        if t.distinct > 1 {
            top_table(out, "Mark", t);
        }
    }
    for (title, t) in [
        ("Top sources", &s.top_src),
        ("Top destinations", &s.top_dst),
        ("Top destination ports", &s.top_dport),
        ("Top source → destination port", &s.top_src_dport),
        ("Top destination → destination port", &s.top_dst_dport),
    ] {
        if let Some(t) = t {
            top_table(out, title, t);
        }
    }
}

/// The idle age table: one row per state class, one column per age bin
/// that some class uses (so the table fits a terminal).
fn render_idle_age(out: &mut String, a: &agg::IdleAges) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "Idle age by state (state timeout − seconds left; unknown: custom timeout)"
    );
    let used: Vec<usize> = (0..a.bins.len())
        .filter(|i| {
            a.classes
                .iter()
                .any(|c| c.bins.get(*i).is_some_and(|n| *n > 0))
        })
        .collect();
    let w: Vec<usize> = used.iter().map(|i| a.bins[*i].len().max(6)).collect();
    let _ = write!(out, "  {:<12}", "");
    for (i, w) in used.iter().zip(&w) {
        let _ = write!(out, " {:>w$}", a.bins[*i]);
    }
    let _ = writeln!(out, " {:>8} {:>8}", "unknown", "max");
    for c in &a.classes {
        let _ = write!(out, "  {:<12}", c.class);
        for (i, w) in used.iter().zip(&w) {
            let n = c.bins.get(*i).copied().unwrap_or(0);
            let cell = if n == 0 {
                "·".to_string()
            } else {
                thousands(n)
            };
            let _ = write!(out, " {cell:>w$}");
        }
        let _ = writeln!(
            out,
            " {:>8} {:>8}",
            thousands(c.unknown),
            c.max_secs.map_or("-".into(), |m| format!("{m}s"))
        );
    }
    out.push('\n');
}
