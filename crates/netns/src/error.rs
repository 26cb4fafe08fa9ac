//! The crate's two error types: [`Error`] (entering a namespace failed:
//! which target, which step, which errno) and [`SetupError`] (creating a
//! namespace, running a command in it, changing a knob). Messages say what
//! is wrong; "needs root" only when the kernel said EPERM or EACCES (and,
//! as root, what blocks root instead: [`crate::privilege`]). Not
//! for ctnetlink's socket errors (it wraps [`Error`] in its own).

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::Target;

/// Which step of entering a namespace failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Opening the namespace file.
    Open,
    /// Checking it is a namespace file (nsfs) before opening or entering
    /// it; errno EINVAL, the reason in [`Error::detail`].
    Check,
    /// `setns(fd, CLONE_NEWNET)` on the dedicated thread.
    Setns,
    /// Starting the dedicated thread.
    Thread,
}

/// Entering `target` failed at `step` with `errno` (positive, e.g.
/// `libc::EINVAL`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Error {
    pub target: Target,
    pub step: Step,
    pub errno: i32,
    /// What the file is instead, for [`Step::Check`] (e.g. "a FIFO").
    pub detail: Option<&'static str>,
}

impl Error {
    pub(crate) fn new(target: &Target, step: Step, e: &std::io::Error) -> Error {
        Error {
            target: target.clone(),
            step,
            errno: e.raw_os_error().unwrap_or(0),
            detail: None,
        }
    }

    /// `target`'s file is `what` (a FIFO, a directory, a file on ext4),
    /// not a namespace file.
    pub(crate) fn not_namespace(target: &Target, what: &'static str) -> Error {
        Error {
            target: target.clone(),
            step: Step::Check,
            errno: libc::EINVAL,
            detail: Some(what),
        }
    }

    /// Whether the kernel refused for lack of privilege (EPERM, EACCES).
    pub fn needs_root(&self) -> bool {
        is_privilege(self.errno)
    }
}

fn is_privilege(errno: i32) -> bool {
    errno == libc::EPERM || errno == libc::EACCES
}

fn strerror(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self
            .target
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(current)".into());
        let os = strerror(self.errno);
        match (self.step, self.errno, &self.target) {
            (Step::Open, libc::ENOENT, Target::Named(n)) => {
                write!(f, "no network namespace named {n:?} (see `ip netns list`)")
            }
            (Step::Open, libc::ENOENT, Target::Pid(p)) => {
                write!(f, "no process {p} (no {path})")
            }
            (Step::Open, libc::ENOENT, _) => write!(f, "no network namespace file {path}: {os}"),
            (Step::Check, _, _) => match self.detail {
                Some(what) => write!(f, "{path} is not a network namespace file (it is {what})"),
                None => write!(f, "{path} is not a network namespace file"),
            },
            (Step::Setns, libc::EINVAL, _) => {
                write!(f, "{path} is not a network namespace file")
            }
            (step, errno, target) => {
                let verb = match step {
                    Step::Open | Step::Check => "opening",
                    Step::Setns => "entering",
                    Step::Thread => "starting a thread to enter",
                };
                let what = match target {
                    Target::Named(n) => format!("{n:?} ({path})"),
                    Target::Pid(p) => format!("of pid {p} ({path})"),
                    Target::Path(_) | Target::Current => path,
                };
                write!(f, "{verb} network namespace {what}: {os}")?;
                if is_privilege(errno) {
                    f.write_str(&crate::privilege::note())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

/// Creating a namespace, running a command in it, or changing a knob failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// An argument we refuse (a namespace name with '/', a knob path with
    /// `..`): `what` it is, the `value`, and `why`.
    Invalid {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    /// /run/netns/NAME exists already.
    NameTaken { name: String },
    /// `program` could not be started (not installed when NotFound).
    Spawn {
        program: String,
        error: std::io::Error,
    },
    /// `command` ran and failed.
    Failed {
        command: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    /// Reading or writing a file failed: `op` is "open", "read", "write"
    /// or "stat".
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file held something else than expected (`what`).
    Parse {
        what: &'static str,
        path: PathBuf,
        text: String,
    },
    /// Entering the namespace failed.
    Enter(Error),
    /// A guarded value was changed by someone else since we set it, so it
    /// was not put back: it holds `now`, we set `ours`, it was `old`.
    Changed {
        path: PathBuf,
        now: String,
        ours: String,
        old: String,
    },
}

impl SetupError {
    /// Whether the kernel refused for lack of privilege (EPERM, EACCES).
    pub fn needs_root(&self) -> bool {
        match self {
            SetupError::Spawn { error, .. } | SetupError::Io { error, .. } => {
                error.kind() == std::io::ErrorKind::PermissionDenied
            }
            SetupError::Failed { stderr, .. } => stderr.contains("Operation not permitted"),
            SetupError::Enter(e) => e.needs_root(),
            _ => false,
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Invalid { what, value, why } => {
                write!(f, "invalid {what} {value:?}: {why}")
            }
            SetupError::NameTaken { name } => {
                write!(
                    f,
                    "network namespace {name:?} exists already (/run/netns/{name})"
                )
            }
            SetupError::Spawn { program, error } => {
                if error.kind() == std::io::ErrorKind::NotFound {
                    write!(f, "`{program}` is not installed (not found on PATH)")
                } else {
                    write!(f, "running `{program}`: {error}")
                }
            }
            SetupError::Failed {
                command,
                status,
                stdout,
                stderr,
            } => {
                write!(f, "`{command}` failed ({status})")?;
                let said = if stderr.trim().is_empty() {
                    stdout.trim()
                } else {
                    stderr.trim()
                };
                if !said.is_empty() {
                    write!(f, ": {said}")?;
                }
                if self.needs_root() {
                    f.write_str(&crate::privilege::note())?;
                }
                Ok(())
            }
            SetupError::Changed {
                path,
                now,
                ours,
                old,
            } => write!(
                f,
                "{} is {now} now, changed by someone else after we set {ours}: left as is (it was {old} before us)",
                path.display()
            ),
            SetupError::Io { op, path, error } => {
                write!(f, "{op} {}: {error}", path.display())?;
                if self.needs_root() {
                    f.write_str(&crate::privilege::note())?;
                }
                Ok(())
            }
            SetupError::Parse { what, path, text } => {
                write!(f, "{}: expected {what}, found {text:?}", path.display())
            }
            SetupError::Enter(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Messages above already include their cause; Enter is transparent.
        None
    }
}

impl From<Error> for SetupError {
    fn from(e: Error) -> Self {
        SetupError::Enter(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(target: Target, step: Step, errno: i32) -> String {
        Error {
            target,
            step,
            errno,
            detail: None,
        }
        .to_string()
    }

    #[test]
    fn messages_say_what_is_wrong() {
        assert_eq!(
            err(Target::Path("/tmp".into()), Step::Setns, libc::EINVAL),
            "/tmp is not a network namespace file"
        );
        assert_eq!(
            err(Target::Named("gw".into()), Step::Open, libc::ENOENT),
            "no network namespace named \"gw\" (see `ip netns list`)"
        );
        assert_eq!(
            err(Target::Pid(4242), Step::Open, libc::ENOENT),
            "no process 4242 (no /proc/4242/ns/net)"
        );
        assert!(err(Target::Path("/x".into()), Step::Open, libc::ENOENT)
            .starts_with("no network namespace file /x: "));
    }

    #[test]
    fn needs_root_only_for_eperm_and_eacces() {
        for errno in [libc::EPERM, libc::EACCES] {
            let m = err(Target::Pid(1), Step::Open, errno);
            assert!(m.ends_with(&crate::privilege::note()), "{m}");
            assert!(m.starts_with("opening network namespace of pid 1 (/proc/1/ns/net): "));
        }
        for (step, errno) in [
            (Step::Setns, libc::EINVAL),
            (Step::Open, libc::ENOENT),
            (Step::Open, libc::ENOTDIR),
            (Step::Setns, libc::ENOMEM),
        ] {
            let m = err(Target::Named("gw".into()), step, errno);
            assert!(!m.contains("needs root"), "{m}");
        }
        let e = Error {
            target: Target::Named("gw".into()),
            step: Step::Setns,
            errno: libc::EPERM,
            detail: None,
        };
        assert!(e.needs_root());
        assert_eq!(
            e.to_string(),
            format!(
                "entering network namespace \"gw\" (/run/netns/gw): {}{}",
                strerror(libc::EPERM),
                crate::privilege::note()
            )
        );
    }
}
