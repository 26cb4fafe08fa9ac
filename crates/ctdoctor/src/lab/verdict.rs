//! Whether the fix was enough, from the after phase: nothing failed or
//! dropped, AND the table will not fill again — either its count had
//! settled by the phase's end ([`Trend`]: the slope of its last samples
//! within [`SETTLE_SHARE`] of max per second), or plan's steady state for
//! the measured rate under the settings the fix left ([`Steady`], from
//! `crate::plan::size`) fits the max with plan's headroom and the count is
//! not rising past it (beyond the prediction × headroom: expired entries
//! wait for the kernel's garbage collector, which is what the headroom is
//! for). A phase without failures whose count was still rising towards
//! the max proves nothing: the verdict says "not proven".
//!
//! Pure: numbers in, an [`Outcome`] and a sentence out. Not for: measuring
//! (lab/mod.rs, lab/fix.rs `steady_state`) or the failing phase's words
//! (lab/report.rs).

use super::report::{Phase, Row};
use crate::util::thousands;
use serde::Serialize;

/// A count whose slope over the phase's last samples is at most this
/// share of max per second has settled: 0.2 % of max a second, which
/// would take 500 s to fill an empty table (8 entries/s at 4,096).
pub const SETTLE_SHARE: f64 = 0.002;
/// Never less than this many entries a second (tiny tables).
pub const SETTLE_MIN: f64 = 1.0;
/// The samples the slope is taken over: the last third of the phase, at
/// least this many.
pub const SETTLE_SAMPLES: usize = 3;
/// The longest `--phase` (cmd/lab.rs).
const LONGEST_PHASE: u64 = 120;

/// What the lab concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// No fix was applied.
    NoFix,
    /// Nothing failed or dropped after the fix, and the table will not
    /// fill again.
    Enough,
    /// Requests failed or packets were dropped after the fix.
    NotEnough,
    /// Nothing failed yet, but the table was still filling.
    NotProven,
}

/// plan's steady state for the after phase's measured rate, under the
/// settings the fix left (`ctdoctor plan --rate` in the gateway at the end
/// of the after phase).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Steady {
    /// New entries per second: requests/s × 2.
    pub per_sec: f64,
    /// The entries plan predicts the table holds at that rate.
    pub entries: u64,
    /// nf_conntrack_max after the fix.
    pub max: u64,
    /// plan's headroom over the predicted entries.
    pub headroom: f64,
}

impl Steady {
    /// The prediction fits the max with plan's headroom.
    pub fn fits(&self) -> bool {
        self.entries as f64 * self.headroom <= self.max as f64
    }
}

/// How the after phase's count ended: its last value and the least-squares
/// slope of its last samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    pub last: u64,
    pub max: u64,
    /// Entries per second (negative: falling).
    pub slope: f64,
    pub samples: usize,
    /// Seconds the samples span.
    pub secs: f64,
    /// The largest slope that counts as settled, entries per second.
    pub tolerance: f64,
}

impl Trend {
    /// Not rising faster than the tolerance.
    pub fn settled(&self) -> bool {
        self.slope <= self.tolerance
    }
}

/// The trend of the count over `rows` (one a second), against `max`.
/// None with fewer than [`SETTLE_SAMPLES`] counts or no max.
pub fn trend(rows: &[Row], max: Option<u64>) -> Option<Trend> {
    let max = max.filter(|m| *m > 0)?;
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.t, r.count? as f64)))
        .collect();
    let n = (pts.len() / 3).max(SETTLE_SAMPLES);
    let tail = pts.get(pts.len().checked_sub(n)?..)?;
    let mt = tail.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let mc = tail.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let var: f64 = tail.iter().map(|p| (p.0 - mt).powi(2)).sum();
    if var <= 0.0 {
        return None;
    }
    let cov: f64 = tail.iter().map(|p| (p.0 - mt) * (p.1 - mc)).sum();
    let (first, last) = (tail.first()?, tail.last()?);
    Some(Trend {
        last: last.1 as u64,
        max,
        slope: cov / var,
        samples: n,
        secs: last.0 - first.0,
        tolerance: (max as f64 * SETTLE_SHARE).max(SETTLE_MIN),
    })
}

/// The after phase judged: its outcome and the verdict's words after
/// "after the fix: ". `phase_secs`: the phase's length (`--phase`).
pub fn judge(a: &Phase, steady: Option<&Steady>, phase_secs: u64) -> (Outcome, String) {
    if a.failed > 0 || a.drops.unwrap_or(0) > 0 {
        return (
            Outcome::NotEnough,
            format!(
                "{} of {} still failed ({:.1} %), {} dropped: the fix is NOT enough",
                thousands(a.failed),
                thousands(a.requests),
                a.failed_pct(),
                a.drops.map_or("?".into(), thousands)
            ),
        );
    }
    let clean = format!("all {} requests ok, no drop", thousands(a.requests));
    let trend = trend(&a.seconds, a.max);
    let settled = trend.filter(Trend::settled);
    let predicted = steady.filter(|s| s.fits() && trend.is_none_or(|t| !contradicts(&t, s)));
    match (settled, predicted) {
        (Some(t), _) => (
            Outcome::Enough,
            format!(
                "{clean}, the table settled at {} of {} ({:+.0} entries/s over the last {:.0} s, within ±{:.0}): the fix is enough",
                thousands(t.last),
                thousands(t.max),
                t.slope,
                t.secs,
                t.tolerance
            ),
        ),
        (None, Some(s)) => (
            Outcome::Enough,
            format!(
                "{clean}, and plan's steady state for {:.0} entries/s is {} entries, within {} / {}× headroom: the fix is enough",
                s.per_sec,
                thousands(s.entries),
                thousands(s.max),
                crate::advice::size::fmt_factor(s.headroom)
            ),
        ),
        (None, None) => (
            Outcome::NotProven,
            format!("{clean}, but {}", not_proven(trend.as_ref(), steady, phase_secs)),
        ),
    }
}

/// A count still rising past plan's prediction and its headroom: not the
/// steady state plan saw.
fn contradicts(t: &Trend, s: &Steady) -> bool {
    !t.settled() && t.last as f64 > s.entries as f64 * s.headroom
}

/// Why a clean after phase proves nothing, and what to run instead.
fn not_proven(trend: Option<&Trend>, steady: Option<&Steady>, phase_secs: u64) -> String {
    let count = match trend {
        Some(t) => format!(
            "not proven: still rising at {} of {} when the phase ended ({:+.0} entries/s over the last {:.0} s; settled is at most {:.0}/s)",
            thousands(t.last),
            thousands(t.max),
            t.slope,
            t.secs,
            t.tolerance
        ),
        None => "not proven: the table's count was not read often enough in the phase to tell whether it settled".into(),
    };
    let plan = match steady {
        Some(s) if !s.fits() => format!(
            "; plan's steady state for {:.0} entries/s is {} entries, over {} / {}× headroom",
            s.per_sec,
            thousands(s.entries),
            thousands(s.max),
            crate::advice::size::fmt_factor(s.headroom)
        ),
        Some(s) => format!(
            "; plan's steady state for {:.0} entries/s is {} entries, but the count rose past it and its {}× headroom",
            s.per_sec,
            thousands(s.entries),
            crate::advice::size::fmt_factor(s.headroom)
        ),
        None => "; plan made no prediction".into(),
    };
    let next = if phase_secs < LONGEST_PHASE {
        format!(
            "run longer with --phase {} to see whether it settles",
            (phase_secs * 4).clamp(30, LONGEST_PHASE)
        )
    } else {
        "it did not settle in the longest phase: try a bigger fix (--fix max, notrack)".into()
    };
    format!("{count}{plan}; {next}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: f64, count: u64) -> Row {
        Row {
            t,
            started: 300,
            ok: 300,
            failed: 0,
            timed_out: 0,
            http_5xx: 0,
            conn_errors: 0,
            p50_ms: None,
            p99_ms: None,
            count: Some(count),
            max: Some(4096),
            drop: Some(0),
            early_drop: Some(0),
            drops: Some(0),
            early_drops: Some(0),
            table_full_lines: Some(0),
        }
    }

    /// A clean after phase of 15 s (nothing failed, nothing dropped) whose
    /// count is `count(second)`.
    fn after(count: impl Fn(u64) -> u64) -> Phase {
        let seconds: Vec<Row> = (0..15).map(|s| row(60.0 + s as f64, count(s))).collect();
        Phase {
            name: "after".into(),
            started_at: 59.0,
            requests: 4500,
            ok: 4500,
            failed: 0,
            timed_out: 0,
            http_5xx: 0,
            http_504: 0,
            conn_errors: 0,
            p50_ms: None,
            p99_ms: None,
            drops: Some(0),
            early_drops: Some(0),
            table_full_lines: Some(0),
            table_full_lines_any_netns: false,
            upstream_timeouts: 0,
            peak_count: seconds.iter().filter_map(|r| r.count).max(),
            max: Some(4096),
            seconds,
        }
    }

    /// `--fix evict` relief alone: 600 entries/s of TIME_WAIT that stay
    /// 120 s — plan's steady state is 72,000 entries.
    const EVICT: Steady = Steady {
        per_sec: 600.0,
        entries: 72_000,
        max: 4096,
        headroom: 2.0,
    };

    /// Issue 21: the count still rising at 3,678 of 4,096 when the phase
    /// ended, nothing failed yet: not "enough".
    #[test]
    fn lab_verdict_a_count_still_rising_is_not_proven() {
        let a = after(|s| 1158 + 180 * s);
        assert_eq!(a.seconds.last().unwrap().count, Some(3678));
        let t = trend(&a.seconds, a.max).unwrap();
        assert_eq!(t.samples, 5);
        assert!((t.slope - 180.0).abs() < 1e-6, "{t:?}");
        assert!(!t.settled());
        let (o, text) = judge(&a, Some(&EVICT), 15);
        assert_eq!(o, Outcome::NotProven, "{text}");
        assert!(
            text.contains("not proven: still rising at 3,678 of 4,096 when the phase ended (+180 entries/s over the last 4 s; settled is at most 8/s)"),
            "{text}"
        );
        assert!(
            text.contains(
                "plan's steady state for 600 entries/s is 72,000 entries, over 4,096 / 2× headroom"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("run longer with --phase 60 to see whether it settles"),
            "{text}"
        );
        assert!(!text.contains("the fix is enough"));
        // No prediction at all: still not proven.
        assert_eq!(judge(&a, None, 15).0, Outcome::NotProven);
        // Rising past a prediction that would fit: the prediction is wrong.
        let wrong = Steady {
            entries: 1800,
            ..EVICT
        };
        let (o, text) = judge(&a, Some(&wrong), 120);
        assert_eq!(o, Outcome::NotProven, "{text}");
        assert!(
            text.contains("but the count rose past it and its 2× headroom"),
            "{text}"
        );
        assert!(text.contains("try a bigger fix"), "{text}");
    }

    /// Settled: the count wobbles around 1,800 (±12) at the end.
    #[test]
    fn lab_verdict_a_settled_count_is_enough() {
        let a = after(|s| {
            if s < 5 {
                3000 - 240 * s
            } else {
                1800 + [0, 12, 3, 9, 0][s as usize % 5]
            }
        });
        let t = trend(&a.seconds, a.max).unwrap();
        assert!(t.settled(), "{t:?}");
        let (o, text) = judge(&a, Some(&EVICT), 15);
        assert_eq!(o, Outcome::Enough, "{text}");
        assert!(
            text.contains("the table settled at 1,800 of 4,096"),
            "{text}"
        );
        assert!(text.ends_with("the fix is enough"), "{text}");
        // A falling count has settled too (relief, then shorter timeouts).
        let (o, _) = judge(&after(|s| 4000 - 200 * s), None, 15);
        assert_eq!(o, Outcome::Enough);
    }

    /// Still climbing, but within plan's steady state that fits (TIME_WAIT
    /// sized for the rate) and its headroom: enough.
    #[test]
    fn lab_verdict_rising_towards_a_steady_state_that_fits_is_enough() {
        let a = after(|s| 300 + 200 * s);
        assert_eq!(a.seconds.last().unwrap().count, Some(3100));
        let sized = Steady {
            entries: 1800 + 1,
            ..EVICT
        };
        assert!(sized.fits());
        let (o, text) = judge(&a, Some(&sized), 15);
        assert_eq!(o, Outcome::Enough, "{text}");
        assert!(text.contains("plan's steady state for 600 entries/s is 1,801 entries, within 4,096 / 2× headroom"), "{text}");
    }

    #[test]
    fn lab_verdict_failures_are_not_enough() {
        let mut a = after(|_| 4096);
        a.failed = 12;
        a.drops = Some(40);
        let (o, text) = judge(&a, Some(&EVICT), 15);
        assert_eq!(o, Outcome::NotEnough);
        assert!(text.ends_with("the fix is NOT enough"), "{text}");
    }

    #[test]
    fn lab_verdict_too_few_samples_tell_nothing() {
        let mut a = after(|s| s);
        a.seconds.truncate(2);
        assert_eq!(trend(&a.seconds, a.max), None);
        let (o, text) = judge(&a, None, 3);
        assert_eq!(o, Outcome::NotProven);
        assert!(text.contains("not read often enough"), "{text}");
        assert!(text.contains("--phase 30"), "{text}");
    }
}
