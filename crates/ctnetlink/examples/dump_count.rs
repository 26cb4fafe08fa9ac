//! Live dump benchmark helper: dumps the table of the current netns (or
//! `--netns NAME`) and prints entries and per-protocol/state counts.
//! Modes: `summary` (default: Entry::summary on every entry and an
//! aggregate, as ctdoctor summary does), `count` (no decoding: raw recv
//! loop through our socket), `raw` (libc recv loop only, no parsing at all),
//! `capture FILE` (save the raw datagrams of one dump: test fixtures).
//! Not a test: timing is done by bench/live_dump.sh with hyperfine.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::ops::ControlFlow;

use ctnetlink::netns::Target;
use ctnetlink::{DumpRequest, Socket};

fn raw_loop(sock: &Socket, mut keep: Option<&mut Vec<u8>>) -> (u64, u64) {
    use std::os::fd::AsRawFd;
    // One GET dump request, then recv until NLMSG_DONE; no decoding except
    // finding the DONE type in each datagram's messages.
    let mut req = [0u8; 20];
    req[0..4].copy_from_slice(&20u32.to_ne_bytes());
    req[4..6].copy_from_slice(&0x0101u16.to_ne_bytes());
    req[6..8].copy_from_slice(&0x0301u16.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let fd = sock.as_raw_fd();
    // SAFETY: plain send/recv on our socket with local buffers.
    unsafe {
        libc::send(fd, req.as_ptr() as *const _, req.len(), 0);
    }
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, mut recvs) = (0u64, 0u64);
    loop {
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
        if n <= 0 {
            break;
        }
        bytes += n as u64;
        recvs += 1;
        if let Some(k) = keep.as_deref_mut() {
            k.extend_from_slice(&buf[..n as usize]);
        }
        // The DONE message is the last one of the last datagram.
        let mut off = 0usize;
        let mut done = false;
        while off + 16 <= n as usize {
            let len =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if ty == 3 || ty == 2 {
                done = true;
            }
            if len < 16 {
                break;
            }
            off += (len + 3) & !3;
        }
        if done {
            break;
        }
    }
    (bytes, recvs)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut mode = "summary".to_string();
    let mut ns = None;
    let mut args_rest = Vec::new();
    let mut have_mode = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--netns" => ns = args.next(),
            m if !have_mode => {
                mode = m.to_string();
                have_mode = true;
            }
            m => args_rest.push(m.to_string()),
        }
    }
    let mut sock = match ns {
        Some(n) => Socket::open_in(&Target::Named(n))?,
        None => Socket::open()?,
    };
    match mode.as_str() {
        "raw" => {
            let (bytes, recvs) = raw_loop(&sock, None);
            println!("raw: {bytes} bytes in {recvs} recvs");
        }
        "capture" => {
            // Save the raw datagrams of one full dump (test fixtures).
            let path = args_rest.first().ok_or("capture needs a FILE")?;
            let mut keep = Vec::new();
            let (bytes, recvs) = raw_loop(&sock, Some(&mut keep));
            std::fs::write(path, &keep)?;
            println!("captured {bytes} bytes in {recvs} recvs to {path}");
        }
        "count" => {
            let st = sock.dump_count(&DumpRequest::all())?;
            println!(
                "count: {} entries, {} bytes, {} recvs, interrupted={}",
                st.entries, st.bytes, st.recvs, st.interrupted
            );
        }
        _ => {
            let mut proto = [0u64; 256];
            let mut state = [0u64; 16];
            let mut errors = 0u64;
            let st = sock.dump(&DumpRequest::all(), |e| {
                match e.summary() {
                    Ok(f) => {
                        proto[f.l4proto() as usize] += 1;
                        if let Some(s) = f.tcp_state {
                            state[(s.as_u8() & 15) as usize] += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
                ControlFlow::Continue(())
            })?;
            println!(
                "summary: {} entries ({} decode errors), interrupted={}",
                st.entries, errors, st.interrupted
            );
            for (p, n) in proto.iter().enumerate().filter(|(_, n)| **n > 0) {
                println!("  proto {p}: {n}");
            }
            for (s, n) in state.iter().enumerate().filter(|(_, n)| **n > 0) {
                println!("  {}: {n}", ctnetlink::TcpState::from_u8(s as u8));
            }
        }
    }
    Ok(())
}
