//! `ctdoctor plan` on fixture trees: the sizing agrees with `check`'s
//! suggestion, the kernel default follows the kernel's rules by version
//! (or its boot log line), the what-if counts a hand-made table's ages,
//! and bad input fails with exit 3 and one message.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, fixture, run as ctdoctor, run_json};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn plan_json(root: &Path, extra: &[&str]) -> Value {
    let root = root.to_str().unwrap();
    let mut args = vec!["plan", "--root", root, "--json"];
    args.extend_from_slice(extra);
    run_json(&args)
}

/// A copy of a fixture tree to edit.
fn tree_copy(name: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture(name).display()))
        .arg(d.path())
        .status()
        .unwrap();
    assert!(st.success());
    d
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn alt<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["sizing"]["alternatives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no alternative {name}"))
}

#[test]
fn plan_and_check_suggest_the_same_size() {
    let mut compared = 0;
    for name in [
        "ct-table-full-6.18",
        "ct-high-usage",
        "ct-old-5.4",
        "ct-small-ram",
        "ct-bad-hash",
        "ct-healthy-6.18",
        "ct-long-timeouts",
        "persist-hashsize-cmdline",
        "persist-hashsize-modprobe",
    ] {
        let root = fixture(name);
        // check exits 0, 1 or 2 by severity.
        let out = ctdoctor(&["check", "--root", root.to_str().unwrap(), "--json"]);
        assert!(matches!(out.status.code(), Some(0..=2)), "{name}");
        let check = common::json(&out);
        let plan = plan_json(&root, &[]);
        let rec = &plan["sizing"]["recommended"];
        for f in check["findings"].as_array().unwrap() {
            // The rules that size the table; the others may pin max as it is.
            if !matches!(
                f["id"].as_str(),
                Some("conntrack.table_full" | "conntrack.usage" | "conntrack.memory")
            ) {
                continue;
            }
            for c in f["changes"].as_array().into_iter().flatten() {
                let value: u64 = c["value"].as_str().unwrap().parse().unwrap();
                match c["key"].as_str().unwrap() {
                    "net.netfilter.nf_conntrack_max" => {
                        assert_eq!(value, rec["max"], "{name}: {}", f["id"]);
                        compared += 1;
                    }
                    "nf_conntrack.hashsize" => {
                        assert_eq!(value, rec["buckets"], "{name}: {}", f["id"]);
                        compared += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(compared >= 8, "only {compared} values compared");
}

#[test]
fn json_shape_and_alternatives() {
    let v = plan_json(&fixture("ct-table-full-6.18"), &[]);
    assert_eq!(v["schema_version"], 1);
    let rec = &v["sizing"]["recommended"];
    for k in [
        "max",
        "buckets",
        "full_table_bytes",
        "ram_pct",
        "mean_chain_at_max",
    ] {
        assert!(rec[k].is_number(), "recommended.{k}: {rec}");
    }
    let names: Vec<&str> = v["sizing"]["alternatives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "current",
            "kernel_default",
            "kube_proxy",
            "seed_rule",
            "recommended"
        ]
    );
    // Full table: capped, planned from the max (262144) × 2.
    assert_eq!(v["demand"]["capped"], true);
    assert_eq!(rec["max"], 524_288);
    assert_eq!(rec["buckets"], 524_288);
    assert_eq!(rec["mean_chain_at_max"], 2.0);
    // 524288 × 256 B × 1.5 + 524288 × 8 B.
    assert_eq!(rec["full_table_bytes"], 524_288u64 * 384 + 524_288 * 8);
    assert_eq!(v["sizing"]["memory_model"]["objsize_source"], "measured");
    // The seed's formula beside it.
    assert_eq!(
        alt(&v, "recommended")["seed_formula_bytes"],
        524_288u64 * 352 + 524_288 * 16
    );
    // kube-proxy on 2 CPUs.
    assert_eq!(alt(&v, "kube_proxy")["max"], 131_072);
    assert_eq!(alt(&v, "kube_proxy")["buckets"], 32_768);
    assert!(v["what_if"].is_null());
    let keys: Vec<&str> = v["sizing"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"net.netfilter.nf_conntrack_max"), "{keys:?}");
}

#[test]
fn the_kernel_default_by_version_and_from_the_boot_log() {
    // ct-old-5.4: 8 GiB. 5.4 mainline: 65536 buckets, max 4 ×.
    let v = plan_json(&fixture("ct-old-5.4"), &[]);
    let k = alt(&v, "kernel_default");
    assert_eq!(
        (k["max"].as_u64(), k["buckets"].as_u64()),
        (Some(262_144), Some(65_536))
    );
    assert!(k["basis"]
        .as_str()
        .unwrap()
        .contains("mainline rule for 5.4.0"));

    // The same machine on 3.10 mainline: no 4 GiB step.
    let t = tree_copy("ct-old-5.4");
    write(
        t.path(),
        "proc/sys/kernel/osrelease",
        "3.10.0-1160.el7.x86_64\n",
    );
    let v = plan_json(t.path(), &[]);
    let k = alt(&v, "kernel_default");
    assert_eq!(
        (k["max"].as_u64(), k["buckets"].as_u64()),
        (Some(65_536), Some(16_384))
    );

    // CentOS 7 backported the 4.0 step: its boot log says so, and wins.
    let log = std::fs::read_to_string(t.path().join("dev/kmsg")).unwrap();
    write(
        t.path(),
        "dev/kmsg",
        &format!("6,10,2000000,-;nf_conntrack version 0.5.0 (65536 buckets, 262144 max)\n{log}"),
    );
    let v = plan_json(t.path(), &[]);
    let k = alt(&v, "kernel_default");
    assert_eq!(
        (k["max"].as_u64(), k["buckets"].as_u64()),
        (Some(262_144), Some(65_536))
    );
    assert!(k["basis"].as_str().unwrap().contains("boot log"), "{k}");
}

#[test]
fn peak_headroom_and_budget() {
    let root = fixture("ct-healthy-6.18");
    let v = plan_json(&root, &["--peak", "1000000", "--headroom", "1.5"]);
    assert_eq!(v["demand"]["source"], "peak");
    assert_eq!(v["demand"]["capped"], false);
    assert_eq!(v["sizing"]["recommended"]["max"], 1_500_000);
    // 1500000 buckets rounded up to 512-head pages.
    assert_eq!(v["sizing"]["recommended"]["buckets"], 1_500_160);
    // A 0.1 % budget caps it: MemTotal × 0.001 / (256 × 1.5 + 8) B, below
    // even the current max (whose full table breaks the budget: lowered).
    let v = plan_json(&root, &["--peak", "1000000", "--mem-budget", "0.1%"]);
    assert_eq!(v["sizing"]["capped_by_memory"], true);
    let ram = v["mem_total_bytes"].as_u64().unwrap();
    let budget = (ram as f64 * 0.001 / 392.0) as u64;
    assert_eq!(v["sizing"]["budget_max"], budget);
    assert_eq!(v["sizing"]["recommended"]["max"], budget);
    assert_eq!(v["sizing"]["recommended"]["basis"], "lowered_to_budget");
    // Buckets are never shrunk: the current 262144 stay.
    assert_eq!(v["sizing"]["recommended"]["buckets"], 262_144);
    let text = String::from_utf8(
        ctdoctor(&[
            "plan",
            "--root",
            root.to_str().unwrap(),
            "--peak",
            "1000000",
        ])
        .stdout,
    )
    .unwrap();
    for want in [
        "recommended",
        "kernel_default",
        "seed formula",
        "Changes:",
        "Where:",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
}

/// A table of `per_sec` TIME_WAIT entries for every age 1..=60 s under
/// time_wait 60 (the ct-healthy-6.18 tree's value), plus 5 ESTABLISHED.
fn steady_table(per_sec: u32) -> String {
    let mut s = String::new();
    let mut port = 1024;
    for left in 0..60 {
        for _ in 0..per_sec {
            port += 1;
            s.push_str(&format!(
                "ipv4     2 tcp      6 {left} TIME_WAIT src=10.0.0.1 dst=10.0.0.2 sport={port} dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport={port} [ASSURED] mark=0 zone=0 use=2\n"
            ));
        }
    }
    for i in 0..5 {
        s.push_str(&format!(
            "ipv4     2 tcp      6 7000 ESTABLISHED src=10.0.0.3 dst=10.0.0.2 sport={} dport=80 src=10.0.0.2 dst=10.0.0.3 sport=80 dport={} [ASSURED] mark=0 zone=0 use=2\n",
            2000 + i,
            2000 + i
        ));
    }
    s
}

#[test]
fn what_if_from_a_trees_table() {
    let t = tree_copy("ct-healthy-6.18");
    write(t.path(), "proc/net/nf_conntrack", &steady_table(10));
    let v = plan_json(
        t.path(),
        &["--what-if", "nf_conntrack_tcp_timeout_time_wait=15"],
    );
    let w = &v["what_if"];
    let tw = &w["states"]["TIME_WAIT"];
    // 600 entries: ages 60..=1 (left 0..=59); age ≤ 15 is left ≥ 45: 15 × 10.
    assert_eq!(tw["now"], 600);
    assert_eq!(tw["predicted"], 150);
    assert_eq!(tw["evictable_now"], 450);
    assert_eq!(w["states"]["ESTABLISHED"]["predicted"], 5);
    assert_eq!(w["total"]["now"], 605);
    assert_eq!(w["total"]["predicted"], 155);
    assert_eq!(w["converges_within_s"], 59);
    assert_eq!(
        w["timeouts"]["net.netfilter.nf_conntrack_tcp_timeout_time_wait"],
        serde_json::json!({"from": 60, "to": 15})
    );
    assert_eq!(w["changes"][0]["scope"], "netns");
    assert_eq!(w["changes"][0]["value"], "15");

    // The same table through --file, and through stdin, says the same.
    let dump = t.path().join("dump.txt");
    std::fs::write(&dump, steady_table(10)).unwrap();
    let v2 = run_json(&[
        "plan",
        "--root",
        fixture("ct-healthy-6.18").to_str().unwrap(),
        "--file",
        dump.to_str().unwrap(),
        "--what-if",
        "tcp_timeout_time_wait=15",
        "--json",
    ]);
    assert_eq!(v2["what_if"]["states"], w["states"]);

    // Human text: the table and the convergence in words.
    let out = ctdoctor(&[
        "plan",
        "--root",
        t.path().to_str().unwrap(),
        "--what-if",
        "tcp_timeout_time_wait=15",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("TIME_WAIT"), "{text}");
    assert!(text.contains("within 59 s"), "{text}");
    assert!(
        text.contains("ctdoctor tune --evict time_wait --idle-over 15 --apply"),
        "{text}"
    );
    assert!(
        text.contains("sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=15"),
        "{text}"
    );
}

#[test]
fn a_rate_is_sized_from_the_trees_mix() {
    let t = tree_copy("ct-healthy-6.18");
    // 600 TIME_WAIT over 60 s: 10 closes/s; 5 ESTABLISHED add 0.5 s each.
    write(t.path(), "proc/net/nf_conntrack", &steady_table(10));
    let v = plan_json(t.path(), &["--rate", "1000"]);
    let d = &v["demand"];
    assert_eq!(d["source"], "rate");
    assert_eq!(d["rate"]["time_wait_secs"], 60.0);
    assert_eq!(d["rate"]["other_states_secs"], 0.5);
    assert_eq!(d["entries"], 60_500);
}

#[test]
fn bad_input_fails_once_with_exit_3() {
    let root = fixture("ct-healthy-6.18");
    let r = root.to_str().unwrap();
    for (args, want) in [
        (
            vec!["plan", "--root", r, "--what-if", "nf_conntrack_max=1"],
            "is not one of them",
        ),
        (
            vec!["plan", "--root", r, "--what-if", "tcp_timeout_time_wiat=1"],
            "unknown setting",
        ),
        (
            vec!["plan", "--root", r, "--what-if", "tcp_timeout_time_wait=15"],
            "proc/net/nf_conntrack does not exist",
        ),
        (
            vec!["plan", "--root", r, "--mem-budget", "0"],
            "out of range",
        ),
        (vec!["plan", "--root", r, "--headroom", "0.5"], "at least 1"),
        (
            vec!["plan", "--root", r, "--peak", "5", "--rate", "5"],
            "cannot be used with",
        ),
    ] {
        let out = ctdoctor(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A snapshot holds no entries.
    let snap = fixture("snapshots");
    if let Some(f) = std::fs::read_dir(&snap)
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())))
    {
        let out = ctdoctor(&[
            "plan",
            "--snapshot",
            f.to_str().unwrap(),
            "--what-if",
            "tcp_timeout_time_wait=15",
        ]);
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stderr).contains("give --file"));
    }
}
