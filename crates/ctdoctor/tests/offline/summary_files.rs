//! `ctdoctor summary --file` on real dumps (tests/fixtures/samples: 1,000
//! entries in three formats; tests/fixtures/ipv6: /proc and `conntrack -L`
//! forms of one IPv6 table). Oracles: the counts checked by hand in the
//! fixtures' READMEs, and a deliberately naive split_whitespace counter
//! written here (it shares no code with the parser).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::*;

use serde_json::Value;
use std::collections::HashMap;

fn top(v: &Value) -> Vec<(String, u64)> {
    v["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Independent oracle: per line, the protocol name is the token before a
/// number that is followed by the timeout (skipping "ipvN N" when present);
/// the state is the first token without '=' after the timeout, tcp only;
/// the source is the first `src=`.
struct Naive {
    proto: HashMap<String, u64>,
    state: HashMap<String, u64>,
    src: HashMap<String, u64>,
    assured: u64,
    unreplied: u64,
}

fn naive(text: &str) -> Naive {
    let mut n = Naive {
        proto: HashMap::new(),
        state: HashMap::new(),
        src: HashMap::new(),
        assured: 0,
        unreplied: 0,
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let rest = if f[0].starts_with("ipv") {
            &f[2..]
        } else {
            &f[..]
        };
        *n.proto.entry(rest[0].to_string()).or_default() += 1;
        if rest[0] == "tcp" {
            *n.state.entry(rest[3].to_string()).or_default() += 1;
        }
        let src = f.iter().find_map(|t| t.strip_prefix("src=")).unwrap();
        // Compare addresses in one canonical form.
        let src: std::net::IpAddr = src.parse().unwrap();
        *n.src.entry(src.to_string()).or_default() += 1;
        n.assured += f.contains(&"[ASSURED]") as u64;
        n.unreplied += f.contains(&"[UNREPLIED]") as u64;
    }
    n
}

const SAMPLES: &[(&str, &str)] = &[
    ("samples/proc_nf_conntrack.txt", "proc"),
    ("samples/conntrack_L_extended.txt", "conntrack-extended"),
    ("samples/conntrack_L_plain.txt", "conntrack"),
];

#[test]
fn samples_match_hand_checked_counts() {
    for (file, format) in SAMPLES {
        let v = summary_json(&["--file", fixture(file).to_str().unwrap()]);
        assert_eq!(v["format"], *format, "{file}");
        assert_eq!(v["entries"], 1000, "{file}");
        assert_eq!(v["malformed"]["count"], 0, "{file}");
        let p = counts(&v["by_proto"]);
        assert_eq!((p["tcp"], p["udp"], p["icmp"]), (922, 72, 6), "{file}");
        let s = counts(&v["by_state"]);
        for (st, n) in [
            ("TIME_WAIT", 670),
            ("ESTABLISHED", 186),
            ("SYN_SENT", 31),
            ("FIN_WAIT", 8),
            ("CLOSE_WAIT", 7),
            ("SYN_RECV", 7),
            ("CLOSE", 7),
            ("LAST_ACK", 6),
        ] {
            assert_eq!(s[st], n, "{file} {st}");
        }
        assert_eq!(s.len(), 8);
        assert_eq!(v["flags"]["assured"]["count"], 927, "{file}");
        assert_eq!(v["flags"]["unreplied"]["count"], 73, "{file}");
        assert_eq!(v["early_drop_evictable"]["count"], 73, "{file}");
        let t = top(&v["top_src"]);
        assert_eq!(t[0], ("10.57.0.98".to_string(), 18), "{file}");
        assert_eq!(t.len(), 10);
    }
}

#[test]
fn samples_match_naive_oracle() {
    for (file, _) in SAMPLES {
        let text = std::fs::read_to_string(fixture(file)).unwrap();
        let n = naive(&text);
        let v = summary_json(&["--file", fixture(file).to_str().unwrap(), "--top", "100000"]);
        assert_eq!(counts(&v["by_proto"]), n.proto, "{file}");
        assert_eq!(counts(&v["by_state"]), n.state, "{file}");
        let src: HashMap<String, u64> = top(&v["top_src"]).into_iter().collect();
        assert_eq!(src, n.src, "{file}");
        assert_eq!(v["top_src"]["distinct"], n.src.len() as u64);
        assert_eq!(v["flags"]["assured"]["count"], n.assured);
        assert_eq!(v["flags"]["unreplied"]["count"], n.unreplied);
    }
}

#[test]
fn ipv6_proc_and_conntrack_forms_agree() {
    let a = summary_json(&[
        "--file",
        fixture("ipv6/proc_nf_conntrack.txt").to_str().unwrap(),
    ]);
    let b = summary_json(&["--file", fixture("ipv6/conntrack_L.txt").to_str().unwrap()]);
    for v in [&a, &b] {
        assert_eq!(v["entries"], 7);
        assert_eq!(v["malformed"]["count"], 0);
        let l3 = counts(&v["by_l3"]);
        assert_eq!((l3["ipv6"], l3["ipv4"]), (6, 1));
        let p = counts(&v["by_proto"]);
        assert_eq!((p["tcp"], p["udp"], p["icmpv6"]), (4, 2, 1));
        let s = counts(&v["by_state"]);
        assert_eq!((s["ESTABLISHED"], s["SYN_SENT"], s["TIME_WAIT"]), (2, 1, 1));
        assert_eq!(v["flags"]["assured"]["count"], 4);
        assert_eq!(v["flags"]["unreplied"]["count"], 3);
        let t = top(&v["top_src"]);
        assert_eq!(t[0], ("2001:db8::1".to_string(), 4));
        assert!(t.contains(&("fe80::1:2".to_string(), 1)));
        assert!(t.contains(&("2001:db8:0:1::2".to_string(), 1)));
        let z = top(&v["by_zone"]);
        assert!(z.contains(&("3".to_string(), 1)), "{z:?}");
        let m = top(&v["by_mark"]);
        assert!(m.contains(&("7".to_string(), 1)), "{m:?}");
    }
    // Everything but the source description and format is identical.
    let strip = |v: &Value| {
        let mut v = v.clone();
        let o = v.as_object_mut().unwrap();
        o.remove("source");
        o.remove("format");
        // Seconds left differ by nothing here (same dump instant ±1 s):
        // compare ages loosely by removing them.
        o.remove("idle_age");
        o.remove("idle_established");
        v
    };
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn stdin_gzip_and_filters() {
    use std::io::Write;
    let raw = std::fs::read(fixture("samples/proc_nf_conntrack.txt")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let gz = gz.finish().unwrap();
    let mut child = command()
        .args([
            "summary",
            "--file",
            "-",
            "--json",
            "--proto",
            "tcp",
            "--state",
            "TIME_WAIT,close",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let v = ok_json(&child.wait_with_output().unwrap());
    assert_eq!(v["source"], "stdin");
    assert_eq!(v["entries_seen"], 1000);
    assert_eq!(v["entries"], 670 + 7);
    assert_eq!(v["filtered"], true);
    // --src / --port against the naive oracle's per-source counts.
    let v = summary_json(&[
        "--file",
        fixture("samples/conntrack_L_plain.txt").to_str().unwrap(),
        "--src",
        "10.57.0.98/32",
    ]);
    assert_eq!(v["entries"], 18);
    let text = String::from_utf8(raw).unwrap();
    let port_443 = text
        .lines()
        .filter(|l| l.contains(" sport=443 ") || l.contains(" dport=443 "))
        .count();
    let v = summary_json(&[
        "--file",
        fixture("samples/proc_nf_conntrack.txt").to_str().unwrap(),
        "--port",
        "443",
    ]);
    assert_eq!(v["entries"], port_443 as u64);
}

#[test]
fn malformed_lines_are_reported_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.txt");
    let good = std::fs::read_to_string(fixture("samples/conntrack_L_plain.txt")).unwrap();
    let mut lines: Vec<&str> = good.lines().take(20).collect();
    lines.insert(
        4,
        "tcp 6 12 TIME_WAIT src=10.0.0.1 dst=oops sport=1 dport=2",
    );
    std::fs::write(&p, lines.join("\n")).unwrap();
    let v = summary_json(&["--file", p.to_str().unwrap()]);
    assert_eq!(v["entries"], 20);
    assert_eq!(v["malformed"]["count"], 1);
    assert_eq!(v["malformed"]["first"][0]["line"], 5);
    assert_eq!(v["malformed"]["first"][0]["reason"], "bad dst address");
    // A file with nothing usable is an error with a clear message.
    std::fs::write(&p, "hello\nworld\n").unwrap();
    let out = command()
        .args(["summary", "--file", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no conntrack entries"), "{err}");
    // Missing file: names the path.
    let out = command()
        .args(["summary", "--file", "/nonexistent/x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x"));
}

#[test]
fn text_output_is_aligned_tables() {
    let out = command()
        .args(["summary", "--file"])
        .arg(fixture("samples/proc_nf_conntrack.txt"))
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.starts_with("conntrack table: 1,000 entries"), "{s}");
    assert!(s.contains("  TIME_WAIT        670   67.0%"), "{s}");
    assert!(s.contains("Top sources (779 distinct)"), "{s}");
}

/// Run `ctdoctor summary ARGS` with `stdin` fed from `feed` (on a thread),
/// killed after `limit`: (exit code, stdout, stderr).
fn summary_bounded(
    args: &[&str],
    feed: Option<Box<dyn FnOnce(std::process::ChildStdin) + Send>>,
    limit: std::time::Duration,
) -> (Option<i32>, String, String) {
    use std::process::Stdio;
    let mut child = command()
        .arg("summary")
        .args(args)
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let feeder = feed.map(|f| {
        let stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || f(stdin))
    });
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ctdoctor summary {args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    if let Some(f) = feeder {
        let _ = f.join();
    }
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_line_longer_than_a_chunk_is_one_malformed_line() {
    // A 50 MB line was counted as 50 malformed lines (one per 1 MiB
    // chunk), and a long line whose tail is an entry gave that entry.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("long.txt");
    let good = "tcp 6 10 CLOSE src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2 src=1.2.3.5 dst=1.2.3.4 sport=2 dport=1 mark=0 use=1";
    let mut text = String::with_capacity(54 << 20);
    text.push_str(good);
    text.push('\n');
    text.push_str(&"x".repeat(50_000_000));
    text.push('\n');
    text.push_str(&" ".repeat(3 << 20));
    text.push_str(good);
    text.push('\n');
    text.push_str(good);
    text.push('\n');
    std::fs::write(&p, text).unwrap();
    let v = summary_json(&["--file", p.to_str().unwrap()]);
    assert_eq!(v["entries"], 2, "{}", v["malformed"]);
    assert_eq!(v["malformed"]["count"], 2, "{}", v["malformed"]);
    let first = v["malformed"]["first"].as_array().unwrap();
    let lines: Vec<u64> = first.iter().map(|m| m["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![2, 3]);
    assert_eq!(first[0]["reason"], "line longer than 1 MiB");
    assert!(first[0]["text"].as_str().unwrap().starts_with("xxxx"));
}

#[test]
fn an_endless_stream_without_entries_stops_after_64_mib() {
    let limit = std::time::Duration::from_secs(120);
    // The case: random bytes never end.
    let (code, _, err) = summary_bounded(&["--file", "/dev/urandom"], None, limit);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("/dev/urandom"), "{err}");
    // An endless stream of text lines that are not entries, on stdin.
    let junk: Box<dyn FnOnce(std::process::ChildStdin) + Send> = Box::new(|mut w| {
        use std::io::Write;
        let block = "this is not a conntrack line\n".repeat(4096);
        // Bounded: at most 1 GiB, or until ctdoctor closes the pipe.
        for _ in 0..(1usize << 30) / block.len() {
            if w.write_all(block.as_bytes()).is_err() {
                break;
            }
        }
    });
    let (code, _, err) = summary_bounded(&["--file", "-"], Some(junk), limit);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("stdin: no conntrack entries in the first 64 MiB"),
        "{err}"
    );
    assert!(err.contains("this is not a conntrack line"), "{err}");
}

#[test]
fn an_empty_input_is_0_entries_with_a_warning() {
    let limit = std::time::Duration::from_secs(60);
    // stdin: usually `conntrack -L` failing upstream (it prints nothing).
    let (code, out, err) = summary_bounded(&["--file", "-"], None, limit);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("conntrack table: 0 entries (stdin"),
        "{out}"
    );
    assert!(err.contains("stdin was empty"), "{err}");
    // An empty file: an empty table is a table; still said on stderr.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.txt");
    std::fs::write(&p, "").unwrap();
    let (code, out, err) = summary_bounded(&["--file", p.to_str().unwrap(), "--json"], None, limit);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entries"], 0);
    assert!(err.contains("empty.txt was empty"), "{err}");
    // A table that is really there but has no entries (blank lines only)
    // is not "empty input".
    std::fs::write(&p, "\n").unwrap();
    let (code, _, err) = summary_bounded(&["--file", p.to_str().unwrap()], None, limit);
    assert_eq!((code, err.as_str()), (Some(0), ""));
}
