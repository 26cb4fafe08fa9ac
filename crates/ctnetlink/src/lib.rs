//! ctnetlink: the conntrack netlink protocol (NETLINK_NETFILTER, subsystem
//! CTNETLINK), spoken directly: streaming table dumps decoded zero-copy,
//! statistics, create/update/delete, batch create, events and network
//! namespaces.
//!
//! Protocol only: no knowledge of ctdoctor's checks or command line.
//!
//! # API overview
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use ctnetlink::{Socket, DumpRequest, consts::AF_INET};
//!
//! let mut sock = Socket::open()?;                       // this thread's netns
//! let mut tcp = 0u64;
//! let st = sock.dump(&DumpRequest::all().family(AF_INET), |e| {
//!     if let Ok(f) = e.summary() {                      // one pass, Copy struct
//!         if f.l4proto() == 6 { tcp += 1; }
//!     }
//!     ControlFlow::Continue(())
//! })?;
//! let g = sock.stats()?;                                 // conntrack -C (+ max)
//! let cpus = sock.stats_cpu()?;                          // conntrack -S
//! # Ok::<(), ctnetlink::Error>(())
//! ```
//!
//! - [`Socket::open`], [`Socket::open_with`], [`Socket::open_in`] (another
//!   netns, named by a [`netns::Target`]); [`netns`] is the workspace's
//!   namespace crate, re-exported so callers name the same types.
//! - Dumps: [`Socket::dump`] with [`DumpRequest`] (family, mark/mask,
//!   status/mask, zone) → [`DumpStats`] (`interrupted` = NLM_F_DUMP_INTR).
//! - Views: [`Entry`] (lazy accessors `orig`, `reply`, `tcp_state`,
//!   `status`, `timeout`, `mark`, `zone`, `id`, `use_count`, `counters_*`)
//!   and [`Entry::summary`] → [`EntryFields`] (all of them in one pass).
//! - Stats: [`Socket::stats`] ([`GlobalStats`]), [`Socket::count`],
//!   [`Socket::stats_cpu`] ([`CpuStatsAll`], per CPU and summed).
//! - Writes: [`Conntrack`] builder, [`Socket::create`], [`Socket::update`],
//!   [`Socket::delete`], [`Socket::flush`], [`Socket::create_batch`],
//!   [`Socket::delete_batch`] ([`DeleteKey`]: tuple, zone, and the id that
//!   makes a delete exact), [`Socket::get`] (one entry by tuple).
//! - Events: [`Socket::subscribe`] ([`events::groups`]),
//!   [`Socket::recv_events`] → [`Event`] (`New`/`Update`/`Destroy`/`Lost`).
//! - Raw layer: [`attr::Messages`], [`attr::Attrs`] (zero-copy walks),
//!   [`consts`] (kernel names), [`decode_buffer`] (decode a captured dump).
//!
//! # Filters, interrupted dumps, lost events
//!
//! - [`DumpRequest`] filters: family, mark/mask and status/mask (kernel
//!   5.15+) are sent to the kernel; zone is checked in userspace only (the
//!   kernel applies CTA_ZONE to dumps only with a CTA_FILTER tuple filter).
//!   Whenever mark, status or zone is set, every entry is also re-checked
//!   here, so kernels that ignore a filter still give the right subset
//!   ([`DumpStats::filtered`] counts what userspace dropped; 0 on 6.18 for
//!   family/mark/status).
//! - NLM_F_DUMP_INTR (the table changed during the walk): reported as
//!   [`DumpStats::interrupted`], never retried here; the caller chooses
//!   (a statistical summary can accept it, an exact count dumps again).
//! - Stopping a dump early (`ControlFlow::Break`) reads and discards the
//!   rest: the kernel cannot cancel a dump, and the socket stays usable.
//! - Events: ENOBUFS (socket buffer overflowed, events dropped) arrives as
//!   [`Event::Lost`]; resync with a dump.
//! - Batch create and delete bound each sendmsg (at most [`MAX_BATCH`] messages, and
//!   few enough that every ack fits the receive buffer) and reports per-entry
//!   kernel errors in [`BatchReport::failed`].
//! - Status on create/update always carries IPS_CONFIRMED (the kernel sets
//!   it on ctnetlink entries and answers EBUSY to a status without it).
//!
//! # Message layout
//!
//! ```text
//!  recv buffer: one or more netlink messages, each 4-byte aligned
//!  +--------------------------- nlmsghdr (16) ---------------------------+
//!  | nlmsg_len u32 | nlmsg_type u16 | nlmsg_flags u16 | seq u32 | pid u32 |
//!  |               | (CTNETLINK=1)<<8 | MSG (NEW 0, DELETE 2, ...)       |
//!  +------------------------------ nfgenmsg (4) -------------------------+
//!  | family u8 (AF_INET 2 / AF_INET6 10) | version u8 (0) | res_id be16   |
//!  +------------------------------ attributes ---------------------------+
//!  | nlattr { nla_len u16 | nla_type u16 (NLA_F_NESTED 0x8000) } value pad|
//!  |  CTA_TUPLE_ORIG (nested)                                             |
//!  |    CTA_TUPLE_IP (nested)    CTA_IP_V4_SRC [4] CTA_IP_V4_DST [4]      |
//!  |                             (or CTA_IP_V6_SRC [16] / _DST [16])      |
//!  |    CTA_TUPLE_PROTO (nested) CTA_PROTO_NUM u8, CTA_PROTO_SRC_PORT be16|
//!  |                             CTA_PROTO_DST_PORT be16 (or ICMP id/type)|
//!  |    CTA_TUPLE_ZONE be16 (optional)                                    |
//!  |  CTA_TUPLE_REPLY (nested, same shape)                                |
//!  |  CTA_STATUS be32   CTA_TIMEOUT be32   CTA_MARK be32   CTA_USE be32   |
//!  |  CTA_PROTOINFO > CTA_PROTOINFO_TCP > CTA_PROTOINFO_TCP_STATE u8      |
//!  |  CTA_COUNTERS_ORIG/REPLY > PACKETS be64, BYTES be64 (acct on)        |
//!  |  CTA_ID be32   CTA_ZONE be16   (unknown types: skipped)              |
//!  +----------------------------------------------------------------------+
//!  A dump ends with NLMSG_DONE (payload: int status); any message may
//!  carry NLM_F_DUMP_INTR. Errors and acks are NLMSG_ERROR (int -errno,
//!  then the request's nlmsghdr).
//! ```
//!
//! Decoding never allocates per entry and never panics on any input: every
//! length is checked and every error names the field it was reading
//! ([`DecodeError`]); unknown attributes are skipped and unknown status bits
//! kept.

pub mod attr;
mod build;
pub mod consts;
mod dump;
mod entry;
mod error;
pub mod events;
mod socket;
mod stats;

pub use build::{
    encode_delete, encode_delete_key, encode_new, put_tuple, BatchReport, Conntrack, DeleteKey,
    MAX_BATCH,
};
pub use dump::{DumpRequest, DumpStats};
pub use entry::{Counters, Entry, EntryFields, Status, TcpState, Tuple, STATUS_NAMES};
pub use error::{DecodeError, DecodeReason, Error};
pub use events::Event;
pub use netns;
pub use socket::{Socket, DEFAULT_RCVBUF, RECV_BUF};
pub use stats::{cpu_stat_name, CpuStats, CpuStatsAll, GlobalStats, CPU_STAT_NAMES};

/// Decode a captured buffer of netlink messages (e.g. the concatenated
/// datagrams of a dump) and call `f` for every conntrack entry in it
/// (IPCTNL_MSG_CT_NEW and _DELETE messages; others are skipped). Returns
/// the number of entries. For tests, fuzzing and benchmarks; live dumps use
/// [`Socket::dump`].
pub fn decode_buffer(
    buf: &[u8],
    mut f: impl FnMut(&Entry<'_>) -> Result<(), DecodeError>,
) -> Result<u64, DecodeError> {
    let mut n = 0;
    for m in attr::Messages::new(buf) {
        let m = m?;
        let (subsys, msg) = m.subsys_msg();
        if m.hdr.kind < 0x10
            || subsys != consts::NFNL_SUBSYS_CTNETLINK
            || (msg != consts::IPCTNL_MSG_CT_NEW && msg != consts::IPCTNL_MSG_CT_DELETE)
        {
            continue;
        }
        let e = Entry::from_message(&m)?;
        f(&e)?;
        n += 1;
    }
    Ok(n)
}

/// Run every decoder in this crate over arbitrary bytes, discarding the
/// results: the body of the fuzz target, the proptest and the corpus replay
/// test. Must never panic.
#[doc(hidden)]
pub fn exercise_decoders(data: &[u8]) {
    fn all(e: &Entry<'_>) {
        let _ = e.summary();
        let _ = e.orig();
        let _ = e.reply();
        let _ = e.tcp_state();
        let _ = e.other_proto_state();
        let _ = e.status().map(|s| s.map(|s| s.to_string()));
        let _ = (e.timeout(), e.mark(), e.zone(), e.id(), e.use_count());
        let _ = (e.counters_orig(), e.counters_reply(), e.l4proto());
        let _ = DumpRequest::all()
            .mark(1, 1)
            .status(4, 4)
            .zone(1)
            .matches(e);
        for a in e.attrs().take(64) {
            let _ = a.map(|a| a.nested("fuzz").count());
        }
    }
    let _ = decode_buffer(data, |e| {
        all(e);
        Ok(())
    });
    all(&Entry::from_attrs(consts::AF_INET, data));
    let _ = CpuStats::decode(0, data);
    for m in attr::Messages::new(data).take(64).flatten() {
        let _ = (m.nfgen(), m.error_code(), m.error_seq(), m.subsys_msg());
    }
}
