//! The gateway's reverse proxy: nginx from the distribution when it is
//! installed — the real `504 Gateway Time-out` and the real "upstream timed
//! out (110: Connection timed out) while connecting to upstream" log line —
//! else a small built-in proxy that answers 504 the same way (the report
//! says which). nginx proxies the way it does by default: one upstream
//! connection per request (HTTP/1.0, `Connection: close`), 1 s to connect.
//! Stopped when its guard drops.
//!
//! Not for: anything but the lab (a fixed config in a temp dir).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the proxy waits to connect to the backend before answering 504.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The proxy that runs.
pub enum Proxy {
    Nginx {
        child: Child,
        /// The config, logs and temp files (None once kept).
        dir: Option<tempfile::TempDir>,
        version: String,
    },
    Builtin {
        stop: Arc<AtomicBool>,
        threads: Vec<std::thread::JoinHandle<()>>,
    },
}

/// nginx's version line ("nginx 1.22.1"), when nginx is installed.
pub fn nginx_version() -> Option<String> {
    let out = Command::new("nginx").arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let v = text.trim().strip_prefix("nginx version: nginx/")?;
    Some(format!(
        "nginx {}",
        v.split_whitespace().next().unwrap_or(v)
    ))
}

fn nginx_conf(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "user root root;\n\
         worker_processes 2;\n\
         daemon off;\n\
         master_process on;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n\
         \x20 access_log {d}/access.log;\n\
         \x20 client_body_temp_path {d}/body;\n\
         \x20 proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n\
         \x20 uwsgi_temp_path {d}/uwsgi;\n\
         \x20 scgi_temp_path {d}/scgi;\n\
         \x20 upstream backend {{ server {upstream}; }}\n\
         \x20 server {{\n\
         \x20   listen {listen} backlog=4096;\n\
         \x20   location / {{\n\
         \x20     proxy_pass http://backend;\n\
         \x20     proxy_connect_timeout {}s;\n\
         \x20     proxy_read_timeout 5s;\n\
         \x20     proxy_send_timeout 5s;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n",
        CONNECT_TIMEOUT.as_secs()
    )
}

/// Wait until `addr` accepts a connection from inside `from`, up to `limit`.
fn wait_listening(from: &netns::Target, addr: SocketAddr, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let ok = netns::run_in(from, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
        .unwrap_or(false);
        if ok {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Proxy {
    /// Start nginx in `gateway` (or the built-in proxy when nginx is not
    /// installed) listening on `listen` and proxying to `upstream`; returns
    /// once it accepts connections from `client`.
    pub fn start(
        gateway: &netns::Target,
        gateway_name: &str,
        client: &netns::Target,
        listen: SocketAddr,
        upstream: SocketAddr,
    ) -> Result<Proxy> {
        let p = match nginx_version() {
            Some(version) => {
                // Named after the gateway, so `lab --teardown` finds what a
                // killed run left (topo::teardown).
                let dir = tempfile::Builder::new()
                    .prefix(&format!(
                        "{}{gateway_name}-nginx-",
                        super::topo::TEMP_PREFIX
                    ))
                    .tempdir()
                    .context("a temp dir for nginx")?;
                let conf = dir.path().join("nginx.conf");
                std::fs::write(&conf, nginx_conf(dir.path(), listen, upstream))?;
                let child = Command::new("ip")
                    .args(["netns", "exec", gateway_name, "nginx", "-c"])
                    .arg(&conf)
                    .arg("-p")
                    .arg(dir.path())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("starting nginx in the gateway namespace")?;
                Proxy::Nginx {
                    child,
                    dir: Some(dir),
                    version,
                }
            }
            None => Proxy::builtin(gateway, listen, upstream)?,
        };
        if !wait_listening(client, listen, Duration::from_secs(5)) {
            let mut p = p;
            let err = p.stderr();
            p.stop();
            bail!("the gateway's proxy did not start listening on {listen}: {err}");
        }
        Ok(p)
    }

    fn builtin(gateway: &netns::Target, listen: SocketAddr, upstream: SocketAddr) -> Result<Proxy> {
        // Sockets opened in the gateway namespace stay there; the threads
        // that use them need not.
        let l = netns::run_in(gateway, || TcpListener::bind(listen))?
            .with_context(|| format!("built-in proxy: listening on {listen}"))?;
        l.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..8 {
            let l = l.try_clone()?;
            let stop = stop.clone();
            let gw = gateway.clone();
            threads.push(std::thread::spawn(move || {
                // Upstream sockets must be made in the gateway namespace.
                let _ = netns::run_in(&gw, || {
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            Ok((s, _)) => {
                                let _ = s.set_nonblocking(false);
                                relay(s, upstream);
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(2)),
                        }
                    }
                });
            }));
        }
        Ok(Proxy::Builtin { stop, threads })
    }

    /// What runs, for the report: "nginx 1.22.1" or the built-in proxy.
    pub fn name(&self) -> String {
        match self {
            Proxy::Nginx { version, .. } => version.clone(),
            Proxy::Builtin { .. } => "built-in proxy (nginx is not installed)".into(),
        }
    }

    /// nginx's error log so far (empty for the built-in proxy).
    pub fn error_log(&self) -> String {
        match self {
            Proxy::Nginx { dir: Some(dir), .. } => {
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            }
            Proxy::Nginx { dir: None, .. } => String::new(),
            Proxy::Builtin { .. } => String::new(),
        }
    }

    /// Leave nginx running with its directory (`--keep`); the built-in
    /// proxy ends with this process.
    pub fn keep(mut self) {
        if let Proxy::Nginx { dir, .. } = &mut self {
            if let Some(d) = dir.take() {
                let _ = d.keep();
            }
            std::mem::forget(self);
        }
    }

    fn stderr(&mut self) -> String {
        match self {
            Proxy::Nginx { child, .. } => {
                let mut s = String::new();
                if let Ok(Some(_)) = child.try_wait() {
                    if let Some(e) = child.stderr.as_mut() {
                        let _ = e.read_to_string(&mut s);
                    }
                }
                s.trim().to_string()
            }
            Proxy::Builtin { .. } => String::new(),
        }
    }

    fn stop(&mut self) {
        match self {
            Proxy::Nginx { child, .. } => {
                // SIGTERM: nginx's fast shutdown; then make sure.
                // SAFETY: kill(2) on our own child's pid.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGTERM);
                }
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Proxy::Builtin { stop, threads } => {
                stop.store(true, Ordering::Relaxed);
                for t in threads.drain(..) {
                    let _ = t.join();
                }
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The built-in proxy's work for one client connection: connect upstream
/// within [`CONNECT_TIMEOUT`] (else answer 504, as nginx does), relay the
/// request head and the whole response.
fn relay(mut client: TcpStream, upstream: SocketAddr) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let mut up = match TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(_) => {
            let _ = client.write_all(
                b"HTTP/1.1 504 Gateway Time-out\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(5)));
    if up.write_all(&head).is_err() {
        let _ = client.write_all(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp);
    let _ = client.write_all(&resp);
}
