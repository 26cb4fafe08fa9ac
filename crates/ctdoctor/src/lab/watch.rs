//! The gateway, every second: its table's count and max, the drop and
//! early_drop counters, and the kernel's "table full in netns N" lines for
//! its inode (kernels before 6.17 name no netns: there, every "table
//! full" line, said so) — read through the same readers `check` uses, inside its
//! namespace, on a thread of their own until the guard drops.
//!
//! Not for: judging (that is `check`, run on the gateway by the lab).

use crate::host::{self, Root};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One reading.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tick {
    /// Seconds since the lab started.
    pub t: f64,
    pub count: Option<u64>,
    pub max: Option<u64>,
    pub drop: Option<u64>,
    pub early_drop: Option<u64>,
    /// "table full" lines naming the gateway's inode logged since the
    /// watcher started (a running count: see [`LogSeen`]); on kernels that
    /// name no netns, every "table full" line.
    pub log_lines: Option<u64>,
    /// The kernel names no netns in its lines (before 6.17): `log_lines`
    /// may hold another namespace's.
    pub log_any_netns: bool,
}

/// The gateway's "table full" lines counted as they appear, by their
/// times: the ring buffer is small (128 KiB here) and inodes are reused,
/// so counting the lines that name the inode in the buffer would count an
/// earlier namespace's lines, and stop rising once old ones fall out as
/// fast as new ones come in (a CI run saw 0 new lines in a failing phase
/// that way).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSeen {
    /// Lines at or before this time (µs since boot) are counted already.
    after: Option<u64>,
    lines: u64,
}

impl LogSeen {
    /// Start counting after the newest record in the log now.
    pub fn from_now(k: Option<&host::kmsg::Kmsg>) -> LogSeen {
        LogSeen {
            after: k.and_then(|k| k.newest_usec),
            lines: 0,
        }
    }

    /// Add the lines newer than those seen; the running count.
    pub fn update(&mut self, f: Option<&host::kmsg::TableFull>) -> u64 {
        if let Some(f) = f {
            let new = f
                .times_usec
                .iter()
                .filter(|u| self.after.is_none_or(|a| **u > a));
            self.lines += new.count() as u64;
            self.after = self.after.max(f.times_usec.last().copied());
        }
        self.lines
    }
}

/// Which lines are the gateway's: those naming its inode, or on a kernel
/// that names no netns ([`crate::kernel::NETNS_IN_LOG`]) all of them.
pub fn log_key(inode: u64, version: Option<crate::kernel::Version>) -> Option<u64> {
    match version {
        Some(v) if v < crate::kernel::NETNS_IN_LOG => None,
        _ => Some(inode),
    }
}

/// Read one tick inside the namespace this thread is in; `key` from
/// [`log_key`].
pub fn read_tick(key: Option<u64>, t: f64, seen: &mut LogSeen) -> Tick {
    let root = Root::live();
    let ct = host::conntrack::read(&root).ok();
    let stat = host::stat::read(&root).ok();
    let log_lines = host::kmsg::read(&root)
        .ok()
        .map(|k| seen.update(k.table_full_for(key)));
    Tick {
        t,
        count: ct.as_ref().map(|c| c.count),
        max: ct.as_ref().and_then(|c| c.max.clone().ok()),
        drop: stat.as_ref().and_then(|s| s.drop()),
        early_drop: stat.as_ref().and_then(|s| s.early_drop()),
        log_lines,
        log_any_netns: key.is_none(),
    }
}

/// The watcher; stops on drop.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    ticks: Arc<Mutex<Vec<Tick>>>,
}

impl Watcher {
    /// Read the gateway (`target`, nsfs `inode`) every second from now on.
    pub fn start(target: netns::Target, inode: u64, since: Instant) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, ticks) = (stop.clone(), ticks.clone());
            std::thread::spawn(move || {
                let _ = netns::run_in(&target, || {
                    let mut next = Instant::now();
                    let root = Root::live();
                    let mut seen = LogSeen::from_now(host::kmsg::read(&root).ok().as_ref());
                    let version = host::system::read(&root)
                        .ok()
                        .and_then(|s| s.kernel_version);
                    let key = log_key(inode, version);
                    while !stop.load(Ordering::Relaxed) {
                        let tick = read_tick(key, since.elapsed().as_secs_f64(), &mut seen);
                        ticks.lock().unwrap_or_else(|p| p.into_inner()).push(tick);
                        next += Duration::from_secs(1);
                        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                });
            })
        };
        Watcher {
            stop,
            thread: Some(thread),
            ticks,
        }
    }

    /// Every tick so far.
    pub fn ticks(&self) -> Vec<Tick> {
        self.ticks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The latest tick.
    pub fn last(&self) -> Option<Tick> {
        self.ticks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .copied()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ticks within `[from, to)` seconds.
pub fn window(ticks: &[Tick], from: f64, to: f64) -> Vec<Tick> {
    ticks
        .iter()
        .copied()
        .filter(|t| t.t >= from && t.t < to)
        .collect()
}

/// How much a per-CPU (32-bit, wrapping) counter rose between the first
/// and last tick of a window.
pub fn rise(ticks: &[Tick], get: impl Fn(&Tick) -> Option<u64>) -> Option<u64> {
    let first = ticks.iter().find_map(&get)?;
    let last = ticks.iter().rev().find_map(&get)?;
    crate::counters::rise_u32(last, Some(first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::kmsg::TableFull;

    fn lines(times: &[u64]) -> TableFull {
        TableFull {
            inode: Some(7),
            lines: times.len() as u64,
            first_usec: times.first().copied(),
            last_usec: times.last().copied(),
            times_usec: times.to_vec(),
        }
    }

    #[test]
    fn before_6_17_every_table_full_line_counts_and_says_so() {
        // 5.10 and 6.1 (seen in the kernel matrix) log no netns.
        assert_eq!(log_key(7, Some((5, 10, 0))), None);
        assert_eq!(log_key(7, Some((6, 16, 9))), None);
        assert_eq!(log_key(7, Some((6, 17, 0))), Some(7));
        assert_eq!(log_key(7, None), Some(7), "unknown: only provable lines");
        let k = crate::host::kmsg::parse(
            "[  10.000000] nf_conntrack: nf_conntrack: table full, dropping packet\n\
             [  11.000000] nf_conntrack: nf_conntrack: table full, dropping packet\n",
        );
        let mut seen = LogSeen::default();
        assert_eq!(
            seen.update(k.table_full_for(log_key(7, Some((6, 1, 0))))),
            2
        );
        let mut seen = LogSeen::default();
        assert_eq!(
            seen.update(k.table_full_for(log_key(7, Some((6, 18, 0))))),
            0
        );
    }

    #[test]
    fn log_lines_count_as_they_appear_whatever_falls_out_of_the_ring() {
        // An earlier namespace with the same inode logged at 100 and 200;
        // the watcher starts with the log's newest record at 250.
        let mut seen = LogSeen {
            after: Some(250),
            lines: 0,
        };
        assert_eq!(seen.update(Some(&lines(&[100, 200]))), 0);
        assert_eq!(seen.update(Some(&lines(&[100, 200, 300, 310]))), 2);
        // The ring wrapped: the old lines and ours at 300 fell out.
        assert_eq!(seen.update(Some(&lines(&[310, 400]))), 3);
        assert_eq!(seen.update(None), 3);
        assert_eq!(seen.update(Some(&lines(&[400]))), 3);
    }
}
