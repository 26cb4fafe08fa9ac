//! The lab's HTTP backend: a process of our own binary (`ctdoctor
//! lab-backend ADDR`, hidden) started inside the backend namespace, which
//! answers every request with `200 ok` and closes — the upstream of the
//! gateway's proxy. A process, not a thread, so `--keep` can leave it
//! running and `--teardown` finds it (`ip netns pids`). Stopped when its
//! guard drops.
//!
//! Not for: being a web server (no keep-alive, no routing, bounded reads).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Threads accepting on the one listener.
const THREADS: usize = 4;

/// Read a request head (up to the blank line, at most 8 KiB, 2 s) and
/// answer it.
fn answer(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 8192];
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => return,
            Ok(k) => {
                n += k;
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    );
}

/// Serve on `addr` until killed (the body of `ctdoctor lab-backend`).
pub fn serve(addr: SocketAddr) -> Result<()> {
    let l = TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    let mut threads = Vec::new();
    for _ in 0..THREADS {
        let l = l.try_clone()?;
        threads.push(std::thread::spawn(move || loop {
            match l.accept() {
                Ok((s, _)) => answer(s),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// A running backend process; killed on drop.
pub struct Backend {
    child: Option<Child>,
}

impl Backend {
    /// Start the backend in namespace `ns` on `addr`; returns once a
    /// connection from `from` (the gateway) succeeds.
    pub fn start(ns: &str, addr: SocketAddr, from: &netns::Target) -> Result<Backend> {
        let exe = std::env::current_exe().context("finding ctdoctor's own binary")?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(["lab-backend", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the backend")?;
        let b = Backend { child: Some(child) };
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            let up = netns::run_in(from, || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })
            .unwrap_or(false);
            if up {
                return Ok(b);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the backend did not start listening on {addr}")
    }

    /// Leave it running (`--keep`).
    pub fn keep(mut self) {
        self.child = None;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
