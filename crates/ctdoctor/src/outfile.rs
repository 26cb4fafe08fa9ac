//! Writing an output file the user named (`snapshot -o`, `lab --plot`):
//! the one place such paths are opened for writing. Root runs this, so it
//! never replaces what is not a regular file.
//!
//! What a path gets, as a shell's `>` would give it, except that a regular
//! file is replaced whole or not at all:
//! - `-`: stdout.
//! - a missing path, or a regular file (also through symlinks): a temp file
//!   is created beside the target (`create_new`, O_EXCL, a random name),
//!   written, fsync'd and renamed over it; it is removed on every error. A
//!   symlink to a regular file keeps the link and replaces the file it
//!   points to; an existing file keeps its mode and owner (a new one gets
//!   the mode asked for, less the umask).
//! - a character device (`/dev/null`, `/dev/stdout`, a tty) or a FIFO: written
//!   through, never replaced. A FIFO is opened non-blocking, so one without a
//!   reader cannot hang `open`: we retry for at most
//!   [`FIFO_WAIT`](crate::infile::FIFO_WAIT), then fail.
//! - refused, nothing written: a directory, a block device (a disk: `-o
//!   /dev/sda` is a typo, not a request), a socket, a symlink to a missing file
//!   (its target would be created wherever the link points).
//!
//! Not for: tune's and notrack's system files (their writers journal them).

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::infile::{kind, set_blocking, FIFO_WAIT};

/// Where the bytes go.
enum Dest {
    Stdout(BufWriter<io::Stdout>),
    /// A device or FIFO, written through.
    Stream(BufWriter<File>),
    /// A temp file renamed over `dest` on [`Output::commit`]; dropped
    /// (and so removed) otherwise.
    Replace {
        tmp: BufWriter<tempfile::NamedTempFile>,
        dest: PathBuf,
    },
}

/// An output being written; [`Output::commit`] makes it final.
pub struct Output {
    dest: Dest,
    shown: String,
}

/// How to name `path` in messages (`stdout` for `-`).
pub fn shown(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "stdout".into()
    } else {
        path.display().to_string()
    }
}

/// The refusals of [`Output::open`], checked before any work is done
/// (`snapshot --sample 1h -o DIR` fails at once, not after the hour).
/// Opens nothing, creates nothing.
pub fn check(path: &Path) -> Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    let s = shown(path);
    match std::fs::metadata(path) {
        Ok(m) => refuse_kind(&s, &m.file_type()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if is_symlink(path) {
                bail!("{s} is a symbolic link to a missing file: refusing to create its target");
            }
            let parent = parent_of(path);
            match std::fs::metadata(&parent) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => bail!("cannot create {s}: {} is not a directory", parent.display()),
                Err(e) => Err(e)
                    .with_context(|| format!("cannot create {s}: directory {}", parent.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot write {s}")),
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The directory `path` is in (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuse what is never written to (see the module doc).
fn refuse_kind(s: &str, ft: &std::fs::FileType) -> Result<()> {
    if ft.is_dir() {
        bail!("{s} is a directory: give a file name");
    }
    if ft.is_block_device() || ft.is_socket() {
        bail!("{s} is {}: refusing to write to it", kind(ft));
    }
    Ok(())
}

impl Output {
    /// Open `path` for writing a new content `new_mode` (the mode of a
    /// file created here, before the umask; e.g. 0o600 for files holding
    /// host details). See the module doc for what each kind of path gets.
    pub fn open(path: &Path, new_mode: u32) -> Result<Output> {
        let s = shown(path);
        if path.as_os_str() == "-" {
            return Ok(Output {
                dest: Dest::Stdout(BufWriter::new(io::stdout())),
                shown: s,
            });
        }
        let deadline = Instant::now() + FIFO_WAIT;
        // Without O_CREAT or O_TRUNC: opening changes nothing. Non-blocking,
        // so a FIFO without a reader fails with ENXIO instead of waiting.
        let opened = loop {
            let r = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(path);
            match r {
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
                    if !fifo {
                        return Err(e).with_context(|| format!("opening {s} for writing"));
                    }
                    if Instant::now() >= deadline {
                        bail!(
                            "{s} is a FIFO and nothing read from it within {} s",
                            FIFO_WAIT.as_secs()
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other,
            }
        };
        match opened {
            Ok(f) => {
                let m = f
                    .metadata()
                    .with_context(|| format!("reading the metadata of {s}"))?;
                let ft = m.file_type();
                refuse_kind(&s, &ft)?;
                if ft.is_file() {
                    drop(f);
                    // Through symlinks: the file they point to is replaced.
                    let dest =
                        std::fs::canonicalize(path).with_context(|| format!("resolving {s}"))?;
                    let tmp = temp_beside(&dest, m.mode() & 0o7777, &s)?;
                    // Keep the owner as `>` would (best effort: only root may).
                    let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()));
                    return Ok(Output {
                        dest: Dest::Replace {
                            tmp: BufWriter::new(tmp),
                            dest,
                        },
                        shown: s,
                    });
                }
                // A character device or a FIFO with a reader: write through.
                set_blocking(&f).with_context(|| format!("opening {s} for writing"))?;
                Ok(Output {
                    dest: Dest::Stream(BufWriter::new(f)),
                    shown: s,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                check(path)?;
                // The umask applies to a new file as it would with `>`.
                let tmp = temp_beside(path, new_mode & !current_umask(), &s)?;
                Ok(Output {
                    dest: Dest::Replace {
                        tmp: BufWriter::new(tmp),
                        dest: path.to_path_buf(),
                    },
                    shown: s,
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                bail!("{s} is a directory: give a file name")
            }
            Err(e) => Err(e).with_context(|| format!("opening {s} for writing")),
        }
    }

    /// Finish: flush; a replaced file is fsync'd, renamed over its target,
    /// and its directory fsync'd.
    pub fn commit(self) -> Result<()> {
        let s = self.shown;
        match self.dest {
            Dest::Stdout(mut w) => w.flush().with_context(|| format!("writing {s}")),
            Dest::Stream(mut w) => w.flush().with_context(|| format!("writing {s}")),
            Dest::Replace { tmp, dest } => {
                let tmp = tmp
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| format!("writing {s}"))?;
                tmp.as_file()
                    .sync_all()
                    .with_context(|| format!("writing {s}"))?;
                tmp.persist(&dest)
                    .map_err(|e| e.error)
                    .with_context(|| format!("renaming a temp file to {s}"))?;
                if let Ok(d) = File::open(parent_of(&dest)) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
        }
    }

    /// How the output is named in messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// The process's umask, from /proc/self/status (setting it to read it
/// would race with other threads creating files); 022 when unreadable.
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// A new temp file (O_EXCL, random name) in the directory of `dest`.
fn temp_beside(dest: &Path, mode: u32, s: &str) -> Result<tempfile::NamedTempFile> {
    let dir = parent_of(dest);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}.{}.", std::process::id()))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .and_then(|t| {
            t.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
            Ok(t)
        })
        .with_context(|| format!("creating a temp file for {s} in {}", dir.display()))
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.dest {
            Dest::Stdout(w) => w.write(buf),
            Dest::Stream(w) => w.write(buf),
            Dest::Replace { tmp, .. } => tmp.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.dest {
            Dest::Stdout(w) => w.flush(),
            Dest::Stream(w) => w.flush(),
            Dest::Replace { tmp, .. } => tmp.flush(),
        }
    }
}

/// Write `bytes` to `path` (see [`Output::open`]) and commit.
pub fn write(path: &Path, bytes: &[u8], new_mode: u32) -> Result<()> {
    let mut o = Output::open(path, new_mode)?;
    o.write_all(bytes)
        .with_context(|| format!("writing {}", o.shown()))?;
    o.commit()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_file_and_a_replaced_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        write(&p, b"one", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().mode() & 0o777,
            0o640,
            "an existing file keeps its mode"
        );
        assert_eq!(names(d.path()), ["out"]);
    }

    #[test]
    fn a_symlink_keeps_pointing_at_the_replaced_file() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::write(&real, "old").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink("real", &link).unwrap();
        write(&link, b"new", 0o644).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert_eq!(names(d.path()), ["link", "real"]);
    }

    #[test]
    fn refusals_leave_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let e = write(&sub, b"x", 0o644).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        assert!(check(&sub).is_err());
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink("nowhere", &dangling).unwrap();
        let e = write(&dangling, b"x", 0o644).unwrap_err().to_string();
        assert!(e.contains("missing file"), "{e}");
        let e = format!(
            "{:#}",
            write(&d.path().join("no/such/x"), b"x", 0o644).unwrap_err()
        );
        assert!(e.contains("no/such"), "{e}");
        assert_eq!(names(d.path()), ["dangling", "sub"]);
        assert!(names(&sub).is_empty());
    }

    #[test]
    fn an_error_before_commit_removes_the_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        let mut o = Output::open(&p, 0o644).unwrap();
        o.write_all(b"half").unwrap();
        assert_eq!(names(d.path()).len(), 1, "the temp file");
        drop(o);
        assert!(names(d.path()).is_empty());
    }

    #[test]
    fn a_fifo_is_written_through() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        mkfifo(&p);
        let p2 = p.clone();
        let r = std::thread::spawn(move || std::fs::read(p2).unwrap());
        write(&p, b"through", 0o644).unwrap();
        assert_eq!(r.join().unwrap(), b"through");
        assert!(std::fs::metadata(&p).unwrap().file_type().is_fifo());
    }

    /// A private null device in `d` (root only; None where device nodes
    /// cannot be made or opened, e.g. a nodev mount): never /dev/null itself,
    /// which a broken writer would replace for the whole machine.
    pub(crate) fn private_null(d: &Path) -> Option<PathBuf> {
        let p = d.join("null");
        let c = std::ffi::CString::new(p.to_str()?).ok()?;
        // SAFETY: a valid C string; makedev(1, 3) is the null device.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        (r == 0 && std::fs::OpenOptions::new().write(true).open(&p).is_ok()).then_some(p)
    }

    #[test]
    fn a_device_is_written_through_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let Some(null) = private_null(d.path()) else {
            eprintln!("skipping: cannot make a device node here (needs root, no nodev)");
            return;
        };
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&null, &link).unwrap();
        for p in [&null, &link] {
            write(p, b"gone", 0o644).unwrap();
        }
        assert!(std::fs::metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device());
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(names(d.path()), ["link", "null"]);
    }
}
