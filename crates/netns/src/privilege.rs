//! Why the kernel said EPERM/EACCES: "needs root" when we are not root;
//! when we are (euid 0), what else blocks root — a user namespace, dropped
//! capabilities, or a security module / seccomp / hidepid — so a message
//! never tells root to run as root. Read once per process.
//!
//! Not for: deciding whether an errno is a privilege error (the callers do).

use std::sync::OnceLock;

/// Every capability by bit (linux/capability.h), for naming the missing.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// What blocks root, from the process's euid, the first line of
/// /proc/self/uid_map, the CapEff hex of /proc/self/status and the
/// kernel's last capability (/proc/sys/kernel/cap_last_cap); None when not
/// root (then the answer is simply "needs root"). Missing capabilities are
/// named: besides the obvious (CAP_SYS_ADMIN for setns, CAP_SYSLOG for the
/// log), a process holding one this process lacks is off limits to it
/// (ptrace's capability-subset rule: /proc/PID/ns, /proc/PID/fd).
pub fn refusal(
    euid: u32,
    uid_map: Option<&str>,
    cap_eff: Option<u64>,
    cap_last: Option<u32>,
) -> Option<String> {
    if euid != 0 {
        return None;
    }
    if let Some(map) = uid_map {
        let f: Vec<&str> = map.split_whitespace().collect();
        if f.len() == 3 && f != ["0", "0", "4294967295"] {
            return Some(format!(
                "root only in a user namespace (uid_map {})",
                f.join(" ")
            ));
        }
    }
    if let Some(eff) = cap_eff {
        let last = cap_last.unwrap_or(CAPS.len() as u32 - 1).min(63);
        let missing: Vec<String> = (0..=last)
            .filter(|bit| eff & (1u64 << bit) == 0)
            .map(|bit| {
                CAPS.get(bit as usize)
                    .map_or_else(|| format!("capability {bit}"), |n| n.to_string())
            })
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "{} not in the effective capability set",
                missing.join(", ")
            ));
        }
    }
    Some("a security module (AppArmor, SELinux), seccomp or /proc's hidepid= blocks root".into())
}

/// [`refusal`] for this process (read once).
pub fn refusal_here() -> Option<String> {
    static HINT: OnceLock<Option<String>> = OnceLock::new();
    HINT.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let map = std::fs::read_to_string("/proc/self/uid_map").ok();
        let eff = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            });
        let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        refusal(
            euid,
            map.as_deref().and_then(|m| m.lines().next()),
            eff,
            last,
        )
    })
    .clone()
}

/// The note after a privilege error: " (needs root)", or as root
/// " (refused to root: WHY)".
pub fn note() -> String {
    match refusal_here() {
        None => " (needs root)".into(),
        Some(why) => format!(" (refused to root: {why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_root_is_plain_needs_root() {
        assert_eq!(
            refusal(1000, Some("0 0 4294967295"), Some(0), Some(40)),
            None
        );
    }

    #[test]
    fn root_is_never_told_to_run_as_root() {
        let all = (1u64 << 41) - 1;
        let full = Some("0 0 4294967295");
        let userns = refusal(0, Some("0 1000 1"), Some(all), Some(40)).unwrap();
        assert!(
            userns.contains("a user namespace (uid_map 0 1000 1)"),
            "{userns}"
        );
        let dropped = refusal(0, full, Some(all & !(1 << 21) & !(1 << 24)), Some(40)).unwrap();
        assert_eq!(
            dropped,
            "CAP_SYS_ADMIN, CAP_SYS_RESOURCE not in the effective capability set"
        );
        let lsm = refusal(0, full, Some(all), Some(40)).unwrap();
        assert!(lsm.contains("security module"), "{lsm}");
        // A kernel newer than the table: the capability named by its bit.
        let newer = refusal(0, full, Some(all), Some(41)).unwrap();
        assert!(newer.contains("capability 41"), "{newer}");
        for m in [userns, dropped, lsm] {
            assert!(
                !m.contains("run as root") && !m.contains("needs root"),
                "{m}"
            );
        }
    }
}
