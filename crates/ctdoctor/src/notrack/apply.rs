//! Loading what `ctdoctor notrack` prints, and undoing exactly that, through
//! the writer in `tune::nft` (the one module that writes nft state, so
//! `tune --rollback` can undo a notrack without importing notrack).
//!
//! [`Writer`] is the whole of what notrack needs from the system: load one
//! nft script as one transaction in a namespace and say what it added (read
//! back from the kernel), delete exactly that, and write or remove a file.
//! `ctdoctor tune`'s journal implements it at merge (journal the intent,
//! load, journal the [`Applied`] record, whose [`Applied::undo_script`] is
//! the rollback); [`Direct`] is the implementation without a journal:
//! `nft -f` in the namespace, then `nft -j list ruleset` to read back.
//!
//! What was added is found by what it is, not remembered: our table
//! (`inet ctdoctor_notrack`) and the rules carrying our comment
//! ([`super::rules::MARK`]) — so `--remove` works after a reboot with
//! persisted rules too, and removes nothing else.
//!
//! Not for: deciding what to load (conflicts.rs, rules.rs).

use super::rules::{Form, TABLE};
use super::Plan;
use crate::host::netns::Target;
use anyhow::{bail, Result};
use std::path::Path;

pub use crate::tune::nft::{Added, Applied, Direct, Writer};

/// Load `script` and check what came back: our table, and exactly
/// `inserts` marked rules; anything else is undone before the error.
pub fn apply(w: &dyn Writer, netns: &Target, script: &str, inserts: usize) -> Result<Applied> {
    let a = w.load(netns, script)?;
    if !a.table || a.rules.len() != inserts {
        let undo = w.unload(netns, &a);
        bail!(
            "read back after loading: table inet {TABLE} {}, {} of {inserts} accept rules found; \
             undone{}",
            if a.table { "present" } else { "missing" },
            a.rules.len(),
            match undo {
                Ok(()) => String::new(),
                Err(e) => format!(" — but undoing failed: {e:#}"),
            }
        );
    }
    Ok(a)
}

/// `lo hi` of ip_local_port_range.
pub(crate) fn parse_range(text: &str) -> Option<(u32, u32)> {
    let mut w = text.split_whitespace().map(|v| v.parse::<u32>().ok());
    Some((w.next()??, w.next()??))
}

/// The namespace's rulesets (and its ephemeral port range), read as `check` does.
pub fn read(target: &Target) -> Result<(crate::snapshot::Consumers, Option<(u32, u32)>)> {
    let (c, eph) = crate::host::netns::run_in(target, || {
        let root = crate::host::Root::live();
        let eph = root
            .read_text("proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| parse_range(&t));
        (crate::host::consumers::read(&root), eph)
    })?;
    let c = c.map_err(|u| anyhow::anyhow!("reading the rulesets: {u}"))?;
    Ok((c, eph))
}

/// Where `--persist` writes the nftables form (for the nftables service to include).
pub const PERSIST_NFT: &str = "/etc/nftables.d/ctdoctor-notrack.nft";
/// Where `--persist --iptables` / `--ip6tables` write.
pub const PERSIST_V4: &str = "/etc/iptables/ctdoctor-notrack.v4";
pub const PERSIST_V6: &str = "/etc/iptables/ctdoctor-notrack.v6";
/// The nftables service's config files (Debian, RHEL).
pub const NFT_CONFS: &[&str] = &["/etc/nftables.conf", "/etc/sysconfig/nftables.conf"];

/// The first of [`NFT_CONFS`] under `root` that is text: (path, text).
pub fn read_nft_conf(root: &Path) -> Option<(&'static str, String)> {
    let r = crate::host::Root::live_at(root.to_path_buf());
    NFT_CONFS.iter().find_map(|p| {
        crate::host::persist::read_exact(&r, p)
            .ok()
            .flatten()
            .map(|t| (*p, t))
    })
}

/// Write `plan`'s rules where boot loads them and say how they are loaded.
/// `conf`: the nftables service's config (path, text), when there is one;
/// `enabled`: whether nftables.service starts at boot. Refused when an
/// accept rule goes into a table that config does not define: at boot that
/// insert would fail the whole load (one transaction), host firewall included.
pub fn persist(
    w: &dyn Writer,
    plan: &Plan,
    conf: Option<(&str, &str)>,
    enabled: bool,
) -> Result<String> {
    if plan.form != Form::Nft {
        let (path, tool) = if plan.form == Form::Iptables {
            (PERSIST_V4, "iptables-restore")
        } else {
            (PERSIST_V6, "ip6tables-restore")
        };
        w.write_file(Path::new(path), Some(&plan.rules))?;
        return Ok(format!(
            "wrote {path}; load it at boot after the saved rules, on top of them: {tool} --noflush {path} \
             (e.g. ExecStartPost=/usr/sbin/{tool} --noflush {path} in a drop-in of netfilter-persistent.service)"
        ));
    }
    let missing: Vec<String> = plan
        .scan
        .inserts
        .iter()
        .filter(|i| {
            let def = format!("table {} {}", i.family, i.table);
            !conf.is_some_and(|(_, t)| t.contains(&def))
        })
        .map(|i| format!("{} {}", i.family, i.table))
        .collect();
    if !missing.is_empty() {
        bail!(
            "--persist: the accept rules go into table(s) {} that the nftables service's config does not \
             define: at boot their insert would fail the whole load, host firewall included; persist those \
             tables' rules where they are made, or use --apply only",
            missing.join(", ")
        );
    }
    w.write_file(Path::new(PERSIST_NFT), Some(&plan.rules))?;
    let unit = if enabled {
        "nftables.service is enabled"
    } else {
        "nftables.service is not enabled: systemctl enable nftables"
    };
    Ok(match conf {
        Some((p, t)) if t.contains(PERSIST_NFT) || t.contains("/etc/nftables.d/*") => {
            format!("wrote {PERSIST_NFT}; {p} includes it and is loaded at boot ({unit})")
        }
        Some((p, _)) => format!(
            "wrote {PERSIST_NFT}; to load it at boot add this line at the end of {p} (after the tables \
             it inserts into): include \"{PERSIST_NFT}\" ({unit})"
        ),
        None => format!(
            "wrote {PERSIST_NFT}; no nftables service config found: load it at boot with \
             `nft -f {PERSIST_NFT}` (a systemd unit with After=network-pre.target)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ruleset::parse_nft_text;

    /// A Writer that only records.
    #[derive(Default)]
    struct Fake(std::cell::RefCell<Vec<(String, Option<String>)>>);

    impl Writer for Fake {
        fn load(&self, _: &Target, _: &str) -> Result<Applied> {
            bail!("not here")
        }
        fn unload(&self, _: &Target, _: &Applied) -> Result<()> {
            bail!("not here")
        }
        fn ours(&self, _: &Target) -> Result<Applied> {
            Ok(Applied::default())
        }
        fn write_file(&self, path: &Path, content: Option<&str>) -> Result<Option<String>> {
            self.0
                .borrow_mut()
                .push((path.display().to_string(), content.map(String::from)));
            Ok(None)
        }
    }

    fn plan(ruleset: &str, form: Form) -> Plan {
        use crate::notrack::select::{PortRange, Selection};
        let views = vec![(crate::host::ruleset::Backend::Nft, parse_nft_text(ruleset))];
        let sel = Selection {
            ports: vec![PortRange::parse("80").unwrap()],
            ..Selection::default()
        };
        let scan = crate::notrack::conflicts::scan(&sel, &views, form, None);
        let rules = match form {
            Form::Nft => crate::notrack::rules::nft_script(&sel, &scan.inserts),
            f => crate::notrack::rules::iptables_script(&sel, &scan.inserts, f),
        };
        Plan {
            form,
            selection: sel,
            rules,
            scan,
            not_read: Vec::new(),
        }
    }

    const STATEFUL: &str = "table inet filter {\n\tchain output {\n\t\ttype filter hook output priority filter; policy drop;\n\
        \t\tct state established accept\n\t}\n}\n";

    #[test]
    fn persist_writes_the_include_and_says_how_it_is_loaded() {
        let w = Fake::default();
        let conf = format!("flush ruleset\n{STATEFUL}include \"/etc/nftables.d/*.nft\"\n");
        let p = plan(STATEFUL, Form::Nft);
        let said = persist(&w, &p, Some(("/etc/nftables.conf", &conf)), true).unwrap();
        assert!(said.contains("/etc/nftables.conf includes it"), "{said}");
        let wrote = w.0.borrow();
        assert_eq!(wrote[0].0, PERSIST_NFT);
        assert_eq!(wrote[0].1.as_deref(), Some(p.rules.as_str()));
        drop(wrote);
        let said = persist(&w, &p, Some(("/etc/nftables.conf", STATEFUL)), false).unwrap();
        assert!(
            said.contains("include \"/etc/nftables.d/ctdoctor-notrack.nft\""),
            "{said}"
        );
        assert!(said.contains("systemctl enable nftables"), "{said}");
    }

    #[test]
    fn persist_refuses_an_insert_the_boot_config_cannot_take() {
        let w = Fake::default();
        let p = plan(STATEFUL, Form::Nft);
        assert_eq!(p.scan.inserts.len(), 2);
        let e = persist(
            &w,
            &p,
            Some(("/etc/nftables.conf", "flush ruleset\n")),
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("inet filter"), "{e}");
        assert!(w.0.borrow().is_empty(), "nothing written");
        let p = plan(STATEFUL, Form::Iptables);
        let said = persist(&w, &p, None, false).unwrap();
        assert!(said.contains("iptables-restore --noflush /etc/iptables/ctdoctor-notrack.v4"));
    }

    #[test]
    fn ours_are_found_by_table_and_mark_and_undone_by_handle() {
        let rs = parse_nft_text(
            "table inet filter { # handle 1\n\tchain input { # handle 1\n\
             \t\ttype filter hook input priority filter; policy drop;\n\
             \t\ttcp dport 80 ct state untracked accept comment \"ctdoctor-notrack\" # handle 9\n\
             \t\tct state established accept # handle 2\n\t}\n}\n\
             table inet ctdoctor_notrack { # handle 4\n\tchain output { # handle 1\n\
             \t\ttype filter hook output priority raw; policy accept;\n\t\toif \"lo\" notrack # handle 2\n\t}\n}\n",
        );
        let a = Applied::found_in(&rs);
        assert!(a.table);
        assert_eq!(a.rules.len(), 1);
        assert_eq!(
            a.undo_script(),
            "delete rule inet filter input handle 9\ndelete table inet ctdoctor_notrack\n"
        );
        assert!(Applied::default().undo_script().is_empty());
    }
}
