//! The integration tests are two targets (`autotests = false` in
//! Cargo.toml): a test file cargo would once have found alone is now run
//! only when a target's main.rs names it. This fails on a file in tests/
//! itself and on a file of tests/offline or tests/kernel that its main.rs
//! does not declare, either of which would never run.

use std::collections::BTreeSet;
use std::path::Path;

/// The `.rs` files of `dir` (names without `.rs`), main.rs left out.
fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".rs")
                .map(String::from)
        })
        .filter(|n| n != "main")
        .collect()
}

#[test]
fn every_test_file_is_a_module_of_a_target() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let stray = files(&tests);
    assert!(
        stray.is_empty(),
        "{}: in no target; move each into tests/offline/ (no namespace, no root) \
         or tests/kernel/ (namespaces, the real kernel) with `mod NAME;` in that main.rs",
        stray
            .iter()
            .map(|n| format!("tests/{n}.rs"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for target in ["offline", "kernel"] {
        let dir = tests.join(target);
        let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
        let declared: BTreeSet<String> = main
            .lines()
            .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';').map(String::from))
            .collect();
        let missing: Vec<String> = files(&dir).difference(&declared).cloned().collect();
        assert!(
            missing.is_empty(),
            "tests/{target}/main.rs does not declare {missing:?}: add `mod NAME;`"
        );
    }
}
