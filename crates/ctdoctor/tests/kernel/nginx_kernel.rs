//! Issue 21, nginx awareness, on the real thing: Debian's nginx in a fresh
//! netns proxies to an upstream whose SYNs an nft rule in that netns drops,
//! with proxy_connect_timeout 1s; curl in the netns gets its 504s and nginx
//! logs "upstream timed out (110: Connection timed out) while connecting to
//! upstream". `ctdoctor check --netns NS --json` must count exactly the
//! lines the log holds (oracle: the log files read here, line by line) on
//! the rules they tie to, say so on the rules that are ok, name them in the
//! headline — and see nothing of that nginx from another netns.
//!
//! The config is the reader's hard case on purpose: its server block (and
//! error_log, a relative name under `-p`) comes through a globbed
//! `include` relative to the config's directory, and the main context logs
//! elsewhere. Everything made here (netns, nginx, the temp dir) goes on
//! drop, panics included; traffic stays in the test's namespace.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, json_finding};
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LISTEN: &str = "127.0.0.1:8080";
/// The upstream: its SYNs are dropped in the netns's input hook.
const UPSTREAM: &str = "127.0.0.1:9999";
const REQUESTS: usize = 4;

/// nginx in the netns, stopped (and waited for) on drop.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; SIGTERM is nginx's fast shutdown.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Start nginx in `ns` with the config described in the module docs.
fn start_nginx(ns: &testns::Netns) -> Nginx {
    let dir = tempfile::Builder::new()
        .prefix("ctdoctor-test-nginx-")
        .tempdir()
        .unwrap();
    let d = dir.path().display();
    write(
        dir.path(),
        "nginx.conf",
        &format!(
            "user root root;\ndaemon off;\nmaster_process on;\nworker_processes 1;\n\
             pid {d}/nginx.pid;\nerror_log {d}/main.log notice;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
             \x20 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             \x20 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 include conf.d/*.conf;\n}}\n"
        ),
    );
    write(
        dir.path(),
        "conf.d/gateway.conf",
        &format!(
            "# the gateway\nserver {{\n  listen {LISTEN};\n  error_log logs/site.log error;\n\
             \x20 location / {{\n    proxy_pass http://{UPSTREAM};\n\
             \x20   proxy_connect_timeout 1s;\n  }}\n}}\n"
        ),
    );
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "nginx", "-c"])
        .arg(dir.path().join("nginx.conf"))
        .arg("-p")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let n = Nginx { child, dir };
    let addr: SocketAddr = LISTEN.parse().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let up = netns::run_in(&ns.target(), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
        .unwrap_or(false);
        if up {
            return n;
        }
        assert!(Instant::now() < end, "nginx did not listen on {LISTEN}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `REQUESTS` requests at once with curl in the netns: their status codes.
fn requests(ns: &testns::Netns) -> Vec<String> {
    let url = format!("http://{LISTEN}/");
    let children: Vec<Child> = (0..REQUESTS)
        .map(|_| {
            Command::new("ip")
                .args(["netns", "exec", &ns.name, "curl", "-s", "-o", "/dev/null"])
                .args(["-w", "%{http_code}", "--max-time", "10", &url])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap())
        .collect()
}

/// The oracle: connect-timeout lines in the logs, read here line by line.
fn logged_timeouts(dir: &Path) -> usize {
    ["main.log", "logs/site.log"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    l.contains("upstream timed out (110")
                        && l.contains("while connecting to upstream")
                })
                .count()
        })
        .sum()
}

fn check(ns: &str) -> Value {
    let out = common::run(&["check", "--json", "--netns", ns]);
    common::json(&out)
}

fn nginx_source(v: &Value) -> &Value {
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nginx")
        .unwrap()
}

#[test]
fn issue_21_nginx_connect_timeouts_are_counted_on_the_rules_they_tie_to() {
    if !testns::kernel_test("issue_21_nginx_connect_timeouts_are_counted_on_the_rules_they_tie_to")
        || !testns::need_tool("nginx")
        || !testns::need_tool("curl")
    {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("ngx");
    let quiet = testns::Netns::new("ngxq");
    ns.nft(
        "table inet ctdt_ngx_drop {\n\
         \x20 chain in { type filter hook input priority -10; tcp dport 9999 drop; }\n}\n",
    );
    let nginx = start_nginx(&ns);
    let codes = requests(&ns);
    assert_eq!(
        codes,
        vec!["504"; REQUESTS],
        "nginx answers 504 when the connect times out"
    );
    let lines = logged_timeouts(nginx.dir.path());
    assert_eq!(lines, REQUESTS, "one error line per request");
    let site = nginx.dir.path().join("logs/site.log");
    let site = site.to_str().unwrap();

    let v = check(&ns.name);
    assert_eq!(nginx_source(&v)["ok"], true, "{}", nginx_source(&v));
    for id in ["conntrack.table_full", "conntrack.usage", "sockets.ports"] {
        let f = json_finding(&v, id);
        let e = &f["evidence"];
        assert_eq!(
            e["nginx_lines"]["connect_timeout"], lines as u64,
            "{id}: {f}"
        );
        assert!(
            e.get("nginx_lines_cover_secs").is_none(),
            "the whole log was read"
        );
        let said = e["nginx_errors"][0].as_str().unwrap();
        assert!(
            said.starts_with(&format!(
                "upstream connect timed out (110) ×{lines} in the last hour, newest "
            )),
            "{id}: {said}"
        );
        assert!(said.ends_with(&format!(", {site})")), "{id}: {said}");
        // A handful of SYNs fills no table and holds no ports: ok, and said.
        assert_eq!(f["severity"], "ok", "{id}: {f}");
        assert!(e["nginx_while_ok"].is_string(), "{id}: {f}");
    }
    // With no symptom in the netns the headline names them (a symptom of
    // the machine's, e.g. softnet drops since boot, heads it instead).
    let headline = v["diagnosis"]["headline"].as_str().unwrap();
    if v["diagnosis"]["symptom"].is_null() {
        assert!(
            headline.contains(&format!(
                "; nginx logged upstream connect timed out (110) ×{lines} in the last hour \
                 (see conntrack.table_full, conntrack.usage, sockets.ports)"
            )),
            "{headline}"
        );
    }

    // Another namespace sees nothing of this nginx.
    let other = check(&quiet.name);
    assert_eq!(nginx_source(&other)["ok"], true);
    assert!(
        !other["findings"].to_string().contains("nginx_lines"),
        "{other}"
    );
    drop(nginx);
}
