//! Bounded load generators for bench/exporter_1m.sh (loopback or a
//! namespace we made only; every loop bounded in count and time).
//!
//! `scrape_load ADDR N BAD`: N requests to http://ADDR, one connection
//! each, sequentially; every (N/BAD)-th one is bad instead (in turn:
//! garbage bytes, a 20 KB header, half a head then a 200 ms stall and
//! hang-up, a POST with a body, a client that never reads its response).
//! Prints latency p50/p99/max of the good scrapes (connect to last byte)
//! and how the bad ones were answered. Stops after 10 minutes regardless.
//!
//! `conn_load PORT RATE SECS`: a TCP listener on 127.0.0.1:PORT and RATE
//! connections per second to it for SECS seconds (each opened and closed:
//! NEW, UPDATE, DESTROY-later events), run inside the bench namespace.
//!
//! Not for: tests (those are in tests/); correctness checks beyond status codes.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn get(addr: &SocketAddr) -> std::io::Result<(u16, usize)> {
    let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::with_capacity(64 << 10);
    s.read_to_end(&mut buf)?;
    let code = std::str::from_utf8(&buf[..buf.len().min(12)])
        .ok()
        .and_then(|h| h.get(9..12))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, buf.len()))
}

fn bad(addr: &SocketAddr, kind: usize) -> String {
    let go = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        match kind % 5 {
            0 => s.write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 garbage\r\n\r\n")?,
            1 => {
                let big = format!(
                    "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                    "a".repeat(20_000)
                );
                s.write_all(big.as_bytes())?
            }
            2 => {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHos")?;
                std::thread::sleep(Duration::from_millis(200));
                return Ok("stalled, hung up".into());
            }
            3 => s.write_all(b"POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd")?,
            _ => {
                s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")?;
                return Ok("never read".into());
            }
        }
        let mut buf = [0u8; 12];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    match go() {
        Ok(s) if s.starts_with("HTTP/") => s.get(9..12).map(str::to_string).unwrap_or(s),
        Ok(s) => s,
        Err(e) => format!("error: {}", e.kind()),
    }
}

fn scrape_load(addr: SocketAddr, n: usize, nbad: usize) {
    let start = Instant::now();
    let every = n.checked_div(nbad).map_or(usize::MAX, |e| e.max(1));
    let mut lat: Vec<f64> = Vec::with_capacity(n);
    let mut codes = std::collections::BTreeMap::<String, u64>::new();
    let mut bytes = 0;
    let mut k = 0;
    for i in 1..=n {
        if start.elapsed() > Duration::from_secs(600) {
            eprintln!("stopping after 10 minutes at request {i}");
            break;
        }
        if i % every == 0 {
            *codes.entry(format!("bad: {}", bad(&addr, k))).or_default() += 1;
            k += 1;
            continue;
        }
        let t = Instant::now();
        match get(&addr) {
            Ok((code, len)) => {
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                bytes = len;
                *codes.entry(format!("good: {code}")).or_default() += 1;
            }
            Err(e) => {
                *codes
                    .entry(format!("good: error {}", e.kind()))
                    .or_default() += 1
            }
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "scrapes={} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} response_bytes={} wall_s={:.1}",
        lat.len(),
        q(0.5),
        q(0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        bytes,
        start.elapsed().as_secs_f64()
    );
    for (c, n) in codes {
        println!("  {c}: {n}");
    }
}

fn conn_load(port: u16, rate: u64, secs: u64) {
    let l = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    let start = Instant::now();
    let total = rate * secs;
    let mut made = 0u64;
    let mut failed = 0u64;
    while made < total && start.elapsed() < Duration::from_secs(secs + 30) {
        let due = start + Duration::from_secs_f64(made as f64 / rate as f64);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(c) => drop(c),
            Err(_) => failed += 1,
        }
        made += 1;
    }
    println!(
        "connections={made} failed={failed} wall_s={:.2} rate={:.0}/s",
        start.elapsed().as_secs_f64(),
        made as f64 / start.elapsed().as_secs_f64()
    );
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: scrape_load ADDR N BAD | scrape_load conn PORT RATE SECS";
    match a.get(1).map(String::as_str) {
        Some("conn") if a.len() == 5 => conn_load(
            a[2].parse().expect("PORT"),
            a[3].parse().expect("RATE"),
            a[4].parse::<u64>().expect("SECS").min(600),
        ),
        Some(addr) if a.len() == 4 => scrape_load(
            addr.parse().expect(usage),
            a[2].parse::<usize>().expect("N").min(1_000_000),
            a[3].parse().expect("BAD"),
        ),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
