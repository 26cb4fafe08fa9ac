//! Commands: thin. Parse flags (clap derive, each flag documented once),
//! call the library, render. No logic that a test would want to reach
//! without the command line.

pub mod args;
pub mod check;
pub mod drops;
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

/// Root's PATH as sudo's `secure_path` and Debian's root profile set it.
const ROOT_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// How a printed command names this binary so that root can run it:
/// `ctdoctor` when the first `ctdoctor` on root's PATH is this very file,
/// else this file's absolute path (a build under target/, ~/.cargo/bin).
pub fn program_for_root() -> String {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "ctdoctor".into();
    };
    let first = ROOT_PATH
        .iter()
        .map(|d| std::path::Path::new(d).join("ctdoctor"))
        .find(|p| p.is_file());
    match first.and_then(|p| p.canonicalize().ok()) {
        Some(p) if p == me => "ctdoctor".into(),
        _ => me.display().to_string(),
    }
}
