//! `ctdoctor top`: a live terminal view of the conntrack table — count/max
//! gauge, bucket load, drop / early_drop / insert_failed rates, and tables
//! by TCP state, source and destination port, refreshed by re-dumping the
//! table every few seconds.
//!
//! A creators panel shows who created entries over the last minute (top
//! sources and destination ports by NEW entries per second), from a
//! NEW-event subscription kept open for the whole session
//! (`host::creators::Watch`): what the dump cannot show, since an entry
//! that was created and expired between two dumps is in neither.
//!
//! Shape: a sampler thread (inside the target netns) dumps the table
//! through `host::entries` and reads count, max, buckets and the drop
//! counters through the readers `check` uses (`host::conntrack`,
//! `host::stat`), sending [`Sample`]s; rates read a counter wrap as
//! `check` does (`counters::rise_u32`);
//! the UI thread owns an [`App`] (pure state: keys in, frame out, testable
//! with ratatui's `TestBackend`) and the terminal.
//!
//! Not for: aggregation (`table::agg`), reading the kernel (`host`) or
//! netlink (`ctnetlink`).

use crate::host::conntrack::Conntrack;
use crate::host::creators::{Creation, Watch};
use crate::host::netns::{run_in, Target};
use crate::host::stat::Stat;
use crate::host::{self, Fact, Root};
use crate::table::agg::{self, by, Agg, Config, Filter, Summary, Timeouts};
use crate::util::thousands;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// One refresh: the aggregate and the counters next to it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub summary: Summary,
    /// This namespace's entry count and the (global) maximum.
    pub count: u64,
    pub max: Option<u64>,
    /// Global hash buckets.
    pub buckets: Option<u64>,
    /// Counters since boot (summed over CPUs), when readable.
    pub drop: Option<u64>,
    pub early_drop: Option<u64>,
    pub insert_failed: Option<u64>,
    /// How long the dump took.
    pub dump_secs: f64,
    pub interrupted: bool,
    /// Who created entries over the last minute (None: not watched; an
    /// error: why not).
    pub creators: Option<Result<Creation, String>>,
}

/// Per-second rate of a counter between two samples. The counters are
/// sums of per-CPU 32-bit counters: a fall is a wrap, read as `check`
/// reads it ([`crate::counters::rise_u32`]).
fn rate(prev: Option<u64>, cur: Option<u64>, secs: f64) -> Option<f64> {
    if secs <= 0.0 {
        return None;
    }
    let d = crate::counters::rise_u32(cur?, prev)?;
    Some(d as f64 / secs)
}

/// Sort order of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Count,
    Key,
}

/// The UI state. Keys in ([`App::key`]), frames out ([`App::draw`]).
pub struct App {
    pub target_name: Option<String>,
    pub interval: Duration,
    pub prev: Option<Sample>,
    pub cur: Option<Sample>,
    pub error: Option<String>,
    pub paused: bool,
    pub sort: Sort,
    pub help: bool,
    /// Filter text being typed (`f`), when in input mode.
    pub input: Option<String>,
    /// The applied filter, as typed.
    pub filter_text: String,
    pub filter: Filter,
    pub quit: bool,
    /// Set when a key asks for an immediate refresh (r, a new filter).
    pub refresh_now: bool,
}

impl App {
    pub fn new(target_name: Option<String>, interval: Duration) -> App {
        App {
            target_name,
            interval,
            prev: None,
            cur: None,
            error: None,
            paused: false,
            sort: Sort::Count,
            help: false,
            input: None,
            filter_text: String::new(),
            filter: Filter::default(),
            quit: false,
            refresh_now: false,
        }
    }

    /// A new sample arrived (ignored while paused).
    pub fn push(&mut self, s: Result<Sample, String>) {
        if self.paused {
            return;
        }
        match s {
            Ok(s) => {
                self.prev = self.cur.take();
                self.cur = Some(s);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    pub fn key(&mut self, k: KeyEvent) {
        if let Some(buf) = &mut self.input {
            match k.code {
                KeyCode::Enter => {
                    let text = buf.trim().to_string();
                    match Filter::parse(&text) {
                        Ok(f) => {
                            self.filter = f;
                            self.filter_text = text;
                            self.error = None;
                            self.refresh_now = true;
                            // Rates across a filter change are still valid
                            // (counters are table-wide); tables restart.
                        }
                        Err(e) => self.error = Some(format!("filter: {e}")),
                    }
                    self.input = None;
                }
                KeyCode::Esc => self.input = None,
                KeyCode::Backspace => {
                    buf.pop();
                }
                // As in a shell: ^U clears the line; no control key is text.
                KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => buf.clear(),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    self.quit = true
                }
                KeyCode::Char(_) if k.modifiers.contains(KeyModifiers::CONTROL) => {}
                KeyCode::Char(c) => buf.push(c),
                _ => {}
            }
            return;
        }
        if self.help {
            self.help = false;
            return;
        }
        match k.code {
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => self.quit = true,
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('s') => {
                self.sort = match self.sort {
                    Sort::Count => Sort::Key,
                    Sort::Key => Sort::Count,
                }
            }
            KeyCode::Char('f') | KeyCode::Char('/') => self.input = Some(self.filter_text.clone()),
            KeyCode::Char('r') => self.refresh_now = true,
            KeyCode::Char('+') => self.interval = (self.interval * 2).min(Duration::from_secs(300)),
            KeyCode::Char('-') => {
                self.interval = (self.interval / 2).max(Duration::from_millis(500))
            }
            KeyCode::Char('?') | KeyCode::Char('h') => self.help = true,
            _ => {}
        }
    }

    fn rows(&self, counts: &[agg::Count], cap: usize) -> Vec<Row<'static>> {
        let mut v: Vec<&agg::Count> = counts.iter().take(cap).collect();
        if self.sort == Sort::Key {
            v.sort_by(|a, b| a.key.cmp(&b.key));
        }
        v.into_iter()
            .map(|c| {
                Row::new(vec![
                    Line::from(c.key.clone()),
                    Line::from(thousands(c.count)).right_aligned(),
                    Line::from(pct_cell(c.percent)).right_aligned(),
                ])
            })
            .collect()
    }

    pub fn draw(&self, f: &mut Frame) {
        let area = f.area();
        let [title, gauge, stats, info, body, made, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(CREATORS_HEIGHT),
            Constraint::Length(1),
        ])
        .areas(area);
        self.draw_header(f, title, gauge);
        if let Some(s) = &self.cur {
            self.draw_counters(f, stats, info, s);
            self.draw_tables(f, body, s);
            self.draw_creators(f, made, s);
        }
        self.draw_footer(f, foot);
        if self.help {
            draw_help(f, area);
        }
    }

    /// Title line, and the count/max gauge (or why there is none yet).
    fn draw_header(&self, f: &mut Frame, title: Rect, gauge: Rect) {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let ns = self
            .target_name
            .as_deref()
            .map_or("this netns".to_string(), |n| format!("netns {n}"));
        let mut t = vec![
            Span::styled("ctdoctor top", bold),
            Span::raw(format!(
                " — {ns} — every {:.1}s",
                self.interval.as_secs_f64()
            )),
        ];
        if self.paused {
            t.push(Span::styled(
                " [PAUSED]",
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            ));
        }
        if self.sort == Sort::Key {
            t.push(Span::raw(" [sorted by key]"));
        }
        f.render_widget(Paragraph::new(Line::from(t)), title);

        let Some(s) = &self.cur else {
            let msg = self
                .error
                .clone()
                .unwrap_or_else(|| "dumping the table…".into());
            f.render_widget(Paragraph::new(msg), gauge);
            return;
        };
        let (ratio, label) = match s.max {
            Some(m) if m > 0 => {
                let r = (s.count as f64 / m as f64).min(1.0);
                (
                    r,
                    format!(
                        "count {} / max {} ({:.1}%)",
                        thousands(s.count),
                        thousands(m),
                        r * 100.0
                    ),
                )
            }
            _ => (0.0, format!("count {} / max ?", thousands(s.count))),
        };
        let color = if ratio >= 0.9 {
            Color::Red
        } else if ratio >= 0.75 {
            Color::Yellow
        } else {
            Color::Green
        };
        f.render_widget(
            Gauge::default()
                .gauge_style(Style::default().fg(color))
                .ratio(ratio)
                .label(label),
            gauge,
        );
    }

    /// Chain length and counter rates; flags, dump time, filter (or the
    /// last error).
    fn draw_counters(&self, f: &mut Frame, stats: Rect, info: Rect, s: &Sample) {
        let secs = self
            .prev
            .as_ref()
            .map_or(0.0, |p| s.at.duration_since(p.at).as_secs_f64());
        let fmt_rate = |cur: Option<u64>, prev: Option<u64>| match rate(prev, cur, secs) {
            Some(r) => format!("{r:.1}/s"),
            None if cur.is_some() => "–".into(),
            None => "n/a".into(),
        };
        let p = self.prev.as_ref();
        let load = s.buckets.filter(|b| *b > 0).map_or("?".into(), |b| {
            format!("{:.2}", 2.0 * s.count as f64 / b as f64)
        });
        let line = format!(
            "chain {load} · drop {} · early_drop {} · insert_failed {}",
            fmt_rate(s.drop, p.and_then(|p| p.drop)),
            fmt_rate(s.early_drop, p.and_then(|p| p.early_drop)),
            fmt_rate(s.insert_failed, p.and_then(|p| p.insert_failed)),
        );
        f.render_widget(Paragraph::new(line), stats);
        let fl = s.summary.flags.as_ref();
        let mut line = format!(
            "assured {:.1}% · unreplied {:.1}% · dump {:.2}s",
            fl.map_or(0.0, |f| f.assured.percent),
            fl.map_or(0.0, |f| f.unreplied.percent),
            s.dump_secs
        );
        if !self.filter_text.is_empty() {
            line.push_str(&format!(
                " · filter: {} ({} match)",
                self.filter_text,
                thousands(s.summary.entries)
            ));
        }
        if let Some(e) = &self.error {
            line = e.clone();
        }
        f.render_widget(Paragraph::new(line), info);
    }

    /// The three tables: proto / state, sources, destination ports.
    fn draw_tables(&self, f: &mut Frame, body: Rect, s: &Sample) {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        // 26 / 30 / 24 columns at 80: room for ESTABLISHED, a full
        // IPv4 address and tcp/8080 next to 7-digit counts.
        let [a, b, c] = Layout::horizontal([
            Constraint::Fill(26),
            Constraint::Fill(30),
            Constraint::Fill(24),
        ])
        .areas(body);
        let cap = body.height.saturating_sub(3) as usize;
        let widths = [
            Constraint::Fill(1),
            Constraint::Length(7),
            Constraint::Length(4),
        ];
        let header = Row::new(vec![
            Line::from(""),
            Line::from("entries").right_aligned(),
            Line::from("%").right_aligned(),
        ])
        .style(bold);
        let mut st_rows = self.rows(s.summary.by_proto.as_deref().unwrap_or(&[]), cap);
        let states = s.summary.by_state.as_deref().unwrap_or(&[]);
        st_rows.extend(self.rows(states, cap.saturating_sub(st_rows.len())));
        f.render_widget(
            Table::new(st_rows, widths).header(header.clone()).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title("proto / state"),
            ),
            a,
        );
        let src = s.summary.top_src.as_ref();
        f.render_widget(
            Table::new(src.map_or(vec![], |t| self.rows(&t.top, cap)), widths)
                .header(header.clone())
                .block(Block::default().borders(Borders::ALL).title(format!(
                    "sources ({})",
                    thousands(src.map_or(0, |t| t.distinct))
                ))),
            b,
        );
        let dp = s.summary.top_dport.as_ref();
        f.render_widget(
            Table::new(dp.map_or(vec![], |t| self.rows(&t.top, cap)), widths)
                .header(header)
                .block(Block::default().borders(Borders::ALL).title(format!(
                    "dst ports ({})",
                    thousands(dp.map_or(0, |t| t.distinct))
                ))),
            c,
        );
    }

    /// Who created entries over the last minute: sources and destination
    /// ports by NEW entries per second, with their share of all new ones.
    fn draw_creators(&self, f: &mut Frame, area: Rect, s: &Sample) {
        let c = match &s.creators {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                let p = Paragraph::new(format!("not watched: {e}"))
                    .wrap(Wrap { trim: true })
                    .block(Block::default().borders(Borders::ALL).title("creators"));
                f.render_widget(p, area);
                return;
            }
            None => return,
        };
        let total = c.per_sec();
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let [a, b] = Layout::horizontal([Constraint::Fill(30), Constraint::Fill(24)]).areas(area);
        let cap = area.height.saturating_sub(3) as usize;
        let widths = [
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(4),
        ];
        let header = Row::new(vec![
            Line::from(""),
            Line::from("new/s").right_aligned(),
            Line::from("%").right_aligned(),
        ])
        .style(bold);
        let row = |k: String, r: f64| {
            Row::new(vec![
                Line::from(k),
                Line::from(rate_cell(r)).right_aligned(),
                Line::from(pct_cell(
                    (r / total.max(f64::MIN_POSITIVE) * 100.0).min(100.0),
                ))
                .right_aligned(),
            ])
        };
        let lost = if c.lost > 0 {
            format!(", {} lost", c.lost)
        } else {
            String::new()
        };
        let src: Vec<Row> = c
            .sources
            .iter()
            .take(cap)
            .map(|r| row(r.key.to_string(), r.per_sec))
            .collect();
        f.render_widget(
            Table::new(src, widths).header(header.clone()).block(
                Block::default().borders(Borders::ALL).title(format!(
                    "creators: sources, last min ({}/s new{lost})",
                    rate_cell(total)
                )),
            ),
            a,
        );
        let dp: Vec<Row> = c
            .dports
            .iter()
            .take(cap)
            .map(|r| row(crate::table::entry::proto_port(r.key.0, r.key.1), r.per_sec))
            .collect();
        f.render_widget(
            Table::new(dp, widths).header(header).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title("creators: dst ports"),
            ),
            b,
        );
    }

    /// The key line, or the filter being typed.
    fn draw_footer(&self, f: &mut Frame, foot: Rect) {
        let footer = match &self.input {
            Some(buf) => format!(
                "filter> {buf}▏ (Enter apply, Esc cancel, ^U clear; proto= state= src= dst= port=)"
            ),
            None => "q quit  p pause  s sort  f filter  r refresh  +/- interval  ? help".into(),
        };
        f.render_widget(
            Paragraph::new(footer).style(Style::default().add_modifier(Modifier::REVERSED)),
            foot,
        );
    }
}

/// Rows of the creators panel: borders, header and 4 rows.
const CREATORS_HEIGHT: u16 = 7;

/// A rate in an 8-column cell: one decimal below 100/s, else whole.
fn rate_cell(r: f64) -> String {
    if r < 100.0 {
        format!("{r:.1}")
    } else {
        thousands(r.round() as u64)
    }
}

/// A share in a 4-column cell: one decimal, and `100` rather than a
/// `100.0` the cell would cut to `00.0`.
fn pct_cell(p: f64) -> String {
    let s = format!("{p:.1}");
    if s.len() > 4 {
        format!("{p:.0}")
    } else {
        s
    }
}

/// The help box over the middle of the screen.
fn draw_help(f: &mut Frame, area: Rect) {
    let w = area.width.min(64);
    let h = area.height.min(17);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let text = "\
q / Esc      quit
p / space    pause (stop applying new dumps)
s            sort tables by count or by key
f or /       filter: proto=tcp state=ESTABLISHED,TIME_WAIT
             src=10.0.0.0/8 dst=ADDR port=443 (empty clears;
             Ctrl-U clears what is typed)
r            refresh now
+ / -        slower / faster refresh
?            this help (any key closes)

chain = mean hash chain length, 2 × count / buckets.
Rates are per second between the last two dumps; a dump
costs ~2 µs per entry of kernel time. creators: new
entries per second over the last minute, from events.";
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title("help")),
        r,
    );
}

/// The configuration a refresh aggregates with.
fn config(filter: Filter, timeouts: Timeouts, rows: usize) -> Config {
    Config {
        filter,
        by: by::L4 | by::STATE | by::FLAGS | by::SRC | by::DPORT,
        top: rows,
        timeouts,
        idle_over: 300,
    }
}

impl Sample {
    /// A sample from a dump's summary and the facts the checks read:
    /// count, max and buckets from `host::conntrack`, drop, early_drop and
    /// insert_failed from `host::stat` (either unavailable: unknown).
    pub fn from_facts(
        summary: Summary,
        conntrack: &Fact<Conntrack>,
        stat: &Fact<Stat>,
        dump_secs: f64,
        interrupted: bool,
    ) -> Sample {
        let ct = conntrack.as_ref().ok();
        let st = stat.as_ref().ok();
        Sample {
            at: Instant::now(),
            count: ct.map_or(summary.entries_seen, |c| c.count),
            max: ct.and_then(|c| c.max.as_ref().ok().copied()),
            buckets: ct.and_then(|c| c.buckets.as_ref().ok().copied()),
            drop: st.and_then(Stat::drop),
            early_drop: st.and_then(Stat::early_drop),
            insert_failed: st.and_then(Stat::insert_failed),
            dump_secs,
            interrupted,
            summary,
            creators: None,
        }
    }
}

/// Take one sample of the namespace this thread is in.
pub fn sample_here(filter: Filter, rows: usize) -> anyhow::Result<Sample> {
    let root = Root::live();
    let ct = host::conntrack::read(&root);
    let timeouts = host::fact::timeouts_of(&ct);
    let started = Instant::now();
    let (agg, st) = host::entries::dump_pipelined(Agg::new(config(filter, timeouts, rows)))?;
    let dump_secs = started.elapsed().as_secs_f64();
    let stat = host::stat::read(&root);
    Ok(Sample::from_facts(
        agg.finish(),
        &ct,
        &stat,
        dump_secs,
        st.interrupted,
    ))
}

/// Restores the terminal on drop (errors and panics included).
struct TermGuard;

impl Drop for TermGuard {
    fn drop(&mut self) {
        let _ = ratatui::crossterm::terminal::disable_raw_mode();
        let _ = ratatui::crossterm::execute!(
            std::io::stdout(),
            ratatui::crossterm::terminal::LeaveAlternateScreen,
            ratatui::crossterm::cursor::Show
        );
    }
}

/// Run the live view until the user quits.
pub fn run(target: Target, interval: Duration) -> anyhow::Result<()> {
    use anyhow::Context;
    // Fail before touching the terminal when the namespace cannot be read.
    host::entries::check_access(&target)?;

    let filter = Arc::new(Mutex::new(Filter::default()));
    let interval_ms = Arc::new(AtomicU64::new(interval.as_millis() as u64));
    let quit = Arc::new(AtomicBool::new(false));
    let kick = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let rows = Arc::new(AtomicU64::new(20));
    let (tx, rx) = mpsc::channel::<Result<Sample, String>>();
    let sampler = {
        let (filter, interval_ms, quit, kick, paused, rows) = (
            filter.clone(),
            interval_ms.clone(),
            quit.clone(),
            kick.clone(),
            paused.clone(),
            rows.clone(),
        );
        let target = target.clone();
        std::thread::spawn(move || {
            // Kept open for the session: the last minute's creators.
            let watch = Watch::start(&target).map_err(|u| u.to_string());
            let _ = run_in(&target, move || {
                while !quit.load(Ordering::Relaxed) {
                    let f = *filter.lock().unwrap_or_else(|p| p.into_inner());
                    let s = sample_here(f, rows.load(Ordering::Relaxed) as usize)
                        .map(|mut s| {
                            s.creators = Some(match &watch {
                                Ok(w) => w.creation().map_err(|u| u.to_string()),
                                Err(e) => Err(e.clone()),
                            });
                            s
                        })
                        .map_err(|e| format!("{e:#}"));
                    if tx.send(s).is_err() {
                        break;
                    }
                    let until =
                        Instant::now() + Duration::from_millis(interval_ms.load(Ordering::Relaxed));
                    while Instant::now() < until || paused.load(Ordering::Relaxed) {
                        if quit.load(Ordering::Relaxed) || kick.swap(false, Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        })
    };

    ratatui::crossterm::terminal::enable_raw_mode().context("terminal raw mode")?;
    let guard = TermGuard;
    ratatui::crossterm::execute!(
        std::io::stdout(),
        ratatui::crossterm::terminal::EnterAlternateScreen
    )?;
    let mut term =
        ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
    let mut app = App::new(target.name(), interval);
    let result = (|| -> anyhow::Result<()> {
        while !app.quit {
            while let Ok(s) = rx.try_recv() {
                app.push(s);
            }
            rows.store(
                term.size()?
                    .height
                    .saturating_sub(9 + CREATORS_HEIGHT)
                    .max(3) as u64,
                Ordering::Relaxed,
            );
            term.draw(|f| app.draw(f))?;
            if event::poll(Duration::from_millis(200))? {
                if let Event::Key(k) = event::read()? {
                    if k.kind == KeyEventKind::Press {
                        app.key(k);
                    }
                }
            }
            if app.refresh_now {
                app.refresh_now = false;
                *filter.lock().unwrap_or_else(|p| p.into_inner()) = app.filter;
                kick.store(true, Ordering::Relaxed);
            }
            interval_ms.store(app.interval.as_millis() as u64, Ordering::Relaxed);
            paused.store(app.paused, Ordering::Relaxed);
        }
        Ok(())
    })();
    quit.store(true, Ordering::Relaxed);
    drop(rx);
    drop(guard);
    // The sampler may be inside a long dump: do not wait for it.
    drop(sampler);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;

    fn sample(count: u64, drop: u64, at: Instant) -> Sample {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/samples/conntrack_L_plain.txt"
        ))
        .unwrap();
        let mut a = Agg::new(config(Filter::default(), Timeouts::default(), 15));
        crate::table::text::parse_bytes(text.as_bytes(), &mut a);
        Sample {
            at,
            summary: a.finish(),
            count,
            max: Some(262_144),
            buckets: Some(262_144),
            drop: Some(drop),
            early_drop: Some(0),
            insert_failed: Some(3),
            dump_secs: 0.01,
            interrupted: false,
            creators: None,
        }
    }

    fn screen(app: &App) -> String {
        let mut term = ratatui::Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| app.draw(f)).unwrap();
        let buf = term.backend().buffer().clone();
        let mut s = String::new();
        for y in 0..24 {
            for x in 0..80 {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        s
    }

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn renders_in_80x24_with_rates() {
        let mut app = App::new(Some("gw".into()), Duration::from_secs(2));
        let t0 = Instant::now();
        app.push(Ok(sample(1000, 10, t0)));
        app.push(Ok(sample(1000, 30, t0 + Duration::from_secs(2))));
        let s = screen(&app);
        assert!(s.contains("ctdoctor top — netns gw"), "{s}");
        assert!(s.contains("count 1,000 / max 262,144 (0.4%)"), "{s}");
        // (30 − 10) / 2 s.
        assert!(s.contains("drop 10.0/s"), "{s}");
        assert!(s.contains("insert_failed 0.0/s"), "{s}");
        assert!(s.contains("TIME_WAIT"), "{s}");
        assert!(s.contains("10.57.0.98"), "{s}");
        assert!(s.contains("tcp/443"), "{s}");
        assert!(s.contains("sources (779)"), "{s}");
    }

    #[test]
    fn the_creators_panel_shows_rates_and_shares_or_why_not() {
        use crate::table::creators::Ranked;
        let mut app = App::new(None, Duration::from_secs(2));
        let mut s = sample(1000, 0, Instant::now());
        let ip = |s: &str| s.parse().unwrap();
        s.creators = Some(Ok(Creation {
            window_ms: 10_000,
            new_events: 12_500,
            lost: 0,
            sources: vec![
                Ranked {
                    key: ip("10.9.0.7"),
                    per_sec: 1000.0,
                    err_per_sec: 0.0,
                },
                Ranked {
                    key: ip("10.9.0.8"),
                    per_sec: 250.0,
                    err_per_sec: 0.0,
                },
            ],
            dports: vec![Ranked {
                key: (6, 8080),
                per_sec: 1250.0,
                err_per_sec: 0.0,
            }],
        }));
        app.push(Ok(s));
        let screen = screen(&app);
        assert!(
            screen.contains("creators: sources, last min (1,250/s new)"),
            "{screen}"
        );
        let row = screen.lines().find(|l| l.contains("10.9.0.7")).unwrap();
        assert!(row.contains("1,000 80.0"), "{row}");
        // The panel is the last one with tcp/8080 (the dump's table has it too).
        let row = screen.lines().rfind(|l| l.contains("tcp/8080")).unwrap();
        assert!(row.contains("1,250  100"), "{row}");
        // Not watched: the reason, on screen.
        let mut s = sample(1000, 0, Instant::now());
        s.creators = Some(Err("conntrack NEW events: needs root".into()));
        app.push(Ok(s));
        let screen = super::tests::screen(&app);
        assert!(
            screen.contains("not watched: conntrack NEW events: needs root"),
            "{screen}"
        );
    }

    #[test]
    fn rates_read_a_counter_wrap_as_check_does() {
        // A sum of per-CPU u32 counters: one CPU wrapping makes it fall.
        let max = u64::from(u32::MAX);
        assert_eq!(rate(Some(max - 4), Some(5), 2.0), Some(5.0));
        assert_eq!(rate(Some(10), Some(30), 2.0), Some(10.0));
        assert_eq!(rate(Some(10), Some(10), 2.0), Some(0.0));
        assert_eq!(rate(None, Some(10), 2.0), None);
        assert_eq!(rate(Some(10), None, 2.0), None);
        assert_eq!(rate(Some(10), Some(30), 0.0), None);
        // The same rise as checks::conntrack judges.
        assert_eq!(
            crate::counters::rise_u32(5, Some(max - 4)),
            Some(10),
            "one rule for both"
        );
        // On screen: a wrap between two samples is a rate, not "–".
        let mut app = App::new(None, Duration::from_secs(2));
        let t0 = Instant::now();
        app.push(Ok(sample(1000, max - 4, t0)));
        app.push(Ok(sample(1000, 5, t0 + Duration::from_secs(2))));
        let s = screen(&app);
        assert!(s.contains("drop 5.0/s"), "{s}");
    }

    #[test]
    fn samples_come_from_the_conntrack_and_stat_facts() {
        let files: crate::host::conntrack::Files = [
            ("nf_conntrack_count", "17\n"),
            ("nf_conntrack_max", "262144\n"),
            ("nf_conntrack_buckets", "65536\n"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), Ok(v.as_bytes().to_vec())))
        .collect();
        let ct = crate::host::conntrack::parse(&files);
        let stat = crate::host::stat::parse(
            "entries drop early_drop insert_failed\n\
             00000011 00000010 00000001 00000002\n\
             00000011 00000001 00000001 00000000\n",
        );
        let summary = sample(0, 0, Instant::now()).summary;
        let s = Sample::from_facts(summary.clone(), &ct, &stat, 0.5, true);
        assert_eq!(
            (s.count, s.max, s.buckets),
            (17, Some(262_144), Some(65_536))
        );
        assert_eq!(
            (s.drop, s.early_drop, s.insert_failed),
            (Some(17), Some(2), Some(2))
        );
        assert!(s.interrupted);
        // Unavailable facts: the dump's own count, everything else unknown.
        let gone = || crate::host::Unavailable::Missing { what: "x".into() };
        let s = Sample::from_facts(summary, &Err(gone()), &Err(gone()), 0.5, false);
        assert_eq!(
            (s.count, s.max, s.drop),
            (s.summary.entries_seen, None, None)
        );
    }

    #[test]
    fn keys_pause_sort_filter_help_quit() {
        let mut app = App::new(None, Duration::from_secs(2));
        let t0 = Instant::now();
        app.push(Ok(sample(1000, 0, t0)));
        app.key(key('p'));
        assert!(app.paused);
        app.push(Ok(sample(2000, 0, t0)));
        assert_eq!(
            app.cur.as_ref().unwrap().count,
            1000,
            "paused ignores new dumps"
        );
        assert!(screen(&app).contains("[PAUSED]"));
        app.key(key('s'));
        assert_eq!(app.sort, Sort::Key);
        app.key(key('f'));
        for c in "proto=udp port=53".chars() {
            app.key(key(c));
        }
        app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(app.filter.proto, Some(17));
        assert_eq!(app.filter.port, Some(53));
        assert!(app.refresh_now);
        app.key(key('f'));
        app.key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
        app.key(key('X'));
        app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert!(app.error.as_deref().unwrap_or("").starts_with("filter:"));
        app.key(key('?'));
        assert!(screen(&app).contains("this help"));
        app.key(key('x'));
        assert!(!app.help);
        app.key(key('q'));
        assert!(app.quit);
    }

    #[test]
    fn a_share_of_100_percent_is_not_cut_to_00_0() {
        let mut app = App::new(None, Duration::from_secs(2));
        let mut s = sample(1000, 0, Instant::now());
        s.summary.by_proto = Some(vec![agg::Count {
            key: "tcp".into(),
            count: 1000,
            percent: 100.0,
        }]);
        app.push(Ok(s));
        let screen = screen(&app);
        let row = screen
            .lines()
            .find(|l| l.contains("│tcp"))
            .unwrap_or_else(|| panic!("no tcp row:\n{screen}"));
        assert!(row.contains("1,000  100│"), "{row}");
        assert!(!screen.contains("00.0"), "{screen}");
    }

    #[test]
    fn ctrl_u_clears_the_filter_input() {
        let mut app = App::new(None, Duration::from_secs(2));
        app.key(key('f'));
        for c in "proto=udp".chars() {
            app.key(key(c));
        }
        app.key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!(app.input.as_deref(), Some(""));
        for c in "port=53".chars() {
            app.key(key(c));
        }
        app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(app.error, None);
        assert_eq!((app.filter.proto, app.filter.port), (None, Some(53)));
        assert_eq!(app.filter_text, "port=53");
        // Other control keys are not text; Ctrl-C quits from here too.
        app.key(key('f'));
        app.key(KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL));
        assert_eq!(app.input.as_deref(), Some("port=53"));
        app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.quit);
    }
}
