//! File descriptors: the system-wide table (fs.file-nr, fs.file-max,
//! fs.nr_open) and the processes closest to their own "Max open files"
//! soft limit (probe `probe:fd_usage`).
//!
//! The probe walks /proc/PID for every process whose network namespace is
//! the reading thread's (so a per-netns report shows its own processes):
//! open fds = `st_size` of /proc/PID/fd (O(1) on kernel >= 6.2; earlier
//! kernels report 0 there and the entries are counted instead), the limit
//! from /proc/PID/limits. Processes that vanish or cannot be read (not
//! root) are skipped and counted; ctdoctor's own process is not looked at
//! (its fds say nothing about the machine, and without root it would be
//! the only one seen: an "ok" about nothing). When processes were there
//! but none could be read, the probe is unavailable (permission). At most
//! [`MAX_PIDS`] pids are looked at.
//!
//! Not for: judging (checks::fds), or per-thread limits.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The probe key.
pub const PROBE: &str = "probe:fd_usage";
/// Processes kept in a capture.
pub const TOP: usize = 10;
/// Bound on the scan.
pub const MAX_PIDS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fds {
    /// fs.file-nr: allocated, free (always 0 since 2.6), max.
    pub file_nr: Fact<FileNr>,
    pub file_max: Fact<u64>,
    /// fs.nr_open: the ceiling for any process's RLIMIT_NOFILE.
    pub nr_open: Fact<u64>,
    pub processes: Fact<FdUsage>,
    /// Whether root here may raise a process's hard limit: CAP_SYS_RESOURCE
    /// in the capability bounding set of ctdoctor's own process
    /// (/proc/self/status `CapBnd`). A root shell on this host has the same
    /// bounding set; a container often lacks the capability, and then
    /// `prlimit` can raise a soft limit only up to the hard one.
    #[serde(default = "sys_resource_unknown")]
    pub sys_resource: Fact<bool>,
}

/// The capability number of CAP_SYS_RESOURCE (linux/capability.h).
pub const CAP_SYS_RESOURCE: u32 = 24;
const STATUS: &str = "proc/self/status";

fn sys_resource_unknown() -> Fact<bool> {
    Err(Unavailable::Missing {
        what: STATUS.into(),
    })
}

/// Whether capability `cap` is in the `CapBnd:` set of a /proc/PID/status
/// text (a hex mask).
pub fn parse_cap_bounding(status: &str, cap: u32) -> Fact<bool> {
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| Unavailable::malformed(STATUS, "no CapBnd line"))?;
    Ok(cap < 64 && mask & (1u64 << cap) != 0)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileNr {
    pub allocated: u64,
    pub free: u64,
    pub max: u64,
}

/// What the fd probe found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdUsage {
    /// Processes looked at (in this netns).
    pub scanned: u64,
    /// Processes skipped: vanished or unreadable (not root).
    pub skipped: u64,
    /// Processes not looked at because they live in another netns.
    #[serde(default)]
    pub other_netns: u64,
    /// Processes whose netns could not be read (a protected pid 1 in a
    /// container): not known to be here, so not counted as skipped.
    #[serde(default)]
    pub unknown_netns: u64,
    /// The scan stopped at [`MAX_PIDS`].
    pub truncated: bool,
    /// Closest to their soft limit first.
    pub top: Vec<ProcFds>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcFds {
    pub pid: u32,
    pub comm: String,
    /// Open file descriptors.
    pub open: u64,
    /// RLIMIT_NOFILE soft and hard limits.
    pub soft: u64,
    pub hard: u64,
    /// The systemd unit it runs in, from /proc/PID/cgroup, when there is one.
    #[serde(default)]
    pub unit: Option<String>,
}

impl ProcFds {
    /// open / soft, in percent.
    pub fn percent(&self) -> f64 {
        if self.soft == 0 {
            return 100.0;
        }
        self.open as f64 * 100.0 / self.soft as f64
    }
}

pub fn read(root: &Root) -> Fact<Fds> {
    let file_nr = root
        .read_text("proc/sys/fs/file-nr")
        .and_then(|s| parse_file_nr(&s));
    let file_max = super::read_u64(root, "proc/sys/fs/file-max");
    if let (Err(u), Err(_)) = (&file_nr, &file_max) {
        // Nothing of fs.* readable: say so once, at the source level.
        return Err(u.clone());
    }
    let prefix = root.live_prefix().map(Path::to_path_buf);
    let processes = root
        .probe(PROBE, || {
            let proc = prefix.unwrap_or_else(|| "/".into()).join("proc");
            let u = scan(&proc, TOP, true)?;
            Ok(serde_json::to_vec(&u).expect("FdUsage serialises"))
        })
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| Unavailable::malformed(PROBE, e.to_string()))
        });
    Ok(Fds {
        file_nr,
        file_max,
        nr_open: super::read_u64(root, "proc/sys/fs/nr_open"),
        processes,
        sys_resource: root
            .read_text(STATUS)
            .and_then(|s| parse_cap_bounding(&s, CAP_SYS_RESOURCE)),
    })
}

/// `483\t0\t2466190` -> allocated 483, free 0, max 2466190.
pub fn parse_file_nr(s: &str) -> Fact<FileNr> {
    let v: Vec<u64> = s
        .split_whitespace()
        .map(|x| x.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| Unavailable::malformed("proc/sys/fs/file-nr", "not three integers"))?;
    match v[..] {
        [allocated, free, max] => Ok(FileNr {
            allocated,
            free,
            max,
        }),
        _ => Err(Unavailable::malformed(
            "proc/sys/fs/file-nr",
            format!("expected 3 numbers, got {}", v.len()),
        )),
    }
}

/// The "Max open files" line of /proc/PID/limits: (soft, hard).
/// "unlimited" (not possible for NOFILE on Linux, but harmless) is u64::MAX.
pub fn parse_limits_nofile(s: &str) -> Option<(u64, u64)> {
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    let mut it = line["Max open files".len()..].split_whitespace();
    let val = |v: &str| -> Option<u64> {
        if v == "unlimited" {
            Some(u64::MAX)
        } else {
            v.parse().ok()
        }
    };
    let soft = val(it.next()?)?;
    let hard = val(it.next()?)?;
    Some((soft, hard))
}

/// The systemd unit in a /proc/PID/cgroup text (`0::/system.slice/nginx.service`).
pub fn unit_of(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|l| {
        let path = l.splitn(3, ':').nth(2)?;
        path.rsplit('/')
            .find(|c| c.ends_with(".service"))
            .map(str::to_string)
    })
}

/// The processes of a /proc tree a per-netns reader looks at: with
/// `same_netns`, those whose /proc/PID/ns/net is the calling thread's
/// (else every one), never ctdoctor itself, at most [`MAX_PIDS`] pids
/// walked. `fds.process` and the nginx reader (host::nginx) share it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetnsPids {
    /// Pids in this netns, in directory order.
    pub pids: Vec<u32>,
    /// Pids in another netns.
    pub other_netns: u64,
    /// Pids gone during the walk.
    pub vanished: u64,
    /// Pids whose ns/net could not be read (a protected pid 1 in a
    /// container, not root): not known to be here.
    pub unknown_netns: Vec<u32>,
    /// The walk stopped at [`MAX_PIDS`].
    pub truncated: bool,
}

/// Walk `proc` for [`NetnsPids`].
pub fn netns_pids(proc: &Path, same_netns: bool) -> Result<NetnsPids, Unavailable> {
    let rd = std::fs::read_dir(proc).map_err(|e| Unavailable::from_io("proc", &e))?;
    let our_ns = if same_netns {
        std::fs::read_link(proc.join("thread-self/ns/net")).ok()
    } else {
        None
    };
    // Ourselves, as this procfs numbers us.
    let me: Option<u32> = std::fs::read_link(proc.join("self"))
        .ok()
        .and_then(|p| p.to_str()?.parse().ok());
    let mut out = NetnsPids::default();
    let mut seen = 0usize;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        seen += 1;
        if seen > MAX_PIDS {
            out.truncated = true;
            break;
        }
        if Some(pid) == me {
            continue;
        }
        if let Some(ns) = &our_ns {
            match std::fs::read_link(e.path().join("ns/net")) {
                Ok(l) if &l == ns => {}
                Ok(_) => {
                    out.other_netns += 1;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    out.vanished += 1;
                    continue;
                }
                Err(_) => {
                    out.unknown_netns.push(pid);
                    continue;
                }
            }
        }
        out.pids.push(pid);
    }
    Ok(out)
}

/// Walk `proc` and return the `top` processes by open/soft ratio. With
/// `same_netns`, only processes in the calling thread's network namespace.
pub fn scan(proc: &Path, top: usize, same_netns: bool) -> Result<FdUsage, Unavailable> {
    use std::os::unix::fs::MetadataExt;
    let walk = netns_pids(proc, same_netns)?;
    // st_size of /proc/PID/fd is the fd count only on procfs (>= 6.2).
    let procfs = is_procfs(proc);
    // A namespace that cannot be read: for a reader that is not root, for
    // want of privilege (unread: not checked); for root, a process even
    // root may not look at (a protected pid 1), not known to live here.
    // SAFETY: geteuid has no failure mode.
    let am_root = unsafe { libc::geteuid() } == 0;
    let unknown = walk.unknown_netns.len() as u64;
    let (unread, unknown) = if am_root { (0, unknown) } else { (unknown, 0) };
    let mut out = FdUsage {
        skipped: walk.vanished + unread,
        other_netns: walk.other_netns,
        unknown_netns: unknown,
        truncated: walk.truncated,
        ..FdUsage::default()
    };
    let mut all: Vec<ProcFds> = Vec::new();
    for pid in walk.pids {
        let dir = proc.join(pid.to_string());
        let limits = std::fs::read_to_string(dir.join("limits"))
            .ok()
            .and_then(|s| parse_limits_nofile(&s));
        let Some((soft, hard)) = limits else {
            out.skipped += 1;
            continue;
        };
        let open = match std::fs::metadata(dir.join("fd")) {
            Ok(m) if procfs && m.size() > 0 => m.size(),
            Ok(_) => match std::fs::read_dir(dir.join("fd")) {
                Ok(rd) => rd.take(10_000_000).count() as u64,
                Err(_) => {
                    out.skipped += 1;
                    continue;
                }
            },
            Err(_) => {
                out.skipped += 1;
                continue;
            }
        };
        out.scanned += 1;
        let comm = std::fs::read_to_string(dir.join("comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        all.push(ProcFds {
            pid,
            comm,
            open,
            soft,
            hard,
            unit: None,
        });
    }
    all.sort_by(|a, b| {
        b.percent()
            .partial_cmp(&a.percent())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| b.open.cmp(&a.open))
            .then_with(|| a.pid.cmp(&b.pid))
    });
    if out.scanned == 0 && out.skipped > 0 {
        return Err(Unavailable::permission(&format!(
            "/proc/PID/fd of {} processes (none readable)",
            out.skipped
        )));
    }
    all.truncate(top);
    for p in &mut all {
        p.unit = std::fs::read_to_string(proc.join(p.pid.to_string()).join("cgroup"))
            .ok()
            .and_then(|s| unit_of(&s));
    }
    out.top = all;
    Ok(out)
}

/// A process holding a socket, and the fd it holds it as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketOwner {
    pub pid: u32,
    pub comm: String,
    pub fd: u32,
}

/// The processes holding the sockets `inodes` (`socket:[INODE]` links in
/// /proc/PID/fd), lowest pid first; socket inodes are unique machine-wide,
/// so every process is looked at, whatever its netns. Bounded: stops when
/// every inode is found or after `budget` (those not found yet stay
/// unknown). Unreadable processes are skipped.
pub fn socket_owners(
    proc: &Path,
    inodes: &std::collections::HashSet<u64>,
    budget: std::time::Duration,
) -> std::collections::HashMap<u64, SocketOwner> {
    let mut found = std::collections::HashMap::new();
    let wanted: std::collections::HashSet<u64> =
        inodes.iter().copied().filter(|&i| i != 0).collect();
    if wanted.is_empty() {
        return found;
    }
    let start = std::time::Instant::now();
    let mut pids: Vec<u32> = match std::fs::read_dir(proc) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .take(MAX_PIDS)
            .collect(),
        Err(_) => return found,
    };
    pids.sort_unstable();
    'pids: for pid in pids {
        let dir = proc.join(pid.to_string()).join("fd");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if start.elapsed() > budget {
                break 'pids;
            }
            let Ok(link) = std::fs::read_link(e.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(&link) else {
                continue;
            };
            if !wanted.contains(&inode) || found.contains_key(&inode) {
                continue;
            }
            let Some(fd) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(proc.join(pid.to_string()).join("comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_default();
            found.insert(inode, SocketOwner { pid, comm, fd });
            if found.len() == wanted.len() {
                break 'pids;
            }
        }
    }
    found
}

/// `socket:[12345]` -> 12345.
pub fn socket_inode(link: &Path) -> Option<u64> {
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn is_procfs(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: zeroed statfs is a valid out-parameter; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    // f_type and the magic differ in type between libcs and arches.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64 == libc::PROC_SUPER_MAGIC as i64;
    rc == 0 && magic
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn socket_inode_of_a_link() {
        assert_eq!(socket_inode(Path::new("socket:[12345]")), Some(12345));
        assert_eq!(socket_inode(Path::new("pipe:[12345]")), None);
        assert_eq!(socket_inode(Path::new("socket:[x]")), None);
    }

    #[test]
    fn our_own_listener_is_found() {
        use std::os::unix::fs::MetadataExt;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let inode = socket_inode(&link).unwrap();
        assert_eq!(
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .ino(),
            inode
        );
        let set = [inode, 0].into_iter().collect();
        let got = socket_owners(Path::new("/proc"), &set, std::time::Duration::from_secs(5));
        let o = &got[&inode];
        assert_eq!((o.pid, o.fd), (std::process::id(), fd as u32));
        assert_eq!(got.len(), 1, "inode 0 is never looked for");
    }

    #[test]
    fn cap_sys_resource_from_the_bounding_set() {
        // This VM's root: every capability but CAP_SYS_RESOURCE (bit 24).
        let here = "Name:\tbash\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(parse_cap_bounding(here, CAP_SYS_RESOURCE), Ok(false));
        let full = "CapBnd:\t000001ffffffffff\n";
        assert_eq!(parse_cap_bounding(full, CAP_SYS_RESOURCE), Ok(true));
        assert_eq!(parse_cap_bounding(full, 70), Ok(false));
        assert!(parse_cap_bounding("CapEff:\t0\n", 24).is_err());
        assert!(parse_cap_bounding("CapBnd:\tzz\n", 24).is_err());
    }

    #[test]
    fn file_nr() {
        // This VM.
        let f = parse_file_nr("483\t0\t2466190\n").unwrap();
        assert_eq!(
            f,
            FileNr {
                allocated: 483,
                free: 0,
                max: 2466190
            }
        );
        assert!(parse_file_nr("1 2").is_err());
        assert!(parse_file_nr("a b c").is_err());
    }

    #[test]
    fn limits() {
        let l = "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max open files            1024                 524288               files     \n\
Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(parse_limits_nofile(l), Some((1024, 524288)));
        assert_eq!(
            parse_limits_nofile("Max open files unlimited unlimited files"),
            Some((u64::MAX, u64::MAX))
        );
        assert_eq!(parse_limits_nofile("Max cpu time 1 2"), None);
        assert_eq!(parse_limits_nofile("Max open files x 2"), None);
    }

    #[test]
    fn units() {
        assert_eq!(
            unit_of("0::/system.slice/nginx.service\n").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            unit_of("12:pids:/system.slice/haproxy.service/x\n0::/\n").as_deref(),
            Some("haproxy.service")
        );
        assert_eq!(unit_of("0::/user.slice/session-1.scope\n"), None);
    }

    #[test]
    fn scans_a_tree() {
        let d = tempfile::tempdir().unwrap();
        let mk = |pid: &str, soft: u64, fds: usize| {
            let p = d.path().join(pid);
            std::fs::create_dir_all(p.join("fd")).unwrap();
            for i in 0..fds {
                std::fs::write(p.join("fd").join(i.to_string()), "").unwrap();
            }
            std::fs::write(
                p.join("limits"),
                format!(
                    "Max open files            {soft}                 4096               files\n"
                ),
            )
            .unwrap();
            std::fs::write(p.join("comm"), format!("p{pid}\n")).unwrap();
        };
        mk("10", 100, 5); // 5 %
        mk("20", 10, 9); // 90 %
        mk("30", 4, 1); // 25 %
        std::fs::create_dir_all(d.path().join("40")).unwrap(); // vanished: no limits
        std::fs::create_dir_all(d.path().join("sys")).unwrap();
        let u = scan(d.path(), 2, false).unwrap();
        assert_eq!(u.scanned, 3);
        assert_eq!(u.skipped, 1);
        assert_eq!(u.top.len(), 2);
        // Not procfs: fds are counted entry by entry.
        assert_eq!(u.top[0].pid, 20);
        assert_eq!(u.top[0].comm, "p20");
        assert_eq!((u.top[0].open, u.top[0].soft, u.top[0].hard), (9, 10, 4096));
        assert_eq!((u.top[1].pid, u.top[1].open), (30, 1));

        // Issue 19: ctdoctor itself is never the answer; with only
        // unreadable processes left the probe is a permission error, not
        // an ok about nothing.
        std::os::unix::fs::symlink("20", d.path().join("self")).unwrap();
        let u = scan(d.path(), 2, false).unwrap();
        assert_eq!((u.scanned, u.top[0].pid), (2, 30), "pid 20 is us");
        let lone = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(lone.path().join("40")).unwrap();
        std::fs::create_dir_all(lone.path().join("41")).unwrap();
        let e = scan(lone.path(), 2, false).unwrap_err();
        assert!(e.is_permission(), "{e}");
        assert!(
            e.to_string().contains("of 2 processes (none readable)"),
            "{e}"
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_file_nr(&s);
            let _ = parse_limits_nofile(&s);
            let _ = unit_of(&s);
        }
    }
}
