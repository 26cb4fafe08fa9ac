//! The lab's scenarios as data: every fact that differs between the
//! incidents the lab reproduces — its `--scenario` name and help, the
//! load's default rate, the lowest max, how the gateway's table is filled,
//! and the rule `check` must name as the cause — in one [`Scenario`] entry
//! of [`SCENARIOS`]. The run (lab/mod.rs) reads these fields; it never asks
//! which scenario it runs.
//!
//! The fixes (`--fix`, lab/fix.rs) are not per scenario: every kind applies
//! to every scenario, and the after phase shows whether it was enough.
//!
//! Adding a scenario: append one entry to [`SCENARIOS`] (its name is the
//! `--scenario` value and the report's `scenario`; `about` is its `--help`
//! line), with its fill steps as functions in this file when the load
//! alone does not make the incident; then add the kernel test that the
//! failing phase names its `cause` (tests/kernel/lab_kernel.rs,
//! `scenario_names_its_cause`). The `--rate` and `--max` help text in
//! cmd/lab.rs names the defaults that differ from the first entry's.
//!
//! Not for: running a phase (lab/mod.rs), the traffic itself (lab/load.rs,
//! lab/flood.rs).

use super::{topo, FLOOD_PORT, MIN_MAX};
use crate::util::thousands;
use anyhow::{bail, Context, Result};

/// An incident to reproduce (`--scenario`).
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The `--scenario` value and the report's `scenario`.
    pub name: &'static str,
    /// What it reproduces: its line in `--help`.
    pub about: &'static str,
    /// Requests per second of the legitimate load, unless given.
    pub default_rate: f64,
    /// The lowest max the run lowers the table to.
    pub min_max: u64,
    /// The rule `check` must name as the cause during the failing phase.
    pub cause: &'static str,
    /// Made in the gateway before the fill's load starts, given the max:
    /// what the load alone would not make.
    pub before_fill: Option<fn(&topo::Topology, u64) -> Result<()>>,
    /// The load runs during the fill, filling what is left.
    pub load_fills: bool,
    /// Run on the gateway once the fill reached the max.
    pub when_full: Option<fn(&netns::Target) -> Result<()>>,
    /// The load's own TIME_WAIT must fill the table: a max the rate cannot
    /// fill is refused before the run.
    pub load_must_fill: bool,
    /// A SYN flood from the client runs from the fill to the end of the
    /// failing phase (lab/flood.rs).
    pub syn_flood: bool,
}

/// Every scenario; the first is the default (`--scenario`'s too).
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "table-full",
        about: "One-shot connections through a proxy fill the gateway's table with \
                TIME_WAIT (the nginx default: a new upstream connection per request)",
        default_rate: 300.0,
        min_max: MIN_MAX,
        cause: crate::checks::state_mix::TIME_WAIT,
        before_fill: None,
        load_fills: true,
        when_full: Some(spread_ages),
        load_must_fill: true,
        syn_flood: false,
    },
    Scenario {
        name: "idle-clients",
        about: "Leaky clients hold idle ESTABLISHED connections far past TCP \
                keepalive's horizon (a client SDK that never closes): they fill the \
                table, and early drop cannot evict them",
        default_rate: 300.0,
        min_max: MIN_MAX,
        cause: crate::checks::state_mix::IDLE_ESTABLISHED,
        before_fill: Some(prefill_idle_clients),
        load_fills: true,
        when_full: None,
        load_must_fill: false,
        syn_flood: false,
    },
    Scenario {
        name: "syn-flood",
        about: "SYNs nobody answers (a flood, or clients retrying a dead upstream) \
                park in SYN_SENT through the gateway; not ASSURED, early drop evicts \
                them: early drops rise and connects slow down rather than drop",
        // Low enough that the load's own TIME_WAIT fits the table (the
        // flood, not the load, must be what fills it).
        default_rate: 40.0,
        min_max: 8 * MIN_MAX,
        cause: crate::checks::state_mix::UNREPLIED_SYN,
        before_fill: Some(open_flood_path),
        load_fills: false,
        when_full: None,
        load_must_fill: false,
        syn_flood: true,
    },
];

impl Default for Scenario {
    /// The first entry of [`SCENARIOS`].
    fn default() -> Self {
        SCENARIOS[0]
    }
}

impl clap::ValueEnum for Scenario {
    fn value_variants<'a>() -> &'a [Self] {
        SCENARIOS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name).help(self.about))
    }
}

/// Idle-clients: leaky clients' idle ESTABLISHED entries, 95 % of the
/// max; the load fills the rest.
fn prefill_idle_clients(topo: &topo::Topology, max: u64) -> Result<()> {
    prefill_idle(&topo.gateway.target(), max - max / 20)
}

/// Syn-flood: the flood is forwarded through the gateway to a backend port
/// that drops it, so nothing ever answers.
fn open_flood_path(topo: &topo::Topology, _max: u64) -> Result<()> {
    topo.gateway.sysctl("net.ipv4.ip_forward", "1")?;
    topo.backend.nft(&format!(
        "table inet ctdlab_flood {{ chain in {{ type filter hook input priority 0; tcp dport {FLOOD_PORT} drop; }}; }}"
    ))?;
    Ok(())
}

/// Table-full: give the fill's TIME_WAIT entries the ages of a table in
/// steady state: their seconds left spread evenly over the TIME_WAIT
/// timeout (ctnetlink update, CTA_TIMEOUT). The load made them all within
/// a few seconds, so otherwise none would expire for two minutes and no
/// client would ever get through; a gateway that has been full for a while
/// frees max / timeout slots a second, which is what lets some clients in
/// and then gives nginx no slot for its upstream connection: the 504s.
fn spread_ages(gw: &netns::Target) -> Result<()> {
    use ctnetlink::{Conntrack, DumpRequest, TcpState};
    let tw = crate::host::entries::timeouts(gw)?.tcp
        [crate::table::entry::TcpState::TimeWait as usize]
        .max(1);
    let mut sock = ctnetlink::Socket::open_in(gw).context("a ctnetlink socket in the gateway")?;
    let mut tuples = Vec::new();
    sock.dump(&DumpRequest::all(), |e| {
        if let (Ok(Some(orig)), Ok(Some(TcpState::TimeWait))) = (e.orig(), e.tcp_state()) {
            tuples.push(orig);
        }
        std::ops::ControlFlow::Continue(())
    })
    .context("dumping the gateway's table")?;
    let n = tuples.len().max(1) as u64;
    for (i, orig) in tuples.into_iter().enumerate() {
        // 1..=tw seconds left, evenly; an entry gone meanwhile is no error.
        let left = 1 + (i as u64 * u64::from(tw) / n) as u32;
        let _ = sock.update(&Conntrack::new(orig).timeout(left));
    }
    Ok(())
}

/// Source ports the idle clients use: 1024 to 65535.
const IDLE_PORTS: u32 = 65_536 - 1024;
/// The leaky clients' addresses, 10.204.0.10 upwards: three while their
/// ports last, three more for every further 3 × [`IDLE_PORTS`] entries.
const LEAKY_FIRST: u32 = u32::from_be_bytes([10, 204, 0, 10]);
const LEAKY_ADDRS: u32 = 240;
/// The other clients: 10.204.1.0 to 10.204.128.255.
const SPREAD_FIRST: u32 = u32::from_be_bytes([10, 204, 1, 0]);
const SPREAD_ADDRS: u32 = 128 * 256;
/// The most idle entries [`idle_client`] can make distinct.
pub const IDLE_MAX: u64 = (LEAKY_ADDRS * IDLE_PORTS) as u64 * 10 / 6;

/// The source address and port of idle entry `i` (of at most
/// [`IDLE_MAX`]): six in ten are the leaky clients' (three addresses
/// holding 60 % of the table), the rest spread over 32,768 addresses. One
/// to one: every `i` gets its own pair, whatever the table's size — the
/// kernel refuses (EEXIST) a second entry with the same tuple, so a
/// wrapping port (it used to be `i % 60_000` on three addresses) made
/// every entry past the 60,000th a duplicate of an earlier one.
pub fn idle_client(i: u64) -> Option<(std::net::Ipv4Addr, u16)> {
    let ports = u64::from(IDLE_PORTS);
    let (addr, port) = if i % 10 < 6 {
        // The k-th leaky entry: addresses in turn, then the next port.
        let k = i / 10 * 6 + i % 10;
        let a = k % 3 + 3 * (k / (3 * ports));
        if a >= u64::from(LEAKY_ADDRS) {
            return None;
        }
        (u64::from(LEAKY_FIRST) + a, k / 3 % ports)
    } else {
        let k = i / 10 * 4 + (i % 10 - 6);
        let port = k / u64::from(SPREAD_ADDRS);
        if port >= ports {
            return None;
        }
        (u64::from(SPREAD_FIRST) + k % u64::from(SPREAD_ADDRS), port)
    };
    Some((
        std::net::Ipv4Addr::from(u32::try_from(addr).ok()?),
        u16::try_from(1024 + port).ok()?,
    ))
}

/// `n` ESTABLISHED, ASSURED entries of clients that went quiet 2.5–5.5 h
/// ago (far past keepalive's 7875 s horizon), three client addresses
/// holding 60 % of them — leaky clients of one SDK — the rest spread over
/// a /16 ([`idle_client`]); made through ctnetlink in the gateway.
fn prefill_idle(gw: &netns::Target, n: u64) -> Result<()> {
    use ctnetlink::{Conntrack, TcpState, Tuple};
    let established: u32 = netns::run_in(gw, || {
        crate::host::read_u64(
            &crate::host::Root::live(),
            "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established",
        )
        .ok()
    })?
    .unwrap_or(432_000)
    .min(u64::from(u32::MAX)) as u32;
    let dst = std::net::IpAddr::V4(topo::GATEWAY_FRONT);
    let entries = (0..n)
        .map(|i| {
            let (src, sport) = idle_client(i).with_context(|| {
                format!(
                    "the idle-clients scenario makes at most {} distinct entries, not {}: give a smaller --max",
                    thousands(IDLE_MAX),
                    thousands(n)
                )
            })?;
            let idle = 9_000 + (i * 7919 % 11_000) as u32;
            let orig = Tuple::tcp(std::net::IpAddr::V4(src), sport, dst, topo::PROXY_PORT);
            Ok(Conntrack::new(orig)
                .status(ctnetlink::consts::IPS_ASSURED | ctnetlink::consts::IPS_SEEN_REPLY)
                .tcp_state(TcpState::Established)
                .timeout(established.saturating_sub(idle).max(1)))
        })
        .collect::<Result<Vec<Conntrack>>>()?;
    let mut sock = ctnetlink::Socket::open_in(gw).context("a ctnetlink socket in the gateway")?;
    let r = sock
        .create_batch(&entries)
        .context("creating the idle clients' entries in the gateway")?;
    if r.failed.len() as u64 * 10 > n {
        let first = r
            .failed
            .first()
            .and_then(|&(i, errno)| Some(refused(&entries.get(i)?.orig, errno)))
            .unwrap_or_default();
        bail!(
            "only {} of {} idle entries could be made in the gateway; the first refused: {first}",
            thousands(n - r.failed.len() as u64),
            thousands(n)
        );
    }
    Ok(())
}

/// An entry the kernel refused, for people: its connection and why.
fn refused(orig: &ctnetlink::Tuple, errno: i32) -> String {
    let why = match errno {
        libc::EEXIST => "an entry with this tuple exists already".to_string(),
        libc::ENOMEM | libc::ENOSPC => "the table is full (or out of memory)".to_string(),
        e => {
            let text = std::io::Error::from_raw_os_error(e).to_string();
            // "File exists (os error 17)" -> "File exists".
            match text.split_once(" (os error") {
                Some((t, _)) => t.to_string(),
                None => text,
            }
        }
    };
    format!(
        "tcp {}:{} -> {}:{}: {why}",
        orig.src, orig.src_port, orig.dst, orig.dst_port
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn lab_scenarios_are_distinct_and_complete() {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        assert_eq!(names, ["table-full", "idle-clients", "syn-flood"]);
        for s in SCENARIOS {
            assert_eq!(SCENARIOS.iter().filter(|o| o.name == s.name).count(), 1);
            assert_eq!(Scenario::from_str(s.name, false).unwrap().name, s.name);
            assert!(s.cause.starts_with("conntrack.state_mix."), "{}", s.cause);
            // Something must fill the table.
            assert!(s.load_fills || s.syn_flood || s.before_fill.is_some());
            assert!(s.min_max >= MIN_MAX && s.default_rate > 0.0);
        }
        assert_eq!(Scenario::default().name, "table-full");
    }

    /// Issue 21: beyond 60,000 entries (a max raised to twice another
    /// namespace's 200,000) the idle tuples repeated and the kernel refused
    /// half of them with EEXIST. Every entry its own tuple, up to 1,000,000.
    #[test]
    fn lab_idle_clients_are_distinct_at_any_size() {
        let n = 1_000_000;
        let all: Vec<_> = (0..n).map(|i| idle_client(i).unwrap()).collect();
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len() as u64, n);
        assert!(all
            .iter()
            .all(|(a, p)| *p >= 1024 && a.octets()[..2] == [10, 204] && *a != topo::CLIENT_ADDR));
        // Three leaky addresses hold 60 % while their ports last.
        let small: Vec<_> = (0..4096).map(|i| idle_client(i).unwrap().0).collect();
        let leaky = small
            .iter()
            .filter(|a| a.octets()[2] == 0)
            .collect::<std::collections::HashSet<_>>();
        assert_eq!(leaky.len(), 3);
        let share = small.iter().filter(|a| a.octets()[2] == 0).count();
        assert!((2400..=2500).contains(&share), "{share}");
        // Past what the address plan holds: no tuple, not a duplicate.
        assert!(idle_client(IDLE_MAX - 1).is_some());
        assert!(idle_client(IDLE_MAX + 10).is_none());
    }

    #[test]
    fn lab_a_refused_entry_reads_as_words() {
        let t = ctnetlink::Tuple::tcp(
            "10.204.0.10".parse().unwrap(),
            1024,
            "10.203.1.1".parse().unwrap(),
            80,
        );
        assert_eq!(
            refused(&t, libc::EEXIST),
            "tcp 10.204.0.10:1024 -> 10.203.1.1:80: an entry with this tuple exists already"
        );
        let other = refused(&t, libc::EINVAL);
        assert!(other.ends_with(": Invalid argument"), "{other}");
        assert!(!other.contains("os error") && !other.contains("Tuple"));
    }
}
