//! `ctdoctor snapshot`: capture every fact `check` reads into one file, for
//! `ctdoctor check --snapshot FILE` on another machine or later.

use super::args::{NetnsArg, ReadRoot};
use crate::host;
use crate::snapfile::SnapFile;
use crate::util::parse_sample;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

/// Capture this host's (or a namespace's) facts into one file.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "The file is gzip-compressed JSON holding every file and probe result the\n\
checks read, byte for byte. It contains addresses, process names and kernel\n\
log lines: review it before sharing.\n\n\
Examples:\n  ctdoctor snapshot -o gw1.ctd\n  \
ctdoctor snapshot --netns gw --sample 5s -o gw.ctd\n  \
ctdoctor check --snapshot gw1.ctd"
)]
pub struct Args {
    /// Where to write the snapshot: a file (replaced whole, through a
    /// symlink to it; a new one is made 0600), `-` for stdout, or a device
    /// or FIFO (written through; a FIFO nobody reads within 10 s is an
    /// error). A directory or block device is refused.
    #[arg(short, long, value_name = "FILE|-")]
    pub output: PathBuf,

    #[command(flatten)]
    pub netns: NetnsArg,

    /// Capture twice, DURATION apart, so offline checks can judge rates.
    #[arg(long, value_name = "DURATION", value_parser = parse_sample)]
    pub sample: Option<Duration>,

    /// Also dump the table for the state-mix rules when it holds more than
    /// 100,000 entries (~2 µs per entry).
    #[arg(long)]
    pub deep: bool,

    #[command(flatten)]
    pub root: ReadRoot,
}

pub fn run(args: Args) -> Result<u8> {
    // Refuse a directory or a block device now, not after the capture.
    crate::outfile::check(&args.output)?;
    let target = args.netns.target()?;
    let caps = host::collect_one(
        &args.root.dir,
        &target,
        &host::Collect {
            sample: args.sample,
            record: true,
            deep: args.deep,
            ..host::Collect::default()
        },
    )?
    .captures;
    let items: usize = caps.iter().map(|c| c.items.len()).sum();
    SnapFile::new(caps).write(&args.output)?;
    eprintln!(
        "ctdoctor: wrote {} ({items} items)",
        crate::outfile::shown(&args.output)
    );
    Ok(0)
}
