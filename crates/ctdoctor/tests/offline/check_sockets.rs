//! The sockets, fds and nic rule families on fixture trees (no kernel, no
//! root): one tree that triggers each rule, one that does not, a pair for
//! rates (`--sample`), an ENA tree without exceeded allowances, and an
//! empty tree (every rule says "not checked"). Expected severities are
//! written by hand from the fixture numbers (see the comments).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, fixture};
use ctdoctor::checks::{self, Finding, Severity};
use ctdoctor::host::Root;
use ctdoctor::snapshot::{Facts, Snapshot};

const IDS: [&str; 8] = [
    "sockets.time_wait",
    "sockets.ports",
    "sockets.listen_overflow",
    "kernel.softnet_drops",
    "nic.drops",
    "cloud.allowance",
    "fds.system",
    "fds.process",
];

/// [`common::facts`] of a tree read `elapsed_ms` after the first reading
/// (a pair of trees is a `--sample`).
fn facts(name: &str, elapsed_ms: u64) -> Facts {
    let mut f = common::facts(name);
    f.elapsed_ms = elapsed_ms;
    f
}

fn ours(snap: &Snapshot) -> Vec<Finding> {
    let mut v = checks::rendered(checks::sockets::run, snap);
    v.extend(checks::rendered(checks::fds::run, snap));
    v.extend(checks::rendered(checks::nic::run, snap));
    v
}

/// Every rule exactly once; returns the finding of `id`.
fn get<'a>(fs: &'a [Finding], id: &str) -> &'a Finding {
    let all: Vec<&Finding> = fs.iter().filter(|f| f.id == id).collect();
    assert_eq!(
        all.len(),
        1,
        "{id}: expected exactly one finding, got {fs:#?}"
    );
    all[0]
}

fn severities(fs: &[Finding]) -> Vec<(&'static str, Severity)> {
    assert_eq!(fs.len(), IDS.len(), "{fs:#?}");
    IDS.iter().map(|id| (*id, get(fs, id).severity)).collect()
}

fn single(name: &str) -> Vec<Finding> {
    ours(&Snapshot {
        now: facts(name, 0),
        earlier: None,
    })
}

#[test]
fn healthy_host_is_ok_everywhere() {
    // Real files from the dev VM: tw 0, 1 outbound socket of 28232 ports,
    // no overflows, no softnet/NIC drops, virtio (no allowances), fds tiny.
    let fs = single("sock-real");
    for (id, sev) in severities(&fs) {
        assert_eq!(sev, Severity::Ok, "{id}: {:#?}", get(&fs, id));
    }
    let ports = get(&fs, "sockets.ports");
    assert_eq!(ports.evidence["ports_per_destination"], 28232);
    assert_eq!(ports.evidence["worst_sockets"], 1);
    assert!(get(&fs, "cloud.allowance").title.contains("not an AWS ENA"));
}

#[test]
fn busy_gateway_triggers_every_rule() {
    let fs = single("sock-busy");
    let want = [
        // tw 120000 of tcp_max_tw_buckets 131072 = 91.6 % (>= 80) and TCPTimeWaitOverflow 5.
        ("sockets.time_wait", Severity::Warning),
        // 10.0.1.7:8080 holds 26000 of 28232 ports = 92.1 % (>= 90), tw_reuse 0.
        ("sockets.ports", Severity::Critical),
        // ListenOverflows 1234 since boot, no sample; 0.0.0.0:443 queue 512/511 (full: > backlog).
        ("sockets.listen_overflow", Severity::Warning),
        // softnet dropped 0x10 = 16 since boot, no sample.
        ("kernel.softnet_drops", Severity::Warning),
        // eth0 57000 drops of 19,000,000 packets = 0.3 % (>= 0.1) since boot.
        ("nic.drops", Severity::Warning),
        // ENA pps_allowance_exceeded 310, conntrack_allowance_exceeded 1523, no sample.
        ("cloud.allowance", Severity::Warning),
        // file-nr 2400000 of 2466190 = 97.3 % (>= 95).
        ("fds.system", Severity::Critical),
        // nginx[4242] 1000 of soft 1024 = 97.7 % (>= 95).
        ("fds.process", Severity::Critical),
    ];
    assert_eq!(severities(&fs), want, "{fs:#?}");

    let tw = get(&fs, "sockets.time_wait");
    assert_eq!(tw.evidence["tw"], 120000);
    assert_eq!(tw.evidence["tw_percent_of_max"], 91.6);
    assert_eq!(tw.evidence["TCPTimeWaitOverflow"], 5);
    assert!(
        tw.fix.contains("sysctl -w net.ipv4.tcp_tw_reuse=1"),
        "{}",
        tw.fix
    );
    assert!(tw.fix.contains("tcp_max_tw_buckets=262144"), "{}", tw.fix);

    let ports = get(&fs, "sockets.ports");
    assert_eq!(
        ports.evidence["worst_destination"],
        "10.0.0.5 -> 10.0.1.7:8080"
    );
    assert_eq!(ports.evidence["worst_percent"], 92.1);
    assert!(
        ports.fix.contains("sysctl -w net.ipv4.tcp_tw_reuse=1"),
        "{}",
        ports.fix
    );
    assert!(
        ports
            .fix
            .contains("sysctl -w 'net.ipv4.ip_local_port_range=1024 65535'"),
        "{}",
        ports.fix
    );
    // 15000 / 28232 = 53.1 % is short too.
    let short = ports.evidence["short_destinations"].as_array().unwrap();
    assert_eq!(short.len(), 2);
    assert!(short[1]
        .as_str()
        .unwrap()
        .contains("10.0.1.8:8080: 15000 ports (53.1%)"));

    let lo = get(&fs, "sockets.listen_overflow");
    assert_eq!(lo.evidence["ListenOverflows"], 1234);
    assert_eq!(
        lo.evidence["full_listeners"][0],
        "0.0.0.0:443 queue 512, backlog 511"
    );
    assert!(
        lo.fix.contains("sysctl -w net.core.somaxconn=4096"),
        "{}",
        lo.fix
    );
    // The full listener's backlog now, without a restart (owner unknown in
    // this tree: kept where its process sets it).
    assert!(
        lo.fix.contains("tune --listen-backlog 443=4096 --apply"),
        "{}",
        lo.fix
    );

    let sn = get(&fs, "kernel.softnet_drops");
    assert_eq!(sn.evidence["dropped"], 16);
    assert_eq!(sn.evidence["time_squeeze"], 0x100 + 0x80);
    assert!(sn
        .fix
        .contains("sysctl -w net.core.netdev_max_backlog=16384"));

    let nic = get(&fs, "nic.drops");
    assert_eq!(nic.evidence["interfaces"]["eth0"]["rx_drop"], 40000);
    // rtnetlink splits /proc/net/dev's 40000: 30000 dropped + 10000 missed.
    assert_eq!(nic.evidence["interfaces"]["eth0"]["rx_dropped"], 30000);
    assert_eq!(
        nic.evidence["interfaces"]["eth0"]["rx_missed_errors"],
        10000
    );
    assert_eq!(
        nic.evidence["driver_drop_counters"]["eth0"]["queue_0_rx_drops"],
        7
    );

    let cloud = get(&fs, "cloud.allowance");
    assert_eq!(
        cloud.evidence["counters"]["eth0.conntrack_allowance_exceeded"]["value"],
        1523
    );
    assert_eq!(cloud.evidence["conntrack_allowance_available"]["eth0"], 0);
    assert!(cloud.fix.contains("No sysctl raises it"));
    assert!(cloud.fix.contains("instance type"));

    let fsys = get(&fs, "fds.system");
    assert_eq!(fsys.evidence["percent"], 97.3);
    assert!(
        fsys.fix.contains("sysctl -w fs.file-max=4932380"),
        "{}",
        fsys.fix
    );

    let proc = get(&fs, "fds.process");
    assert_eq!(proc.evidence["pid"], 4242);
    assert_eq!(proc.evidence["percent"], 97.7);
    // Commands, not comments: prlimit now, a drop-in to keep it, no restart.
    let lines: Vec<&str> = proc.fix.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{}", proc.fix);
    assert!(lines[0].starts_with("prlimit --pid 4242 "), "{}", proc.fix);
    assert!(
        lines[1].contains("/etc/systemd/system/nginx.service.d/90-ctdoctor-nofile.conf")
            && lines[1].ends_with("systemctl daemon-reload"),
        "{}",
        proc.fix
    );
    assert!(!proc
        .fix
        .lines()
        .any(|l| !l.starts_with('#') && l.contains("restart")));
    assert!(proc.fix.contains("LimitNOFILE=65536"));
    assert!(proc.fix.contains("worker_rlimit_nofile 65536;"));
    assert!(
        proc.fix
            .contains("prlimit --pid 4242 --nofile=65536:524288"),
        "{}",
        proc.fix
    );
}

/// Root without CAP_SYS_RESOURCE (a container; this VM) cannot raise a
/// hard limit: prlimit raises the soft limit up to the hard one, and says
/// why it stops there; with soft = hard nothing runs now.
#[test]
fn fds_process_without_cap_sys_resource_stays_under_the_hard_limit() {
    let with = |hard: u64| {
        let mut now = facts("sock-busy", 0);
        let fds = now.fds.as_mut().unwrap();
        fds.sys_resource = Ok(false);
        fds.processes.as_mut().unwrap().top[0].hard = hard;
        let fs = ours(&Snapshot { now, earlier: None });
        get(&fs, "fds.process").fix.clone()
    };
    let fix = with(20000);
    assert!(
        fix.contains("prlimit --pid 4242 --nofile=20000:20000\n"),
        "{fix}"
    );
    assert!(fix.contains("CAP_SYS_RESOURCE"), "{fix}");
    // The drop-in still asks for the full target at the next start.
    assert!(fix.contains("LimitNOFILE=65536"), "{fix}");
    let fix = with(1024);
    assert!(!fix.contains("prlimit --pid"), "{fix}");
    assert!(
        fix.contains("nothing raises nginx[4242]'s limit without a restart"),
        "{fix}"
    );
}

#[test]
fn rates_over_a_sample_escalate() {
    // Same host 5 s later: ListenOverflows +66, softnet dropped +32,
    // eth0 +2000 drops over 100000 packets (1.96 %), conntrack_allowance_exceeded +77.
    let snap = Snapshot {
        now: facts("sock-busy-later", 5000),
        earlier: Some(facts("sock-busy", 0)),
    };
    assert_eq!(snap.interval_secs(), Some(5.0));
    let fs = ours(&snap);
    let want = [
        // TCPTimeWaitOverflow did not rise; tw still 91.6 %.
        ("sockets.time_wait", Severity::Warning),
        ("sockets.ports", Severity::Critical),
        ("sockets.listen_overflow", Severity::Critical),
        ("kernel.softnet_drops", Severity::Critical),
        ("nic.drops", Severity::Critical),
        ("cloud.allowance", Severity::Critical),
        ("fds.system", Severity::Critical),
        ("fds.process", Severity::Critical),
    ];
    assert_eq!(severities(&fs), want, "{fs:#?}");
    let lo = get(&fs, "sockets.listen_overflow");
    assert_eq!(lo.evidence["ListenOverflows_rise"], 66);
    assert_eq!(lo.evidence["ListenOverflows_per_sec"], 13.2);
    assert_eq!(
        get(&fs, "kernel.softnet_drops").evidence["dropped_rise"],
        32
    );
    let nic = get(&fs, "nic.drops");
    assert_eq!(nic.evidence["interfaces"]["eth0"]["drops_rise"], 2000);
    assert_eq!(nic.evidence["interfaces"]["eth0"]["drops_per_sec"], 400.0);
    let cloud = get(&fs, "cloud.allowance");
    assert_eq!(
        cloud.evidence["counters"]["eth0.conntrack_allowance_exceeded"]["rise"],
        77
    );
    assert!(cloud.title.contains("conntrack_allowance_exceeded +77"));
    // pps did not rise: only the conntrack allowance is named as rising.
    assert!(!cloud.title.contains("pps_allowance_exceeded +"));

    // The healthy host sampled against itself: still all ok, rates 0.
    let snap = Snapshot {
        now: facts("sock-real", 1000),
        earlier: Some(facts("sock-real", 0)),
    };
    for (id, sev) in severities(&ours(&snap)) {
        assert_eq!(sev, Severity::Ok, "{id}");
    }
}

#[test]
fn softnet_rise_across_a_per_cpu_counter_wrap() {
    // softnet_stat counters are 32-bit per CPU (struct softnet_data:
    // unsigned int): CPU 0's dropped going 0xfffffffe -> 3 is +5, and it
    // is happening now.
    use ctdoctor::host::sockets::{Softnet, SoftnetCpu};
    let softnet = |dropped: u64| Softnet {
        cpus: vec![
            SoftnetCpu {
                processed: 100,
                dropped,
                time_squeeze: 0,
            },
            SoftnetCpu {
                processed: 100,
                dropped: 7,
                time_squeeze: 0,
            },
        ],
        processed: 200,
        dropped: dropped + 7,
        time_squeeze: 0,
    };
    let mut earlier = facts("sock-real", 0);
    let mut now = facts("sock-real", 5000);
    if let (Ok(e), Ok(n)) = (&mut earlier.sockets, &mut now.sockets) {
        e.softnet = Ok(softnet(0xffff_fffe));
        n.softnet = Ok(softnet(3));
    }
    let fs = ours(&Snapshot {
        now,
        earlier: Some(earlier),
    });
    let sn = get(&fs, "kernel.softnet_drops");
    assert_eq!(sn.evidence["dropped_rise"], 5, "{sn:#?}");
    assert_eq!(sn.evidence["dropped_per_sec"], 1.0);
    assert_eq!(sn.severity, Severity::Critical);
}

#[test]
fn softnet_cpu_going_offline_is_not_a_rise() {
    // softnet_stat lists online CPUs only: a CPU (with 7 drops) going
    // offline between the readings lowers the sum. That is no drop, and
    // certainly not 2^32 - 7 of them.
    use ctdoctor::host::sockets::{Softnet, SoftnetCpu};
    let cpu = |dropped| SoftnetCpu {
        processed: 100,
        dropped,
        time_squeeze: 0,
    };
    let mut earlier = facts("sock-real", 0);
    let mut now = facts("sock-real", 5000);
    if let (Ok(e), Ok(n)) = (&mut earlier.sockets, &mut now.sockets) {
        e.softnet = Ok(Softnet {
            cpus: vec![cpu(3), cpu(7)],
            processed: 200,
            dropped: 10,
            time_squeeze: 0,
        });
        n.softnet = Ok(Softnet {
            cpus: vec![cpu(3)],
            processed: 100,
            dropped: 3,
            time_squeeze: 0,
        });
    }
    let fs = ours(&Snapshot {
        now,
        earlier: Some(earlier),
    });
    let sn = get(&fs, "kernel.softnet_drops");
    assert_eq!(sn.evidence["dropped_rise"], 0, "{sn:#?}");
    assert_eq!(sn.severity, Severity::Warning);
}

#[test]
fn accept_queue_is_full_only_beyond_its_backlog() {
    // The kernel's sk_acceptq_is_full is `queue > backlog`: listen(fd, 1)
    // holds 2 (measured: check_sockets_kernel). queue == backlog still
    // takes one more connection; backlog + 1 is full; listen(fd, 0) holds 1.
    use ctdoctor::host::sockets::Listener;
    let judge = |listeners: Vec<Listener>| {
        let mut now = facts("sock-real", 0);
        if let Ok(s) = &mut now.sockets {
            if let Ok(d) = &mut s.diag {
                d.listeners = listeners;
            }
        }
        let fs = ours(&Snapshot { now, earlier: None });
        get(&fs, "sockets.listen_overflow").clone()
    };
    let l = |queue, backlog| Listener {
        addr: "0.0.0.0".into(),
        port: 80,
        queue,
        backlog,
        inode: 0,
        owner: None,
    };
    let f = judge(vec![l(511, 511)]);
    assert_eq!(f.severity, Severity::Ok, "{f:#?}");
    assert!(!f.evidence.contains_key("full_listeners"));
    let f = judge(vec![l(512, 511)]);
    assert_eq!(f.severity, Severity::Warning, "{f:#?}");
    assert_eq!(
        f.evidence["full_listeners"][0],
        "0.0.0.0:80 queue 512, backlog 511"
    );
    let f = judge(vec![l(1, 0)]);
    assert_eq!(f.severity, Severity::Warning, "{f:#?}");
    // The full listener's backlog is raised now (capped by somaxconn, which
    // comes first), and kept where its owner sets it.
    let nginx = Listener {
        owner: Some(ctdoctor::host::fds::SocketOwner {
            pid: 812,
            comm: "nginx".into(),
            fd: 6,
        }),
        ..l(9, 8)
    };
    let f = judge(vec![nginx]);
    assert_eq!(
        f.evidence["full_listeners"][0],
        "0.0.0.0:80 (nginx[812]) queue 9, backlog 8"
    );
    let lines: Vec<&str> = f.fix.lines().filter(|l| !l.starts_with('#')).collect();
    let raise = lines
        .iter()
        .position(|l| l.ends_with("tune --listen-backlog 80=4096 --apply"))
        .unwrap_or_else(|| panic!("{}", f.fix));
    let somaxconn = lines
        .iter()
        .position(|l| l.contains("net.core.somaxconn=4096"));
    assert!(
        somaxconn.is_none_or(|s| s < raise),
        "somaxconn first:\n{}",
        f.fix
    );
    assert!(
        f.fix
            .contains("add `backlog=4096` to its `listen … 80` directive"),
        "{}",
        f.fix
    );
    assert!(!f.fix.contains("tcp_max_syn_backlog"), "{}", f.fix);
}

#[test]
fn huge_backlog_in_a_snapshot_never_panics() {
    // netdev_max_backlog comes from a file or a snapshot: doubling it for
    // the fix must not overflow.
    let mut now = facts("sock-busy", 0);
    if let Ok(s) = &mut now.sockets {
        s.sysctls.netdev_max_backlog = Ok(u64::MAX);
    }
    let fs = ours(&Snapshot { now, earlier: None });
    let sn = get(&fs, "kernel.softnet_drops");
    assert_eq!(sn.severity, Severity::Warning);
    assert!(
        sn.fix.contains(&format!("netdev_max_backlog={}", u64::MAX)),
        "{}",
        sn.fix
    );
}

#[test]
fn huge_open_count_in_a_snapshot_never_panics() {
    // The fd probe's numbers come from a snapshot file too: the suggested
    // limit (4 × open, rounded up to a power of two) must not overflow.
    let mut now = facts("sock-busy", 0);
    if let Ok(f) = &mut now.fds {
        if let Ok(u) = &mut f.processes {
            u.top[0].open = u64::MAX;
        }
        f.nr_open = Ok(u64::MAX);
    }
    let fs = ours(&Snapshot { now, earlier: None });
    let p = get(&fs, "fds.process");
    assert_eq!(p.severity, Severity::Critical);
}

#[test]
fn tw_reuse_frees_time_wait_ports() {
    // With tcp_tw_reuse=1 TIME_WAIT tuples are reusable: 26000-20000 = 6000
    // (21.3 %) and 15000-5000 = 10000 (35.4 %) ports held: ok.
    let mut now = facts("sock-busy", 0);
    if let Ok(s) = &mut now.sockets {
        s.sysctls.tcp_tw_reuse = Ok(1);
    }
    let fs = ours(&Snapshot { now, earlier: None });
    let ports = get(&fs, "sockets.ports");
    assert_eq!(ports.severity, Severity::Ok, "{ports:#?}");
    assert_eq!(
        ports.evidence["worst_destination"],
        "10.0.0.5 -> 10.0.1.8:8080"
    );
    assert_eq!(ports.evidence["worst_ports_held"], 10000);
    assert_eq!(ports.evidence["worst_percent"], 35.4);
}

#[test]
fn reserved_ports_shrink_the_range() {
    // 32768-34999 reserved: 28232 - 2232 = 26000 usable; tw_reuse 1, so
    // 10.0.1.8:8080 holds 10000 = 38.5 % and 10.0.1.7:8080 6000: ok; with
    // 12000 more reserved (14000 usable) 10000 is 71.4 %: warning.
    let mut now = facts("sock-busy", 0);
    if let Ok(s) = &mut now.sockets {
        s.sysctls.tcp_tw_reuse = Ok(1);
        s.sysctls.ip_local_reserved_ports = Ok(vec![(32768, 34999)]);
    }
    let fs = ours(&Snapshot {
        now: now.clone(),
        earlier: None,
    });
    let ports = get(&fs, "sockets.ports");
    assert_eq!(ports.evidence["ports_per_destination"], 26000);
    assert_eq!(ports.evidence["reserved_in_range"], 2232);
    assert_eq!(ports.evidence["worst_percent"], 38.5);
    assert_eq!(ports.severity, Severity::Ok);
    if let Ok(s) = &mut now.sockets {
        s.sysctls.ip_local_reserved_ports = Ok(vec![(32768, 34999), (40000, 51999)]);
    }
    let fs = ours(&Snapshot { now, earlier: None });
    let ports = get(&fs, "sockets.ports");
    assert_eq!(ports.evidence["ports_per_destination"], 14000);
    assert_eq!(ports.evidence["worst_percent"], 71.4);
    assert_eq!(ports.severity, Severity::Warning);
    // tw_reuse is already 1: the fix does not suggest it again.
    assert!(!ports.fix.contains("tcp_tw_reuse=1"), "{}", ports.fix);
}

#[test]
fn ena_without_exceeded_allowance_is_ok() {
    let fs = single("sock-ena-ok");
    let cloud = get(&fs, "cloud.allowance");
    assert_eq!(cloud.severity, Severity::Ok, "{cloud:#?}");
    assert_eq!(
        cloud.evidence["conntrack_allowance_available"]["ens5"],
        136812
    );
    assert_eq!(
        cloud.evidence["counters"]["ens5.pps_allowance_exceeded"]["value"],
        0
    );
    assert_eq!(cloud.evidence["counters"].as_object().unwrap().len(), 5);
}

#[test]
fn nothing_readable_means_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    let fs = ours(&Snapshot {
        now: ctdoctor::host::read_facts(&Root::live_at(dir.path().to_path_buf())),
        earlier: None,
    });
    for (id, sev) in severities(&fs) {
        let f = get(&fs, id);
        assert_eq!(sev, Severity::Info, "{id}: {f:#?}");
        assert!(f.title.starts_with("not checked: "), "{id}: {}", f.title);
    }
}

#[test]
fn probes_missing_but_files_present() {
    // A tree (or an old snapshot) with the /proc files but no probe results:
    // the rules that need a probe say so, the others still judge.
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("sock-busy");
    for rel in [
        "proc/net/sockstat",
        "proc/net/netstat",
        "proc/net/softnet_stat",
        "proc/net/dev",
        "proc/sys/net/ipv4/tcp_max_tw_buckets",
        "proc/sys/net/ipv4/ip_local_port_range",
        "proc/sys/fs/file-nr",
    ] {
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(rel), to).unwrap();
    }
    let fs = ours(&Snapshot {
        now: ctdoctor::host::read_facts(&Root::live_at(dir.path().to_path_buf())),
        earlier: None,
    });
    let want = [
        ("sockets.time_wait", Severity::Warning),
        ("sockets.ports", Severity::Info),
        // Overflows since boot, no listener readable as full now: info.
        ("sockets.listen_overflow", Severity::Info),
        ("kernel.softnet_drops", Severity::Warning),
        ("nic.drops", Severity::Warning),
        ("cloud.allowance", Severity::Info),
        ("fds.system", Severity::Critical),
        ("fds.process", Severity::Info),
    ];
    assert_eq!(severities(&fs), want, "{fs:#?}");
    assert!(get(&fs, "sockets.ports")
        .title
        .contains("probe:sock_diag_tcp"));
}

mod arbitrary_bytes {
    use super::*;
    use proptest::prelude::*;

    const FILES: [&str; 11] = [
        "proc/net/sockstat",
        "proc/net/sockstat6",
        "proc/net/netstat",
        "proc/net/softnet_stat",
        "proc/net/dev",
        "proc/sys/net/ipv4/ip_local_port_range",
        "proc/sys/fs/file-nr",
        "probe/sock_diag_tcp",
        "probe/fd_usage",
        "probe/ethtool_stats",
        "probe/rtnl_link_stats64",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any bytes in any of the files and probes: readers and rules
        /// never panic, and every rule still reports exactly once.
        #[test]
        fn readers_and_rules_never_panic(
            blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), FILES.len())
        ) {
            let dir = tempfile::tempdir().unwrap();
            for (rel, b) in FILES.iter().zip(&blobs) {
                let p = dir.path().join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, b).unwrap();
            }
            let now = ctdoctor::host::read_facts(&Root::live_at(dir.path().to_path_buf()));
            let snap = Snapshot { earlier: Some(now.clone()), now };
            let fs = ours(&snap);
            prop_assert_eq!(fs.len(), IDS.len());
        }
    }
}

#[test]
fn a_namespace_without_processes_is_ok_for_fds() {
    // A pinned netns nobody lives in: every process is elsewhere (ok),
    // unlike a scan where processes could not be read (not checked).
    let mut now = facts("sock-real", 0);
    let set = |now: &mut Facts, skipped: u64| {
        if let Ok(f) = &mut now.fds {
            f.processes = Ok(ctdoctor::host::fds::FdUsage {
                scanned: 0,
                skipped,
                other_netns: 90,
                // A protected pid 1: not known to live here.
                unknown_netns: 1,
                truncated: false,
                top: vec![],
            });
        }
    };
    set(&mut now, 0);
    let fs = ours(&Snapshot {
        now: now.clone(),
        earlier: None,
    });
    let f = get(&fs, "fds.process");
    assert_eq!(f.severity, Severity::Ok, "{f:#?}");
    assert!(
        f.title
            .contains("no process lives in this network namespace (90 in others, 1 whose"),
        "{}",
        f.title
    );
    set(&mut now, 3);
    let fs = ours(&Snapshot { now, earlier: None });
    let f = get(&fs, "fds.process");
    assert_eq!(f.severity, Severity::Info);
    assert!(f.title.starts_with("not checked: "));
}
