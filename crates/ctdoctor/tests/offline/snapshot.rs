//! A capture replays exactly what the live readers saw: the report built
//! from the live facts equals the report built from the recorded capture.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common;

use ctdoctor::cmd::check::report_for;
use ctdoctor::host::{self, netns::Target};
use std::path::Path;

#[test]
fn live_facts_and_their_capture_give_the_same_report() {
    let (snap, caps) = host::collect_live(Path::new("/"), &Target::Current, None, true).unwrap();
    assert_eq!(caps.len(), 1);
    let live = common::without_durations(serde_json::to_value(report_for(snap)).unwrap());
    let replay = common::without_durations(
        serde_json::to_value(report_for(host::from_captures(caps).unwrap())).unwrap(),
    );
    assert_eq!(live, replay);
}

#[test]
fn sampled_capture_keeps_both_readings() {
    let d = std::time::Duration::from_millis(50);
    let (snap, caps) = host::collect_live(Path::new("/"), &Target::Current, Some(d), true).unwrap();
    assert_eq!(caps.len(), 2);
    assert!(
        caps[1].elapsed_ms >= 50,
        "second capture is {} ms after the first",
        caps[1].elapsed_ms
    );
    assert!(snap.interval_secs().unwrap() >= 0.05);
    let replay = host::from_captures(caps).unwrap();
    assert_eq!(replay.interval_secs(), snap.interval_secs());
}
