//! Running `ctdoctor exporter` in tests: start it on an ephemeral loopback
//! port, speak raw HTTP/1.1 to it, parse its exposition, stop it with
//! SIGTERM (killed on drop if a test fails first).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Exporter {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Exporter {
    /// `ctdoctor exporter --listen 127.0.0.1:0 ARGS`, once it listens.
    pub fn start(args: &[&str]) -> Exporter {
        let mut cmd = Command::new(super::bin());
        cmd.arg("exporter")
            .args(["--listen", "127.0.0.1:0"])
            .args(args);
        Exporter::spawn(cmd)
    }

    /// Run `cmd` (a whole exporter command line, e.g. under `setpriv`,
    /// listening on 127.0.0.1:0), once it listens.
    pub fn spawn(mut cmd: Command) -> Exporter {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ctdoctor exporter");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let first = lines
            .next()
            .expect("exporter said nothing")
            .expect("read stderr");
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|s| s.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .expect("listen address");
        // Keep draining stderr so the child never blocks on it.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Exporter { child, addr }
    }

    /// One request on a fresh connection: (status, headers, body).
    pub fn request(&self, raw: &str) -> (u16, String, Vec<u8>) {
        let mut s =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        read_response(&mut s)
    }

    pub fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
    }

    /// The /metrics text.
    pub fn metrics(&self) -> String {
        let (code, _, body) = self.get("/metrics");
        assert_eq!(code, 200);
        String::from_utf8(body).expect("UTF-8 exposition")
    }

    /// Poll /metrics until `ok` holds (at most `within`); the last scrape.
    #[allow(dead_code)] // kernel only (offline waits on /healthz)
    pub fn wait_for(&self, within: Duration, ok: impl Fn(&Samples) -> bool) -> Samples {
        let start = Instant::now();
        loop {
            let s = Samples::parse(&self.metrics());
            if ok(&s) || start.elapsed() > within {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then wait (at most 10 s) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("exporter did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Read one response (Content-Length framed) from `s`, never past its
/// end (a pipelined next response stays in the socket).
pub fn read_response(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read response head");
        assert!(n > 0, "connection closed before a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("read response body");
    (status, head, body)
}

/// A header's value from a response head (the first, trimmed).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A gzip body, decoded.
pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

/// A parsed 0.0.4 exposition: series (name + sorted labels) → value.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub BTreeMap<String, f64>);

impl Samples {
    pub fn parse(text: &str) -> Samples {
        let mut m = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let v: f64 = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().expect("value"),
            };
            assert!(
                m.insert(series.to_string(), v).is_none(),
                "duplicate series {series}"
            );
        }
        Samples(m)
    }

    /// Every sample of `name` as (labels text, value).
    pub fn of(&self, name: &str) -> Vec<(&str, f64)> {
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(name)?;
                (rest.is_empty() || rest.starts_with('{')).then_some((rest, *v))
            })
            .collect()
    }

    /// The one sample of `name` whose labels contain every `k="v"` given.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let hits: Vec<f64> = self
            .of(name)
            .into_iter()
            .filter(|(l, _)| want.iter().all(|w| l.contains(w.as_str())))
            .map(|(_, v)| v)
            .collect();
        match hits.as_slice() {
            [v] => Some(*v),
            [] => None,
            _ => panic!("{name} {labels:?} matches {} series", hits.len()),
        }
    }

    /// `ctdoctor_conntrack_table_entries` as (l4, state) → count, zeros dropped.
    #[allow(dead_code)] // kernel only
    pub fn table_entries(&self) -> BTreeMap<(String, String), u64> {
        let label = |l: &str, k: &str| -> String {
            let pat = format!("{k}=\"");
            let i = l.find(&pat).map(|i| i + pat.len()).unwrap_or(0);
            l[i..].split('"').next().unwrap_or("").to_string()
        };
        self.of("ctdoctor_conntrack_table_entries")
            .into_iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|(l, v)| ((label(l, "l4"), label(l, "state")), v as u64))
            .collect()
    }
}

/// `promtool check metrics` on `text`: None when promtool is missing (and
/// not CI), else its verdict. Under CI=true promtool must be there.
pub fn promtool(text: &str) -> Option<Result<(), String>> {
    if !testns::need_tool("promtool") {
        return None;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    })
}
