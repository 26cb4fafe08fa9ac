//! `ctdoctor lab` end to end, as root on the real kernel, with Debian's
//! nginx: the failing phase shows what users see (client timeouts, nginx
//! 504s), the kernel's own evidence (drops, "table full in netns N"), and
//! `check`'s critical finding; a fix is proven by the same load again; and
//! the machine is left as found — namespaces, global knobs, the host's nft
//! ruleset, processes. The lab lowers the global max for its run, so each
//! test holds the exclusive kernel-test lock.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::process::Command;

/// What the lab must leave as it found it.
#[derive(Debug, PartialEq)]
struct Machine {
    namespaces: Vec<String>,
    max: String,
    buckets: String,
    host_ruleset: String,
    nginx: usize,
}

fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap().trim().to_string();
    let mut namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    namespaces.sort();
    Machine {
        namespaces,
        max: read("/proc/sys/net/netfilter/nf_conntrack_max"),
        buckets: read("/proc/sys/net/netfilter/nf_conntrack_buckets"),
        host_ruleset: testns::run_text("nft", &["list", "ruleset"]),
        nginx: testns::run_text("ps", &["-eo", "comm"])
            .lines()
            .filter(|l| l.trim() == "nginx")
            .count(),
    }
}

/// `ctdoctor lab ARGS --json`: (exit code, report).
fn lab(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_ctdoctor"))
        .arg("lab")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

fn ready(name: &str) -> bool {
    if !testns::kernel_test(name) {
        return false;
    }
    if !testns::have("nginx") {
        assert!(
            std::env::var("CI").is_err(),
            "{name}: nginx is missing; scripts/test.sh installs it"
        );
        eprintln!("skipping {name}: nginx is not installed");
        return false;
    }
    true
}

/// The failing phase as users see it, and the kernel and `check` agree.
fn assert_failing(r: &serde_json::Value) {
    let b = &r["before"];
    let requests = b["requests"].as_u64().unwrap();
    let failed = b["failed"].as_u64().unwrap();
    assert!(requests > 100, "{b}");
    assert!(
        failed * 5 > requests,
        "more than 20 % failed: {failed}/{requests}"
    );
    assert!(
        b["http_504"].as_u64().unwrap() > 0,
        "nginx answered 504: {b}"
    );
    assert!(
        b["timed_out"].as_u64().unwrap() > 0,
        "clients timed out: {b}"
    );
    assert!(b["drops"].as_u64().unwrap() > 0, "the gateway dropped: {b}");
    assert!(
        b["table_full_lines"].as_u64().unwrap() > 0,
        "the kernel logged table full for the gateway's netns: {b}"
    );
    assert!(b["upstream_timeouts"].as_u64().unwrap() > 0, "{b}");
    assert_eq!(
        r["gateway"]["proxy"].as_str().unwrap().split(' ').next(),
        Some("nginx")
    );
    let first = &r["findings"][0];
    assert_eq!(first["id"], "conntrack.table_full", "{first}");
    assert_eq!(first["severity"], "critical", "{first}");
    assert_ne!(
        r["prepare_worst"]["severity"], "critical",
        "the gateway was healthy before the fill"
    );
}

#[test]
fn lab_table_full_without_a_fix_reports_the_failure_and_leaves_nothing() {
    if !ready("lab_table_full_without_a_fix_reports_the_failure_and_leaves_nothing") {
        return;
    }
    let _lock = testns::lock_exclusive();
    let before = machine();
    let (code, r) = lab(&["--scenario", "table-full", "--phase", "8"]);
    assert_eq!(code, Some(0), "{r}");
    assert_failing(&r);
    assert!(r["after"].is_null());
    assert_eq!(machine(), before, "the lab left the machine as it found it");
}
