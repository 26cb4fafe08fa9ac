//! conntrack.not_persistent and conntrack.consumers on fixture trees
//! (tests/fixtures/persist-*, consumers-*): each tree is a hand-made
//! machine; the expected boot values, files, lines and severities below
//! were worked out by hand from the files in the tree and the precedence
//! rule in host/persist.rs.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{facts, fixture};
use ctdoctor::checks::{self, persist, Finding, Severity};
use ctdoctor::host::consumers::summarize;
use ctdoctor::host::persist::{ModuleState, Persist, SysctlKey};
use ctdoctor::host::Root;
use ctdoctor::snapshot::Snapshot;

fn findings(name: &str) -> (Finding, Finding) {
    let snap = Snapshot {
        now: facts(name),
        earlier: None,
    };
    let f = checks::rendered(persist::run, &snap);
    assert_eq!(f.len(), 2, "one finding per rule, every run");
    let np = f.iter().find(|x| x.id == persist::NOT_PERSISTENT).unwrap();
    let c = f.iter().find(|x| x.id == persist::CONSUMERS).unwrap();
    (np.clone(), c.clone())
}

fn persist_of(name: &str) -> Persist {
    facts(name).persist.expect("persist reads a fixture tree")
}

fn key<'a>(p: &'a Persist, path: &str) -> &'a SysctlKey {
    p.sysctls
        .iter()
        .find(|k| k.path == path)
        .unwrap_or_else(|| panic!("{path} not read"))
}

/// (key, runtime, boot) of each difference in the evidence.
fn diffs(f: &Finding) -> Vec<(String, String, String)> {
    f.evidence
        .get("differences")
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        d["key"].as_str().unwrap().to_string(),
                        d["runtime"].as_str().unwrap().to_string(),
                        d["boot"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn precedence_masking_order_sysctl_conf_and_globs() {
    let p = persist_of("persist-precedence");
    // Files: /etc/sysctl.d/50-ct.conf masks /usr/lib/sysctl.d/50-ct.conf,
    // README is not a .conf, sorted by basename, sysctl.conf last.
    assert_eq!(
        p.sysctl_files,
        vec![
            "etc/sysctl.d/50-ct.conf",
            "usr/lib/sysctl.d/60-later.conf",
            "run/sysctl.d/70-glob.conf",
            "lib/sysctl.d/80-udp.conf",
            "etc/sysctl.conf"
        ]
    );
    // A later basename wins over an earlier one, in slash syntax.
    let max = key(&p, "net/netfilter/nf_conntrack_max")
        .boot
        .clone()
        .unwrap();
    assert_eq!(
        (max.value.as_str(), max.file.as_str(), max.line),
        ("524288", "usr/lib/sysctl.d/60-later.conf", 2)
    );
    // /etc/sysctl.conf is applied last by procps; systemd-sysctl does not
    // read it and keeps /etc/sysctl.d/50-ct.conf's value.
    let tw = key(&p, "net/netfilter/nf_conntrack_tcp_timeout_time_wait");
    let b = tw.boot.clone().unwrap();
    assert_eq!(
        (b.value.as_str(), b.file.as_str(), b.line),
        ("30", "etc/sysctl.conf", 2)
    );
    let sd = tw.boot_systemd.clone().unwrap();
    assert_eq!(
        (sd.value.as_str(), sd.file.as_str(), sd.line),
        ("60", "etc/sysctl.d/50-ct.conf", 3)
    );
    // A glob sets established; an explicit key beats a glob; `-key` keeps
    // a glob away from generic_timeout.
    let est = key(&p, "net/netfilter/nf_conntrack_tcp_timeout_established")
        .boot
        .clone()
        .unwrap();
    assert_eq!((est.value.as_str(), est.glob), ("600", true));
    let udp = key(&p, "net/netfilter/nf_conntrack_udp_timeout")
        .boot
        .clone()
        .unwrap();
    assert_eq!(
        (udp.value.as_str(), udp.file.as_str()),
        ("60", "lib/sysctl.d/80-udp.conf")
    );
    assert_eq!(
        key(&p, "net/netfilter/nf_conntrack_generic_timeout").boot,
        None
    );
    // Whitespace-normalised port range; `-key = v` still assigns.
    let pr = key(&p, "net/ipv4/ip_local_port_range");
    assert_eq!(pr.runtime.as_deref().unwrap(), "1024 65000");
    assert_eq!(pr.boot.as_ref().unwrap().value, "1024 65000");
    assert_eq!(
        key(&p, "net/core/somaxconn").boot.as_ref().unwrap().value,
        "8192"
    );
    // nf_conntrack_count is not a knob.
    assert!(!p
        .sysctls
        .iter()
        .any(|k| k.path.ends_with("nf_conntrack_count")));
    assert!(matches!(p.module, Ok(ModuleState::BuiltIn { .. })));

    let (np, _) = findings("persist-precedence");
    assert_eq!(np.severity, Severity::Ok, "{np:#?}");
    // max, buckets (default), time_wait, established, udp, generic (default),
    // tcp_loose (default), port range, somaxconn.
    assert_eq!(np.evidence["compared"], 9);
}

#[test]
fn runtime_only_change_warns_with_sysctl_d_lines() {
    let (np, _) = findings("persist-runtime-only");
    assert_eq!(np.severity, Severity::Warning);
    // 8 GiB on 6.18: default max = buckets = 262144; time_wait default 120.
    assert_eq!(
        diffs(&np),
        vec![
            (
                "net.netfilter.nf_conntrack_max".into(),
                "1048576".into(),
                "262144".into()
            ),
            (
                "net.netfilter.nf_conntrack_tcp_timeout_time_wait".into(),
                "30".into(),
                "120".into()
            ),
        ]
    );
    assert!(
        np.fix
            .contains("f=/etc/sysctl.d/90-ctdoctor.conf; touch \"$f\""),
        "{}",
        np.fix
    );
    assert!(np
        .fix
        .contains("echo 'net.netfilter.nf_conntrack_max = 1048576' >> \"$f\""));
    assert!(np
        .fix
        .contains("echo 'net.netfilter.nf_conntrack_tcp_timeout_time_wait = 30' >> \"$f\""));
    assert!(!np.fix.contains("modules-load"));
    assert!(!np.evidence.contains_key("early_boot_trap"));
}

#[test]
fn module_loading_late_is_its_own_warning() {
    let p = persist_of("persist-module-late");
    assert_eq!(
        p.module,
        Ok(ModuleState::Module {
            loaded: true,
            how: "listed in /proc/modules".into()
        })
    );
    assert!(p.modules_load.is_empty());
    let (np, _) = findings("persist-module-late");
    // The runtime value matches the file: only the trap warns.
    assert_eq!(np.severity, Severity::Warning);
    assert!(diffs(&np).is_empty());
    let trap = np.evidence["early_boot_trap"].as_str().unwrap();
    assert!(trap.contains("/etc/sysctl.d/90-conntrack.conf:1"), "{trap}");
    assert!(
        np.fix.contains(
            "f=/etc/modules-load.d/ctdoctor.conf; touch \"$f\"; grep -qxF nf_conntrack \"$f\" || echo nf_conntrack >> \"$f\""
        ),
        "{}",
        np.fix
    );

    // The same machine loading it early is fine.
    let p = persist_of("persist-module-early");
    assert_eq!(p.modules_load.len(), 1);
    assert_eq!(p.modules_load[0].file, "etc/modules-load.d/conntrack.conf");
    let (np, _) = findings("persist-module-early");
    assert_eq!(np.severity, Severity::Ok, "{np:#?}");
}

#[test]
fn hashsize_from_modprobe_d() {
    let p = persist_of("persist-hashsize-modprobe");
    let m = p.hashsize.modprobe.clone().unwrap();
    // /etc masks /usr/lib's same-named file; a continued line counts from its start.
    assert_eq!(
        (m.value.as_str(), m.file.as_str(), m.line),
        ("131072", "etc/modprobe.d/conntrack.conf", 1)
    );
    assert_eq!(p.hashsize.runtime_param, Ok(131_072));
    assert_eq!(p.hashsize.runtime_buckets, Ok(131_072));
    let (np, _) = findings("persist-hashsize-modprobe");
    // max = 8 × 131072 = 1048576, buckets = 131072: both as booted.
    assert_eq!(np.severity, Severity::Ok, "{np:#?}");
    assert!(np.evidence["boot_hashsize"]
        .as_str()
        .unwrap()
        .starts_with("131072 "));
}

#[test]
fn hashsize_from_cmdline_when_built_in() {
    let p = persist_of("persist-hashsize-cmdline");
    assert_eq!(p.hashsize.cmdline.as_ref().unwrap().value, "65536");
    let (np, _) = findings("persist-hashsize-cmdline");
    assert_eq!(np.severity, Severity::Warning);
    // modprobe.d's 4096 is ignored (built in); max = 8 × 65536 = 524288 matches;
    // buckets were resized at runtime.
    assert_eq!(
        diffs(&np),
        vec![(
            "net.netfilter.nf_conntrack_buckets".into(),
            "262144".into(),
            "65536".into()
        )]
    );
    assert!(
        np.fix.contains("nf_conntrack.hashsize=262144"),
        "{}",
        np.fix
    );
    assert!(!np.fix.contains("modprobe.d"));
    assert!(
        !np.fix.contains("90-conntrack.conf"),
        "buckets go on the command line"
    );
}

#[test]
fn child_netns_compares_with_builtin_defaults() {
    let (np, _) = findings("persist-child-netns");
    assert_eq!(np.severity, Severity::Warning);
    assert_eq!(np.evidence["netns"], "child");
    // sysctl.d sets time_wait = 30, but a child netns starts at 120; the
    // global max is the host's and matches its file.
    assert_eq!(
        diffs(&np),
        vec![(
            "net.netfilter.nf_conntrack_tcp_timeout_time_wait".into(),
            "30".into(),
            "120".into()
        )]
    );
    assert!(np.why.contains("never gets sysctl.d values"));
    // The fix runs (issue 21): no re-set of the value already set, a file
    // of the namespace's own values and the line that loads it, which the
    // place that makes the namespace runs; nothing in the host's sysctl.d.
    let cmds: Vec<&str> = np.fix.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        cmds,
        [
            "mkdir -p /etc/ctdoctor/netns && printf '%s\\n' 'net.netfilter.nf_conntrack_tcp_timeout_time_wait = 30' > /etc/ctdoctor/netns/gw.conf",
            "ip netns exec gw sysctl -p /etc/ctdoctor/netns/gw.conf",
        ],
        "{}",
        np.fix
    );
    assert!(!np.fix.contains("sysctl -w"), "{}", np.fix);
    assert!(!np.fix.contains("sysctl.d/"), "{}", np.fix);
}

#[test]
fn docker_host_consumers() {
    let f = facts("consumers-docker");
    let c = f.consumers.as_ref().unwrap();
    assert_eq!(
        c.modules.as_ref().unwrap(),
        &vec!["xt_MASQUERADE", "nf_nat", "xt_conntrack"]
    );
    let ipt = summarize(c.iptables_nft.as_ref().unwrap());
    // 3 MASQUERADE, 1 DNAT, 2 --ctstate lines, of 15 -A lines (8 filter, 7 nat; v6 has none).
    assert_eq!(ipt.rules, 15);
    assert_eq!(ipt.count("masquerade"), 3);
    assert_eq!(ipt.count("dnat"), 1);
    assert_eq!(ipt.count("ct_state"), 2);
    // nft lists iptables-nft's 15 rules too; each is counted once, from
    // iptables-nft-save, which shows their matches.
    assert_eq!(summarize(c.nft.as_ref().unwrap()).rules, 15);
    let eff = c.effective();
    assert_eq!(eff[0].1.rules.len(), 0, "{:?}", eff[0].1.rules);
    assert_eq!(eff[1].1.rules.len(), 15);
    assert!(eff[1].1.rules.iter().all(|r| r.handle.is_some()));
    // No ip_tables_names: legacy tools are not run.
    assert!(c.iptables_legacy.is_err());
    let kinds: Vec<(String, u64)> = c
        .interfaces
        .as_ref()
        .unwrap()
        .iter()
        .map(|g| (g.kind.clone(), g.count))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("docker".into(), 1),
            ("docker_network".into(), 1),
            ("veth".into(), 3)
        ]
    );
    let (np, cf) = findings("consumers-docker");
    assert_eq!(cf.severity, Severity::Info);
    assert!(
        cf.title.contains("NAT (masquerade 3, dnat 1)"),
        "{}",
        cf.title
    );
    assert!(cf.title.contains("container networking"));
    assert!(!cf.evidence.contains_key("notrack_candidate"));
    // Module, but no sysctl.d keys: no trap; no /proc/sys in this tree.
    assert_eq!(np.severity, Severity::Info, "{np:#?}");
    assert!(np.title.starts_with("not checked"), "{}", np.title);
}

#[test]
fn plain_stateful_host_is_a_notrack_candidate() {
    let (_, cf) = findings("consumers-plain");
    assert_eq!(cf.severity, Severity::Info);
    assert_eq!(cf.title, "conntrack is used by: stateful rules (2)");
    assert_eq!(cf.evidence["notrack_candidate"], true);
    assert_eq!(cf.evidence["lo_rx_packets"], 88_000_000u64);
    assert!(cf.fix.contains("notrack"), "{}", cf.fix);
}

#[test]
fn kube_proxy_values_are_info_on_a_k8s_node() {
    let (np, cf) = findings("consumers-k8s");
    // 6.1 with 7.6 GiB: default 262144; kube-proxy set max, buckets,
    // established and close_wait.
    assert_eq!(np.severity, Severity::Info, "{np:#?}");
    assert_eq!(diffs(&np).len(), 4);
    assert!(np.evidence.contains_key("kube_proxy"));
    assert!(
        cf.title.contains("NAT (masquerade 2, dnat 1)"),
        "{}",
        cf.title
    );
    assert!(cf.title.contains("calico 3"), "{}", cf.title);
}

/// Container interfaces without a kube-proxy process are not kube-proxy:
/// the differences stay a warning (the old guess from interfaces said info).
#[test]
fn cni_interfaces_without_kube_proxy_stay_a_warning() {
    let mut now = facts("consumers-k8s");
    now.persist.as_mut().unwrap().kube_proxy.clear();
    let snap = Snapshot { now, earlier: None };
    let f = checks::rendered(persist::run, &snap);
    let np = f.iter().find(|x| x.id == persist::NOT_PERSISTENT).unwrap();
    assert_eq!(np.severity, Severity::Warning, "{np:#?}");
    assert!(!np.evidence.contains_key("kube_proxy"));
}

#[test]
fn missing_everything_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let snap = Snapshot {
        now: ctdoctor::host::read_facts(&Root::live_at(dir.path().to_path_buf())),
        earlier: None,
    };
    let f = checks::rendered(persist::run, &snap);
    assert_eq!(f.len(), 2);
    assert!(f.iter().all(|x| x.severity <= Severity::Info), "{f:#?}");
}

#[test]
fn capture_replays_the_same_facts() {
    use ctdoctor::host::Capture;
    for name in [
        "persist-precedence",
        "persist-module-late",
        "consumers-docker",
    ] {
        let live = Root::live_at(fixture(name)).recording(0);
        let a = ctdoctor::host::read_facts(&live);
        let cap: Capture = live.take_capture().unwrap();
        let json = serde_json::to_string(&cap).unwrap();
        let b = ctdoctor::host::read_facts(&Root::captured(serde_json::from_str(&json).unwrap()));
        assert_eq!(a.persist, b.persist, "{name}");
        assert_eq!(a.consumers, b.consumers, "{name}");
    }
}

#[test]
fn debian_sysctl_conf_symlink_counts_for_systemd_too() {
    // Debian: /etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf, so systemd-sysctl
    // applies /etc/sysctl.conf as well (as 99-sysctl.conf) and both agree.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("etc/sysctl.d")).unwrap();
    std::fs::create_dir_all(d.join("usr/lib/sysctl.d")).unwrap();
    std::fs::create_dir_all(d.join("proc/sys/net/netfilter")).unwrap();
    std::fs::write(
        d.join("proc/sys/net/netfilter/nf_conntrack_max"),
        "400000\n",
    )
    .unwrap();
    std::fs::write(
        d.join("usr/lib/sysctl.d/50-vendor.conf"),
        "net.netfilter.nf_conntrack_max = 300000\n",
    )
    .unwrap();
    std::fs::write(
        d.join("etc/sysctl.conf"),
        "#\nnet.netfilter.nf_conntrack_max=400000\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../sysctl.conf", d.join("etc/sysctl.d/99-sysctl.conf")).unwrap();
    let p = ctdoctor::host::persist::read(&Root::live_at(d.to_path_buf())).unwrap();
    let k = key(&p, "net/netfilter/nf_conntrack_max");
    let b = k.boot.clone().unwrap();
    assert_eq!(
        (b.value.as_str(), b.file.as_str(), b.line),
        ("400000", "etc/sysctl.conf", 2)
    );
    assert_eq!(
        k.boot_systemd, None,
        "systemd gets 400000 too, via 99-sysctl.conf"
    );
    // Without the symlink, systemd-sysctl stops at the vendor file.
    std::fs::remove_file(d.join("etc/sysctl.d/99-sysctl.conf")).unwrap();
    let p = ctdoctor::host::persist::read(&Root::live_at(d.to_path_buf())).unwrap();
    let sd = key(&p, "net/netfilter/nf_conntrack_max")
        .boot_systemd
        .clone()
        .unwrap();
    assert_eq!(
        (sd.value.as_str(), sd.file.as_str()),
        ("300000", "usr/lib/sysctl.d/50-vendor.conf")
    );
}

#[test]
fn fix_never_clobbers_an_existing_90_conntrack_conf() {
    // persist-module-late already has /etc/sysctl.d/90-conntrack.conf
    // (max = 524288); raise max at runtime in a copy of it.
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("persist-module-late");
    copy_tree(&src, dir.path());
    std::fs::write(
        dir.path().join("proc/sys/net/netfilter/nf_conntrack_max"),
        "600000\n",
    )
    .unwrap();
    let snap = Snapshot {
        now: ctdoctor::host::read_facts(&Root::live_at(dir.path().to_path_buf())),
        earlier: None,
    };
    let np = checks::render_one(persist::not_persistent(&snap.now), &snap.now);
    assert_eq!(np.severity, Severity::Warning);
    assert_eq!(
        diffs(&np),
        vec![(
            "net.netfilter.nf_conntrack_max".into(),
            "600000".into(),
            "524288".into()
        )]
    );
    // Our own file sorts after it and wins; the existing file is left alone.
    assert!(!np.fix.contains("cat >"), "{}", np.fix);
    assert!(!np.fix.contains("90-conntrack.conf"), "{}", np.fix);
    assert!(np
        .fix
        .contains("echo 'net.netfilter.nf_conntrack_max = 600000' >> \"$f\""));
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn module_state_from_modules_builtin_or_absence() {
    use ctdoctor::host::persist::module_state;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = || Root::live_at(d.to_path_buf());
    // Nothing tells: unavailable, not a guess.
    assert!(module_state(&root()).is_err());
    // modules.builtin of the running release lists it: built in.
    std::fs::create_dir_all(d.join("proc/sys/kernel")).unwrap();
    std::fs::write(d.join("proc/sys/kernel/osrelease"), "6.1.0-27-amd64\n").unwrap();
    std::fs::create_dir_all(d.join("lib/modules/6.1.0-27-amd64")).unwrap();
    let builtin = d.join("lib/modules/6.1.0-27-amd64/modules.builtin");
    std::fs::write(&builtin, "kernel/net/netfilter/nf_conntrack.ko\n").unwrap();
    assert!(matches!(
        module_state(&root()),
        Ok(ModuleState::BuiltIn { .. })
    ));
    // Not listed there and not loaded: a module, not loaded.
    std::fs::write(&builtin, "kernel/net/netfilter/x_tables.ko\n").unwrap();
    assert!(matches!(
        module_state(&root()),
        Ok(ModuleState::Module { loaded: false, .. })
    ));
    // /proc/modules lists it: a loaded module, whatever else says.
    std::fs::write(
        d.join("proc/modules"),
        "nf_conntrack 184320 0 - Live 0x0000000000000000\n",
    )
    .unwrap();
    assert!(matches!(
        module_state(&root()),
        Ok(ModuleState::Module { loaded: true, .. })
    ));
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Arbitrary bytes in every file both readers parse: no panic, and
        /// both rules still emit their one finding each.
        #[test]
        fn arbitrary_files_never_panic(files in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 9)) {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let paths = [
                "etc/sysctl.d/50-x.conf", "etc/sysctl.conf", "etc/modprobe.d/x.conf",
                "etc/modules-load.d/x.conf", "proc/modules", "proc/cmdline",
                "probe/nft_ruleset", "proc/net/dev", "proc/sys/net/netfilter/nf_conntrack_max",
            ];
            for (p, bytes) in paths.iter().zip(&files) {
                let f = d.join(p);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(f, bytes).unwrap();
            }
            let snap = Snapshot { now: ctdoctor::host::read_facts(&Root::live_at(d.to_path_buf())), earlier: None };
            prop_assert_eq!(checks::rendered(persist::run, &snap).len(), 2);
        }
    }
}

#[test]
fn hashsize_not_a_page_multiple_gives_max_of_the_rounded_table() {
    // nf_conntrack.hashsize=100000: the kernel rounds the table up to whole
    // pages of heads (100352) and only then sets max = 8 × 100352 = 802816.
    // A host booted that way, untouched since, has nothing to persist.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy_tree(&fixture("persist-hashsize-cmdline"), d);
    std::fs::write(
        d.join("proc/cmdline"),
        "BOOT_IMAGE=/vmlinuz ro nf_conntrack.hashsize=100000 quiet\n",
    )
    .unwrap();
    let nf = d.join("proc/sys/net/netfilter");
    std::fs::write(nf.join("nf_conntrack_buckets"), "100352\n").unwrap();
    std::fs::write(nf.join("nf_conntrack_max"), "802816\n").unwrap();
    std::fs::write(
        d.join("sys/module/nf_conntrack/parameters/hashsize"),
        "100352\n",
    )
    .unwrap();
    let snap = Snapshot {
        now: ctdoctor::host::read_facts(&Root::live_at(d.to_path_buf())),
        earlier: None,
    };
    let f = checks::rendered(persist::run, &snap);
    let np = f.iter().find(|x| x.id == persist::NOT_PERSISTENT).unwrap();
    assert_eq!(diffs(np), vec![], "{np:#?}");
}

/// Issue 8 item 12: every consumer is named from what it leaves (chains,
/// nft tables, interfaces, units, its own switch), with its exact
/// off-switch — or none — as a note, never as a typed change.
#[test]
fn consumers_are_named_with_their_off_switch() {
    type Named<'a> = &'a [(&'a str, Option<&'a str>)];
    let cases: &[(&str, Named)] = &[
        (
            "consumers-docker",
            &[(
                "docker",
                Some("systemctl disable --now docker.service docker.socket"),
            )],
        ),
        (
            "consumers-k8s",
            &[("kube-proxy", None), ("kubernetes-cni", None)],
        ),
        (
            "consumers-firewalld",
            &[("firewalld", Some("systemctl disable --now firewalld"))],
        ),
        ("consumers-ufw", &[("ufw", Some("ufw disable"))]),
        (
            "consumers-libvirt",
            &[(
                "libvirt",
                Some("virsh net-destroy default && virsh net-autostart --disable default"),
            )],
        ),
        ("consumers-podman", &[("podman", None)]),
        // ufw's unit is enabled here but ENABLED=no: not named.
        (
            "consumers-services",
            &[
                ("nftables.service", Some("systemctl disable --now nftables")),
                (
                    "iptables-persistent",
                    Some("systemctl disable netfilter-persistent"),
                ),
            ],
        ),
        ("consumers-plain", &[]),
    ];
    for (tree, want) in cases {
        let (_, cf) = findings(tree);
        let named: Vec<(String, Option<String>)> = cf
            .evidence
            .get("consumers")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .map(|n| {
                        (
                            n["id"].as_str().unwrap().to_string(),
                            n["off_switch"].as_str().map(String::from),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, Option<String>)> = want
            .iter()
            .map(|(id, off)| (id.to_string(), off.map(String::from)))
            .collect();
        assert_eq!(named, want, "{tree}");
        assert!(cf.changes.is_empty(), "{tree}: off-switches are notes");
        for (id, off) in &want {
            assert!(cf.title.contains(id.as_str()), "{tree}: {}", cf.title);
            let note = cf
                .fix
                .lines()
                .find(|l| l.starts_with(&format!("# {id} (seen: ")))
                .unwrap_or_else(|| panic!("{tree}: no note for {id}: {}", cf.fix));
            match off {
                Some(cmd) => assert!(note.contains(&format!("off-switch `{cmd}`")), "{note}"),
                None => assert!(note.contains("no off-switch"), "{note}"),
            }
        }
    }
}

/// nft's JSON is read when the capture has it; a capture from before
/// (consumers-k8s holds only `nft list ruleset` text) is read from the text.
#[test]
fn nft_json_first_old_text_probes_still_read() {
    let docker = facts("consumers-docker");
    let nft = docker.consumers.as_ref().unwrap().nft.as_ref().unwrap();
    // Its text probe is empty; the JSON holds iptables-nft's tables.
    assert!(nft.has_table("ip", "nat"), "{:?}", nft.tables);
    let plain = facts("consumers-plain");
    let nft = plain.consumers.as_ref().unwrap().nft.as_ref().unwrap();
    let from_text = ctdoctor::host::ruleset::parse_nft_text(
        &std::fs::read_to_string(fixture("consumers-plain").join("probe/nft_ruleset")).unwrap(),
    );
    assert_eq!(nft.rules.len(), from_text.rules.len());
    for (a, b) in nft.rules.iter().zip(&from_text.rules) {
        assert_eq!(a.matches, b.matches, "{}", a.text);
        assert_eq!(a.text, b.text);
    }
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("consumers-plain"), dir.path());
    std::fs::remove_file(dir.path().join("probe/nft_ruleset_json")).unwrap();
    let f = ctdoctor::host::read_facts(&Root::live_at(dir.path().to_path_buf()));
    let again = f.consumers.as_ref().unwrap().nft.clone().unwrap();
    assert_eq!(again.rules, from_text.rules);
    assert_eq!(again.chains.len(), nft.chains.len());
}
