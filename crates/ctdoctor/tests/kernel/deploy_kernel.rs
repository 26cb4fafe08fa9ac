//! Kernel tests of deploy/ against real things:
//!
//! - A real Prometheus server (Debian's `prometheus`) in a temp dir on a
//!   loopback port scrapes a real `ctdoctor exporter` watching a fresh
//!   netns whose table fills (entries created through ctnetlink batches, to
//!   80 % of the global nf_conntrack_max); the rules of
//!   deploy/prometheus/ctdoctor.rules.yml, with every `for` shortened to 2 s
//!   in a test-only copy, fire the warning usage alert and not the critical
//!   one (`/api/v1/alerts`); every panel query of the Grafana dashboard,
//!   evaluated by that server, returns without error, and the core panels
//!   with data for that namespace.
//! - The systemd unit's capability bounding set (and its --all-netns
//!   drop-in's), applied with `setpriv`, is enough for every source, and
//!   without each capability something is lost.
//!
//! No global knob is changed. Prometheus and the exporter are killed on
//! drop; the namespaces (and their entries) go with their guards.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::deploy::*;
use crate::common::exporter::{Exporter, Samples};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `tool` can run: under CI=true it must (panics otherwise).
fn need(tool: &str, why: &str) -> bool {
    testns::need(
        testns::have(tool),
        &format!("{why}: `{tool}` is not installed (scripts/test.sh installs it)"),
    )
}

/// Percent-encoding for a query string value.
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.0 GET (no chunked encoding, closed at the end): (status, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server in its own temp dir; killed on drop (exporter_kernel
/// uses it too).
pub(crate) struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrape `target` every second as job `ctdoctor`, evaluate `rules`
    /// every second; ready when /-/ready says so (at most 30 s).
    pub(crate) fn start(target: SocketAddr, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [rules.yml]\n\
                 scrape_configs:\n  - job_name: ctdoctor\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .current_dir(dir.path())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus { child, addr, dir };
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = http_get(p.addr, "/-/ready") {
                return p;
            }
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("prometheus exited ({st}):\n{}", p.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus not ready in 30 s:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn log(&self) -> String {
        let t = std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// GET an API path: the parsed JSON (status "success" required).
    fn api(&self, path: &str) -> serde_json::Value {
        let (code, body) = http_get(self.addr, path).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {code} {body}"));
        assert_eq!(v["status"], "success", "{path}: {code} {body}");
        v
    }

    /// An instant query: its result vector (error: panic with the query).
    pub(crate) fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let (code, body) =
            http_get(self.addr, &format!("/api/v1/query?query={}", urlencode(q))).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
        assert!(
            code == 200 && v["status"] == "success",
            "query failed: {q}\n{code} {body}"
        );
        match v["data"]["resultType"].as_str() {
            Some("vector") => v["data"]["result"].as_array().unwrap().clone(),
            Some("scalar") => vec![v["data"]["result"].clone()],
            other => panic!("{q}: result type {other:?}"),
        }
    }

    /// Poll `ok` on the alerts list every 0.5 s for at most `within`.
    fn wait_alerts(
        &self,
        within: Duration,
        ok: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let v = self.api("/api/v1/alerts");
            let alerts = v["data"]["alerts"].as_array().unwrap().clone();
            if ok(&alerts) || start.elapsed() > within {
                return alerts;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The rules file with every `for` set to `d`: the same expressions,
/// labels and annotations, waiting seconds instead of minutes.
fn rules_with_for(d: &str) -> String {
    let mut v: serde_yaml::Value = serde_yaml::from_str(&read(RULES)).unwrap();
    let mut n = 0;
    for g in v["groups"].as_sequence_mut().unwrap() {
        for r in g["rules"].as_sequence_mut().unwrap() {
            if let Some(f) = r.get_mut("for") {
                *f = serde_yaml::Value::String(d.into());
                n += 1;
            }
        }
    }
    assert!(n >= 10, "only {n} rules with `for`");
    serde_yaml::to_string(&v).unwrap()
}

/// `n` ESTABLISHED, ASSURED TCP entries (10 minutes left) created through
/// ctnetlink in `ns`, in `steps` batches `pause` apart (a table that
/// fills, not one that jumps).
fn fill(ns: &testns::Netns, n: usize, steps: usize, pause: Duration) {
    use ctnetlink::{Conntrack, TcpState, Tuple};
    use std::net::{IpAddr, Ipv4Addr};
    let mut sock = ctnetlink::Socket::open_in(&ns.target()).unwrap();
    let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let per = n.div_ceil(steps);
    for step in 0..steps {
        let batch: Vec<Conntrack> = (step * per..((step + 1) * per).min(n))
            .map(|i| {
                // 198.18.0.0/15 (benchmarking range): i / 60000 picks the
                // address, i % 60000 the port; every tuple distinct.
                let a = (i / 60_000) as u32;
                let src = IpAddr::V4(Ipv4Addr::from(0xC612_0000 + a));
                let sport = 1024 + (i % 60_000) as u16;
                Conntrack::new(Tuple::tcp(src, sport, dst, 443))
                    .status(ctnetlink::consts::IPS_ASSURED | ctnetlink::consts::IPS_SEEN_REPLY)
                    .tcp_state(TcpState::Established)
                    .timeout(600)
            })
            .collect();
        let r = sock.create_batch(&batch).unwrap();
        assert!(
            r.failed.is_empty(),
            "{} creates failed: {:?}",
            r.failed.len(),
            r.failed.first()
        );
        std::thread::sleep(pause);
    }
}

/// VmRSS of a process in KiB and its CPU time (user + system) in seconds.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (rss, ticks / hz)
}

/// The dashboard's panels: (title, [expr]).
fn panels() -> Vec<(String, Vec<String>)> {
    let d: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .map(|p| {
            (
                p["title"].as_str().unwrap().to_string(),
                p["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["expr"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// Panels that must show data for a namespace whose table is filling.
const CORE: &[&str] = &[
    "Fullest table",
    "Dropping now",
    "Soonest full",
    "Memory of a full table",
    "Entries vs limit",
    "Usage of nf_conntrack_max",
    "Entries by state",
    "Time to full",
    "Drops, early drops, insert failures",
    "TIME_WAIT sockets",
    "Findings of ctdoctor check",
    "Freshness",
];

#[test]
fn prometheus_scrapes_a_filling_table_fires_the_usage_alert_and_the_dashboard_has_data() {
    if !testns::kernel_test("prometheus_scrapes_a_filling_table") {
        return;
    }
    if !need("prometheus", "the real-Prometheus acceptance test") {
        return;
    }
    let _lock = testns::lock_shared();
    let _heavy = crate::heavy();
    let max: usize = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // 80 %: over the warning (75 %), under the critical (90 %).
    let n = max * 8 / 10 + 1;
    assert!(
        n <= 1_000_000,
        "nf_conntrack_max {max}: filling 80 % would take over 1M entries; this test expects a max near the default"
    );
    let ns = testns::Netns::new("prom");
    let inode = ns.inode().to_string();
    let exporter = Exporter::start(&[
        "--netns",
        &ns.name,
        "--interval",
        "1s",
        "--table-resync",
        "5s",
        "--growth-window",
        "60s",
    ]);
    let prom = Prometheus::start(exporter.addr, &rules_with_for("2s"));
    // Scraped, with our namespace's series.
    let start = Instant::now();
    let entries_q = format!("ctdoctor_conntrack_entries{{netns=\"{inode}\"}}");
    while prom.query(&entries_q).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no scrape in 30 s:\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mine = |a: &serde_json::Value| a["labels"]["netns"] == inode.as_str();
    let usage_alerts = |alerts: &[serde_json::Value], sev: &str| -> Vec<serde_json::Value> {
        alerts
            .iter()
            .filter(|a| {
                mine(a)
                    && a["labels"]["alertname"] == "CtdoctorConntrackTableNearlyFull"
                    && a["labels"]["severity"] == sev
            })
            .cloned()
            .collect()
    };
    assert!(
        usage_alerts(&prom.wait_alerts(Duration::ZERO, |_| true), "warning").is_empty(),
        "an empty table fires nothing"
    );

    // Fill to 80 % in 8 steps half a second apart.
    let t0 = Instant::now();
    fill(&ns, n, 8, Duration::from_millis(500));
    let filled = t0.elapsed();
    assert_eq!(ns.count(), n as u64, "nf_conntrack_count after the fill");
    let alerts = prom.wait_alerts(Duration::from_secs(60), |a| {
        usage_alerts(a, "warning")
            .iter()
            .any(|x| x["state"] == "firing")
    });
    let fired = t0.elapsed();
    let warn = usage_alerts(&alerts, "warning");
    assert!(
        warn.iter().any(|x| x["state"] == "firing"),
        "the warning usage alert did not fire within 60 s of the fill: {alerts:#?}\n{}",
        prom.log()
    );
    let a = &warn[0];
    assert_eq!(a["labels"]["netns_name"], ns.name.as_str());
    assert_eq!(a["labels"]["job"], "ctdoctor");
    let runbook = a["annotations"]["runbook"].as_str().unwrap();
    assert!(
        runbook.contains(&format!("ctdoctor check --netns '{}'", ns.name)),
        "{runbook}"
    );
    let v: f64 = a["value"].as_str().unwrap().parse().unwrap();
    assert!((v - n as f64 / max as f64).abs() < 0.01, "alert value {v}");
    assert!(
        usage_alerts(&alerts, "critical").is_empty(),
        "80 % must not fire the critical (90 %): {alerts:#?}"
    );

    // Every dashboard query, as Grafana would send it for this namespace.
    let mut no_data = Vec::new();
    for (title, exprs) in panels() {
        let mut any = false;
        for e in &exprs {
            let q = e
                .replace("$instance", ".*")
                .replace("$netns", &inode)
                .replace("$__rate_interval", "30s");
            let r = prom.query(&q);
            any |= !r.is_empty();
        }
        if !any {
            no_data.push(title);
        }
    }
    let core_missing: Vec<&String> = no_data
        .iter()
        .filter(|t| CORE.contains(&t.as_str()))
        .collect();
    assert!(
        core_missing.is_empty(),
        "core panels without data: {core_missing:?} (all without data: {no_data:?})"
    );
    let findings = prom.query(&format!(
        "ctdoctor_check_finding{{netns=\"{inode}\",id=\"conntrack.usage\",severity=\"warning\"}}"
    ));
    assert_eq!(findings.len(), 1, "check's usage finding at 80 %");
    // The cause, from the mix of the tracker's own resync dump: the fill's
    // entries are ESTABLISHED with 600 s left of 432,000, idle for days.
    let ours = format!("netns=\"{inode}\"");
    let has_cause = |s: &Samples| {
        s.of("ctdoctor_check_finding").iter().any(|(l, v)| {
            l.contains(&ours)
                && l.contains("id=\"conntrack.state_mix.idle_established\"")
                && *v == 1.0
        })
    };
    let s = exporter.wait_for(Duration::from_secs(30), has_cause);
    assert!(
        has_cause(&s),
        "the state-mix cause within 30 s: {:?}",
        s.of("ctdoctor_check_finding")
    );

    let (rss_kib, cpu) = usage(exporter.child.id());
    let s = Samples::parse(&exporter.metrics());
    let followed: f64 = s
        .of("ctdoctor_conntrack_table_entries")
        .into_iter()
        .filter(|(l, _)| l.contains(&format!("netns=\"{inode}\"")))
        .map(|(_, v)| v)
        .sum();
    eprintln!(
        "acceptance: {n} entries (80 % of {max}) created in {:.1} s, warning alert firing {:.1} s after the fill began; \
         exporter RSS {:.1} MiB, CPU {:.2} s so far, {followed} entries followed; panels without data (not core): {no_data:?}",
        filled.as_secs_f64(),
        fired.as_secs_f64(),
        rss_kib as f64 / 1024.0,
        cpu
    );
    drop(prom);
    assert!(exporter.terminate().success());
}

/// `setpriv` bounding `caps` (CAP_X names), no new privileges, running
/// the exporter with the drop-in's command line on a loopback port.
fn exporter_with(caps: &[String]) -> Exporter {
    let set: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let mut args = exec_start(true);
    let listen = args.iter().position(|a| a == "--listen").unwrap();
    args[listen + 1] = "127.0.0.1:0".into();
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--bounding-set=-all,{}", set.join(",")))
        .args(["--inh-caps=-all", "--no-new-privs", "--"])
        .arg(crate::common::bin())
        .args(&args[1..])
        .args(["--interval", "1s"]);
    Exporter::spawn(cmd)
}

/// A process of user nobody alone in a new netns; killed on drop.
struct NobodyNetns {
    child: Child,
    inode: String,
}

impl NobodyNetns {
    fn new() -> NobodyNetns {
        let child = Command::new("unshare")
            .args([
                "--net",
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ])
            .args(["sleep", "120"])
            .spawn()
            .unwrap();
        // Owned by the guard from here: killed and waited for on any panic.
        let mut me = NobodyNetns {
            child,
            inode: String::new(),
        };
        let pid = me.child.id();
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        let link = format!("/proc/{pid}/ns/net");
        let start = Instant::now();
        loop {
            // setpriv has exec'd sleep once the owner is nobody.
            let ok = std::fs::read_link(&link).ok().filter(|l| *l != mine);
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if let (Some(l), "sleep") = (ok, comm.trim()) {
                me.inode = l
                    .to_string_lossy()
                    .trim_start_matches("net:[")
                    .trim_end_matches(']')
                    .to_string();
                return me;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "unshare did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NobodyNetns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn netns_exported(s: &Samples, inode: &str) -> bool {
    s.get("ctdoctor_netns_info", &[("netns", inode)]).is_some()
}

/// Every source_up of `inode`: (source, up).
fn sources(s: &Samples, inode: &str) -> Vec<(String, f64)> {
    s.of("ctdoctor_source_up")
        .into_iter()
        .filter(|(l, _)| l.contains(&format!("netns=\"{inode}\"")))
        .map(|(l, v)| {
            let src = l
                .split("source=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (src.to_string(), v)
        })
        .collect()
}

#[test]
fn unit_capabilities_are_enough_and_each_is_needed() {
    if !testns::kernel_test("unit_capabilities_are_enough_and_each_is_needed") {
        return;
    }
    if !need("setpriv", "the capability test") || !need("unshare", "the capability test") {
        return;
    }
    // CAP_SYSLOG is needed only while kernel.dmesg_restrict=1 (Debian's
    // default): a global knob, set for this test under the exclusive lock.
    let _lock = testns::lock_exclusive();
    let _restrict = testns::GlobalKnob::set("kernel/dmesg_restrict", "1");
    let ns = testns::Netns::new("caps");
    let named = ns.inode().to_string();
    let _nobody = crate::nobody();
    let nobody = NobodyNetns::new();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let host = host
        .to_string_lossy()
        .trim_start_matches("net:[")
        .trim_end_matches(']')
        .to_string();
    let all: Vec<String> = unit_capabilities(true).into_iter().collect();
    let wanted = [
        "netns",
        "system",
        "conntrack",
        "stat",
        "kmsg",
        "consumers",
        "sockets",
        "fds",
        "nic",
        "table",
    ];

    // With the unit's set: every source of the host's and our named
    // namespace, and nobody's namespace found.
    let e = exporter_with(&all);
    let s = e.wait_for(Duration::from_secs(30), |s| {
        netns_exported(s, &nobody.inode)
            && [&host, &named].iter().all(|i| {
                let src = sources(s, i);
                src.len() == wanted.len() && src.iter().all(|(_, up)| *up == 1.0)
            })
    });
    for i in [&host, &named] {
        let mut got: Vec<(String, f64)> = sources(&s, i);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want: Vec<(String, f64)> = wanted.iter().map(|w| (w.to_string(), 1.0)).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want, "netns {i} with {all:?}");
    }
    assert!(
        netns_exported(&s, &nobody.inode),
        "nobody's netns with {all:?}"
    );
    assert!(e.terminate().success());

    // Without each one, something goes missing.
    for cap in &all {
        let fewer: Vec<String> = all.iter().filter(|c| *c != cap).cloned().collect();
        let e = exporter_with(&fewer);
        let lost = |s: &Samples| -> Option<String> {
            match cap.as_str() {
                "CAP_NET_ADMIN" => (s.get(
                    "ctdoctor_source_up",
                    &[("netns", &host), ("source", "table")],
                ) == Some(0.0))
                .then(|| "the table source (ctnetlink)".into()),
                // Every other namespace is entered (setns); the exporter's
                // own is read where it is.
                "CAP_SYS_ADMIN" => (!netns_exported(s, &named) && netns_exported(s, &host))
                    .then(|| format!("every other namespace, {} included (setns)", ns.name)),
                "CAP_SYS_PTRACE" => (!netns_exported(s, &nobody.inode)
                    && netns_exported(s, &named))
                .then(|| "the netns of a process of user nobody".into()),
                "CAP_SYSLOG" => (s.get(
                    "ctdoctor_source_up",
                    &[("netns", &host), ("source", "kmsg")],
                ) == Some(0.0))
                .then(|| "/dev/kmsg".into()),
                other => panic!("no test of what {other} is for"),
            }
        };
        // Give it three refreshes after the first one.
        let ready = e.wait_for(Duration::from_secs(30), |s| {
            !s.of("ctdoctor_exporter_refresh_duration_seconds")
                .is_empty()
        });
        assert!(
            !ready
                .of("ctdoctor_exporter_refresh_duration_seconds")
                .is_empty(),
            "without {cap}: no refresh in 30 s"
        );
        std::thread::sleep(Duration::from_secs(3));
        let s = e.wait_for(Duration::from_secs(10), |s| lost(s).is_some());
        match lost(&s) {
            Some(what) => eprintln!("without {cap}: lost {what}"),
            None => panic!("without {cap} nothing was lost: is it needed?"),
        }
        assert!(e.terminate().success());
    }
}
