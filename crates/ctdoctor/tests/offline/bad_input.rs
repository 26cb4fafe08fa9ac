//! Bad input on every command's flags (issue 19, "safe as root"): huge,
//! negative, overflowing and non-numeric values; paths to /dev/zero,
//! FIFOs, directories, a 2 GB sparse file, files that are no namespace,
//! dead pids. Every run is bounded ([`BOUND`], then SIGKILL) and must not
//! panic, hang, or exit 0 for input it cannot use: it exits 3 and says why.
//! Plus the issue's own defects, one test each (`issue19_*`).
//!
//! Nothing here changes the machine: outputs go to a temp dir (a device
//! node is a private one made there, never /dev/null), tune runs without
//! --apply under a temp --root, and every lab row is refused before a lab
//! starts (each also carries a second bad flag, so a lab never starts even
//! if the flag under test were accepted).
//!
//! `CTDOCTOR_TEST_BIN=/path/to/ctdoctor` runs the same tests against another
//! build (how they were shown to fail before the fix).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common;

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any run may take before it counts as a hang (a FIFO is
/// waited on for 10 s).
const BOUND: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    timed_out: bool,
}

impl Run {
    fn panicked(&self) -> bool {
        self.code == Some(101) || self.stderr.contains("panicked")
    }
}

/// Run ctdoctor with `args` in `cwd`, stdin empty; SIGTERM after `term`
/// (for servers), SIGKILL at [`BOUND`].
fn run(args: &[String], cwd: &Path, term: Option<Duration>) -> Run {
    let mut child = common::command()
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ctdoctor");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut termed = false;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if !termed && term.is_some_and(|t| start.elapsed() >= t) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            termed = true;
        }
        if start.elapsed() >= BOUND {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: o.join().unwrap(),
        stderr: String::from_utf8_lossy(&e.join().unwrap()).into_owned(),
        timed_out,
    }
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A private null device in `d` (never /dev/null itself: an old build
/// would replace it for the whole machine). None where device nodes cannot
/// be made or opened (not root, a nodev mount).
fn private_null(d: &Path) -> Option<PathBuf> {
    let p = d.join("null");
    let c = std::ffi::CString::new(p.to_str()?).ok()?;
    // SAFETY: a valid C string; makedev(1, 3) is the null device.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    (r == 0 && std::fs::OpenOptions::new().write(true).open(&p).is_ok()).then_some(p)
}

/// A pid no process has (the highest possible one is above pid_max).
fn dead_pid() -> String {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304);
    (max + 1).to_string()
}

/// What a row must do.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Exit 3 with this in stderr (the reason, or the flag's name).
    Refused(&'static str),
    /// Serve until SIGTERM (sent after 1.5 s), then exit 0.
    Serves,
}

/// Shared inputs for the table: a directory, a 2 GB sparse file, a
/// regular file that is no namespace; FIFOs are made per row.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("adir")).unwrap();
        let f = std::fs::File::create(dir.path().join("sparse")).unwrap();
        f.set_len(2 << 30).unwrap();
        Env { dir }
    }

    /// `row`'s words with placeholders filled: {dir} {sparse} {fifo} (a
    /// fresh FIFO nobody opens) {tmp} (a fresh directory) {dead} (a pid).
    fn fill(&self, i: usize, row: &[&str]) -> (Vec<String>, PathBuf) {
        let tmp = self.dir.path().join(format!("row{i}"));
        std::fs::create_dir(&tmp).unwrap();
        let fifo = tmp.join("fifo");
        let p = |x: &Path| x.to_str().unwrap().to_string();
        let words = row
            .iter()
            .map(|w| {
                let mut w = w.to_string();
                if w.contains("{fifo}") {
                    if !fifo.exists() {
                        mkfifo(&fifo);
                    }
                    w = w.replace("{fifo}", &p(&fifo));
                }
                w.replace("{dir}", &p(&self.dir.path().join("adir")))
                    .replace("{sparse}", &p(&self.dir.path().join("sparse")))
                    .replace("{tmp}", &p(&tmp))
                    .replace("{dead}", &dead_pid())
            })
            .collect();
        (words, tmp)
    }
}

use Want::{Refused, Serves};

/// Every command's flags, bad. Rows that wait on a FIFO first: they take
/// 10 s each and run side by side.
#[rustfmt::skip]
const ROWS: &[(&[&str], Want)] = &[
    // FIFOs: nobody writes / reads / it is no namespace.
    (&["check", "--snapshot", "{fifo}"], Refused("nothing wrote")),
    (&["plan", "--snapshot", "{fifo}"], Refused("nothing wrote")),
    (&["summary", "--file", "{fifo}"], Refused("nothing wrote")),
    (&["plan", "--file", "{fifo}", "--what-if", "tcp_timeout_time_wait=15"], Refused("nothing wrote")),
    (&["snapshot", "-o", "{fifo}"], Refused("nothing read")),
    (&["check", "--netns", "{fifo}"], Refused("FIFO")),
    (&["summary", "--netns", "{fifo}"], Refused("FIFO")),
    (&["plan", "--netns", "{fifo}"], Refused("FIFO")),
    (&["snapshot", "--netns", "{fifo}", "-o", "{tmp}/x.ctd"], Refused("FIFO")),
    (&["notrack", "--lo", "--netns", "{fifo}"], Refused("FIFO")),
    (&["tune", "--root", "{tmp}", "--netns", "{fifo}", "--set", "tcp_timeout_time_wait=30"], Refused("FIFO")),
    (&["exporter", "--netns", "{fifo}", "--listen", "127.0.0.1:0"], Serves),
    (&["exporter", "--netns", "{dead}", "--listen", "127.0.0.1:0"], Serves),
    // check
    (&["check", "--snapshot", "/dev/zero"], Refused("character device")),
    (&["check", "--snapshot", "{sparse}"], Refused("256 MiB")),
    (&["check", "--snapshot", "{dir}"], Refused("directory")),
    (&["check", "--snapshot", "{tmp}/missing.ctd"], Refused("missing.ctd")),
    (&["check", "--netns", "{sparse}"], Refused("not a network namespace")),
    (&["check", "--netns", "{dir}"], Refused("not a network namespace")),
    (&["check", "--netns", "/dev/zero"], Refused("not a network namespace")),
    (&["check", "--netns", "{dead}"], Refused("no process")),
    (&["check", "--netns", "99999999999999999999"], Refused("out of range")),
    (&["check", "--netns", ""], Refused("empty")),
    (&["check", "--sample", "18446744073709551615"], Refused("out of range")),
    (&["check", "--sample=-1s"], Refused("out of range")),
    (&["check", "--sample", "1e300h"], Refused("out of range")),
    (&["check", "--sample", "NaN"], Refused("--sample")),
    (&["check", "--sample", "soon"], Refused("invalid duration")),
    (&["check", "--root", "/dev/zero"], Refused("not a directory")),
    (&["check", "--root", "{sparse}"], Refused("not a directory")),
    (&["check", "--root", "{tmp}/nowhere"], Refused("nowhere")),
    // summary
    (&["summary", "--file", "/dev/zero"], Refused("character device")),
    (&["summary", "--file", "{sparse}"], Refused("no conntrack entries")),
    (&["summary", "--file", "{dir}"], Refused("directory")),
    (&["summary", "--netns", "{dead}"], Refused("no process")),
    (&["summary", "--threads", "18446744073709551615"], Refused("--threads")),
    (&["summary", "--threads", "100000"], Refused("--threads")),
    (&["summary", "--threads", "0"], Refused("--threads")),
    (&["summary", "--threads=-1"], Refused("--threads")),
    (&["summary", "--top", "0"], Refused("--top")),
    (&["summary", "--top", "18446744073709551616"], Refused("--top")),
    (&["summary", "--idle-over", "1e300s"], Refused("out of range")),
    (&["summary", "--timeouts", "established=99999999999999999999"], Refused("out of range")),
    (&["summary", "--timeouts", "established=-1"], Refused("out of range")),
    (&["summary", "--port", "99999"], Refused("port")),
    (&["summary", "--port=-1"], Refused("port")),
    (&["summary", "--src", "10.0.0.0/99"], Refused("prefix")),
    // top (no terminal here: only what is refused before one is needed)
    (&["top", "--interval", "0"], Refused("--interval")),
    (&["top", "--interval", "18446744073709551615"], Refused("--interval")),
    (&["top", "--interval", "1e300"], Refused("--interval")),
    (&["top", "--interval=-2s"], Refused("--interval")),
    // plan
    (&["plan", "--peak", "18446744073709551615"], Refused("--peak")),
    (&["plan", "--peak", "0"], Refused("--peak")),
    (&["plan", "--peak=-1"], Refused("--peak")),
    (&["plan", "--peak", "lots"], Refused("--peak")),
    (&["plan", "--rate", "1e308"], Refused("--rate")),
    (&["plan", "--rate", "NaN"], Refused("--rate")),
    (&["plan", "--rate", "inf"], Refused("--rate")),
    (&["plan", "--rate", "0"], Refused("--rate")),
    (&["plan", "--rate=-5"], Refused("--rate")),
    (&["plan", "--headroom", "1e308"], Refused("--headroom")),
    (&["plan", "--headroom", "NaN"], Refused("--headroom")),
    (&["plan", "--headroom", "0.5"], Refused("--headroom")),
    (&["plan", "--mem-budget", "0"], Refused("--mem-budget")),
    (&["plan", "--mem-budget", "1e400"], Refused("--mem-budget")),
    (&["plan", "--what-if", "tcp_timeout_time_wait=18446744073709551615"], Refused("out of range")),
    (&["plan", "--what-if", "tcp_timeout_time_wait=-1"], Refused("whole number")),
    (&["plan", "--snapshot", "/dev/zero"], Refused("character device")),
    (&["plan", "--snapshot", "{sparse}"], Refused("256 MiB")),
    (&["plan", "--file", "/dev/zero", "--what-if", "tcp_timeout_time_wait=15"], Refused("character device")),
    (&["plan", "--root", "/dev/zero"], Refused("not a directory")),
    (&["plan", "--netns", "{dead}"], Refused("no process")),
    // tune: never --apply, always under a temp --root
    (&["tune", "--root", "{tmp}", "--set", "nf_conntrack_max=18446744073709551615"], Refused("out of range")),
    (&["tune", "--root", "{tmp}", "--set", "nf_conntrack_max=-1"], Refused("whole number")),
    (&["tune", "--root", "{tmp}", "--set", "hashsize=0"], Refused("out of range")),
    (&["tune", "--root", "{tmp}", "--set", "tcp_timeout_time_wait=1e9"], Refused("whole number")),
    (&["tune", "--root", "{tmp}", "--set", "no_such_knob=1"], Refused("no_such_knob")),
    (&["tune", "--root", "{tmp}", "--from-plan", "--peak", "18446744073709551615"], Refused("--peak")),
    (&["tune", "--root", "{tmp}", "--from-plan", "--rate", "1e308"], Refused("--rate")),
    (&["tune", "--root", "{tmp}", "--from-plan", "--rate", "nan"], Refused("--rate")),
    (&["tune", "--root", "{tmp}", "--evict", "time_wait", "--port", "70000"], Refused("--port")),
    (&["tune", "--root", "{tmp}", "--evict", "time_wait", "--idle-over", "99999999999"], Refused("--idle-over")),
    (&["tune", "--root", "{tmp}", "--rollback", "../../etc/passwd"], Refused("invalid change set")),
    (&["tune", "--root", "{tmp}", "--rollback", "99999999999999999999999"], Refused("no change set")),
    (&["tune", "--root", "{tmp}", "--netns", "{dead}", "--set", "tcp_timeout_time_wait=30"], Refused("no process")),
    // snapshot
    (&["snapshot", "-o", "{dir}"], Refused("directory")),
    (&["snapshot", "-o", "{tmp}/no/such/x.ctd"], Refused("no/such")),
    (&["snapshot", "-o", "{tmp}/x.ctd", "--sample", "0"], Refused("too short")),
    (&["snapshot", "-o", "{tmp}/x.ctd", "--sample", "18446744073709551615"], Refused("out of range")),
    (&["snapshot", "-o", "{tmp}/x.ctd", "--root", "/dev/zero"], Refused("not a directory")),
    (&["snapshot", "-o", "{tmp}/x.ctd", "--netns", "{dead}"], Refused("no process")),
    (&["snapshot", "-o", "{tmp}/x.ctd", "--netns", "{sparse}"], Refused("not a network namespace")),
    // exporter (bounded: refused at start)
    (&["exporter", "--listen", "nonsense"], Refused("--listen")),
    (&["exporter", "--listen", "127.0.0.1:99999"], Refused("--listen")),
    (&["exporter", "--interval", "0"], Refused("at least 1s")),
    (&["exporter", "--interval", "1e300"], Refused("out of range")),
    (&["exporter", "--max-connections", "0"], Refused("at least 1")),
    (&["exporter", "--max-connections", "18446744073709551616"], Refused("--max-connections")),
    (&["exporter", "--table-resync", "NaN"], Refused("--table-resync")),
    // notrack (never --apply)
    (&["notrack", "--port", "0"], Refused("invalid port")),
    (&["notrack", "--port", "70000"], Refused("invalid port")),
    (&["notrack", "--port", "5-3"], Refused("5 > 3")),
    (&["notrack", "--port", "18446744073709551615"], Refused("invalid port")),
    (&["notrack", "--upstream-port=-1"], Refused("invalid port")),
    (&["notrack", "--src", "1.2.3.4/33"], Refused("prefix")),
    (&["notrack", "--dst", "::/129"], Refused("prefix")),
    (&["notrack", "--lo", "--netns", "{dead}"], Refused("no process")),
    (&["notrack", "--lo", "--netns", "{sparse}"], Refused("not a network namespace")),
    // lab: refusals only. The second bad flag (--phase 2, or --rate 0 for
    // --phase rows) stops a build that accepted the first before any lab.
    (&["lab", "--rate", "nan", "--phase", "2"], Refused("--rate")),
    (&["lab", "--rate", "1e308", "--phase", "2"], Refused("--rate")),
    (&["lab", "--phase", "18446744073709551615", "--rate", "0"], Refused("--phase")),
    (&["lab", "--phase=-1", "--rate", "0"], Refused("--phase")),
    (&["lab", "--max", "18446744073709551615", "--phase", "2"], Refused("--max")),
    (&["lab", "--max", "1", "--phase", "2"], Refused("--max")),
    (&["lab", "--max=-1", "--phase", "2"], Refused("--max")),
    (&["lab", "--prefix", "../../etc", "--phase", "2"], Refused("--prefix")),
    (&["lab", "--prefix", "a/b", "--phase", "2"], Refused("--prefix")),
    (&["lab", "--prefix", "", "--phase", "2"], Refused("--prefix")),
    (&["lab", "--plot", "{dir}", "--phase", "2"], Refused("--plot")),
    (&["lab", "--plot", "{tmp}/no/such/x.svg", "--phase", "2"], Refused("--plot")),
    (&["lab", "--fix", "bogus", "--phase", "2"], Refused("--fix")),
    (&["lab", "--scenario", "bogus", "--phase", "2"], Refused("--scenario")),
];

/// What went wrong with one row, if anything.
fn judge(words: &[String], want: Want, r: &Run) -> Option<String> {
    let why = if r.timed_out {
        Some(format!("still running after {BOUND:?}"))
    } else if r.panicked() {
        Some("panicked".to_string())
    } else {
        match want {
            Refused(needle) if r.code != Some(3) => Some(format!(
                "exit {:?}, not 3 (wanted a refusal naming {needle:?})",
                r.code
            )),
            Refused(needle) if !r.stderr.contains(needle) => {
                Some(format!("stderr does not say {needle:?}"))
            }
            Serves if r.code != Some(0) => Some(format!("exit {:?} after SIGTERM, not 0", r.code)),
            _ => None,
        }
    };
    why.map(|w| {
        format!(
            "ctdoctor {}: {w}\n  stderr: {}",
            words.join(" "),
            r.stderr.trim()
        )
    })
}

#[test]
fn bad_flags_never_panic_hang_or_pass() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // As another user most rows fail earlier ("needs root"), which
        // would not test the flag.
        assert!(std::env::var("CI").is_err(), "CI runs this as root");
        eprintln!("skipping: run as root (FIFOs, namespaces, the live table)");
        return;
    }
    let env = Arc::new(Env::new());
    let next = Arc::new(Mutex::new(0usize));
    let failures = Arc::new(Mutex::new(Vec::new()));
    // Mostly waiting (FIFO rows wait 10 s each): more workers than cores.
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (env, next, failures) = (env.clone(), next.clone(), failures.clone());
            std::thread::spawn(move || loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some((row, want)) = ROWS.get(i) else {
                    return;
                };
                let (words, tmp) = env.fill(i, row);
                let term = matches!(want, Serves).then(|| Duration::from_millis(1500));
                let r = run(&words, &tmp, term);
                if let Some(f) = judge(&words, *want, &r) {
                    failures.lock().unwrap().push(f);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}

/// Read a FIFO as a reader that gives up: opened non-blocking (so an old
/// build that never opens it cannot block us), then everything until the
/// writer closes, or nothing if no writer came within `bound`.
fn read_fifo_bounded(p: PathBuf, bound: Duration) -> std::thread::JoinHandle<Vec<u8>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .unwrap();
    std::thread::spawn(move || {
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, bound.as_millis() as i32) } <= 0 {
            return Vec::new();
        }
        let mut f = f;
        let mut v = Vec::new();
        let mut buf = [0u8; 65536];
        let end = Instant::now() + bound;
        while Instant::now() < end {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => v.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => break,
            }
        }
        v
    })
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

fn names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Issue 19 (1): `snapshot -o` replaced devices, FIFOs and symlinks to
/// them with regular files, left `DIR.partial`, and wrote a file named `-`.
#[test]
fn issue19_snapshot_output_never_replaces_what_is_not_a_regular_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();

    // A device node (a private one) is written through and stays a device.
    if let Some(null) = private_null(p) {
        let r = run(&args(&["snapshot", "-o", &s(&null)]), p, None);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let ft = std::fs::symlink_metadata(&null).unwrap().file_type();
        assert!(ft.is_char_device(), "-o NULLDEV made it {ft:?}");
        std::fs::remove_file(&null).unwrap();
    } else {
        eprintln!("no device node here: the device case is skipped");
    }

    // A symlink to our stdout (what /dev/stdout is): the bytes reach stdout.
    let out = p.join("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &out).unwrap();
    let r = run(&args(&["snapshot", "-o", &s(&out)]), p, None);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(is_gzip(&r.stdout), "the snapshot went to stdout");
    assert!(std::fs::symlink_metadata(&out)
        .unwrap()
        .file_type()
        .is_symlink());
    std::fs::remove_file(&out).unwrap();

    // A FIFO with a reader: written through, still a FIFO.
    let fifo = p.join("fifo");
    mkfifo(&fifo);
    let reader = read_fifo_bounded(fifo.clone(), BOUND);
    let r = run(&args(&["snapshot", "-o", &s(&fifo)]), p, None);
    let got = reader.join().unwrap();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        is_gzip(&got),
        "the reader got the snapshot ({} bytes)",
        got.len()
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // A FIFO nobody reads: an error within the bound, still a FIFO.
    let r = run(&args(&["snapshot", "-o", &s(&fifo)]), p, None);
    assert!(!r.timed_out && !r.panicked(), "{r:?}");
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("nothing read"), "{}", r.stderr);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    std::fs::remove_file(&fifo).unwrap();

    // A directory: refused, nothing left beside it.
    let sub = p.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let r = run(&args(&["snapshot", "-o", &s(&sub)]), p, None);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("is a directory"), "{}", r.stderr);
    assert_eq!(names(p), ["sub"], "no litter");
    assert!(names(&sub).is_empty());

    // `-` is stdout, not a file named `-`.
    let r = run(&args(&["snapshot", "-o", "-"]), p, None);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(is_gzip(&r.stdout), "the snapshot went to stdout");
    assert_eq!(names(p), ["sub"], "no file named -");

    // A symlink to a regular file: the file is replaced, the link kept,
    // no temp file left; and the result reads back.
    let real = p.join("real.ctd");
    std::fs::write(&real, "old").unwrap();
    let link = p.join("link.ctd");
    std::os::unix::fs::symlink("real.ctd", &link).unwrap();
    let r = run(&args(&["snapshot", "-o", &s(&link)]), p, None);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(is_gzip(&std::fs::read(&real).unwrap()));
    assert_eq!(names(p), ["link.ctd", "real.ctd", "sub"]);
    let r = run(&args(&["check", "--snapshot", &s(&link)]), p, None);
    assert!(matches!(r.code, Some(0..=2)), "{}", r.stderr);
}

/// Issue 19 (10): a thread count panicked (capacity overflow) or aborted
/// the process (613 MB of stacks).
#[test]
fn issue19_thread_counts_are_bounded_at_parse_time() {
    let d = tempfile::tempdir().unwrap();
    let file = s(&common::fixture("samples/proc_nf_conntrack.txt"));
    for n in ["18446744073709551615", "100000", "0"] {
        let r = run(
            &args(&["summary", "--file", &file, "--threads", n]),
            d.path(),
            None,
        );
        assert!(!r.panicked() && !r.timed_out, "--threads {n}: {}", r.stderr);
        assert_eq!(r.code, Some(3), "--threads {n}: {}", r.stderr);
        assert!(r.stderr.contains("from 1 to 64"), "{}", r.stderr);
    }
    let r = run(
        &args(&["summary", "--file", &file, "--threads", "64", "--json"]),
        d.path(),
        None,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

/// Issue 19 (11): `check --snapshot /dev/zero` read until memory ran out,
/// a 2 GB sparse file was read whole, `--netns FIFO` blocked in open(2).
#[test]
fn issue19_inputs_are_bounded_and_never_block() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let r = run(&args(&["check", "--snapshot", "/dev/zero"]), p, None);
    assert!(!r.timed_out && !r.panicked(), "{r:?}");
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("character device"), "{}", r.stderr);

    let sparse = p.join("sparse.ctd");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let r = run(&args(&["check", "--snapshot", &s(&sparse)]), p, None);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("larger than 256 MiB"), "{}", r.stderr);

    // A FIFO fed more than the limit: refused after the limit, not read on.
    let fifo = p.join("fifo");
    mkfifo(&fifo);
    let f2 = fifo.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking open retried: never blocks if ctdoctor never reads.
        let end = Instant::now() + BOUND;
        let mut f = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&f2)
            {
                Ok(f) => break f,
                Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => return,
            }
        };
        let zeros = vec![0u8; 1 << 20];
        let mut sent = 0usize;
        while sent < 300 << 20 {
            match f.write(&zeros) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > end {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return, // the reader gave up: EPIPE
            }
        }
    });
    let r = run(&args(&["check", "--snapshot", &s(&fifo)]), p, None);
    writer.join().unwrap();
    assert!(!r.timed_out && !r.panicked(), "{r:?}");
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("256 MiB"), "{}", r.stderr);

    // --netns FIFO: refused at once (no writer is waited for). Nobody
    // writing to a FIFO input is a row of the table (it takes 10 s).
    let r = run(&args(&["check", "--netns", &s(&fifo)]), p, None);
    assert!(!r.timed_out && !r.panicked(), "{r:?}");
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("not a network namespace file (it is a FIFO)"),
        "{}",
        r.stderr
    );
}
