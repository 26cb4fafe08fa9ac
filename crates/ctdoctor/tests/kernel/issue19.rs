//! Issue 19 "Safe as root", items 8 and 12: ctdoctor never claims an ok it
//! did not check, never tells root to run as root, and never ignores an
//! input it was given. The non-root cases run the binary as user nobody
//! (setpriv), the root-but-refused case as root of a user namespace
//! (`unshare -U -r`); both need root to start, and say so when skipped.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::exporter::{Exporter, Samples};
use crate::common::{fixture, json, run as ctdoctor};
use crate::NobodyBin as Bin;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

fn out(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn finding<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no finding {id}"))
}

/// Whether the tests that run ctdoctor as another user can run here.
fn can_switch_user() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    testns::need(
        root,
        "runs ctdoctor as user nobody or in a user namespace: needs root",
    ) && testns::need_tool("setpriv")
}

/// The binary, copied where user nobody can run it; one copy per test,
/// removed when the test ends.
fn bin() -> Bin {
    crate::nobody_bin()
}

/// One test at a time runs processes as nobody: each sees the others'
/// (fds.process reads every process of its user). The lock is the kernel
/// target's: other modules run processes as nobody too.
fn nobody_lock() -> std::sync::MutexGuard<'static, ()> {
    crate::nobody()
}

/// Run as nobody: the output and the pid (setpriv execs ctdoctor).
fn as_nobody_pid(b: &Bin, args: &[&str]) -> (Output, u32) {
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&b.path)
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir("/")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

fn as_nobody(b: &Bin, args: &[&str]) -> Output {
    as_nobody_pid(b, args).0
}

/// Processes of user nobody running now (other than ours).
fn nobody_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .is_some_and(|u| u.split_whitespace().nth(1) == Some("65534"))
        })
        .count()
}

// ---- item 8: a run that checked nothing is a failure --------------------

/// `check --root /nonexistent`: every rule "not checked". Before: exit 0
/// and "no problem found in this netns". A missing root is refused when
/// the flags are parsed; an empty directory is a machine with nothing in
/// it: every rule not checked.
#[test]
fn issue_19_8_a_check_that_checked_nothing_exits_3_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexistent");
    let o = ctdoctor(&["check", "--root", missing.to_str().unwrap()]);
    let (text, err) = out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}{err}");
    assert!(err.contains("No such file"), "{err}");
    let root = dir.path().to_str().unwrap();

    let o = ctdoctor(&["check", "--root", root]);
    let (text, err) = out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}{err}");
    assert!(!text.contains("no problem found"), "{text}");
    let head = text.lines().next().unwrap();
    let rules = ctdoctor::checks::RULES.len();
    assert!(
        head.starts_with(&format!(
            "ctdoctor check: nothing checked in this netns: none of the {rules} rules"
        )),
        "{head}"
    );
    assert!(
        text.contains(&format!("{rules} of {rules} rules not checked")),
        "{text}"
    );
    assert!(err.contains("nothing was checked"), "{err}");

    let o = ctdoctor(&["check", "--root", root, "--json"]);
    assert_eq!(o.status.code(), Some(3));
    let v = json(&o);
    assert_eq!(
        (v["checked"].as_u64(), v["not_checked"].as_u64()),
        (Some(0), Some(rules as u64))
    );
    assert!(
        v["error"].as_str().unwrap().contains("nothing was checked"),
        "{v}"
    );
    assert!(!v["diagnosis"]["headline"]
        .as_str()
        .unwrap()
        .contains("no problem found"));
}

/// A report whose rules were only partly checked never says "no problem
/// found"; it says how many were checked and not (a fixture tree that
/// lacks some sources; the verdict stands, so the exit code is the
/// severity's).
#[test]
fn issue_19_8_no_problem_found_only_when_every_rule_was_checked() {
    let root = fixture("ct-healthy-6.18");
    let o = ctdoctor(&["check", "--root", root.to_str().unwrap(), "--json"]);
    let v = json(&o);
    let (c, n) = (
        v["checked"].as_u64().unwrap(),
        v["not_checked"].as_u64().unwrap(),
    );
    let rules = ctdoctor::checks::RULES.len() as u64;
    assert_eq!(c + n, rules);
    assert!(c > 0 && n > 0, "the fixture lacks some sources: {c}/{n}");
    let head = v["diagnosis"]["headline"].as_str().unwrap();
    assert!(!head.contains("no problem found"), "{head}");
    assert!(
        head.contains(&format!("{c} of {rules} rules checked"))
            && head.contains(&format!("{n} not checked")),
        "{head}"
    );
    assert_eq!(o.status.code(), Some(0), "ok/info: the verdict stands");
    for id in ["nic.drops", "fds.process"] {
        let f = finding(&v, id);
        if f["evidence"].get("unavailable").is_some() {
            assert_eq!(f["severity"], "info", "{f}");
        }
    }
}

/// `check --all-netns` as non-root, with two namespaces it cannot read: a
/// pinned one (`ip netns add`: setns needs CAP_SYS_ADMIN) and one only a
/// root process lives in (its /proc/PID/ns/net is a ptrace access).
/// Before: "0 network namespaces", exit 0. Now: its own namespace is read
/// (no setns needed to stay), the two are named with why, and the run
/// exits 3.
#[test]
fn issue_19_8_all_netns_as_nobody_names_what_it_could_not_read_and_exits_3() {
    if !testns::kernel_test(
        "issue_19_8_all_netns_as_nobody_names_what_it_could_not_read_and_exits_3",
    ) || !can_switch_user()
        || !testns::need_tool("unshare")
    {
        return;
    }
    let _lock = testns::lock_shared();
    let _one = nobody_lock();
    let pinned = testns::Netns::new("i19all");
    let mut holder = Command::new("unshare")
        .args(["--net", "sleep", "60"])
        .spawn()
        .unwrap();
    let pid = holder.id();
    let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
    let t0 = std::time::Instant::now();
    while std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .as_ref()
        == Some(&mine)
        || std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map_or(true, |c| c.trim() != "sleep")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "unshare did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = &bin();
    let o = as_nobody(b, &["check", "--all-netns"]);
    let j = as_nobody(b, &["check", "--all-netns", "--json"]);
    let _ = holder.kill();
    let _ = holder.wait();

    let (text, err) = out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}{err}");
    assert!(!text.contains(" 0 network namespaces"), "{text}");
    assert!(text.contains("FAIL"), "{text}");
    assert!(err.contains("not every network namespace"), "{err}");

    assert_eq!(j.status.code(), Some(3));
    let v = json(&j);
    assert!(v["error"].is_string(), "{v}");
    let not_read = v["not_read"].as_array().unwrap();
    let named = not_read
        .iter()
        .find(|n| n["name"] == pinned.name.as_str())
        .unwrap_or_else(|| panic!("{} not in {not_read:?}", pinned.name));
    assert!(
        named["error"].as_str().unwrap().contains("needs root"),
        "{named}"
    );
    assert!(
        not_read.iter().any(|n| n["name"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("sleep[{pid}]")))),
        "the namespace only sleep[{pid}] lives in: {not_read:?}"
    );
    let read = v["namespaces"].as_array().unwrap();
    assert!(
        read.iter()
            .any(|r| r["netns"]["is_init"] == true && r["checked"].as_u64() > Some(0)),
        "its own namespace, read without entering it: {read:?}"
    );
}

// ---- item 12: no false ok, no wrong hint, no ignored input ---------------

/// As non-root `fds.process` could only see ctdoctor itself. Before: "ok
/// ctdoctor[PID] has 6 of 20000 open files". Now: not checked, with why.
#[test]
fn issue_19_12_fds_process_as_nobody_is_not_checked() {
    if !can_switch_user() {
        return;
    }
    let _one = nobody_lock();
    let b = &bin();
    let others = nobody_processes();
    let (o, pid) = as_nobody_pid(b, &["check", "--json"]);
    let v = json(&o);
    let f = finding(&v, "fds.process");
    let title = f["title"].as_str().unwrap();
    assert!(
        !title.contains(&format!("[{pid}]")),
        "never itself: {title}"
    );
    assert_ne!(f["evidence"]["pid"], pid, "{f}");
    if others == 0 {
        // Nobody else to read: no verdict, and why.
        assert_ne!(f["severity"], "ok", "{f}");
        assert!(title.starts_with("not checked: "), "{title}");
        assert!(
            f["evidence"]["unavailable"]
                .as_str()
                .unwrap()
                .contains("none readable"),
            "{f}"
        );
    } else {
        eprintln!("{others} other processes of nobody here: fds.process judges them");
        assert!(title.contains("processes not readable"), "{title}");
    }
    let head = v["diagnosis"]["headline"].as_str().unwrap();
    assert!(!head.contains("no problem found"), "{head}");
}

/// Root refused (here: root of a user namespace, which has no privilege
/// over the host's files and namespaces). Before: "permission denied (run
/// as root)" and "(needs root)". Now: what blocks root.
#[test]
fn issue_19_12_root_is_never_told_to_run_as_root() {
    if !can_switch_user() || !testns::need_tool("unshare") {
        return;
    }
    let b = &bin();
    let run = |args: &[&str]| {
        Command::new("unshare")
            .args(["-U", "-r"])
            .arg(&b.path)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let o = run(&["check", "--json"]);
    let (text, err) = out(&o);
    let v = json(&o);
    assert!(
        !text.contains("run as root") && !text.contains("needs root"),
        "{text}"
    );
    assert!(
        !err.contains("run as root") && !err.contains("needs root"),
        "{err}"
    );
    let denied: Vec<&Value> = v["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["kind"] == "denied")
        .collect();
    assert!(!denied.is_empty(), "{}", v["unavailable"]);
    assert!(
        denied[0]["detail"]
            .as_str()
            .unwrap()
            .contains("user namespace"),
        "{}",
        denied[0]
    );
    assert!(!v["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["kind"] == "needs_root"));

    // Entering pid 1's namespace: refused, and said why.
    let o = run(&["check", "--netns", "1"]);
    let (_, err) = out(&o);
    assert_eq!(o.status.code(), Some(3));
    assert!(!err.contains("needs root"), "{err}");
    assert!(
        err.contains("refused to root: root only in a user namespace"),
        "{err}"
    );

    // Dumping the table (ctnetlink answers EPERM): the same.
    let o = run(&["summary"]);
    let (_, err) = out(&o);
    assert_eq!(o.status.code(), Some(3));
    assert!(err.contains("(refused to root: "), "{err}");
    assert!(!err.contains("needs root"), "{err}");
}

/// No ruleset readable (nobody cannot run nft or read ip_tables_names).
/// Before: `ctdoctor_source_up{source="consumers"} 1` and the rule
/// counted as checked. Now: the source is down and the rule not checked.
#[test]
fn issue_19_12_consumers_without_a_ruleset_is_down_and_not_checked() {
    if !can_switch_user() {
        return;
    }
    let _one = nobody_lock();
    let b = &bin();
    let v = json(&as_nobody(b, &["check", "--json"]));
    let src = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "consumers")
        .unwrap();
    assert_eq!(src["ok"], false, "{src}");
    assert!(src["error"]
        .as_str()
        .unwrap()
        .contains("no ruleset could be read"));
    let f = finding(&v, "conntrack.consumers");
    assert!(f["evidence"]["unavailable"].is_string(), "{f}");

    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&b.path)
        .args([
            "exporter",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1s",
            "--table",
            "off",
        ])
        .current_dir("/");
    let e = Exporter::spawn(cmd);
    let s: Samples = e.wait_for(Duration::from_secs(20), |s| {
        s.get("ctdoctor_source_up", &[("source", "consumers")])
            .is_some()
    });
    assert_eq!(
        s.get("ctdoctor_source_up", &[("source", "consumers")]),
        Some(0.0)
    );
    assert_eq!(
        s.get(
            "ctdoctor_check_rule_checked",
            &[("id", "conntrack.consumers")]
        ),
        Some(0.0)
    );
    assert!(e.terminate().success());
}

/// `plan --file DUMP` alone. Before: the file was not even read (the
/// demand stayed "the count now"). Now: a dump larger than the table is
/// the demand; with --peak alone it is refused, not ignored.
#[test]
fn issue_19_12_plan_file_alone_sizes_for_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.txt");
    let mut s = String::new();
    for p in 0..5000u32 {
        let port = 1024 + p;
        s.push_str(&format!(
            "ipv4     2 tcp      6 100 TIME_WAIT src=10.0.0.1 dst=10.0.0.2 sport={port} dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport={port} [ASSURED] mark=0 zone=0 use=2\n"
        ));
    }
    std::fs::write(&dump, s).unwrap();
    let root = fixture("ct-healthy-6.18"); // count 1,200
    let (root, dump) = (root.to_str().unwrap(), dump.to_str().unwrap());

    let o = ctdoctor(&["plan", "--root", root, "--file", dump, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o).1);
    let d = &json(&o)["demand"];
    assert_eq!(d["source"], "dump", "{d}");
    assert_eq!(d["entries"], 5000);
    assert_eq!(d["count"], 1200);

    let o = ctdoctor(&["plan", "--root", root, "--file", dump]);
    let (text, _) = out(&o);
    assert!(
        text.contains("5,000 entries, as many as the dump holds"),
        "{text}"
    );

    let o = ctdoctor(&["plan", "--root", root, "--file", dump, "--peak", "10"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(out(&o).1.contains("--file with --peak"), "{}", out(&o).1);

    // A file that is no table fails instead of being skipped.
    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "hello\n").unwrap();
    let o = ctdoctor(&["plan", "--root", root, "--file", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o).0);
}
