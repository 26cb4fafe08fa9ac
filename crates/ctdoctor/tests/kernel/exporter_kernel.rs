//! Kernel tests for `ctdoctor exporter`: in a fresh netns, the per-state
//! gauges (ctnetlink events + resync dumps) against `conntrack -L` after a
//! burst of real loopback connections, and again after they expire, with
//! entries that predate the exporter (nf_conntrack_events=2: those never
//! send events, so only resyncs see them); `promtool check metrics` on the
//! real scrape; dump-only tracking (`--table dump`); a target namespace
//! that disappears (`ip netns del`, its process killed) is reported down
//! with growing facts age, never silent (issue 19); a real Prometheus
//! (Debian's `prometheus`, as deploy_kernel runs it) scrapes the gzipped
//! answer it asks for (issue 22).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::exporter::{gunzip, header, promtool, Exporter, Samples};
use crate::deploy_kernel::Prometheus;
use ctdoctor::host::netns::{run_in, Target};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// `conntrack -L` in the namespace: (l4, state) → entries, the state
/// empty for protocols without one (the exporter's labels).
fn oracle(ns: &testns::Netns) -> BTreeMap<(String, String), u64> {
    let text = ns.exec_text("conntrack", &["-L"]);
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let state = if matches!(f[0], "tcp" | "sctp" | "dccp") {
            f[3]
        } else {
            ""
        };
        *m.entry((f[0].to_string(), state.to_string())).or_insert(0) += 1;
    }
    m
}

/// `n` TCP connections opened and closed on loopback (each leaves a
/// TIME_WAIT entry), `open` more kept open (ESTABLISHED), and `udp`
/// datagrams to distinct ports nobody answers (UNREPLIED udp entries).
fn traffic(target: &Target, n: usize, open: usize, udp: usize) -> Vec<TcpStream> {
    run_in(target, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut keep = Vec::new();
        for i in 0..n + open {
            let c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            let (s, _) = l.accept().unwrap();
            if i < n {
                drop(c);
                drop(s);
            } else {
                keep.push(c);
                keep.push(s);
            }
        }
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        for p in 0..udp {
            let _ = u.send_to(b"x", ("127.0.0.1", 40000 + p as u16));
        }
        keep
    })
    .unwrap()
}

fn netns_labels(ns: &testns::Netns) -> (String, String) {
    (ns.inode().to_string(), ns.name.clone())
}

#[test]
fn per_state_gauges_match_conntrack_l_before_and_after_expiry() {
    if !testns::kernel_test("per_state_gauges_match_conntrack_l_before_and_after_expiry") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("exp");
    // Short timeouts so the burst expires within the test (per netns).
    for (k, v) in [
        ("tcp_timeout_time_wait", "6"),
        ("tcp_timeout_fin_wait", "6"),
        ("tcp_timeout_close", "6"),
        ("tcp_timeout_last_ack", "6"),
        ("tcp_timeout_close_wait", "6"),
        ("udp_timeout", "6"),
    ] {
        ns.sysctl(&format!("net.netfilter.nf_conntrack_{k}"), v);
    }
    assert_eq!(ns.proc_sys("net/netfilter/nf_conntrack_events").trim(), "2");
    let target = Target::Named(ns.name.clone());
    // Entries that predate the exporter: no listener when they were made.
    let held_before = traffic(&target, 40, 3, 5);
    let before = oracle(&ns);
    assert!(before.values().sum::<u64>() >= 40, "{before:?}");

    let e = Exporter::start(&[
        "--netns",
        &ns.name,
        "--interval",
        "1s",
        "--table-resync",
        "2s",
    ]);
    let (ino, name) = netns_labels(&ns);
    let l = [("netns", ino.as_str()), ("netns_name", name.as_str())];
    let s = e.wait_for(Duration::from_secs(20), |s| {
        s.get(
            "ctdoctor_conntrack_table_resyncs_total",
            &[l[0], ("reason", "start")],
        ) >= Some(1.0)
    });
    assert_eq!(
        s.get(
            "ctdoctor_conntrack_table_resyncs_total",
            &[l[0], ("reason", "start")]
        ),
        Some(1.0),
        "first resync"
    );
    assert!(
        s.get("ctdoctor_conntrack_table_dump_only_entries", &l)
            .unwrap()
            >= 40.0,
        "entries from before the listener are known from the dump only"
    );

    // A burst of real connections with the exporter listening.
    let held_after = traffic(&target, 200, 2, 20);
    let want = oracle(&ns);
    let got = e.wait_for(Duration::from_secs(15), |s| s.table_entries() == want);
    assert_eq!(got.table_entries(), want, "after the burst");
    assert!(
        got.get("ctdoctor_conntrack_events_total", &[l[0], ("type", "new")])
            .unwrap()
            >= 220.0
    );
    assert_eq!(got.get("ctdoctor_conntrack_table_in_sync", &l), Some(1.0));
    assert_eq!(
        got.get("ctdoctor_conntrack_events_lost_total", &l),
        Some(0.0)
    );
    let text = e.metrics();
    if let Some(r) = promtool(&text) {
        r.unwrap_or_else(|why| panic!("promtool check metrics:\n{why}"));
    }

    // Let everything but the open connections expire (6 s), then compare
    // again: `conntrack -L` reaps the expired entries (DESTROY events for
    // the burst); the pre-exporter ones send none and go at a resync.
    std::thread::sleep(Duration::from_secs(8));
    let want = oracle(&ns);
    let est: u64 = want
        .iter()
        .filter(|((l4, st), _)| l4 == "tcp" && st == "ESTABLISHED")
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(est, 5, "3 + 2 connections still open: {want:?}");
    assert_eq!(
        want.values().sum::<u64>(),
        5,
        "everything else expired: {want:?}"
    );
    let got = e.wait_for(Duration::from_secs(15), |s| s.table_entries() == want);
    assert_eq!(got.table_entries(), want, "after expiry");
    assert!(
        got.get(
            "ctdoctor_conntrack_events_total",
            &[l[0], ("type", "destroy")]
        )
        .unwrap()
            >= 220.0
    );
    assert!(
        got.get(
            "ctdoctor_conntrack_table_resyncs_total",
            &[l[0], ("reason", "periodic")]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        got.get("ctdoctor_conntrack_table_dump_only_entries", &l),
        Some(3.0),
        "the 3 connections held open from before the exporter"
    );
    // nf_conntrack_count is a fact, read every --interval (1 s): it catches up.
    let got = e.wait_for(Duration::from_secs(10), |s| {
        s.get("ctdoctor_conntrack_entries", &l) == Some(5.0)
    });
    assert_eq!(got.get("ctdoctor_conntrack_entries", &l), Some(5.0));
    drop((held_before, held_after));
    assert!(e.terminate().success());
}

#[test]
fn dump_mode_counts_the_table() {
    if !testns::kernel_test("dump_mode_counts_the_table") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("expd");
    let target = Target::Named(ns.name.clone());
    let _held = traffic(&target, 30, 2, 4);
    let want = oracle(&ns);
    let e = Exporter::start(&[
        "--netns",
        &ns.name,
        "--table",
        "dump",
        "--table-resync",
        "1s",
    ]);
    let (ino, _) = netns_labels(&ns);
    let got = e.wait_for(Duration::from_secs(20), |s| s.table_entries() == want);
    assert_eq!(got.table_entries(), want);
    assert_eq!(
        got.get(
            "ctdoctor_conntrack_table_tracking_info",
            &[("netns", &ino), ("mode", "dump")]
        ),
        Some(1.0)
    );
    assert!(
        got.of("ctdoctor_conntrack_events_total").is_empty(),
        "no events in dump mode"
    );
    assert!(e.terminate().success());
}

/// 20,000 entries made with `conntrack -R` before the exporter (the
/// realistic mix of bench/ct-fill-batch.py): all known from the first dump.
#[test]
fn twenty_thousand_entries_from_before_the_exporter() {
    if !testns::kernel_test("twenty_thousand_entries_from_before_the_exporter") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("expw");
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch.txt");
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/ct-fill-batch.py");
    testns::run(
        "python3",
        &[py.to_str().unwrap(), "20000", batch.to_str().unwrap(), "7"],
    );
    ns.load_batch(&batch);
    let e = Exporter::start(&["--netns", &ns.name, "--interval", "1s"]);
    let s = e.wait_for(Duration::from_secs(30), |s| {
        s.table_entries().values().sum::<u64>() == 20_000
    });
    assert_eq!(s.table_entries(), oracle(&ns));
    let m = Samples::parse(&e.metrics());
    assert_eq!(
        m.get("ctdoctor_conntrack_table_dump_only_entries", &[]),
        Some(20_000.0)
    );
    assert_eq!(m.get("ctdoctor_conntrack_entries", &[]), Some(20_000.0));
    assert!(e.terminate().success());
}

/// `ctdoctor_source_up` of every source of the namespace labelled `ino`.
fn sources_up(s: &Samples, ino: &str) -> BTreeMap<String, f64> {
    s.of("ctdoctor_source_up")
        .into_iter()
        .filter(|(l, _)| l.contains(&format!("netns=\"{ino}\"")))
        .map(|(l, v)| {
            let src = l
                .split("source=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (src.to_string(), v)
        })
        .collect()
}

fn facts_age(s: &Samples, ino: &str) -> Option<f64> {
    s.get("ctdoctor_facts_age_seconds", &[("netns", ino)])
}

/// After the target is gone: every source it had is down, under the same
/// labels, and the facts' age grows from one scrape to the next.
fn assert_down_and_ageing(e: &Exporter, ino: &str, before: &BTreeMap<String, f64>) {
    let s1 = e.wait_for(Duration::from_secs(20), |s| {
        let up = sources_up(s, ino);
        !up.is_empty() && up.values().all(|v| *v == 0.0)
    });
    let down = sources_up(&s1, ino);
    assert_eq!(
        down.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "the same sources, now down"
    );
    assert!(down.values().all(|v| *v == 0.0), "{down:?}");
    let a1 = facts_age(&s1, ino).expect("facts age of the vanished namespace");
    std::thread::sleep(Duration::from_millis(2500));
    let s2 = Samples::parse(&e.metrics());
    let a2 = facts_age(&s2, ino).expect("facts age still there");
    assert!(a2 >= a1 + 2.0, "the age grows: {a1} then {a2}");
    assert!(sources_up(&s2, ino).values().all(|v| *v == 0.0));
    // What the shipped alerts need: SourceDown (source_up == 0) and
    // FactsStale (facts_age_seconds > 120 for a while) can both fire.
}

/// Issue 19 (9): `ip netns del` of the exported namespace.
#[test]
fn issue_19_9_deleted_netns_is_reported_down_not_silent() {
    if !testns::kernel_test("issue_19_9_deleted_netns_is_reported_down_not_silent") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("expgone");
    let e = Exporter::start(&["--netns", &ns.name, "--interval", "1s"]);
    let (ino, name) = netns_labels(&ns);
    let s = e.wait_for(Duration::from_secs(20), |s| {
        sources_up(s, &ino).get("conntrack") == Some(&1.0)
    });
    let before = sources_up(&s, &ino);
    assert_eq!(before.get("conntrack"), Some(&1.0), "{before:?}");
    assert_eq!(
        s.get(
            "ctdoctor_netns_info",
            &[("netns", &ino), ("netns_name", &name)]
        ),
        Some(1.0)
    );
    ns.remove();
    assert_down_and_ageing(&e, &ino, &before);
    assert!(e.terminate().success());
}

/// Issue 19 (9): `--netns PID` whose process dies (the namespace with it).
#[test]
fn issue_19_9_dead_pid_is_reported_down_not_silent() {
    if !testns::kernel_test("issue_19_9_dead_pid_is_reported_down_not_silent") {
        return;
    }
    let _lock = testns::lock_shared();
    // A process in a namespace of its own, held by nothing else.
    let mut holder = std::process::Command::new("unshare")
        .args(["--net", "sleep", "600"])
        .spawn()
        .unwrap();
    let pid = holder.id().to_string();
    let link = format!("/proc/{pid}/ns/net");
    let start = std::time::Instant::now();
    let ino = loop {
        // unshare(1) has unshared once its ns link differs from ours.
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        match std::fs::read_link(&link) {
            Ok(l) if l != mine => {
                break ctdoctor::host::netns::parse_ns_link(&l.to_string_lossy())
                    .unwrap()
                    .to_string()
            }
            _ if start.elapsed() > Duration::from_secs(10) => panic!("unshare did not start"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let e = Exporter::start(&["--netns", &pid, "--interval", "1s", "--table", "off"]);
    let s = e.wait_for(Duration::from_secs(20), |s| {
        sources_up(s, &ino).get("conntrack") == Some(&1.0)
    });
    let before = sources_up(&s, &ino);
    assert_eq!(before.get("conntrack"), Some(&1.0), "{before:?}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_down_and_ageing(&e, &ino, &before);
    assert!(e.terminate().success());
}

/// The conntrack families a complete scrape has (issue 22: the first
/// scrapes after start had only build_info).
const COMPLETE: &[&str] = &[
    "ctdoctor_conntrack_entries{",
    "ctdoctor_conntrack_entries_limit{",
    "ctdoctor_conntrack_buckets ",
    "ctdoctor_conntrack_stat_drop_total{",
    "ctdoctor_conntrack_stat_insert_failed_total{",
    "ctdoctor_conntrack_table_in_sync{",
];

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scrape 50 ms after start waits in the listen queue until the first
/// facts are read, and then has every conntrack family.
#[test]
fn a_scrape_50ms_after_start_is_complete() {
    if !testns::kernel_test("a_scrape_50ms_after_start_is_complete") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("expfirst");
    let port = free_port();
    let mut child = std::process::Command::new(crate::common::bin())
        .args(["exporter", "--netns", &ns.name, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let body = (|| -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })();
    let _ = child.kill();
    let _ = child.wait();
    let body = body.expect("the scrape 50 ms after start");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for f in COMPLETE {
        assert!(
            body.contains(f),
            "{f} missing from the first scrape:\n{body}"
        );
    }
}

/// The count is read at scrape time: with a refresh interval of a minute,
/// entries loaded after the first refresh show at the next scrape, equal
/// to `conntrack -C`.
#[test]
fn the_count_is_read_at_scrape_time() {
    if !testns::kernel_test("the_count_is_read_at_scrape_time") || !testns::need_tool("conntrack") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("expnow");
    let e = Exporter::start(&["--netns", &ns.name, "--interval", "60s", "--table", "off"]);
    let m = Samples::parse(&e.metrics());
    assert_eq!(m.get("ctdoctor_conntrack_entries", &[]), Some(0.0));
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch.txt");
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/ct-fill-batch.py");
    testns::run(
        "python3",
        &[py.to_str().unwrap(), "5000", batch.to_str().unwrap(), "3"],
    );
    ns.load_batch(&batch);
    let c: f64 = ns.exec_text("conntrack", &["-C"]).trim().parse().unwrap();
    let m = Samples::parse(&e.metrics());
    assert_eq!(m.get("ctdoctor_conntrack_entries", &[]), Some(c));
    assert_eq!(c, 5000.0);
    assert!(e.terminate().success());
}

/// Entries made before the exporter (nf_conntrack_events=2: they send no
/// events) that expire leave the per-state sum above the count: in_sync
/// never says 1 while they disagree, and a "mismatch" resync repairs it.
#[test]
fn in_sync_is_0_while_the_sum_and_the_count_disagree() {
    if !testns::kernel_test("in_sync_is_0_while_the_sum_and_the_count_disagree")
        || !testns::need_tool("conntrack")
    {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("expsync");
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch.txt");
    let lines: String = (0..3000u32)
        .map(|i| {
            format!(
                "-I -p tcp -s 10.9.{}.{} -d 10.8.0.1 --sport {} --dport 80 --state ESTABLISHED \
                 -u SEEN_REPLY,ASSURED -t 20\n",
                i / 250,
                i % 250,
                20000 + i
            )
        })
        .collect();
    std::fs::write(&batch, lines).unwrap();
    ns.load_batch(&batch);
    let e = Exporter::start(&[
        "--netns",
        &ns.name,
        "--interval",
        "1s",
        "--table-resync",
        "10m",
    ]);
    // The premise: the exporter counted them before they expire (20 s).
    let before = e.wait_for(Duration::from_secs(15), |m| {
        m.table_entries().values().sum::<u64>() == 3000
    });
    assert_eq!(
        before.table_entries().values().sum::<u64>(),
        3000,
        "the exporter did not count the 3,000 entries before they expired"
    );
    let end = std::time::Instant::now() + Duration::from_secs(90);
    let (mut disagreed, mut repaired, mut last) = (0, false, String::new());
    while std::time::Instant::now() < end {
        let m = Samples::parse(&e.metrics());
        let sum: u64 = m.table_entries().values().sum();
        let count = m.get("ctdoctor_conntrack_entries", &[]).unwrap() as u64;
        let in_sync = m.get("ctdoctor_conntrack_table_in_sync", &[]);
        if !ctdoctor::exporter::state::agrees(sum, count) {
            disagreed += 1;
            assert_eq!(
                in_sync,
                Some(0.0),
                "in_sync 1 with sum {sum} and count {count}"
            );
        }
        let mismatch = m
            .get(
                "ctdoctor_conntrack_table_resyncs_total",
                &[("reason", "mismatch")],
            )
            .unwrap_or(0.0);
        last =
            format!("sum {sum}, count {count}, in_sync {in_sync:?}, mismatch resyncs {mismatch}");
        // A disagreement that outlived a few refreshes (1 s each) must
        // have asked for a mismatch resync.
        if disagreed >= 60 {
            assert!(
                mismatch >= 1.0,
                "no mismatch resync after {disagreed} scrapes: {last}"
            );
        }
        if count == 0 && sum == 0 && in_sync == Some(1.0) {
            repaired = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("in_sync: disagreed in {disagreed} scrapes; at the end {last}");
    assert!(
        repaired,
        "the counts never agreed at 0 (disagreed {disagreed} times): {last}"
    );
    assert!(e.terminate().success());
}

/// `n` connects per second for `secs` from `src` (a loopback address) to
/// 127.0.0.1:PORT, each closed at once; bounded by count and time.
const BURST_FROM: &str = r#"
import socket, sys, time
src, port, rate, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
end, made = time.time() + secs, 0
while time.time() < end and made < rate * secs:
    t = time.time()
    for _ in range(max(1, rate // 100)):
        c = socket.socket()
        c.bind((src, 0))
        try:
            c.connect(("127.0.0.1", port))
        except OSError:
            pass
        c.close()
        made += 1
    time.sleep(max(0, 0.01 - (time.time() - t)))
"#;

/// Who fills the table: a burst of 1,000 connections/s from one source,
/// among slower sources, is first in `ctdoctor_conntrack_top_creators`
/// within 2 s, and leaves the series set after the burst's minute.
#[test]
fn a_burst_from_one_source_tops_the_creators_then_leaves() {
    if !testns::kernel_test("a_burst_from_one_source_tops_the_creators_then_leaves")
        || !testns::need_tool("python3")
    {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("expcreators");
    let listener = run_in(&ns.target(), || TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acceptor = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let end = std::time::Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < end
            {
                match listener.accept() {
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        })
    };
    let e = Exporter::start(&["--netns", &ns.name, "--interval", "1s"]);
    let spawn = |src: &str, rate: &str, secs: &str| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", BURST_FROM])
            .args([src, &port, rate, secs])
            .spawn()
            .unwrap()
    };
    let mut slow: Vec<_> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|s| spawn(s, "50", "12"))
        .collect();
    let mut burst = spawn("127.0.0.9", "1000", "10");
    let started = std::time::Instant::now();
    let top = |m: &Samples| -> Option<String> {
        m.of("ctdoctor_conntrack_top_creators")
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .and_then(|(labels, _)| {
                labels
                    .trim_matches(|c| c == '{' || c == '}')
                    .split(',')
                    .find_map(|l| {
                        l.strip_prefix("src=\"")?
                            .strip_suffix('"')
                            .map(str::to_string)
                    })
            })
    };
    let first = e.wait_for(Duration::from_secs(10), |m| {
        top(m).as_deref() == Some("127.0.0.9")
    });
    let took = started.elapsed();
    eprintln!("127.0.0.9 first in top_creators after {took:?}");
    assert_eq!(top(&first).as_deref(), Some("127.0.0.9"));
    // 2 s asked; the margin is the interpreter starting and a 200 ms poll.
    assert!(took < Duration::from_secs(3), "first after {took:?}");
    let _ = burst.wait();
    for s in &mut slow {
        let _ = s.wait();
    }
    // The minute passes: the burst's source leaves the series set.
    let burst_gone = |m: &Samples| {
        !m.of("ctdoctor_conntrack_top_creators")
            .iter()
            .any(|(l, _)| l.contains("src=\"127.0.0.9\""))
    };
    let gone = e.wait_for(Duration::from_secs(90), burst_gone);
    assert!(
        burst_gone(&gone),
        "127.0.0.9 still exported 90 s after its burst"
    );
    assert!(gone.of("ctdoctor_conntrack_top_creators").len() <= 20);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = acceptor.join();
    assert!(e.terminate().success());
}

/// Issue 22 (4): Prometheus 2.x sends `Accept-Encoding: gzip` with every
/// scrape (scrape.go, unconditionally before 2.49's `enable_compression`,
/// on by default since). The exporter answers that request gzipped, and a
/// real server scraping it stores what a plain scrape shows.
#[test]
fn prometheus_scrapes_the_gzipped_answer() {
    if !testns::kernel_test("prometheus_scrapes_the_gzipped_answer") {
        return;
    }
    if !testns::need_tool("prometheus") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("expgz");
    let e = Exporter::start(&["--netns", &ns.name, "--interval", "1s"]);
    let (ino, _) = netns_labels(&ns);
    let limit_of = |s: &Samples| s.get("ctdoctor_conntrack_entries_limit", &[("netns", &ino)]);
    let limit = limit_of(&e.wait_for(Duration::from_secs(20), |s| limit_of(s).is_some()))
        .expect("the limit in a plain scrape");
    let (code, head, body) = e.request(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200);
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    let om = String::from_utf8(gunzip(&body)).unwrap();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("\nctdoctor_conntrack_entries_limit{"), "{om}");

    let prom = Prometheus::start(e.addr, "groups: []\n");
    let q = format!("ctdoctor_conntrack_entries_limit{{netns=\"{ino}\"}}");
    let value =
        |r: &[serde_json::Value]| -> Option<f64> { r.first()?["value"][1].as_str()?.parse().ok() };
    let start = Instant::now();
    while value(&prom.query(&q)).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no successful scrape in 30 s: up = {:?}\n{}",
            prom.query("up"),
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(value(&prom.query(&q)), Some(limit));
    assert_eq!(value(&prom.query("up{job=\"ctdoctor\"}")), Some(1.0));
    let scraped = value(&prom.query("scrape_samples_scraped{job=\"ctdoctor\"}")).unwrap();
    let ours = Samples::parse(&e.metrics()).0.len() as f64;
    assert!(
        (scraped - ours).abs() <= 10.0,
        "Prometheus stored {scraped} samples of a scrape, a plain scrape has {ours}"
    );
    drop(prom);
    assert!(e.terminate().success());
}
