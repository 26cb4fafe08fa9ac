//! `ctdoctor notrack` without a kernel: the `ctdoctor notrack …` lines that
//! `conntrack.consumers` and `conntrack.state_mix.time_wait` print as notes
//! are lines its own flags accept (scoped to the report's namespace), and
//! bad input is refused with exit 3 and one error.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::{self, facts};

use ctdoctor::checks::{self, persist, state_mix};
use ctdoctor::cmd::notrack::parse_line;
use ctdoctor::host::Root;
use ctdoctor::snapshot::{Facts, NetnsId, Snapshot};

fn notrack_lines(fix: &str) -> Vec<String> {
    fix.lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with("ctdoctor notrack"))
        .map(String::from)
        .collect()
}

fn consumers_fix(f: &Facts) -> String {
    checks::render_one(persist::consumers(f), f).fix
}

#[test]
fn consumers_notes_are_notrack_lines_that_parse() {
    for tree in ["consumers-plain", "consumers-ufw", "consumers-services"] {
        let lines = notrack_lines(&consumers_fix(&facts(tree)));
        assert_eq!(lines, ["ctdoctor notrack --lo"], "{tree}");
        for l in &lines {
            let a = parse_line(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert!(a.lo && a.netns.netns.is_none(), "{l}");
        }
    }
    // NAT in use: no such line.
    assert!(notrack_lines(&consumers_fix(&facts("consumers-docker"))).is_empty());
}

#[test]
fn notes_in_a_child_netns_name_it() {
    let mut f = facts("consumers-plain");
    for (label, want) in [
        ("gw", "ctdoctor notrack --netns gw --lo"),
        ("pid 4242", "ctdoctor notrack --netns 4242 --lo"),
        (
            "/proc/7/ns/net",
            "ctdoctor notrack --netns /proc/7/ns/net --lo",
        ),
    ] {
        f.netns = Ok(NetnsId {
            inode: Some(4026532177),
            name: Some(label.into()),
            is_init: false,
            pinned_since_unix: None,
        });
        let lines = notrack_lines(&consumers_fix(&f));
        assert_eq!(lines, [want]);
        let a = parse_line(want).unwrap();
        assert_eq!(
            a.netns.netns.as_deref(),
            Some(label.strip_prefix("pid ").unwrap_or(label))
        );
        assert!(a.lo);
    }
    // Known by its inode only: no line that would act on the host.
    f.netns = Ok(NetnsId {
        inode: Some(4026532177),
        name: None,
        is_init: false,
        pinned_since_unix: None,
    });
    let fix = consumers_fix(&f);
    assert!(notrack_lines(&fix).is_empty(), "{fix}");
    assert!(fix.contains("in netns inode 4026532177"), "{fix}");
}

#[test]
fn time_wait_note_is_a_notrack_line_that_parses() {
    // The TIME_WAIT-heavy mix in a table under pressure (95 % full), which
    // is when the rule fires.
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    std::fs::copy(
        common::fixture("state_mix/time_wait_heavy/probe/table_mix"),
        probe.join("table_mix"),
    )
    .unwrap();
    let nf = dir.path().join("proc/sys/net/netfilter");
    std::fs::create_dir_all(&nf).unwrap();
    std::fs::write(nf.join("nf_conntrack_count"), "200000\n").unwrap();
    std::fs::write(nf.join("nf_conntrack_max"), "210000\n").unwrap();
    let now = ctdoctor::host::read_facts(&Root::live_at(dir.path().to_path_buf()));
    let f = checks::rendered(state_mix::run, &Snapshot { now, earlier: None });
    let tw = f.iter().find(|f| f.id == state_mix::TIME_WAIT).unwrap();
    let lines = notrack_lines(&tw.fix);
    assert_eq!(lines, ["ctdoctor notrack --lo"], "{}", tw.fix);
    assert!(parse_line(&lines[0]).unwrap().lo);
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let o = common::command()
        .arg("notrack")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bad_input_exits_3_with_one_error() {
    let (code, err) = run(&[]);
    assert_eq!(code, Some(3));
    assert!(err.contains("nothing selected"), "{err}");
    let (code, err) = run(&["--remove", "--lo"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, err) = run(&["--port", "70000"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("invalid port"), "{err}");
    let (code, err) = run(&["--src", "10.0.0.0/33"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("invalid prefix length"), "{err}");
    let (code, err) = run(&["--lo", "--apply", "--iptables"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, err) = run(&["--src", "10.0.0.0/8", "--dst", "2001:db8::1"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("different families"), "{err}");
    assert_eq!(err.matches("error").count(), 1, "{err}");
}
