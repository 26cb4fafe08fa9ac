//! What-if timeouts: from one dump's idle ages ([`Ages`]), what each class
//! of entries (a TCP state, UDP, ICMP, …) would hold at steady state under
//! new timeouts, and how long the table takes to get there.
//!
//! The model: at steady state a class holds the entries younger than its
//! timeout, so under a shorter timeout T' it holds today's entries of age
//! ≤ T'. The kernel prints seconds left truncated, so age = old − left is
//! the true age rounded up: an entry with `left ≥ old − T'` (age ≤ T')
//! stays, one with less is gone — the boundary second counts in (leaving it
//! out loses a whole second of arrivals: ~7 % of a 15 s window). Entries
//! whose age is unknown (custom or capped timeouts, sctp/dccp/gre) are
//! counted as staying, and reported. A longer timeout keeps at least
//! today's entries; how many more the dump cannot say (those older than
//! the old timeout are gone), so the prediction is a lower bound.
//!
//! Kernel fact (6.18, verified): a new timeout applies to an entry at its
//! next packet; an entry that gets none (TIME_WAIT, idle ESTABLISHED)
//! keeps its old expiry. So the table converges to the prediction within
//! the old timeout — the most seconds any of today's entries has left —
//! and only deleting entries frees it sooner. Expired entries are reaped
//! 20–45 s late by the gc worker (a dump reaps them at once): counts read
//! from `nf_conntrack_count` include them until then.
//!
//! Pure. Not for: dumping (`host::entries`) or applying (tune).

use crate::advice::change::Change;
use crate::advice::suggest;
use crate::knobs::Setting;
use crate::snapshot::Facts;
use crate::table::ages::{Ages, Class};
use crate::table::timeouts::Timeouts;

/// One timeout the what-if changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutChange {
    /// Full sysctl name.
    pub key: &'static str,
    pub from: u32,
    pub to: u32,
}

/// One class's prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassPrediction {
    pub class: Class,
    pub now: u64,
    pub predicted: u64,
    /// Entries whose age is unknown, counted in `predicted` as staying.
    pub unknown_age: u64,
    /// The class's timeout before and after (None: no knob, e.g. sctp).
    pub from: Option<u32>,
    pub to: Option<u32>,
    /// A longer timeout: `predicted` is a lower bound.
    pub at_least: bool,
    /// Entries already older than the new timeout: what deleting them now
    /// would free (they otherwise leave at their old expiry).
    pub evictable_now: u64,
}

/// The whole prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatIf {
    pub timeouts: Vec<TimeoutChange>,
    /// Every class in the table, in kernel order.
    pub classes: Vec<ClassPrediction>,
    pub total_now: u64,
    pub total_predicted: u64,
    /// Some class's prediction is a lower bound.
    pub at_least: bool,
    /// The most seconds left of any entry in a class whose timeout gets
    /// shorter: by then today's entries have all left (0: nothing shrinks).
    pub converges_within_s: u32,
    pub evictable_now: u64,
    /// The timeouts that change, as typed changes (scoped to this namespace).
    pub changes: Vec<Change>,
}

/// Why a what-if cannot be predicted.
pub fn check_settings(settings: &[Setting]) -> Result<(), String> {
    for s in settings {
        let short = s
            .knob
            .key
            .strip_prefix("net.netfilter.nf_conntrack_")
            .unwrap_or(s.knob.key);
        let predictable = crate::kernel::default_timeout(short).is_some()
            && !matches!(
                short,
                "tcp_timeout_max_retrans" | "tcp_timeout_unacknowledged"
            );
        if !predictable {
            return Err(format!(
                "--what-if predicts conntrack state timeouts; {} is not one of them{}",
                s.knob.key,
                if short.starts_with("tcp_timeout_") {
                    " (max_retrans and unacknowledged cap other states' timeouts while \
                     packets are in flight: the dump's ages cannot tell which entries they hit)"
                } else {
                    " (the table's size is planned by the sizing above: --peak, --rate)"
                }
            ));
        }
    }
    Ok(())
}

/// The timeouts `settings` give over `current`.
pub fn apply(current: &Timeouts, settings: &[Setting]) -> Result<Timeouts, String> {
    let mut t = *current;
    for s in settings {
        let v: u64 = s
            .value
            .parse()
            .map_err(|_| format!("{}: {:?} is not a number of seconds", s.knob.key, s.value))?;
        t.set(s.knob.key, v)?;
    }
    Ok(t)
}

/// Predict the table under `settings` from `ages` (dumped with the
/// namespace's timeouts, `ages.timeouts`).
pub fn predict(f: &Facts, ages: &Ages, settings: &[Setting]) -> Result<WhatIf, String> {
    check_settings(settings)?;
    let old = ages.timeouts;
    let new = apply(&old, settings)?;
    let mut timeouts = Vec::new();
    for s in settings {
        let from = old.get(s.knob.key);
        let to = new.get(s.knob.key);
        if let (Some(from), Some(to)) = (from, to) {
            timeouts.push(TimeoutChange {
                key: s.knob.key,
                from,
                to,
            });
        }
    }
    let mut classes = Vec::new();
    let mut converges = 0;
    for (class, a) in ages.classes() {
        let (from, to) = (class.timeout(&old), class.timeout(&new));
        let known = a.entries - a.unknown;
        let (predicted, at_least, evictable) = match (from, to) {
            (Some(f), Some(t)) if t < f => {
                converges = converges.max(a.max_left);
                let stay = a.at_most(t);
                (stay + a.unknown, false, known - stay)
            }
            (Some(f), Some(t)) if t > f => (a.entries, true, 0),
            _ => (a.entries, false, 0),
        };
        classes.push(ClassPrediction {
            class,
            now: a.entries,
            predicted,
            unknown_age: a.unknown,
            from,
            to,
            at_least,
            evictable_now: evictable,
        });
    }
    let changes = suggest::sysctls(
        f,
        timeouts
            .iter()
            .filter(|t| t.from != t.to)
            .map(|t| (t.key, t.to))
            .collect::<Vec<_>>(),
    );
    Ok(WhatIf {
        total_now: classes.iter().map(|c| c.now).sum(),
        total_predicted: classes.iter().map(|c| c.predicted).sum(),
        at_least: classes.iter().any(|c| c.at_least),
        evictable_now: classes.iter().map(|c| c.evictable_now).sum(),
        converges_within_s: converges,
        timeouts,
        classes,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knobs;
    use crate::table::text::parse_bytes;
    use crate::table::TcpState;

    fn facts() -> Facts {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ct-healthy-6.18");
        crate::host::read_facts(&crate::host::Root::live_at(dir))
    }

    /// `n` TIME_WAIT entries per second of age 1..=120 under time_wait 120,
    /// i.e. a steady 1 conn/s table; plus one idle ESTABLISHED entry.
    fn steady(per_sec: usize) -> Ages {
        let mut text = String::new();
        let mut port = 1000u32;
        for left in 0..120u32 {
            for _ in 0..per_sec {
                port += 1;
                text.push_str(&format!(
                    "tcp 6 {left} TIME_WAIT src=10.0.0.1 dst=10.0.0.2 sport={} dport=80 \
                     src=10.0.0.2 dst=10.0.0.1 sport=80 dport={} [ASSURED] mark=0 use=1\n",
                    port % 60000 + 1,
                    port % 60000 + 1
                ));
            }
        }
        text.push_str(
            "tcp 6 431000 ESTABLISHED src=10.0.0.3 dst=10.0.0.2 sport=5 dport=80 \
             src=10.0.0.2 dst=10.0.0.3 sport=80 dport=5 [ASSURED] mark=0 use=1\n",
        );
        let t = Timeouts::parse_list("time_wait=120").unwrap();
        let mut a = Ages::new(t);
        parse_bytes(text.as_bytes(), &mut a);
        a
    }

    #[test]
    fn a_shorter_time_wait_keeps_the_entries_younger_than_it() {
        let a = steady(10);
        let set = knobs::parse_list("nf_conntrack_tcp_timeout_time_wait=15").unwrap();
        let w = predict(&facts(), &a, &set).unwrap();
        let tw = w
            .classes
            .iter()
            .find(|c| c.class == Class::Tcp(TcpState::TimeWait))
            .unwrap();
        // Left 0..=119 is age 120..=1; age ≤ 15 is left ≥ 105: 15 seconds × 10.
        assert_eq!(tw.now, 1200);
        assert_eq!(tw.predicted, 150);
        assert_eq!(tw.evictable_now, 1050);
        assert_eq!((tw.from, tw.to), (Some(120), Some(15)));
        // ESTABLISHED untouched.
        let est = w
            .classes
            .iter()
            .find(|c| c.class == Class::Tcp(TcpState::Established))
            .unwrap();
        assert_eq!((est.now, est.predicted), (1, 1));
        assert_eq!((w.total_now, w.total_predicted), (1201, 151));
        // The freshest entry has 119 s left: converged within the old timeout.
        assert_eq!(w.converges_within_s, 119);
        assert_eq!(
            w.timeouts,
            [TimeoutChange {
                key: "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
                from: 120,
                to: 15
            }]
        );
        assert_eq!(w.changes.len(), 1);
        assert_eq!(w.changes[0].value, "15");
    }

    #[test]
    fn the_boundary_second_counts_in() {
        // An entry with exactly old − new seconds left (age = new) stays.
        let text = "tcp 6 105 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED] mark=0 use=1\n\
                    tcp 6 104 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=3 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=3 [ASSURED] mark=0 use=1\n";
        let mut a = Ages::new(Timeouts::default());
        parse_bytes(text.as_bytes(), &mut a);
        let set = knobs::parse_list("tcp_timeout_time_wait=15").unwrap();
        let w = predict(&facts(), &a, &set).unwrap();
        assert_eq!(w.total_predicted, 1);
    }

    #[test]
    fn unknown_ages_stay_and_are_reported() {
        // 500 s left under a 120 s timeout: set by an earlier, longer timeout.
        let text = "tcp 6 500 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED] mark=0 use=1\n\
                    sctp 132 10 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED] mark=0 use=1\n";
        let mut a = Ages::new(Timeouts::default());
        parse_bytes(text.as_bytes(), &mut a);
        let set = knobs::parse_list("tcp_timeout_time_wait=15").unwrap();
        let w = predict(&facts(), &a, &set).unwrap();
        let tw = &w.classes[0];
        assert_eq!((tw.now, tw.predicted, tw.unknown_age), (1, 1, 1));
        assert_eq!(w.classes[1].class, Class::Other);
        assert_eq!(w.total_predicted, 2);
    }

    #[test]
    fn a_longer_timeout_is_a_lower_bound() {
        let a = steady(1);
        let set = knobs::parse_list("tcp_timeout_time_wait=240").unwrap();
        let w = predict(&facts(), &a, &set).unwrap();
        assert!(w.at_least);
        assert_eq!(w.total_predicted, w.total_now);
        assert_eq!(w.converges_within_s, 0);
    }

    #[test]
    fn only_state_timeouts_are_predicted() {
        let a = steady(1);
        for bad in [
            "nf_conntrack_max=1",
            "tcp_timeout_unacknowledged=30",
            "net.ipv4.tcp_tw_reuse=1",
        ] {
            let set = knobs::parse_list(bad).unwrap();
            let e = predict(&facts(), &a, &set).unwrap_err();
            assert!(e.contains("is not one of them"), "{bad}: {e}");
        }
        // UDP and generic timeouts are.
        let set = knobs::parse_list("udp_timeout=10,generic_timeout=60").unwrap();
        let w = predict(&facts(), &a, &set).unwrap();
        assert_eq!(w.timeouts.len(), 2);
        assert_eq!(w.timeouts[0].from, 30);
    }
}
