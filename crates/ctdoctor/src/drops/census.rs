//! The census: dropped packets counted by (reason, location, protocol,
//! sender) as ring-buffer pages arrive. Counted, never stored: a drop
//! storm costs one hash-map increment per packet, and the number of keys is
//! bounded ([`MAX_KEYS`]; past it, drops are still counted, under no key).

use super::format::{Format, PageLayout};
use super::ring;
use std::collections::HashMap;

/// Distinct (reason, location, protocol, sender) keys kept. A host has a
/// few dozen drop sites; senders are what can grow (one per process).
pub const MAX_KEYS: usize = 4096;

/// `common_flags` bits of a record made in interrupt context (hardirq
/// 0x08, softirq 0x10, NMI 0x40; the same from 5.10 to 6.18): the task
/// then is whoever was interrupted, not the packet's sender.
const IN_INTERRUPT: u64 = 0x08 | 0x10 | 0x40;

/// What one recorded drop is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The kernel's reason number (`None`: a kernel without reasons).
    pub reason: Option<u64>,
    /// The kernel address that freed the packet.
    pub location: u64,
    /// skb->protocol, the ethertype (0x0800 IPv4, 0x86dd IPv6; 0 unset).
    pub protocol: u16,
    /// The task that sent the packet: set when the drop happened in
    /// process context (a packet this host sends); `None` in interrupt
    /// context or the idle task (received, forwarded, or a timer).
    pub sender: Option<u32>,
}

/// Drops seen so far.
#[derive(Debug, Clone, Default)]
pub struct Census {
    pub counts: HashMap<Key, u64>,
    /// Every drop recorded (including those counted under no key).
    pub events: u64,
    /// Drops counted past [`MAX_KEYS`], under no key.
    pub unkeyed: u64,
    /// Pages on which the kernel said events were lost before them, and
    /// the number lost where it said so.
    pub missed_pages: u64,
    pub missed_stored: u64,
    /// Pages whose lengths did not add up (walk stopped), and records of
    /// another event or too short to hold the fields.
    pub malformed_pages: u64,
    pub foreign: u64,
}

impl Census {
    /// Count every record of one `trace_pipe_raw` page.
    pub fn add_page(&mut self, fmt: &Format, layout: &PageLayout, page: &[u8]) {
        let info = ring::for_each_record(layout, page, |rec| self.add_record(fmt, rec));
        if info.missed {
            self.missed_pages += 1;
            self.missed_stored += info.missed_count.unwrap_or(0);
        }
        if info.malformed {
            self.malformed_pages += 1;
        }
    }

    /// Count one record.
    pub fn add_record(&mut self, fmt: &Format, rec: &[u8]) {
        let fields = (
            fmt.common_type.read(rec),
            fmt.location.read(rec),
            fmt.common_flags.read(rec),
            fmt.common_pid.read(rec),
        );
        let (Some(ty), Some(location), Some(flags), Some(pid)) = fields else {
            self.foreign += 1;
            return;
        };
        if ty != fmt.id {
            self.foreign += 1;
            return;
        }
        let reason = match fmt.reason {
            Some(f) => match f.read(rec) {
                Some(r) => Some(r),
                None => {
                    self.foreign += 1;
                    return;
                }
            },
            None => None,
        };
        let protocol = fmt.protocol.and_then(|f| f.read(rec)).unwrap_or(0) as u16;
        let pid = pid as u32;
        let sender = (flags & IN_INTERRUPT == 0 && pid != 0).then_some(pid);
        let key = Key {
            reason,
            location,
            protocol,
            sender,
        };
        self.events += 1;
        let full = self.counts.len() >= MAX_KEYS;
        match self.counts.get_mut(&key) {
            Some(n) => *n += 1,
            None if full => self.unkeyed += 1,
            None => {
                self.counts.insert(key, 1);
            }
        }
    }

    /// The distinct locations and senders, to resolve to names.
    pub fn locations(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.counts.keys().map(|k| k.location).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn senders(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.counts.keys().filter_map(|k| k.sender).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Drops by reason number (`None`: no reasons on this kernel).
    pub fn by_reason(&self) -> HashMap<Option<u64>, u64> {
        let mut m = HashMap::new();
        for (k, n) in &self.counts {
            *m.entry(k.reason).or_insert(0) += n;
        }
        m
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::format::parse;
    use super::*;

    /// A 6.18 kfree_skb record (the layout of `format::tests::F618`).
    pub(crate) fn rec(fmt: &Format, reason: u64, loc: u64, flags: u8, pid: i32) -> Vec<u8> {
        let mut r = vec![0u8; 40];
        r[0..2].copy_from_slice(&(fmt.id as u16).to_le_bytes());
        r[2] = flags;
        r[4..8].copy_from_slice(&pid.to_le_bytes());
        r[16..24].copy_from_slice(&loc.to_le_bytes());
        r[32..34].copy_from_slice(&0x0800u16.to_le_bytes());
        r[36..40].copy_from_slice(&(reason as u32).to_le_bytes());
        r
    }

    fn fmt() -> Format {
        parse(super::super::format::tests::F618).unwrap()
    }

    #[test]
    fn counts_by_key_and_names_senders_only_in_process_context() {
        let f = fmt();
        let mut c = Census::default();
        for _ in 0..3 {
            c.add_record(&f, &rec(&f, 12, 0xffff_0010, 0, 2805));
        }
        c.add_record(&f, &rec(&f, 12, 0xffff_0010, 0x10, 2805));
        c.add_record(&f, &rec(&f, 3, 0xffff_0020, 0, 0));
        assert_eq!(c.events, 5);
        let k = |reason, loc, sender| Key {
            reason: Some(reason),
            location: loc,
            protocol: 0x0800,
            sender,
        };
        assert_eq!(c.counts[&k(12, 0xffff_0010, Some(2805))], 3);
        assert_eq!(c.counts[&k(12, 0xffff_0010, None)], 1);
        assert_eq!(c.counts[&k(3, 0xffff_0020, None)], 1);
        assert_eq!(c.by_reason()[&Some(12)], 4);
        assert_eq!(c.senders(), vec![2805]);
        assert_eq!(c.locations(), vec![0xffff_0010, 0xffff_0020]);
    }

    #[test]
    fn other_events_and_short_records_are_not_counted() {
        let f = fmt();
        let mut c = Census::default();
        let mut r = rec(&f, 12, 1, 0, 1);
        r[0] = r[0].wrapping_add(1);
        c.add_record(&f, &r);
        c.add_record(&f, &[0u8; 10]);
        assert_eq!((c.events, c.foreign), (0, 2));
    }

    #[test]
    fn keys_are_bounded_and_drops_still_counted() {
        let f = fmt();
        let mut c = Census::default();
        for pid in 1..=(MAX_KEYS as i32 + 10) {
            c.add_record(&f, &rec(&f, 12, 1, 0, pid));
        }
        assert_eq!(c.counts.len(), MAX_KEYS);
        assert_eq!(c.unkeyed, 10);
        assert_eq!(c.events, MAX_KEYS as u64 + 10);
    }
}
