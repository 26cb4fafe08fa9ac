//! Opening an input the user named (`check --snapshot`, `plan --snapshot`,
//! `summary --file`, `plan --file`) without hanging and without reading a
//! device forever. The one place such paths are opened.
//!
//! What is accepted:
//! - `-`: stdin, whatever it is (the user chose the stream);
//! - a regular file (through symlinks), with its size for callers that cap it;
//! - a FIFO or pipe (`mkfifo`, `<(cmd)`, `/dev/stdin` on a pipe): opened
//!   non-blocking so a FIFO nobody writes to cannot block `open`, then
//!   waited on for at most [`FIFO_WAIT`] for a writer, then read blocking.
//!
//! What is refused, with the path and the reason: directories, character
//! devices (`/dev/zero`, `/dev/urandom`, a tty: endless or interactive;
//! give `-` to read one as stdin on purpose), block devices and sockets.
//!
//! Size limits are the caller's (a snapshot has one; a text dump gives up
//! after 64 MiB without an entry): see [`Input::size`].
//!
//! Also [`read_regular`], which `host::Root` reads every live file with.
//! Not for writing (`crate::outfile`).

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a FIFO may go without a writer (input) or reader (output,
/// `crate::outfile`) before we give up: long enough for `mkfifo p;
/// ctdoctor … p & producer > p`, short enough that a forgotten FIFO fails.
pub const FIFO_WAIT: Duration = Duration::from_secs(10);

/// An opened input.
pub struct Input {
    pub reader: Box<dyn Read + Send>,
    /// How to name it in messages: the path, or `stdin`.
    pub shown: String,
    /// The size of a regular file (None for stdin and pipes: a stream).
    pub size: Option<u64>,
}

/// What kind of file `m` is, in words (for messages).
pub fn kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// Clear O_NONBLOCK on `f` (reads and writes block again).
pub(crate) fn set_blocking(f: &File) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a valid fd we own; F_GETFL/F_SETFL take no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wait until a FIFO opened non-blocking for reading has a writer (data or
/// a hang-up after one came), at most `wait`. Linux reports no POLLHUP on
/// a FIFO no writer has opened since we did, so poll waits for the first.
fn wait_for_writer(f: &File, wait: Duration) -> io::Result<bool> {
    let end = Instant::now() + wait;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n > 0 {
            return Ok(true);
        }
        if n == 0 {
            return Ok(false);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Open `path` (`-` = stdin) as described in the module doc.
pub fn open(path: &Path) -> Result<Input> {
    if path.as_os_str() == "-" {
        return Ok(Input {
            reader: Box::new(io::stdin()),
            shown: "stdin".into(),
            size: None,
        });
    }
    let shown = path.display().to_string();
    // Non-blocking: opening a FIFO for reading would otherwise wait for a
    // writer forever. No O_NOCTTY surprise from a tty either.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("opening {shown}"))?;
    let m = f
        .metadata()
        .with_context(|| format!("reading the metadata of {shown}"))?;
    let ft = m.file_type();
    if ft.is_file() {
        set_blocking(&f).with_context(|| format!("opening {shown}"))?;
        return Ok(Input {
            reader: Box::new(f),
            shown,
            size: Some(m.len()),
        });
    }
    if ft.is_fifo() {
        if !wait_for_writer(&f, FIFO_WAIT).with_context(|| format!("waiting on {shown}"))? {
            bail!(
                "{shown} is a FIFO and nothing wrote to it within {} s",
                FIFO_WAIT.as_secs()
            );
        }
        set_blocking(&f).with_context(|| format!("opening {shown}"))?;
        return Ok(Input {
            reader: Box::new(f),
            shown,
            size: None,
        });
    }
    let hint = if ft.is_char_device() {
        " (to read a device on purpose, give `-` and redirect it to stdin)"
    } else {
        ""
    };
    bail!("{shown} is {}, not a file or a pipe{hint}", kind(&ft));
}

/// The most [`read_regular`] reads of one file: more than a snapshot may
/// hold in all (`snapfile::MAX_DECOMPRESSED`); /proc/net/tcp with a
/// million sockets is ~150 MB.
pub const MAX_TREE_FILE: u64 = 256 << 20;

/// Read a whole file that must be a regular one (a /proc, /sys or /etc
/// file, or a fixture tree's copy under `--root`), at most `max` bytes:
/// a FIFO or device planted in a tree is an error, not a hang, and a 2 GB
/// file is an error, not 2 GB of memory.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is {}, not a regular file", path.display(), kind(&ft)),
        ));
    }
    set_blocking(&f)?;
    let mut v = Vec::new();
    f.take(max + 1).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {} MiB", path.display(), max >> 20),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_with_the_reason() {
        let e = open(Path::new("/dev/zero")).err().unwrap().to_string();
        assert!(e.contains("/dev/zero is a character device"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let e = format!("{:#}", open(d.path()).err().unwrap());
        assert!(e.contains("a directory"), "{e}");
    }

    #[test]
    fn regular_files_have_a_size() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, "hello").unwrap();
        let mut i = open(&p).unwrap();
        assert_eq!(i.size, Some(5));
        let mut s = String::new();
        i.reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn a_fifo_is_read_once_a_writer_comes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let p2 = p.clone();
        let w = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::fs::write(p2, "data").unwrap();
        });
        let mut i = open(&p).unwrap();
        let mut s = String::new();
        i.reader.read_to_string(&mut s).unwrap();
        w.join().unwrap();
        assert_eq!((s.as_str(), i.size), ("data", None));
    }
}
