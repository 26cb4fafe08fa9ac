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

impl SourceInfo {
    /// A live dump of the namespace named `netns` (None: unnamed or this
    /// one) that could not decode `undecodable` entries.
    pub fn live(netns: Option<&str>, undecodable: u64, interrupted: bool) -> SourceInfo {
        SourceInfo {
            source: match netns {
                Some(n) => format!("live, netns {n}"),
                None => "live".into(),
            },
            format: Some("ctnetlink".into()),
            malformed: MalformedInfo {
                count: undecodable,
                first: Vec::new(),
            },
            interrupted,
        }
    }

    /// A text dump shown as `shown` (a path or `stdin`), from its parse
    /// statistics. An error when it had lines but not one entry: it is not
    /// a conntrack dump.
    pub fn text(shown: String, st: text::ParseStats) -> Result<SourceInfo, String> {
        if st.entries == 0 && st.malformed > 0 {
            let first = st.first_malformed.first();
            return Err(format!(
                "{shown}: no conntrack entries in {} lines; line {}: {} ({:?}). Expected /proc/net/nf_conntrack or `conntrack -L` output",
                st.lines,
                first.map_or(0, |m| m.line),
                first.map_or("", |m| m.reason),
                first.map_or("", |m| m.text.as_str()),
            ));
        }
        Ok(SourceInfo {
            source: shown,
            format: st.format.map(|f| {
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }),
            malformed: MalformedInfo {
                count: st.malformed,
                first: st.first_malformed,
            },
            interrupted: false,
        })
    }
}
