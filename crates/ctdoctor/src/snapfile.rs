//! The snapshot file: what `ctdoctor snapshot -o FILE` writes and
//! `ctdoctor check --snapshot FILE` reads. Gzip-compressed JSON:
//! `{"format": "ctdoctor-snapshot", "version": 1, "tool": "0.1.0",
//!   "captures": [Capture, ...]}` — one capture, or two with `--sample`.
//! A capture holds every file and probe the readers used, byte for byte.

use crate::host::Capture;
use crate::infile;
use crate::outfile::Output;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;

pub const FORMAT: &str = "ctdoctor-snapshot";
pub const VERSION: u32 = 1;

/// The most a snapshot may decompress to. Real ones are tens of KiB to a few
/// MiB (the kernel log dominates); the cap stops a gzip bomb.
pub const MAX_DECOMPRESSED: u64 = 256 << 20;

/// The most a snapshot file may hold as stored (compressed, or plain JSON),
/// checked before it is read (a regular file's size) and while it is read
/// (a pipe): a 2 GB file or an endless stream is refused, not read.
pub const MAX_FILE: u64 = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapFile {
    pub format: String,
    pub version: u32,
    pub tool: String,
    pub captures: Vec<Capture>,
}

impl SnapFile {
    pub fn new(captures: Vec<Capture>) -> SnapFile {
        SnapFile {
            format: FORMAT.into(),
            version: VERSION,
            tool: env!("CARGO_PKG_VERSION").into(),
            captures,
        }
    }

    /// Write the snapshot to `path` (`-` = stdout) through
    /// [`crate::outfile`]: a regular file is replaced whole or not at all,
    /// a device or FIFO written through, a directory refused. A new file is
    /// private (0600): a snapshot holds addresses and kernel log lines.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut out = Output::open(path, 0o600)?;
        let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::default());
        serde_json::to_writer(&mut gz, self).context("encoding snapshot")?;
        gz.finish()
            .with_context(|| format!("writing {}", crate::outfile::shown(path)))?;
        out.commit()
    }

    /// Read a snapshot from `path` (`-` = stdin, a FIFO or a regular file;
    /// see [`crate::infile`]): at most [`MAX_FILE`] bytes as stored and
    /// [`MAX_DECOMPRESSED`] once gunzipped.
    pub fn read(path: &Path) -> Result<SnapFile> {
        let input = infile::open(path)?;
        let shown = input.shown;
        let too_big = || {
            anyhow::anyhow!(
                "{shown} is larger than {} MiB: not a ctdoctor snapshot (the limit is {} MiB)",
                MAX_FILE >> 20,
                MAX_FILE >> 20
            )
        };
        if input.size.is_some_and(|n| n > MAX_FILE) {
            return Err(too_big());
        }
        let mut raw = input.reader.take(MAX_FILE + 1);
        let mut head = [0u8; 2];
        let mut n = 0;
        while n < 2 {
            match raw.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("reading {shown}")),
            }
        }
        let gzip = head[..n] == [0x1f, 0x8b];
        let mut text = Vec::new();
        let got = {
            let chained = std::io::Cursor::new(&head[..n]).chain(&mut raw);
            if gzip {
                flate2::read::MultiGzDecoder::new(chained)
                    .take(MAX_DECOMPRESSED + 1)
                    .read_to_end(&mut text)
            } else {
                chained.take(MAX_DECOMPRESSED + 1).read_to_end(&mut text)
            }
        };
        // A stream cut at the limit fails to decompress: say why.
        if raw.limit() == 0 {
            return Err(too_big());
        }
        got.with_context(|| {
            if gzip {
                format!("decompressing {shown}")
            } else {
                format!("reading {shown}")
            }
        })?;
        if text.len() as u64 > MAX_DECOMPRESSED {
            bail!(
                "{shown}: decompresses to more than {} MiB: not a ctdoctor snapshot",
                MAX_DECOMPRESSED >> 20
            );
        }
        let s: SnapFile = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a ctdoctor snapshot", shown))?;
        if s.format != FORMAT {
            bail!("{}: format {:?}, expected {FORMAT:?}", shown, s.format);
        }
        if s.version != VERSION {
            bail!(
                "{}: snapshot version {} is not supported (this ctdoctor reads {VERSION})",
                shown,
                s.version
            );
        }
        if s.captures.is_empty() || s.captures.len() > 2 {
            bail!(
                "{}: expected 1 or 2 captures, found {}",
                shown,
                s.captures.len()
            );
        }
        Ok(s)
    }
}
