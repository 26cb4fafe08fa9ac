//! Kernel tests for `ctdoctor notrack` (issue 11), each in fresh network
//! namespaces: the generated rules pass `nft -c -f` and `iptables-restore
//! --test`; applied, real loopback traffic leaves no entry while traffic
//! not selected is still tracked (oracle: `conntrack -L`); `--remove`
//! restores `nft list ruleset` byte for byte; the conflict scan finds a
//! DNAT on the port, a stateful accept with a drop policy and a docker-like
//! MASQUERADE on real rulesets, none on a clean one; `--apply` refuses the
//! conflicting case and leaves no rule behind.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;
use testns::{kernel_test, lock_shared, Netns};

/// Where a test's journal lives (not the machine's /var/lib/ctdoctor):
/// an existing directory, as `--root` requires.
fn journal_root(ns: &Netns) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ctdoctor-nt-{}-{}", std::process::id(), ns.name));
    std::fs::create_dir_all(&d).expect("create the test's journal root");
    d
}

fn notrack(ns: &Netns, args: &[&str]) -> Output {
    let root = journal_root(ns);
    let o = common::command()
        .arg("notrack")
        .args(["--netns", &ns.name])
        .arg("--root")
        .arg(&root)
        .args(args)
        .output()
        .expect("run ctdoctor");
    // A run that journaled nothing leaves no directory behind.
    let _ = std::fs::remove_dir(&root);
    o
}

fn tune(ns: &Netns, args: &[&str]) -> Output {
    let root = journal_root(ns);
    let o = common::command()
        .arg("tune")
        .args(["--netns", &ns.name])
        .arg("--root")
        .arg(&root)
        .args(args)
        .output()
        .expect("run ctdoctor");
    // A run that journaled nothing leaves no directory behind.
    let _ = std::fs::remove_dir(&root);
    o
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(ns: &Netns, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    common::ok_json(&notrack(ns, &a))
}

/// `tool args < input` inside the namespace; the output.
fn exec_stdin(ns: &Netns, tool: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, tool])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ruleset(ns: &Netns) -> String {
    ns.exec_text("nft", &["list", "ruleset"])
}

/// Entries of the namespace's table with this destination port (oracle).
fn entries_to(ns: &Netns, port: u16) -> usize {
    let p = port.to_string();
    ns.exec_text("conntrack", &["-L", "-p", "tcp", "--dport", &p])
        .lines()
        .filter(|l| l.contains(&format!("dport={p}")))
        .count()
}

/// `n` request/response round trips from a client in `client_ns` to
/// `addr:port` served by a listener in `server_ns`. Bounded: timeouts.
fn round_trips(server_ns: &Netns, client_ns: &Netns, addr: &str, port: u16, n: usize) {
    let bind = if addr.starts_with("127.") {
        addr
    } else {
        "0.0.0.0"
    };
    let l: TcpListener = ctdoctor::host::netns::run_in(&server_ns.target(), || {
        TcpListener::bind((bind, port)).expect("bind")
    })
    .unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = l.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).expect("read ping");
            s.write_all(b"pong").expect("write pong");
        }
    });
    ctdoctor::host::netns::run_in(&client_ns.target(), || {
        for _ in 0..n {
            let mut c = TcpStream::connect_timeout(
                &format!("{addr}:{port}").parse().unwrap(),
                Duration::from_secs(5),
            )
            .expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(b"ping").unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).expect("pong");
            assert_eq!(&b, b"pong");
        }
    })
    .unwrap();
    server.join().unwrap();
}

#[test]
fn generated_rules_pass_nft_and_iptables_restore_checks() {
    if !kernel_test("generated_rules_pass_nft_and_iptables_restore_checks") {
        return;
    }
    let _lock = lock_shared();
    let ns = Netns::new("ntcheck");
    // Stateful chains, so the accept inserts are part of what is checked.
    ns.nft(
        "table inet filter {\n chain output {\n  type filter hook output priority filter; policy drop;\n  \
         ct state established,related accept\n  udp dport 53 accept\n }\n}\n",
    );
    ns.exec("iptables-nft", &["-P", "OUTPUT", "DROP"]);
    ns.exec(
        "iptables-nft",
        &[
            "-A",
            "OUTPUT",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    );
    let before = ruleset(&ns);
    let file = tempfile::NamedTempFile::new().unwrap();
    for sel in [
        vec!["--lo"],
        vec!["--lo", "--port", "80,443"],
        vec![
            "--port",
            "53",
            "--proto",
            "udp,tcp",
            "--src",
            "10.0.0.0/8,192.168.0.0/16",
        ],
        vec!["--port", "8000-8100", "--dir", "in", "--dst", "192.0.2.10"],
        vec!["--src", "2001:db8::/32"],
        vec!["--lo", "--port", "80", "--upstream-port", "8080,9000-9010"],
    ] {
        let o = notrack(&ns, &sel);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{sel:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let script = text(&o);
        std::fs::write(file.path(), &script).unwrap();
        let path = file.path().to_str().unwrap();
        let c = ns.exec("nft", &["-c", "-f", path]);
        assert!(c.status.success(), "{sel:?}\n{script}");
        if sel.contains(&"--port") && !sel.contains(&"--dir") {
            assert!(
                script.contains("insert rule inet filter output index 0 "),
                "{sel:?}: the stateful output chain gets its accept\n{script}"
            );
        }
        let v6 = sel.iter().any(|s| s.contains("2001:"));
        let (flag, tool) = if v6 {
            ("--ip6tables", "ip6tables-restore")
        } else {
            ("--iptables", "iptables-restore")
        };
        let mut a = sel.clone();
        a.push(flag);
        let o = notrack(&ns, &a);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{a:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let script = text(&o);
        let t = exec_stdin(&ns, tool, &["--test", "--noflush"], &script);
        assert!(
            t.status.success(),
            "{a:?}: {}\n{script}",
            String::from_utf8_lossy(&t.stderr)
        );
        if !v6 && sel.contains(&"--port") && !sel.contains(&"--dir") {
            assert!(script.contains("-I OUTPUT 1 "), "{a:?}\n{script}");
        }
    }
    // Checking changed nothing.
    assert_eq!(ruleset(&ns), before);
}

#[test]
fn applied_rules_leave_selected_loopback_traffic_untracked_and_remove_restores_the_ruleset() {
    if !kernel_test(
        "applied_rules_leave_selected_loopback_traffic_untracked_and_remove_restores_the_ruleset",
    ) {
        return;
    }
    let _lock = lock_shared();
    let ns = Netns::new("ntapply");
    let before = ruleset(&ns);
    // Oracle first: without our rules loopback traffic is tracked.
    round_trips(&ns, &ns, "127.0.0.1", 8091, 5);
    assert!(entries_to(&ns, 8091) >= 5);
    ns.exec("conntrack", &["-F"]);

    let o = notrack(&ns, &["--port", "8081", "--apply"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text(&o).contains("table inet ctdoctor_notrack"),
        "{}",
        text(&o)
    );
    assert!(ruleset(&ns).contains("table inet ctdoctor_notrack"));
    // Applying twice is refused, and changes nothing.
    let again = ruleset(&ns);
    let o = notrack(&ns, &["--port", "8081", "--apply"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already loaded"));
    assert_eq!(ruleset(&ns), again);

    round_trips(&ns, &ns, "127.0.0.1", 8081, 20);
    round_trips(&ns, &ns, "127.0.0.1", 8082, 20);
    assert_eq!(entries_to(&ns, 8081), 0, "selected port: untracked");
    assert!(entries_to(&ns, 8082) >= 20, "other port: still tracked");

    let o = notrack(&ns, &["--remove"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text(&o).contains("removed:"), "{}", text(&o));
    assert_eq!(ruleset(&ns), before, "byte for byte");
    let o = notrack(&ns, &["--remove"]);
    assert!(
        text(&o).contains("nothing of ctdoctor notrack"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(journal_root(&ns));
}

#[test]
fn lo_is_untracked_while_traffic_on_another_interface_is_tracked() {
    if !kernel_test("lo_is_untracked_while_traffic_on_another_interface_is_tracked") {
        return;
    }
    let _lock = lock_shared();
    let server = Netns::new("ntlo");
    let client = Netns::new("ntpeer");
    server.exec(
        "ip",
        &[
            "link",
            "add",
            "ntv0",
            "type",
            "veth",
            "peer",
            "name",
            "ntv1",
            "netns",
            &client.name,
        ],
    );
    server.exec("ip", &["addr", "add", "10.99.0.1/24", "dev", "ntv0"]);
    server.exec("ip", &["link", "set", "ntv0", "up"]);
    client.exec("ip", &["addr", "add", "10.99.0.2/24", "dev", "ntv1"]);
    client.exec("ip", &["link", "set", "ntv1", "up"]);
    let before = ruleset(&server);

    let o = notrack(&server, &["--lo", "--apply"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    round_trips(&server, &server, "127.0.0.1", 8083, 20);
    round_trips(&server, &client, "10.99.0.1", 8084, 20);
    assert_eq!(entries_to(&server, 8083), 0, "loopback: untracked");
    assert!(entries_to(&server, 8084) >= 20, "veth: still tracked");
    let o = notrack(&server, &["--remove"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(ruleset(&server), before);
    let _ = std::fs::remove_dir_all(journal_root(&server));
}

fn conflicts(v: &Value) -> Vec<&Value> {
    v["conflicts"]
        .as_array()
        .expect("conflicts")
        .iter()
        .collect()
}

/// `# handle N` of the first line of `nft -a list chain …` containing `needle`.
fn handle_of(ns: &Netns, chain: &[&str], needle: &str) -> u64 {
    let mut a = vec!["-a", "list", "chain"];
    a.extend_from_slice(chain);
    let t = ns.exec_text("nft", &a);
    t.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.rsplit("# handle ").next())
        .and_then(|h| h.trim().parse().ok())
        .unwrap_or_else(|| panic!("{needle} in {t}"))
}

#[test]
fn conflict_scan_on_real_rulesets() {
    if !kernel_test("conflict_scan_on_real_rulesets") || !testns::need_tool("iptables-nft") {
        return;
    }
    let _lock = lock_shared();

    // Clean: testns's own `ct state` rules with accept policies.
    let clean = Netns::new("ntclean");
    let v = json(&clean, &["--lo", "--port", "80,443"]);
    assert!(conflicts(&v).is_empty(), "{v:#}");
    assert_eq!(v["inserts"].as_array().unwrap().len(), 0);

    // A DNAT on the port: blocks, and --apply leaves nothing behind.
    let dnat = Netns::new("ntdnat");
    dnat.nft(
        "table ip nat {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n  \
         tcp dport 8080 dnat to 10.0.0.2:80\n }\n}\n",
    );
    let v = json(&dnat, &["--port", "8080"]);
    let c = conflicts(&v);
    assert_eq!(c.len(), 1, "{v:#}");
    assert_eq!(c[0]["kind"], "nat");
    assert_eq!(
        (
            c[0]["family"].as_str(),
            c[0]["table"].as_str(),
            c[0]["chain"].as_str()
        ),
        (Some("ip"), Some("nat"), Some("pre"))
    );
    assert_eq!(
        c[0]["handle"],
        handle_of(&dnat, &["ip", "nat", "pre"], "dnat to")
    );
    assert!(c[0]["rule"]
        .as_str()
        .unwrap()
        .contains("dnat to 10.0.0.2:80"));
    assert_eq!(c[0]["blocks"], true);
    assert!(conflicts(&json(&dnat, &["--port", "443"])).is_empty());
    let before = ruleset(&dnat);
    let o = notrack(&dnat, &["--port", "8080", "--apply"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refused") && err.contains("BLOCKS nat"),
        "{err}"
    );
    assert_eq!(ruleset(&dnat), before, "nothing changed");
    // Printing exits 0 with the conflict on stderr.
    let o = notrack(&dnat, &["--port", "8080"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("BLOCKS nat"));
    assert!(
        text(&o)
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("# WARNING: 1 conflict(s)")),
        "the script says so itself: {}",
        text(&o)
    );

    // A stateful accept with a drop policy: the generated accept takes care
    // of it, so --apply goes ahead, and --remove takes the accept away too.
    let st = Netns::new("ntstate");
    st.nft(
        "table inet filter {\n chain output {\n  type filter hook output priority filter; policy drop;\n  \
         ct state established,related accept\n  udp dport 53 accept\n }\n}\n",
    );
    let v = json(&st, &["--port", "80"]);
    let c = conflicts(&v);
    assert_eq!(c.len(), 1, "{v:#}");
    assert_eq!(c[0]["kind"], "stateful_drop");
    assert_eq!(
        (c[0]["table"].as_str(), c[0]["chain"].as_str()),
        (Some("filter"), Some("output"))
    );
    assert_eq!(c[0]["rule"], "policy drop");
    assert_eq!(c[0]["blocks"], false);
    assert!(c[0]["fixed_by"]
        .as_str()
        .unwrap()
        .contains("ct state untracked accept"));
    let before = ruleset(&st);
    let o = notrack(&st, &["--port", "80", "--apply"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let chain = st.exec_text("nft", &["list", "chain", "inet", "filter", "output"]);
    assert_eq!(
        chain.matches("comment \"ctdoctor-notrack\"").count(),
        2,
        "{chain}"
    );
    // Journaled: tune's rollback takes away the table and the accept rules
    // inserted into the firewall's chain, byte for byte.
    let o = tune(&st, &["--history", "--json"]);
    let sets = common::json(&o);
    assert_eq!(sets.as_array().map(Vec::len), Some(1), "{sets:#}");
    assert_eq!(sets[0]["state"], "applied");
    let o = tune(&st, &["--rollback"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(ruleset(&st), before, "rolled back byte for byte");
    let o = tune(&st, &["--history", "--json"]);
    let sets = common::json(&o);
    assert_eq!(sets[0]["state"], "rolled_back");
    // --remove after a rollback finds nothing left.
    assert!(text(&notrack(&st, &["--remove"])).contains("nothing of ctdoctor notrack"));
    let _ = std::fs::remove_dir_all(journal_root(&st));

    // A docker-like MASQUERADE (iptables-nft): loopback traffic from the
    // bridge's range would lose it.
    let dk = Netns::new("ntdocker");
    dk.exec(
        "iptables-nft",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "172.17.0.0/16",
            "!",
            "-o",
            "docker0",
            "-j",
            "MASQUERADE",
        ],
    );
    let v = json(&dk, &["--lo"]);
    let c = conflicts(&v);
    assert_eq!(c.len(), 1, "{v:#}");
    assert_eq!(c[0]["kind"], "nat");
    assert_eq!(c[0]["backend"], "iptables_nft");
    assert_eq!(c[0]["chain"], "POSTROUTING");
    assert_eq!(
        c[0]["rule"],
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"
    );
    assert_eq!(c[0]["position"], 1);
    assert_eq!(c[0]["blocks"], true);
    let before = ruleset(&dk);
    assert_eq!(notrack(&dk, &["--lo", "--apply"]).status.code(), Some(1));
    assert_eq!(ruleset(&dk), before);
}

/// Entries of the namespace's table to `dst:port` (oracle: `conntrack -L`).
fn entries_to_addr(ns: &Netns, dst: &str, port: u16) -> usize {
    let p = port.to_string();
    ns.exec_text("conntrack", &["-L", "-p", "tcp", "--dport", &p])
        .lines()
        .filter(|l| l.contains(&format!("dst={dst} ")) && l.contains(&format!("dport={p} ")))
        .count()
}

#[test]
fn upstream_port_untracks_the_connections_this_host_opens_and_nothing_local() {
    if !kernel_test("upstream_port_untracks_the_connections_this_host_opens_and_nothing_local") {
        return;
    }
    let _lock = lock_shared();
    // A proxy (gw) and its backend (srv) on a veth pair; gw's firewall
    // drops what is not established (the shape that needs an insert).
    let gw = Netns::new("ntupgw");
    let srv = Netns::new("ntupsrv");
    gw.exec(
        "ip",
        &[
            "link", "add", "ntu0", "type", "veth", "peer", "name", "ntu1", "netns", &srv.name,
        ],
    );
    gw.exec("ip", &["addr", "add", "10.98.0.1/24", "dev", "ntu0"]);
    gw.exec("ip", &["link", "set", "ntu0", "up"]);
    srv.exec("ip", &["addr", "add", "10.98.0.2/24", "dev", "ntu1"]);
    srv.exec("ip", &["link", "set", "ntu1", "up"]);
    gw.nft(
        "table inet fw { chain input { type filter hook input priority 0; policy drop; \
         ct state established,related accept; iif \"lo\" accept; }; }",
    );
    let before = ruleset(&gw);
    // Oracle first: without our rules the upstream leg is tracked.
    round_trips(&srv, &gw, "10.98.0.2", 8085, 5);
    assert!(entries_to_addr(&gw, "10.98.0.2", 8085) >= 5);
    gw.exec("conntrack", &["-F"]);

    let v = json(&gw, &["--upstream-port", "8085"]);
    assert_eq!(v["selection"]["upstream_ports"][0]["lo"], 8085, "{v}");
    let inserts = v["inserts"].as_array().expect("inserts");
    assert!(
        inserts.iter().any(|i| i["chain"] == "input"),
        "the drop-policy input chain needs an untracked accept: {v}"
    );
    // A drop policy makes the untracked accept a hole: any host could send
    // from port 8085 to any local port. The scan says so and --apply refuses.
    assert!(
        conflicts(&v)
            .iter()
            .any(|c| c["kind"] == "bypass" && c["blocks"] == true),
        "{v}"
    );
    let o = notrack(&gw, &["--upstream-port", "8085", "--apply"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(ruleset(&gw), before, "refused: nothing changed");
    // Forced (the operator accepts the hole): the insert lets the replies in.
    let o = notrack(&gw, &["--upstream-port", "8085", "--apply", "--force"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text(&o).contains("fib daddr type != local tcp dport 8085 notrack"),
        "{}",
        text(&o)
    );
    // The upstream leg works untracked (the insert lets the replies in) ...
    round_trips(&srv, &gw, "10.98.0.2", 8085, 20);
    assert_eq!(
        entries_to_addr(&gw, "10.98.0.2", 8085),
        0,
        "upstream: untracked"
    );
    // ... while a local server on the same port stays tracked in both
    // directions (never half-untracked).
    round_trips(&gw, &gw, "127.0.0.1", 8085, 20);
    assert!(
        entries_to_addr(&gw, "127.0.0.1", 8085) >= 20,
        "loopback to 8085: still tracked"
    );
    let o = notrack(&gw, &["--remove"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(ruleset(&gw), before, "byte for byte");
    let _ = std::fs::remove_dir_all(journal_root(&gw));
}

/// `--persist` for real files: the nft script lands under the root where
/// nftables.service reads includes, nft itself accepts it (checked in a
/// fresh namespace), the text says how boot loads it, and `tune
/// --rollback` of the printed change set removes the file again.
#[test]
fn persist_writes_a_file_nft_accepts_and_rollback_removes_it() {
    if !kernel_test("persist_writes_a_file_nft_accepts_and_rollback_removes_it") {
        return;
    }
    let _lock = lock_shared();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    // A distribution's nftables.conf that includes the drop-in directory.
    std::fs::write(
        root.path().join("etc/nftables.conf"),
        "#!/usr/sbin/nft -f\nflush ruleset\ninclude \"/etc/nftables.d/*.nft\"\n",
    )
    .unwrap();
    let run = |sub: &str, args: &[&str]| {
        common::command()
            .arg(sub)
            .arg("--root")
            .arg(root.path())
            .args(args)
            .output()
            .unwrap()
    };
    let v = common::ok_json(&run("notrack", &["--lo", "--persist", "--json"]));
    let file = root.path().join("etc/nftables.d/ctdoctor-notrack.nft");
    let text = std::fs::read_to_string(&file).expect("the persisted file");
    assert!(text.contains("iif \"lo\" notrack"), "{text}");
    assert!(v["persisted"].as_str().is_some(), "{v}");
    // nft accepts it as boot would load it (a check, in a fresh namespace).
    let ns = Netns::new("ntpersist");
    let o = ns.exec("nft", &["-c", "-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Undone like any change set.
    let id = v["journal_id"].as_str().expect("journal_id").to_string();
    let o = run("tune", &["--rollback", &id]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!file.exists(), "rolled back: the file is gone");
}
