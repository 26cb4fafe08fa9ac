//! Conntrack table rules: `conntrack.table_full`, `conntrack.usage`,
//! `conntrack.drops`, `conntrack.hash_load`, `conntrack.memory`,
//! `conntrack.timeouts`. Each emits exactly one finding per run (ok when
//! fine, info "not checked" when its input is unavailable). Thresholds and
//! reasoning: docs/checks.md, "Conntrack table".
//!
//! Pure: everything comes from the snapshot (no clock: "now" is the
//! uptime read with the log).
//!
//! Not for: persistence of the values (checks::persist) or the table's
//! contents (state mix).

use super::{Finding, Severity};
pub use crate::advice::sizing::{full_table_bytes, mean_chain};
use crate::advice::sizing::{ASSUMED_OBJSIZE, EXT_FACTOR};
use crate::advice::suggest;
use crate::kernel;
use crate::snapshot::{Conntrack, Facts, Kmsg, Snapshot, Stat, Unavailable};
use crate::util::{bytes, pct_text as pct, thousands};

pub const TABLE_FULL: &str = "conntrack.table_full";
pub const USAGE: &str = "conntrack.usage";
pub const DROPS: &str = "conntrack.drops";
pub const HASH_LOAD: &str = "conntrack.hash_load";
pub const MEMORY: &str = "conntrack.memory";
pub const TIMEOUTS: &str = "conntrack.timeouts";
pub const EXPECT_TABLE: &str = "conntrack.expect_table";

/// A table-full line this recent (seconds), with the table still at least
/// [`NEAR_FULL`] full, means "it is happening" (without `--sample`).
pub const RECENT_SECS: f64 = 60.0;
/// Usage from which a recent line still counts as "happening now": gc relief
/// after a failure frees a wave of entries (261,887 of 262,144 left, seen here).
pub const NEAR_FULL: f64 = 0.95;
/// Usage thresholds (fraction of max).
pub const USAGE_WARN: f64 = 0.75;
pub const USAGE_CRIT: f64 = 0.90;
/// Mean chain length thresholds.
pub const CHAIN_WARN: f64 = 2.0;
pub const CHAIN_CRIT: f64 = 8.0;
/// A full table costing more than this share of RAM is a warning.
pub const MEMORY_WARN_SHARE: f64 = suggest::MEMORY_WARN_SHARE;
/// Long timeouts become a warning when the table is at least this full
/// (or drops/evictions happened).
pub const TIMEOUT_PRESSURE: f64 = 0.5;
pub use crate::kernel::NETNS_IN_LOG;

pub fn run(snap: &Snapshot) -> Vec<Finding> {
    vec![
        table_full(snap),
        usage(snap),
        drops(snap),
        hash_load(snap),
        memory(snap),
        timeouts(snap),
        expect_table(snap),
    ]
}

// ---- helpers -------------------------------------------------------------

fn is_init(f: &Facts) -> bool {
    f.is_init()
}

fn version(f: &Facts) -> Option<kernel::Version> {
    f.system.as_ref().ok().and_then(|s| s.kernel_version)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Counter increase between the two readings, when both are known (the
/// per-CPU counters are 32-bit: a wrap is a rise, not a fall).
fn rise(snap: &Snapshot, get: impl Fn(&Stat) -> Option<u64>) -> Option<u64> {
    let e = snap.earlier.as_ref()?.stat.as_ref().ok()?;
    let n = snap.now.stat.as_ref().ok()?;
    crate::counters::rise_u32(get(n)?, Some(get(e)?))
}

/// The sizing changes and notes for a rule that wants more room (max and
/// the buckets it needs).
fn room_fix(f: Finding, facts: &Facts) -> Finding {
    let Some(s) = suggest::sizing(facts) else {
        return f;
    };
    let mut f = f.changes(suggest::sizing_changes(facts, &s, suggest::Part::Max));
    if let Some(m) = s.max {
        f = f.note(format!(
            "max {} = {}; buckets {}, mean chain {:.2} when full, a full table takes {} ({} of RAM)",
            thousands(m),
            s.reason,
            thousands(s.size.buckets),
            s.size.mean_chain_at_max,
            bytes(s.size.full_table_bytes),
            pct(s.size.ram_share)
        ));
    } else if s.capped_by_memory {
        f = f.note(format!(
            "no raise of max: past {} entries a full table would take more than 10 % of RAM",
            thousands(s.budget_max)
        ));
    }
    f.note(
        "and make entries leave sooner (conntrack.timeouts), or track less (NOTRACK rules, \
         see conntrack.consumers)",
    )
}

// ---- conntrack.table_full ------------------------------------------------

/// The table-full lines that concern a namespace, as judged from one log.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// Lines naming this netns's inode (or, on >= 6.17 in the init netns,
    /// the inode-less form, which only the init netns prints there),
    /// logged after `since_usec` when that is known.
    pub own_lines: u64,
    pub own_first_usec: Option<u64>,
    pub own_last_usec: Option<u64>,
    /// Lines naming this inode but logged before this namespace existed:
    /// an earlier namespace's (inodes are reused).
    pub earlier_netns_lines: u64,
    /// Inode-less lines that could be any namespace's (kernels < 6.17).
    pub unattributed_lines: u64,
    pub unattributed_last_usec: Option<u64>,
}

/// Slack (µs) between the kmsg clock and btime + uptime: a line this much
/// before the namespace's pin time still counts as its own.
pub const CLOCK_SLACK_USEC: u64 = 2_000_000;

/// Which table-full lines belong to the namespace `inode` (pure).
/// `since_usec`: when the namespace provably existed from (µs since boot,
/// from its pin time); lines naming its inode before that are an earlier
/// namespace's.
pub fn attribute(
    k: &Kmsg,
    inode: Option<u64>,
    init: bool,
    version: Option<kernel::Version>,
    since_usec: Option<u64>,
) -> Attribution {
    let mut a = Attribution {
        own_lines: 0,
        own_first_usec: None,
        own_last_usec: None,
        earlier_netns_lines: 0,
        unattributed_lines: 0,
        unattributed_last_usec: None,
    };
    let merge = |a: &mut Attribution, t: &crate::snapshot::TableFull, since: Option<u64>| {
        let cut = since
            .map(|s| s.saturating_sub(CLOCK_SLACK_USEC))
            .unwrap_or(0);
        // Lines without a time (and times dropped beyond MAX_TIMES) count as ours.
        let untimed = t.lines.saturating_sub(t.times_usec.len() as u64);
        let mine: Vec<u64> = t.times_usec.iter().copied().filter(|u| *u >= cut).collect();
        a.earlier_netns_lines += (t.times_usec.len() - mine.len()) as u64;
        a.own_lines += untimed + mine.len() as u64;
        let (first, last) = if t.times_usec.is_empty() {
            (t.first_usec, t.last_usec)
        } else {
            (mine.iter().copied().min(), mine.iter().copied().max())
        };
        a.own_first_usec = match (a.own_first_usec, first) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        a.own_last_usec = a.own_last_usec.max(last);
    };
    if let Some(ino) = inode {
        if let Some(t) = k.table_full_for(Some(ino)) {
            merge(&mut a, t, if init { None } else { since_usec });
        }
    }
    if let Some(t) = k.table_full_for(None) {
        let new_kernel = version.is_some_and(|v| v >= NETNS_IN_LOG);
        if new_kernel && init {
            merge(&mut a, t, None);
        } else if !new_kernel {
            a.unattributed_lines = t.lines;
            a.unattributed_last_usec = t.last_usec;
        }
        // new kernel, child netns: the inode-less lines are the init netns's.
    }
    a
}

/// Since when (µs since boot) the namespace provably exists: its pin
/// time, for a pinned namespace other than the init one. The `since_usec`
/// of [`attribute`].
pub fn since_usec(f: &Facts) -> Option<u64> {
    let pinned = f.netns.as_ref().ok().and_then(|n| n.pinned_since_unix);
    let boot = f
        .system
        .as_ref()
        .ok()
        .and_then(|s| s.boot_time_unix.clone().ok());
    match (pinned, boot) {
        (Some(p), Some(b)) if !is_init(f) => {
            Some((p.saturating_sub(b).max(0) as u64).saturating_mul(1_000_000))
        }
        _ => None,
    }
}

/// [`attribute`] for a namespace's facts and a log.
pub fn attribute_for(f: &Facts, k: &Kmsg) -> Attribution {
    let inode = f.netns.as_ref().ok().and_then(|n| n.inode);
    attribute(k, inode, is_init(f), version(f), since_usec(f))
}

/// What `conntrack.table_full` judges, gathered from the facts.
#[derive(Debug, Default)]
struct FullEvidence {
    count: Option<u64>,
    max: Option<u64>,
    drop: u64,
    /// Rise of `drop` during `--sample`, when sampled.
    drop_rise: Option<u64>,
    /// The kernel log was read.
    log_read: bool,
    /// Why it was not.
    log_error: Option<Unavailable>,
    /// Lines for this netns, and inode-less lines (kernels < 6.17).
    own_lines: u64,
    unattributed_lines: u64,
    /// Seconds since the newest own / inode-less line (when timed).
    own_ago: Option<f64>,
    unattr_ago: Option<f64>,
    /// The newest line that counts for this netns: µs since boot, seconds ago.
    last_line: Option<u64>,
    last_ago: Option<f64>,
}

impl FullEvidence {
    fn usage(&self) -> Option<f64> {
        match (self.count, self.max) {
            (Some(c), Some(m)) if m > 0 => Some(c as f64 / m as f64),
            _ => None,
        }
    }
}

/// Collect the evidence of `conntrack.table_full` into `f` and `ev`.
fn gather_full(snap: &Snapshot, mut f: Finding) -> (Finding, FullEvidence) {
    let now = &snap.now;
    let ct = now.conntrack.as_ref().ok();
    let stat = now.stat.as_ref().ok();
    let init = is_init(now);
    let inode = now.netns.as_ref().ok().and_then(|n| n.inode);
    let sys = now.system.as_ref().ok();
    let uptime = sys.and_then(|s| s.uptime_secs.clone().ok());
    let mut ev = FullEvidence {
        count: ct.map(|c| c.count),
        max: ct.and_then(|c| c.max.clone().ok()),
        ..FullEvidence::default()
    };
    if let (Some(c), Some(m)) = (ev.count, ev.max) {
        f = f.with("count", c).with("max", m);
    }
    let drop = stat.and_then(Stat::drop);
    ev.drop = drop.unwrap_or(0);
    if let Some(d) = drop {
        f = f.with("drop", d);
    }
    if let Some(e) = stat.and_then(Stat::early_drop) {
        f = f.with("early_drop", e);
    }
    ev.drop_rise = rise(snap, Stat::drop);
    if let (Some(r), Some(secs)) = (ev.drop_rise, snap.interval_secs()) {
        f = f
            .with("drop_rise", r)
            .with("drop_per_sec", round2(r as f64 / secs));
    }
    let k = match &now.kmsg {
        Ok(k) => k,
        Err(u) => {
            ev.log_error = Some(u.clone());
            return (f.with("kmsg_unavailable", u.to_string()), ev);
        }
    };
    ev.log_read = true;
    // The namespace provably exists from its pin time on (µs since boot).
    let since_usec = since_usec(now);
    let a = attribute(k, inode, init, version(now), since_usec);
    let ago = |usec: u64| uptime.map(|u| (u - usec as f64 / 1e6).max(0.0));
    ev.own_lines = a.own_lines;
    ev.unattributed_lines = a.unattributed_lines;
    ev.own_ago = a.own_last_usec.and_then(ago);
    ev.unattr_ago = a.unattributed_last_usec.and_then(ago);
    f = f
        .with("log_lines", a.own_lines)
        .with("suppressed_callbacks", k.suppressed_callbacks);
    if a.unattributed_lines > 0 {
        f = f.with("unattributed_log_lines", a.unattributed_lines);
    }
    if let Some(o) = k.oldest_usec {
        f = f.with("log_starts_secs_since_boot", (o / 1_000_000) as i64);
    }
    ev.last_line = a.own_last_usec.or(if ev.drop > 0 {
        a.unattributed_last_usec
    } else {
        None
    });
    ev.last_ago = ev.last_line.and_then(ago);
    if let Some(l) = ev.last_line {
        f = f.with("last_line_secs_since_boot", round2(l as f64 / 1e6));
        if let Some(s) = ev.last_ago {
            f = f.with("last_line_min_ago", round2(s / 60.0));
        }
    }
    if a.earlier_netns_lines > 0 {
        f = f.with("earlier_netns_log_lines", a.earlier_netns_lines);
    }
    let attribution = if a.own_lines > 0 {
        // Provably ours when the namespace existed before each line
        // (pinned_since <= boot + line time): the cut above ensures it when
        // the pin time is known; the init netns always.
        Some(if init || since_usec.is_some() {
            "this netns (it existed before these lines)"
        } else {
            "this netns, or an earlier one with the same inode"
        })
    } else if a.earlier_netns_lines > 0 {
        Some("an earlier namespace with the same inode (lines older than this one)")
    } else if a.unattributed_lines > 0 {
        Some("kernel < 6.17 logs no netns: lines may come from any namespace")
    } else {
        None
    };
    if let Some(t) = attribution {
        f = f.with("attribution", t);
    }
    (f, ev)
}

/// Why "it is happening now", if it is: the count at max; the drop
/// counter rising during the sample; or, without a sample, a line in the
/// last [`RECENT_SECS`] while the table is still at least
/// [`NEAR_FULL`] full (gc relief after a failure comes in waves).
fn happening_now(ev: &FullEvidence, sampled: bool) -> Vec<String> {
    let mut reasons = Vec::new();
    if matches!((ev.count, ev.max), (Some(c), Some(m)) if m > 0 && c >= m) {
        reasons.push(format!(
            "count {} has reached max {}",
            thousands(ev.count.unwrap_or(0)),
            thousands(ev.max.unwrap_or(0))
        ));
    }
    if ev.drop_rise.is_some_and(|r| r > 0) {
        reasons.push(format!(
            "the drop counter rose by {} during the sample",
            ev.drop_rise.unwrap_or(0)
        ));
    }
    let near_full = ev.usage().is_some_and(|u| u >= NEAR_FULL);
    let recent = |ago: Option<f64>| ago.is_some_and(|s| s <= RECENT_SECS);
    if !sampled && near_full {
        if recent(ev.own_ago) {
            reasons.push(format!(
                "the kernel logged \"table full\" for this netns {:.0} s ago and the table is {} full",
                ev.own_ago.unwrap_or(0.0),
                pct(ev.usage().unwrap_or(0.0))
            ));
        } else if recent(ev.unattr_ago) && ev.drop > 0 {
            reasons.push(format!(
                "a \"table full\" line without netns was logged {:.0} s ago, this netns has drops and is {} full",
                ev.unattr_ago.unwrap_or(0.0),
                pct(ev.usage().unwrap_or(0.0))
            ));
        }
    }
    reasons
}

fn table_full(snap: &Snapshot) -> Finding {
    let now = &snap.now;
    let ct = now.conntrack.as_ref();
    if let Err(u @ Unavailable::Missing { .. }) = ct {
        return Finding::unavailable(TABLE_FULL, u);
    }
    if let (Err(u), Err(_), Err(_)) = (ct, &now.stat, &now.kmsg) {
        return Finding::unavailable(TABLE_FULL, u);
    }
    let (mut f, ev) = gather_full(snap, Finding::new(TABLE_FULL, Severity::Ok, ""));
    let why = "When the table holds nf_conntrack_max entries, a packet that would start a new \
               flow finds no room: the kernel tries to evict a not-yet-assured entry (early_drop) \
               and, when it cannot, drops the packet before any socket sees it. Clients see \
               connect timeouts, proxies answer 504, while CPU, memory and bandwidth look normal. \
               The log lines are rate-limited (net_ratelimit), so they are a lower bound: the drop \
               counter is the real number. Critical means it is happening: the count at max, the \
               drop counter rising during `--sample`, or a line in the last minute while the table \
               is still at least 95 % full; a line or a drop since boot otherwise says it happened.";
    let reasons = happening_now(&ev, snap.earlier.is_some());
    if !reasons.is_empty() {
        f.severity = Severity::Critical;
        f.title = format!(
            "conntrack table full: packets are being dropped now ({})",
            reasons.join("; ")
        );
        return room_fix(f.why(why), now);
    }
    let unattr_here = ev.unattributed_lines > 0 && ev.drop > 0;
    if ev.own_lines > 0 || unattr_here || ev.drop > 0 {
        f.severity = Severity::Warning;
        let when = match (ev.last_line, ev.last_ago) {
            (Some(l), Some(s)) => format!(
                "last \"table full\" line {} ago ({:.0} s after boot)",
                human_ago(s),
                l as f64 / 1e6
            ),
            (Some(l), None) => format!(
                "last \"table full\" line {:.0} s after boot",
                l as f64 / 1e6
            ),
            _ => format!("{} packets dropped since boot", thousands(ev.drop)),
        };
        let not_now = match (snap.earlier.is_some(), ev.usage()) {
            (true, Some(u)) => format!(
                "; not dropping now (no drop rise during the sample, {} full)",
                pct(u)
            ),
            (false, Some(u)) => format!("; {} full now", pct(u)),
            _ => String::new(),
        };
        f.title = format!("conntrack table was full earlier: {when}{not_now}");
        return room_fix(f.why(why), now);
    }
    let counts = match (ev.count, ev.max) {
        (Some(c), Some(m)) => format!("{} of {} entries, ", thousands(c), thousands(m)),
        _ => String::new(),
    };
    f.title = if ev.log_read && ev.unattributed_lines > 0 {
        // Kernels before 6.17 name no netns: the lines are another
        // namespace's, since this one never dropped.
        format!(
            "no sign of a full table here ({counts}no drops; the log's {} \"table full\" \
             line(s) name no netns (kernel < 6.17) and are another namespace's)",
            thousands(ev.unattributed_lines)
        )
    } else if ev.log_read {
        format!("no sign of a full table ({counts}no drops, no \"table full\" line)")
    } else {
        format!(
            "no sign of a full table ({counts}no drops); kernel log not read ({})",
            ev.log_error
                .as_ref()
                .map_or("unavailable".into(), not_read_reason)
        )
    };
    f.why(why)
}

/// Why an input was not read, in a few words for a title.
pub fn not_read_reason(u: &Unavailable) -> String {
    match u {
        Unavailable::NeedsRoot { .. } => "needs root".into(),
        Unavailable::Denied { .. } => "denied to root".into(),
        Unavailable::Missing { .. } => "not present".into(),
        Unavailable::NotSelected { .. } => "not selected".into(),
        Unavailable::Malformed { detail, .. } | Unavailable::Failed { detail, .. } => {
            crate::util::truncate(detail, 60).to_string()
        }
    }
}

/// "45 s", "12 min", "3.5 h".
fn human_ago(secs: f64) -> String {
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 5400.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

// ---- conntrack.usage -----------------------------------------------------

fn usage(snap: &Snapshot) -> Finding {
    let ct = match &snap.now.conntrack {
        Ok(c) => c,
        Err(u) => return Finding::unavailable(USAGE, u),
    };
    let max = match &ct.max {
        Ok(m) => *m,
        Err(u) => return Finding::unavailable(USAGE, u),
    };
    let f = Finding::new(USAGE, Severity::Ok, "")
        .with("count", ct.count)
        .with("max", max);
    if max == 0 {
        return f
            .with("usage", "unlimited")
            .why("nf_conntrack_max = 0 means no limit: the table grows until memory runs out.");
    }
    let u = ct.count as f64 / max as f64;
    let sev = if u >= USAGE_CRIT {
        Severity::Critical
    } else if u >= USAGE_WARN {
        Severity::Warning
    } else {
        Severity::Ok
    };
    let mut f = f.with("usage_pct", round2(u * 100.0));
    f.severity = sev;
    f.title = format!(
        "table {} full ({} of {} entries)",
        pct(u),
        thousands(ct.count),
        thousands(max)
    );
    f = f.why(
        "Each tracked flow holds one entry until its timeout runs out; at max, new flows' \
         packets are dropped. Warning from 75 % (bursts fill the rest in seconds), critical \
         from 90 %. The count is this netns's; max is global but compared per netns.",
    );
    if sev > Severity::Ok {
        f = room_fix(f, &snap.now);
    }
    f
}

// ---- conntrack.drops -----------------------------------------------------

fn drops(snap: &Snapshot) -> Finding {
    let stat = match &snap.now.stat {
        Ok(s) => s,
        Err(u) => return Finding::unavailable(DROPS, u),
    };
    // /proc columns, labelled by their `conntrack -S` names (one table:
    // host::stat::COLUMNS).
    let names = [
        "drop",
        "early_drop",
        "insert_failed",
        "chainlength",
        "clashres",
    ]
    .map(|col| (col, crate::host::stat::netlink_name(col)));
    let mut f = Finding::new(DROPS, Severity::Ok, "");
    for (col, label) in names {
        if let Some(v) = stat.get(col) {
            f = f.with(label, v);
        }
    }
    let interval = snap.interval_secs();
    let mut rates = Vec::new();
    if let Some(secs) = interval {
        f = f.with("sample_secs", round2(secs));
        for (col, label) in names {
            if let Some(r) = rise(snap, |s| s.get(col)) {
                f = f.with(&format!("{label}_per_sec"), round2(r as f64 / secs));
                if r > 0 {
                    rates.push((label, r as f64 / secs));
                }
            }
        }
    }
    let drop = stat.drop().unwrap_or(0);
    let early = stat.early_drop().unwrap_or(0);
    let insf = stat.insert_failed().unwrap_or(0);
    let chain = stat.chainlength().unwrap_or(0);
    let rising = |l: &str| rates.iter().any(|(n, _)| *n == l);
    let v = version(&snap.now);
    // 5.6+: a clash is resolved (counted, nothing dropped); before, the
    // loser's packet was dropped as insert_failed (the DNS race).
    let clash_resolved = v.map(|v| v >= kernel::CLASH_RESOLVE_HARDER);
    let sev = if interval.is_some() {
        if rising("drop") {
            Severity::Critical
        } else if rising("insert_failed") || rising("chaintoolong") || rising("early_drop") {
            Severity::Warning
        } else if drop.max(early).max(insf).max(chain) > 0 || rising("clash_resolve") {
            Severity::Info
        } else {
            Severity::Ok
        }
    } else if (drop > 0 || chain > 0) && under_pressure_now(&snap.now) {
        // Since boot, with the table (nearly) full now: likely happening.
        Severity::Warning
    } else if drop > 0 || chain > 0 || insf > 0 || early > 0 {
        // A lifetime counter alone says it happened, not that it happens.
        Severity::Info
    } else {
        Severity::Ok
    };
    f.severity = sev;
    f.title = if !rates.is_empty() {
        format!(
            "counters rising now: {}{}",
            rates
                .iter()
                .map(|(n, r)| format!("{n} {r:.2}/s"))
                .collect::<Vec<_>>()
                .join(", "),
            if rates.iter().all(|(n, _)| *n == "clash_resolve") {
                " (races resolved: nothing dropped)"
            } else {
                ""
            }
        )
    } else if sev == Severity::Ok {
        if interval.is_some() {
            "no drops, evictions or failed inserts (since boot and during the sample)".into()
        } else {
            "no drops, evictions or failed inserts since boot".into()
        }
    } else {
        let mut parts = Vec::new();
        for (v, n) in [
            (drop, "drop"),
            (early, "early_drop"),
            (insf, "insert_failed"),
            (chain, "chaintoolong"),
        ] {
            if v > 0 {
                parts.push(format!("{n}={}", thousands(v)));
            }
        }
        format!(
            "since boot: {}{}",
            parts.join(", "),
            if interval.is_some() {
                " (not rising during the sample)"
            } else {
                " (run check --sample 5s to see whether they still rise)"
            }
        )
    };
    let race = match clash_resolved {
        Some(true) => {
            " On this kernel (5.6+) parallel UDP flows that clash at insert (a resolver's A and \
             AAAA queries from one socket through a DNAT balancing them to different backends) \
             are resolved, not dropped: the loser gets a 1 s entry and clash_resolve counts it, \
             so insert_failed here is a race the kernel could not resolve (mostly SNAT \
             source-port collisions)."
        }
        Some(false) => {
            " On this kernel (before 5.6) a clash at insert is not resolved: parallel A and AAAA \
             queries from one socket racing through a DNAT that balances them to different \
             backends lose one packet, counted as insert_failed — the DNS \"5-second delay\" \
             (a resolver timeout; Kubernetes #56903). Fixed in 5.6 (nf_ct_resolve_clash_harder); \
             here: `options single-request-reopen` in the affected namespace's resolv.conf \
             (glibc), a node-local DNS cache, or no DNAT for DNS."
        }
        None => "",
    };
    let dns_note = if clash_resolved == Some(false) && insf > 0 {
        "insert_failed on a kernel before 5.6 with DNS through a DNAT (Kubernetes Services):\n\
           the A/AAAA race; in the affected namespace's /etc/resolv.conf:\n\
           options single-request-reopen\n\
           or a node-local DNS cache; or no DNAT for DNS"
    } else {
        ""
    };
    f.why(format!(
        "Counters from /proc/net/stat/nf_conntrack, summed over CPUs, since boot, per netns. \
         drop: packets dropped because no entry could be made (a full table, mostly). \
         early_drop: entries evicted to make room, so the table was at max. \
         insert_failed: a new entry lost a race at confirmation (the packet is dropped); on \
         container hosts typically the SNAT source-port race of parallel UDP/TCP connects \
         (DNS over UDP from pods): fixed by random port allocation (iptables MASQUERADE \
         --random-fully, nft `masquerade fully-random`). chaintoolong (5.15+; the /proc \
         column `chainlength`): inserts refused because a hash chain was longer than a random \
         limit (8–32, 50–80 from 6.3): too few buckets, or crafted collisions. `insert` counts only ctnetlink inserts; new, ignore and delete are always \
         0 on current kernels. A level says it happened; only a rise (--sample) says it is \
         happening.{race}"
    ))
    .note(if sev > Severity::Info || drop.max(insf).max(chain) > 0 {
        let mut n = String::from(
            "rates instead of since-boot levels: ctdoctor check --sample 5s\n\
             drop / early_drop: the table is full: see conntrack.table_full and conntrack.usage\n\
             insert_failed on a NAT host: iptables -t nat ... -j MASQUERADE --random-fully\n\
               or in nft: masquerade fully-random (snat to ... fully-random)",
        );
        // Kernels before 5.15 have no such counter.
        if stat.chainlength().is_some() {
            n.push_str("\nchaintoolong: more buckets, see conntrack.hash_load");
        }
        n
    } else {
        String::new()
    })
    .note(dns_note)
}

// ---- conntrack.hash_load -------------------------------------------------

fn hash_load(snap: &Snapshot) -> Finding {
    let now = &snap.now;
    let ct = match &now.conntrack {
        Ok(c) => c,
        Err(u) => return Finding::unavailable(HASH_LOAD, u),
    };
    let buckets = match &ct.buckets {
        Ok(b) if *b > 0 => *b,
        Ok(_) => {
            return Finding::unavailable(
                HASH_LOAD,
                &Unavailable::malformed("nf_conntrack_buckets", "0 buckets"),
            )
        }
        Err(u) => return Finding::unavailable(HASH_LOAD, u),
    };
    let (entries, source, slab_unread) = hashed_entries(now, ct);
    let chain = mean_chain(entries, buckets);
    let f = Finding::new(HASH_LOAD, Severity::Ok, "")
        .with("entries", entries)
        .with("entries_source", source)
        .with("buckets", buckets)
        .with("mean_chain", round2(chain));
    let (mut f, full_chain, default_note) = hash_sizes(f, now, ct, buckets);
    // Judged at the shown precision: slab slack (a few objects) must not
    // turn a table sized at the default (exactly 2.00 when full) into a warning.
    let sev = if round2(chain) > CHAIN_CRIT {
        Severity::Critical
    } else if round2(chain) > CHAIN_WARN {
        Severity::Warning
    } else {
        Severity::Ok
    };
    f.severity = sev;
    let whose = match &slab_unread {
        None => "entries in every netns",
        Some(_) => "entries of this netns only",
    };
    f.title = format!(
        "mean hash chain {:.2} ({} {whose} over {} buckets){}{}",
        chain,
        thousands(entries),
        thousands(buckets),
        match full_chain {
            Some(fc) => format!("; {fc:.2} when one netns holds max entries"),
            None => String::new(),
        },
        match &slab_unread {
            Some(r) => format!("; slabinfo not read ({r}): other namespaces' entries unknown"),
            None => String::new(),
        }
    );
    f = f.why(format!(
        "One hash table of nf_conntrack_buckets heads serves every netns; each entry sits in \
         two chains (original and reply direction), so the mean chain is 2 × entries / buckets. \
         Every packet of every flow walks its chain: long chains cost CPU on each packet, and \
         {refused} ok up to 2, warning above 2, critical above 8. Buckets cost 8 bytes \
         each, allocated up front; a resize is cheap.{default_note}",
        refused = chain_limit_text(version(now))
    ));
    let f = hash_advice(f, now, full_chain);
    machine_wide(f, now)
}

/// What this kernel does with an insert into a long chain (one sentence).
fn chain_limit_text(v: Option<kernel::Version>) -> String {
    let (lo, hi) = kernel::CHAIN_LIMIT_RANGE;
    let (olo, ohi) = kernel::CHAIN_LIMIT_RANGE_OLD;
    match v {
        Some(v) if v >= kernel::CHAIN_LIMIT_SAFER => format!(
            "on this kernel (6.3+) an insert into a chain longer than a random {lo}–{hi} is \
             refused and counted as chaintoolong."
        ),
        Some(v) if v >= kernel::CHAIN_LIMIT => format!(
            "on this kernel (5.15+) an insert into a chain longer than a random {olo}–{ohi} \
             ({lo}–{hi} from 6.3 and the stable kernels that took that fix) is refused and \
             counted as chaintoolong."
        ),
        Some(_) => "this kernel (before 5.15) refuses no insert for a long chain: chains \
                    only cost CPU."
            .into(),
        None => format!(
            "since 5.15 an insert into a chain longer than a random limit ({olo}–{ohi}; \
             {lo}–{hi} from 6.3) is refused and counted as chaintoolong."
        ),
    }
}

/// The entries in the hash table: the slab's (every netns) when readable,
/// else this netns's count; where they come from, and why the slab was
/// not read.
fn hashed_entries(now: &Facts, ct: &Conntrack) -> (u64, String, Option<String>) {
    let slab = now.system.as_ref().map(|s| s.slab.as_ref());
    match slab {
        Ok(Ok(s)) => (
            s.active_objs,
            "slab active_objs (all netns)".to_string(),
            None,
        ),
        Ok(Err(u)) | Err(u) => (
            ct.count,
            format!(
                "this netns's count only (slabinfo not read: {})",
                not_read_reason(u)
            ),
            Some(not_read_reason(u)),
        ),
    }
}

/// The chain at max and the kernel's default sizing, into `f`; the mean
/// chain at max (when max is known) and a sentence on the default.
fn hash_sizes(
    mut f: Finding,
    now: &Facts,
    ct: &Conntrack,
    buckets: u64,
) -> (Finding, Option<f64>, String) {
    let mut full_chain = None;
    if let Ok(max) = ct.max {
        let fc = mean_chain(max, buckets);
        full_chain = Some(fc);
        f = f
            .with("max", max)
            .with("mean_chain_at_max", round2(fc))
            .with("max_per_bucket", round2(max as f64 / buckets as f64));
    }
    let mut default_note = String::new();
    if let Some(d) = crate::advice::size::kernel_default(now).map(|k| k.sizing) {
        f = f
            .with("default_buckets", d.buckets)
            .with("default_factor", d.factor);
        default_note = format!(
            " This kernel's default for this RAM is {} buckets with max = {} × buckets.",
            thousands(d.buckets),
            d.factor
        );
    }
    (f, full_chain, default_note)
}

/// More buckets when the chains are long now, or would be in a full table
/// (`full_chain`; an ok finding becomes info then).
fn hash_advice(mut f: Finding, now: &Facts, full_chain: Option<f64>) -> Finding {
    let sev = f.severity;
    let want_full = full_chain.is_some_and(|fc| round2(fc) > CHAIN_WARN);
    if sev > Severity::Ok || want_full {
        if let Some(s) = suggest::sizing(now) {
            f = f.changes(suggest::sizing_changes(now, &s, suggest::Part::Buckets));
            if let (Some(b), Some(m)) = (s.buckets, s.max) {
                f = f.note(format!(
                    "{} buckets hold the max of {} this report suggests (conntrack.table_full / usage) at a mean chain of {:.2}",
                    thousands(b),
                    thousands(m),
                    s.size.mean_chain_at_max
                ));
            }
        }
        if sev == Severity::Ok {
            f.severity = Severity::Info;
            f.title.push_str("; a full table would have long chains");
        }
    }
    f
}

/// One hash table for the whole machine: judged in the host's report; a
/// child namespace's report says so and stays informational.
fn machine_wide(mut f: Finding, now: &Facts) -> Finding {
    if !is_init(now) {
        if f.severity > Severity::Info {
            f.title = format!(
                "machine-wide ({} in the host's report): {}",
                f.severity.as_str(),
                f.title
            );
        }
        f.severity = f.severity.min(Severity::Info);
        f = f.with(
            "scope",
            "machine-wide: judged in the host (init netns) report",
        );
    }
    f
}

// ---- conntrack.memory ----------------------------------------------------

fn memory(snap: &Snapshot) -> Finding {
    let now = &snap.now;
    let ct = match &now.conntrack {
        Ok(c) => c,
        Err(u) => return Finding::unavailable(MEMORY, u),
    };
    let max = match &ct.max {
        Ok(m) => *m,
        Err(u) => return Finding::unavailable(MEMORY, u),
    };
    let sys = match &now.system {
        Ok(s) => s,
        Err(u) => return Finding::unavailable(MEMORY, u),
    };
    let ram = match &sys.mem_total_bytes {
        Ok(r) if *r > 0 => *r,
        Ok(_) => {
            return Finding::unavailable(
                MEMORY,
                &Unavailable::malformed("proc/meminfo", "MemTotal 0"),
            )
        }
        Err(u) => return Finding::unavailable(MEMORY, u),
    };
    let buckets = ct.buckets.clone().unwrap_or(0);
    let (objsize, measured) = match &sys.slab {
        Ok(s) if s.objsize > 0 => (s.objsize, true),
        _ => (ASSUMED_OBJSIZE, false),
    };
    // Why slabinfo gave no size (never "run as root" to root).
    let unread = match &sys.slab {
        Err(u) => not_read_reason(u),
        Ok(_) => "no nf_conntrack cache in it".into(),
    };
    let mut f = Finding::new(MEMORY, Severity::Ok, "")
        .with("max", max)
        .with("buckets", buckets)
        .with("objsize", objsize)
        .with(
            "objsize_source",
            if measured {
                "measured (/proc/slabinfo)".to_string()
            } else {
                format!("assumed: 256 B measured on 6.18 x86_64 (slabinfo not read: {unread})")
            },
        )
        .with("mem_total_bytes", ram);
    if max == 0 {
        f.severity = Severity::Warning;
        f.title = "nf_conntrack_max = 0: no limit, a flood can take all kernel memory".into();
        return room_fix(
            f.why("With max 0 the table grows until memory runs out; conntrack memory is unswappable kernel memory."),
            now,
        );
    }
    let full = full_table_bytes(max, objsize, buckets);
    let share = full as f64 / ram as f64;
    let fits = crate::advice::sizing::max_within(ram, MEMORY_WARN_SHARE, objsize);
    f = f
        .with("full_table_bytes", full)
        .with("full_table_ram_pct", round2(share * 100.0))
        .with("max_within_25pct_ram", fits);
    let why = format!(
        "Entries cost memory only while they exist, but a flood fills the table to max, and \
         conntrack memory is unswappable kernel memory. Worst case = max × objsize × {EXT_FACTOR} \
         (extensions such as nat/acct/timestamp are allocated beside the object; ~384 B/entry \
         all in measured at 1M entries on 6.18) + buckets × 8 B. Warning when a full table would \
         take more than 25 % of RAM."
    );
    if share > MEMORY_WARN_SHARE {
        f.severity = Severity::Warning;
        f.title = format!(
            "a full table would take {} = {} of RAM ({} entries × {} B × {EXT_FACTOR})",
            bytes(full),
            pct(share),
            thousands(max),
            objsize
        );
        return room_fix(f.why(why), now);
    }
    f.title = format!(
        "a full table would take {} = {} of RAM",
        bytes(full),
        pct(share)
    );
    if let Some(d) = crate::advice::size::kernel_default(now).map(|k| k.sizing) {
        f = f.with("default_max", d.max);
        if max < d.max {
            f.severity = Severity::Info;
            f.title.push_str(&format!(
                "; max {} is below this kernel's default {} for {} of RAM: room to raise it",
                thousands(max),
                thousands(d.max),
                bytes(ram)
            ));
            return f.why(why);
        }
    }
    f.why(why)
}

// ---- conntrack.timeouts --------------------------------------------------

/// Whether the table is under pressure — at least [`TIMEOUT_PRESSURE`]
/// full, or it dropped packets or evicted entries since boot — and how:
/// what the timeouts and the table's mix are judged against (a full table
/// of TIME_WAIT is normal on a web host with room to spare).
pub fn under_pressure(f: &Facts) -> Option<String> {
    let ct = f.conntrack.as_ref().ok()?;
    let usage = match &ct.max {
        Ok(m) if *m > 0 => ct.count as f64 / *m as f64,
        _ => 0.0,
    };
    let st = f.stat.as_ref().ok();
    let drop = st.and_then(Stat::drop).unwrap_or(0);
    let early = st.and_then(Stat::early_drop).unwrap_or(0);
    let mut why = Vec::new();
    if usage >= TIMEOUT_PRESSURE {
        why.push(format!("{} full", pct(usage)));
    }
    if drop > 0 {
        why.push(format!("drop={}", thousands(drop)));
    }
    if early > 0 {
        why.push(format!("early_drop={}", thousands(early)));
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// The table is at least [`USAGE_CRIT`] full now.
fn under_pressure_now(f: &Facts) -> bool {
    f.conntrack.as_ref().is_ok_and(|c| match &c.max {
        Ok(m) if *m > 0 => c.count as f64 / *m as f64 >= USAGE_CRIT,
        _ => false,
    })
}

/// How full the table is, for a "not under pressure" title.
pub fn room(f: &Facts) -> String {
    match f.conntrack.as_ref().map(|c| (c.count, c.max.clone())) {
        Ok((c, Ok(m))) if m > 0 => {
            format!("{} full, no drops or early drops", pct(c as f64 / m as f64))
        }
        _ => "no drops or early drops".into(),
    }
}

/// One flagged timeout: (name without `nf_conntrack_`, value, suggested, reason).
pub type Flag = (&'static str, u64, u64, &'static str);

pub use crate::advice::suggest::JUDGED_TIMEOUTS;

/// Timeouts beyond their useful values, with the suggestion table's values (pure).
pub fn flag_timeouts(ct: &Conntrack) -> Vec<Flag> {
    JUDGED_TIMEOUTS
        .iter()
        .filter_map(|name| {
            let row = suggest::row(name);
            let v = ct.timeout(name)?;
            let limit = row.above?;
            let value: u64 = row.value.parse().ok()?;
            (v > limit).then_some((*name, v, value, row.why))
        })
        .collect()
}

fn timeouts(snap: &Snapshot) -> Finding {
    let now = &snap.now;
    let ct = match &now.conntrack {
        Ok(c) => c,
        Err(u) => return Finding::unavailable(TIMEOUTS, u),
    };
    if ct.timeouts.is_empty() {
        return Finding::unavailable(
            TIMEOUTS,
            &Unavailable::Missing {
                what: "proc/sys/net/netfilter/nf_conntrack_*timeout*".into(),
            },
        );
    }
    let mut f = Finding::new(TIMEOUTS, Severity::Ok, "");
    for n in JUDGED_TIMEOUTS {
        if let Some(v) = ct.timeout(n) {
            f = f.with(n, v);
        }
    }
    let flags = flag_timeouts(ct);
    if flags.is_empty() {
        f.title = "TCP timeouts within useful bounds".into();
        let bounds: Vec<String> = JUDGED_TIMEOUTS
            .iter()
            .filter_map(|n| {
                let a = suggest::row(n).above?;
                Some(format!("{} ≤ {a} s", n.trim_start_matches("tcp_timeout_")))
            })
            .collect();
        return f.why(format!("Checked: {}.", bounds.join(", ")));
    }
    let pressure = under_pressure(now).is_some();
    f.severity = if pressure {
        Severity::Warning
    } else {
        Severity::Info
    };
    f.title = format!(
        "{} longer than useful{}",
        flags
            .iter()
            .map(|(n, v, _, _)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        if pressure {
            " while the table is under pressure"
        } else {
            ""
        }
    );
    let mut why = String::from(
        "An entry lives for its state's timeout after its last packet; long timeouts fill the \
         table with flows nobody uses. Info when the table has room, warning when it is at \
         least half full or has dropped or evicted entries.\n",
    );
    for (n, v, s, r) in &flags {
        why.push_str(&format!("- {n} = {v} s {r} (suggested {s} s).\n"));
    }
    if flags.iter().any(|(n, ..)| *n == "tcp_timeout_established") && ct.tcp_loose == Ok(0) {
        why.push_str("Note: tcp_loose = 0, so a flow idle beyond the new established timeout is not picked up again mid-stream: keep keepalive on for long idle connections.\n");
    }
    let changes = suggest::sysctls(
        now,
        flags
            .iter()
            .map(|(n, _, s, _)| (format!("nf_conntrack_{n}"), *s)),
    );
    f.with("pressure", pressure)
        .why(why.trim_end().to_string())
        .changes(changes)
}

// ---- conntrack.expect_table ---------------------------------------------

fn expect_table(snap: &Snapshot) -> Finding {
    let now = &snap.now;
    let k = match &now.kmsg {
        Ok(k) => k,
        Err(u) => return Finding::unavailable(EXPECT_TABLE, u),
    };
    let ct = now.conntrack.as_ref().ok();
    let expect_max = ct.and_then(|c| c.expect_max.as_ref().ok().copied());
    let expect_count = ct.and_then(|c| c.expect_count.as_ref().ok().copied());
    let mut f = Finding::new(EXPECT_TABLE, Severity::Ok, "")
        .with("expect_table_full_lines", k.expect_table_full)
        .with("expect_max", serde_json::json!(expect_max))
        .with("expect_count", serde_json::json!(expect_count));
    let why = "Connection-tracking helpers (FTP, SIP, H.323, TFTP, …) register an expectation \
               for each related connection they foresee (FTP data, RTP media). At \
               nf_conntrack_expect_max (global; the table is per netns) the helper cannot \
               register one: the related connection is not recognised as RELATED and fails or is \
               dropped by `ct state related` rules, while new flows are unaffected. The kernel \
               logs \"nf_conntrack: expectation table full\" (machine-wide, no netns named).";
    if k.expect_table_full == 0 {
        f.title = "no \"expectation table full\" line in the kernel log".into();
        return f.why(why);
    }
    let uptime = now
        .system
        .as_ref()
        .ok()
        .and_then(|s| s.uptime_secs.as_ref().ok().copied());
    let ago = match (k.expect_last_usec, uptime) {
        (Some(l), Some(u)) => {
            let m = ((u - l as f64 / 1e6).max(0.0) / 60.0 * 100.0).round() / 100.0;
            f = f.with("last_line_min_ago", m);
            format!(", the last {m:.0} min ago")
        }
        _ => String::new(),
    };
    // The line names no netns: it is this one's only if this one uses
    // helpers (holds expectations); otherwise say where it may come from.
    if expect_count == Some(0) {
        f.severity = Severity::Info;
        f.title = format!(
            "{} \"expectation table full\" kernel log line(s){ago}, but this netns holds no \
             expectation now: another namespace's, or an earlier burst",
            k.expect_table_full
        );
        return f.why(why);
    }
    f.severity = Severity::Warning;
    f.title = format!(
        "the expectation table was full: {} kernel log line(s){ago}{}",
        k.expect_table_full,
        match (expect_count, expect_max) {
            (Some(c), Some(m)) => format!("; {c} of {m} expectations here now"),
            _ => String::new(),
        }
    );
    let mut f = f.why(why);
    if let Some(m) = expect_max {
        f = f.changes(suggest::sysctls(
            now,
            [(
                "net.netfilter.nf_conntrack_expect_max",
                suggest::expect_max(m),
            )],
        ));
    }
    f.note("or drop the helper where nothing needs it (nft `ct helper` rules, iptables `-j CT --helper`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_numbers() {
        // 262144 entries over 262144 buckets: 2 chains each -> 2.0.
        assert_eq!(mean_chain(262_144, 262_144), 2.0);
        // 5.4 default: max = 4 × buckets -> 8 at a full table.
        assert_eq!(mean_chain(65_536, 16_384), 8.0);
        assert_eq!(mean_chain(1, 0), 0.0);
    }

    fn tf(inode: Option<u64>, times: &[u64]) -> crate::snapshot::TableFull {
        crate::snapshot::TableFull {
            inode,
            lines: times.len() as u64,
            first_usec: times.iter().copied().min(),
            last_usec: times.iter().copied().max(),
            times_usec: times.to_vec(),
        }
    }

    #[test]
    fn attribution_by_inode_kernel_and_pin_time() {
        let k = Kmsg {
            table_full: vec![
                tf(None, &[50_000_000]),
                tf(Some(7), &[10_000_000, 20_000_000, 30_000_000]),
                tf(Some(8), &[40_000_000]),
            ],
            ..Kmsg::default()
        };
        // Child netns 7 on 6.18, pinned at 19 s (cut at 17 s): the 10 s line
        // is an earlier namespace's; the inode-less line is init's.
        let a = attribute(&k, Some(7), false, Some((6, 18, 0)), Some(19_000_000));
        assert_eq!((a.own_lines, a.earlier_netns_lines), (2, 1));
        assert_eq!(
            (a.own_first_usec, a.own_last_usec),
            (Some(20_000_000), Some(30_000_000))
        );
        assert_eq!(a.unattributed_lines, 0);
        // 2 s of clock slack: pinned at 21.5 s still keeps the 20 s line.
        let a = attribute(&k, Some(7), false, Some((6, 18, 0)), Some(21_500_000));
        assert_eq!((a.own_lines, a.earlier_netns_lines), (2, 1));
        // No pin time: all three may be ours.
        let a = attribute(&k, Some(7), false, Some((6, 18, 0)), None);
        assert_eq!((a.own_lines, a.earlier_netns_lines), (3, 0));
        // Init netns on 6.18: the inode-less line is its own.
        let a = attribute(&k, Some(1), true, Some((6, 18, 0)), None);
        assert_eq!((a.own_lines, a.own_last_usec), (1, Some(50_000_000)));
        // Old kernel: inode-less lines are unattributed for everyone.
        let a = attribute(&k, Some(1), true, Some((5, 4, 0)), None);
        assert_eq!((a.own_lines, a.unattributed_lines), (0, 1));
        assert_eq!(a.unattributed_last_usec, Some(50_000_000));
        // Untimed lines (dmesg -t) count as ours.
        let k = Kmsg {
            table_full: vec![crate::snapshot::TableFull {
                inode: Some(7),
                lines: 2,
                first_usec: None,
                last_usec: None,
                times_usec: vec![],
            }],
            ..Kmsg::default()
        };
        let a = attribute(&k, Some(7), false, Some((6, 18, 0)), Some(19_000_000));
        assert_eq!((a.own_lines, a.own_last_usec), (2, None));
    }

    #[test]
    fn timeout_flags() {
        let mut ct = Conntrack {
            count: 0,
            max: Ok(1),
            buckets: Ok(1),
            hashsize: Ok(1),
            is_module: Ok(false),
            timeouts: kernel::DEFAULT_TIMEOUTS
                .iter()
                .map(|(n, v)| (n.to_string(), *v))
                .collect(),
            acct: Ok(0),
            events: Ok(2),
            timestamp: Ok(0),
            tcp_loose: Ok(1),
            tcp_be_liberal: Ok(0),
            tcp_max_retrans: Ok(3),
            log_invalid: Ok(0),
            checksum: Ok(1),
            expect_max: Ok(4096),
            expect_count: Ok(0),
        };
        // Kernel defaults: established 432000, syn_sent 120, fin_wait 120,
        // time_wait 120 are beyond; close_wait 60 is not.
        let names: Vec<&str> = flag_timeouts(&ct).iter().map(|f| f.0).collect();
        assert_eq!(
            names,
            [
                "tcp_timeout_established",
                "tcp_timeout_syn_sent",
                "tcp_timeout_fin_wait",
                "tcp_timeout_time_wait"
            ]
        );
        // Exactly at the bounds: nothing flagged.
        for (n, v) in [
            ("tcp_timeout_established", 7875),
            ("tcp_timeout_syn_sent", 60),
            ("tcp_timeout_fin_wait", 60),
            ("tcp_timeout_time_wait", 60),
            ("tcp_timeout_close_wait", 60),
        ] {
            ct.timeouts.insert(n.into(), v);
        }
        assert!(flag_timeouts(&ct).is_empty());
        ct.timeouts.insert("tcp_timeout_close_wait".into(), 3600);
        assert_eq!(flag_timeouts(&ct)[0].0, "tcp_timeout_close_wait");
        assert_eq!(flag_timeouts(&ct)[0].2, 60);
    }

    #[test]
    fn memory_numbers() {
        // 262144 × 256 × 1.5 + 262144 × 8 = 100,663,296 + 2,097,152.
        assert_eq!(full_table_bytes(262_144, 256, 262_144), 102_760_448);
        // Seed's example: 1048576 max, 262144 buckets, 352 B: 553,648,128 + 2,097,152.
        assert_eq!(full_table_bytes(1_048_576, 352, 262_144), 555_745_280);
        assert_eq!(crate::advice::sizing::round_buckets(1), 512);
        assert_eq!(crate::advice::sizing::round_buckets(262_144), 262_144);
        assert_eq!(crate::advice::sizing::round_buckets(262_145), 262_656);
    }
}
