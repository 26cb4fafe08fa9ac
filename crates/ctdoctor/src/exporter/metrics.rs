//! What the exporter exports: the one table of metric families
//! ([`FAMILIES`]: name, type, help, labels, source, privilege — the
//! exposition's HELP/TYPE lines, the landing page and docs/metrics.md all
//! come from it) and [`render`], a pure function from facts, findings and
//! table state to exposition text.
//!
//! Per-namespace series carry `netns` (the nsfs inode, as in "table full
//! in netns N") and `netns_name` (the name under /run/netns, `pid N`, or
//! empty). A value that could not be read is absent, never 0: its source's
//! `ctdoctor_source_up` is 0 and says so.
//!
//! Not for: reading anything (the refresher and `track` do), HTTP.

use super::encode::{Exposition, Family, Format, Kind};
use super::state::{class_labels, Reason, TableView, NCLASS};
use crate::checks::{Finding, Severity, RULES};
use crate::snapshot::Facts;

macro_rules! fam {
    ($id:ident, $name:literal, $kind:ident, [$($l:literal),*], $source:expr, $needs:expr, $help:expr) => {
        pub const $id: Family = Family {
            name: $name,
            kind: Kind::$kind,
            help: $help,
            labels: &[$($l),*],
            source: $source,
            needs: $needs,
        };
    };
}

const ROOT_NETLINK: &str = "CAP_NET_ADMIN (ctnetlink)";

// ---- conntrack (knobs, statistics, log) ------------------------------------
fam!(
    ENTRIES,
    "ctdoctor_conntrack_entries",
    Gauge,
    ["netns", "netns_name"],
    "conntrack: nf_conntrack_count",
    "none",
    "Entries in this network namespace's conntrack table (nf_conntrack_count)."
);
fam!(
    ENTRIES_LIMIT,
    "ctdoctor_conntrack_entries_limit",
    Gauge,
    ["netns", "netns_name"],
    "conntrack: nf_conntrack_max",
    "none",
    "nf_conntrack_max: the global limit each namespace's count is compared with."
);
fam!(
    BUCKETS,
    "ctdoctor_conntrack_buckets",
    Gauge,
    ["netns", "netns_name"],
    "conntrack: nf_conntrack_buckets",
    "none",
    "Hash buckets of the conntrack table (one table shared by all namespaces)."
);
fam!(FULL_TABLE_BYTES, "ctdoctor_conntrack_full_table_bytes", Gauge, ["netns", "netns_name"],
    "conntrack + system: max x objsize x 1.5 + 8 B per bucket", "root for the measured objsize (/proc/slabinfo); else 256 B is assumed",
    "Kernel memory a full table would take (entries at nf_conntrack_max, extensions, bucket array).");
fam!(TIME_TO_FULL, "ctdoctor_conntrack_time_to_full_seconds", Gauge, ["netns", "netns_name"],
    "conntrack: nf_conntrack_count over --growth-window", "none",
    "Seconds until the table is full at the count's growth over the growth window; absent when not growing, or when the count did not rise over the last 30 s (a burst that stopped).");
fam!(LOG_LINES, "ctdoctor_conntrack_table_full_log_lines_total", Counter, ["netns", "netns_name"],
    "kmsg: \"table full\" lines naming this netns (or, on >= 6.17, the init netns's inode-less ones)", "CAP_SYSLOG or root (/dev/kmsg with dmesg_restrict=1)",
    "Kernel log lines saying this namespace's table was full and a packet dropped (rate-limited: a lower bound; counted since the exporter started, from the lines in the log buffer then).");
fam!(LOG_LINES_UNATTRIBUTED, "ctdoctor_conntrack_table_full_log_lines_unattributed_total", Counter, [],
    "kmsg: \"table full\" lines without a netns (kernels before 6.17)", "CAP_SYSLOG or root",
    "Kernel \"table full\" log lines that do not say which namespace (kernels before 6.17 never do).");

// ---- statistics: one counter per `conntrack -S` name -----------------------
macro_rules! stat {
    ($id:ident, $name:literal, $help:expr) => {
        fam!($id, $name, Counter, ["netns", "netns_name"],
            "stat: /proc/net/stat/nf_conntrack by header name, else ctnetlink GET_STATS_CPU; summed over CPUs",
            "none for /proc; CAP_NET_ADMIN when only ctnetlink has them", $help);
    };
}
stat!(
    STAT_FOUND,
    "ctdoctor_conntrack_stat_found_total",
    "Lookups that found an existing entry (conntrack -S found)."
);
stat!(
    STAT_INVALID,
    "ctdoctor_conntrack_stat_invalid_total",
    "Packets conntrack could not track (conntrack -S invalid)."
);
stat!(
    STAT_INSERT,
    "ctdoctor_conntrack_stat_insert_total",
    "Entries inserted through ctnetlink (conntrack -S insert)."
);
stat!(
    STAT_INSERT_FAILED,
    "ctdoctor_conntrack_stat_insert_failed_total",
    "Inserts that failed: lost race, chain too long, dying entry (conntrack -S insert_failed)."
);
stat!(
    STAT_DROP,
    "ctdoctor_conntrack_stat_drop_total",
    "Packets dropped because tracking failed, a full table among the causes (conntrack -S drop)."
);
stat!(
    STAT_EARLY_DROP,
    "ctdoctor_conntrack_stat_early_drop_total",
    "Entries evicted to make room in a full table (conntrack -S early_drop)."
);
stat!(
    STAT_ERROR,
    "ctdoctor_conntrack_stat_error_total",
    "ICMP errors that could not be matched to an entry (conntrack -S error; /proc icmp_error)."
);
stat!(
    STAT_SEARCH_RESTART,
    "ctdoctor_conntrack_stat_search_restart_total",
    "Hash lookups restarted because of a concurrent resize (conntrack -S search_restart)."
);
stat!(
    STAT_CLASH_RESOLVE,
    "ctdoctor_conntrack_stat_clash_resolve_total",
    "Insert races resolved without a drop (conntrack -S clash_resolve; /proc clashres)."
);
stat!(STAT_CHAINTOOLONG, "ctdoctor_conntrack_stat_chaintoolong_total", "Inserts refused because a hash chain was too long (conntrack -S chaintoolong; /proc chainlength).");

/// `conntrack -S` name → /proc column, for each stat family.
const STATS: &[(&Family, &str)] = &[
    (&STAT_FOUND, "found"),
    (&STAT_INVALID, "invalid"),
    (&STAT_INSERT, "insert"),
    (&STAT_INSERT_FAILED, "insert_failed"),
    (&STAT_DROP, "drop"),
    (&STAT_EARLY_DROP, "early_drop"),
    (&STAT_ERROR, "icmp_error"),
    (&STAT_SEARCH_RESTART, "search_restart"),
    (&STAT_CLASH_RESOLVE, "clashres"),
    (&STAT_CHAINTOOLONG, "chainlength"),
];

// ---- the table's contents (events + resync dumps) --------------------------
fam!(TABLE_ENTRIES, "ctdoctor_conntrack_table_entries", Gauge, ["netns", "netns_name", "l4", "state"],
    "table: ctnetlink events and paced resync dumps", ROOT_NETLINK,
    "Entries by protocol and state as conntrack -L prints them (state empty for protocols without one).");
fam!(
    TABLE_EARLY_DROPPABLE,
    "ctdoctor_conntrack_table_early_droppable_entries",
    Gauge,
    ["netns", "netns_name"],
    "table",
    ROOT_NETLINK,
    "Entries not ASSURED: the ones early drop may evict when the table is full."
);
fam!(TABLE_DUMP_ONLY, "ctdoctor_conntrack_table_dump_only_entries", Gauge, ["netns", "netns_name"],
    "table", ROOT_NETLINK,
    "Entries known only from a dump (created before any event listener with nf_conntrack_events=2): their changes show at the next resync.");
fam!(TABLE_IN_SYNC, "ctdoctor_conntrack_table_in_sync", Gauge, ["netns", "netns_name"],
    "table", ROOT_NETLINK,
    "1 when the per-state counts are complete; 0 after events were lost or a dump failed, until a resync completes, and while their sum and the count disagree by more than 2 % (at least 256).");
fam!(TOP_CREATORS, "ctdoctor_conntrack_top_creators", Gauge, ["netns", "netns_name", "src"],
    "table: NEW events", ROOT_NETLINK,
    "Entries created per second over the last minute by the top 20 sources (original direction) of this netns: who fills the table. An upper bound (a bounded summary; see docs/metrics.md); a source leaves the series set when it leaves the top.");
fam!(TOP_DPORTS, "ctdoctor_conntrack_top_destination_ports", Gauge, ["netns", "netns_name", "proto", "dport"],
    "table: NEW events", ROOT_NETLINK,
    "Entries created per second over the last minute by the top 20 destination ports (original direction) of this netns. An upper bound, like ctdoctor_conntrack_top_creators.");
fam!(TABLE_MODE, "ctdoctor_conntrack_table_tracking_info", Gauge, ["netns", "netns_name", "mode"],
    "table", ROOT_NETLINK,
    "How the table is followed: mode=events (events, reconciled by resync dumps) or mode=dump (resync dumps only).");
fam!(
    EVENTS,
    "ctdoctor_conntrack_events_total",
    Counter,
    ["netns", "netns_name", "type"],
    "table: ctnetlink event groups NEW, UPDATE, DESTROY",
    ROOT_NETLINK,
    "Conntrack events received, by type (new, update, destroy)."
);
fam!(EVENTS_LOST, "ctdoctor_conntrack_events_lost_total", Counter, ["netns", "netns_name"],
    "table: ENOBUFS on the event socket", ROOT_NETLINK,
    "Times the kernel dropped events for us (ENOBUFS); each one makes the counts wrong until a resync.");
fam!(
    EVENTS_UNDECODABLE,
    "ctdoctor_conntrack_events_undecodable_total",
    Counter,
    ["netns", "netns_name"],
    "table",
    ROOT_NETLINK,
    "Event or dump messages without an id or original tuple (not followed)."
);
fam!(
    RESYNCS,
    "ctdoctor_conntrack_table_resyncs_total",
    Counter,
    ["netns", "netns_name", "reason"],
    "table: full ctnetlink dumps",
    ROOT_NETLINK,
    "Completed resync dumps by reason (start, periodic, lost, mismatch)."
);
fam!(
    RESYNC_FAILURES,
    "ctdoctor_conntrack_table_resync_failures_total",
    Counter,
    ["netns", "netns_name"],
    "table",
    ROOT_NETLINK,
    "Resync dumps that failed."
);
fam!(
    RESYNC_AGE,
    "ctdoctor_conntrack_table_resync_age_seconds",
    Gauge,
    ["netns", "netns_name"],
    "table",
    ROOT_NETLINK,
    "Seconds since the last completed resync dump."
);
fam!(
    RESYNC_DURATION,
    "ctdoctor_conntrack_table_resync_duration_seconds",
    Gauge,
    ["netns", "netns_name"],
    "table",
    ROOT_NETLINK,
    "Wall time of the last completed resync dump (~2 us of kernel CPU per entry)."
);
fam!(
    TRACKER_BYTES,
    "ctdoctor_conntrack_table_tracker_bytes",
    Gauge,
    ["netns", "netns_name"],
    "table",
    ROOT_NETLINK,
    "Memory of the id-to-state map that follows this table (8 bytes per slot)."
);

// ---- sockets, softnet, NICs -------------------------------------------------
fam!(
    TIME_WAIT,
    "ctdoctor_sockets_tcp_time_wait",
    Gauge,
    ["netns", "netns_name"],
    "sockets: /proc/net/sockstat TCP tw",
    "none",
    "TCP sockets in TIME_WAIT in this namespace."
);
fam!(
    TW_LIMIT,
    "ctdoctor_sockets_tcp_max_tw_buckets",
    Gauge,
    ["netns", "netns_name"],
    "sockets: net.ipv4.tcp_max_tw_buckets",
    "none",
    "net.ipv4.tcp_max_tw_buckets: TIME_WAIT sockets beyond it are destroyed early."
);
fam!(
    LISTEN_OVERFLOWS,
    "ctdoctor_tcp_listen_overflows_total",
    Counter,
    ["netns", "netns_name"],
    "sockets: /proc/net/netstat TcpExt ListenOverflows",
    "none",
    "Connections dropped because a listener's accept queue was full (TcpExt ListenOverflows)."
);
fam!(
    LISTEN_DROPS,
    "ctdoctor_tcp_listen_drops_total",
    Counter,
    ["netns", "netns_name"],
    "sockets: /proc/net/netstat TcpExt ListenDrops",
    "none",
    "SYNs dropped at a listener for any reason (TcpExt ListenDrops)."
);
fam!(TW_OVERFLOW, "ctdoctor_tcp_time_wait_overflow_total", Counter, ["netns", "netns_name"],
    "sockets: /proc/net/netstat TcpExt TCPTimeWaitOverflow", "none",
    "TIME_WAIT sockets not created because tcp_max_tw_buckets was reached (TcpExt TCPTimeWaitOverflow).");
fam!(
    SOFTNET_DROPPED,
    "ctdoctor_softnet_dropped_total",
    Counter,
    [],
    "sockets: /proc/net/softnet_stat column 2, summed over CPUs",
    "none",
    "Packets dropped because a CPU's input backlog (netdev_max_backlog) was full (machine-wide)."
);
fam!(
    SOFTNET_SQUEEZE,
    "ctdoctor_softnet_time_squeeze_total",
    Counter,
    [],
    "sockets: /proc/net/softnet_stat column 3, summed over CPUs",
    "none",
    "Times packet processing ran out of budget with work left (machine-wide)."
);
fam!(
    NIC_DROP,
    "ctdoctor_nic_drop_total",
    Counter,
    ["netns", "netns_name", "device", "direction"],
    "nic: /proc/net/dev drop column (rx: dropped + missed)",
    "none",
    "Packets an interface dropped, by direction (rx, tx)."
);
fam!(
    NIC_FIFO,
    "ctdoctor_nic_fifo_errors_total",
    Counter,
    ["netns", "netns_name", "device", "direction"],
    "nic: /proc/net/dev fifo column",
    "none",
    "Interface FIFO overruns, by direction (rx, tx)."
);
fam!(NIC_ALLOWANCE, "ctdoctor_nic_allowance_exceeded_total", Counter, ["netns", "netns_name", "device", "allowance"],
    "nic: ethtool -S *_allowance_exceeded (AWS ENA)", "none (SIOCETHTOOL)",
    "Packets a cloud NIC queued or dropped because an allowance was exceeded (bw_in, bw_out, pps, conntrack, linklocal); no sysctl raises these.");
fam!(NIC_CT_AVAILABLE, "ctdoctor_nic_conntrack_allowance_available", Gauge, ["netns", "netns_name", "device"],
    "nic: ethtool -S conntrack_allowance_available (AWS ENA >= 2.8.1)", "none (SIOCETHTOOL)",
    "Tracked connections the cloud NIC can still add before its own conntrack allowance is exceeded.");

// ---- checks and sources ------------------------------------------------------
fam!(FINDING, "ctdoctor_check_finding", Gauge, ["netns", "netns_name", "id", "severity"],
    "checks: the rules of `ctdoctor check` on the same facts", "as its inputs",
    "1 for each finding that is not ok (severity info, warning or critical), as `ctdoctor check` reports it.");
fam!(RULE_CHECKED, "ctdoctor_check_rule_checked", Gauge, ["netns", "netns_name", "id"],
    "checks: RULES", "as its inputs",
    "1 when the rule judged its input, 0 when the input was unavailable or not read by the exporter.");
fam!(SOURCE_UP, "ctdoctor_source_up", Gauge, ["netns", "netns_name", "source"],
    "every source the exporter reads", "none",
    "1 when the source was read at the last refresh, 0 when it could not be (see the landing page for why).");
fam!(
    SOURCE_DURATION,
    "ctdoctor_source_duration_seconds",
    Gauge,
    ["netns", "netns_name", "source"],
    "every source the exporter reads",
    "none",
    "Wall time of the source's last read (the table: of its last resync dump)."
);
fam!(
    FACTS_AGE,
    "ctdoctor_facts_age_seconds",
    Gauge,
    ["netns", "netns_name"],
    "the refresher",
    "none",
    "Seconds since this namespace's facts were read."
);
fam!(NETNS_INFO, "ctdoctor_netns_info", Gauge, ["netns", "netns_name", "init", "owner"],
    "netns: nsfs inode, /run/netns pin, the processes living in it", "CAP_SYS_ADMIN to enter another namespace",
    "1 per exported namespace: whether it is the host's, and who lives in it (a container id or a process) when known.");
fam!(
    BUILD_INFO,
    "ctdoctor_exporter_build_info",
    Gauge,
    ["version"],
    "the binary",
    "none",
    "1, labelled with the ctdoctor version."
);
fam!(
    REFRESH_DURATION,
    "ctdoctor_exporter_refresh_duration_seconds",
    Gauge,
    [],
    "the refresher",
    "none",
    "Wall time of the last refresh of every namespace's facts and findings."
);
fam!(
    HTTP_REQUESTS,
    "ctdoctor_exporter_http_requests_total",
    Counter,
    ["code"],
    "the HTTP server",
    "none",
    "HTTP requests answered, by status code."
);
fam!(
    HTTP_REJECTED,
    "ctdoctor_exporter_http_rejected_connections_total",
    Counter,
    [],
    "the HTTP server",
    "none",
    "Connections closed unanswered: too many at once, too slow, or malformed past answering."
);

fam!(
    KERNEL_DROPS,
    "ctdoctor_kernel_drops_total",
    Counter,
    ["reason"],
    "drops: skb:kfree_skb in a tracing instance (--drop-reasons)",
    "root (tracefs)",
    "Packets the kernel dropped since the exporter started, by the kernel's drop reason (5.17+; `unknown` before). NETFILTER_DROP includes conntrack's table-full drops: see ctdoctor_conntrack_stat_drop_total."
);
fam!(
    KERNEL_DROPS_LOST,
    "ctdoctor_kernel_drop_events_lost_total",
    Counter,
    [],
    "drops: the tracing instance's per-CPU stats (--drop-reasons)",
    "root (tracefs)",
    "Drop events the trace buffers could not hold: ctdoctor_kernel_drops_total is short by this much."
);

/// Every family, in exposition order.
pub const FAMILIES: &[Family] = &[
    ENTRIES,
    ENTRIES_LIMIT,
    BUCKETS,
    FULL_TABLE_BYTES,
    TIME_TO_FULL,
    LOG_LINES,
    LOG_LINES_UNATTRIBUTED,
    STAT_FOUND,
    STAT_INVALID,
    STAT_INSERT,
    STAT_INSERT_FAILED,
    STAT_DROP,
    STAT_EARLY_DROP,
    STAT_ERROR,
    STAT_SEARCH_RESTART,
    STAT_CLASH_RESOLVE,
    STAT_CHAINTOOLONG,
    TABLE_ENTRIES,
    TABLE_EARLY_DROPPABLE,
    TABLE_DUMP_ONLY,
    TABLE_IN_SYNC,
    TOP_CREATORS,
    TOP_DPORTS,
    TABLE_MODE,
    EVENTS,
    EVENTS_LOST,
    EVENTS_UNDECODABLE,
    RESYNCS,
    RESYNC_FAILURES,
    RESYNC_AGE,
    RESYNC_DURATION,
    TRACKER_BYTES,
    TIME_WAIT,
    TW_LIMIT,
    LISTEN_OVERFLOWS,
    LISTEN_DROPS,
    TW_OVERFLOW,
    SOFTNET_DROPPED,
    SOFTNET_SQUEEZE,
    KERNEL_DROPS,
    KERNEL_DROPS_LOST,
    NIC_DROP,
    NIC_FIFO,
    NIC_ALLOWANCE,
    NIC_CT_AVAILABLE,
    FINDING,
    RULE_CHECKED,
    SOURCE_UP,
    SOURCE_DURATION,
    FACTS_AGE,
    NETNS_INFO,
    BUILD_INFO,
    REFRESH_DURATION,
    HTTP_REQUESTS,
    HTTP_REJECTED,
];

/// One namespace as a scrape sees it.
#[derive(Debug, Clone, Copy)]
pub struct Netns<'a> {
    pub facts: &'a Facts,
    pub findings: &'a [Finding],
    /// The table tracker's state (None with `--table off`).
    pub table: Option<&'a TableView>,
    /// Table-full log lines counted for this namespace.
    pub log_lines: Option<u64>,
    pub time_to_full_secs: Option<f64>,
    pub facts_age_secs: f64,
    /// Who lives there (a container id, `comm (pid N)`), when known.
    pub owner: Option<&'a str>,
}

/// The machine-wide part of a scrape.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub version: &'static str,
    pub refresh_secs: Option<f64>,
    pub unattributed_log_lines: Option<u64>,
    /// Requests answered by status code.
    pub http_requests: Vec<(u16, u64)>,
    pub http_rejected: u64,
    /// `--drop-reasons`: the census's totals.
    pub drops: Option<super::drops::Totals>,
}

/// The namespace's label values: inode and name (empty when unknown).
pub fn netns_labels(f: &Facts) -> (String, String) {
    match &f.netns {
        Ok(id) => (
            id.inode.map(|i| i.to_string()).unwrap_or_default(),
            id.name.clone().unwrap_or_default(),
        ),
        Err(_) => (String::new(), String::new()),
    }
}

/// Whether a finding says its rule could not judge (input unavailable or
/// not read): those show as `ctdoctor_check_rule_checked` 0, not as findings.
pub fn not_checked(f: &Finding) -> bool {
    !f.is_checked()
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The exposition of `namespaces` and the machine.
pub fn render(namespaces: &[Netns<'_>], m: &Machine, format: Format) -> String {
    let mut e = Exposition::new(FAMILIES);
    // Two readings with the same labels (a namespace whose identity could
    // not be read, twice) would be duplicate series: the first one wins.
    let mut seen = std::collections::HashSet::new();
    for ns in namespaces {
        if seen.insert(netns_labels(ns.facts)) {
            netns(&mut e, ns);
        }
    }
    machine(&mut e, namespaces, m);
    e.write(format)
}

fn netns(e: &mut Exposition, ns: &Netns<'_>) {
    let f = ns.facts;
    let (ino, name) = netns_labels(f);
    let l = [ino.as_str(), name.as_str()];
    if let Ok(c) = &f.conntrack {
        e.push(&ENTRIES, &l, c.count);
        if let Ok(m) = c.max {
            e.push(&ENTRIES_LIMIT, &l, m);
        }
        if let Ok(b) = c.buckets {
            e.push(&BUCKETS, &l, b);
        }
        if let (Ok(m), Ok(b)) = (&c.max, &c.buckets) {
            let (objsize, _measured) = crate::advice::suggest::objsize(f);
            e.push(
                &FULL_TABLE_BYTES,
                &l,
                crate::advice::sizing::full_table_bytes(*m, objsize, *b),
            );
        }
    }
    if let Some(t) = ns.time_to_full_secs {
        e.push(&TIME_TO_FULL, &l, t);
    }
    if let Some(n) = ns.log_lines {
        e.push(&LOG_LINES, &l, n);
    }
    if let Ok(s) = &f.stat {
        for (fam, col) in STATS {
            if let Some(v) = s.get(col) {
                e.push(fam, &l, v);
            }
        }
    }
    if let Some(t) = ns.table {
        table(e, &l, t);
    }
    if let Ok(s) = &f.sockets {
        if let Ok(tw) = s.tcp("tw") {
            e.push(&TIME_WAIT, &l, tw);
        }
        if let Ok(v) = s.sysctls.tcp_max_tw_buckets {
            e.push(&TW_LIMIT, &l, v);
        }
        for (fam, key) in [
            (&LISTEN_OVERFLOWS, "ListenOverflows"),
            (&LISTEN_DROPS, "ListenDrops"),
            (&TW_OVERFLOW, "TCPTimeWaitOverflow"),
        ] {
            if let Ok(v) = s.tcp_ext(key) {
                e.push(fam, &l, v);
            }
        }
    }
    if let Ok(n) = &f.nic {
        for (dev, c) in &n.dev {
            for (dir, drop, fifo) in [("rx", c.rx_drop, c.rx_fifo), ("tx", c.tx_drop, c.tx_fifo)] {
                e.push(&NIC_DROP, &[l[0], l[1], dev.as_str(), dir], drop);
                e.push(&NIC_FIFO, &[l[0], l[1], dev.as_str(), dir], fifo);
            }
        }
        if let Ok(et) = &n.ethtool {
            for (dev, i) in &et.ifaces {
                for (k, v) in i.allowance_exceeded() {
                    let a = k.strip_suffix("_allowance_exceeded").unwrap_or(k);
                    e.push(&NIC_ALLOWANCE, &[l[0], l[1], dev.as_str(), a], *v);
                }
                if let Some(v) = i.stats.get("conntrack_allowance_available") {
                    e.push(&NIC_CT_AVAILABLE, &[l[0], l[1], dev.as_str()], *v);
                }
            }
        }
    }
    for fd in ns.findings {
        if fd.severity != Severity::Ok && !not_checked(fd) {
            e.push(&FINDING, &[l[0], l[1], &fd.id, fd.severity.as_str()], 1u64);
        }
    }
    for r in RULES {
        let checked = ns
            .findings
            .iter()
            .find(|fd| fd.id == r.id)
            .is_some_and(|fd| !not_checked(fd));
        e.push(&RULE_CHECKED, &[l[0], l[1], r.id], checked);
    }
    for s in &f.sources {
        let unselected = !s.ok && s.error.as_deref() == Some("not selected");
        // The exporter follows the table itself (below), never through a
        // fact — except for a namespace it can no longer read at all.
        if unselected || (s.name == "table" && ns.table.is_some()) {
            continue;
        }
        e.push(&SOURCE_UP, &[l[0], l[1], &s.name], s.ok);
        e.push(
            &SOURCE_DURATION,
            &[l[0], l[1], &s.name],
            secs(s.duration_us),
        );
    }
    if let Some(t) = ns.table {
        let up = t.error.is_none() && t.counts.is_some();
        e.push(&SOURCE_UP, &[l[0], l[1], "table"], up);
        if let Some(d) = t.resync_secs {
            e.push(&SOURCE_DURATION, &[l[0], l[1], "table"], d);
        }
    }
    e.push(&FACTS_AGE, &l, ns.facts_age_secs);
    let init = if f.is_init() { "true" } else { "false" };
    e.push(
        &NETNS_INFO,
        &[l[0], l[1], init, ns.owner.unwrap_or("")],
        1u64,
    );
}

/// TCP states always exported (0 when none), so their series never vanish.
fn always_shown(class: u8) -> bool {
    let (l4, state) = class_labels(class);
    (l4 == "tcp" && state != super::state::UNKNOWN_STATE) || l4 == "udp" || l4 == "icmp"
}

fn table(e: &mut Exposition, l: &[&str; 2], t: &TableView) {
    e.push(&TABLE_MODE, &[l[0], l[1], t.mode.as_str()], 1u64);
    if let Some(counts) = &t.counts {
        let mut droppable = 0;
        let mut dump_only = 0;
        for (c, n) in counts.iter().enumerate().skip(1).take(NCLASS - 1) {
            droppable += n.early_droppable;
            dump_only += n.dump_only;
            if n.entries > 0 || always_shown(c as u8) {
                let (l4, state) = class_labels(c as u8);
                e.push(&TABLE_ENTRIES, &[l[0], l[1], l4, state], n.entries);
            }
        }
        e.push(&TABLE_EARLY_DROPPABLE, l, droppable);
        if t.mode == super::state::Mode::Events {
            e.push(&TABLE_DUMP_ONLY, l, dump_only);
        }
    }
    e.push(&TABLE_IN_SYNC, l, t.in_sync);
    if t.mode == super::state::Mode::Events {
        for (ty, n) in [
            ("new", t.events.new),
            ("update", t.events.update),
            ("destroy", t.events.destroy),
        ] {
            e.push(&EVENTS, &[l[0], l[1], ty], n);
        }
        e.push(&EVENTS_LOST, l, t.events.lost);
        e.push(&TRACKER_BYTES, l, t.map_bytes);
        for r in &t.top_sources {
            let src = r.key.to_string();
            e.push(&TOP_CREATORS, &[l[0], l[1], &src], r.per_sec);
        }
        for r in &t.top_dports {
            let (proto, port) = r.key;
            let p = crate::table::entry::l4_name(proto)
                .map(str::to_string)
                .unwrap_or_else(|| proto.to_string());
            let port = port.to_string();
            e.push(&TOP_DPORTS, &[l[0], l[1], &p, &port], r.per_sec);
        }
    }
    e.push(&EVENTS_UNDECODABLE, l, t.events.undecodable);
    for (r, n) in Reason::ALL.iter().zip(t.resyncs) {
        e.push(&RESYNCS, &[l[0], l[1], r.as_str()], n);
    }
    e.push(&RESYNC_FAILURES, l, t.resync_failures);
    if let Some(a) = t.resync_age_secs {
        e.push(&RESYNC_AGE, l, a);
    }
    if let Some(d) = t.resync_secs {
        e.push(&RESYNC_DURATION, l, d);
    }
}

fn machine(e: &mut Exposition, namespaces: &[Netns<'_>], m: &Machine) {
    if let Some(n) = m.unattributed_log_lines {
        e.push(&LOG_LINES_UNATTRIBUTED, &[], n);
    }
    // softnet_stat is per CPU, the same in every namespace: read it from
    // the host's namespace when exported, else the first that has it.
    let softnet = namespaces
        .iter()
        .filter(|n| n.facts.is_init())
        .chain(namespaces.iter())
        .find_map(|n| n.facts.sockets.as_ref().ok()?.softnet.as_ref().ok());
    if let Some(s) = softnet {
        e.push(&SOFTNET_DROPPED, &[], s.dropped);
        e.push(&SOFTNET_SQUEEZE, &[], s.time_squeeze);
    }
    if let Some(d) = &m.drops {
        for (reason, n) in &d.by_reason {
            e.push(&KERNEL_DROPS, &[reason], *n);
        }
        e.push(&KERNEL_DROPS_LOST, &[], d.lost);
    }
    e.push(&BUILD_INFO, &[m.version], 1u64);
    if let Some(d) = m.refresh_secs {
        e.push(&REFRESH_DURATION, &[], d);
    }
    for (code, n) in &m.http_requests {
        e.push(&HTTP_REQUESTS, &[&code.to_string()], *n);
    }
    e.push(&HTTP_REJECTED, &[], m.http_rejected);
}

/// The reference table of docs/metrics.md (Markdown), made from
/// [`FAMILIES`] so the page cannot drift from the code.
pub fn reference_table() -> String {
    let mut t = String::from(
        "| metric | type | labels | meaning | source | needs |\n|---|---|---|---|---|---|\n",
    );
    let cell = |s: &str| s.replace('|', "\\|");
    for f in FAMILIES {
        let labels = if f.labels.is_empty() {
            "—".to_string()
        } else {
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        t.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            f.name,
            f.kind.as_str(),
            labels,
            cell(f.help),
            cell(f.source),
            cell(f.needs)
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_stat_family_is_a_live_column_under_its_conntrack_s_name() {
        for (fam, proc) in STATS {
            let col = crate::host::stat::column(proc)
                .unwrap_or_else(|| panic!("{proc} is not in host::stat::COLUMNS"));
            assert_eq!(col.kind, crate::host::stat::Kind::Live, "{proc}");
            let name = col.netlink.expect("a family has a conntrack -S name");
            assert_eq!(
                fam.name,
                format!("ctdoctor_conntrack_stat_{name}_total"),
                "{proc}"
            );
        }
    }

    use super::*;

    /// docs/metrics.md holds [`reference_table`] between its markers;
    /// `UPDATE_DOCS=1` rewrites it (review the diff).
    #[test]
    fn docs_reference_table_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
        let doc = std::fs::read_to_string(&path).expect("docs/metrics.md");
        let (begin, end) = ("<!-- families:begin -->\n", "<!-- families:end -->");
        let a = doc.find(begin).expect("begin marker") + begin.len();
        let b = doc.find(end).expect("end marker");
        let want = reference_table();
        if doc[a..b] != want {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                let new = format!("{}{}{}", &doc[..a], want, &doc[b..]);
                std::fs::write(&path, new).unwrap();
            } else {
                panic!("docs/metrics.md is out of date: run UPDATE_DOCS=1 cargo test -p ctdoctor --lib docs_reference");
            }
        }
    }

    #[test]
    fn render_from_fixture_facts_and_a_table_view() {
        use super::super::state::{class_of, ClassCount, EventCounts, Mode};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ct-table-full-6.18");
        let facts = crate::host::read_facts_with(
            &crate::host::Root::live_at(dir),
            super::super::refresh::select(),
        );
        let snap = crate::snapshot::Snapshot {
            now: facts.clone(),
            earlier: None,
        };
        let findings = crate::checks::run_all(&snap);
        let mut counts = [ClassCount::default(); NCLASS];
        counts[class_of(6, Some(7)) as usize] = ClassCount {
            entries: 7,
            early_droppable: 2,
            dump_only: 1,
        };
        counts[class_of(132, Some(4)) as usize].entries = 1;
        let view = TableView {
            mode: Mode::Events,
            counts: Some(counts),
            events: EventCounts::default(),
            resyncs: [1, 0, 0, 0],
            top_sources: vec![],
            top_dports: vec![],
            resync_failures: 0,
            resync_age_secs: Some(1.5),
            resync_secs: Some(0.25),
            in_sync: true,
            error: None,
            followed: 8,
            map_bytes: 8192,
        };
        let ns = Netns {
            facts: &facts,
            findings: &findings,
            table: Some(&view),
            log_lines: Some(3),
            time_to_full_secs: None,
            facts_age_secs: 0.5,
            owner: Some("nginx (pid 1)"),
        };
        // The same namespace twice: rendered once.
        let text = render(&[ns, ns], &Machine::default(), Format::Text);
        let mut seen = std::collections::HashSet::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let series = l.rsplit_once(' ').unwrap().0;
            assert!(seen.insert(series.to_string()), "duplicate {series}");
        }
        let l = "netns=\"4026532177\",netns_name=\"gw\"";
        for want in [
            format!("ctdoctor_conntrack_table_entries{{{l},l4=\"tcp\",state=\"TIME_WAIT\"}} 7"),
            format!("ctdoctor_conntrack_table_entries{{{l},l4=\"tcp\",state=\"SYN_SENT\"}} 0"),
            format!("ctdoctor_conntrack_table_entries{{{l},l4=\"sctp\",state=\"ESTABLISHED\"}} 1"),
            format!("ctdoctor_conntrack_table_early_droppable_entries{{{l}}} 2"),
            format!("ctdoctor_conntrack_table_dump_only_entries{{{l}}} 1"),
            format!("ctdoctor_conntrack_table_full_log_lines_total{{{l}}} 3"),
            format!("ctdoctor_source_up{{{l},source=\"table\"}} 1"),
            format!("ctdoctor_netns_info{{{l},init=\"false\",owner=\"nginx (pid 1)\"}} 1"),
        ] {
            assert!(text.contains(&format!("{want}\n")), "missing {want}");
        }
        assert!(
            !text.contains("state=\"UNKNOWN\""),
            "unknown states only when present"
        );
        assert!(
            !text.contains("source=\"persist\""),
            "not selected: not a source_up 0"
        );
    }

    #[test]
    fn family_table_is_well_formed() {
        let mut names = std::collections::HashSet::new();
        for f in FAMILIES {
            assert!(names.insert(f.name), "{} twice", f.name);
            assert!(f.name.starts_with("ctdoctor_"), "{}", f.name);
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            assert!(
                f.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                f.name
            );
            assert!(
                f.help.ends_with('.') && !f.help.contains('\n'),
                "{}",
                f.name
            );
            // Units spelled out: no abbreviations promtool flags.
            for bad in ["_secs", "_ms", "_usec", "_kb", "_mb", "_sec_"] {
                assert!(!f.name.contains(bad), "{}", f.name);
            }
            for l in f.labels {
                assert!(!l.starts_with("__"), "{}", f.name);
            }
            let per_ns = f.labels.starts_with(&["netns", "netns_name"]);
            assert!(per_ns || !f.labels.contains(&"netns"), "{}", f.name);
        }
        for (f, _) in STATS {
            assert!(FAMILIES.contains(f));
        }
    }
}
