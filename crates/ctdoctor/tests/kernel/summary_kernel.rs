//! Kernel tests for `ctdoctor summary`: a real table of 200,000 entries in
//! a fresh netns (bench/ct-fill-batch.py + `conntrack -R`), summarised live
//! (ctnetlink) and from the namespace's /proc/net/nf_conntrack, against an
//! oracle that parses `conntrack -L` with split_whitespace here; and idle
//! ages of real loopback TCP connections left idle for known times, and of
//! one whose timeout the kernel capped (unacknowledged data).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::*;

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn top_map(v: &Value) -> HashMap<String, u64> {
    counts(&v["top"])
}

#[derive(Debug, Default, PartialEq)]
struct Oracle {
    total: u64,
    proto: HashMap<String, u64>,
    state: HashMap<String, u64>,
    src: HashMap<String, u64>,
    dport: HashMap<String, u64>,
    assured: u64,
    unreplied: u64,
}

/// `conntrack -L` lines: "proto num secs [STATE] k=v… [FLAGS]…".
fn oracle(text: &str) -> Oracle {
    let mut o = Oracle::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        o.total += 1;
        *o.proto.entry(f[0].into()).or_default() += 1;
        if f[0] == "tcp" {
            *o.state.entry(f[3].into()).or_default() += 1;
        }
        let src = f.iter().find_map(|t| t.strip_prefix("src=")).unwrap();
        *o.src.entry(src.into()).or_default() += 1;
        if let Some(d) = f.iter().find_map(|t| t.strip_prefix("dport=")) {
            *o.dport.entry(format!("{}/{d}", f[0])).or_default() += 1;
        }
        o.assured += f.contains(&"[ASSURED]") as u64;
        o.unreplied += f.contains(&"[UNREPLIED]") as u64;
    }
    o
}

fn check(v: &Value, o: &Oracle, what: &str) {
    assert_eq!(v["entries"].as_u64(), Some(o.total), "{what}: total");
    assert_eq!(counts(&v["by_proto"]), o.proto, "{what}: protocols");
    assert_eq!(counts(&v["by_state"]), o.state, "{what}: states");
    assert_eq!(
        v["flags"]["assured"]["count"].as_u64(),
        Some(o.assured),
        "{what}"
    );
    assert_eq!(
        v["flags"]["unreplied"]["count"].as_u64(),
        Some(o.unreplied),
        "{what}"
    );
    assert_eq!(
        v["top_src"]["distinct"].as_u64(),
        Some(o.src.len() as u64),
        "{what}"
    );
    assert_eq!(top_map(&v["top_src"]), o.src, "{what}: every source");
    assert_eq!(top_map(&v["top_dport"]), o.dport, "{what}: dports");
}

#[test]
fn live_and_proc_match_conntrack_l_at_200k() {
    if !testns::kernel_test("live_and_proc_match_conntrack_l_at_200k") {
        return;
    }
    if !testns::need_tool("python3") {
        return;
    }
    let _lock = testns::lock_shared();
    let _heavy = crate::heavy();
    const N: u64 = 200_000;
    let ns = testns::Netns::new("sum200k");
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch.txt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/ct-fill-batch.py");
    testns::run(
        "python3",
        &[
            script.to_str().unwrap(),
            &N.to_string(),
            batch.to_str().unwrap(),
            "7",
        ],
    );
    ns.load_batch(&batch);
    assert_eq!(ns.count(), N, "kernel count after conntrack -R");

    let o = oracle(&ns.exec_text("conntrack", &["-L"]));
    assert_eq!(o.total, N);

    let n_top = o.src.len().to_string();
    let live = summary_json(&["--netns", &ns.name, "--top", &n_top]);
    assert_eq!(live["format"], "ctnetlink");
    check(&live, &o, "live");

    let proc_file = dir.path().join("nf_conntrack.txt");
    let bytes = ns.exec("cat", &["/proc/net/nf_conntrack"]).stdout;
    std::fs::write(&proc_file, bytes).unwrap();
    let file = summary_json(&["--file", proc_file.to_str().unwrap(), "--top", &n_top]);
    assert_eq!(file["format"], "proc");
    assert_eq!(file["malformed"]["count"], 0);
    check(&file, &o, "file");

    // The default top 10 is the oracle's top 10 by count.
    let t10 = summary_json(&["--netns", &ns.name, "--by", "src"]);
    let mut want: Vec<u64> = o.src.values().copied().collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    let got: Vec<u64> = t10["top_src"]["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .collect();
    assert_eq!(got, want[..10]);
    for c in t10["top_src"]["top"].as_array().unwrap() {
        assert_eq!(
            o.src[c["key"].as_str().unwrap()],
            c["count"].as_u64().unwrap()
        );
    }
}

#[test]
fn idle_ages_of_real_connections() {
    use ctdoctor::host::netns::{run_in, Target};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    if !testns::kernel_test("idle_ages_of_real_connections") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("sumidle");
    // A non-default timeout: ages are only right if ctdoctor reads the
    // namespace's sysctl (432000 would make both ~428,000 s old).
    ns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_established", "3600");
    let target = Target::Named(ns.name.clone());
    let (mut a, mut b, mut sa, mut sb) = run_in(&target, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let a = TcpStream::connect(addr).unwrap();
        let (sa, _) = l.accept().unwrap();
        let b = TcpStream::connect(addr).unwrap();
        let (sb, _) = l.accept().unwrap();
        (a, b, sa, sb)
    })
    .unwrap();
    let ping = |c: &mut TcpStream, s: &mut TcpStream| {
        c.write_all(b"x").unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"y").unwrap();
        c.read_exact(&mut buf).unwrap();
    };
    let start = Instant::now();
    ping(&mut a, &mut sa);
    ping(&mut b, &mut sb);
    // b stays idle from now (~40 s); a is refreshed at 28 s (~12 s idle).
    std::thread::sleep(Duration::from_secs(28));
    ping(&mut a, &mut sa);
    let refreshed = Instant::now();
    std::thread::sleep(Duration::from_secs(12));
    let port_a = a.local_addr().unwrap().port().to_string();
    let port_b = b.local_addr().unwrap().port().to_string();
    let va = summary_json(&["--netns", &ns.name, "--port", &port_a, "--by", "age"]);
    let vb = summary_json(&["--netns", &ns.name, "--port", &port_b, "--by", "age"]);
    let idle_a = refreshed.elapsed().as_secs_f64();
    let idle_b = start.elapsed().as_secs_f64();
    assert_eq!(va["timeouts"]["tcp"][3], 3600, "sysctl timeout read");
    let est = |v: &Value| -> (u64, u64, u64, Vec<u64>) {
        let c = v["idle_age"]["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["class"] == "ESTABLISHED")
            .expect("an ESTABLISHED entry")
            .clone();
        (
            c["entries"].as_u64().unwrap(),
            c["min_secs"].as_u64().unwrap(),
            c["max_secs"].as_u64().unwrap(),
            c["bins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .collect(),
        )
    };
    let bins: Vec<String> = va["idle_age"]["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect();
    let (n, min, max, hist) = est(&va);
    assert_eq!(n, 1);
    assert_eq!(min, max);
    assert!(
        (max as f64 - idle_a).abs() <= 2.0,
        "a: {max} s vs {idle_a:.1} s"
    );
    assert_eq!(hist[bins.iter().position(|b| b == "10s-30s").unwrap()], 1);
    let (n, _, max, hist) = est(&vb);
    assert_eq!(n, 1);
    assert!(
        (max as f64 - idle_b).abs() <= 2.0,
        "b: {max} s vs {idle_b:.1} s"
    );
    assert_eq!(hist[bins.iter().position(|b| b == "30s-1m").unwrap()], 1);

    // File mode: the same from /proc with the timeout given by hand.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ct.txt");
    std::fs::write(&p, ns.exec("cat", &["/proc/net/nf_conntrack"]).stdout).unwrap();
    let vf = summary_json(&[
        "--file",
        p.to_str().unwrap(),
        "--port",
        &port_b,
        "--timeouts",
        "established=3600",
    ]);
    let (_, _, max, _) = est(&vf);
    assert!(
        (max as f64 - idle_b).abs() <= 2.5,
        "file b: {max} s vs {idle_b:.1} s"
    );
    drop((a, b, sa, sb));
}

#[test]
fn unacked_data_makes_an_established_age_unknown() {
    // The kernel caps an ESTABLISHED entry's timeout at
    // tcp_timeout_unacknowledged (300 s) while data is unacknowledged. Drop
    // the server's packets before conntrack sees them (output hook,
    // priority -400 < conntrack's -200), send data: the entry is a second
    // old with ≤ 300 s left — not 432000 − 300 s idle.
    use ctdoctor::host::netns::{run_in, Target};
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    if !testns::kernel_test("unacked_data_makes_an_established_age_unknown") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("sumunack");
    let target = Target::Named(ns.name.clone());
    let (l, mut c, s) = run_in(&target, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (l, c, s)
    })
    .unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let rule = format!(
        "table inet unack {{ chain out {{ type filter hook output priority -400; tcp sport {port} drop; }}; }}"
    );
    ns.nft(&rule);
    c.write_all(b"hello").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Oracle: conntrack -L shows the entry ESTABLISHED with ≤ 300 s left.
    let l_out = ns.exec_text("conntrack", &["-L", "-p", "tcp", "--dport", &port]);
    let f: Vec<&str> = l_out.split_whitespace().collect();
    assert_eq!(f.get(3), Some(&"ESTABLISHED"), "{l_out}");
    let left: u32 = f[2].parse().unwrap();
    assert!(left <= 300, "not capped: {l_out}");
    let v = summary_json(&["--netns", &ns.name, "--port", &port, "--by", "age"]);
    let est = v["idle_age"]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "ESTABLISHED")
        .unwrap_or_else(|| panic!("no ESTABLISHED class: {v}"))
        .clone();
    assert_eq!(est["entries"], 1, "{est}");
    assert_eq!(est["unknown"], 1, "age must be unknown, got {est}");
    drop((l, c, s));
}
