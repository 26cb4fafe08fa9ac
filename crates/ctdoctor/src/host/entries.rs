//! The entry sources `summary`, `top` and the state-mix reader feed the
//! pure aggregates in `table` from: a live dump of a namespace's table
//! over ctnetlink (the `ctnetlink` crate), and text dumps opened from a
//! file or stdin (gunzipped when gzip) and parsed by `table::text`.
//!
//! Not for: parsing or aggregating (that is `table`), netlink itself
//! (the `ctnetlink` crate) or rendering (`cmd::summary`).

use super::netns::{run_in, Target};
use super::Root;
use crate::table::agg::{Agg, Config, Summary, Timeouts};
use crate::table::source::SourceInfo;
use crate::table::text::{self, Sink};
use crate::table::Entry;
use anyhow::{Context, Result};
use ctnetlink::{DumpRequest, Socket};
use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;

/// Open `path` (`-` for stdin), gunzipping when it is gzip. Through
/// [`crate::infile`]: a regular file, a FIFO (waited on for a writer at
/// most 10 s) or stdin; a directory or a device (`/dev/zero`) is refused.
/// No size cap: a 1M-entry dump is ~300 MB; what is not a dump is given up
/// after [`text::GIVE_UP_AFTER`] bytes without an entry.
pub fn open(path: &Path) -> Result<Box<dyn Read + Send>> {
    let input = crate::infile::open(path)?;
    let shown = input.shown;
    text::maybe_gunzip(input.reader).with_context(|| format!("reading {shown}"))
}

/// Parser threads at most (`summary --threads`, and the default on a
/// machine with more cores): one reader feeds them, so more do not parse
/// faster, and each holds two 1 MiB chunks in flight (64 → 128 MiB).
pub const MAX_THREADS: usize = 64;

/// Threads to parse on: every core, at most [`MAX_THREADS`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
}

/// What a live dump saw besides entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveStats {
    pub entries: u64,
    /// Entries that could not be decoded or had no original tuple.
    pub undecodable: u64,
    pub interrupted: bool,
    /// The dump was stopped at its time budget: `entries` is a sample.
    pub stopped: bool,
}

/// `e` in the context `what`, with what to do when the kernel refused for
/// privilege: "(needs root)", or as root what blocks root.
fn privileged(what: &str, e: ctnetlink::Error) -> anyhow::Error {
    let note = match e.errno() {
        Some(libc::EPERM) | Some(libc::EACCES) => netns::privilege::note(),
        _ => String::new(),
    };
    anyhow::Error::new(e).context(format!("{what}{note}"))
}

/// Fails when nf_conntrack is not loaded (no nf_conntrack_max sysctl, not
/// in /proc/modules, not in /sys/module, not built in): there is no table, and a ctnetlink request
/// would load nfnetlink, nf_conntrack_netlink and nf_conntrack — changing
/// the host to read an empty table. With nf_conntrack loaded, a dump may
/// load nf_conntrack_netlink, as `conntrack -L` does.
pub fn require_conntrack() -> Result<()> {
    require_conntrack_under(Path::new("/"))
}

/// [`require_conntrack`] for the machine whose /proc, /sys and /lib are
/// under `sysroot`.
pub fn require_conntrack_under(sysroot: &Path) -> Result<()> {
    // Its sysctls exist in every netns once it is loaded, built in or not
    // (and a container without /sys or /lib/modules still sees them).
    if sysroot
        .join("proc/sys/net/netfilter/nf_conntrack_max")
        .exists()
    {
        return Ok(());
    }
    super::consumers::module_present(sysroot, "nf_conntrack").map_err(|_| {
        anyhow::anyhow!(
            "conntrack is not loaded (no nf_conntrack in /proc/modules or /sys/module): \
             nothing is tracked here, so there is no table to read; ctdoctor does not load it"
        )
    })
}

/// Dump the table of the namespace this thread is in into `sink`.
pub fn dump_here<S: Sink>(sink: &mut S) -> Result<LiveStats> {
    dump_here_within(sink, None)
}

/// [`dump_here`] for at most `budget` when one is given: past it the dump
/// stops and the socket is closed, so what `sink` saw is a sample (a dump
/// comes in hash order, unrelated to state or age). `stopped` says whether
/// it was cut.
pub fn dump_here_within<S: Sink>(
    sink: &mut S,
    budget: Option<std::time::Duration>,
) -> Result<LiveStats> {
    require_conntrack()?;
    let sock = Socket::open().map_err(|e| privileged("opening a ctnetlink socket", e))?;
    let start = std::time::Instant::now();
    let mut st = LiveStats::default();
    let ds = sock
        .dump_sample(&DumpRequest::all(), |v| {
            match v.summary().ok().as_ref().and_then(Entry::from_fields) {
                Some(e) => {
                    st.entries += 1;
                    sink.push(&e);
                }
                None => st.undecodable += 1,
            }
            // The clock every 4,096 entries (~8 ms of dump).
            let over = budget.is_some_and(|b| st.entries % 4096 == 0 && start.elapsed() >= b);
            if over {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .map_err(|e| privileged("dumping the conntrack table", e))?;
    st.interrupted = ds.interrupted;
    st.stopped = ds.stopped;
    Ok(st)
}

/// Batch size for [`dump_pipelined`]: raw entries are copied into batches
/// of about this many bytes and decoded on another thread.
const BATCH: usize = 256 << 10;

fn decode_batch<S: Sink>(buf: &[u8], sink: &mut S, st: &mut LiveStats) {
    let mut i = 0;
    while i + 5 <= buf.len() {
        let family = buf[i];
        let len = u32::from_ne_bytes([buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]]) as usize;
        i += 5;
        let Some(raw) = buf.get(i..i + len) else {
            break;
        };
        i += len;
        let view = ctnetlink::Entry::from_attrs(family, raw);
        match view.summary().ok().as_ref().and_then(Entry::from_fields) {
            Some(e) => {
                st.entries += 1;
                sink.push(&e);
            }
            None => st.undecodable += 1,
        }
    }
}

/// Like [`dump_here`], but decoding and aggregation run on a second
/// thread while this one receives: the kernel builds the next messages
/// (most of a dump's cost) while the previous ones are counted. Each
/// entry's attributes are copied once into a batch.
pub fn dump_pipelined<S: Sink>(mut sink: S) -> Result<(S, LiveStats)> {
    use std::sync::mpsc;
    require_conntrack()?;
    let mut sock = Socket::open().map_err(|e| privileged("opening a ctnetlink socket", e))?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut st = LiveStats::default();
            for buf in rx {
                decode_batch(&buf, &mut sink, &mut st);
                let _ = back_tx.send(buf);
            }
            (sink, st)
        });
        let mut cur: Vec<u8> = Vec::with_capacity(BATCH + 4096);
        let mut send_err = false;
        let dumped = sock.dump(&DumpRequest::all(), |v| {
            let raw = v.raw();
            cur.push(v.family());
            cur.extend_from_slice(&(raw.len() as u32).to_ne_bytes());
            cur.extend_from_slice(raw);
            if cur.len() >= BATCH {
                let mut next = back_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BATCH + 4096));
                next.clear();
                if tx.send(std::mem::replace(&mut cur, next)).is_err() {
                    send_err = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if !cur.is_empty() && !send_err {
            let _ = tx.send(cur);
        }
        drop(tx);
        let (sink, mut st) = worker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let ds = dumped.map_err(|e| privileged("dumping the conntrack table", e))?;
        st.interrupted = ds.interrupted;
        Ok((sink, st))
    })
}

/// Dump `target`'s table once into `sink` (decoding on a second thread
/// when there are two cores).
pub fn dump_into<S: Sink>(target: &Target, sink: S) -> Result<(S, LiveStats)> {
    run_in(target, || {
        if default_threads() > 1 {
            dump_pipelined(sink)
        } else {
            let mut sink = sink;
            let st = dump_here(&mut sink)?;
            Ok((sink, st))
        }
    })?
}

/// Parse the text dump at `path` (`-` = stdin) into sinks made by `make`,
/// on every core; how the reading went as a [`SourceInfo`].
pub fn file_into<S: Sink>(path: &Path, make: impl Fn() -> S + Sync) -> Result<(S, SourceInfo)> {
    let shown = if path.as_os_str() == "-" {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let r = open(path)?;
    let (sink, st) = text::parse_reader(r, default_threads(), make)
        .with_context(|| format!("reading {shown}"))?;
    let info = SourceInfo::text(shown, st).map_err(anyhow::Error::msg)?;
    Ok((sink, info))
}

/// Fail early when `target`'s table cannot be dumped (no such namespace,
/// not root).
pub fn check_access(target: &Target) -> Result<()> {
    require_conntrack()?;
    run_in(target, || Socket::open().map(|_| ()))?
        .map_err(|e| privileged("opening a ctnetlink socket", e))
}

/// Every entry of `target`'s table (tests, small tables).
pub fn entries(target: &Target) -> Result<Vec<Entry>> {
    run_in(target, || {
        let mut v = Vec::new();
        dump_here(&mut v).map(|_| v)
    })?
}

/// The timeouts of the namespace this thread is in, from its sysctls as
/// `host::conntrack` reads them (defaults where unreadable).
pub fn timeouts_here(root: &Root) -> Timeouts {
    super::fact::timeouts_of(&super::conntrack::read(root))
}

/// `target`'s timeouts from its sysctls (defaults where unreadable).
pub fn timeouts(target: &Target) -> Result<Timeouts> {
    Ok(run_in(target, || timeouts_here(&Root::live()))?)
}

/// Dump `target`'s table and aggregate it. With `sysctl_timeouts`, idle
/// ages use the namespace's own timeouts (and `cfg.timeouts` is set to them).
pub fn summary(
    target: &Target,
    cfg: &mut Config,
    sysctl_timeouts: bool,
) -> Result<(Summary, SourceInfo)> {
    let (agg, st) = run_in(target, || -> Result<(Agg, LiveStats)> {
        if sysctl_timeouts {
            if let Ok(c) = super::conntrack::read(&Root::live()) {
                cfg.timeouts = Timeouts::from_sysctls(&c.timeouts);
            }
        }
        let agg = Agg::new(*cfg);
        if default_threads() > 1 {
            dump_pipelined(agg)
        } else {
            let mut agg = agg;
            let st = dump_here(&mut agg)?;
            Ok((agg, st))
        }
    })??;
    let info = SourceInfo::live(target.name().as_deref(), st.undecodable, st.interrupted);
    Ok((agg.finish(), info))
}

/// Aggregate the text dump at `path` (`-` = stdin) on `threads` parsers.
pub fn summary_file(path: &Path, cfg: Config, threads: usize) -> Result<(Summary, SourceInfo)> {
    let shown = if path.as_os_str() == "-" {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let r = open(path)?;
    let (agg, st) = text::parse_reader(r, threads, || Agg::new(cfg))
        .with_context(|| format!("reading {shown}"))?;
    let info = SourceInfo::text(shown, st).map_err(anyhow::Error::msg)?;
    Ok((agg.finish(), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_nf_conntrack_is_said_and_nothing_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
        std::fs::create_dir_all(root.join("sys/module/nfnetlink")).unwrap();
        std::fs::write(root.join("proc/sys/kernel/osrelease"), "5.10.0-46-amd64\n").unwrap();
        std::fs::write(
            root.join("proc/modules"),
            "nfnetlink 20480 0 - Live 0x0000000000000000\n",
        )
        .unwrap();
        let e = require_conntrack_under(root).unwrap_err().to_string();
        assert!(e.starts_with("conntrack is not loaded"), "{e}");
        assert!(e.contains("ctdoctor does not load it"), "{e}");
        // Loaded as a module, or built in (modules.builtin): a table exists.
        std::fs::write(
            root.join("proc/modules"),
            "nf_conntrack 176128 0 - Live 0x0000000000000000\n",
        )
        .unwrap();
        assert!(require_conntrack_under(root).is_ok());
        std::fs::write(root.join("proc/modules"), "").unwrap();
        let lib = root.join("lib/modules/5.10.0-46-amd64");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(
            lib.join("modules.builtin"),
            "kernel/net/netfilter/nf_conntrack.ko\n",
        )
        .unwrap();
        assert!(require_conntrack_under(root).is_ok());
        // A container that sees only /proc: the sysctl says it is loaded.
        std::fs::remove_file(lib.join("modules.builtin")).unwrap();
        assert!(require_conntrack_under(root).is_err());
        std::fs::create_dir_all(root.join("proc/sys/net/netfilter")).unwrap();
        std::fs::write(
            root.join("proc/sys/net/netfilter/nf_conntrack_max"),
            "65536\n",
        )
        .unwrap();
        assert!(require_conntrack_under(root).is_ok());
    }
}
