//! The lab's load: one HTTP request per connection (`Connection: close`),
//! the way a client without keep-alive hits a gateway, open loop at a fixed
//! rate for a fixed time — a request starts on schedule whether or not
//! earlier ones finished, as real clients do — bounded in count, time and
//! requests in flight. One thread in the client namespace drives every
//! request with non-blocking sockets and poll(2).
//!
//! Each request ends as ok (2xx), a 5xx answer (504 counted apart), a
//! timeout (no connection within the connect timeout — SYNs dropped by a
//! full table — or no answer within the request timeout), or a connection
//! error (refused, reset). Results are kept per second of start time.
//!
//! Not for: measuring servers (no keep-alive, no pipelining, one target).

use anyhow::{Context, Result};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Requests started per second.
    pub rate: f64,
    pub duration: Duration,
    /// A connection not made within this is a timeout (Linux resends an
    /// unanswered SYN after 1 s and 3 s).
    pub connect_timeout: Duration,
    /// The whole request, connection included.
    pub request_timeout: Duration,
    /// At most this many requests at once (then starts are skipped and
    /// counted as `not_started`).
    pub max_in_flight: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            rate: 300.0,
            duration: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(6),
            max_in_flight: 4000,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Http5xx(u16),
    Timeout,
    ConnError,
}

/// One second of a load run (by start time).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    /// Seconds since the run started.
    pub t: u64,
    pub started: u64,
    pub ok: u64,
    pub timed_out: u64,
    pub http_5xx: u64,
    pub http_504: u64,
    pub conn_errors: u64,
    /// Latency of the requests that succeeded (ms), p50 and p99.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    #[serde(skip)]
    latencies_ms: Vec<f64>,
}

/// A whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Run {
    pub requests: u64,
    pub ok: u64,
    pub timed_out: u64,
    pub http_5xx: u64,
    pub http_504: u64,
    pub conn_errors: u64,
    /// timed out + connection errors + 5xx.
    pub failed: u64,
    /// Starts skipped because `max_in_flight` requests were open.
    pub not_started: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub seconds: Vec<Second>,
}

fn percentile(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    Some((v[i.min(v.len() - 1)] * 10.0).round() / 10.0)
}

impl Run {
    fn record(&mut self, second: usize, outcome: Outcome, latency: Duration) {
        while self.seconds.len() <= second {
            let t = self.seconds.len() as u64;
            self.seconds.push(Second {
                t,
                ..Second::default()
            });
        }
        let s = &mut self.seconds[second];
        match outcome {
            Outcome::Ok => {
                s.ok += 1;
                s.latencies_ms.push(latency.as_secs_f64() * 1000.0);
            }
            Outcome::Http5xx(code) => {
                s.http_5xx += 1;
                if code == 504 {
                    s.http_504 += 1;
                }
            }
            Outcome::Timeout => s.timed_out += 1,
            Outcome::ConnError => s.conn_errors += 1,
        }
    }

    fn finish(&mut self) {
        let mut all = Vec::new();
        for s in &mut self.seconds {
            s.started = s.ok + s.http_5xx + s.timed_out + s.conn_errors;
            all.extend_from_slice(&s.latencies_ms);
            s.p50_ms = percentile(&mut s.latencies_ms, 0.5);
            s.p99_ms = percentile(&mut s.latencies_ms, 0.99);
            self.ok += s.ok;
            self.timed_out += s.timed_out;
            self.http_5xx += s.http_5xx;
            self.http_504 += s.http_504;
            self.conn_errors += s.conn_errors;
        }
        self.requests = self.ok + self.timed_out + self.http_5xx + self.conn_errors;
        self.failed = self.timed_out + self.http_5xx + self.conn_errors;
        self.p50_ms = percentile(&mut all, 0.5);
        self.p99_ms = percentile(&mut all, 0.99);
    }
}

enum Stage {
    Connecting,
    Reading,
}

struct Request {
    sock: Socket,
    stage: Stage,
    started: Instant,
    second: usize,
    buf: Vec<u8>,
}

/// The status code of an HTTP response head ("HTTP/1.1 504 …").
pub fn status_code(resp: &[u8]) -> Option<u16> {
    let line = resp.split(|b| *b == b'\n').next()?;
    let mut w = line.split(|b| *b == b' ');
    let proto = w.next()?;
    if !proto.starts_with(b"HTTP/") {
        return None;
    }
    std::str::from_utf8(w.next()?).ok()?.trim().parse().ok()
}

fn classify(resp: &[u8]) -> Outcome {
    match status_code(resp) {
        Some(c) if (200..300).contains(&c) => Outcome::Ok,
        Some(c) if c >= 500 => Outcome::Http5xx(c),
        _ => Outcome::ConnError,
    }
}

/// Run `spec` against `target` from inside `client`'s namespace; stops
/// early when `stop` is set (requests in flight are then abandoned and not
/// counted).
pub fn run(
    client: &netns::Target,
    target: SocketAddr,
    spec: Spec,
    stop: &AtomicBool,
) -> Result<Run> {
    netns::run_in(client, || drive(target, spec, stop)).context("entering the client namespace")?
}

fn drive(target: SocketAddr, spec: Spec, stop: &AtomicBool) -> Result<Run> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {target}\r\nUser-Agent: ctdoctor-lab\r\nConnection: close\r\n\r\n"
    );
    let addr = SockAddr::from(target);
    let t0 = Instant::now();
    let total = (spec.rate * spec.duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / spec.rate.max(0.001));
    let mut run = Run::default();
    let mut open: Vec<Request> = Vec::new();
    let mut next = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        // Start every request that is due.
        while next < total && t0 + interval.mul_f64(next as f64) <= now {
            let second = (interval.mul_f64(next as f64).as_secs_f64()) as usize;
            next += 1;
            if open.len() >= spec.max_in_flight {
                run.not_started += 1;
                continue;
            }
            let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            sock.set_nonblocking(true)?;
            let started = Instant::now();
            match sock.connect(&addr) {
                Ok(()) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::EINPROGRESS)
                        || e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    run.record(second, Outcome::ConnError, started.elapsed());
                    continue;
                }
            }
            open.push(Request {
                sock,
                stage: Stage::Connecting,
                started,
                second,
                buf: Vec::new(),
            });
        }
        if next >= total && open.is_empty() {
            break;
        }
        // Deadlines.
        let now = Instant::now();
        open.retain(|r| {
            let age = now.duration_since(r.started);
            let late = match r.stage {
                Stage::Connecting => age >= spec.connect_timeout,
                Stage::Reading => age >= spec.request_timeout,
            };
            if late {
                run.record(r.second, Outcome::Timeout, age);
            }
            !late
        });
        // Wait for sockets, at most until the next start or 10 ms.
        let mut fds: Vec<libc::pollfd> = open
            .iter()
            .map(|r| libc::pollfd {
                fd: r.sock.as_raw_fd(),
                events: match r.stage {
                    Stage::Connecting => libc::POLLOUT,
                    Stage::Reading => libc::POLLIN,
                },
                revents: 0,
            })
            .collect();
        let wait_ms = if next < total {
            let due = t0 + interval.mul_f64(next as f64);
            due.saturating_duration_since(Instant::now())
                .as_millis()
                .min(10) as i32
        } else {
            10
        };
        // SAFETY: poll(2) over a vector of pollfd we own, its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n <= 0 {
            continue;
        }
        let mut done = Vec::new();
        for (i, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            let r = &mut open[i];
            match r.stage {
                Stage::Connecting => match r.sock.take_error() {
                    Ok(None) => {
                        if (&r.sock).write_all(request.as_bytes()).is_err() {
                            done.push((i, Outcome::ConnError));
                        } else {
                            r.stage = Stage::Reading;
                        }
                    }
                    _ => done.push((i, Outcome::ConnError)),
                },
                Stage::Reading => {
                    let mut chunk = [0u8; 4096];
                    loop {
                        match (&r.sock).read(&mut chunk) {
                            Ok(0) => {
                                done.push((i, classify(&r.buf)));
                                break;
                            }
                            Ok(k) => {
                                if r.buf.len() < 65536 {
                                    r.buf.extend_from_slice(&chunk[..k]);
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => {
                                // A reset after a full answer still counts by its status.
                                done.push((i, classify(&r.buf)));
                                break;
                            }
                        }
                    }
                }
            }
        }
        // Remove finished requests, highest index first.
        done.sort_by_key(|d| std::cmp::Reverse(d.0));
        for (i, outcome) in done {
            let r = open.swap_remove(i);
            run.record(r.second, outcome, r.started.elapsed());
        }
    }
    run.finish();
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 504 Gateway Time-out\r\n"), Some(504));
        assert_eq!(status_code(b"HTTP/1.0 200 OK\r\n\r\nok"), Some(200));
        assert_eq!(status_code(b"garbage"), None);
        assert_eq!(status_code(b""), None);
        assert_eq!(
            classify(b"HTTP/1.1 502 Bad Gateway\r\n"),
            Outcome::Http5xx(502)
        );
        assert_eq!(classify(b""), Outcome::ConnError);
    }

    #[test]
    fn totals_add_up() {
        let mut r = Run::default();
        r.record(0, Outcome::Ok, Duration::from_millis(2));
        r.record(0, Outcome::Timeout, Duration::from_secs(3));
        r.record(2, Outcome::Http5xx(504), Duration::from_secs(1));
        r.record(2, Outcome::ConnError, Duration::from_millis(1));
        r.finish();
        assert_eq!((r.requests, r.ok, r.failed, r.http_504), (4, 1, 3, 1));
        assert_eq!(r.seconds.len(), 3);
        assert_eq!(r.seconds[1].started, 0);
        assert_eq!(r.p50_ms, Some(2.0));
    }
}
