//! Kernel tests for the conntrack readers and checks (root; fresh netns
//! each). Oracles: `conntrack -C` / `-S` run inside the namespace, the
//! kernel's own files read with `ip netns exec ... cat`, and `dmesg` for
//! log lines — never our own code. No traffic runs while comparing.
//!
//! The acceptance test fills a namespace's table to the global max with
//! ASSURED entries (early_drop cannot evict them), sends real SYNs into it
//! so the kernel drops them and logs "table full in netns N", then runs the
//! real binary.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, json_finding};

use ctdoctor::host::{self, netns::Target};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testns::Netns;

/// `conntrack -S` summed over CPUs: name -> value.
fn conntrack_s(ns: &Netns) -> BTreeMap<String, u64> {
    let text = ns.exec_text("conntrack", &["-S"]);
    let mut m = BTreeMap::new();
    for line in text.lines() {
        for kv in line.split_whitespace() {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            if k == "cpu" {
                continue;
            }
            *m.entry(k.to_string()).or_insert(0) += v.parse::<u64>().expect("-S value");
        }
    }
    m
}

fn conntrack_c(ns: &Netns) -> u64 {
    ns.exec_text("conntrack", &["-C"])
        .trim()
        .parse()
        .expect("conntrack -C")
}

/// Write a `conntrack -R` batch of `n` ASSURED established TCP entries.
fn batch(path: &Path, n: u64, timeout: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        writeln!(
            f,
            "-I -p tcp -s 10.{a}.{b}.{c} -d 10.255.0.1 --sport 40000 --dport 80 \
             --state ESTABLISHED -u SEEN_REPLY,ASSURED -t {timeout}"
        )
        .unwrap();
    }
    f.flush().unwrap();
}

/// Number of "table full in netns INODE," lines in `dmesg` (the oracle).
fn dmesg_table_full(inode: u64) -> u64 {
    let text = testns::run_text("dmesg", &[]);
    let needle = format!("table full in netns {inode},");
    text.lines().filter(|l| l.contains(&needle)).count() as u64
}

fn dmesg_table_full_plain() -> u64 {
    let text = testns::run_text("dmesg", &[]);
    text.lines()
        .filter(|l| l.contains("conntrack: table full, dropping packet"))
        .count() as u64
}

#[test]
fn readers_match_kernel_in_a_netns() {
    if !testns::kernel_test("readers_match_kernel_in_a_netns") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("ctread");
    // A per-netns timeout that differs from the host's.
    let host_tw =
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait")
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap();
    let ours_tw = if host_tw == 371 { 372 } else { 371 };
    ns.sysctl(
        "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
        &ours_tw.to_string(),
    );
    ns.sysctl("net.netfilter.nf_conntrack_acct", "1");

    // 50 entries through ctnetlink (each counts as one `insert`).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.txt");
    batch(&file, 50, 3600);
    ns.load_batch(&file);

    // Real loopback traffic: 5 connections kept open (ESTABLISHED entries
    // do not expire while we compare), 3 closed (TIME_WAIT, ours_tw s).
    let target = Target::Named(ns.name.clone());
    let held = host::netns::run_in(&target, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut held = Vec::new();
        for i in 0..8 {
            let c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            let (s, _) = l.accept().unwrap();
            if i < 5 {
                held.push((c, s));
            } else {
                drop(c);
                drop(s);
            }
        }
        (l, held)
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let (snap, _) = host::collect_live(Path::new("/"), &target, None, false).unwrap();
    let ct = snap.now.conntrack.clone().expect("conntrack fact");
    let stat = snap.now.stat.clone().expect("stat fact");
    let count_c = conntrack_c(&ns);
    let s = conntrack_s(&ns);
    let count_file: u64 = ns.count();

    // Count: ours = conntrack -C = the netns's file; 50 inserted + 8 flows.
    assert_eq!(ct.count, count_c);
    assert_eq!(ct.count, count_file);
    assert_eq!(ct.count, 58, "50 inserted + 8 loopback flows");
    assert_eq!(stat.entries, Some(count_c));
    // Every counter conntrack -S prints, under its /proc name.
    for (nl, v) in &s {
        let proc_name = host::stat::proc_name(nl);
        assert_eq!(stat.get(proc_name), Some(*v), "{nl} (= /proc {proc_name})");
    }
    assert_eq!(
        s.get("insert"),
        Some(&50),
        "insert counts ctnetlink inserts only"
    );
    // Timeouts: every nf_conntrack_*timeout* file as the netns shows it.
    let listing = ns.exec_text("ls", &["/proc/sys/net/netfilter"]);
    let mut n_timeouts = 0;
    for name in listing.split_whitespace() {
        let Some(short) = name.strip_prefix("nf_conntrack_") else {
            continue;
        };
        if !short.contains("timeout") {
            continue;
        }
        n_timeouts += 1;
        let v: u64 = ns
            .proc_sys(&format!("net/netfilter/{name}"))
            .parse()
            .unwrap();
        assert_eq!(ct.timeout(short), Some(v), "{name}");
    }
    assert_eq!(ct.timeouts.len(), n_timeouts);
    assert_eq!(ct.timeout("tcp_timeout_time_wait"), Some(ours_tw));
    assert_ne!(ct.timeout("tcp_timeout_time_wait"), Some(host_tw));
    // The other knobs.
    for (name, ours) in [
        ("nf_conntrack_max", ct.max.clone()),
        ("nf_conntrack_buckets", ct.buckets.clone()),
        ("nf_conntrack_acct", ct.acct.clone()),
        ("nf_conntrack_events", ct.events.clone()),
        ("nf_conntrack_tcp_loose", ct.tcp_loose.clone()),
        ("nf_conntrack_tcp_be_liberal", ct.tcp_be_liberal.clone()),
        ("nf_conntrack_tcp_max_retrans", ct.tcp_max_retrans.clone()),
        ("nf_conntrack_checksum", ct.checksum.clone()),
        ("nf_conntrack_expect_max", ct.expect_max.clone()),
        ("nf_conntrack_log_invalid", ct.log_invalid.clone()),
    ] {
        let v: u64 = ns
            .proc_sys(&format!("net/netfilter/{name}"))
            .parse()
            .unwrap();
        assert_eq!(ours, Ok(v), "{name}");
    }
    assert_eq!(ct.acct, Ok(1), "the netns's acct, set above");
    let hs: u64 = std::fs::read_to_string("/sys/module/nf_conntrack/parameters/hashsize")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ct.hashsize, Ok(hs));
    // The netns identity.
    let id = snap.now.netns.clone().unwrap();
    assert_eq!(id.inode, Some(ns.inode()));
    assert_eq!(id.name.as_deref(), Some(ns.name.as_str()));
    drop(held);
}

#[test]
fn acceptance_table_full_in_netns() {
    if !testns::kernel_test("acceptance_table_full_in_netns") {
        return;
    }
    // Exclusive: no other test's traffic or log lines while the table is full.
    let _lock = testns::lock_exclusive();
    let max: u64 = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (1..=2_000_000).contains(&max),
        "global max {max}: this test fills a table that big"
    );
    let ns = Netns::new("ctfull");
    let inode = ns.inode();
    // Kernels before 6.17 name no netns (the kernel matrix: 5.10 to 6.12):
    // there the lines are unattributed, and check must say so.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let names_netns = host::system::parse_kernel_version(release.trim())
        .is_some_and(|v| v >= ctdoctor::kernel::NETNS_IN_LOG);
    // Lines naming this inode before the namespace existed: an earlier
    // namespace's (inodes are reused), not ours.
    let before = dmesg_table_full(inode);
    let before_plain = dmesg_table_full_plain();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fill.txt");
    batch(&file, max, 86_400);
    ns.load_batch(&file);
    assert_eq!(ns.count(), max, "the netns table holds max entries");

    // Real SYNs into the full table: a listener inside the netns that
    // would accept, and bounded connects that must fail.
    let target = Target::Named(ns.name.clone());
    let attempts = 5;
    let failed = host::netns::run_in(&target, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = l.local_addr().unwrap();
        (0..attempts)
            .filter(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err())
            .count()
    })
    .unwrap();
    assert_eq!(failed, attempts, "every connect into a full table fails");

    let oracle_drop = conntrack_s(&ns)["drop"];
    assert!(
        oracle_drop >= attempts as u64,
        "conntrack -S drop={oracle_drop}"
    );
    let oracle_lines = dmesg_table_full(inode) - before;
    let plain_lines = dmesg_table_full_plain() - before_plain;
    if names_netns {
        assert!(oracle_lines >= 1, "dmesg has a table-full line for {inode}");
    } else {
        assert!(plain_lines >= 1, "dmesg has an inode-less table-full line");
    }

    // The real binary on that namespace.
    let bin = common::bin();
    let out = Command::new(&bin)
        .args(["check", "--json", "--netns", &ns.name])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = common::json(&out);
    let tf = json_finding(&v, "conntrack.table_full").clone();
    assert_eq!(tf["severity"], "critical", "{tf}");
    assert_eq!(tf["evidence"]["drop"], oracle_drop);
    assert_eq!(tf["evidence"]["count"], max);
    assert_eq!(tf["evidence"]["log_lines"], oracle_lines);
    assert_eq!(
        tf["evidence"]
            .get("earlier_netns_log_lines")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
        before
    );
    if names_netns {
        assert_eq!(
            tf["evidence"]["attribution"],
            "this netns (it existed before these lines)"
        );
    } else {
        assert_eq!(tf["evidence"]["log_lines"], 0, "{tf}");
        assert_eq!(
            tf["evidence"]["unattributed_log_lines"],
            dmesg_table_full_plain(),
            "{tf}"
        );
        assert_eq!(
            tf["evidence"]["attribution"],
            "kernel < 6.17 logs no netns: lines may come from any namespace"
        );
    }
    eprintln!(
        "acceptance: max={max} drop={oracle_drop} log_lines={oracle_lines} \
         earlier_netns_lines={before} inode={inode}: {}",
        tf["title"]
    );

    // Every namespace: the lines go to the report whose inode matches.
    let out = Command::new(&bin)
        .args(["check", "--json", "--all-netns"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v = common::json(&out);
    let plain = dmesg_table_full_plain();
    let mut seen = false;
    for r in v["namespaces"].as_array().unwrap() {
        let Some(ino) = r["netns"]["inode"].as_u64() else {
            continue;
        };
        let tf = json_finding(r, "conntrack.table_full");
        if tf["evidence"].get("log_lines").is_none() {
            continue; // kmsg unreadable for this one (would be reported)
        }
        // Oracle per report: dmesg lines naming its inode (+ the
        // inode-less form, which 6.17+ prints for the init netns only),
        // split into this namespace's and an earlier one's.
        let mut want = dmesg_table_full(ino);
        if r["netns"]["is_init"] == true && names_netns {
            want += plain;
        }
        if !names_netns {
            // Before 6.17: no line is any namespace's own.
            assert_eq!(
                tf["evidence"]
                    .get("unattributed_log_lines")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0),
                plain,
                "netns {ino}"
            );
        }
        let n = |k: &str| tf["evidence"].get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        assert_eq!(
            n("log_lines") + n("earlier_netns_log_lines"),
            want,
            "netns {ino}"
        );
        if ino == inode {
            seen = true;
            assert_eq!(tf["severity"], "critical");
            assert_eq!(n("log_lines"), oracle_lines);
        }
    }
    assert!(seen, "--all-netns has a report for inode {inode}");

    // With --sample: SYNs sent during the interval make the drop counter
    // rise between the two readings: "it is happening".
    let child = Command::new(&bin)
        .args(["check", "--json", "--sample", "4s", "--netns", &ns.name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    host::netns::run_in(&target, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        for _ in 0..3 {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(300));
        }
    })
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v = common::json(&out);
    let find = |id: &str| json_finding(&v, id).clone();
    let d = find("conntrack.drops");
    assert_eq!(d["severity"], "critical", "{d}");
    assert!(
        d["evidence"]["drop_per_sec"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{d}"
    );
    let tf = find("conntrack.table_full");
    assert_eq!(
        tf["evidence"]["drop_rise"],
        conntrack_s(&ns)["drop"] - oracle_drop
    );
}

#[test]
fn clean_host_has_no_critical_conntrack_finding() {
    if !testns::kernel_test("clean_host_has_no_critical_conntrack_finding") {
        return;
    }
    let _lock = testns::lock_shared();
    let out = common::run(&["check", "--json"]);
    let code = out.status.code();
    let v = common::json(&out);
    let ours: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["id"]
                .as_str()
                .is_some_and(|s| s.starts_with("conntrack."))
        })
        .collect();
    assert!(ours.len() >= 6, "{v}");
    for f in &ours {
        assert_ne!(f["severity"], "critical", "{f}");
    }
    assert!(matches!(code, Some(0) | Some(1)), "exit {code:?}: {v}");
}

#[test]
fn snapshot_keeps_the_kernel_log_and_counters() {
    if !testns::kernel_test("snapshot_keeps_the_kernel_log_and_counters") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("ctsnap");
    let target = Target::Named(ns.name.clone());
    let (snap, caps) = host::collect_live(Path::new("/"), &target, None, true).unwrap();
    let items = &caps[0].items;
    assert!(
        items.contains_key(host::kmsg::PROBE),
        "kmsg recorded as a probe"
    );
    assert!(items.contains_key(host::stat::PATH));
    let live = snap.now.kmsg.clone().expect("root reads /dev/kmsg");
    assert!(live.records > 0);
    let replay = host::from_captures(caps).unwrap();
    assert_eq!(replay.now.kmsg, snap.now.kmsg);
    assert_eq!(replay.now.stat, snap.now.stat);
    assert_eq!(replay.now.conntrack, snap.now.conntrack);
}

#[test]
fn without_root_the_log_is_needs_root_and_rules_still_run() {
    if !testns::kernel_test("without_root_the_log_is_needs_root_and_rules_still_run") {
        return;
    }
    if !testns::need_tool("setpriv") {
        return;
    }
    // The log is closed to users only with kernel.dmesg_restrict=1 (a
    // global knob: set under the exclusive lock, restored on drop).
    let _lock = testns::lock_exclusive();
    let _restrict = testns::GlobalKnob::set("kernel/dmesg_restrict", "1");
    let bin = crate::nobody_bin();
    let _nobody = crate::nobody();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin.path)
        .args(["check", "--json"])
        .output()
        .unwrap();
    let v = common::json(&out);
    assert!(v["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["kind"] == "needs_root" && u["what"] == "dev/kmsg"));
    let tf = json_finding(&v, "conntrack.table_full");
    assert!(tf["evidence"]["kmsg_unavailable"]
        .as_str()
        .is_some_and(|s| s.contains("run as root")));
    assert!(
        tf["evidence"].get("count").is_some(),
        "counters still judged"
    );
    // Issue 8, defect 8: a rule whose input was not read never claims ok on
    // it: the titles say what was not read, and "not read" lists it.
    let title = tf["title"].as_str().unwrap();
    assert!(
        tf["severity"] != "ok" || title.contains("kernel log not read (needs root)"),
        "{title}"
    );
    assert!(!title.contains("no log lines"), "{title}");
    let h = json_finding(&v, "conntrack.hash_load");
    let ht = h["title"].as_str().unwrap();
    assert!(ht.contains("slabinfo not read (needs root)"), "{ht}");
    assert!(v["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["kind"] == "needs_root" && u["what"] == "proc/slabinfo"));
}
