//! Which programs use conntrack here, each named from what it leaves on the
//! host — chains, nft tables, interfaces, systemd units, its own on/off
//! switch — with its exact off-switch and what turning it off costs: the
//! seed playbook's option A ("turn off what uses NAT": ufw, firewalld,
//! iptables, docker) made exact, as one table ([`OWNERS`]).
//!
//! Pure: facts in ([`Consumers`]), names out. Used by `conntrack.consumers`
//! (off-switches as notes: they are not knobs) and by `ctdoctor notrack`
//! (who owns a rule that untracked packets would break).
//!
//! Not for: reading the facts (host/consumers.rs) or judging conntrack use.

use crate::snapshot::Consumers;
use serde::Serialize;

/// One program that makes rules using conntrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Stable id (`docker`, `firewalld`, …).
    pub id: &'static str,
    /// Chain names it makes, exact or a prefix ending in `*`.
    #[serde(skip)]
    pub chains: &'static [&'static str],
    /// nft table names it makes (any family).
    #[serde(skip)]
    pub tables: &'static [&'static str],
    /// Interface kinds it makes (`host::consumers::iface_kind`).
    #[serde(skip)]
    pub ifaces: &'static [&'static str],
    /// Its systemd units.
    #[serde(skip)]
    pub units: &'static [&'static str],
    /// Whether an enabled or running unit alone names it (not for ufw,
    /// whose unit runs even when ufw is disabled).
    #[serde(skip)]
    pub unit_names_it: bool,
    /// Its config files, shown as evidence when it is named.
    #[serde(skip)]
    pub files: &'static [&'static str],
    /// The exact command that turns it off, when there is one to give.
    pub off_switch: Option<&'static str>,
    /// What turning it off costs (or why it cannot be).
    pub cost: &'static str,
    /// It NATs while it runs: its traffic cannot go untracked.
    pub needs_nat: bool,
}

const NOTRACK_INSTEAD: &str =
    "to keep it, exempt the bulk traffic from tracking instead (ctdoctor notrack)";

/// Every program ctdoctor names, in report order.
pub const OWNERS: &[Owner] = &[
    Owner {
        id: "docker",
        chains: &["DOCKER", "DOCKER-*"],
        tables: &["docker-bridges"],
        ifaces: &["docker", "docker_network"],
        units: &["docker.service", "docker.socket"],
        unit_names_it: true,
        files: &[],
        off_switch: Some("systemctl disable --now docker.service docker.socket"),
        cost: "stops every container on this host; while docker runs, its NAT (published ports, \
container egress) needs conntrack, so that traffic cannot go untracked",
        needs_nat: true,
    },
    Owner {
        id: "kube-proxy",
        chains: &["KUBE-*"],
        tables: &["kube-proxy"],
        ifaces: &["kube_ipvs"],
        units: &["kube-proxy.service"],
        unit_names_it: true,
        files: &[],
        off_switch: None,
        cost: "kube-proxy is this node's Service datapath (DNAT to pods): it cannot be turned off \
and its traffic cannot go untracked; it sets nf_conntrack_max itself (conntrack.maxPerCore in its \
configuration)",
        needs_nat: true,
    },
    Owner {
        id: "kubernetes-cni",
        chains: &["cali-*", "CILIUM_*", "FLANNEL-*", "WEAVE", "WEAVE-*"],
        tables: &["cilium", "calico"],
        ifaces: &["cni", "flannel", "calico", "cilium", "weave"],
        units: &[],
        unit_names_it: false,
        files: &[],
        off_switch: None,
        cost: "the pod network (its NAT and network policies) needs conntrack while pods run here",
        needs_nat: true,
    },
    Owner {
        id: "firewalld",
        chains: &[
            "INPUT_ZONES",
            "INPUT_direct",
            "FORWARD_direct",
            "OUTPUT_direct",
            "PREROUTING_ZONES",
            "POSTROUTING_ZONES",
            "FORWARD_IN_ZONES",
            "FORWARD_OUT_ZONES",
        ],
        tables: &["firewalld"],
        ifaces: &[],
        units: &["firewalld.service"],
        unit_names_it: true,
        files: &["/etc/firewalld/firewalld.conf"],
        off_switch: Some("systemctl disable --now firewalld"),
        cost: "removes the host firewall (its zones, services and policies, and any masquerade or \
port forward it does)",
        needs_nat: false,
    },
    Owner {
        id: "ufw",
        chains: &["ufw-*", "ufw6-*"],
        tables: &[],
        ifaces: &[],
        units: &["ufw.service"],
        unit_names_it: false,
        files: &["/etc/ufw/ufw.conf"],
        off_switch: Some("ufw disable"),
        cost: "removes the host firewall (ufw's allow and deny rules) until `ufw enable`",
        needs_nat: false,
    },
    Owner {
        id: "libvirt",
        chains: &["LIBVIRT_*"],
        tables: &["libvirt_network"],
        ifaces: &["libvirt"],
        units: &["libvirtd.service", "virtnetworkd.service", "virtnetworkd.socket"],
        unit_names_it: true,
        files: &[],
        off_switch: Some("virsh net-destroy default && virsh net-autostart --disable default"),
        cost: "VMs on libvirt's NAT network lose outbound NAT and DHCP; while it runs, its NAT \
needs conntrack",
        needs_nat: true,
    },
    Owner {
        id: "podman",
        chains: &["NETAVARK-*", "NETAVARK_*", "CNI-*", "PODMAN-*"],
        tables: &["netavark"],
        ifaces: &["podman"],
        units: &[],
        unit_names_it: false,
        files: &[],
        off_switch: None,
        cost: "container networks (podman/netavark, CNI plugins) have no service to stop: their rules \
go with the containers that use them (podman stop); their NAT and port mappings need conntrack",
        needs_nat: true,
    },
    Owner {
        id: "nftables.service",
        chains: &[],
        tables: &[],
        ifaces: &[],
        units: &["nftables.service"],
        unit_names_it: true,
        files: &["/etc/nftables.conf", "/etc/sysconfig/nftables.conf"],
        off_switch: Some("systemctl disable --now nftables"),
        cost: "stopping it runs `nft flush ruleset`: every nftables table goes, the host firewall \
of its config file and other programs' tables alike",
        needs_nat: false,
    },
    Owner {
        id: "iptables-persistent",
        chains: &[],
        tables: &[],
        ifaces: &[],
        units: &["netfilter-persistent.service"],
        unit_names_it: true,
        files: &["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"],
        off_switch: Some("systemctl disable netfilter-persistent"),
        cost: "the saved rules are no longer restored at boot; the running ones stay until flushed",
        needs_nat: false,
    },
    Owner {
        id: "iptables.service",
        chains: &[],
        tables: &[],
        ifaces: &[],
        units: &["iptables.service", "ip6tables.service"],
        unit_names_it: true,
        files: &["/etc/sysconfig/iptables", "/etc/sysconfig/ip6tables"],
        off_switch: Some("systemctl disable --now iptables ip6tables"),
        cost: "stopping them flushes the rules of /etc/sysconfig/iptables: the host firewall is gone",
        needs_nat: false,
    },
];

/// A named program and what named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    #[serde(flatten)]
    pub owner: &'static Owner,
    /// What was found: `chains DOCKER, DOCKER-USER (iptables_nft)`,
    /// `nft table inet firewalld`, `interfaces docker0`, `unit docker.service enabled`.
    pub seen: Vec<String>,
}

impl Seen {
    /// The fix note: what named it, its off-switch and the cost.
    pub fn note(&self) -> String {
        let o = self.owner;
        let what = format!("{} (seen: {})", o.id, self.seen.join("; "));
        match o.off_switch {
            Some(cmd) => {
                let instead = if o.needs_nat { "" } else { NOTRACK_INSTEAD };
                let sep = if instead.is_empty() { "" } else { "; " };
                format!("{what}: off-switch `{cmd}` — {}{sep}{instead}", o.cost)
            }
            None => format!("{what}: no off-switch — {}", o.cost),
        }
    }
}

fn pattern_matches(p: &str, name: &str) -> bool {
    match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    }
}

/// The program that made chain `chain` of table `table`, if ctdoctor knows it.
pub fn owner_of(table: &str, chain: &str) -> Option<&'static Owner> {
    OWNERS
        .iter()
        .find(|o| o.tables.contains(&table) || o.chains.iter().any(|p| pattern_matches(p, chain)))
}

/// Names with a short "(+N)" for the rest.
fn few(names: &[String], n: usize) -> String {
    let mut s = names.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > n {
        s.push_str(&format!(" (+{})", names.len() - n));
    }
    s
}

/// Every program of [`OWNERS`] this host shows signs of, in table order.
pub fn identify(c: &Consumers) -> Vec<Seen> {
    let views = c.effective();
    let groups = c.interfaces.as_ref().map(Vec::as_slice).unwrap_or(&[]);
    let mut out = Vec::new();
    for o in OWNERS {
        let mut seen = Vec::new();
        let mut named = false;
        for (backend, rs) in &views {
            let mut chains: Vec<String> = Vec::new();
            for ch in &rs.chains {
                if o.chains.iter().any(|p| pattern_matches(p, &ch.name))
                    && !chains.contains(&ch.name)
                {
                    chains.push(ch.name.clone());
                }
            }
            if !chains.is_empty() {
                named = true;
                seen.push(format!("chains {} ({})", few(&chains, 3), backend.as_str()));
            }
            for t in rs
                .tables
                .iter()
                .filter(|t| o.tables.contains(&t.name.as_str()))
            {
                named = true;
                seen.push(format!("nft table {} {}", t.family, t.name));
            }
        }
        let ifaces: Vec<String> = groups
            .iter()
            .filter(|g| o.ifaces.contains(&g.kind.as_str()))
            .flat_map(|g| g.names.iter().cloned())
            .collect();
        if !ifaces.is_empty() {
            named = true;
            seen.push(format!("interfaces {}", few(&ifaces, 3)));
        }
        for name in o.units {
            let Some(u) = c.unit(name) else { continue };
            let state = match (u.enabled, u.active) {
                (true, true) => "enabled, running",
                (true, false) => "enabled",
                (false, true) => "running",
                (false, false) => continue,
            };
            named |= o.unit_names_it;
            seen.push(format!("unit {name} {state}"));
        }
        if o.id == "ufw" && c.ufw_enabled == Some(true) {
            named = true;
            seen.push("ENABLED=yes in /etc/ufw/ufw.conf".into());
        }
        if !named {
            continue;
        }
        for f in o.files {
            if c.config_files.iter().any(|x| x == f) {
                seen.push(format!("config {f}"));
            }
        }
        out.push(Seen { owner: o, seen });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_tables_name_their_owner() {
        assert_eq!(owner_of("nat", "DOCKER").map(|o| o.id), Some("docker"));
        assert_eq!(
            owner_of("filter", "DOCKER-USER").map(|o| o.id),
            Some("docker")
        );
        assert_eq!(
            owner_of("filter", "ufw-before-input").map(|o| o.id),
            Some("ufw")
        );
        assert_eq!(
            owner_of("firewalld", "filter_INPUT").map(|o| o.id),
            Some("firewalld")
        );
        assert_eq!(
            owner_of("nat", "KUBE-SERVICES").map(|o| o.id),
            Some("kube-proxy")
        );
        assert_eq!(owner_of("filter", "INPUT"), None);
        assert_eq!(owner_of("filter", "DOCKERISH"), None);
    }

    #[test]
    fn every_owner_says_what_turning_it_off_costs() {
        for o in OWNERS {
            assert!(!o.cost.is_empty(), "{}", o.id);
            assert!(
                !o.chains.is_empty()
                    || !o.tables.is_empty()
                    || !o.ifaces.is_empty()
                    || !o.units.is_empty(),
                "{} can be named from something",
                o.id
            );
        }
    }
}
