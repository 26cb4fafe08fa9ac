//! Who creates conntrack entries, measured live: a ctnetlink socket joined
//! to the NEW event group of one namespace, feeding
//! [`crate::table::creators::Creators`] on a thread of its own. `top`
//! keeps one open for its creators panel; `check --sample` opens one for
//! the sample's window and records what it saw as the `probe:creators`
//! fact ([`Creation`]), so a snapshot replays it.
//!
//! The exporter does not use this: its tracker already follows every
//! event of the namespace and feeds its own window.
//!
//! Bounded: events are counted into the window's fixed-size summaries,
//! never stored; a burst the socket buffer cannot hold is counted as lost
//! (ENOBUFS) and said.

use super::fact::Unavailable;
use super::netns::Target;
use crate::table::creators::{Creators, Ranked};
use ctnetlink::events::groups;
use ctnetlink::{Event, Socket};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The capture key of a sample's creators.
pub const PROBE: &str = "probe:creators";

/// How long the thread waits for events before looking at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// What a watch saw: the top creators over its window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Creation {
    /// How long it watched (ms); rates are over this or the last minute,
    /// whichever is shorter.
    pub window_ms: u64,
    /// NEW events received.
    pub new_events: u64,
    /// Times the kernel could not deliver events (socket buffer full):
    /// the counts are then lower bounds of the truth.
    pub lost: u64,
    /// Top sources by entries created per second.
    pub sources: Vec<Ranked<IpAddr>>,
    /// Top (protocol number, destination port)s.
    pub dports: Vec<Ranked<(u8, u16)>>,
}

impl Creation {
    /// New entries per second over the window.
    pub fn per_sec(&self) -> f64 {
        let secs = (self.window_ms as f64 / 1000.0).clamp(0.1, 60.0);
        self.new_events as f64 / secs
    }
}

#[derive(Default)]
struct Shared {
    creators: Creators,
    lost: u64,
    error: Option<String>,
}

/// A NEW-event subscription in one namespace, until dropped.
pub struct Watch {
    started: Instant,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Subscribe in `target`'s namespace. Fails when the socket cannot be
    /// opened or joined (no CAP_NET_ADMIN, conntrack netlink missing), or
    /// the namespace sends no events (`nf_conntrack_events = 0`).
    pub fn start(target: &Target) -> Result<Watch, Unavailable> {
        let what = "conntrack NEW events";
        // Subscribing would load nf_conntrack_netlink and nf_conntrack.
        super::entries::require_conntrack().map_err(|e| Unavailable::Missing {
            what: format!("{what}: {e:#}"),
        })?;
        let events = super::netns::run_in(target, || {
            std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_events")
        });
        if let Ok(Ok(s)) = &events {
            if s.trim() == "0" {
                return Err(Unavailable::Failed {
                    what: what.into(),
                    detail: "net.netfilter.nf_conntrack_events is 0: the kernel sends none".into(),
                });
            }
        }
        let mut sock = Socket::open_in(target)
            .and_then(|mut s| s.subscribe(groups::NEW).map(|()| s))
            .map_err(|e| {
                if matches!(e.errno(), Some(libc::EPERM) | Some(libc::EACCES)) {
                    Unavailable::permission(what)
                } else {
                    Unavailable::Failed {
                        what: what.into(),
                        detail: e.to_string(),
                    }
                }
            })?;
        let started = Instant::now();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("ct-creators".into())
            .spawn(move || follow(&mut sock, started, &sh, &st))
            .map_err(|e| Unavailable::Failed {
                what: what.into(),
                detail: e.to_string(),
            })?;
        Ok(Watch {
            started,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// What it saw so far (the last minute's top).
    pub fn creation(&self) -> Result<Creation, Unavailable> {
        let now = ms(self.started);
        let sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = &sh.error {
            return Err(Unavailable::Failed {
                what: "conntrack NEW events".into(),
                detail: e.clone(),
            });
        }
        let (sources, dports) = sh.creators.top(now);
        Ok(Creation {
            window_ms: now,
            new_events: sh.creators.total(),
            lost: sh.lost,
            sources,
            dports,
        })
    }

    /// Stop watching and say what it saw.
    pub fn finish(mut self) -> Result<Creation, Unavailable> {
        self.halt();
        self.creation()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.halt();
    }
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The thread: count NEW events until stopped or the socket fails.
fn follow(sock: &mut Socket, started: Instant, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let mut batch: Vec<Option<(IpAddr, u8, u16)>> = Vec::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        batch.clear();
        let r = sock.recv_events(Some(POLL), |ev| match ev {
            Event::New(e) => batch.push(e.summary().ok().and_then(|f| {
                let o = f.orig?;
                Some((o.src, o.proto, o.dst_port))
            })),
            Event::Lost => batch.push(None),
            Event::Update(_) | Event::Destroy(_) => {}
        });
        let now = ms(started);
        let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
        for ev in &batch {
            match ev {
                Some((src, proto, dport)) => sh.creators.add(now, *src, *proto, *dport),
                None => sh.lost += 1,
            }
        }
        if let Err(e) = r {
            sh.error = Some(format!("ctnetlink events: {e}"));
            return;
        }
    }
}

/// The creators a sample measured, as recorded under `root` (a live root
/// seeded with the watch's result, a capture, or a tree's
/// `probe/creators`). Missing when nothing was measured (no `--sample`).
pub fn read(root: &super::Root) -> Result<Creation, Unavailable> {
    let bytes = root.probe(PROBE, || Err(Unavailable::Missing { what: PROBE.into() }))?;
    serde_json::from_slice(&bytes).map_err(|e| Unavailable::malformed(PROBE, e.to_string()))
}

/// A watch's result as the bytes [`read`] takes (for `Root::seeded`).
pub fn encode(r: &Result<Creation, Unavailable>) -> Result<Vec<u8>, Unavailable> {
    match r {
        Ok(c) => serde_json::to_vec(c).map_err(|e| Unavailable::malformed(PROBE, e.to_string())),
        Err(u) => Err(u.clone()),
    }
}
