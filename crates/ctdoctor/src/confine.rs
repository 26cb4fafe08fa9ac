//! Paths under a root seen as a chroot would see them: a relative path
//! walked component by component, a symlink's absolute target taken
//! relative to the root, `..` never above it. Used by what writes under
//! `--root` (tune) and by reads of a mounted host's config (`--root
//! /host`), where an absolute link must lead into the root, not out of it.
//! No I/O beyond lstat and readlink; imports nothing of the crate.

use std::path::{Component, Path, PathBuf};

/// A relative path as the journal may name it: not empty, no leading `/`,
/// only plain components (no `.`, `..`), no control characters.
pub fn plain_relative(rel: &str) -> Result<(), String> {
    if rel.is_empty() || rel.len() > 4096 {
        return Err(format!("{rel:?} is not a path tune writes"));
    }
    if rel.chars().any(char::is_control) {
        return Err(format!("{rel:?} holds control characters"));
    }
    if !Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{rel:?} is not a plain relative path (absolute, `.` or `..`)"
        ));
    }
    Ok(())
}

/// Resolve `rel` under `root` as a chroot would (see the module docs):
/// the relative path of the file a write to `rel` reaches. Refused when a
/// `..` or a link would leave the root, on a link loop, or when a
/// directory on the way is not a directory.
pub fn resolve(root: &Path, rel: &str) -> Result<String, String> {
    plain_relative(rel)?;
    let mut done: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: Vec<std::ffi::OsString> = Path::new(rel)
        .components()
        .rev()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            if done.pop().is_none() {
                return Err(format!("/{rel}: a `..` on the way leaves the root"));
            }
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        let here: PathBuf = done.iter().collect::<PathBuf>().join(&c);
        match std::fs::symlink_metadata(root.join(&here)) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(format!("/{rel}: too many symbolic links"));
                }
                let target = std::fs::read_link(root.join(&here))
                    .map_err(|e| format!("/{}: {e}", here.display()))?;
                if target.is_absolute() {
                    done.clear();
                }
                for t in target.components().rev() {
                    match t {
                        Component::RootDir | Component::Prefix(_) => {}
                        Component::CurDir => {}
                        other => todo.push(other.as_os_str().to_owned()),
                    }
                }
            }
            Ok(m) => {
                if !todo.is_empty() && !m.is_dir() {
                    return Err(format!("/{} is not a directory", here.display()));
                }
                done.push(c);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => done.push(c),
            Err(e) => return Err(format!("/{}: {e}", here.display())),
        }
    }
    let out: PathBuf = done.iter().collect();
    if out.as_os_str().is_empty() {
        return Err(format!("/{rel} resolves to the root itself"));
    }
    Ok(out.to_string_lossy().into_owned())
}
