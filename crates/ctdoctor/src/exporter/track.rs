//! Following each namespace's conntrack table (the I/O around
//! [`TableState`]): an event thread per namespace (a ctnetlink socket
//! joined to the NEW, UPDATE and DESTROY groups, opened inside the
//! namespace) and one resync thread for all of them that dumps each table
//! in turn, paced: every `--table-resync`, never more often than 50× the
//! last dump's wall time (so dumps take at most ~2 % of a core: a dump
//! costs ~2 µs of kernel time per entry), and soon after events were lost.
//! The same pass aggregates the table's mix ([`TableMix`], as `check`'s
//! `conntrack.state_mix.*` rules read it), kept until the next resync.
//!
//! Not for: the reconciliation rules (`table`) or rendering (`metrics`).

use super::state::{self, Counts, Mode, Reason, Sighting, TableState, TableView};
use super::Shutdown;
use crate::host::netns::{run_in, Target};
use crate::table::entry::{Entry, IPPROTO_DCCP, IPPROTO_SCTP};
use crate::table::mix::{MixSink, TableMix};
use crate::table::text::Sink as _;
use ctnetlink::events::groups;
use ctnetlink::{DumpRequest, Event, Socket};
use std::ops::ControlFlow;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A dump may take at most 1/PACE of the time between dumps.
pub const PACE: u32 = 50;
/// The same for a resync that repairs counts known wrong (events lost,
/// the sum off the count): at most 1/URGENT_PACE — 10 % of a core while
/// it lasts (about 13 s after a 1.3 s dump at 200k entries, not 65 s).
pub const URGENT_PACE: u32 = 10;
/// Sightings applied per lock while dumping.
const BATCH: usize = 4096;
/// How long the event thread waits for events before looking at the flags.
const POLL: Duration = Duration::from_millis(250);
/// Events taken per wakeup at most (bounds the batch and the lock hold).
const DRAIN: usize = 8192;
/// Pause after a burst so the next one is bigger.
const BUSY_PAUSE: Duration = Duration::from_millis(10);
/// Retry opening sockets this often when it failed.
const RETRY: Duration = Duration::from_secs(10);

/// One followed namespace, shared by its threads and the scrapes.
pub struct Tracker {
    pub target: Target,
    inner: Mutex<Inner>,
    /// Set when the namespace is no longer exported: its threads exit.
    gone: std::sync::atomic::AtomicBool,
    /// When it was made.
    born: Instant,
}

struct Inner {
    mode: Mode,
    state: TableState,
    /// NEW events by source and destination port over the last minute.
    creators: crate::table::creators::Creators,
    /// Dump mode: the last dump's counts.
    dumped: Option<Counts>,
    /// Events mode: subscribed (a dump before that would miss events).
    subscribed: bool,
    /// A first resync completed.
    started: bool,
    resyncs: [u64; 4],
    failures: u64,
    last_end: Option<Instant>,
    last_secs: Option<f64>,
    want: Option<Reason>,
    error: Option<String>,
    /// The last complete resync's mix, and when it ended.
    mix: Option<(TableMix, Instant)>,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The table's mix from the last complete resync (what the state-mix
    /// rules judge), with its age.
    pub fn mix(&self) -> Option<(TableMix, Duration)> {
        self.lock()
            .mix
            .as_ref()
            .map(|(m, at)| (m.clone(), at.elapsed()))
    }

    /// Milliseconds since this tracker was made: the creators' clock.
    fn millis(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A copy of what a scrape renders.
    pub fn view(&self) -> TableView {
        let now = self.millis();
        let i = self.lock();
        let (top_sources, top_dports) = i.creators.top(now);
        let counts = match i.mode {
            Mode::Events => i.started.then(|| *i.state.counts()),
            Mode::Dump => i.dumped,
        };
        let mut resyncs = [0; 4];
        resyncs.copy_from_slice(&i.resyncs);
        TableView {
            mode: i.mode,
            counts,
            events: i.state.events,
            resyncs,
            resync_failures: i.failures,
            resync_age_secs: i.last_end.map(|t| t.elapsed().as_secs_f64()),
            resync_secs: i.last_secs,
            in_sync: match i.mode {
                Mode::Events => i.started && i.state.in_sync(),
                Mode::Dump => i.dumped.is_some() && i.error.is_none(),
            },
            error: i.error.clone(),
            followed: i.state.len() as u64,
            map_bytes: i.state.map_bytes() as u64,
            top_sources,
            top_dports,
        }
    }

    /// Ask for a resync because the counts are known wrong (`reason`),
    /// unless one is already wanted; the resync thread is woken by
    /// [`Tracking::wake`].
    pub fn want_resync(&self, reason: Reason) {
        let mut i = self.lock();
        if i.want.is_none() {
            i.want = Some(reason);
        }
    }

    /// Stop following (the namespace went away).
    pub fn retire(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn retired(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The trackers and the resync thread's schedule.
pub struct Tracking {
    mode: Mode,
    resync: Duration,
    list: Mutex<Vec<Arc<Tracker>>>,
    /// Wakes the resync thread (events lost, a namespace added, shutdown).
    kick: Condvar,
    stop: Arc<Shutdown>,
}

impl Tracking {
    pub fn new(mode: Mode, resync: Duration, stop: Arc<Shutdown>) -> Arc<Tracking> {
        Arc::new(Tracking {
            mode,
            resync,
            list: Mutex::new(Vec::new()),
            kick: Condvar::new(),
            stop,
        })
    }

    fn list(&self) -> MutexGuard<'_, Vec<Arc<Tracker>>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start following `target` (its event thread starts now; its first
    /// resync as soon as it is subscribed).
    pub fn add(self: &Arc<Self>, target: Target) -> Arc<Tracker> {
        let t = Arc::new(Tracker {
            target,
            inner: Mutex::new(Inner {
                mode: self.mode,
                state: TableState::new(),
                creators: Default::default(),
                dumped: None,
                subscribed: false,
                started: false,
                resyncs: [0; 4],
                failures: 0,
                last_end: None,
                last_secs: None,
                want: Some(Reason::Start),
                error: None,
                mix: None,
            }),
            gone: Default::default(),
            born: Instant::now(),
        });
        self.list().push(t.clone());
        if self.mode == Mode::Events {
            let (me, tr) = (self.clone(), t.clone());
            let _ = std::thread::Builder::new()
                .name("ct-events".into())
                .spawn(move || me.events(&tr));
        }
        self.kick.notify_all();
        t
    }

    /// Forget retired trackers.
    pub fn prune(&self) {
        self.list().retain(|t| !t.retired());
    }

    /// Wake the resync thread (shutdown).
    pub fn wake(&self) {
        self.kick.notify_all();
    }

    /// The event loop of one namespace.
    fn events(self: &Arc<Self>, t: &Tracker) {
        'open: while !self.stop.stopped() && !t.retired() {
            // nf_conntrack_events=0: the kernel sends none; follow by dumps.
            let events_sysctl = run_in(&t.target, || {
                std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_events")
            });
            if let Ok(Ok(s)) = &events_sysctl {
                if s.trim() == "0" {
                    let mut i = t.lock();
                    i.mode = Mode::Dump;
                    i.subscribed = true;
                    drop(i);
                    self.kick.notify_all();
                    return;
                }
            }
            // Subscribing would load nf_conntrack_netlink and nf_conntrack.
            if let Err(e) = crate::host::entries::require_conntrack() {
                t.lock().error = Some(format!("{e:#}"));
                self.stop.sleep(RETRY);
                continue 'open;
            }
            let sock = Socket::open_in(&t.target).and_then(|mut s| {
                s.subscribe(groups::ALL)?;
                Ok(s)
            });
            let mut sock = match sock {
                Ok(s) => s,
                Err(e) => {
                    t.lock().error = Some(format!("ctnetlink event socket: {e}"));
                    self.stop.sleep(RETRY);
                    continue 'open;
                }
            };
            {
                let mut i = t.lock();
                i.subscribed = true;
                i.error = None;
                if i.started {
                    // Reopened after an error: events were missed.
                    i.state.lost();
                    i.want = Some(Reason::Lost);
                }
            }
            self.kick.notify_all();
            let mut batch: Vec<(u8, Option<Sighting>)> = Vec::with_capacity(DRAIN);
            while !self.stop.stopped() && !t.retired() {
                batch.clear();
                let mut on_event = |ev: Event<'_>| {
                    let (kind, e) = match ev {
                        Event::New(e) => (0, e),
                        Event::Update(e) => (1, e),
                        Event::Destroy(e) => (2, e),
                        Event::Lost => {
                            batch.push((3, None));
                            return;
                        }
                    };
                    batch.push((kind, decode(&e)));
                };
                // Wait for the first datagram, then take what else is queued
                // without sleeping: one wakeup and one lock per burst.
                let mut r = sock.recv_events(Some(POLL), &mut on_event);
                let mut taken = 0;
                while let Ok(n @ 1..) = r {
                    taken += n;
                    if taken >= DRAIN {
                        break;
                    }
                    r = sock.recv_events(Some(Duration::ZERO), &mut on_event);
                }
                let r = r.map(|_| ());
                let busy = taken > 0;
                if !batch.is_empty() {
                    let now = t.millis();
                    let mut i = t.lock();
                    let mut lost = false;
                    for (kind, s) in &batch {
                        match (kind, s) {
                            (3, _) => {
                                i.state.lost();
                                lost = true;
                            }
                            (_, None) => i.state.undecodable(),
                            (0, Some(s)) => {
                                i.state.upsert(s, true);
                                i.creators.add(now, s.src, s.proto, s.dport);
                            }
                            (1, Some(s)) => i.state.upsert(s, false),
                            (_, Some(s)) => i.state.destroy(s.key),
                        }
                    }
                    if lost && i.want.is_none() {
                        i.want = Some(Reason::Lost);
                    }
                    drop(i);
                    if lost {
                        self.kick.notify_all();
                    }
                }
                if let Err(e) = r {
                    t.lock().error = Some(format!("ctnetlink events: {e}"));
                    self.stop.sleep(RETRY);
                    continue 'open;
                }
                if busy {
                    // Let the next events queue up (the socket buffer holds
                    // thousands) rather than waking once per datagram: at
                    // most 100 wakeups a second, counts 10 ms late.
                    std::thread::sleep(BUSY_PAUSE);
                }
            }
        }
    }

    /// When `t` is due for a resync (None: not yet possible).
    fn due(&self, t: &Tracker) -> Option<Instant> {
        let i = t.lock();
        if !i.subscribed && i.mode == Mode::Events {
            return None;
        }
        let pace = match i.want {
            Some(Reason::Lost | Reason::Mismatch) => URGENT_PACE,
            _ => PACE,
        };
        let gap = i
            .last_secs
            .map_or(Duration::ZERO, |s| Duration::from_secs_f64(s * pace as f64))
            .max(Duration::from_secs(1));
        let now = Instant::now();
        Some(match (i.last_end, i.want) {
            (None, _) => now,
            (Some(end), Some(_)) => end + gap,
            (Some(end), None) => end + gap.max(self.resync),
        })
    }

    /// The resync thread: dump whichever table is due, in turn.
    pub fn resync_loop(self: &Arc<Self>) {
        let mut socks: Vec<(Target, Socket)> = Vec::new();
        while !self.stop.stopped() {
            let list: Vec<Arc<Tracker>> = self.list().clone();
            socks.retain(|(tg, _)| list.iter().any(|t| &t.target == tg));
            let next = list
                .iter()
                .filter_map(|t| Some((self.due(t)?, t.clone())))
                .min_by_key(|(d, _)| *d);
            let now = Instant::now();
            match next {
                Some((due, t)) if due <= now => {
                    let reason = t.lock().want.take().unwrap_or(Reason::Periodic);
                    let pos = socks.iter().position(|(tg, _)| tg == &t.target);
                    let sock = match pos {
                        Some(p) => Ok(&mut socks[p].1),
                        // Never load nf_conntrack to read an empty table.
                        None => match crate::host::entries::require_conntrack() {
                            Err(e) => Err(format!("{e:#}")),
                            Ok(()) => Socket::open_in(&t.target)
                                .map(|s| {
                                    socks.push((t.target.clone(), s));
                                    &mut socks.last_mut().expect("just pushed").1
                                })
                                .map_err(|e| format!("ctnetlink dump socket: {e}")),
                        },
                    };
                    match sock {
                        Ok(s) => {
                            if resync(&t, s, reason).is_err() {
                                socks.retain(|(tg, _)| tg != &t.target);
                            }
                        }
                        Err(e) => {
                            let mut i = t.lock();
                            i.error = Some(e);
                            i.failures += 1;
                            i.want = Some(reason);
                            // Try again after RETRY.
                            i.last_end = Some(Instant::now() + RETRY - Duration::from_secs(1));
                        }
                    }
                }
                other => {
                    let wait = other
                        .map_or(Duration::from_secs(1), |(d, _)| d - now)
                        .min(Duration::from_secs(1));
                    let g = self.list();
                    let _ = self.kick.wait_timeout(g, wait);
                }
            }
        }
    }
}

/// One message as a sighting.
fn decode(e: &ctnetlink::Entry<'_>) -> Option<Sighting> {
    sighting(e, &e.summary().ok()?)
}

/// One dumped message as a sighting, its entry added to the mix on the way.
fn decode_dumped(e: &ctnetlink::Entry<'_>, mix: &mut MixSink) -> Option<Sighting> {
    let f = e.summary().ok()?;
    if let Some(entry) = Entry::from_fields(&f) {
        mix.push(&entry);
    }
    sighting(e, &f)
}

/// SCTP and DCCP states need a second walk of the message.
fn sighting(e: &ctnetlink::Entry<'_>, f: &ctnetlink::EntryFields) -> Option<Sighting> {
    let other = match f.l4proto() {
        IPPROTO_SCTP | IPPROTO_DCCP => e.other_proto_state().ok().flatten().map(|(_, s)| s),
        _ => None,
    };
    state::sighting(f, other)
}

/// Dump `t`'s table once and reconcile.
fn resync(t: &Tracker, sock: &mut Socket, reason: Reason) -> Result<(), ctnetlink::Error> {
    let mode = t.lock().mode;
    let start = Instant::now();
    // Ages in the mix use the namespace's own timeouts (defaults when
    // they cannot be read).
    let timeouts = crate::host::entries::timeouts(&t.target).unwrap_or_default();
    let mut mix = MixSink::new(timeouts);
    let result = match mode {
        Mode::Events => {
            t.lock().state.begin_resync();
            let mut batch: Vec<Sighting> = Vec::with_capacity(BATCH);
            let mut undecodable = 0u64;
            let apply = |batch: &mut Vec<Sighting>, undecodable: &mut u64| {
                let mut i = t.lock();
                for s in batch.iter() {
                    i.state.dumped(s, true);
                }
                for _ in 0..*undecodable {
                    i.state.undecodable();
                }
                batch.clear();
                *undecodable = 0;
            };
            let r = sock.dump(&DumpRequest::all(), |e| {
                match decode_dumped(e, &mut mix) {
                    Some(s) => batch.push(s),
                    None => undecodable += 1,
                }
                if batch.len() >= BATCH {
                    apply(&mut batch, &mut undecodable);
                }
                ControlFlow::Continue(())
            });
            apply(&mut batch, &mut undecodable);
            let mut i = t.lock();
            match &r {
                Ok(st) if !st.interrupted => {
                    i.state.end_resync();
                }
                // NLM_F_DUMP_INTR: entries may be missing; do not sweep.
                _ => i.state.abort_resync(),
            }
            r
        }
        Mode::Dump => {
            let mut c: Counts = [state::ClassCount::default(); state::NCLASS];
            let mut undecodable = 0u64;
            let r = sock.dump(&DumpRequest::all(), |e| {
                match decode_dumped(e, &mut mix) {
                    Some(s) => state::add_to(&mut c, &s),
                    None => undecodable += 1,
                }
                ControlFlow::Continue(())
            });
            let mut i = t.lock();
            for _ in 0..undecodable {
                i.state.undecodable();
            }
            if matches!(&r, Ok(st) if !st.interrupted) {
                i.dumped = Some(c);
            }
            r
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let mut i = t.lock();
    i.last_end = Some(Instant::now());
    match result {
        Ok(st) if !st.interrupted => {
            i.resyncs[reason as usize] += 1;
            i.mix = Some((mix.finish(), Instant::now()));
            i.last_secs = Some(secs);
            i.started = true;
            i.error = None;
            Ok(())
        }
        Ok(_) => {
            i.failures += 1;
            i.want = Some(Reason::Lost);
            i.error = None;
            Ok(())
        }
        Err(e) => {
            i.failures += 1;
            i.want.get_or_insert(reason);
            i.error = Some(format!("ctnetlink dump: {e}"));
            Err(e)
        }
    }
}
