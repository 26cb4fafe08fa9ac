//! Text dumps of the conntrack table: `/proc/net/nf_conntrack`,
//! `conntrack -L` and `conntrack -L -o extended`, recognised line by line
//! (the two l3 columns are optional; `zone=` is optional), IPv4 and IPv6
//! (uncompressed or compressed: both parse to the same [`Addr`]).
//!
//! Reading is chunked (1 MiB, split at the last newline) and parsed on
//! several threads: the calling thread reads any `Read`, workers parse into
//! their own [`Sink`] and the sinks are merged at the end. No allocation per line, no mmap
//! (stdin and /proc cannot be mapped). gzip input is detected by its magic
//! bytes. A line that does not parse is counted, and the first few are kept
//! with their line number; nothing here panics on any input.
//!
//! Not for: opening files or stdin (`host::entries::open`), aggregation
//! (see `agg`) or netlink (see `host::entries`).

use super::entry::{self, flags, Addr, Entry, TcpState};
use std::io::{self, Read};
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};

/// Which text format a dump is in (from its first entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `/proc/net/nf_conntrack`: l3 columns and `zone=`.
    Proc,
    /// `conntrack -L -o extended`: l3 columns, no `zone=` (unless non-zero).
    ConntrackExtended,
    /// `conntrack -L`: no l3 columns.
    Conntrack,
}

/// Why a line was not an entry.
pub type LineError = &'static str;

/// Receives entries from a parser; one per worker thread, merged at the end.
pub trait Sink: Send {
    fn push(&mut self, e: &Entry);
    fn merge(&mut self, other: Self);
}

/// Two sinks fed by one pass.
impl<A: Sink, B: Sink> Sink for (A, B) {
    fn push(&mut self, e: &Entry) {
        self.0.push(e);
        self.1.push(e);
    }
    fn merge(&mut self, other: Self) {
        self.0.merge(other.0);
        self.1.merge(other.1);
    }
}

impl Sink for Vec<Entry> {
    fn push(&mut self, e: &Entry) {
        Vec::push(self, *e)
    }
    fn merge(&mut self, other: Self) {
        self.extend(other)
    }
}

/// A line that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Malformed {
    /// 1-based line number in the input.
    pub line: u64,
    pub reason: &'static str,
    /// The line, cut to 120 bytes, lossily decoded.
    pub text: String,
}

/// How many malformed lines are kept as examples.
pub const MALFORMED_KEPT: usize = 5;

/// What a parse saw besides the entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ParseStats {
    pub lines: u64,
    pub entries: u64,
    pub malformed: u64,
    pub first_malformed: Vec<Malformed>,
    pub format: Option<Format>,
    pub bytes: u64,
    /// Reading stopped because this many bytes (the limit, see
    /// [`GIVE_UP_AFTER`]) held not one entry: the rest was not read.
    pub gave_up_after: Option<u64>,
}

struct Toks<'a> {
    s: &'a [u8],
    i: usize,
}

/// Position of the first `b` in `s`, eight bytes at a time (SWAR): tokens
/// are 5–45 bytes, too short for a SIMD call to pay off.
#[inline(always)]
fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO.wrapping_mul(b as u64);
    let mut i = 0;
    while i + 8 <= s.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        let x = u64::from_le_bytes(w) ^ pat;
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(i + (t.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < s.len() {
        if s[i] == b {
            return Some(i);
        }
        i += 1;
    }
    None
}

impl<'a> Toks<'a> {
    /// The next space-separated token (runs of spaces collapse).
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.s;
        let mut i = self.i;
        while i < s.len() && s[i] == b' ' {
            i += 1;
        }
        if i >= s.len() {
            self.i = i;
            return None;
        }
        let end = find_byte(&s[i..], b' ').map_or(s.len(), |p| i + p);
        self.i = end;
        Some(&s[i..end])
    }

    /// Past the reply tuple (after its `src=`): nothing in it is counted.
    /// Jumps to the first token that can matter after it — flags `[…]`,
    /// `mark=`, `zone=` — none of whose characters ('[', 'm', 'z') can
    /// occur in a tuple (keys src/dst/sport/dport/type/code/id/packets/
    /// bytes, decimal or hex addresses).
    #[inline]
    fn skip_reply(&mut self) {
        let rest = &self.s[self.i..];
        self.i += match memchr::memchr3(b'[', b'm', b'z', rest) {
            Some(p) => memchr::memrchr(b' ', &rest[..p]).map_or(0, |q| q + 1),
            None => rest.len(),
        };
    }
}

#[inline]
fn num<T: TryFrom<u64>>(s: &[u8]) -> Option<T> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    T::try_from(v).ok()
}

#[inline]
fn ipv4(s: &[u8]) -> Option<u32> {
    let mut out: u32 = 0;
    let mut octets = 0;
    let mut cur: u32 = 0;
    let mut digits = 0;
    for &b in s {
        if b == b'.' {
            if digits == 0 || octets == 3 {
                return None;
            }
            out = out << 8 | cur;
            octets += 1;
            cur = 0;
            digits = 0;
        } else {
            let d = b.wrapping_sub(b'0');
            if d > 9 || digits == 3 {
                return None;
            }
            cur = cur * 10 + d as u32;
            if cur > 255 {
                return None;
            }
            digits += 1;
        }
    }
    if octets != 3 || digits == 0 {
        return None;
    }
    Some(out << 8 | cur)
}

/// An address as printed: IPv4 dotted, IPv6 compressed or not.
#[inline]
pub fn parse_addr(s: &[u8]) -> Option<(u8, Addr)> {
    if let Some(v4) = ipv4(s) {
        return Some((entry::AF_INET, Addr::v4(v4)));
    }
    if s.contains(&b':') && s.len() <= 45 {
        let v6: Ipv6Addr = std::str::from_utf8(s).ok()?.parse().ok()?;
        return Some((entry::AF_INET6, Addr::v6(u128::from(v6))));
    }
    None
}

/// Parse one line (without its newline). `Ok(None)`: a line that is not an
/// entry and not an error (blank, or conntrack's "N flow entries" trailer).
pub fn parse_line(line: &[u8]) -> Result<Option<(Entry, Format)>, LineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut t = Toks { s: line, i: 0 };
    let Some(tok) = t.next() else {
        return Ok(None);
    };
    if tok == b"conntrack" {
        return Ok(None);
    }
    let mut e = Entry {
        flags: flags::SEEN_REPLY,
        ..Entry::default()
    };
    let l3_col = line_head(&mut t, tok, &mut e)?;
    let mut seen = Seen::default();
    while let Some(tok) = t.next() {
        line_word(&mut t, tok, &mut e, &mut seen)?;
    }
    line_end(e, &seen, l3_col).map(Some)
}

/// What the words after a line's head have shown so far.
#[derive(Default)]
struct Seen {
    /// `src=` words: the first is the original tuple's, the second the reply's.
    nsrc: u8,
    /// `dst=` words.
    ndst: u8,
    sport: bool,
    dport: bool,
    zone: bool,
    /// TCP's state word; `NONE` is a state too (TcpState::None).
    state: bool,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    src_fam: u8,
    dst_fam: u8,
}

/// A line's head: the optional l3 columns (`ipv4 2`), the l4 protocol's
/// name and number, and the timeout, from its first word `tok` on. Returns
/// the l3 column's family, when there is one.
#[inline]
fn line_head<'a>(
    t: &mut Toks<'a>,
    mut tok: &'a [u8],
    e: &mut Entry,
) -> Result<Option<u8>, LineError> {
    let mut l3_col = None;
    if tok.starts_with(b"ipv") {
        l3_col = Some(match tok {
            b"ipv4" => entry::AF_INET,
            b"ipv6" => entry::AF_INET6,
            _ => return Err("unknown l3 protocol name"),
        });
        num::<u8>(t.next().ok_or("missing l3 number")?).ok_or("bad l3 number")?;
        tok = t.next().ok_or("missing l4 protocol")?;
    }
    if tok.is_empty() || !tok[0].is_ascii_alphabetic() {
        return Err("expected a protocol name");
    }
    e.l4 = num(t.next().ok_or("missing l4 number")?).ok_or("bad l4 number")?;
    e.timeout = num(t.next().ok_or("missing timeout")?).ok_or("bad timeout")?;
    Ok(l3_col)
}

/// One word after the head: a `[FLAG]`, TCP's state, or a `key=value`.
#[inline]
fn line_word(t: &mut Toks, tok: &[u8], e: &mut Entry, s: &mut Seen) -> Result<(), LineError> {
    if tok[0] == b'[' {
        match tok {
            b"[ASSURED]" => e.flags |= flags::ASSURED,
            b"[UNREPLIED]" => e.flags &= !flags::SEEN_REPLY,
            b"[OFFLOAD]" => e.flags |= flags::OFFLOAD,
            b"[HW_OFFLOAD]" => e.flags |= flags::HW_OFFLOAD,
            _ => {}
        }
        return Ok(());
    }
    let Some(eq) = find_byte(tok, b'=') else {
        if s.nsrc == 0 && e.l4 == entry::IPPROTO_TCP && !s.state {
            e.state = TcpState::from_name(tok).ok_or("unknown TCP state")?;
            s.state = true;
        }
        return Ok(());
    };
    let (k, v) = (&tok[..eq], &tok[eq + 1..]);
    // Ports, ICMP fields: original direction only (after the first
    // `src=`; the reply tuple is skipped below).
    let orig = s.nsrc == 1;
    match k {
        b"src" => {
            s.nsrc = s.nsrc.saturating_add(1);
            if s.nsrc == 1 {
                let (f, a) = parse_addr(v).ok_or("bad src address")?;
                s.src_fam = f;
                e.src = a;
            } else if s.nsrc == 2 {
                t.skip_reply();
            }
        }
        b"dst" => {
            s.ndst = s.ndst.saturating_add(1);
            if s.ndst == 1 {
                let (f, a) = parse_addr(v).ok_or("bad dst address")?;
                s.dst_fam = f;
                e.dst = a;
            }
        }
        b"sport" if orig && !s.sport => {
            e.sport = num(v).ok_or("bad sport")?;
            s.sport = true;
        }
        b"dport" if orig && !s.dport => {
            e.dport = num(v).ok_or("bad dport")?;
            s.dport = true;
        }
        b"type" if orig && s.icmp_type.is_none() => {
            s.icmp_type = Some(num(v).ok_or("bad icmp type")?)
        }
        b"code" if orig && s.icmp_code.is_none() => {
            s.icmp_code = Some(num(v).ok_or("bad icmp code")?)
        }
        b"id" if orig && !s.sport => {
            e.sport = num(v).ok_or("bad icmp id")?;
            s.sport = true;
        }
        b"mark" => e.mark = num(v).ok_or("bad mark")?,
        b"zone" if !s.zone => {
            e.zone = num(v).ok_or("bad zone")?;
            s.zone = true;
        }
        _ => {}
    }
    Ok(())
}

/// The checks once every word is read (both addresses, one family, ports
/// for a protocol that has them, TCP's state), the ICMP type and code as
/// the entry's dport, and which format the line is in.
#[inline]
fn line_end(mut e: Entry, s: &Seen, l3_col: Option<u8>) -> Result<(Entry, Format), LineError> {
    if s.nsrc == 0 || s.ndst == 0 {
        return Err("missing src= or dst=");
    }
    if s.src_fam != s.dst_fam {
        return Err("src and dst of different families");
    }
    e.l3 = s.src_fam;
    if let Some(l3) = l3_col {
        if l3 != e.l3 {
            return Err("address family differs from the l3 column");
        }
    }
    if e.has_ports() && !(s.sport && s.dport) {
        return Err("missing sport= or dport=");
    }
    if let (Some(ty), Some(code)) = (s.icmp_type, s.icmp_code) {
        if !e.has_ports() {
            e.dport = (ty as u16) << 8 | code as u16;
        }
    }
    if e.is_tcp() && !s.state {
        return Err("TCP entry without a state");
    }
    let fmt = match (l3_col.is_some(), s.zone) {
        (true, true) => Format::Proc,
        (true, false) => Format::ConntrackExtended,
        (false, _) => Format::Conntrack,
    };
    Ok((e, fmt))
}

/// Per-chunk bookkeeping a worker returns.
#[derive(Default)]
struct ChunkStats {
    lines: u64,
    entries: u64,
    malformed: u64,
    /// (chunk index, line within chunk (1-based), reason, text)
    examples: Vec<(u64, u64, &'static str, String)>,
    line_counts: Vec<(u64, u64)>,
    format: Option<(u64, Format)>,
}

fn parse_chunk<S: Sink>(idx: u64, buf: &[u8], sink: &mut S, st: &mut ChunkStats) {
    let mut lines = 0u64;
    let mut start = 0;
    let mut first_fmt = None;
    while start < buf.len() {
        let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |p| start + p);
        let line = &buf[start..end];
        lines += 1;
        let parsed = if line.len() >= MAX_LINE {
            Err(LONG_LINE)
        } else {
            parse_line(line)
        };
        match parsed {
            Ok(Some((e, f))) => {
                st.entries += 1;
                if first_fmt.is_none() {
                    first_fmt = Some(f);
                }
                sink.push(&e);
            }
            Ok(None) => {}
            Err(reason) => {
                st.malformed += 1;
                if st.examples.len() < MALFORMED_KEPT {
                    let cut = &line[..line.len().min(120)];
                    st.examples.push((
                        idx,
                        lines,
                        reason,
                        String::from_utf8_lossy(cut).into_owned(),
                    ));
                }
            }
        }
        start = end + 1;
    }
    st.lines += lines;
    st.line_counts.push((idx, lines));
    if let Some(f) = first_fmt {
        if st.format.is_none_or(|(i, _)| idx < i) {
            st.format = Some((idx, f));
        }
    }
}

/// Parse a whole in-memory dump on this thread (tests, small inputs).
pub fn parse_bytes<S: Sink>(buf: &[u8], sink: &mut S) -> ParseStats {
    let mut st = ChunkStats::default();
    parse_chunk(0, buf, sink, &mut st);
    finish(vec![st], buf.len() as u64)
}

fn finish(parts: Vec<ChunkStats>, bytes: u64) -> ParseStats {
    let mut counts: Vec<(u64, u64)> = parts.iter().flat_map(|p| p.line_counts.clone()).collect();
    counts.sort_unstable();
    // Lines before each chunk.
    let mut before = std::collections::HashMap::new();
    let mut acc = 0u64;
    for (i, n) in counts {
        before.insert(i, acc);
        acc += n;
    }
    let mut ex: Vec<(u64, u64, &'static str, String)> =
        parts.iter().flat_map(|p| p.examples.clone()).collect();
    ex.sort_by_key(|e| (e.0, e.1));
    ex.truncate(MALFORMED_KEPT);
    ParseStats {
        lines: parts.iter().map(|p| p.lines).sum(),
        entries: parts.iter().map(|p| p.entries).sum(),
        malformed: parts.iter().map(|p| p.malformed).sum(),
        first_malformed: ex
            .into_iter()
            .map(|(c, l, reason, text)| Malformed {
                line: before.get(&c).copied().unwrap_or(0) + l,
                reason,
                text,
            })
            .collect(),
        format: parts
            .iter()
            .filter_map(|p| p.format)
            .min_by_key(|f| f.0)
            .map(|f| f.1),
        bytes,
        gave_up_after: None,
    }
}

/// Chunk size: big enough that per-chunk costs vanish, small enough that
/// `2 × threads` of them in flight stay a few MiB.
pub const CHUNK: usize = 1 << 20;

/// Lines of this many bytes or more are malformed, whatever they hold
/// (entries are ~150–400 bytes): one line, never split into chunks.
pub const MAX_LINE: usize = CHUNK;

/// Why a line of [`MAX_LINE`] bytes or more is not an entry.
pub const LONG_LINE: LineError = "line longer than 1 MiB";

/// [`parse_reader`] stops reading after this many bytes without one entry
/// (`/dev/urandom` or any endless stream that is not a dump).
pub const GIVE_UP_AFTER: u64 = 64 << 20;

/// Wrap `r` in a gzip decoder when its first bytes are the gzip magic.
pub fn maybe_gunzip(mut r: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    let mut head = [0u8; 2];
    let mut n = 0;
    while n < 2 {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let chained: Box<dyn Read + Send> = Box::new(io::Cursor::new(head[..n].to_vec()).chain(r));
    if n == 2 && head == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(chained)))
    } else {
        Ok(chained)
    }
}

/// One `read`, retried when interrupted.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Read `r` to its end, parsing on `threads` workers, each into its own
/// sink from `make`; returns the merged sink and the parse statistics.
/// Stops early, with [`ParseStats::gave_up_after`] set, when
/// [`GIVE_UP_AFTER`] bytes held not one entry.
pub fn parse_reader<S: Sink>(
    r: impl Read,
    threads: usize,
    make: impl Fn() -> S + Sync,
) -> io::Result<(S, ParseStats)> {
    parse_reader_limited(r, threads, GIVE_UP_AFTER, make)
}

/// [`parse_reader`] giving up after `give_up` bytes without an entry.
///
/// Lines are kept whole: a chunk ends at its last newline and the rest
/// starts the next one. A chunk without a newline is the start of a line
/// of [`MAX_LINE`] bytes or more: it is sent as that one (malformed) line
/// and the rest of the line is skipped, so no part of it is ever parsed
/// as a line of its own.
pub fn parse_reader_limited<S: Sink>(
    mut r: impl Read,
    threads: usize,
    give_up: u64,
    make: impl Fn() -> S + Sync,
) -> io::Result<(S, ParseStats)> {
    let threads = threads.max(1);
    let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(threads * 2);
    let rx = Mutex::new(rx);
    let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
    // Entries parsed and chunks done so far, for the give-up rule.
    let found = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let make = &make;
    let rx = &rx;
    let (found, done) = (&found, &done);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let back = back_tx.clone();
                s.spawn(move || work(rx, back, make(), found, done))
            })
            .collect();
        drop(back_tx);
        // Whether every chunk sent so far (`sent`) held no entry. Waits for
        // the workers to finish them; a worker that ended early (it
        // panicked: resumed below) ends the wait.
        let none_found = |sent: u64| loop {
            if found.load(Ordering::Acquire) > 0 {
                return false;
            }
            if done.load(Ordering::Acquire) >= sent || workers.iter().any(|w| w.is_finished()) {
                return found.load(Ordering::Acquire) == 0;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        let res = feed(&mut r, &tx, &back_rx, give_up, none_found);
        drop(tx);
        let mut sinks = Vec::new();
        let mut stats = Vec::new();
        for w in workers {
            let (sink, st) = w.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            sinks.push(sink);
            stats.push(st);
        }
        let (total, gave_up) = res?;
        let mut it = sinks.into_iter();
        let mut merged = it.next().unwrap_or_else(make);
        for s in it {
            merged.merge(s);
        }
        let mut st = finish(stats, total);
        st.gave_up_after = gave_up.then_some(give_up);
        Ok((merged, st))
    })
}

/// A parser thread: chunks from `rx` into `sink` until the channel closes,
/// counting entries into `found` and chunks into `done`; each chunk's
/// buffer goes back to the reader on `back`.
fn work<S: Sink>(
    rx: &Mutex<mpsc::Receiver<(u64, Vec<u8>)>>,
    back: mpsc::Sender<Vec<u8>>,
    mut sink: S,
    found: &AtomicU64,
    done: &AtomicU64,
) -> (S, ChunkStats) {
    let mut st = ChunkStats::default();
    loop {
        let msg = match rx.lock() {
            Ok(g) => g.recv(),
            Err(_) => break,
        };
        let Ok((idx, buf)) = msg else { break };
        let before = st.entries;
        parse_chunk(idx, &buf, &mut sink, &mut st);
        found.fetch_add(st.entries - before, Ordering::Release);
        done.fetch_add(1, Ordering::Release);
        let _ = back.send(buf);
    }
    (sink, st)
}

/// The reading side: `r` in chunks of whole lines to the workers (`tx`),
/// buffers reused from `back_rx`, until the end of input or until `give_up`
/// bytes held no entry (`none_found(chunks sent)` says whether the workers
/// found none). Returns the bytes read and whether it gave up.
fn feed(
    r: &mut impl Read,
    tx: &mpsc::SyncSender<(u64, Vec<u8>)>,
    back_rx: &mpsc::Receiver<Vec<u8>>,
    give_up: u64,
    none_found: impl Fn(u64) -> bool,
) -> io::Result<(u64, bool)> {
    let mut f = Feed::default();
    let mut any_entry = false;
    // After each chunk: stop when `give_up` bytes held no entry.
    let mut give_up_now = |total: u64, sent: u64| -> bool {
        if any_entry || total < give_up {
            return false;
        }
        if none_found(sent) {
            return true;
        }
        any_entry = true;
        false
    };
    while !f.eof {
        let mut buf = back_rx
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK + 4096));
        f.fill(r, &mut buf)?;
        // Inside a line of MAX_LINE bytes or more: skip its rest.
        let long_line = f.cut(&mut buf);
        if !buf.is_empty() {
            if tx.send((f.idx, buf)).is_err() {
                break;
            }
            f.sent += 1;
        }
        f.idx += 1;
        if long_line && f.skip_line(r, &mut give_up_now)? {
            return Ok((f.total, true));
        }
        if give_up_now(f.total, f.sent) {
            return Ok((f.total, true));
        }
    }
    Ok((f.total, false))
}

/// Where [`feed`] is in its input.
#[derive(Default)]
struct Feed {
    /// The next chunk's index.
    idx: u64,
    /// Chunks sent to the workers.
    sent: u64,
    /// Bytes read.
    total: u64,
    /// The partial last line of the previous chunk: the next one's start.
    carry: Vec<u8>,
    /// Where the rest of a too-long line is read (and dropped).
    scratch: Vec<u8>,
    /// The end of input was read.
    eof: bool,
}

impl Feed {
    /// `buf` := the carry, then input up to [`CHUNK`] bytes (fewer at the
    /// end of input).
    fn fill(&mut self, r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        while buf.len() < CHUNK {
            let len = buf.len();
            buf.resize(CHUNK.max(len + 4096), 0);
            let n = match read_some(r, &mut buf[len..]) {
                Ok(n) => n,
                Err(e) => {
                    buf.truncate(len);
                    return Err(e);
                }
            };
            buf.truncate(len + n);
            self.total += n as u64;
            if n == 0 {
                self.eof = true;
                break;
            }
        }
        Ok(())
    }

    /// Before the end of input, keep the partial last line of `buf` for the
    /// next chunk. True when `buf` holds no newline: it is the start of a
    /// line of [`MAX_LINE`] bytes or more.
    fn cut(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.eof {
            return false;
        }
        match memchr::memrchr(b'\n', buf) {
            Some(p) => {
                self.carry.extend_from_slice(&buf[p + 1..]);
                buf.truncate(p + 1);
                false
            }
            None => true,
        }
    }

    /// Read past the rest of a too-long line (what follows its newline is
    /// carried). True when `give_up_now(total, sent)` stopped it first.
    fn skip_line(
        &mut self,
        r: &mut impl Read,
        give_up_now: &mut impl FnMut(u64, u64) -> bool,
    ) -> io::Result<bool> {
        self.scratch.resize(64 << 10, 0);
        loop {
            let n = read_some(r, &mut self.scratch)?;
            self.total += n as u64;
            if n == 0 {
                self.eof = true;
                return Ok(false);
            }
            if let Some(p) = memchr::memchr(b'\n', &self.scratch[..n]) {
                self.carry.extend_from_slice(&self.scratch[p + 1..n]);
                return Ok(false);
            }
            if give_up_now(self.total, self.sent) {
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn one(line: &str) -> Entry {
        parse_line(line.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn proc_tcp_line() {
        let (e, f) = parse_line(b"ipv4     2 tcp      6 6343 TIME_WAIT src=10.16.143.253 dst=172.16.0.13 sport=1031 dport=443 src=172.16.0.13 dst=10.16.143.253 sport=443 dport=1031 [ASSURED] mark=7 zone=3 use=2").unwrap().unwrap();
        assert_eq!(f, Format::Proc);
        assert_eq!(e.l3, entry::AF_INET);
        assert_eq!(e.l4, 6);
        assert_eq!(e.timeout, 6343);
        assert_eq!(e.state, TcpState::TimeWait);
        assert_eq!(e.src, Addr::from(Ipv4Addr::new(10, 16, 143, 253)));
        assert_eq!(e.dst, Addr::from(Ipv4Addr::new(172, 16, 0, 13)));
        assert_eq!((e.sport, e.dport), (1031, 443));
        assert!(e.assured() && !e.unreplied());
        assert_eq!((e.mark, e.zone), (7, 3));
    }

    #[test]
    fn conntrack_l_unreplied_and_udp_icmp() {
        let e = one("tcp      6 6408 SYN_SENT src=10.183.204.37 dst=172.16.0.13 sport=2118 dport=443 [UNREPLIED] src=172.16.0.13 dst=10.183.204.37 sport=443 dport=2118 mark=0 use=1");
        assert_eq!(e.state, TcpState::SynSent);
        assert!(e.unreplied() && !e.assured());
        assert_eq!((e.sport, e.dport, e.zone), (2118, 443, 0));
        let u = one("ipv4     2 udp      17 6008 src=10.170.132.79 dst=172.16.0.12 sport=1076 dport=53 src=172.16.0.12 dst=10.170.132.79 sport=53 dport=1076 [ASSURED] mark=0 zone=0 use=2");
        assert_eq!((u.l4, u.state, u.dport), (17, TcpState::None, 53));
        let i = one("icmp     1 5936 src=10.57.0.98 dst=172.16.0.11 type=8 code=0 id=3999 [UNREPLIED] src=172.16.0.11 dst=10.57.0.98 type=0 code=0 id=3999 mark=0 use=1");
        assert_eq!(i.icmp_type_code(), (8, 0));
        assert_eq!(i.sport, 3999);
        assert!(!i.has_ports() && i.unreplied());
        let o = one("tcp 6 431999 ESTABLISHED src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2 src=5.6.7.8 dst=1.2.3.4 sport=2 dport=1 [OFFLOAD] mark=0 use=1");
        assert!(o.flags & flags::OFFLOAD != 0);
    }

    #[test]
    fn tcp_state_none_is_a_state() {
        // Printed by Linux 6.18 for `conntrack -I -p tcp --state NONE …`
        // (and for any ctnetlink-created TCP entry without CTA_PROTOINFO).
        for l in [
            "tcp      6 99 NONE src=10.1.1.1 dst=10.2.2.2 sport=1000 dport=80 [UNREPLIED] src=10.2.2.2 dst=10.1.1.1 sport=80 dport=1000 mark=0 use=1",
            "ipv4     2 tcp      6 99 NONE src=10.1.1.1 dst=10.2.2.2 sport=1000 dport=80 [UNREPLIED] src=10.2.2.2 dst=10.1.1.1 sport=80 dport=1000 mark=0 zone=0 use=2",
        ] {
            let e = one(l);
            assert_eq!((e.l4, e.state, e.sport, e.dport), (6, TcpState::None, 1000, 80));
            assert!(e.unreplied());
        }
        // Still an error: a TCP line with no state word at all.
        assert!(parse_line(b"tcp 6 99 src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2").is_err());
    }

    #[test]
    fn accounting_secctx_and_directional_zones() {
        // nf_conntrack_acct=1 adds packets=/bytes= to each tuple; SELinux
        // adds secctx=; directional zones add zone-orig= in the tuple.
        let e = one("ipv4     2 tcp      6 431999 ESTABLISHED src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2 packets=3 bytes=180 zone-orig=1 src=5.6.7.8 dst=1.2.3.4 sport=2 dport=1 packets=2 bytes=120 [ASSURED] mark=9 secctx=system_u:object_r:unlabeled_t:s0 zone=4 use=1");
        assert_eq!((e.sport, e.dport, e.mark, e.zone), (1, 2, 9, 4));
        assert!(e.assured() && !e.unreplied());
        let u = one("udp 17 29 src=1.2.3.4 dst=5.6.7.8 sport=1 dport=53 packets=1 bytes=60 [UNREPLIED] src=5.6.7.8 dst=1.2.3.4 sport=53 dport=1 packets=0 bytes=0 mark=0 use=1");
        assert!(u.unreplied());
        assert_eq!(u.dport, 53);
    }

    #[test]
    fn ipv6_compressed_and_uncompressed_agree() {
        let a = one("ipv6     10 tcp      6 431999 ESTABLISHED src=2001:0db8:0000:0000:0000:0000:0000:0001 dst=2001:0db8:0000:0000:0000:0000:0000:00ff sport=40000 dport=443 src=2001:0db8:0000:0000:0000:0000:0000:00ff dst=2001:0db8:0000:0000:0000:0000:0000:0001 sport=443 dport=40000 [ASSURED] mark=0 zone=0 use=2");
        let b = one("tcp      6 431999 ESTABLISHED src=2001:db8::1 dst=2001:db8::ff sport=40000 dport=443 src=2001:db8::ff dst=2001:db8::1 sport=443 dport=40000 [ASSURED] mark=0 use=1");
        assert_eq!(a, b);
        assert_eq!(a.l3, entry::AF_INET6);
        assert_eq!(a.src.to_string(), "2001:db8::1");
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        for l in [
            "ipv4 2 tcp 6 x TIME_WAIT src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2",
            "ipv4 2 tcp 6 10 BOGUS src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2",
            "tcp 6 10 TIME_WAIT src=1.2.3.4 sport=1 dport=2",
            "tcp 6 10 TIME_WAIT src=1.2.3.400 dst=1.2.3.5 sport=1 dport=2",
            "tcp 6 10 TIME_WAIT src=1.2.3.4 dst=::1 sport=1 dport=2",
            "tcp 6 10 TIME_WAIT src=1.2.3.4 dst=1.2.3.5 sport=99999 dport=2",
            "tcp 6 10 src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2",
            "ipv6 10 tcp 6 10 CLOSE src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2",
            "garbage",
        ] {
            assert!(parse_line(l.as_bytes()).is_err(), "{l}");
        }
        assert_eq!(parse_line(b"").unwrap(), None);
        assert_eq!(
            parse_line(b"conntrack v1.4.8 (conntrack-tools): 3 flow entries have been shown.")
                .unwrap(),
            None
        );
    }

    #[test]
    fn malformed_lines_are_numbered_across_chunks() {
        let good = "tcp 6 10 CLOSE src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2 src=1.2.3.5 dst=1.2.3.4 sport=2 dport=1 mark=0 use=1\n";
        let mut text = String::new();
        for i in 1..=30_000 {
            if i == 7 || i == 25_001 {
                text.push_str("nonsense here\n");
            } else {
                text.push_str(good);
            }
        }
        let (v, st) = parse_reader(text.as_bytes(), 3, Vec::<Entry>::new).unwrap();
        assert_eq!(v.len(), 29_998);
        assert_eq!(st.entries, 29_998);
        assert_eq!(st.malformed, 2);
        assert_eq!(st.lines, 30_000);
        let lines: Vec<u64> = st.first_malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, vec![7, 25_001]);
        assert_eq!(st.format, Some(Format::Conntrack));
    }

    /// A reader that hands out at most `step` bytes per call, so chunk
    /// ends fall at many different offsets inside lines.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn chunk_boundaries_crlf_and_last_line_without_newline() {
        // 40,000 CRLF lines of varying length (≈ 4.5 MiB: several chunks),
        // the last one without a line end; sports 1..=40000, dports 1..=40000.
        let n = 40_000u64;
        let mut text = String::new();
        for i in 1..=n {
            text.push_str(&format!(
                "tcp 6 {} ESTABLISHED src=10.{}.{}.{} dst=10.0.0.1 sport={i} dport={i} \
                 src=10.0.0.1 dst=10.{}.{}.{} sport={i} dport={i} [ASSURED] mark=0 use=1\r\n",
                i % 997,
                i % 256,
                i / 256 % 256,
                i % 200 + 1,
                i % 256,
                i / 256 % 256,
                i % 200 + 1,
            ));
        }
        text.truncate(text.len() - 2);
        for (step, threads) in [(usize::MAX, 1), (usize::MAX, 3), (7_777, 2), (65_537, 4)] {
            let r = Trickle {
                data: text.as_bytes(),
                step,
            };
            let (v, st) = parse_reader(r, threads, Vec::<Entry>::new).unwrap();
            assert_eq!(st.malformed, 0, "{:?}", st.first_malformed);
            assert_eq!((st.lines, st.entries), (n, n), "step {step}");
            let sum: u64 = v.iter().map(|e| e.sport as u64).sum();
            assert_eq!(sum, n * (n + 1) / 2, "step {step}");
            assert!(v.iter().all(|e| e.sport == e.dport && e.assured()));
        }
    }

    #[test]
    fn long_lines_are_one_malformed_line_however_read() {
        let good = "tcp 6 10 CLOSE src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2 src=1.2.3.5 dst=1.2.3.4 sport=2 dport=1 mark=0 use=1";
        let pad = |n: usize| format!("{good}{}", " ".repeat(n - good.len()));
        let text = [
            good.to_string(),
            "y".repeat(3 * CHUNK + 5),
            // Its tail alone would be an entry.
            format!("{}{good}", " ".repeat(CHUNK + 10)),
            // One byte short of the limit: still a line like any other.
            pad(MAX_LINE - 1),
            pad(MAX_LINE),
            good.to_string(),
        ]
        .join("\n");
        for (step, threads) in [(usize::MAX, 1), (usize::MAX, 3), (4_099, 2), (65_537, 4)] {
            let r = Trickle {
                data: text.as_bytes(),
                step,
            };
            let (v, st) = parse_reader(r, threads, Vec::<Entry>::new).unwrap();
            let lines: Vec<(u64, &str)> = st
                .first_malformed
                .iter()
                .map(|m| (m.line, m.reason))
                .collect();
            assert_eq!(
                lines,
                vec![(2, LONG_LINE), (3, LONG_LINE), (5, LONG_LINE)],
                "step {step}"
            );
            assert_eq!((st.lines, st.entries, v.len()), (6, 3, 3), "step {step}");
            assert_eq!(st.bytes, text.len() as u64);
            assert_eq!(st.gave_up_after, None);
        }
    }

    #[test]
    fn endless_input_without_entries_is_given_up() {
        let good = "tcp 6 10 CLOSE src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2 src=1.2.3.5 dst=1.2.3.4 sport=2 dport=1 mark=0 use=1\n";
        let junk = |n: usize| "not a conntrack line\n".repeat(n / 21);
        let limit = 4u64 << 20;
        for (step, threads) in [(usize::MAX, 1), (usize::MAX, 3), (65_537, 2)] {
            // No entry at all: stops at the limit, the rest unread.
            let text = junk(16 << 20);
            let r = Trickle {
                data: text.as_bytes(),
                step,
            };
            let (_, st) = parse_reader_limited(r, threads, limit, Vec::<Entry>::new).unwrap();
            assert_eq!(st.gave_up_after, Some(limit), "step {step}");
            assert_eq!(st.entries, 0);
            assert!(
                st.bytes >= limit && st.bytes < limit + (2 << 20),
                "{}",
                st.bytes
            );
            // One entry just before the limit: read to the end, whatever
            // the workers' pace.
            let text = format!("{}{good}{}", junk((4 << 20) - 300), junk(8 << 20));
            let r = Trickle {
                data: text.as_bytes(),
                step,
            };
            let (v, st) = parse_reader_limited(r, threads, limit, Vec::<Entry>::new).unwrap();
            assert_eq!(st.gave_up_after, None, "step {step}");
            assert_eq!((v.len(), st.bytes), (1, text.len() as u64));
            // One entry after the limit is not waited for.
            let text = format!("{}{good}", junk(6 << 20));
            let (_, st) =
                parse_reader_limited(text.as_bytes(), threads, limit, Vec::<Entry>::new).unwrap();
            assert_eq!((st.gave_up_after, st.entries), (Some(limit), 0));
        }
    }

    #[test]
    fn gzip_is_read_transparently() {
        use std::io::Write;
        let text = b"tcp 6 10 CLOSE src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2 src=1.2.3.5 dst=1.2.3.4 sport=2 dport=1 mark=0 use=1\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        let bytes = gz.finish().unwrap();
        let r = maybe_gunzip(Box::new(io::Cursor::new(bytes))).unwrap();
        let (v, _) = parse_reader(r, 2, Vec::<Entry>::new).unwrap();
        assert_eq!(v.len(), 1);
        let r = maybe_gunzip(Box::new(io::Cursor::new(text.to_vec()))).unwrap();
        let (v, _) = parse_reader(r, 2, Vec::<Entry>::new).unwrap();
        assert_eq!(v.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let mut v = Vec::<Entry>::new();
            let st = parse_bytes(&bytes, &mut v);
            proptest::prop_assert_eq!(st.entries as usize, v.len());
            let _ = maybe_gunzip(Box::new(io::Cursor::new(bytes.clone()))).map(|r| parse_reader(r, 2, Vec::<Entry>::new));
        }

        #[test]
        fn mutated_lines_never_panic(cut in 0usize..200, b in proptest::num::u8::ANY) {
            let mut l = b"ipv6 10 udp 17 29 src=2001:0db8:0000:0000:0000:0000:0000:0001 dst=::2 sport=1 dport=53 [UNREPLIED] src=::2 dst=2001:db8::1 sport=53 dport=1 mark=0 zone=0 use=2".to_vec();
            if cut < l.len() { l[cut] = b; }
            let _ = parse_line(&l);
        }
    }
}
