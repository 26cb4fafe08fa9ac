//! Namespaces in the real kernel: each `--netns` report reads its own
//! namespace (a reader that silently reads the host fails here), and
//! `--all-netns` finds namespaces and the processes living in them.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, check_json, json_finding};

use std::process::Command;
use testns::Netns;

/// `conntrack -I` `n` UDP entries (src 10.9.<i/250>.<i%250+1>).
fn insert_udp(ns: &Netns, n: u32) {
    for i in 0..n {
        let src = format!("10.9.{}.{}", i / 250, i % 250 + 1);
        ns.exec(
            "conntrack",
            &[
                "-I", "-s", &src, "-d", "10.8.0.1", "-p", "udp", "--sport", "5000", "--dport",
                "53", "-t", "600",
            ],
        );
    }
}

#[test]
fn two_namespaces_get_their_own_count_timeouts_and_interfaces() {
    if !testns::kernel_test("two_namespaces_get_their_own_count_timeouts_and_interfaces") {
        return;
    }
    let _lock = testns::lock_shared();
    let a = Netns::new("own-a");
    let b = Netns::new("own-b");
    insert_udp(&a, 7);
    insert_udp(&b, 23);
    a.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "33");
    b.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "77");
    b.exec(
        "ip",
        &[
            "link",
            "add",
            "ctdt-dummy0",
            "type",
            "veth",
            "peer",
            "name",
            "ctdt-dummy1",
        ],
    );

    for (ns, tw) in [(&a, 33), (&b, 77)] {
        let (_, r) = check_json(&["--netns", &ns.name]);
        assert_eq!(r["netns"]["name"], ns.name.as_str());
        assert_eq!(r["netns"]["inode"], ns.inode());
        assert_eq!(r["netns"]["is_init"], false);
        // Oracle: the namespace's own count file, read inside it.
        let count = ns.count();
        assert_eq!(
            json_finding(&r, "conntrack.usage")["evidence"]["count"],
            count,
            "{}",
            ns.name
        );
        let timeouts = &json_finding(&r, "conntrack.timeouts")["evidence"];
        assert_eq!(
            timeouts["tcp_timeout_time_wait"], tw,
            "{}: {timeouts}",
            ns.name
        );
    }
    assert_ne!(a.count(), b.count());

    // Interfaces: only b has the dummy; the report's JSON names it only there.
    let (_, ra) = check_json(&["--netns", &a.name]);
    let (_, rb) = check_json(&["--netns", &b.name]);
    assert!(!ra.to_string().contains("ctdt-dummy0"));
    assert!(
        rb.to_string().contains("ctdt-dummy0"),
        "b's report does not mention its interface: {rb}"
    );
}

#[test]
fn all_netns_finds_namespaces_and_their_processes() {
    if !testns::kernel_test("all_netns_finds_namespaces_and_their_processes") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("all");
    // A process living in the namespace, bounded in time.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "30"])
        .spawn()
        .unwrap();
    let pid = child.id();
    // `ip netns exec` execs sleep in the same pid once it has entered the namespace.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() != "sleep")
        .unwrap_or(true)
    {
        assert!(std::time::Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let (code, v) = check_json(&["--all-netns"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(matches!(code, Some(0..=2)));
    assert_eq!(v["schema_version"], 1);
    let reports = v["namespaces"].as_array().unwrap();
    let init: Vec<_> = reports
        .iter()
        .filter(|r| r["netns"]["is_init"] == true)
        .collect();
    assert_eq!(init.len(), 1, "exactly one host namespace");
    let mine = reports
        .iter()
        .find(|r| r["netns"]["inode"] == ns.inode())
        .expect("our namespace is listed");
    assert_eq!(mine["netns"]["name"], ns.name.as_str());
    let procs = mine["processes"].as_array().expect("processes listed");
    assert!(
        procs
            .iter()
            .any(|p| p["pid"] == pid && p["comm"] == "sleep"),
        "sleep[{pid}] not among {procs:?}"
    );
    // Each namespace's report has the conntrack findings of its own table.
    assert_eq!(
        json_finding(mine, "conntrack.usage")["evidence"]["count"],
        ns.count()
    );
}

#[test]
fn root_prefix_with_a_real_proc_still_reads_the_target_netns() {
    // `--root DIR` where DIR/proc is the real procfs (a container with the
    // host's /proc mounted at /host/proc): DIR/proc/net is the process
    // leader's namespace, not the thread that entered --netns. The report
    // must still describe the target's interfaces.
    if !testns::kernel_test("root_prefix_with_a_real_proc_still_reads_the_target_netns") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("prefix");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/proc", dir.path().join("proc")).unwrap();
    let (_, r) = check_json(&["--root", dir.path().to_str().unwrap(), "--netns", &ns.name]);
    // Which namespace the report says it describes: the target, not the
    // host (an unknown netns was judged as the init one).
    assert_eq!(r["netns"]["inode"], ns.inode(), "{}", r["netns"]);
    assert_eq!(r["netns"]["is_init"], false);
    assert_eq!(r["netns"]["name"], ns.name.as_str());
    // Oracle: the namespace's links as `ip` lists them inside it.
    let out = ns.exec_text("ip", &["-o", "link", "show"]);
    let mut want: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect();
    want.sort();
    let ifaces = &json_finding(&r, "nic.drops")["evidence"]["interfaces"];
    let mut got: Vec<String> = ifaces
        .as_object()
        .unwrap_or_else(|| panic!("no interfaces: {ifaces}"))
        .keys()
        .cloned()
        .collect();
    got.sort();
    assert_eq!(got, want);
    // The per-netns count agrees too (proc/sys follows the thread anyway).
    assert_eq!(
        json_finding(&r, "conntrack.usage")["evidence"]["count"],
        ns.count()
    );
}

/// `--all-netns --sample`: every namespace's counters are read before any
/// namespace's second reading (one pair of instants for all, not one
/// sample after another).
#[test]
fn sampled_namespaces_share_their_two_instants() {
    if !testns::kernel_test("sampled_namespaces_share_their_two_instants") {
        return;
    }
    let _lock = testns::lock_shared();
    let nss: Vec<Netns> = (0..3).map(|_| Netns::new("inst")).collect();
    let targets: Vec<ctdoctor::host::netns::Target> = nss
        .iter()
        .map(|n| ctdoctor::host::netns::Target::Named(n.name.clone()))
        .collect();
    let opts = ctdoctor::host::Collect {
        sample: Some(std::time::Duration::from_millis(1500)),
        ..Default::default()
    };
    let got: Vec<_> = ctdoctor::host::collect(std::path::Path::new("/"), &targets, &opts)
        .into_iter()
        .map(|r| r.expect("read the namespace").snapshot)
        .collect();
    let last_first = got
        .iter()
        .map(|s| s.earlier.as_ref().expect("earlier reading").elapsed_ms)
        .max()
        .unwrap();
    let first_second = got.iter().map(|s| s.now.elapsed_ms).min().unwrap();
    assert!(
        last_first < first_second,
        "every first reading ({last_first} ms) precedes every second one ({first_second} ms)"
    );
    for s in &got {
        let secs = s.interval_secs().unwrap();
        assert!((1.4..4.0).contains(&secs), "interval {secs}");
        assert_eq!(
            s.now
                .netns
                .as_ref()
                .unwrap()
                .name
                .as_deref()
                .map(|n| n.starts_with("ctdt-inst")),
            Some(true)
        );
    }
}

/// A child process that is killed (and reaped) on drop, panics included.
struct Sleeper(std::process::Child);

impl Sleeper {
    /// `cmd args…` that ends in `sleep 30`, once `sleep` runs (it is
    /// exec'd in the same pid by `ip netns exec` and `unshare`).
    fn start(cmd: &str, args: &[&str]) -> Sleeper {
        let s = Sleeper(Command::new(cmd).args(args).spawn().unwrap());
        let pid = s.0.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim() != "sleep")
            .unwrap_or(true)
        {
            assert!(std::time::Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        s
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 8, item 14b: `check --netns PID` names the namespace: its name
/// under /run/netns when it is pinned there, else "pid N".
#[test]
fn issue_8_14b_netns_pid_reports_the_namespace_name() {
    if !testns::kernel_test("issue_8_14b_netns_pid_reports_the_namespace_name") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("byp");
    let pinned = Sleeper::start("ip", &["netns", "exec", &ns.name, "sleep", "30"]);
    let pid = pinned.0.id().to_string();
    let (_, r) = check_json(&["--netns", &pid]);
    assert_eq!(r["netns"]["name"], ns.name.as_str(), "{}", r["netns"]);
    assert_eq!(r["netns"]["inode"], ns.inode());

    // A namespace pinned nowhere: labelled by the pid that entered it.
    let loose = Sleeper::start("unshare", &["--net", "sleep", "30"]);
    let pid = loose.0.id().to_string();
    let (_, r) = check_json(&["--netns", &pid]);
    assert_eq!(r["netns"]["name"], format!("pid {pid}"), "{}", r["netns"]);
    assert_eq!(r["netns"]["is_init"], false);
    let out = common::run(&["check", "--netns", &pid]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(&format!("  network namespace pid {pid} (inode "))),
        "{text}"
    );
}

/// The knob guard: `set` puts the old value back only while the knob still
/// holds its own value (someone else's later change is theirs);
/// `set_exclusive` (a lock holder that changes it further, e.g. a test
/// pasting a fix) puts it back whatever it holds — the guard that once left
/// the machine's max at a pasted fix's value.
#[test]
fn knob_guards_restore_as_documented() {
    if !testns::kernel_test("knob_guards_restore_as_documented") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("knob");
    let rel = "net/netfilter/nf_conntrack_tcp_timeout_time_wait";
    let path = format!("/proc/sys/{rel}");
    let read = || std::fs::read_to_string(&path).unwrap().trim().to_string();
    let (plain, exclusive) = ctdoctor::host::netns::run_in(&ns.target(), || {
        let before = read();
        let k = netns::guard::Knob::set(rel, "77").unwrap();
        std::fs::write(&path, "55").unwrap(); // someone else's change
        drop(k);
        let plain = (before.clone(), read());
        std::fs::write(&path, &before).unwrap();
        let k = netns::guard::Knob::set_exclusive(rel, "77").unwrap();
        std::fs::write(&path, "55").unwrap(); // the holder's own further change
        drop(k);
        (plain, (before, read()))
    })
    .unwrap();
    assert_eq!(plain.1, "55", "set: a later change by someone else stays");
    assert_eq!(
        exclusive.1, exclusive.0,
        "set_exclusive: the old value is back"
    );
}
