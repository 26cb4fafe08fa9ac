//! Kernel tests for `ctdoctor exporter`: in a fresh netns, the per-state
//! gauges (ctnetlink events + resync dumps) against `conntrack -L` after a
//! burst of real loopback connections, and again after they expire, with
//! entries that predate the exporter (nf_conntrack_events=2: those never
//! send events, so only resyncs see them); `promtool check metrics` on the
//! real scrape; dump-only tracking (`--table dump`).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

mod common;
use common::exporter::{promtool, Exporter, Samples};
use ctdoctor::host::netns::{run_in, Target};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

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
