//! Where a stream of entries came from and how reading it went
//! ([`SourceInfo`]): the part of `summary`'s output that is about the
//! source, not the table. Plain data, built by the sources in
//! `host::entries`, rendered by `cmd::summary`.
//!
//! Not for: reading anything (that is `host::entries`) or rendering.

use super::text;
use serde::Serialize;

/// Where the entries came from and how reading went.
#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    /// `live`, `live netns NAME` or the file path.
    pub source: String,
    pub format: Option<String>,
    pub malformed: MalformedInfo,
    /// Live: the table changed during the dump (entries may be missed or repeated).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MalformedInfo {
    pub count: u64,
    pub first: Vec<text::Malformed>,
}
