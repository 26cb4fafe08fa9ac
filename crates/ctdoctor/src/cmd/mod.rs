//! Commands: thin. Parse flags (clap derive, each flag documented once),
//! call the library, render. No logic that a test would want to reach
//! without the command line.

pub mod args;
pub mod check;
pub mod exporter;
pub mod lab;
pub mod notrack;
pub mod plan;
pub mod snapshot;
pub mod summary;
pub mod top;
pub mod tune;

/// Exit code when the tool itself failed (bad flags, unreadable snapshot).
pub const EXIT_FAILED: u8 = 3;

/// Whether an error chain ends in EPIPE (stdout closed: `ctdoctor … | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether to colour output: a terminal, and NO_COLOR unset or empty.
pub fn use_color() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Write to stdout, reporting EPIPE as an error (so main can exit 0 quietly).
/// The command line as run, shell-quoted (for the journal).
pub fn command_line() -> String {
    std::env::args()
        .map(|a| crate::advice::change::sh_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn print(s: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()?;
    Ok(())
}
