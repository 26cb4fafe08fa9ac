//! Replays every file of the fuzz corpus (crates/ctnetlink/fuzz/corpus/decode)
//! through the decoders, so fuzz findings stay tested in CI without the fuzzer.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

#[test]
fn fuzz_corpus_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = f.expect("dir entry").path();
        let data = std::fs::read(&path).expect("read corpus file");
        ctnetlink::exercise_decoders(&data);
        n += 1;
    }
    assert!(n >= 10, "corpus has only {n} files");
}
