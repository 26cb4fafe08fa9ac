//! Build script: puts the git commit into `ctdoctor --version` (and the man
//! page), as `0.1.0 (8fd2d2466f72)`, so a binary copied onto a gateway says
//! which source it came from. Not for: anything else (no code generation).
//!
//! The commit is `CTDOCTOR_COMMIT` when set (a build from a source tarball,
//! or a packager's own id), else `git rev-parse` of the checkout this crate
//! sits in, else "unknown". Cargo reruns this only when HEAD or the branch
//! it points to moves (or `CTDOCTOR_COMMIT` changes), so an ordinary
//! rebuild stays a no-op; there is no "-dirty" mark, since it would mean
//! watching the index and rebuilding on every `git add`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CTDOCTOR_COMMIT");
    let commit = std::env::var("CTDOCTOR_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_string())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rustc-env=CTDOCTOR_VERSION={version} ({commit})");
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The short commit of the checkout holding this crate, watching the files
/// that change when it moves. None outside a git checkout of this
/// workspace (a tarball unpacked inside some other repository included).
fn git_commit() -> Option<String> {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let workspace = manifest.parent()?.parent()?.canonicalize().ok()?;
    let top = PathBuf::from(git(&manifest, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != workspace {
        return None;
    }
    let abs = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            manifest.join(p)
        }
    };
    let git_dir = abs(git(&manifest, &["rev-parse", "--git-dir"])?);
    let common = abs(git(&manifest, &["rev-parse", "--git-common-dir"])?);
    let head = git_dir.join("HEAD");
    let mut watch = vec![head.clone()];
    if let Some(r) = std::fs::read_to_string(&head)
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        // A branch is a loose ref file, or a line of packed-refs.
        watch.push(git_dir.join(&r));
        watch.push(common.join(&r));
        watch.push(common.join("packed-refs"));
    }
    // Only files that exist: cargo reruns every time for a missing one.
    for w in watch.iter().filter(|w| w.is_file()) {
        println!("cargo:rerun-if-changed={}", w.display());
    }
    git(&manifest, &["rev-parse", "--short=12", "HEAD"])
}
