//! `plan --what-if` against the real kernel: a steady load of one-shot
//! TCP connections on loopback in a fresh netns, a prediction of the
//! TIME_WAIT count under a shorter time_wait, the change applied with
//! `sysctl` in that netns, and — past the old timeout — the table's real
//! TIME_WAIT count (`conntrack -L`, which reaps expired entries as it
//! dumps) within 15 % of the prediction.
//!
//! Per-netns knobs only (time_wait, tcp_tw_reuse): the shared lock. The
//! load is bounded in rate, count and time; the namespace goes on drop.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use ctdoctor::host::netns::{run_in, Target};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One-shot connections per second.
const RATE: u64 = 100;
/// The load never runs longer than this, whatever happens to the test.
const LOAD_LIMIT: Duration = Duration::from_secs(150);
/// The timeout before (lowered from the default 120 to keep the test short)
/// and the one predicted for.
const OLD_TW: u64 = 60;
const NEW_TW: u64 = 20;

/// Connect, close client-first (the client side's conntrack entry ends in
/// TIME_WAIT), at RATE per second, until `stop` or the limits.
fn load(target: Target, stop: Arc<AtomicBool>, made: Arc<AtomicU64>) {
    run_in(&target, move || {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().unwrap();
        let start = Instant::now();
        let max = RATE * LOAD_LIMIT.as_secs();
        for i in 0..max {
            if stop.load(Ordering::Relaxed) || start.elapsed() > LOAD_LIMIT {
                break;
            }
            // Paced by the clock, so a slow moment is caught up, not lost.
            let due = start + Duration::from_micros(i * 1_000_000 / RATE);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            let Ok(c) = TcpStream::connect(addr) else {
                continue;
            };
            let Ok((mut s, _)) = l.accept() else { continue };
            drop(c); // FIN from the client
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf); // EOF
            drop(s); // FIN from the server: the client's last ACK → TIME_WAIT
            made.fetch_add(1, Ordering::Relaxed);
        }
    })
    .expect("run the load in the netns");
}

/// TIME_WAIT entries in the namespace now, by the independent oracle.
fn time_wait_now(ns: &testns::Netns) -> u64 {
    let out = ns.exec("conntrack", &["-L", "-p", "tcp", "--state", "TIME_WAIT"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("TIME_WAIT"))
        .count() as u64
}

#[test]
fn what_if_time_wait_predicts_the_steady_state() {
    if !testns::kernel_test("what_if_time_wait_predicts_the_steady_state") {
        return;
    }
    let _l = testns::lock_shared();
    let ns = testns::Netns::new("planwi");
    // Loopback port reuse would cut TIME_WAIT short (tw_reuse 2 = loopback).
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0");
    ns.sysctl(
        "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
        &OLD_TW.to_string(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let loader = {
        let (t, s, m) = (ns.target(), stop.clone(), made.clone());
        std::thread::spawn(move || load(t, s, m))
    };
    // Stop the load whatever happens below.
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop = Stop(stop.clone());

    // 25 s of load: every age up to NEW_TW is represented.
    std::thread::sleep(Duration::from_secs(25));
    let v = crate::common::run_json(&[
        "plan",
        "--netns",
        &ns.name,
        "--what-if",
        &format!("tcp_timeout_time_wait={NEW_TW}"),
        "--json",
    ]);
    let w = &v["what_if"];
    let tw = &w["states"]["TIME_WAIT"];
    let now = tw["now"].as_u64().unwrap();
    let predicted = tw["predicted"].as_u64().unwrap();
    assert_eq!(tw["unknown_age"], 0, "{w}");
    assert_eq!(
        w["timeouts"]["net.netfilter.nf_conntrack_tcp_timeout_time_wait"]["from"],
        OLD_TW
    );
    let converge = w["converges_within_s"].as_u64().unwrap();
    assert!((OLD_TW - 5..=OLD_TW).contains(&converge), "{converge}");
    // About 25 s and 20 s of arrivals; loose: the load's own rate varies.
    assert!(now > predicted, "now {now}, predicted {predicted}");
    assert!(
        predicted > RATE * NEW_TW / 2,
        "predicted {predicted} for {RATE}/s × {NEW_TW} s"
    );

    ns.exec(
        "sysctl",
        &[
            "-qw",
            &format!("net.netfilter.nf_conntrack_tcp_timeout_time_wait={NEW_TW}"),
        ],
    );
    // Past the old timeout: every entry from before the change has left.
    std::thread::sleep(Duration::from_secs(OLD_TW + 5));
    let samples: Vec<u64> = (0..3)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            time_wait_now(&ns)
        })
        .collect();
    let actual = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
    stop.store(true, Ordering::Relaxed);
    loader.join().expect("load thread");
    let made = made.load(Ordering::Relaxed);
    let err = (predicted as f64 - actual).abs() / actual;
    eprintln!(
        "what-if: TIME_WAIT {now} at time_wait={OLD_TW}, predicted {predicted} at {NEW_TW}, \
         actual {samples:?} (mean {actual:.0}); error {:.1} %; {made} connections",
        err * 100.0
    );
    assert!(
        err <= 0.15,
        "predicted {predicted}, actual {actual:.0} ({samples:?}): {:.1} % off",
        err * 100.0
    );
}
