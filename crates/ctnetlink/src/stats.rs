//! Table statistics: GET_STATS (global entry count and max, what
//! `conntrack -C` prints) and GET_STATS_CPU (per-CPU counters, what
//! `conntrack -S` prints), with sums. Every CTA_STATS_* attribute the kernel
//! sends is kept, known or not.

use crate::attr::{Attrs, Message};
use crate::consts::*;
use crate::error::{DecodeError, Error};
use crate::socket::Socket;

/// GET_STATS: the netns's entry count and the (global) maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalStats {
    /// CTA_STATS_GLOBAL_ENTRIES.
    pub entries: u32,
    /// CTA_STATS_GLOBAL_MAX_ENTRIES (absent on old kernels).
    pub max_entries: Option<u32>,
}

/// Per-CPU counters (GET_STATS_CPU). Slot `i` holds attribute CTA_STATS `i`
/// when the kernel sent it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// The CPU (nfgenmsg res_id).
    pub cpu: u16,
    pub values: [Option<u32>; CTA_STATS_SLOTS],
}

/// Kernel attribute names, as `conntrack -S` prints them, by attribute number.
pub const CPU_STAT_NAMES: [(u16, &str); 15] = [
    (CTA_STATS_SEARCHED, "searched"),
    (CTA_STATS_FOUND, "found"),
    (CTA_STATS_NEW, "new"),
    (CTA_STATS_INVALID, "invalid"),
    (CTA_STATS_IGNORE, "ignore"),
    (CTA_STATS_DELETE, "delete"),
    (CTA_STATS_DELETE_LIST, "delete_list"),
    (CTA_STATS_INSERT, "insert"),
    (CTA_STATS_INSERT_FAILED, "insert_failed"),
    (CTA_STATS_DROP, "drop"),
    (CTA_STATS_EARLY_DROP, "early_drop"),
    (CTA_STATS_ERROR, "error"),
    (CTA_STATS_SEARCH_RESTART, "search_restart"),
    (CTA_STATS_CLASH_RESOLVE, "clash_resolve"),
    (CTA_STATS_CHAIN_TOOLONG, "chaintoolong"),
];

/// The `conntrack -S` name of a stats attribute.
pub fn cpu_stat_name(attr: u16) -> Option<&'static str> {
    CPU_STAT_NAMES
        .iter()
        .find(|(a, _)| *a == attr)
        .map(|(_, n)| *n)
}

impl CpuStats {
    /// Decode one GET_STATS_CPU reply's attributes.
    pub fn decode(cpu: u16, attrs: &[u8]) -> Result<CpuStats, DecodeError> {
        let mut s = CpuStats {
            cpu,
            ..CpuStats::default()
        };
        for a in Attrs::new(attrs, "IPCTNL_MSG_CT_GET_STATS_CPU") {
            let a = a?;
            if let Some(slot) = s.values.get_mut(a.kind as usize) {
                *slot = Some(a.be32(cpu_stat_name(a.kind).unwrap_or("CTA_STATS_*"))?);
            }
        }
        Ok(s)
    }
    /// Value of one attribute (0 when the kernel did not send it).
    pub fn get(&self, attr: u16) -> u32 {
        self.values
            .get(attr as usize)
            .copied()
            .flatten()
            .unwrap_or(0)
    }
    pub fn found(&self) -> u32 {
        self.get(CTA_STATS_FOUND)
    }
    pub fn invalid(&self) -> u32 {
        self.get(CTA_STATS_INVALID)
    }
    pub fn insert(&self) -> u32 {
        self.get(CTA_STATS_INSERT)
    }
    pub fn insert_failed(&self) -> u32 {
        self.get(CTA_STATS_INSERT_FAILED)
    }
    pub fn drop(&self) -> u32 {
        self.get(CTA_STATS_DROP)
    }
    pub fn early_drop(&self) -> u32 {
        self.get(CTA_STATS_EARLY_DROP)
    }
    pub fn error(&self) -> u32 {
        self.get(CTA_STATS_ERROR)
    }
    pub fn search_restart(&self) -> u32 {
        self.get(CTA_STATS_SEARCH_RESTART)
    }
    pub fn clash_resolve(&self) -> u32 {
        self.get(CTA_STATS_CLASH_RESOLVE)
    }
    pub fn chaintoolong(&self) -> u32 {
        self.get(CTA_STATS_CHAIN_TOOLONG)
    }
    /// (attribute, name, value) of every attribute the kernel sent.
    pub fn iter(&self) -> impl Iterator<Item = (u16, Option<&'static str>, u32)> + '_ {
        self.values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i as u16, cpu_stat_name(i as u16), v)))
    }
}

/// All CPUs' counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuStatsAll {
    pub cpus: Vec<CpuStats>,
}

impl CpuStatsAll {
    /// Sum of one attribute over all CPUs (u64: no overflow).
    pub fn sum(&self, attr: u16) -> u64 {
        self.cpus.iter().map(|c| c.get(attr) as u64).sum()
    }
    /// Attributes present on any CPU.
    pub fn attrs(&self) -> Vec<u16> {
        (0..CTA_STATS_SLOTS as u16)
            .filter(|a| self.cpus.iter().any(|c| c.values[*a as usize].is_some()))
            .collect()
    }
}

fn is_msg(m: &Message<'_>, msg: u8) -> bool {
    m.hdr.kind == ((NFNL_SUBSYS_CTNETLINK as u16) << 8 | msg as u16)
}

impl Socket {
    /// GET_STATS: entries in this netns and the global max (`conntrack -C`).
    pub fn stats(&mut self) -> Result<GlobalStats, Error> {
        let seq = self.next_seq();
        self.wbuf.buf.clear();
        let s = self.wbuf.begin_msg(
            IPCTNL_MSG_CT_GET_STATS,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            AF_UNSPEC,
        );
        self.wbuf.end_msg(s);
        let mut out: Option<GlobalStats> = None;
        self.request("get stats", seq, |m| {
            if !is_msg(m, IPCTNL_MSG_CT_GET_STATS) {
                return Ok(true);
            }
            let (_, attrs) = m.nfgen()?;
            let mut g = GlobalStats::default();
            for a in Attrs::new(attrs, "IPCTNL_MSG_CT_GET_STATS") {
                let a = a?;
                match a.kind {
                    CTA_STATS_GLOBAL_ENTRIES => g.entries = a.be32("CTA_STATS_GLOBAL_ENTRIES")?,
                    CTA_STATS_GLOBAL_MAX_ENTRIES => {
                        g.max_entries = Some(a.be32("CTA_STATS_GLOBAL_MAX_ENTRIES")?)
                    }
                    _ => {}
                }
            }
            out = Some(g);
            Ok(true)
        })?;
        out.ok_or(Error::Decode(DecodeError::truncated(
            "IPCTNL_MSG_CT_GET_STATS",
            1,
            0,
        )))
    }

    /// The entry count (`conntrack -C`).
    pub fn count(&mut self) -> Result<u32, Error> {
        Ok(self.stats()?.entries)
    }

    /// GET_STATS_CPU: per-CPU counters (`conntrack -S`).
    pub fn stats_cpu(&mut self) -> Result<CpuStatsAll, Error> {
        let seq = self.next_seq();
        self.wbuf.buf.clear();
        let s = self.wbuf.begin_msg(
            IPCTNL_MSG_CT_GET_STATS_CPU,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            AF_UNSPEC,
        );
        self.wbuf.end_msg(s);
        let mut all = CpuStatsAll::default();
        self.request("get stats_cpu", seq, |m| {
            if !is_msg(m, IPCTNL_MSG_CT_GET_STATS_CPU) {
                return Ok(true);
            }
            let (g, attrs) = m.nfgen()?;
            all.cpus.push(CpuStats::decode(g.res_id, attrs)?);
            Ok(true)
        })?;
        Ok(all)
    }
}
