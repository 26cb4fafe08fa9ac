//! `ctdoctor exporter` on a fixture tree (a namespace whose table was full,
//! captured on 6.18): the scrape's values against the tree's own files,
//! `promtool check metrics`, content negotiation (format and gzip), the
//! HTTP rules and bounds (no Host, malformed, oversized, slow, too many
//! connections), and SIGTERM. The server's own loopback tests (pipelining,
//! clients that never read) are in src/exporter/http.rs.
//! No root needed: `--table off`, facts from the tree.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common;
use crate::common::exporter::{gunzip, header, promtool, read_response, Exporter, Samples};
use crate::common::fixture;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn start(extra: &[&str]) -> Exporter {
    let root = fixture("ct-table-full-6.18");
    let mut args = vec![
        "--root",
        root.to_str().unwrap(),
        "--table",
        "off",
        "--interval",
        "1s",
    ];
    args.extend_from_slice(extra);
    let e = Exporter::start(&args);
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.get("/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "no facts within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    e
}

fn file(rel: &str) -> String {
    std::fs::read_to_string(fixture("ct-table-full-6.18").join(rel)).unwrap()
}

#[test]
fn scrape_of_a_full_table_matches_its_files_and_passes_promtool() {
    let e = start(&[]);
    let text = e.metrics();
    if let Some(r) = promtool(&text) {
        r.unwrap_or_else(|why| panic!("promtool check metrics:\n{why}\n---\n{text}"));
    }
    // HELP and TYPE on every family, counters named with _total.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(text.contains(&format!("# HELP {} ", f[2])), "{}", f[2]);
        assert_eq!(f[3] == "counter", f[2].ends_with("_total"), "{line}");
    }
    let s = Samples::parse(&text);
    let ns = [("netns", "4026532177"), ("netns_name", "gw")];
    let num = |rel: &str| file(rel).trim().parse::<f64>().unwrap();
    assert_eq!(
        s.get("ctdoctor_conntrack_entries", &ns),
        Some(num("proc/sys/net/netfilter/nf_conntrack_count"))
    );
    assert_eq!(
        s.get("ctdoctor_conntrack_entries_limit", &ns),
        Some(num("proc/sys/net/netfilter/nf_conntrack_max"))
    );
    // The stat file, summed by header name by hand: drop is column "drop".
    let stat = file("proc/net/stat/nf_conntrack");
    let mut rows = stat.lines();
    let header: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let sum = |name: &str| -> f64 {
        stat.lines()
            .skip(1)
            .map(|r| {
                let v: Vec<&str> = r.split_whitespace().collect();
                u64::from_str_radix(v[col(name)], 16).unwrap() as f64
            })
            .sum()
    };
    assert!(sum("drop") > 0.0, "the fixture dropped packets");
    for (metric, column) in [
        ("ctdoctor_conntrack_stat_drop_total", "drop"),
        ("ctdoctor_conntrack_stat_early_drop_total", "early_drop"),
        (
            "ctdoctor_conntrack_stat_insert_failed_total",
            "insert_failed",
        ),
        ("ctdoctor_conntrack_stat_clash_resolve_total", "clashres"),
        ("ctdoctor_conntrack_stat_chaintoolong_total", "chainlength"),
        ("ctdoctor_conntrack_stat_error_total", "icmp_error"),
    ] {
        assert_eq!(s.get(metric, &ns), Some(sum(column)), "{metric}");
    }
    // Its kernel log has "table full in netns 4026532177" lines.
    let lines = file("dev/kmsg")
        .lines()
        .filter(|l| l.contains("table full in netns 4026532177"))
        .count() as f64;
    assert!(lines > 0.0);
    assert_eq!(
        s.get("ctdoctor_conntrack_table_full_log_lines_total", &ns),
        Some(lines)
    );
    // The same rules as `check`: its findings, by id and severity.
    let tree = fixture("ct-table-full-6.18");
    let report = common::json(&common::run(&[
        "check",
        "--json",
        "--root",
        tree.to_str().unwrap(),
    ]));
    let table_full = common::json_finding(&report, "conntrack.table_full");
    let sev = table_full["severity"].as_str().unwrap();
    assert_eq!(sev, "critical");
    assert_eq!(
        s.get(
            "ctdoctor_check_finding",
            &[ns[0], ("id", "conntrack.table_full"), ("severity", sev)]
        ),
        Some(1.0)
    );
    // Persistence is not read by the exporter: not checked, not a finding.
    assert_eq!(
        s.get(
            "ctdoctor_check_rule_checked",
            &[ns[0], ("id", "conntrack.not_persistent")]
        ),
        Some(0.0)
    );
    assert_eq!(
        s.get("ctdoctor_source_up", &[ns[0], ("source", "conntrack")]),
        Some(1.0)
    );
    assert!(
        s.of("ctdoctor_conntrack_table_entries").is_empty(),
        "--table off"
    );
    assert!(e.terminate().success(), "SIGTERM exits 0");
}

#[test]
fn openmetrics_only_when_asked() {
    let e = start(&[]);
    let (_, head, body) = e.get("/metrics");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(!String::from_utf8_lossy(&body).contains("# EOF"));
    let (code, head, body) = e.request(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200);
    assert!(
        head.contains("application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let om = String::from_utf8(body).unwrap();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE ctdoctor_conntrack_stat_drop counter\n"));
    assert!(om.contains("\nctdoctor_conntrack_stat_drop_total{"));
}

/// What Prometheus sends on every scrape (2.x): its Accept header and
/// `Accept-Encoding: gzip`.
const PROMETHEUS_HEAD: &str = "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\nAccept-Encoding: gzip\r\n";
const OPENMETRICS_ACCEPT: &str = "Accept: application/openmetrics-text;version=1.0.0\r\n";

#[test]
fn gzip_when_asked() {
    let e = start(&[]);
    let get = |extra: &str| {
        e.request(&format!(
            "GET /metrics HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
        ))
    };
    let (code, head, body) = get(PROMETHEUS_HEAD);
    assert_eq!(code, 200);
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(header(&head, "vary"), Some("Accept-Encoding"));
    let om = String::from_utf8(gunzip(&body)).unwrap();
    assert!(om.ends_with("# EOF\n"), "OpenMetrics, gzipped");
    assert!(body.len() * 4 < om.len(), "{} of {}", body.len(), om.len());
    // Text format, gzipped and not: the same families.
    let (_, head, zipped) = get("Accept-Encoding: deflate, gzip;q=0.8\r\n");
    assert_eq!(header(&head, "content-encoding"), Some("gzip"));
    let (_, head, plain) = get("Accept-Encoding: gzip;q=0\r\n");
    assert_eq!(header(&head, "content-encoding"), None, "q=0 is a no");
    assert_eq!(header(&head, "vary"), Some("Accept-Encoding"));
    let types = |b: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(b)
            .lines()
            .filter(|l| l.starts_with("# TYPE "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(types(&gunzip(&zipped)), types(&plain));
    let text = String::from_utf8(gunzip(&zipped)).unwrap();
    Samples::parse(&text);
    if let Some(r) = promtool(&text) {
        r.unwrap_or_else(|why| panic!("promtool check metrics (gunzipped):\n{why}"));
    }
    assert!(e.terminate().success());
}

/// Not a test: the numbers of docs/BENCHMARKS.md ("exporter HTTP"). The
/// body of a real scrape (this fixture's, or the file `GZIP_COST_BODY`
/// names, e.g. a live `curl -s localhost:9651/metrics`), its size plain and
/// gzipped, and the thread CPU time of compressing it (mean of 500): with a
/// fresh encoder at levels 1, 6 and 9, and at level 1 with one deflate
/// state reset between bodies, as the server does. Run:
/// `cargo test --release -p ctdoctor --test offline exporter::gzip_cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement; run by hand"]
fn gzip_cost() {
    let bodies: Vec<(String, Vec<u8>)> = match std::env::var_os("GZIP_COST_BODY") {
        Some(p) => vec![(p.to_string_lossy().into_owned(), std::fs::read(&p).unwrap())],
        None => {
            let e = start(&[]);
            let text = e.metrics().into_bytes();
            let (_, _, om) = e.request(&format!(
                "GET /metrics HTTP/1.1\r\nHost: t\r\n{OPENMETRICS_ACCEPT}Connection: close\r\n\r\n"
            ));
            assert!(e.terminate().success());
            vec![("text 0.0.4".into(), text), ("OpenMetrics".into(), om)]
        }
    };
    let cpu = || {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime into a local timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    };
    let n = 500;
    let report = |what: &str, size: usize, plain: usize, secs: f64| {
        println!(
            "  {what}: {size} bytes ({:.1} %), {:.0} µs CPU per body",
            100.0 * size as f64 / plain as f64,
            secs / n as f64 * 1e6
        );
    };
    for (what, body) in &bodies {
        println!("{what}: {} bytes plain", body.len());
        for level in [1, 6, 9] {
            let (t0, mut size) = (cpu(), 0);
            for _ in 0..n {
                let mut z =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                z.write_all(body).unwrap();
                size = z.finish().unwrap().len();
            }
            report(
                &format!("gzip -{level}, fresh encoder"),
                size,
                body.len(),
                cpu() - t0,
            );
        }
        let mut z = flate2::Compress::new(flate2::Compression::fast(), false);
        let (t0, mut size) = (cpu(), 0);
        for _ in 0..n {
            z.reset();
            let mut out = Vec::with_capacity(body.len() + body.len() / 8 + 64);
            let st = z.compress_vec(body, &mut out, flate2::FlushCompress::Finish);
            assert_eq!(st.unwrap(), flate2::Status::StreamEnd);
            let mut crc = flate2::Crc::new();
            crc.update(body);
            size = out.len() + 18; // gzip header and trailer
        }
        report(
            "gzip -1, state reused (the server)",
            size,
            body.len(),
            cpu() - t0,
        );
    }
}

#[test]
fn endpoints_and_bad_requests() {
    let e = start(&["--max-connections", "4"]);
    assert_eq!(e.get("/").0, 200);
    let (_, _, page) = e.get("/");
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("ctdoctor_conntrack_time_to_full_seconds"));
    assert!(page.contains("conntrack.table_full"));
    assert_eq!(e.get("/nope").0, 404);
    assert_eq!(
        e.request("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .0,
        405
    );
    assert_eq!(
        e.request("GET /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            .0,
        413
    );
    assert_eq!(e.request("\x16\x03\x01\x02\x00 not http\r\n\r\n").0, 400);
    // RFC 9112 §3.2: HTTP/1.1 must name its host.
    assert_eq!(
        e.request("GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            .0,
        400
    );
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(e.request(&big).0, 431);

    // HEAD: the head only.
    let mut h = TcpStream::connect(e.addr).unwrap();
    h.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    h.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    h.read_to_end(&mut all).unwrap();
    let all = String::from_utf8(all).unwrap();
    assert!(
        all.starts_with("HTTP/1.1 200 OK\r\n") && all.ends_with("\r\n\r\n"),
        "{all}"
    );

    // Keep-alive: two requests on one connection, pipelined.
    let mut k = TcpStream::connect(e.addr).unwrap();
    k.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    k.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut k).0, 200);
    let (code, _, body) = read_response(&mut k);
    assert_eq!(code, 200);
    assert!(!body.is_empty());

    // Slow clients: more idle connections than allowed, each sending half a
    // head; a scrape still gets through (the longest-waiting one is closed).
    let slow: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut s = TcpStream::connect(e.addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost:").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(e.get("/healthz").0, 200);
    drop(slow);
    let s = Samples::parse(&e.metrics());
    assert!(
        s.get("ctdoctor_exporter_http_rejected_connections_total", &[])
            .unwrap()
            >= 3.0
    );
    assert!(s.get("ctdoctor_exporter_http_requests_total", &[("code", "431")]) == Some(1.0));
    assert!(s.get("ctdoctor_exporter_http_requests_total", &[("code", "400")]) == Some(2.0));
    assert!(e.terminate().success());
}

#[test]
fn bad_flags_and_busy_port_exit_3() {
    let run = |args: &[&str]| {
        common::command()
            .arg("exporter")
            .args(args)
            .output()
            .unwrap()
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["--listen", &addr]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--listen") && err.contains(&addr), "{err}");
    assert_eq!(run(&["--table", "sometimes"]).status.code(), Some(3));
    assert_eq!(run(&["--interval", "0s"]).status.code(), Some(3));
}
