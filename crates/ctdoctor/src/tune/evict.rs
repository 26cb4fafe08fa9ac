//! `tune --evict`: free the table now, during an incident, by deleting the
//! entries of closing TCP states (optionally narrowed by port and address
//! prefixes). A shorter timeout only reaches an entry at its next packet;
//! deleting frees the slot at once.
//!
//! No kernel-side filter selects by TCP state, so one full dump is the floor.
//! The dump runs on this thread and matching entries go, in batches, to a
//! second thread with its own ctnetlink socket, which sends batched DELETE
//! requests (one sendmsg per batch, every ack checked) while the kernel
//! builds the next dump messages: the two kernel paths run on two cores.
//! Each DELETE names the entry's tuple, zone and id (CTA_ID), so an entry
//! that expired and was replaced by a new flow with the same tuple since
//! the dump answers ENOENT instead of being deleted.
//!
//! Entries are not journaled: a deleted entry cannot be restored (its flow,
//! if alive, gets a new one at its next packet). `established` (and other
//! non-closing states) need `force`: deleting a live NATed or stateful
//! flow's entry breaks it.
//!
//! Not for: choosing states from a report (checks::state_mix) or timeouts.

use crate::advice::evict::CLOSING;
use crate::table::entry::Entry;
use crate::table::filter::Filter;
use crate::table::timeouts::Timeouts;
use anyhow::{Context, Result};
use ctnetlink::{DeleteKey, DumpRequest, Socket};
use netns::Target;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Instant;

/// Keys per batch handed to the deleting thread.
const BATCH: usize = 2048;

/// Parse `--evict STATES` (comma-separated, any case; `closing` = every
/// closing state) into a filter's state bits.
pub fn parse_states(s: &str) -> Result<u16, String> {
    let mut f = Filter::default();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("closing") {
            for st in CLOSING {
                f.states |= 1 << *st as u16;
            }
        } else {
            f.set("state", name)?;
        }
    }
    if f.states == 0 {
        return Err("--evict needs at least one TCP state (e.g. time_wait)".into());
    }
    Ok(f.states)
}

/// What an eviction did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evicted {
    /// Without `--apply`: counted, nothing deleted.
    pub dry_run: bool,
    /// nf_conntrack_count before and after.
    pub count_before: u64,
    pub count_after: u64,
    /// Entries dumped.
    pub scanned: u64,
    /// Entries that matched, by state.
    pub matched: BTreeMap<String, u64>,
    /// Deleted (acked without error).
    pub freed: u64,
    /// Gone before their DELETE arrived (expired, deleted or replaced): ENOENT.
    pub gone: u64,
    /// Other kernel errors: errno → count.
    pub errors: BTreeMap<i32, u64>,
    /// DELETE sendmsg calls.
    pub sends: usize,
    pub seconds: f64,
    /// The dump was interrupted (NLM_F_DUMP_INTR): some entries may have been missed.
    pub interrupted: bool,
}

impl Evicted {
    pub fn matched_total(&self) -> u64 {
        self.matched.values().sum()
    }
}

/// Only entries idle at least `secs`: an entry's age is its state's timeout
/// (the namespace's, `timeouts`) minus the seconds it has left, as `plan
/// --what-if` computes it — so `--idle-over T` deletes exactly the entries a
/// timeout of T would already have expired. Entries whose age is unknown
/// (capped by the retransmission timeouts) are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleOver {
    pub secs: u32,
    pub timeouts: Timeouts,
}

impl IdleOver {
    pub fn matches(&self, e: &Entry) -> bool {
        self.timeouts.age(e).is_some_and(|a| a >= self.secs)
    }
}

/// Dump `target`'s table and delete every entry `filter` (and `idle`)
/// matches (count them only when `dry_run`).
pub fn evict(
    target: &Target,
    filter: &Filter,
    idle: Option<&IdleOver>,
    dry_run: bool,
) -> Result<Evicted> {
    let open = || {
        Socket::open_in(target).with_context(|| format!("opening a ctnetlink socket in {target}"))
    };
    let mut dump = open()?;
    let mut del = open()?;
    let mut out = Evicted {
        dry_run,
        count_before: u64::from(dump.count().context("conntrack count")?),
        ..Evicted::default()
    };
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<DeleteKey>>(8);
    let result = std::thread::scope(|s| -> Result<()> {
        let deleter = s.spawn(
            move || -> Result<ctnetlink::BatchReport, ctnetlink::Error> {
                let mut total = ctnetlink::BatchReport::default();
                let mut failed: Option<ctnetlink::Error> = None;
                for keys in rx {
                    if failed.is_some() {
                        continue; // drain: the dump side finishes its walk
                    }
                    match del.delete_batch(&keys) {
                        Ok(r) => {
                            total.ok += r.ok;
                            total.sends += r.sends;
                            total.failed.extend(r.failed);
                        }
                        Err(e) => failed = Some(e),
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => Ok(total),
                }
            },
        );
        let mut batch = Vec::with_capacity(BATCH);
        let mut scanned = 0u64;
        let mut matched: BTreeMap<String, u64> = BTreeMap::new();
        let mut send_failed = false;
        let dumped = dump.dump(&DumpRequest::all(), |e| {
            scanned += 1;
            let Ok(fields) = e.summary() else {
                return ControlFlow::Continue(());
            };
            let (Some(orig), Some(entry)) = (fields.orig, Entry::from_fields(&fields)) else {
                return ControlFlow::Continue(());
            };
            if !filter.matches(&entry) || idle.is_some_and(|i| !i.matches(&entry)) {
                return ControlFlow::Continue(());
            }
            *matched.entry(entry.state.as_str().to_string()).or_default() += 1;
            if dry_run {
                return ControlFlow::Continue(());
            }
            batch.push(DeleteKey {
                orig,
                zone: fields.zone,
                id: fields.id,
            });
            if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.send(full).is_err() {
                    send_failed = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if !batch.is_empty() && !send_failed {
            let _ = tx.send(batch);
        }
        drop(tx);
        let report = deleter
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        out.scanned = scanned;
        out.matched = matched;
        let stats = dumped.context("dumping the conntrack table")?;
        out.interrupted = stats.interrupted;
        let report = report.context("deleting entries (ctnetlink batch delete)")?;
        out.freed = report.ok as u64;
        out.sends = report.sends;
        for (_, errno) in report.failed {
            if errno == libc::ENOENT {
                out.gone += 1;
            } else {
                *out.errors.entry(errno).or_default() += 1;
            }
        }
        Ok(())
    });
    out.seconds = t0.elapsed().as_secs_f64();
    result?;
    out.count_after = u64::from(dump.count().context("conntrack count")?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advice::evict::needs_force;
    use crate::table::TcpState;

    #[test]
    fn states_parse_and_live_ones_need_force() {
        let tw = 1 << TcpState::TimeWait as u16;
        assert_eq!(parse_states("time_wait"), Ok(tw));
        assert_eq!(parse_states("TIME_WAIT,"), Ok(tw));
        assert_eq!(needs_force(tw), None);
        let closing = parse_states("closing").unwrap();
        assert_eq!(closing.count_ones() as usize, CLOSING.len());
        assert_eq!(needs_force(closing), None);
        let e = needs_force(parse_states("time_wait,established").unwrap()).unwrap();
        assert!(
            e.starts_with("ESTABLISHED entries") && e.contains("--force"),
            "{e}"
        );
        assert!(needs_force(parse_states("syn_recv").unwrap()).is_some());
        assert!(parse_states("bogus")
            .unwrap_err()
            .contains("unknown TCP state"));
        assert!(parse_states(" , ").is_err());
    }
}
