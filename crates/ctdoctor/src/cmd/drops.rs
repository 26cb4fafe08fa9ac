//! `ctdoctor drops`: where packets are lost, by the kernel's own reason,
//! with netfilter drops split into conntrack's, rules' and the rest. Thin:
//! flags in, `host::drops::Session` measures, `drops::report` renders.

use super::args::NetnsArg;
use crate::host::drops::{namespaces, Session};
use crate::host::tracefs::POLL;
use crate::util::parse_sample;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Count every packet the kernel drops for a while, by reason (since
/// 5.17), location and sender, and say what explains the netfilter drops:
/// conntrack (table full, insert races) or a rule, per namespace.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Traces skb:kfree_skb in a tracing instance of its own (removed at exit, and
by the next run if one was killed), keeping drops only. Needs root.
Ctrl-C ends the window early and reports what was counted.

Examples:
  ctdoctor drops                    10 s, every namespace
  ctdoctor drops --for 30s --json   for scripts (shape: docs/checks.md)
  ctdoctor drops --netns gw         explain netfilter drops by gw's counters only")]
pub struct Args {
    /// How long to count (1s to 1h).
    #[arg(long = "for", value_name = "DURATION", default_value = "10s", value_parser = parse_sample)]
    pub window: Duration,

    /// Read the counters that explain drops in this namespace only (the
    /// census itself always sees every namespace: the tracepoint is
    /// machine-wide).
    #[command(flatten)]
    pub netns: NetnsArg,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let one = match &args.netns.netns {
        Some(_) => Some(args.netns.target()?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let mut s = match Session::start(namespaces(one.as_ref())) {
        Ok(s) => s,
        Err(u) => {
            eprintln!("ctdoctor: cannot count drops: {u}");
            return Ok(super::EXIT_FAILED);
        }
    };
    eprintln!(
        "counting drops for {} s on {} CPUs (Ctrl-C ends early)…",
        args.window.as_secs(),
        s.cpus()
    );
    let end = Instant::now() + args.window;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
        s.poll();
    }
    let r = s.finish();
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&r)?))?;
    } else {
        super::print(&crate::report::safe(&crate::drops::report::to_text(&r)))?;
    }
    Ok(0)
}
