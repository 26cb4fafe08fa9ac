//! Kernel tests: real entries in fresh network namespaces, checked against
//! independent oracles (`conntrack -L/-C/-S` text parsed by a small
//! split-based parser here, never by this crate). Run as root; without root
//! they print why they are skipped (CI=true makes them fail instead).
//!
//! Fill sizes are 100k; a second file lock of our own keeps two of these
//! fills from running at once (the global nf_conntrack_max is shared).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ctnetlink::consts::*;
use ctnetlink::netns::Target;
use ctnetlink::{Conntrack, DumpRequest, Event, Socket, TcpState, Tuple};
use testns::Netns as TestNs;

const FILL: usize = 100_000;

/// Our own lock so two 100k fills of this file never overlap.
struct FillLock(#[allow(dead_code)] File);
fn fill_lock() -> FillLock {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("ctnetlink-fill.lock"))
        .expect("open fill lock");
    // SAFETY: flock on a file we own.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    FillLock(f)
}

/// The repository's one copy of the fill script (from ../shared/tools).
fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/ct-fill-batch.py")
}

fn sock(ns: &TestNs) -> Socket {
    Socket::open_in(&Target::Named(ns.name.clone())).expect("open socket in netns")
}

/// Oracle: one `conntrack -L` line, parsed by splitting on whitespace.
#[derive(Debug, Default, Clone)]
struct Line {
    proto: String,
    state: Option<String>,
    key: String,
    assured: bool,
    unreplied: bool,
    mark: Option<u32>,
}

fn parse_l(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let mut line = Line {
            proto: f[0].to_string(),
            ..Line::default()
        };
        if f[0] == "tcp" && !f[3].contains('=') {
            line.state = Some(f[3].to_string());
        }
        let mut first: BTreeMap<&str, &str> = BTreeMap::new();
        for w in &f {
            if *w == "[ASSURED]" {
                line.assured = true;
            } else if *w == "[UNREPLIED]" {
                line.unreplied = true;
            } else if let Some((k, v)) = w.split_once('=') {
                first.entry(k).or_insert(v);
                if k == "mark" {
                    line.mark = v.parse().ok();
                }
            }
        }
        let g = |k: &str| first.get(k).copied().unwrap_or("-").to_string();
        line.key = if f[0] == "icmp" || f[0] == "icmpv6" {
            format!(
                "{} {} {} {} {} {}",
                f[0],
                g("src"),
                g("dst"),
                g("type"),
                g("code"),
                g("id")
            )
        } else {
            format!(
                "{} {} {} {} {}",
                f[0],
                g("src"),
                g("sport"),
                g("dst"),
                g("dport")
            )
        };
        out.push(line);
    }
    out
}

fn proto_name(p: u8) -> String {
    match p {
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_ICMPV6 => "icmpv6".into(),
        n => format!("unknown{n}"),
    }
}

fn our_key(t: &Tuple) -> String {
    let p = proto_name(t.proto);
    if t.proto == IPPROTO_ICMP || t.proto == IPPROTO_ICMPV6 {
        format!(
            "{p} {} {} {} {} {}",
            t.src, t.dst, t.icmp_type, t.icmp_code, t.icmp_id
        )
    } else {
        format!("{p} {} {} {} {}", t.src, t.src_port, t.dst, t.dst_port)
    }
}

/// Per-protocol, per-state, assured, unreplied counts and the sorted keys.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    total: usize,
    proto: BTreeMap<String, usize>,
    state: BTreeMap<String, usize>,
    assured: usize,
    unreplied: usize,
    keys: Vec<String>,
}

fn tally_oracle(lines: &[Line]) -> Tally {
    let mut t = Tally::default();
    for l in lines {
        t.total += 1;
        *t.proto.entry(l.proto.clone()).or_default() += 1;
        if let Some(s) = &l.state {
            *t.state.entry(s.clone()).or_default() += 1;
        }
        t.assured += l.assured as usize;
        t.unreplied += l.unreplied as usize;
        t.keys.push(l.key.clone());
    }
    t.keys.sort();
    t
}

fn tally_ours(s: &mut Socket, req: &DumpRequest) -> Tally {
    let mut t = Tally::default();
    let st = s
        .dump(req, |e| {
            let f = e.summary().expect("entry decodes");
            let o = f.orig.expect("orig tuple");
            t.total += 1;
            *t.proto.entry(proto_name(o.proto)).or_default() += 1;
            if o.proto == IPPROTO_TCP {
                let st = f.tcp_state.expect("tcp state");
                *t.state
                    .entry(st.name().expect("known state").into())
                    .or_default() += 1;
            }
            t.assured += f.status.contains(ctnetlink::Status::ASSURED) as usize;
            t.unreplied += !f.status.contains(ctnetlink::Status::SEEN_REPLY) as usize;
            t.keys.push(our_key(&o));
            ControlFlow::Continue(())
        })
        .expect("dump");
    assert_eq!(st.entries as usize, t.total);
    assert!(!st.interrupted, "dump interrupted on a quiet table");
    t.keys.sort();
    t
}

fn conntrack_l(ns: &TestNs, args: &[&str]) -> Vec<Line> {
    let mut a = vec!["-L"];
    a.extend_from_slice(args);
    parse_l(&ns.exec_text("conntrack", &a))
}

fn conntrack_c(ns: &TestNs) -> u64 {
    ns.exec_text("conntrack", &["-C"])
        .trim()
        .parse()
        .expect("conntrack -C prints a number")
}

#[test]
fn dump_of_conntrack_r_fill_matches_conntrack_l() {
    if !testns::kernel_test("dump_of_conntrack_r_fill_matches_conntrack_l") {
        return;
    }
    let _l = testns::lock_shared();
    let _f = fill_lock();
    let ns = TestNs::new("ctnl-dump");
    let dir = tempfile_dir();
    let batch = dir.join("fill.txt");
    testns::run(
        "python3",
        &[
            script().to_str().unwrap(),
            &FILL.to_string(),
            batch.to_str().unwrap(),
            "7",
        ],
    );
    ns.load_batch(&batch);
    assert_eq!(ns.count(), FILL as u64, "fill");

    let mut s = sock(&ns);
    let ours = tally_ours(&mut s, &DumpRequest::all());
    let oracle = tally_oracle(&conntrack_l(&ns, &[]));
    assert_eq!(ours.total, FILL);
    assert_eq!(ours.proto, oracle.proto);
    assert_eq!(ours.state, oracle.state);
    assert_eq!(ours.assured, oracle.assured);
    assert_eq!(ours.unreplied, oracle.unreplied);
    assert!(ours.keys == oracle.keys, "tuple keys differ");
    // The fill has tcp, udp and icmp and several states: the test can fail.
    assert!(
        ours.proto.len() == 3 && ours.state.len() >= 5,
        "{:?} {:?}",
        ours.proto,
        ours.state
    );
    assert_eq!(s.count().expect("count") as u64, conntrack_c(&ns));

    // Early stop leaves the socket usable.
    let mut seen = 0;
    let st = s
        .dump(&DumpRequest::all(), |_| {
            seen += 1;
            if seen == 10 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("dump with break");
    assert!(st.stopped);
    assert_eq!(seen, 10);
    assert_eq!(
        s.dump_count(&DumpRequest::all())
            .expect("count dump")
            .entries as usize,
        FILL
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "ctnetlink-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `n` entries of a known mix: 60% tcp TIME_WAIT, 20% ESTABLISHED (both
/// assured), 10% SYN_SENT, 8% udp, 2% icmp.
fn our_mix(
    n: usize,
) -> (
    Vec<Conntrack>,
    BTreeMap<String, usize>,
    BTreeMap<String, usize>,
) {
    let mut v = Vec::with_capacity(n);
    let mut proto = BTreeMap::new();
    let mut state = BTreeMap::new();
    let dst = IpAddr::V4(Ipv4Addr::new(172, 16, 0, 10));
    for i in 0..n {
        let src = IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8));
        let sport = 1024 + (i % 50_000) as u16;
        let k = i % 50;
        let ct = if k < 30 || (30..40).contains(&k) || (40..45).contains(&k) {
            let st = if k < 30 {
                TcpState::TimeWait
            } else if k < 40 {
                TcpState::Established
            } else {
                TcpState::SynSent
            };
            *state.entry(st.name().unwrap().to_string()).or_insert(0) += 1;
            *proto.entry("tcp".to_string()).or_insert(0) += 1;
            let c = Conntrack::new(Tuple::tcp(src, sport, dst, 443))
                .timeout(6000)
                .tcp_state(st);
            if st == TcpState::SynSent {
                c
            } else {
                c.status(IPS_SEEN_REPLY | IPS_ASSURED)
            }
        } else if k < 49 {
            *proto.entry("udp".to_string()).or_insert(0) += 1;
            Conntrack::new(Tuple::udp(src, sport, dst, 53)).timeout(6000)
        } else {
            *proto.entry("icmp".to_string()).or_insert(0) += 1;
            Conntrack::new(Tuple::icmp(src, dst, 8, 0, i as u16)).timeout(6000)
        };
        v.push(ct);
    }
    (v, proto, state)
}

#[test]
fn batch_create_fill_matches_conntrack_c_and_l() {
    if !testns::kernel_test("batch_create_fill_matches_conntrack_c_and_l") {
        return;
    }
    let _l = testns::lock_shared();
    let _f = fill_lock();
    let ns = TestNs::new("ctnl-batch");
    let (entries, proto, state) = our_mix(FILL);
    let mut s = sock(&ns);
    let t0 = Instant::now();
    let rep = s.create_batch(&entries).expect("batch create");
    let dt = t0.elapsed();
    eprintln!(
        "batch create: {} entries in {:?} ({:.0}/s, {} sendmsg)",
        rep.ok,
        dt,
        rep.ok as f64 / dt.as_secs_f64(),
        rep.sends
    );
    assert_eq!(
        rep.ok,
        FILL,
        "failures: {:?}",
        &rep.failed[..rep.failed.len().min(5)]
    );
    assert!(rep.failed.is_empty());
    assert_eq!(conntrack_c(&ns), FILL as u64);
    let oracle = tally_oracle(&conntrack_l(&ns, &[]));
    assert_eq!(oracle.total, FILL);
    assert_eq!(oracle.proto, proto);
    assert_eq!(oracle.state, state);
    let mut want: Vec<String> = entries.iter().map(|c| our_key(&c.orig)).collect();
    want.sort();
    assert!(
        oracle.keys == want,
        "conntrack -L tuples differ from what we created"
    );

    // Creating the first 100 again: every one fails with EEXIST, reported per entry.
    let rep = s.create_batch(&entries[..100]).expect("second batch");
    assert_eq!(rep.ok, 0);
    assert_eq!(rep.failed.len(), 100);
    assert!(rep
        .failed
        .iter()
        .enumerate()
        .all(|(i, (j, e))| i == *j && *e == libc::EEXIST));
}

/// `conntrack -S` lines: `cpu=N  found=.. invalid=.. ...` → per cpu map.
fn parse_s(text: &str) -> BTreeMap<u16, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let mut cpu = None;
        let mut m = BTreeMap::new();
        for w in l.split_whitespace() {
            if let Some((k, v)) = w.split_once('=') {
                if k == "cpu" {
                    cpu = v.parse().ok();
                } else if let Ok(v) = v.parse() {
                    m.insert(k.to_string(), v);
                }
            }
        }
        if let Some(c) = cpu {
            out.insert(c, m);
        }
    }
    out
}

#[test]
fn stats_match_conntrack_s_and_c() {
    if !testns::kernel_test("stats_match_conntrack_s_and_c") {
        return;
    }
    let _l = testns::lock_shared();
    let ns = TestNs::new("ctnl-stats");
    // Make counters non-zero: ctnetlink inserts (insert) and a duplicate
    // insert (ctnetlink error, no stat) plus some loopback traffic (found).
    for i in 0..20 {
        ns.exec(
            "conntrack",
            &[
                "-I",
                "-s",
                "10.9.9.9",
                "-d",
                "10.8.8.8",
                "-p",
                "udp",
                "--sport",
                &(2000 + i).to_string(),
                "--dport",
                "53",
                "-t",
                "600",
            ],
        );
    }
    ns.exec("bash", &["-c", "for p in 1 2 3; do echo x > /dev/udp/127.0.0.1/$((9000+p)); echo y > /dev/udp/127.0.0.1/9001; done"]);
    let mut s = sock(&ns);
    let ours = s.stats_cpu().expect("stats_cpu");
    let oracle = parse_s(&ns.exec_text("conntrack", &["-S"]));
    assert_eq!(ours.cpus.len(), oracle.len(), "one row per cpu");
    let mut compared = 0;
    let mut nonzero = 0;
    for c in &ours.cpus {
        let o = oracle
            .get(&c.cpu)
            .unwrap_or_else(|| panic!("cpu {} missing in conntrack -S", c.cpu));
        for (attr, name, v) in c.iter() {
            let name = name.unwrap_or_else(|| panic!("unknown stats attr {attr}"));
            let ov = o
                .get(name)
                .unwrap_or_else(|| panic!("conntrack -S has no {name}"));
            assert_eq!(v as u64, *ov, "cpu {} {name}", c.cpu);
            compared += 1;
            nonzero += (v > 0) as usize;
        }
        // Every field conntrack -S prints, we have.
        for k in o.keys() {
            assert!(
                c.iter().any(|(_, n, _)| n == Some(k.as_str())),
                "we lack {k}"
            );
        }
    }
    assert!(
        compared >= 10 && nonzero > 0,
        "compared {compared}, nonzero {nonzero}"
    );
    assert!(ours.sum(CTA_STATS_INSERT) >= 20);
    let g = s.stats().expect("stats");
    assert_eq!(g.entries as u64, conntrack_c(&ns));
    assert!(g.entries >= 20);
    let max: u32 = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(g.max_entries, Some(max));
}

#[test]
fn events_for_create_update_delete() {
    if !testns::kernel_test("events_for_create_update_delete") {
        return;
    }
    let _l = testns::lock_shared();
    let ns = TestNs::new("ctnl-ev");
    let mut ev = sock(&ns);
    ev.subscribe(ctnetlink::events::groups::ALL)
        .expect("subscribe");
    let mut w = sock(&ns);
    let t = Tuple::tcp(
        "10.1.1.1".parse().unwrap(),
        4000,
        "10.2.2.2".parse().unwrap(),
        80,
    );
    let ct = Conntrack::new(t)
        .timeout(300)
        .tcp_state(TcpState::Established)
        .status(IPS_SEEN_REPLY | IPS_ASSURED)
        .mark(7);
    w.create(&ct).expect("create");
    w.update(&Conntrack::new(t).mark(9)).expect("update");
    let got = w
        .get(&t, None, |e| e.summary().expect("decodes"))
        .expect("get");
    let f = got.expect("entry exists");
    assert_eq!(
        (f.mark, f.tcp_state),
        (Some(9), Some(TcpState::Established))
    );
    assert!(f.status.contains(ctnetlink::Status::ASSURED));
    w.delete(&t, None).expect("delete");
    assert!(w.get(&t, None, |_| ()).expect("get after delete").is_none());
    let e = w.delete(&t, None).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
    // The entry is gone: the oracle agrees.
    assert!(conntrack_l(&ns, &[]).is_empty());
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 3 && Instant::now() < deadline {
        ev.recv_events(Some(Duration::from_millis(200)), |e| {
            let (kind, entry) = match e {
                Event::New(e) => ("new", e),
                Event::Update(e) => ("update", e),
                Event::Destroy(e) => ("destroy", e),
                Event::Lost => {
                    got.push(("lost", None, None));
                    return;
                }
            };
            let f = entry.summary().expect("event decodes");
            got.push((kind, f.orig, f.mark));
        })
        .expect("recv events");
    }
    let kinds: Vec<&str> = got.iter().map(|g| g.0).collect();
    assert_eq!(kinds, ["new", "update", "destroy"], "{got:?}");
    assert!(got
        .iter()
        .all(|g| g.1.map(|o| (o.src, o.src_port, o.dst_port)) == Some((t.src, 4000, 80))));
    assert_eq!(got[0].2, Some(7));
    assert_eq!(got[1].2, Some(9));
}

#[test]
fn filters_family_mark_status_zone() {
    if !testns::kernel_test("filters_family_mark_status_zone") {
        return;
    }
    let _l = testns::lock_shared();
    let ns = TestNs::new("ctnl-filt");
    let mut s = sock(&ns);
    let v4d = IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1));
    let v6d = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let mut all = Vec::new();
    for i in 0..60u16 {
        let (src, dst): (IpAddr, IpAddr) = if i < 40 {
            (Ipv4Addr::new(10, 0, 0, i as u8 + 1).into(), v4d)
        } else {
            (
                Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i + 1).into(),
                v6d,
            )
        };
        let mut c = Conntrack::new(Tuple::tcp(src, 1000 + i, dst, 443))
            .timeout(600)
            .tcp_state(TcpState::Established)
            .mark((i % 3) as u32 | 0x100);
        if i % 2 == 0 {
            c = c.status(IPS_SEEN_REPLY | IPS_ASSURED);
        }
        if i % 5 == 0 {
            c = c.zone(5);
        }
        all.push(c);
    }
    let rep = s.create_batch(&all).expect("create");
    assert_eq!(rep.ok, 60, "{:?}", rep.failed);
    let count = |s: &mut Socket, r: DumpRequest| s.dump_count(&r).expect("dump").entries as usize;
    let l = |a: &[&str]| conntrack_l(&ns, a).len();
    let v6 = count(&mut s, DumpRequest::all().family(AF_INET6));
    assert_eq!(v6, l(&["-f", "ipv6"]));
    assert_eq!(v6, 20);
    assert_eq!(
        count(&mut s, DumpRequest::all().family(AF_INET)),
        l(&["-f", "ipv4"])
    );
    let m1 = count(&mut s, DumpRequest::all().mark(0x101, 0xffff_ffff));
    assert_eq!(m1, l(&["-m", "0x101"]));
    assert_eq!(m1, 20);
    // Mask: low byte ignored → every entry.
    assert_eq!(count(&mut s, DumpRequest::all().mark(0x100, 0xff00)), 60);
    let assured = count(&mut s, DumpRequest::all().status(IPS_ASSURED, IPS_ASSURED));
    assert_eq!(assured, l(&["--status", "ASSURED"]));
    assert_eq!(assured, 30);
    let z5 = count(&mut s, DumpRequest::all().zone(5));
    assert_eq!(z5, l(&["-w", "5"]));
    assert_eq!(z5, 12);
    // Family, mark and status are filtered by the kernel (6.18): our
    // userspace fallback dropped nothing; zone is userspace-only.
    let filtered = |s: &mut Socket, r: DumpRequest| s.dump_count(&r).expect("dump").filtered;
    assert_eq!(filtered(&mut s, DumpRequest::all().family(AF_INET6)), 0);
    assert_eq!(
        filtered(&mut s, DumpRequest::all().mark(0x101, 0xffff_ffff)),
        0
    );
    assert_eq!(
        filtered(&mut s, DumpRequest::all().status(IPS_ASSURED, IPS_ASSURED)),
        0
    );
    // 48 = the non-zone-5 entries, dropped in userspace (0 would mean a
    // future kernel filtered by zone itself).
    let zf = filtered(&mut s, DumpRequest::all().zone(5));
    assert!(zf == 48 || zf == 0, "{zf}");
    // Combined: v6, mark 0x101, in the kernel and our fallback together.
    let both = count(
        &mut s,
        DumpRequest::all().family(AF_INET6).mark(0x101, 0xffff_ffff),
    );
    assert_eq!(both, l(&["-f", "ipv6", "-m", "0x101"]));
    // Every field of one entry against its conntrack -L line.
    let mut seen = 0;
    s.dump(
        &DumpRequest::all().family(AF_INET6).mark(0x102, 0xffff_ffff),
        |e| {
            let f = e.summary().unwrap();
            assert_eq!(f.family, AF_INET6);
            assert_eq!(f.mark, Some(0x102));
            assert_eq!(f.tcp_state, Some(TcpState::Established));
            assert!(f.timeout.unwrap() <= 600 && f.timeout.unwrap() > 500);
            assert_eq!(f.reply.unwrap().src, v6d);
            assert!(f.id.is_some() && f.use_count.is_some());
            seen += 1;
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(seen, l(&["-f", "ipv6", "-m", "0x102"]));
    // Flush empties the table (oracle: conntrack -C).
    s.flush(AF_UNSPEC).expect("flush");
    assert_eq!(conntrack_c(&ns), 0);
}

#[test]
fn netns_sockets_stay_in_their_namespace() {
    if !testns::kernel_test("netns_sockets_stay_in_their_namespace") {
        return;
    }
    let _l = testns::lock_shared();
    let a = TestNs::new("ctnl-nsa");
    let b = TestNs::new("ctnl-nsb");
    a.exec(
        "conntrack",
        &[
            "-I", "-s", "10.0.0.1", "-d", "10.0.0.2", "-p", "udp", "--sport", "1", "--dport", "2",
            "-t", "60",
        ],
    );
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let mut sa = sock(&a);
    let mut sb = sock(&b);
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before,
        "caller thread moved"
    );
    assert_eq!(sa.count().unwrap(), 1);
    assert_eq!(sb.count().unwrap(), 0);
    // Used from another thread, a socket still talks to its own netns.
    let n = std::thread::spawn(move || sa.dump_count(&DumpRequest::all()).unwrap().entries)
        .join()
        .unwrap();
    assert_eq!(n, 1);
    let err = Socket::open_in(&Target::Named("ctnl-does-not-exist".into())).unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
}

#[test]
fn event_overflow_is_reported_as_lost() {
    if !testns::kernel_test("event_overflow_is_reported_as_lost") {
        return;
    }
    let _l = testns::lock_shared();
    let ns = TestNs::new("ctnl-lost");
    // A tiny receive buffer that 2000 NEW events cannot fit.
    let mut ev =
        ctnetlink::netns::run_in(&Target::Named(ns.name.clone()), || Socket::open_with(4096))
            .expect("enter netns")
            .expect("open");
    ev.subscribe(ctnetlink::events::groups::NEW)
        .expect("subscribe");
    let mut w = sock(&ns);
    let (entries, _, _) = our_mix(2000);
    assert_eq!(w.create_batch(&entries).expect("create").ok, 2000);
    let (mut lost, mut news) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let n = ev
            .recv_events(Some(Duration::from_millis(100)), |e| match e {
                Event::Lost => lost += 1,
                Event::New(_) => news += 1,
                _ => {}
            })
            .expect("recv events");
        if n == 0 {
            break;
        }
    }
    assert!(lost >= 1, "no Event::Lost ({news} new events)");
    assert!(
        news < 2000,
        "all {news} events arrived: the buffer did not overflow"
    );
}

#[test]
fn delete_batch_deletes_exactly_the_keys_and_reports_each_ack() {
    if !testns::kernel_test("delete_batch_deletes_exactly_the_keys_and_reports_each_ack") {
        return;
    }
    let _l = testns::lock_shared();
    let ns = TestNs::new("ctnl-delbatch");
    let (entries, _, _) = our_mix(5000);
    let mut s = sock(&ns);
    assert_eq!(s.create_batch(&entries).expect("create").ok, 5000);
    // Every TIME_WAIT entry, as a dump names it (tuple, zone, id).
    let mut keys = Vec::new();
    s.dump(&DumpRequest::all(), |e| {
        let f = e.summary().expect("entry decodes");
        if f.tcp_state == Some(TcpState::TimeWait) {
            keys.push(ctnetlink::DeleteKey {
                orig: f.orig.expect("orig tuple"),
                zone: f.zone,
                id: f.id,
            });
        }
        ControlFlow::Continue(())
    })
    .expect("dump");
    assert_eq!(keys.len(), 3000);
    assert!(
        keys.iter().all(|k| k.id.is_some()),
        "the dump carries CTA_ID"
    );
    // The first key again at the end (gone by then), and one with a wrong id.
    let first = keys[0];
    keys.push(first);
    let mut wrong = keys[1];
    wrong.id = wrong.id.map(|i| i.wrapping_add(1));
    keys.insert(1, wrong);
    let rep = s.delete_batch(&keys).expect("delete batch");
    assert_eq!(rep.ok, 3000, "{:?}", &rep.failed[..rep.failed.len().min(5)]);
    assert_eq!(
        rep.failed,
        vec![(1, libc::ENOENT), (keys.len() - 1, libc::ENOENT)],
        "the wrong id and the repeat are refused, each by its own ack"
    );
    assert!(rep.sends >= 1);
    // Oracle: conntrack -L per state.
    let left = tally_oracle(&conntrack_l(&ns, &[]));
    assert_eq!(left.total, 2000);
    assert_eq!(left.state.get("TIME_WAIT"), None);
    assert_eq!(left.state.get("ESTABLISHED"), Some(&1000));
    assert_eq!(left.state.get("SYN_SENT"), Some(&500));
    assert_eq!(left.proto.get("udp"), Some(&400));
    assert_eq!(left.proto.get("icmp"), Some(&100));
}
