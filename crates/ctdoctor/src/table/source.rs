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
    /// A text input of 0 bytes (not in the JSON: a warning on stderr).
    #[serde(skip)]
    pub empty: bool,
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
            empty: false,
        }
    }

    /// A text dump shown as `shown` (a path or `stdin`), from its parse
    /// statistics. An error when it had lines but not one entry, or when
    /// reading gave up after [`text::GIVE_UP_AFTER`] bytes without one: it
    /// is not a conntrack dump.
    pub fn text(shown: String, st: text::ParseStats) -> Result<SourceInfo, String> {
        if st.entries == 0 && (st.malformed > 0 || st.gave_up_after.is_some()) {
            let first = st.first_malformed.first();
            let within = match st.gave_up_after {
                Some(b) if b % (1 << 20) == 0 => format!(
                    "the first {} MiB ({} lines; stopped reading)",
                    b >> 20,
                    st.lines
                ),
                Some(b) => format!("the first {b} bytes ({} lines; stopped reading)", st.lines),
                None => format!("{} lines", st.lines),
            };
            return Err(format!(
                "{shown}: no conntrack entries in {within}; line {}: {} ({:?}). Expected /proc/net/nf_conntrack or `conntrack -L` output",
                first.map_or(0, |m| m.line),
                first.map_or("", |m| m.reason),
                first.map_or("", |m| m.text.as_str()),
            ));
        }
        let empty = st.bytes == 0;
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
            empty,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sources() {
        let st = text::ParseStats {
            lines: 3,
            ..Default::default()
        };
        let i = SourceInfo::text("f".into(), st.clone()).unwrap();
        assert!(i.empty, "0 bytes");
        let i = SourceInfo::text("f".into(), text::ParseStats { bytes: 3, ..st }).unwrap();
        assert!(!i.empty && i.format.is_none());
        let bad = text::ParseStats {
            lines: 9,
            malformed: 9,
            bytes: 90,
            first_malformed: vec![text::Malformed {
                line: 1,
                reason: "expected a protocol name",
                text: "hello".into(),
            }],
            ..Default::default()
        };
        let e = SourceInfo::text("f".into(), bad.clone()).unwrap_err();
        assert!(
            e.starts_with(
                "f: no conntrack entries in 9 lines; line 1: expected a protocol name (\"hello\")"
            ),
            "{e}"
        );
        let gave_up = text::ParseStats {
            gave_up_after: Some(64 << 20),
            ..bad
        };
        let e = SourceInfo::text("stdin".into(), gave_up).unwrap_err();
        assert!(
            e.starts_with("stdin: no conntrack entries in the first 64 MiB (9 lines; stopped reading); line 1"),
            "{e}"
        );
    }
}
