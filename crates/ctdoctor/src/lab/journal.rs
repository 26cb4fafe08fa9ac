//! The lab's journal: before it lowers the global `nf_conntrack_max` and
//! hash, it writes down (fsync'd) what they were, so a run that was killed
//! before its guards could put them back (`kill -9`, a crash, a power cut)
//! is undone by `ctdoctor lab --teardown`. Removed when the run ends cleanly.
//!
//! Read back as untrusted input (it is a file root acts on): a regular
//! file owned by root (or the effective user), writable by no one else,
//! small, with values of digits only.
//!
//! Not for: the user's changes (those go through `ctdoctor tune`'s journal).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the lab changed and what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub max_before: String,
    pub buckets_before: String,
    /// What the lab set (both knobs).
    pub lab_value: String,
}

/// The journal's file for a lab prefix.
pub fn path(prefix: &str) -> PathBuf {
    PathBuf::from("/var/lib/ctdoctor").join(format!("lab-{prefix}.json"))
}

fn read_knob(rel: &str) -> Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/sys/{rel}"))
        .with_context(|| format!("reading /proc/sys/{rel}"))?
        .trim()
        .to_string())
}

/// Write down the knobs as they are, before the lab sets both to `value`.
pub fn record(prefix: &str, value: u64) -> Result<()> {
    let e = Entry {
        max_before: read_knob("net/netfilter/nf_conntrack_max")?,
        buckets_before: read_knob("net/netfilter/nf_conntrack_buckets")?,
        lab_value: value.to_string(),
    };
    let p = path(prefix);
    if let Some(d) = p.parent() {
        crate::tune::write::create_dirs(d, 0o700)
            .with_context(|| format!("creating {}", d.display()))?;
    }
    crate::tune::write::atomic(&p, serde_json::to_string_pretty(&e)?.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", p.display()))
}

/// Read the journal at `p` as untrusted input (see the module docs).
fn load(p: &std::path::Path) -> Result<Option<Entry>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = match std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let m = f.metadata()?;
    if !m.is_file() {
        anyhow::bail!("{} is not a regular file: not a lab journal", p.display());
    }
    if let Some(why) = crate::tune::write::untrusted(&m) {
        anyhow::bail!("{} is {why}: not trusted as a lab journal", p.display());
    }
    let mut text = String::new();
    f.by_ref().take(64 << 10).read_to_string(&mut text)?;
    let e: Entry = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a lab journal", p.display()))?;
    for v in [&e.max_before, &e.buckets_before, &e.lab_value] {
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            anyhow::bail!(
                "{} holds {v:?}, not a number: not a lab journal",
                p.display()
            );
        }
    }
    Ok(Some(e))
}

/// The run ended and its guards ran: forget the journal.
pub fn done(prefix: &str) {
    let _ = std::fs::remove_file(path(prefix));
}

/// `--teardown`: put back what a killed run left (only knobs that still
/// hold the lab's value); what was done, in words.
pub fn recover(prefix: &str) -> Result<Vec<String>> {
    let p = path(prefix);
    let Some(e) = load(&p)? else {
        return Ok(Vec::new());
    };
    let mut said = Vec::new();
    // Max first, buckets second: the reverse of how the lab set them.
    for (rel, old) in [
        ("net/netfilter/nf_conntrack_max", &e.max_before),
        ("net/netfilter/nf_conntrack_buckets", &e.buckets_before),
    ] {
        let now = read_knob(rel)?;
        if now == e.lab_value {
            std::fs::write(format!("/proc/sys/{rel}"), old)
                .with_context(|| format!("restoring /proc/sys/{rel}"))?;
            said.push(format!(
                "/proc/sys/{rel}: {now} → {old} (left by a killed lab run)"
            ));
        } else {
            said.push(format!(
                "/proc/sys/{rel} is {now}, not the lab's {}: left as is",
                e.lab_value
            ));
        }
    }
    std::fs::remove_file(&p)?;
    Ok(said)
}
