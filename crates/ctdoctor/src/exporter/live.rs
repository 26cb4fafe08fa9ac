//! Counters read at scrape time: a namespace's entry count, its max and
//! the `conntrack -S` counters, so a scrape never shows a count up to one
//! refresh interval old (issue 22: 201,654 exported while `conntrack -C`
//! read 210,023 during churn).
//!
//! The files are opened once, inside the namespace (a /proc/sys/net file
//! and a /proc/net file stay bound to the namespace of the thread that
//! opened them), and re-read with pread(2) at each scrape: three small
//! reads, microseconds, no namespace switch, no thread. A file that
//! cannot be read at scrape time leaves the refresher's value in place.
//!
//! Not for: the heavier sources (sockets, fds, the log): those stay on the
//! refresh interval, with their age exported.

use crate::host::stat::{self, Stat};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Open files of one namespace.
#[derive(Debug)]
pub struct Live {
    count: File,
    max: Option<File>,
    stat: Option<File>,
}

/// What a scrape read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub count: Option<u64>,
    pub max: Option<u64>,
    pub stat: Option<Stat>,
}

impl Live {
    /// Open the files of `target`'s namespace (under `prefix`, `/` live).
    /// None when the count cannot be opened (no conntrack, gone).
    pub fn open(target: &netns::Target, prefix: &Path) -> Option<Live> {
        let p = prefix.to_path_buf();
        netns::run_in(target, move || {
            let count = File::open(p.join("proc/sys/net/netfilter/nf_conntrack_count")).ok()?;
            Some(Live {
                count,
                max: File::open(p.join("proc/sys/net/netfilter/nf_conntrack_max")).ok(),
                stat: File::open(p.join("proc/thread-self/net/stat/nf_conntrack")).ok(),
            })
        })
        .ok()
        .flatten()
    }

    /// Read them now.
    pub fn read(&self) -> Reading {
        let number = |f: &File| -> Option<u64> {
            let mut buf = [0u8; 32];
            let n = f.read_at(&mut buf, 0).ok()?;
            std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
        };
        Reading {
            count: number(&self.count),
            max: self.max.as_ref().and_then(number),
            stat: self.stat.as_ref().and_then(|f| {
                // One line per CPU of ~180 bytes: 64 KiB holds 300+ CPUs.
                let mut buf = vec![0u8; 64 * 1024];
                let mut len = 0;
                while len < buf.len() {
                    match f.read_at(&mut buf[len..], len as u64) {
                        Ok(0) => break,
                        Ok(n) => len += n,
                        Err(_) => return None,
                    }
                }
                stat::parse(std::str::from_utf8(&buf[..len]).ok()?).ok()
            }),
        }
    }
}

/// `facts` with what a scrape read in place of the refresher's values.
pub fn apply(facts: &crate::snapshot::Facts, r: &Reading) -> crate::snapshot::Facts {
    let mut f = facts.clone();
    if let Ok(ct) = &mut f.conntrack {
        if let Some(c) = r.count {
            ct.count = c;
        }
        if let Some(m) = r.max {
            ct.max = Ok(m);
        }
    }
    if let Some(s) = &r.stat {
        if f.stat.is_ok() {
            f.stat = Ok(s.clone());
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Here (the test's namespace): the reading equals the files read the
    /// ordinary way, and re-reading the same fds sees a change.
    #[test]
    fn reads_what_the_files_say() {
        let Some(l) = Live::open(&netns::Target::Current, Path::new("/")) else {
            return; // no conntrack on this kernel: nothing to read
        };
        let r = l.read();
        let max: u64 = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(r.max, Some(max));
        assert!(r.count.is_some());
        if let Some(s) = &r.stat {
            assert!(s.get("searched").is_some() || s.drop().is_some());
        }
    }
}
