//! Kernel tests of `ctdoctor tune`, run as a user runs it (the binary), each
//! in a fresh netns (testns) with its journal and files under a temporary
//! `--root` unless the test is about the host's files. Oracles: `sysctl` run
//! by `ip netns exec`, the kernel's /proc/sys files and their modes,
//! `sysctl -p FILE` loading what tune wrote, `conntrack -L` counts per
//! state, `nft list tables`, and the bytes of every host sysctl file.
//!
//! Global knobs (nf_conntrack_max, the hash size) are changed only under the
//! exclusive kernel-test lock, with a guard that restores them on panic.

use crate::common::{self, ok_json};
use ctdoctor::tune::apply::KILL_AT_ENV;
use ctdoctor::tune::journal::{ChangeSet, Entry, Journal, NetnsRef, State};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use testns::{kernel_test, lock_exclusive, lock_shared, GlobalKnob, Netns};

fn tune(args: &[&str]) -> Output {
    tune_env(args, None)
}

/// tune, run by a test that holds the global-knob lock exclusive.
fn tune_holding_lock(args: &[&str]) -> Output {
    common::command()
        .arg("tune")
        .args(args)
        .env(netns::guard::HELD_ENV, "1")
        .env_remove(KILL_AT_ENV)
        .output()
        .expect("run ctdoctor")
}

fn tune_env(args: &[&str], kill_at: Option<&str>) -> Output {
    let mut c = common::command();
    c.arg("tune").args(args).env_remove(netns::guard::HELD_ENV);
    match kill_at {
        Some(k) => c.env(KILL_AT_ENV, k),
        None => c.env_remove(KILL_AT_ENV),
    };
    c.output().expect("run ctdoctor")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `sysctl -n KEY` in the namespace (procps, not us).
fn sysctl(ns: &Netns, key: &str) -> String {
    ns.exec_text("sysctl", &["-n", key]).trim().to_string()
}

const TW: &str = "net.netfilter.nf_conntrack_tcp_timeout_time_wait";
const CW: &str = "net.netfilter.nf_conntrack_tcp_timeout_close_wait";
const FW: &str = "net.netfilter.nf_conntrack_tcp_timeout_fin_wait";

fn journal_of(root: &Path) -> Vec<ChangeSet> {
    Journal::at(root).list().expect("list journal").0
}

/// Every file under `dir` (recursively), relative, except the journal.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(r) = p.strip_prefix(base) {
                out.push(r.display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.retain(|p| !p.starts_with("var/lib/ctdoctor/journal"));
    out.sort();
    out
}

#[test]
fn per_netns_timeouts_apply_verify_and_roll_back_exactly() {
    if !kernel_test("per_netns_timeouts_apply_verify_and_roll_back_exactly") {
        return;
    }
    let _l = lock_shared();
    let ns = Netns::new("tune-apply");
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    // Not the defaults, so "restored exactly" cannot pass by luck.
    ns.sysctl(TW, "117");
    ns.sysctl(CW, "59");
    let before: Vec<String> = [TW, CW, FW].iter().map(|k| sysctl(&ns, k)).collect();
    let v = ok_json(&tune(&[
        "--netns",
        &ns.name,
        "--root",
        r,
        "--set",
        "tcp_timeout_time_wait=31,tcp_timeout_close_wait=41",
        "--set",
        "nf_conntrack_tcp_timeout_fin_wait=51",
        "--apply",
        "--json",
    ]));
    assert_eq!(sysctl(&ns, TW), "31");
    assert_eq!(sysctl(&ns, CW), "41");
    assert_eq!(sysctl(&ns, FW), "51");
    let checks = v["applied"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3);
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    assert!(
        files_under(root.path()).is_empty(),
        "a child netns gets no files"
    );
    let id = v["applied"]["id"].as_str().unwrap().to_string();
    let sets = journal_of(root.path());
    assert_eq!(sets.len(), 1);
    assert_eq!(
        (sets[0].id.as_str(), sets[0].state),
        (id.as_str(), State::Applied)
    );

    // Rollback without an id picks the latest for this netns.
    let o = tune(&["--netns", &ns.name, "--root", r, "--rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    let after: Vec<String> = [TW, CW, FW].iter().map(|k| sysctl(&ns, k)).collect();
    assert_eq!(after, before);
    assert_eq!(journal_of(root.path())[0].state, State::RolledBack);
    // Twice is refused, nothing written.
    let o = tune(&["--root", r, "--rollback", &id]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already rolled back"), "{}", text(&o));
}

#[test]
fn a_rollback_refuses_a_value_changed_since_unless_forced() {
    if !kernel_test("a_rollback_refuses_a_value_changed_since_unless_forced") {
        return;
    }
    let _l = lock_shared();
    let ns = Netns::new("tune-conflict");
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let before = sysctl(&ns, TW);
    ok_json(&tune(&[
        "--netns",
        &ns.name,
        "--root",
        r,
        "--set",
        "tcp_timeout_time_wait=32",
        "--apply",
        "--json",
    ]));
    ns.sysctl(TW, "77");
    let o = tune(&["--netns", &ns.name, "--root", r, "--rollback"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is 77 now"), "{}", text(&o));
    assert_eq!(sysctl(&ns, TW), "77", "a refused rollback writes nothing");
    let o = tune(&["--netns", &ns.name, "--root", r, "--rollback", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sysctl(&ns, TW), before);
}

#[test]
fn a_journal_left_by_a_killed_apply_rolls_back() {
    if !kernel_test("a_journal_left_by_a_killed_apply_rolls_back") {
        return;
    }
    let _l = lock_shared();
    for point in ["journal", "runtime"] {
        let ns = Netns::new("tune-kill");
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_str().unwrap();
        let before = (sysctl(&ns, TW), sysctl(&ns, CW));
        let o = tune_env(
            &[
                "--netns",
                &ns.name,
                "--root",
                r,
                "--set",
                "tcp_timeout_time_wait=33,tcp_timeout_close_wait=43",
                "--apply",
            ],
            Some(point),
        );
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGKILL),
            "{point}: {}",
            text(&o)
        );
        let sets = journal_of(root.path());
        assert_eq!(sets.len(), 1, "{point}");
        assert_eq!(sets[0].state, State::Pending, "{point}");
        let now = (sysctl(&ns, TW), sysctl(&ns, CW));
        if point == "journal" {
            assert_eq!(now, before, "killed before any write");
        } else {
            assert_eq!(
                now,
                ("33".to_string(), "43".to_string()),
                "killed after the runtime writes"
            );
        }
        // A new change set waits for the interrupted one to be rolled back.
        let o = tune(&[
            "--netns",
            &ns.name,
            "--root",
            r,
            "--set",
            "tcp_timeout_time_wait=34",
            "--apply",
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("was interrupted"), "{}", text(&o));
        let o = tune(&["--netns", &ns.name, "--root", r, "--rollback"]);
        assert!(o.status.success(), "{point}: {}", text(&o));
        assert_eq!((sysctl(&ns, TW), sysctl(&ns, CW)), before, "{point}");
        assert_eq!(journal_of(root.path())[0].state, State::RolledBack);
    }
    // Killed after the files were written: they are removed, and the
    // directories tune made for them.
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let o = tune_env(
        &[
            "--root",
            r,
            "--persist-only",
            "--set",
            "tcp_timeout_time_wait=35",
            "--apply",
        ],
        Some("files"),
    );
    assert_eq!(o.status.signal(), Some(libc::SIGKILL), "{}", text(&o));
    assert!(root.path().join("etc/sysctl.d/90-ctdoctor.conf").exists());
    let o = tune(&["--root", r, "--rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        files_under(root.path()).is_empty(),
        "{:?}",
        files_under(root.path())
    );
    assert!(
        !root.path().join("etc").exists(),
        "the directories tune made are gone"
    );
}

#[test]
fn files_under_a_temp_root_load_with_sysctl_p_in_a_netns_and_rollback_removes_them() {
    if !kernel_test(
        "files_under_a_temp_root_load_with_sysctl_p_in_a_netns_and_rollback_removes_them",
    ) {
        return;
    }
    let _l = lock_shared();
    let ns = Netns::new("tune-files");
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let v = ok_json(&tune(&[
        "--root",
        r,
        "--persist-only",
        "--set",
        "tcp_timeout_time_wait=36,tcp_timeout_close_wait=46",
        "--set",
        "net.ipv4.ip_local_port_range=2000 60000",
        "--apply",
        "--json",
    ]));
    assert!(
        v["plan"]["runtime"].as_array().unwrap().is_empty(),
        "persist only"
    );
    let file = root.path().join("etc/sysctl.d/90-ctdoctor.conf");
    let f = file.to_str().unwrap();
    // The oracle: procps loads the file in the namespace, and the kernel has the values.
    let o = ns.exec("sysctl", &["-p", f]);
    assert!(o.status.success());
    assert_eq!(sysctl(&ns, TW), "36");
    assert_eq!(sysctl(&ns, CW), "46");
    assert_eq!(
        sysctl(&ns, "net.ipv4.ip_local_port_range")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["2000", "60000"]
    );
    // Applying the same again changes nothing (idempotent edits).
    let again = ok_json(&tune(&[
        "--root",
        r,
        "--persist-only",
        "--set",
        "tcp_timeout_time_wait=36,tcp_timeout_close_wait=46",
        "--set",
        "net.ipv4.ip_local_port_range=2000 60000",
        "--apply",
        "--json",
    ]));
    assert!(
        again["plan"]["files"].as_array().unwrap().is_empty(),
        "{again}"
    );
    let o = tune(&["--root", r, "--rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!file.exists());
    assert!(files_under(root.path()).is_empty());
}

#[test]
fn a_later_sorting_override_file_is_detected_and_force_edits_it() {
    if !kernel_test("a_later_sorting_override_file_is_detected_and_force_edits_it") {
        return;
    }
    let _l = lock_shared();
    let ns = Netns::new("tune-override");
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let d = root.path().join("etc/sysctl.d");
    std::fs::create_dir_all(&d).unwrap();
    let later = d.join("99-later.conf");
    let later_text = "# admin\nnet.netfilter.nf_conntrack_tcp_timeout_time_wait = 90\n";
    std::fs::write(&later, later_text).unwrap();
    let args = [
        "--root",
        r,
        "--persist-only",
        "--set",
        "tcp_timeout_time_wait=37",
        "--apply",
    ];
    let o = tune(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{}:2 sets {TW} = 90", later.display())),
        "{}",
        text(&o)
    );
    assert!(
        !d.join("90-ctdoctor.conf").exists(),
        "refused: nothing written"
    );
    assert!(journal_of(root.path()).is_empty());

    // The oracle for "later wins": load the files in boot order in a netns.
    let boot_order = |ns: &Netns| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        files.sort_by_key(|p| p.file_name().unwrap().to_owned());
        for f in files {
            ns.exec("sysctl", &["-q", "-p", f.to_str().unwrap()]);
        }
        sysctl(ns, TW)
    };
    let mut forced = args.to_vec();
    forced.push("--force");
    let o = tune(&forced);
    assert!(o.status.success(), "{}", text(&o));
    assert!(d.join("90-ctdoctor.conf").exists());
    assert_eq!(
        std::fs::read_to_string(&later).unwrap(),
        "# admin\nnet.netfilter.nf_conntrack_tcp_timeout_time_wait = 37\n"
    );
    assert_eq!(boot_order(&ns), "37");
    let o = tune(&["--root", r, "--rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&later).unwrap(),
        later_text,
        "restored byte for byte"
    );
    assert!(!d.join("90-ctdoctor.conf").exists());
    assert_eq!(boot_order(&ns), "90");
}

#[test]
fn a_global_key_in_a_child_netns_is_refused_with_the_reason() {
    if !kernel_test("a_global_key_in_a_child_netns_is_refused_with_the_reason") {
        return;
    }
    let _l = lock_shared();
    let ns = Netns::new("tune-global");
    let root = tempfile::tempdir().unwrap();
    let host_max = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap();
    // The kernel's own word: the file is 0444 in the child.
    let mode = ns.exec_text(
        "stat",
        &["-c", "%a", "/proc/sys/net/netfilter/nf_conntrack_max"],
    );
    assert_eq!(mode.trim(), "444");
    for set in [
        "nf_conntrack_max=12345",
        "nf_conntrack_buckets=8192",
        "hashsize=8192",
    ] {
        let o = tune(&[
            "--netns",
            &ns.name,
            "--root",
            root.path().to_str().unwrap(),
            "--set",
            set,
            "--set",
            "tcp_timeout_time_wait=38",
            "--apply",
        ]);
        assert_eq!(o.status.code(), Some(2), "{set}: {}", text(&o));
        // The reason is read (the file's mode here), not assumed; the
        // hash size is the init netns's on every kernel.
        let why = if set.starts_with("hashsize") {
            "(the init netns's only)"
        } else {
            "is read-only here (mode 0444))"
        };
        assert!(
            text(&o).contains(&format!(
                "cannot be set from a child netns such as {}",
                ns.name
            )) && text(&o).contains(why),
            "{}",
            text(&o)
        );
        // No partial write: the per-netns key was not applied either.
        assert_ne!(sysctl(&ns, TW), "38");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap(),
        host_max
    );
    assert!(journal_of(root.path()).is_empty());
}

/// (path, bytes) of every file of the host's boot configuration.
fn host_boot_files() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let dirs = [
        "/etc/sysctl.d",
        "/run/sysctl.d",
        "/usr/local/lib/sysctl.d",
        "/usr/lib/sysctl.d",
        "/lib/sysctl.d",
        "/etc/modprobe.d",
        "/run/modprobe.d",
        "/usr/lib/modprobe.d",
        "/lib/modprobe.d",
        "/etc/modules-load.d",
        "/run/modules-load.d",
        "/usr/lib/modules-load.d",
    ];
    for d in dirs {
        for rel in files_under(Path::new(d)) {
            let p = Path::new(d).join(rel);
            out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
        }
    }
    for f in ["/etc/sysctl.conf", "/etc/modules"] {
        if let Ok(b) = std::fs::read(f) {
            out.insert(PathBuf::from(f), b);
        }
    }
    out
}

#[test]
fn tune_netns_apply_leaves_every_host_sysctl_file_as_it_was() {
    if !kernel_test("tune_netns_apply_leaves_every_host_sysctl_file_as_it_was") {
        return;
    }
    let _l = lock_shared();
    let ns = Netns::new("tune-hostfiles");
    let journal = Journal::at(Path::new("/"));
    let journal_existed = journal.dir.exists();
    let before = host_boot_files();
    // No --root: the real journal, the host's files at stake.
    let v = ok_json(&tune(&[
        "--netns",
        &ns.name,
        "--set",
        "tcp_timeout_time_wait=39,net.ipv4.tcp_tw_reuse=1",
        "--apply",
        "--json",
    ]));
    let id = v["applied"]["id"].as_str().unwrap().to_string();
    assert_eq!(sysctl(&ns, TW), "39");
    assert_eq!(host_boot_files(), before, "a host file changed");
    let o = tune(&["--rollback", &id]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(host_boot_files(), before);
    // Leave nothing behind: our change set, and the journal if we made it.
    std::fs::remove_file(journal.path_of(&id)).unwrap();
    if !journal_existed {
        let _ = std::fs::remove_file(journal.dir.join(".lock"));
        for d in [journal.dir.clone(), PathBuf::from("/var/lib/ctdoctor")] {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn global_knobs_apply_and_roll_back_on_the_host() {
    if !kernel_test("global_knobs_apply_and_roll_back_on_the_host") {
        return;
    }
    let _l = lock_exclusive();
    let max_path = "/proc/sys/net/netfilter/nf_conntrack_max";
    let buckets_path = "/proc/sys/net/netfilter/nf_conntrack_buckets";
    let read = |p: &str| std::fs::read_to_string(p).unwrap().trim().to_string();
    let (max0, buckets0) = (read(max_path), read(buckets_path));
    // Guards: restored on panic whatever tune did.
    let _gmax = GlobalKnob::set("net/netfilter/nf_conntrack_max", &max0);
    let _gbuckets = GlobalKnob::set("net/netfilter/nf_conntrack_buckets", &buckets0);
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let max1 = (max0.parse::<u64>().unwrap() + 1024).to_string();
    // One bucket more than the current count: the kernel rounds it up to
    // the next 512 (one page of 8-byte heads).
    let b0: u64 = buckets0.parse().unwrap();
    let args = [
        "--root",
        r,
        "--runtime-only",
        "--set",
        &format!("nf_conntrack_max={max1}"),
        "--set",
        &format!("hashsize={}", b0 + 1),
        "--apply",
        "--json",
    ];
    // While someone else holds the global-knob lock (here: this test, as a
    // lab run would), a global change is refused and nothing is written.
    let o = tune(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("global-knob lock"), "{}", text(&o));
    assert_eq!(
        (read(max_path), read(buckets_path)),
        (max0.clone(), buckets0.clone())
    );
    assert!(journal_of(root.path()).is_empty());
    let v = ok_json(&tune_holding_lock(&args));
    assert_eq!(read(max_path), max1);
    assert_eq!(read(buckets_path), (b0 + 512).to_string());
    let hs = v["plan"]["runtime"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["key"] == "nf_conntrack.hashsize")
        .unwrap()
        .clone();
    assert_eq!(hs["expect"], (b0 + 512).to_string());
    assert!(v["applied"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
    let o = tune_holding_lock(&["--root", r, "--rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!((read(max_path), read(buckets_path)), (max0, buckets0));
}

#[test]
fn rollback_deletes_an_nft_table_a_change_set_added() {
    if !kernel_test("rollback_deletes_an_nft_table_a_change_set_added") {
        return;
    }
    let _l = lock_shared();
    let ns = Netns::new("tune-nft");
    let root = tempfile::tempdir().unwrap();
    // What notrack --apply will journal: a table it adds.
    let journal = Journal::at(root.path());
    let netns = NetnsRef {
        arg: Some(ns.name.clone()),
        label: Some(ns.name.clone()),
        inode: Some(ns.inode()),
        is_init: false,
    };
    let mut cs = ChangeSet::new(
        "test".into(),
        root.path(),
        netns.clone(),
        vec![Entry::NftTable {
            netns,
            family: "inet".into(),
            name: "ctdt_journal".into(),
        }],
    );
    {
        let _lock = journal.lock().unwrap();
        journal.write(&cs).unwrap();
        ns.nft("table inet ctdt_journal {\n chain c { type filter hook prerouting priority -300; notrack; }\n}\n");
        cs.mark(State::Applied, "applied");
        journal.write(&cs).unwrap();
    }
    assert!(ns
        .exec_text("nft", &["list", "tables"])
        .contains("ctdt_journal"));
    let o = tune(&[
        "--root",
        root.path().to_str().unwrap(),
        "--rollback",
        &cs.id,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!ns
        .exec_text("nft", &["list", "tables"])
        .contains("ctdt_journal"));
    let o = tune(&["--root", root.path().to_str().unwrap(), "--history"]);
    assert!(text(&o).contains("rolled_back"), "{}", text(&o));
    assert!(
        text(&o).contains("nft table inet ctdt_journal added"),
        "{}",
        text(&o)
    );
}

/// `conntrack -L` per (protocol, state) — the oracle's own split.
fn per_state(ns: &Netns) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in ns.exec_text("conntrack", &["-L"]).lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let key = if f[0] == "tcp" && !f[3].contains('=') {
            format!("tcp {}", f[3])
        } else {
            f[0].to_string()
        };
        *m.entry(key).or_default() += 1;
    }
    m
}

#[test]
fn evict_time_wait_removes_every_time_wait_entry_and_no_other() {
    if !kernel_test("evict_time_wait_removes_every_time_wait_entry_and_no_other") {
        return;
    }
    let _l = lock_shared();
    let _heavy = crate::heavy();
    let ns = Netns::new("tune-evict");
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("fill.txt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/ct-fill-batch.py");
    testns::run(
        "python3",
        &[
            script.to_str().unwrap(),
            "100000",
            batch.to_str().unwrap(),
            "7",
        ],
    );
    ns.load_batch(&batch);
    assert_eq!(
        ns.count(),
        100_000,
        "the fill needs nf_conntrack_max >= 100000"
    );
    let before = per_state(&ns);
    let tw = before["tcp TIME_WAIT"];
    assert!(tw > 60_000, "{before:?}");

    // Without --apply: counted, nothing deleted.
    let v = ok_json(&tune(&[
        "--netns",
        &ns.name,
        "--evict",
        "time_wait",
        "--json",
    ]));
    assert_eq!(v["matched"]["TIME_WAIT"], tw);
    assert_eq!(v["freed"], 0);
    assert_eq!(ns.count(), 100_000);
    // Established needs --force.
    let o = tune(&["--netns", &ns.name, "--evict", "established", "--apply"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(per_state(&ns), before);

    let v = ok_json(&tune(&[
        "--netns",
        &ns.name,
        "--evict",
        "time_wait",
        "--apply",
        "--json",
    ]));
    assert_eq!(v["freed"], tw, "{v}");
    assert_eq!(v["gone"], 0);
    assert_eq!(v["count_before"], 100_000);
    assert_eq!(v["count_after"], 100_000 - tw);
    let mut want = before.clone();
    want.remove("tcp TIME_WAIT");
    assert_eq!(per_state(&ns), want, "every other state's count unchanged");

    // A port narrows it: only CLOSE_WAIT entries to or from port 443.
    let cw_443 = ns
        .exec_text(
            "conntrack",
            &["-L", "-p", "tcp", "--state", "CLOSE_WAIT", "--dport", "443"],
        )
        .lines()
        .count() as u64;
    let v = ok_json(&tune(&[
        "--netns",
        &ns.name,
        "--evict",
        "close_wait",
        "--port",
        "443",
        "--apply",
        "--json",
    ]));
    assert_eq!(v["freed"], cw_443);
    let after = per_state(&ns);
    assert_eq!(
        after.get("tcp CLOSE_WAIT").copied().unwrap_or(0),
        want["tcp CLOSE_WAIT"] - cw_443
    );
    assert_eq!(after["tcp ESTABLISHED"], want["tcp ESTABLISHED"]);
}

#[test]
fn from_check_plans_exactly_the_changes_check_prints() {
    if !kernel_test("from_check_plans_exactly_the_changes_check_prints") {
        return;
    }
    let _l = lock_shared();
    let ns = Netns::new("tune-fromcheck");
    // Something for check to fix in this netns.
    ns.sysctl(TW, "240");
    let root = tempfile::tempdir().unwrap();
    let (_, report) = common::check_json(&["--netns", &ns.name]);
    let mut want: Vec<Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["changes"].as_array().unwrap().clone())
        .collect();
    want.dedup();
    let mut want: Vec<String> = want.iter().map(|c| c.to_string()).collect();
    want.sort();
    want.dedup();
    let o = tune(&[
        "--netns",
        &ns.name,
        "--root",
        root.path().to_str().unwrap(),
        "--from-check",
        "--json",
    ]);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let v = common::json(&o);
    let mut got: Vec<String> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    got.sort();
    assert_eq!(got, want, "tune --from-check and check disagree");
    assert!(
        got.iter()
            .any(|c| c.contains("nf_conntrack_tcp_timeout_time_wait")),
        "{got:?}"
    );
    // Nothing was written without --apply.
    assert_eq!(sysctl(&ns, TW), "240");
    assert!(journal_of(root.path()).is_empty());
}

#[test]
fn from_plan_plans_exactly_the_sizing_plan_recommends() {
    if !kernel_test("from_plan_plans_exactly_the_sizing_plan_recommends") {
        return;
    }
    let _l = lock_shared();
    let root = tempfile::tempdir().unwrap();
    let sorted = |v: &Value| {
        let mut s: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        s.sort();
        s
    };
    // The host's global sizing, for a peak well above today's max: both
    // read the same machine, neither writes (no --apply).
    let plan = common::json(&common::run(&["plan", "--peak", "3000000", "--json"]));
    let want = sorted(&plan["sizing"]["changes"]);
    assert!(
        want.iter().any(|c| c.contains("nf_conntrack_max")),
        "{want:?}"
    );
    let o = tune(&[
        "--root",
        root.path().to_str().unwrap(),
        "--from-plan",
        "--peak",
        "3000000",
        "--json",
    ]);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let v = common::json(&o);
    assert_eq!(
        sorted(&v["changes"]),
        want,
        "tune --from-plan and plan disagree"
    );
    assert!(journal_of(root.path()).is_empty(), "nothing written");
    // --peak without --from-plan is a usage error, not a silent no-op.
    let o = tune(&["--peak", "5"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

/// `--evict STATE --idle-over T` deletes exactly the entries a timeout of T
/// would already have expired: ESTABLISHED entries made with known seconds
/// left under a known timeout (so a known age), checked against
/// `conntrack -L` (the oracle).
#[test]
fn evict_idle_over_deletes_exactly_the_entries_that_old() {
    if !kernel_test("evict_idle_over_deletes_exactly_the_entries_that_old") {
        return;
    }
    let _l = lock_shared();
    let ns = Netns::new("tune-idle");
    ns.sysctl(
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        "10000",
    );
    // 30 entries 9,000 s idle (1,000 s left), 20 entries 100 s idle.
    let mut batch = String::new();
    for i in 0..50u32 {
        let left = if i < 30 { 1000 } else { 9900 };
        batch.push_str(&format!(
            "-I -s 10.77.0.{} -d 10.77.1.1 -p tcp --sport {} --dport 443 --state ESTABLISHED \
             --timeout {left} -u ASSURED,SEEN_REPLY\n",
            1 + i % 200,
            20000 + i
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle.txt");
    std::fs::write(&file, batch).unwrap();
    ns.load_batch(&file);
    assert_eq!(ns.count(), 50);
    // Refused without --force: ESTABLISHED is a live state.
    let o = tune(&[
        "--netns",
        &ns.name,
        "--evict",
        "established",
        "--idle-over",
        "7875",
        "--apply",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(ns.count(), 50);
    let v = ok_json(&tune(&[
        "--netns",
        &ns.name,
        "--evict",
        "established",
        "--idle-over",
        "7875",
        "--force",
        "--apply",
        "--json",
    ]));
    assert_eq!(v["matched"]["ESTABLISHED"], 30, "{v}");
    assert_eq!(v["freed"], 30, "{v}");
    let left = ns.exec_text("conntrack", &["-L", "-p", "tcp"]);
    let ports: Vec<u32> = left
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("sport="))
                .and_then(|p| p.parse().ok())
        })
        .collect();
    assert_eq!(ports.len(), 20, "{left}");
    assert!(
        ports.iter().all(|p| *p >= 20030),
        "only the young stay: {ports:?}"
    );
    // --src and --dst narrow it: the 20 left come from 10.77.0.31–50, all
    // to 10.77.1.1; 10.77.0.40/29 holds 8 of them.
    let evict = |extra: &[&str]| {
        let mut a = vec!["--netns", &ns.name, "--evict", "established", "--force"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["--apply", "--json"]);
        ok_json(&tune(&a))
    };
    assert_eq!(evict(&["--src", "10.77.0.40/29"])["freed"], 8);
    let from_29 = ns
        .exec_text("conntrack", &["-L", "-p", "tcp"])
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("src="))
                .and_then(|a| a.strip_prefix("10.77.0."))
                .and_then(|o| o.parse::<u8>().ok())
                .is_some_and(|o| (40..48).contains(&o))
        })
        .count();
    assert_eq!(from_29, 0, "conntrack -L: none from 10.77.0.40/29 left");
    assert_eq!(evict(&["--dst", "10.77.1.2"])["freed"], 0);
    assert_eq!(evict(&["--dst", "10.77.1.1"])["freed"], 12);
    assert_eq!(ns.count(), 0);
}
