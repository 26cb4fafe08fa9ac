//! `ctdoctor top` in a real terminal: tmux (80×24) runs it against a netns
//! holding entries created with `conntrack -I`; the screen is read with
//! `tmux capture-pane` and compared with `conntrack -L` counts; keys are
//! sent with `tmux send-keys`. Every wait is bounded.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::process::Command;
use std::time::{Duration, Instant};

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

fn capture(s: &Session) -> String {
    let out = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", &s.0])
        .output()
        .expect("tmux capture-pane");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(s: &Session, what: &str) -> String {
    let start = Instant::now();
    loop {
        let screen = capture(s);
        if screen.contains(what) {
            return screen;
        }
        if start.elapsed() > Duration::from_secs(15) {
            panic!("{what:?} not on screen after 15 s:\n{screen}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn keys(s: &Session, k: &[&str]) {
    let mut a = vec!["send-keys", "-t", s.0.as_str()];
    a.extend_from_slice(k);
    testns::run("tmux", &a);
}

#[test]
fn top_in_tmux() {
    if !testns::kernel_test("top_in_tmux") {
        return;
    }
    if !testns::need_tool("tmux") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = testns::Netns::new("sumtop");
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("b.txt");
    let mut b = String::new();
    for i in 0..300u32 {
        let state = if i < 200 { "TIME_WAIT" } else { "ESTABLISHED" };
        b.push_str(&format!(
            "-I -s 10.5.{}.{} -d 10.6.0.1 -p tcp --sport {} --dport 443 --state {state} -t 3000 -u SEEN_REPLY,ASSURED\n",
            i / 200,
            i % 200 + 1,
            20000 + i
        ));
    }
    for i in 0..40u32 {
        b.push_str(&format!(
            "-I -s 10.7.0.{} -d 10.6.0.53 -p udp --sport {} --dport 53 -t 3000\n",
            i + 1,
            30000 + i
        ));
    }
    std::fs::write(&batch, b).unwrap();
    ns.load_batch(&batch);
    let oracle = ns.exec_text("conntrack", &["-L"]);
    let n = |w: &str| oracle.lines().filter(|l| l.contains(w)).count();
    let (total, tw, est, udp) = (
        oracle.lines().count(),
        n(" TIME_WAIT "),
        n(" ESTABLISHED "),
        oracle.lines().filter(|l| l.starts_with("udp")).count(),
    );
    assert_eq!((total, tw, est, udp), (340, 200, 100, 40));

    let name = format!("ctdtop{}", std::process::id());
    let cmd = format!(
        "{} top --netns {} --interval 1s",
        crate::common::bin().display(),
        ns.name
    );
    testns::run(
        "tmux",
        &[
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "80",
            "-y",
            "24",
            &cmd,
        ],
    );
    let s = Session(name);
    let screen = wait_for(&s, "TIME_WAIT");
    assert!(screen.contains(&format!("count {total} / max")), "{screen}");
    let line_with = |screen: &str, key: &str| -> String {
        screen
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} not on screen:\n{screen}"))
            .to_string()
    };
    // "│TIME_WAIT      200 58.8│…": the count right after the state.
    let tw_line = line_with(&screen, "TIME_WAIT");
    assert!(tw_line.contains(&format!(" {tw} ")), "{tw_line}");
    assert!(
        line_with(&screen, "ESTABLISHED").contains(&format!(" {est} ")),
        "{screen}"
    );
    assert!(
        line_with(&screen, "tcp/443").contains(&format!(" {} ", tw + est)),
        "{screen}"
    );
    assert!(screen.contains("sources (340)"), "{screen}");

    // The creators panel: entries made while top runs, all by one source
    // (the 340 above predate it), are 100 % of the new ones.
    let more = dir.path().join("more.txt");
    let mut b = String::new();
    for i in 0..150u32 {
        b.push_str(&format!(
            "-I -s 10.9.9.9 -d 10.6.0.1 -p tcp --sport {} --dport 8443 --state SYN_SENT -t 3000\n",
            40000 + i
        ));
    }
    std::fs::write(&more, b).unwrap();
    ns.load_batch(&more);
    let start = Instant::now();
    let panel_row = |screen: &str, key: &str| -> Option<String> {
        let below = screen
            .lines()
            .skip_while(|l| !l.contains("creators: sources"))
            .collect::<Vec<_>>();
        below
            .iter()
            .find(|l| l.contains(key))
            .map(|l| l.to_string())
    };
    let screen = loop {
        let screen = capture(&s);
        if panel_row(&screen, "10.9.9.9").is_some() {
            break screen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "10.9.9.9 not in the creators panel after 15 s:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let row = panel_row(&screen, "10.9.9.9").unwrap();
    assert!(row.contains(" 100│"), "{screen}");
    let row = panel_row(&screen, "tcp/8443").unwrap();
    assert!(row.trim_end().ends_with(" 100│"), "{screen}");

    keys(&s, &["p"]);
    wait_for(&s, "[PAUSED]");
    keys(&s, &["p"]);
    keys(&s, &["?"]);
    wait_for(&s, "this help");
    keys(&s, &["x"]);
    keys(&s, &["f"]);
    wait_for(&s, "filter>");
    keys(&s, &["proto=udp", "Enter"]);
    let screen = wait_for(&s, &format!("filter: proto=udp ({udp} match)"));
    assert!(screen.contains("udp/53"), "{screen}");
    keys(&s, &["q"]);
    let start = Instant::now();
    while Command::new("tmux")
        .args(["has-session", "-t", &s.0])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "top did not quit on q"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
