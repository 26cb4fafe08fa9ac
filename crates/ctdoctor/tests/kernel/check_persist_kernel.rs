//! Kernel tests for the persist/consumers readers and checks, each in a
//! fresh netns (testns). Oracles: the rules we load and `nft list ruleset`
//! / `iptables-nft-save` run by `ip netns exec`; the kernel's own files
//! (/proc/modules, /proc/config.gz, /sys/module); a second fresh netns for
//! the built-in default of a per-netns timeout.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use ctdoctor::checks::{persist as checks, render_one, Severity};
use ctdoctor::host::consumers::summarize;
use ctdoctor::host::{self, netns::Target, persist::ModuleState};
use std::path::Path;
use testns::{kernel_test, lock_shared, Netns};

fn collect(ns: &Netns) -> ctdoctor::snapshot::Snapshot {
    host::collect_live(Path::new("/"), &Target::Named(ns.name.clone()), None, false)
        .expect("collect_live in the test netns")
        .0
}

/// Lines of `text` containing `needle` (the oracle's own count).
fn lines_with(text: &str, needle: &str) -> u64 {
    text.lines().filter(|l| l.contains(needle)).count() as u64
}

#[test]
fn consumers_sees_ct_state_and_masquerade_in_the_netns() {
    if !kernel_test("consumers_sees_ct_state_and_masquerade_in_the_netns") {
        return;
    }
    let _lock = lock_shared();
    let ns = Netns::new("consumers");
    // testns loads two `ct state` rules; add one masquerade rule.
    ns.nft(
        "table ip ctdtnat {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  \
         oifname \"lo\" masquerade\n }\n}\n",
    );
    let oracle = ns.exec_text("nft", &["list", "ruleset"]);
    assert_eq!(lines_with(&oracle, "ct state"), 2, "{oracle}");
    assert_eq!(lines_with(&oracle, "masquerade"), 1, "{oracle}");

    let snap = collect(&ns);
    let c = snap.now.consumers.as_ref().expect("consumers read");
    let nft = summarize(c.nft.as_ref().expect("nft ruleset read in the netns"));
    assert_eq!(nft.count("ct_state"), lines_with(&oracle, "ct state"));
    assert_eq!(nft.count("masquerade"), lines_with(&oracle, "masquerade"));
    assert_eq!(nft.count("snat") + nft.count("dnat"), 0);

    let f = render_one(checks::consumers(&snap.now), &snap.now);
    assert_eq!(f.severity, Severity::Info);
    assert!(f.title.contains("NAT (masquerade 1)"), "{}", f.title);
    assert!(f.title.contains("stateful rules (2)"), "{}", f.title);
    // NAT is in use: not a NOTRACK candidate.
    assert!(!f.evidence.contains_key("notrack_candidate"));
}

#[test]
fn iptables_nft_rules_are_read_and_counted_once() {
    if !kernel_test("iptables_nft_rules_are_read_and_counted_once")
        || !testns::need_tool("iptables-nft")
    {
        return;
    }
    let _lock = lock_shared();
    let ns = Netns::new("iptnft");
    ns.exec(
        "iptables-nft",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "lo",
            "-j",
            "MASQUERADE",
        ],
    );
    ns.exec(
        "iptables-nft",
        &[
            "-A",
            "INPUT",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    );
    let oracle = ns.exec_text("iptables-nft-save", &[]);
    assert_eq!(lines_with(&oracle, "-j MASQUERADE"), 1, "{oracle}");
    assert_eq!(lines_with(&oracle, "--ctstate"), 1, "{oracle}");

    let snap = collect(&ns);
    let c = snap.now.consumers.as_ref().unwrap();
    let ipt = summarize(c.iptables_nft.as_ref().expect("iptables-nft-save read"));
    assert_eq!(ipt.count("masquerade"), 1);
    assert_eq!(ipt.count("ct_state"), 1);
    // nft shows the same rules (plus testns's two ct state rules).
    let nft = summarize(c.nft.as_ref().unwrap());
    assert_eq!(nft.count("masquerade"), 1);
    assert_eq!(nft.count("ct_state"), 3);
    let f = render_one(checks::consumers(&snap.now), &snap.now);
    // Merged, not added: masquerade 1, ct state 3.
    assert!(f.title.contains("NAT (masquerade 1)"), "{}", f.title);
    assert!(f.title.contains("stateful rules (3)"), "{}", f.title);
}

#[test]
fn proc_modules_and_builtin_conntrack() {
    if !kernel_test("proc_modules_and_builtin_conntrack") {
        return;
    }
    let _lock = lock_shared();
    let ns = Netns::new("modules");
    let snap = collect(&ns);
    let p = snap.now.persist.as_ref().expect("persist read");
    let c = snap.now.consumers.as_ref().unwrap();
    match std::fs::read_to_string("/proc/modules") {
        Ok(text) => {
            // Oracle: lsmod's table (Module Size Used-by-count used-by-list).
            let lsmod = testns::run_text("lsmod", &[]);
            let holders: Option<Vec<String>> = lsmod.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&"nf_conntrack")).then(|| {
                    f.get(3)
                        .map(|u| {
                            u.split(',')
                                .filter(|s| !s.is_empty())
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default()
                })
            });
            match holders {
                Some(h) => {
                    let mut ours = c.modules.clone().expect("nf_conntrack listed");
                    let mut h = h;
                    ours.sort();
                    h.sort();
                    assert_eq!(ours, h, "{text}");
                    assert!(matches!(
                        p.module,
                        Ok(ModuleState::Module { loaded: true, .. })
                    ));
                }
                None => assert!(c.modules.is_err()),
            }
        }
        Err(_) => {
            // No /proc/modules (CONFIG_MODULES=n, as on this VM): no holders
            // to list, and conntrack must be built in. Oracle: the kernel's
            // own config.
            assert!(c.modules.is_err());
            let config = std::process::Command::new("zcat")
                .arg("/proc/config.gz")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if config.contains("\nCONFIG_NF_CONNTRACK=y") {
                assert!(
                    matches!(p.module, Ok(ModuleState::BuiltIn { .. })),
                    "{:?}",
                    p.module
                );
            }
        }
    }
    // Runtime buckets: the kernel's two views agree.
    let buckets: u64 = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_buckets")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(p.hashsize.runtime_buckets, Ok(buckets));
    if Path::new("/sys/module/nf_conntrack/parameters/hashsize").exists() {
        assert_eq!(p.hashsize.runtime_param, Ok(buckets));
    }
}

#[test]
fn per_netns_timeout_change_is_reported_against_the_builtin_default() {
    if !kernel_test("per_netns_timeout_change_is_reported_against_the_builtin_default") {
        return;
    }
    let _lock = lock_shared();
    let key = "net.netfilter.nf_conntrack_tcp_timeout_time_wait";
    let rel = "net/netfilter/nf_conntrack_tcp_timeout_time_wait";
    let ns = Netns::new("persist");
    // Oracle for the built-in default: a second, untouched netns.
    let fresh = Netns::new("fresh");
    let default = fresh.proc_sys(rel);
    let changed = if default == "33" { "34" } else { "33" };
    ns.sysctl(key, changed);
    assert_eq!(ns.proc_sys(rel), changed);

    let snap = collect(&ns);
    assert_eq!(snap.now.netns.as_ref().map(|n| n.is_init), Ok(false));
    let f = render_one(checks::not_persistent(&snap.now), &snap.now);
    assert_eq!(f.severity, Severity::Warning, "{f:#?}");
    let diffs = f.evidence["differences"].as_array().expect("differences");
    let d = diffs
        .iter()
        .find(|d| d["key"] == key)
        .unwrap_or_else(|| panic!("{key} not reported: {f:#?}"));
    assert_eq!(d["runtime"], changed);
    assert_eq!(d["boot"], default.as_str());
    // The fix (issue 21): the value is not set again; it goes to a file of
    // the namespace's own, loaded with `sysctl -p` in it. Pasted as
    // printed, the file holds the value, and loading it where a namespace
    // is made (here: the untouched one) gives that namespace the value.
    assert!(!f.fix.contains("sysctl -w"), "{}", f.fix);
    let file = format!("/etc/ctdoctor/netns/{}.conf", ns.name);
    assert!(
        f.fix
            .contains(&format!("ip netns exec {} sysctl -p {file}", ns.name)),
        "{}",
        f.fix
    );
    let made: Vec<&str> = ["/etc/ctdoctor", "/etc/ctdoctor/netns"]
        .into_iter()
        .filter(|d| !std::path::Path::new(d).exists())
        .collect();
    let pasted = std::process::Command::new("bash")
        .args(["-e", "-c", &f.fix])
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&file);
    let loaded = fresh.exec("sysctl", &["-p", &file]);
    let fresh_after = fresh.proc_sys(rel);
    // Leave the machine as found: the file, and the directories we made.
    let _ = std::fs::remove_file(&file);
    for d in made.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    assert!(
        pasted.status.success(),
        "{}{}",
        f.fix,
        String::from_utf8_lossy(&pasted.stderr)
    );
    assert_eq!(text.unwrap(), format!("{key} = {changed}\n"));
    assert!(loaded.status.success());
    assert_eq!(
        fresh_after, changed,
        "the file gives a new namespace the value"
    );
    fresh.sysctl(key, &default);

    // The untouched netns reports no difference for that key.
    let snap = collect(&fresh);
    let f = render_one(checks::not_persistent(&snap.now), &snap.now);
    let reported = f
        .evidence
        .get("differences")
        .and_then(|d| d.as_array())
        .is_some_and(|a| a.iter().any(|d| d["key"] == key));
    assert!(!reported, "{f:#?}");
}

#[test]
fn iptables_legacy_is_read_only_for_existing_tables() {
    if !kernel_test("iptables_legacy_is_read_only_for_existing_tables")
        || !testns::need_tool("iptables-legacy")
    {
        return;
    }
    let _lock = lock_shared();
    let ns = Netns::new("legacy");
    ns.exec(
        "iptables-legacy",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "lo",
            "-j",
            "MASQUERADE",
        ],
    );
    let names = |ns: &Netns| -> Vec<String> {
        let mut v: Vec<String> = ns
            .exec_text("cat", &["/proc/net/ip_tables_names"])
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&ns), vec!["nat"]);
    let oracle = ns.exec_text("iptables-legacy-save", &["-t", "nat"]);
    assert_eq!(lines_with(&oracle, "-j MASQUERADE"), 1, "{oracle}");

    let snap = collect(&ns);
    let legacy = summarize(
        snap.now
            .consumers
            .as_ref()
            .unwrap()
            .iptables_legacy
            .as_ref()
            .expect("legacy nat table read"),
    );
    assert_eq!(legacy.count("masquerade"), 1);
    assert_eq!(legacy.rules, 1);
    // Reading created no table: filter, mangle, raw stay uninstantiated.
    assert_eq!(names(&ns), vec!["nat"]);
}

/// Issue 8 item 12: firewalld and ufw are named from their rules, each
/// with its off-switch as a note (never a typed change). Oracles: nft's
/// and iptables-nft-save's own listings of what the test loaded.
#[test]
fn firewalld_and_ufw_are_named_from_their_rules() {
    if !kernel_test("firewalld_and_ufw_are_named_from_their_rules")
        || !testns::need_tool("iptables-nft")
    {
        return;
    }
    let _lock = lock_shared();
    let ns = Netns::new("owners");
    // A firewalld-like table (firewalld 1.x, nftables backend) ...
    ns.nft(
        "table inet firewalld {\n chain filter_INPUT {\n  type filter hook input priority filter + 10; policy accept;\n  \
         ct state { established, related } accept\n  jump filter_INPUT_ZONES\n }\n \
         chain filter_INPUT_ZONES {\n  goto filter_IN_public\n }\n \
         chain filter_IN_public {\n  tcp dport 22 ct state { new, untracked } accept\n }\n}\n",
    );
    // ... and ufw-like iptables-nft chains.
    ns.exec("iptables-nft", &["-N", "ufw-before-input"]);
    ns.exec("iptables-nft", &["-A", "INPUT", "-j", "ufw-before-input"]);
    ns.exec(
        "iptables-nft",
        &[
            "-A",
            "ufw-before-input",
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    );
    let nft = ns.exec_text("nft", &["list", "ruleset"]);
    let ipt = ns.exec_text("iptables-nft-save", &[]);
    assert!(nft.contains("table inet firewalld"), "{nft}");
    assert!(ipt.contains(":ufw-before-input"), "{ipt}");

    let snap = collect(&ns);
    let f = render_one(checks::consumers(&snap.now), &snap.now);
    assert!(
        f.title.starts_with("conntrack is used by: firewalld, ufw;"),
        "{}",
        f.title
    );
    // Each stateful rule once: nft's text lists them all (testns's two,
    // firewalld's two, and iptables-nft's one, translated).
    assert_eq!(lines_with(&ipt, "--ctstate"), 1, "{ipt}");
    let stateful = lines_with(&nft, "ct state");
    assert_eq!(stateful, 5, "{nft}");
    assert!(
        f.title.contains(&format!("stateful rules ({stateful})")),
        "{stateful}: {}",
        f.title
    );
    let named = f.evidence["consumers"].as_array().expect("consumers named");
    let ids: Vec<&str> = named.iter().filter_map(|n| n["id"].as_str()).collect();
    assert_eq!(ids, ["firewalld", "ufw"]);
    assert_eq!(named[0]["off_switch"], "systemctl disable --now firewalld");
    assert_eq!(named[1]["off_switch"], "ufw disable");
    assert!(
        named[0]["seen"][0]
            .as_str()
            .is_some_and(|s| s.contains("nft table inet firewalld")),
        "{named:?}"
    );
    assert!(
        named[1]["seen"][0]
            .as_str()
            .is_some_and(|s| s.contains("ufw-before-input") && s.contains("iptables_nft")),
        "{named:?}"
    );
    // Off-switches are notes, not knobs.
    assert!(f.changes.is_empty(), "{:?}", f.changes);
    for line in [
        "off-switch `systemctl disable --now firewalld`",
        "off-switch `ufw disable`",
    ] {
        assert!(
            f.fix
                .lines()
                .any(|l| l.starts_with("# ") && l.contains(line)),
            "{line}: {}",
            f.fix
        );
    }
}
