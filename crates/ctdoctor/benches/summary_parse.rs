//! Criterion bench for the text parser + aggregator on the real samples,
//! scaled up by repetition into a temp file (100 × 1,000 entries per
//! format). Run: `cargo bench -p ctdoctor --bench summary_parse`.
//! The end-to-end 1M-entry comparison with awk is bench/summary_1m.sh.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ctdoctor::host::entries;
use ctdoctor::table::agg::{Agg, Config};
use ctdoctor::table::text;
use std::io::Write;

const REPEAT: usize = 100;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("summary_parse");
    g.sample_size(20);
    for name in [
        "proc_nf_conntrack.txt",
        "conntrack_L_extended.txt",
        "conntrack_L_plain.txt",
    ] {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/samples")
            .join(name);
        let one = std::fs::read(&src).expect("sample");
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).expect("temp file");
        for _ in 0..REPEAT {
            f.write_all(&one).expect("write");
        }
        drop(f);
        let bytes = (one.len() * REPEAT) as u64;
        g.throughput(Throughput::Bytes(bytes));
        let all = std::fs::read(&path).expect("read back");
        g.bench_function(format!("{name}/1-thread-in-memory"), |b| {
            b.iter(|| {
                let mut a = Agg::new(Config::default());
                let st = text::parse_bytes(&all, &mut a);
                assert_eq!(st.entries, 1000 * REPEAT as u64);
                a.finish()
            })
        });
        g.bench_function(format!("{name}/file-all-cores"), |b| {
            b.iter(|| {
                let r = entries::open(&path).expect("open");
                let (a, st) = text::parse_reader(r, entries::default_threads(), || {
                    Agg::new(Config::default())
                })
                .expect("parse");
                assert_eq!(st.entries, 1000 * REPEAT as u64);
                a.finish()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
