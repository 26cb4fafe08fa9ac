//! The background refresher: every `--interval` it reads each exported
//! namespace's facts (every source but the table dump and the boot-time
//! persistence scan), runs the same checks as `ctdoctor check` (with the
//! previous reading as the earlier one, so rules see rates), counts new
//! "table full" log lines, keeps the count's growth for the time-to-full
//! estimate, and publishes it all for scrapes to render. A slow source
//! delays the next publication, never a scrape (`ctdoctor_facts_age_seconds`
//! shows it).
//!
//! The one namespace of `--netns` (or the host's) never goes silent: when
//! it cannot be read any more (deleted with `ip netns del`, its process
//! gone, entering refused) it is published as [`down`] — every source it
//! reads `ctdoctor_source_up` 0 under its last labels, and its facts age
//! growing from the last good reading — so the SourceDown and FactsStale
//! alerts fire instead of the series vanishing. With `--all-netns` a
//! namespace that is gone is simply no longer exported.
//!
//! Pure parts ([`Growth`], [`LogCounter`], [`down`]) are tested here; the
//! loop is tested end to end (tests/kernel/exporter_kernel.rs).
//!
//! Not for: the table (`track`), HTTP, rendering.

use super::track::{Tracker, Tracking};
use super::Shutdown;
use crate::checks::{self, Finding};
use crate::host::{self, netns::Target, Collect, Select, Source};
use crate::snapshot::{Facts, Kmsg, NetnsId, Snapshot, SourceStatus, TableFull, Unavailable};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The sources the refresher reads: all but the table (followed by
/// `track`, never dumped per refresh), persistence (boot files: what
/// `check` judges once, not a time series) and nginx's logs (a tail of up
/// to 16 MiB per refresh is a log shipper's job, not a scrape's).
pub fn select() -> Select {
    Select::ALL
        .without(Source::Table)
        .without(Source::Persist)
        .without(Source::Nginx)
}

/// The count must have risen over the last RECENT_SECS for a time to full:
/// growth that stopped is not extrapolated for the rest of the window.
pub const RECENT_SECS: f64 = 30.0;

/// A namespace's count over a window, for [`Growth::time_to_full`].
#[derive(Debug, Clone, Default)]
pub struct Growth {
    samples: VecDeque<(f64, u64)>,
}

impl Growth {
    /// Add a reading at `t` seconds; forget readings older than `window`.
    pub fn push(&mut self, t: f64, count: u64, window: f64) {
        self.samples.push_back((t, count));
        while self.samples.front().is_some_and(|(t0, _)| t - *t0 > window) {
            self.samples.pop_front();
        }
    }

    /// Seconds until `count` reaches `max` at the least-squares growth of
    /// the window's readings; 0 when full; None when not growing, when the
    /// count did not rise over the last [`RECENT_SECS`] (growth that
    /// stopped is not extrapolated for the rest of the window), or with
    /// fewer than 3 readings.
    pub fn time_to_full(&self, max: u64) -> Option<f64> {
        let (_, now) = *self.samples.back()?;
        if now >= max {
            return Some(0.0);
        }
        let n = self.samples.len();
        if n < 3 {
            return None;
        }
        // The count RECENT_SECS ago (the oldest reading within them).
        let t_now = self.samples.back()?.0;
        let then = self
            .samples
            .iter()
            .find(|(t, _)| t_now - t <= RECENT_SECS)
            .map_or(now, |(_, c)| *c);
        if now <= then {
            return None;
        }
        let nf = n as f64;
        let mt = self.samples.iter().map(|(t, _)| t).sum::<f64>() / nf;
        let mc = self.samples.iter().map(|(_, c)| *c as f64).sum::<f64>() / nf;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (t, c) in &self.samples {
            sxy += (t - mt) * (*c as f64 - mc);
            sxx += (t - mt) * (t - mt);
        }
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx; // entries per second
        if slope <= 0.0 || !slope.is_finite() {
            return None;
        }
        Some((max - now) as f64 / slope)
    }
}

/// Counts log lines monotonically although the kernel's ring buffer
/// forgets old ones: each reading adds the lines newer than the newest
/// seen before (the first adds every line still in the buffer).
#[derive(Debug, Clone, Default)]
pub struct LogCounter {
    total: u64,
    seen_until: Option<u64>,
}

impl LogCounter {
    /// Add the lines of `k` newer than the last reading that `count`
    /// attributes; returns the total.
    pub fn add(&mut self, k: &Kmsg, count: impl Fn(&Kmsg) -> u64) -> u64 {
        let newer = newer_than(k, self.seen_until);
        self.total = self.total.saturating_add(count(&newer));
        self.seen_until = k.newest_usec.max(self.seen_until);
        self.total
    }
}

/// The part of a log's table-full lines newer than `after` (µs since boot).
fn newer_than(k: &Kmsg, after: Option<u64>) -> Kmsg {
    let Some(after) = after else {
        return k.clone();
    };
    Kmsg {
        table_full: k
            .table_full
            .iter()
            .map(|t| {
                let times: Vec<u64> = t
                    .times_usec
                    .iter()
                    .copied()
                    .filter(|u| *u > after)
                    .collect();
                TableFull {
                    inode: t.inode,
                    lines: times.len() as u64,
                    first_usec: times.first().copied(),
                    last_usec: times.last().copied(),
                    times_usec: times,
                }
            })
            .collect(),
        ..Kmsg::default()
    }
}

/// One namespace as last published.
#[derive(Clone)]
pub struct Published {
    pub facts: Arc<Facts>,
    pub findings: Arc<Vec<Finding>>,
    pub read_at: Instant,
    pub log_lines: Option<u64>,
    pub time_to_full_secs: Option<f64>,
    pub owner: Option<String>,
    pub tracker: Option<Arc<Tracker>>,
    /// Count, max and stat counters read at scrape time.
    pub live: Option<Arc<super::live::Live>>,
}

/// Everything a scrape renders besides the table views.
#[derive(Clone, Default)]
pub struct Board {
    pub namespaces: Vec<Published>,
    pub refresh_secs: Option<f64>,
    pub unattributed_log_lines: Option<u64>,
    /// Completed refreshes.
    pub refreshes: u64,
    pub last_refresh: Option<Instant>,
    /// Namespaces that could not be read at the last refresh, with why.
    pub errors: Vec<String>,
}

/// What to export.
#[derive(Debug, Clone)]
pub enum Targets {
    One(Target),
    All,
}

/// The refresher's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub prefix: PathBuf,
    pub targets: Targets,
    pub interval: Duration,
    pub growth_window: Duration,
}

/// The exported namespace as published when it cannot be read: the last
/// good reading's identity (its labels; else what `target` is called),
/// every selected source down with `why`, no findings, no tracker, and its
/// `read_at` kept, so the facts' age keeps growing.
pub fn down(
    target: &Target,
    last: Option<&Published>,
    since: Instant,
    why: &str,
    tracking: bool,
) -> Published {
    let id = last
        .and_then(|p| p.facts.netns.clone().ok())
        .unwrap_or_else(|| NetnsId {
            name: Some(target.to_string()),
            ..NetnsId::default()
        });
    let gone = || Unavailable::Failed {
        what: format!("netns {target}"),
        detail: why.to_string(),
    };
    let sel = select();
    let sources = host::SOURCES
        .iter()
        .filter(|d| sel.contains(d.source) || (tracking && d.source == Source::Table))
        .map(|d| SourceStatus {
            name: d.name.into(),
            ok: false,
            duration_us: 0,
            error: Some(why.to_string()),
        })
        .collect();
    let facts = Facts {
        elapsed_ms: last.map_or(0, |p| p.facts.elapsed_ms),
        netns: Ok(id),
        system: Err(gone()),
        conntrack: Err(gone()),
        stat: Err(gone()),
        kmsg: Err(gone()),
        persist: Err(gone()),
        consumers: Err(gone()),
        sockets: Err(gone()),
        fds: Err(gone()),
        nic: Err(gone()),
        table: Err(gone()),
        nginx: Err(gone()),
        creators: Err(gone()),
        drops: Err(gone()),
        sources,
    };
    Published {
        facts: Arc::new(facts),
        findings: Arc::new(Vec::new()),
        read_at: last.map_or(since, |p| p.read_at),
        log_lines: None,
        time_to_full_secs: None,
        owner: last.and_then(|p| p.owner.clone()),
        tracker: None,
        live: None,
    }
}

/// Per-namespace memory of the refresher.
#[derive(Default)]
struct Memory {
    previous: Option<Facts>,
    growth: Growth,
    log: LogCounter,
    tracker: Option<Arc<Tracker>>,
    live: Option<Arc<super::live::Live>>,
}

/// Refresh until shutdown, publishing to `board`.
pub fn run(
    cfg: Config,
    board: Arc<RwLock<Board>>,
    tracking: Option<Arc<Tracking>>,
    stop: Arc<Shutdown>,
) {
    let mut r = Refresher {
        cfg,
        tracking,
        start: Instant::now(),
        mem: BTreeMap::new(),
        last_one: None,
        unattributed: LogCounter::default(),
    };
    while !stop.stopped() {
        let t0 = Instant::now();
        let round = r.round();
        {
            let mut b = board.write().unwrap_or_else(|p| p.into_inner());
            b.namespaces = round.published;
            b.refresh_secs = Some(t0.elapsed().as_secs_f64());
            b.unattributed_log_lines = round.machine_log.or(b.unattributed_log_lines);
            b.refreshes += 1;
            b.last_refresh = Some(Instant::now());
            b.errors = round.errors;
        }
        let spent = t0.elapsed();
        stop.sleep(r.cfg.interval.saturating_sub(spent));
    }
}

/// The refresher's state from one refresh to the next.
struct Refresher {
    cfg: Config,
    tracking: Option<Arc<Tracking>>,
    /// When the refresher started (facts' `elapsed_ms`, growth times).
    start: Instant,
    /// Per namespace, by inode (else by target).
    mem: BTreeMap<String, Memory>,
    /// `--netns`/the host: the last good reading, for [`down`].
    last_one: Option<Published>,
    /// Machine-wide "table full" lines no namespace is known to own.
    unattributed: LogCounter,
}

/// What one refresh publishes.
#[derive(Default)]
struct Round {
    published: Vec<Published>,
    /// Namespaces that could not be read, with why.
    errors: Vec<String>,
    /// New unattributed log lines (counted once, from the first log read).
    machine_log: Option<u64>,
}

impl Refresher {
    /// Read every exported namespace once, run the checks on each, and
    /// stop following the namespaces that are gone.
    fn round(&mut self) -> Round {
        let (targets, owners) = self.targets();
        let opts = Collect {
            select: select(),
            ..Collect::default()
        };
        let got = host::collect(&self.cfg.prefix, &targets, &opts);
        let mut round = Round::default();
        let mut live = Vec::new();
        for ((res, target), owner) in got.into_iter().zip(&targets).zip(owners) {
            let c = match res {
                Ok(c) => c,
                Err(e) => {
                    round.errors.push(format!("{target}: {e:#}"));
                    if let Targets::One(_) = &self.cfg.targets {
                        round.published.push(down(
                            target,
                            self.last_one.as_ref(),
                            self.start,
                            &format!("{e:#}"),
                            self.tracking.is_some(),
                        ));
                    }
                    continue;
                }
            };
            let (key, p) = self.judge(c, target, owner, &mut round.machine_log);
            live.push(key);
            if let Targets::One(_) = &self.cfg.targets {
                self.last_one = Some(p.clone());
            }
            round.published.push(p);
        }
        self.forget_gone(&live);
        round
    }

    /// The namespaces to read, each with who owns it (`--all-netns`: its
    /// first process or container).
    fn targets(&self) -> (Vec<Target>, Vec<Option<String>>) {
        match &self.cfg.targets {
            Targets::One(t) => (vec![t.clone()], vec![None]),
            Targets::All => host::netns::discover()
                .into_iter()
                .map(|f| {
                    let owner = f.processes.first().map(|p| match &p.container {
                        Some(c) => format!("container {}", &c[..c.len().min(12)]),
                        None => format!("{} (pid {})", p.comm, p.pid),
                    });
                    (f.target, owner)
                })
                .unzip(),
        }
    }

    /// One namespace's reading: the checks (with its previous reading as
    /// the earlier one), time to full, new log lines; its memory key and
    /// what to publish. `machine_log`: the unattributed lines, counted once.
    fn judge(
        &mut self,
        c: host::Collected,
        target: &Target,
        owner: Option<String>,
        machine_log: &mut Option<u64>,
    ) -> (String, Published) {
        let mut now = c.snapshot.now;
        now.elapsed_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let key = match now.netns.as_ref().ok().and_then(|n| n.inode) {
            Some(i) => i.to_string(),
            None => target.to_string(),
        };
        let m = self.mem.entry(key.clone()).or_default();
        // The state-mix rules judge the mix of the tracker's last
        // resync (the exporter's one dump), not a dump of their own.
        if let Some((mix, _age)) = m.tracker.as_ref().and_then(|t| t.mix()) {
            now.table = Ok(mix);
        }
        let snap = Snapshot {
            now,
            earlier: m.previous.take(),
        };
        let findings = checks::run_all(&snap);
        let now = snap.now;
        let tsecs = self.start.elapsed().as_secs_f64();
        let mut ttf = None;
        if let Ok(ct) = &now.conntrack {
            m.growth
                .push(tsecs, ct.count, self.cfg.growth_window.as_secs_f64());
            if let Ok(max) = ct.max {
                ttf = m.growth.time_to_full(max);
            }
        }
        let unattributed = &mut self.unattributed;
        let log_lines = now.kmsg.as_ref().ok().map(|k| {
            if machine_log.is_none() {
                *machine_log = Some(unattributed.add(k, |n| {
                    checks::conntrack::attribute(n, None, false, version(&now), None)
                        .unattributed_lines
                }));
            }
            m.log
                .add(k, |n| checks::conntrack::attribute_for(&now, n).own_lines)
        });
        if m.tracker.is_none() {
            m.tracker = self.tracking.as_ref().map(|t| t.add(target.clone()));
        }
        // Counts known wrong (the sum off the kernel's count): resync soon.
        if let (Some(t), Ok(ct)) = (&m.tracker, &now.conntrack) {
            let v = t.view();
            if v.mode == super::state::Mode::Events && v.in_sync {
                if let Some(c) = &v.counts {
                    if !super::state::agrees(super::state::sum(c), ct.count) {
                        t.want_resync(super::state::Reason::Mismatch);
                        if let Some(tr) = &self.tracking {
                            tr.wake();
                        }
                    }
                }
            }
        }
        if m.live.is_none() {
            m.live = super::live::Live::open(target, &self.cfg.prefix).map(Arc::new);
        }
        let facts = Arc::new(now.clone());
        m.previous = Some(now);
        let p = Published {
            facts,
            findings: Arc::new(findings),
            read_at: Instant::now(),
            log_lines,
            time_to_full_secs: ttf,
            owner,
            tracker: m.tracker.clone(),
            live: m.live.clone(),
        };
        (key, p)
    }

    /// Namespaces not read this time are gone: stop following them.
    fn forget_gone(&mut self, live: &[String]) {
        self.mem.retain(|k, m| {
            let keep = live.contains(k);
            if !keep {
                if let Some(t) = &m.tracker {
                    t.retire();
                }
            }
            keep
        });
        if let Some(t) = &self.tracking {
            t.prune();
        }
    }
}

fn version(f: &Facts) -> Option<crate::kernel::Version> {
    f.system.as_ref().ok().and_then(|s| s.kernel_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_full_from_a_steady_rise() {
        let mut g = Growth::default();
        for i in 0..10 {
            g.push(i as f64 * 10.0, 1000 + i * 100, 300.0); // 10 entries/s
        }
        let t = g.time_to_full(10_000).unwrap();
        assert!((t - (10_000.0 - 1900.0) / 10.0).abs() < 1e-6, "{t}");
        assert_eq!(g.time_to_full(1900), Some(0.0), "full now");
        let mut flat = Growth::default();
        for i in 0..10 {
            flat.push(i as f64, 500, 300.0);
        }
        assert_eq!(flat.time_to_full(1000), None, "not growing");
        let mut short = Growth::default();
        short.push(0.0, 1, 300.0);
        short.push(1.0, 2, 300.0);
        assert_eq!(short.time_to_full(10), None, "too few readings");
        // The window forgets old readings: a past rise no longer counts.
        let mut w = Growth::default();
        for i in 0..5 {
            w.push(i as f64, i * 100, 10.0);
        }
        for i in 5..40 {
            w.push(i as f64, 400, 10.0);
        }
        assert_eq!(w.time_to_full(1000), None);
        // A burst that stopped: the window still holds its rise, but the
        // last readings are flat, so no time to full (it kept saying 53 s).
        let mut stopped = Growth::default();
        for i in 0..20 {
            stopped.push(i as f64 * 10.0, 1000 + i * 1000, 300.0);
        }
        assert!(stopped.time_to_full(100_000).is_some());
        for i in 20..24 {
            stopped.push(i as f64 * 10.0, 20_000, 300.0);
        }
        assert_eq!(stopped.time_to_full(100_000), None);
    }

    #[test]
    fn a_vanished_namespace_is_down_not_silent() {
        use super::super::{encode::Format, metrics};
        let since = Instant::now() - Duration::from_secs(30);
        let p = down(
            &Target::Named("gw".into()),
            None,
            since,
            "no network namespace named \"gw\"",
            true,
        );
        assert_eq!(
            p.read_at, since,
            "the age counts from the last good reading"
        );
        assert!(p.facts.sources.iter().all(|s| !s.ok));
        let ns = metrics::Netns {
            facts: &p.facts,
            findings: &p.findings,
            table: None,
            log_lines: None,
            time_to_full_secs: None,
            facts_age_secs: p.read_at.elapsed().as_secs_f64(),
            owner: None,
        };
        let text = metrics::render(&[ns], &metrics::Machine::default(), Format::Text);
        let l = "netns=\"\",netns_name=\"gw\"";
        for s in ["netns", "conntrack", "stat", "consumers", "table"] {
            let want = format!("ctdoctor_source_up{{{l},source=\"{s}\"}} 0\n");
            assert!(text.contains(&want), "missing {want} in\n{text}");
        }
        assert!(
            !text.contains("source=\"persist\""),
            "the exporter never reads persist"
        );
        let age = text
            .lines()
            .find(|x| x.starts_with("ctdoctor_facts_age_seconds{"))
            .and_then(|x| x.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap();
        assert!(age >= 30.0, "{age}");

        // After a good reading, its labels are kept.
        let mut f = (*p.facts).clone();
        f.netns = Ok(NetnsId {
            inode: Some(4026532177),
            name: Some("gw".into()),
            ..NetnsId::default()
        });
        let good = Published {
            facts: Arc::new(f),
            ..p
        };
        let again = down(
            &Target::Named("gw".into()),
            Some(&good),
            since,
            "gone",
            false,
        );
        assert_eq!(again.facts.netns.as_ref().unwrap().inode, Some(4026532177));
        assert!(!again.facts.sources.iter().any(|s| s.name == "table"));
    }

    fn log(times: &[u64]) -> Kmsg {
        Kmsg {
            table_full: vec![TableFull {
                inode: Some(7),
                lines: times.len() as u64,
                first_usec: times.first().copied(),
                last_usec: times.last().copied(),
                times_usec: times.to_vec(),
            }],
            newest_usec: times.last().copied(),
            ..Kmsg::default()
        }
    }

    #[test]
    fn log_lines_count_up_while_the_buffer_rotates() {
        let own = |k: &Kmsg| k.table_full_for(Some(7)).map_or(0, |t| t.lines);
        let mut c = LogCounter::default();
        assert_eq!(c.add(&log(&[10, 20, 30]), own), 3, "all lines at start");
        assert_eq!(c.add(&log(&[10, 20, 30]), own), 3, "nothing new");
        // The buffer dropped 10 and 20 and gained 40, 50.
        assert_eq!(c.add(&log(&[30, 40, 50]), own), 5);
        assert_eq!(
            c.add(&log(&[]), own),
            5,
            "an emptied buffer never counts down"
        );
    }
}
