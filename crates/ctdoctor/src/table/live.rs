//! The live source: dump a namespace's table over ctnetlink (the
//! `ctnetlink` crate) and adapt each entry view to a [`table::Entry`]
//! (crate::table::Entry), with the namespace's own timeouts for idle ages.
//!
//! Not for: netlink itself (the `ctnetlink` crate owns the protocol) or
//! aggregation (see `agg`).

use super::agg::{Agg, Config, Summary, Timeouts};
use super::entry::{flags, Addr, Entry, TcpState};
use super::text::Sink;
use crate::cmd::summary::{MalformedInfo, SourceInfo};
use crate::host::netns::{run_in, Target};
use crate::host::Root;
use anyhow::{Context, Result};
use ctnetlink::consts::{IPS_ASSURED, IPS_HW_OFFLOAD, IPS_OFFLOAD, IPS_SEEN_REPLY};
use ctnetlink::{DumpRequest, EntryFields, Socket};
use std::ops::ControlFlow;

/// A ctnetlink entry (all summary fields decoded) as a [`Entry`];
/// `None` when it has no original tuple.
#[inline]
pub fn convert(f: &EntryFields) -> Option<Entry> {
    let o = f.orig?;
    let mut fl = 0;
    if f.status.0 & IPS_ASSURED != 0 {
        fl |= flags::ASSURED;
    }
    if f.status.0 & IPS_SEEN_REPLY != 0 {
        fl |= flags::SEEN_REPLY;
    }
    if f.status.0 & IPS_OFFLOAD != 0 {
        fl |= flags::OFFLOAD;
    }
    if f.status.0 & IPS_HW_OFFLOAD != 0 {
        fl |= flags::HW_OFFLOAD;
    }
    let mut e = Entry {
        l3: f.family,
        l4: o.proto,
        src: Addr::from_ip(o.src),
        dst: Addr::from_ip(o.dst),
        sport: o.src_port,
        dport: o.dst_port,
        state: TcpState::None,
        flags: fl,
        timeout: f.timeout.unwrap_or(0),
        mark: f.mark.unwrap_or(0),
        zone: f.zone.unwrap_or(0),
    };
    if e.is_tcp() {
        e.state = f
            .tcp_state
            .map_or(TcpState::None, |s| TcpState::from_u8(s.as_u8()));
    } else if !e.has_ports() {
        e.sport = o.icmp_id;
        e.dport = (o.icmp_type as u16) << 8 | o.icmp_code as u16;
    }
    Some(e)
}

/// What a live dump saw besides entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveStats {
    pub entries: u64,
    /// Entries that could not be decoded or had no original tuple.
    pub undecodable: u64,
    pub interrupted: bool,
}

/// Dump the table of the namespace this thread is in into `sink`.
pub fn dump_here<S: Sink>(sink: &mut S) -> Result<LiveStats> {
    let mut sock = Socket::open().context("opening a ctnetlink socket (needs root)")?;
    let mut st = LiveStats::default();
    let ds = sock
        .dump(&DumpRequest::all(), |v| {
            match v.summary().ok().as_ref().and_then(convert) {
                Some(e) => {
                    st.entries += 1;
                    sink.push(&e);
                }
                None => st.undecodable += 1,
            }
            ControlFlow::Continue(())
        })
        .context("dumping the conntrack table")?;
    st.interrupted = ds.interrupted;
    Ok(st)
}

/// Batch size for [`dump_pipelined`]: raw entries are copied into batches
/// of about this many bytes and decoded on another thread.
const BATCH: usize = 256 << 10;

fn decode_batch<S: Sink>(buf: &[u8], sink: &mut S, st: &mut LiveStats) {
    let mut i = 0;
    while i + 5 <= buf.len() {
        let family = buf[i];
        let len = u32::from_ne_bytes([buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]]) as usize;
        i += 5;
        let Some(raw) = buf.get(i..i + len) else {
            break;
        };
        i += len;
        let view = ctnetlink::Entry::from_attrs(family, raw);
        match view.summary().ok().as_ref().and_then(convert) {
            Some(e) => {
                st.entries += 1;
                sink.push(&e);
            }
            None => st.undecodable += 1,
        }
    }
}

/// Like [`dump_here`], but decoding and aggregation run on a second
/// thread while this one receives: the kernel builds the next messages
/// (most of a dump's cost) while the previous ones are counted. Each
/// entry's attributes are copied once into a batch.
pub fn dump_pipelined<S: Sink>(mut sink: S) -> Result<(S, LiveStats)> {
    use std::sync::mpsc;
    let mut sock = Socket::open().context("opening a ctnetlink socket (needs root)")?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut st = LiveStats::default();
            for buf in rx {
                decode_batch(&buf, &mut sink, &mut st);
                let _ = back_tx.send(buf);
            }
            (sink, st)
        });
        let mut cur: Vec<u8> = Vec::with_capacity(BATCH + 4096);
        let mut send_err = false;
        let dumped = sock.dump(&DumpRequest::all(), |v| {
            let raw = v.raw();
            cur.push(v.family());
            cur.extend_from_slice(&(raw.len() as u32).to_ne_bytes());
            cur.extend_from_slice(raw);
            if cur.len() >= BATCH {
                let mut next = back_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BATCH + 4096));
                next.clear();
                if tx.send(std::mem::replace(&mut cur, next)).is_err() {
                    send_err = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if !cur.is_empty() && !send_err {
            let _ = tx.send(cur);
        }
        drop(tx);
        let (sink, mut st) = worker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let ds = dumped.context("dumping the conntrack table")?;
        st.interrupted = ds.interrupted;
        Ok((sink, st))
    })
}

/// Every entry of `target`'s table (tests, small tables).
pub fn entries(target: &Target) -> Result<Vec<Entry>> {
    run_in(target, || {
        let mut v = Vec::new();
        dump_here(&mut v).map(|_| v)
    })?
}

/// The namespace's timeouts from its sysctls (defaults where unreadable).
pub fn timeouts(target: &Target) -> Result<Timeouts> {
    Ok(run_in(target, || {
        Timeouts::read(&Root::live()).unwrap_or_default()
    })?)
}

/// Dump `target`'s table and aggregate it. With `sysctl_timeouts`, idle
/// ages use the namespace's own timeouts (and `cfg.timeouts` is set to them).
pub fn summary(
    target: &Target,
    cfg: &mut Config,
    sysctl_timeouts: bool,
) -> Result<(Summary, SourceInfo)> {
    let (agg, st) = run_in(target, || -> Result<(Agg, LiveStats)> {
        if sysctl_timeouts {
            if let Ok(t) = Timeouts::read(&Root::live()) {
                cfg.timeouts = t;
            }
        }
        let agg = Agg::new(*cfg);
        if super::text::default_threads() > 1 {
            dump_pipelined(agg)
        } else {
            let mut agg = agg;
            let st = dump_here(&mut agg)?;
            Ok((agg, st))
        }
    })??;
    let info = SourceInfo {
        source: match target.name() {
            Some(n) => format!("live, netns {n}"),
            None => "live".into(),
        },
        format: Some("ctnetlink".into()),
        malformed: MalformedInfo {
            count: st.undecodable,
            first: Vec::new(),
        },
        interrupted: st.interrupted,
    };
    Ok((agg.finish(), info))
}
