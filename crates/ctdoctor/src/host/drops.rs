//! The drop census's host side: a [`Session`] runs a [`Tracer`] over a
//! window and reads, in every namespace watched, the counters that explain
//! netfilter drops — conntrack's `drop`/`insert_failed`/`early_drop`
//! (/proc/thread-self/net/stat/nf_conntrack) and the packet counters of
//! nft rules that drop or reject (`nft -j list ruleset`, which shows
//! iptables-nft's rules too; iptables-legacy's are not read). Then it
//! resolves locations (/proc/kallsyms) and senders (/proc/PID/comm) and
//! hands everything to the pure `drops::report::build`.
//!
//! Order: the trace starts before the counters are first read and stops
//! after they are read last, so the counters' window lies inside the
//! census's and can never explain more drops than it saw.

use super::netns::Target;
use super::tracefs::{self, Tracer};
use super::Unavailable;
use crate::drops::census::Census;
use crate::drops::report::{self, DropReport, NetnsRise, RuleRise};
use crate::host::ruleset::Verdict;
use std::collections::BTreeMap;
use std::time::Instant;

/// Probe key of the census a `--sample` measured (seeded into each
/// namespace's reading, so a snapshot replays it).
pub const PROBE: &str = "probe:drops";

/// The census a sample measured, as recorded under `root`. Missing when
/// nothing was measured (no `--sample`).
pub fn read(root: &super::Root) -> Result<DropReport, Unavailable> {
    let bytes = root.probe(PROBE, || Err(Unavailable::Missing { what: PROBE.into() }))?;
    serde_json::from_slice(&bytes).map_err(|e| Unavailable::malformed(PROBE, e.to_string()))
}

/// A census's result as the bytes [`read`] takes (for `Root::seeded`).
pub fn encode(r: &Result<DropReport, Unavailable>) -> Result<Vec<u8>, Unavailable> {
    match r {
        Ok(c) => serde_json::to_vec(c).map_err(|e| Unavailable::malformed(PROBE, e.to_string())),
        Err(u) => Err(u.clone()),
    }
}

/// A namespace to read counters in, and how it is called in the report.
#[derive(Debug, Clone)]
pub struct Watched {
    pub label: String,
    pub target: Target,
}

/// Every namespace on the machine (`host` for the init one, the pinned
/// name, else the first process in it), or just `one`.
pub fn namespaces(one: Option<&Target>) -> Vec<Watched> {
    if let Some(t) = one {
        return vec![watched(t)];
    }
    super::netns::survey()
        .found
        .into_iter()
        .map(|f| Watched {
            label: match (&f.name, f.is_init, f.processes.first()) {
                (Some(n), _, _) => n.clone(),
                (None, true, _) => "host".into(),
                (None, false, Some(p)) => format!("{}[{}]", p.comm, p.pid),
                (None, false, None) => format!("inode {}", f.inode),
            },
            target: f.target,
        })
        .collect()
}

/// One namespace, as the caller named it (`host` for this one when it is
/// the init namespace).
pub fn watched(t: &Target) -> Watched {
    Watched {
        label: match t {
            Target::Current => current_label(),
            t => t.to_string(),
        },
        target: t.clone(),
    }
}

/// The calling thread's namespace: `host` when it is the init one.
fn current_label() -> String {
    let here = std::fs::read_link("/proc/thread-self/ns/net")
        .ok()
        .and_then(|l| super::netns::parse_ns_link(&l.to_string_lossy()));
    match here {
        Some(i) if super::netns::is_init(i, super::netns::init_inode()) => "host".into(),
        Some(i) => format!("inode {i}"),
        None => "this netns".into(),
    }
}

/// One reading of a namespace's counters.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// (drop, insert_failed, early_drop); `None`: conntrack not loaded.
    pub conntrack: Option<(u64, u64, u64)>,
    pub count: Option<u64>,
    pub max: Option<u64>,
    /// Drop/reject rules with a counter: key → (text, packets).
    pub rules: BTreeMap<String, (String, u64)>,
    /// TcpExt ListenDrops: SYNs and handshake ACKs a listener refused.
    pub listen_drops: Option<u64>,
    pub not_read: Vec<String>,
}

/// The counters of the namespace this thread is in, through a live
/// [`super::Root`] (which reads `proc/net` as the thread's, and falls back
/// to ctnetlink for the stat counters without conntrack's procfs).
fn read_here() -> Counters {
    let root = super::Root::live();
    // Loaded iff its sysctl exists (reading never loads a module).
    let mut c = Counters {
        max: super::read_u64(&root, "proc/sys/net/netfilter/nf_conntrack_max").ok(),
        ..Counters::default()
    };
    if c.max.is_some() {
        c.count = super::read_u64(&root, "proc/sys/net/netfilter/nf_conntrack_count").ok();
        match super::stat::read(&root) {
            Ok(s) => {
                c.conntrack = Some((
                    s.drop().unwrap_or(0),
                    s.insert_failed().unwrap_or(0),
                    s.early_drop().unwrap_or(0),
                ))
            }
            Err(u) => c.not_read.push(u.to_string()),
        }
    }
    c.listen_drops = root
        .read_text("proc/net/netstat")
        .and_then(|t| super::sockets::parse_netstat_section(&t, "TcpExt"))
        .ok()
        .and_then(|m| m.get("ListenDrops").copied());
    if super::consumers::module_present(std::path::Path::new("/"), "nf_tables").is_ok() {
        match super::consumers::run_tool("nft", &["-j", "list", "ruleset"]) {
            Ok(out) => match super::ruleset::parse_nft_json(&String::from_utf8_lossy(&out)) {
                Ok(rs) => {
                    for r in rs.rules {
                        let drops = matches!(r.verdict, Verdict::Drop | Verdict::Reject);
                        if let (true, Some(p)) = (drops, r.packets) {
                            let key = format!(
                                "{} {} {} {}",
                                r.family,
                                r.table,
                                r.chain,
                                r.handle
                                    .map(|h| h.to_string())
                                    .unwrap_or_else(|| r.position.to_string())
                            );
                            let text = format!(
                                "{} {} {}: {}",
                                r.family,
                                r.table,
                                r.chain,
                                without_counts(&r.text)
                            );
                            c.rules.insert(key, (text, p));
                        }
                    }
                }
                Err(e) => c.not_read.push(format!("nft -j list ruleset: {e}")),
            },
            // No nft: rule drops stay unattributed; said once per netns.
            Err(u) => c.not_read.push(u.to_string()),
        }
    }
    c
}

/// A rule's text without its counter's values (`counter packets 5 bytes
/// 300 drop` → `counter drop`): they change, the rule does not.
fn without_counts(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut words = text.split(' ').peekable();
    while let Some(w) = words.next() {
        out.push(w);
        if w == "counter" && words.peek() == Some(&"packets") {
            // packets N bytes M
            for _ in 0..4 {
                words.next();
            }
        }
    }
    out.join(" ")
}

/// Read `w`'s counters (entering its namespace).
pub fn read_counters(w: &Watched) -> Counters {
    match super::netns::run_in(&w.target, read_here) {
        Ok(c) => c,
        Err(e) => Counters {
            not_read: vec![e.to_string()],
            ..Counters::default()
        },
    }
}

/// What rose between two readings.
pub fn rise(label: &str, a: &Counters, b: &Counters) -> NetnsRise {
    let ct = match (a.conntrack, b.conntrack) {
        (Some(a), Some(b)) => Some((
            b.0.saturating_sub(a.0),
            b.1.saturating_sub(a.1),
            b.2.saturating_sub(a.2),
        )),
        _ => None,
    };
    let rules = b
        .rules
        .iter()
        .filter_map(|(k, (text, p))| {
            let before = a.rules.get(k).map(|r| r.1).unwrap_or(0);
            let d = p.saturating_sub(before);
            (d > 0).then(|| RuleRise {
                rule: text.clone(),
                packets: d,
            })
        })
        .collect();
    let mut not_read = a.not_read.clone();
    for n in &b.not_read {
        if !not_read.contains(n) {
            not_read.push(n.clone());
        }
    }
    NetnsRise {
        netns: label.to_string(),
        conntrack_drop: ct.map(|c| c.0),
        insert_failed: ct.map(|c| c.1),
        early_drop: ct.map(|c| c.2),
        count: b.count,
        max: b.max,
        listen_drops: match (a.listen_drops, b.listen_drops) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        rules,
        not_read,
    }
}

/// A census over a window.
pub struct Session {
    tracer: Tracer,
    census: Census,
    watched: Vec<Watched>,
    before: Vec<Counters>,
    started: Instant,
    lost_at_start: u64,
    /// Sender names, looked up while the senders still run.
    processes: std::collections::HashMap<u32, String>,
}

impl Session {
    /// Start tracing, then read every namespace's counters.
    pub fn start(watched: Vec<Watched>) -> Result<Session, Unavailable> {
        let tracer = Tracer::start()?;
        let lost_at_start = tracer.lost();
        let before = watched.iter().map(read_counters).collect();
        Ok(Session {
            tracer,
            census: Census::default(),
            watched,
            before,
            started: Instant::now(),
            lost_at_start,
            processes: std::collections::HashMap::new(),
        })
    }

    /// Drain the buffers (call every [`tracefs::POLL`]).
    pub fn poll(&mut self) {
        if self.tracer.drain(&mut self.census) > 0 {
            self.name_senders();
        }
    }

    /// Name new senders now: a process that sent a dropped packet may
    /// have exited by the end of the window.
    fn name_senders(&mut self) {
        for pid in self.census.senders() {
            if let std::collections::hash_map::Entry::Vacant(e) = self.processes.entry(pid) {
                if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                    e.insert(c.trim().to_string());
                }
            }
        }
    }

    /// CPUs traced.
    pub fn cpus(&self) -> usize {
        self.tracer.cpus()
    }

    /// The tracing instance's directory.
    pub fn instance(&self) -> &std::path::Path {
        self.tracer.dir()
    }

    /// Drops counted so far.
    pub fn events(&self) -> u64 {
        self.census.events
    }

    /// Read the counters again, stop, and report.
    pub fn finish(mut self) -> DropReport {
        let after: Vec<Counters> = self.watched.iter().map(read_counters).collect();
        let window = self.started.elapsed().as_secs_f64();
        self.tracer.disable();
        self.tracer.drain(&mut self.census);
        // The per-CPU stats count every event the buffers refused; the
        // pages' own "missed" counts are the same events seen from the
        // reader's side: the larger, never their sum.
        let lost = self
            .tracer
            .lost()
            .saturating_sub(self.lost_at_start)
            .max(self.census.missed_stored);
        let mut notes = Vec::new();
        if !self.tracer.removed_stale.is_empty() {
            notes.push(format!(
                "removed tracing instances left by killed runs: {}",
                self.tracer.removed_stale.join(", ")
            ));
        }
        if let Some(u) = &self.tracer.unfiltered {
            notes.push(format!("{u}: every kfree_skb is counted"));
        }
        if self.census.malformed_pages > 0 {
            notes.push(format!(
                "{} trace pages could not be read whole",
                self.census.malformed_pages
            ));
        }
        let mut names = report::Names::default();
        match tracefs::symbolize(&self.census.locations()) {
            Ok(s) => names.symbols = s,
            Err(u) => notes.push(format!("locations are addresses: {u}")),
        }
        self.name_senders();
        // Exited before they were seen: the names tracing kept.
        if self.census.senders().len() > self.processes.len() {
            for (pid, comm) in self.tracer.saved_cmdlines() {
                self.processes.entry(pid).or_insert(comm);
            }
        }
        names.processes = std::mem::take(&mut self.processes);
        let rises = self
            .watched
            .iter()
            .zip(self.before.iter().zip(&after))
            .map(|(w, (a, b))| rise(&w.label, a, b))
            .collect();
        report::build(
            &self.census,
            self.tracer.format(),
            &names,
            rises,
            window,
            lost,
            notes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_values_are_not_part_of_a_rule() {
        assert_eq!(
            without_counts("tcp dport 9 counter packets 200 bytes 12000 drop"),
            "tcp dport 9 counter drop"
        );
        assert_eq!(without_counts("counter drop"), "counter drop");
    }

    fn c(ct: Option<(u64, u64, u64)>, rules: &[(&str, u64)]) -> Counters {
        Counters {
            conntrack: ct,
            count: Some(10),
            max: Some(100),
            rules: rules
                .iter()
                .map(|(k, p)| (k.to_string(), (format!("rule {k}"), *p)))
                .collect(),
            listen_drops: None,
            not_read: Vec::new(),
        }
    }

    #[test]
    fn rises_are_differences_and_new_rules_count_from_zero() {
        let a = c(Some((5, 1, 0)), &[("a", 10)]);
        let b = c(Some((9, 1, 2)), &[("a", 15), ("b", 3)]);
        let r = rise("gw", &a, &b);
        assert_eq!(
            (r.conntrack_drop, r.insert_failed, r.early_drop),
            (Some(4), Some(0), Some(2))
        );
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r.rules[0].packets, 5);
        assert_eq!(r.rules[1].packets, 3);
        let r = rise("gw", &c(None, &[]), &b);
        assert_eq!(r.conntrack_drop, None);
    }
}
