//! nginx's own words: what the error logs of the nginx masters living in
//! the checked network namespace said in the last hour, counted by the
//! kinds of error other rules explain (probe `probe:nginx_errors`).
//!
//! Read live, for each nginx master process in the reading thread's netns
//! (the /proc walk of `host::fds`, [`super::fds::netns_pids`]):
//! - /proc/PID/cmdline: `-c FILE` (else /etc/nginx/nginx.conf), `-p PREFIX`
//!   (else Debian's /usr/share/nginx/), `-e FILE`, `-g DIRECTIVES`. nginx retitles its
//!   master ("nginx: master process nginx -c …"): the arguments are then
//!   split at spaces, so a path holding a space is not found.
//! - its config and what it `include`s (globs expanded; relative names
//!   under the main file's directory, as nginx does), at most
//!   [`MAX_CONF_FILES`] files of [`MAX_CONF_BYTES`], [`MAX_DEPTH`] deep;
//!   every `error_log` in any context (relative names under the prefix),
//!   except `stderr`, `syslog:` and `memory:`; when none is named, `-e`'s
//!   file, else /var/log/nginx/error.log (where distributions' configs put it).
//! - of each log (at most [`MAX_LOGS`], each once), the last [`MAX_TAIL`]
//!   bytes and its modification time.
//!
//! Every path is the master's own: resolved under /proc/PID/root as a
//! chroot would ([`crate::confine`]), so a containerised nginx's files are
//! its container's and no link leads out of it; only regular files are
//! opened (O_NOFOLLOW, fstat), never more than the bounds above. Config
//! and log contents are untrusted: garbage is skipped, never a panic. No
//! master here is an empty summary; masters whose files (or, not root,
//! whose netns) cannot be read are a permission error, never "no nginx".
//!
//! The window: a line counts when it is at most [`WINDOW_SECS`] old when
//! read. nginx stamps lines in its local time without a zone, so the age
//! of a line is the age of the log's last write (its mtime against the
//! clock, both UTC) plus how much older its stamp is than the newest stamp
//! in the log: no time zone is needed. Lines without a stamp are counted
//! apart, never in the window. Only the current file is read: just after
//! a rotation the hour is short. When the last [`MAX_TAIL`] bytes of a
//! busy log reach back less than the window, the counts are a lower bound
//! and say how far they reach (`covers_secs`).
//!
//! Under a `--root` tree the probe is the file probe/nginx_errors; a
//! snapshot replays it. The probe holds counts, stamps and paths, never a
//! log line (they hold client addresses).
//!
//! Not for: judging (checks::nginx ties the counts to the rules that
//! explain them), access logs, rotated logs, or other proxies.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The probe key.
pub const PROBE: &str = "probe:nginx_errors";
/// Lines younger than this count (seconds).
pub const WINDOW_SECS: u64 = 3600;
/// Bytes read from the end of each log.
pub const MAX_TAIL: u64 = 1 << 20;
/// Logs read in all.
pub const MAX_LOGS: usize = 16;
/// nginx masters looked at.
pub const MAX_MASTERS: usize = 8;
/// Config files read per master, and bytes per file.
pub const MAX_CONF_FILES: usize = 256;
pub const MAX_CONF_BYTES: u64 = 1 << 20;
/// `include` nesting followed.
pub const MAX_DEPTH: usize = 8;
/// Bytes of a line's message looked at to classify it.
pub const MAX_CLASSIFY: usize = 4096;
/// The config nginx reads without `-c`, and the prefix without `-p`
/// (Debian's and Ubuntu's builds).
pub const DEFAULT_CONF: &str = "/etc/nginx/nginx.conf";
pub const DEFAULT_PREFIX: &str = "/usr/share/nginx/";
/// The log looked at when the config names none.
pub const DEFAULT_LOG: &str = "/var/log/nginx/error.log";

/// A kind of error line, by what explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// connect() … failed (99: Cannot assign requested address): no local
    /// port left for the upstream's (src, dst, dport).
    AddrNotAvail,
    /// (24: Too many open files): the process's RLIMIT_NOFILE.
    TooManyOpenFiles,
    /// (23: Too many open files in system): fs.file-max.
    TooManyFilesInSystem,
    /// upstream timed out (110) while connecting to upstream, or
    /// connect() failed (110): the SYN or its answer was lost.
    ConnectTimeout,
    /// upstream timed out (110) while reading or sending: the upstream
    /// answered slowly (explained by no rule here).
    UpstreamTimeout,
}

impl Class {
    /// How reports name it.
    pub fn label(self) -> &'static str {
        match self {
            Class::AddrNotAvail => "99: Cannot assign requested address",
            Class::TooManyOpenFiles => "24: Too many open files",
            Class::TooManyFilesInSystem => "23: Too many open files in system",
            Class::ConnectTimeout => "upstream connect timed out (110)",
            Class::UpstreamTimeout => "upstream timed out (110) after connecting",
        }
    }

    /// The class a key of [`NginxErrors::classes`] in JSON names.
    pub fn from_key(k: &str) -> Option<Class> {
        serde_json::from_value(serde_json::Value::String(k.to_string())).ok()
    }
}

/// The lines of one class in the window, over every log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCount {
    pub lines: u64,
    /// The newest one's stamp as nginx wrote it (`2026/12/07 09:00:01`,
    /// nginx's local time) and its age when read, seconds.
    pub newest: String,
    pub newest_age_secs: u64,
    /// The log it is in.
    pub log: String,
    /// When a log holding them was read only in part (its last
    /// [`MAX_TAIL`] bytes) and that part is younger than the window: how
    /// many seconds it reaches back. The lines are then a lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers_secs: Option<u64>,
}

/// One log as read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRead {
    /// The path as nginx names it.
    pub path: String,
    pub size: u64,
    /// Bytes read from its end.
    pub bytes_read: u64,
    /// Seconds since its last write, when read.
    pub age_secs: u64,
    /// Complete lines read, those without a stamp, those in the window.
    pub lines: u64,
    pub untimed: u64,
    pub in_window: u64,
    /// The newest stamp, as written.
    #[serde(default)]
    pub newest: Option<String>,
    /// Read in part, and the part is younger than the window: how many
    /// seconds it reaches back (see [`ClassCount::covers_secs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers_secs: Option<u64>,
}

/// A master process found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Master {
    pub pid: u32,
    /// Its config file, as it names it.
    pub conf: String,
}

/// What the probe found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NginxErrors {
    pub window_secs: u64,
    #[serde(default)]
    pub masters: Vec<Master>,
    #[serde(default)]
    pub logs: Vec<LogRead>,
    /// Lines in the window by class (only classes seen).
    #[serde(default)]
    pub classes: BTreeMap<Class, ClassCount>,
    /// Configs, includes and logs that could not be read, with why.
    #[serde(default)]
    pub unread: Vec<String>,
    /// A bound was reached (masters, config files, logs).
    #[serde(default)]
    pub truncated: bool,
}

impl NginxErrors {
    /// Lines of `c` in the window.
    pub fn lines(&self, c: Class) -> u64 {
        self.classes.get(&c).map_or(0, |x| x.lines)
    }
}

pub fn read(root: &Root) -> Fact<NginxErrors> {
    let prefix = root.live_prefix().map(Path::to_path_buf);
    root.probe(PROBE, || {
        let proc = prefix.unwrap_or_else(|| "/".into()).join("proc");
        let n = scan(&proc, SystemTime::now())?;
        Ok(serde_json::to_vec(&n).expect("NginxErrors serialises"))
    })
    .and_then(|b| {
        serde_json::from_slice(&b).map_err(|e| Unavailable::malformed(PROBE, e.to_string()))
    })
}

// ---- log lines (pure) ---------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026/12/07 09:00:01` -> seconds since 1970 in nginx's local time (a
/// count to compare stamps with, not a Unix time). None unless the 19
/// bytes are exactly such a stamp.
pub fn parse_stamp(b: &[u8]) -> Option<i64> {
    let b = b.get(..19)?;
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = &b[r];
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0i64, |a, c| a * 10 + i64::from(c - b'0')))
    };
    let seps = [(4, b'/'), (7, b'/'), (10, b' '), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let ok = (1970..=9999).contains(&y)
        && (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && h < 24
        && mi < 60
        && s <= 60;
    ok.then(|| days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// A stamp of [`parse_stamp`] written back as nginx writes it.
pub fn format_stamp(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// One error-log line: `YYYY/MM/DD HH:MM:SS [level] PID#TID: message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub stamp: i64,
    pub class: Option<Class>,
}

/// Parse one line (without its `\n`; a trailing `\r` is ignored). None for
/// a line without the stamp and level (a continuation, garbage). Only the
/// first [`MAX_CLASSIFY`] bytes of the message are looked at.
pub fn parse_line(line: &[u8]) -> Option<Line> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let stamp = parse_stamp(line)?;
    let rest = line.get(19..)?.strip_prefix(b" [")?;
    let close = rest.iter().take(8).position(|&c| c == b']')?;
    if close == 0 || !rest[..close].iter().all(u8::is_ascii_lowercase) {
        return None;
    }
    let msg = &rest[close + 1..];
    let msg = &msg[..msg.len().min(MAX_CLASSIFY)];
    Some(Line {
        stamp,
        class: classify(msg),
    })
}

fn has(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// The first `(NN: ` in a message: the errno nginx appends to a failed call.
fn first_errno(msg: &[u8]) -> Option<u32> {
    memchr::memchr_iter(b'(', msg).find_map(|i| {
        let rest = &msg[i + 1..];
        let n = rest
            .iter()
            .take(5)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 || n > 4 || !rest[n..].starts_with(b": ") {
            return None;
        }
        std::str::from_utf8(&rest[..n]).ok()?.parse().ok()
    })
}

/// The class of a message, if it is one of ours.
pub fn classify(msg: &[u8]) -> Option<Class> {
    if has(msg, b"upstream timed out") {
        return Some(if has(msg, b"while connecting to upstream") {
            Class::ConnectTimeout
        } else {
            Class::UpstreamTimeout
        });
    }
    let connect = has(msg, b"connect()");
    match first_errno(msg)? {
        // bind() (99) at start-up is a listen address, not a port shortage.
        99 if connect => Some(Class::AddrNotAvail),
        24 => Some(Class::TooManyOpenFiles),
        23 => Some(Class::TooManyFilesInSystem),
        110 if connect || has(msg, b"while connecting to upstream") => Some(Class::ConnectTimeout),
        _ => None,
    }
}

/// The complete lines of a tail: the first is dropped unless the tail is
/// the whole file (it may be cut), as is a last one without its `\n`
/// (nginx may be writing it).
fn complete_lines(tail: &[u8], whole: bool) -> impl Iterator<Item = &[u8]> {
    let start = if whole {
        0
    } else {
        memchr::memchr(b'\n', tail).map_or(tail.len(), |i| i + 1)
    };
    let end = memchr::memrchr(b'\n', tail).map_or(0, |i| i + 1).max(start);
    tail[start..end]
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
}

/// One log's lines counted: the classes in the window, each with its
/// count and newest stamp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailCounts {
    pub lines: u64,
    pub untimed: u64,
    pub in_window: u64,
    pub newest: Option<i64>,
    pub oldest: Option<i64>,
    /// Class -> (lines, newest stamp).
    pub classes: BTreeMap<Class, (u64, i64)>,
}

/// Count a tail whose last write is `age_secs` old: a line is in the
/// window when `age_secs + (newest stamp - its stamp) <= window`.
pub fn count_tail(tail: &[u8], whole: bool, age_secs: u64, window: u64) -> TailCounts {
    let mut c = TailCounts::default();
    for l in complete_lines(tail, whole) {
        c.lines += 1;
        match parse_line(l) {
            Some(p) => {
                c.newest = c.newest.max(Some(p.stamp));
                c.oldest = Some(c.oldest.map_or(p.stamp, |o| o.min(p.stamp)));
            }
            None => c.untimed += 1,
        }
    }
    let Some(newest) = c.newest else { return c };
    let budget = i64::try_from(window.saturating_sub(age_secs)).unwrap_or(i64::MAX);
    if age_secs > window {
        return c;
    }
    for p in complete_lines(tail, whole).filter_map(parse_line) {
        if newest - p.stamp > budget {
            continue;
        }
        c.in_window += 1;
        if let Some(class) = p.class {
            let e = c.classes.entry(class).or_insert((0, p.stamp));
            e.0 += 1;
            e.1 = e.1.max(p.stamp);
        }
    }
    c
}

// ---- nginx's command line and config (pure) -----------------------------

/// What a master's command line says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    pub conf: Option<String>,
    pub prefix: Option<String>,
    /// `-g` directives.
    pub globals: Option<String>,
    /// `-e FILE`: the log used when the config names none.
    pub error_log: Option<String>,
}

/// The arguments of an nginx master from /proc/PID/cmdline, or None when
/// it is not one (a worker, cache manager, another program). Retitled
/// ("nginx: master process …") or as started (NUL-separated, argv[0]
/// named nginx: single-process mode, or before the retitle).
pub fn master_args(cmdline: &[u8]) -> Option<Args> {
    let text = String::from_utf8_lossy(cmdline);
    let text = text.trim_end_matches('\0');
    let words: Vec<&str> = if let Some(rest) = text.strip_prefix("nginx: master process ") {
        rest.split([' ', '\0']).filter(|w| !w.is_empty()).collect()
    } else if text.starts_with("nginx: ") {
        return None;
    } else {
        let v: Vec<&str> = text.split('\0').collect();
        let argv0 = v.first()?.rsplit('/').next()?;
        if argv0 != "nginx" {
            return None;
        }
        v
    };
    Some(parse_args(words.get(1..).unwrap_or(&[])))
}

/// `-c FILE`, `-p PREFIX`, `-e FILE`, `-g DIRECTIVES` (also `-cFILE`);
/// the words of `-g` run to the next option.
fn parse_args(words: &[&str]) -> Args {
    let mut a = Args::default();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        i += 1;
        let (flag, attached) = match w.strip_prefix('-').and_then(|r| r.chars().next()) {
            Some(f @ ('c' | 'p' | 'e' | 'g')) => (f, &w[2..]),
            _ => continue,
        };
        let value = if !attached.is_empty() {
            attached.to_string()
        } else if flag == 'g' {
            let end = words[i..]
                .iter()
                .position(|x| x.starts_with('-') && x.len() == 2)
                .map_or(words.len(), |n| i + n);
            let v = words[i..end].join(" ");
            i = end;
            v
        } else {
            let Some(v) = words.get(i) else { break };
            i += 1;
            v.to_string()
        };
        match flag {
            'c' => a.conf = Some(value),
            'p' => a.prefix = Some(value),
            'e' => a.error_log = Some(value),
            _ => a.globals = Some(value),
        }
    }
    a
}

/// The directives of a config text, flattened (blocks ignored): each as
/// its words, quotes and escapes resolved. Garbage gives odd directives,
/// never an error.
pub fn directives(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if cur.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' if cur.is_none() => {
                let mut w = String::new();
                while let Some(x) = chars.next() {
                    match x {
                        '\\' => w.extend(chars.next()),
                        x if x == c => break,
                        x => w.push(x),
                    }
                }
                words.push(w);
            }
            ';' | '{' | '}' => {
                words.extend(cur.take());
                if !words.is_empty() && c != '}' {
                    out.push(std::mem::take(&mut words));
                }
                words.clear();
            }
            c if c.is_whitespace() => words.extend(cur.take()),
            '\\' => cur.get_or_insert_with(String::new).extend(chars.next()),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    out
}

/// `name` made absolute under `base` (a directory ending in `/`).
fn full_name(base: &str, name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("{base}{name}")
    }
}

/// A directory name with its trailing `/`.
fn as_dir(d: &str) -> String {
    if d.ends_with('/') {
        d.to_string()
    } else {
        format!("{d}/")
    }
}

/// The file an `error_log` argument names, made absolute under `prefix`;
/// None for stderr, syslog: and memory:.
pub fn log_file(arg: &str, prefix: &str) -> Option<String> {
    if arg == "stderr" || arg.starts_with("syslog:") || arg.starts_with("memory:") {
        return None;
    }
    (!arg.is_empty()).then(|| full_name(prefix, arg))
}

/// Whether `name` matches the glob(3) component `pat` (`*`, `?`, `[…]`,
/// `[!…]`, `\` escapes; a leading `.` only matched by a leading `.`).
pub fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pat.first() != Some(&b'.') {
        return false;
    }
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p + 1, n));
            p += 1;
            continue;
        }
        if let Some(len) = one_char(pat.get(p..).unwrap_or(&[]), name[n]) {
            p += len;
            n += 1;
            continue;
        }
        match star {
            Some((sp, sn)) => {
                p = sp;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == b'*')
}

/// Whether the pattern's first element matches `c`: its length if so.
fn one_char(pat: &[u8], c: u8) -> Option<usize> {
    match *pat.first()? {
        b'?' => Some(1),
        b'\\' if pat.len() > 1 => (pat[1] == c).then_some(2),
        b'[' => {
            let neg = matches!(pat.get(1), Some(b'!' | b'^'));
            let mut i = 1 + usize::from(neg);
            let mut hit = false;
            let mut first = true;
            while i < pat.len() && (first || pat[i] != b']') {
                first = false;
                let lo = pat[i];
                if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|&h| h != b']') {
                    hit |= (lo..=pat[i + 2]).contains(&c);
                    i += 3;
                } else {
                    hit |= lo == c;
                    i += 1;
                }
            }
            // An unclosed `[` is a plain character.
            if i >= pat.len() {
                return (c == b'[').then_some(1);
            }
            (hit != neg).then_some(i + 1)
        }
        x => (x == c).then_some(1),
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Control characters of an untrusted name escaped, at most 300 bytes.
fn printable(s: &str) -> String {
    let mut out = String::new();
    for c in crate::util::truncate(s, 300).chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

// ---- the master's files (I/O) -------------------------------------------

/// A master's files, seen from its root (/proc/PID/root).
struct MasterFs {
    root: PathBuf,
}

/// A log's end.
struct Tail {
    bytes: Vec<u8>,
    size: u64,
    whole: bool,
    mtime: SystemTime,
    id: (u64, u64),
}

impl MasterFs {
    /// Open the regular file at absolute `abs` under the root.
    fn open(&self, abs: &str) -> io::Result<(File, std::fs::Metadata)> {
        use std::os::unix::fs::OpenOptionsExt;
        let rel = abs.trim_start_matches('/');
        let rel = crate::confine::resolve(&self.root, rel).map_err(io::Error::other)?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(self.root.join(rel))?;
        let m = f.metadata()?;
        if !m.is_file() {
            let what = crate::infile::kind(&m.file_type());
            return Err(io::Error::other(format!("{what}, not a regular file")));
        }
        Ok((f, m))
    }

    /// A whole config file, at most [`MAX_CONF_BYTES`].
    fn read_conf(&self, abs: &str) -> io::Result<String> {
        let (f, m) = self.open(abs)?;
        if m.len() > MAX_CONF_BYTES {
            return Err(io::Error::other(format!(
                "larger than {} KiB",
                MAX_CONF_BYTES >> 10
            )));
        }
        let mut v = Vec::new();
        f.take(MAX_CONF_BYTES).read_to_end(&mut v)?;
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    /// The last `max` bytes of a log.
    fn tail(&self, abs: &str, max: u64) -> io::Result<Tail> {
        use std::os::unix::fs::MetadataExt;
        let (mut f, m) = self.open(abs)?;
        let size = m.len();
        let from = size.saturating_sub(max);
        f.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        f.take(max).read_to_end(&mut bytes)?;
        Ok(Tail {
            bytes,
            size,
            whole: from == 0,
            mtime: m.modified()?,
            id: (m.dev(), m.ino()),
        })
    }

    /// The absolute names a glob pattern matches, sorted, at most `max`.
    fn glob(&self, pattern: &str, max: usize) -> Vec<String> {
        let mut found = vec![String::new()];
        for comp in pattern.split('/').filter(|c| !c.is_empty()) {
            let mut next = Vec::new();
            for base in &found {
                if !is_glob(comp) {
                    next.push(format!("{base}/{comp}"));
                    continue;
                }
                for name in self.list(base) {
                    if glob_match(comp.as_bytes(), name.as_bytes()) && next.len() < max {
                        next.push(format!("{base}/{name}"));
                    }
                }
            }
            found = next;
        }
        found.retain(|f| !f.is_empty());
        found.sort();
        found.truncate(max);
        found
    }

    /// The names in a directory under the root (none when unreadable).
    fn list(&self, abs: &str) -> Vec<String> {
        let rel = abs.trim_start_matches('/');
        let dir = if rel.is_empty() {
            Ok(String::new())
        } else {
            crate::confine::resolve(&self.root, rel)
        };
        let Ok(dir) = dir else { return Vec::new() };
        match std::fs::read_dir(self.root.join(dir)) {
            Ok(rd) => rd
                .flatten()
                .take(10_000)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Why an I/O error, in a few words.
fn why(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "not present".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// One master's config walked: the logs it names.
struct ConfWalk<'a> {
    fs: &'a MasterFs,
    /// The main config's directory (includes are relative to it) and the
    /// prefix (error_log names are), both ending in `/`.
    conf_dir: String,
    prefix: String,
    files: usize,
    seen: std::collections::HashSet<String>,
    logs: Vec<String>,
    named_any: bool,
    unread: Vec<String>,
    truncated: bool,
}

impl ConfWalk<'_> {
    fn text(&mut self, text: &str, depth: usize) {
        for d in directives(text) {
            match (d[0].as_str(), d.get(1)) {
                ("error_log", Some(arg)) => {
                    self.named_any = true;
                    if let Some(p) = log_file(arg, &self.prefix) {
                        if !self.logs.contains(&p) {
                            self.logs.push(p);
                        }
                    }
                }
                ("include", Some(arg)) => {
                    let name = full_name(&self.conf_dir, arg);
                    let files = if is_glob(&name) {
                        self.fs.glob(&name, MAX_CONF_FILES)
                    } else {
                        vec![name]
                    };
                    for f in files {
                        self.file(&f, depth + 1);
                    }
                }
                _ => {}
            }
        }
    }

    fn file(&mut self, abs: &str, depth: usize) {
        if depth > MAX_DEPTH || self.files >= MAX_CONF_FILES {
            self.truncated = true;
            return;
        }
        if !self.seen.insert(abs.to_string()) {
            return;
        }
        self.files += 1;
        match self.fs.read_conf(abs) {
            Ok(text) => self.text(&text, depth),
            Err(e) => self.unread.push(format!("{}: {}", printable(abs), why(&e))),
        }
    }
}

/// The error logs a master with `args` writes, under `fs`.
fn master_logs(fs: &MasterFs, args: &Args, out: &mut NginxErrors) -> (String, Vec<String>) {
    let prefix = as_dir(args.prefix.as_deref().unwrap_or(DEFAULT_PREFIX));
    let conf = match &args.conf {
        Some(c) => full_name(&prefix, c),
        None => DEFAULT_CONF.to_string(),
    };
    let conf_dir = conf.rsplit_once('/').map_or("/".into(), |(d, _)| as_dir(d));
    let mut w = ConfWalk {
        fs,
        conf_dir,
        prefix,
        files: 0,
        seen: Default::default(),
        logs: Vec::new(),
        named_any: false,
        unread: Vec::new(),
        truncated: false,
    };
    w.file(&conf, 0);
    if let Some(g) = &args.globals {
        w.text(g, 0);
    }
    if !w.named_any {
        let dflt = match &args.error_log {
            Some(e) => log_file(e, &w.prefix),
            None => Some(DEFAULT_LOG.to_string()),
        };
        w.logs.extend(dflt);
    }
    out.unread.append(&mut w.unread);
    out.truncated |= w.truncated;
    (conf, w.logs)
}

/// The nginx masters among `pids` of `proc`, at most [`MAX_MASTERS`].
fn masters(proc: &Path, pids: &[u32], out: &mut NginxErrors) -> Vec<(u32, Args)> {
    let mut v = Vec::new();
    for &pid in pids {
        let dir = proc.join(pid.to_string());
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != "nginx" {
            continue;
        }
        let mut cmdline = Vec::new();
        let read =
            File::open(dir.join("cmdline")).and_then(|f| f.take(65_536).read_to_end(&mut cmdline));
        let Some(args) = read.ok().and_then(|_| master_args(&cmdline)) else {
            continue;
        };
        if v.len() == MAX_MASTERS {
            out.truncated = true;
            break;
        }
        v.push((pid, args));
    }
    v
}

/// Read one log into `out` (counts merged by class), unless already read.
fn read_log(
    fs: &MasterFs,
    path: &str,
    now: SystemTime,
    ids: &mut Vec<(u64, u64)>,
    out: &mut NginxErrors,
) -> bool {
    let t = match fs.tail(path, MAX_TAIL) {
        Ok(t) => t,
        Err(e) => {
            out.unread.push(format!("{}: {}", printable(path), why(&e)));
            return false;
        }
    };
    if ids.contains(&t.id) {
        return true;
    }
    if ids.len() == MAX_LOGS {
        out.truncated = true;
        return false;
    }
    ids.push(t.id);
    let age = now.duration_since(t.mtime).map_or(0, |d| d.as_secs());
    let c = count_tail(&t.bytes, t.whole, age, out.window_secs);
    let path = printable(path);
    // How old a stamp is when read.
    let age_of = |stamp: i64| {
        let newer = c.newest.map_or(0, |n| n.saturating_sub(stamp));
        age.saturating_add(u64::try_from(newer).unwrap_or(0))
    };
    let covers = c
        .oldest
        .map(age_of)
        .filter(|&s| !t.whole && s < out.window_secs);
    for (class, (lines, stamp)) in c.classes {
        let a = age_of(stamp);
        let e = out.classes.entry(class).or_insert_with(|| ClassCount {
            lines: 0,
            newest: format_stamp(stamp),
            newest_age_secs: a,
            log: path.clone(),
            covers_secs: None,
        });
        e.lines += lines;
        if a < e.newest_age_secs {
            (e.newest, e.newest_age_secs, e.log) = (format_stamp(stamp), a, path.clone());
        }
        e.covers_secs = match (e.covers_secs, covers) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
    }
    out.logs.push(LogRead {
        path,
        size: t.size,
        bytes_read: t.bytes.len() as u64,
        age_secs: age,
        lines: c.lines,
        untimed: c.untimed,
        in_window: c.in_window,
        newest: c.newest.map(format_stamp),
        covers_secs: covers,
    });
    true
}

/// nginx masters whose netns could not be read (not root: /proc/PID/ns/net
/// is a ptrace check, comm and cmdline are not): they may live here, so
/// "no nginx" would be an ok about nothing.
fn unplaced(proc: &Path, pids: &[u32]) -> Option<Unavailable> {
    let mut scratch = NginxErrors::default();
    let who: Vec<String> = masters(proc, pids, &mut scratch)
        .iter()
        .map(|(p, _)| format!("nginx[{p}]"))
        .collect();
    (!who.is_empty())
        .then(|| Unavailable::permission(&format!("the network namespace of {}", who.join(", "))))
}

/// Find the nginx masters in this netns under `proc` and count what their
/// error logs said in the last [`WINDOW_SECS`] before `now`. No master:
/// an empty summary. Masters whose files cannot be read at all (not
/// root): a permission error; masters that log nowhere readable: failed.
pub fn scan(proc: &Path, now: SystemTime) -> Result<NginxErrors, Unavailable> {
    let walk = super::fds::netns_pids(proc, true)?;
    let mut out = NginxErrors {
        window_secs: WINDOW_SECS,
        ..NginxErrors::default()
    };
    let found = masters(proc, &walk.pids, &mut out);
    if found.is_empty() {
        return unplaced(proc, &walk.unknown_netns).map_or(Ok(out), Err);
    }
    let mut ids = Vec::new();
    let mut read_any = false;
    let mut refused = 0;
    for (pid, args) in &found {
        let fs = MasterFs {
            root: proc.join(pid.to_string()).join("root"),
        };
        if let Err(e) = std::fs::read_dir(&fs.root) {
            refused += usize::from(e.kind() == io::ErrorKind::PermissionDenied);
            out.unread
                .push(format!("nginx[{pid}]'s files: {}", why(&e)));
            continue;
        }
        let (conf, logs) = master_logs(&fs, args, &mut out);
        out.masters.push(Master {
            pid: *pid,
            conf: printable(&conf),
        });
        for l in logs {
            read_any |= read_log(&fs, &l, now, &mut ids, &mut out);
        }
    }
    if read_any {
        return Ok(out);
    }
    let who = found
        .iter()
        .map(|(p, _)| format!("nginx[{p}]"))
        .collect::<Vec<_>>()
        .join(", ");
    if refused == found.len() {
        return Err(Unavailable::permission(&format!("the files of {who}")));
    }
    Err(Unavailable::Failed {
        what: format!("the error log of {who}"),
        detail: match out.unread.first() {
            Some(u) => u.clone(),
            None => "it logs only to stderr, syslog or memory".into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Lines as Debian's nginx 1.22.1 writes them (the lab's gateway, this VM).
    const TIMEOUT: &str = "2026/12/07 09:00:01 [error] 1234#1234: *5 upstream timed out (110: Connection timed out) while connecting to upstream, client: 10.0.0.2, server: , request: \"GET / HTTP/1.1\", upstream: \"http://10.0.1.7:8080/\", host: \"10.0.0.1\"";
    const PORTS: &str = "2026/12/07 09:00:02 [crit] 1234#1234: *7 connect() to 10.0.1.7:8080 failed (99: Cannot assign requested address) while connecting to upstream, client: 10.0.0.2";
    const ACCEPT: &str =
        "2026/12/07 09:00:04 [crit] 1234#1234: accept4() failed (24: Too many open files)";

    fn class(l: &str) -> Option<Class> {
        parse_line(l.as_bytes()).and_then(|l| l.class)
    }

    #[test]
    fn stamps_round_trip_and_refuse_garbage() {
        let t = parse_stamp(b"2026/12/07 09:00:01").unwrap();
        assert_eq!(format_stamp(t), "2026/12/07 09:00:01");
        // Seconds since 1970 as if UTC: a count, not a zone.
        assert_eq!(parse_stamp(b"1970/01/01 00:00:00"), Some(0));
        assert_eq!(parse_stamp(b"2024/02/29 23:59:60"), Some(1_709_251_200));
        for bad in [
            "2026/13/07 09:00:01",
            "2026/12/00 09:00:01",
            "2026/12/07 24:00:01",
            "2026-12-07 09:00:01",
            "2026/12/07 09:00",
            "+026/12/07 09:00:01",
            "",
        ] {
            assert_eq!(parse_stamp(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(
            format_stamp(parse_stamp(b"2000/03/01 00:00:00").unwrap() - 1),
            "2000/02/29 23:59:59"
        );
    }

    #[test]
    fn lines_are_classified_by_errno_and_phase() {
        assert_eq!(class(TIMEOUT), Some(Class::ConnectTimeout));
        assert_eq!(class(PORTS), Some(Class::AddrNotAvail));
        assert_eq!(class(ACCEPT), Some(Class::TooManyOpenFiles));
        let l = "2026/12/07 09:00:03 [alert] 1234#1234: *9 socket() failed (24: Too many open files) while connecting to upstream";
        assert_eq!(class(l), Some(Class::TooManyOpenFiles));
        let l = "2026/12/07 09:00:09 [alert] 1#1: open() \"/x\" failed (23: Too many open files in system)";
        assert_eq!(class(l), Some(Class::TooManyFilesInSystem));
        let l = "2026/12/07 09:00:08 [error] 1234#1234: *14 connect() failed (110: Connection timed out) while connecting to upstream";
        assert_eq!(class(l), Some(Class::ConnectTimeout));
        let l = "2026/12/07 09:00:05 [error] 1234#1234: *11 upstream timed out (110: Connection timed out) while reading response header from upstream";
        assert_eq!(class(l), Some(Class::UpstreamTimeout));
        // A listen address that is not local is no port shortage; refused
        // connections are no timeout.
        let l = "2026/12/07 09:00:06 [emerg] 1234#1234: bind() to 10.9.9.9:80 failed (99: Cannot assign requested address)";
        assert_eq!(class(l), None);
        let l = "2026/12/07 09:00:07 [error] 1234#1234: *13 connect() failed (111: Connection refused) while connecting to upstream";
        assert_eq!(class(l), None);
        // CRLF, and a line whose errno is past what is looked at.
        assert_eq!(class(&format!("{PORTS}\r")), Some(Class::AddrNotAvail));
        let huge = format!(
            "2026/12/07 09:00:01 [crit] 1#1: {} connect() failed (99: x)",
            "a".repeat(1 << 20)
        );
        let p = parse_line(huge.as_bytes()).unwrap();
        assert_eq!(
            (p.stamp, p.class),
            (parse_stamp(b"2026/12/07 09:00:01").unwrap(), None)
        );
    }

    #[test]
    fn lines_without_stamp_and_level_are_not_lines() {
        for bad in [
            "",
            "hello",
            "2026/12/07 09:00:01",
            "2026/12/07 09:00:01 no level here (99: Cannot assign requested address) connect()",
            "2026/12/07 09:00:01 [] 1#1: x",
            "2026/12/07 09:00:01 [ERROR] 1#1: x",
            "2026/12/07 09:00:01 [verylonglevel] 1#1: x",
            "  at foo (lua trace)",
        ] {
            assert_eq!(parse_line(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn errno_is_the_first_parenthesised_number() {
        assert_eq!(first_errno(b"connect() to x failed (99: y)"), Some(99));
        assert_eq!(first_errno(b"(12345: too long) (7: ok)"), Some(7));
        assert_eq!(first_errno(b"(: x) (x: y) (12 x)"), None);
        assert_eq!(first_errno(b"("), None);
    }

    fn log(lines: &[&str]) -> Vec<u8> {
        lines
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn the_window_is_the_hour_before_reading() {
        let t = log(&[
            "2026/12/07 08:59:59 [crit] 1#1: *1 connect() to a failed (99: Cannot assign requested address)",
            "2026/12/07 09:00:00 [crit] 1#1: *2 connect() to a failed (99: Cannot assign requested address)",
            "garbage without a stamp",
            "2026/12/07 09:30:00 [error] 1#1: *3 upstream timed out (110: Connection timed out) while connecting to upstream",
            "2026/12/07 10:00:00 [notice] 1#1: signal process started",
        ]);
        // Written just now: 09:00:00 is exactly an hour old, 08:59:59 older.
        let c = count_tail(&t, true, 0, 3600);
        assert_eq!((c.lines, c.untimed, c.in_window), (5, 1, 3));
        let at = |s: &str| parse_stamp(s.as_bytes()).unwrap();
        assert_eq!(
            c.classes[&Class::AddrNotAvail],
            (1, at("2026/12/07 09:00:00"))
        );
        assert_eq!(
            c.classes[&Class::ConnectTimeout],
            (1, at("2026/12/07 09:30:00"))
        );
        // Last written 100 s before reading: the whole log is 100 s older.
        let c = count_tail(&t, true, 100, 3600);
        assert_eq!(c.in_window, 2);
        assert!(!c.classes.contains_key(&Class::AddrNotAvail));
        // Last written two hours ago: nothing is recent.
        let c = count_tail(&t, true, 7200, 3600);
        assert_eq!((c.lines, c.in_window, c.classes.len()), (5, 0, 0));
        assert_eq!(c.newest, Some(at("2026/12/07 10:00:00")));
    }

    #[test]
    fn a_tail_drops_its_cut_first_line_and_an_unfinished_last_one() {
        let mut t = b"ut (99: Cannot assign requested address)\n".to_vec();
        t.extend(log(&[PORTS, ACCEPT]));
        t.extend(b"2026/12/07 09:00:05 [crit] 1#1: connect() to a failed (99: half wri");
        let c = count_tail(&t, false, 0, 3600);
        assert_eq!(c.lines, 2);
        assert_eq!(c.classes[&Class::AddrNotAvail].0, 1);
        assert_eq!(c.classes[&Class::TooManyOpenFiles].0, 1);
        // The whole file: its first line is whole.
        let c = count_tail(&log(&[PORTS]), true, 0, 3600);
        assert_eq!(c.lines, 1);
        let crlf = format!("{PORTS}\r\n{ACCEPT}\r\n");
        assert_eq!(count_tail(crlf.as_bytes(), true, 0, 3600).in_window, 2);
        assert_eq!(count_tail(b"", true, 0, 3600), TailCounts::default());
        assert_eq!(count_tail(b"no newline at all", false, 0, 3600).lines, 0);
    }

    #[test]
    fn masters_and_their_arguments() {
        let a = master_args(
            b"nginx: master process /usr/sbin/nginx -g daemon on; master_process on;\0\0\0",
        )
        .unwrap();
        assert_eq!(a.globals.as_deref(), Some("daemon on; master_process on;"));
        assert_eq!((a.conf, a.prefix), (None, None));
        // The lab's (and the kernel test's) command line, retitled.
        let a = master_args(b"nginx: master process nginx -c /tmp/x/nginx.conf -p /tmp/x").unwrap();
        assert_eq!(a.conf.as_deref(), Some("/tmp/x/nginx.conf"));
        assert_eq!(a.prefix.as_deref(), Some("/tmp/x"));
        // As started (single-process mode), attached values, -e.
        let a = master_args(b"/usr/local/sbin/nginx\0-cconf/n.conf\0-e\0logs/e.log\0-p\0/srv/\0")
            .unwrap();
        assert_eq!(a.conf.as_deref(), Some("conf/n.conf"));
        assert_eq!(a.error_log.as_deref(), Some("logs/e.log"));
        assert_eq!(a.prefix.as_deref(), Some("/srv/"));
        assert_eq!(master_args(b"nginx: worker process\0"), None);
        assert_eq!(master_args(b"nginx: cache manager process"), None);
        assert_eq!(master_args(b"/usr/bin/python3\0nginx"), None);
        assert_eq!(master_args(b""), None);
        // A trailing flag without its value.
        assert_eq!(master_args(b"nginx\0-c").unwrap(), Args::default());
    }

    #[test]
    fn directives_with_comments_quotes_blocks() {
        let conf = "user www-data; # error_log /commented.log;\n\
                    error_log  /var/log/nginx/error.log warn;\n\
                    http {\n  include /etc/nginx/conf.d/*.conf;\n\
                    server { error_log \"/var/log/my site.log\"; location ~ \\.php$ { } }\n\
                    error_log 'a\\'b.log' ;}\n";
        let d = directives(conf);
        let logs: Vec<&str> = d
            .iter()
            .filter(|d| d[0] == "error_log")
            .map(|d| d[1].as_str())
            .collect();
        assert_eq!(
            logs,
            [
                "/var/log/nginx/error.log",
                "/var/log/my site.log",
                "a'b.log"
            ]
        );
        assert!(d
            .iter()
            .any(|d| d == &["include", "/etc/nginx/conf.d/*.conf"]));
        assert!(d.iter().any(|d| d == &["http"]));
        assert_eq!(log_file("stderr", "/p/"), None);
        assert_eq!(log_file("syslog:server=unix:/dev/log", "/p/"), None);
        assert_eq!(log_file("memory:32m", "/p/"), None);
        assert_eq!(
            log_file("logs/e.log", "/p/").as_deref(),
            Some("/p/logs/e.log")
        );
        assert_eq!(log_file("/abs.log", "/p/").as_deref(), Some("/abs.log"));
    }

    #[test]
    fn globs_as_glob3() {
        let m = |p: &str, n: &str| glob_match(p.as_bytes(), n.as_bytes());
        assert!(m("*.conf", "a.conf"));
        assert!(!m("*.conf", "a.conf.bak"));
        assert!(!m("*", ".hidden"));
        assert!(m(".*", ".hidden"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("[]]", "]"));
        assert!(m("[", "["));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(m("**", ""));
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A /proc with a master (its root a directory of the test), a worker
    /// and another program.
    fn proc_tree(d: &Path, cmdline: &str) -> (PathBuf, PathBuf) {
        let proc = d.join("proc");
        let fs = d.join("fs");
        std::fs::create_dir_all(&fs).unwrap();
        for (pid, comm, cmd) in [
            ("100", "nginx", cmdline),
            ("101", "nginx", "nginx: worker process"),
            ("102", "sleep", "sleep\x001000"),
        ] {
            write(&proc, &format!("{pid}/comm"), &format!("{comm}\n"));
            write(&proc, &format!("{pid}/cmdline"), cmd);
            std::os::unix::fs::symlink(&fs, proc.join(pid).join("root")).unwrap();
        }
        (proc, fs)
    }

    #[test]
    fn scans_a_master_its_includes_and_logs_confined_to_its_root() {
        let d = tempfile::tempdir().unwrap();
        let (proc, fs) = proc_tree(
            d.path(),
            "nginx: master process nginx -c /etc/nginx/nginx.conf",
        );
        write(
            &fs,
            "etc/nginx/nginx.conf",
            "error_log /var/log/nginx/error.log;\ninclude conf.d/*.conf;\ninclude /etc/nginx/nginx.conf;\n",
        );
        // Relative logs are under the prefix; a link out of the root stays in it.
        write(
            &fs,
            "etc/nginx/conf.d/a.conf",
            "server { error_log logs/site.log; }",
        );
        write(
            &fs,
            "etc/nginx/conf.d/b.conf",
            "error_log /var/log/escape.log; error_log syslog:server=x;",
        );
        write(
            &fs,
            "etc/nginx/conf.d/.hidden.conf",
            "error_log /never.log;",
        );
        let outside = d.path().join("outside.log");
        std::fs::write(&outside, format!("{PORTS}\n")).unwrap();
        std::fs::create_dir_all(fs.join("var/log")).unwrap();
        std::os::unix::fs::symlink(&outside, fs.join("var/log/escape.log")).unwrap();
        write(
            &fs,
            "var/log/nginx/error.log",
            &format!("{TIMEOUT}\n{PORTS}\n{PORTS}\n"),
        );
        write(&fs, "usr/share/nginx/logs/site.log", &format!("{ACCEPT}\n"));
        let now = SystemTime::now() + std::time::Duration::from_secs(5);
        let n = scan(&proc, now).unwrap();
        assert_eq!(
            n.masters,
            [Master {
                pid: 100,
                conf: "/etc/nginx/nginx.conf".into()
            }]
        );
        let paths: Vec<&str> = n.logs.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/var/log/nginx/error.log", "/usr/share/nginx/logs/site.log"]
        );
        assert_eq!(
            n.lines(Class::AddrNotAvail),
            2,
            "the escaping link's line is not read"
        );
        assert_eq!(n.lines(Class::ConnectTimeout), 1);
        assert_eq!(n.lines(Class::TooManyOpenFiles), 1);
        let c = &n.classes[&Class::AddrNotAvail];
        assert_eq!(
            (c.newest.as_str(), c.log.as_str()),
            ("2026/12/07 09:00:02", "/var/log/nginx/error.log")
        );
        assert!((5..60).contains(&c.newest_age_secs), "{c:?}");
        assert_eq!(n.unread, ["/var/log/escape.log: not present"]);
        assert!(!n.truncated);
    }

    /// A log bigger than the tail read whose tail is younger than the
    /// window: the counts say how far back they reach.
    #[test]
    fn a_busy_log_is_read_in_part_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        let (proc, fs) = proc_tree(d.path(), "nginx: master process nginx");
        write(&fs, "etc/nginx/nginx.conf", "error_log /l.log;");
        // 2 MiB of lines, one second apart from 08:00:00 on: the last MiB
        // reaches back about half of the span.
        let mut text = String::new();
        let start = parse_stamp(b"2026/12/07 08:00:00").unwrap();
        let mut i = 0;
        while text.len() < 2 << 20 {
            let s = format_stamp(start + i / 20);
            text.push_str(&format!("{s} [crit] 1#1: *{i} connect() to a:1 failed (99: Cannot assign requested address) while connecting to upstream\n"));
            i += 1;
        }
        write(&fs, "l.log", &text);
        let n = scan(&proc, SystemTime::now()).unwrap();
        let l = &n.logs[0];
        assert_eq!(l.bytes_read, MAX_TAIL);
        let c = &n.classes[&Class::AddrNotAvail];
        assert_eq!(c.lines, l.lines, "every line of the tail is recent");
        assert!(c.lines < i as u64 / 2 + 1, "{} of {i}", c.lines);
        let covers = c.covers_secs.unwrap();
        let span = (i / 20) as u64;
        assert!(
            (span / 3..span * 2 / 3).contains(&covers),
            "{covers} of {span}"
        );
        assert_eq!(l.covers_secs, Some(covers));
    }

    /// Only masters of the reading thread's netns count; one whose netns
    /// cannot be read (not root) is a permission error, not "no nginx".
    #[test]
    fn masters_of_other_namespaces_are_not_read_and_unplaced_ones_say_so() {
        let d = tempfile::tempdir().unwrap();
        let (proc, fs) = proc_tree(d.path(), "nginx: master process nginx");
        write(&fs, "etc/nginx/nginx.conf", "error_log /e.log;");
        write(&fs, "e.log", &format!("{TIMEOUT}\n"));
        std::fs::create_dir_all(proc.join("thread-self/ns")).unwrap();
        std::os::unix::fs::symlink("net:[1]", proc.join("thread-self/ns/net")).unwrap();
        let ns = |pid: &str, link: Option<&str>| {
            let p = proc.join(pid).join("ns/net");
            let _ = std::fs::remove_file(&p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            match link {
                Some(l) => std::os::unix::fs::symlink(l, p).unwrap(),
                // Not a link: read_link fails as it does on a process
                // whose ns/net is refused (not ENOENT, which is "vanished").
                None => std::fs::write(p, "").unwrap(),
            }
        };
        ns("101", Some("net:[1]"));
        ns("102", Some("net:[1]"));
        ns("100", Some("net:[1]"));
        assert_eq!(
            scan(&proc, SystemTime::now())
                .unwrap()
                .lines(Class::ConnectTimeout),
            1
        );
        ns("100", Some("net:[2]"));
        let n = scan(&proc, SystemTime::now()).unwrap();
        assert_eq!((n.masters.len(), n.classes.len()), (0, 0));
        ns("100", None);
        let e = scan(&proc, SystemTime::now()).unwrap_err();
        assert!(e.is_permission(), "{e}");
        assert!(
            e.to_string()
                .contains("the network namespace of nginx[100]"),
            "{e}"
        );
    }

    #[test]
    fn fifos_directories_and_missing_logs_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        let (proc, fs) = proc_tree(d.path(), "nginx\0-p\0/srv\0-c\0n.conf\0");
        write(
            &fs,
            "srv/n.conf",
            "error_log fifo.log; error_log dir; error_log gone.log;",
        );
        std::fs::create_dir_all(fs.join("srv/dir")).unwrap();
        let c = std::ffi::CString::new(fs.join("srv/fifo.log").to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = scan(&proc, SystemTime::now()).unwrap_err();
        assert!(matches!(e, Unavailable::Failed { .. }), "{e}");
        assert!(e.to_string().contains("the error log of nginx[100]"), "{e}");
        assert!(
            e.to_string()
                .contains("/srv/fifo.log: a FIFO, not a regular file"),
            "{e}"
        );
        // No error_log anywhere: the default place.
        write(&fs, "srv/n.conf", "events {}");
        write(&fs, "var/log/nginx/error.log", &format!("{TIMEOUT}\n"));
        let n = scan(&proc, SystemTime::now()).unwrap();
        assert_eq!(n.logs[0].path, DEFAULT_LOG);
        assert_eq!(n.lines(Class::ConnectTimeout), 1);
        // No nginx at all: an empty summary.
        let e = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(e.path().join("1")).unwrap();
        assert_eq!(scan(e.path(), SystemTime::now()).unwrap().masters, []);
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400), s in "\\PC{0,300}") {
            let _ = parse_line(&b);
            let _ = count_tail(&b, false, 5, 3600);
            let _ = count_tail(&b, true, 0, 3600);
            let _ = master_args(&b);
            let _ = directives(&s);
            let _ = glob_match(s.as_bytes(), &b);
            let _ = glob_match(&b, s.as_bytes());
            let _ = parse_stamp(&b);
        }

        #[test]
        fn stamps_round_trip(t in 0i64..253_402_300_799) {
            let s = format_stamp(t);
            prop_assert_eq!(parse_stamp(s.as_bytes()), Some(t));
        }
    }
}
