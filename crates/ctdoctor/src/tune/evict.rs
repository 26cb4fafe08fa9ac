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
    /// With `--idle-over`: entries the filter selected whose idle age is
    /// unknown (more seconds left than any timeout known for their state,
    /// or capped by the retransmission timeouts): kept.
    #[serde(default)]
    pub age_unknown: u64,
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
///
/// After a timeout change an entry keeps the timer it was last refreshed
/// with: one with more seconds left than today's timeout was refreshed
/// under an earlier, longer one. `earlier` holds, per TCP state, the values
/// the journal recorded before this namespace's changes (newest first); such
/// an entry is aged against the newest of them that is long enough, so
/// `--idle-over` matches after a change what it matched before. An entry
/// with fewer seconds left than today's timeout is aged against today's
/// (the kernel does not say which timer it has; that one expires soonest).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdleOver {
    pub secs: u32,
    pub timeouts: Timeouts,
    pub earlier: [Vec<u32>; 10],
}

impl IdleOver {
    pub fn new(secs: u32, timeouts: Timeouts) -> IdleOver {
        IdleOver {
            secs,
            timeouts,
            earlier: Default::default(),
        }
    }

    /// The entry's idle age, using the earlier timeouts where today's is
    /// shorter than what the entry has left.
    pub fn age(&self, e: &Entry) -> Option<u32> {
        if e.is_tcp() && e.timeout > self.timeouts.for_entry(e) {
            return self.earlier[e.state as usize]
                .iter()
                .find(|t| **t >= e.timeout)
                .map(|t| t - e.timeout);
        }
        self.timeouts.age(e)
    }
}

/// `--idle-over secs` in `target`: its timeouts now, and the earlier ones
/// the journal under `root` recorded for it. A journal that cannot be read
/// leaves `earlier` empty and says why in the returned note.
pub fn idle_over(
    target: &Target,
    secs: u32,
    root: &std::path::Path,
) -> Result<(IdleOver, Option<String>)> {
    let timeouts = crate::host::entries::timeouts(target)?;
    let (inode, is_init) = netns::run_in(target, || {
        let r = crate::host::Root::live();
        let n = crate::host::netns::read_id(&r).ok();
        (
            n.as_ref().and_then(|n| n.inode),
            n.is_some_and(|n| n.is_init),
        )
    })?;
    let mut idle = IdleOver::new(secs, timeouts);
    let note = match super::journal::Journal::at(root).list() {
        Ok((sets, _)) => {
            idle.earlier = earlier_tcp_timeouts(&sets, inode, is_init);
            None
        }
        Err(e) => Some(format!(
            "the journal could not be read ({e:#}): entries refreshed under an earlier, longer \
             timeout have unknown ages and are kept"
        )),
    };
    Ok((idle, note))
}

/// Per TCP state, the values the journal recorded as `old` for the
/// namespace with nsfs inode `inode` (None: the host's), newest change set
/// first; change sets rolled back do not count.
pub fn earlier_tcp_timeouts(
    sets: &[super::journal::ChangeSet],
    inode: Option<u64>,
    is_init: bool,
) -> [Vec<u32>; 10] {
    let mut out: [Vec<u32>; 10] = Default::default();
    let mut sets: Vec<&super::journal::ChangeSet> = sets
        .iter()
        .filter(|s| s.state == super::journal::State::Applied)
        .collect();
    sets.sort_by_key(|s| std::cmp::Reverse((s.seq, s.created_unix)));
    for set in sets {
        for e in &set.entries {
            let super::journal::Entry::Sysctl {
                key, netns, old, ..
            } = e
            else {
                continue;
            };
            let same_ns = if is_init {
                netns.is_init
            } else {
                netns.inode.is_some() && netns.inode == inode
            };
            let Some(name) = key.strip_prefix("net.netfilter.nf_conntrack_tcp_timeout_") else {
                continue;
            };
            let st = crate::table::entry::TcpState::from_name(name.to_ascii_uppercase().as_bytes());
            if let (true, Some(st), Ok(v)) = (same_ns, st, old.trim().parse::<u32>()) {
                out[st as usize].push(v);
            }
        }
    }
    out
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
        let mut age_unknown = 0u64;
        let mut send_failed = false;
        let dumped = dump.dump(&DumpRequest::all(), |e| {
            scanned += 1;
            let Ok(fields) = e.summary() else {
                return ControlFlow::Continue(());
            };
            let (Some(orig), Some(entry)) = (fields.orig, Entry::from_fields(&fields)) else {
                return ControlFlow::Continue(());
            };
            if !filter.matches(&entry) {
                return ControlFlow::Continue(());
            }
            if let Some(i) = idle {
                match i.age(&entry) {
                    Some(a) if a >= i.secs => {}
                    Some(_) => return ControlFlow::Continue(()),
                    None => {
                        age_unknown += 1;
                        return ControlFlow::Continue(());
                    }
                }
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
        out.age_unknown = age_unknown;
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

    /// After a journaled change 432000 → 7875, an entry with 421200 s left
    /// was refreshed under 432000: 10800 s idle, not unknown; one with
    /// 5000 s left is aged against today's 7875.
    #[test]
    fn ages_use_the_journals_earlier_timeout() {
        let mut t = Timeouts::default();
        t.tcp[TcpState::Established as usize] = 7875;
        let e = |left| Entry {
            l4: crate::table::entry::IPPROTO_TCP,
            state: TcpState::Established,
            timeout: left,
            ..Entry::default()
        };
        let mut idle = IdleOver::new(7875, t);
        assert_eq!(idle.age(&e(421_200)), None, "no journal: unknown");
        idle.earlier[TcpState::Established as usize] = vec![86_400, 432_000];
        assert_eq!(
            idle.age(&e(421_200)),
            Some(10_800),
            "the newest long enough"
        );
        assert_eq!(idle.age(&e(80_000)), Some(6_400));
        assert_eq!(idle.age(&e(5_000)), Some(2_875));
    }

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
