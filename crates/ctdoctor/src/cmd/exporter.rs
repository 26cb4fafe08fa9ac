//! `ctdoctor exporter`: flags in, `exporter::run` until SIGTERM. Thin.

use super::args::{NetnsArg, ReadRoot};
use crate::exporter::{self, http, refresh, state::Mode};
use crate::util::parse_duration;
use anyhow::{bail, Result};
use std::time::Duration;

/// The default port (Prometheus's exporter range; not yet registered on
/// its default-port-allocations page).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9651";

/// How the per-state table counts are kept (`--table`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableArg {
    /// Follow ctnetlink events: live per-state counts and who fills the
    /// table (~20 us of CPU per new connection); reconcile with a dump
    /// every --table-resync.
    #[default]
    Events,
    /// Dump every --table-resync only (counts up to that old; no events, no
    /// creators, no CPU per connection).
    Dump,
    /// No per-state counts, creators or state-mix findings; no ctnetlink at
    /// all.
    Off,
}

/// Serve Prometheus metrics for this node: the conntrack table filling
/// (count, limit, per-state entries, drops, time to full), its companions
/// (TIME_WAIT sockets, listen overflows, softnet and NIC drops, cloud NIC
/// allowances) and the findings of `ctdoctor check`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Endpoints: /metrics (Prometheus text format 0.0.4; OpenMetrics 1.0.0 when the
Accept header prefers it), /healthz (200 while facts are fresh, else 503),
/ (a page listing every metric, namespace and source status). Every metric,
its labels, source and the privilege it needs: docs/metrics.md.

Facts are read in the background every --interval; a scrape renders them
and reads only the entry count, max and the stat counters afresh (a few
small /proc reads: microseconds). Per-state counts come from ctnetlink events
and a resync dump every --table-resync, paced so dumps take at most ~2 % of a
core (a dump costs ~2 us of kernel time per entry: ~2 s at 1M entries), and
soon after the kernel drops events (ENOBUFS).

--table trades those counts for CPU (measured on 2 cores at 200,000
entries, docs/BENCHMARKS.md): events costs ~20 us per new connection (2 %
of a core at 1,000 conn/s, ~9 % at 4,000), and from a few thousand conn/s
the kernel may drop events, leaving the counts out of sync (in_sync 0)
until a repair dump; dump and off cost 0.1-0.4 % whatever the rate (dump
adds one dump per --table-resync, ~3 us per entry); off also skips the
state-mix findings and the creators (who fills the table).

Privileges: as root everything is exported. Without CAP_NET_ADMIN there are
no per-state counts (and no statistics where /proc/net/stat/nf_conntrack is
absent); without CAP_SYSLOG no log-line counts; entering another namespace
needs CAP_SYS_ADMIN, other users' processes (their fds, their namespaces
for --all-netns) CAP_SYS_PTRACE. What cannot be read has ctdoctor_source_up 0.
Units for systemd and Kubernetes with exactly these: deploy/ (docs/deploy.md).

Stops cleanly on SIGTERM or SIGINT. Exit status: 0 after a signal, 3 when
it cannot start (address in use, bad flags).

Examples:
  ctdoctor exporter                              this host, on :9651
  ctdoctor exporter --listen 127.0.0.1:9651      loopback only
  ctdoctor exporter --all-netns                  every namespace (containers)
  ctdoctor exporter --netns gw --table-resync 1m
  ctdoctor exporter --root /host                 in a container with the host at /host")]
pub struct Args {
    /// Address to listen on (in the namespace ctdoctor runs in).
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    #[command(flatten)]
    pub netns: NetnsArg,

    /// Export every network namespace (label netns = inode), found again at
    /// each refresh.
    #[arg(long, conflicts_with = "netns")]
    pub all_netns: bool,

    #[command(flatten)]
    pub root: ReadRoot,

    /// Time between readings of the facts (every source but the table).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,

    /// How per-state table counts are kept.
    #[arg(long, value_enum, value_name = "MODE", default_value = "events")]
    pub table: TableArg,

    /// Time between resync dumps of each table (at least 50x the last
    /// dump's duration).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub table_resync: Duration,

    /// Window over which the count's growth gives the time to full.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub growth_window: Duration,

    /// Connections served at once (past it the one stuck longest — waiting
    /// for its request, or not reading its answers — is closed).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections: usize,

    /// Also count every packet the kernel drops, by its drop reason
    /// (ctdoctor_kernel_drops_total{reason}): a tracing instance of its own
    /// while the exporter runs. Needs root. Cost: docs/BENCHMARKS.md.
    #[arg(long)]
    pub drop_reasons: bool,
}

pub fn run(args: Args) -> Result<u8> {
    if args.interval < Duration::from_secs(1) {
        bail!("--interval must be at least 1s");
    }
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    if args.all_netns && args.root.dir.as_os_str() != "/" {
        // discover() walks this machine's /proc: a prefix would mix two views.
        bail!("--all-netns reads the live machine's /proc; it does not combine with --root");
    }
    let targets = if args.all_netns {
        refresh::Targets::All
    } else {
        refresh::Targets::One(args.netns.target()?)
    };
    let root = args.root.dir;
    let cfg = exporter::Config {
        listen: args.listen,
        refresh: refresh::Config {
            prefix: root,
            targets,
            interval: args.interval,
            growth_window: args.growth_window,
        },
        table: match args.table {
            TableArg::Events => Some(Mode::Events),
            TableArg::Dump => Some(Mode::Dump),
            TableArg::Off => None,
        },
        table_resync: args.table_resync.max(Duration::from_secs(1)),
        limits: http::Limits {
            max_conns: args.max_connections,
            ..http::Limits::default()
        },
        drop_reasons: args.drop_reasons,
    };
    exporter::run(cfg)?;
    Ok(0)
}
