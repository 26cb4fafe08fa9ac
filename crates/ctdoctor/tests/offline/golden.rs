//! Golden files: the whole `check` report, text and JSON, of every fixture
//! tree under tests/fixtures/ (a directory with a `proc/`), compared with
//! tests/golden/<tree>.{txt,json} as a diff.
//!
//! These pin the rendering and every finding at once; the expected
//! severities themselves are asserted by hand in each family's tests.
//! Regenerate on purpose only, and read the diff before committing:
//!     UPDATE_GOLDEN=1 cargo test -p ctdoctor --test offline golden::
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::path::{Path, PathBuf};

fn trees() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("proc").is_dir())
        .collect();
    v.sort();
    v
}

fn check(tree: &Path, json: bool) -> (Option<i32>, String) {
    let mut cmd = crate::common::command();
    cmd.arg("check").arg("--root").arg(tree);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    // Printed commands name this build by its path (root's PATH does not
    // find it): the goldens say `ctdoctor`, as an installed binary prints.
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_ctdoctor")).unwrap();
    let mut text = String::from_utf8(out.stdout)
        .unwrap()
        .replace(&format!("{} ", exe.display()), "ctdoctor ");
    if json {
        // Timings differ from run to run: pinned to 0.
        text = text
            .lines()
            .map(|l| match l.find("\"duration_us\": ") {
                Some(i) => {
                    let comma = if l.ends_with(',') { "," } else { "" };
                    format!("{}\"duration_us\": 0{comma}", &l[..i])
                }
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    (out.status.code(), text)
}

/// A minimal line diff for the failure message.
fn diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut out = String::new();
    for i in 0..w.len().max(g.len()) {
        match (w.get(i), g.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                if let Some(a) = a {
                    out.push_str(&format!("-{:>4}: {a}\n", i + 1));
                }
                if let Some(b) = b {
                    out.push_str(&format!("+{:>4}: {b}\n", i + 1));
                }
            }
        }
    }
    out
}

#[test]
fn every_fixture_tree_matches_its_golden_report() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let trees = trees();
    assert!(trees.len() >= 10, "fixture trees not found");
    let mut failures = Vec::new();
    for tree in &trees {
        let name = tree.file_name().unwrap().to_string_lossy().into_owned();
        for json in [false, true] {
            let (code, out) = check(tree, json);
            // The exit code is part of the golden output.
            let got = format!("exit {}\n{out}", code.unwrap_or(-1));
            let path = golden.join(format!("{name}.{}", if json { "json" } else { "txt" }));
            if update {
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(want) if want == got => {}
                Ok(want) => failures.push(format!("{}:\n{}", path.display(), diff(&want, &got))),
                Err(_) => failures.push(format!(
                    "{}: missing (UPDATE_GOLDEN=1 to create)",
                    path.display()
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden reports differ:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_rule_is_declared_and_has_its_page_in_docs_checks_md() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/checks.md"))
            .unwrap();
    let declared: std::collections::BTreeSet<&str> =
        ctdoctor::checks::RULES.iter().map(|r| r.id).collect();
    assert_eq!(
        declared.len(),
        ctdoctor::checks::RULES.len(),
        "ids are unique"
    );
    let mut seen = std::collections::BTreeSet::new();
    for tree in trees() {
        let (_, out) = check(&tree, true);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for f in v["findings"].as_array().unwrap() {
            seen.insert(f["id"].as_str().unwrap().to_string());
        }
    }
    let undeclared: Vec<_> = seen
        .iter()
        .filter(|id| !declared.contains(id.as_str()))
        .collect();
    assert!(
        undeclared.is_empty(),
        "reported but not in RULES: {undeclared:?}"
    );
    let never: Vec<_> = declared.iter().filter(|id| !seen.contains(**id)).collect();
    assert!(
        never.is_empty(),
        "declared but never reported on any tree: {never:?}"
    );
    let missing: Vec<_> = declared
        .iter()
        .filter(|id| !doc.contains(&format!("\n### {id}\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a section in docs/checks.md: {missing:?}"
    );
    for r in ctdoctor::checks::RULES {
        assert!(
            doc.contains(&format!("[`{}`]", r.id)),
            "{} missing from the index of docs/checks.md",
            r.id
        );
    }
}

/// Fixes get pasted: one report never suggests two values for one key, and
/// every change names a key, a value and a scope.
#[test]
fn no_report_suggests_two_values_for_one_key() {
    for tree in trees() {
        let (_, out) = check(&tree, true);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut values: std::collections::BTreeMap<String, String> = Default::default();
        for f in v["findings"].as_array().unwrap() {
            let changes = f["changes"].as_array().expect("changes on every finding");
            if f["fix"]
                .as_str()
                .is_some_and(|t| t.lines().any(|l| !l.starts_with('#')))
            {
                assert!(
                    !changes.is_empty(),
                    "{}: {} runs commands that are not typed changes:\n{}",
                    tree.display(),
                    f["id"],
                    f["fix"]
                );
            }
            for c in changes {
                let key = c["key"].as_str().unwrap().to_string();
                let value = c["value"].as_str().unwrap().to_string();
                assert!(c["scope"].is_string(), "{c}");
                if let Some(prev) = values.insert(key.clone(), value.clone()) {
                    assert_eq!(
                        prev,
                        value,
                        "{}: two values for {key} ({})",
                        tree.display(),
                        f["id"]
                    );
                }
            }
        }
    }
}

/// Every /proc stat column ctdoctor knows is described in docs/checks.md's
/// kernel differences (the one table, `host::stat::COLUMNS`, is what check
/// and the exporter read).
#[test]
fn every_stat_column_is_in_docs_checks_md() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/checks.md"))
            .unwrap();
    let sec = doc
        .split("## Kernel differences")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/checks.md has a Kernel differences section");
    for c in ctdoctor::host::stat::COLUMNS {
        assert!(sec.contains(&format!("`{}`", c.proc)), "{} missing", c.proc);
        if let Some(n) = c.netlink.filter(|n| *n != c.proc) {
            assert!(sec.contains(&format!("`{n}`")), "{n} missing");
        }
    }
}
