//! Helpers shared by the two integration test targets, `offline` and
//! `kernel` (each main.rs includes this directory as `mod common`): the
//! binary under test and its JSON, fixture trees, findings. The few items
//! only one target uses say so with their own `allow(dead_code)`.
#![allow(clippy::unwrap_used)]

pub mod deploy;
pub mod exporter;

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The facts of the fixture tree tests/fixtures/NAME, read as the live
/// readers read a machine.
pub fn facts(name: &str) -> ctdoctor::snapshot::Facts {
    ctdoctor::host::read_facts(&ctdoctor::host::Root::live_at(fixture(name)))
}

/// The binary under test: `CTDOCTOR_TEST_BIN` when set (another build of
/// ctdoctor, e.g. the one before a fix, to see the tests fail on it), else
/// this build's. Every test that runs ctdoctor runs this one.
pub fn bin() -> PathBuf {
    std::env::var_os("CTDOCTOR_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ctdoctor")))
}

/// A command for [`bin`], with NO_COLOR=1 (plain text even when a test
/// hands it a terminal).
pub fn command() -> Command {
    let mut c = Command::new(bin());
    c.env("NO_COLOR", "1");
    c
}

/// `ctdoctor ARGS`: its output, whatever its exit status.
pub fn run(args: &[&str]) -> Output {
    command().args(args).output().expect("run ctdoctor")
}

/// The stdout of a run as JSON, whatever its exit status (a report with a
/// critical finding exits 2); panics with stderr when it is no JSON.
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}), {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// [`json`] of a run that must have succeeded: otherwise panics with what
/// it said (stderr, then stdout).
pub fn ok_json(o: &Output) -> Value {
    assert_ok(o, "ctdoctor");
    json(o)
}

/// `ctdoctor ARGS`, which must succeed: its stdout as JSON.
pub fn run_json(args: &[&str]) -> Value {
    let o = run(args);
    assert_ok(&o, &format!("ctdoctor {args:?}"));
    json(&o)
}

/// `ctdoctor summary ARGS --json`, which must succeed.
pub fn summary_json(args: &[&str]) -> Value {
    let mut a = vec!["summary"];
    a.extend_from_slice(args);
    a.push("--json");
    run_json(&a)
}

/// `ctdoctor check ARGS --json`: (exit code, report), whatever the exit.
pub fn check_json(args: &[&str]) -> (Option<i32>, Value) {
    let mut a = vec!["check"];
    a.extend_from_slice(args);
    a.push("--json");
    let o = run(&a);
    (o.status.code(), json(&o))
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
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
#[allow(dead_code)] // offline only
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
