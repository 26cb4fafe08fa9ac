//! The one table of suggested values, with its reasoning, and the few
//! values computed from the snapshot (table size, fd and backlog limits).
//! Every rule takes its numbers from here, so one report never suggests
//! two values for one key: a constant lives in one row, a computed value
//! in one function of the facts.
//!
//! Also here: how a report's changes are scoped ([`netns_label`],
//! [`sysctls`]) and the render context built from the facts
//! ([`render_context`]).
//!
//! Pure. Not for: judging (the rules) or rendering (crate::advice::change).

use crate::advice::change::{self, Change, Override};
use crate::kernel;

use crate::advice::sizing::{self, Size};
use crate::knobs;
use crate::snapshot::Facts;

/// One suggested value for a knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suggested {
    /// Full knob name.
    pub key: &'static str,
    /// Flag a current value above this (timeouts), where the rule judges one.
    pub above: Option<u64>,
    /// The value to suggest.
    pub value: &'static str,
    pub why: &'static str,
}

/// The table. Timeouts: a flow's entry lives for its state's timeout after
/// its last packet, so each is the shortest value that keeps working flows.
pub const ROWS: &[Suggested] = &[
    Suggested {
        key: "net.netfilter.nf_conntrack_tcp_timeout_established",
        above: Some(kernel::KEEPALIVE_HORIZON_SECS),
        value: "7875",
        why: "TCP keepalive gives up after 7200 + 75 × 9 = 7875 s with Linux defaults: a connection \
              silent longer is dead or has keepalive off, and idle-connection floods park entries \
              for the 5-day default (kube-proxy uses 86400; a NATed flow idle longer without \
              keepalive loses its mapping either way)",
    },
    Suggested {
        key: "net.netfilter.nf_conntrack_tcp_timeout_syn_sent",
        above: Some(60),
        value: "30",
        why: "longer than any client waits for a connect (Linux gives up after ~127 s of retries, \
              proxies after 5–60 s): unanswered SYNs hold entries after the client gave up",
    },
    Suggested {
        key: "net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
        above: Some(60),
        value: "30",
        why: "Linux's own FIN_WAIT2 lasts tcp_fin_timeout (60 s): half-closed flows outlive their sockets",
    },
    Suggested {
        key: "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
        above: Some(60),
        value: "30",
        why: "twice the 60 s Linux MSL by default; on an edge gateway TIME_WAIT is often > 90 % of \
              the table, so 30 s holds a quarter as many; PAWS and tcp_tw_reuse make it safe for most",
    },
    Suggested {
        key: "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
        above: Some(60),
        value: "60",
        why: "keeps flows the peer already closed (kube-proxy sets 3600): 60 s is the kernel default",
    },
    Suggested {
        key: "net.ipv4.tcp_tw_reuse",
        above: None,
        value: "1",
        why: "lets new outbound connections reuse a TIME_WAIT tuple (timestamps make it safe); \
              the default 2 does so on loopback only",
    },
    Suggested {
        key: "net.ipv4.ip_local_port_range",
        above: None,
        value: "1024 65535",
        why: "64,512 ports per destination instead of 28,232; keep listening ports out of it with \
              net.ipv4.ip_local_reserved_ports",
    },
    Suggested {
        key: "net.core.somaxconn",
        above: None,
        value: "4096",
        why: "the cap on every listener's accept queue (the application's backlog is capped by it)",
    },
    Suggested {
        key: "net.ipv4.tcp_max_syn_backlog",
        above: None,
        value: "8192",
        why: "half-open connections a listener keeps before dropping SYNs (without syncookies)",
    },
    Suggested {
        key: "net.ipv4.tcp_syncookies",
        above: None,
        value: "1",
        why: "answers SYNs with cookies when the SYN queue is full instead of dropping them",
    },
    Suggested {
        key: "net.core.netdev_budget",
        above: None,
        value: "600",
        why: "packets one softirq round may process (default 300) before it yields (time_squeeze)",
    },
    Suggested {
        key: "net.core.netdev_budget_usecs",
        above: None,
        value: "8000",
        why: "time one softirq round may take (default 2000 µs)",
    },
];

/// The row for `key` (any accepted form), if the table has one.
pub fn find(key: &str) -> Option<&'static Suggested> {
    let full = knobs::lookup(key).map(|k| k.key).unwrap_or(key);
    ROWS.iter().find(|s| s.key == full)
}

/// The row for `key`. Every key a rule suggests has one (the test
/// `every_key_the_rules_ask_for_has_a_row` lists them); an unknown key is
/// a programming error, caught there, and gets the first row in release.
pub fn row(key: &str) -> &'static Suggested {
    let r = find(key);
    debug_assert!(r.is_some(), "no suggestion row for {key}");
    r.unwrap_or(&ROWS[0])
}

/// The suggested value of a table key.
pub fn value(key: &str) -> &'static str {
    row(key).value
}

// ---- scoping -------------------------------------------------------------

/// How changes name the namespace a report is about: None for the host's
/// (init) netns, else its name, `pid N`, a path, or `inode N`.
pub fn netns_label(f: &Facts) -> Option<String> {
    match f.netns.as_ref() {
        Ok(n) if !n.is_init => n
            .name
            .clone()
            .or_else(|| n.inode.map(|i| format!("inode {i}"))),
        _ => None,
    }
}

/// Changes setting `(key, value)` pairs, each scoped by its knob: per-netns
/// ones in this report's namespace, global ones on the host.
pub fn sysctls<K: AsRef<str>, V: ToString>(
    f: &Facts,
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<Change> {
    let ns = netns_label(f);
    pairs
        .into_iter()
        .map(|(k, v)| Change::knob(k.as_ref(), v, ns.as_deref()))
        .collect()
}

/// A change to the table value of `key`.
pub fn suggested(f: &Facts, key: &str) -> Change {
    let r = row(key);
    sysctls(f, [(r.key, r.value)]).remove(0)
}

/// What the renderer needs from the facts: whether this is a child netns,
/// which keys a later boot file sets, and the late-module trap.
pub fn render_context(f: &Facts) -> change::Context {
    let mut ctx = change::Context {
        child: !f.is_init(),
        tune: true,
        ..change::Context::default()
    };
    if let Ok(p) = &f.persist {
        let ours = change::SYSCTL_FILE.rsplit('/').next().unwrap_or_default();
        for k in &p.sysctls {
            let Some(s) = &k.boot else { continue };
            let base = s.file.rsplit('/').next().unwrap_or(&s.file);
            let later = s.file == crate::snapshot::SYSCTL_CONF
                || (s.file.contains("sysctl.d/") && base > ours);
            if later && s.line > 0 {
                ctx.overrides.push(Override {
                    key: k.dotted(),
                    file: format!("/{}", s.file),
                    line: s.line,
                });
            }
        }
        ctx.module_loads_late = matches!(p.module, Ok(crate::snapshot::ModuleState::Module { .. }))
            && p.modules_load.is_empty();
    }
    ctx
}

// ---- the table's size ----------------------------------------------------

/// Per-entry object size: measured from slabinfo, else the 6.18 measurement.
pub fn objsize(f: &Facts) -> (u64, bool) {
    super::size::objsize(f)
}

/// The size a report suggests, shared by every rule that changes max or
/// buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct SizingFix {
    /// A new nf_conntrack_max, when one is due.
    pub max: Option<u64>,
    /// A new bucket count, when one is due (for the max in effect after the fix).
    pub buckets: Option<u64>,
    /// The table after the fix.
    pub size: Size,
    /// Raising max was wanted but the memory budget forbids it.
    pub capped_by_memory: bool,
    /// Entries that fit the memory budget.
    pub budget_max: u64,
    /// Why, in one sentence.
    pub reason: String,
}

/// Usage from which a table counts as under pressure.
pub const PRESSURE_USAGE: f64 = 0.75;
/// Usage from which a table counts as capped (demand unknown).
pub const CAPPED_USAGE: f64 = super::size::CAPPED_USAGE;
/// A full table costing more than this share of RAM is too big.
pub const MEMORY_WARN_SHARE: f64 = 0.25;

/// The one sizing of this report, taken from `plan` with its defaults
/// (`advice::size` with `Inputs::default()`: 2 × the demand, at least the
/// kernel default, within 10 % of RAM; buckets for a mean chain of 2):
/// raise max to it when the table is under pressure; lower max to the
/// budget when a full table would take more than a quarter of RAM; set one
/// when there is no limit (max 0). Buckets follow so the full table's mean
/// chain stays within 2. None when conntrack's numbers are unknown.
pub fn sizing(f: &Facts) -> Option<SizingFix> {
    let p = super::size::size(f, &super::size::Inputs::default())?;
    let (max, buckets) = (p.current_max, p.current_buckets);
    let capped = p.demand.capped;
    let pressure = capped || (max > 0 && p.demand.usage >= PRESSURE_USAGE);
    let default_max = p.kernel_default.map(|k| k.sizing.max);
    let rec = p.recommended;
    let current_full = sizing::full_table_bytes(max, p.objsize, buckets);
    let (new_max, reason) = if max == 0 {
        (
            Some(default_max.unwrap_or(262_144).min(p.budget_max).max(1)),
            "no limit is set: the kernel default for this RAM, within 10 % of RAM".to_string(),
        )
    } else if pressure && rec.max > max {
        let mut why = if capped {
            "2 × the max it reached (while capped, the real demand is unknown)".to_string()
        } else {
            "2 × the count".to_string()
        };
        let doubled = (p.base() as f64 * sizing::HEADROOM).ceil() as u64;
        if default_max.is_some_and(|d| d > doubled && d == rec.max) {
            why = format!("this kernel's default for this RAM, more than {why}");
        }
        if p.capped_by_memory {
            why.push_str(", capped at 10 % of RAM");
        }
        (Some(rec.max), why)
    } else if p.ram > 0 && current_full as f64 > p.ram as f64 * MEMORY_WARN_SHARE {
        (
            Some(p.budget_max.min(max)),
            "a full table at this max would take more than 25 % of RAM: what fits 10 %".to_string(),
        )
    } else {
        (None, String::new())
    };
    let effective_max = new_max.unwrap_or(max);
    // The hash must hold the max in effect, and every netns's entries
    // (slab objects are counted machine-wide): plan's bucket rule.
    let need = p.buckets_for(effective_max);
    let new_buckets = (buckets > 0
        && need > buckets
        && (sizing::mean_chain(effective_max.max(p.hash_entries), buckets) * 100.0).round()
            / 100.0
            > sizing::CHAIN_LIMIT)
        .then_some(need);
    Some(SizingFix {
        max: new_max.filter(|m| *m != max),
        buckets: new_buckets,
        size: p.cost(effective_max, new_buckets.unwrap_or(buckets)),
        capped_by_memory: pressure && p.capped_by_memory && rec.max <= max,
        budget_max: p.budget_max,
        reason,
    })
}

/// Which part of a sizing a rule's fix carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// max and, with it, the buckets it needs (table_full, usage, memory).
    Max,
    /// the buckets alone (hash_load): max is left to the rules that change it.
    Buckets,
}

/// The changes of a sizing. [`Part::Max`]: the new max (global) and the
/// buckets for it. Buckets: the hash size through /sys (global), its
/// persistence (the modprobe.d option for a module, the kernel command line
/// when built in) and — as a boot hashsize makes the default max
/// 8 × hashsize — max pinned in sysctl.d (the current max, unless the
/// report changes it).
pub fn sizing_changes(f: &Facts, s: &SizingFix, part: Part) -> Vec<Change> {
    let mut v = Vec::new();
    let ct = f.conntrack.as_ref().ok();
    if part == Part::Max {
        match s.max {
            Some(m) => v.extend(sysctls(f, [("net.netfilter.nf_conntrack_max", m)])),
            None => return v,
        }
    }
    if let Some(b) = s.buckets {
        v.extend(sysctls(f, [("nf_conntrack.hashsize", b)]));
        let module = ct.and_then(|c| c.is_module.as_ref().ok().copied());
        v.push(match module {
            Some(false) => Change::cmdline_hashsize(b),
            _ => Change::module_hashsize(b),
        });
        if s.max.is_none() {
            if let Some(m) = ct.and_then(|c| c.max.as_ref().ok().copied()) {
                v.extend(sysctls(f, [("net.netfilter.nf_conntrack_max", m)]));
            }
        }
    }
    v
}

// ---- computed companions ---------------------------------------------------

/// fs.file-max for a machine at `allocated` of `max` handles: twice the larger.
pub fn file_max(max: u64, allocated: u64) -> u64 {
    max.saturating_mul(2).max(allocated.saturating_mul(2))
}

/// tcp_max_tw_buckets when TIME_WAIT sockets near it: twice it, at least 262144
/// (a TIME_WAIT socket is one 256-byte object on 6.18).
pub fn tcp_max_tw_buckets(current: Option<u64>) -> u64 {
    current.unwrap_or(131_072).saturating_mul(2).max(262_144)
}

/// netdev_max_backlog when the per-CPU backlog drops: twice it, at least 16384.
pub fn netdev_max_backlog(current: Option<u64>) -> u64 {
    current.map_or(16_384, |b| b.saturating_mul(2).max(16_384))
}

/// nf_conntrack_expect_max when the expectation table filled: twice it, at least 1024.
pub fn expect_max(current: u64) -> u64 {
    current.saturating_mul(2).max(1024)
}

/// RLIMIT_NOFILE for a process at `open` fds: 4 × open, at least 65536,
/// a power of two, at most fs.nr_open.
pub fn nofile(open: u64, nr_open: Option<u64>) -> u64 {
    open.saturating_mul(4)
        .max(65_536)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX)
        .min(nr_open.unwrap_or(1_048_576))
}

/// The timeouts `conntrack.timeouts` judges, by name without `nf_conntrack_`.
pub const JUDGED_TIMEOUTS: &[&str] = &[
    "tcp_timeout_established",
    "tcp_timeout_syn_sent",
    "tcp_timeout_fin_wait",
    "tcp_timeout_time_wait",
    "tcp_timeout_close_wait",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_a_known_knob_once() {
        for (i, r) in ROWS.iter().enumerate() {
            let k = knobs::lookup(r.key).unwrap();
            assert_eq!(k.key, r.key);
            k.validate(r.value).unwrap();
            assert!(ROWS[i + 1..].iter().all(|o| o.key != r.key), "{}", r.key);
        }
        assert_eq!(value("tcp_timeout_time_wait"), "30");
    }

    #[test]
    fn every_key_the_rules_ask_for_has_a_row() {
        let literal = [
            "tcp_timeout_time_wait",
            "net.core.netdev_budget",
            "net.core.netdev_budget_usecs",
        ];
        for k in JUDGED_TIMEOUTS.iter().chain(&literal) {
            assert!(find(k).is_some(), "{k}");
        }
        assert!(find("tcp_timeout_close").is_none());
    }

    #[test]
    fn computed_values() {
        assert_eq!(file_max(100, 90), 200);
        assert_eq!(tcp_max_tw_buckets(Some(262_144)), 524_288);
        assert_eq!(tcp_max_tw_buckets(None), 262_144);
        assert_eq!(netdev_max_backlog(Some(1000)), 16_384);
        assert_eq!(netdev_max_backlog(Some(20_000)), 40_000);
        assert_eq!(nofile(20_000, Some(1 << 20)), 131_072);
        assert_eq!(nofile(1 << 20, Some(1 << 20)), 1 << 20);
    }
}
