//! Error types: [`DecodeError`] for bytes that do not parse (always naming
//! the field being read) and [`Error`] for everything a socket operation can
//! hit (OS call, kernel netlink error, decode).

use std::fmt;

/// Why a field did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeReason {
    /// Fewer bytes than the header or value needs.
    Truncated { need: usize, have: usize },
    /// A length field smaller than its own header.
    BadLength { len: usize },
    /// A fixed-size value of the wrong size.
    WrongSize { expected: usize, got: usize },
}

/// Bytes that did not decode. `field` is the kernel name of what was being
/// read (e.g. `"nlmsghdr"`, `"CTA_TUPLE_ORIG"`, `"CTA_PROTO_SRC_PORT"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub field: &'static str,
    pub reason: DecodeReason,
}

impl DecodeError {
    pub(crate) fn truncated(field: &'static str, need: usize, have: usize) -> Self {
        DecodeError {
            field,
            reason: DecodeReason::Truncated { need, have },
        }
    }
    pub(crate) fn bad_len(field: &'static str, len: usize) -> Self {
        DecodeError {
            field,
            reason: DecodeReason::BadLength { len },
        }
    }
    pub(crate) fn size(field: &'static str, expected: usize, got: usize) -> Self {
        DecodeError {
            field,
            reason: DecodeReason::WrongSize { expected, got },
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            DecodeReason::Truncated { need, have } => write!(
                f,
                "decoding {}: truncated (need {need} bytes, have {have})",
                self.field
            ),
            DecodeReason::BadLength { len } => {
                write!(f, "decoding {}: invalid length {len}", self.field)
            }
            DecodeReason::WrongSize { expected, got } => write!(
                f,
                "decoding {}: expected {expected} bytes, got {got}",
                self.field
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Any failure of a socket operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed. `op` names it (e.g. `"socket"`, `"recv"`).
    Os { op: &'static str, errno: i32 },
    /// The kernel answered with an NLMSG_ERROR carrying `errno` (positive,
    /// e.g. libc::EEXIST). `op` names what we asked.
    Netlink { op: &'static str, errno: i32 },
    /// A reply did not decode.
    Decode(DecodeError),
    /// A receive buffer was too small for a datagram (MSG_TRUNC): `len` is
    /// the datagram's size.
    Truncated { len: usize },
    /// Entering a network namespace failed (which target, open or setns,
    /// errno).
    Netns(netns::Error),
}

impl Error {
    /// The errno behind an OS, netlink or netns error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { errno, .. } | Error::Netlink { errno, .. } => Some(*errno),
            Error::Netns(e) => Some(e.errno),
            _ => None,
        }
    }

    pub(crate) fn last_os(op: &'static str) -> Error {
        Error::Os {
            op,
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }
    }
}

fn strerror(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Os { op, errno } => write!(f, "{op}: {}", strerror(*errno)),
            Error::Netlink { op, errno } => {
                write!(f, "ctnetlink {op}: kernel answered {}", strerror(*errno))
            }
            Error::Decode(e) => write!(f, "ctnetlink reply: {e}"),
            Error::Truncated { len } => {
                write!(
                    f,
                    "netlink datagram of {len} bytes exceeds the receive buffer"
                )
            }
            Error::Netns(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<netns::Error> for Error {
    fn from(e: netns::Error) -> Self {
        Error::Netns(e)
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::Decode(e)
    }
}
