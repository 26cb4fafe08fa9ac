//! The knobs ctdoctor suggests, plans and tunes ([`KNOBS`]: full name, where
//! it lives, per-netns or global, what values it takes), and the one grammar
//! for naming them on the command line: `KEY=VALUE` as a user types it for
//! `tune --set` and `plan --what-if`.
//!
//! Accepted key forms, all meaning `net.netfilter.nf_conntrack_tcp_timeout_time_wait`:
//! `net.netfilter.nf_conntrack_tcp_timeout_time_wait`, `nf_conntrack_tcp_timeout_time_wait`,
//! `tcp_timeout_time_wait`, and the path form `net/netfilter/...`. The bucket count is
//! `nf_conntrack_buckets` (the sysctl) or `hashsize` (the module parameter).
//! Other keys are named as sysctl(8) names them (`net.ipv4.tcp_tw_reuse`,
//! `fs.file-max`).
//!
//! Also the one home of what values mean: [`same`] (two readings of a
//! value equal), [`normalize_value`], and [`KUBE_PROXY_KEYS`].
//!
//! Pure: no I/O. Not for: deciding values (checks::suggest, plan) or writing
//! them (tune).

use std::fmt;

/// Where a knob's value applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnobScope {
    /// Each network namespace has its own value.
    Netns,
    /// One value for the machine (read-only or shared in a child netns).
    Global,
}

/// What values a knob takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An unsigned integer in `min..=max`.
    Int { min: u64, max: u64 },
    /// Two integers `lo hi` with lo <= hi, each in `min..=max` (port ranges).
    Range { min: u64, max: u64 },
}

/// One knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    /// Full name: the sysctl name, or `nf_conntrack.hashsize` for the module parameter.
    pub key: &'static str,
    /// Relative path of its file (`proc/sys/...`, `sys/module/...`).
    pub path: &'static str,
    pub scope: KnobScope,
    pub kind: Kind,
}

impl Knob {
    /// Whether it is a sysctl (set with `sysctl -w`, persisted in sysctl.d).
    pub fn is_sysctl(&self) -> bool {
        self.path.starts_with("proc/sys/")
    }

    /// Whether it resizes the conntrack hash (`nf_conntrack_buckets` or
    /// `hashsize`): persisted through the module option or the kernel
    /// command line, not sysctl.d.
    pub fn is_buckets(&self) -> bool {
        matches!(
            self.key,
            "net.netfilter.nf_conntrack_buckets" | "nf_conntrack.hashsize"
        )
    }

    /// Check `value` against [`Knob::kind`]; returns it normalised
    /// (surrounding blanks trimmed, a range's blanks collapsed to one space).
    pub fn validate(&self, value: &str) -> Result<String, String> {
        let v = value.trim();
        let int = |s: &str, min: u64, max: u64| -> Result<u64, String> {
            let n: u64 = s
                .parse()
                .map_err(|_| format!("{}: {s:?} is not a whole number", self.key))?;
            if n < min || n > max {
                return Err(format!("{}: {n} is out of range {min}..={max}", self.key));
            }
            Ok(n)
        };
        match self.kind {
            Kind::Int { min, max } => int(v, min, max).map(|n| n.to_string()),
            Kind::Range { min, max } => {
                let parts: Vec<&str> = v.split_whitespace().collect();
                let [lo, hi] = parts[..] else {
                    return Err(format!(
                        "{}: expected two numbers \"LOW HIGH\", got {v:?}",
                        self.key
                    ));
                };
                let (lo, hi) = (int(lo, min, max)?, int(hi, min, max)?);
                if lo > hi {
                    return Err(format!("{}: {lo} is above {hi}", self.key));
                }
                Ok(format!("{lo} {hi}"))
            }
        }
    }

    /// The value as an integer (Int knobs).
    pub fn int(&self, value: &str) -> Option<u64> {
        match self.kind {
            Kind::Int { .. } => value.trim().parse().ok(),
            Kind::Range { .. } => None,
        }
    }
}

const SECS: Kind = Kind::Int {
    min: 0,
    max: i32::MAX as u64 / 1000,
};
const BOOL: Kind = Kind::Int { min: 0, max: 1 };
const COUNT: Kind = Kind::Int {
    min: 0,
    max: i32::MAX as u64,
};

macro_rules! nf {
    ($name:literal, $scope:ident, $kind:expr) => {
        Knob {
            key: concat!("net.netfilter.", $name),
            path: concat!("proc/sys/net/netfilter/", $name),
            scope: KnobScope::$scope,
            kind: $kind,
        }
    };
}

macro_rules! sys {
    ($key:literal, $path:literal, $scope:ident, $kind:expr) => {
        Knob {
            key: $key,
            path: concat!("proc/sys/", $path),
            scope: KnobScope::$scope,
            kind: $kind,
        }
    };
}

/// Every knob ctdoctor knows, conntrack first.
pub const KNOBS: &[Knob] = &[
    nf!("nf_conntrack_max", Global, COUNT),
    nf!(
        "nf_conntrack_buckets",
        Global,
        Kind::Int {
            min: 1,
            max: 1 << 30
        }
    ),
    Knob {
        key: "nf_conntrack.hashsize",
        path: "sys/module/nf_conntrack/parameters/hashsize",
        scope: KnobScope::Global,
        kind: Kind::Int {
            min: 1,
            max: 1 << 30,
        },
    },
    nf!("nf_conntrack_expect_max", Global, COUNT),
    nf!("nf_conntrack_tcp_timeout_syn_sent", Netns, SECS),
    nf!("nf_conntrack_tcp_timeout_syn_recv", Netns, SECS),
    nf!("nf_conntrack_tcp_timeout_established", Netns, SECS),
    nf!("nf_conntrack_tcp_timeout_fin_wait", Netns, SECS),
    nf!("nf_conntrack_tcp_timeout_close_wait", Netns, SECS),
    nf!("nf_conntrack_tcp_timeout_last_ack", Netns, SECS),
    nf!("nf_conntrack_tcp_timeout_time_wait", Netns, SECS),
    nf!("nf_conntrack_tcp_timeout_close", Netns, SECS),
    nf!("nf_conntrack_tcp_timeout_max_retrans", Netns, SECS),
    nf!("nf_conntrack_tcp_timeout_unacknowledged", Netns, SECS),
    nf!("nf_conntrack_udp_timeout", Netns, SECS),
    nf!("nf_conntrack_udp_timeout_stream", Netns, SECS),
    nf!("nf_conntrack_icmp_timeout", Netns, SECS),
    nf!("nf_conntrack_icmpv6_timeout", Netns, SECS),
    nf!("nf_conntrack_generic_timeout", Netns, SECS),
    nf!("nf_conntrack_tcp_loose", Netns, BOOL),
    nf!("nf_conntrack_tcp_be_liberal", Netns, BOOL),
    nf!("nf_conntrack_tcp_max_retrans", Netns, COUNT),
    nf!("nf_conntrack_acct", Netns, BOOL),
    nf!("nf_conntrack_timestamp", Netns, BOOL),
    nf!("nf_conntrack_events", Netns, Kind::Int { min: 0, max: 2 }),
    nf!(
        "nf_conntrack_log_invalid",
        Netns,
        Kind::Int { min: 0, max: 255 }
    ),
    nf!("nf_conntrack_checksum", Netns, BOOL),
    sys!(
        "net.ipv4.tcp_tw_reuse",
        "net/ipv4/tcp_tw_reuse",
        Netns,
        Kind::Int { min: 0, max: 2 }
    ),
    sys!(
        "net.ipv4.ip_local_port_range",
        "net/ipv4/ip_local_port_range",
        Netns,
        Kind::Range { min: 1, max: 65535 }
    ),
    sys!(
        "net.ipv4.tcp_max_tw_buckets",
        "net/ipv4/tcp_max_tw_buckets",
        Netns,
        COUNT
    ),
    sys!(
        "net.ipv4.tcp_max_syn_backlog",
        "net/ipv4/tcp_max_syn_backlog",
        Netns,
        COUNT
    ),
    sys!(
        "net.ipv4.tcp_syncookies",
        "net/ipv4/tcp_syncookies",
        Netns,
        Kind::Int { min: 0, max: 2 }
    ),
    sys!(
        "net.ipv4.tcp_fin_timeout",
        "net/ipv4/tcp_fin_timeout",
        Netns,
        SECS
    ),
    sys!("net.core.somaxconn", "net/core/somaxconn", Netns, COUNT),
    sys!(
        "net.core.netdev_max_backlog",
        "net/core/netdev_max_backlog",
        Global,
        COUNT
    ),
    sys!(
        "net.core.netdev_budget",
        "net/core/netdev_budget",
        Global,
        COUNT
    ),
    sys!(
        "net.core.netdev_budget_usecs",
        "net/core/netdev_budget_usecs",
        Global,
        COUNT
    ),
    sys!(
        "fs.file-max",
        "fs/file-max",
        Global,
        Kind::Int {
            min: 1,
            max: u64::MAX >> 1
        }
    ),
    sys!(
        "fs.nr_open",
        "fs/nr_open",
        Global,
        Kind::Int {
            min: 1,
            max: i32::MAX as u64
        }
    ),
];

/// The knob `name` names, in any accepted form (see the module docs).
pub fn lookup(name: &str) -> Result<&'static Knob, String> {
    let n = name.trim();
    let n = n.strip_prefix("/proc/sys/").unwrap_or(n);
    // Path form (a/b/c) -> dotted; sysctl(8) keys never hold a '/' otherwise.
    let dotted = if n.contains('/') && !n.contains('.') {
        n.replace('/', ".")
    } else {
        n.to_string()
    };
    let n = dotted.as_str();
    let candidates = match n {
        "hashsize" | "nf_conntrack.hashsize" => vec!["nf_conntrack.hashsize".to_string()],
        "buckets" => vec!["net.netfilter.nf_conntrack_buckets".to_string()],
        _ => {
            let short = n.strip_prefix("net.netfilter.").unwrap_or(n);
            let mut v = vec![n.to_string(), format!("net.netfilter.{short}")];
            if !short.starts_with("nf_conntrack_") {
                v.push(format!("net.netfilter.nf_conntrack_{short}"));
            }
            v
        }
    };
    candidates
        .iter()
        .find_map(|c| KNOBS.iter().find(|k| k.key == c))
        .ok_or_else(|| {
            format!(
                "unknown setting {name:?}; known: {}",
                KNOBS
                    .iter()
                    .map(|k| short_name(k.key))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The shortest accepted form of a key (`nf_conntrack_max`, `fs.file-max`).
pub fn short_name(key: &str) -> &str {
    key.strip_prefix("net.netfilter.").unwrap_or(match key {
        "nf_conntrack.hashsize" => "hashsize",
        k => k,
    })
}

/// One `KEY=VALUE` as parsed: the knob and its validated value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub knob: &'static Knob,
    pub value: String,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.knob.key, self.value)
    }
}

/// Parse one `KEY=VALUE`.
pub fn parse(s: &str) -> Result<Setting, String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    let knob = lookup(k)?;
    let value = knob.validate(v)?;
    Ok(Setting { knob, value })
}

/// Parse `KEY=VALUE[,KEY=VALUE...]` (a range value keeps its space:
/// `net.ipv4.ip_local_port_range=1024 65535`). A key given twice is an error.
pub fn parse_list(s: &str) -> Result<Vec<Setting>, String> {
    let mut out: Vec<Setting> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let set = parse(part)?;
        if let Some(prev) = out.iter().find(|p| p.knob.key == set.knob.key) {
            return Err(format!(
                "{} given twice ({} and {})",
                set.knob.key, prev.value, set.value
            ));
        }
        out.push(set);
    }
    if out.is_empty() {
        return Err("no KEY=VALUE given".into());
    }
    Ok(out)
}

/// Keys kube-proxy sets itself at every start.
pub const KUBE_PROXY_KEYS: &[&str] = &[
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_buckets",
];

/// Values equal as numbers when both are numbers, else as normalised text.
pub fn same(a: &str, b: &str) -> bool {
    match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => normalize_value(a) == normalize_value(b),
    }
}

/// A sysctl value as written or read, its blanks collapsed (a port range
/// reads `32768\t60999`).
pub fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_names_the_same_knob() {
        for form in [
            "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
            "nf_conntrack_tcp_timeout_time_wait",
            "tcp_timeout_time_wait",
            "net/netfilter/nf_conntrack_tcp_timeout_time_wait",
            "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait",
            " tcp_timeout_time_wait ",
        ] {
            assert_eq!(
                lookup(form).unwrap().key,
                "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
                "{form}"
            );
        }
        assert_eq!(lookup("max").unwrap().key, "net.netfilter.nf_conntrack_max");
        assert_eq!(lookup("hashsize").unwrap().key, "nf_conntrack.hashsize");
        assert_eq!(
            lookup("nf_conntrack_buckets").unwrap().key,
            "net.netfilter.nf_conntrack_buckets"
        );
        assert_eq!(lookup("fs.file-max").unwrap().key, "fs.file-max");
        assert_eq!(lookup("fs/file-max").unwrap().key, "fs.file-max");
        assert_eq!(
            lookup("net.ipv4.tcp_tw_reuse").unwrap().scope,
            KnobScope::Netns
        );
        assert_eq!(lookup("nf_conntrack_max").unwrap().scope, KnobScope::Global);
    }

    #[test]
    fn unknown_keys_name_the_known_ones() {
        let e = lookup("tcp_timeout_time_wiat").unwrap_err();
        assert!(e.contains("unknown setting"), "{e}");
        assert!(e.contains("tcp_timeout_time_wait"), "{e}");
        assert!(e.contains("hashsize"), "{e}");
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(parse("tcp_timeout_time_wait=15").unwrap().value, "15");
        assert!(parse("tcp_timeout_time_wait=15s").is_err());
        assert!(parse("tcp_timeout_time_wait=-1").is_err());
        assert!(parse("nf_conntrack_buckets=0").is_err());
        assert!(parse("nf_conntrack_buckets=1073741824").is_ok());
        let e = parse("hashsize=1073741825").unwrap_err();
        assert!(e.contains("out of range 1..=1073741824"), "{e}");
        assert!(parse("nf_conntrack_tcp_loose=2").is_err());
        assert!(parse("tcp_timeout_time_wait").is_err());
        assert_eq!(
            parse("net.ipv4.ip_local_port_range= 1024   65535 ")
                .unwrap()
                .value,
            "1024 65535"
        );
        assert!(parse("net.ipv4.ip_local_port_range=9000 1024").is_err());
        assert!(parse("net.ipv4.ip_local_port_range=1024").is_err());
    }

    #[test]
    fn lists() {
        let v = parse_list("tcp_timeout_time_wait=15, nf_conntrack_max=524288").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].to_string(), "net.netfilter.nf_conntrack_max=524288");
        let e = parse_list("time_wait=1,tcp_timeout_time_wait=2").unwrap_err();
        assert!(e.contains("unknown"), "{e}");
        let e =
            parse_list("tcp_timeout_time_wait=1,nf_conntrack_tcp_timeout_time_wait=2").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert!(parse_list(" , ").is_err());
    }

    #[test]
    fn knob_keys_are_unique() {
        for (i, a) in KNOBS.iter().enumerate() {
            assert!(KNOBS[i + 1..].iter().all(|b| b.key != a.key), "{}", a.key);
        }
    }
}
