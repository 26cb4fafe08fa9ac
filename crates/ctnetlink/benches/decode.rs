//! Decode rate on a captured dump (tests/data/dump-6.18.bin, 1507 entries
//! from Linux 6.18 with counters on): entries/s for the message walk alone,
//! `Entry::summary` on every entry, single lazy accessors, and
//! netlink-packet-netfilter 0.4 parsing the same bytes (for comparison).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ctnetlink::{decode_buffer, TcpState};
use std::hint::black_box;

const FIXTURE: &[u8] = include_bytes!("../tests/data/dump-6.18.bin");

fn bench(c: &mut Criterion) {
    let n = decode_buffer(FIXTURE, |_| Ok(())).expect("fixture decodes");
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(n));
    g.bench_function("walk", |b| {
        b.iter(|| decode_buffer(black_box(FIXTURE), |_| Ok(())).unwrap())
    });
    g.bench_function("summary", |b| {
        b.iter(|| {
            let mut tw = 0u64;
            decode_buffer(black_box(FIXTURE), |e| {
                let f = e.summary()?;
                tw += (f.tcp_state == Some(TcpState::TimeWait)) as u64 + f.l4proto() as u64;
                Ok(())
            })
            .unwrap();
            tw
        })
    });
    g.bench_function("tcp_state_only", |b| {
        b.iter(|| {
            let mut tw = 0u64;
            decode_buffer(black_box(FIXTURE), |e| {
                tw += (e.tcp_state()? == Some(TcpState::TimeWait)) as u64;
                Ok(())
            })
            .unwrap();
            tw
        })
    });
    g.bench_function("netlink_packet_netfilter", |b| {
        use netlink_packet_core::ParseableParametrized;
        use netlink_packet_netfilter::NetfilterMessage;
        b.iter(|| {
            let mut k = 0usize;
            for m in ctnetlink::attr::Messages::new(black_box(FIXTURE)) {
                let m = m.unwrap();
                if m.hdr.kind == 0x0100 {
                    let p = NetfilterMessage::parse_with_param(m.payload, m.hdr.kind).unwrap();
                    k += std::mem::size_of_val(&p);
                }
            }
            k
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
