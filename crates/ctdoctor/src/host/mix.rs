//! Reading the table's contents for `check` (`conntrack.state_mix.*`):
//! one dump of the live table (through `host::entries`) aggregated into a
//! [`TableMix`] (`table::mix`: TCP state mix, unreplied SYN_SENT entries,
//! long-idle ESTABLISHED entries).
//!
//! A dump costs ~2.2 s per million entries, so live it runs when the
//! namespace holds ≤ [`DUMP_LIMIT`] entries, when `check --deep` asked for
//! it (`--deep`, [`Root::is_deep`]), or — whatever the size — when the
//! table is under pressure (≥ [`PRESSURE_USAGE_PCT`] % full, or the kernel
//! logged "table full" for this namespace — or without naming one — within
//! the last [`RECENT_FULL_SECS`]: [`recent_table_full`]): then the cause
//! is what users need, and only the dump measures it. Drop counters are
//! not used: since boot they say it happened, and a single reading cannot
//! say they rise. Under pressure the
//! dump stops after [`PRESSURE_BUDGET`]; a dump comes in hash order,
//! unrelated to state and age, so the part read is a fair sample, and
//! [`TableMix::sample_of`] says it is one. In a capture or a fixture tree it is the
//! probe `probe:table_mix`: the aggregated counts as JSON ([`TableMix`]).
//!
//! Not for: aggregating (that is `table::mix`) or judging the mix (that is
//! `checks::state_mix`).

use super::{Fact, Root, Unavailable};
use crate::table::mix::MixSink;
pub use crate::table::mix::{TableMix, IDLE_OVER_SECS};
use crate::table::timeouts::Timeouts;

/// The probe key a capture stores the mix under.
pub const PROBE: &str = "probe:table_mix";

/// Live tables larger than this are dumped only with `--deep` or under
/// pressure.
pub const DUMP_LIMIT: u64 = 100_000;

/// Usage (count / max, percent) from which a table of any size is dumped.
pub const PRESSURE_USAGE_PCT: u64 = 90;

/// A "table full" line this recent means pressure, whatever the usage now.
pub const RECENT_FULL_SECS: f64 = 600.0;

/// Whether the kernel logged "table full" for the namespace `inode` (or a
/// line naming no namespace: kernels before 6.17 never name one) within
/// [`RECENT_FULL_SECS`] of `uptime_secs`.
pub fn recent_table_full(kmsg: &super::kmsg::Kmsg, inode: Option<u64>, uptime_secs: f64) -> bool {
    kmsg.table_full.iter().any(|t| {
        (t.inode.is_none() || t.inode == inode)
            && t.last_usec
                .is_some_and(|u| uptime_secs - u as f64 / 1e6 <= RECENT_FULL_SECS)
    })
}

/// How long a dump under pressure may take (~1.3M entries here); `--deep`
/// has no limit.
pub const PRESSURE_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Aggregate the current thread's namespace (live) with `timeouts`, for at
/// most `budget` when one is given; `count` is the table's size before the
/// dump, recorded as [`TableMix::sample_of`] when the budget cut it.
pub fn dump_mix(
    timeouts: Timeouts,
    budget: Option<std::time::Duration>,
    count: u64,
) -> anyhow::Result<TableMix> {
    let mut sink = MixSink::new(timeouts);
    let st = super::entries::dump_here_within(&mut sink, budget)?;
    let mut mix = sink.finish();
    if st.stopped {
        mix.sample_of = Some(count.max(mix.entries));
    }
    Ok(mix)
}

/// Read the mix: live, by dumping (size permitting) with the namespace's
/// `timeouts` (from its `host::conntrack` fact); otherwise the probe.
/// `recent_full`: [`recent_table_full`] of the same reading.
pub fn read(root: &Root, timeouts: Timeouts, recent_full: bool) -> Fact<TableMix> {
    let bytes = root.probe(PROBE, || {
        let count = super::read_u64(root, "proc/sys/net/netfilter/nf_conntrack_count")?;
        let max = super::read_u64(root, "proc/sys/net/netfilter/nf_conntrack_max").unwrap_or(0);
        let pressed = recent_full
            || max > 0 && count.saturating_mul(100) >= max.saturating_mul(PRESSURE_USAGE_PCT);
        if count > DUMP_LIMIT && !root.is_deep() && !pressed {
            return Err(Unavailable::Failed {
                what: "table contents".into(),
                detail: format!(
                    "{count} entries > {DUMP_LIMIT}, under {PRESSURE_USAGE_PCT} % full and no \
                     recent \"table full\" line: not dumped (a dump costs ~2.2 s per million entries); run `ctdoctor check \
                     --deep` or `ctdoctor summary`"
                ),
            });
        }
        let budget = (count > DUMP_LIMIT && !root.is_deep()).then_some(PRESSURE_BUDGET);
        // A dump on a kernel without nf_conntrack_netlink would load it:
        // check never loads a module.
        let sysroot = root.live_prefix().unwrap_or(std::path::Path::new("/"));
        super::consumers::module_present(sysroot, "nf_conntrack_netlink")?;
        let mix = dump_mix(timeouts, budget, count).map_err(|e| dump_unavailable(&e))?;
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
        Unavailable::permission("conntrack dump (ctnetlink)")
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
    fn a_recent_table_full_line_for_this_netns_or_none_is_pressure() {
        let line = |inode: Option<u64>, secs: u64| super::super::kmsg::TableFull {
            inode,
            lines: 1,
            first_usec: Some(secs * 1_000_000),
            last_usec: Some(secs * 1_000_000),
            times_usec: vec![secs * 1_000_000],
        };
        let k = |t| super::super::kmsg::Kmsg {
            table_full: vec![t],
            ..Default::default()
        };
        // 100 s ago, this netns: yes; another netns: no; no netns named: yes.
        assert!(recent_table_full(&k(line(Some(7), 900)), Some(7), 1000.0));
        assert!(!recent_table_full(&k(line(Some(8), 900)), Some(7), 1000.0));
        assert!(recent_table_full(&k(line(None, 900)), Some(7), 1000.0));
        // An hour ago: no.
        assert!(!recent_table_full(&k(line(Some(7), 100)), Some(7), 3700.0));
    }

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
            dump_unavailable(&e).is_permission(),
            "{:?}",
            dump_unavailable(&e)
        );
        let e = anyhow::Error::new(ctnetlink::Error::Netlink {
            op: "dump",
            errno: libc::EBUSY,
        });
        assert!(matches!(dump_unavailable(&e), Unavailable::Failed { .. }));
    }
}
