//! Streaming table dumps: [`DumpRequest`] (filters), [`Socket::dump`] (one
//! callback per entry, never collecting the table) and [`DumpStats`].
//!
//! Filters and where they run:
//! - family (nfgenmsg): in the kernel, every version.
//! - mark/mask (CTA_MARK + CTA_MARK_MASK): in the kernel (needs
//!   CONFIG_NF_CONNTRACK_MARK).
//! - status/mask (CTA_STATUS + CTA_STATUS_MASK): in the kernel since 5.15;
//!   older kernels ignore the attributes.
//! - zone: userspace only (the kernel applies CTA_ZONE to dumps only
//!   together with a CTA_FILTER tuple filter).
//!
//! Userspace fallback: whenever a mark, status or zone filter is set, every
//! entry is also checked here before the callback sees it, so the result is
//! right on kernels that ignore a filter (at the cost of one decode pass of
//! those entries). `DumpStats::filtered` counts entries dropped here.
//!
//! NLM_F_DUMP_INTR: the table changed while the kernel walked it (an entry
//! may have been missed or seen twice). We never retry on our own:
//! `DumpStats::interrupted` reports it and the caller decides (a summary can
//! accept it; an exact count should dump again).

use std::ops::ControlFlow;

use crate::attr::Message;
use crate::consts::*;
use crate::entry::{Entry, Status};
use crate::error::Error;
use crate::socket::Socket;

/// What to dump. `Default` = everything, both families.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpRequest {
    /// AF_UNSPEC (0, all), AF_INET (2) or AF_INET6 (10).
    pub family: u8,
    /// (mark, mask): entries with `entry.mark & mask == mark & mask`.
    pub mark: Option<(u32, u32)>,
    /// (status, mask): entries with `entry.status & mask == status & mask`.
    pub status: Option<(u32, u32)>,
    /// Entries in this zone (CTA_ZONE; absent counts as zone 0).
    pub zone: Option<u16>,
    /// Dump with IPCTNL_MSG_CT_GET_CTRZERO: read and zero the counters.
    pub zero_counters: bool,
}

impl DumpRequest {
    /// All entries.
    pub fn all() -> Self {
        DumpRequest::default()
    }
    /// Only one address family (AF_INET / AF_INET6).
    pub fn family(mut self, family: u8) -> Self {
        self.family = family;
        self
    }
    /// Only entries whose mark matches under `mask`.
    pub fn mark(mut self, mark: u32, mask: u32) -> Self {
        self.mark = Some((mark, mask));
        self
    }
    /// Only entries whose status bits match under `mask` (e.g.
    /// `status(IPS_ASSURED, IPS_ASSURED)`).
    pub fn status(mut self, status: u32, mask: u32) -> Self {
        self.status = Some((status, mask));
        self
    }
    /// Only entries in one zone.
    pub fn zone(mut self, zone: u16) -> Self {
        self.zone = Some(zone);
        self
    }
    fn needs_userspace_check(&self) -> bool {
        self.mark.is_some() || self.status.is_some() || self.zone.is_some()
    }
    /// Whether an entry passes the mark/status/zone filters (family is
    /// checked by the caller from nfgenmsg).
    pub fn matches(&self, e: &Entry<'_>) -> Result<bool, crate::DecodeError> {
        if let Some((m, mask)) = self.mark {
            if e.mark()?.unwrap_or(0) & mask != m & mask {
                return Ok(false);
            }
        }
        if let Some((s, mask)) = self.status {
            if e.status()?.unwrap_or(Status(0)).0 & mask != s & mask {
                return Ok(false);
            }
        }
        if let Some(z) = self.zone {
            if e.zone()?.unwrap_or(0) != z {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// What one dump did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Entries handed to the callback.
    pub entries: u64,
    /// Entries the kernel sent that the userspace filter dropped.
    pub filtered: u64,
    /// Netlink messages carrying entries (including filtered ones).
    pub messages: u64,
    /// Bytes received.
    pub bytes: u64,
    /// recv calls.
    pub recvs: u64,
    /// NLM_F_DUMP_INTR was set: the table changed during the walk; the
    /// result may miss or repeat entries. Not retried here.
    pub interrupted: bool,
    /// The callback returned `Break`; the rest was read and discarded.
    pub stopped: bool,
}

impl Socket {
    /// Dump the table, calling `f` once per entry. `f` returns
    /// `ControlFlow::Break(())` to stop early (the rest of the dump is still
    /// read and discarded, so the socket stays usable). A message that does
    /// not decode ends the dump with `Error::Decode` naming the field.
    pub fn dump(
        &mut self,
        req: &DumpRequest,
        mut f: impl FnMut(&Entry<'_>) -> ControlFlow<()>,
    ) -> Result<DumpStats, Error> {
        let seq = self.next_seq();
        self.wbuf.buf.clear();
        let msg = if req.zero_counters {
            IPCTNL_MSG_CT_GET_CTRZERO
        } else {
            IPCTNL_MSG_CT_GET
        };
        let start = self
            .wbuf
            .begin_msg(msg, NLM_F_REQUEST | NLM_F_DUMP, seq, req.family);
        if let Some((m, mask)) = req.mark {
            self.wbuf.be32(CTA_MARK, m);
            self.wbuf.be32(CTA_MARK_MASK, mask);
        }
        if let Some((s, mask)) = req.status {
            self.wbuf.be32(CTA_STATUS, s);
            self.wbuf.be32(CTA_STATUS_MASK, mask);
        }
        self.wbuf.end_msg(start);
        let mut stats = DumpStats::default();
        let check = req.needs_userspace_check();
        let family = req.family;
        let t = self.request("dump", seq, |m: &Message<'_>| {
            if m.hdr.kind != ((NFNL_SUBSYS_CTNETLINK as u16) << 8 | IPCTNL_MSG_CT_NEW as u16) {
                return Ok(true);
            }
            let e = Entry::from_message(m)?;
            let wrong_family = family != AF_UNSPEC && e.family() != family;
            if wrong_family || (check && !req.matches(&e)?) {
                stats.filtered += 1;
                return Ok(true);
            }
            stats.entries += 1;
            match f(&e) {
                ControlFlow::Continue(()) => Ok(true),
                ControlFlow::Break(()) => {
                    stats.stopped = true;
                    Ok(false)
                }
            }
        })?;
        stats.messages = t.messages;
        stats.bytes = t.bytes;
        stats.recvs = t.recvs;
        stats.interrupted = t.interrupted;
        Ok(stats)
    }

    /// Like [`Socket::dump`], but `Break` ends the dump at once: the socket
    /// is consumed and closed with the rest unread, so the kernel stops
    /// walking the table. For a sample within a time budget: a dump comes
    /// in hash order, unrelated to state or age, so a prefix is a fair
    /// sample of the table.
    pub fn dump_sample(
        mut self,
        req: &DumpRequest,
        f: impl FnMut(&Entry<'_>) -> ControlFlow<()>,
    ) -> Result<DumpStats, Error> {
        self.abandon_on_stop = true;
        self.dump(req, f)
    }

    /// Count entries with a dump (no per-entry decoding beyond the filter).
    pub fn dump_count(&mut self, req: &DumpRequest) -> Result<DumpStats, Error> {
        self.dump(req, |_| ControlFlow::Continue(()))
    }
}
