//! The one sizing of the table: from the facts and the user's inputs
//! (`--peak`, `--rate`, `--headroom`, `--mem-budget`) to a recommended
//! `nf_conntrack_max` and bucket count, with the memory of a full table.
//! `check`'s suggestion (`advice::suggest::sizing`) is this computation
//! with [`Inputs::default`]; `plan` shows it with the alternatives beside
//! it (the current setting, this kernel's default, kube-proxy's formula,
//! the seed's rule).
//!
//! Pure. Not for: the arithmetic itself (`crate::advice::sizing`), the kernel's
//! rules (`crate::kernel`), or when `check` acts on it (advice::suggest).

use crate::advice::sizing::{self, Size};
use crate::kernel;
use crate::snapshot::{Facts, Stat};
use crate::table::TcpState;

/// Usage from which a table counts as capped (demand unknown).
pub const CAPPED_USAGE: f64 = 0.95;
/// kube-proxy's conntrack formula: max = max(32768 × CPUs, 131072),
/// hashsize = max / 4 (kube-proxy's `conntrack.maxPerCore` and `min`).
pub const KUBE_PROXY_PER_CORE: u64 = 32_768;
pub const KUBE_PROXY_MIN: u64 = 131_072;
/// The seed playbook's rule: keep the count under 20 % of max, buckets max / 4.
pub const SEED_USAGE: f64 = 0.20;
pub const SEED_FACTOR: u64 = 4;

/// What the user tells `plan` (check uses the defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    /// The peak number of entries to plan for (`--peak`).
    pub peak: Option<u64>,
    /// New connections per second to plan for (`--rate`).
    pub rate: Option<f64>,
    /// Room over the demand (`--headroom`, default 2×).
    pub headroom: f64,
    /// Share of RAM a full table may take (`--mem-budget`, default 10 %).
    pub mem_budget: f64,
    /// Entries in a dump of the table given with `--file`: without `--peak`
    /// or `--rate`, the demand when it exceeds the count now (the table as
    /// it was when dumped, e.g. at the incident).
    pub dump: Option<u64>,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            peak: None,
            rate: None,
            headroom: sizing::HEADROOM,
            mem_budget: sizing::MEM_BUDGET,
            dump: None,
        }
    }
}

/// Where the demand came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DemandSource {
    /// The namespace's count now.
    Count,
    /// `--peak`.
    Peak,
    /// `--rate`: entries = rate × the seconds one connection stays in the table.
    Rate(RateModel),
    /// `--file`: the entries of the dump, more than the count now.
    Dump,
}

/// How a connection rate becomes entries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateModel {
    pub per_sec: f64,
    /// Seconds one connection keeps an entry: TIME_WAIT's timeout, plus the
    /// other TCP states' share at today's mix when the table was read.
    pub residency_secs: f64,
    pub time_wait_secs: f64,
    /// Seconds the other TCP states add per connection (today's mix), when known.
    pub other_states_secs: Option<f64>,
    /// Entries that do not follow the rate (UDP, ICMP, other protocols), kept as they are.
    pub other_protocols: u64,
}

/// The entries the table must hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub entries: u64,
    /// The table hit its max (count at ≥ 95 % of max, drops or early
    /// drops): the count is capped and the real demand unknown.
    pub capped: bool,
    pub source: DemandSource,
    pub count: u64,
    pub usage: f64,
    pub drops: u64,
    pub early_drops: u64,
}

/// Where the kernel-default row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultSource {
    /// The kernel said so when conntrack started (`host::kmsg::BootSizing`).
    BootLog,
    /// A `hashsize=N` boot asks for (the command line, or modprobe.d for
    /// a module): `kernel::given_hashsize_sizing`, max = 8 × buckets.
    BootHashsize(u64),
    /// `kernel::default_sizing` for this version and RAM (mainline rule).
    MainlineRule(kernel::Version),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelDefault {
    pub sizing: kernel::Sizing,
    pub source: DefaultSource,
}

/// The sizing of one namespace's table.
#[derive(Debug, Clone, PartialEq)]
pub struct SizePlan {
    pub inputs: Inputs,
    pub demand: Demand,
    /// nf_conntrack_max now (0: no limit).
    pub current_max: u64,
    /// Buckets now (0: unknown).
    pub current_buckets: u64,
    pub objsize: u64,
    /// objsize read from /proc/slabinfo (else [`sizing::ASSUMED_OBJSIZE`]).
    pub objsize_measured: bool,
    /// MemTotal, bytes (0: unknown).
    pub ram: u64,
    /// Entries in the one hash every netns shares: slab objects when
    /// readable, else this netns's count.
    pub hash_entries: u64,
    pub hash_entries_from_slab: bool,
    pub kernel_default: Option<KernelDefault>,
    /// Never recommend below this max (the kernel default), 0 when unknown.
    pub floor: u64,
    /// headroom × demand, at least the floor.
    pub wanted_max: u64,
    /// What the demand asks for: `wanted_max` within the budget.
    pub computed_max: u64,
    /// How the recommended max relates to the computed one.
    pub basis: Basis,
    /// Entries whose full table fits `mem_budget` of RAM (u64::MAX: RAM unknown).
    pub budget_max: u64,
    /// The budget, not the demand, decided the max.
    pub capped_by_memory: bool,
    pub recommended: Size,
}

impl SizePlan {
    /// Buckets for a table of `max` entries: a full table's mean chain
    /// within [`sizing::CHAIN_LIMIT`], room for every netns's entries in
    /// the shared hash, never fewer than now (shrinking buys nothing).
    pub fn buckets_for(&self, max: u64) -> u64 {
        sizing::buckets_for(max.max(self.hash_entries)).max(self.current_buckets)
    }

    /// A sizing row for `max` and `buckets`, costed like every other.
    pub fn cost(&self, max: u64, buckets: u64) -> Size {
        Size::new(max, buckets, self.objsize, self.ram)
    }

    /// Mean chain length now with `buckets` heads.
    pub fn chain_now(&self, buckets: u64) -> f64 {
        sizing::mean_chain(self.hash_entries, buckets)
    }

    /// The entries planned from, before headroom: the demand, or while
    /// capped the current max (the count cannot show more).
    pub fn base(&self) -> u64 {
        if self.demand.capped {
            self.demand.entries.max(self.current_max)
        } else {
            self.demand.entries
        }
    }
}

/// Why the recommended max is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The demand's max ([`SizePlan::computed_max`]), at least the current one.
    Demand,
    /// The current max is larger than the demand needs and a full table at
    /// it fits the budget: kept (lowering max frees no memory until the
    /// table fills).
    KeptCurrent,
    /// The current max is larger than needed and a full table at it would
    /// exceed the budget: lowered to what fits.
    LoweredToBudget,
}

/// This kernel's default sizing: the boot log's line when the log still
/// holds it, else the mainline rule for the version and RAM.
pub fn kernel_default(f: &Facts) -> Option<KernelDefault> {
    if let Some(b) = f.kmsg.as_ref().ok().and_then(|k| k.boot_sizing) {
        return Some(KernelDefault {
            sizing: kernel::Sizing {
                buckets: b.buckets,
                max: b.max,
                factor: b.max.checked_div(b.buckets).unwrap_or(0),
            },
            source: DefaultSource::BootLog,
        });
    }
    let sys = f.system.as_ref().ok()?;
    let v = sys.kernel_version?;
    if let Some((n, _)) = f.persist.as_ref().ok().and_then(|p| p.boot_hashsize()) {
        return Some(KernelDefault {
            sizing: kernel::given_hashsize_sizing(v, n),
            source: DefaultSource::BootHashsize(n),
        });
    }
    let ram = *sys.mem_total_bytes.as_ref().ok()?;
    (ram > 0).then(|| KernelDefault {
        sizing: kernel::default_sizing(v, ram),
        source: DefaultSource::MainlineRule(v),
    })
}

/// Per-entry object size: measured from slabinfo, else the 6.18 measurement.
pub fn objsize(f: &Facts) -> (u64, bool) {
    match f.system.as_ref().ok().and_then(|s| s.slab.as_ref().ok()) {
        Some(s) if s.objsize > 0 => (s.objsize, true),
        _ => (sizing::ASSUMED_OBJSIZE, false),
    }
}

/// Turn a connection rate into entries: each connection holds an entry
/// for TIME_WAIT's timeout (it leaves TIME_WAIT only by timing out), plus
/// what the other TCP states add per connection at today's mix (their
/// count over today's close rate, TIME_WAIT count / its timeout); entries
/// of other protocols are kept as they are.
pub fn rate_model(f: &Facts, per_sec: f64) -> RateModel {
    let timeouts = crate::host::fact::timeouts_of(&f.conntrack);
    let tw = timeouts.tcp[TcpState::TimeWait as usize] as f64;
    let mix = f.table.as_ref().ok();
    let (other_states_secs, other_protocols) = match mix {
        Some(m) => {
            let n_tw = m.by_state.get("TIME_WAIT").copied().unwrap_or(0);
            let other = m.tcp.saturating_sub(n_tw);
            let secs = (n_tw > 0 && tw > 0.0).then(|| other as f64 / (n_tw as f64 / tw));
            (secs, m.entries.saturating_sub(m.tcp))
        }
        None => (None, 0),
    };
    RateModel {
        per_sec,
        residency_secs: tw + other_states_secs.unwrap_or(0.0),
        time_wait_secs: tw,
        other_states_secs,
        other_protocols,
    }
}

/// The longest TIME_WAIT timeout, in whole seconds, at which a rate fits a
/// table of `max` with `headroom`: `m.per_sec × (T + other states'
/// seconds) × headroom + other protocols' entries ≤ max` — the demand model
/// of `--rate` solved for the timeout instead of the size. None when not
/// even 1 s fits (only a bigger table, or fewer tracked connections, can).
pub fn time_wait_for(m: &RateModel, max: u64, headroom: f64) -> Option<u32> {
    let room = max as f64 / headroom.max(1.0) - m.other_protocols as f64;
    if m.per_sec <= 0.0 {
        return None;
    }
    let t = (room / m.per_sec - m.other_states_secs.unwrap_or(0.0)).floor();
    (t >= 1.0).then(|| t.min(f64::from(u32::MAX)) as u32)
}

/// The one sizing. None when conntrack's count or max is unknown.
pub fn size(f: &Facts, inputs: &Inputs) -> Option<SizePlan> {
    let ct = f.conntrack.as_ref().ok()?;
    let max = *ct.max.as_ref().ok()?;
    let buckets = ct
        .buckets
        .as_ref()
        .ok()
        .or(ct.hashsize.as_ref().ok())
        .copied()
        .unwrap_or(0);
    let sys = f.system.as_ref().ok();
    let ram = sys
        .and_then(|s| s.mem_total_bytes.as_ref().ok().copied())
        .unwrap_or(0);
    let (obj, measured) = objsize(f);
    let stat = f.stat.as_ref().ok();
    let drops = stat.and_then(Stat::drop).unwrap_or(0);
    let early = stat.and_then(Stat::early_drop).unwrap_or(0);
    let usage = if max > 0 {
        ct.count as f64 / max as f64
    } else {
        0.0
    };
    let (entries, source, capped) = match (inputs.peak, inputs.rate) {
        (Some(p), _) => (p, DemandSource::Peak, false),
        (None, Some(r)) => {
            let m = rate_model(f, r);
            let e = (r * m.residency_secs).ceil() as u64 + m.other_protocols;
            (e, DemandSource::Rate(m), false)
        }
        (None, None) => match inputs.dump {
            // The dump held more than the table does now: plan for it,
            // capped (unknown real demand) when it was a full table.
            Some(d) if d > ct.count => (
                d,
                DemandSource::Dump,
                max > 0 && (d as f64 / max as f64 >= CAPPED_USAGE || drops > 0 || early > 0),
            ),
            _ => (
                ct.count,
                DemandSource::Count,
                max > 0 && (usage >= CAPPED_USAGE || drops > 0 || early > 0),
            ),
        },
    };
    let slab = sys.and_then(|s| s.slab.as_ref().ok());
    let (hash_entries, from_slab) = match slab {
        Some(s) => (s.active_objs, true),
        None => (ct.count, false),
    };
    let kd = kernel_default(f);
    let floor = kd.map_or(0, |k| k.sizing.max);
    let rec = sizing::recommend(
        sizing::Demand { entries, capped },
        max,
        buckets,
        inputs.headroom,
        floor,
        inputs.mem_budget,
        obj,
        ram,
    );
    let mut plan = SizePlan {
        inputs: *inputs,
        demand: Demand {
            entries,
            capped,
            source,
            count: ct.count,
            usage,
            drops,
            early_drops: early,
        },
        current_max: max,
        current_buckets: buckets,
        objsize: obj,
        objsize_measured: measured,
        ram,
        hash_entries,
        hash_entries_from_slab: from_slab,
        kernel_default: kd,
        floor,
        wanted_max: rec.wanted_max,
        computed_max: rec.size.max,
        basis: Basis::Demand,
        budget_max: rec.budget_max,
        capped_by_memory: rec.capped_by_memory,
        recommended: rec.size,
    };
    // Never lower max below the current one unless a full table at it
    // breaks the budget (then to what fits): a lower max frees nothing
    // until the table fills, it only turns traffic away sooner.
    let computed = rec.size.max;
    let (chosen, basis) = if max == 0 || computed >= max {
        (computed, Basis::Demand)
    } else if ram > 0
        && sizing::full_table_bytes(max, obj, buckets) as f64 > ram as f64 * inputs.mem_budget
    {
        (
            rec.budget_max.min(max).max(computed),
            Basis::LoweredToBudget,
        )
    } else {
        (max, Basis::KeptCurrent)
    };
    plan.basis = basis;
    let b = plan.buckets_for(chosen);
    plan.recommended = plan.cost(chosen, b);
    Some(plan)
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    /// `current`, `kernel_default`, `kube_proxy`, `seed_rule`, `recommended`.
    pub name: &'static str,
    pub size: Size,
    /// What the seed playbook's formula (max × 352 + buckets × 16) says it costs.
    pub seed_formula_bytes: u64,
    /// Where the row's numbers come from, in a few words.
    pub basis: String,
}

/// The rows side by side: the current setting, this kernel's default,
/// kube-proxy's formula (needs the CPU count), the seed's rule, ours.
pub fn alternatives(p: &SizePlan, cpus: Option<u32>) -> Vec<Alternative> {
    let row = |name, max: u64, buckets: u64, basis: String| Alternative {
        name,
        size: p.cost(max, buckets),
        seed_formula_bytes: sizing::seed_full_table_bytes(max, buckets),
        basis,
    };
    let mut v = vec![row(
        "current",
        p.current_max,
        p.current_buckets,
        "nf_conntrack_max and nf_conntrack_buckets now".into(),
    )];
    if let Some(k) = p.kernel_default {
        let basis = match k.source {
            DefaultSource::BootLog => "the kernel's boot log line (nf_conntrack version …)".into(),
            DefaultSource::BootHashsize(n) => {
                format!("hashsize {n} set for boot (max = 8 × buckets)")
            }
            DefaultSource::MainlineRule((a, b, c)) => format!(
                "mainline rule for {a}.{b}.{c} and this RAM (max = {} × buckets)",
                k.sizing.factor
            ),
        };
        v.push(row("kernel_default", k.sizing.max, k.sizing.buckets, basis));
    }
    if let Some(n) = cpus {
        let max = (KUBE_PROXY_PER_CORE * u64::from(n)).max(KUBE_PROXY_MIN);
        v.push(row(
            "kube_proxy",
            max,
            sizing::round_buckets(max / 4),
            format!("max(32768 × {n} CPUs, 131072), hashsize = max / 4"),
        ));
    }
    let seed_max = ((p.base() as f64 / SEED_USAGE).ceil() as u64).max(1);
    v.push(row(
        "seed_rule",
        seed_max,
        sizing::round_buckets(seed_max / SEED_FACTOR),
        "count < 20 % of max, buckets = max / 4".into(),
    ));
    v.push(Alternative {
        name: "recommended",
        size: p.recommended,
        seed_formula_bytes: sizing::seed_full_table_bytes(
            p.recommended.max,
            p.recommended.buckets,
        ),
        basis: format!(
            "{} × the demand, at least the kernel default, within {} of RAM; buckets keep a full table's mean chain at 2",
            fmt_factor(p.inputs.headroom),
            fmt_pct(p.inputs.mem_budget)
        ),
    });
    v
}

/// 2.0 -> "2", 1.5 -> "1.5".
pub fn fmt_factor(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// 0.1 -> "10 %".
pub fn fmt_pct(x: f64) -> String {
    format!("{} %", fmt_factor(x * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::host::{read_facts, Root};
    use std::path::PathBuf;

    #[test]
    fn time_wait_for_a_rate_solves_the_demand_model() {
        let m = |per_sec, other: Option<f64>, protos| RateModel {
            per_sec,
            residency_secs: 0.0,
            time_wait_secs: 120.0,
            other_states_secs: other,
            other_protocols: protos,
        };
        // 600 entries/s, 4,096 max, 2x headroom: 2,048 / 600 = 3.41 -> 3 s.
        assert_eq!(time_wait_for(&m(600.0, None, 0), 4096, 2.0), Some(3));
        // The other states' seconds come off it: 3.41 - 0.5 -> 2 s.
        assert_eq!(time_wait_for(&m(600.0, Some(0.5), 0), 4096, 2.0), Some(2));
        // 100 entries/s: 20 s.
        assert_eq!(time_wait_for(&m(100.0, None, 48), 4096, 2.0), Some(20));
        // Not even 1 s fits.
        assert_eq!(time_wait_for(&m(5000.0, None, 0), 4096, 2.0), None);
        assert_eq!(time_wait_for(&m(0.0, None, 0), 4096, 2.0), None);
    }

    fn fixture(name: &str) -> Facts {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        read_facts(&Root::live_at(dir))
    }

    #[test]
    fn a_full_table_is_planned_from_its_max_not_its_count() {
        let f = fixture("ct-table-full-6.18");
        let p = size(&f, &Inputs::default()).unwrap();
        assert!(p.demand.capped, "{:?}", p.demand);
        assert_eq!(p.base(), p.current_max.max(p.demand.count));
        assert_eq!(p.wanted_max, (p.base() * 2).max(p.floor));
        assert_eq!(p.recommended.max, p.wanted_max.min(p.budget_max));
        // Buckets: a full table at a mean chain of 2, rounded to 512-head pages.
        assert_eq!(p.recommended.buckets % 512, 0);
        assert!(p.recommended.mean_chain_at_max <= 2.0);
    }

    #[test]
    fn a_given_peak_is_not_capped() {
        let f = fixture("ct-table-full-6.18");
        let p = size(
            &f,
            &Inputs {
                peak: Some(1_000_000),
                ..Inputs::default()
            },
        )
        .unwrap();
        assert!(!p.demand.capped);
        assert_eq!(p.demand.source, DemandSource::Peak);
        assert_eq!(p.wanted_max, 2_000_000);
    }

    #[test]
    fn the_kernel_default_is_the_floor() {
        // 6.18, 24 GiB: 262144 / 262144. A near-empty table still plans 262144.
        let f = fixture("ct-healthy-6.18");
        let p = size(&f, &Inputs::default()).unwrap();
        let k = p.kernel_default.unwrap();
        assert_eq!(k.source, DefaultSource::MainlineRule((6, 18, 44)));
        assert_eq!(k.sizing.max, 262_144);
        assert_eq!(p.floor, 262_144);
        assert!(p.recommended.max >= 262_144);
    }

    #[test]
    fn a_boot_hashsize_sets_the_kernel_default_and_the_floor() {
        // options nf_conntrack hashsize=131072 in modprobe.d: at boot the
        // kernel makes 131,072 buckets and max 8 × 131,072.
        let f = fixture("persist-hashsize-modprobe");
        let k = kernel_default(&f).unwrap();
        assert_eq!(k.source, DefaultSource::BootHashsize(131_072));
        assert_eq!((k.sizing.buckets, k.sizing.max), (131_072, 1_048_576));
        let p = size(&f, &Inputs::default()).unwrap();
        assert_eq!(p.floor, 1_048_576);
    }

    #[test]
    fn the_boot_log_line_wins_over_the_mainline_rule() {
        let mut f = fixture("ct-old-5.4");
        let rule = kernel_default(&f).unwrap();
        assert!(matches!(
            rule.source,
            DefaultSource::MainlineRule((5, 4, _))
        ));
        f.kmsg.as_mut().unwrap().boot_sizing = Some(crate::snapshot::BootSizing {
            buckets: 16_384,
            max: 65_536,
            usec: Some(1),
        });
        let k = kernel_default(&f).unwrap();
        assert_eq!(k.source, DefaultSource::BootLog);
        assert_eq!(
            (k.sizing.buckets, k.sizing.max, k.sizing.factor),
            (16_384, 65_536, 4)
        );
    }

    #[test]
    fn alternatives_by_their_formulas() {
        let f = fixture("ct-healthy-6.18");
        let p = size(
            &f,
            &Inputs {
                peak: Some(100_000),
                ..Inputs::default()
            },
        )
        .unwrap();
        let alts = alternatives(&p, Some(2));
        let by = |n: &str| alts.iter().find(|a| a.name == n).unwrap().size;
        let names: Vec<&str> = alts.iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "current",
                "kernel_default",
                "kube_proxy",
                "seed_rule",
                "recommended"
            ]
        );
        // kube-proxy on 2 CPUs: max(65536, 131072) = 131072, hashsize 32768.
        assert_eq!(
            (by("kube_proxy").max, by("kube_proxy").buckets),
            (131_072, 32_768)
        );
        // The seed: 100000 < 20 % of max -> 500000, buckets 125000 -> 125440 (whole pages).
        assert_eq!(
            (by("seed_rule").max, by("seed_rule").buckets),
            (500_000, 125_440)
        );
        // Ours: 2 × 100000 = 200000 is below the default 262144.
        assert_eq!(by("recommended").max, 262_144);
        let seed = alts.iter().find(|a| a.name == "seed_rule").unwrap();
        assert_eq!(seed.seed_formula_bytes, 500_000 * 352 + 125_440 * 16);
    }

    #[test]
    fn a_rate_becomes_entries_by_residency() {
        let mut f = fixture("ct-healthy-6.18");
        // Without a table mix: TIME_WAIT's timeout only (the fixture's 60 s).
        let m = rate_model(&f, 100.0);
        assert_eq!(m.time_wait_secs, 60.0);
        assert_eq!(m.other_states_secs, None);
        // With one: 1200 TIME_WAIT over 60 s is 20 closes/s; 300 other TCP
        // entries are 15 s per connection; 50 UDP entries stay.
        let mut mix = crate::snapshot::TableMix {
            entries: 1550,
            tcp: 1500,
            ..Default::default()
        };
        mix.by_state.insert("TIME_WAIT".into(), 1200);
        mix.by_state.insert("ESTABLISHED".into(), 300);
        f.table = Ok(mix);
        let m = rate_model(&f, 100.0);
        assert_eq!(m.other_states_secs, Some(15.0));
        assert_eq!(m.residency_secs, 75.0);
        let p = size(
            &f,
            &Inputs {
                rate: Some(100.0),
                ..Inputs::default()
            },
        )
        .unwrap();
        assert_eq!(p.demand.entries, 100 * 75 + 50);
    }
}
