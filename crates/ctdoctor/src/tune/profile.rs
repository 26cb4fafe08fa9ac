//! Profiles: documented sets of changes whose sizes are computed for this
//! host from its facts (RAM, slab object size, CPUs, the table now), never
//! constants. Timeouts and companions come from the one table of suggested
//! values (advice::suggest), so a profile and `check` never disagree on a
//! value. Documented in docs/tune.md.
//!
//! Pure. Not for: applying (tune::plan / tune::apply).

use crate::advice::change::Change;
use crate::advice::sizing;
use crate::advice::suggest::{self, Part};
use crate::snapshot::Facts;

/// A named profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// A busy HTTP edge: the largest table that fits 10 % of RAM (never
    /// below the max now), buckets for it, short closing-state timeouts,
    /// established at the keepalive horizon, wider ephemeral ports, larger
    /// listen queues.
    EdgeGateway,
    /// Only what `check` would change for the table's size (its one sizing:
    /// raise under pressure, lower when a full table would not fit RAM), and
    /// tcp_timeout_established down to the keepalive horizon when above it.
    Conservative,
    /// What kube-proxy itself sets at start, so a node agrees with it:
    /// max = 32768 × CPUs (at least 131072, at most 1048576; never lowered),
    /// hashsize = max / 4 when smaller, established 86400, close_wait 3600.
    KubeProxy,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::EdgeGateway => "edge-gateway",
            Profile::Conservative => "conservative",
            Profile::KubeProxy => "kube-proxy",
        }
    }
}

/// The keys of the edge-gateway profile taken from the suggested-values table.
const EDGE_KEYS: &[&str] = &[
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_syn_sent",
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.ip_local_port_range",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies",
];

/// kube-proxy's defaults (pkg/proxy/conntrack, KubeProxyConntrackConfiguration).
pub const KUBE_MAX_PER_CORE: u64 = 32_768;
pub const KUBE_MIN: u64 = 131_072;
pub const KUBE_MAX_CAP: u64 = 1_048_576;

/// Round down to a multiple of 65536 (at least 65536).
fn round_down_64k(n: u64) -> u64 {
    (n / 65_536).max(1) * 65_536
}

/// The changes of `profile` for the host these facts describe, with a note
/// per computed value saying how it was computed.
pub fn changes(profile: Profile, f: &Facts) -> Result<(Vec<Change>, Vec<String>), String> {
    let ct = f
        .conntrack
        .as_ref()
        .map_err(|u| format!("profile {}: {u}", profile.name()))?;
    let max = *ct
        .max
        .as_ref()
        .map_err(|u| format!("profile {}: {u}", profile.name()))?;
    let buckets = ct.buckets.as_ref().ok().copied().unwrap_or(0);
    let sys = f.system.as_ref().ok();
    let mut v = Vec::new();
    let mut notes = Vec::new();
    let knob = |k: &str, val: String| suggest::sysctls(f, [(k, val)]).remove(0);
    match profile {
        Profile::EdgeGateway => {
            let ram = sys
                .and_then(|s| s.mem_total_bytes.as_ref().ok().copied())
                .ok_or("profile edge-gateway sizes the table from RAM, and MemTotal is unknown")?;
            let (obj, measured) = suggest::objsize(f);
            let budget = sizing::max_within(ram, sizing::MEM_BUDGET, obj);
            let new_max = round_down_64k(budget).max(max);
            let new_buckets = sizing::buckets_for(new_max).max(buckets);
            notes.push(format!(
                "edge-gateway: max {new_max} = what fits {:.0} % of RAM ({}) at {obj} B per entry{} \
                 × 1.5, rounded down to 64Ki (never below the max now, {max}); buckets {new_buckets} \
                 keep a full table's mean chain within {}",
                sizing::MEM_BUDGET * 100.0,
                crate::util::bytes(ram),
                if measured { " (slabinfo)" } else { " (assumed)" },
                sizing::CHAIN_LIMIT
            ));
            v.push(knob("net.netfilter.nf_conntrack_max", new_max.to_string()));
            if new_buckets != buckets {
                v.push(knob("nf_conntrack.hashsize", new_buckets.to_string()));
            }
            for k in EDGE_KEYS {
                v.push(suggest::suggested(f, k));
            }
        }
        Profile::Conservative => {
            if let Some(s) = suggest::sizing(f) {
                let part = if s.max.is_some() {
                    Some(Part::Max)
                } else if s.buckets.is_some() {
                    Some(Part::Buckets)
                } else {
                    None
                };
                if let Some(part) = part {
                    notes.push(format!("conservative: {}", s.reason));
                    v.extend(suggest::sizing_changes(f, &s, part));
                }
            }
            let est = "net.netfilter.nf_conntrack_tcp_timeout_established";
            let row = suggest::row(est);
            let now = ct.timeout("tcp_timeout_established");
            if row.above.zip(now).is_some_and(|(a, n)| n > a) {
                v.push(suggest::suggested(f, est));
            }
        }
        Profile::KubeProxy => {
            let cpus = sys
                .and_then(|s| s.cpus.as_ref().ok().copied())
                .ok_or("profile kube-proxy sizes the table from the CPU count, which is unknown")?;
            let want = (KUBE_MAX_PER_CORE * u64::from(cpus)).clamp(KUBE_MIN, KUBE_MAX_CAP);
            let new_max = want.max(max);
            notes.push(format!(
                "kube-proxy: max = {KUBE_MAX_PER_CORE} × {cpus} CPUs within {KUBE_MIN}..={KUBE_MAX_CAP} \
                 = {want}{}; hashsize = max / 4 when the hash is smaller",
                if new_max > want {
                    format!(" (the max now, {max}, is higher: kube-proxy never lowers it)")
                } else {
                    String::new()
                }
            ));
            v.push(knob("net.netfilter.nf_conntrack_max", new_max.to_string()));
            if buckets < new_max / 4 {
                v.push(knob("nf_conntrack.hashsize", (new_max / 4).to_string()));
            }
            v.push(knob(
                "net.netfilter.nf_conntrack_tcp_timeout_established",
                "86400".into(),
            ));
            v.push(knob(
                "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
                "3600".into(),
            ));
        }
    }
    Ok((v, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{read_facts, Root};

    fn facts(tree: &str) -> Facts {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(tree);
        read_facts(&Root::live_at(p))
    }

    fn value<'a>(v: &'a [Change], key: &str) -> Option<&'a str> {
        v.iter().find(|c| c.key == key).map(|c| c.value.as_str())
    }

    #[test]
    fn edge_gateway_sizes_from_ram_and_takes_timeouts_from_the_table() {
        let f = facts("ct-healthy-6.18");
        let (v, notes) = changes(Profile::EdgeGateway, &f).unwrap();
        let ram = f.system.as_ref().unwrap().mem_total_bytes.clone().unwrap();
        let (obj, _) = suggest::objsize(&f);
        let max: u64 = value(&v, "net.netfilter.nf_conntrack_max")
            .unwrap()
            .parse()
            .unwrap();
        let full = sizing::full_table_bytes(max, obj, sizing::buckets_for(max));
        assert!(
            full as f64 <= ram as f64 * sizing::MEM_BUDGET,
            "{full} of {ram}"
        );
        assert_eq!(max % 65_536, 0);
        assert_eq!(
            value(&v, "net.netfilter.nf_conntrack_tcp_timeout_time_wait"),
            Some(suggest::value("tcp_timeout_time_wait"))
        );
        assert_eq!(
            value(&v, "net.ipv4.ip_local_port_range"),
            Some("1024 65535")
        );
        assert!(notes[0].contains("10 % of RAM"), "{notes:?}");
    }

    #[test]
    fn kube_proxy_follows_its_formula_and_never_lowers_max() {
        let f = facts("ct-healthy-6.18");
        let cpus = u64::from(*f.system.as_ref().unwrap().cpus.as_ref().unwrap());
        let max_now = *f.conntrack.as_ref().unwrap().max.as_ref().unwrap();
        let (v, _) = changes(Profile::KubeProxy, &f).unwrap();
        let want = (32_768 * cpus).clamp(131_072, 1_048_576).max(max_now);
        assert_eq!(
            value(&v, "net.netfilter.nf_conntrack_max"),
            Some(want.to_string().as_str())
        );
        assert_eq!(
            value(&v, "net.netfilter.nf_conntrack_tcp_timeout_close_wait"),
            Some("3600")
        );
    }

    #[test]
    fn conservative_changes_only_what_check_would() {
        // A healthy table: nothing but what is plainly wrong.
        let f = facts("ct-healthy-6.18");
        let (v, _) = changes(Profile::Conservative, &f).unwrap();
        assert!(
            v.iter()
                .all(|c| c.key == "net.netfilter.nf_conntrack_tcp_timeout_established"),
            "{v:?}"
        );
        // A full table: check's one sizing, with its persistence.
        let f = facts("ct-table-full-6.18");
        let (v, notes) = changes(Profile::Conservative, &f).unwrap();
        let s = suggest::sizing(&f).unwrap();
        assert_eq!(
            value(&v, "net.netfilter.nf_conntrack_max"),
            s.max.map(|m| m.to_string()).as_deref()
        );
        assert!(!notes.is_empty());
    }
}
