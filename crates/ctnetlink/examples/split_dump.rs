//! Can the kernel's dump filters split one table into parts worth dumping
//! in parallel? Dumps the table of `--netns NAME` as K parts at once, one
//! thread and socket per part, each part selected by a kernel-side filter:
//!   `mark K`   part i = entries with mark & (K-1) == i (K a power of two)
//!   `status`   two parts: ASSURED and not ASSURED
//!   `full`     one ordinary dump (the baseline)
//! Every part decodes every entry with `Entry::summary()`. Prints entries per
//! part, how many arrived that the kernel should have filtered out, and the
//! wall time. Not a test: bench/split_dump.sh times it with hyperfine.
//!
//! Usage: split_dump --netns NAME (full | status | mark K)
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::ops::ControlFlow;
use std::time::Instant;

use ctnetlink::consts::IPS_ASSURED;
use ctnetlink::netns::Target;
use ctnetlink::{DumpRequest, Socket};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: split_dump --netns NAME (full | status | mark K)");
        std::process::exit(2)
    };
    if args.len() < 3 || args[0] != "--netns" {
        usage();
    }
    let ns = Target::Named(args[1].clone());
    let parts: Vec<DumpRequest> = match args[2].as_str() {
        "full" => vec![DumpRequest::all()],
        "status" => vec![
            DumpRequest::all().status(IPS_ASSURED, IPS_ASSURED),
            DumpRequest::all().status(0, IPS_ASSURED),
        ],
        "mark" => {
            let k: u32 = args
                .get(3)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| usage());
            if !k.is_power_of_two() {
                usage();
            }
            (0..k).map(|i| DumpRequest::all().mark(i, k - 1)).collect()
        }
        _ => usage(),
    };
    let start = Instant::now();
    let results: Vec<(u64, u64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|req| {
                let ns = ns.clone();
                s.spawn(move || {
                    let t = Instant::now();
                    let mut sock = Socket::open_in(&ns).expect("socket in netns");
                    let (mut n, mut bad) = (0u64, 0u64);
                    let stats = sock
                        .dump(req, |e| {
                            match e.summary() {
                                Ok(_) => n += 1,
                                Err(_) => bad += 1,
                            }
                            ControlFlow::Continue(())
                        })
                        .expect("dump");
                    (n + bad, stats.filtered, t.elapsed().as_secs_f64())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("part thread"))
            .collect()
    });
    let total: u64 = results.iter().map(|r| r.0).sum();
    for (i, (n, filtered, secs)) in results.iter().enumerate() {
        eprintln!("part {i}: {n} entries ({filtered} filtered in userspace) in {secs:.3} s");
    }
    println!(
        "{total} entries in {} parts, {:.3} s",
        results.len(),
        start.elapsed().as_secs_f64()
    );
}
