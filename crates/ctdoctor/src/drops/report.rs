//! From a census and what rose beside it to the report: drops per reason
//! with their locations, protocols and senders, and the netfilter drops
//! split by what explains them. Pure: names and counter rises come in as
//! data, the JSON shape and the text go out.
//!
//! Why netfilter drops need a split: a conntrack table-full drop and a
//! firewall rule's drop are both freed at nf_hook_slow with reason
//! NETFILTER_DROP. What tells them apart is measured beside the census:
//! per namespace, conntrack's `drop` and `insert_failed` counters (each a
//! packet conntrack dropped; `early_drop` is an eviction, no packet lost)
//! and the packet counters of rules that drop. What neither explains is
//! "unattributed" (a drop rule without a counter, a chain's drop policy).

use super::census::Census;
use super::format::Format;
use crate::util::thousands as group;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Locations, protocols and senders kept per reason.
const TOP: usize = 5;

/// The census, explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropReport {
    /// The headline, as the text report starts.
    pub headline: String,
    pub window_s: f64,
    /// Drops the kernel could not hand over (buffer full): these are
    /// counted nowhere below.
    pub lost_events: u64,
    /// Whether this kernel gives drop reasons (5.17 and later).
    pub reasons_known: bool,
    pub total: u64,
    pub per_sec: f64,
    /// By reason, most first.
    pub reasons: Vec<ReasonRow>,
    /// What rose beside the census, per namespace read.
    pub netns: Vec<NetnsRise>,
    /// What could not be read or said, in words.
    pub notes: Vec<String>,
    /// What to run next: `ctdoctor check` on each namespace whose conntrack
    /// explained drops or whose ListenDrops rose (its rules name the cause
    /// and print the fix).
    #[serde(default)]
    pub next: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonRow {
    /// The kernel's name (`NETFILTER_DROP`); `null` on a kernel without
    /// reasons (then this one row holds every drop, by location).
    pub reason: Option<String>,
    pub count: u64,
    pub per_sec: f64,
    pub locations: Vec<Counted>,
    pub protocols: Vec<Counted>,
    /// Who sent the dropped packets: a process (drops in process context:
    /// packets this host sends), or `softirq` (received, forwarded, timers).
    pub senders: Vec<Counted>,
    /// Netfilter drops only: what explains them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explained_by: Vec<Explained>,
}

/// A name and how many drops it had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counted {
    pub name: String,
    pub count: u64,
}

/// One cause of netfilter drops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explained {
    /// `conntrack`, `rule` or `unattributed`.
    pub cause: String,
    pub netns: Option<String>,
    /// The rule, for cause `rule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub count: u64,
    /// For conntrack: which counters rose, and the table's fill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What rose in one namespace during the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetnsRise {
    pub netns: String,
    /// conntrack's counters' rises (`None`: conntrack not loaded there, or
    /// not read: see `not_read`).
    pub conntrack_drop: Option<u64>,
    pub insert_failed: Option<u64>,
    pub early_drop: Option<u64>,
    /// The table's count and max at the end.
    pub count: Option<u64>,
    pub max: Option<u64>,
    /// Drop rules whose counter rose: (rule, packets).
    pub rules: Vec<RuleRise>,
    /// TcpExt ListenDrops's rise: includes SYNs refused at a full accept
    /// queue, which the kernel frees as consumed — no kfree_skb, so the
    /// census cannot see them.
    #[serde(default)]
    pub listen_drops: Option<u64>,
    /// What could not be read here.
    pub not_read: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleRise {
    pub rule: String,
    pub packets: u64,
}

/// Names the host resolved for the census's numbers.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// Location → `nf_hook_slow+0x7d/0x110`.
    pub symbols: HashMap<u64, String>,
    /// Sender pid → process name.
    pub processes: HashMap<u32, String>,
}

/// The ethertype's name.
pub fn protocol_name(p: u16) -> String {
    match p {
        0x0800 => "IPv4".into(),
        0x86dd => "IPv6".into(),
        0x0806 => "ARP".into(),
        0 => "unset".into(),
        p => format!("0x{p:04x}"),
    }
}

fn top(m: BTreeMap<String, u64>) -> Vec<Counted> {
    let mut v: Vec<Counted> = m
        .into_iter()
        .map(|(name, count)| Counted { name, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    if v.len() > TOP {
        let rest: u64 = v[TOP..].iter().map(|c| c.count).sum();
        let n = v.len() - TOP;
        v.truncate(TOP);
        v.push(Counted {
            name: format!("{n} more"),
            count: rest,
        });
    }
    v
}

/// Whether a location is netfilter's hook verdict (a kernel without
/// reasons tells netfilter drops by where they are freed).
fn is_netfilter_site(symbol: &str) -> bool {
    symbol.starts_with("nf_hook_slow")
}

/// Build the report.
pub fn build(
    census: &Census,
    fmt: &Format,
    names: &Names,
    rises: Vec<NetnsRise>,
    window_s: f64,
    lost_events: u64,
    mut notes: Vec<String>,
) -> DropReport {
    let rate = |n: u64| {
        if window_s > 0.0 {
            n as f64 / window_s
        } else {
            0.0
        }
    };
    let sym = |a: u64| {
        names
            .symbols
            .get(&a)
            .cloned()
            .unwrap_or_else(|| format!("0x{a:x}"))
    };
    struct Acc {
        count: u64,
        netfilter: u64,
        locations: BTreeMap<String, u64>,
        protocols: BTreeMap<String, u64>,
        senders: BTreeMap<String, u64>,
    }
    let mut by: BTreeMap<Option<u64>, Acc> = BTreeMap::new();
    for (k, &n) in &census.counts {
        let a = by.entry(k.reason).or_insert_with(|| Acc {
            count: 0,
            netfilter: 0,
            locations: BTreeMap::new(),
            protocols: BTreeMap::new(),
            senders: BTreeMap::new(),
        });
        a.count += n;
        let s = sym(k.location);
        let nf = match k.reason {
            Some(r) => fmt.reasons.get(&r).is_some_and(|n| n == "NETFILTER_DROP"),
            None => is_netfilter_site(&s),
        };
        if nf {
            a.netfilter += n;
        }
        *a.locations.entry(s).or_insert(0) += n;
        *a.protocols.entry(protocol_name(k.protocol)).or_insert(0) += n;
        let who = match k.sender {
            Some(pid) => match names.processes.get(&pid) {
                Some(c) => format!("{c}[{pid}]"),
                None => format!("pid {pid} (exited)"),
            },
            None => "softirq".into(),
        };
        *a.senders.entry(who).or_insert(0) += n;
    }
    let mut reasons: Vec<ReasonRow> = by
        .into_iter()
        .map(|(r, a)| ReasonRow {
            reason: r.map(|r| fmt.reason_name(r)),
            count: a.count,
            per_sec: rate(a.count),
            explained_by: if a.netfilter > 0 {
                explain(a.netfilter, &rises)
            } else {
                Vec::new()
            },
            locations: top(a.locations),
            protocols: top(a.protocols),
            senders: top(a.senders),
        })
        .collect();
    if census.unkeyed > 0 {
        reasons.push(ReasonRow {
            reason: Some("OTHER".into()),
            count: census.unkeyed,
            per_sec: rate(census.unkeyed),
            locations: Vec::new(),
            protocols: Vec::new(),
            senders: Vec::new(),
            explained_by: Vec::new(),
        });
        notes.push(format!(
            "{} drops are counted without their reason: more than {} distinct \
             reason/location/sender keys",
            group(census.unkeyed),
            super::census::MAX_KEYS
        ));
    }
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    let reasons_known = fmt.reason.is_some();
    if !reasons_known {
        notes.push(
            "this kernel gives no drop reasons (they came in 5.17): drops are counted by \
             where they were freed, and kfree_skb there also frees some packets that were \
             not dropped"
                .into(),
        );
    }
    if lost_events > 0 {
        notes.push(format!(
            "{} drop events were lost (the trace buffer filled faster than it was read): \
             the counts are a lower bound",
            group(lost_events)
        ));
    }
    let total = census.events;
    let mut r = DropReport {
        headline: String::new(),
        window_s,
        lost_events,
        reasons_known,
        total,
        per_sec: rate(total),
        reasons,
        netns: rises,
        notes,
        next: Vec::new(),
    };
    r.headline = headline(&r);
    r.next = next_steps(&r);
    r
}

/// Split `n` netfilter drops: conntrack's rises first (conntrack runs
/// before filter rules), then drop rules', the rest unattributed. A cause
/// is never given more than the drops seen.
fn explain(n: u64, rises: &[NetnsRise]) -> Vec<Explained> {
    let mut left = n;
    let mut out = Vec::new();
    for r in rises {
        let ct = r.conntrack_drop.unwrap_or(0) + r.insert_failed.unwrap_or(0);
        let take = ct.min(left);
        if take > 0 {
            left -= take;
            let mut parts = Vec::new();
            if let Some(d) = r.conntrack_drop.filter(|d| *d > 0) {
                parts.push(format!("drop +{}", group(d)));
            }
            if let Some(i) = r.insert_failed.filter(|i| *i > 0) {
                parts.push(format!("insert_failed +{}", group(i)));
            }
            if let (Some(c), Some(m)) = (r.count, r.max) {
                if m > 0 && c * 100 >= m * 95 {
                    parts.push(format!("table full: {}/{}", group(c), group(m)));
                } else {
                    parts.push(format!("table {}/{}", group(c), group(m)));
                }
            }
            out.push(Explained {
                cause: "conntrack".into(),
                netns: Some(r.netns.clone()),
                rule: None,
                count: take,
                detail: Some(parts.join(", ")),
            });
        }
    }
    for r in rises {
        for rule in &r.rules {
            let take = rule.packets.min(left);
            if take > 0 {
                left -= take;
                out.push(Explained {
                    cause: "rule".into(),
                    netns: Some(r.netns.clone()),
                    rule: Some(rule.rule.clone()),
                    count: take,
                    detail: None,
                });
            }
        }
    }
    if left > 0 {
        out.push(Explained {
            cause: "unattributed".into(),
            netns: None,
            rule: None,
            count: left,
            detail: None,
        });
    }
    out
}

fn rate_text(per_sec: f64) -> String {
    if per_sec >= 10.0 {
        format!("{}/s", group(per_sec.round() as u64))
    } else {
        format!("{per_sec:.1}/s")
    }
}

/// What one cause is, in words: "conntrack drop in netns gw (table full:
/// 4,096/4,096)", "rule `tcp dport 9 counter drop` in netns gw".
fn cause_text(e: &Explained) -> String {
    let ns = e
        .netns
        .as_deref()
        .map(|n| format!(" in netns {n}"))
        .unwrap_or_default();
    match e.cause.as_str() {
        "conntrack" => format!(
            "conntrack{ns}{}",
            e.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        "rule" => format!("rule `{}`{ns}", e.rule.as_deref().unwrap_or("?")),
        _ => "unattributed (no counter rose for them)".into(),
    }
}

/// ListenDrops rises by namespace: "144 in netns dt".
fn listen_text(r: &DropReport) -> Option<String> {
    let v: Vec<String> = r
        .netns
        .iter()
        .filter_map(|n| {
            let d = n.listen_drops.filter(|d| *d > 0)?;
            Some(format!("+{} in netns {}", group(d), n.netns))
        })
        .collect();
    (!v.is_empty()).then(|| {
        format!(
            "ListenDrops {} (a full accept queue's refused SYNs are not traced as drops)",
            v.join(", ")
        )
    })
}

/// `ctdoctor check` for each namespace a cause was found in.
fn next_steps(r: &DropReport) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |ns: &str, why: &str| {
        let arg = match ns {
            "host" => String::new(),
            n if n.starts_with("pid ") => format!(" --netns {}", &n[4..]),
            n if n.starts_with("inode ") || n.contains('[') || n.contains(' ') => return,
            n => format!(" --netns {n}"),
        };
        let line = format!("ctdoctor check{arg}   # {why}");
        if !out
            .iter()
            .any(|l| l.starts_with(&format!("ctdoctor check{arg} ")))
        {
            out.push(line);
        }
    };
    for row in &r.reasons {
        for e in row.explained_by.iter().filter(|e| e.cause == "conntrack") {
            if let Some(ns) = &e.netns {
                add(
                    ns,
                    "conntrack dropped packets: the table's cause and its fix",
                );
            }
        }
    }
    for n in &r.netns {
        if n.listen_drops.unwrap_or(0) > 0 {
            add(
                &n.netns,
                "ListenDrops rose: sockets.listen_overflow names the listener",
            );
        }
    }
    out
}

/// The report's first line.
fn headline(r: &DropReport) -> String {
    let window = format!("{:.1} s", r.window_s);
    let listen = listen_text(r);
    if r.total == 0 {
        if let Some(l) = listen {
            return format!("no drop traced in {window}, but {l}");
        }
        return if r.lost_events > 0 {
            format!(
                "drops not counted: {} events lost in {window}",
                group(r.lost_events)
            )
        } else {
            format!("no packet dropped in {window} (kfree_skb traced on every CPU)")
        };
    }
    let mut parts = Vec::new();
    for row in r.reasons.iter().take(3) {
        let name = row.reason.clone().unwrap_or_else(|| {
            row.locations
                .first()
                .map(|l| l.name.clone())
                .unwrap_or_else(|| "unknown".into())
        });
        let mut s = format!("{name} {}", rate_text(row.per_sec));
        match row.explained_by.as_slice() {
            [] => {}
            [one] if one.count == row.count && one.cause != "unattributed" => {
                s.push_str(&format!(", all explained by {}", cause_text(one)))
            }
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|e| format!("{} {}", group(e.count), cause_text(e)))
                    .collect();
                s.push_str(&format!(": {}", list.join("; ")));
            }
        }
        parts.push(s);
    }
    if r.reasons.len() > 3 {
        parts.push(format!("{} more reasons", r.reasons.len() - 3));
    }
    if let Some(l) = listen {
        parts.push(format!("and {l}"));
    }
    format!(
        "{} drops/s over {window} ({} dropped): {}",
        rate_text(r.per_sec).trim_end_matches("/s"),
        group(r.total),
        parts.join("; ")
    )
}

/// The text report.
pub fn to_text(r: &DropReport) -> String {
    let mut out = format!("{}\n", r.headline);
    for row in &r.reasons {
        let name = row
            .reason
            .as_deref()
            .unwrap_or("(no reason on this kernel)");
        out.push_str(&format!(
            "\n{name}: {} ({})\n",
            group(row.count),
            rate_text(row.per_sec)
        ));
        let list = |v: &[Counted]| {
            v.iter()
                .map(|c| format!("{} {}", c.name, group(c.count)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !row.locations.is_empty() {
            out.push_str(&format!("  where:     {}\n", list(&row.locations)));
            out.push_str(&format!("  protocol:  {}\n", list(&row.protocols)));
            out.push_str(&format!("  sender:    {}\n", list(&row.senders)));
        }
        for e in &row.explained_by {
            out.push_str(&format!(
                "  explained: {} {}\n",
                group(e.count),
                cause_text(e)
            ));
        }
    }
    let rose: Vec<&NetnsRise> = r
        .netns
        .iter()
        .filter(|n| {
            n.conntrack_drop.unwrap_or(0) + n.insert_failed.unwrap_or(0) + n.early_drop.unwrap_or(0)
                > 0
                || n.listen_drops.unwrap_or(0) > 0
                || !n.rules.is_empty()
                || !n.not_read.is_empty()
        })
        .collect();
    if !rose.is_empty() {
        out.push_str("\ncounters that rose beside it:\n");
        for n in rose {
            let mut parts = Vec::new();
            for (k, v) in [
                ("drop", n.conntrack_drop),
                ("insert_failed", n.insert_failed),
                ("early_drop", n.early_drop),
            ] {
                if let Some(v) = v.filter(|v| *v > 0) {
                    parts.push(format!("conntrack {k} +{}", group(v)));
                }
            }
            if let Some(d) = n.listen_drops.filter(|d| *d > 0) {
                parts.push(format!("TcpExt ListenDrops +{}", group(d)));
            }
            for rule in &n.rules {
                parts.push(format!("rule `{}` +{}", rule.rule, group(rule.packets)));
            }
            for nr in &n.not_read {
                parts.push(format!("not read: {nr}"));
            }
            out.push_str(&format!("  netns {}: {}\n", n.netns, parts.join("; ")));
        }
    }
    if !r.next.is_empty() {
        out.push_str("\nnext:\n");
        for l in &r.next {
            out.push_str(&format!("  {l}\n"));
        }
    }
    for note in &r.notes {
        out.push_str(&format!("\nnote: {note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::census::{tests::rec, Census};
    use super::super::format::{parse, tests::F510, tests::F618};
    use super::*;

    const NF: u64 = 0xffff_1000;

    fn census(fmt: &Format, nf: u64, nosock: u64) -> Census {
        let mut c = Census::default();
        for _ in 0..nf {
            c.add_record(fmt, &rec(fmt, 12, NF, 0, 2805));
        }
        for _ in 0..nosock {
            c.add_record(fmt, &rec(fmt, 3, 0xffff_2000, 0x10, 7));
        }
        c
    }

    fn names() -> Names {
        Names {
            symbols: [
                (NF, "nf_hook_slow+0x7d/0x110".to_string()),
                (0xffff_2000, "__udp4_lib_rcv+0x9/0x30".to_string()),
            ]
            .into(),
            processes: [(2805, "python3".to_string())].into(),
        }
    }

    fn gw(drop: u64, rules: Vec<RuleRise>) -> NetnsRise {
        NetnsRise {
            netns: "gw".into(),
            conntrack_drop: Some(drop),
            insert_failed: Some(0),
            early_drop: Some(0),
            count: Some(4096),
            max: Some(4096),
            listen_drops: Some(0),
            rules,
            not_read: Vec::new(),
        }
    }

    #[test]
    fn table_full_drops_are_all_explained_by_conntrack() {
        let f = parse(F618).unwrap();
        let r = build(
            &census(&f, 200, 20),
            &f,
            &names(),
            vec![gw(200, vec![])],
            10.0,
            0,
            vec![],
        );
        assert_eq!(r.total, 220);
        let nf = &r.reasons[0];
        assert_eq!(nf.reason.as_deref(), Some("NETFILTER_DROP"));
        assert_eq!(nf.count, 200);
        assert_eq!(nf.senders[0].name, "python3[2805]");
        assert_eq!(nf.explained_by.len(), 1);
        assert_eq!(nf.explained_by[0].cause, "conntrack");
        assert_eq!(nf.explained_by[0].count, 200);
        assert_eq!(
            r.next,
            vec!["ctdoctor check --netns gw   # conntrack dropped packets: the table's cause and its fix"]
        );
        assert_eq!(r.reasons[1].reason.as_deref(), Some("NO_SOCKET"));
        assert_eq!(r.reasons[1].senders[0].name, "softirq");
        assert!(r.reasons[1].explained_by.is_empty());
        assert!(
            r.headline.starts_with("22 drops/s over 10.0 s (220 dropped): NETFILTER_DROP 20/s, all explained by conntrack in netns gw (drop +200, table full: 4,096/4,096)"),
            "{}",
            r.headline
        );
    }

    #[test]
    fn rule_drops_go_to_the_rule_and_the_rest_is_unattributed() {
        let f = parse(F618).unwrap();
        let rule = RuleRise {
            rule: "tcp dport 9 counter drop".into(),
            packets: 150,
        };
        let r = build(
            &census(&f, 200, 0),
            &f,
            &names(),
            vec![gw(0, vec![rule])],
            10.0,
            0,
            vec![],
        );
        let e = &r.reasons[0].explained_by;
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!((e[0].cause.as_str(), e[0].count), ("rule", 150));
        assert_eq!((e[1].cause.as_str(), e[1].count), ("unattributed", 50));
        assert!(
            r.headline
                .contains("150 rule `tcp dport 9 counter drop` in netns gw"),
            "{}",
            r.headline
        );
    }

    #[test]
    fn a_cause_never_gets_more_than_the_drops_seen() {
        let f = parse(F618).unwrap();
        let r = build(
            &census(&f, 10, 0),
            &f,
            &names(),
            vec![gw(500, vec![])],
            1.0,
            490,
            vec![],
        );
        assert_eq!(r.reasons[0].explained_by[0].count, 10);
        assert!(r
            .notes
            .iter()
            .any(|n| n.contains("490 drop events were lost")));
    }

    #[test]
    fn without_reasons_netfilter_drops_are_told_by_location() {
        let f = parse(F510).unwrap();
        let mut c = Census::default();
        let mut r510 = rec(&f, 0, NF, 0, 2805);
        r510.truncate(26);
        for _ in 0..30 {
            c.add_record(&f, &r510);
        }
        let r = build(&c, &f, &names(), vec![gw(30, vec![])], 1.0, 0, vec![]);
        assert!(!r.reasons_known);
        assert_eq!(r.reasons.len(), 1);
        assert_eq!(r.reasons[0].reason, None);
        assert_eq!(r.reasons[0].explained_by[0].count, 30);
        assert!(r.notes.iter().any(|n| n.contains("no drop reasons")));
        assert!(
            r.headline.contains("nf_hook_slow+0x7d/0x110 30/s"),
            "{}",
            r.headline
        );
    }

    #[test]
    fn listen_drops_are_never_hidden_behind_no_drops() {
        let f = parse(F618).unwrap();
        let mut n = gw(0, vec![]);
        n.listen_drops = Some(144);
        let r = build(&Census::default(), &f, &names(), vec![n], 5.0, 0, vec![]);
        assert_eq!(
            r.headline,
            "no drop traced in 5.0 s, but ListenDrops +144 in netns gw (a full accept \
             queue's refused SYNs are not traced as drops)"
        );
        assert!(to_text(&r).contains("netns gw: TcpExt ListenDrops +144"));
    }

    #[test]
    fn nothing_dropped_is_said_only_when_nothing_was_lost() {
        let f = parse(F618).unwrap();
        let r = build(&Census::default(), &f, &names(), vec![], 5.0, 0, vec![]);
        assert_eq!(
            r.headline,
            "no packet dropped in 5.0 s (kfree_skb traced on every CPU)"
        );
        let r = build(&Census::default(), &f, &names(), vec![], 5.0, 3, vec![]);
        assert!(
            r.headline.starts_with("drops not counted"),
            "{}",
            r.headline
        );
        assert!(to_text(&r).contains("note:"));
    }
}
