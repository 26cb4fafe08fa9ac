//! One page of a per-CPU ring buffer as `trace_pipe_raw` returns it: a
//! header (timestamp, commit = bytes of records plus the "missed events"
//! flags) and compressed record headers (kernel/trace/ring_buffer.c,
//! described by `events/header_event`): a 32-bit word of 5 bits type_len
//! and 27 bits time delta, then
//! - type_len 1..=28: a record of type_len × 4 bytes;
//! - type_len 0: a 32-bit length (record + itself), then the record;
//! - 29 padding (a discarded or filtered-out record: 32-bit length; with a
//!   zero delta, the rest of the page is empty), 30 time extend and 31
//!   absolute time stamp (8 bytes each).
//!
//! Binary and per CPU rather than the text pipe: the kernel formats
//! nothing (no symbol lookup per event), and a page costs one read.
//! Every length is checked against the page: a malformed page ends the
//! walk and is counted, never a panic or a read out of bounds.

use super::format::PageLayout;

/// Records are 4-byte aligned; type_len counts 4-byte words.
const ALIGN: usize = 4;
const PADDING: u32 = 29;
const TIME_EXTEND: u32 = 30;
const TIME_STAMP: u32 = 31;
/// The commit word's flags: events were lost before this page (and the
/// count is stored after the data).
const MISSED_EVENTS: u64 = 1 << 31;
const MISSED_STORED: u64 = 1 << 30;

/// What a page said besides its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageInfo {
    pub records: u64,
    /// The kernel lost events before this page (buffer full).
    pub missed: bool,
    /// How many, when the kernel stored the number.
    pub missed_count: Option<u64>,
    /// A length pointed past the page: the walk stopped there.
    pub malformed: bool,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Call `f` with every record of `page`, in order.
pub fn for_each_record(layout: &PageLayout, page: &[u8], mut f: impl FnMut(&[u8])) -> PageInfo {
    let mut info = PageInfo::default();
    let Some(commit) = layout.commit.read(page) else {
        info.malformed = true;
        return info;
    };
    let len = (commit & !(MISSED_EVENTS | MISSED_STORED)) as usize;
    info.missed = commit & MISSED_EVENTS != 0;
    let Some(data) = layout
        .data
        .checked_add(len)
        .and_then(|end| page.get(layout.data..end))
    else {
        info.malformed = true;
        return info;
    };
    if commit & MISSED_STORED != 0 {
        let at = layout.data + len;
        info.missed_count = page
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    }
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(hdr) = u32_at(data, pos) else {
            info.malformed = true;
            break;
        };
        let type_len = hdr & 0x1f;
        let delta = hdr >> 5;
        let (rec, total) = match type_len {
            PADDING => {
                if delta == 0 {
                    break;
                }
                match u32_at(data, pos + 4) {
                    Some(l) => (None, 4 + l as usize),
                    None => {
                        info.malformed = true;
                        break;
                    }
                }
            }
            TIME_EXTEND | TIME_STAMP => (None, 8),
            0 => match u32_at(data, pos + 4) {
                Some(l) if l >= 4 => (Some((pos + 8, l as usize - 4)), 4 + l as usize),
                _ => {
                    info.malformed = true;
                    break;
                }
            },
            n => {
                let n = n as usize * ALIGN;
                (Some((pos + 4, n)), 4 + n)
            }
        };
        if let Some((at, n)) = rec {
            match data.get(at..at + n) {
                Some(r) => {
                    info.records += 1;
                    f(r);
                }
                None => {
                    info.malformed = true;
                    break;
                }
            }
        }
        if total == 0 || pos + total > data.len() {
            info.malformed |= pos + total > data.len();
            break;
        }
        pos += total;
    }
    info
}

#[cfg(test)]
mod tests {
    use super::super::format::Field;
    use super::*;

    const LAYOUT: PageLayout = PageLayout {
        commit: Field { offset: 8, size: 8 },
        data: 16,
    };

    /// A page of `records` (each a multiple of 4 bytes), with a padding
    /// record and a time extend between them.
    fn page(records: &[Vec<u8>], flags: u64) -> Vec<u8> {
        let mut data = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if i == 1 {
                data.extend_from_slice(&(TIME_EXTEND | (5 << 5)).to_le_bytes());
                data.extend_from_slice(&7u32.to_le_bytes());
                // A discarded record of 12 bytes: padding with a length.
                data.extend_from_slice(&(PADDING | (3 << 5)).to_le_bytes());
                data.extend_from_slice(&12u32.to_le_bytes());
                data.extend_from_slice(&[0xee; 8]);
            }
            if r.len() <= 112 {
                data.extend_from_slice(&(((r.len() / 4) as u32) | (1 << 5)).to_le_bytes());
            } else {
                data.extend_from_slice(&(1u32 << 5).to_le_bytes());
                data.extend_from_slice(&((r.len() + 4) as u32).to_le_bytes());
            }
            data.extend_from_slice(r);
        }
        let mut p = vec![0u8; 4096];
        p[8..16].copy_from_slice(&(data.len() as u64 | flags).to_le_bytes());
        p[16..16 + data.len()].copy_from_slice(&data);
        p
    }

    #[test]
    fn walks_small_long_and_skipped_records() {
        let recs = vec![vec![1u8; 40], vec![2u8; 40], vec![3u8; 120]];
        let mut seen = Vec::new();
        let info = for_each_record(&LAYOUT, &page(&recs, 0), |r| seen.push(r.to_vec()));
        assert_eq!(seen, recs);
        assert_eq!(info.records, 3);
        assert!(!info.missed && !info.malformed);
    }

    #[test]
    fn missed_events_are_reported() {
        let info = for_each_record(&LAYOUT, &page(&[vec![0; 8]], MISSED_EVENTS), |_| {});
        assert!(info.missed);
        assert_eq!(info.missed_count, None);
        let mut p = page(&[vec![0; 8]], MISSED_EVENTS | MISSED_STORED);
        p[16 + 12..16 + 20].copy_from_slice(&42u64.to_le_bytes());
        let info = for_each_record(&LAYOUT, &p, |_| {});
        assert_eq!(info.missed_count, Some(42));
    }

    #[test]
    fn a_length_past_the_page_stops_the_walk() {
        let mut p = page(&[vec![0; 8]], 0);
        p[8..16].copy_from_slice(&5000u64.to_le_bytes());
        assert!(for_each_record(&LAYOUT, &p, |_| {}).malformed);
        let mut p = page(&[vec![0; 8]], 0);
        // A long record claiming 3000 bytes in a 12-byte commit.
        p[16..20].copy_from_slice(&(1u32 << 5).to_le_bytes());
        p[20..24].copy_from_slice(&3000u32.to_le_bytes());
        let info = for_each_record(&LAYOUT, &p, |_| {});
        assert!(info.malformed);
        assert_eq!(info.records, 0);
        assert!(for_each_record(&LAYOUT, &[0u8; 4], |_| {}).malformed);
    }

    #[test]
    fn empty_padding_ends_the_page() {
        let mut p = vec![0u8; 64];
        p[8..16].copy_from_slice(&16u64.to_le_bytes());
        p[16..20].copy_from_slice(&PADDING.to_le_bytes());
        assert_eq!(for_each_record(&LAYOUT, &p, |_| {}).records, 0);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(p in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = for_each_record(&LAYOUT, &p, |_| {});
        }
    }
}
