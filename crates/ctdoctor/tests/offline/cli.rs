//! The command line as a user meets it: help, usage errors, exit codes,
//! snapshot round trips. Each test gets its own temp dir.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, run as ctdoctor};

use std::path::Path;
use std::process::Output;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn help_shows_examples_and_exits_0() {
    for cmd in [
        &["--help"][..],
        &["check", "--help"],
        &["snapshot", "--help"],
    ] {
        let o = ctdoctor(cmd);
        assert_eq!(o.status.code(), Some(0), "{cmd:?}");
        assert!(text(&o).0.contains("Examples"), "{cmd:?} help has examples");
    }
}

#[test]
fn usage_errors_exit_3_not_2() {
    // 2 means "critical" for check; a typo must not look like one.
    let o = ctdoctor(&["check", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(3));
    let o = ctdoctor(&["check", "--sample", "soon"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).1.contains("invalid duration"));
    let o = ctdoctor(&["check", "--netns", "a", "--all-netns"]);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn unreadable_inputs_fail_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.ctd");
    let o = ctdoctor(&["check", "--snapshot", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).1.contains("nope.ctd"));

    let junk = dir.path().join("junk.ctd");
    std::fs::write(&junk, b"\x1f\x8bnot really gzip").unwrap();
    let o = ctdoctor(&["check", "--snapshot", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).1.contains("junk.ctd"));

    let o = ctdoctor(&["check", "--netns", "ctdoctor-no-such-netns"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).1.contains("ctdoctor-no-such-netns"));
}

/// A tiny machine: enough files for several readers.
fn tiny_tree(root: &Path) {
    let w = |rel: &str, body: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    };
    w("proc/sys/kernel/osrelease", "6.18.44-test\n");
    w(
        "proc/meminfo",
        "MemTotal:       24600000 kB\nMemAvailable:   20000000 kB\n",
    );
    w("sys/devices/system/cpu/online", "0-1\n");
    w("proc/uptime", "1000.00 1900.00\n");
    w("proc/stat", "cpu 1 2 3\nbtime 1764000000\n");
    w("proc/sys/net/netfilter/nf_conntrack_count", "1000\n");
    w("proc/sys/net/netfilter/nf_conntrack_max", "262144\n");
    w("proc/sys/net/netfilter/nf_conntrack_buckets", "262144\n");
    w(
        "probe/netns_id",
        r#"{"inode":4026531840,"name":null,"is_init":true}"#,
    );
}

#[test]
fn snapshot_of_a_tree_checks_the_same_offline() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    tiny_tree(&tree);
    let snap = dir.path().join("tree.ctd");
    let o = ctdoctor(&[
        "snapshot",
        "--root",
        tree.to_str().unwrap(),
        "-o",
        snap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);

    let live = ctdoctor(&["check", "--root", tree.to_str().unwrap(), "--json"]);
    let offline = ctdoctor(&["check", "--snapshot", snap.to_str().unwrap(), "--json"]);
    assert_eq!(live.status.code(), offline.status.code());
    let a = common::without_durations(common::json(&live));
    let b = common::without_durations(common::json(&offline));
    assert_eq!(a, b, "offline check differs from the tree it captured");
    assert_eq!(a["schema_version"], 1);
    assert_eq!(a["netns"]["inode"], 4026531840u64);
    assert_eq!(
        a["netns"]["is_init"], true,
        "a tree's own netns identity is kept"
    );
}

#[test]
fn a_gzip_bomb_snapshot_is_refused_not_inflated() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.ctd");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&bomb).unwrap(),
        flate2::Compression::best(),
    );
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..300 {
        gz.write_all(&zeros).unwrap(); // 300 MiB of spaces, ~300 KiB on disk
    }
    gz.finish().unwrap();
    let o = ctdoctor(&["check", "--snapshot", bomb.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o).1.contains("decompresses to more than"),
        "{}",
        text(&o).1
    );
}

/// Issue 8, item 14a: a `--netns` that is not a namespace says what is
/// wrong with it, not "needs root" (setns answers EINVAL, open ENOENT).
#[test]
fn issue_8_14a_netns_errors_say_what_is_wrong() {
    let o = ctdoctor(&["check", "--netns", "/tmp"]);
    assert_eq!(o.status.code(), Some(3));
    let err = text(&o).1;
    assert!(
        err.contains("/tmp is not a network namespace file"),
        "{err}"
    );
    assert!(!err.contains("needs root"), "{err}");

    let o = ctdoctor(&["check", "--netns", "ctdoctor-no-such-netns"]);
    assert_eq!(o.status.code(), Some(3));
    let err = text(&o).1;
    assert!(
        err.contains("no network namespace named \"ctdoctor-no-such-netns\" (see `ip netns list`)"),
        "{err}"
    );
    assert!(!err.contains("needs root"), "{err}");
}

/// The commands `ctdoctor --help` lists (without `help`).
fn listed_commands() -> Vec<String> {
    let o = ctdoctor(&["--help"]);
    let help = text(&o).0;
    let v: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(v.len() >= 4, "commands listed in --help: {help}");
    v
}

/// Issue 8 "first hour": completions for every shell clap_complete knows,
/// each naming our commands.
#[test]
fn completions_for_every_shell_name_the_commands() {
    let commands = listed_commands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = ctdoctor(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", text(&o).1);
        let out = text(&o).0;
        assert!(!out.trim().is_empty(), "{shell}: empty completions");
        for c in &commands {
            assert!(out.contains(c.as_str()), "{shell} completions lack {c}");
        }
    }
    let o = ctdoctor(&["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "an unknown shell is a usage error"
    );
}

/// Issue 8 "first hour": one man page with a section per command.
#[test]
fn man_page_names_every_command() {
    let o = ctdoctor(&["man"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    let page = text(&o).0;
    assert!(page.contains(".TH ctdoctor 1"), "a section-1 page: {page}");
    for c in listed_commands() {
        let heading = format!(".SH \"CTDOCTOR {}\"", c.to_uppercase());
        assert!(page.contains(&heading), "man page lacks {heading}");
    }
    // Every flag of check is documented there (roff escapes '-').
    assert!(page.contains(r"\fB\-\-all\-netns\fR"));
}

/// Issue 8, defect 9: a sample too short to tell a rise from none is
/// refused, not judged as "not rising".
#[test]
fn issue_8_9_short_samples_are_refused() {
    for d in ["0s", "1ms", "500ms"] {
        let o = ctdoctor(&["check", "--sample", d]);
        assert_eq!(o.status.code(), Some(3), "--sample {d}");
        let (_, err) = text(&o);
        assert!(err.contains("too short"), "{err}");
    }
    let o = ctdoctor(&["snapshot", "--sample", "10ms", "-o", "/dev/null"]);
    assert_eq!(o.status.code(), Some(3));
    // --deep has nothing to dump in a snapshot: refused, not ignored.
    let o = ctdoctor(&["check", "--snapshot", "x.ctd", "--deep"]);
    assert_eq!(o.status.code(), Some(3));
}
