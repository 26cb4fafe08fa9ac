//! What the kernel does by default, by version: table sizing and the
//! conntrack timeouts. Pure knowledge, no I/O (see DOMAIN.md for sources:
//! net/netfilter/nf_conntrack_core.c `nf_conntrack_init_start`, and the
//! protocol trackers' timeout tables).

/// A kernel version (major, minor, patch).
pub type Version = (u32, u32, u32);

/// The first kernel whose default is `max = buckets` (factor 1, ~5.15:
/// "netfilter: conntrack: sanitize table size default settings").
pub const SANE_SIZING: Version = (5, 15, 0);

/// Default table size for a kernel and RAM, when no hashsize was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    pub buckets: u64,
    pub max: u64,
    /// max / buckets.
    pub factor: u64,
}

/// One page of hash heads: bucket counts are rounded up to this.
pub const BUCKETS_PER_PAGE: u64 = 512;

/// The kernel's default sizing for `mem_bytes` of RAM.
pub fn default_sizing(version: Version, mem_bytes: u64) -> Sizing {
    const GIB: u64 = 1 << 30;
    let (buckets, factor) = if version >= SANE_SIZING {
        let b = if mem_bytes > 4 * GIB {
            262_144
        } else if mem_bytes > GIB {
            65_536
        } else {
            (mem_bytes / 16_384 / 8).max(1024)
        };
        (b, 1)
    } else {
        let b = if mem_bytes > 4 * GIB {
            65_536
        } else if mem_bytes > GIB {
            16_384
        } else {
            (mem_bytes / 16_384 / 8).max(32)
        };
        (b, 4)
    };
    // nf_ct_alloc_hashtable() rounds the size up to whole pages of heads
    // in place; max = factor × the rounded size is computed after it.
    let buckets = buckets.div_ceil(BUCKETS_PER_PAGE) * BUCKETS_PER_PAGE;
    Sizing {
        buckets,
        max: factor * buckets,
        factor,
    }
}

/// When `nf_conntrack.hashsize=N` is given, max = 8 × N rounded up to
/// whole pages of heads ([`BUCKETS_PER_PAGE`]).
pub const GIVEN_HASHSIZE_FACTOR: u64 = 8;

/// Default conntrack timeouts (seconds) by sysctl name suffix
/// (`nf_conntrack_<name>`), as built into current kernels.
pub const DEFAULT_TIMEOUTS: &[(&str, u64)] = &[
    ("tcp_timeout_syn_sent", 120),
    ("tcp_timeout_syn_recv", 60),
    ("tcp_timeout_established", 432_000),
    ("tcp_timeout_fin_wait", 120),
    ("tcp_timeout_close_wait", 60),
    ("tcp_timeout_last_ack", 30),
    ("tcp_timeout_time_wait", 120),
    ("tcp_timeout_close", 10),
    ("tcp_timeout_max_retrans", 300),
    ("tcp_timeout_unacknowledged", 300),
    ("udp_timeout", 30),
    ("udp_timeout_stream", 120),
    ("icmp_timeout", 30),
    ("icmpv6_timeout", 30),
    ("generic_timeout", 600),
];

/// The default for one timeout name (e.g. "tcp_timeout_time_wait").
pub fn default_timeout(name: &str) -> Option<u64> {
    DEFAULT_TIMEOUTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

/// TCP keepalive's give-up horizon with Linux defaults: 7200 + 75 × 9 s.
pub const KEEPALIVE_HORIZON_SECS: u64 = 7200 + 75 * 9;

#[cfg(test)]
mod tests {
    use super::*;
    const GIB: u64 = 1 << 30;

    #[test]
    fn this_vm_24_gib_on_6_18() {
        // Measured here: nf_conntrack_max = nf_conntrack_buckets = 262144.
        let s = default_sizing((6, 18, 44), 24 * GIB);
        assert_eq!(
            s,
            Sizing {
                buckets: 262_144,
                max: 262_144,
                factor: 1
            }
        );
    }

    #[test]
    fn old_kernels_use_factor_four() {
        assert_eq!(
            default_sizing((4, 19, 0), 8 * GIB),
            Sizing {
                buckets: 65_536,
                max: 262_144,
                factor: 4
            }
        );
        assert_eq!(
            default_sizing((5, 4, 0), 2 * GIB),
            Sizing {
                buckets: 16_384,
                max: 65_536,
                factor: 4
            }
        );
    }

    #[test]
    fn small_machines() {
        // 512 MiB: 512 Mi / 16 Ki / 8 = 4096 buckets.
        assert_eq!(
            default_sizing((6, 1, 0), 512 << 20),
            Sizing {
                buckets: 4096,
                max: 4096,
                factor: 1
            }
        );
        // Floor 1024 on new kernels.
        assert_eq!(default_sizing((6, 1, 0), 64 << 20).max, 1024);
        // 2 GiB on new kernels: 65536.
        assert_eq!(default_sizing((6, 1, 0), 2 * GIB).buckets, 65_536);
    }

    #[test]
    fn max_follows_the_rounded_bucket_count() {
        // nf_conntrack_init_start: nf_ct_alloc_hashtable() rounds the size
        // up to a page of heads in place, then max = factor × that size.
        // 1000 MiB: 1000 Mi / 16 Ki / 8 = 8000 -> 8192 buckets, max 8192.
        assert_eq!(
            default_sizing((6, 1, 0), 1000 << 20),
            Sizing {
                buckets: 8192,
                max: 8192,
                factor: 1
            }
        );
        // 5.4, 600 MiB: 4800 -> 5120 buckets, max 4 × 5120 = 20480.
        assert_eq!(
            default_sizing((5, 4, 0), 600 << 20),
            Sizing {
                buckets: 5120,
                max: 20_480,
                factor: 4
            }
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(default_timeout("tcp_timeout_established"), Some(432_000));
        assert_eq!(default_timeout("tcp_timeout_time_wait"), Some(120));
        assert_eq!(default_timeout("nope"), None);
        assert_eq!(KEEPALIVE_HORIZON_SECS, 7875);
    }
}
