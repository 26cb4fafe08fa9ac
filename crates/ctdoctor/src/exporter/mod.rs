//! `ctdoctor exporter`: Prometheus metrics for one node.
//!
//! Pure core: [`metrics`] turns facts, findings and table state into
//! exposition text through [`encode`]. The edges: [`refresh`] reads facts
//! and runs the checks in the background, [`track`] follows each
//! namespace's table with ctnetlink events and paced resync dumps, and
//! [`http`] serves what they last published. A scrape re-reads only the
//! count, the max and the stat counters ([`live`]: preads of files opened
//! once in each namespace); it never dumps and never waits on a slow
//! source. Serving starts once the first facts are read (at most
//! [`FIRST_READ`]), so the first scrape is complete.
//!
//! Threads: the HTTP loop (main thread), the refresher, one resync thread,
//! one event thread per followed namespace. SIGTERM and SIGINT stop the
//! HTTP loop; the others see [`Shutdown`] within a quarter second.
//!
//! Not for: judging (checks) or reading (host); alert rules and dashboards
//! (deploy/).

pub mod drops;
pub mod encode;
pub mod http;
pub mod idmap;
pub mod live;
pub mod metrics;
pub mod refresh;
pub mod state;
pub mod track;

use anyhow::{Context, Result};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A stop flag threads can sleep on.
#[derive(Default)]
pub struct Shutdown {
    flag: AtomicBool,
    m: Mutex<()>,
    cv: Condvar,
}

impl Shutdown {
    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.cv.notify_all();
    }
    /// Sleep up to `d`, waking early on stop.
    pub fn sleep(&self, d: Duration) {
        let deadline = Instant::now() + d;
        let mut g = self.m.lock().unwrap_or_else(|p| p.into_inner());
        while !self.stopped() {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            g = match self.cv.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Everything `ctdoctor exporter` was asked for.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub refresh: refresh::Config,
    /// None: `--table off`.
    pub table: Option<state::Mode>,
    pub table_resync: Duration,
    pub limits: http::Limits,
    /// `--drop-reasons`: run the drop census (`drops`).
    pub drop_reasons: bool,
}

/// What the HTTP handler renders from.
struct Served {
    board: Arc<RwLock<refresh::Board>>,
    interval: Duration,
    drops: Option<Arc<Mutex<drops::Totals>>>,
}

impl Served {
    fn handle(&self, req: &http::Request, stats: &http::Stats) -> http::Response {
        match req.path.as_str() {
            "/metrics" => {
                let format = if http::wants_openmetrics(req.accept.as_deref()) {
                    encode::Format::OpenMetrics
                } else {
                    encode::Format::Text
                };
                http::Response {
                    status: 200,
                    content_type: format.content_type(),
                    body: self.render(stats, format).into_bytes(),
                }
            }
            "/healthz" => self.health(),
            "/" => http::Response {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: self.landing().into_bytes(),
            },
            _ => http::Response::text(404, "not found: try /metrics, /healthz or /\n"),
        }
    }

    /// The exposition of the last published state.
    pub fn render(&self, stats: &http::Stats, format: encode::Format) -> String {
        let b = self.board.read().unwrap_or_else(|p| p.into_inner()).clone();
        // Count, max and stat counters as they are now.
        let facts: Vec<crate::snapshot::Facts> = b
            .namespaces
            .iter()
            .map(|p| match &p.live {
                Some(l) => live::apply(&p.facts, &l.read()),
                None => (*p.facts).clone(),
            })
            .collect();
        let views: Vec<Option<state::TableView>> = b
            .namespaces
            .iter()
            .zip(&facts)
            .map(|(p, f)| p.tracker.as_ref().map(|t| honest(t.view(), f)))
            .collect();
        let ns: Vec<metrics::Netns<'_>> = b
            .namespaces
            .iter()
            .zip(&views)
            .zip(&facts)
            .map(|((p, v), facts)| metrics::Netns {
                facts,
                findings: &p.findings,
                table: v.as_ref(),
                log_lines: p.log_lines,
                time_to_full_secs: p.time_to_full_secs,
                facts_age_secs: p.read_at.elapsed().as_secs_f64(),
                owner: p.owner.as_deref(),
            })
            .collect();
        let m = metrics::Machine {
            version: env!("CARGO_PKG_VERSION"),
            refresh_secs: b.refresh_secs,
            unattributed_log_lines: b.unattributed_log_lines,
            http_requests: stats.responses.iter().map(|(k, v)| (*k, *v)).collect(),
            http_rejected: stats.rejected,
            drops: self
                .drops
                .as_ref()
                .map(|d| d.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        };
        metrics::render(&ns, &m, format)
    }

    /// 200 while facts are fresh (read within 3 intervals, at least 60 s).
    fn health(&self) -> http::Response {
        let b = self.board.read().unwrap_or_else(|p| p.into_inner());
        let limit = (self.interval * 3).max(Duration::from_secs(60));
        match b.last_refresh {
            None => http::Response::text(503, "starting: no facts read yet\n"),
            Some(t) if t.elapsed() > limit => http::Response::text(
                503,
                format!(
                    "stale: facts last read {:.0} s ago (a source is hanging?)\n",
                    t.elapsed().as_secs_f64()
                ),
            ),
            Some(t) => http::Response::text(
                200,
                format!(
                    "ok: {} namespace(s), facts read {:.1} s ago\n",
                    b.namespaces.len(),
                    t.elapsed().as_secs_f64()
                ),
            ),
        }
    }

    /// The landing page: what is exported and how each source is doing.
    fn landing(&self) -> String {
        let b = self.board.read().unwrap_or_else(|p| p.into_inner()).clone();
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut h = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>ctdoctor exporter</title></head><body>\n\
             <h1>ctdoctor exporter</h1>\n<p><a href=\"/metrics\">/metrics</a> (Prometheus text 0.0.4; \
             OpenMetrics when asked) · <a href=\"/healthz\">/healthz</a> · reference: docs/metrics.md</p>\n",
        );
        h.push_str("<h2>Namespaces</h2>\n<ul>\n");
        for p in &b.namespaces {
            let (ino, name) = metrics::netns_labels(&p.facts);
            h.push_str(&format!("<li>netns {} {}", esc(&ino), esc(&name)));
            let bad: Vec<String> = p
                .facts
                .sources
                .iter()
                .filter(|s| !s.ok && s.error.as_deref() != Some("not selected"))
                .map(|s| format!("{}: {}", s.name, s.error.clone().unwrap_or_default()))
                .collect();
            if let Some(t) = &p.tracker {
                if let Some(e) = t.view().error {
                    h.push_str(&format!(" — table: {}", esc(&e)));
                }
            }
            if !bad.is_empty() {
                h.push_str(&format!(" — unavailable: {}", esc(&bad.join("; "))));
            }
            h.push_str("</li>\n");
        }
        for e in &b.errors {
            h.push_str(&format!("<li>not read: {}</li>\n", esc(e)));
        }
        h.push_str("</ul>\n<h2>Metrics</h2>\n<table border=\"1\" cellpadding=\"3\">\n<tr><th>name</th><th>type</th><th>labels</th><th>help</th></tr>\n");
        for f in metrics::FAMILIES {
            h.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                f.name,
                f.kind.as_str(),
                f.labels.join(", "),
                esc(f.help)
            ));
        }
        h.push_str("</table>\n<h2>Rules</h2>\n<ul>\n");
        for r in crate::checks::RULES {
            h.push_str(&format!(
                "<li><code>{}</code>: {}</li>\n",
                r.id,
                esc(r.summary)
            ));
        }
        h.push_str("</ul>\n</body></html>\n");
        h
    }
}

/// A view whose `in_sync` also says the per-state sum agrees with the
/// kernel's count (events mode; [`state::agrees`]): entries that expired
/// without a DESTROY event must not pass as complete counts.
fn honest(mut v: state::TableView, f: &crate::snapshot::Facts) -> state::TableView {
    if v.mode == state::Mode::Events {
        if let (Some(c), Ok(ct)) = (&v.counts, &f.conntrack) {
            v.in_sync = v.in_sync && state::agrees(state::sum(c), ct.count);
        }
    }
    v
}

/// The longest the server waits for the first reading before it serves.
pub const FIRST_READ: Duration = Duration::from_secs(2);

/// Wait (polling, bounded by [`FIRST_READ`]) for the refresher's first
/// publication.
fn wait_first_read(board: &RwLock<refresh::Board>, stop: &Shutdown) {
    let end = Instant::now() + FIRST_READ;
    while Instant::now() < end && !stop.stopped() {
        let done = board
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_refresh
            .is_some();
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Run the exporter until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<()> {
    let listener = TcpListener::bind(&cfg.listen)
        .with_context(|| format!("listening on {} (--listen)", cfg.listen))?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(Shutdown::default());
    let (sig_read, sig_write) = std::os::unix::net::UnixStream::pair()?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(sig, sig_write.try_clone()?)
            .context("installing the SIGTERM handler")?;
    }
    let board = Arc::new(RwLock::new(refresh::Board::default()));
    let census = if cfg.drop_reasons {
        let (totals, h) = drops::start(stop.clone())
            .map_err(|u| anyhow::anyhow!("--drop-reasons: cannot count drops: {u}"))?;
        Some((totals, h))
    } else {
        None
    };
    let tracking = cfg
        .table
        .map(|mode| track::Tracking::new(mode, cfg.table_resync, stop.clone()));
    let mut threads = Vec::new();
    if let Some(t) = &tracking {
        let t = t.clone();
        threads.push(
            std::thread::Builder::new()
                .name("ct-resync".into())
                .spawn(move || t.resync_loop())?,
        );
    }
    {
        let (b, t, s, c) = (
            board.clone(),
            tracking.clone(),
            stop.clone(),
            cfg.refresh.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .name("refresh".into())
                .spawn(move || refresh::run(c, b, t, s))?,
        );
    }
    // A scrape right after start must find every family, not a partial
    // exposition: the socket is bound (connections wait in its queue), and
    // serving starts once the first facts are read, or after FIRST_READ.
    wait_first_read(&board, &stop);
    eprintln!("ctdoctor exporter: listening on http://{addr}/metrics");
    let (drop_totals, drop_thread) = match census {
        Some((t, h)) => (Some(t), Some(h)),
        None => (None, None),
    };
    let served = Served {
        board,
        interval: cfg.refresh.interval,
        drops: drop_totals,
    };
    let result = http::serve(listener, cfg.limits, sig_read.as_raw_fd(), |req, stats| {
        served.handle(req, stats)
    });
    stop.stop();
    if let Some(t) = &tracking {
        t.wake();
    }
    // The refresher finishes its current reading; the resync thread may be
    // inside a dump (seconds at 1M entries): not waited for.
    if let Some(h) = threads.pop() {
        let _ = h.join();
    }
    // Its tracing instance is removed when it ends (within one POLL).
    if let Some(h) = drop_thread {
        let _ = h.join();
    }
    result.context("serving HTTP")?;
    eprintln!("ctdoctor exporter: stopped");
    Ok(())
}
