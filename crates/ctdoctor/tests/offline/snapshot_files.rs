//! Shipped snapshot files check offline with the findings written here by
//! hand: one captured on this project's 6.18 VM (healthy host), one of an
//! older kernel's layout (old stat header, old "table full, dropping
//! packet." log text, ≤ 5.14 sizing with max = 4 × buckets).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, json_finding};

fn check(name: &str) -> (Option<i32>, serde_json::Value) {
    let path = common::fixture(&format!("snapshots/{name}"));
    common::check_json(&["--snapshot", path.to_str().unwrap()])
}

fn severity(v: &serde_json::Value, id: &str) -> String {
    json_finding(v, id)["severity"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn old_kernel_snapshot_with_unattributed_lines() {
    let (code, v) = check("old-5.4.ctd");
    assert_eq!(code, Some(2));
    // The last line is minutes old and the table (95.4 %) below max: it
    // was full, it is not (issue 8, defect 2); usage is what is critical.
    assert_eq!(severity(&v, "conntrack.table_full"), "warning");
    assert_eq!(severity(&v, "conntrack.usage"), "critical"); // 250000 / 262144 = 95 %
    assert_eq!(severity(&v, "conntrack.hash_load"), "warning"); // 2 × 250000 / 65536 = 7.6
    let tf = json_finding(&v, "conntrack.table_full");
    // Two old-form lines (no netns inode) in the capture's log.
    assert_eq!(tf["evidence"]["unattributed_log_lines"], 2);
    assert_eq!(tf["evidence"]["drop"], 50);
    let hl = json_finding(&v, "conntrack.hash_load");
    assert_eq!(hl["evidence"]["default_factor"], 4, "≤ 5.14 sizing");
}

#[test]
fn captured_host_snapshot_is_healthy() {
    let (code, v) = check("host-6.18.ctd");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["netns"]["is_init"], true);
    for id in [
        "conntrack.usage",
        "conntrack.table_full",
        "conntrack.drops",
        "sockets.ports",
        "fds.system",
    ] {
        assert_eq!(severity(&v, id), "ok", "{id}");
    }
    // Everything was captured: no source is missing from the file.
    assert_eq!(
        v["unavailable"].as_array().unwrap().len(),
        0,
        "{}",
        v["unavailable"]
    );
}
