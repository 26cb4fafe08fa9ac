//! Kernel tests for the sockets, fds and nic readers (root; fresh netns
//! each). Oracles: `ss -tan`, /proc/net/sockstat and `nstat` read by
//! `ip netns exec` (another process in the namespace), `ip -j -s link`
//! (rtnetlink), `ethtool -S`/`-i`, getrlimit(2) and /proc/self/fd.
//! Counts are compared while no traffic runs.
//!
//! The tests of this file take one in-process mutex as well as the shared
//! kernel lock, so fd counts are not disturbed by a sibling test.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use ctdoctor::checks::{self, Severity};
use ctdoctor::host::{self, netns::Target, Root};
use ctdoctor::snapshot::Snapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn snapshot_of(ns: &testns::Netns) -> Snapshot {
    host::collect_live(Path::new("/"), &Target::Named(ns.name.clone()), None, false)
        .expect("collect in netns")
        .0
}

/// `TCP: inuse 1 orphan 0 tw 0 ...` -> value of `key` (oracle side, by hand).
fn sockstat_value(text: &str, line: &str, key: &str) -> u64 {
    let l = text
        .lines()
        .find(|l| l.starts_with(&format!("{line}:")))
        .unwrap_or_else(|| panic!("no {line} line in {text}"));
    let words: Vec<&str> = l.split_whitespace().collect();
    let i = words.iter().position(|w| *w == key).expect("key");
    words[i + 1].parse().expect("number")
}

fn ss_state(s: &str) -> &'static str {
    match s {
        "ESTAB" => "ESTABLISHED",
        "SYN-SENT" => "SYN_SENT",
        "SYN-RECV" => "SYN_RECV",
        "FIN-WAIT-1" => "FIN_WAIT1",
        "FIN-WAIT-2" => "FIN_WAIT2",
        "TIME-WAIT" => "TIME_WAIT",
        "UNCONN" => "CLOSE",
        "CLOSE-WAIT" => "CLOSE_WAIT",
        "LAST-ACK" => "LAST_ACK",
        "LISTEN" => "LISTEN",
        "CLOSING" => "CLOSING",
        other => panic!("unknown ss state {other}"),
    }
}

fn ss_addr(s: &str) -> (IpAddr, u16) {
    let (a, p) = s.rsplit_once(':').expect("addr:port");
    let a = a.trim_start_matches('[').trim_end_matches(']');
    let a = a.split('%').next().unwrap_or(a);
    (a.parse().expect("ip"), p.parse().expect("port"))
}

type Groups = BTreeMap<(String, String, u16), (u64, u64)>;

/// States and outbound groups from `ss -tan`, computed independently.
fn ss_oracle(ns: &testns::Netns) -> (BTreeMap<String, u64>, Groups) {
    let out = ns.exec_text("ss", &["-tanH"]);
    let mut states = BTreeMap::new();
    let mut rows = Vec::new();
    let mut listen_ports = BTreeSet::new();
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 5 {
            continue;
        }
        let st = ss_state(w[0]);
        *states.entry(st.to_string()).or_insert(0) += 1;
        let (lip, lport) = ss_addr(w[3]);
        if st == "LISTEN" {
            listen_ports.insert(lport);
            continue;
        }
        let (pip, pport) = ss_addr(w[4]);
        rows.push((st, lip, lport, pip, pport));
    }
    let mut groups = Groups::new();
    for (st, lip, lport, pip, pport) in rows {
        if listen_ports.contains(&lport) {
            continue;
        }
        let e = groups
            .entry((lip.to_string(), pip.to_string(), pport))
            .or_insert((0, 0));
        e.0 += 1;
        if st == "TIME_WAIT" {
            e.1 += 1;
        }
    }
    (states, groups)
}

struct Conns {
    _keep: Vec<TcpStream>,
    _listeners: Vec<TcpListener>,
    v4_port: u16,
    v6_port: Option<u16>,
}

/// In the netns: a listener on 127.0.0.1 with 30 clients (10 of them closed
/// client-first, so they end in TIME_WAIT on the client side), and one on
/// [::1] with 5 clients when IPv6 is there.
fn open_connections(ns: &testns::Netns) -> Conns {
    netns_run(ns, || {
        let mut keep = Vec::new();
        let mut listeners = Vec::new();
        let l4 = TcpListener::bind("127.0.0.1:0").expect("bind v4");
        let v4_port = l4.local_addr().unwrap().port();
        let mut to_close = Vec::new();
        for i in 0..30 {
            let c = TcpStream::connect(("127.0.0.1", v4_port)).expect("connect");
            let (s, _) = l4.accept().expect("accept");
            if i < 10 {
                to_close.push((c, s));
            } else {
                keep.push(c);
                keep.push(s);
            }
        }
        for (c, s) in to_close {
            drop(c); // client closes first: the client side gets TIME_WAIT
            drop(s);
        }
        listeners.push(l4);
        let v6_port = match TcpListener::bind("[::1]:0") {
            Ok(l6) => {
                let p = l6.local_addr().unwrap().port();
                for _ in 0..5 {
                    keep.push(TcpStream::connect(("::1", p)).expect("connect v6"));
                    keep.push(l6.accept().expect("accept v6").0);
                }
                listeners.push(l6);
                Some(p)
            }
            Err(_) => None,
        };
        Conns {
            _keep: keep,
            _listeners: listeners,
            v4_port,
            v6_port,
        }
    })
}

fn netns_run<T: Send>(ns: &testns::Netns, f: impl FnOnce() -> T + Send) -> T {
    host::netns::run_in(&Target::Named(ns.name.clone()), f).expect("run in netns")
}

/// Wait (bounded) until the namespace's sockstat shows `tw` TIME_WAIT sockets.
fn wait_tw(ns: &testns::Netns, tw: u64) {
    for _ in 0..100 {
        let s = ns.exec_text("cat", &["/proc/net/sockstat"]);
        if sockstat_value(&s, "TCP", "tw") == tw {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("TIME_WAIT never reached {tw}");
}

#[test]
fn sockstat_and_sock_diag_match_the_kernel_and_ss() {
    if !testns::kernel_test("sockstat_and_sock_diag_match_the_kernel_and_ss") {
        return;
    }
    let _g = serial();
    let _l = testns::lock_shared();
    let ns = testns::Netns::new("sock");
    let conns = open_connections(&ns);
    wait_tw(&ns, 10);
    // Let FIN_WAIT/LAST_ACK stragglers settle before comparing.
    for _ in 0..100 {
        let (st, _) = ss_oracle(&ns);
        if !st.contains_key("LAST_ACK") && !st.contains_key("FIN_WAIT2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let snap = snapshot_of(&ns);
    let s = snap.now.sockets.as_ref().expect("sockets");
    let oracle = ns.exec_text("cat", &["/proc/net/sockstat"]);
    let oracle6 = ns.exec_text("cat", &["/proc/net/sockstat6"]);
    assert_eq!(s.tcp("tw").unwrap(), sockstat_value(&oracle, "TCP", "tw"));
    assert_eq!(s.tcp("tw").unwrap(), 10);
    assert_eq!(
        s.tcp("inuse").unwrap(),
        sockstat_value(&oracle, "TCP", "inuse")
    );
    assert_eq!(
        s.sockstat6.as_ref().unwrap()["TCP6"]["inuse"],
        sockstat_value(&oracle6, "TCP6", "inuse")
    );
    // The host's own sockets are not in this namespace's count.
    let v6 = conns.v6_port.map_or(0, |_| 1);
    assert_eq!(
        s.tcp("inuse").unwrap(),
        1 + 40,
        "listener + 20 client/server pairs (v4)"
    );

    let d = s.diag.as_ref().expect("sock_diag");
    let (ss_states, ss_groups) = ss_oracle(&ns);
    assert_eq!(d.states, ss_states, "states: ours vs ss -tan");
    assert_eq!(d.states["TIME_WAIT"], 10);
    assert_eq!(d.states["ESTABLISHED"], 40 + 10 * v6);
    assert_eq!(d.states["LISTEN"], 1 + v6);
    let ours: Groups = d
        .destinations
        .iter()
        .map(|x| {
            (
                (x.src.clone(), x.dst.clone(), x.dport),
                (x.sockets, x.time_wait),
            )
        })
        .collect();
    assert_eq!(ours, ss_groups, "destinations: ours vs ss -tan");
    assert_eq!(
        ours[&(
            "127.0.0.1".to_string(),
            "127.0.0.1".to_string(),
            conns.v4_port
        )],
        (30, 10)
    );
    if let Some(p) = conns.v6_port {
        assert_eq!(ours[&("::1".to_string(), "::1".to_string(), p)], (5, 0));
    }
    assert_eq!(d.destinations_seen, ss_groups.len() as u64);
    assert_eq!(d.listeners_seen, 1 + v6);

    // The rules run on it: 30 of 28232 ports, nothing near any limit.
    let fs = checks::rendered(checks::sockets::run, &snap);
    let ports = fs.iter().find(|f| f.id == "sockets.ports").unwrap();
    assert_eq!(ports.severity, Severity::Ok, "{ports:#?}");
    assert_eq!(ports.evidence["worst_sockets"], 30);
    drop(conns);
}

#[test]
fn listen_overflow_is_seen_and_rated() {
    if !testns::kernel_test("listen_overflow_is_seen_and_rated") {
        return;
    }
    let _g = serial();
    let _l = testns::lock_shared();
    let ns = testns::Netns::new("lovf");
    // A listener with backlog 1 that never accepts, then clients: once its
    // accept queue is full, SYNs are dropped and ListenOverflows rises.
    let (lfd, port) = netns_run(&ns, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        use std::os::fd::AsRawFd;
        // SAFETY: re-listen on our own socket with a smaller backlog.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 1) }, 0);
        (l, port)
    });
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let flood = |n: usize| -> Vec<TcpStream> {
        netns_run(&ns, || {
            (0..n)
                .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(150)).ok())
                .collect()
        })
    };
    let mut keep = flood(4);
    let read = |elapsed_ms| {
        netns_run(&ns, || {
            let mut f = ctdoctor::host::read_facts(&Root::live());
            f.elapsed_ms = elapsed_ms;
            f
        })
    };
    let first = read(0);
    keep.extend(flood(3));
    let second = read(1000);
    let nstat = ns.exec_text(
        "nstat",
        &["-asz", "TcpExtListenOverflows", "TcpExtListenDrops"],
    );
    let oracle = |name: &str| -> u64 {
        nstat
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {nstat}"))
    };
    let s = second.sockets.as_ref().unwrap();
    assert_eq!(
        s.tcp_ext("ListenOverflows").unwrap(),
        oracle("TcpExtListenOverflows")
    );
    assert_eq!(
        s.tcp_ext("ListenDrops").unwrap(),
        oracle("TcpExtListenDrops")
    );
    let before = first
        .sockets
        .as_ref()
        .unwrap()
        .tcp_ext("ListenOverflows")
        .unwrap();
    assert!(before >= 1, "the first flood overflowed");
    assert!(s.tcp_ext("ListenOverflows").unwrap() > before);
    // The listener's accept queue is full now (backlog 1 holds 2).
    let diag = s.diag.as_ref().unwrap();
    let l = diag.listeners.iter().find(|l| l.port == port).unwrap();
    assert_eq!((l.queue, l.backlog), (2, 1), "{l:?}");

    let once = checks::rendered(
        checks::sockets::run,
        &Snapshot {
            now: first.clone(),
            earlier: None,
        },
    );
    let f = once
        .iter()
        .find(|f| f.id == "sockets.listen_overflow")
        .unwrap();
    assert_eq!(f.severity, Severity::Warning, "{f:#?}");
    let sampled = checks::rendered(
        checks::sockets::run,
        &Snapshot {
            now: second,
            earlier: Some(first),
        },
    );
    let f = sampled
        .iter()
        .find(|f| f.id == "sockets.listen_overflow")
        .unwrap();
    assert_eq!(f.severity, Severity::Critical, "{f:#?}");
    assert!(f.evidence["ListenOverflows_rise"].as_u64().unwrap() >= 1);
    drop(keep);
    drop(lfd);
}

/// `ip -j -s link` of a namespace: name -> (ifindex, rx packets, rx bytes, tx packets).
fn ip_links(ns: &testns::Netns) -> BTreeMap<String, (u64, u64, u64, u64)> {
    let out = testns::run_text("ip", &["-j", "-s", "-n", &ns.name, "link", "show"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = &l["stats64"];
            (
                l["ifname"].as_str().unwrap().to_string(),
                (
                    l["ifindex"].as_u64().unwrap(),
                    s["rx"]["packets"].as_u64().unwrap(),
                    s["rx"]["bytes"].as_u64().unwrap(),
                    s["tx"]["packets"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// `ethtool -S IFACE` in the namespace, parsed; None when it has no stats.
fn ethtool_s(ns: &testns::Netns, iface: &str) -> Option<BTreeMap<String, u64>> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "ethtool", "-S", iface])
        .output()
        .expect("ethtool");
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.trim().split_once(": ")?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect(),
    )
}

#[test]
fn each_namespace_has_its_own_interfaces_and_ethtool_stats() {
    if !testns::kernel_test("each_namespace_has_its_own_interfaces_and_ethtool_stats") {
        return;
    }
    if !testns::need_tool("ethtool") {
        return;
    }
    let _g = serial();
    let _l = testns::lock_shared();
    let a = testns::Netns::new("nica");
    let b = testns::Netns::new("nicb");
    // Quiet interfaces: no IPv6 autoconfiguration chatter on the veths.
    a.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    a.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    // (This kernel has no dummy driver; ifb is built.)
    a.exec("ip", &["link", "add", "i0", "type", "ifb"]);
    a.exec(
        "ip",
        &["link", "add", "va", "type", "veth", "peer", "name", "vb"],
    );
    for i in ["i0", "va", "vb"] {
        a.exec("ip", &["link", "set", i, "up"]);
    }
    // Some loopback traffic in A only.
    netns_run(&a, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
    });
    std::thread::sleep(Duration::from_millis(100)); // FIN exchange done

    let sa = snapshot_of(&a);
    let sb = snapshot_of(&b);
    let na = sa.now.nic.as_ref().expect("nic a");
    let nb = sb.now.nic.as_ref().expect("nic b");
    let la = ip_links(&a);
    let lb = ip_links(&b);
    assert_eq!(
        na.dev.keys().collect::<BTreeSet<_>>(),
        la.keys().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        na.dev.keys().map(String::as_str).collect::<Vec<_>>(),
        ["i0", "lo", "va", "vb"]
    );
    assert_eq!(
        nb.dev.keys().map(String::as_str).collect::<Vec<_>>(),
        ["lo"]
    );
    assert_eq!(
        nb.dev.keys().collect::<BTreeSet<_>>(),
        lb.keys().collect::<BTreeSet<_>>()
    );
    for (ours, theirs) in [(na, &la), (nb, &lb)] {
        for (name, c) in &ours.dev {
            let (_, rxp, rxb, txp) = theirs[name];
            assert_eq!(
                (c.rx_packets, c.rx_bytes, c.tx_packets),
                (rxp, rxb, txp),
                "{name}"
            );
        }
    }
    // rtnetlink IFLA_STATS64 (our probe) vs `ip -s -s -j link` (iproute2's).
    for (ours, ns) in [(na, &a), (nb, &b)] {
        let ls = ours.link_stats.as_ref().expect("rtnl link stats");
        let out = testns::run_text("ip", &["-j", "-s", "-s", "-n", &ns.name, "link", "show"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let links = v.as_array().unwrap();
        assert_eq!(ls.len(), links.len());
        for l in links {
            let name = l["ifname"].as_str().unwrap();
            let st = &l["stats64"];
            let mine = &ls[name];
            for (k, dir, theirs) in [
                ("rx_packets", "rx", "packets"),
                ("rx_bytes", "rx", "bytes"),
                ("rx_dropped", "rx", "dropped"),
                ("rx_missed_errors", "rx", "missed_errors"),
                ("rx_over_errors", "rx", "over_errors"),
                ("rx_fifo_errors", "rx", "fifo_errors"),
                ("tx_packets", "tx", "packets"),
                ("tx_dropped", "tx", "dropped"),
            ] {
                assert_eq!(mine[k], st[dir][theirs].as_u64().unwrap(), "{name} {k}");
            }
            // /proc/net/dev's rx drop = rx_dropped + rx_missed_errors.
            assert_eq!(
                ours.dev[name].rx_drop,
                mine["rx_dropped"] + mine["rx_missed_errors"]
            );
        }
    }
    assert!(na.dev["lo"].rx_packets > 0);
    assert_eq!(nb.dev["lo"].rx_packets, 0);

    // ethtool: veth and ifb have driver statistics, lo has none.
    let ea = na.ethtool.as_ref().expect("ethtool a");
    for (v, driver) in [("va", "veth"), ("vb", "veth"), ("i0", "ifb")] {
        let ours = &ea.ifaces[v];
        assert_eq!(ours.driver, driver);
        let oracle = ethtool_s(&a, v).expect("ethtool -S");
        assert_eq!(ours.stats, oracle, "{v}: ours vs ethtool -S");
        assert_eq!(ours.n_stats as usize, oracle.len());
        assert!(!ours.filtered);
    }
    assert_eq!(ea.ifaces["va"].stats["peer_ifindex"], la["vb"].0);
    assert!(ethtool_s(&a, "lo").is_none(), "lo has no stats");
    assert_eq!(ea.unsupported, ["lo"]);
    let eb = nb.ethtool.as_ref().expect("ethtool b");
    assert!(eb.ifaces.is_empty());
    assert_eq!(eb.unsupported, ["lo"]);
    let drv = a.exec_text("ethtool", &["-i", "va"]);
    assert!(drv.lines().any(|l| l == "driver: veth"));

    // The rules: no drops, veth is not a cloud NIC.
    let fs = checks::rendered(checks::nic::run, &sa);
    assert!(fs.iter().all(|f| f.severity == Severity::Ok), "{fs:#?}");
}

#[test]
fn fd_facts_match_the_kernel() {
    if !testns::kernel_test("fd_facts_match_the_kernel") {
        return;
    }
    let _g = serial();
    let _l = testns::lock_shared();
    let ours = host::fds::read(&Root::live()).expect("fds");
    let oracle = std::fs::read_to_string("/proc/sys/fs/file-nr").unwrap();
    let o: Vec<u64> = oracle
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let nr = ours.file_nr.unwrap();
    assert_eq!(nr.max, o[2]);
    assert!(
        nr.allocated.abs_diff(o[0]) < 500,
        "file-nr drift: ours {} vs {}",
        nr.allocated,
        o[0]
    );
    assert_eq!(ours.file_max.unwrap(), o[2]);

    // A process holding 20 fds more than its stdio (the scan never counts
    // the process scanning: issue 19, its own fds are not the machine's).
    let mut holder = std::process::Command::new("bash")
        .args([
            "-c",
            "for i in $(seq 10 29); do eval \"exec $i</proc/self/stat\"; done; exec sleep 30",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let hp = holder.id();
    for _ in 0..250 {
        let comm = std::fs::read_to_string(format!("/proc/{hp}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let scan = host::fds::scan(Path::new("/proc"), usize::MAX, false).expect("scan");
    let me = std::process::id();
    assert!(scan.top.iter().all(|p| p.pid != me), "never itself");
    let held = scan.top.iter().find(|p| p.pid == hp).expect("the holder");
    // Oracle: the entries of its /proc/PID/fd.
    let listed = std::fs::read_dir(format!("/proc/{hp}/fd")).unwrap().count() as u64;
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(held.open, listed);
    assert!(held.open >= 20);
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    assert_eq!(
        (held.soft, held.hard),
        (rl.rlim_cur, rl.rlim_max),
        "inherited"
    );
    assert_eq!(held.comm, "sleep");

    // Per netns: a process living in a fresh namespace is the only one
    // the scan from inside that namespace sees.
    let ns = testns::Netns::new("fds");
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "20"])
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    let mut seen = None;
    for _ in 0..100 {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            let u = netns_run(&ns, || {
                host::fds::scan(Path::new("/proc"), 10, true).unwrap()
            });
            seen = Some(u);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let u = seen.expect("sleep started in the netns");
    assert_eq!(u.scanned, 1, "{u:?}");
    assert!(
        u.other_netns >= 1,
        "this test process lives elsewhere: {u:?}"
    );
    assert_eq!(u.top[0].pid, pid);
    assert_eq!(u.top[0].comm, "sleep");
}

#[test]
fn a_recorded_snapshot_replays_the_same_findings() {
    if !testns::kernel_test("a_recorded_snapshot_replays_the_same_findings") {
        return;
    }
    let _g = serial();
    let _l = testns::lock_shared();
    let ns = testns::Netns::new("replay");
    let conns = open_connections(&ns);
    wait_tw(&ns, 10);
    let (live, caps) =
        host::collect_live(Path::new("/"), &Target::Named(ns.name.clone()), None, true)
            .expect("collect");
    for key in [
        "probe:sock_diag_tcp",
        "probe:fd_usage",
        "probe:ethtool_stats",
        "probe:rtnl_link_stats64",
    ] {
        assert!(caps[0].items.contains_key(key), "{key} recorded");
    }
    let replayed = host::from_captures(caps).unwrap();
    let run = |s: &Snapshot| {
        let mut v = checks::rendered(checks::sockets::run, s);
        v.extend(checks::rendered(checks::fds::run, s));
        v.extend(checks::rendered(checks::nic::run, s));
        v
    };
    assert_eq!(run(&live), run(&replayed));
    assert_eq!(
        live.now.sockets.as_ref().unwrap().diag,
        replayed.now.sockets.as_ref().unwrap().diag
    );
    drop(conns);
}

#[test]
fn real_port_and_time_wait_pressure_trigger_the_rules() {
    if !testns::kernel_test("real_port_and_time_wait_pressure_trigger_the_rules") {
        return;
    }
    let _g = serial();
    let _l = testns::lock_shared();
    let ns = testns::Netns::new("ports");
    // Per-netns knobs: 20 ephemeral ports, no TIME_WAIT reuse, room for 5 TIME_WAIT.
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40019");
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0");
    ns.sysctl("net.ipv4.tcp_max_tw_buckets", "5");
    let (keep, exhausted) = netns_run(&ns, || {
        let l = TcpListener::bind("127.0.0.1:8080").expect("bind 8080");
        // 10 connections closed client-first: 5 stay in TIME_WAIT, 5 overflow.
        for _ in 0..10 {
            let c = TcpStream::connect("127.0.0.1:8080").expect("connect");
            let s = l.accept().expect("accept").0;
            drop(c);
            drop(s);
        }
        std::thread::sleep(Duration::from_millis(200));
        // 15 more kept open: 5 + 15 = all 20 ports of the range.
        let mut keep = vec![];
        for _ in 0..15 {
            keep.push(TcpStream::connect("127.0.0.1:8080").expect("connect"));
            keep.push(l.accept().expect("accept").0);
        }
        // The premise of sockets.ports: the next connect has no port left.
        let next = TcpStream::connect("127.0.0.1:8080");
        let exhausted = next
            .err()
            .and_then(|e| e.raw_os_error())
            .is_some_and(|e| e == libc::EADDRNOTAVAIL);
        (keep, (l, exhausted))
    });
    let (listener, exhausted) = exhausted;
    assert!(exhausted, "connect #21 must fail with EADDRNOTAVAIL");

    let snap = snapshot_of(&ns);
    let s = snap.now.sockets.as_ref().unwrap();
    let oracle = ns.exec_text("cat", &["/proc/net/sockstat"]);
    assert_eq!(s.tcp("tw").unwrap(), sockstat_value(&oracle, "TCP", "tw"));
    assert_eq!(s.tcp("tw").unwrap(), 5);
    let nstat = ns.exec_text("nstat", &["-asz", "TcpExtTCPTimeWaitOverflow"]);
    let overflow: u64 = nstat
        .lines()
        .find(|l| l.starts_with("TcpExtTCPTimeWaitOverflow"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("nstat");
    assert_eq!(s.tcp_ext("TCPTimeWaitOverflow").unwrap(), overflow);
    assert_eq!(overflow, 5);
    let (_, ss_groups) = ss_oracle(&ns);
    let key = ("127.0.0.1".to_string(), "127.0.0.1".to_string(), 8080u16);
    assert_eq!(ss_groups[&key], (20, 5));

    let fs = checks::rendered(checks::sockets::run, &snap);
    let ports = fs.iter().find(|f| f.id == "sockets.ports").unwrap();
    assert_eq!(ports.severity, Severity::Critical, "{ports:#?}");
    assert_eq!(ports.evidence["ports_per_destination"], 20);
    assert_eq!(ports.evidence["worst_ports_held"], 20);
    assert_eq!(ports.evidence["worst_percent"], 100.0);
    assert!(ports.fix.contains("tcp_tw_reuse=1"));
    let tw = fs.iter().find(|f| f.id == "sockets.time_wait").unwrap();
    assert_eq!(tw.severity, Severity::Warning, "{tw:#?}");
    assert_eq!(tw.evidence["tw_percent_of_max"], 100.0);
    drop(keep);
    drop(listener);
}
