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
//! tokio, a large build for three GET endpoints. This loop (~700 lines of
//! code, comments and tests aside; ~430 before issue 22, though this doc
//! said ~300) never blocks on a client, and a slow client costs one slot,
//! not a thread.
//!
//! What changed with issue 22 (defects found by a side-by-side run):
//!
//! - **Pipelining loses nothing.** A connection's buffer holds one head's
//!   worth ([`Limits::head_bytes`] + 1); only what fits is read, the rest
//!   waits in the socket (TCP flow control) until the buffered requests are
//!   answered, in order. Before, bytes past 8 KiB of a pipelined stream were
//!   read and dropped. A peer that half-closes after its requests still gets
//!   every answer.
//! - **A client that never reads cannot hold a slot.** A response that
//!   cannot be sent within [`Limits::deadline`] closes the connection (with
//!   a reset, so the kernel drops what it still holds for it), and at
//!   [`Limits::max_conns`] a new connection closes the one stuck longest —
//!   waiting for a head or idle, or with a response that is not draining
//!   (its last write found the socket full) — else the one answered most
//!   often (a deep pipeline the kernel still buffers answers for), instead
//!   of being refused. Only when every slot is sending its first response,
//!   and it drains, is it refused (503).
//! - **RFC 9112:** HTTP/1.1 without Host, or any request with two, gets 400
//!   (§3.2); absolute-form targets (`GET http://host:9651/metrics`) are
//!   served by their path (§3.2.2); HTTP/1.0 with `Connection: keep-alive`
//!   is kept alive and told so (`Connection: keep-alive`), other 1.0
//!   requests and `Connection: close` are answered with `Connection: close`
//!   and closed.
//! - **gzip when asked:** `Accept-Encoding` with q-values (`gzip;q=0` is a
//!   no, `*` counts); a body of at least [`GZIP_MIN`] bytes is then sent
//!   with `Content-Encoding: gzip`, and such bodies carry `Vary:
//!   Accept-Encoding` either way. Prometheus asks for gzip on every scrape;
//!   docs/BENCHMARKS.md has the sizes and the CPU cost.
//! - **Every loop is bounded** in count and time: accepts per wakeup
//!   ([`ACCEPT_BURST`]), one read per wakeup, responses per wakeup on one
//!   connection ([`PIPELINE_BURST`]), each write moves bytes or stops, and
//!   poll waits at most a second or until the nearest deadline.
//!
//! Not for: what the endpoints answer (the handler passed in).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Bodies shorter than this are sent as they are, whatever was asked
/// (compressing a few hundred bytes saves less than the gzip framing costs).
pub const GZIP_MIN: usize = 1024;
/// Connections accepted per wakeup; more wait in the listen queue for the
/// next one (poll reports it at once).
pub const ACCEPT_BURST: usize = 64;
/// Responses sent back to back on one connection per wakeup, so a deep
/// pipeline cannot hold the loop; the rest follow on the next wakeups.
pub const PIPELINE_BURST: usize = 16;

/// The bounds of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; past it the one stuck longest (waiting for
    /// a request head, or with a response that is not draining), else the
    /// one answered most often, is closed to make room (slow or greedy
    /// clients cannot lock scrapers out).
    pub max_conns: usize,
    /// Bytes of a request head (request line and headers); also what a
    /// connection buffers of a pipelined stream.
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
    /// The path without its query string (of an absolute-form target too).
    pub path: String,
    pub head: bool,
    /// The Accept header, if any.
    pub accept: Option<String>,
    /// Whether `Accept-Encoding` accepts gzip (the server compresses; the
    /// handler need not look).
    pub gzip: bool,
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
    /// not reading their response, reset) — malformed requests get a 4xx
    /// and count there instead.
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

/// What happens to the connection after a response, and what its
/// `Connection` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1's default: kept alive, no header.
    Default,
    /// HTTP/1.0 that asked for it: kept alive, `Connection: keep-alive`.
    KeepAlive,
    /// `Connection: close`, then closed.
    Close,
}

/// The body's coding, and whether the response says it was negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// Not negotiated (the server's own errors, short bodies).
    Fixed,
    /// Negotiated, sent as is: `Vary: Accept-Encoding`.
    Identity,
    /// Negotiated, compressed: `Content-Encoding: gzip` and `Vary`.
    Gzip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Reading,
    /// Sending `out[sent..]`.
    Writing,
}

struct Conn {
    stream: TcpStream,
    /// Received, not yet answered: at most `head_bytes + 1`.
    inbuf: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
    deadline: Instant,
    /// When this connection started waiting for the current request.
    waiting_since: Instant,
    /// Since when the response has been blocked on a full socket (its
    /// last write moved nothing more); None while it drains.
    stalled_since: Option<Instant>,
    /// The peer has sent all it will (read returned 0): answer what is
    /// buffered, then close.
    eof: bool,
    served: u32,
    close_after: bool,
}

impl Conn {
    fn new(stream: TcpStream, now: Instant, limits: &Limits) -> Conn {
        Conn {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            sent: 0,
            phase: Phase::Reading,
            deadline: now + limits.deadline,
            waiting_since: now,
            stalled_since: None,
            eof: false,
            served: 0,
            close_after: false,
        }
    }

    fn in_request(&self) -> bool {
        self.phase == Phase::Writing || !self.inbuf.is_empty()
    }

    /// Since when it has made no progress, if it may be closed to make
    /// room: waiting for a head (or idle), or a response not draining.
    fn stuck_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::Reading => Some(self.waiting_since),
            Phase::Writing => self.stalled_since,
        }
    }

    /// Close now. A response still queued is dropped with a reset, so the
    /// kernel frees what it holds for a client that does not read.
    fn close(self) {
        if self.phase == Phase::Writing {
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

/// A request head taken from the front of a connection's buffer.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    /// Bytes of the head.
    len: usize,
    req: Request,
    persist: Persist,
}

/// What the headers said, as far as we use them.
#[derive(Default)]
struct Fields {
    hosts: usize,
    host_ok: bool,
    accept: Option<String>,
    accept_encoding: Option<String>,
    close: bool,
    keep_alive: bool,
}

impl Fields {
    /// Err(413): the request has a body.
    fn read(headers: &[httparse::Header<'_>]) -> Result<Fields, u16> {
        let mut f = Fields {
            host_ok: true,
            ..Fields::default()
        };
        for h in headers {
            let name = h.name;
            let value = std::str::from_utf8(h.value).unwrap_or("").trim();
            if name.eq_ignore_ascii_case("content-length") && value != "0" {
                return Err(413);
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(413);
            }
            if name.eq_ignore_ascii_case("host") {
                f.hosts += 1;
                f.host_ok &= valid_host(h.value.trim_ascii());
            } else if name.eq_ignore_ascii_case("accept") {
                f.accept = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("accept-encoding") {
                // Repeated fields are one comma-separated list.
                f.accept_encoding = Some(match f.accept_encoding.take() {
                    Some(a) => format!("{a}, {value}"),
                    None => value.to_string(),
                });
            } else if name.eq_ignore_ascii_case("connection") {
                for t in value.split(',').map(str::trim) {
                    f.close |= t.eq_ignore_ascii_case("close");
                    f.keep_alive |= t.eq_ignore_ascii_case("keep-alive");
                }
            }
        }
        Ok(f)
    }
}

/// A Host value: uri-host [":" port] (RFC 9110 §7.2), empty allowed.
fn valid_host(v: &[u8]) -> bool {
    v.iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(b))
}

/// The path of a request target: origin-form (`/metrics?x`) or
/// absolute-form (`http://host:9651/metrics`, RFC 9112 §3.2.2), without
/// its query. None: neither (authority- and asterisk-form belong to
/// CONNECT and OPTIONS, which get 405 first).
fn target_path(target: &str) -> Option<String> {
    let rest = if target.starts_with('/') {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        &rest[end..]
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    Some(if path.is_empty() { "/" } else { path }.to_string())
}

/// Parse one request head from `buf`. Ok(None): incomplete. Err(status):
/// answer with that status and close.
fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.head_bytes => return Err(431),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(_) => return Err(400),
    };
    if len > limits.head_bytes {
        return Err(431);
    }
    let f = Fields::read(req.headers)?;
    let head = match req.method.unwrap_or("") {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(405),
    };
    let http11 = req.version == Some(1);
    // RFC 9112 §3.2: 1.1 must name its host, and no request may name two.
    if f.hosts > 1 || !f.host_ok || (http11 && f.hosts == 0) {
        return Err(400);
    }
    let path = target_path(req.path.unwrap_or("")).ok_or(400u16)?;
    let persist = if f.close {
        Persist::Close
    } else if http11 {
        Persist::Default
    } else if f.keep_alive {
        Persist::KeepAlive
    } else {
        Persist::Close
    };
    let req = Request {
        path,
        head,
        accept: f.accept,
        gzip: wants_gzip(f.accept_encoding.as_deref()),
    };
    Ok(Some(Parsed { len, req, persist }))
}

/// A weight (`q=`) of RFC 9110 §12.4.2: 0 to 1 with at most three
/// decimals. None: not one.
fn qvalue(v: &str) -> Option<f32> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let ok = matches!(int, "0" | "1")
        && frac.len() <= 3
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || frac.bytes().all(|b| b == b'0'));
    ok.then(|| v.parse().ok()).flatten()
}

/// The weight of one element of an Accept-style list (1 when it has
/// none; 0 when it is malformed: a client that cannot say yes said no).
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    for p in params {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("q") {
                return qvalue(v.trim()).unwrap_or(0.0);
            }
        }
    }
    1.0
}

/// Whether an Accept-Encoding header accepts gzip (RFC 9110 §12.5.3):
/// `gzip` (or `x-gzip`) with a weight above 0, else `*` with one.
pub fn wants_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(a) = accept_encoding else {
        return false;
    };
    let (mut gzip, mut any): (Option<f32>, Option<f32>) = (None, None);
    for part in a.split(',') {
        let mut it = part.split(';').map(str::trim);
        let coding = it.next().unwrap_or("");
        let q = weight(it);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(gzip.map_or(q, |g| g.max(q)));
        } else if coding == "*" {
            any = Some(any.map_or(q, |g| g.max(q)));
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// gzip (RFC 1952) at level 1 with one deflate state kept across
/// responses: setting one up costs ~130 µs, five times what compressing a
/// 10 KB scrape with it then costs (docs/BENCHMARKS.md, exporter HTTP).
#[derive(Default)]
struct Gzip(Option<flate2::Compress>);

impl Gzip {
    /// `body` gzipped; None if deflate failed (sent as is then).
    fn encode(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let z = self
            .0
            .get_or_insert_with(|| flate2::Compress::new(flate2::Compression::fast(), false));
        z.reset();
        // Deflate's worst case is a few bytes per 16 KiB block over the input.
        let mut out = Vec::with_capacity(body.len() + body.len() / 8 + 64);
        // Magic, deflate, no flags, no mtime, XFL 4 (fastest), OS unknown.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
        // Bounded: each round ends the stream or doubles the room.
        for _ in 0..8 {
            let done = usize::try_from(z.total_in()).ok()?;
            let rest = body.get(done..)?;
            match z.compress_vec(rest, &mut out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => {
                    let mut crc = flate2::Crc::new();
                    crc.update(body);
                    out.extend_from_slice(&crc.sum().to_le_bytes());
                    out.extend_from_slice(&crc.amount().to_le_bytes());
                    return Some(out);
                }
                Ok(_) => out.reserve(out.capacity().max(64)),
                Err(_) => return None,
            }
        }
        None
    }
}

/// The body to send and its coding: gzip when asked and worth it.
fn negotiate(body: Vec<u8>, gzip: bool, gz: &mut Gzip) -> (Vec<u8>, Coding) {
    if body.len() < GZIP_MIN {
        return (body, Coding::Fixed);
    }
    if !gzip {
        return (body, Coding::Identity);
    }
    match gz.encode(&body) {
        Some(zipped) => (zipped, Coding::Gzip),
        None => (body, Coding::Identity),
    }
}

/// The handler, and what the server keeps to encode its answers.
struct Answers<H> {
    handle: H,
    gzip: Gzip,
}

fn response_bytes(
    status: u16,
    content_type: &str,
    body: &[u8],
    head: bool,
    persist: Persist,
    coding: Coding,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        status,
        reason(status),
        content_type,
        body.len()
    )
    .into_bytes();
    if status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    if coding == Coding::Gzip {
        out.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    if coding != Coding::Fixed {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    match persist {
        Persist::Default => {}
        Persist::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body);
    }
    out
}

/// The server's own answer to a request it will not hand on, then close.
fn error_bytes(code: u16) -> Vec<u8> {
    let msg = match code {
        405 => "only GET and HEAD\n",
        413 => "requests have no body here\n",
        431 => "request head too large\n",
        503 => "too many connections\n",
        _ => "malformed request\n",
    };
    let r = Response::text(code, msg);
    response_bytes(
        code,
        r.content_type,
        &r.body,
        false,
        Persist::Close,
        Coding::Fixed,
    )
}

/// Serve `listener` until `stop` is readable. `handle` answers each
/// request (it gets the counts so far, for the server's own metrics).
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    stop: RawFd,
    handle: impl FnMut(&Request, &Stats) -> Response,
) -> io::Result<Stats> {
    listener.set_nonblocking(true)?;
    let mut answers = Answers {
        handle,
        gzip: Gzip::default(),
    };
    let mut conns: Vec<Conn> = Vec::new();
    let mut stats = Stats::default();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        if !wait(&mut fds, stop, &listener, &conns)? {
            continue;
        }
        if fds[0].revents != 0 {
            return Ok(stats);
        }
        // Service existing connections first (fds[2..] match conns).
        let mut keep = Vec::with_capacity(conns.len());
        for (mut c, p) in conns.drain(..).zip(&fds[2..]) {
            if step(&mut c, p.revents, &limits, &mut stats, &mut answers) {
                keep.push(c);
            }
        }
        conns = keep;
        expire(&mut conns, &mut stats);
        if fds[1].revents != 0 {
            accept_some(&listener, &mut conns, &limits, &mut stats);
        }
    }
}

/// One poll(2) over the stop fd, the listener and every connection, for
/// at most a second or until the nearest deadline. False: interrupted.
fn wait(
    fds: &mut Vec<libc::pollfd>,
    stop: RawFd,
    listener: &TcpListener,
    conns: &[Conn],
) -> io::Result<bool> {
    let now = Instant::now();
    let timeout = conns
        .iter()
        .map(|c| c.deadline.saturating_duration_since(now))
        .min()
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    let pollfd = |fd, events| libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    fds.clear();
    fds.push(pollfd(stop, libc::POLLIN));
    fds.push(pollfd(listener.as_raw_fd(), libc::POLLIN));
    for c in conns {
        let events = match c.phase {
            Phase::Writing => libc::POLLOUT,
            Phase::Reading => libc::POLLIN,
        };
        fds.push(pollfd(c.stream.as_raw_fd(), events));
    }
    let ms = timeout.as_millis().clamp(1, 1000) as i32;
    // SAFETY: poll on our own vector of pollfds.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(true)
}

/// Close every connection past its deadline: a head that did not arrive,
/// a response that could not be sent, an idle keep-alive.
fn expire(conns: &mut Vec<Conn>, stats: &mut Stats) {
    let now = Instant::now();
    let mut keep = Vec::with_capacity(conns.len());
    for c in conns.drain(..) {
        if now < c.deadline {
            keep.push(c);
            continue;
        }
        if c.in_request() {
            stats.rejected += 1;
        }
        c.close();
    }
    *conns = keep;
}

/// Accept what is waiting, at most [`ACCEPT_BURST`] connections.
fn accept_some(listener: &TcpListener, conns: &mut Vec<Conn>, limits: &Limits, stats: &mut Stats) {
    for _ in 0..ACCEPT_BURST {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // WouldBlock; EMFILE and friends: try again on the next readiness.
            Err(_) => return,
        };
        if stream.set_nonblocking(true).is_err() {
            stats.rejected += 1;
            continue;
        }
        let _ = stream.set_nodelay(true);
        if conns.len() >= limits.max_conns && !make_room(conns, stats) {
            stats.rejected += 1;
            let _ = (&stream).write(&error_bytes(503));
            *stats.responses.entry(503).or_insert(0) += 1;
            continue;
        }
        conns.push(Conn::new(stream, Instant::now(), limits));
    }
}

/// At max_conns: close the connection stuck longest — waiting for its
/// request head or idle, or with a response that is not draining — else
/// the one answered most often (a client pipelining many requests whose
/// answers the kernel still takes: busy, not stuck, but it has had its
/// share and can come back). False: every connection is sending its first
/// response, and it drains.
fn make_room(conns: &mut Vec<Conn>, stats: &mut Stats) -> bool {
    let stuck = conns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.stuck_since().map(|t| (t, i)))
        .min()
        .map(|(_, i)| i);
    let busiest = || {
        conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.served > 0)
            .max_by_key(|(_, c)| c.served)
            .map(|(i, _)| i)
    };
    let Some(i) = stuck.or_else(busiest) else {
        return false;
    };
    stats.rejected += 1;
    conns.swap_remove(i).close();
    true
}

/// Advance one connection; false when it is finished (closed).
fn step(
    c: &mut Conn,
    revents: i16,
    limits: &Limits,
    stats: &mut Stats,
    answers: &mut Answers<impl FnMut(&Request, &Stats) -> Response>,
) -> bool {
    if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        if c.in_request() {
            stats.rejected += 1;
        }
        return false;
    }
    if c.phase == Phase::Reading && revents & (libc::POLLIN | libc::POLLHUP) != 0 {
        if fill(c, limits).is_err() {
            if c.in_request() {
                stats.rejected += 1;
            }
            return false;
        }
        answer(c, limits, stats, answers);
    }
    // Write when writable, or at once when a response was just queued;
    // then the next pipelined request, a bounded number of times.
    let writable = revents & (libc::POLLOUT | libc::POLLHUP) != 0;
    for _ in 0..PIPELINE_BURST {
        if c.phase != Phase::Writing || (c.stalled_since.is_some() && !writable) {
            break;
        }
        match flush(c, stats) {
            Flushed::Blocked => break,
            Flushed::Closed => return false,
            Flushed::Done if c.close_after => {
                let _ = c.stream.shutdown(std::net::Shutdown::Write);
                return false;
            }
            Flushed::Done => {
                next_request(c, limits);
                answer(c, limits, stats, answers);
            }
        }
    }
    if c.eof && c.phase == Phase::Reading {
        // The peer is done and every complete request was answered.
        if !c.inbuf.is_empty() {
            stats.rejected += 1;
        }
        return false;
    }
    true
}

/// Read what fits in the buffer (one head's worth and a byte, so an
/// oversized head is told from a complete one); the rest of a pipelined
/// stream stays in the socket until the buffered requests are answered.
/// One read: poll reports what is left.
fn fill(c: &mut Conn, limits: &Limits) -> io::Result<()> {
    let have = c.inbuf.len();
    let cap = limits.head_bytes + 1;
    if have >= cap || c.eof {
        return Ok(());
    }
    c.inbuf.resize(cap, 0);
    let r = c.stream.read(&mut c.inbuf[have..]);
    let got = match r {
        Ok(0) => {
            c.eof = true;
            0
        }
        Ok(n) => n,
        Err(ref e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            0
        }
        Err(e) => {
            c.inbuf.truncate(have);
            return Err(e);
        }
    };
    c.inbuf.truncate(have + got);
    Ok(())
}

/// Parse what arrived; queue a response when a head is complete.
fn answer(
    c: &mut Conn,
    limits: &Limits,
    stats: &mut Stats,
    answers: &mut Answers<impl FnMut(&Request, &Stats) -> Response>,
) {
    if c.phase != Phase::Reading || c.inbuf.is_empty() {
        return;
    }
    let (status, out, close) = match parse(&c.inbuf, limits) {
        Ok(None) => return,
        Ok(Some(p)) => {
            c.inbuf.drain(..p.len);
            let persist = if c.served + 1 >= limits.requests_per_conn {
                Persist::Close
            } else {
                p.persist
            };
            let r = (answers.handle)(&p.req, stats);
            let (body, coding) = negotiate(r.body, p.req.gzip, &mut answers.gzip);
            let out = response_bytes(r.status, r.content_type, &body, p.req.head, persist, coding);
            (r.status, out, persist == Persist::Close)
        }
        Err(code) => {
            // Closed after the answer: what else was buffered goes with it.
            c.inbuf.clear();
            (code, error_bytes(code), true)
        }
    };
    *stats.responses.entry(status).or_insert(0) += 1;
    c.out = out;
    c.sent = 0;
    c.stalled_since = None;
    c.close_after = close;
    c.phase = Phase::Writing;
    c.deadline = Instant::now() + limits.deadline;
}

enum Flushed {
    /// All of the response is with the kernel.
    Done,
    /// The socket is full: wait for POLLOUT (or the deadline).
    Blocked,
    /// The connection failed.
    Closed,
}

/// Send what the socket takes of the queued response. Bounded: every
/// write moves bytes or ends the call.
fn flush(c: &mut Conn, stats: &mut Stats) -> Flushed {
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(0) => {
                stats.rejected += 1;
                return Flushed::Closed;
            }
            Ok(n) => {
                c.sent += n;
                c.stalled_since = None;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                c.stalled_since.get_or_insert_with(Instant::now);
                return Flushed::Blocked;
            }
            Err(_) => {
                stats.rejected += 1;
                return Flushed::Closed;
            }
        }
    }
    Flushed::Done
}

/// A response was sent on a kept-alive connection: wait for the next
/// request (already buffered, pipelined, or still to come).
fn next_request(c: &mut Conn, limits: &Limits) {
    c.served += 1;
    c.out = Vec::new();
    c.sent = 0;
    c.stalled_since = None;
    c.phase = Phase::Reading;
    let now = Instant::now();
    c.waiting_since = now;
    c.deadline = now
        + if c.inbuf.is_empty() && !c.eof {
            limits.idle
        } else {
            limits.deadline
        };
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
        let params: Vec<&str> = it.collect();
        let q = weight(params.iter().copied());
        let version = params.iter().find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("version")
                .then(|| v.trim().trim_matches('"'))
        });
        match media.as_str() {
            "application/openmetrics-text" if version.is_none_or(|v| v == "1.0.0") => {
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
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;q=2,text/plain;q=0.5"
        )));
    }

    #[test]
    fn qvalues_and_gzip() {
        for (v, q) in [
            ("1", Some(1.0)),
            ("1.000", Some(1.0)),
            ("0", Some(0.0)),
            ("0.5", Some(0.5)),
            ("0.001", Some(0.001)),
            ("1.5", None),
            ("0.0001", None),
            ("2", None),
            ("-0", None),
            (".5", None),
            ("", None),
            ("0.5x", None),
        ] {
            assert_eq!(qvalue(v), q, "{v:?}");
        }
        for (h, yes) in [
            ("gzip", true),
            ("GZIP", true),
            ("gzip, deflate, br", true),
            ("x-gzip", true),
            ("gzip;q=0", false),
            ("gzip ; q=0.000", false),
            ("gzip;q=0.001", true),
            ("deflate, gzip;q=0.5", true),
            ("*", true),
            ("*;q=0", false),
            ("br, *;q=0.1", true),
            ("*, gzip;q=0", false),
            ("gzip;q=0, *", false),
            ("identity", false),
            ("deflate, br", false),
            ("gzip;q=banana", false),
            ("", false),
        ] {
            assert_eq!(wants_gzip(Some(h)), yes, "{h:?}");
        }
        assert!(!wants_gzip(None));
    }

    #[test]
    fn parse_rules() {
        let l = Limits::default();
        let p = |raw: &[u8]| parse(raw, &l);
        let ok = p(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\nAccept-Encoding: gzip\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(ok.req.path, "/metrics");
        assert_eq!(ok.req.accept.as_deref(), Some("text/plain"));
        assert!(ok.req.gzip);
        assert_eq!(ok.persist, Persist::Default, "1.1 keeps alive");
        let h = p(b"HEAD / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h.req.head && !h.req.gzip);
        assert_eq!(h.persist, Persist::Close, "1.0 closes");
        let ka = p(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(ka.unwrap().unwrap().persist, Persist::KeepAlive);
        let c = p(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert_eq!(c.unwrap().unwrap().persist, Persist::Close);
        // Repeated Accept-Encoding fields are one list.
        let two = p(b"GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\nAccept-Encoding: gzip;q=0.2\r\n\r\n");
        assert!(two.unwrap().unwrap().req.gzip);
        assert_eq!(p(b"GET / HTTP/1.1\r\nHost:"), Ok(None));
        assert_eq!(p(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n"), Err(405));
        assert_eq!(p(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), Err(413));
        assert_eq!(p(b"\x00\x01garbage\r\n\r\n"), Err(400));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(p(big.as_bytes()), Err(431));
        let many: String = (0..80).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(
            p(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(431)
        );
    }

    #[test]
    fn host_rule() {
        let l = Limits::default();
        let p = |raw: &[u8]| parse(raw, &l).map(|o| o.map(|x| x.req.path));
        // RFC 9112 §3.2: 1.1 without Host, two Hosts, a bad Host: 400.
        assert_eq!(p(b"GET /metrics HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(p(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Err(400));
        assert_eq!(p(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), Err(400));
        assert_eq!(p(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), Err(400));
        assert_eq!(p(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), Err(400));
        // 1.0 may leave it out; an empty Host is allowed; ports, IPv6.
        assert_eq!(p(b"GET / HTTP/1.0\r\n\r\n"), Ok(Some("/".into())));
        assert_eq!(p(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"), Ok(Some("/".into())));
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nhost: [::1]:9651\r\n\r\n"),
            Ok(Some("/".into()))
        );
    }

    #[test]
    fn request_targets() {
        for (t, path) in [
            ("/metrics", Some("/metrics")),
            ("/metrics?name[]=x", Some("/metrics")),
            ("http://host:9651/metrics", Some("/metrics")),
            ("HTTP://10.0.0.1:9651/metrics?x=1", Some("/metrics")),
            ("https://host/healthz", Some("/healthz")),
            ("http://host:9651", Some("/")),
            ("http://host?x", Some("/")),
            ("http:///metrics", None),
            ("ftp://host/metrics", None),
            ("metrics", None),
            ("*", None),
            ("host:9651", None),
        ] {
            assert_eq!(target_path(t).as_deref(), path, "{t}");
        }
        let l = Limits::default();
        let abs = parse(
            b"GET http://127.0.0.1:9651/metrics HTTP/1.1\r\nHost: 127.0.0.1:9651\r\n\r\n",
            &l,
        );
        assert_eq!(abs.unwrap().unwrap().req.path, "/metrics");
        assert_eq!(
            parse(b"GET metrics HTTP/1.1\r\nHost: a\r\n\r\n", &l),
            Err(400)
        );
    }

    #[test]
    fn gzip_only_when_worth_it() {
        let long = b"metric_name{label=\"value\"} 1\n".repeat(100);
        let mut gz = Gzip::default();
        let (z, coding) = negotiate(long.clone(), true, &mut gz);
        assert_eq!(coding, Coding::Gzip);
        assert!(z.len() < long.len() / 10, "{} of {}", z.len(), long.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, long);
        // The state is reset between bodies: another one, and the first again.
        let other: Vec<u8> = (0..5000u32)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        for body in [&other, &long] {
            let (z, coding) = negotiate(body.clone(), true, &mut gz);
            assert_eq!(coding, Coding::Gzip);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(&back, body);
        }
        assert_eq!(
            negotiate(long.clone(), false, &mut gz),
            (long, Coding::Identity)
        );
        let short = b"ok\n".to_vec();
        assert_eq!(
            negotiate(short.clone(), true, &mut gz),
            (short, Coding::Fixed)
        );
    }
}

/// The server on 127.0.0.1:0 in a thread with a trivial handler, spoken
/// to over real sockets. Every wait is bounded by a read timeout or a
/// deadline; none is a sleep.
#[cfg(test)]
mod loopback {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::thread::JoinHandle;

    /// Extra time allowed past a deadline before a test fails.
    const MARGIN: Duration = Duration::from_secs(3);

    struct Server {
        addr: std::net::SocketAddr,
        stop: UnixStream,
        thread: JoinHandle<io::Result<Stats>>,
    }

    /// `/big`: 256 KiB; `/text`: 8 KiB of exposition-like lines; `/stats`:
    /// the rejected count; `/work`: a number, after some CPU; anything else:
    /// its path.
    fn handler(req: &Request, stats: &Stats) -> Response {
        let body = match req.path.as_str() {
            "/big" => vec![b'x'; 256 << 10],
            "/text" => (0..200)
                .map(|i| format!("metric_total{{netns=\"4026531840\",i=\"{i}\"}} {i}\n"))
                .collect::<String>()
                .into_bytes(),
            "/stats" => format!("{}", stats.rejected).into_bytes(),
            // A handler that takes a while (~0.1-0.5 ms of CPU), like a render.
            "/work" => {
                let mut x = 0u64;
                for i in 0..200_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
                format!("{x}").into_bytes()
            }
            p => p.as_bytes().to_vec(),
        };
        Response {
            status: 200,
            content_type: "text/plain",
            body,
        }
    }

    fn start(limits: Limits) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (stop_r, stop) = UnixStream::pair().unwrap();
        let thread = std::thread::spawn(move || serve(l, limits, stop_r.as_raw_fd(), handler));
        Server { addr, stop, thread }
    }

    impl Server {
        fn connect(&self) -> TcpStream {
            let s = TcpStream::connect(self.addr).unwrap();
            s.set_read_timeout(Some(Limits::default().deadline + MARGIN))
                .unwrap();
            s
        }

        /// One request on a fresh connection: (head, body).
        fn get(&self, raw: &str) -> (String, Vec<u8>) {
            let mut s = self.connect();
            s.write_all(raw.as_bytes()).unwrap();
            read_response(&mut s)
        }

        fn stop(mut self) -> Stats {
            self.stop.write_all(b"x").unwrap();
            self.thread.join().unwrap().unwrap()
        }
    }

    /// One Content-Length framed response, never past its end; panics on
    /// a timeout (the read timeout bounds every read).
    fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert!(head.len() < 8192, "head too long");
            let n = s.read(&mut byte).expect("read response head");
            assert!(n > 0, "closed before a response head: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).expect("read response body");
        (head, body)
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// True when the peer closed: read returns 0 (or a reset).
    fn closed(s: &mut TcpStream) -> bool {
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    #[test]
    fn forty_pipelined_requests_get_forty_answers_in_order() {
        let srv = start(Limits::default());
        let mut raw = String::new();
        for i in 0..40 {
            let mut r = format!("GET /r/{i:02} HTTP/1.1\r\nHost: t\r\nX-Pad: ");
            let pad = 300 - r.len() - 4;
            r.push_str(&"p".repeat(pad));
            r.push_str("\r\n\r\n");
            assert_eq!(r.len(), 300);
            raw.push_str(&r);
        }
        let mut s = srv.connect();
        s.write_all(raw.as_bytes()).unwrap();
        for i in 0..40 {
            let (head, body) = read_response(&mut s);
            assert!(head.starts_with("HTTP/1.1 200 "), "{i}: {head}");
            assert_eq!(body, format!("/r/{i:02}").into_bytes(), "answer {i}");
        }
        // The same stream, then a half-close: every answer still comes.
        let mut s = srv.connect();
        s.write_all(raw.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        for i in 0..40 {
            assert_eq!(read_response(&mut s).1, format!("/r/{i:02}").into_bytes());
        }
        assert!(closed(&mut s), "closed after the last answer");
        let stats = srv.stop();
        assert_eq!(stats.responses.get(&200), Some(&80));
        assert_eq!(stats.rejected, 0);
    }

    /// A client that never reads: small receive buffer, 40 pipelined
    /// requests for 256 KiB each, so the server's writes block at once.
    fn never_reader(addr: std::net::SocketAddr) -> TcpStream {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.connect(&addr.into()).unwrap();
        let mut s: TcpStream = s.into();
        // It may already be closed to make room: a failed write is fine.
        let _ = s.write_all("GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(40).as_bytes());
        s
    }

    #[test]
    fn hundred_never_reading_clients_do_not_lock_a_scraper_out() {
        let limits = Limits {
            deadline: Duration::from_secs(2),
            ..Limits::default()
        };
        let srv = start(limits);
        let hogs: Vec<TcpStream> = (0..100).map(|_| never_reader(srv.addr)).collect();
        let t0 = Instant::now();
        let mut s = srv.connect();
        s.set_read_timeout(Some(limits.deadline + MARGIN)).unwrap();
        s.write_all(b"GET /scrape HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let (head, body) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body, b"/scrape");
        assert!(t0.elapsed() < limits.deadline + MARGIN);
        // Every hog is closed by the server within a deadline (evicted,
        // refused, or its response timed out), without reading a byte:
        // ask the server how many it gave up on, until all 100 (bounded).
        let until = Instant::now() + limits.deadline + MARGIN;
        let rejected = loop {
            s.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let n: u64 = String::from_utf8(read_response(&mut s).1)
                .unwrap()
                .parse()
                .unwrap();
            if n >= 100 || Instant::now() > until {
                break n;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(rejected >= 100, "{rejected} of 100 never-readers closed");
        drop(hogs);
        srv.stop();
    }

    /// Clients that pipeline many requests for small answers and then
    /// read no more: the kernel takes their answers for a while, so they
    /// are not stuck, only busy (the server renders for them). Every slot
    /// so taken, a scraper still gets in at its first attempt (the client
    /// answered most often makes room).
    #[test]
    fn pipelining_clients_cannot_take_every_slot() {
        let limits = Limits {
            max_conns: 16,
            ..Limits::default()
        };
        let srv = start(limits);
        let mut busy: Vec<TcpStream> = (0..limits.max_conns)
            .map(|_| {
                let mut s = srv.connect();
                let raw = "GET /work HTTP/1.1\r\nHost: t\r\n\r\n".repeat(200);
                s.write_all(raw.as_bytes()).unwrap();
                s
            })
            .collect();
        // Each is being served (its first answer came), then reads no more.
        for s in busy.iter_mut() {
            read_response(s);
        }
        for k in 0..3 {
            let (head, body) = srv.get("GET /scrape HTTP/1.1\r\nHost: t\r\n\r\n");
            assert!(head.starts_with("HTTP/1.1 200 "), "scrape {k}: {head}");
            assert_eq!(body, b"/scrape");
        }
        drop(busy);
        let stats = srv.stop();
        assert_eq!(stats.responses.get(&503), None, "nobody refused");
    }

    #[test]
    fn http_versions_host_and_connection() {
        let srv = start(Limits::default());
        // 1.1 without Host: 400, closed.
        let mut s = srv.connect();
        s.write_all(b"GET /x HTTP/1.1\r\n\r\n").unwrap();
        let (head, _) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
        assert_eq!(header(&head, "connection"), Some("close"));
        assert!(closed(&mut s));
        // Absolute-form: served by its path.
        let (head, body) = srv
            .get("GET http://127.0.0.1:9651/metrics?a=b HTTP/1.1\r\nHost: 127.0.0.1:9651\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body, b"/metrics");
        // 1.1 Connection: close: answered, said, closed.
        let mut s = srv.connect();
        s.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (head, _) = read_response(&mut s);
        assert_eq!(header(&head, "connection"), Some("close"));
        assert!(closed(&mut s));
        // 1.0 keep-alive: kept and told so; a second request on it.
        let mut s = srv.connect();
        for p in ["/k1", "/k2"] {
            s.write_all(format!("GET {p} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
                .unwrap();
            let (head, body) = read_response(&mut s);
            assert_eq!(header(&head, "connection"), Some("keep-alive"), "{head}");
            assert_eq!(body, p.as_bytes());
        }
        // 1.0 plain: Connection: close, closed.
        s = srv.connect();
        s.write_all(b"GET /c HTTP/1.0\r\n\r\n").unwrap();
        let (head, _) = read_response(&mut s);
        assert_eq!(header(&head, "connection"), Some("close"));
        assert!(closed(&mut s));
        // 1.1 keep-alive: no header, still open for the next one.
        let mut s = srv.connect();
        for p in ["/d1", "/d2"] {
            s.write_all(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
                .unwrap();
            let (head, body) = read_response(&mut s);
            assert_eq!(header(&head, "connection"), None, "{head}");
            assert_eq!(body, p.as_bytes());
        }
        let stats = srv.stop();
        assert_eq!(stats.responses.get(&400), Some(&1));
    }

    #[test]
    fn gzip_round_trip() {
        let srv = start(Limits::default());
        let req =
            |ae: &str| format!("GET /text HTTP/1.1\r\nHost: t\r\n{ae}Connection: close\r\n\r\n");
        let (plain_head, plain) = srv.get(&req(""));
        assert_eq!(header(&plain_head, "content-encoding"), None);
        assert_eq!(header(&plain_head, "vary"), Some("Accept-Encoding"));
        assert!(plain.len() >= 8000);
        let (head, zipped) = srv.get(&req("Accept-Encoding: gzip\r\n"));
        assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
        assert_eq!(header(&head, "vary"), Some("Accept-Encoding"));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, plain, "gzip decodes to the plain body");
        assert!(
            zipped.len() * 4 < plain.len(),
            "{} vs {}",
            zipped.len(),
            plain.len()
        );
        // Refused with q=0: plain.
        let (head, body) = srv.get(&req("Accept-Encoding: gzip;q=0, br\r\n"));
        assert_eq!(header(&head, "content-encoding"), None);
        assert_eq!(body, plain);
        // HEAD: the same length as the GET would send, no body.
        let mut s = srv.connect();
        s.write_all(
            b"HEAD /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let all = String::from_utf8(all).unwrap();
        assert!(all.ends_with("\r\n\r\n"), "{all}");
        assert_eq!(
            header(&all, "content-length"),
            Some(zipped.len().to_string().as_str())
        );
        // Short bodies are sent as they are.
        let (head, body) = srv.get("GET /s HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
        assert_eq!(header(&head, "content-encoding"), None);
        assert_eq!(body, b"/s");
        srv.stop();
    }
}
