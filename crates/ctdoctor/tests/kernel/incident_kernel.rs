//! The 504 incident at the size real hosts run (issue 21): a namespace's
//! table filled to the machine's own `nf_conntrack_max` (262,144 on a
//! default 8 GiB host, not the lab's 4,096) through ctnetlink batches
//! (`conntrack -R`), tracking on through an nft `ct state` rule, real TCP
//! connects on loopback as the symptom. Plain `ctdoctor check` (no
//! `--deep`) must name the measured cause; the fix block of that finding
//! is cut from the text report and pasted into bash exactly as printed, in
//! the order printed; afterwards new connections get through. Oracles: the
//! kernel's own count file, `conntrack -C`, and connect().

use crate::common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use testns::Netns;

const IDLE: &str = "conntrack.state_mix.idle_established";
const LIVE: &str = "conntrack.state_mix.live_load";
const TIME_WAIT: &str = "conntrack.state_mix.time_wait";

fn ctdoctor(args: &[&str]) -> Output {
    common::run(args)
}

/// The machine's own max: what a child namespace's table fills to.
pub(crate) fn machine_max() -> u64 {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A `conntrack -R` batch of `n` ASSURED TCP entries in `state`, each with
/// `timeout` seconds left (minus up to `spread`), distinct tuples.
fn batch(path: &Path, n: u64, state: &str, timeout: u64, spread: u64) {
    batch_to(path, n, state, timeout, spread, 443)
}

/// [`batch`] to destination port `dport` (distinct tuples per port).
fn batch_to(path: &Path, n: u64, state: &str, timeout: u64, spread: u64, dport: u16) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        let t = timeout - (i * 7919) % (spread + 1);
        writeln!(
            f,
            "-I -p tcp -s 10.{a}.{b}.{c} -d 172.16.0.10 --sport {} --dport {dport} \
             --state {state} -u SEEN_REPLY,ASSURED -t {t}",
            1024 + i % 60000
        )
        .unwrap();
    }
    f.flush().unwrap();
}

/// A namespace whose table holds `n` entries of `state` (checked with the
/// kernel's count and `conntrack -C`).
pub(crate) fn filled(tag: &str, n: u64, state: &str, timeout: u64, spread: u64) -> Netns {
    let ns = Netns::new(tag);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.txt");
    batch(&file, n, state, timeout, spread);
    ns.load_batch(&file);
    assert_eq!(ns.count(), n, "the fill reached {n}");
    let c: u64 = ns.exec_text("conntrack", &["-C"]).trim().parse().unwrap();
    assert_eq!(c, n, "conntrack -C");
    ns
}

/// Whether a new TCP connection on the namespace's loopback gets through
/// within 2 s (a full table drops its SYN).
fn connects(ns: &Netns) -> bool {
    netns::run_in(&ns.target(), || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
    })
    .unwrap()
}

/// The `fix:` block of finding `id` in a text report, as printed (its
/// indentation removed), one line per line.
fn fix_block(report: &str, id: &str) -> String {
    let mut lines = report.lines().skip_while(|l| {
        !(l.len() > 5 && l[5..].starts_with(id) && l[5..][id.len()..].starts_with(' '))
    });
    assert!(lines.next().is_some(), "no finding {id} in:\n{report}");
    let mut lines = lines.skip_while(|l| l.trim() != "fix:");
    assert!(
        lines.next().is_some(),
        "{id} has no fix block in:\n{report}"
    );
    let block: Vec<&str> = lines
        .take_while(|l| l.starts_with("       "))
        .map(|l| &l[7..])
        .collect();
    assert!(!block.is_empty(), "{id}: empty fix block in:\n{report}");
    block.join("\n") + "\n"
}

/// Paste `block` into bash, as an operator would (`bash -e`: a failing
/// line stops it).
fn paste(block: &str) -> Output {
    let mut child = Command::new("bash")
        .arg("-e")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(block.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Plain check (text and JSON) of `ns`: (text report, JSON report).
fn check(ns: &Netns) -> (String, serde_json::Value) {
    let o = ctdoctor(&["check", "--netns", &ns.name]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(2), "critical expected:\n{text}");
    let o = ctdoctor(&["check", "--netns", &ns.name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (text, v)
}

fn cause(v: &serde_json::Value) -> String {
    v["diagnosis"]["cause"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

fn ready() -> bool {
    testns::kernel_test("incident at the machine's max")
        && testns::need_tool("conntrack")
        && testns::need_tool("bash")
}

/// Idle ESTABLISHED entries (ages of hours under the 5-day timeout) fill
/// the table: plain check names them, and its block — relief, then the
/// timeout — pasted as printed, lets new connections in.
#[test]
fn idle_established_at_the_machine_max_is_fixed_by_pasting_the_printed_block() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_shared();
    let _heavy = crate::heavy();
    let max = machine_max();
    // Ages of 3 h to 3 h 10 min: idle past TCP keepalive's 7875 s.
    let ns = filled("idle504", max, "ESTABLISHED", 432_000 - 3 * 3600, 600);
    assert!(!connects(&ns), "a full table must drop the SYN");

    let (text, v) = check(&ns);
    assert_eq!(cause(&v), IDLE, "{}", v["diagnosis"]);
    let head = text.lines().next().unwrap();
    assert!(head.contains("are ESTABLISHED idle > 2.2 h"), "{head}");
    let block = fix_block(&text, IDLE);
    // The order that works: relief (evict) before the timeout.
    let evict = block
        .find("--evict established --idle-over 7875")
        .expect(&block);
    let timeout = block
        .find("nf_conntrack_tcp_timeout_established=7875")
        .expect(&block);
    assert!(evict < timeout, "relief first:\n{block}");
    assert!(
        block.contains(&format!(
            "delete {} ESTABLISHED",
            ctdoctor::util::thousands(max)
        )),
        "what the relief frees, counted from the dump:\n{block}"
    );
    // The JSON fix is the text printed.
    let f = common::json_finding(&v, IDLE);
    assert_eq!(f["fix"].as_str().unwrap().trim_end(), block.trim_end());

    let o = paste(&block);
    assert!(
        o.status.success(),
        "the pasted block failed:\n{block}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(ns.count() < max / 100, "count after: {}", ns.count());
    assert!(connects(&ns), "new connections get through after the fix");
    assert_eq!(
        ns.proc_sys("net/netfilter/nf_conntrack_tcp_timeout_established")
            .trim(),
        "7875"
    );
}

/// Entries refreshed seconds ago fill the table: the live load. Check says
/// the table is too small, and prints no timeout change.
#[test]
fn live_entries_at_the_machine_max_mean_a_table_too_small() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_shared();
    let _heavy = crate::heavy();
    let max = machine_max();
    let ns = filled("live504", max, "ESTABLISHED", 432_000 - 5, 20);
    let (text, v) = check(&ns);
    assert_eq!(cause(&v), LIVE, "{}", v["diagnosis"]);
    let head = text.lines().next().unwrap();
    assert!(head.contains("too small for the live load"), "{head}");
    let f = common::json_finding(&v, LIVE);
    let fix = f["fix"].as_str().unwrap();
    assert!(fix.contains("nf_conntrack_max="), "{fix}");
    assert!(
        !fix.contains("timeout"),
        "no timeout change for live entries:\n{fix}"
    );
    assert!(
        !fix.contains("--evict"),
        "live flows are not evicted:\n{fix}"
    );
}

/// TIME_WAIT fills the table: relief (no --force for a closing state),
/// then the timeout; pasted, connections get through.
#[test]
fn time_wait_at_the_machine_max_is_fixed_by_pasting_the_printed_block() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_shared();
    let _heavy = crate::heavy();
    let max = machine_max();
    let ns = filled("tw504", max, "TIME_WAIT", 115, 5);
    assert!(!connects(&ns), "a full table must drop the SYN");
    let (text, v) = check(&ns);
    assert_eq!(cause(&v), TIME_WAIT, "{}", v["diagnosis"]);
    let block = fix_block(&text, TIME_WAIT);
    assert!(block.contains("--evict time_wait --apply"), "{block}");
    assert!(!block.contains("--force"), "{block}");
    let o = paste(&block);
    assert!(
        o.status.success(),
        "{block}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(connects(&ns), "new connections get through after the fix");
}

/// `--idle-over` after a journaled timeout change matches what it matched
/// before: entries keep the timer they were last refreshed with, and the
/// journal says what it was. Without the journal their ages are unknown,
/// and the report counts them.
#[test]
fn idle_over_after_a_timeout_change_matches_what_it_matched_before() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_shared();
    let n = 20_000;
    let ns = filled("idleage", n, "ESTABLISHED", 432_000 - 3 * 3600, 600);
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let matched = |root: Option<&str>| -> serde_json::Value {
        let mut a = vec![
            "tune",
            "--netns",
            &ns.name,
            "--evict",
            "established",
            "--idle-over",
            "7875",
            "--force",
            "--json",
        ];
        if let Some(r) = root {
            a.extend(["--root", r]);
        }
        let o = ctdoctor(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let before = matched(Some(r));
    assert_eq!(before["matched"]["ESTABLISHED"], n);
    let o = ctdoctor(&[
        "tune",
        "--root",
        r,
        "--netns",
        &ns.name,
        "--set",
        "nf_conntrack_tcp_timeout_established=7875",
        "--apply",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = matched(Some(r));
    assert_eq!(after["matched"], before["matched"], "{after}");
    assert_eq!(after["age_unknown"], 0);
    // Without the journal that recorded the change: unknown, and said.
    let blind = matched(None);
    assert_eq!(blind["matched"].as_object().map(|m| m.len()), Some(0));
    assert_eq!(blind["age_unknown"], n);
    assert_eq!(ns.count(), n, "dry runs delete nothing");
}

/// `python3 -c SCRIPT ARGS` in `ns` (exec'd by ip netns exec, so its pid
/// is the script's), killed and reaped on drop.
struct InNetns(std::process::Child);

impl InNetns {
    fn python(ns: &Netns, script: &str, args: &[&str]) -> InNetns {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", script])
            .args(args)
            .spawn()
            .unwrap();
        InNetns(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for InNetns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process that opens sockets every 20 ms up to [`HOG_WANTS`], with a
/// soft RLIMIT_NOFILE of 256 (its hard limit inherited), writing "held
/// emfile" to the file named by argv[1] after each try. Bounded: it exits
/// after 120 s.
const HOG: &str = r#"
import errno, os, resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
out = open(sys.argv[1], "w")
held, emfile, end = [], 0, time.time() + 120
while time.time() < end:
    if len(held) < 300:
        try:
            held.append(socket.socket())
        except OSError as e:
            if e.errno != errno.EMFILE:
                raise
            emfile += 1
    out.seek(0)
    out.write("%d %d\n" % (len(held), emfile))
    out.truncate()
    out.flush()
    time.sleep(0.02)
"#;
const HOG_WANTS: u64 = 300;

/// (sockets held, EMFILE failures) the hog last wrote.
fn hog_state(file: &Path) -> (u64, u64) {
    let s = std::fs::read_to_string(file).unwrap_or_default();
    let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Poll `file` until `f` holds of the hog's state, for at most `secs`.
fn hog_until(file: &Path, secs: u64, f: impl Fn((u64, u64)) -> bool) -> (u64, u64) {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = hog_state(file);
        if f(s) || std::time::Instant::now() > end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// fds.process incident: a process in the namespace at its open-files
/// limit fails with EMFILE. The printed fix, pasted as printed, lets it
/// open more at once (prlimit: up to the hard limit where root lacks
/// CAP_SYS_RESOURCE, as on these machines; past it where root has it).
#[test]
fn fds_process_emfile_stops_after_pasting_the_printed_fix() {
    if !ready() || !testns::need_tool("python3") || !testns::need_tool("prlimit") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("fdhog");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let hog = InNetns::python(&ns, HOG, &[state.to_str().unwrap()]);
    let pid = hog.pid();
    // At the limit: EMFILE rising (the oracle is the hog's own count).
    let (held, e1) = hog_until(&state, 20, |(_, e)| e > 0);
    assert!(
        held < 256 && e1 > 0,
        "the hog never hit EMFILE: {held} {e1}"
    );
    let (_, e2) = hog_until(&state, 5, |(_, e)| e > e1 + 5);
    assert!(e2 > e1, "EMFILE rising before the fix");

    let (text, v) = check(&ns);
    let f = common::json_finding(&v, "fds.process");
    assert_eq!(f["evidence"]["pid"], pid, "{f}");
    let block = fix_block(&text, "fds.process");
    assert!(block.contains(&format!("prlimit --pid {pid} ")), "{block}");
    assert_eq!(f["fix"].as_str().unwrap().trim_end(), block.trim_end());
    let unit = f["evidence"]["unit"].as_str().map(str::to_string);
    let o = paste(&block);
    assert!(
        o.status.success(),
        "the pasted block failed:\n{block}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The drop-in (only where the test runs under a systemd unit) is ours
    // to remove: this test must leave the machine as it found it.
    if let Some(unit) = unit {
        let d = format!("/etc/systemd/system/{unit}.d");
        let _ = std::fs::remove_file(format!("{d}/90-ctdoctor-nofile.conf"));
        let _ = std::fs::remove_dir(&d);
        let _ = Command::new("systemctl").arg("daemon-reload").status();
    }
    // After: the hog opens past its old limit, and EMFILE stops.
    let (held, e3) = hog_until(&state, 5, |(h, _)| h >= HOG_WANTS);
    assert_eq!(held, HOG_WANTS, "the hog still cannot open files:\n{block}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hog_state(&state).1, e3, "EMFILE still rising");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let (soft, _) = ctdoctor::host::fds::parse_limits_nofile(&limits).unwrap();
    assert!(soft >= HOG_WANTS, "{limits}");
    drop(hog);
}

/// A listener on 127.0.0.1:PORT with backlog 8 that never accepts; exits
/// after 120 s.
const SLOW_SERVER: &str = r#"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
time.sleep(120)
"#;

/// `n` non-blocking connects to 127.0.0.1:PORT, held 1.5 s; prints how many
/// completed.
const BURST: &str = r#"
import select, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    socks.append(c)
time.sleep(1.5)
_, w, _ = select.select([], socks, [], 0)
print(sum(1 for c in w if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0))
"#;

/// TcpExt ListenOverflows of the namespace (its own /proc/net/netstat).
fn listen_overflows(ns: &Netns) -> u64 {
    let t = ns.exec_text("cat", &["/proc/net/netstat"]);
    let mut l = t.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (l.next().unwrap(), l.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// sockets.listen_overflow incident: a listener with backlog 8 that
/// accepts too slowly overflows. Check names its process and backlog; the
/// printed fix, pasted as printed, raises the backlog of the running
/// process (no restart) and the overflow counter stops growing under the
/// same burst.
#[test]
fn listen_overflow_stops_after_pasting_the_printed_fix() {
    if !ready() || !testns::need_tool("python3") || !testns::need_tool("ss") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("lqslow");
    let port = "18080";
    let server = InNetns::python(&ns, SLOW_SERVER, &[port]);
    let pid = server.pid();
    let burst = || -> u64 {
        let o = ns.exec("python3", &["-c", BURST, port, "30"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    std::thread::sleep(Duration::from_millis(300));
    let o0 = listen_overflows(&ns);
    let first = burst();
    let o1 = listen_overflows(&ns);
    assert!(o1 > o0, "no overflow before the fix: {o0} -> {o1}");
    assert!(first < 30, "{first} of 30 connected with backlog 8");

    let o = ctdoctor(&["check", "--netns", &ns.name]);
    let text = String::from_utf8(o.stdout).unwrap();
    let o = ctdoctor(&["check", "--netns", &ns.name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = common::json_finding(&v, "sockets.listen_overflow");
    let full = f["evidence"]["full_listeners"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        full.starts_with(&format!(
            "127.0.0.1:{port} (python3[{pid}]) queue 9, backlog 8"
        )),
        "{f}"
    );
    let block = fix_block(&text, "sockets.listen_overflow");
    assert!(
        block.contains(&format!("--listen-backlog {port}=")),
        "{block}"
    );
    assert!(!block.contains("tcp_max_syn_backlog"), "{block}");
    let o = paste(&block);
    assert!(
        o.status.success(),
        "the pasted block failed:\n{block}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The kernel's own view: ss reads the backlog back (Send-Q).
    let ss = ns.exec_text("ss", &["-ltnH", &format!("sport = {port}")]);
    let backlog: u32 = ss.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(backlog >= 1024, "backlog after the fix: {ss}");
    let o2 = listen_overflows(&ns);
    let second = burst();
    assert_eq!(
        listen_overflows(&ns),
        o2,
        "overflows still growing:\n{block}"
    );
    assert_eq!(second, 30, "every connect of the same burst got in");
}

/// `tune --from-check --apply` runs the relief before the timeout, as the
/// printed block does, and journals it: the change set's history says what
/// was deleted (not restorable), next to the timeout it changed.
#[test]
fn from_check_journals_the_relief_with_the_timeout() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_shared();
    let _heavy = crate::heavy();
    // Full: the state-mix rules judge a table with room as no problem.
    let n = machine_max();
    let ns = filled("relieflog", n, "ESTABLISHED", 432_000 - 3 * 3600, 600);
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let o = ctdoctor(&[
        "tune",
        "--root",
        r,
        "--netns",
        &ns.name,
        "--from-check",
        "--apply",
        "--json",
    ]);
    assert!(
        o.status.success(),
        "{:?}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["relief"][0]["freed"], n, "{}", v["relief"]);
    // The host's part (max, buckets) is not refused here: left, with its command.
    let notes = v["plan"]["notes"].to_string();
    assert!(notes.contains("left for the host"), "{notes}");
    assert_eq!(ns.count(), 0, "the idle entries are gone");
    let o = ctdoctor(&["tune", "--root", r, "--history"]);
    let h = String::from_utf8_lossy(&o.stdout);
    let relief = h
        .lines()
        .find(|l| l.contains("relief (not restorable)"))
        .unwrap_or_else(|| panic!("no relief in the journal:\n{h}"));
    assert!(
        relief.contains(&format!(
            "netns {}: deleted {} ESTABLISHED entries idle over 7875 s",
            ns.name,
            ctdoctor::util::thousands(n)
        )),
        "{relief}"
    );
    assert!(
        h.contains("nf_conntrack_tcp_timeout_established: 432000 -> 7875"),
        "{h}"
    );
}

/// A recent "table full" line is pressure: a table of 150,000 entries
/// (over the plain dump limit, 57 % full) that was full minutes ago is
/// dumped by plain check, so its cause is measured, not skipped.
#[test]
fn a_recent_table_full_line_makes_check_dump_a_large_table() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_shared();
    let _heavy = crate::heavy();
    let max = machine_max();
    let live = 150_000;
    let ns = filled("recentfull", live, "ESTABLISHED", 432_000 - 3 * 3600, 600);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tw.txt");
    batch_to(&file, max - live, "TIME_WAIT", 115, 5, 80);
    ns.load_batch(&file);
    assert_eq!(ns.count(), max);
    assert!(
        !connects(&ns),
        "a full table must drop the SYN (and log it)"
    );
    let o = ctdoctor(&[
        "tune",
        "--netns",
        &ns.name,
        "--evict",
        "time_wait",
        "--apply",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(ns.count(), live);
    let o = ctdoctor(&["check", "--netns", &ns.name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = common::json_finding(&v, IDLE);
    assert!(
        f["evidence"].get("unavailable").is_none(),
        "the table was not dumped: {f}"
    );
    let judged = f["evidence"]["entries"].as_u64().unwrap();
    assert!(judged > 0 && judged <= live, "{f}");
}

/// A batch of entries created by one source each: `(source, n, proto,
/// dport)`, distinct tuples from source port `first_sport` on.
fn creators_batch(path: &Path, first_sport: u32, who: &[(&str, u32, &str, u16)]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (src, n, proto, dport) in who {
        for i in 0..*n {
            let state = if *proto == "tcp" {
                "--state SYN_SENT"
            } else {
                ""
            };
            writeln!(
                f,
                "-I -p {proto} -s {src} -d 172.16.0.10 --sport {} --dport {dport} {state} -t 120",
                first_sport + i
            )
            .unwrap();
        }
    }
    f.flush().unwrap();
}

/// Who fills the table (issue 22): a table 90 % full, and during `check
/// --sample` one source creates most of the new entries. The report names
/// it in the headline and lists the creators, with exactly the entries
/// the batch made (the oracle: the batch itself, and `conntrack -C`).
#[test]
fn check_sample_names_the_source_that_fills_the_table() {
    if !ready() {
        return;
    }
    let _lock = testns::lock_shared();
    let _heavy = crate::heavy();
    let max = machine_max();
    let ns = filled("creators", max * 9 / 10, "ESTABLISHED", 432_000, 600);
    let dir = tempfile::tempdir().unwrap();
    let who = [
        ("10.99.0.7", 2000, "tcp", 8443),
        ("10.99.0.8", 200, "tcp", 443),
        ("10.99.0.9", 100, "udp", 53),
    ];
    let during_sample = |json: bool, first_sport: u32| -> Output {
        let file = dir.path().join(format!("c{first_sport}.txt"));
        creators_batch(&file, first_sport, &who);
        let mut args = vec!["check", "--netns", &ns.name, "--sample", "4s"];
        if json {
            args.push("--json");
        }
        let child = Command::new(common::bin())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        let before = ns.count();
        ns.load_batch(&file);
        assert_eq!(ns.count(), before + 2300, "the batch made its entries");
        child.wait_with_output().unwrap()
    };
    let o = during_sample(true, 20_000);
    let v = common::json(&o);
    let c = &v["creators"];
    assert_eq!(c["new_events"], 2300, "{c}");
    assert_eq!(c["lost"], 0, "{c}");
    assert_eq!(c["sources"][0]["key"], "10.99.0.7", "{c}");
    let secs = c["window_ms"].as_f64().unwrap() / 1000.0;
    assert!((3.5..6.0).contains(&secs), "{c}");
    let made = c["sources"][0]["per_sec"].as_f64().unwrap() * secs;
    assert!((made - 2000.0).abs() < 1.0, "{made} of 2000: {c}");
    assert_eq!(c["dports"][0]["key"], serde_json::json!([6, 8443]), "{c}");
    assert_eq!(c["dports"][2]["key"], serde_json::json!([17, 53]), "{c}");
    let headline = v["diagnosis"]["headline"].as_str().unwrap();
    assert!(
        headline.ends_with("; 10.99.0.7 made 87 % of the new entries during the sample"),
        "{headline}"
    );

    let o = during_sample(false, 30_000);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("10.99.0.7 made 87 % of the new entries"),
        "{text}"
    );
    let sources = text
        .lines()
        .skip_while(|l| !l.starts_with("who created entries during the sample"))
        .nth(1)
        .unwrap_or_else(|| panic!("no creators block:\n{text}"));
    assert!(
        sources.trim_start().starts_with("sources    10.99.0.7 ")
            && sources.contains("(87 %), 10.99.0.8 ")
            && sources.contains("(9 %), 10.99.0.9 "),
        "{sources}"
    );
}
