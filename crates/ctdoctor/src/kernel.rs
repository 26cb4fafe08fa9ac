//! What the kernel does by default, by version: table sizing and the
//! conntrack timeouts. Pure knowledge, no I/O.
//!
//! Sizing is `nf_conntrack_init_start()` in net/netfilter/nf_conntrack_core.c
//! (`nf_conntrack_init_init_net()` before 3.10's rework), read in the
//! mainline sources of each era:
//!
//! - up to 3.19: `htable_size = RAM / 16384 / sizeof(struct hlist_head)`,
//!   16384 above 1 GiB, at least 32; `max = 4 × htable_size`.
//! - 4.0: "netfilter: conntrack: adjust nf_conntrack_buckets default value"
//!   (Marcelo Leitner, nf-next 2014-12-23, first released in 4.0) adds
//!   65536 buckets above 4 GiB, so max 262144 there.
//! - 4.7: "netfilter: conntrack: use a single hashtable for all namespaces"
//!   (56d52d4892d0): the table is allocated in `init_start` and max is
//!   computed from the size `nf_ct_alloc_hashtable()` rounded up to whole
//!   pages of heads; before, each netns rounded its own copy and max used
//!   the unrounded size (it differs only below 1 GiB).
//! - 5.15: "netfilter: conntrack: sanitize table size default settings"
//!   (d532bcd0b269, Florian Westphal): 262144 above 4 GiB on 64-bit,
//!   65536 above 1 GiB, at least 1024, and `max = buckets` (factor 1).
//! - always: a `hashsize=` given at boot (module option or
//!   `nf_conntrack.hashsize=` on the command line) gives `max = 8 × hashsize`.
//!
//! "RAM" is `totalram_pages()`, which /proc/meminfo prints as MemTotal; a
//! bucket head is 8 bytes (64-bit kernels assumed). These are mainline
//! rules: distribution kernels backport (the seed reports CentOS 7 3.10
//! hosts with 8 GB at 65536 / 262144, i.e. the 4.0 rule, and Aliyun
//! CentOS 7 at 16384 / 65536), so the boot log line `nf_conntrack version
//! 0.5.0 (N buckets, M max)`, which `init_start` printed up to the 4.x
//! kernels (5.x no longer prints it), wins when the log still has it
//! (`host::kmsg`).

/// A kernel version (major, minor, patch).
pub type Version = (u32, u32, u32);

/// 65536 buckets above 4 GiB ("adjust nf_conntrack_buckets default value").
pub const FOUR_GIB_STEP: Version = (4, 0, 0);
/// One global hash table; max computed from the rounded size (56d52d4892d0).
pub const GLOBAL_HASH: Version = (4, 7, 0);
/// `max = buckets` (factor 1) and the larger steps (d532bcd0b269).
pub const SANE_SIZING: Version = (5, 15, 0);

/// nf_conntrack_max, nf_conntrack_buckets and nf_conntrack_expect_max are
/// read-only (0444) in a child netns: "netfilter: conntrack: Make global
/// sysctls readonly in non-init netns" (2671fa4dc010), 5.13, backported to
/// 5.10.38 and 5.4.120. Before, a child's write changed the global value.
/// `tune` reads the file's mode rather than assuming it (a per-netns max is
/// in nf-next testing).
pub const CHILD_GLOBALS_READ_ONLY: Version = (5, 13, 0);

/// Clashing inserts of parallel UDP flows (a resolver's A and AAAA
/// queries from one socket through a DNAT balancing them to different
/// backends) are resolved: the loser is inserted with a 1 s timeout instead
/// of dropped (nf_ct_resolve_clash_harder, "netfilter: conntrack: allow
/// insertion of clashing entries", 6a757c07e51f, 5.6); `clash_resolve`
/// counts them where the kernel has that counter. Before, the loser's
/// packet was dropped and counted as insert_failed: the DNS "5-second
/// delay" (Kubernetes #56903).
pub const CLASH_RESOLVE_HARDER: Version = (5, 6, 0);

/// An insert into a hash chain longer than a random limit is refused and
/// counted as `chaintoolong` (the /proc/net/stat column is `chainlength`,
/// where `delete_list` was): "netfilter: refuse insertion if chain has
/// grown too large" (d7e7747ac5c2) with "make max chain length random",
/// 5.15. The limit was 8–32 then; "adopt safer max chain length" raised it
/// to 50–80 in 6.3 (and the stable kernels that took that fix).
pub const CHAIN_LIMIT: Version = (5, 15, 0);
/// The limit's range on [`CHAIN_LIMIT`] kernels before 6.3, and since.
pub const CHAIN_LIMIT_RANGE_OLD: (u32, u32) = (8, 32);
pub const CHAIN_LIMIT_SAFER: Version = (6, 3, 0);
pub const CHAIN_LIMIT_RANGE: (u32, u32) = (50, 80);

/// The kernel that names the netns in "table full in netns N" (and prints
/// the inode-less form for the init netns only); before, every namespace's
/// line is the same "nf_conntrack: table full, dropping packet".
pub const NETNS_IN_LOG: Version = (6, 17, 0);

/// Default table size for a kernel and RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// nf_conntrack_buckets (rounded up to whole pages of heads).
    pub buckets: u64,
    pub max: u64,
    /// The factor max was computed with (max / the size it was computed from).
    pub factor: u64,
}

/// One page of hash heads: bucket counts are rounded up to this.
pub const BUCKETS_PER_PAGE: u64 = 512;

/// When `nf_conntrack.hashsize=N` is given at boot, max = 8 × N.
pub const GIVEN_HASHSIZE_FACTOR: u64 = 8;

fn round_to_page(n: u64) -> u64 {
    n.max(1).div_ceil(BUCKETS_PER_PAGE) * BUCKETS_PER_PAGE
}

/// Bucket count and max from the size `init_start` chose and the factor:
/// the kernel rounds the table to whole pages of heads; from 4.7 max is
/// computed after that rounding, before it from the size as chosen.
fn sized(version: Version, chosen: u64, factor: u64) -> Sizing {
    let buckets = round_to_page(chosen);
    let base = if version >= GLOBAL_HASH {
        buckets
    } else {
        chosen
    };
    Sizing {
        buckets,
        max: factor.saturating_mul(base),
        factor,
    }
}

/// The mainline kernel's default sizing for `mem_bytes` of RAM (MemTotal),
/// when no hashsize was given at boot.
pub fn default_sizing(version: Version, mem_bytes: u64) -> Sizing {
    const GIB: u64 = 1 << 30;
    let by_ram = mem_bytes / 16_384 / 8;
    if version >= SANE_SIZING {
        let b = if mem_bytes > 4 * GIB {
            262_144
        } else if mem_bytes > GIB {
            65_536
        } else {
            by_ram.max(1024)
        };
        sized(version, b, 1)
    } else {
        let b = if mem_bytes > 4 * GIB && version >= FOUR_GIB_STEP {
            65_536
        } else if mem_bytes > GIB {
            16_384
        } else {
            by_ram.max(32)
        };
        sized(version, b, 4)
    }
}

/// The sizing a boot `hashsize=N` gives: N buckets (rounded), max 8 × N.
pub fn given_hashsize_sizing(version: Version, hashsize: u64) -> Sizing {
    sized(version, hashsize.max(1), GIVEN_HASHSIZE_FACTOR)
}

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

/// Built-in defaults for net.netfilter knobs that are not timeouts and do
/// not depend on RAM (net/netfilter/nf_conntrack_standalone.c,
/// nf_conntrack_proto_tcp.c).
pub const OTHER_DEFAULTS: &[(&str, &str)] = &[
    ("nf_conntrack_tcp_loose", "1"),
    ("nf_conntrack_tcp_be_liberal", "0"),
    ("nf_conntrack_tcp_ignore_invalid_rst", "0"),
    ("nf_conntrack_tcp_max_retrans", "3"),
    ("nf_conntrack_checksum", "1"),
    ("nf_conntrack_log_invalid", "0"),
];

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
    fn before_4_0_there_is_no_4_gib_step() {
        // 3.10 mainline (nf_conntrack_init_init_net): 16384 above 1 GiB
        // whatever the RAM, max = 4 × 16384.
        for mem in [2 * GIB, 8 * GIB, 64 * GIB] {
            assert_eq!(
                default_sizing((3, 10, 0), mem),
                Sizing {
                    buckets: 16_384,
                    max: 65_536,
                    factor: 4
                },
                "{mem}"
            );
        }
        // 3.19 still; 4.0 ("adjust nf_conntrack_buckets default value") steps up.
        assert_eq!(default_sizing((3, 19, 8), 8 * GIB).buckets, 16_384);
        assert_eq!(
            default_sizing((4, 0, 5), 8 * GIB),
            Sizing {
                buckets: 65_536,
                max: 262_144,
                factor: 4
            }
        );
        // The steps are strict: exactly 4 GiB (or 1 GiB) of MemTotal is below.
        assert_eq!(default_sizing((4, 9, 0), 4 * GIB).buckets, 16_384);
        assert_eq!(default_sizing((5, 15, 0), 4 * GIB).buckets, 65_536);
        assert_eq!(default_sizing((5, 15, 0), 4 * GIB + 4096).buckets, 262_144);
        assert_eq!(default_sizing((6, 1, 0), GIB).buckets, 8192);
    }

    #[test]
    fn factor_one_from_5_15() {
        // d532bcd0b269: same max as 5.14 above 1 GiB, four times the buckets.
        for (mem, b) in [(2 * GIB, 65_536), (8 * GIB, 262_144), (256 * GIB, 262_144)] {
            let old = default_sizing((5, 14, 21), mem);
            let new = default_sizing((5, 15, 0), mem);
            assert_eq!(new.buckets, b);
            assert_eq!(new.max, old.max, "{mem}");
            assert_eq!(new.buckets, 4 * old.buckets, "{mem}");
        }
    }

    #[test]
    fn before_4_7_max_uses_the_unrounded_size() {
        // Per-netns tables: each netns rounded its own copy of the size,
        // max was computed from the size as chosen. 3.10, 600 MiB:
        // 4800 buckets chosen -> 5120 allocated, max 4 × 4800.
        assert_eq!(
            default_sizing((3, 10, 0), 600 << 20),
            Sizing {
                buckets: 5120,
                max: 19_200,
                factor: 4
            }
        );
        // Tiny machines: the floor of 32 heads is one page of 512.
        assert_eq!(
            default_sizing((3, 10, 0), 1 << 20),
            Sizing {
                buckets: 512,
                max: 128,
                factor: 4
            }
        );
        assert_eq!(default_sizing((4, 9, 0), 1 << 20).max, 2048);
    }

    #[test]
    fn a_boot_hashsize_gives_eight_times_max() {
        assert_eq!(
            given_hashsize_sizing((6, 18, 0), 131_072),
            Sizing {
                buckets: 131_072,
                max: 1_048_576,
                factor: 8
            }
        );
        // Rounded to a page of heads first (from 4.7), 8 × the rounded size.
        assert_eq!(given_hashsize_sizing((6, 18, 0), 1000).max, 8192);
        assert_eq!(given_hashsize_sizing((3, 10, 0), 1000).max, 8000);
        assert_eq!(given_hashsize_sizing((3, 10, 0), 1000).buckets, 1024);
    }

    #[test]
    fn timeouts() {
        assert_eq!(default_timeout("tcp_timeout_established"), Some(432_000));
        assert_eq!(default_timeout("tcp_timeout_time_wait"), Some(120));
        assert_eq!(default_timeout("nope"), None);
        assert_eq!(KEEPALIVE_HORIZON_SECS, 7875);
    }
}
