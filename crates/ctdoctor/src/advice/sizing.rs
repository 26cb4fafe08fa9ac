//! Table sizing arithmetic, shared by `check` and `plan`: bucket rounding,
//! mean chain length, the memory of a full table, how many entries fit a
//! memory budget, and the recommended max and buckets for a demand.
//!
//! Kernel facts (DOMAIN.md): a bucket is one 8-byte hlist_nulls_head, the
//! kernel rounds bucket counts up to whole pages of heads, each entry sits
//! in two chains (original and reply tuple), and an entry costs its slab
//! object plus separately allocated extensions (planned as +50 %).
//!
//! Pure. Not for: the kernel's own defaults by version (`kernel`), or
//! judging (checks).

use crate::kernel;

/// Bytes per hash bucket (one hlist_nulls_head pointer).
pub const BUCKET_BYTES: u64 = 8;
/// Per-entry cost when /proc/slabinfo is unreadable: objsize measured on
/// 6.18 x86_64 (DOMAIN.md).
pub const ASSUMED_OBJSIZE: u64 = 256;
/// Extensions (nat, acct, timestamp, ...) are kmalloc'd beside the object:
/// plan with +50 % (measured ~384 B/entry all in at 1M entries).
pub const EXT_FACTOR: f64 = 1.5;
/// The mean chain length a table may reach when full (`conntrack.hash_load`'s
/// warning threshold): buckets are sized so that max stays within it.
pub const CHAIN_LIMIT: f64 = 2.0;
/// Default headroom over the demand.
pub const HEADROOM: f64 = 2.0;
/// Default share of RAM a full table may take.
pub const MEM_BUDGET: f64 = 0.10;

/// Round up to whole pages of hash heads, as the kernel does.
pub fn round_buckets(n: u64) -> u64 {
    n.max(1)
        .div_ceil(kernel::BUCKETS_PER_PAGE)
        .saturating_mul(kernel::BUCKETS_PER_PAGE)
}

/// Mean chain length: each entry is hashed twice (both directions).
pub fn mean_chain(entries: u64, buckets: u64) -> f64 {
    if buckets == 0 {
        return 0.0;
    }
    2.0 * entries as f64 / buckets as f64
}

/// Bytes one entry costs with its extensions.
pub fn entry_bytes(objsize: u64) -> f64 {
    objsize as f64 * EXT_FACTOR
}

/// Worst-case kernel memory of a full table: max entries at objsize plus
/// extensions, plus the bucket array.
pub fn full_table_bytes(max: u64, objsize: u64, buckets: u64) -> u64 {
    let entries = max as f64 * entry_bytes(objsize);
    (entries as u64).saturating_add(buckets.saturating_mul(BUCKET_BYTES))
}

/// The seed playbook's formula, for comparison: 352 B per entry and 16 B
/// per bucket (a list_head on very old kernels), no extensions.
pub fn seed_full_table_bytes(max: u64, buckets: u64) -> u64 {
    max.saturating_mul(352)
        .saturating_add(buckets.saturating_mul(16))
}

/// Buckets that keep a full table of `max` entries within [`CHAIN_LIMIT`].
pub fn buckets_for(max: u64) -> u64 {
    round_buckets((max as f64 * 2.0 / CHAIN_LIMIT).ceil() as u64)
}

/// How many entries fit in `share` of `ram` bytes, with their buckets
/// (sized by [`buckets_for`]).
pub fn max_within(ram: u64, share: f64, objsize: u64) -> u64 {
    let per = entry_bytes(objsize) + BUCKET_BYTES as f64 * 2.0 / CHAIN_LIMIT;
    if per <= 0.0 {
        return 0;
    }
    ((ram as f64 * share) / per) as u64
}

/// One sizing: max, buckets, and what a full table costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    pub max: u64,
    pub buckets: u64,
    pub full_table_bytes: u64,
    /// Share of RAM (0..1) a full table takes; 0 when RAM is unknown.
    pub ram_share: f64,
    pub mean_chain_at_max: f64,
}

impl Size {
    pub fn new(max: u64, buckets: u64, objsize: u64, ram: u64) -> Size {
        let full = full_table_bytes(max, objsize, buckets);
        Size {
            max,
            buckets,
            full_table_bytes: full,
            ram_share: if ram > 0 {
                full as f64 / ram as f64
            } else {
                0.0
            },
            mean_chain_at_max: mean_chain(max, buckets),
        }
    }
}

/// What a recommendation is based on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Entries the table must hold at peak (observed or given).
    pub entries: u64,
    /// The table hit its max (count at max, drops or early drops): the
    /// real demand is unknown and at least the current max.
    pub capped: bool,
}

/// The recommended size for `demand` with `headroom`, within `budget` of
/// `ram`; `capped_by_memory` when the budget, not the demand, decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    pub size: Size,
    pub wanted_max: u64,
    pub budget_max: u64,
    pub capped_by_memory: bool,
}

/// Recommend max and buckets: `headroom` × the demand (when the table was
/// capped, the demand is taken as the current max), at least `floor` (the
/// kernel's default for this RAM, say), at most what fits `budget` of RAM;
/// buckets sized for the new max ([`buckets_for`]), never fewer than
/// `current_buckets` (shrinking the hash buys nothing).
#[allow(clippy::too_many_arguments)]
pub fn recommend(
    demand: Demand,
    current_max: u64,
    current_buckets: u64,
    headroom: f64,
    floor: u64,
    budget: f64,
    objsize: u64,
    ram: u64,
) -> Recommendation {
    let base = if demand.capped {
        demand.entries.max(current_max)
    } else {
        demand.entries
    };
    let wanted = ((base as f64 * headroom).ceil() as u64).max(floor).max(1);
    let budget_max = if ram > 0 {
        max_within(ram, budget, objsize)
    } else {
        u64::MAX
    };
    let max = wanted.min(budget_max).max(1);
    let buckets = buckets_for(max).max(current_buckets);
    Recommendation {
        size: Size::new(max, buckets, objsize, ram),
        wanted_max: wanted,
        budget_max,
        capped_by_memory: wanted > budget_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const GIB: u64 = 1 << 30;

    #[test]
    fn arithmetic() {
        assert_eq!(mean_chain(262_144, 262_144), 2.0);
        assert_eq!(mean_chain(65_536, 16_384), 8.0);
        assert_eq!(mean_chain(1, 0), 0.0);
        assert_eq!(round_buckets(1), 512);
        assert_eq!(round_buckets(0), 512);
        assert_eq!(round_buckets(262_144), 262_144);
        assert_eq!(round_buckets(262_145), 262_656);
        // 262144 × 256 × 1.5 + 262144 × 8.
        assert_eq!(full_table_bytes(262_144, 256, 262_144), 102_760_448);
        // The seed's worked example: 1048576 max, 262144 buckets at 352 B/16 B.
        assert_eq!(seed_full_table_bytes(1_048_576, 262_144), 373_293_056);
        assert_eq!(buckets_for(262_144), 262_144);
        assert_eq!(buckets_for(100_000), 100_352);
    }

    #[test]
    fn a_capped_table_doubles_from_its_max_within_the_budget() {
        // 24 GiB, 256 B objects: 10 % fits 2.4 GiB / (384 + 8) B ≈ 6.57M entries.
        let r = recommend(
            Demand {
                entries: 262_144,
                capped: true,
            },
            262_144,
            262_144,
            2.0,
            0,
            0.10,
            256,
            24 * GIB,
        );
        assert_eq!(r.size.max, 524_288);
        assert_eq!(r.size.buckets, 524_288);
        assert_eq!(r.size.mean_chain_at_max, 2.0);
        assert!(!r.capped_by_memory);
        // 1 GiB of RAM: the budget decides.
        let r = recommend(
            Demand {
                entries: 262_144,
                capped: true,
            },
            262_144,
            65_536,
            2.0,
            0,
            0.10,
            256,
            GIB,
        );
        assert!(r.capped_by_memory);
        assert_eq!(r.size.max, max_within(GIB, 0.10, 256));
        assert!(r.size.ram_share <= 0.1001, "{}", r.size.ram_share);
    }

    #[test]
    fn buckets_never_shrink() {
        let r = recommend(
            Demand {
                entries: 1000,
                capped: false,
            },
            262_144,
            262_144,
            2.0,
            0,
            0.10,
            256,
            24 * GIB,
        );
        assert_eq!(r.size.max, 2000);
        assert_eq!(r.size.buckets, 262_144);
        // A floor (the kernel default) wins over a small demand.
        let r = recommend(
            Demand {
                entries: 1000,
                capped: false,
            },
            65_536,
            65_536,
            2.0,
            262_144,
            0.10,
            256,
            24 * GIB,
        );
        assert_eq!(r.size.max, 262_144);
    }
}
