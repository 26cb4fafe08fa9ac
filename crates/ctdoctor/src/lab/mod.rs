//! `ctdoctor lab`: reproduce a full conntrack table on a spare machine —
//! client, gateway and backend namespaces, nginx from the distribution as
//! the gateway's reverse proxy, real one-shot HTTP load — show the failure
//! as users see it (504s, connect timeouts), diagnose it with `check`, apply
//! a fix through the same code `tune` and `notrack` use, and prove whether
//! it was enough by running the same load again.
//!
//! Phases: prepare (namespaces, proxy, backend, a warm-up; `check` on the
//! gateway must show no critical), fill (the gateway's table reaches its
//! max), before (the load against the full table), fix, after (the same
//! load). Everything it makes is a guard — namespaces, processes, the
//! lowered global max — undone on success, error, panic and (through the
//! command's signal handler) Ctrl-C / SIGTERM.
//!
//! Not for: load testing (bounded, loopback-free, inside its own
//! namespaces only).

pub mod backend;
pub mod fix;
pub mod flood;
pub mod journal;
pub mod load;
pub mod plot;
pub mod proxy;
pub mod report;
pub mod scenario;
pub mod topo;
pub mod verdict;
pub mod watch;

use crate::checks::Finding;
use anyhow::{bail, Context, Result};
use report::{Phase, Report};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use scenario::{Scenario, SCENARIOS};

/// The backend port the syn-flood aims at (the backend drops it: no reply).
pub const FLOOD_PORT: u16 = 9999;

/// How the lab runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    /// Requests per second of the load.
    pub rate: f64,
    /// Length of the before and after phases.
    pub phase: Duration,
    /// The gateway's table is lowered to this max for the run (global:
    /// restored at the end); 0 = choose.
    pub max: u64,
    /// Namespace name prefix.
    pub prefix: String,
    /// Remove namespaces an earlier run left.
    pub force: bool,
    /// Leave the lab up at the end.
    pub keep: bool,
    /// Fixes to apply after the failing phase, then the load again.
    pub fix: Vec<fix::Kind>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scenario: Scenario::default(),
            rate: Scenario::default().default_rate,
            phase: Duration::from_secs(15),
            max: 0,
            prefix: "ctdlab".into(),
            force: false,
            keep: false,
            fix: Vec::new(),
        }
    }
}

/// Entries the gateway's table gets per request: the client's connection
/// to the proxy and the proxy's to the backend.
pub const ENTRIES_PER_REQUEST: u64 = 2;
/// The lowest max the lab lowers the table to.
pub const MIN_MAX: u64 = 4096;

fn interrupted(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted: the lab was stopped, everything it made is being removed");
    }
    Ok(())
}

/// Sleep up to `d`, waking early when `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        interrupted(stop)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The largest table of every other namespace (a lowered max must leave
/// them room).
fn largest_other_count(skip: &[String]) -> u64 {
    crate::host::netns::discover()
        .into_iter()
        .filter(|n| n.name.as_ref().is_none_or(|name| !skip.contains(name)))
        .filter_map(|n| {
            netns::run_in(&n.target, || {
                crate::host::read_u64(
                    &crate::host::Root::live(),
                    "proc/sys/net/netfilter/nf_conntrack_count",
                )
                .ok()
            })
            .ok()
            .flatten()
        })
        .max()
        .unwrap_or(0)
}

/// `check` on the gateway, as `ctdoctor check --netns GW --deep` runs it.
pub fn check_gateway(gw: &netns::Target) -> Result<Vec<Finding>> {
    let c = crate::host::collect_one(
        std::path::Path::new("/"),
        gw,
        &crate::host::Collect {
            deep: true,
            ..crate::host::Collect::default()
        },
    )?;
    Ok(crate::checks::run_all(&c.snapshot))
}

/// Run the load for `spec` while the watcher records; the phase's numbers.
fn load_phase(
    name: &str,
    lab: &Lab,
    spec: load::Spec,
    stop: &AtomicBool,
    mid: Option<&mut dyn FnMut() -> Result<()>>,
) -> Result<Phase> {
    let from = lab.started.elapsed().as_secs_f64();
    let log_before = lab.proxy.error_log().len();
    let run = std::thread::scope(|s| -> Result<load::Run> {
        let h = s.spawn(|| load::run(&lab.topo.client.target(), topo::proxy_addr(), spec, stop));
        if let Some(f) = mid {
            nap(spec.duration / 2, stop)?;
            f()?;
        }
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    interrupted(stop)?;
    // One more tick after the last request, so the window holds the end.
    nap(Duration::from_millis(1100), stop)?;
    let to = lab.started.elapsed().as_secs_f64();
    let ticks = watch::window(&lab.watcher.ticks(), from, to);
    let log = lab.proxy.error_log();
    let upstream_timeouts = log
        .get(log_before..)
        .unwrap_or("")
        .matches("upstream timed out (110: Connection timed out) while connecting to upstream")
        .count() as u64;
    Ok(Phase::new(name, from, run, &ticks, upstream_timeouts))
}

/// Set by a caller that holds the global-knob lock for the lab (the test
/// suite, which takes it around a whole test).
pub const LOCK_HELD_ENV: &str = netns::guard::HELD_ENV;

/// The global-knob lock, exclusive for the run: no other ctdoctor process
/// (another lab, a kernel test) sees the lowered max. Waits for it (bounded,
/// interruptible) when someone holds it.
fn global_lock(stop: &AtomicBool) -> Result<Option<netns::guard::GlobalLock>> {
    if std::env::var_os(LOCK_HELD_ENV).is_some() {
        return Ok(None);
    }
    let mut said = false;
    let end = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(l) = netns::guard::GlobalLock::try_exclusive()? {
            return Ok(Some(l));
        }
        if !said {
            eprintln!(
                "ctdoctor lab: waiting for {}: another ctdoctor process (a lab, or kernel tests) is using the global conntrack knobs",
                netns::guard::global_lock_path().display()
            );
            said = true;
        }
        if Instant::now() > end {
            bail!("gave up after 10 min waiting for the global-knob lock");
        }
        nap(Duration::from_millis(200), stop)?;
    }
}

/// Everything the lab made, dropped in reverse order of making.
struct Lab {
    started: Instant,
    /// The gateway namespace's inode, for the report.
    inode: u64,
    watcher: watch::Watcher,
    proxy: proxy::Proxy,
    backend: backend::Backend,
    /// The lowered max and buckets (global), put back on drop.
    max: Vec<netns::guard::Knob>,
    topo: topo::Topology,
}

impl Lab {
    /// The namespaces, the backend, the proxy in the gateway and the
    /// watcher of its table; `started` is the run's time zero.
    fn start(prefix: &str, started: Instant) -> Result<Lab> {
        let topo = topo::Topology::create(prefix)?;
        let gw = topo.gateway.target();
        let inode = topo.gateway.inode()?;
        let backend = backend::Backend::start(topo.backend.name(), topo::backend_addr(), &gw)?;
        let proxy = proxy::Proxy::start(
            &gw,
            topo.gateway.name(),
            &topo.client.target(),
            topo::proxy_addr(),
            topo::backend_addr(),
        )?;
        let watcher = watch::Watcher::start(gw, inode, started);
        Ok(Lab {
            started,
            inode,
            watcher,
            proxy,
            backend,
            max: Vec::new(),
            topo,
        })
    }

    /// `--keep`: leave the namespaces, the proxy and the backend running
    /// (the global max is restored all the same); `ctdoctor lab --teardown`
    /// removes them.
    fn keep(self) {
        let Lab {
            watcher,
            proxy,
            backend,
            max,
            topo,
            ..
        } = self;
        drop(watcher);
        drop(max);
        proxy.keep();
        backend.keep();
        let _ = topo.keep();
    }
}

/// Run the lab. `stop` (set by the command's SIGINT/SIGTERM handler) ends
/// it early; every guard then undoes what it made.
pub fn run(opts: &Options, stop: &AtomicBool) -> Result<Report> {
    may_start(opts)?;
    let _lock = global_lock(stop)?;
    let mut lab = Lab::start(&opts.prefix, Instant::now())?;
    interrupted(stop)?;
    let (prepare, healthy) = warm_up(&lab, opts, stop)?;
    let max = lower_max(&mut lab, opts)?;
    // Declared after `lab`: the fix's change sets are rolled back before
    // the lab's guards put the max back.
    let mut undo = fix::Undo::new(&opts.prefix)?;
    let fill_started = Instant::now();
    let ran = with_flood(&lab, opts, max, || {
        phases(&lab, opts, max, fill_started, &mut undo, stop)
    })?;
    let report = report_of(&lab, opts, max, prepare, &healthy, ran);
    // The fix's change sets first (a raised max goes back to the lab's),
    // then the lab's own guards.
    drop(undo);
    if opts.keep {
        lab.keep();
    } else {
        drop(lab);
    }
    // The knobs are back (or someone else owns them now): the journal is done.
    journal::done(&opts.prefix);
    Ok(report)
}

/// Refuse to start without root, or while the lab's namespaces exist
/// (`--force` removes them).
fn may_start(opts: &Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab needs root: it creates network namespaces and changes the global nf_conntrack_max");
    }
    let left = topo::existing(&opts.prefix);
    if !left.is_empty() {
        if !opts.force {
            bail!(
                "the lab's namespaces exist already ({}): another lab runs, or one was kept (--keep). \
                 Remove them with `ctdoctor lab --teardown` (or run with --force)",
                left.join(", ")
            );
        }
        topo::teardown(&opts.prefix)?;
    }
    Ok(())
}

/// Prepare: a short warm-up at a tenth of the rate must succeed, and the
/// gateway must look healthy to `check`. The warm-up, and `check`'s
/// findings.
fn warm_up(lab: &Lab, opts: &Options, stop: &AtomicBool) -> Result<(Phase, Vec<Finding>)> {
    let warm = load::Spec {
        rate: (opts.rate / 10.0).max(10.0),
        duration: Duration::from_secs(2),
        ..load::Spec::default()
    };
    let prepare = load_phase("prepare", lab, warm, stop, None)?;
    if prepare.ok * 10 < prepare.requests * 9 {
        bail!(
            "the lab's network does not work: only {} of {} warm-up requests succeeded",
            prepare.ok,
            prepare.requests
        );
    }
    let healthy = check_gateway(&lab.topo.gateway.target())?;
    Ok((prepare, healthy))
}

/// Fill, first step: lower the (global) max so the scenario's traffic
/// fills the gateway's table, the way a busy gateway's fills; journaled,
/// and restored when the lab's guards drop. The max.
fn lower_max(lab: &mut Lab, opts: &Options) -> Result<u64> {
    let max = choose_max(lab, opts)?;
    journal::record(&opts.prefix, max)?;
    // The hash shrinks with it (max = buckets, as the kernel sizes a table
    // since 5.15): early drop scans a few buckets from the new entry's, so
    // a small table in a huge hash would find nothing to evict.
    lab.max.push(
        netns::guard::Knob::set("net/netfilter/nf_conntrack_buckets", &max.to_string())
            .context("resizing the conntrack hash for the lab")?,
    );
    lab.max.push(
        netns::guard::Knob::set("net/netfilter/nf_conntrack_max", &max.to_string())
            .context("lowering nf_conntrack_max for the lab")?,
    );
    Ok(max)
}

/// Run `phases` with the scenario's SYN flood, if it has one, going from
/// the fill to the end of the failing phase (the end of `phases`).
fn with_flood<T>(
    lab: &Lab,
    opts: &Options,
    max: u64,
    phases: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let flood_stop = AtomicBool::new(false);
    let flood_sent = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        let flood = opts.scenario.syn_flood.then(|| {
            s.spawn(|| {
                flood::run(
                    &lab.topo.client.target(),
                    topo::CLIENT_ADDR,
                    std::net::SocketAddrV4::new(topo::BACKEND_ADDR, FLOOD_PORT),
                    // Fills the table in ~30 s and holds it at max (syn_sent
                    // is 120 s) against early drop.
                    (max as f64 / 30.0).max(200.0),
                    Duration::from_secs(180),
                    &flood_stop,
                    &flood_sent,
                )
            })
        });
        let r = phases();
        flood_stop.store(true, Ordering::Relaxed);
        if let Some(h) = flood {
            let _ = h.join();
        }
        r
    })
}

/// The phases after the max is lowered: fill, before (the load against
/// the full table, `check` halfway), and with `--fix` the fix and after
/// (the same load again).
fn phases(
    lab: &Lab,
    opts: &Options,
    max: u64,
    fill_started: Instant,
    undo: &mut fix::Undo,
    stop: &AtomicBool,
) -> Result<Ran> {
    fill_table(lab, opts, max, stop)?;
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let spec = load::Spec {
        rate: opts.rate,
        duration: opts.phase,
        ..load::Spec::default()
    };
    let mut findings = Vec::new();
    let mut take_check = || -> Result<()> {
        findings = check_gateway(&lab.topo.gateway.target())?;
        Ok(())
    };
    let before = load_phase("before", lab, spec, stop, Some(&mut take_check))?;
    let (fixed, after, steady) = if opts.fix.is_empty() {
        (None, None, None)
    } else {
        let fixed = apply_fix(lab, opts, &before, &findings, undo)?;
        let after = load_phase("after", lab, spec, stop, None)?;
        let steady = steady_after(lab, opts, &after);
        (Some(fixed), Some(after), steady)
    };
    Ok(Ran {
        fill_secs,
        before,
        findings,
        fixed,
        after,
        steady,
    })
}

/// `--fix`: apply the fixes to the gateway (the load's rate as measured
/// in the failing phase); what was done and when, for the report.
fn apply_fix(
    lab: &Lab,
    opts: &Options,
    before: &Phase,
    findings: &[Finding],
    undo: &mut fix::Undo,
) -> Result<report::Fix> {
    let at = lab.started.elapsed().as_secs_f64();
    let gw = fix::Gateway {
        name: lab.topo.gateway.name(),
        target: lab.topo.gateway.target(),
        rate: before.requests as f64 / opts.phase.as_secs_f64(),
    };
    let applied = fix::apply(&gw, &opts.fix, findings, undo)?;
    Ok(report::Fix {
        kinds: opts.fix.iter().map(|k| k.name().to_string()).collect(),
        changes: applied.changes,
        written: applied.written,
        evicted: applied.evicted,
        reasoning: applied.reasoning,
        journal: applied.journal,
        at: (at * 10.0).round() / 10.0,
        seconds: ((lab.started.elapsed().as_secs_f64() - at) * 10.0).round() / 10.0,
    })
}

/// plan's steady state for the after phase's measured rate, read while
/// the fix is still applied; None (said on stderr) when the gateway could
/// not be read: the verdict then rests on the count's trend alone.
fn steady_after(lab: &Lab, opts: &Options, after: &Phase) -> Option<verdict::Steady> {
    let rate = after.requests as f64 / opts.phase.as_secs_f64().max(1.0);
    let per_sec = rate * ENTRIES_PER_REQUEST as f64;
    fix::steady_state(&lab.topo.gateway.target(), per_sec)
        .map_err(|e| eprintln!("ctdoctor lab: plan's steady state for the verdict: {e:#}"))
        .ok()
        .flatten()
}

/// The run's report, verdict included.
fn report_of(
    lab: &Lab,
    opts: &Options,
    max: u64,
    prepare: Phase,
    healthy: &[Finding],
    ran: Ran,
) -> Report {
    let mut report = Report::new(
        opts,
        lab.proxy.name(),
        lab.topo.gateway.name(),
        lab.inode,
        max,
        ran.fill_secs,
        prepare,
        worst_of(healthy),
        ran.before,
        ran.findings,
    );
    report.fix = ran.fixed;
    report.after = ran.after;
    report.steady = ran.steady;
    (report.outcome, report.verdict) = report.judge();
    report
}

/// What the phases after the fill produced.
struct Ran {
    fill_secs: f64,
    before: Phase,
    findings: Vec<Finding>,
    fixed: Option<report::Fix>,
    after: Option<Phase>,
    /// plan's steady state at the end of the after phase.
    steady: Option<verdict::Steady>,
}

/// The max the run lowers the table to: `--max`, else 4096 or twice the
/// largest other namespace's count — refused when it would not fill, or
/// would make another namespace drop.
fn choose_max(lab: &Lab, opts: &Options) -> Result<u64> {
    let others = largest_other_count(&topo::names(&opts.prefix));
    let max = if opts.max > 0 {
        opts.max
    } else {
        opts.scenario.min_max.max(others.saturating_mul(2))
    };
    if max <= others {
        bail!(
            "--max {max} is at or below another namespace's {others} entries: that namespace would drop packets too"
        );
    }
    if opts.scenario.load_must_fill {
        let time_wait: u64 = lab
            .topo
            .gateway
            .proc_sys("net/netfilter/nf_conntrack_tcp_timeout_time_wait")?
            .parse()
            .unwrap_or(120);
        let demand = (opts.rate * (ENTRIES_PER_REQUEST * time_wait) as f64) as u64;
        if max * 2 > demand {
            bail!(
                "a max of {max} would not fill at {} requests/s (steady demand {demand} entries){}; \
                 raise --rate or give a smaller --max",
                opts.rate,
                if others > 0 {
                    format!(": another namespace holds {others} entries")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(max)
}

/// Bring the gateway's table to `max`, the scenario's way: its
/// `before_fill` (idle-clients: idle ESTABLISHED entries of leaky clients;
/// syn-flood: the path for the flood, already running), then the load
/// when it `load_fills`, then `when_full` (table-full: the TIME_WAIT ages
/// spread). Returns when the count reached max, or after 60 s.
fn fill_table(lab: &Lab, opts: &Options, max: u64, stop: &AtomicBool) -> Result<()> {
    let gw = lab.topo.gateway.target();
    if let Some(before_fill) = opts.scenario.before_fill {
        before_fill(&lab.topo, max)?;
    }
    let full = || {
        lab.watcher
            .last()
            .and_then(|t| t.count)
            .is_some_and(|c| c >= max)
    };
    let filled = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        // The load fills what is left; it stops when the table is full.
        let h = opts.scenario.load_fills.then(|| {
            s.spawn(|| {
                load::run(
                    &lab.topo.client.target(),
                    topo::proxy_addr(),
                    load::Spec {
                        rate: opts.rate,
                        duration: Duration::from_secs(60),
                        ..load::Spec::default()
                    },
                    &filled,
                )
            })
        });
        while started.elapsed() < Duration::from_secs(60)
            && !stop.load(Ordering::Relaxed)
            && !full()
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        filled.store(true, Ordering::Relaxed);
        match h {
            Some(h) => h
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .map(drop),
            None => Ok(()),
        }
    })?;
    if let Some(when_full) = opts.scenario.when_full.filter(|_| full()) {
        when_full(&gw)?;
    }
    interrupted(stop)
}

fn worst_of(f: &[Finding]) -> Option<Finding> {
    f.first().cloned()
}
