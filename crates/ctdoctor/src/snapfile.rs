//! The snapshot file: what `ctdoctor snapshot -o FILE` writes and
//! `ctdoctor check --snapshot FILE` reads. Gzip-compressed JSON:
//! `{"format": "ctdoctor-snapshot", "version": 1, "tool": "0.1.0",
//!   "captures": [Capture, ...]}` — one capture, or two with `--sample`.
//! A capture holds every file and probe the readers used, byte for byte.

use crate::host::Capture;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

pub const FORMAT: &str = "ctdoctor-snapshot";
pub const VERSION: u32 = 1;

/// The most a snapshot may decompress to. Real ones are tens of KiB to a few
/// MiB (the kernel log dominates); the cap stops a gzip bomb.
pub const MAX_DECOMPRESSED: u64 = 256 << 20;

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

    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("partial");
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(f),
            flate2::Compression::default(),
        );
        serde_json::to_writer(&mut gz, self).context("encoding snapshot")?;
        gz.finish()
            .and_then(|mut w| w.flush())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    pub fn read(path: &Path) -> Result<SnapFile> {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut text = Vec::new();
        if raw.starts_with(&[0x1f, 0x8b]) {
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(MAX_DECOMPRESSED + 1)
                .read_to_end(&mut text)
                .with_context(|| format!("decompressing {}", path.display()))?;
        } else {
            text = raw;
        }
        if text.len() as u64 > MAX_DECOMPRESSED {
            bail!(
                "{}: decompresses to more than {} MiB: not a ctdoctor snapshot",
                path.display(),
                MAX_DECOMPRESSED >> 20
            );
        }
        let s: SnapFile = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a ctdoctor snapshot", path.display()))?;
        if s.format != FORMAT {
            bail!(
                "{}: format {:?}, expected {FORMAT:?}",
                path.display(),
                s.format
            );
        }
        if s.version != VERSION {
            bail!(
                "{}: snapshot version {} is not supported (this ctdoctor reads {VERSION})",
                path.display(),
                s.version
            );
        }
        if s.captures.is_empty() || s.captures.len() > 2 {
            bail!(
                "{}: expected 1 or 2 captures, found {}",
                path.display(),
                s.captures.len()
            );
        }
        Ok(s)
    }
}
