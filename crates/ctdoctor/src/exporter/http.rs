//! The HTTP edge: a single-threaded poll(2) loop that serves GET and HEAD
//! with every resource bounded — connections ([`Limits::max_conns`]),
//! request head bytes, the time a request may take to arrive and its
//! response to leave, keep-alive requests per connection — and stops when
//! its stop fd becomes readable (SIGTERM). Request heads are parsed by
//! `httparse` (hyper's parser); we read no request bodies.
//!
//! Why not a server crate: tiny_http reads header lines without a length
//! limit (PR #232 open since 2022) and grows its thread pool without bound
//! (issue #221), the two things a metrics port must not do; hyper needs
//! tokio, a large build for three GET endpoints. This loop is ~300 lines,
//! never blocks on a client, and a slow client costs one slot, not a thread.
//!
//! Not for: what the endpoints answer (the handler passed in).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// The bounds of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; past it the one that has waited longest
    /// for its request head is closed to make room (slow clients cannot
    /// lock scrapers out).
    pub max_conns: usize,
    /// Bytes of a request head (request line and headers).
    pub head_bytes: usize,
    /// Time for a request head to arrive, and for its response to be sent.
    pub deadline: Duration,
    /// Time a kept-alive connection may stay idle between requests.
    pub idle: Duration,
    /// Requests per connection before it is closed.
    pub requests_per_conn: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 64,
            head_bytes: 8192,
            deadline: Duration::from_secs(5),
            idle: Duration::from_secs(30),
            requests_per_conn: 1000,
        }
    }
}

/// A parsed request, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path without its query string.
    pub path: String,
    pub head: bool,
    /// The Accept header, if any.
    pub accept: Option<String>,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }
}

/// What the server counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Responses by status code.
    pub responses: BTreeMap<u16, u64>,
    /// Connections closed without a complete answer (too many, too slow,
    /// reset) — malformed requests get a 4xx and count there instead.
    pub rejected: u64,
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[derive(PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Reading,
    /// Sending `out[sent..]`.
    Writing,
}

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
    deadline: Instant,
    /// When this connection started waiting for the current request.
    waiting_since: Instant,
    served: u32,
    close_after: bool,
}

impl Conn {
    fn in_request(&self) -> bool {
        self.phase == Phase::Writing || !self.inbuf.is_empty()
    }
}

/// Parse one request head from `buf`. Ok(None): incomplete. Err(status):
/// answer with that status and close.
fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(usize, Request, bool)>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.head_bytes => return Err(431),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(_) => return Err(400),
    };
    if n > limits.head_bytes {
        return Err(431);
    }
    let method = req.method.unwrap_or("");
    let mut accept = None;
    let mut keep_alive = req.version == Some(1);
    for h in req.headers.iter() {
        let name = h.name;
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if name.eq_ignore_ascii_case("content-length") && value != "0" {
            return Err(413);
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(413);
        }
        if name.eq_ignore_ascii_case("accept") {
            accept = Some(value.to_string());
        }
        if name.eq_ignore_ascii_case("connection") {
            for t in value.split(',').map(str::trim) {
                if t.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(405),
    };
    let target = req.path.unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    Ok(Some((n, Request { path, head, accept }, keep_alive)))
}

fn response_bytes(r: &Response, head: bool, close: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    )
    .into_bytes();
    if r.status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(&r.body);
    }
    out
}

/// Serve `listener` until `stop` is readable. `handle` answers each
/// request (it gets the counts so far, for the server's own metrics).
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    stop: RawFd,
    mut handle: impl FnMut(&Request, &Stats) -> Response,
) -> io::Result<Stats> {
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut stats = Stats::default();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        let now = Instant::now();
        let timeout = conns
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        fds.clear();
        fds.push(libc::pollfd {
            fd: stop,
            events: libc::POLLIN,
            revents: 0,
        });
        fds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for c in &conns {
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: if c.phase == Phase::Writing {
                    libc::POLLOUT
                } else {
                    libc::POLLIN
                },
                revents: 0,
            });
        }
        let ms = timeout.as_millis().clamp(1, 1000) as i32;
        // SAFETY: poll on our own vector of pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents != 0 {
            return Ok(stats);
        }
        // Service existing connections first (fds[2..] match conns).
        let ready: Vec<i16> = fds[2..].iter().map(|p| p.revents).collect();
        let mut keep = Vec::with_capacity(conns.len());
        for (mut c, rev) in conns.drain(..).zip(ready) {
            if step(&mut c, rev, &limits, &mut stats, &mut handle) {
                keep.push(c);
            }
        }
        conns = keep;
        // Deadlines.
        let now = Instant::now();
        conns.retain(|c| {
            let alive = now < c.deadline;
            if !alive && c.in_request() {
                stats.rejected += 1;
            }
            alive
        });
        if fds[1].revents != 0 {
            accept_all(&listener, &mut conns, &limits, &mut stats);
        }
    }
}

fn accept_all(listener: &TcpListener, conns: &mut Vec<Conn>, limits: &Limits, stats: &mut Stats) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // EMFILE and friends: try again on the next readiness.
            Err(_) => return,
        };
        if stream.set_nonblocking(true).is_err() {
            stats.rejected += 1;
            continue;
        }
        let _ = stream.set_nodelay(true);
        if conns.len() >= limits.max_conns {
            // Make room: close the connection that has waited longest for
            // its request head (a slow or idle client), else refuse this one.
            let victim = conns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.phase == Phase::Reading)
                .min_by_key(|(_, c)| c.waiting_since)
                .map(|(i, _)| i);
            stats.rejected += 1;
            match victim {
                Some(i) => {
                    conns.swap_remove(i);
                }
                None => {
                    let r = Response::text(503, "too many connections\n");
                    let _ = (&stream).write(&response_bytes(&r, false, true));
                    *stats.responses.entry(503).or_insert(0) += 1;
                    continue;
                }
            }
        }
        let now = Instant::now();
        conns.push(Conn {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            sent: 0,
            phase: Phase::Reading,
            deadline: now + limits.deadline,
            waiting_since: now,
            served: 0,
            close_after: false,
        });
    }
}

/// Advance one connection; false when it is finished (closed).
fn step(
    c: &mut Conn,
    revents: i16,
    limits: &Limits,
    stats: &mut Stats,
    handle: &mut impl FnMut(&Request, &Stats) -> Response,
) -> bool {
    if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        if c.in_request() {
            stats.rejected += 1;
        }
        return false;
    }
    if c.phase == Phase::Reading && revents & (libc::POLLIN | libc::POLLHUP) != 0 {
        let mut buf = [0u8; 4096];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    if c.in_request() {
                        stats.rejected += 1;
                    }
                    return false;
                }
                Ok(n) => {
                    // Keep at most one head's worth (plus one byte to tell).
                    let room = (limits.head_bytes + 1).saturating_sub(c.inbuf.len());
                    c.inbuf.extend_from_slice(&buf[..n.min(room)]);
                    if c.inbuf.len() > limits.head_bytes || n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    if c.in_request() {
                        stats.rejected += 1;
                    }
                    return false;
                }
            }
        }
        answer(c, limits, stats, handle);
    }
    // Write when writable, or at once when a response was just queued.
    if c.phase == Phase::Writing && (revents & (libc::POLLOUT | libc::POLLHUP) != 0 || c.sent == 0)
    {
        return flush(c, limits, stats, handle);
    }
    true
}

/// Parse what arrived; queue a response when a head is complete.
fn answer(
    c: &mut Conn,
    limits: &Limits,
    stats: &mut Stats,
    handle: &mut impl FnMut(&Request, &Stats) -> Response,
) {
    if c.phase != Phase::Reading || c.inbuf.is_empty() {
        return;
    }
    let (resp, head, close) = match parse(&c.inbuf, limits) {
        Ok(None) => return,
        Ok(Some((n, req, keep_alive))) => {
            c.inbuf.drain(..n);
            let r = handle(&req, stats);
            let close = !keep_alive || c.served + 1 >= limits.requests_per_conn;
            (r, req.head, close)
        }
        Err(code) => {
            c.inbuf.clear();
            let msg = match code {
                405 => "only GET and HEAD\n",
                413 => "requests have no body here\n",
                431 => "request head too large\n",
                _ => "malformed request\n",
            };
            (Response::text(code, msg), false, true)
        }
    };
    *stats.responses.entry(resp.status).or_insert(0) += 1;
    c.out = response_bytes(&resp, head, close);
    c.sent = 0;
    c.close_after = close;
    c.phase = Phase::Writing;
    c.deadline = Instant::now() + limits.deadline;
}

/// Send what is queued; false when the connection is finished.
fn flush(
    c: &mut Conn,
    limits: &Limits,
    stats: &mut Stats,
    handle: &mut impl FnMut(&Request, &Stats) -> Response,
) -> bool {
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(0) => {
                stats.rejected += 1;
                return false;
            }
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                stats.rejected += 1;
                return false;
            }
        }
    }
    if c.close_after {
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        return false;
    }
    c.served += 1;
    c.out = Vec::new();
    c.sent = 0;
    c.phase = Phase::Reading;
    let now = Instant::now();
    c.waiting_since = now;
    c.deadline = now
        + if c.inbuf.is_empty() {
            limits.idle
        } else {
            limits.deadline
        };
    // A pipelined request may already be complete.
    answer(c, limits, stats, handle);
    if c.phase == Phase::Writing {
        return flush(c, limits, stats, handle);
    }
    true
}

/// Choose the format from an Accept header: OpenMetrics only when it is
/// asked for with a higher quality than plain text (Prometheus sends
/// `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(a) = accept else {
        return false;
    };
    let mut om: f32 = 0.0;
    let mut text: f32 = 0.0;
    for part in a.split(',') {
        let mut it = part.split(';').map(str::trim);
        let media = it.next().unwrap_or("").to_ascii_lowercase();
        let mut q: f32 = 1.0;
        let mut version: Option<String> = None;
        for p in it {
            if let Some((k, v)) = p.split_once('=') {
                let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                if k.eq_ignore_ascii_case("q") {
                    q = v.parse().unwrap_or(0.0);
                } else if k.eq_ignore_ascii_case("version") {
                    version = Some(v.to_string());
                }
            }
        }
        match media.as_str() {
            "application/openmetrics-text" if version.as_deref().is_none_or(|v| v == "1.0.0") => {
                om = om.max(q)
            }
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    om > 0.0 && om > text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prom)));
        assert!(!wants_openmetrics(Some(
            "text/plain;version=0.0.4;q=1,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;version=0.0.1"
        )));
        assert!(wants_openmetrics(Some("application/openmetrics-text")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }

    #[test]
    fn parse_rules() {
        let l = Limits::default();
        let ok = parse(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n\r\n",
            &l,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.1.path, "/metrics");
        assert_eq!(ok.1.accept.as_deref(), Some("text/plain"));
        assert!(ok.2, "1.1 keeps alive");
        let h = parse(b"HEAD / HTTP/1.0\r\n\r\n", &l).unwrap().unwrap();
        assert!(h.1.head && !h.2, "1.0 closes");
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost:", &l), Ok(None));
        assert_eq!(parse(b"POST / HTTP/1.1\r\n\r\n", &l), Err(405));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", &l),
            Err(413)
        );
        assert_eq!(parse(b"\x00\x01garbage\r\n\r\n", &l), Err(400));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(parse(big.as_bytes(), &l), Err(431));
        let many: String = (0..80).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(
            parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), &l),
            Err(431)
        );
    }
}
