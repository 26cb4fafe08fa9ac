//! The background refresher: every `--interval` it reads each exported
//! namespace's facts (every source but the table dump and the boot-time
//! persistence scan), runs the same checks as `ctdoctor check` (with the
//! previous reading as the earlier one, so rules see rates), counts new
//! "table full" log lines, keeps the count's growth for the time-to-full
//! estimate, and publishes it all for scrapes to render. A slow source
//! delays the next publication, never a scrape (`ctdoctor_facts_age_seconds`
//! shows it).
//!
//! Pure parts ([`Growth`], [`LogCounter`]) are tested here; the loop is
//! tested end to end (tests/exporter_kernel.rs).
//!
//! Not for: the table (`track`), HTTP, rendering.

use super::track::{Tracker, Tracking};
use super::Shutdown;
use crate::checks::{self, Finding};
use crate::host::{self, netns::Target, Collect, Select, Source};
use crate::snapshot::{Facts, Kmsg, Snapshot, TableFull};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The sources the refresher reads: all but the table (followed by
/// `track`, never dumped per refresh) and persistence (boot files: what
/// `check` judges once, not a time series).
pub fn select() -> Select {
    Select::ALL.without(Source::Table).without(Source::Persist)
}

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
    /// the window's readings; 0 when full; None when not growing or with
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

/// Per-namespace memory of the refresher.
#[derive(Default)]
struct Memory {
    previous: Option<Facts>,
    growth: Growth,
    log: LogCounter,
    tracker: Option<Arc<Tracker>>,
}

/// Refresh until shutdown, publishing to `board`.
pub fn run(
    cfg: Config,
    board: Arc<RwLock<Board>>,
    tracking: Option<Arc<Tracking>>,
    stop: Arc<Shutdown>,
) {
    let start = Instant::now();
    let mut mem: BTreeMap<String, Memory> = BTreeMap::new();
    let mut unattributed = LogCounter::default();
    while !stop.stopped() {
        let t0 = Instant::now();
        let (targets, owners): (Vec<Target>, Vec<Option<String>>) = match &cfg.targets {
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
        };
        let opts = Collect {
            select: select(),
            ..Collect::default()
        };
        let got = host::collect(&cfg.prefix, &targets, &opts);
        let mut published = Vec::new();
        let mut errors = Vec::new();
        let mut live = Vec::new();
        let mut machine_log: Option<u64> = None;
        for ((res, target), owner) in got.into_iter().zip(&targets).zip(owners) {
            let c = match res {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{target}: {e:#}"));
                    continue;
                }
            };
            let mut now = c.snapshot.now;
            now.elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
            let key = match now.netns.as_ref().ok().and_then(|n| n.inode) {
                Some(i) => i.to_string(),
                None => target.to_string(),
            };
            live.push(key.clone());
            let m = mem.entry(key).or_default();
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
            let tsecs = start.elapsed().as_secs_f64();
            let mut ttf = None;
            if let Ok(ct) = &now.conntrack {
                m.growth
                    .push(tsecs, ct.count, cfg.growth_window.as_secs_f64());
                if let Ok(max) = ct.max {
                    ttf = m.growth.time_to_full(max);
                }
            }
            let log_lines = now.kmsg.as_ref().ok().map(|k| {
                if machine_log.is_none() {
                    machine_log = Some(unattributed.add(k, |n| {
                        checks::conntrack::attribute(n, None, false, version(&now), None)
                            .unattributed_lines
                    }));
                }
                m.log
                    .add(k, |n| checks::conntrack::attribute_for(&now, n).own_lines)
            });
            if m.tracker.is_none() {
                m.tracker = tracking.as_ref().map(|t| t.add(target.clone()));
            }
            let facts = Arc::new(now.clone());
            m.previous = Some(now);
            published.push(Published {
                facts,
                findings: Arc::new(findings),
                read_at: Instant::now(),
                log_lines,
                time_to_full_secs: ttf,
                owner,
                tracker: m.tracker.clone(),
            });
        }
        // Namespaces that are gone: stop following them.
        mem.retain(|k, m| {
            let keep = live.contains(k);
            if !keep {
                if let Some(t) = &m.tracker {
                    t.retire();
                }
            }
            keep
        });
        if let Some(t) = &tracking {
            t.prune();
        }
        {
            let mut b = board.write().unwrap_or_else(|p| p.into_inner());
            b.namespaces = published;
            b.refresh_secs = Some(t0.elapsed().as_secs_f64());
            b.unattributed_log_lines = machine_log.or(b.unattributed_log_lines);
            b.refreshes += 1;
            b.last_refresh = Some(Instant::now());
            b.errors = errors;
        }
        let spent = t0.elapsed();
        stop.sleep(cfg.interval.saturating_sub(spent));
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
