//! The `skb:kfree_skb` event as this kernel describes it, parsed from
//! tracefs's `events/skb/kfree_skb/format`: where each field sits in a
//! record, and the drop-reason table (`__print_symbolic` of the print
//! format). Nothing is hard-coded: reason numbers change between kernels
//! (6.18 has 130, numbered from 2; 6.1 numbers them differently) and the
//! record layout grew (`rx_sk` in 6.10). Also the ring buffer's page header
//! (`events/header_page`), for [`super::ring`].

use std::collections::BTreeMap;

/// Where one field of a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    pub size: usize,
}

impl Field {
    /// The field's value in `rec` (little-endian, as x86 and arm64 write
    /// it), or `None` when the record is too short.
    pub fn read(&self, rec: &[u8]) -> Option<u64> {
        let b = rec.get(self.offset..self.offset.checked_add(self.size)?)?;
        let mut v = [0u8; 8];
        v.get_mut(..b.len())?.copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    }
}

/// The kfree_skb event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The event's id (`common_type` of its records).
    pub id: u64,
    pub common_type: Field,
    pub common_flags: Field,
    pub common_pid: Field,
    pub location: Field,
    pub protocol: Option<Field>,
    /// `None` before 5.17: the kernel gives no drop reason.
    pub reason: Option<Field>,
    /// Reason number → name, as the print format spells it.
    pub reasons: BTreeMap<u64, String>,
}

/// Reasons in the table that are no drop (a kernel that lists them).
const NOT_DROPS: &[&str] = &["NOT_DROPPED_YET", "CONSUMED"];

impl Format {
    /// The filter that keeps only drops: reasons from the lowest numbered
    /// drop reason of the table on (below it: "not dropped yet" 0 and
    /// "consumed", which kernels that name them number first). `None` on a
    /// kernel without reasons: every kfree_skb is kept.
    pub fn filter(&self) -> Option<String> {
        self.reason?;
        let first = self
            .reasons
            .iter()
            .filter(|(_, n)| !NOT_DROPS.contains(&n.as_str()))
            .map(|(v, _)| *v)
            .min()?;
        let mut f = format!("reason >= {first}");
        for (v, n) in &self.reasons {
            if NOT_DROPS.contains(&n.as_str()) && *v > first {
                f.push_str(&format!(" && reason != {v}"));
            }
        }
        Some(f)
    }

    /// The name of reason `v`: the table's, or `SUBSYS_<n>_<code>` for a
    /// subsystem's own reasons (high 16 bits: mac80211, openvswitch), or
    /// the number.
    pub fn reason_name(&self, v: u64) -> String {
        match self.reasons.get(&v) {
            Some(n) => n.clone(),
            None if v >> 16 != 0 => format!("SUBSYS_{}_{}", v >> 16, v & 0xffff),
            None => format!("REASON_{v}"),
        }
    }
}

/// Parse a `format` file. Errors say what is missing.
pub fn parse(text: &str) -> Result<Format, String> {
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    let mut id = None;
    let mut print = "";
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("ID:") {
            id = v.trim().parse::<u64>().ok();
        } else if let Some(rest) = l.strip_prefix("field:") {
            if let Some((name, f)) = parse_field(rest) {
                fields.insert(name, f);
            }
        } else if let Some(p) = l.strip_prefix("print fmt:") {
            print = p;
        }
    }
    let need = |n: &str| {
        fields
            .get(n)
            .copied()
            .ok_or_else(|| format!("the kfree_skb format has no field {n:?}"))
    };
    Ok(Format {
        id: id.ok_or("the kfree_skb format has no ID line")?,
        common_type: need("common_type")?,
        common_flags: need("common_flags")?,
        common_pid: need("common_pid")?,
        location: need("location")?,
        protocol: fields.get("protocol").copied(),
        reason: fields.get("reason").copied(),
        reasons: parse_symbolic(print),
    })
}

/// `unsigned short protocol; offset:32; size:2; signed:0;` (tab-separated)
/// → ("protocol", …).
fn parse_field(rest: &str) -> Option<(String, Field)> {
    let mut parts = rest.split(';').map(str::trim);
    let decl = parts.next()?;
    // The name is the declaration's last word, without an array suffix.
    let name = decl
        .rsplit([' ', '*'])
        .next()?
        .split('[')
        .next()?
        .to_string();
    let mut offset = None;
    let mut size = None;
    for p in parts {
        if let Some(v) = p.strip_prefix("offset:") {
            offset = v.trim().parse().ok();
        } else if let Some(v) = p.strip_prefix("size:") {
            size = v.trim().parse().ok();
        }
    }
    let size: usize = size?;
    (size > 0 && size <= 8).then_some(())?;
    Some((
        name,
        Field {
            offset: offset?,
            size,
        },
    ))
}

/// Every `{ 12, "NETFILTER_DROP" }` pair of the print format.
fn parse_symbolic(print: &str) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    let mut rest = print;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let pair = &rest[..close];
        rest = &rest[close + 1..];
        let Some((num, name)) = pair.split_once(',') else {
            continue;
        };
        let num = num.trim();
        let v = match num.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => num.parse().ok(),
        };
        let name = name.trim().trim_matches('"');
        if let Some(v) = v {
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                out.insert(v, name.to_string());
            }
        }
    }
    out
}

/// Where the ring buffer's page header keeps its fields (`header_page`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLayout {
    pub commit: Field,
    /// Where the records start.
    pub data: usize,
}

/// Parse `events/header_page`: `field: local_t commit; offset:8; size:8;`
/// and `field: char data; offset:16; …`.
pub fn parse_header_page(text: &str) -> Result<PageLayout, String> {
    let mut commit = None;
    let mut data = None;
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("field:") else {
            continue;
        };
        let decl = rest.split(';').next().unwrap_or("");
        let name = decl.rsplit(' ').next().unwrap_or("");
        let offset = rest.split(';').find_map(|p| {
            p.trim()
                .strip_prefix("offset:")?
                .trim()
                .parse::<usize>()
                .ok()
        });
        match name {
            "commit" => commit = parse_field(rest).map(|(_, f)| f),
            "data" => data = offset,
            _ => {}
        }
    }
    Ok(PageLayout {
        commit: commit.ok_or("header_page has no commit field")?,
        data: data.ok_or("header_page has no data field")?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const F618: &str = "name: kfree_skb\nID: 2310\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;\n\
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;\n\n\
print fmt: \"skbaddr=%p rx_sk=%p protocol=%u location=%pS reason: %s\", REC->skbaddr, REC->rx_sk, REC->protocol, REC->location, __print_symbolic(REC->reason, { 2, \"NOT_SPECIFIED\" }, { 3, \"NO_SOCKET\" }, { 12, \"NETFILTER_DROP\" }, { 40, \"TCP_LISTEN_OVERFLOW\" })\n";

    pub const F510: &str = "name: kfree_skb\nID: 1422\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:unsigned short protocol;\toffset:24;\tsize:2;\tsigned:0;\n\n\
print fmt: \"skbaddr=%p protocol=%u location=%p\", REC->skbaddr, REC->protocol, REC->location\n";

    #[test]
    fn six_eighteen() {
        let f = parse(F618).unwrap();
        assert_eq!(f.id, 2310);
        assert_eq!(
            f.location,
            Field {
                offset: 16,
                size: 8
            }
        );
        assert_eq!(
            f.reason,
            Some(Field {
                offset: 36,
                size: 4
            })
        );
        assert_eq!(
            f.reasons.get(&12).map(String::as_str),
            Some("NETFILTER_DROP")
        );
        assert_eq!(f.reasons.len(), 4);
        assert_eq!(f.filter().as_deref(), Some("reason >= 2"));
        assert_eq!(f.reason_name(40), "TCP_LISTEN_OVERFLOW");
        assert_eq!(f.reason_name(0x30001), "SUBSYS_3_1");
        assert_eq!(f.reason_name(99), "REASON_99");
    }

    #[test]
    fn five_ten_has_no_reason() {
        let f = parse(F510).unwrap();
        assert_eq!(f.reason, None);
        assert!(f.reasons.is_empty());
        assert_eq!(f.filter(), None);
        assert_eq!(
            f.protocol,
            Some(Field {
                offset: 24,
                size: 2
            })
        );
    }

    #[test]
    fn consumed_in_the_table_is_filtered_out() {
        let t = F618.replace(
            "{ 2, \"NOT_SPECIFIED\" }",
            "{ 1, \"CONSUMED\" }, { 2, \"NOT_SPECIFIED\" }",
        );
        assert_eq!(parse(&t).unwrap().filter().as_deref(), Some("reason >= 2"));
    }

    #[test]
    fn missing_fields_are_errors() {
        assert!(parse("ID: 1\n").unwrap_err().contains("common_type"));
        assert!(parse("").is_err());
        let no_loc = F618.replace("location", "where");
        assert!(parse(&no_loc).unwrap_err().contains("location"));
    }

    #[test]
    fn field_reads_are_bounded() {
        let f = Field { offset: 6, size: 4 };
        assert_eq!(f.read(&[0; 8]), None);
        assert_eq!(f.read(&[0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), Some(1));
        let huge = Field {
            offset: usize::MAX,
            size: 8,
        };
        assert_eq!(huge.read(&[0; 8]), None);
    }

    #[test]
    fn header_page() {
        let t = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
                 \tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\
                 \tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\
                 \tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n";
        let l = parse_header_page(t).unwrap();
        assert_eq!(l.commit, Field { offset: 8, size: 8 });
        assert_eq!(l.data, 16);
        assert!(parse_header_page("").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,400}") {
            let _ = parse(&s);
            let _ = parse_header_page(&s);
        }
    }
}
