//! Who needs conntrack here: the kernel modules that hold nf_conntrack, the
//! nftables / iptables rulesets (read into the ruleset model,
//! [`super::ruleset`]), interfaces that imply container networking, and the
//! systemd units and config files of the programs that make rules
//! (firewalld, ufw, docker, the nftables and iptables services).
//!
//! Sources: /proc/modules ("used by" column), `nft -j list ruleset` (older
//! captures: `nft list ruleset` text), `iptables-nft-save` /
//! `ip6tables-nft-save`, `iptables-legacy-save -t T` for the tables listed
//! in /proc/net/ip_tables_names (and the IPv6 twins), /proc/net/dev,
//! /etc/systemd/system/*.wants and /run/systemd/units, /etc/ufw/ufw.conf and
//! the firewall config files.
//!
//! Strictly read-only: no module is ever loaded. nft and iptables-nft talk
//! nfnetlink, and the kernel autoloads nf_tables for an nfnetlink request
//! when it is missing, so they run only when nf_tables is already loaded
//! or built in (/proc/modules or /sys/module/nf_tables). The legacy
//! iptables tools load a table's module on access, so they run only for
//! tables the kernel already lists.
//!
//! Not for: judging whether conntrack could be turned off, or naming the
//! programs (checks/persist.rs, checks/owners.rs).

use super::ruleset::{self, Backend, Field, Ruleset};
use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumers {
    /// Modules holding nf_conntrack (its "used by" column in /proc/modules).
    /// Missing when /proc/modules is absent (no module support) or when
    /// nf_conntrack is not listed there (built in or not loaded).
    pub modules: Fact<Vec<String>>,
    /// `nft -j list ruleset` (in older captures, `nft list ruleset` text).
    pub nft: Fact<Ruleset>,
    /// iptables-nft-save + ip6tables-nft-save.
    pub iptables_nft: Fact<Ruleset>,
    /// iptables-legacy-save / ip6tables-legacy-save, loaded tables only.
    pub iptables_legacy: Fact<Ruleset>,
    /// Interfaces that imply container networking, by kind.
    pub interfaces: Fact<Vec<IfaceGroup>>,
    /// Loopback packets received since boot (/proc/net/dev), a hint for
    /// NOTRACK candidates.
    pub lo_rx_packets: Option<u64>,
    /// systemd units enabled (a link in /etc/systemd/system/*.wants) or
    /// running (/run/systemd/units/invocation:NAME). Missing without systemd.
    pub units: Fact<Vec<Unit>>,
    /// `ENABLED=` of /etc/ufw/ufw.conf (ufw's own on/off switch), when the
    /// file exists.
    pub ufw_enabled: Option<bool>,
    /// Which of [`CONFIG_FILES`] exist (absolute paths).
    pub config_files: Vec<String>,
}

/// One systemd unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// `firewalld.service`, `docker.socket`.
    pub name: String,
    /// Started at boot: linked in a .wants directory of /etc/systemd/system.
    pub enabled: bool,
    /// Running now: systemd lists an invocation of it.
    pub active: bool,
}

/// The .wants directories that say a unit starts at boot.
const WANTS_DIRS: &[&str] = &[
    "etc/systemd/system/multi-user.target.wants",
    "etc/systemd/system/sysinit.target.wants",
    "etc/systemd/system/basic.target.wants",
    "etc/systemd/system/network-pre.target.wants",
    "etc/systemd/system/network-online.target.wants",
    "etc/systemd/system/sockets.target.wants",
];

/// Config files of the programs that make firewall rules.
pub const CONFIG_FILES: &[&str] = &[
    "etc/nftables.conf",
    "etc/sysconfig/nftables.conf",
    "etc/iptables/rules.v4",
    "etc/iptables/rules.v6",
    "etc/sysconfig/iptables",
    "etc/sysconfig/ip6tables",
    "etc/firewalld/firewalld.conf",
    "etc/ufw/ufw.conf",
];

impl Consumers {
    /// The rulesets the kernel runs, each rule once ([`ruleset::effective`]):
    /// those that could be read.
    pub fn effective(&self) -> Vec<(Backend, Ruleset)> {
        ruleset::effective(
            self.nft.as_ref().ok(),
            self.iptables_nft.as_ref().ok(),
            self.iptables_legacy.as_ref().ok(),
        )
    }

    /// Why no ruleset could be read, when none was (nft, iptables-nft and
    /// iptables-legacy all unavailable) and one of them may hold rules we
    /// could not see; None when one was read, or when each is known to hold
    /// none (nf_tables not loaded, no legacy table loaded).
    pub fn rulesets_unread(&self) -> Option<String> {
        let errs = [
            ("nft", self.nft.as_ref().err()?),
            ("iptables_nft", self.iptables_nft.as_ref().err()?),
            ("iptables_legacy", self.iptables_legacy.as_ref().err()?),
        ];
        let known_empty = |name: &str, u: &Unavailable| match name {
            // No ip_tables_names (ip_tables not loaded) or no table in it.
            "iptables_legacy" => {
                matches!(u, Unavailable::Missing { what } if what.starts_with("proc/net/ip"))
            }
            _ => u.what() == NF_TABLES_NOT_LOADED,
        };
        if errs.iter().all(|(n, u)| known_empty(n, u)) {
            return None;
        }
        let why: Vec<String> = errs
            .iter()
            .filter(|(n, u)| !known_empty(n, u))
            .map(|(n, u)| format!("{n}: {u}"))
            .collect();
        Some(format!("no ruleset could be read ({})", why.join("; ")))
    }

    pub fn unit(&self, name: &str) -> Option<&Unit> {
        self.units.as_ref().ok()?.iter().find(|u| u.name == name)
    }
}

/// What one ruleset uses of conntrack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesetUse {
    /// Rule lines scanned.
    pub rules: u64,
    /// Feature -> number of rule lines using it. Features: `ct_state`,
    /// `ct_status`, `ct_zone`, `masquerade`, `snat`, `dnat`, `redirect`,
    /// `notrack`.
    pub uses: BTreeMap<String, u64>,
    /// The first few matching lines, trimmed (for the report).
    pub examples: Vec<String>,
}

impl RulesetUse {
    pub fn count(&self, feature: &str) -> u64 {
        self.uses.get(feature).copied().unwrap_or(0)
    }
    /// Whether NAT of any kind is configured.
    pub fn has_nat(&self) -> bool {
        ["masquerade", "snat", "dnat", "redirect"]
            .iter()
            .any(|f| self.count(f) > 0)
    }
    /// Add `other`'s counts (and examples, up to the limit).
    pub fn add(&mut self, other: &RulesetUse) {
        self.rules += other.rules;
        for (k, v) in &other.uses {
            *self.uses.entry(k.clone()).or_default() += v;
        }
        for e in &other.examples {
            if self.examples.len() < MAX_EXAMPLES {
                self.examples.push(e.clone());
            }
        }
    }
}

/// Interfaces of one container-networking kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceGroup {
    /// `docker`, `docker_network`, `cni`, `flannel`, `calico`, `cilium`,
    /// `weave`, `kube_ipvs`, `libvirt`, `podman`, `veth`.
    pub kind: String,
    pub count: u64,
    /// Up to 5 names.
    pub names: Vec<String>,
}

const MAX_EXAMPLES: usize = 8;

/// One line of /proc/modules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    pub name: String,
    pub refcount: u64,
    pub used_by: Vec<String>,
}

/// /proc/modules: `name size refcount used_by state address`, where
/// used_by is `-` or `a,b,` (with a trailing comma). Lines that do not
/// look like that are skipped.
pub fn parse_proc_modules(text: &str) -> Vec<Module> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let _size: u64 = f.next()?.parse().ok()?;
            let refcount: u64 = f.next()?.parse().ok()?;
            let used = f.next().unwrap_or("-");
            let used_by = if used == "-" {
                Vec::new()
            } else {
                used.split(',')
                    .filter(|s| !s.is_empty() && *s != "[permanent]")
                    .map(str::to_string)
                    .collect()
            };
            Some(Module {
                name: name.to_string(),
                refcount,
                used_by,
            })
        })
        .collect()
}

/// What one ruleset uses of conntrack, rule by rule: `ct_state` (state
/// matches, and iptables' other `-m conntrack` matches), `ct_status`,
/// `ct_zone` (matched or set), `ct_mark` and `ct_helper` (matched or set),
/// each NAT kind, `notrack`.
pub fn summarize(rs: &Ruleset) -> RulesetUse {
    let mut u = RulesetUse::default();
    for r in &rs.rules {
        u.rules += 1;
        let mut feats: Vec<&str> = Vec::new();
        let mut push = |f: &'static str| {
            if !feats.contains(&f) {
                feats.push(f);
            }
        };
        for m in &r.matches {
            match &m.field {
                Field::CtState => push("ct_state"),
                Field::Ct(k) => match k.as_str() {
                    "status" => push("ct_status"),
                    "zone" => push("ct_zone"),
                    "mark" | "label" => push("ct_mark"),
                    "helper" => push("ct_helper"),
                    _ => push("ct_state"),
                },
                _ => {}
            }
        }
        for k in &r.ct_set {
            match k.as_str() {
                "zone" => push("ct_zone"),
                "helper" => push("ct_helper"),
                _ => push("ct_mark"),
            }
        }
        if let Some(n) = &r.nat {
            push(n.kind.as_str());
        }
        if r.notrack {
            push("notrack");
        }
        for f in &feats {
            *u.uses.entry((*f).to_string()).or_default() += 1;
        }
        if !feats.is_empty() && u.examples.len() < MAX_EXAMPLES {
            u.examples.push(super::truncate(&r.text, 160).to_string());
        }
    }
    u
}

/// The container-networking kind an interface name implies, if any.
pub fn iface_kind(name: &str) -> Option<&'static str> {
    let kind = if name == "docker0" {
        "docker"
    } else if name.starts_with("br-") {
        "docker_network"
    } else if name == "cni0" {
        "cni"
    } else if name.starts_with("flannel.") || name == "flannel0" {
        "flannel"
    } else if name.starts_with("cali") || name == "vxlan.calico" {
        "calico"
    } else if name.starts_with("cilium_") || name.starts_with("lxc") {
        "cilium"
    } else if name == "weave" {
        "weave"
    } else if name == "kube-ipvs0" {
        "kube_ipvs"
    } else if name.starts_with("virbr") {
        "libvirt"
    } else if name.starts_with("podman") || name.starts_with("cni-podman") {
        "podman"
    } else if name.starts_with("veth") {
        "veth"
    } else {
        return None;
    };
    Some(kind)
}

/// /proc/net/dev: interface names (and lo's rx packets).
pub fn parse_net_dev(text: &str) -> (Vec<String>, Option<u64>) {
    let mut names = Vec::new();
    let mut lo = None;
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        if name == "lo" {
            lo = rest
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok());
        }
        names.push(name.to_string());
    }
    (names, lo)
}

/// Group interface names by container-networking kind.
pub fn group_ifaces(names: &[String]) -> Vec<IfaceGroup> {
    let mut groups: BTreeMap<&str, IfaceGroup> = BTreeMap::new();
    for n in names {
        if let Some(kind) = iface_kind(n) {
            let g = groups.entry(kind).or_insert_with(|| IfaceGroup {
                kind: kind.to_string(),
                ..IfaceGroup::default()
            });
            g.count += 1;
            if g.names.len() < 5 {
                g.names.push(n.clone());
            }
        }
    }
    groups.into_values().collect()
}

pub fn read(root: &Root) -> Fact<Consumers> {
    let modules = root.read_text("proc/modules").and_then(|t| {
        parse_proc_modules(&t)
            .into_iter()
            .find(|m| m.name == "nf_conntrack")
            .map(|m| m.used_by)
            .ok_or_else(|| Unavailable::Missing {
                what: "proc/modules: nf_conntrack not listed (built in or not loaded)".into(),
            })
    });
    let nft = read_nft(root);
    let iptables_nft = merge(
        root.probe("probe:iptables_nft_save", || {
            nf_tables_present()?;
            run_tool("iptables-nft-save", &[])
        }),
        root.probe("probe:ip6tables_nft_save", || {
            nf_tables_present()?;
            run_tool("ip6tables-nft-save", &[])
        }),
    );
    let iptables_legacy = merge(
        legacy(
            root,
            "proc/net/ip_tables_names",
            "probe:iptables_legacy_save",
            "iptables-legacy-save",
        ),
        legacy(
            root,
            "proc/net/ip6_tables_names",
            "probe:ip6tables_legacy_save",
            "ip6tables-legacy-save",
        ),
    );
    let dev = root.read_text("proc/net/dev").map(|t| parse_net_dev(&t));
    let lo_rx_packets = dev.as_ref().ok().and_then(|d| d.1);
    let interfaces = dev.map(|(names, _)| group_ifaces(&names));
    let ufw_enabled = root
        .read_text("etc/ufw/ufw.conf")
        .ok()
        .and_then(|t| parse_ufw_enabled(&t));
    let config_files = CONFIG_FILES
        .iter()
        .filter(|p| root.read(p).is_ok())
        .map(|p| format!("/{p}"))
        .collect();
    Ok(Consumers {
        modules,
        nft,
        iptables_nft,
        iptables_legacy,
        interfaces,
        lo_rx_packets,
        units: read_units(root),
        ufw_enabled,
        config_files,
    })
}

/// Why `nft` was not asked: nf_tables is not loaded, so no nft table can
/// exist (and asking would load it). See [`nf_tables_present`].
pub const NF_TABLES_NOT_LOADED: &str = "nf_tables is not loaded (not asked: asking could load it)";

/// The nft ruleset: JSON (`probe:nft_ruleset_json`); when that cannot be
/// had — a capture made before ctdoctor read JSON, nft built without it —
/// the text (`probe:nft_ruleset`, which older captures hold as
/// `nft list ruleset`).
fn read_nft(root: &Root) -> Fact<Ruleset> {
    const JSON: &str = "probe:nft_ruleset_json";
    let json = root.probe(JSON, || {
        nf_tables_present()?;
        run_tool("nft", &["-j", "list", "ruleset"])
    });
    match json {
        Ok(b) => ruleset::parse_nft_json(&String::from_utf8_lossy(&b))
            .map_err(|e| Unavailable::malformed(JSON, e)),
        Err(e) if e.is_permission() => Err(e),
        Err(e) if e.what() == NF_TABLES_NOT_LOADED => Err(e),
        Err(_) => root
            .probe("probe:nft_ruleset", || {
                nf_tables_present()?;
                run_tool("nft", &["-a", "list", "ruleset"])
            })
            .map(|b| ruleset::parse_nft_text(&String::from_utf8_lossy(&b))),
    }
}

/// `ENABLED=yes|no` in ufw.conf (quotes allowed); None when not set.
pub fn parse_ufw_enabled(text: &str) -> Option<bool> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("ENABLED=")?;
        Some(
            v.trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .eq_ignore_ascii_case("yes"),
        )
    })
}

/// Units enabled at boot ([`WANTS_DIRS`]) or running (/run/systemd/units);
/// Missing when none of those directories can be listed (no systemd).
fn read_units(root: &Root) -> Fact<Vec<Unit>> {
    let mut units: BTreeMap<String, Unit> = BTreeMap::new();
    let mut any = None;
    for dir in WANTS_DIRS {
        match root.list_dir(dir) {
            Ok(names) => {
                any = Some(Ok(()));
                for n in names {
                    let u = units.entry(n.clone()).or_insert(Unit {
                        name: n,
                        enabled: false,
                        active: false,
                    });
                    u.enabled = true;
                }
            }
            Err(e) => {
                if any.is_none() {
                    any = Some(Err(e));
                }
            }
        }
    }
    match root.list_dir("run/systemd/units") {
        Ok(names) => {
            any = Some(Ok(()));
            for n in names {
                let Some(name) = n.strip_prefix("invocation:") else {
                    continue;
                };
                let u = units.entry(name.to_string()).or_insert(Unit {
                    name: name.to_string(),
                    enabled: false,
                    active: false,
                });
                u.active = true;
            }
        }
        Err(e) => {
            if !matches!(any, Some(Ok(()))) {
                any = Some(Err(e));
            }
        }
    }
    match any {
        Some(Err(e)) => Err(e),
        _ => Ok(units.into_values().collect()),
    }
}

/// IPv4 and IPv6 output of one backend, parsed and put together;
/// unavailable only when both are.
fn merge(v4: Result<Vec<u8>, Unavailable>, v6: Result<Vec<u8>, Unavailable>) -> Fact<Ruleset> {
    match (v4, v6) {
        (Err(e), Err(_)) => Err(e),
        (a, b) => {
            let mut rs = Ruleset::default();
            for (bytes, family) in [(a, "ip"), (b, "ip6")] {
                if let Ok(bytes) = bytes {
                    rs.extend(ruleset::parse_iptables_save(
                        &String::from_utf8_lossy(&bytes),
                        family,
                    ));
                }
            }
            Ok(rs)
        }
    }
}

/// `TOOL -t T` for each table the kernel lists in `names_path` (which
/// exists only while ip_tables / ip6_tables is loaded): never a table
/// whose module is not loaded yet.
fn legacy(root: &Root, names_path: &str, key: &str, tool: &'static str) -> Fact<Vec<u8>> {
    let tables: Vec<String> = root
        .read_text(names_path)?
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(str::to_string)
        .collect();
    if tables.is_empty() {
        return Err(Unavailable::Missing {
            what: format!("{names_path}: no legacy tables loaded"),
        });
    }
    root.probe(key, || {
        let mut out = Vec::new();
        for t in &tables {
            out.extend(run_tool(tool, &["-t", t])?);
        }
        Ok(out)
    })
}

/// Live only: whether talking nfnetlink cannot make the kernel load
/// nf_tables: it is loaded (/proc/modules), built in (/sys/module/nf_tables
/// or modules.builtin), or the kernel cannot load modules at all (no
/// /proc/modules: CONFIG_MODULES=n).
fn nf_tables_present() -> Result<(), Unavailable> {
    module_present(std::path::Path::new("/"), "nf_tables")
}

/// Live only: whether asking `module` something (over nfnetlink, which
/// request_module()s a missing subsystem) cannot load it: it is loaded
/// (/proc/modules under `sysroot`), built in (/sys/module/NAME or
/// modules.builtin), or the kernel cannot load modules at all (no
/// /proc/modules: CONFIG_MODULES=n).
pub(crate) fn module_present(sysroot: &std::path::Path, module: &str) -> Result<(), Unavailable> {
    let Ok(modules) = std::fs::read_to_string(sysroot.join("proc/modules")) else {
        return Ok(());
    };
    let listed = parse_proc_modules(&modules)
        .iter()
        .any(|x| x.name == module);
    let sys = sysroot.join("sys/module").join(module).exists();
    let ko = format!("{module}.ko");
    let builtin = std::fs::read_to_string(sysroot.join("proc/sys/kernel/osrelease"))
        .ok()
        .and_then(|r| {
            std::fs::read_to_string(
                sysroot
                    .join("lib/modules")
                    .join(r.trim())
                    .join("modules.builtin"),
            )
            .ok()
        })
        .is_some_and(|b| b.lines().any(|l| l.trim().rsplit('/').next() == Some(&ko)));
    if listed || sys || builtin {
        Ok(())
    } else {
        Err(Unavailable::Missing {
            what: if module == "nf_tables" {
                NF_TABLES_NOT_LOADED.to_string()
            } else {
                format!("{module} is not loaded (not asked: asking could load it)")
            },
        })
    }
}

/// Run a tool found in the usual sbin/bin directories; stdout, or why not.
pub(crate) fn run_tool(tool: &str, args: &[&str]) -> Result<Vec<u8>, Unavailable> {
    let what = format!("{tool} {}", args.join(" "));
    let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| Unavailable::Missing {
            what: format!("{tool} (not installed)"),
        })?;
    let out = std::process::Command::new(path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Unavailable::from_io(&what, &e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let detail = super::truncate(err.trim(), 200).to_string();
        return Err(
            if err.contains("Operation not permitted") || err.contains("Permission denied") {
                Unavailable::permission(&what)
            } else {
                Unavailable::Failed {
                    what,
                    detail: format!("{}: {detail}", out.status),
                }
            },
        );
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proc_modules() {
        let t = "nf_nat 61440 3 xt_MASQUERADE,nft_chain_nat,openvswitch, Live 0x0000000000000000\n\
                 nf_conntrack 184320 5 xt_conntrack,nf_nat,xt_MASQUERADE,openvswitch,nft_ct, Live 0x0000000000000000\n\
                 nf_defrag_ipv6 24576 2 nf_conntrack,openvswitch, Live 0x0\n\
                 libcrc32c 12288 4 nf_nat,nf_conntrack,openvswitch,btrfs, Live 0x0\n\
                 ext4 1 0 - Live 0x0\n\
                 garbage\n";
        let m = parse_proc_modules(t);
        assert_eq!(m.len(), 5);
        let ct = m.iter().find(|x| x.name == "nf_conntrack").unwrap();
        assert_eq!(ct.refcount, 5);
        assert_eq!(
            ct.used_by,
            vec![
                "xt_conntrack",
                "nf_nat",
                "xt_MASQUERADE",
                "openvswitch",
                "nft_ct"
            ]
        );
        assert!(m
            .iter()
            .find(|x| x.name == "ext4")
            .unwrap()
            .used_by
            .is_empty());
    }

    #[test]
    fn nft_scan() {
        let t = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\
                 \t\tct state established,related accept\n\t\tct state invalid drop\n\
                 \t\tiif \"lo\" accept\n\t}\n}\ntable ip nat {\n\tchain postrouting {\n\
                 \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
                 \t\toifname \"eth0\" masquerade\n\t\tip saddr 10.0.0.0/8 snat to 192.0.2.1\n\t}\n\
                 \tchain prerouting {\n\t\ttcp dport 80 dnat to 10.0.0.2:8080\n\t\ttcp dport 8080 redirect to :80\n\t}\n}\n\
                 table ip raw {\n\tchain pre {\n\t\ttype filter hook prerouting priority raw;\n\t\tiif lo notrack\n\
                 \t\tct zone set 2\n\t\tct status dnat accept\n\t}\n}\n";
        let u = summarize(&ruleset::parse_nft_text(t));
        assert_eq!(u.rules, 10);
        assert_eq!(u.count("ct_state"), 2);
        assert_eq!(u.count("masquerade"), 1);
        assert_eq!(u.count("snat"), 1);
        assert_eq!(u.count("dnat"), 1);
        assert_eq!(u.count("redirect"), 1);
        assert_eq!(u.count("notrack"), 1);
        assert_eq!(u.count("ct_zone"), 1);
        assert_eq!(u.count("ct_status"), 1);
        assert!(u.has_nat());
        assert_eq!(u.examples[0], "ct state established,related accept");
    }

    #[test]
    fn iptables_scan() {
        let t = "# Generated by iptables-nft-save v1.8.9\n*nat\n:POSTROUTING ACCEPT [0:0]\n\
                 -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n\
                 -A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n\
                 -A POSTROUTING -o eth1 -j SNAT --to-source 192.0.2.1\n\
                 COMMIT\n*filter\n\
                 -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                 -A INPUT -m state --state NEW -j ACCEPT\n\
                 -A INPUT -p tcp --dport 22 -j ACCEPT\n\
                 COMMIT\n*raw\n-A PREROUTING -i lo -j CT --notrack\n-A OUTPUT -o lo -j NOTRACK\n\
                 -A PREROUTING -i veth1 -j CT --zone 5\nCOMMIT\n";
        let u = summarize(&ruleset::parse_iptables_save(t, "ip"));
        assert_eq!(u.rules, 9);
        assert_eq!(u.count("masquerade"), 1);
        assert_eq!(u.count("dnat"), 1);
        assert_eq!(u.count("snat"), 1);
        assert_eq!(u.count("ct_state"), 2);
        assert_eq!(u.count("notrack"), 2);
        assert_eq!(u.count("ct_zone"), 1);
    }

    #[test]
    fn interfaces() {
        let t = "Inter-|   Receive\n face |bytes packets\n    lo:    3245      30    0    0    0     0          0         0     3245      30    0    0    0     0       0          0\n\
                 docker0: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n  eth0: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n\
                 vethab12: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\nveth99: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n\
                 cali1234: 0 0\nvxlan.calico: 0 0\nbr-3f2a: 0 0\n";
        let (names, lo) = parse_net_dev(t);
        assert_eq!(lo, Some(30));
        assert_eq!(names.len(), 8);
        let g = group_ifaces(&names);
        let kinds: Vec<(&str, u64)> = g.iter().map(|g| (g.kind.as_str(), g.count)).collect();
        assert_eq!(
            kinds,
            vec![
                ("calico", 2),
                ("docker", 1),
                ("docker_network", 1),
                ("veth", 2)
            ]
        );
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let s = String::from_utf8_lossy(&b);
            let _ = parse_proc_modules(&s);
            let _ = summarize(&ruleset::parse_nft_text(&s));
            let _ = summarize(&ruleset::parse_iptables_save(&s, "ip"));
            let _ = ruleset::parse_nft_json(&s);
            let (n, _) = parse_net_dev(&s);
            let _ = group_ifaces(&n);
        }
    }
}
