//! Helpers shared by the integration tests (each test file is its own
//! crate and uses only some of them).
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

pub mod deploy;
pub mod exporter;

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A path under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// `ctdoctor summary ARGS --json`, which must succeed.
pub fn summary_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ctdoctor"))
        .arg("summary")
        .args(args)
        .arg("--json")
        .output()
        .expect("run ctdoctor");
    assert!(
        out.status.success(),
        "ctdoctor summary {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// `[{key, count}]` as a map.
pub fn counts(v: &Value) -> HashMap<String, u64> {
    v.as_array()
        .expect("array of counts")
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The finding `id` of a JSON check report.
pub fn json_finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no finding {id}"))
}

/// A JSON check report (or several) with every source's `duration_us` set
/// to 0: timings differ between two runs of the same input.
pub fn without_durations(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(d) = m.get_mut("duration_us") {
                    *d = Value::from(0);
                }
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}
