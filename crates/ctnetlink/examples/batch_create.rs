//! Batch-create benchmark helper: reads a `conntrack -R` batch file (the
//! lines ct-fill-batch.py writes: `-I -s A -d B -p tcp|udp|icmp --sport ..
//! --dport .. [--state S] [--icmp-type/--icmp-code/--icmp-id ..] -t T
//! [-u SEEN_REPLY,ASSURED]`), then creates the entries with
//! `Socket::create_batch` from `--threads N` sockets opened in `--netns NAME`,
//! and prints entries/s (file parsing not timed). Used by bench/batch_create.sh.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::net::IpAddr;
use std::time::Instant;

use ctnetlink::consts::*;
use ctnetlink::netns::Target;
use ctnetlink::{Conntrack, Socket, TcpState, Tuple};

fn parse_line(l: &str) -> Option<Conntrack> {
    let w: Vec<&str> = l.split_whitespace().collect();
    let get = |k: &str| {
        w.iter()
            .position(|x| *x == k)
            .and_then(|i| w.get(i + 1))
            .copied()
    };
    let src: IpAddr = get("-s")?.parse().ok()?;
    let dst: IpAddr = get("-d")?.parse().ok()?;
    let num = |k: &str| get(k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let t = match get("-p")? {
        "tcp" => Tuple::tcp(src, num("--sport") as u16, dst, num("--dport") as u16),
        "udp" => Tuple::udp(src, num("--sport") as u16, dst, num("--dport") as u16),
        "icmp" => Tuple::icmp(
            src,
            dst,
            num("--icmp-type") as u8,
            num("--icmp-code") as u8,
            num("--icmp-id") as u16,
        ),
        _ => return None,
    };
    let mut ct = Conntrack::new(t).timeout(num("-t"));
    if let Some(s) = get("--state") {
        ct = ct.tcp_state(TcpState::from_name(s)?);
    }
    if let Some(u) = get("-u") {
        let mut bits = 0;
        for f in u.split(',') {
            bits |= match f {
                "SEEN_REPLY" => IPS_SEEN_REPLY,
                "ASSURED" => IPS_ASSURED,
                _ => 0,
            };
        }
        ct = ct.status(bits);
    }
    Some(ct)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut file, mut ns, mut threads) = (None, None, 1usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--netns" => ns = args.next(),
            "--threads" => threads = args.next().ok_or("--threads N")?.parse()?,
            f => file = Some(f.to_string()),
        }
    }
    let file = file.ok_or("usage: batch_create [--netns NAME] [--threads N] BATCHFILE")?;
    let text = std::fs::read_to_string(&file)?;
    let entries: Vec<Conntrack> = text.lines().filter_map(parse_line).collect();
    let chunk = entries.len().div_ceil(threads.max(1));
    let ns = ns.map(Target::Named);
    let mut socks = Vec::new();
    for _ in 0..threads {
        socks.push(match &ns {
            Some(n) => Socket::open_in(n)?,
            None => Socket::open()?,
        });
    }
    let t0 = Instant::now();
    let results: Vec<Result<ctnetlink::BatchReport, ctnetlink::Error>> = std::thread::scope(|s| {
        let hs: Vec<_> = socks
            .iter_mut()
            .zip(entries.chunks(chunk.max(1)))
            .map(|(sock, part)| s.spawn(move || sock.create_batch(part)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let dt = t0.elapsed();
    let (mut ok, mut failed, mut sends) = (0, 0, 0);
    for r in results {
        let r = r?;
        ok += r.ok;
        failed += r.failed.len();
        sends += r.sends;
    }
    println!(
        "created {ok} of {} ({failed} failed) in {:.3} s with {threads} thread(s), {sends} sendmsg: {:.0} entries/s",
        entries.len(),
        dt.as_secs_f64(),
        ok as f64 / dt.as_secs_f64()
    );
    Ok(())
}
