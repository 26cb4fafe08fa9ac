//! Fuzz target: every ctnetlink decoder over arbitrary bytes (must never
//! panic). Run: `cd crates/ctnetlink/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode -- -max_total_time=60`.
//! Findings go into corpus/decode/, which tests/corpus.rs replays in CI.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ctnetlink::exercise_decoders(data);
});
