//! Network namespaces: which one a root reads, what a report calls it, and
//! finding them all. Naming a target and entering it ([`Target`],
//! [`run_in`]) belong to the `netns` crate, re-exported here; nothing in
//! ctdoctor calls setns itself.
//!
//! After `setns(CLONE_NEWNET)` on a thread, /proc/sys/net follows the thread
//! and /proc/thread-self/net shows its namespace ([`Root`] reads /proc/net
//! through thread-self for that reason); /sys/class/net does not follow, so
//! no reader uses it for per-namespace facts.

use super::fact::NetnsId;
use super::{Fact, Root, Unavailable};

pub use ::netns::{run_in, Error, Target};

/// The namespace `root` reads. Live: the inode of
/// /proc/thread-self/ns/net (name and the rest are filled in by
/// [`super::collect_live`], which also stores them in the capture).
pub fn read_id(root: &Root) -> Fact<NetnsId> {
    let own = |proc: &std::path::Path| {
        let link = std::fs::read_link(proc.join("thread-self/ns/net"))
            .map_err(|e| Unavailable::from_io("proc/thread-self/ns/net", &e))?;
        let id = NetnsId {
            inode: parse_ns_link(&link.to_string_lossy()),
            ..NetnsId::default()
        };
        Ok(serde_json::to_vec(&id).expect("NetnsId serialises"))
    };
    let bytes = match root.probe(PROBE_ID, || own(std::path::Path::new("/proc"))) {
        // A prefix holding a real procfs (a host's /proc under /host) has
        // no probe file: the thread's own link says where it reads.
        Err(Unavailable::Missing { .. }) if root.live_prefix().is_some_and(has_real_proc) => {
            own(&root
                .live_prefix()
                .unwrap_or(std::path::Path::new("/"))
                .join("proc"))?
        }
        r => r?,
    };
    serde_json::from_slice(&bytes).map_err(|e| Unavailable::malformed(PROBE_ID, e.to_string()))
}

/// Whether `prefix` holds a real procfs (one with `thread-self`), as `/`
/// does, rather than a fixture tree laid out by hand.
pub fn has_real_proc(prefix: &std::path::Path) -> bool {
    prefix.as_os_str() == "/" || prefix.join("proc/thread-self").exists()
}

/// The probe key under which a capture keeps the namespace's identity.
pub const PROBE_ID: &str = "probe:netns_id";

/// The init netns's fixed inode (PROC_NET_INIT_INO, include/linux/proc_ns.h,
/// on recent kernels). Dynamic nsfs inodes start at 0xF0000000, so no
/// other namespace can ever have it.
pub const PROC_NET_INIT_INO: u64 = 0xEFFF_FFF9;

/// The host (init) network namespace's inode: that of pid 1 when readable
/// (some sandboxes deny it), else the fixed inode when the caller's own
/// namespace has it; None when it cannot be told.
pub fn init_inode() -> Option<u64> {
    inode_of_link(std::path::Path::new("/proc/1/ns/net")).or_else(|| {
        let own = inode_of_link(std::path::Path::new("/proc/self/ns/net"))?;
        (own == PROC_NET_INIT_INO).then_some(own)
    })
}

/// Whether `inode` is the init namespace, given [`init_inode`]'s answer.
pub fn is_init(inode: u64, init: Option<u64>) -> bool {
    inode == PROC_NET_INIT_INO || init == Some(inode)
}

/// `net:[4026531840]` -> 4026531840.
pub fn parse_ns_link(s: &str) -> Option<u64> {
    s.trim()
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A name pinned under /run/netns (as `ip netns add` makes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub name: String,
    /// The nsfs inode of the namespace it pins.
    pub inode: u64,
    /// The pin's ctime (Unix seconds): a lower bound on the namespace's age.
    pub since_unix: i64,
}

/// Every name pinned under /run/netns, in name order (none when the
/// directory is missing or unreadable).
pub fn pinned() -> Vec<Pinned> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::path::Path::new("/run/netns");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<Pinned> = rd
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let md = std::fs::metadata(dir.join(&name)).ok()?;
            Some(Pinned {
                inode: md.ino(),
                since_unix: md.ctime(),
                name,
            })
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// What a report calls a namespace: [`NetnsId::name`] and
/// [`NetnsId::pinned_since_unix`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naming {
    pub name: Option<String>,
    pub pinned_since_unix: Option<i64>,
}

/// The name of `target`'s namespace (nsfs inode `inode`, when read):
/// a `--netns NAME` keeps its name; otherwise the name pinned under
/// /run/netns for that inode, else a label of how it was entered —
/// `pid N` for a pid, the file's path for a path (`checks::conntrack`
/// turns those into `nsenter` prefixes). The host's namespace and an
/// unpinned current one get no name.
pub fn naming(target: &Target, inode: Option<u64>, init: Option<u64>) -> Naming {
    if let Target::Named(n) = target {
        let since = pinned().into_iter().find(|p| &p.name == n);
        return Naming {
            name: Some(n.clone()),
            pinned_since_unix: since.map(|p| p.since_unix),
        };
    }
    if inode.is_some_and(|i| is_init(i, init)) {
        return Naming::default();
    }
    if let Some(p) = inode.and_then(|i| pinned().into_iter().find(|p| p.inode == i)) {
        return Naming {
            name: Some(p.name),
            pinned_since_unix: Some(p.since_unix),
        };
    }
    Naming {
        name: match target {
            Target::Pid(pid) => Some(format!("pid {pid}")),
            Target::Path(p) => Some(p.display().to_string()),
            Target::Named(_) | Target::Current => None,
        },
        pinned_since_unix: None,
    }
}

/// One network namespace found on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub inode: u64,
    /// Name under /run/netns, if pinned there.
    pub name: Option<String>,
    /// How to enter it.
    pub target: Target,
    /// Processes living in it (pid order).
    pub processes: Vec<super::fact::ProcessRef>,
    pub is_init: bool,
}

fn inode_of_link(p: &std::path::Path) -> Option<u64> {
    parse_ns_link(&std::fs::read_link(p).ok()?.to_string_lossy())
}

/// The container id in a /proc/PID/cgroup text: the last 64-hex-digit
/// component (docker, containerd, cri-o and podman all use one).
pub fn container_id(cgroup: &str) -> Option<String> {
    for line in cgroup.lines() {
        let path = line.rsplit(':').next().unwrap_or("");
        for comp in path.rsplit('/') {
            let comp = comp.trim_end_matches(".scope");
            let id = comp.rsplit(['-', ':']).next().unwrap_or(comp);
            if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(id.to_string());
            }
        }
    }
    None
}

/// Every network namespace: the distinct inodes of /proc/*/ns/net plus the
/// names pinned in /run/netns. The init namespace (that of pid 1) first.
pub fn discover() -> Vec<Found> {
    survey().found
}

/// What [`survey`] saw, and what it could not.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    pub found: Vec<Found>,
    /// Namespaces known to exist but not identified: processes whose
    /// /proc/PID/ns/net could not be read (EACCES/EPERM: other users'
    /// processes without root, or root refused) and that live in none of
    /// the namespaces found. One entry per such namespace.
    pub hidden: Vec<Hidden>,
}

/// A namespace seen only through processes whose link could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    /// Its processes (pid order).
    pub processes: Vec<super::fact::ProcessRef>,
    /// Why their namespace link could not be read.
    pub why: Unavailable,
}

/// The inode of /proc/PID/net/dev: one proc entry per network namespace,
/// so two processes show the same inode exactly when they share their
/// namespace — and, unlike /proc/PID/ns/net, reading it is no ptrace
/// access (root refused, or another user's process, still answers).
fn net_dev_inode(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/net/dev"))
        .ok()
        .map(|m| m.ino())
}

fn process_ref(pid: u32) -> super::fact::ProcessRef {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let container = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|c| container_id(&c));
    super::fact::ProcessRef {
        pid,
        comm,
        container,
    }
}

/// [`discover`], also accounting for the processes whose namespace link
/// could not be read: each joins the namespace found that it shares (by
/// [`net_dev_inode`]), or is reported in [`Survey::hidden`], so "every
/// namespace" is never claimed of a partial view.
pub fn survey() -> Survey {
    use std::collections::BTreeMap;
    let init = init_inode();
    let mut unreadable: Vec<(u32, Unavailable)> = Vec::new();
    let mut by_inode: BTreeMap<u64, Found> = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        let mut pids: Vec<u32> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        for pid in pids {
            let link = format!("/proc/{pid}/ns/net");
            let ino = match std::fs::read_link(&link) {
                Ok(l) => parse_ns_link(&l.to_string_lossy()),
                Err(e) => {
                    let u = Unavailable::from_io(&link, &e);
                    // A process that exited meanwhile is not hiding anything.
                    if u.is_permission() {
                        unreadable.push((pid, u));
                    }
                    continue;
                }
            };
            let Some(ino) = ino else {
                continue;
            };
            let e = by_inode.entry(ino).or_insert_with(|| Found {
                inode: ino,
                name: None,
                target: Target::Pid(pid),
                processes: Vec::new(),
                is_init: is_init(ino, init),
            });
            e.processes.push(process_ref(pid));
        }
    }
    for Pinned {
        name, inode: ino, ..
    } in pinned()
    {
        let e = by_inode.entry(ino).or_insert_with(|| Found {
            inode: ino,
            name: None,
            target: Target::Named(name.clone()),
            processes: Vec::new(),
            is_init: is_init(ino, init),
        });
        if e.name.is_none() {
            e.name = Some(name.clone());
            e.target = Target::Named(name);
        }
    }
    // Which found namespace each /proc/PID/net/dev inode belongs to.
    let known: BTreeMap<u64, u64> = by_inode
        .values()
        .filter_map(|f| {
            let pid = f.processes.first()?.pid;
            Some((net_dev_inode(pid)?, f.inode))
        })
        .collect();
    let mut hidden: BTreeMap<Option<u64>, Hidden> = BTreeMap::new();
    for (pid, why) in unreadable {
        let dev = net_dev_inode(pid);
        match dev.and_then(|d| known.get(&d)) {
            Some(ino) => {
                if let Some(f) = by_inode.get_mut(ino) {
                    f.processes.push(process_ref(pid));
                }
            }
            None => hidden
                .entry(dev)
                .or_insert_with(|| Hidden {
                    processes: Vec::new(),
                    why,
                })
                .processes
                .push(process_ref(pid)),
        }
    }
    let mut v: Vec<Found> = by_inode.into_values().collect();
    for f in &mut v {
        f.processes.sort_by_key(|p| p.pid);
    }
    v.sort_by_key(|f| (!f.is_init, f.name.is_none(), f.inode));
    Survey {
        found: v,
        hidden: hidden.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_cgroup_paths() {
        let id = "a".repeat(64);
        assert_eq!(
            container_id(&format!("0::/system.slice/docker-{id}.scope\n")),
            Some(id.clone())
        );
        assert_eq!(
            container_id(&format!("0::/kubepods/besteffort/pod1/{id}\n")),
            Some(id.clone())
        );
        assert_eq!(
            container_id(&format!("0::/kubepods.slice/cri-containerd:{id}\n")),
            Some(id)
        );
        assert_eq!(container_id("0::/user.slice/session-1.scope\n"), None);
    }
}
