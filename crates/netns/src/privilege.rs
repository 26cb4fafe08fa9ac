//! Why the kernel said EPERM/EACCES: "needs root" when we are not root;
//! when we are (euid 0), what else blocks root — a user namespace, dropped
//! capabilities, or a security module / seccomp / hidepid — so a message
//! never tells root to run as root. Read once per process.
//!
//! Not for: deciding whether an errno is a privilege error (the callers do).

use std::sync::OnceLock;

/// Capabilities ctdoctor's reads and namespace changes rely on (bit, name).
const CAPS: &[(u32, &str)] = &[
    (1, "CAP_DAC_OVERRIDE"),
    (2, "CAP_DAC_READ_SEARCH"),
    (12, "CAP_NET_ADMIN"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
    (34, "CAP_SYSLOG"),
];

/// What blocks root, from the process's euid, the first line of
/// /proc/self/uid_map and the CapEff hex of /proc/self/status; None when
/// not root (then the answer is simply "needs root").
pub fn refusal(euid: u32, uid_map: Option<&str>, cap_eff: Option<u64>) -> Option<String> {
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
        let missing: Vec<&str> = CAPS
            .iter()
            .filter(|(bit, _)| eff & (1u64 << bit) == 0)
            .map(|(_, n)| *n)
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
        refusal(euid, map.as_deref().and_then(|m| m.lines().next()), eff)
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
        assert_eq!(refusal(1000, Some("0 0 4294967295"), Some(0)), None);
    }

    #[test]
    fn root_is_never_told_to_run_as_root() {
        let all = CAPS.iter().fold(0u64, |a, (b, _)| a | 1 << b);
        let userns = refusal(0, Some("0 1000 1"), Some(all)).unwrap();
        assert!(
            userns.contains("a user namespace (uid_map 0 1000 1)"),
            "{userns}"
        );
        let dropped = refusal(0, Some("0 0 4294967295"), Some(all & !(1 << 21))).unwrap();
        assert!(
            dropped.contains("CAP_SYS_ADMIN not in the effective"),
            "{dropped}"
        );
        let lsm = refusal(0, Some("0 0 4294967295"), Some(all)).unwrap();
        assert!(lsm.contains("security module"), "{lsm}");
        for m in [userns, dropped, lsm] {
            assert!(
                !m.contains("run as root") && !m.contains("needs root"),
                "{m}"
            );
        }
    }
}
