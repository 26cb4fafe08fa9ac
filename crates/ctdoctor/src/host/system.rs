//! The machine: kernel release, memory, CPUs, uptime and boot time, and the
//! conntrack slab cache. Sources: /proc/sys/kernel/osrelease,
//! /proc/meminfo, /sys/devices/system/cpu/online, /proc/uptime,
//! /proc/stat (btime), /proc/slabinfo (root only).

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct System {
    /// `uname -r`, e.g. "6.18.44-fc-v509".
    pub kernel_release: String,
    /// (major, minor, patch) parsed from the release; None if unparsable.
    pub kernel_version: Option<(u32, u32, u32)>,
    pub mem_total_bytes: Fact<u64>,
    pub mem_available_bytes: Fact<u64>,
    /// Online CPUs.
    pub cpus: Fact<u32>,
    /// Seconds since boot when read (kernel log times are on this clock).
    pub uptime_secs: Fact<f64>,
    /// Boot time, Unix seconds (/proc/stat btime).
    pub boot_time_unix: Fact<i64>,
    /// The nf_conntrack slab cache (needs root).
    pub slab: Fact<Slab>,
}

/// One slab cache's line in /proc/slabinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slab {
    /// Cache name: `nf_conntrack`, or `nf_conntrack_<ptr>` on old kernels
    /// (one per netns; values are summed over them).
    pub name: String,
    pub active_objs: u64,
    pub num_objs: u64,
    /// Bytes per object as the allocator lays it out.
    pub objsize: u64,
}

pub fn read(root: &Root) -> Fact<System> {
    let release = root
        .read_text("proc/sys/kernel/osrelease")?
        .trim()
        .to_string();
    let meminfo = root.read_text("proc/meminfo");
    Ok(System {
        kernel_version: parse_kernel_version(&release),
        kernel_release: release,
        mem_total_bytes: meminfo.clone().and_then(|m| meminfo_bytes(&m, "MemTotal")),
        mem_available_bytes: meminfo.and_then(|m| meminfo_bytes(&m, "MemAvailable")),
        cpus: root
            .read_text("sys/devices/system/cpu/online")
            .and_then(|s| parse_cpu_list(&s)),
        uptime_secs: root.read_text("proc/uptime").and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| Unavailable::malformed("proc/uptime", "no uptime"))
        }),
        boot_time_unix: root.read_text("proc/stat").and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| Unavailable::malformed("proc/stat", "no btime line"))
        }),
        slab: root.read_text("proc/slabinfo").and_then(|s| parse_slab(&s)),
    })
}

/// "6.18.44-fc-v509" -> (6, 18, 44); "5.4.0-42-generic" -> (5, 4, 0).
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// A `Key:  N kB` line of /proc/meminfo, in bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Fact<u64> {
    meminfo
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            let mut parts = rest.split_whitespace();
            let n: u64 = parts.next()?.parse().ok()?;
            let mult = match parts.next() {
                Some("kB") => 1024,
                None => 1,
                Some(_) => return None,
            };
            n.checked_mul(mult)
        })
        .ok_or_else(|| Unavailable::malformed("proc/meminfo", format!("no {key} line")))
}

/// "0-3,8,10-11" -> 7.
pub fn parse_cpu_list(s: &str) -> Fact<u32> {
    let bad = || {
        Unavailable::malformed(
            "sys/devices/system/cpu/online",
            format!("bad CPU list {:?}", super::truncate(s.trim(), 40)),
        )
    };
    let mut n: u32 = 0;
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.parse::<u32>().map_err(|_| bad())?,
                b.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let a = part.parse::<u32>().map_err(|_| bad())?;
                (a, a)
            }
        };
        if b < a {
            return Err(bad());
        }
        n = n.checked_add(b - a + 1).ok_or_else(bad)?;
    }
    if n == 0 {
        return Err(bad());
    }
    Ok(n)
}

/// The nf_conntrack cache(s) in /proc/slabinfo (format 2.1:
/// `name active_objs num_objs objsize objperslab pagesperslab : ...`).
pub fn parse_slab(s: &str) -> Fact<Slab> {
    let mut found: Option<Slab> = None;
    for line in s.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        if name != "nf_conntrack" && !name.starts_with("nf_conntrack_") {
            continue;
        }
        // nf_conntrack_expect is a different cache.
        if name.starts_with("nf_conntrack_expect") {
            continue;
        }
        let nums: Vec<u64> = f.take(3).filter_map(|v| v.parse().ok()).collect();
        let [active, num, objsize] = nums[..] else {
            return Err(Unavailable::malformed(
                "proc/slabinfo",
                format!("short line for {name}"),
            ));
        };
        let e = found.get_or_insert_with(|| Slab {
            name: name.to_string(),
            objsize,
            ..Slab::default()
        });
        e.active_objs += active;
        e.num_objs += num;
        e.objsize = e.objsize.max(objsize);
    }
    found.ok_or_else(|| Unavailable::Missing {
        what: "proc/slabinfo: no nf_conntrack cache".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v509"), Some((6, 18, 44)));
        assert_eq!(parse_kernel_version("5.4.0-42-generic"), Some((5, 4, 0)));
        assert_eq!(parse_kernel_version("3.10"), Some((3, 10, 0)));
        assert_eq!(parse_kernel_version("x"), None);
    }

    #[test]
    fn meminfo_and_cpus() {
        let m = "MemTotal:       24600000 kB\nMemFree: 1 kB\nMemAvailable:   100 kB\n";
        assert_eq!(meminfo_bytes(m, "MemTotal").unwrap(), 24_600_000 * 1024);
        assert_eq!(meminfo_bytes(m, "MemAvailable").unwrap(), 102_400);
        assert!(meminfo_bytes(m, "Nope").is_err());
        assert_eq!(parse_cpu_list("0-1\n").unwrap(), 2);
        assert_eq!(parse_cpu_list("0-3,8,10-11").unwrap(), 7);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn slabinfo_measured_line() {
        // From this VM at 1M entries (DOMAIN.md).
        let s = "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> ...\n\
                 nf_conntrack_expect      0      0    256   16    1 : tunables 0 0 0 : slabdata 0 0 0\n\
                 nf_conntrack      1000016 1000016    256   16    1 : tunables    0    0    0 : slabdata  62501  62501      0\n";
        let slab = parse_slab(s).unwrap();
        assert_eq!(
            slab,
            Slab {
                name: "nf_conntrack".into(),
                active_objs: 1_000_016,
                num_objs: 1_000_016,
                objsize: 256
            }
        );
        // Old kernels: one cache per netns, summed.
        let old = "nf_conntrack_ffffffff81b0 10 20 312 13 1 : x\nnf_conntrack_ffff8800aa00 5 13 312 13 1 : x\n";
        let slab = parse_slab(old).unwrap();
        assert_eq!(
            (slab.active_objs, slab.num_objs, slab.objsize),
            (15, 33, 312)
        );
        assert!(parse_slab("kmalloc-64 1 2 64 1 1\n").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_kernel_version(&s);
            let _ = meminfo_bytes(&s, "MemTotal");
            let _ = parse_cpu_list(&s);
            let _ = parse_slab(&s);
        }
    }
}
