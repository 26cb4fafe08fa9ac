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
    let mut schedule = Schedule::new(&spec);
    let mut run = Run::default();
    let mut open: Vec<Request> = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        start_due(&mut schedule, &addr, &spec, &mut open, &mut run)?;
        if schedule.done() && open.is_empty() {
            break;
        }
        expire(&mut open, &spec, &mut run);
        let Some(fds) = poll_open(&open, &schedule) else {
            continue;
        };
        let mut done = advance(&mut open, &fds, request.as_bytes());
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

/// When the requests start: `total` of them, `interval` apart from `t0`.
struct Schedule {
    t0: Instant,
    interval: Duration,
    total: u64,
    /// The next request to start.
    next: u64,
}

impl Schedule {
    fn new(spec: &Spec) -> Schedule {
        Schedule {
            t0: Instant::now(),
            interval: Duration::from_secs_f64(1.0 / spec.rate.max(0.001)),
            total: (spec.rate * spec.duration.as_secs_f64()).round() as u64,
            next: 0,
        }
    }

    /// Take the next request if it is due at `now`: the second of the run
    /// it belongs to.
    fn take_due(&mut self, now: Instant) -> Option<usize> {
        let offset = self.interval.mul_f64(self.next as f64);
        if self.next >= self.total || self.t0 + offset > now {
            return None;
        }
        self.next += 1;
        Some(offset.as_secs_f64() as usize)
    }

    /// Every request started.
    fn done(&self) -> bool {
        self.next >= self.total
    }

    /// How long to wait for sockets: until the next start, at most 10 ms.
    fn wait_ms(&self) -> i32 {
        if self.next < self.total {
            let due = self.t0 + self.interval.mul_f64(self.next as f64);
            due.saturating_duration_since(Instant::now())
                .as_millis()
                .min(10) as i32
        } else {
            10
        }
    }
}

/// Start every request that is due (a start skipped when `max_in_flight`
/// are open; a connect refused at once is a connection error).
fn start_due(
    schedule: &mut Schedule,
    addr: &SockAddr,
    spec: &Spec,
    open: &mut Vec<Request>,
    run: &mut Run,
) -> Result<()> {
    let now = Instant::now();
    while let Some(second) = schedule.take_due(now) {
        if open.len() >= spec.max_in_flight {
            run.not_started += 1;
            continue;
        }
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        sock.set_nonblocking(true)?;
        let started = Instant::now();
        match sock.connect(addr) {
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
    Ok(())
}

/// Deadlines: a request not connected within the connect timeout, or not
/// answered within the request timeout, ends as a timeout.
fn expire(open: &mut Vec<Request>, spec: &Spec, run: &mut Run) {
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
}

/// Wait for the open requests' sockets, at most until the next start or
/// 10 ms: their poll entries, or None when none is ready.
fn poll_open(open: &[Request], schedule: &Schedule) -> Option<Vec<libc::pollfd>> {
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
    let wait_ms = schedule.wait_ms();
    // SAFETY: poll(2) over a vector of pollfd we own, its length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
    (n > 0).then_some(fds)
}

/// Move the ready requests on (`fds[i]` is `open[i]`'s): a connected one
/// sends `request`, a readable one reads. The finished ones: index, outcome.
fn advance(open: &mut [Request], fds: &[libc::pollfd], request: &[u8]) -> Vec<(usize, Outcome)> {
    let mut done = Vec::new();
    for (i, p) in fds.iter().enumerate() {
        if p.revents == 0 {
            continue;
        }
        let r = &mut open[i];
        let outcome = match r.stage {
            Stage::Connecting => match r.sock.take_error() {
                Ok(None) => {
                    if (&r.sock).write_all(request).is_err() {
                        Some(Outcome::ConnError)
                    } else {
                        r.stage = Stage::Reading;
                        None
                    }
                }
                _ => Some(Outcome::ConnError),
            },
            Stage::Reading => read_answer(r),
        };
        if let Some(o) = outcome {
            done.push((i, o));
        }
    }
    done
}

/// Read what `r`'s socket has; its outcome once the answer ended.
fn read_answer(r: &mut Request) -> Option<Outcome> {
    let mut chunk = [0u8; 4096];
    loop {
        match (&r.sock).read(&mut chunk) {
            Ok(0) => return Some(classify(&r.buf)),
            Ok(k) => {
                if r.buf.len() < 65536 {
                    r.buf.extend_from_slice(&chunk[..k]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            // A reset after a full answer still counts by its status.
            Err(_) => return Some(classify(&r.buf)),
        }
    }
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
    fn the_schedule_starts_requests_on_time() {
        let spec = Spec {
            rate: 4.0,
            duration: Duration::from_millis(1500),
            ..Spec::default()
        };
        let mut s = Schedule::new(&spec);
        assert_eq!(s.total, 6);
        assert_eq!(s.take_due(s.t0), Some(0));
        assert_eq!(s.take_due(s.t0), None, "the second is 250 ms later");
        let later = s.t0 + Duration::from_millis(1300);
        let due: Vec<usize> = std::iter::from_fn(|| s.take_due(later)).collect();
        assert_eq!(due, [0, 0, 0, 1, 1]);
        assert!(s.done());
        assert_eq!(s.wait_ms(), 10);
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
