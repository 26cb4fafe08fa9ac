//! A picture of a lab run (`--plot FILE.svg`): requests per second (ok and
//! failed), the gateway's table count against its max, and drops and early
//! drops per second, both phases on one time axis with the fix marked.
//! Each phase is its own line: nothing is drawn across the gap between
//! them, where nothing was measured.
//! Plain SVG written by hand: three stacked panels, labelled axes, no
//! script, readable in any browser.
//!
//! Pure: a function of the report. Not for: anything but lab reports.

use super::report::{Report, Row};
use std::fmt::Write as _;

const W: f64 = 960.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const PANEL: f64 = 170.0;
const GAP: f64 = 60.0;
const TOP: f64 = 60.0;

/// One line of a panel: a polyline per phase. The phases are apart in
/// time (the fix between them): a line across the gap would draw values
/// nobody measured — a recovery before the fix was applied.
struct Series<'a> {
    label: &'a str,
    color: &'a str,
    dash: bool,
    segments: Vec<Vec<(f64, f64)>>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step for an axis covering `max`.
fn step(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_num(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One panel at vertical offset `y0`.
#[allow(clippy::too_many_arguments)]
fn panel(
    out: &mut String,
    y0: f64,
    title: &str,
    unit: &str,
    series: &[Series],
    t0: f64,
    t1: f64,
    marks: &[(f64, String)],
) {
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0).max(1e-9) * (W - LEFT - RIGHT);
    let ymax = series
        .iter()
        .flat_map(|s| s.segments.iter().flatten().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let st = step(ymax);
    let top = (ymax / st).ceil() * st;
    let y = |v: f64| y0 + PANEL - v / top * PANEL;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        y0 - 12.0,
        esc(title)
    );
    // Grid and y labels.
    let mut v = 0.0;
    while v <= top + 1e-9 {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            fmt_num(v),
            yy = y(v)
        );
        v += st;
    }
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" font-size="12" transform="rotate(-90 16 {:.1})" text-anchor="middle">{}</text>"#,
        y0 + PANEL / 2.0,
        y0 + PANEL / 2.0,
        esc(unit)
    );
    // Axes.
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{y0}" x2="{LEFT}" y2="{}" stroke="#333"/><line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
        y0 + PANEL,
        y0 + PANEL,
        W - RIGHT,
        y0 + PANEL
    );
    for (t, label) in marks {
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{y0}" x2="{xx:.1}" y2="{}" stroke="#000" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" font-size="11">{}</text>"##,
            y0 + PANEL,
            x(*t) + 4.0,
            y0 + 12.0,
            esc(label),
            xx = x(*t)
        );
    }
    // Series and legend.
    for (i, s) in series.iter().enumerate() {
        for seg in s.segments.iter().filter(|seg| !seg.is_empty()) {
            let pts: Vec<String> = seg
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{}" stroke-width="2"{} points="{}"/>"#,
                s.color,
                if s.dash {
                    r#" stroke-dasharray="6 4""#
                } else {
                    ""
                },
                pts.join(" ")
            );
        }
        let lx = W - RIGHT - 170.0 * (series.len() - i) as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="{}" width="14" height="4" fill="{}"/><text x="{:.1}" y="{}" font-size="11">{}</text>"#,
            y0 - 18.0,
            s.color,
            lx + 18.0,
            y0 - 13.0,
            esc(s.label)
        );
    }
}

/// Per-second rises of a cumulative (wrapping 32-bit) counter, within
/// each phase (never from one phase's last second to the next's first).
fn per_second(phases: &Phases, get: impl Fn(&Row) -> Option<u64>) -> Vec<Vec<(f64, f64)>> {
    let rise = |a: &Row, b: &Row| {
        let r = crate::counters::rise_u32(get(b)?, Some(get(a)?))?;
        Some(r as f64 / (b.t - a.t).max(0.1))
    };
    phases
        .iter()
        .flat_map(|rows| {
            let rises: Vec<_> = rows
                .windows(2)
                .map(|w| (w[1].t, rise(&w[0], &w[1])))
                .collect();
            runs(&rises)
        })
        .collect()
}

/// Each phase's seconds, in order: before, then after (when a fix ran).
type Phases<'a> = Vec<&'a [Row]>;

/// One value of every second, a segment per phase; a second without a
/// value (`None`) breaks the segment too.
fn each(phases: &Phases, get: impl Fn(&Row) -> Option<f64>) -> Vec<Vec<(f64, f64)>> {
    phases
        .iter()
        .flat_map(|rows| runs(&rows.iter().map(|x| (x.t, get(x))).collect::<Vec<_>>()))
        .collect()
}

/// The runs of consecutive known values of one phase, each a segment.
fn runs(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    points
        .split(|(_, v)| v.is_none())
        .filter(|run| !run.is_empty())
        .map(|run| run.iter().filter_map(|&(t, v)| Some((t, v?))).collect())
        .collect()
}

/// The SVG of a lab report.
pub fn svg(r: &Report) -> String {
    let rows: Phases = std::iter::once(&r.before)
        .chain(r.after.as_ref())
        .map(|p| p.seconds.as_slice())
        .collect();
    let t0 = r.before.started_at;
    let t1 = rows
        .iter()
        .rev()
        .find_map(|p| p.last())
        .map_or(t0 + 1.0, |x| x.t)
        .max(t0 + 1.0);
    let time = Time {
        t0,
        t1,
        marks: marks_of(r, t0),
    };
    let h = TOP + 3.0 * PANEL + 2.0 * GAP + 75.0;
    let mut out = String::new();
    header(&mut out, r, h);
    requests_panel(&mut out, &rows, &time);
    table_panel(&mut out, &rows, &time);
    drops_panel(&mut out, &rows, &time);
    time_axis(&mut out, &time, h);
    out.push_str("</svg>\n");
    out
}

/// The run's time axis: from `t0` to `t1`, the phases marked.
struct Time {
    t0: f64,
    t1: f64,
    marks: Vec<(f64, String)>,
}

/// The marks on the time axis: the before phase, and the fix with the
/// after phase.
fn marks_of(r: &Report, t0: f64) -> Vec<(f64, String)> {
    let mut marks = vec![(t0, "before".to_string())];
    if let Some(a) = &r.after {
        let kinds = r
            .fix
            .as_ref()
            .map(|f| f.kinds.join("+"))
            .unwrap_or_else(|| "fix".into());
        marks.push((a.started_at, format!("fix: {kinds} → after")));
    }
    marks
}

/// The SVG element, its white background and the title line.
fn header(out: &mut String, r: &Report, h: f64) {
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="26" font-size="17" font-weight="bold">ctdoctor lab: {} — {} ({}), {} requests/s</text>"#,
        esc(&r.scenario),
        esc(&r.gateway.netns),
        esc(&r.gateway.proxy),
        r.rate
    );
}

/// The first panel: requests per second, ok and failed.
fn requests_panel(out: &mut String, rows: &Phases, time: &Time) {
    let ok = each(rows, |x| Some(x.ok as f64));
    let failed = each(rows, |x| Some(x.failed as f64));
    panel(
        out,
        TOP + 20.0,
        "requests per second (by start time)",
        "requests/s",
        &[
            Series {
                label: "ok",
                color: "#2a9d3a",
                dash: false,
                segments: ok,
            },
            Series {
                label: "failed (timeout, 5xx, error)",
                color: "#d62728",
                dash: false,
                segments: failed,
            },
        ],
        time.t0,
        time.t1,
        &time.marks,
    );
}

/// The second panel: the gateway's table count against its max.
fn table_panel(out: &mut String, rows: &Phases, time: &Time) {
    let count = each(rows, |x| Some(x.count? as f64));
    let max = each(rows, |x| Some(x.max? as f64));
    panel(
        out,
        TOP + 20.0 + PANEL + GAP,
        "the gateway's conntrack table",
        "entries",
        &[
            Series {
                label: "count",
                color: "#1f77b4",
                dash: false,
                segments: count,
            },
            Series {
                label: "nf_conntrack_max",
                color: "#777",
                dash: true,
                segments: max,
            },
        ],
        time.t0,
        time.t1,
        &time.marks,
    );
}

/// The third panel: drops and early drops per second.
fn drops_panel(out: &mut String, rows: &Phases, time: &Time) {
    panel(
        out,
        TOP + 20.0 + 2.0 * (PANEL + GAP),
        "drops and early drops",
        "per second",
        &[
            Series {
                label: "drop/s",
                color: "#ff7f0e",
                dash: false,
                segments: per_second(rows, |x| x.drop),
            },
            Series {
                label: "early_drop/s",
                color: "#9467bd",
                dash: false,
                segments: per_second(rows, |x| x.early_drop),
            },
        ],
        time.t0,
        time.t1,
        &time.marks,
    );
}

/// The time axis's title and labels, under the last panel.
fn time_axis(out: &mut String, time: &Time, h: f64) {
    let (t0, t1) = (time.t0, time.t1);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">seconds since the lab started</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        h - 10.0
    );
    let y_axis = TOP + 20.0 + 3.0 * PANEL + 2.0 * GAP;
    let st = step(t1 - t0);
    let mut t = (t0 / st).ceil() * st;
    while t <= t1 {
        let xx = LEFT + (t - t0) / (t1 - t0) * (W - LEFT - RIGHT);
        let _ = writeln!(
            out,
            r#"<text x="{xx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            y_axis + 16.0,
            fmt_num(t)
        );
        t += st;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `secs` seconds before and after a fix: the table full,
    /// then not.
    fn report(secs: u64) -> Report {
        use crate::lab::{load, report, watch, Options};
        let phase = |name: &str, from: f64, failing: bool| {
            let run = load::Run {
                seconds: (0..secs)
                    .map(|t| {
                        let mut s = load::Second::default();
                        s.t = t;
                        s.ok = if failing { 100 + t } else { 300 };
                        s.timed_out = if failing { 200 - t } else { 0 };
                        s
                    })
                    .collect(),
                ..load::Run::default()
            };
            let ticks: Vec<watch::Tick> = (0..=secs)
                .map(|t| watch::Tick {
                    t: from + t as f64,
                    count: Some(if failing { 4096 } else { 2000 + 10 * t }),
                    max: Some(4096),
                    drop: Some(if failing { 1000 * t } else { 1000 * secs }),
                    early_drop: Some(0),
                    log_lines: Some(t),
                    log_any_netns: false,
                })
                .collect();
            report::Phase::new(name, from, run, &ticks, 3)
        };
        let opts = Options::default();
        let prepare = phase("prepare", 1.0, false);
        let before = phase("before", 40.0, true);
        let mut r = Report::new(
            &opts,
            "nginx 1.22.1".into(),
            "ctdlab-gw",
            7,
            4096,
            30.0,
            prepare,
            None,
            before,
            Vec::new(),
        );
        r.after = Some(phase("after", 40.0 + secs as f64 + 3.0, false));
        r.fix = Some(report::Fix {
            kinds: vec!["timeouts".into(), "notrack".into()],
            changes: Vec::new(),
            written: Vec::new(),
            evicted: 0,
            reasoning: Vec::new(),
            journal: Vec::new(),
            at: 55.0,
            seconds: 1.5,
        });
        r
    }

    #[test]
    fn lab_plot_draws_three_panels_and_marks_the_fix() {
        assert!(svg(&report(0)).ends_with("</svg>\n"));
        let s = svg(&report(15));
        // Six series, each a line per phase.
        assert_eq!(s.matches("<polyline").count(), 12, "{s}");
        assert!(s.contains("fix: timeouts+notrack → after"), "{s}");
        assert!(s.ends_with("</svg>\n"));
    }

    /// The x of every point of every polyline, one list per polyline.
    fn polylines(s: &str) -> Vec<Vec<f64>> {
        s.split("<polyline")
            .skip(1)
            .map(|p| {
                let pts = p.split("points=\"").nth(1).unwrap();
                pts[..pts.find('"').unwrap()]
                    .split(' ')
                    .map(|xy| xy.split(',').next().unwrap().parse().unwrap())
                    .collect()
            })
            .collect()
    }

    /// Issue 21: a line from the failing phase's last second to the after
    /// phase's first drew a recovery during the gap, before the fix was
    /// applied. No polyline crosses the fix's mark; the failing phase's
    /// line ends at its last second, the after phase's starts at its first.
    #[test]
    fn lab_plot_draws_no_line_across_the_gap_between_phases() {
        let r = report(15);
        let s = svg(&r);
        let mark = s
            .split("<line ")
            .find(|l| l.contains("fix: timeouts+notrack"))
            .and_then(|l| l.split("x1=\"").nth(1))
            .map(|l| l[..l.find('"').unwrap()].parse::<f64>().unwrap())
            .unwrap();
        let lines = polylines(&s);
        for xs in &lines {
            let before = xs.iter().filter(|x| **x < mark).count();
            assert!(
                before == 0 || before == xs.len(),
                "a line crosses the fix at x={mark}: {xs:?}"
            );
        }
        assert_eq!(lines.len(), 12);
        assert_eq!(lines.iter().filter(|xs| xs[0] > mark).count(), 6);
        // A second without a count breaks the line too.
        let mut r = r;
        r.before.seconds[7].count = None;
        assert_eq!(polylines(&svg(&r)).len(), 13);
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(step(100.0), 20.0);
        assert_eq!(step(4096.0), 1000.0);
        assert_eq!(step(3.0), 1.0);
        assert_eq!(fmt_num(4096.0), "4.1k");
        assert_eq!(esc("a<b&c"), "a&lt;b&amp;c");
    }
}
