//! Flags several commands share, each defined once with its doc string and
//! flattened into the commands' own `Args` (`#[command(flatten)]`).
//!
//! Not for: a command's own flags, or the conflicts between them (those
//! stay with the command that has both sides: clap conflicts are two-way,
//! so `check --snapshot` and `summary --file` name `netns` themselves).

use crate::host::netns::Target;
use anyhow::Result;
use std::path::PathBuf;

/// `--netns NAME|PID`: which network namespace a command reads.
#[derive(clap::Args, Debug, Default, Clone, PartialEq, Eq)]
pub struct NetnsArg {
    /// Read the network namespace NAME (under /run/netns), of PID, or at a
    /// PATH, instead of the one ctdoctor runs in.
    #[arg(long, value_name = "NAME|PID")]
    pub netns: Option<String>,
}

impl NetnsArg {
    /// The namespace asked for (the current one without `--netns`).
    pub fn target(&self) -> Result<Target> {
        match &self.netns {
            Some(s) => Target::parse(s).map_err(anyhow::Error::msg),
            None => Ok(Target::Current),
        }
    }
}

/// `--root DIR` of the commands that read the host's files (check, plan,
/// snapshot, exporter).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ReadRoot {
    /// Read /proc, /sys, /etc and /dev under DIR instead of / (a container
    /// with the host's filesystems mounted at /host, or a fixture tree).
    #[arg(
        long = "root",
        id = "root",
        value_name = "DIR",
        default_value = "/",
        value_parser = crate::util::parse_root
    )]
    pub dir: PathBuf,
}

/// `--root DIR` of the commands that write files (tune, notrack).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct WriteRoot {
    /// Keep the journal (`ctdoctor tune --history`) and the boot files
    /// written under DIR instead of / (tests, image builders); runtime
    /// values and rules still go to the live kernel.
    #[arg(
        long = "root",
        id = "root",
        value_name = "DIR",
        default_value = "/",
        value_parser = crate::util::parse_root
    )]
    pub dir: PathBuf,
}

impl Default for ReadRoot {
    fn default() -> Self {
        ReadRoot { dir: "/".into() }
    }
}

impl Default for WriteRoot {
    fn default() -> Self {
        WriteRoot { dir: "/".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(NetnsArg::default().target().unwrap(), Target::Current);
        let a = |s: &str| NetnsArg {
            netns: Some(s.into()),
        };
        assert_eq!(a("gw").target().unwrap(), Target::Named("gw".into()));
        assert_eq!(a("4242").target().unwrap(), Target::Pid(4242));
        assert!(a("").target().is_err());
    }
}
