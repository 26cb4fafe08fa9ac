//! Issue 21, nginx awareness, on fixture trees: what nginx's error logs
//! said (the tree's probe/nginx_errors, as host::nginx records it) is
//! evidence on the rules that explain it, changes no severity, is said on
//! rules that are ok, survives a snapshot, and a broken probe is listed as
//! not read, never fatal. Trees: sock-busy (ports and fds short while
//! nginx logged EADDRNOTAVAIL, EMFILE and connect timeouts, its busy log
//! read in part) and nginx-timeouts (a gateway netns with a healthy table
//! whose nginx logged connect timeouts).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, check_json, fixture, json_finding};
use serde_json::Value;
use std::path::Path;

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// The tree `name` copied, its probe/nginx_errors replaced by `probe`
/// (None: removed).
fn variant(name: &str, probe: Option<&[u8]>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    copy_tree(&fixture(name), d.path());
    let p = d.path().join("probe/nginx_errors");
    match probe {
        Some(b) => std::fs::write(p, b).unwrap(),
        None => std::fs::remove_file(p).unwrap(),
    }
    d
}

fn check(root: &Path) -> (Option<i32>, Value) {
    check_json(&["--root", root.to_str().unwrap()])
}

fn severities(v: &Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn issue_21_nginx_errors_are_evidence_on_the_rules_that_explain_them() {
    let (code, v) = check(&fixture("sock-busy"));
    let ports = &json_finding(&v, "sockets.ports")["evidence"];
    assert_eq!(ports["nginx_lines"]["addr_not_avail"], 4980);
    assert_eq!(ports["nginx_lines"]["connect_timeout"], 57);
    // The busy log was read in part: the counts say how far back they reach.
    assert_eq!(ports["nginx_lines_cover_secs"], 1680);
    let text = ports["nginx_errors"][0].as_str().unwrap();
    assert!(
        text.starts_with("99: Cannot assign requested address ×4,980 in the last 28 min"),
        "{text}"
    );
    assert!(
        text.ends_with("newest 2026/12/07 09:00:01 (1 s ago, /var/log/nginx/error.log)"),
        "{text}"
    );
    let fds = &json_finding(&v, "fds.process")["evidence"];
    assert_eq!(fds["nginx_lines"]["too_many_open_files"], 87);
    assert!(fds.get("nginx_while_ok").is_none(), "critical: no excuse");
    // Read-phase timeouts are the upstream's: on no rule.
    assert!(!v.to_string().contains("upstream_timeout"));
    let headline = v["diagnosis"]["headline"].as_str().unwrap();
    assert!(
        headline.ends_with(
            "; nginx logged 99: Cannot assign requested address ×4,980 and upstream connect \
             timed out (110) ×57 in the last 28 min (the part of its log read)"
        ),
        "{headline}"
    );

    // Evidence, not judgement: without the probe every severity, the exit
    // code and the cause are the same.
    let bare = variant("sock-busy", None);
    let (bare_code, b) = check(bare.path());
    assert_eq!(bare_code, code);
    assert_eq!(severities(&b), severities(&v));
    assert_eq!(b["diagnosis"]["symptom"], v["diagnosis"]["symptom"]);
    assert_eq!(b["diagnosis"]["cause"], v["diagnosis"]["cause"]);
    assert!(!b.to_string().contains("nginx_lines"));
}

#[test]
fn issue_21_rules_that_are_ok_say_nginx_logged_them_all_the_same() {
    let tree = fixture("nginx-timeouts");
    let (code, v) = check(&tree);
    assert_eq!(code, Some(0), "{v}");
    for id in ["conntrack.table_full", "conntrack.usage"] {
        let f = json_finding(&v, id);
        assert_eq!(f["severity"], "ok", "{id}");
        assert_eq!(f["evidence"]["nginx_lines"]["connect_timeout"], 42, "{id}");
        assert!(f["evidence"]["nginx_while_ok"].is_string(), "{id}: {f}");
    }
    let ports = json_finding(&v, "sockets.ports");
    assert_eq!(ports["evidence"]["nginx_lines"]["connect_timeout"], 42);
    assert!(
        ports["evidence"].get("nginx_while_ok").is_none(),
        "not checked: no ok to qualify"
    );
    let headline = v["diagnosis"]["headline"].as_str().unwrap();
    assert!(
        headline.ends_with(
            "; nginx logged upstream connect timed out (110) ×42 in the last hour (see \
             conntrack.table_full, conntrack.usage)"
        ),
        "{headline}"
    );
    // The text report shows those ok rules with nginx's words, not
    // folded into "more checks passed".
    let out = common::run(&["check", "--root", tree.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let usage = text
        .lines()
        .position(|l| l.starts_with(" ok  conntrack.usage"))
        .unwrap_or_else(|| panic!("{text}"));
    let next = text.lines().nth(usage + 1).unwrap();
    assert!(
        next.starts_with("     evidence: nginx_errors=upstream connect timed out (110) ×42"),
        "{next}"
    );
    assert!(!next.contains("count="), "only nginx's evidence: {next}");
}

#[test]
fn issue_21_a_snapshot_replays_the_probe() {
    let tree = fixture("nginx-timeouts");
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("gw.ctd");
    let out = common::run(&[
        "snapshot",
        "--root",
        tree.to_str().unwrap(),
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let (_, live) = check(&tree);
    let (_, replayed) = check_json(&["--snapshot", file.to_str().unwrap()]);
    for id in ["conntrack.usage", "sockets.ports"] {
        assert_eq!(
            json_finding(&live, id)["evidence"],
            json_finding(&replayed, id)["evidence"],
            "{id}"
        );
    }
    assert_eq!(live["diagnosis"], replayed["diagnosis"]);
}

#[test]
fn issue_21_a_broken_probe_is_not_read_never_fatal() {
    for bad in [
        &b"\xff\xfe garbage"[..],
        b"{\"window_secs\": -1}",
        b"{\"window_secs\": 3600, \"classes\": {\"no_such_class\": {}}}",
        b"[]",
    ] {
        let d = variant("nginx-timeouts", Some(bad));
        let (code, v) = check(d.path());
        assert_eq!(code, Some(0), "{v}");
        let unread = v["unavailable"].to_string();
        assert!(unread.contains("probe:nginx_errors"), "{unread}");
        assert!(!v.to_string().contains("nginx_lines"));
    }
    // A probe of a host without nginx: nothing said, nothing missing.
    let empty = br#"{"window_secs": 3600, "masters": [], "logs": [], "classes": {}}"#;
    let d = variant("nginx-timeouts", Some(empty));
    let (code, v) = check(d.path());
    assert_eq!(code, Some(0));
    assert!(!v.to_string().contains("nginx_"), "{v}");
    let src = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nginx")
        .unwrap();
    assert_eq!(src["ok"], true);
}
