//! The syn-flood scenario's traffic: TCP SYNs from the client namespace to
//! a backend port that answers nothing (the backend drops them), routed
//! through the gateway — so the gateway's table fills with SYN_SENT
//! entries that never see a reply, the way a flood through a firewall, or
//! clients retrying a dead upstream, fills it. Raw sockets, crafted headers
//! (the kernel adds the IP header), bounded in rate and time.
//!
//! Not for: attacking anything (addresses of the lab's own namespaces only).

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The one's-complement sum of 16-bit words.
fn csum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for p in parts {
        let mut chunks = p.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(u16::from_be_bytes([*last, 0]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 20-byte TCP SYN from `src:sport` to `dst:dport`, checksum included.
pub fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, seq: u32) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4; // data offset: 5 words
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let c = csum(&[&pseudo, &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// Send SYNs from `src` (the client's address) to `dst` at `rate` per
/// second for `duration` or until `stop`, from inside `client`'s
/// namespace; each from a new source port. Returns how many were sent.
pub fn run(
    client: &netns::Target,
    src: Ipv4Addr,
    dst: SocketAddrV4,
    rate: f64,
    duration: Duration,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> Result<u64> {
    netns::run_in(client, || -> Result<u64> {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))
            .context("a raw socket for the SYN flood (needs root)")?;
        let to = SockAddr::from(SocketAddr::V4(dst));
        let t0 = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
        let mut n: u64 = 0;
        while t0.elapsed() < duration && !stop.load(Ordering::Relaxed) {
            let due = t0 + interval.mul_f64(n as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait.min(Duration::from_millis(20)));
                continue;
            }
            let sport = 20_000 + (n % 40_000) as u16;
            // The kernel adds the IP header with `src`, the client's address,
            // which the checksum's pseudo-header must name.
            let pkt = syn(src, sport, *dst.ip(), dst.port(), n as u32);
            if sock.send_to(&pkt, &to).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
        }
        Ok(n)
    })
    .context("entering the client namespace")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_verifies() {
        let src = Ipv4Addr::new(10, 203, 1, 2);
        let dst = Ipv4Addr::new(10, 203, 2, 2);
        let t = syn(src, 40000, dst, 9999, 7);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&dst.octets());
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
        // A packet with its checksum in place sums to zero.
        assert_eq!(csum(&[&pseudo, &t]), 0);
        assert_eq!(t[13], 0x02);
        assert_eq!(u16::from_be_bytes([t[2], t[3]]), 9999);
    }
}
