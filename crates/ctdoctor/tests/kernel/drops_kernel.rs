//! `ctdoctor drops` on the real kernel (issue 24): packets dropped in
//! namespaces made here, counted by the census and checked against an
//! independent oracle — what the test sent, `conntrack -S`, the rule's
//! own counter, TcpExt ListenOverflows/ListenDrops. Every test holds the
//! kernel lock exclusive: the census is machine-wide, and no other test's
//! drops may land in its window. Each also checks that the tracing
//! instance is gone afterwards.

use crate::common;
use ctdoctor::host::tracefs::Tracefs;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testns::Netns;

fn ready() -> bool {
    testns::kernel_test("drop census") && testns::need_tool("python3")
}

/// The ctdoctor tracing instances that exist now.
fn instances() -> Vec<String> {
    let fs = Tracefs::open().expect("tracefs");
    let mut v: Vec<String> = std::fs::read_dir(fs.base().join("instances"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ctdoctor-"))
        .collect();
    v.sort();
    v
}

/// `ctdoctor drops --json ARGS`, returned once its window has started (it
/// says so on stderr).
fn start(args: &[&str]) -> Child {
    let mut child = common::command()
        .arg("drops")
        .arg("--json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("counting drops"), "{line}");
    // Keep draining stderr so the child never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    child
}

/// Its JSON report; the instance it made is gone.
fn finish(child: Child) -> Value {
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?}", o.status);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        !instances().contains(&format!("ctdoctor-{pid}")),
        "the instance of {pid} is left"
    );
    v
}

fn reason<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == name)
}

/// `n` within 5 % of `sent`.
fn near(n: u64, sent: u64) -> bool {
    n.abs_diff(sent) * 20 <= sent
}

/// Python run in `ns`: `n` nonblocking connects to 127.0.0.1:`port`, each
/// closed at once (one SYN each), then a pause so the census can name the
/// process while it runs.
fn syns(ns: &Netns, port: u16, n: u32) {
    let py = format!(
        "import socket, time\n\
         for i in range({n}):\n\
         \x20   s = socket.socket(); s.setblocking(False)\n\
         \x20   try: s.connect(('127.0.0.1', {port}))\n\
         \x20   except OSError: pass\n\
         \x20   s.close()\n\
         time.sleep(0.5)\n"
    );
    ns.exec("python3", &["-c", &py]);
}

/// The `drop` column of `conntrack -S` in `ns`, summed over CPUs.
fn ct_drop(ns: &Netns) -> u64 {
    ns.exec_text("conntrack", &["-S"])
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("drop="))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

/// A TcpExt counter of `ns`.
fn tcpext(ns: &Netns, name: &str) -> u64 {
    let t = ns.exec_text("cat", &["/proc/net/netstat"]);
    let mut l = t.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (l.next().unwrap(), l.next().unwrap());
    let i = names.split_whitespace().position(|n| n == name).unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// A closed UDP port: NO_SOCKET (by location before 5.17: the matrix runs
/// this one on 5.10 and 6.1).
#[test]
fn a_closed_udp_port_is_no_socket() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_exclusive();
    let ns = Netns::new("dropsudp");
    let child = start(&["--for", "3s"]);
    ns.exec(
        "python3",
        &[
            "-c",
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range(500):\n\
             \x20   s.sendto(b'x', ('127.0.0.1', 9999))\n",
        ],
    );
    let v = finish(child);
    if v["reasons_known"] == true {
        let r = reason(&v, "NO_SOCKET").unwrap_or_else(|| panic!("{v:#}"));
        let n = r["count"].as_u64().unwrap();
        assert!(near(n, 500), "{n} of 500: {v:#}");
        assert!(r["locations"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("__udp4_lib_rcv"));
        assert_eq!(r["senders"][0]["name"], "softirq");
    } else {
        // Before 5.17: one row, by location, and the report says why.
        let r = &v["reasons"][0];
        assert_eq!(r["reason"], Value::Null);
        let udp = r["locations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"].as_str().unwrap().starts_with("__udp4_lib_rcv"))
            .unwrap_or_else(|| panic!("{v:#}"));
        let n = udp["count"].as_u64().unwrap();
        assert!(near(n, 500), "{n} of 500: {v:#}");
        assert!(v["notes"].to_string().contains("no drop reasons"), "{v:#}");
    }
    assert_eq!(v["lost_events"], 0);
}

/// A table full at the machine's own max drops SYNs: NETFILTER_DROP, all
/// explained by conntrack in that namespace, named with the sending
/// process; the oracle is `conntrack -S`'s drop column.
#[test]
fn a_full_table_is_explained_by_conntrack_in_its_netns() {
    if !ready() || !testns::need_tool("conntrack") {
        return;
    }
    let _lock = testns::lock_exclusive();
    let max = crate::incident_kernel::machine_max();
    let ns = crate::incident_kernel::filled("dropsfull", max, "ESTABLISHED", 432_000, 600);
    let before = ct_drop(&ns);
    let child = start(&["--for", "3s"]);
    syns(&ns, 80, 200);
    let v = finish(child);
    let rose = ct_drop(&ns) - before;
    assert_eq!(rose, 200, "conntrack -S drop rose by what was sent");
    let r = reason(&v, "NETFILTER_DROP").unwrap_or_else(|| panic!("{v:#}"));
    let n = r["count"].as_u64().unwrap();
    assert!(near(n, 200), "{n} of 200: {v:#}");
    let e = &r["explained_by"][0];
    assert_eq!(e["cause"], "conntrack", "{v:#}");
    assert_eq!(e["netns"], ns.name.as_str(), "{v:#}");
    assert!(near(e["count"].as_u64().unwrap(), 200), "{v:#}");
    assert!(!r["explained_by"].to_string().contains("\"rule\""), "{v:#}");
    assert!(
        r["senders"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("python3["),
        "{v:#}"
    );
    let h = v["headline"].as_str().unwrap();
    assert!(
        h.contains(&format!("all explained by conntrack in netns {}", ns.name))
            && h.contains("table full"),
        "{h}"
    );

    // Its next step names this namespace's check, which names the cause.
    let next = format!("ctdoctor check --netns {}   #", ns.name);
    assert!(v["next"][0].as_str().unwrap().starts_with(&next), "{v:#}");

    // The same census inside `check --sample` (its JSON `drops`).
    let child = common::command()
        .args(["check", "--netns", &ns.name, "--sample", "4s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    syns(&ns, 80, 200);
    let o = child.wait_with_output().unwrap();
    let c = common::json(&o);
    let r = reason(&c["drops"], "NETFILTER_DROP").unwrap_or_else(|| panic!("{c:#}"));
    let e = &r["explained_by"][0];
    assert_eq!(e["cause"], "conntrack", "{c:#}");
    assert!(near(e["count"].as_u64().unwrap(), 200), "{c:#}");
    assert_eq!(c["diagnosis"]["symptom"], "conntrack.table_full", "{c:#}");
}

/// An nft rule that drops: NETFILTER_DROP explained by that rule (its own
/// counter is the oracle), not by conntrack.
#[test]
fn a_drop_rule_is_named_not_conntrack() {
    if !ready() || !testns::need_tool("nft") {
        return;
    }
    let _lock = testns::lock_exclusive();
    let ns = Netns::new("dropsrule");
    ns.nft("table inet f { chain in { type filter hook input priority 10; tcp dport 9 counter drop; }; }");
    let child = start(&["--for", "3s"]);
    syns(&ns, 9, 200);
    let v = finish(child);
    let listed = ns.exec_text("nft", &["list", "table", "inet", "f"]);
    assert!(listed.contains("counter packets 200 "), "{listed}");
    let r = reason(&v, "NETFILTER_DROP").unwrap_or_else(|| panic!("{v:#}"));
    assert!(near(r["count"].as_u64().unwrap(), 200), "{v:#}");
    let e = &r["explained_by"][0];
    assert_eq!(e["cause"], "rule", "{v:#}");
    assert_eq!(e["netns"], ns.name.as_str());
    assert_eq!(e["rule"], "inet f in: tcp dport 9 counter drop", "{v:#}");
    assert!(near(e["count"].as_u64().unwrap(), 200), "{v:#}");
    assert!(
        !r["explained_by"].to_string().contains("conntrack"),
        "{v:#}"
    );
}

/// A listen queue that overflows. SYNs refused at a full accept queue are
/// freed as consumed, not as drops (tcp_conn_request; 6.18 too): no
/// kfree_skb, so no TCP_LISTEN_OVERFLOW either (that reason, 6.15 on,
/// marks other paths). The report says ListenDrops rose, by exactly the
/// kernel's count, instead of "no packet dropped".
#[test]
fn a_listen_overflow_is_told_by_its_counter() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_exclusive();

    // SYNs at a full queue: 30 clients to a listener of backlog 1 that
    // never accepts, kept 2.5 s (each SYN is retried once meanwhile).
    let ns = Netns::new("dropslisten");
    let drops0 = tcpext(&ns, "ListenDrops");
    let child = start(&["--for", "4s"]);
    ns.exec(
        "python3",
        &[
            "-c",
            "import socket, time\n\
             l = socket.socket(); l.bind(('127.0.0.1', 8080)); l.listen(1)\n\
             cs = []\n\
             for i in range(30):\n\
             \x20   s = socket.socket(); s.setblocking(False)\n\
             \x20   try: s.connect(('127.0.0.1', 8080))\n\
             \x20   except OSError: pass\n\
             \x20   cs.append(s)\n\
             time.sleep(2.5)\n",
        ],
    );
    let v = finish(child);
    let rose = tcpext(&ns, "ListenDrops") - drops0;
    assert!(rose >= 28, "ListenDrops rose by {rose}");
    let mine = v["netns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["netns"] == ns.name.as_str())
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(mine["listen_drops"], rose, "{v:#}");
    let h = v["headline"].as_str().unwrap();
    assert!(
        h.contains(&format!("ListenDrops +{rose} in netns {}", ns.name)),
        "{h}"
    );
}

/// kill -9 leaves the instance (nothing can run at SIGKILL); the next run
/// removes it and says so. SIGTERM ends the window early and cleanly.
#[test]
fn the_instance_is_removed_after_sigterm_and_after_kill_9_by_the_next_run() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_exclusive();
    let child = start(&["--for", "60s"]);
    let pid = child.id();
    let t0 = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let v = finish(child);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(v["window_s"].as_f64().unwrap() < 10.0, "{v:#}");

    let mut child = start(&["--for", "60s"]);
    let pid = child.id();
    let name = format!("ctdoctor-{pid}");
    assert!(instances().contains(&name));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(instances().contains(&name), "SIGKILL leaves it");
    let v = finish(start(&["--for", "1s"]));
    assert!(
        v["notes"].to_string().contains(&format!(
            "removed tracing instances left by killed runs: {name}"
        )),
        "{v:#}"
    );
    assert!(!instances().contains(&name));
}

/// Without root: what is missing, and no report (never "no drops").
#[test]
fn without_root_it_says_what_is_missing() {
    if !ready() || !testns::need_tool("setpriv") {
        return;
    }
    let bin = crate::nobody_bin();
    let _nobody = crate::nobody();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin.path)
        .args(["drops", "--for", "1s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot count drops") && err.contains("root"),
        "{err}"
    );
}

/// `exporter --drop-reasons`: ctdoctor_kernel_drops_total{reason} rises by
/// what was dropped, and SIGTERM removes its tracing instance.
#[test]
fn the_exporter_counts_drops_by_reason() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_exclusive();
    let ns = Netns::new("dropsexp");
    let e = common::exporter::Exporter::start(&["--table", "off", "--drop-reasons"]);
    let pid = e.child.id();
    assert!(instances().contains(&format!("ctdoctor-{pid}")));
    let no_socket = |s: &common::exporter::Samples| {
        s.get("ctdoctor_kernel_drops_total", &[("reason", "NO_SOCKET")])
            .unwrap_or(0.0) as u64
    };
    let before = no_socket(&common::exporter::Samples::parse(&e.metrics()));
    ns.exec(
        "python3",
        &[
            "-c",
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range(400):\n\
             \x20   s.sendto(b'x', ('127.0.0.1', 9999))\n",
        ],
    );
    let s = e.wait_for(Duration::from_secs(5), |s| no_socket(s) >= before + 400);
    let n = no_socket(&s) - before;
    assert!(near(n, 400), "{n} of 400");
    assert_eq!(
        s.get("ctdoctor_kernel_drop_events_lost_total", &[]),
        Some(0.0)
    );
    assert!(e.terminate().success());
    assert!(!instances().contains(&format!("ctdoctor-{pid}")));
}
