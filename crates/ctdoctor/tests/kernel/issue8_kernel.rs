//! Issue 8 ("check tells the truth, and its fixes work where they are
//! pasted"), pinned on the real kernel: each test reproduces an incident in
//! fresh namespaces, runs the real binary, and — where the report prints a
//! fix — runs the fix's commands exactly as printed and reads the result
//! back from the kernel (right namespace, right value, the host untouched).
//!
//! Global knobs (max, buckets) are changed only under the exclusive
//! kernel-test lock and restored by guards.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{check_json as check, json_finding};

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testns::Netns;

/// The commands of a printed fix (every line that is not a comment).
fn commands(fix: &str) -> Vec<&str> {
    fix.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Run one printed command with sh, as a person pasting it would.
fn paste(line: &str) {
    let out = Command::new("sh").args(["-c", line]).output().unwrap();
    assert!(
        out.status.success(),
        "pasted `{line}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn host_sysctl(rel: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{rel}"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Names of the files in the host's sysctl.d and modprobe.d (to prove a
/// per-netns fix writes none of them).
fn host_boot_files() -> Vec<String> {
    let mut v = Vec::new();
    for d in ["/etc/sysctl.d", "/etc/modprobe.d", "/etc/modules-load.d"] {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let meta = e.metadata().ok();
                v.push(format!(
                    "{} {:?}",
                    e.path().display(),
                    meta.and_then(|m| m.modified().ok())
                ));
            }
        }
    }
    v.sort();
    v
}

/// A `conntrack -R` batch of `n` TCP entries in `state` (ASSURED), `timeout` s.
fn batch(path: &Path, n: u64, state: &str, timeout: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        writeln!(
            f,
            "-I -p tcp -s 10.{a}.{b}.{c} -d 10.255.0.1 --sport 40000 --dport 80 \
             --state {state} -u SEEN_REPLY,ASSURED -t {timeout}"
        )
        .unwrap();
    }
    f.flush().unwrap();
}

fn fill(ns: &Netns, n: u64, state: &str, timeout: u64) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fill.txt");
    batch(&file, n, state, timeout);
    ns.load_batch(&file);
}

fn global_max() -> u64 {
    host_sysctl("net/netfilter/nf_conntrack_max")
        .parse()
        .unwrap()
}

/// Defect 1 (sockets.ports): under `--netns`, the fix printed bare host
/// commands. Now every command runs in the namespace; pasted, it changes
/// the namespace and nothing of the host.
#[test]
fn issue_8_1_ports_fix_runs_in_the_namespace() {
    if !testns::kernel_test("issue_8_1_ports_fix_runs_in_the_namespace") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("i8ports");
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40199");
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0");
    // 150 connections to one destination, each closed by the client first:
    // 150 TIME_WAIT sockets hold 150 of the 200 ports (75 %).
    netns::run_in(&ns.target(), || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        for _ in 0..150 {
            let c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            let (s, _) = l.accept().unwrap();
            drop(c);
            std::thread::sleep(Duration::from_millis(2));
            drop(s);
        }
        std::thread::sleep(Duration::from_millis(300));
    })
    .unwrap();
    let host_reuse = host_sysctl("net/ipv4/tcp_tw_reuse");
    let host_range = host_sysctl("net/ipv4/ip_local_port_range");
    let files = host_boot_files();

    let (_, r) = check(&["--netns", &ns.name]);
    let p = json_finding(&r, "sockets.ports");
    assert_eq!(p["severity"], "warning", "{p}");
    for c in p["changes"].as_array().unwrap() {
        assert_eq!(c["scope"], "netns", "{c}");
        assert_eq!(c["netns"], ns.name.as_str(), "{c}");
    }
    let fix = p["fix"].as_str().unwrap();
    let cmds = commands(fix);
    assert!(!cmds.is_empty(), "{fix}");
    for c in &cmds {
        assert!(
            c.starts_with(&format!("ip netns exec {} ", ns.name)),
            "a command outside the namespace: {c}\n{fix}"
        );
        paste(c);
    }
    assert_eq!(ns.proc_sys("net/ipv4/tcp_tw_reuse"), "1");
    assert_eq!(
        ns.proc_sys("net/ipv4/ip_local_port_range")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1024", "65535"]
    );
    assert_eq!(host_sysctl("net/ipv4/tcp_tw_reuse"), host_reuse);
    assert_eq!(host_sysctl("net/ipv4/ip_local_port_range"), host_range);
    assert_eq!(host_boot_files(), files, "no host boot file written");
}

/// Defect 3: a healthy namespace full of TIME_WAIT (normal on a web host)
/// is not a warning. Defect 1 (state_mix): under pressure it is, and its
/// fix, pasted, shortens TIME_WAIT in the namespace and not on the host.
#[test]
fn issue_8_3_time_wait_mix_is_judged_under_pressure_only() {
    if !testns::kernel_test("issue_8_3_time_wait_mix_is_judged_under_pressure_only") {
        return;
    }
    let _lock = testns::lock_shared();
    let _heavy = crate::heavy();
    let max = global_max();
    assert!((100_000..=2_000_000).contains(&max), "max {max}");

    // 1,200 TIME_WAIT entries, 0.5 % of max: a healthy web host.
    let calm = Netns::new("i8calm");
    fill(&calm, 1200, "TIME_WAIT", 110);
    let (code, r) = check(&["--netns", &calm.name]);
    let tw = json_finding(&r, "conntrack.state_mix.time_wait");
    assert_eq!(tw["severity"], "ok", "{tw}");
    assert_eq!(tw["evidence"]["time_wait"], 1200);
    assert_eq!(code, Some(0), "a healthy namespace exits 0: {}", r["worst"]);

    // Over half of max, all TIME_WAIT: the mix explains the pressure.
    let busy = Netns::new("i8busy");
    let n = max / 2 + max / 50;
    fill(&busy, n, "TIME_WAIT", 110);
    let (_, r) = check(&["--netns", &busy.name, "--deep"]);
    let tw = json_finding(&r, "conntrack.state_mix.time_wait");
    assert_eq!(tw["severity"], "warning", "{tw}");
    let host_tw = host_sysctl("net/netfilter/nf_conntrack_tcp_timeout_time_wait");
    let files = host_boot_files();
    // Relief (ctdoctor tune --netns busy --evict …) then the timeout,
    // every command about this namespace.
    let cmds = commands(tw["fix"].as_str().unwrap());
    assert!(
        cmds[0].contains(&format!(" tune --netns {} --evict time_wait", busy.name)),
        "{cmds:?}"
    );
    for c in &cmds[1..] {
        assert!(
            c.starts_with(&format!("ip netns exec {} ", busy.name)),
            "{c}"
        );
    }
    for c in cmds {
        paste(c);
    }
    assert!(busy.count() < n / 100, "relief freed the TIME_WAIT entries");
    assert_eq!(
        busy.proc_sys("net/netfilter/nf_conntrack_tcp_timeout_time_wait"),
        "30"
    );
    assert_eq!(
        host_sysctl("net/netfilter/nf_conntrack_tcp_timeout_time_wait"),
        host_tw
    );
    assert_eq!(host_boot_files(), files);
}

/// Defect 2: after a recovery (table flushed, no drop rise during the
/// sample) `table_full` said CRIT "being dropped now" for 10 minutes.
/// Now: a warning that it was full, and no critical finding.
#[test]
fn issue_8_2_recovered_table_is_a_warning() {
    if !testns::kernel_test("issue_8_2_recovered_table_is_a_warning") {
        return;
    }
    // Exclusive: no other test's log lines or traffic meanwhile.
    let _lock = testns::lock_exclusive();
    let max = global_max();
    assert!((1..=2_000_000).contains(&max), "max {max}");
    let ns = Netns::new("i8recov");
    fill(&ns, max, "ESTABLISHED", 86_400);
    assert_eq!(ns.count(), max);
    // Real SYNs into the full table: dropped, logged.
    netns::run_in(&ns.target(), || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        for _ in 0..3 {
            let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300));
        }
    })
    .unwrap();
    let (_, r) = check(&["--netns", &ns.name]);
    assert_eq!(
        json_finding(&r, "conntrack.table_full")["severity"],
        "critical",
        "full now"
    );
    // Recovery: the table flushed, nothing dropped during the sample.
    ns.exec("conntrack", &["-F"]);
    let (code, r) = check(&["--netns", &ns.name, "--sample", "2s"]);
    let tf = json_finding(&r, "conntrack.table_full");
    assert_eq!(tf["severity"], "warning", "{tf}");
    let title = tf["title"].as_str().unwrap();
    assert!(title.contains("was full earlier"), "{title}");
    assert!(title.contains("not dropping now"), "{title}");
    assert_eq!(tf["evidence"]["drop_rise"], 0);
    assert_ne!(r["worst"], "critical", "{r}");
    assert_ne!(code, Some(2));
}

/// Defect 6: a suggested max came without buckets or memory, and
/// hash_load then warned on the result. Now max comes with the buckets
/// that keep a full table's mean chain within 2 and the memory of a full
/// table; pasted (runtime lines, under guards), usage and hash_load are ok.
#[test]
fn issue_8_6_suggested_max_comes_with_buckets_and_memory() {
    if !testns::kernel_test("issue_8_6_suggested_max_comes_with_buckets_and_memory") {
        return;
    }
    let _lock = testns::lock_exclusive();
    let max = global_max();
    assert!((100_000..=1_000_000).contains(&max), "max {max}");
    let ns = Netns::new("i8size");
    let n = max * 4 / 5; // 80 %: usage warning
    fill(&ns, n, "ESTABLISHED", 86_400);
    let (_, r) = check(&["--netns", &ns.name]);
    let u = json_finding(&r, "conntrack.usage");
    assert_eq!(u["severity"], "warning", "{u}");
    let get = |key: &str| -> Option<u64> {
        u["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == key)
            .and_then(|c| c["value"].as_str()?.parse().ok())
    };
    let new_max = get("net.netfilter.nf_conntrack_max").expect("a max change");
    let new_buckets = get("nf_conntrack.hashsize").expect("a bucket change with it");
    assert!(new_max > max);
    assert!(
        2.0 * new_max as f64 / new_buckets as f64 <= 2.0,
        "mean chain at the new max: {new_max} / {new_buckets}"
    );
    assert!(
        u["fix"].as_str().unwrap().contains("a full table takes"),
        "{}",
        u["fix"]
    );
    // Paste the runtime lines; guards put max and buckets back.
    let _max = testns::GlobalKnob::set("net/netfilter/nf_conntrack_max", &max.to_string());
    let old_buckets = host_sysctl("net/netfilter/nf_conntrack_buckets");
    let _buckets = testns::GlobalKnob::set("net/netfilter/nf_conntrack_buckets", &old_buckets);
    for c in commands(u["fix"].as_str().unwrap()) {
        if c.starts_with("sysctl -w") || c.starts_with("echo ") && c.contains("> /sys/") {
            paste(c);
        }
    }
    assert_eq!(global_max(), new_max);
    assert_eq!(
        host_sysctl("net/netfilter/nf_conntrack_buckets"),
        new_buckets.to_string()
    );
    let (_, r) = check(&["--netns", &ns.name]);
    assert_eq!(json_finding(&r, "conntrack.usage")["severity"], "ok");
    let (_, host) = check(&[]);
    let h = json_finding(&host, "conntrack.hash_load");
    assert_eq!(h["severity"], "ok", "{h}");
}

/// Defect 13: SYN flooding lines were collected but judged by no rule.
/// A real SYN flood on a listener with a tiny backlog in a netns — SYNs
/// from spoofed sources routed out of a veth where their SYN-ACKs are
/// never answered (no ARP reply), so each stays in the SYN queue — makes
/// the kernel log "Possible SYN flooding on port ADDR:PORT. Sending
/// cookies."; `sockets.listen_overflow` now reports it with its fix.
#[test]
fn issue_8_13_syn_flood_lines_are_judged() {
    if !testns::kernel_test("issue_8_13_syn_flood_lines_are_judged") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::new("i8syn");
    for a in [
        &[
            "link", "add", "i8v0", "type", "veth", "peer", "name", "i8v1",
        ][..],
        &["link", "set", "i8v0", "up"],
        &["link", "set", "i8v1", "up"],
        &["addr", "add", "10.98.0.1/24", "dev", "i8v0"],
        &["route", "add", "10.99.0.0/16", "dev", "i8v0"],
    ] {
        ns.exec("ip", a);
    }
    ns.sysctl("net.ipv4.tcp_syncookies", "1");
    let script = r#"
import socket, struct, sys, random, time
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('10.98.0.1', 0)); l.listen(2); port = l.getsockname()[1]
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
dst = socket.inet_aton('10.98.0.1')
for i in range(64):
    src = socket.inet_aton('10.99.%d.%d' % (i // 250, i % 250 + 1))
    sport = 20000 + i
    tcp = struct.pack('!HHIIBBHHH', sport, port, random.getrandbits(32), 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = src + dst + struct.pack('!BBH', 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack('!H', csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), i, 0, 64, 6, 0, src, dst)
    raw.sendto(ip + tcp, ('10.98.0.1', 0))
time.sleep(0.5)
print(port)
sys.stdout.flush()
time.sleep(3)
"#;
    // The kernel's log lines are rate-limited machine-wide (net_ratelimit,
    // ~10 per 5 s): when another test just spent the burst, the line is
    // suppressed; a new listener after the refill logs it.
    let mut found = None;
    for _attempt in 0..3 {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("listener port");
        let needle = format!("Possible SYN flooding on port 10.98.0.1:{port}.");
        if testns::run_text("dmesg", &[]).contains(&needle) {
            found = Some((child, port));
            break;
        }
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(5500));
    }
    let (mut child, port) = found.expect("the kernel logged the flood");
    // The listener is still up: the line matches a listener here.
    let (_, r) = check(&["--netns", &ns.name]);
    let _ = child.wait();
    let lo = json_finding(&r, "sockets.listen_overflow");
    assert_eq!(lo["severity"], "warning", "{lo}");
    let log = lo["evidence"]["syn_flood_log"].to_string();
    assert!(log.contains(&format!("10.98.0.1:{port}")), "{log}");
    assert!(log.contains("sending cookies"), "{log}");
    let keys: Vec<&str> = lo["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["key"].as_str())
        .collect();
    // Cookies were sent (syncookies on, the default): a longer SYN backlog
    // changes nothing then, so it is not printed (issue 21).
    assert!(!keys.contains(&"net.ipv4.tcp_max_syn_backlog"), "{keys:?}");
    // The application's backlog: raised now on the running listener,
    // and where to keep it.
    let fix = lo["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!("--listen-backlog {port}=")) && fix.contains("keep it"),
        "the application's backlog: {lo}"
    );
}

/// Defect 13: "expectation table full" was collected but judged by no
/// rule. The FTP helper in a netns, 4,097+ control connections each given
/// a banner and then "227 Entering Passive Mode" (the helper parses only
/// lines that follow a newline it saw) — one expectation each — past the
/// global nf_conntrack_expect_max: the kernel logs the line, and
/// `conntrack.expect_table` reports it.
#[test]
fn issue_8_13_expectation_table_full_is_judged() {
    if !testns::kernel_test("issue_8_13_expectation_table_full_is_judged") {
        return;
    }
    let _lock = testns::lock_shared();
    let expect_max: u64 = host_sysctl("net/netfilter/nf_conntrack_expect_max")
        .parse()
        .unwrap();
    assert!(
        expect_max <= 20_000,
        "expect_max {expect_max}: too many connections"
    );
    let ns = Netns::new("i8ftp");
    ns.nft(
        "table inet ftph { ct helper ftp-std { type \"ftp\" protocol tcp; }; \
         chain out { type filter hook output priority 0; tcp dport 21 ct helper set \"ftp-std\"; }; }",
    );
    let before = testns::run_text("dmesg", &[])
        .matches("nf_conntrack: expectation table full")
        .count();
    let n = expect_max + 20;
    let script = format!(
        r#"
import socket, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('127.0.0.1', 21)); l.listen(4096)
keep = []
for i in range({n}):
    c = socket.create_connection(('127.0.0.1', 21), timeout=1)
    s, _ = l.accept()
    s.sendall(b'220 ready\r\n')
    c.recv(100)
    p = 10000 + i
    s.sendall(b'227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n' % (p >> 8, p & 255))
    keep.append((c, s))
    try:
        c.recv(100)
    except socket.timeout:
        break  # the helper drops a reply it cannot expect for: the table is full
print(len(keep))
"#
    );
    // Rate-limited like every such line (see the SYN flood test): retried
    // after the burst refills.
    let mut logged = false;
    for _attempt in 0..3 {
        let out = ns.exec_text("python3", &["-c", &script]);
        let made: u64 = out.trim().parse().expect("connections made");
        assert!(
            made > expect_max && made <= n,
            "{made} PASV replies for an expectation table of {expect_max}"
        );
        let after = testns::run_text("dmesg", &[])
            .matches("nf_conntrack: expectation table full")
            .count();
        if after > before {
            logged = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5500));
    }
    assert!(logged, "the kernel logged a full expectation table");
    let (_, r) = check(&["--netns", &ns.name]);
    let e = json_finding(&r, "conntrack.expect_table");
    assert_eq!(e["severity"], "warning", "{e}");
    assert!(e["evidence"]["expect_table_full_lines"].as_u64().unwrap() >= 1);
    let c = &e["changes"][0];
    assert_eq!(c["key"], "net.netfilter.nf_conntrack_expect_max");
    assert_eq!(c["scope"], "global");
    assert_eq!(c["value"], (expect_max * 2).to_string());
}
