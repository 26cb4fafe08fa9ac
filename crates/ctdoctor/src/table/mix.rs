//! [`TableMix`]: the table's contents as the state-mix rules judge them
//! (TCP state mix, unreplied SYN_SENT entries and their top destinations,
//! long-idle ESTABLISHED entries), aggregated in one pass by [`MixSink`]
//! from any entry source.
//!
//! Not for: dumping the table (`host::mix`, `host::entries`) or judging
//! the mix (`checks::state_mix`).

use super::counters::FastMap;
use super::entry::{Addr, Entry, TcpState};
use super::text::Sink;
use super::timeouts::Timeouts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// ESTABLISHED entries idle longer than TCP keepalive's give-up horizon
/// (7200 + 75 × 9 s with Linux defaults) are counted as long-idle.
pub const IDLE_OVER_SECS: u32 = crate::kernel::KEEPALIVE_HORIZON_SECS as u32;

/// Entries refreshed (a packet seen) within this many seconds are active:
/// the live load, which a shorter timeout does not free.
pub const ACTIVE_SECS: u32 = 300;

/// What the state-mix rules judge. Field names are stable (they are the
/// probe's JSON in snapshot files).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableMix {
    pub entries: u64,
    pub tcp: u64,
    /// TCP entries by state name.
    pub by_state: BTreeMap<String, u64>,
    pub assured: u64,
    /// TCP SYN_SENT entries that never saw a reply.
    pub syn_sent_unreplied: u64,
    /// Their most common destinations (`ip port`), at most 3.
    pub syn_sent_unreplied_top_dst: Vec<(String, u64)>,
    /// The namespace's established timeout (seconds).
    pub established_timeout: u32,
    pub idle_over_secs: u32,
    /// ESTABLISHED entries idle at least `idle_over_secs`.
    pub established_idle_over: u64,
    /// ESTABLISHED entries whose age is unknown (custom timeout).
    pub established_age_unknown: u64,
    pub time_wait_timeout: u32,
    /// The sources (original direction) holding most long-idle ESTABLISHED
    /// entries, at most 3.
    #[serde(default)]
    pub established_idle_top_src: Vec<(String, u64)>,
    /// The dump stopped at its time budget: `entries` were judged out of
    /// this many in the table (a fair sample: a dump is in hash order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_of: Option<u64>,
    /// Entries (not TIME_WAIT or CLOSE) that saw a packet in the last
    /// [`ACTIVE_SECS`]: the live load.
    #[serde(default)]
    pub active: u64,
}

/// The sink a dump feeds: one pass, bounded by the distinct unreplied
/// SYN_SENT destinations.
pub struct MixSink {
    timeouts: Timeouts,
    mix: TableMix,
    state: [u64; 10],
    syn_dst: FastMap<(Addr, u16), u32>,
    idle_src: FastMap<Addr, u32>,
}

impl Sink for MixSink {
    fn push(&mut self, e: &Entry) {
        self.mix.entries += 1;
        self.mix.assured += e.assured() as u64;
        let closed = e.is_tcp() && matches!(e.state, TcpState::TimeWait | TcpState::Close);
        if !closed && self.timeouts.age(e).is_some_and(|a| a < ACTIVE_SECS) {
            self.mix.active += 1;
        }
        if !e.is_tcp() {
            return;
        }
        self.mix.tcp += 1;
        self.state[e.state as usize] += 1;
        match e.state {
            TcpState::SynSent if e.unreplied() => {
                self.mix.syn_sent_unreplied += 1;
                *self.syn_dst.entry((e.dst, e.dport)).or_insert(0) += 1;
            }
            TcpState::Established => match self.timeouts.age(e) {
                Some(a) if a >= self.mix.idle_over_secs => {
                    self.mix.established_idle_over += 1;
                    *self.idle_src.entry(e.src).or_insert(0) += 1;
                }
                Some(_) => {}
                None => self.mix.established_age_unknown += 1,
            },
            _ => {}
        }
    }
    fn merge(&mut self, o: Self) {
        let m = &mut self.mix;
        m.entries += o.mix.entries;
        m.tcp += o.mix.tcp;
        m.assured += o.mix.assured;
        m.syn_sent_unreplied += o.mix.syn_sent_unreplied;
        m.established_idle_over += o.mix.established_idle_over;
        m.established_age_unknown += o.mix.established_age_unknown;
        m.active += o.mix.active;
        for (a, b) in self.state.iter_mut().zip(o.state) {
            *a += b;
        }
        for (k, n) in o.syn_dst {
            *self.syn_dst.entry(k).or_insert(0) += n;
        }
        for (k, n) in o.idle_src {
            *self.idle_src.entry(k).or_insert(0) += n;
        }
    }
}

impl MixSink {
    /// An empty mix; idle ages with `timeouts`.
    pub fn new(timeouts: Timeouts) -> MixSink {
        MixSink {
            timeouts,
            mix: TableMix {
                established_timeout: timeouts.tcp[TcpState::Established as usize],
                time_wait_timeout: timeouts.tcp[TcpState::TimeWait as usize],
                idle_over_secs: IDLE_OVER_SECS,
                ..TableMix::default()
            },
            state: [0; 10],
            syn_dst: FastMap::default(),
            idle_src: FastMap::default(),
        }
    }
    /// The counts, with the top unreplied SYN_SENT destinations.
    pub fn finish(mut self) -> TableMix {
        for (i, n) in self.state.iter().enumerate() {
            if *n > 0 {
                let name = TcpState::from_u8(i as u8).as_str().to_string();
                self.mix.by_state.insert(name, *n);
            }
        }
        let mut v: Vec<((Addr, u16), u32)> = self.syn_dst.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.mix.syn_sent_unreplied_top_dst = v
            .into_iter()
            .take(3)
            .map(|((a, p), n)| (format!("{a} {p}"), n as u64))
            .collect();
        let mut v: Vec<(Addr, u32)> = self.idle_src.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.mix.established_idle_top_src = v
            .into_iter()
            .take(3)
            .map(|(a, n)| (a.to_string(), n as u64))
            .collect();
        self.mix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_counts_by_hand() {
        let text = "\
tcp 6 100 TIME_WAIT src=10.0.0.1 dst=10.9.9.9 sport=1000 dport=443 src=10.9.9.9 dst=10.0.0.1 sport=443 dport=1000 [ASSURED] mark=0 use=1
tcp 6 119 SYN_SENT src=10.0.0.1 dst=10.9.9.9 sport=1002 dport=443 [UNREPLIED] src=10.9.9.9 dst=10.0.0.1 sport=443 dport=1002 mark=0 use=1
tcp 6 110 SYN_SENT src=10.0.0.2 dst=10.9.9.9 sport=1002 dport=443 [UNREPLIED] src=10.9.9.9 dst=10.0.0.2 sport=443 dport=1002 mark=0 use=1
tcp 6 1000 ESTABLISHED src=10.0.0.2 dst=10.9.9.8 sport=1000 dport=80 src=10.9.9.8 dst=10.0.0.2 sport=80 dport=1000 [ASSURED] mark=5 use=1
tcp 6 430000 ESTABLISHED src=10.0.0.3 dst=10.9.9.8 sport=1000 dport=80 src=10.9.9.8 dst=10.0.0.3 sport=80 dport=1000 [ASSURED] mark=5 use=1
tcp 6 500000 ESTABLISHED src=10.0.0.4 dst=10.9.9.8 sport=1000 dport=80 src=10.9.9.8 dst=10.0.0.4 sport=80 dport=1000 [ASSURED] mark=5 use=1
udp 17 25 src=10.0.0.4 dst=10.9.9.7 sport=999 dport=53 [UNREPLIED] src=10.9.9.7 dst=10.0.0.4 sport=53 dport=999 mark=0 use=1
";
        let mut s = MixSink::new(Timeouts::default());
        crate::table::text::parse_bytes(text.as_bytes(), &mut s);
        let m = s.finish();
        assert_eq!((m.entries, m.tcp, m.assured), (7, 6, 4));
        assert_eq!(m.by_state["SYN_SENT"], 2);
        assert_eq!(m.by_state["ESTABLISHED"], 3);
        assert_eq!(m.syn_sent_unreplied, 2);
        assert_eq!(
            m.syn_sent_unreplied_top_dst,
            vec![("10.9.9.9 443".to_string(), 2)]
        );
        // 432000 − 1000 is long idle; 432000 − 430000 = 2000 s is not.
        assert_eq!(m.established_idle_over, 1);
        assert_eq!(
            m.established_idle_top_src,
            vec![("10.0.0.2".to_string(), 1)]
        );
        assert_eq!(m.established_age_unknown, 1);
        assert_eq!(m.established_timeout, 432_000);
        // Active: the two SYN_SENT (1 s, 10 s old) and the UDP entry (5 s).
        assert_eq!(m.active, 3);
    }
}
