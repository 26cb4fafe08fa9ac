//! [`Target`]: which network namespace, as a user names it on the command
//! line (`--netns NAME|PID|PATH`). Only naming: entering is `run_in`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A network namespace to read or enter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The namespace the calling thread is in.
    Current,
    /// A name under /run/netns (as `ip netns add` makes).
    Named(String),
    /// The namespace of a process (/proc/PID/ns/net).
    Pid(u32),
    /// A namespace file (/run/netns/NAME, /proc/PID/ns/net, a bind mount).
    Path(PathBuf),
}

/// Where `ip netns` pins named namespaces.
pub const RUN_NETNS: &str = "/run/netns";

impl Target {
    /// `NAME` (under /run/netns) or `PID` (all digits) or a path (has a '/').
    pub fn parse(s: &str) -> Result<Target, String> {
        if s.is_empty() {
            return Err("empty namespace name".into());
        }
        if s.contains('/') {
            return Ok(Target::Path(s.into()));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Target::Pid)
                .map_err(|_| format!("pid {s} out of range"));
        }
        if s == "." || s == ".." {
            return Err(format!("invalid namespace name {s:?}"));
        }
        Ok(Target::Named(s.into()))
    }

    /// The namespace file to open; None for [`Target::Current`].
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Target::Current => None,
            Target::Named(n) => Some(Path::new(RUN_NETNS).join(n)),
            Target::Pid(p) => Some(format!("/proc/{p}/ns/net").into()),
            Target::Path(p) => Some(p.clone()),
        }
    }

    /// The namespace's name under /run/netns, when the target is one.
    pub fn name(&self) -> Option<String> {
        match self {
            Target::Named(n) => Some(n.clone()),
            Target::Pid(_) | Target::Path(_) | Target::Current => None,
        }
    }
}

/// For messages: `gw`, `pid 4242`, `/path/to/nsfile`, `current`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Current => f.write_str("current"),
            Target::Named(n) => f.write_str(n),
            Target::Pid(p) => write!(f, "pid {p}"),
            Target::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse("123").unwrap(), Target::Pid(123));
        assert_eq!(Target::parse("gw").unwrap(), Target::Named("gw".into()));
        assert_eq!(
            Target::parse("/run/netns/gw").unwrap(),
            Target::Path("/run/netns/gw".into())
        );
        assert!(Target::parse("").is_err());
        assert!(Target::parse("..").is_err());
        assert!(Target::parse("99999999999").is_err());
    }

    #[test]
    fn paths_names_and_labels() {
        let gw = Target::Named("gw".into());
        assert_eq!(gw.path(), Some(PathBuf::from("/run/netns/gw")));
        assert_eq!(gw.name().as_deref(), Some("gw"));
        assert_eq!(gw.to_string(), "gw");
        let pid = Target::Pid(42);
        assert_eq!(pid.path(), Some(PathBuf::from("/proc/42/ns/net")));
        assert_eq!(pid.name(), None);
        assert_eq!(pid.to_string(), "pid 42");
        assert_eq!(Target::Current.path(), None);
        assert_eq!(Target::Path("/x/y".into()).to_string(), "/x/y");
    }
}
