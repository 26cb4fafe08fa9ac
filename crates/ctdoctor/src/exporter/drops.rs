//! `exporter --drop-reasons`: the drop census run for as long as the
//! exporter runs, folded into one counter per kernel reason. A thread owns
//! the tracing instance (`host::tracefs::Tracer`), drains it every
//! [`POLL`], adds each drain's per-reason counts to [`Totals`] and forgets
//! the rest, so memory stays bounded however long it runs. The label set is
//! the kernel's own reason table (130 names on 6.18) plus `OTHER` for a
//! number outside it; before 5.17 (no reasons) the one label is `unknown`.

use super::Shutdown;
use crate::drops::census::Census;
use crate::host::tracefs::{Tracer, POLL};
use crate::host::Unavailable;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a scrape exports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub by_reason: BTreeMap<String, u64>,
    /// Events the kernel could not store (buffers full).
    pub lost: u64,
}

/// Start counting on a thread of its own; `Err` when tracing cannot run
/// here (not root, no tracefs): the exporter says so and does not start.
pub fn start(
    stop: Arc<Shutdown>,
) -> Result<(Arc<Mutex<Totals>>, std::thread::JoinHandle<()>), Unavailable> {
    let tracer = Tracer::start()?;
    let totals = Arc::new(Mutex::new(Totals::default()));
    let t = totals.clone();
    let h = std::thread::Builder::new()
        .name("drops".into())
        .spawn(move || run(tracer, &t, &stop))
        .map_err(|e| Unavailable::from_io("the drop census thread", &e))?;
    Ok((totals, h))
}

fn run(mut tracer: Tracer, totals: &Mutex<Totals>, stop: &Shutdown) {
    let lost0 = tracer.lost();
    let mut polls = 0u64;
    while !stop.stopped() {
        stop.sleep(POLL);
        let mut c = Census::default();
        tracer.drain(&mut c);
        polls += 1;
        let lost = polls
            .is_multiple_of(20)
            .then(|| tracer.lost().saturating_sub(lost0));
        let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
        fold(&mut t, &c, tracer.format());
        if let Some(l) = lost {
            t.lost = l;
        }
    }
    // Dropping the tracer removes the instance.
}

/// Add one drain's counts to the totals.
pub fn fold(t: &mut Totals, c: &Census, fmt: &crate::drops::format::Format) {
    for (reason, n) in c.by_reason() {
        let name = match reason {
            Some(r) => match fmt.reasons.get(&r) {
                Some(name) => name.clone(),
                None => "OTHER".to_string(),
            },
            None => "unknown".to_string(),
        };
        *t.by_reason.entry(name).or_insert(0) += n;
    }
    if c.unkeyed > 0 {
        *t.by_reason.entry("OTHER".to_string()).or_insert(0) += c.unkeyed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_by_name_with_a_bounded_label_set() {
        let fmt = crate::drops::format::parse(crate::drops::format::tests::F618).unwrap();
        let mut c = Census::default();
        let mut rec = |reason: u64| {
            c.add_record(
                &fmt,
                &crate::drops::census::tests::rec(&fmt, reason, 1, 0, 1),
            );
        };
        rec(12);
        rec(12);
        rec(3);
        rec(999);
        let mut t = Totals::default();
        fold(&mut t, &c, &fmt);
        fold(&mut t, &c, &fmt);
        assert_eq!(t.by_reason["NETFILTER_DROP"], 4);
        assert_eq!(t.by_reason["NO_SOCKET"], 2);
        assert_eq!(t.by_reason["OTHER"], 2);
        assert_eq!(t.by_reason.len(), 3);
    }
}
