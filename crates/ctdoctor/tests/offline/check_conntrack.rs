//! conntrack.* rules on fixture trees (tests/fixtures/ct-*, written by
//! make_conntrack_fixtures.py): each rule with a tree that triggers it and
//! one that does not, severities written by hand from the numbers in the
//! trees. No root needed.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, facts, fixture, json_finding};

use ctdoctor::checks::{self, conntrack, Finding, Severity};
use ctdoctor::host::Root;
use ctdoctor::snapshot::Snapshot;

fn run(name: &str) -> Vec<Finding> {
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now: facts(name),
            earlier: None,
        },
    );
    let mut ids: Vec<&str> = f.iter().map(|x| x.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "conntrack.drops",
            "conntrack.expect_table",
            "conntrack.hash_load",
            "conntrack.memory",
            "conntrack.table_full",
            "conntrack.timeouts",
            "conntrack.usage"
        ],
        "{name}: every rule exactly once"
    );
    f
}

fn get<'a>(f: &'a [Finding], id: &str) -> &'a Finding {
    f.iter().find(|x| x.id == id).expect("rule present")
}

fn sev(f: &[Finding], id: &str) -> Severity {
    get(f, id).severity
}

fn ev(f: &[Finding], id: &str, key: &str) -> serde_json::Value {
    get(f, id)
        .evidence
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("{id}: no evidence {key}: {:?}", get(f, id).evidence))
}

use Severity::{Critical, Info, Warning};

#[test]
fn healthy_host_is_all_ok() {
    let f = run("ct-healthy-6.18");
    for x in &f {
        assert_eq!(x.severity, Severity::Ok, "{}: {}", x.id, x.title);
    }
    assert_eq!(ev(&f, conntrack::USAGE, "count"), 1200);
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "log_lines"), 0);
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "drop"), 0);
    // 2 × 1312 / 262144 = 0.01
    assert_eq!(ev(&f, conntrack::HASH_LOAD, "mean_chain"), 0.01);
    assert_eq!(ev(&f, conntrack::HASH_LOAD, "entries"), 1312);
}

#[test]
fn table_full_now_in_named_netns() {
    let f = run("ct-table-full-6.18");
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Critical);
    let t = get(&f, conntrack::TABLE_FULL);
    // 0x1bf + 1 over the two CPU rows.
    assert_eq!(t.evidence["drop"], 448);
    // Four lines name inode 4026532177; the 4026532999 line and the
    // inode-less line (init netns on 6.18) are not ours.
    assert_eq!(t.evidence["log_lines"], 4);
    assert!(!t.evidence.contains_key("unattributed_log_lines"));
    assert_eq!(t.evidence["suppressed_callbacks"], 437);
    assert_eq!(t.evidence["last_line_secs_since_boot"], 19990.5);
    // uptime 20000 - 19990.5 = 9.5 s = 0.16 min
    assert_eq!(t.evidence["last_line_min_ago"], 0.16);
    // pinned at btime + 100 s, first line at 19500 s: provably ours.
    assert_eq!(
        t.evidence["attribution"],
        "this netns (it existed before these lines)"
    );
    assert!(!t.evidence.contains_key("earlier_netns_log_lines"));
    assert!(!t.evidence.contains_key("expect_table_full_lines"));
    assert!(t
        .fix
        .contains("sysctl -w net.netfilter.nf_conntrack_max=524288"));
    assert_eq!(sev(&f, conntrack::USAGE), Critical);
    assert_eq!(ev(&f, conntrack::USAGE, "usage_pct"), 100.0);
    assert_eq!(sev(&f, conntrack::DROPS), Warning);
    // 2 × 262144 / 262144
    assert_eq!(sev(&f, conntrack::HASH_LOAD), Severity::Ok);
    assert_eq!(ev(&f, conntrack::HASH_LOAD, "mean_chain"), 2.0);
    assert_eq!(sev(&f, conntrack::MEMORY), Severity::Ok);
    assert_eq!(sev(&f, conntrack::TIMEOUTS), Severity::Ok);
}

#[test]
fn table_full_attribution_needs_the_namespace_to_predate_the_line() {
    let mut now = facts("ct-table-full-6.18");
    if let Ok(n) = &mut now.netns {
        // Pinned after the first line (btime + 19600 > btime + 19500).
        n.pinned_since_unix = Some(1_764_000_000 + 19_600);
    }
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now: now.clone(),
            earlier: None,
        },
    );
    // The 19500 s line predates the namespace: an earlier one's.
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "log_lines"), 3);
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "earlier_netns_log_lines"), 1);
    assert_eq!(
        ev(&f, conntrack::TABLE_FULL, "attribution"),
        "this netns (it existed before these lines)"
    );
    // Pinned after every line: none are ours; count not full -> ok.
    if let (Ok(n), Ok(c), Ok(s)) = (&mut now.netns, &mut now.conntrack, &mut now.stat) {
        n.pinned_since_unix = Some(1_764_000_000 + 19_995);
        c.count = 10;
        s.counters.insert("drop".into(), 0);
    }
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now: now.clone(),
            earlier: None,
        },
    );
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Severity::Ok);
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "earlier_netns_log_lines"), 4);
    // Pin time unknown: every line naming the inode may be ours. The last
    // one is 10 s old, but 10 entries are no full table: it happened.
    if let Ok(n) = &mut now.netns {
        n.pinned_since_unix = None;
    }
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now: now.clone(),
            earlier: None,
        },
    );
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Warning);
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "log_lines"), 4);
    // The same recent line with the table still 96 % full: happening now.
    if let Ok(c) = &mut now.conntrack {
        c.count = 251_700;
    }
    let f = checks::rendered(conntrack::run, &Snapshot { now, earlier: None });
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Critical);
    assert_eq!(
        ev(&f, conntrack::TABLE_FULL, "attribution"),
        "this netns, or an earlier one with the same inode"
    );
}

#[test]
fn other_netns_lines_do_not_count() {
    // The same log seen from netns 4026532999's view is 1 line; from an
    // unrelated child netns: none, and its count is low -> only drops matter.
    let mut now = facts("ct-healthy-6.18");
    now.kmsg = facts("ct-table-full-6.18").kmsg;
    if let Ok(n) = &mut now.netns {
        n.inode = Some(4_026_532_555);
        n.is_init = false;
    }
    let f = checks::rendered(conntrack::run, &Snapshot { now, earlier: None });
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Severity::Ok);
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "log_lines"), 0);

    // Init netns on 6.18: the inode-less line is its own; recent, but the
    // table has room now: it happened, it is not happening.
    let mut now = facts("ct-healthy-6.18");
    now.kmsg = facts("ct-table-full-6.18").kmsg;
    let f = checks::rendered(conntrack::run, &Snapshot { now, earlier: None });
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Warning);
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "log_lines"), 1);
}

#[test]
fn table_full_earlier_is_a_warning_naming_the_time() {
    let mut now = facts("ct-table-full-6.18");
    if let (Ok(c), Ok(s)) = (&mut now.conntrack, &mut now.system) {
        c.count = 1000;
        // 30 min after the last line (19990.5 + 1800).
        s.uptime_secs = Result::Ok(21_790.5);
    }
    let f = checks::rendered(conntrack::run, &Snapshot { now, earlier: None });
    let t = get(&f, conntrack::TABLE_FULL);
    assert_eq!(t.severity, Warning, "{}", t.title);
    assert_eq!(t.evidence["last_line_min_ago"], 30.0);
    assert!(t.title.contains("30 min ago"), "{}", t.title);
    assert!(t.title.contains("19990 s after boot") || t.title.contains("19991 s after boot"));
}

#[test]
fn sample_rise_is_critical_and_flat_is_not() {
    let earlier = facts("ct-healthy-6.18");
    let mut now = facts("ct-healthy-6.18");
    now.elapsed_ms = 5000;
    if let Ok(s) = &mut now.stat {
        s.counters.insert("drop".into(), 25);
        s.counters.insert("insert_failed".into(), 5);
    }
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now: now.clone(),
            earlier: Some(earlier),
        },
    );
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Critical);
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "drop_per_sec"), 5.0);
    assert_eq!(sev(&f, conntrack::DROPS), Critical);
    assert_eq!(ev(&f, conntrack::DROPS, "insert_failed_per_sec"), 1.0);

    // Same non-zero levels at both readings: it happened, not happening.
    let mut earlier = now.clone();
    earlier.elapsed_ms = 0;
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now,
            earlier: Some(earlier),
        },
    );
    assert_eq!(sev(&f, conntrack::DROPS), Info);
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Warning);
}

#[test]
fn sample_rise_across_a_per_cpu_counter_wrap() {
    // The kernel's per-CPU stat counters are 32-bit (struct
    // ip_conntrack_stat: unsigned int): one CPU's drop going from
    // 0xfffffff0 to 0x10 makes the sum fall by 2^32 - 32. That is a rise
    // of 32, not "no rise".
    let mut earlier = facts("ct-healthy-6.18");
    let mut now = facts("ct-healthy-6.18");
    now.elapsed_ms = 4000;
    if let (Ok(e), Ok(n)) = (&mut earlier.stat, &mut now.stat) {
        e.counters.insert("drop".into(), 0xffff_fff0);
        n.counters.insert("drop".into(), 0x10);
    }
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now,
            earlier: Some(earlier),
        },
    );
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "drop_rise"), 32);
    assert_eq!(ev(&f, conntrack::TABLE_FULL, "drop_per_sec"), 8.0);
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Critical);
    assert_eq!(ev(&f, conntrack::DROPS, "drop_per_sec"), 8.0);
    assert_eq!(sev(&f, conntrack::DROPS), Critical);
}

#[test]
fn extreme_values_from_a_snapshot_never_panic() {
    // A snapshot file is input: counters at u64::MAX and a pin time far
    // from the boot time must be judged, not overflow.
    let mut now = facts("ct-table-full-6.18");
    if let (Ok(n), Ok(s), Ok(sys)) = (&mut now.netns, &mut now.stat, &mut now.system) {
        n.pinned_since_unix = Some(i64::MAX);
        sys.boot_time_unix = Ok(i64::MIN);
        for c in ["drop", "early_drop", "insert_failed", "chainlength"] {
            s.counters.insert(c.into(), u64::MAX);
        }
    }
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now: now.clone(),
            earlier: None,
        },
    );
    assert_eq!(sev(&f, conntrack::DROPS), Warning);
    let mut later = now.clone();
    later.elapsed_ms = 1000;
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now: later,
            earlier: Some(now),
        },
    );
    assert_eq!(sev(&f, conntrack::DROPS), Info);
}

#[test]
fn old_kernel_layout() {
    let f = run("ct-old-5.4");
    let t = get(&f, conntrack::TABLE_FULL);
    // 5.4 logs no netns: the two lines are unattributed; this netns has
    // drops (0x30 + 0x2 = 50), but the last line is 199.5 s old and the
    // count (95.4 %) is below max: it was full, it is not full now.
    assert_eq!(t.severity, Warning, "{}", t.title);
    assert_eq!(t.evidence["unattributed_log_lines"], 2);
    assert_eq!(t.evidence["log_lines"], 0);
    assert_eq!(t.evidence["drop"], 50);
    assert_eq!(t.evidence["early_drop"], 16);
    assert_eq!(t.evidence["suppressed_callbacks"], 12);
    // The expectation table is its own rule.
    assert!(!t.evidence.contains_key("expect_table_full_lines"));
    let e = get(&f, conntrack::EXPECT_TABLE);
    assert_eq!(e.severity, Warning, "{}", e.title);
    assert_eq!(e.evidence["expect_table_full_lines"], 1);
    // 250000 / 262144 = 95.4 %
    assert_eq!(sev(&f, conntrack::USAGE), Critical);
    assert_eq!(ev(&f, conntrack::USAGE, "usage_pct"), 95.37);
    // No chainlength column on 5.4: not reported.
    let d = get(&f, conntrack::DROPS);
    assert_eq!(d.severity, Warning);
    assert!(!d.evidence.contains_key("chaintoolong"));
    assert_eq!(d.evidence["insert_failed"], 1);
    // Two per-netns slab caches: 250000 entries / 65536 buckets -> 7.63.
    let h = get(&f, conntrack::HASH_LOAD);
    assert_eq!(h.severity, Warning);
    assert_eq!(h.evidence["mean_chain"], 7.63);
    assert_eq!(h.evidence["mean_chain_at_max"], 8.0);
    assert_eq!(h.evidence["max_per_bucket"], 4.0);
    assert_eq!(h.evidence["default_factor"], 4);
    // A module: persistence through modprobe.d; buckets for the max this
    // report suggests (the table is capped at 262144: 2 × that), so the
    // two rules agree on one value.
    assert!(
        h.fix.contains("options nf_conntrack hashsize=524288"),
        "{}",
        h.fix
    );
    assert!(h
        .fix
        .contains("echo 524288 > /sys/module/nf_conntrack/parameters/hashsize"));
    let t = get(&f, conntrack::TABLE_FULL);
    assert!(
        t.fix
            .contains("sysctl -w net.netfilter.nf_conntrack_max=524288"),
        "{}",
        t.fix
    );
    // 262144 × 320 × 1.5 + 65536 × 8 = 126,353,408 B of 8 GiB.
    assert_eq!(sev(&f, conntrack::MEMORY), Severity::Ok);
    assert_eq!(ev(&f, conntrack::MEMORY, "full_table_bytes"), 126_353_408);
    assert_eq!(ev(&f, conntrack::MEMORY, "objsize"), 320);
    // Default timeouts under pressure.
    assert_eq!(sev(&f, conntrack::TIMEOUTS), Warning);
}

#[test]
fn old_kernel_line_without_drops_here_is_someone_elses() {
    // Negative case of old_kernel_layout: the same recent inode-less line,
    // but this netns never dropped a packet: the line may be any other
    // namespace's, so it is neither "happening now" nor "happened here".
    let mut now = facts("ct-old-5.4");
    if let Ok(s) = &mut now.stat {
        s.counters.insert("drop".into(), 0);
    }
    let f = checks::rendered(conntrack::run, &Snapshot { now, earlier: None });
    let t = get(&f, conntrack::TABLE_FULL);
    assert_eq!(t.severity, Severity::Ok, "{}", t.title);
    assert_eq!(t.evidence["unattributed_log_lines"], 2);
    assert_eq!(t.evidence["log_lines"], 0);
    // The title says what the evidence holds (it said "no \"table full\"
    // line" beside 2 lines in the kernel matrix's first run).
    assert!(!t.title.contains("no \"table full\" line"), "{}", t.title);
    assert!(
        t.title.ends_with(
            "no drops; the log's 2 \"table full\" line(s) name no netns (kernel < 6.17) \
             and are another namespace's)"
        ),
        "{}",
        t.title
    );
}

#[test]
fn high_usage_warns_and_small_max_is_noted() {
    let f = run("ct-high-usage");
    // 52000 / 65536 = 79.35 %
    assert_eq!(sev(&f, conntrack::USAGE), Warning);
    assert_eq!(ev(&f, conntrack::USAGE, "usage_pct"), 79.35);
    // max 65536 < default 262144 for 24 GiB on 6.18.
    let m = get(&f, conntrack::MEMORY);
    assert_eq!(m.severity, Info, "{}", m.title);
    assert_eq!(m.evidence["default_max"], 262_144);
    assert!(
        m.changes.is_empty(),
        "room to raise is not a fix: {}",
        m.fix
    );
    // Usage raises max: 2 × 52000 is below the kernel default, which wins.
    let u = get(&f, conntrack::USAGE);
    assert!(
        u.fix
            .contains("sysctl -w net.netfilter.nf_conntrack_max=262144"),
        "{}",
        u.fix
    );
    assert_eq!(sev(&f, conntrack::TABLE_FULL), Severity::Ok);
    assert_eq!(sev(&f, conntrack::HASH_LOAD), Severity::Ok);
}

#[test]
fn bad_hash_load_is_critical() {
    let f = run("ct-bad-hash");
    let h = get(&f, conntrack::HASH_LOAD);
    // 2 × 100000 / 16384 = 12.21 (slab count: all netns, not this one's 60000)
    assert_eq!(h.severity, Critical);
    assert_eq!(h.evidence["mean_chain"], 12.21);
    assert_eq!(h.evidence["entries"], 100_000);
    assert_eq!(h.evidence["mean_chain_at_max"], 32.0);
    // Built in: the kernel command line, and buckets = max.
    assert!(h.fix.contains("nf_conntrack.hashsize=262144"), "{}", h.fix);
    assert!(h
        .fix
        .contains("echo 262144 > /sys/module/nf_conntrack/parameters/hashsize"));
    // chainlength 3 + 1 since boot, the table not full now: a lifetime
    // counter alone is info (issue 21), not a warning forever.
    assert_eq!(sev(&f, conntrack::DROPS), Severity::Info);
    assert_eq!(ev(&f, conntrack::DROPS, "chaintoolong"), 4);
    assert_eq!(sev(&f, conntrack::USAGE), Severity::Ok);
}

#[test]
fn long_timeouts_under_pressure_warn() {
    let f = run("ct-long-timeouts");
    let t = get(&f, conntrack::TIMEOUTS);
    assert_eq!(t.severity, Warning, "{}", t.title);
    for n in [
        "tcp_timeout_established=86400",
        "tcp_timeout_syn_sent=120",
        "tcp_timeout_fin_wait=120",
        "tcp_timeout_time_wait=120",
        "tcp_timeout_close_wait=3600",
    ] {
        assert!(t.title.contains(n), "{n} in {}", t.title);
    }
    assert!(t
        .fix
        .contains("sysctl -w net.netfilter.nf_conntrack_tcp_timeout_established=7875"));
    assert!(
        t.fix
            .contains("echo 'net.netfilter.nf_conntrack_tcp_timeout_close_wait = 60' >> \"$f\""),
        "{}",
        t.fix
    );
    assert!(
        t.fix.contains("f=/etc/sysctl.d/90-ctdoctor.conf"),
        "{}",
        t.fix
    );
    let keys: Vec<(&str, &str)> = t
        .changes
        .iter()
        .map(|c| (c.key.as_str(), c.value.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("net.netfilter.nf_conntrack_tcp_timeout_established", "7875"),
            ("net.netfilter.nf_conntrack_tcp_timeout_syn_sent", "30"),
            ("net.netfilter.nf_conntrack_tcp_timeout_fin_wait", "30"),
            ("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "30"),
            ("net.netfilter.nf_conntrack_tcp_timeout_close_wait", "60"),
        ]
    );
    // 140000 / 262144 = 53 %: below the usage warning.
    assert_eq!(sev(&f, conntrack::USAGE), Severity::Ok);
}

#[test]
fn default_timeouts_without_pressure_are_info() {
    let mut now = facts("ct-long-timeouts");
    if let Ok(c) = &mut now.conntrack {
        c.count = 100;
    }
    let f = checks::rendered(conntrack::run, &Snapshot { now, earlier: None });
    assert_eq!(sev(&f, conntrack::TIMEOUTS), Info);
}

#[test]
fn timeouts_in_child_netns_are_set_inside_it() {
    let mut now = facts("ct-long-timeouts");
    if let Ok(n) = &mut now.netns {
        n.is_init = false;
        n.name = Some("gw".into());
    }
    let f = checks::rendered(conntrack::run, &Snapshot { now, earlier: None });
    let t = get(&f, conntrack::TIMEOUTS);
    assert!(t.fix.contains(
        "ip netns exec gw sysctl -w net.netfilter.nf_conntrack_tcp_timeout_established=7875"
    ));
    assert!(!t.fix.contains("90-conntrack.conf"), "{}", t.fix);
}

#[test]
fn small_ram_big_max_warns_on_memory() {
    let f = run("ct-small-ram");
    let m = get(&f, conntrack::MEMORY);
    // 1048576 × 256 × 1.5 + 262144 × 8 = 404,750,336 B = 37.7 % of 1 GiB.
    assert_eq!(m.severity, Warning, "{}", m.title);
    assert_eq!(m.evidence["full_table_bytes"], 404_750_336u64);
    assert_eq!(m.evidence["full_table_ram_pct"], 37.7);
    assert!(m.evidence["objsize_source"]
        .as_str()
        .is_some_and(|s| s.starts_with("assumed")));
    // 25 % of 1 GiB / (384 B + the 8 B of bucket each entry needs at a
    // mean chain of 2) = 684784 entries.
    assert_eq!(m.evidence["max_within_25pct_ram"], 684_784);
    // No slabinfo: this netns's count, said so.
    let h = get(&f, conntrack::HASH_LOAD);
    assert!(h.evidence["entries_source"]
        .as_str()
        .is_some_and(|s| s.starts_with("this netns")));
    // Low now (2 × 1000 / 262144), but 8.0 at a full table: info.
    assert_eq!(h.severity, Info, "{}", h.title);
    assert_eq!(sev(&f, conntrack::USAGE), Severity::Ok);
}

#[test]
fn empty_tree_is_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    let now = ctdoctor::host::read_facts(&Root::live_at(dir.path().to_path_buf()));
    let f = checks::rendered(conntrack::run, &Snapshot { now, earlier: None });
    assert_eq!(f.len(), 7);
    for x in &f {
        assert_eq!(x.severity, Info, "{}", x.id);
        assert!(x.title.starts_with("not checked"), "{}: {}", x.id, x.title);
    }
}

#[test]
fn cli_exit_codes_on_fixtures() {
    let code = |name: &str| common::check_json(&["--root", fixture(name).to_str().unwrap()]);
    let (c, v) = code("ct-table-full-6.18");
    assert_eq!(c, Some(2));
    let tf = json_finding(&v, "conntrack.table_full");
    assert_eq!(tf["severity"], "critical");
    // 4 lines name the inode; the inode-less line belongs to the init netns,
    // which this tree ("gw", is_init false) is not.
    assert_eq!(tf["evidence"]["log_lines"], 4);
    let (c, v) = code("ct-healthy-6.18");
    assert_eq!(c, Some(0), "{v}");
}

#[test]
fn table_full_without_kernel_log_still_judges_counters() {
    let mut now = facts("ct-table-full-6.18");
    now.kmsg = Err(ctdoctor::host::Unavailable::NeedsRoot {
        what: "dev/kmsg".into(),
    });
    let f = checks::rendered(conntrack::run, &Snapshot { now, earlier: None });
    let t = get(&f, conntrack::TABLE_FULL);
    // count = max still says "now"; the log's absence is stated.
    assert_eq!(t.severity, Critical);
    assert!(t.evidence.contains_key("kmsg_unavailable"));
    assert!(!t.evidence.contains_key("log_lines"));
}

/// CentOS 7 (3.10) layout: the old stat header and log text, a slab cache
/// per netns, `time wait bucket table overflow` lines, and max set in
/// /etc/sysctl.conf — which procps applies after every sysctl.d file, so
/// the fix edits that line (issue 8, defect 5) instead of appending to a
/// file it would override.
#[test]
fn centos7_layout_and_sysctl_conf_precedence() {
    let now = facts("ct-centos7-3.10");
    assert_eq!(
        now.system.as_ref().unwrap().kernel_version,
        Some((3, 10, 0))
    );
    let snap = Snapshot { now, earlier: None };
    let f = checks::run_all(&snap);
    let by = |id: &str| f.iter().find(|x| x.id == id).unwrap();
    assert_eq!(by(conntrack::USAGE).severity, Critical);
    assert_eq!(by(conntrack::HASH_LOAD).severity, Critical);
    let t = by(conntrack::TABLE_FULL);
    assert_eq!(t.severity, Warning, "{}", t.title);
    assert_eq!(t.evidence["unattributed_log_lines"], 2);
    let u = by(conntrack::USAGE);
    assert!(
        u.fix
            .contains("sed -i '12s/=.*/= 1048576/' /etc/sysctl.conf"),
        "{}",
        u.fix
    );
    assert!(
        !u.fix.contains("nf_conntrack_max = "),
        "not appended to sysctl.d: {}",
        u.fix
    );
    // not_persistent would keep 524288; the usage fix's value wins.
    let np = by(checks::persist::NOT_PERSISTENT);
    assert!(np
        .changes
        .iter()
        .all(|c| c.key != "net.netfilter.nf_conntrack_max"));
    let tw = by("sockets.time_wait");
    assert_eq!(tw.severity, Warning);
    assert_eq!(tw.evidence["tw_overflow_log_lines"], 2);
    assert!(
        tw.title.contains("time wait bucket table overflow"),
        "{}",
        tw.title
    );
}

/// insert_failed and clash_resolve by kernel (the DNS "5-second delay"):
/// before 5.6 a clash drops the loser (insert_failed, with the resolver
/// fixes); from 5.6 it is resolved and counted as clash_resolve, which
/// rising alone is info, nothing dropped.
#[test]
fn clash_resolve_and_insert_failed_are_explained_by_kernel() {
    // 5.4 (ct-old-5.4 has insert_failed=1): the old-kernel wording.
    let f = run("ct-old-5.4");
    let d = get(&f, conntrack::DROPS);
    assert!(
        d.why
            .contains("On this kernel (before 5.6) a clash at insert is not resolved"),
        "{}",
        d.why
    );
    assert!(
        d.fix.contains("# options single-request-reopen"),
        "{}",
        d.fix
    );
    assert!(
        !d.fix.contains("chaintoolong"),
        "5.4 has no such counter: {}",
        d.fix
    );
    // 6.18: resolved; clash_resolve rising alone is info.
    let earlier = facts("ct-healthy-6.18");
    let mut now = facts("ct-healthy-6.18");
    now.elapsed_ms = earlier.elapsed_ms + 5000;
    if let Ok(s) = &mut now.stat {
        *s.counters.get_mut("clashres").unwrap() += 10;
    }
    let f = checks::rendered(
        conntrack::run,
        &Snapshot {
            now,
            earlier: Some(earlier),
        },
    );
    let d = get(&f, conntrack::DROPS);
    assert_eq!(d.severity, Info, "{}", d.title);
    assert_eq!(
        d.title,
        "counters rising now: clash_resolve 2.00/s (races resolved: nothing dropped)"
    );
    assert!(d.why.contains("On this kernel (5.6+)"), "{}", d.why);
    assert!(!d.fix.contains("single-request-reopen"), "{}", d.fix);
}
