//! The kernel log lines that speak of packet loss: conntrack "table full"
//! (per netns inode since 6.17), `net_ratelimit: N callbacks suppressed`,
//! "expectation table full", SYN flooding per listening port, and the old
//! "time wait bucket table overflow"; and the line older kernels print when
//! conntrack starts, `nf_conntrack version 0.5.0 (N buckets, M max)`: the
//! table size the kernel itself chose.
//!
//! Source: /dev/kmsg, read non-blocking (one record per read, until EAGAIN;
//! EPIPE means the reader fell behind and a record was overwritten: keep
//! going). Live under `/` it is the probe `probe:kmsg`, so a snapshot keeps
//! the text; a fixture tree holds it as the text file `dev/kmsg`. The parser
//! also takes `dmesg` text (`[15070.104447] nf_conntrack: ...`), so users'
//! pasted logs work as fixtures. Reading needs root (or CAP_SYSLOG /
//! dmesg_restrict=0): EPERM is `NeedsRoot` (`Denied` when root is refused).
//!
//! Not for: deciding whether a line concerns a given namespace (checks do
//! that with the inode, the uptime and the namespace's age).

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PATH: &str = "dev/kmsg";
pub const PROBE: &str = "probe:kmsg";

/// "table full" lines for one netns inode (None: the form without an
/// inode, printed for the init netns since 6.17 and for every netns before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFull {
    pub inode: Option<u64>,
    pub lines: u64,
    /// Microseconds since boot of the first and last line (None when the
    /// text had no timestamps).
    pub first_usec: Option<u64>,
    pub last_usec: Option<u64>,
    /// Every timed line's µs since boot, oldest first (the newest
    /// [`MAX_TIMES`] kept), so a check can tell lines logged before a
    /// namespace existed (an earlier namespace with the same inode).
    #[serde(default)]
    pub times_usec: Vec<u64>,
}

/// At most this many line times are kept per inode (the log is
/// rate-limited: ~10 lines per 5 s machine-wide).
pub const MAX_TIMES: usize = 10_000;

/// SYN flooding lines for one listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynFlood {
    /// As printed: `[addr:]PORT` (e.g. "0.0.0.0:80", "[::]:443", "80").
    pub socket: String,
    pub port: Option<u16>,
    pub lines: u64,
    /// Whether the last line said "Sending cookies" (else "Dropping request").
    pub cookies: bool,
    pub last_usec: Option<u64>,
}

/// The sizing conntrack logged when it started (`nf_conntrack version
/// 0.5.0 (65536 buckets, 262144 max)`, printed up to 4.x kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSizing {
    pub buckets: u64,
    pub max: u64,
    /// µs since boot of the line, when timed.
    pub usec: Option<u64>,
}

/// What the kernel log says about packet loss.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kmsg {
    /// Records (lines) read.
    pub records: u64,
    /// Time of the oldest record still in the buffer: older events are gone.
    pub oldest_usec: Option<u64>,
    /// Time of the newest record.
    pub newest_usec: Option<u64>,
    /// One entry per inode (None first), sorted.
    pub table_full: Vec<TableFull>,
    /// Sum of N over `net_ratelimit: N callbacks suppressed` (machine-wide:
    /// the table-full lines are a lower bound).
    pub suppressed_callbacks: u64,
    pub suppressed_lines: u64,
    pub expect_table_full: u64,
    /// µs since boot of the last "expectation table full" line.
    #[serde(default)]
    pub expect_last_usec: Option<u64>,
    pub syn_flood: Vec<SynFlood>,
    pub tw_overflow: u64,
    /// µs since boot of the last "time wait bucket table overflow" line.
    #[serde(default)]
    pub tw_overflow_last_usec: Option<u64>,
    /// The last `nf_conntrack version … (N buckets, M max)` line (a module
    /// reload logs again; the newest is the table in use), while the log
    /// still holds it.
    #[serde(default)]
    pub boot_sizing: Option<BootSizing>,
}

impl Kmsg {
    /// The table-full group of an inode (None: the inode-less form).
    pub fn table_full_for(&self, inode: Option<u64>) -> Option<&TableFull> {
        self.table_full.iter().find(|t| t.inode == inode)
    }
}

/// Split one log line into (time in µs since boot, text). Accepts /dev/kmsg
/// records (`pri,seq,usec,flags;text`) and dmesg lines (`[ secs.frac] text`);
/// anything else is text without time. Continuation lines (leading space,
/// `KEY=value` dictionary) return None.
pub fn split_line(line: &str) -> Option<(Option<u64>, &str)> {
    if line.starts_with(' ') && !line.trim_start().starts_with('[') {
        return None; // /dev/kmsg dictionary continuation
    }
    let t = line.trim_start();
    if let Some(rest) = t.strip_prefix('[') {
        if let Some((ts, text)) = rest.split_once(']') {
            return Some((parse_secs_frac(ts.trim()), text.trim_start()));
        }
    }
    if let Some((head, text)) = t.split_once(';') {
        let f: Vec<&str> = head.split(',').collect();
        if f.len() >= 4 && f[..3].iter().all(|x| x.bytes().all(|b| b.is_ascii_digit())) {
            return Some((f[2].parse().ok(), text));
        }
    }
    Some((None, t))
}

/// "15070.104447" -> 15070104447 µs.
fn parse_secs_frac(s: &str) -> Option<u64> {
    let (a, b) = s.split_once('.').unwrap_or((s, ""));
    let secs: u64 = a.parse().ok()?;
    let mut frac: u64 = 0;
    let mut digits = 0;
    for c in b.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        if digits < 6 {
            frac = frac * 10 + u64::from(c - b'0');
            digits += 1;
        }
    }
    while digits < 6 {
        frac *= 10;
        digits += 1;
    }
    secs.checked_mul(1_000_000)?.checked_add(frac)
}

/// Match a "table full" line: `Some(None)` for the form without inode,
/// `Some(Some(ino))` for `table full in netns ino`. Covers the doubled
/// `nf_conntrack: nf_conntrack:` prefix, the trailing `.` and
/// `ip_conntrack:` of old kernels; not "expectation table full".
pub fn match_table_full(text: &str) -> Option<Option<u64>> {
    let i = text.find("conntrack: table full")?;
    let rest = &text[i + "conntrack: table full".len()..];
    if rest.starts_with(", dropping packet") {
        return Some(None);
    }
    let rest = rest.strip_prefix(" in netns ")?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let ino = rest[..end].parse().ok()?;
    rest[end..]
        .starts_with(", dropping packet")
        .then_some(Some(ino))
}

/// Match `nf_conntrack version 0.5.0 (65536 buckets, 262144 max)`:
/// (buckets, max).
pub fn match_boot_sizing(text: &str) -> Option<(u64, u64)> {
    let i = text.find("nf_conntrack version ")?;
    let rest = &text[i + "nf_conntrack version ".len()..];
    let (_, rest) = rest.split_once(" (")?;
    let (buckets, rest) = rest.split_once(" buckets, ")?;
    let (max, rest) = rest.split_once(" max)")?;
    if !rest.trim().is_empty() {
        return None;
    }
    Some((buckets.parse().ok()?, max.parse().ok()?))
}

/// Parse log text (kmsg records or dmesg lines). Pure; never fails.
pub fn parse(text: &str) -> Kmsg {
    let mut k = Kmsg::default();
    let mut tf: BTreeMap<Option<u64>, TableFull> = BTreeMap::new();
    let mut syn: BTreeMap<String, SynFlood> = BTreeMap::new();
    for line in text.lines() {
        let Some((usec, text)) = split_line(line) else {
            continue;
        };
        if text.is_empty() && usec.is_none() {
            continue;
        }
        k.records += 1;
        if let Some(u) = usec {
            k.oldest_usec = Some(k.oldest_usec.map_or(u, |o| o.min(u)));
            k.newest_usec = Some(k.newest_usec.map_or(u, |o| o.max(u)));
        }
        if let Some(ino) = match_table_full(text) {
            let e = tf.entry(ino).or_insert(TableFull {
                inode: ino,
                lines: 0,
                first_usec: None,
                last_usec: None,
                times_usec: Vec::new(),
            });
            e.lines += 1;
            if let Some(u) = usec {
                e.first_usec = Some(e.first_usec.map_or(u, |o| o.min(u)));
                e.last_usec = Some(e.last_usec.map_or(u, |o| o.max(u)));
                e.times_usec.push(u);
            }
        } else if let Some(rest) = text.find("net_ratelimit: ").map(|i| &text[i + 15..]) {
            if let Some(n) = rest
                .strip_suffix(" callbacks suppressed")
                .and_then(|n| n.trim().parse::<u64>().ok())
            {
                k.suppressed_callbacks = k.suppressed_callbacks.saturating_add(n);
                k.suppressed_lines += 1;
            }
        } else if text.contains("conntrack: expectation table full") {
            k.expect_table_full += 1;
            if usec.is_some() {
                k.expect_last_usec = usec;
            }
        } else if let Some(i) = text.find("Possible SYN flooding on port ") {
            let rest = &text[i + "Possible SYN flooding on port ".len()..];
            // "[addr:]PORT. Sending cookies." — the socket ends at ". ".
            let Some((sock, action)) = rest.split_once(". ") else {
                continue;
            };
            let port = sock.rsplit(':').next().and_then(|p| p.parse().ok());
            let e = syn.entry(sock.to_string()).or_insert(SynFlood {
                socket: sock.to_string(),
                port,
                lines: 0,
                cookies: false,
                last_usec: None,
            });
            e.lines += 1;
            e.cookies = action.starts_with("Sending cookies");
            if usec.is_some() {
                e.last_usec = usec;
            }
        } else if text.contains("time wait bucket table overflow") {
            k.tw_overflow += 1;
            if usec.is_some() {
                k.tw_overflow_last_usec = usec;
            }
        } else if let Some((buckets, max)) = match_boot_sizing(text) {
            k.boot_sizing = Some(BootSizing { buckets, max, usec });
        }
    }
    for t in tf.values_mut() {
        let extra = t.times_usec.len().saturating_sub(MAX_TIMES);
        t.times_usec.drain(..extra);
    }
    k.table_full = tf.into_values().collect();
    k.syn_flood = syn.into_values().collect();
    k
}

/// Read every record of a /dev/kmsg device without blocking.
pub fn read_device(path: &std::path::Path) -> Result<Vec<u8>, Unavailable> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let what = PATH;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Unavailable::from_io(what, &e))?;
    let mut out = Vec::new();
    // A record is at most ~8 KiB (CONSOLE_EXT_LOG_MAX); a smaller buffer
    // makes read() fail with EINVAL.
    let mut buf = vec![0u8; 16 * 1024];
    // Bounded: the ring buffer holds far fewer records than this.
    for _ in 0..2_000_000 {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if buf[..n].last() != Some(&b'\n') {
                    out.push(b'\n');
                }
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) => break,
                Some(libc::EPIPE) | Some(libc::EINTR) => continue,
                _ => return Err(Unavailable::from_io(what, &e)),
            },
        }
    }
    Ok(out)
}

fn is_char_device(p: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p)
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false)
}

pub fn read(root: &Root) -> Fact<Kmsg> {
    let bytes = match root.live_prefix() {
        // A capture: the probe (live runs), else a recorded file read.
        None => root.probe(PROBE, unreachable_live).or_else(|u| match u {
            Unavailable::Missing { .. } => root.read(PATH),
            u => Err(u),
        })?,
        Some(p) if p.as_os_str() == "/" => {
            root.probe(PROBE, || read_device(std::path::Path::new("/dev/kmsg")))?
        }
        Some(p) => {
            let dev = p.join(PATH);
            if is_char_device(&dev) {
                // A host's /dev mounted under a prefix: never a blocking read.
                read_device(&dev)?
            } else {
                root.read(PATH)?
            }
        }
    };
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

fn unreachable_live() -> Result<Vec<u8>, Unavailable> {
    Err(Unavailable::Missing {
        what: "dev/kmsg (not in snapshot)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KMSG: &str = "\
4,1000,15070104447,-;nf_conntrack: nf_conntrack: table full in netns 4026532177, dropping packet
 SUBSYSTEM=net
4,1001,15071000000,-;nf_conntrack: nf_conntrack: table full in netns 4026532177, dropping packet
4,1002,15072000000,-;net_ratelimit: 437 callbacks suppressed
4,1003,15080000000,-;nf_conntrack: table full, dropping packet
4,1004,15090000000,-;nf_conntrack: nf_conntrack: table full in netns 4026532999, dropping packet
6,1005,15100000000,-;TCP: request_sock_TCP: Possible SYN flooding on port 0.0.0.0:80. Sending cookies.  Check SNMP counters.
6,1006,15100000001,-;TCP: request_sock_TCPv6: Possible SYN flooding on port [::]:443. Dropping request.  Check SNMP counters.
4,1007,15100000002,-;nf_conntrack: expectation table full
4,1008,15100000003,-;TCP: time wait bucket table overflow
";

    #[test]
    fn kmsg_records() {
        let k = parse(KMSG);
        assert_eq!(k.records, 9);
        assert_eq!(k.oldest_usec, Some(15_070_104_447));
        assert_eq!(k.newest_usec, Some(15_100_000_003));
        assert_eq!(
            k.table_full,
            vec![
                TableFull {
                    inode: None,
                    lines: 1,
                    first_usec: Some(15_080_000_000),
                    last_usec: Some(15_080_000_000),
                    times_usec: vec![15_080_000_000],
                },
                TableFull {
                    inode: Some(4_026_532_177),
                    lines: 2,
                    first_usec: Some(15_070_104_447),
                    last_usec: Some(15_071_000_000),
                    times_usec: vec![15_070_104_447, 15_071_000_000],
                },
                TableFull {
                    inode: Some(4_026_532_999),
                    lines: 1,
                    first_usec: Some(15_090_000_000),
                    last_usec: Some(15_090_000_000),
                    times_usec: vec![15_090_000_000],
                },
            ]
        );
        assert_eq!(k.suppressed_callbacks, 437);
        assert_eq!(k.suppressed_lines, 1);
        assert_eq!(k.expect_table_full, 1);
        assert_eq!(k.tw_overflow, 1);
        assert_eq!(k.syn_flood.len(), 2);
        let s80 = &k.syn_flood[0];
        assert_eq!(
            (s80.socket.as_str(), s80.port, s80.cookies),
            ("0.0.0.0:80", Some(80), true)
        );
        let s443 = &k.syn_flood[1];
        assert_eq!(
            (s443.socket.as_str(), s443.port, s443.cookies),
            ("[::]:443", Some(443), false)
        );
    }

    #[test]
    fn dmesg_text_and_old_forms() {
        let d = "[15070.104447] nf_conntrack: table full, dropping packet.\n\
                 [  100.5] ip_conntrack: table full, dropping packet.\n\
                 [  101.000001] nf_conntrack: nf_conntrack: table full, dropping packet\n\
                 nf_conntrack: table full in netns 7, dropping packet\n\
                 [  102.000000] nf_conntrack: expectation table full\n";
        let k = parse(d);
        let old = k.table_full_for(None).unwrap();
        assert_eq!(old.lines, 3);
        assert_eq!(old.first_usec, Some(100_500_000));
        assert_eq!(old.last_usec, Some(15_070_104_447));
        let seven = k.table_full_for(Some(7)).unwrap();
        assert_eq!((seven.lines, seven.last_usec), (1, None));
        assert_eq!(k.expect_table_full, 1);
    }

    #[test]
    fn the_boot_sizing_line() {
        // As CentOS 7 (3.10) logs it, through dmesg and /dev/kmsg.
        let d = "[    5.123456] nf_conntrack version 0.5.0 (16384 buckets, 65536 max)\n\
                 6,900,6000000,-;nf_conntrack version 0.5.0 (65536 buckets, 262144 max)\n";
        let k = parse(d);
        assert_eq!(
            k.boot_sizing,
            Some(BootSizing {
                buckets: 65_536,
                max: 262_144,
                usec: Some(6_000_000)
            })
        );
        assert_eq!(
            match_boot_sizing("nf_conntrack version 0.5.0 (7 buckets, 56 max)"),
            Some((7, 56))
        );
        for bad in [
            "nf_conntrack version 0.5.0 (x buckets, 56 max)",
            "nf_conntrack version 0.5.0 (7 buckets, 56 max) extra",
            "nf_conntrack version 0.5.0",
        ] {
            assert_eq!(match_boot_sizing(bad), None, "{bad}");
        }
        assert_eq!(parse(KMSG).boot_sizing, None);
    }

    #[test]
    fn near_misses_do_not_match() {
        assert_eq!(
            match_table_full("nf_conntrack: expectation table full"),
            None
        );
        assert_eq!(
            match_table_full("nf_conntrack: table full in netns x, dropping packet"),
            None
        );
        assert_eq!(
            match_table_full("nf_conntrack: table full in netns 5"),
            None
        );
        assert_eq!(
            match_table_full("nf_conntrack: table full in netns 5, dropping packet"),
            Some(Some(5))
        );
        assert_eq!(split_line(" SUBSYSTEM=net"), None);
        assert_eq!(split_line("6,1,2,-;hello"), Some((Some(2), "hello")));
        assert_eq!(split_line("6,1,2,-,caller=T1;x"), Some((Some(2), "x")));
    }

    #[test]
    fn fixture_tree_reads_dev_kmsg_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        std::fs::write(dir.path().join("dev/kmsg"), KMSG).unwrap();
        let k = read(&Root::live_at(dir.path().to_path_buf())).unwrap();
        assert_eq!(k.table_full.len(), 3);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(&Root::live_at(empty.path().to_path_buf())),
            Err(Unavailable::Missing { .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&String::from_utf8_lossy(&b));
        }
        #[test]
        fn never_panics_structured(s in "([0-9,;\\[\\]. -]{0,12}(nf_conntrack: table full( in netns [0-9]{0,22})?, dropping packet|net_ratelimit: [0-9-]{0,22} callbacks suppressed|Possible SYN flooding on port [0-9:.\\[\\]]{0,10}(\\. )?x)?\n){0,5}") {
            let _ = parse(&s);
        }
    }
}
