//! Persistence and consumers: will the conntrack settings survive a reboot
//! (`conntrack.not_persistent`), and who needs conntrack on this host
//! (`conntrack.consumers`). Documented in docs/checks.md, "Persistence and
//! consumers".
//!
//! Not for: sizing judgements (checks/conntrack.rs) or writing config.

use super::{Finding, Severity};
use crate::advice::change::{self, Change};
use crate::advice::size::{DefaultSource, KernelDefault};
use crate::advice::sizing::round_buckets;
use crate::advice::{owners, suggest};
use crate::host::consumers::summarize;
use crate::kernel;
use crate::snapshot::{dotted, is_global, ModuleState, RulesetUse, Setting, SysctlKey};
use crate::snapshot::{Consumers, Facts, Persist, Snapshot, System};
use serde_json::json;
use std::collections::BTreeMap;

pub const NOT_PERSISTENT: &str = "conntrack.not_persistent";
pub const CONSUMERS: &str = "conntrack.consumers";

pub fn run(snap: &Snapshot) -> Vec<Finding> {
    vec![not_persistent(&snap.now), consumers(&snap.now)]
}

/// One key whose runtime value is not what boot gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub path: String,
    pub runtime: String,
    pub boot: String,
    /// Where the boot value comes from.
    pub source: String,
    /// The winning file assignment, if a file sets it.
    pub setting: Option<Setting>,
}

/// The built-in value of a key (what a fresh netns, or a boot without
/// config files, gets), and where that comes from.
fn builtin_default(
    path: &str,
    p: &Persist,
    sys: Option<&System>,
    d: Option<&KernelDefault>,
) -> Option<(String, String)> {
    let name = path.strip_prefix("net/netfilter/")?;
    // The kernel's own boot line when the log has it (distribution
    // kernels backport their own sizes), else the mainline rule.
    let sizing = || {
        let d = d?;
        let src = match d.source {
            DefaultSource::BootLog => {
                "the kernel's boot line \"nf_conntrack version 0.5.0 (…)\"".to_string()
            }
            DefaultSource::BootHashsize(n) => format!("hashsize {n} set for boot (8 × buckets)"),
            DefaultSource::MainlineRule(_) => {
                let s = sys?;
                let mem = *s.mem_total_bytes.as_ref().ok()?;
                format!(
                    "kernel default for {} with {} MiB RAM",
                    s.kernel_release,
                    mem >> 20
                )
            }
        };
        Some((d.sizing, src))
    };
    match name {
        "nf_conntrack_max" => match p.boot_hashsize() {
            // The kernel rounds the table up to whole pages of heads,
            // then sets max = 8 × the rounded size.
            Some((n, s)) => Some((
                round_buckets(n)
                    .saturating_mul(kernel::GIVEN_HASHSIZE_FACTOR)
                    .to_string(),
                format!("8 × hashsize {n} from {}", s.place()),
            )),
            None => sizing().map(|(z, src)| (z.max.to_string(), src)),
        },
        "nf_conntrack_buckets" => match p.boot_hashsize() {
            Some((n, s)) => Some((
                round_buckets(n).to_string(),
                format!("hashsize {n} from {}", s.place()),
            )),
            None => sizing().map(|(z, src)| (z.buckets.to_string(), src)),
        },
        _ => {
            if let Some(t) = name
                .strip_prefix("nf_conntrack_")
                .and_then(kernel::default_timeout)
            {
                return Some((t.to_string(), "kernel default".into()));
            }
            crate::kernel::OTHER_DEFAULTS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (v.to_string(), "kernel default".into()))
        }
    }
}

/// What this key should be now if nothing was changed since boot (or since
/// the namespace was created), and where that comes from.
fn expected(
    k: &SysctlKey,
    p: &Persist,
    sys: Option<&System>,
    d: Option<&KernelDefault>,
    child: bool,
) -> Option<(String, String, Option<Setting>)> {
    let global = is_global(&k.path);
    if !child || global {
        if let Some(b) = &k.boot {
            let value = if k.path == "net/netfilter/nf_conntrack_buckets" {
                // Writing buckets rounds up to whole pages of heads.
                b.value
                    .parse::<u64>()
                    .map(|n| round_buckets(n).to_string())
                    .unwrap_or_else(|_| b.value.clone())
            } else {
                b.value.clone()
            };
            let glob = if b.glob { " (glob)" } else { "" };
            return Some((value, format!("{}{glob}", b.place()), Some(b.clone())));
        }
    }
    let (v, src) = builtin_default(&k.path, p, sys, d)?;
    let src = if child && !global {
        format!("{src}; a new netns starts from it")
    } else {
        format!("{src}; no config file sets it")
    };
    Some((v, src, None))
}

/// Every key of interest whose runtime value differs from its expected
/// value; and how many keys were compared.
pub fn differences(
    p: &Persist,
    sys: Option<&System>,
    d: Option<&KernelDefault>,
    child: bool,
) -> (Vec<Diff>, usize) {
    let mut diffs = Vec::new();
    let mut compared = 0;
    for k in &p.sysctls {
        let Ok(runtime) = &k.runtime else { continue };
        // A child netns owns only its per-netns keys: the machine-wide ones
        // (max, buckets, …) are the host's report.
        if child && is_global(&k.path) {
            continue;
        }
        let Some((boot, source, setting)) = expected(k, p, sys, d, child) else {
            continue;
        };
        compared += 1;
        let systemd_agrees = (!child || is_global(&k.path))
            && k.boot_systemd
                .as_ref()
                .is_some_and(|s| crate::knobs::same(runtime, &s.value));
        if !crate::knobs::same(runtime, &boot) && !systemd_agrees {
            diffs.push(Diff {
                path: k.path.clone(),
                runtime: runtime.clone(),
                boot,
                source,
                setting,
            });
        }
    }
    (diffs, compared)
}

/// The early-boot trap: nf_conntrack is a module not loaded by
/// modules-load.d, yet sysctl.d sets net.netfilter keys (systemd-sysctl
/// runs before the module exists and skips them).
pub fn early_boot_trap(p: &Persist) -> Option<Vec<&Setting>> {
    if !matches!(p.module, Ok(ModuleState::Module { .. })) || !p.modules_load.is_empty() {
        return None;
    }
    let set: Vec<&Setting> = p
        .sysctls
        .iter()
        .filter(|k| k.path.starts_with("net/netfilter/"))
        .filter_map(|k| k.boot.as_ref())
        .filter(|s| s.file != "proc/cmdline")
        .collect();
    (!set.is_empty()).then_some(set)
}

/// How nf_conntrack is in the kernel, for the evidence.
fn module_label(p: &Persist) -> String {
    match &p.module {
        Ok(ModuleState::BuiltIn { how }) => format!("built in ({how})"),
        Ok(ModuleState::Module { loaded, how }) => {
            format!(
                "module, {} ({how})",
                if *loaded { "loaded" } else { "not loaded" }
            )
        }
        Err(u) => format!("unknown: {u}"),
    }
}

fn not_persistent_why(child: bool) -> String {
    if child {
        "This is not the host's (init) network namespace: a new netns never gets sysctl.d \
         values, it starts from the kernel's built-in defaults (only global knobs such as \
         nf_conntrack_max and the bucket count are shared with the host). Runtime values here \
         are compared with those defaults. Values written at runtime in a namespace live as \
         long as it: when it is recreated (container restart, reboot) it starts again from the \
         defaults, and the outage the change fixed comes back."
            .into()
    } else {
        "Values written at runtime (sysctl -w, echo > /proc/sys) are lost at the next reboot: \
         the table shrinks back to its default size or timeouts return to their defaults, and \
         the outage the change fixed comes back after a kernel update or a crash."
            .into()
    }
}

/// The verdict on the comparison: severity and title.
fn not_persistent_verdict(
    diffs: usize,
    compared: usize,
    trap: bool,
    child: bool,
) -> (Severity, String) {
    if compared == 0 && !trap {
        return (
            Severity::Info,
            "not checked: no runtime value could be compared (is nf_conntrack loaded, /proc/sys readable?)"
                .into(),
        );
    }
    if diffs == 0 && !trap {
        return if child {
            (
                Severity::Info,
                format!(
                    "child netns: runtime values match the built-in defaults ({compared} keys compared)"
                ),
            )
        } else {
            (
                Severity::Ok,
                format!("runtime values match what boot sets ({compared} keys compared)"),
            )
        };
    }
    let title = match (diffs, trap) {
        (0, _) => {
            "sysctl.d sets net.netfilter keys but nf_conntrack loads after they are applied"
                .to_string()
        }
        (n, _) if child => format!(
            "{n} setting(s) in this netns differ from the built-in defaults and are lost when it is recreated"
        ),
        (n, false) => format!("{n} setting(s) differ from what boot sets: lost at reboot"),
        (n, true) => format!(
            "{n} setting(s) differ from what boot sets, and sysctl.d's net.netfilter keys are skipped at boot"
        ),
    };
    (Severity::Warning, title)
}

pub fn not_persistent(f: &Facts) -> Finding {
    let p = match &f.persist {
        Ok(p) => p,
        Err(u) => return Finding::unavailable(NOT_PERSISTENT, u),
    };
    let sys = f.system.as_ref().ok();
    let child = f.netns.as_ref().is_ok_and(|n| !n.is_init);
    let d = crate::advice::size::kernel_default(f);
    let (diffs, compared) = differences(p, sys, d.as_ref(), child);
    let trap = if child { None } else { early_boot_trap(p) };
    let module = module_label(p);
    let why = not_persistent_why(child);
    let (sev, title) = not_persistent_verdict(diffs.len(), compared, trap.is_some(), child);
    let mut finding = Finding::new(NOT_PERSISTENT, sev, title);

    finding = finding
        .with("compared", compared as u64)
        .with("netns", if child { "child" } else { "init" })
        .with("nf_conntrack", module)
        .with(
            "sysctl_files",
            p.sysctl_files
                .iter()
                .map(|s| format!("/{s}"))
                .collect::<Vec<_>>(),
        );
    if let Some((n, s)) = p.boot_hashsize() {
        finding = finding.with("boot_hashsize", format!("{n} ({})", s.place()));
    }
    if compared == 0 && trap.is_none() {
        finding = finding.with(
            "unavailable",
            "no runtime value could be compared (is nf_conntrack loaded, /proc/sys readable?)",
        );
    }
    if !diffs.is_empty() {
        let list: Vec<serde_json::Value> = diffs
            .iter()
            .map(|d| {
                json!({"key": dotted(&d.path), "runtime": d.runtime, "boot": d.boot, "source": d.source})
            })
            .collect();
        finding = finding.with("differences", list);
        let sd: Vec<String> = p
            .sysctls
            .iter()
            .filter(|k| diffs.iter().any(|d| d.path == k.path))
            .filter_map(|k| {
                k.boot_systemd.as_ref().map(|s| {
                    format!(
                        "{}: systemd-sysctl (which does not read /etc/sysctl.conf) sets {} from {}",
                        k.dotted(),
                        s.value,
                        s.place()
                    )
                })
            })
            .collect();
        if !sd.is_empty() {
            finding = finding.with("systemd_sysctl", sd);
        }
    }
    if let Some(set) = &trap {
        finding = finding.with(
            "early_boot_trap",
            format!(
                "nf_conntrack is a module and no modules-load.d entry loads it, but {} \
sysctl.d assignment(s) set net.netfilter keys (e.g. {}): systemd-sysctl applies sysctl.d early at boot, before the \
module is loaded, and silently skips keys that do not exist yet",
                set.len(),
                set[0].place()
            ),
        );
    }

    // Kubernetes: kube-proxy re-applies its own values at every start.
    if !diffs.is_empty()
        && !child
        && !p.kube_proxy.is_empty()
        && diffs
            .iter()
            .all(|d| crate::knobs::KUBE_PROXY_KEYS.contains(&d.path.as_str()))
        && trap.is_none()
    {
        finding.severity = Severity::Info;
        finding = finding.with(
            "kube_proxy",
            format!(
                "kube-proxy runs here (pid {}) and only keys it sets at every start differ: its \
configuration (conntrack.maxPerCore, tcpEstablishedTimeout, tcpCloseWaitTimeout) is what \
persists them",
                p.kube_proxy[0]
            ),
        );
    }

    finding = finding.why(why);
    if diffs.is_empty() && trap.is_none() {
        return finding;
    }
    let (changes, notes) = fix(p, &diffs, trap.is_some(), child, f);
    notes
        .into_iter()
        .fold(finding.changes(changes), Finding::note)
}

/// The changes that keep today's runtime values at the next boot (or, in a
/// child netns, where the namespace is made), and notes.
fn fix(
    p: &Persist,
    diffs: &[Diff],
    trap: bool,
    child: bool,
    f: &Facts,
) -> (Vec<Change>, Vec<String>) {
    const BUCKETS: &str = "net/netfilter/nf_conntrack_buckets";
    let ns = suggest::netns_label(f);
    if child {
        return child_fix(diffs, ns.as_deref());
    }
    let mut changes: Vec<Change> = diffs
        .iter()
        .filter(|d| d.path != BUCKETS)
        .map(|d| Change::knob(&dotted(&d.path), &d.runtime, ns.as_deref()))
        .collect();
    let mut notes = Vec::new();
    if let Some(d) = diffs.iter().find(|d| d.path == BUCKETS) {
        let Ok(n) = d.runtime.parse::<u64>() else {
            return (changes, notes);
        };
        changes.push(match &p.module {
            Ok(ModuleState::BuiltIn { .. }) => Change::cmdline_hashsize(n),
            _ => Change::module_hashsize(n),
        });
        // A boot hashsize makes the default max 8 × hashsize: pin max.
        let max_path = "net/netfilter/nf_conntrack_max";
        if !diffs.iter().any(|d| d.path == max_path) {
            if let Some(Ok(m)) = p
                .sysctls
                .iter()
                .find(|k| k.path == max_path)
                .map(|k| &k.runtime)
            {
                changes.push(Change::knob(&dotted(max_path), m, None));
            }
        }
        if p.module.is_err() {
            notes.push(format!(
                "whether nf_conntrack is a module is unknown: for a built-in one use nf_conntrack.hashsize={n} on the kernel command line instead"
            ));
        }
    }
    if trap {
        changes.push(Change::load_module_early());
    }
    if !changes.is_empty() {
        notes.push("(or go back to the boot values now: sysctl --system)".into());
    }
    (changes, notes)
}

/// Where a child netns's values are kept: one file per namespace name.
pub const NETNS_DIR: &str = "/etc/ctdoctor/netns";

/// A child netns never reads /etc/sysctl.d, and its values are already set:
/// the fix writes them to a file of their own and loads it the way the
/// place that makes the namespace must (`ip netns exec NS sysctl -p FILE`),
/// which also proves the file now. Where that line goes is a person's
/// decision: said in a note.
fn child_fix(diffs: &[Diff], ns: Option<&str>) -> (Vec<Change>, Vec<String>) {
    let lines: Vec<String> = diffs
        .iter()
        .map(|d| change::sh_quote(&format!("{} = {}", dotted(&d.path), d.runtime)))
        .collect();
    let Some(name) = ns.filter(|n| !n.starts_with("inode ") && !n.starts_with("pid ")) else {
        return (
            Vec::new(),
            vec![format!(
                "set these where the namespace is made (its script, unit or container runtime: \
                 docker run --sysctl KEY=VALUE; Kubernetes: securityContext.sysctls): {}",
                diffs
                    .iter()
                    .map(|d| format!("{}={}", dotted(&d.path), d.runtime))
                    .collect::<Vec<_>>()
                    .join(" ")
            )],
        );
    };
    let file = format!("{NETNS_DIR}/{}.conf", name.replace('/', "_"));
    let changes = vec![
        Change::command(
            "netns sysctl file",
            &format!(
                "mkdir -p {NETNS_DIR} && printf '%s\\n' {} > {}",
                lines.join(" "),
                change::sh_quote(&file)
            ),
        ),
        Change::command(
            "netns sysctl load",
            &format!(
                "{}sysctl -p {}",
                change::netns_prefix(Some(name)),
                change::sh_quote(&file)
            ),
        ),
    ];
    let notes = vec![format!(
        "a child netns never reads /etc/sysctl.d: put the last line where netns {name} is \
         made (its script or unit, after `ip netns add {name}`), so a recreated namespace \
         gets these values again"
    )];
    (changes, notes)
}

/// Modules that hold nf_conntrack only to match on state (no NAT, no
/// datapath of their own).
const PLAIN_STATE_MODULES: &[&str] = &[
    "xt_conntrack",
    "xt_state",
    "nft_ct",
    "nf_conntrack_netlink",
    "nf_conntrack_ipv4",
    "nf_conntrack_ipv6",
    "xt_CT",
    "nft_reject_inet",
];

pub fn consumers(f: &Facts) -> Finding {
    let c = match &f.consumers {
        Ok(c) => c,
        Err(u) => return Finding::unavailable(CONSUMERS, u),
    };
    let (total, per_source, mut unreadable) = ruleset_uses(c);
    let named = owners::identify(c);
    let modules: Vec<String> = c.modules.as_ref().cloned().unwrap_or_default();
    let ifaces = c.interfaces.as_ref().cloned().unwrap_or_default();
    if let Err(u) = &c.modules {
        unreadable.push(format!("modules: {u}"));
    }
    if let Err(u) = &c.interfaces {
        unreadable.push(format!("interfaces: {u}"));
    }
    let parts = users(&total, &named, &modules, &ifaces);
    let unread = c.rulesets_unread();
    let title = consumers_title(&parts, unread.is_some());

    let mut finding = Finding::new(CONSUMERS, Severity::Info, title)
        .with("rules_scanned", total.rules)
        .with(
            "uses",
            serde_json::to_value(&total.uses).unwrap_or_default(),
        )
        .with(
            "by_source",
            serde_json::to_value(&per_source).unwrap_or_default(),
        )
        .with("modules", modules.clone())
        .with(
            "interfaces",
            serde_json::to_value(&ifaces).unwrap_or_default(),
        );
    if !named.is_empty() {
        finding = finding.with(
            "consumers",
            serde_json::to_value(&named).unwrap_or_default(),
        );
    }
    for n in &named {
        finding = finding.note(n.note());
    }
    if !total.examples.is_empty() {
        finding = finding.with("examples", total.examples.clone());
    }
    if let Some(lo) = c.lo_rx_packets {
        finding = finding.with("lo_rx_packets", lo);
    }
    if !unreadable.is_empty() {
        finding = finding.with("not_read", unreadable);
    }
    // Without a ruleset the rule cannot say who uses conntrack: not checked.
    if let Some(why) = unread {
        finding = finding.with("unavailable", why);
    }
    let plain_only = nat_counts(&total).is_empty()
        && total.count("ct_zone") == 0
        && ifaces.is_empty()
        && state_rules(&total) > 0
        && modules
            .iter()
            .all(|m| PLAIN_STATE_MODULES.contains(&m.as_str()));
    consumers_why(finding, f, c, &total, plain_only)
}

/// The title: who uses conntrack (`parts`), or that nothing visible
/// does; `unread`: no ruleset could be read.
fn consumers_title(parts: &[String], unread: bool) -> String {
    match (parts.is_empty(), unread) {
        (true, true) => "who uses conntrack: unknown (no ruleset could be read)".to_string(),
        (true, false) => {
            "nothing visible here uses conntrack (no state, NAT or NOTRACK rules, no holders)"
                .to_string()
        }
        (false, true) => format!(
            "conntrack is used by: {} (no ruleset could be read)",
            parts.join("; ")
        ),
        (false, false) => format!("conntrack is used by: {}", parts.join("; ")),
    }
}

/// What the readable rulesets use, in total and per source, and which
/// rulesets could not be read. Each rule once: iptables-nft's chains are
/// nf_tables chains that `nft` lists too; they are counted from
/// iptables-nft-save only.
fn ruleset_uses(
    c: &Consumers,
) -> (
    RulesetUse,
    BTreeMap<&'static str, BTreeMap<String, u64>>,
    Vec<String>,
) {
    let mut total = RulesetUse::default();
    let mut unreadable = Vec::new();
    let mut per_source = BTreeMap::new();
    for (backend, rs) in c.effective() {
        let u = summarize(&rs);
        per_source.insert(backend.as_str(), u.uses.clone());
        total.add(&u);
    }
    for (name, src) in [
        ("nft", c.nft.as_ref().err()),
        ("iptables_nft", c.iptables_nft.as_ref().err()),
        ("iptables_legacy", c.iptables_legacy.as_ref().err()),
    ] {
        if let Some(u) = src {
            unreadable.push(format!("{name}: {u}"));
        }
    }
    (total, per_source, unreadable)
}

/// `kind count` of each NAT kind the rules use.
fn nat_counts(total: &RulesetUse) -> Vec<String> {
    ["masquerade", "snat", "dnat", "redirect"]
        .iter()
        .filter(|k| total.count(k) > 0)
        .map(|k| format!("{k} {}", total.count(k)))
        .collect()
}

/// Rules that match on conntrack state or status.
fn state_rules(total: &RulesetUse) -> u64 {
    total.count("ct_state") + total.count("ct_status")
}

/// Who uses conntrack, for the title: owners, NAT, stateful rules, zones,
/// modules, container networking.
fn users(
    total: &RulesetUse,
    named: &[owners::Seen],
    modules: &[String],
    ifaces: &[crate::host::consumers::IfaceGroup],
) -> Vec<String> {
    let mut parts = Vec::new();
    if !named.is_empty() {
        let ids: Vec<&str> = named.iter().map(|n| n.owner.id).collect();
        parts.push(ids.join(", "));
    }
    let nat = nat_counts(total);
    if !nat.is_empty() {
        parts.push(format!("NAT ({})", nat.join(", ")));
    }
    let state = state_rules(total);
    if state > 0 {
        parts.push(format!("stateful rules ({state})"));
    }
    if total.count("ct_zone") > 0 {
        parts.push(format!("ct zones ({})", total.count("ct_zone")));
    }
    if !modules.is_empty() {
        parts.push(format!("modules {}", modules.join(", ")));
    }
    if !ifaces.is_empty() {
        let g: Vec<String> = ifaces
            .iter()
            .map(|g| format!("{} {}", g.kind, g.count))
            .collect();
        parts.push(format!("container networking ({})", g.join(", ")));
    }
    parts
}

/// The why, and when conntrack only serves plain stateful filtering
/// (`plain_only`), the NOTRACK candidate and the commands that print it.
fn consumers_why(
    mut finding: Finding,
    f: &Facts,
    c: &Consumers,
    total: &RulesetUse,
    plain_only: bool,
) -> Finding {
    let mut why = String::from(
        "Every tracked flow costs a table entry. NAT, masquerading, container networking and \
stateful rules need conntrack; traffic that none of them touches can be exempted from tracking \
with NOTRACK rules, which shrinks the table instead of growing it.",
    );
    if plain_only {
        let notrack = total.count("notrack");
        why.push_str(&format!(
            " Here conntrack only serves plain stateful filtering (no NAT, no containers){}: traffic \
that needs no state — loopback ({} packets received on lo so far) and connections to fixed \
upstreams/backends — is a NOTRACK candidate.",
            if notrack > 0 {
                format!(", and {notrack} NOTRACK rule(s) already exist")
            } else {
                String::new()
            },
            c.lo_rx_packets
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into())
        ));
        finding = finding.with("notrack_candidate", true).note(
            "Exempt the traffic that needs no state from tracking (each line prints the rules and \
what in this ruleset they would break; add --apply to load them):",
        );
        finding = finding.note(crate::advice::notrack::note_line("--lo", f));
        let ports: Vec<String> = crate::advice::notrack::server_ports(f)
            .iter()
            .map(u16::to_string)
            .collect();
        if !ports.is_empty() {
            finding = finding.note(crate::advice::notrack::note_line(
                &format!("--lo --port {}", ports.join(",")),
                f,
            ));
        }
    }
    finding.why(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_text_compare() {
        assert!(crate::knobs::same("1024 65000", "1024\t65000"));
        assert!(crate::knobs::same("0120", "120"));
        assert!(!crate::knobs::same("30", "120"));
        assert_eq!(round_buckets(100_000), 100_352);
        assert_eq!(round_buckets(65_536), 65_536);
    }
}
