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

use super::{suggest, Finding, Severity};
use crate::kernel;
pub use crate::sizing::{full_table_bytes, mean_chain};
use crate::sizing::{ASSUMED_OBJSIZE, EXT_FACTOR};
use crate::snapshot::{Conntrack, Facts, Kmsg, Snapshot, Stat, Unavailable};
use crate::util::{bytes, thousands};

pub const TABLE_FULL: &str = "conntrack.table_full";
pub const USAGE: &str = "conntrack.usage";
pub const DROPS: &str = "conntrack.drops";
pub const HASH_LOAD: &str = "conntrack.hash_load";
pub const MEMORY: &str = "conntrack.memory";
pub const TIMEOUTS: &str = "conntrack.timeouts";
pub const EXPECT_TABLE: &str = "conntrack.expect_table";

/// A table-full line this recent (seconds) means "it is happening".
pub const RECENT_SECS: f64 = 600.0;
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
/// The kernel that names the netns in "table full in netns N" (and prints
/// the inode-less form for the init netns only).
pub const NETNS_IN_LOG: kernel::Version = (6, 17, 0);

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

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
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

fn table_full(snap: &Snapshot) -> Finding {
    let now = &snap.now;
    let ct = now.conntrack.as_ref();
    let stat = now.stat.as_ref().ok();
    let kmsg = now.kmsg.as_ref().ok();
    if let Err(u @ Unavailable::Missing { .. }) = ct {
        return Finding::unavailable(TABLE_FULL, u);
    }
    if let (Err(u), None, None) = (ct, stat, kmsg) {
        return Finding::unavailable(TABLE_FULL, u);
    }
    let ct = ct.ok();
    let init = is_init(now);
    let inode = now.netns.as_ref().ok().and_then(|n| n.inode);
    let uptime = now
        .system
        .as_ref()
        .ok()
        .and_then(|s| s.uptime_secs.clone().ok());

    let mut f = Finding::new(TABLE_FULL, Severity::Ok, "");
    let count = ct.map(|c| c.count);
    let max = ct.and_then(|c| c.max.clone().ok());
    if let (Some(c), Some(m)) = (count, max) {
        f = f.with("count", c).with("max", m);
    }
    let drop = stat.and_then(Stat::drop);
    if let Some(d) = drop {
        f = f.with("drop", d);
    }
    if let Some(e) = stat.and_then(Stat::early_drop) {
        f = f.with("early_drop", e);
    }
    let drop_rise = rise(snap, Stat::drop);
    if let (Some(r), Some(secs)) = (drop_rise, snap.interval_secs()) {
        f = f
            .with("drop_rise", r)
            .with("drop_per_sec", round2(r as f64 / secs));
    }
    let since_usec = since_usec(now);
    let att = kmsg.map(|k| attribute(k, inode, init, version(now), since_usec));
    let ago = |usec: u64| uptime.map(|u| (u - usec as f64 / 1e6).max(0.0));
    let mut recent_own = false;
    let mut recent_unattr = false;
    let mut last_line: Option<u64> = None;
    match (&att, kmsg) {
        (Some(a), Some(k)) => {
            f = f
                .with("log_lines", a.own_lines)
                .with("suppressed_callbacks", k.suppressed_callbacks);
            if a.unattributed_lines > 0 {
                f = f.with("unattributed_log_lines", a.unattributed_lines);
            }
            if let Some(o) = k.oldest_usec {
                f = f.with("log_starts_secs_since_boot", (o / 1_000_000) as i64);
            }
            last_line = a.own_last_usec.or(if drop.unwrap_or(0) > 0 {
                a.unattributed_last_usec
            } else {
                None
            });
            if let Some(l) = last_line {
                f = f.with("last_line_secs_since_boot", round2(l as f64 / 1e6));
                if let Some(s) = ago(l) {
                    f = f.with("last_line_min_ago", round2(s / 60.0));
                }
            }
            recent_own = a
                .own_last_usec
                .and_then(ago)
                .is_some_and(|s| s <= RECENT_SECS);
            recent_unattr = a
                .unattributed_last_usec
                .and_then(ago)
                .is_some_and(|s| s <= RECENT_SECS);
            if a.earlier_netns_lines > 0 {
                f = f.with("earlier_netns_log_lines", a.earlier_netns_lines);
            }
            if a.own_lines > 0 {
                // Provably ours when the namespace existed before each line
                // (pinned_since <= boot + line time): the cut above ensures
                // it when the pin time is known; the init netns always.
                let proven = init || since_usec.is_some();
                f = f.with(
                    "attribution",
                    if proven {
                        "this netns (it existed before these lines)"
                    } else {
                        "this netns, or an earlier one with the same inode"
                    },
                );
            } else if a.earlier_netns_lines > 0 {
                f = f.with(
                    "attribution",
                    "an earlier namespace with the same inode (lines older than this one)",
                );
            } else if a.unattributed_lines > 0 {
                f = f.with(
                    "attribution",
                    "kernel < 6.17 logs no netns: lines may come from any namespace",
                );
            }
        }
        _ => {
            if let Err(u) = &now.kmsg {
                f = f.with("kmsg_unavailable", u.to_string());
            }
        }
    }

    let full_now = matches!((count, max), (Some(c), Some(m)) if m > 0 && c >= m);
    let drop_rising = drop_rise.is_some_and(|r| r > 0);
    let unattr_here = recent_unattr && drop.unwrap_or(0) > 0;
    let mut reasons = Vec::new();
    if full_now {
        reasons.push(format!(
            "count {} has reached max {}",
            thousands(count.unwrap_or(0)),
            thousands(max.unwrap_or(0))
        ));
    }
    if drop_rising {
        reasons.push(format!(
            "the drop counter rose by {} during the sample",
            drop_rise.unwrap_or(0)
        ));
    }
    if recent_own {
        reasons
            .push("the kernel logged \"table full\" for this netns in the last 10 minutes".into());
    }
    if unattr_here && !recent_own {
        reasons.push(
            "a \"table full\" line without netns was logged in the last 10 minutes and this netns has drops"
                .into(),
        );
    }
    let own_ever = att.as_ref().is_some_and(|a| a.own_lines > 0);
    let unattr_ever =
        att.as_ref().is_some_and(|a| a.unattributed_lines > 0) && drop.unwrap_or(0) > 0;
    let why = "When the table holds nf_conntrack_max entries, a packet that would start a new \
               flow finds no room: the kernel tries to evict a not-yet-assured entry (early_drop) \
               and, when it cannot, drops the packet before any socket sees it. Clients see \
               connect timeouts, proxies answer 504, while CPU, memory and bandwidth look normal. \
               The log lines are rate-limited (net_ratelimit), so they are a lower bound: the drop \
               counter is the real number. Since-boot counters say it happened; only a rise (check \
               --sample 5s) or a recent line says it is happening.";
    let fixed = |f: Finding| room_fix(f.why(why), now);
    if !reasons.is_empty() {
        f.severity = Severity::Critical;
        f.title = format!(
            "conntrack table full: packets are being dropped now ({})",
            reasons.join("; ")
        );
        return fixed(f);
    }
    if own_ever || unattr_ever || drop.unwrap_or(0) > 0 {
        f.severity = Severity::Warning;
        f.title = match (last_line, last_line.and_then(ago)) {
            (Some(l), Some(s)) => format!(
                "conntrack table was full earlier: last \"table full\" line {:.0} min ago ({:.0} s after boot)",
                s / 60.0,
                l as f64 / 1e6
            ),
            (Some(l), None) => format!(
                "conntrack table was full earlier: last \"table full\" line {:.0} s after boot",
                l as f64 / 1e6
            ),
            _ => format!(
                "conntrack table was full earlier: {} packets dropped since boot",
                thousands(drop.unwrap_or(0))
            ),
        };
        return fixed(f);
    }
    f.title = match (count, max) {
        (Some(c), Some(m)) => format!(
            "no sign of a full table ({} of {} entries, no drops, no log lines)",
            thousands(c),
            thousands(m)
        ),
        _ => "no sign of a full table".into(),
    };
    f.why(why)
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
    let names = [
        ("drop", "drop"),
        ("early_drop", "early_drop"),
        ("insert_failed", "insert_failed"),
        ("chainlength", "chaintoolong"),
    ];
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
    let sev = if interval.is_some() {
        if rising("drop") {
            Severity::Critical
        } else if rising("insert_failed") || rising("chaintoolong") || rising("early_drop") {
            Severity::Warning
        } else if drop.max(early).max(insf).max(chain) > 0 {
            Severity::Info
        } else {
            Severity::Ok
        }
    } else if drop > 0 || chain > 0 {
        Severity::Warning
    } else if insf > 0 || early > 0 {
        Severity::Info
    } else {
        Severity::Ok
    };
    f.severity = sev;
    f.title = if !rates.is_empty() {
        format!(
            "counters rising now: {}",
            rates
                .iter()
                .map(|(n, r)| format!("{n} {r:.2}/s"))
                .collect::<Vec<_>>()
                .join(", ")
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
    f.why(
        "Counters from /proc/net/stat/nf_conntrack, summed over CPUs, since boot, per netns. \
         drop: packets dropped because no entry could be made (a full table, mostly). \
         early_drop: entries evicted to make room, so the table was at max. \
         insert_failed: a new entry lost a race at confirmation (the packet is dropped); on \
         container hosts typically the SNAT source-port race of parallel UDP/TCP connects \
         (DNS over UDP from pods): fixed by random port allocation (iptables MASQUERADE \
         --random-fully, nft `masquerade fully-random`). chaintoolong (5.15+ `chainlength`): \
         inserts refused because a hash chain was too long: too few buckets, or crafted \
         collisions. `insert` counts only ctnetlink inserts; new, ignore and delete are always \
         0 on current kernels. A level says it happened; only a rise (--sample) says it is \
         happening.",
    )
    .note(if sev > Severity::Info || drop.max(insf).max(chain) > 0 {
        "rates instead of since-boot levels: ctdoctor check --sample 5s\n\
         drop / early_drop: the table is full: see conntrack.table_full and conntrack.usage\n\
         insert_failed on a NAT host: iptables -t nat ... -j MASQUERADE --random-fully\n\
           or in nft: masquerade fully-random (snat to ... fully-random)\n\
         chaintoolong: more buckets, see conntrack.hash_load"
    } else {
        ""
    })
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
    let slab = now.system.as_ref().ok().and_then(|s| s.slab.as_ref().ok());
    let (entries, source) = match slab {
        Some(s) => (s.active_objs, "slab active_objs (all netns)"),
        None => (
            ct.count,
            "this netns's count only (slabinfo unreadable: run as root)",
        ),
    };
    let chain = mean_chain(entries, buckets);
    let mut f = Finding::new(HASH_LOAD, Severity::Ok, "")
        .with("entries", entries)
        .with("entries_source", source)
        .with("buckets", buckets)
        .with("mean_chain", round2(chain));
    let mut full_chain = None;
    if let Ok(max) = ct.max {
        let fc = mean_chain(max, buckets);
        full_chain = Some(fc);
        f = f
            .with("max", max)
            .with("mean_chain_at_max", round2(fc))
            .with("max_per_bucket", round2(max as f64 / buckets as f64));
    }
    let mem = now
        .system
        .as_ref()
        .ok()
        .and_then(|s| s.mem_total_bytes.clone().ok());
    let mut default_note = String::new();
    if let (Some(v), Some(m)) = (version(now), mem) {
        let d = kernel::default_sizing(v, m);
        f = f
            .with("default_buckets", d.buckets)
            .with("default_factor", d.factor);
        default_note = format!(
            " This kernel's default for this RAM is {} buckets with max = {} × buckets.",
            thousands(d.buckets),
            d.factor
        );
    }
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
    f.title = format!(
        "mean hash chain {:.2} ({} entries over {} buckets){}",
        chain,
        thousands(entries),
        thousands(buckets),
        match full_chain {
            Some(fc) => format!(", {fc:.2} with a full table"),
            None => String::new(),
        }
    );
    f = f.why(format!(
        "One hash table of nf_conntrack_buckets heads serves every netns; each entry sits in \
         two chains (original and reply direction), so the mean chain is 2 × entries / buckets. \
         Every packet of every flow walks its chain: long chains cost CPU on each packet, and \
         since 6.3 an insert into a chain longer than a random 50–80 is refused \
         (chaintoolong). ok up to 2, warning above 2, critical above 8. Buckets cost 8 bytes \
         each, allocated up front; a resize is cheap.{default_note}"
    ));
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
            f.title.push_str(": a full table would have long chains");
        }
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
    let mut f = Finding::new(MEMORY, Severity::Ok, "")
        .with("max", max)
        .with("buckets", buckets)
        .with("objsize", objsize)
        .with(
            "objsize_source",
            if measured {
                "measured (/proc/slabinfo)"
            } else {
                "assumed: 256 B measured on 6.18 x86_64 (slabinfo unreadable: run as root)"
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
    let fits = crate::sizing::max_within(ram, MEMORY_WARN_SHARE, objsize);
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
    if let Some(v) = version(now) {
        let d = kernel::default_sizing(v, ram);
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

/// One flagged timeout: (name without `nf_conntrack_`, value, suggested, reason).
pub type Flag = (&'static str, u64, u64, &'static str);

/// The timeouts `conntrack.timeouts` judges, by name without `nf_conntrack_`.
pub const JUDGED_TIMEOUTS: &[&str] = &[
    "tcp_timeout_established",
    "tcp_timeout_syn_sent",
    "tcp_timeout_fin_wait",
    "tcp_timeout_time_wait",
    "tcp_timeout_close_wait",
];

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
    let usage = match &ct.max {
        Ok(m) if *m > 0 => ct.count as f64 / *m as f64,
        _ => 0.0,
    };
    let st = now.stat.as_ref().ok();
    let pressure = usage >= TIMEOUT_PRESSURE
        || st.and_then(Stat::drop).unwrap_or(0) > 0
        || st.and_then(Stat::early_drop).unwrap_or(0) > 0;
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
    let expect_max = now
        .conntrack
        .as_ref()
        .ok()
        .and_then(|c| c.expect_max.as_ref().ok().copied());
    let mut f = Finding::new(EXPECT_TABLE, Severity::Ok, "")
        .with("expect_table_full_lines", k.expect_table_full)
        .with("expect_max", serde_json::json!(expect_max));
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
    f.severity = Severity::Warning;
    f.title = format!(
        "the expectation table was full: {} kernel log line(s){ago}",
        k.expect_table_full
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
        assert_eq!(crate::sizing::round_buckets(1), 512);
        assert_eq!(crate::sizing::round_buckets(262_144), 262_144);
        assert_eq!(crate::sizing::round_buckets(262_145), 262_656);
    }
}
