//! Reading deploy/ in tests: the repository path, files, and what the
//! systemd unit says (its `Key=value` lines, capability bounding set and
//! command line, with or without the --all-netns drop-in). Not for:
//! judging them (offline/deploy.rs, kernel/deploy_kernel.rs do).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const RULES: &str = "deploy/prometheus/ctdoctor.rules.yml";
#[allow(dead_code)] // offline only
pub const RULE_TESTS: &str = "deploy/prometheus/tests/ctdoctor.test.yml";
pub const DASHBOARD: &str = "deploy/grafana/ctdoctor.json";
pub const UNIT: &str = "deploy/systemd/ctdoctor-exporter.service";
pub const DROPIN: &str = "deploy/systemd/ctdoctor-exporter.service.d/all-netns.conf";
#[allow(dead_code)] // offline only
pub const K8S: &str = "deploy/kubernetes/ctdoctor-exporter.yaml";
#[allow(dead_code)] // offline only
pub const SERVICE_MONITOR: &str = "deploy/kubernetes/servicemonitor.yaml";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `Key=value` lines of a unit file, in order.
pub fn unit_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn unit_texts(with_dropin: bool) -> Vec<String> {
    let mut texts = vec![read(UNIT)];
    if with_dropin {
        texts.push(read(DROPIN));
    }
    texts
}

/// The capability bounding set of the unit, plus the drop-in's when asked
/// (CapabilityBoundingSet lines add up).
pub fn unit_capabilities(with_dropin: bool) -> BTreeSet<String> {
    let mut caps = BTreeSet::new();
    for t in unit_texts(with_dropin) {
        for (k, v) in unit_keys(&t) {
            if k == "CapabilityBoundingSet" {
                caps.extend(v.split_whitespace().map(str::to_string));
            }
        }
    }
    caps
}

/// The last ExecStart of the unit (+ drop-in), as words (an empty
/// `ExecStart=` resets, as in systemd).
pub fn exec_start(with_dropin: bool) -> Vec<String> {
    let mut last = String::new();
    for t in unit_texts(with_dropin) {
        for (k, v) in unit_keys(&t) {
            if k == "ExecStart" {
                last = v;
            }
        }
    }
    last.split_whitespace().map(str::to_string).collect()
}
