//! What a lab run found: each phase's requests (ok, timed out, 5xx,
//! connection errors, latency), the gateway's table (peak count, drop and
//! early_drop rises, "table full" lines) per second, `check`'s findings on
//! the gateway during the failing phase, the fix, and a verdict. JSON for
//! scripts (`--json`), a side-by-side table for people.
//!
//! Not for: running anything (lab/mod.rs).

use super::verdict::{self, Outcome, Steady};
use super::{load, watch, Options};
use crate::advice::change::Change;
use crate::checks::{Finding, Severity};
use crate::util::thousands;
use serde::Serialize;
use std::fmt::Write as _;

/// One second of a phase: the load's outcome for requests started in it,
/// the gateway's table at its end, and what its counters and log did in it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Seconds since the lab started.
    pub t: f64,
    pub started: u64,
    pub ok: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub http_5xx: u64,
    pub conn_errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub count: Option<u64>,
    pub max: Option<u64>,
    /// The gateway's drop and early_drop counters at the second's end.
    pub drop: Option<u64>,
    pub early_drop: Option<u64>,
    /// Their rises during the second.
    pub drops: Option<u64>,
    pub early_drops: Option<u64>,
    /// New "table full in netns N" lines for the gateway during the second.
    pub table_full_lines: Option<u64>,
}

/// The ticks of the second ending at `t`: the last tick at or before
/// `t - 1` (the base) through the last at or before `t`.
fn second_of(ticks: &[watch::Tick], t: f64) -> &[watch::Tick] {
    let end = ticks.partition_point(|k| k.t <= t);
    let start = ticks.partition_point(|k| k.t <= t - 1.0).saturating_sub(1);
    &ticks[start.min(end)..end]
}

/// One phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    /// Seconds since the lab started.
    pub started_at: f64,
    pub requests: u64,
    pub ok: u64,
    /// timed out + connection errors + 5xx.
    pub failed: u64,
    pub timed_out: u64,
    pub http_5xx: u64,
    pub http_504: u64,
    pub conn_errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The gateway's drop counter rise during the phase.
    pub drops: Option<u64>,
    pub early_drops: Option<u64>,
    /// New "table full in netns N" lines for the gateway.
    pub table_full_lines: Option<u64>,
    /// The kernel names no netns (before 6.17): `table_full_lines` counts
    /// every "table full" line, the gateway's and any other namespace's.
    pub table_full_lines_any_netns: bool,
    /// nginx's "upstream timed out … while connecting to upstream" lines.
    pub upstream_timeouts: u64,
    pub peak_count: Option<u64>,
    pub max: Option<u64>,
    pub seconds: Vec<Row>,
}

impl Phase {
    pub fn new(
        name: &str,
        from: f64,
        run: load::Run,
        ticks: &[watch::Tick],
        upstream_timeouts: u64,
    ) -> Phase {
        let rows = run
            .seconds
            .iter()
            .map(|s| {
                let t = from + s.t as f64 + 1.0;
                let tick = ticks.iter().rfind(|k| k.t <= t).or_else(|| ticks.first());
                let second = second_of(ticks, t);
                Row {
                    t: (t * 10.0).round() / 10.0,
                    started: s.started,
                    ok: s.ok,
                    failed: s.timed_out + s.http_5xx + s.conn_errors,
                    timed_out: s.timed_out,
                    http_5xx: s.http_5xx,
                    conn_errors: s.conn_errors,
                    p50_ms: s.p50_ms,
                    p99_ms: s.p99_ms,
                    count: tick.and_then(|k| k.count),
                    max: tick.and_then(|k| k.max),
                    drop: tick.and_then(|k| k.drop),
                    early_drop: tick.and_then(|k| k.early_drop),
                    drops: watch::rise(second, |k| k.drop),
                    early_drops: watch::rise(second, |k| k.early_drop),
                    table_full_lines: watch::rise(second, |k| k.log_lines),
                }
            })
            .collect();
        Phase {
            name: name.into(),
            started_at: (from * 10.0).round() / 10.0,
            requests: run.requests,
            ok: run.ok,
            failed: run.failed,
            timed_out: run.timed_out,
            http_5xx: run.http_5xx,
            http_504: run.http_504,
            conn_errors: run.conn_errors,
            p50_ms: run.p50_ms,
            p99_ms: run.p99_ms,
            drops: watch::rise(ticks, |t| t.drop),
            early_drops: watch::rise(ticks, |t| t.early_drop),
            table_full_lines: watch::rise(ticks, |t| t.log_lines),
            table_full_lines_any_netns: ticks.iter().any(|t| t.log_any_netns),
            upstream_timeouts,
            peak_count: ticks.iter().filter_map(|t| t.count).max(),
            max: ticks.iter().rev().find_map(|t| t.max),
            seconds: rows,
        }
    }

    /// Failed share, percent.
    pub fn failed_pct(&self) -> f64 {
        crate::util::percent(self.failed, self.requests)
    }
}

/// The gateway.
#[derive(Debug, Clone, Serialize)]
pub struct Gateway {
    /// "nginx 1.22.1", or the built-in proxy.
    pub proxy: String,
    pub netns: String,
    pub inode: u64,
    /// The max the table ran with (lowered for the run; restored after).
    pub max: u64,
}

/// The fix applied between the phases.
#[derive(Debug, Clone, Serialize)]
pub struct Fix {
    /// What was asked for: timeouts, notrack, max, evict.
    pub kinds: Vec<String>,
    pub changes: Vec<Change>,
    /// What was written, read back: `where: key old -> new`.
    pub written: Vec<String>,
    /// Entries deleted as relief when the fix was applied.
    pub evicted: u64,
    /// Why these values, in words.
    pub reasoning: Vec<String>,
    /// The change sets (in the lab's own journal, rolled back at the end).
    pub journal: Vec<String>,
    /// Seconds since the lab started.
    pub at: f64,
    pub seconds: f64,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub scenario: String,
    pub rate: f64,
    pub gateway: Gateway,
    /// Seconds the fill took (the load until the table reached max).
    pub fill_secs: f64,
    pub prepare: Phase,
    /// `check`'s worst finding on the gateway before the fill.
    pub prepare_worst: Option<Finding>,
    pub before: Phase,
    pub fix: Option<Fix>,
    pub after: Option<Phase>,
    /// Length of the before and after phases, seconds (`--phase`).
    pub phase_secs: u64,
    /// plan's steady state for the after phase's rate under the fix's
    /// settings (lab/verdict.rs).
    pub steady: Option<Steady>,
    /// `check`'s headline for the gateway during the failing phase.
    pub diagnosis: crate::checks::diagnosis::Diagnosis,
    /// `check` on the gateway during the failing phase, worst first.
    pub findings: Vec<Finding>,
    pub outcome: Outcome,
    pub verdict: String,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: &Options,
        proxy: String,
        gw: &str,
        inode: u64,
        max: u64,
        fill_secs: f64,
        prepare: Phase,
        prepare_worst: Option<Finding>,
        before: Phase,
        findings: Vec<Finding>,
    ) -> Report {
        let mut r = Report {
            schema_version: 1,
            scenario: opts.scenario.name.into(),
            rate: opts.rate,
            gateway: Gateway {
                proxy,
                netns: gw.into(),
                inode,
                max,
            },
            fill_secs: (fill_secs * 10.0).round() / 10.0,
            prepare,
            prepare_worst,
            before,
            fix: None,
            after: None,
            phase_secs: opts.phase.as_secs(),
            steady: None,
            diagnosis: crate::checks::diagnosis::diagnose(&findings, &format!("netns {gw}")),
            findings,
            outcome: Outcome::NoFix,
            verdict: String::new(),
        };
        (r.outcome, r.verdict) = r.judge();
        r
    }

    /// The outcome, and the verdict in one line: the failing phase, then
    /// the after phase judged by lab/verdict.rs.
    pub fn judge(&self) -> (Outcome, String) {
        let b = &self.before;
        let failing = format!(
            "before: {} of {} requests failed ({:.1} %: {} timed out, {} × 5xx of which {} × 504, {} connection errors), {} packets dropped",
            thousands(b.failed),
            thousands(b.requests),
            b.failed_pct(),
            b.timed_out,
            b.http_5xx,
            b.http_504,
            b.conn_errors,
            b.drops.map_or("?".into(), thousands)
        );
        match &self.after {
            None => (
                Outcome::NoFix,
                format!("{failing}; no fix applied (--fix to try one)"),
            ),
            Some(a) => {
                let (o, after) = verdict::judge(a, self.steady.as_ref(), self.phase_secs);
                (o, format!("{failing}; after the fix: {after}"))
            }
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("?".into(), thousands)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |m| format!("{m:.1} ms"))
}

/// The report for people.
pub fn to_text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "ctdoctor lab: {} — gateway {} ({}), {} requests/s, one request per connection",
        r.scenario, r.gateway.netns, r.gateway.proxy, r.rate
    );
    let _ = writeln!(
        o,
        "  table max lowered to {} for the run (restored after); filled in {:.1} s",
        thousands(r.gateway.max),
        r.fill_secs
    );
    if let Some(w) = &r.prepare_worst {
        let _ = writeln!(
            o,
            "  before the fill: {}/{} ok, check's worst finding: {} {}",
            r.prepare.ok,
            r.prepare.requests,
            w.severity.as_str(),
            w.id
        );
    }
    o.push('\n');
    let cols: Vec<&Phase> = std::iter::once(&r.before).chain(r.after.as_ref()).collect();
    let _ = write!(o, "{:<22}", "");
    for p in &cols {
        let _ = write!(o, "{:>16}", p.name);
    }
    o.push('\n');
    let line = |o: &mut String, label: &str, f: &dyn Fn(&Phase) -> String| {
        let _ = write!(o, "{label:<22}");
        for p in &cols {
            let _ = write!(o, "{:>16}", f(p));
        }
        o.push('\n');
    };
    line(&mut o, "requests", &|p| thousands(p.requests));
    line(&mut o, "ok", &|p| thousands(p.ok));
    line(&mut o, "failed", &|p| {
        format!("{} ({:.0}%)", thousands(p.failed), p.failed_pct())
    });
    line(&mut o, "  timed out", &|p| thousands(p.timed_out));
    line(&mut o, "  5xx (504)", &|p| {
        format!("{} ({})", p.http_5xx, p.http_504)
    });
    line(&mut o, "  connection errors", &|p| thousands(p.conn_errors));
    line(&mut o, "latency p50", &|p| ms(p.p50_ms));
    line(&mut o, "latency p99", &|p| ms(p.p99_ms));
    line(&mut o, "table peak / max", &|p| {
        format!("{}/{}", opt(p.peak_count), opt(p.max))
    });
    line(&mut o, "drop rise", &|p| opt(p.drops));
    line(&mut o, "early_drop rise", &|p| opt(p.early_drops));
    let any_netns = cols.iter().any(|p| p.table_full_lines_any_netns);
    let label = match any_netns {
        // Kernels before 6.17 log no netns: the lab's own load is the
        // likely writer, but another namespace's line counts too.
        true => "table-full lines (*)",
        false => "table-full lines",
    };
    line(&mut o, label, &|p| opt(p.table_full_lines));
    line(&mut o, "upstream timeouts", &|p| {
        p.upstream_timeouts.to_string()
    });
    if any_netns {
        let _ = writeln!(
            o,
            "(*) this kernel (before 6.17) names no netns in \"table full\" lines: \
             every namespace's line is counted"
        );
    }
    if let Some(f) = &r.fix {
        let _ = writeln!(
            o,
            "\nfix ({}), applied at {:.1} s in {:.1} s:",
            f.kinds.join(", "),
            f.at,
            f.seconds
        );
        for c in f.changes.iter().filter(|_| f.written.is_empty()) {
            let _ = writeln!(
                o,
                "  {} = {} ({}{})",
                c.key,
                c.value,
                c.scope,
                c.netns
                    .as_ref()
                    .map(|n| format!(", netns {n}"))
                    .unwrap_or_default()
            );
        }
        for w in &f.written {
            let _ = writeln!(o, "  wrote {w}");
        }
        for w in &f.reasoning {
            let _ = writeln!(o, "  {w}");
        }
        if f.evicted > 0 {
            let _ = writeln!(
                o,
                "  relief: {} entries deleted in all",
                thousands(f.evicted)
            );
        }
    }
    let worst: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .collect();
    let _ = writeln!(o, "\ndiagnosis: {}", r.diagnosis.headline);
    if !worst.is_empty() {
        let _ = writeln!(o, "check on the gateway during the failing phase:");
        for f in worst {
            let _ = writeln!(o, "  {:<8} {:<34} {}", f.severity.as_str(), f.id, f.title);
        }
    }
    let _ = writeln!(o, "\nverdict: {}", r.verdict);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_second_gets_the_rises_of_its_own_ticks() {
        let tick = |t: f64, drop: u64, lines: u64| watch::Tick {
            t,
            count: None,
            max: None,
            drop: Some(drop),
            early_drop: None,
            log_lines: Some(lines),
            log_any_netns: false,
        };
        let ticks = [
            tick(10.0, 100, 1),
            tick(10.5, 150, 1),
            tick(11.0, 180, 2),
            tick(11.5, 300, 2),
            tick(12.0, 310, 4),
        ];
        let s = second_of(&ticks, 11.0);
        assert_eq!(watch::rise(s, |k| k.drop), Some(80));
        assert_eq!(watch::rise(s, |k| k.log_lines), Some(1));
        let s = second_of(&ticks, 12.0);
        assert_eq!(watch::rise(s, |k| k.drop), Some(130));
        assert_eq!(watch::rise(s, |k| k.log_lines), Some(2));
        // Before the first tick: nothing to say.
        assert!(second_of(&ticks, 9.0).is_empty());
    }
}
