//! `conntrack.state_mix.*`: what the table is full *of* — closing TCP
//! (TIME_WAIT), connection attempts nobody answers (unreplied SYN_SENT),
//! or connections idle for longer than TCP keepalive would ever allow.
//! Input: `Facts::table` (host::mix). Pure; documented in docs/checks.md
//! under "Table contents".

use super::{Finding, Severity};
use crate::advice::change::Change;
use crate::advice::suggest;
use crate::snapshot::{Facts, Snapshot, TableMix};

pub const TIME_WAIT: &str = "conntrack.state_mix.time_wait";
pub const UNREPLIED_SYN: &str = "conntrack.state_mix.unreplied_syn";
pub const IDLE_ESTABLISHED: &str = "conntrack.state_mix.idle_established";
pub const LIVE_LOAD: &str = "conntrack.state_mix.live_load";

/// The rules of this family, in report order.
pub const IDS: [&str; 4] = [TIME_WAIT, UNREPLIED_SYN, IDLE_ESTABLISHED, LIVE_LOAD];

/// From this share (percent) of active entries, the live load is what
/// fills the table.
pub const LIVE_PERCENT: f64 = 50.0;

/// Below this many entries the mix is not judged (nothing is at stake).
pub const MIN_ENTRIES: u64 = 1000;

pub fn run(snap: &Snapshot) -> Vec<Finding> {
    // Unknown (the table's count unreadable): judged, not excused.
    let pressure = if snap.now.conntrack.is_ok() {
        super::conntrack::under_pressure(&snap.now)
    } else {
        Some("unknown (conntrack count not read)".into())
    };
    match &snap.now.table {
        Ok(mix) => judge(mix)
            .into_iter()
            .map(|f| gate(f, &snap.now, pressure.as_deref()))
            .map(|f| with_changes(f, &snap.now))
            .collect(),
        Err(u) => IDS.iter().map(|id| Finding::unavailable(id, u)).collect(),
    }
}

/// The mix matters only when the table is under pressure (usage, drops,
/// early drops): a table full of TIME_WAIT with room to spare is a normal
/// web host. Without pressure a finding that would fire stays ok and says why.
fn gate(mut f: Finding, facts: &Facts, pressure: Option<&str>) -> Finding {
    match pressure {
        Some(p) => f.with("pressure", p),
        None => {
            if f.severity > Severity::Ok {
                f.severity = Severity::Ok;
                f.title = format!(
                    "{}; not a problem while the table has room ({})",
                    f.title,
                    super::conntrack::room(facts)
                );
                f.notes.clear();
            }
            f.with("pressure", false)
        }
    }
}

/// The timeout each rule shortens when it fires.
fn timeout_of(id: &str) -> Option<&'static str> {
    match id {
        TIME_WAIT => Some("net.netfilter.nf_conntrack_tcp_timeout_time_wait"),
        UNREPLIED_SYN => Some("net.netfilter.nf_conntrack_tcp_timeout_syn_sent"),
        IDLE_ESTABLISHED => Some("net.netfilter.nf_conntrack_tcp_timeout_established"),
        _ => None,
    }
}

/// A firing rule's typed changes, in the order that works: relief now
/// (evict the entries that fill the table, counted from the same dump),
/// then the state's timeout at the suggested value so they do not come back
/// — in the report's namespace. Evicting first matters: idle ages are read
/// against the timeout, so after a shorter one the same entries no longer
/// look idle to `--idle-over`. The live load gets a larger table instead.
fn with_changes(f: Finding, facts: &Facts) -> Finding {
    if f.severity == Severity::Ok {
        return f;
    }
    if f.id == LIVE_LOAD {
        return match suggest::sizing(facts) {
            Some(s) => f.changes(suggest::sizing_changes(facts, &s, suggest::Part::Max)),
            None => f,
        };
    }
    let Some(key) = timeout_of(&f.id) else {
        return f;
    };
    let mut changes = Vec::new();
    if let Some(r) = relief(&f, facts) {
        changes.push(r);
    }
    changes.push(suggest::suggested(facts, key));
    let f = if f.id == TIME_WAIT {
        f.note(crate::advice::notrack::note_line("--lo", facts))
    } else {
        f
    };
    f.changes(changes)
}

/// The eviction that relieves a full table now: TIME_WAIT entries, or
/// ESTABLISHED entries idle past the horizon; what it frees is the rule's
/// own count (scaled up when the dump was a sample).
fn relief(f: &Finding, facts: &Facts) -> Option<Change> {
    let n = |k: &str| f.evidence.get(k).and_then(|v| v.as_u64());
    let (states, idle_over, count) = match f.id.as_str() {
        TIME_WAIT => ("time_wait", None, n("time_wait")?),
        IDLE_ESTABLISHED => (
            "established",
            Some(n("idle_over_secs")? as u32),
            n("established_idle_over")?,
        ),
        _ => return None,
    };
    let (frees, sampled) = match (n("sample_of"), n("entries")) {
        (Some(of), Some(judged)) if judged > 0 => {
            ((count as u128 * of as u128 / judged as u128) as u64, true)
        }
        _ => (count, false),
    };
    let ns = suggest::netns_label(facts);
    Some(Change::evict(
        states,
        idle_over,
        frees,
        sampled,
        ns.as_deref(),
    ))
}

/// The three rules on one mix.
pub fn judge(m: &TableMix) -> Vec<Finding> {
    let small = m.entries < MIN_ENTRIES;
    let note = if small {
        format!(" (fewer than {MIN_ENTRIES} entries: not judged)")
    } else {
        String::new()
    };
    let fired = |f: &Finding| f.severity > Severity::Ok;
    let mut v = vec![
        time_wait(m, small, &note),
        unreplied_syn(m, small, &note),
        idle_established(m, small, &note),
    ];
    let explained = v.iter().any(fired);
    v.push(live_load(m, small || explained, &note));
    if let Some(of) = m.sample_of {
        let judged = format!(
            "judged from a sample: {} of {} entries (the dump stopped at its time budget)",
            crate::util::thousands(m.entries),
            crate::util::thousands(of)
        );
        v = v
            .into_iter()
            .map(|f| f.with("sample", judged.clone()).with("sample_of", of))
            .collect();
    }
    v
}

/// `conntrack.state_mix.live_load`: most entries saw a packet in the last
/// few minutes, and no closing or idle state fills the table: the table is
/// too small for the live load. `quiet`: too few entries, or another state
/// rule explains the table.
fn live_load(m: &TableMix, quiet: bool, note: &str) -> Finding {
    let pct = crate::util::percent(m.active, m.entries);
    let sev = if !quiet && pct >= LIVE_PERCENT {
        Severity::Warning
    } else {
        Severity::Ok
    };
    Finding::new(
        LIVE_LOAD,
        sev,
        format!(
            "{pct}% of {} entries saw a packet in the last {} s{note}",
            crate::util::thousands(m.entries),
            crate::table::mix::ACTIVE_SECS
        ),
    )
    .with("active", m.active)
    .with("active_secs", crate::table::mix::ACTIVE_SECS)
    .with("percent", pct)
    .with("entries", m.entries)
    .why(
        "An entry that saw a packet in the last minutes belongs to a live flow: a shorter \
         timeout does not free it, and evicting it breaks that flow. When such entries fill \
         the table, and no closing or long-idle state does, the table is too small for the \
         load: raise nf_conntrack_max (and the buckets with it), or track less.",
    )
}

/// `conntrack.state_mix.time_wait`: TIME_WAIT's share of the table.
/// `small`: too few entries to judge (`note` says so in the title).
fn time_wait(m: &TableMix, small: bool, note: &str) -> Finding {
    let tw = m.by_state.get("TIME_WAIT").copied().unwrap_or(0);
    let tw_pct = crate::util::percent(tw, m.entries);
    let sev = if !small && tw_pct >= 50.0 {
        Severity::Warning
    } else {
        Severity::Ok
    };
    Finding::new(
        TIME_WAIT,
        sev,
        format!(
            "TIME_WAIT is {tw_pct}% of {} conntrack entries{note}",
            m.entries
        ),
    )
    .with("entries", m.entries)
    .with("time_wait", tw)
    .with("time_wait_percent", tw_pct)
    .with("time_wait_timeout_secs", m.time_wait_timeout)
    .why(
        "Closed connections keep their entry for the whole time_wait timeout \
         (120 s by default, twice the 60 s Linux MSL). On a gateway making short \
         upstream connections they can fill most of the table, and a full table \
         drops new flows.",
    )
    .note(if sev == Severity::Ok {
        ""
    } else {
        "Shorter conntrack TIME_WAIT: PAWS and tcp_tw_reuse keep it safe for most traffic.\n\
         If the short connections go over loopback (a proxy to a local upstream), do not track \
         them at all (it prints the rules and what they would break; --apply loads them):"
    })
}

/// `conntrack.state_mix.unreplied_syn`: connection attempts nobody answered.
fn unreplied_syn(m: &TableMix, small: bool, note: &str) -> Finding {
    let syn = m.syn_sent_unreplied;
    let syn_pct = crate::util::percent(syn, m.entries);
    let sev = if small || syn < 100 {
        Severity::Ok
    } else if syn_pct >= 25.0 {
        Severity::Critical
    } else if syn_pct >= 5.0 {
        Severity::Warning
    } else {
        Severity::Ok
    };
    let top: Vec<String> = m
        .syn_sent_unreplied_top_dst
        .iter()
        .map(|(k, n)| format!("{k} ({n})"))
        .collect();
    Finding::new(
        UNREPLIED_SYN,
        sev,
        format!("{syn} unreplied SYN_SENT entries ({syn_pct}% of the table){note}"),
    )
    .with("syn_sent_unreplied", syn)
    .with("percent", syn_pct)
    .with("top_destinations", top.join(", "))
    .why(
        "A SYN_SENT entry that never saw a reply is a connection attempt nobody \
         answered. Many of them to one destination mean that upstream is down or \
         filtered (clients retry and each retry is a new entry, held 120 s); many \
         from scattered sources to one of our ports look like a SYN flood. Either \
         way they are not ASSURED, so early drop evicts them first — but they keep \
         the table full.",
    )
    .note(if sev == Severity::Ok {
        String::new()
    } else {
        format!(
            "Check the top destinations ({}): is that upstream reachable? For a flood, \
             keep SYN cookies on (net.ipv4.tcp_syncookies=1) and rate-limit new connections; \
             the change above shortens how long attempts are held.",
            top.join(", ")
        )
    })
}

/// `conntrack.state_mix.idle_established`: ESTABLISHED entries idle longer
/// than TCP keepalive would allow.
fn idle_established(m: &TableMix, small: bool, note: &str) -> Finding {
    let idle = m.established_idle_over;
    let idle_pct = crate::util::percent(idle, m.entries);
    let sev = if !small && idle >= 1000 && idle_pct >= 10.0 {
        Severity::Warning
    } else {
        Severity::Ok
    };
    Finding::new(
        IDLE_ESTABLISHED,
        sev,
        format!(
            "{idle} ESTABLISHED entries idle over {} s ({idle_pct}% of the table){note}",
            m.idle_over_secs
        ),
    )
    .with("established_idle_over", idle)
    .with("entries", m.entries)
    .with("idle_over_secs", m.idle_over_secs)
    .with("percent", idle_pct)
    .with("established_timeout_secs", m.established_timeout)
    .with("age_unknown", m.established_age_unknown)
    .with(
        "top_sources",
        m.established_idle_top_src
            .iter()
            .map(|(k, n)| format!("{k} ({n})"))
            .collect::<Vec<_>>()
            .join(", "),
    )
    .with(
        "top_sources_share",
        crate::util::percent(
            m.established_idle_top_src.iter().map(|(_, n)| n).sum(),
            idle,
        ),
    )
    .why(
        "An ESTABLISHED entry is kept for the established timeout after its last \
         packet (432000 s = 5 days by default). TCP keepalive gives up after \
         7875 s with Linux defaults, so entries idle longer belong to peers that \
         vanished without FIN or RST (NAT timeouts, crashed clients, or an \
         idle-connection attack). They are ASSURED: early drop never frees them.",
    )
    .note(if sev == Severity::Ok {
        ""
    } else {
        "7875 s matches TCP keepalive's horizon; if a legitimate connection idles longer \
         without keepalive, use what it needs instead (kube-proxy uses 86400). \
         `ctdoctor summary --state ESTABLISHED --idle-over 2h` shows which sources hold them."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(entries: u64, states: &[(&str, u64)]) -> TableMix {
        TableMix {
            entries,
            tcp: states.iter().map(|s| s.1).sum(),
            by_state: states.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            established_timeout: 432_000,
            time_wait_timeout: 120,
            idle_over_secs: 7875,
            ..TableMix::default()
        }
    }

    fn sev(f: &[Finding], id: &str) -> Severity {
        f.iter().find(|f| f.id == id).unwrap().severity
    }

    #[test]
    fn time_wait_majority_warns() {
        let f = judge(&mix(
            10_000,
            &[("TIME_WAIT", 9_000), ("ESTABLISHED", 1_000)],
        ));
        assert_eq!(sev(&f, TIME_WAIT), Severity::Warning);
        assert!(f[0].notes.iter().any(|n| n.contains("TIME_WAIT")));
        assert_eq!(
            timeout_of(TIME_WAIT),
            Some("net.netfilter.nf_conntrack_tcp_timeout_time_wait")
        );
        let f = judge(&mix(
            10_000,
            &[("TIME_WAIT", 4_900), ("ESTABLISHED", 5_100)],
        ));
        assert_eq!(sev(&f, TIME_WAIT), Severity::Ok);
        // A small table is not judged.
        let f = judge(&mix(100, &[("TIME_WAIT", 90)]));
        assert_eq!(sev(&f, TIME_WAIT), Severity::Ok);
    }

    #[test]
    fn unreplied_syn_sent() {
        let mut m = mix(10_000, &[("SYN_SENT", 3_000), ("ESTABLISHED", 7_000)]);
        m.syn_sent_unreplied = 3_000;
        m.syn_sent_unreplied_top_dst = vec![("10.1.1.1 443".into(), 2_900)];
        let f = judge(&m);
        assert_eq!(sev(&f, UNREPLIED_SYN), Severity::Critical);
        assert!(f[1].notes.iter().any(|n| n.contains("10.1.1.1 443")));
        m.syn_sent_unreplied = 600;
        assert_eq!(sev(&judge(&m), UNREPLIED_SYN), Severity::Warning);
        m.syn_sent_unreplied = 400;
        assert_eq!(sev(&judge(&m), UNREPLIED_SYN), Severity::Ok);
    }

    #[test]
    fn idle_established() {
        let mut m = mix(10_000, &[("ESTABLISHED", 10_000)]);
        m.established_idle_over = 2_000;
        assert_eq!(sev(&judge(&m), IDLE_ESTABLISHED), Severity::Warning);
        m.established_idle_over = 500;
        assert_eq!(sev(&judge(&m), IDLE_ESTABLISHED), Severity::Ok);
    }

    #[test]
    fn live_entries_fill_the_table_only_when_nothing_else_does() {
        let mut m = mix(10_000, &[("ESTABLISHED", 10_000)]);
        m.active = 9_000;
        assert_eq!(sev(&judge(&m), LIVE_LOAD), Severity::Warning);
        m.active = 4_000;
        assert_eq!(sev(&judge(&m), LIVE_LOAD), Severity::Ok);
        // TIME_WAIT explains the table: live load is not named beside it.
        let mut m = mix(10_000, &[("TIME_WAIT", 9_000), ("ESTABLISHED", 1_000)]);
        m.active = 9_000;
        assert_eq!(sev(&judge(&m), LIVE_LOAD), Severity::Ok);
    }

    #[test]
    fn a_sample_says_so() {
        let mut m = mix(10_000, &[("TIME_WAIT", 9_000), ("ESTABLISHED", 1_000)]);
        m.sample_of = Some(1_000_000);
        let f = judge(&m);
        assert!(
            f.iter().all(|f| f.evidence["sample_of"] == 1_000_000),
            "{f:#?}"
        );
    }

    #[test]
    fn every_rule_reports_every_time() {
        let f = judge(&TableMix::default());
        assert_eq!(f.len(), IDS.len());
        assert!(f.iter().all(|f| f.severity == Severity::Ok));
    }
}
