//! `ctdoctor top`: the live terminal view (see `tui`). Thin: flags in,
//! `tui::run` does the rest.

use super::args::NetnsArg;
use crate::util::parse_interval;
use anyhow::Result;
use std::time::Duration;

/// Live view of the conntrack table: count/max gauge, drop rates, tables by
/// state, source and destination port, refreshed by re-dumping.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Keys: q quit, p pause, s sort (count/key), f filter (proto=tcp state=ESTABLISHED
src=10.0.0.0/8 dst=ADDR port=443), r refresh now, +/- interval, ? help.

Each refresh dumps the whole table (~2 µs of kernel time per entry: ~2.5 s at
1M entries), so keep the interval above the dump time on big tables.

Examples:
  ctdoctor top                      this host's table, every 2 s
  ctdoctor top --netns gw -i 5s     namespace /run/netns/gw, every 5 s")]
pub struct Args {
    #[command(flatten)]
    pub netns: NetnsArg,

    /// Time between dumps (e.g. 2s, 500ms): from 200ms to 300s.
    #[arg(short, long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
}

pub fn run(args: Args) -> Result<u8> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("`ctdoctor top` needs a terminal; for scripts use `ctdoctor summary --json`");
    }
    let target = args.netns.target()?;
    crate::tui::run(target, args.interval)?;
    Ok(0)
}
