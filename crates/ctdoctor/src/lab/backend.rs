//! The lab's HTTP backend: a few threads inside the backend namespace that
//! answer every request with `200 ok` and close (the upstream of the
//! gateway's proxy). Stops when its guard drops.
//!
//! Not for: being a web server (no keep-alive, no routing, bounded reads).

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Threads accepting on the one listener.
const THREADS: usize = 4;

/// A running backend; stopped (threads joined) on drop.
pub struct Backend {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Requests answered.
    pub served: Arc<AtomicU64>,
}

/// Read a request head (up to the blank line, at most 8 KiB, 2 s) and
/// answer it.
fn serve(mut s: TcpStream) {
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

impl Backend {
    /// Listen on `addr` inside `target`'s namespace and serve until dropped.
    pub fn start(target: &netns::Target, addr: SocketAddr) -> Result<Backend> {
        let listener = netns::run_in(target, || TcpListener::bind(addr))
            .context("entering the backend namespace")?
            .with_context(|| format!("backend: listening on {addr}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for _ in 0..THREADS {
            let l = listener.try_clone()?;
            let (stop, served) = (stop.clone(), served.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => {
                            let _ = s.set_nonblocking(false);
                            serve(s);
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }));
        }
        Ok(Backend {
            stop,
            threads,
            served,
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
