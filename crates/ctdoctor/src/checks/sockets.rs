//! Socket-level rules: `sockets.time_wait`, `sockets.ports`,
//! `sockets.listen_overflow`, and `kernel.softnet_drops` (the per-CPU
//! backlog in front of the whole stack). Thresholds and reasons are in
//! docs/checks.md, "Sockets, fds, kernel and NIC".
//!
//! Not for: reading anything (host::sockets), or conntrack itself.

use super::{Finding, Severity};
use crate::advice::change::{self, Change};
use crate::advice::suggest;
use crate::counters::{per_sec, rise};
use crate::snapshot::{
    Destination, Fact, Facts, Listener, Snapshot, Sockets, Softnet, SoftnetCpu, Unavailable,
};
use crate::util::percent as pct;
use serde_json::json;

pub const TIME_WAIT: &str = "sockets.time_wait";
pub const PORTS: &str = "sockets.ports";
pub const LISTEN_OVERFLOW: &str = "sockets.listen_overflow";
pub const SOFTNET_DROPS: &str = "kernel.softnet_drops";

/// `sockets.ports`: share of the port range one destination may use.
pub const PORTS_WARN_PCT: f64 = 50.0;
pub const PORTS_CRIT_PCT: f64 = 90.0;
/// `sockets.time_wait`: TIME_WAIT sockets vs tcp_max_tw_buckets.
pub const TW_WARN_PCT: f64 = 80.0;

pub fn run(snap: &Snapshot) -> Vec<Finding> {
    let facts = &snap.now;
    let now = &facts.sockets;
    let earlier = snap.earlier.as_ref().and_then(|e| e.sockets.as_ref().ok());
    let secs = snap.interval_secs();
    vec![
        time_wait(facts, now, earlier, secs),
        ports(facts, now),
        listen_overflow(facts, now, earlier, secs),
        softnet_drops(facts, now, earlier, secs),
    ]
}

fn unavailable_of<T>(id: &str, f: &Fact<T>) -> Option<Finding> {
    f.as_ref().err().map(|u| Finding::unavailable(id, u))
}

fn sockets_or<'a>(id: &str, s: &'a Fact<Sockets>) -> Result<&'a Sockets, Box<Finding>> {
    s.as_ref()
        .map_err(|u| Box::new(Finding::unavailable(id, u)))
}

fn time_wait(
    facts: &Facts,
    now: &Fact<Sockets>,
    earlier: Option<&Sockets>,
    secs: Option<f64>,
) -> Finding {
    const ID: &str = TIME_WAIT;
    let s = match sockets_or(ID, now) {
        Ok(s) => s,
        Err(f) => return *f,
    };
    let tw = match s.tcp("tw") {
        Ok(v) => v,
        Err(u) => return Finding::unavailable(ID, &u),
    };
    let max = s.sysctls.tcp_max_tw_buckets.as_ref().ok().copied();
    let overflow = s.tcp_ext("TCPTimeWaitOverflow").ok();
    let overflow_rise = overflow.and_then(|o| {
        rise(
            o,
            earlier.and_then(|e| e.tcp_ext("TCPTimeWaitOverflow").ok()),
        )
    });
    let p = max.map(|m| pct(tw, m));
    let mut f = Finding::new(ID, Severity::Ok, "")
        .with("tw", tw)
        .with("tcp_max_tw_buckets", json!(max))
        .with("tw_percent_of_max", json!(p))
        .with("TCPTimeWaitOverflow", json!(overflow))
        .with("tcp_tw_reuse", json!(s.sysctls.tcp_tw_reuse.as_ref().ok()));
    if let Ok(inuse) = s.tcp("inuse") {
        f = f.with("inuse", inuse);
    }
    if let Some(r) = overflow_rise {
        f = f
            .with("TCPTimeWaitOverflow_rise", r)
            .with("TCPTimeWaitOverflow_per_sec", json!(per_sec(r, secs)));
    }
    let near = p.is_some_and(|p| p >= TW_WARN_PCT);
    // Old kernels log "TCP: time wait bucket table overflow" (machine-wide);
    // new ones only count TCPTimeWaitOverflow.
    let tw_log = facts.kmsg.as_ref().map(|k| k.tw_overflow).unwrap_or(0);
    if tw_log > 0 {
        f = f.with("tw_overflow_log_lines", tw_log);
    }
    let overflowed = overflow.unwrap_or(0) > 0 || tw_log > 0;
    let (sev, title) = if overflow_rise.unwrap_or(0) > 0 {
        (
            Severity::Warning,
            format!(
                "TIME_WAIT table overflowing now: +{} TCPTimeWaitOverflow during the sample ({tw} TIME_WAIT sockets)",
                overflow_rise.unwrap_or(0)
            ),
        )
    } else if near || overflowed {
        let mut t = match (max, p) {
            (Some(m), Some(p)) => {
                format!("{tw} TIME_WAIT sockets = {p}% of tcp_max_tw_buckets {m}")
            }
            _ => format!("{tw} TIME_WAIT sockets"),
        };
        if overflow.unwrap_or(0) > 0 {
            t.push_str(&format!(
                "; TCPTimeWaitOverflow {} since boot",
                overflow.unwrap_or(0)
            ));
        }
        if tw_log > 0 {
            t.push_str(&format!(
                "; the kernel logged \"time wait bucket table overflow\" {tw_log} time(s)"
            ));
        }
        (Severity::Warning, t)
    } else {
        (
            Severity::Ok,
            match (max, p) {
                (Some(m), Some(p)) => {
                    format!("{tw} TIME_WAIT sockets ({p}% of tcp_max_tw_buckets {m})")
                }
                _ => format!("{tw} TIME_WAIT sockets (tcp_max_tw_buckets unknown)"),
            },
        )
    };
    f.severity = sev;
    f.title = title;
    let f = f.why(
        "Every connection this host closes first waits 60 s in TIME_WAIT, holding its \
           (src, dst, ports) tuple; past tcp_max_tw_buckets the kernel skips TIME_WAIT \
           (TCPTimeWaitOverflow) and old duplicates can hit new connections. Many TIME_WAIT \
           sockets are the sign of connection churn, which also eats ephemeral ports and \
           conntrack entries.",
    );
    if sev == Severity::Ok {
        return f;
    }
    let mut f = f.note(
        "Reuse connections instead of opening one per request (nginx upstream: \
         `keepalive 32;` with `proxy_http_version 1.1;` and `proxy_set_header Connection \"\";`).",
    );
    if s.sysctls.tcp_tw_reuse.as_ref().ok() != Some(&1) {
        f = f.changes([suggest::suggested(facts, "net.ipv4.tcp_tw_reuse")]);
    }
    if near {
        f = f.changes(suggest::sysctls(
            facts,
            [(
                "net.ipv4.tcp_max_tw_buckets",
                suggest::tcp_max_tw_buckets(max),
            )],
        ));
        f = f.note("raise tcp_max_tw_buckets only if memory allows (one 256-byte object per TIME_WAIT socket)");
    }
    f
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>().is_ok_and(|a| match a {
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        a => a.is_loopback(),
    })
}

/// Ports one destination really holds: TIME_WAIT sockets are reusable for
/// new outbound connections when tcp_tw_reuse is 1, or 2 on loopback.
fn ports_held(d: &Destination, tw_reuse: Option<u64>) -> u64 {
    let reuse = match tw_reuse {
        Some(1) => true,
        Some(2) => is_loopback(&d.dst),
        _ => false,
    };
    if reuse {
        d.sockets.saturating_sub(d.time_wait)
    } else {
        d.sockets
    }
}

fn dest_label(d: &Destination) -> String {
    let dst = if d.dst.contains(':') {
        format!("[{}]", d.dst)
    } else {
        d.dst.clone()
    };
    format!("{} -> {dst}:{}", d.src, d.dport)
}

fn ports(facts: &Facts, now: &Fact<Sockets>) -> Finding {
    const ID: &str = PORTS;
    let s = match sockets_or(ID, now) {
        Ok(s) => s,
        Err(f) => return *f,
    };
    if let Some(f) = unavailable_of(ID, &s.diag) {
        return f;
    }
    if let Some(f) = unavailable_of(ID, &s.sysctls.ip_local_port_range) {
        return f;
    }
    let (Ok(diag), Ok((lo, hi)), Some(range)) = (
        &s.diag,
        &s.sysctls.ip_local_port_range,
        s.sysctls.usable_ports().filter(|n| *n > 0),
    ) else {
        return Finding::unavailable(
            ID,
            &Unavailable::malformed(
                "net.ipv4.ip_local_port_range",
                "no usable port (empty, or all reserved)",
            ),
        );
    };
    let tw_reuse = s.sysctls.tcp_tw_reuse.as_ref().ok().copied();
    let mut judged: Vec<(&Destination, u64, f64)> = diag
        .destinations
        .iter()
        .map(|d| {
            let held = ports_held(d, tw_reuse);
            (d, held, pct(held, range))
        })
        .collect();
    judged.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal));
    let mut f = Finding::new(ID, Severity::Ok, "")
        .with("ip_local_port_range", format!("{lo} {hi}"))
        .with("ports_per_destination", range)
        .with("reserved_in_range", s.sysctls.reserved_in_range())
        .with("tcp_tw_reuse", json!(tw_reuse))
        .with("tcp_sockets", diag.total)
        .with("destinations_seen", diag.destinations_seen);
    if diag.truncated {
        f = f.with("truncated", true);
    }
    let why =
        "An outbound connection needs a local port unique for its (src ip, dst ip, dst port): \
               each destination gets the whole ip_local_port_range, no more. When one runs short, \
               connect() gets EADDRNOTAVAIL or slows down searching (from 50 % used the kernel's \
               even/odd port split makes searches long); the proxy logs \"Cannot assign requested \
               address\" and answers 502/504.";
    let Some(&(worst, held, wp)) = judged.first() else {
        f.title = format!(
            "no outbound TCP destination holds ephemeral ports ({range} available per destination)"
        );
        return f.why(why);
    };
    f = f
        .with("worst_destination", dest_label(worst))
        .with("worst_sockets", worst.sockets)
        .with("worst_time_wait", worst.time_wait)
        .with("worst_ports_held", held)
        .with("worst_percent", wp);
    let short: Vec<String> = judged
        .iter()
        .filter(|j| j.2 >= PORTS_WARN_PCT)
        .take(5)
        .map(|(d, h, p)| format!("{}: {h} ports ({p}%)", dest_label(d)))
        .collect();
    if !short.is_empty() {
        f = f.with("short_destinations", short);
    }
    let sev = if wp >= PORTS_CRIT_PCT {
        Severity::Critical
    } else if wp >= PORTS_WARN_PCT {
        Severity::Warning
    } else {
        Severity::Ok
    };
    f.severity = sev;
    f.title = format!(
        "{}: {held} of {range} ephemeral ports in use ({wp}%){}",
        dest_label(worst),
        if worst.time_wait > 0 {
            format!(", {} in TIME_WAIT", worst.time_wait)
        } else {
            String::new()
        }
    );
    if sev == Severity::Ok {
        return f.why(why);
    }
    let mut f = f.why(why);
    if tw_reuse != Some(1) && worst.time_wait > 0 {
        f = f.changes([suggest::suggested(facts, "net.ipv4.tcp_tw_reuse")]);
    }
    if u64::from(*hi) - u64::from(*lo) + 1 < 64512 {
        f = f
            .changes([suggest::suggested(facts, "net.ipv4.ip_local_port_range")])
            .note("keep listening ports out of the widened range with net.ipv4.ip_local_reserved_ports");
    }
    f.note(
        "Keep connections to the upstream open instead of one per request (nginx: `keepalive 64;` \
         in the upstream block, `proxy_http_version 1.1;`, `proxy_set_header Connection \"\";`)",
    )
    .note(
        "Spread over more tuples: more upstream IPs or ports, or more source addresses \
         (nginx `proxy_bind $split_ip;` over several local IPs)",
    )
}

fn listen_overflow(
    facts: &Facts,
    now: &Fact<Sockets>,
    earlier: Option<&Sockets>,
    secs: Option<f64>,
) -> Finding {
    const ID: &str = LISTEN_OVERFLOW;
    let s = match sockets_or(ID, now) {
        Ok(s) => s,
        Err(f) => return *f,
    };
    if let Some(f) = unavailable_of(ID, &s.tcp_ext) {
        return f;
    }
    let f = Finding::new(ID, Severity::Ok, "");
    let (f, c) = overflow_counters(f, s, earlier, secs);
    let somaxconn = s.sysctls.somaxconn.as_ref().ok().copied();
    let syn_backlog = s.sysctls.tcp_max_syn_backlog.as_ref().ok().copied();
    let syncookies = s.sysctls.tcp_syncookies.as_ref().ok().copied();
    let f = f
        .with("somaxconn", json!(somaxconn))
        .with("tcp_max_syn_backlog", json!(syn_backlog))
        .with("tcp_syncookies", json!(syncookies));
    let (f, full) = full_listeners(f, s);
    let (floods, flood_text) = syn_floods(facts, s);
    let mut f = f;
    if !flood_text.is_empty() {
        f = f.with("syn_flood_log", flood_text.clone());
    }
    if let Ok(c) = s.tcp_ext("TCPReqQFullDoCookies") {
        f = f.with("TCPReqQFullDoCookies", c);
    }
    let dropping_syns = floods.iter().any(|l| !l.cookies);
    let (sev, title) = overflow_title(&c, &full, &floods, &flood_text, secs);
    f.severity = sev;
    f.title = title;
    f = f.why(
        "When a listener's accept queue (min(listen backlog, net.core.somaxconn)) is full, the \
         kernel drops the client's handshake ACK or SYN silently (ListenOverflows/ListenDrops); \
         a full SYN queue without syncookies drops SYNs (TCPReqQFullDrop). Clients retry after \
         1 s, 3 s, 7 s: slow connects and timeouts while the server looks idle. The kernel logs \
         \"Possible SYN flooding on port P. Sending cookies\" (or \"Dropping request\") once per \
         listener when its SYN queue overflows: a flood, or a backlog too small for the load \
         (the log names no netns: lines are matched to this netns's listeners by port).",
    );
    if sev == Severity::Ok {
        return f;
    }
    let flooded = s.tcp_ext("TCPReqQFullDrop").unwrap_or(0) > 0 || !floods.is_empty();
    let mut changes = queue_changes(
        facts,
        (somaxconn, syn_backlog, syncookies),
        flooded,
        dropping_syns,
    );
    // The backlog each listener gets: somaxconn as it will be (its ceiling).
    let want = changes
        .iter()
        .find(|c| c.key == "net.core.somaxconn")
        .and_then(|c| c.value.parse().ok())
        .or(somaxconn)
        .map_or(4096, |v: u64| u32::try_from(v).unwrap_or(u32::MAX));
    let raise = listeners_to_raise(s, &floods, c.rising > 0, want);
    let ns = suggest::netns_label(facts);
    let mut notes = Vec::new();
    for l in &raise {
        let flags = format!("--listen-backlog {}={want} --apply", l.port);
        match change::ctdoctor_line("tune", &flags, ns.as_deref()) {
            Some(line) => changes.push(Change::command("listen backlog", &line)),
            None => notes.push(format!(
                "netns {} has no name or pid to enter: run `ctdoctor tune --netns PID {flags}` \
                 with a pid inside it",
                ns.as_deref().unwrap_or("?")
            )),
        }
        notes.push(keep_backlog_note(l, want));
    }
    if raise.is_empty() {
        notes.push(format!(
            "raise the application's backlog too, the kernel uses the smaller of both (nginx: \
             `listen 443 backlog={want};`, then `nginx -s reload`; haproxy: `backlog {want}`)"
        ));
    }
    notes.push(
        "if the queue fills because the application accepts too slowly, add workers (nginx \
         `worker_processes auto;`, `worker_connections`) rather than only a longer queue"
            .into(),
    );
    notes.into_iter().fold(f.changes(changes), Finding::note)
}

/// How to keep a listener's raised backlog past its process's next
/// listen(): where its backlog is set.
fn keep_backlog_note(l: &Listener, want: u32) -> String {
    let port = l.port;
    match &l.owner {
        Some(o) if o.comm.starts_with("nginx") => format!(
            "keep it: nginx's next reload calls listen() with its configured backlog (511 by \
             default): add `backlog={want}` to its `listen … {port}` directive (find it: nginx -T \
             2>/dev/null | grep -n 'listen.*{port}'), then nginx -t && nginx -s reload"
        ),
        Some(o) => format!(
            "keep it: {}[{}] sets its backlog when it calls listen(): raise it in its \
             configuration (haproxy `backlog {want}`, envoy `backlog`, a server's listen option) \
             before its next restart",
            o.comm, o.pid
        ),
        None => format!(
            "keep it: the process listening on port {port} sets its backlog when it calls \
             listen(): raise it in its configuration"
        ),
    }
}

/// The settings to raise: somaxconn below 4096; when SYNs were dropped
/// (`flooded`), syncookies that are off or (`dropping_syns`) did not help,
/// and a SYN backlog below 8192 only while syncookies are off. The limits: somaxconn,
/// tcp_max_syn_backlog and tcp_syncookies as read.
fn queue_changes(
    facts: &Facts,
    (somaxconn, syn_backlog, syncookies): (Option<u64>, Option<u64>, Option<u64>),
    flooded: bool,
    dropping_syns: bool,
) -> Vec<Change> {
    let mut changes = Vec::new();
    if !matches!(somaxconn, Some(v) if v >= 4096) {
        changes.push(suggest::suggested(facts, "net.core.somaxconn"));
    }
    if flooded {
        if syncookies == Some(0) || dropping_syns {
            changes.push(suggest::suggested(facts, "net.ipv4.tcp_syncookies"));
        }
        // With syncookies on (the default) a full SYN queue answers with
        // cookies: a longer SYN backlog changes nothing (issue 21).
        if syncookies == Some(0) && !matches!(syn_backlog, Some(v) if v >= 8192) {
            changes.push(suggest::suggested(facts, "net.ipv4.tcp_max_syn_backlog"));
        }
    }
    changes
}

/// The listen overflow counters as read and as risen.
struct Overflows {
    /// The largest counter since boot.
    total: u64,
    /// The largest rise over the interval.
    rising: u64,
    /// `Name +rise` (or `Name value` without an earlier reading), non-zero only.
    parts: Vec<String>,
}

/// ListenOverflows, ListenDrops and TCPReqQFullDrop into `f`, with their
/// rises since `earlier`.
fn overflow_counters(
    mut f: Finding,
    s: &Sockets,
    earlier: Option<&Sockets>,
    secs: Option<f64>,
) -> (Finding, Overflows) {
    let names = ["ListenOverflows", "ListenDrops", "TCPReqQFullDrop"];
    let mut c = Overflows {
        total: 0,
        rising: 0,
        parts: Vec::new(),
    };
    for n in names {
        let Ok(v) = s.tcp_ext(n) else { continue };
        f = f.with(n, v);
        c.total = c.total.max(v);
        if let Some(r) = rise(v, earlier.and_then(|e| e.tcp_ext(n).ok())) {
            f = f
                .with(&format!("{n}_rise"), r)
                .with(&format!("{n}_per_sec"), json!(per_sec(r, secs)));
            c.rising = c.rising.max(r);
            if r > 0 {
                c.parts.push(format!("{n} +{r}"));
            }
        } else if v > 0 {
            c.parts.push(format!("{n} {v}"));
        }
    }
    (f, c)
}

/// Listeners whose accept queue is full right now (the kernel's
/// sk_acceptq_is_full is `queue > backlog`: listen(fd, 1) holds 2), and
/// the fullest one, into `f`.
fn full_listeners(mut f: Finding, s: &Sockets) -> (Finding, Vec<String>) {
    let full: Vec<String> = s
        .diag
        .as_ref()
        .map(|d| {
            d.listeners
                .iter()
                .filter(|l| l.queue > l.backlog)
                .map(listener_text)
                .collect()
        })
        .unwrap_or_default();
    if let Ok(d) = &s.diag {
        if let Some(l) = d.listeners.first() {
            f = f.with("fullest_listener", listener_text(l));
        }
    }
    if !full.is_empty() {
        f = f.with("full_listeners", full.clone());
    }
    (f, full)
}

/// `127.0.0.1:8080 (nginx[812]) queue 9, backlog 8`.
fn listener_text(l: &Listener) -> String {
    let who = l
        .owner
        .as_ref()
        .map(|o| format!(" ({}[{}])", o.comm, o.pid))
        .unwrap_or_default();
    format!(
        "{}:{}{who} queue {}, backlog {}",
        l.addr, l.port, l.queue, l.backlog
    )
}

/// The listeners whose backlog to raise: those full now; else those a
/// SYN-flood line names; else, while overflows rise, the fullest one with
/// a queue. Each port once, only below `want`.
fn listeners_to_raise<'a>(
    s: &'a Sockets,
    floods: &[&crate::snapshot::SynFlood],
    rising: bool,
    want: u32,
) -> Vec<&'a Listener> {
    let Ok(d) = &s.diag else { return Vec::new() };
    let pick = |keep: &dyn Fn(&Listener) -> bool| -> Vec<&'a Listener> {
        d.listeners.iter().filter(|l| keep(l)).collect()
    };
    let mut v = pick(&|l| l.queue > l.backlog);
    if v.is_empty() {
        v = pick(&|l| floods.iter().any(|x| x.port == Some(l.port)));
    }
    if v.is_empty() && rising {
        v = d.listeners.iter().take(1).filter(|l| l.queue > 0).collect();
    }
    let mut seen = std::collections::HashSet::new();
    v.retain(|l| l.backlog < want && seen.insert(l.port));
    v
}

/// "Possible SYN flooding on port [addr:]PORT" lines (machine-wide log, no
/// netns named): those whose port a listener here has, and their text.
fn syn_floods<'a>(
    facts: &'a Facts,
    s: &Sockets,
) -> (Vec<&'a crate::snapshot::SynFlood>, Vec<String>) {
    let ports: Vec<u16> = s
        .diag
        .as_ref()
        .map(|d| d.listeners.iter().map(|l| l.port).collect())
        .unwrap_or_default();
    let uptime = facts
        .system
        .as_ref()
        .ok()
        .and_then(|s| s.uptime_secs.as_ref().ok().copied());
    let floods: Vec<&crate::snapshot::SynFlood> = facts
        .kmsg
        .as_ref()
        .map(|k| {
            k.syn_flood
                .iter()
                .filter(|l| l.port.is_some_and(|p| ports.contains(&p)))
                .collect()
        })
        .unwrap_or_default();
    let flood_text: Vec<String> = floods
        .iter()
        .map(|l| {
            let ago = match (l.last_usec, uptime) {
                (Some(u), Some(up)) => {
                    format!(
                        ", last {:.0} min ago",
                        ((up - u as f64 / 1e6).max(0.0)) / 60.0
                    )
                }
                _ => String::new(),
            };
            format!(
                "{}: {} line(s), {}{ago}",
                l.socket,
                l.lines,
                if l.cookies {
                    "sending cookies"
                } else {
                    "dropping requests"
                }
            )
        })
        .collect();
    (floods, flood_text)
}

/// Severity and title: overflowing now, since boot, a full queue or a
/// logged flood, or none.
fn overflow_title(
    c: &Overflows,
    full: &[String],
    floods: &[&crate::snapshot::SynFlood],
    flood_text: &[String],
    secs: Option<f64>,
) -> (Severity, String) {
    if c.rising > 0 {
        (
            Severity::Critical,
            format!(
                "listen queues overflowing now: {}{}",
                c.parts.join(", "),
                secs.map(|s| format!(" in {s:.1} s")).unwrap_or_default()
            ),
        )
    } else if c.total > 0 && full.is_empty() && floods.is_empty() {
        // A lifetime counter alone says it happened, not that it happens.
        let how = if secs.is_some() {
            "none during the sample"
        } else {
            "not sampled: `ctdoctor check --sample 5s` says whether they still rise"
        };
        (
            Severity::Info,
            format!(
                "listen queue overflows since boot: {} ({how})",
                c.parts.join(", ")
            ),
        )
    } else if c.total > 0 || !full.is_empty() || !floods.is_empty() {
        let mut t = if c.total > 0 {
            format!("listen queue overflows since boot: {}", c.parts.join(", "))
        } else if !full.is_empty() {
            String::from("accept queue full now")
        } else {
            format!("the kernel logged SYN flooding: {}", flood_text.join("; "))
        };
        if !full.is_empty() {
            t.push_str(&format!(" ({})", full.join(", ")));
        }
        if c.total > 0 && !flood_text.is_empty() {
            t.push_str(&format!("; SYN flooding logged: {}", flood_text.join("; ")));
        }
        (Severity::Warning, t)
    } else {
        (
            Severity::Ok,
            "no listen queue overflow (ListenOverflows, ListenDrops, TCPReqQFullDrop all 0)"
                .to_string(),
        )
    }
}

/// Rise of one softnet_stat column. The rows are the online CPUs, each
/// counter 32-bit: with the same rows, the per-CPU rises taken modulo
/// 2^32 (a wrap is a rise); when a CPU came or went, only a rise of the
/// sums counts (a CPU going offline takes its counts with it).
fn softnet_rise(now: &Softnet, earlier: &Softnet, get: impl Fn(&SoftnetCpu) -> u64) -> u64 {
    if now.cpus.len() == earlier.cpus.len() {
        now.cpus
            .iter()
            .zip(&earlier.cpus)
            .filter_map(|(n, e)| crate::counters::rise_u32(get(n), Some(get(e))))
            .fold(0u64, u64::saturating_add)
    } else {
        let sum = |s: &Softnet| s.cpus.iter().map(&get).fold(0u64, u64::saturating_add);
        sum(now).saturating_sub(sum(earlier))
    }
}

fn softnet_drops(
    facts: &Facts,
    now: &Fact<Sockets>,
    earlier: Option<&Sockets>,
    secs: Option<f64>,
) -> Finding {
    const ID: &str = SOFTNET_DROPS;
    let s = match sockets_or(ID, now) {
        Ok(s) => s,
        Err(f) => return *f,
    };
    let sn = match &s.softnet {
        Ok(v) => v,
        Err(u) => return Finding::unavailable(ID, u),
    };
    let e = earlier.and_then(|e| e.softnet.as_ref().ok());
    let drop_rise = e.map(|e| softnet_rise(sn, e, |c| c.dropped));
    let squeeze_rise = e.map(|e| softnet_rise(sn, e, |c| c.time_squeeze));
    let backlog = s.sysctls.netdev_max_backlog.as_ref().ok().copied();
    let budget = s.sysctls.netdev_budget.as_ref().ok().copied();
    let mut f = Finding::new(ID, Severity::Ok, "")
        .with("processed", sn.processed)
        .with("dropped", sn.dropped)
        .with("time_squeeze", sn.time_squeeze)
        .with("cpus", sn.cpus.len() as u64)
        .with(
            "dropped_per_cpu",
            sn.cpus.iter().map(|c| c.dropped).collect::<Vec<_>>(),
        )
        .with("netdev_max_backlog", json!(backlog))
        .with("netdev_budget", json!(budget));
    if let (Some(d), Some(q)) = (drop_rise, squeeze_rise) {
        f = f
            .with("dropped_rise", d)
            .with("dropped_per_sec", json!(per_sec(d, secs)))
            .with("time_squeeze_rise", q)
            .with("time_squeeze_per_sec", json!(per_sec(q, secs)));
    }
    let (sev, title) = if drop_rise.unwrap_or(0) > 0 {
        (
            Severity::Critical,
            format!(
                "softnet backlog dropping packets now: +{} during the sample",
                drop_rise.unwrap_or(0)
            ),
        )
    } else if sn.dropped > 0 {
        (
            Severity::Warning,
            format!(
                "softnet backlog dropped {} packets since boot (netdev_max_backlog {})",
                sn.dropped,
                backlog.map_or("?".into(), |b| b.to_string())
            ),
        )
    } else if sn.time_squeeze > 0 {
        (
            Severity::Info,
            format!(
                "no softnet drops; NAPI budget ran out {} times since boot (time_squeeze)",
                sn.time_squeeze
            ),
        )
    } else {
        (
            Severity::Ok,
            format!(
                "no softnet drops ({} packets processed on {} CPUs)",
                sn.processed,
                sn.cpus.len()
            ),
        )
    };
    f.severity = sev;
    f.title = title;
    f = f.why(
        "Packets received wait in a per-CPU backlog (net.core.netdev_max_backlog) before the \
         stack runs; a full backlog drops them before conntrack or any socket sees them \
         (softnet_stat column 2). time_squeeze counts softirq runs that stopped with work left \
         (netdev_budget / netdev_budget_usecs spent): a sign the CPU cannot keep up. Counters \
         are per CPU and machine-wide, the same in every netns.",
    );
    match sev {
        Severity::Critical | Severity::Warning => f
            .changes(suggest::sysctls(
                facts,
                [(
                    "net.core.netdev_max_backlog",
                    suggest::netdev_max_backlog(backlog),
                )],
            ))
            .note(format!(
                "if time_squeeze rises too: sysctl -w net.core.netdev_budget={} net.core.netdev_budget_usecs={}",
                suggest::value("net.core.netdev_budget"),
                suggest::value("net.core.netdev_budget_usecs")
            ))
            .note(
                "spread receive work over CPUs (RSS queues: `ethtool -L IFACE combined N`, or RPS: \
                 /sys/class/net/IFACE/queues/rx-*/rps_cpus)",
            ),
        Severity::Info => f.note(format!(
            "only if drops appear: sysctl -w net.core.netdev_budget={} net.core.netdev_budget_usecs={}",
            suggest::value("net.core.netdev_budget"),
            suggest::value("net.core.netdev_budget_usecs")
        )),
        Severity::Ok => f,
    }
}
