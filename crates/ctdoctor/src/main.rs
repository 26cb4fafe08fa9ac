//! The `ctdoctor` binary: parse the command line, run one command, print
//! errors once with their context, map results to exit codes.

use clap::{Parser, Subcommand};
use ctdoctor::cmd;
use std::process::ExitCode;

/// Find and fix the packet loss behind 504s on busy Linux gateways: a full
/// connection-tracking table first, and its companions.
#[derive(Parser)]
#[command(name = "ctdoctor", version, propagate_version = true)]
#[command(
    after_help = "With no command, runs `ctdoctor check` on this host.\n\n\
Examples:\n  ctdoctor check                  diagnose this host\n  \
ctdoctor check --all-netns      every network namespace (containers too)\n  \
ctdoctor summary --top 20       the table at a glance"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    Check(cmd::check::Args),
    Snapshot(cmd::snapshot::Args),
    Summary(cmd::summary::Args),
    Top(cmd::top::Args),
}

fn main() -> ExitCode {
    // Usage errors exit 3 ("ctdoctor failed"), not clap's 2, which means
    // "critical" for `check`.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(cmd::EXIT_FAILED),
            };
        }
    };
    let result = match cli.cmd.unwrap_or(Cmd::Check(cmd::check::Args::default())) {
        Cmd::Check(a) => cmd::check::run(a),
        Cmd::Snapshot(a) => cmd::snapshot::run(a),
        Cmd::Summary(a) => cmd::summary::run(a),
        Cmd::Top(a) => cmd::top::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if cmd::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctdoctor: error: {e:#}");
            ExitCode::from(cmd::EXIT_FAILED)
        }
    }
}
