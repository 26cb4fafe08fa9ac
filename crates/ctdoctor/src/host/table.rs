//! The table's contents for `check` (`conntrack.state_mix.*`): a TCP
//! state mix, unreplied SYN_SENT entries and long-idle ESTABLISHED entries,
//! aggregated from one dump of the live table (through `host::entries`).
//!
//! A dump costs ~2 µs per entry in the kernel, so live it runs only when
//! the namespace holds ≤ [`DUMP_LIMIT`] entries, or when `check --deep`
//! asked for it (`--deep`, [`Root::is_deep`]). In a capture or a fixture tree it is the
//! probe `probe:table_mix`: the aggregated counts as JSON ([`TableMix`]).
//!
//! Not for: judging the mix (that is `checks::state_mix`).

use super::{Fact, Root, Unavailable};
use crate::table::agg::{FastMap, Timeouts};
use crate::table::entry::{Addr, Entry, TcpState};
use crate::table::text::Sink;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The probe key a capture stores the mix under.
pub const PROBE: &str = "probe:table_mix";

/// Live tables larger than this are dumped only with `--deep`.
pub const DUMP_LIMIT: u64 = 100_000;

/// ESTABLISHED entries idle longer than TCP keepalive's give-up horizon
/// (7200 + 75 × 9 s with Linux defaults) are counted as long-idle.
pub const IDLE_OVER_SECS: u32 = crate::kernel::KEEPALIVE_HORIZON_SECS as u32;

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
}

/// The sink a live dump feeds.
struct MixSink {
    timeouts: Timeouts,
    mix: TableMix,
    state: [u64; 10],
    syn_dst: FastMap<(Addr, u16), u32>,
}

impl Sink for MixSink {
    fn push(&mut self, e: &Entry) {
        self.mix.entries += 1;
        self.mix.assured += e.assured() as u64;
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
                Some(a) if a >= self.mix.idle_over_secs => self.mix.established_idle_over += 1,
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
        for (a, b) in self.state.iter_mut().zip(o.state) {
            *a += b;
        }
        for (k, n) in o.syn_dst {
            *self.syn_dst.entry(k).or_insert(0) += n;
        }
    }
}

impl MixSink {
    fn new(timeouts: Timeouts) -> MixSink {
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
        }
    }
    fn finish(mut self) -> TableMix {
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
        self.mix
    }
}

/// Aggregate the current thread's namespace (live) with `timeouts`.
pub fn dump_mix(timeouts: Timeouts) -> anyhow::Result<TableMix> {
    let mut sink = MixSink::new(timeouts);
    super::entries::dump_here(&mut sink)?;
    Ok(sink.finish())
}

/// Read the mix: live, by dumping (size permitting); otherwise the probe.
pub fn read(root: &Root) -> Fact<TableMix> {
    let bytes = root.probe(PROBE, || {
        let count = super::read_u64(root, "proc/sys/net/netfilter/nf_conntrack_count")?;
        if count > DUMP_LIMIT && !root.is_deep() {
            return Err(Unavailable::Failed {
                what: "table contents".into(),
                detail: format!(
                    "{count} entries > {DUMP_LIMIT}: not dumped (a dump costs ~2 µs per entry); \
                     run `ctdoctor check --deep` or `ctdoctor summary`"
                ),
            });
        }
        // A dump on a kernel without nf_conntrack_netlink would load it:
        // check never loads a module.
        let sysroot = root.live_prefix().unwrap_or(std::path::Path::new("/"));
        super::consumers::module_present(sysroot, "nf_conntrack_netlink")?;
        let timeouts = Timeouts::read(root).unwrap_or_default();
        let mix = dump_mix(timeouts).map_err(|e| dump_unavailable(&e))?;
        Ok(serde_json::to_vec(&mix).expect("TableMix serialises"))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Unavailable::malformed(PROBE, e.to_string()))
}

/// Why a dump failed: the kernel refuses ctnetlink to non-root with EPERM
/// (nfnetlink wants CAP_NET_ADMIN).
fn dump_unavailable(e: &anyhow::Error) -> Unavailable {
    let needs_root = e.chain().any(|c| {
        c.downcast_ref::<ctnetlink::Error>()
            .is_some_and(|n| matches!(n.errno(), Some(libc::EPERM) | Some(libc::EACCES)))
    });
    if needs_root {
        Unavailable::NeedsRoot {
            what: "conntrack dump (ctnetlink)".into(),
        }
    } else {
        Unavailable::Failed {
            what: "conntrack dump (ctnetlink)".into(),
            detail: format!("{e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eperm_from_the_kernel_means_needs_root() {
        // What a non-root dump returns: NLMSG_ERROR with EPERM ("Operation
        // not permitted"), wrapped in dump_here's context.
        let e = anyhow::Error::new(ctnetlink::Error::Netlink {
            op: "dump",
            errno: libc::EPERM,
        })
        .context("dumping the conntrack table");
        assert!(
            matches!(dump_unavailable(&e), Unavailable::NeedsRoot { .. }),
            "{:?}",
            dump_unavailable(&e)
        );
        let e = anyhow::Error::new(ctnetlink::Error::Netlink {
            op: "dump",
            errno: libc::EBUSY,
        });
        assert!(matches!(dump_unavailable(&e), Unavailable::Failed { .. }));
    }

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
        assert_eq!(m.established_age_unknown, 1);
        assert_eq!(m.established_timeout, 432_000);
    }
}
