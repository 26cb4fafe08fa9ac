//! `ctdoctor notrack`: print NOTRACK rules for a selection (nftables, or
//! the iptables-restore form), with the rules of the running rulesets they
//! would break; `--apply` loads them atomically, `--persist` writes them for
//! boot, `--remove` deletes exactly what was added. Exit 0 printed /
//! applied / removed (conflicts or not), 1 refused (nothing changed), 3
//! ctdoctor failed.
//!
//! Thin: the selection, plan and conflicts are `crate::notrack`; the writes
//! go through `notrack::apply::Writer`.

use super::args::{NetnsArg, WriteRoot};
use crate::host::consumers::Consumers;
use crate::host::netns::Target;
use crate::notrack::apply::{self, Applied, Direct, Writer, PERSIST_NFT, PERSIST_V4, PERSIST_V6};
use crate::notrack::conflicts::Conflict;
use crate::notrack::rules::{Form, MARK, TABLE};
use crate::notrack::select::{Dir, PortRange, Proto, Selection};
use crate::notrack::{self as nt, Plan};
use crate::table::filter::Cidr;
use anyhow::{bail, Result};
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

/// Stop tracking loopback, this host's server ports or the upstream ports it
/// connects to: print NOTRACK rules,
/// the running rules they would break, and apply them atomically.
///
/// Prints an nftables script (a table of its own, `inet ctdoctor_notrack`,
/// raw-priority chains on prerouting and output) plus the `ct state
/// untracked accept` rules stateful chains need; conflicts (NAT on the
/// selected traffic, stateful chains, rules an untracked accept would
/// bypass) go to stderr. Only connections to this host are selected:
/// forwarded traffic stays tracked.
#[derive(clap::Args, Debug, Default)]
#[command(
    after_help = "Exit status: 0 printed, applied or removed (conflicts or not), \
1 refused (--apply/--persist with conflicts that would drop or mis-route traffic, or already \
applied: nothing changed), 3 ctdoctor itself failed.\n\n\
Examples:\n  ctdoctor notrack --lo                     rules for loopback, and what they would break\n  \
ctdoctor notrack --lo --port 80,443       loopback and this host's web ports\n  \
ctdoctor notrack --port 53 --proto udp    a DNS server's queries and answers\n  \
ctdoctor notrack --port 8080 --src 10.0.0.0/8   only clients from 10.0.0.0/8\n  \
ctdoctor notrack --port 80 --upstream-port 8080  a proxy: its clients' leg and its backends' leg\n  \
ctdoctor notrack --lo --iptables > nt.v4  the iptables-restore form (load: iptables-restore --noflush nt.v4)\n  \
ctdoctor notrack --lo --apply             load them now (refused on conflicts unless --force)\n  \
ctdoctor notrack --netns gw --lo --apply  the same in the namespace gw\n  \
ctdoctor notrack --remove                 delete exactly what --apply added"
)]
pub struct Args {
    /// Leave all loopback traffic untracked (`iif lo` / `oif lo`).
    #[arg(long)]
    pub lo: bool,

    /// This host's server ports to leave untracked: packets to them (dport,
    /// to a local address) and their replies (sport). Ranges: 8000-8100.
    #[arg(long, value_name = "P[,P]", value_delimiter = ',', value_parser = PortRange::parse)]
    pub port: Vec<PortRange>,

    /// Other hosts' ports this host connects to (a proxy's upstream leg):
    /// packets it sends to them (dport, to an address that is not local)
    /// and their replies (sport, from one). Ranges: 8000-8100.
    #[arg(long, value_name = "P[,P]", value_delimiter = ',', value_parser = PortRange::parse)]
    pub upstream_port: Vec<PortRange>,

    /// The protocols of --port and --upstream-port.
    #[arg(
        long,
        value_enum,
        value_name = "PROTO[,PROTO]",
        value_delimiter = ',',
        default_value = "tcp"
    )]
    pub proto: Vec<Proto>,

    /// Which packets: arriving (in), sent (out) or both; one direction alone
    /// leaves the other tracked.
    #[arg(long, value_enum, default_value = "both")]
    pub dir: Dir,

    /// Only connections with these peers (clients): addresses or prefixes,
    /// comma-separated.
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = Cidr::parse)]
    pub src: Vec<Cidr>,

    /// Only connections to these addresses of this host.
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = Cidr::parse)]
    pub dst: Vec<Cidr>,

    #[command(flatten)]
    pub netns: NetnsArg,

    /// Print the iptables-restore form for IPv4 (load with --noflush).
    #[arg(long, conflicts_with = "ip6tables")]
    pub iptables: bool,

    /// Print the ip6tables-restore form for IPv6.
    #[arg(long)]
    pub ip6tables: bool,

    /// Print JSON: {"rules", "conflicts": [{"family", "table", "chain",
    /// "handle", "rule", "why", …}], …}.
    #[arg(long)]
    pub json: bool,

    /// Load the nftables rules now, as one transaction, and read them back.
    #[arg(long, conflicts_with_all = ["iptables", "ip6tables"])]
    pub apply: bool,

    /// With --apply or --persist: go ahead despite blocking conflicts.
    #[arg(long)]
    pub force: bool,

    /// Write the rules where boot loads them (the nftables service's include
    /// directory, or /etc/iptables/) and say how they are loaded.
    #[arg(long)]
    pub persist: bool,

    /// Delete what --apply added (our table and the rules marked
    /// ctdoctor-notrack) and the --persist file.
    #[arg(long, conflicts_with_all = ["lo", "port", "upstream_port", "src", "dst", "apply", "persist", "iptables", "ip6tables", "force"])]
    pub remove: bool,

    #[command(flatten)]
    pub root: WriteRoot,
}

impl Args {
    pub fn selection(&self) -> Selection {
        Selection {
            lo: self.lo,
            ports: self.port.clone(),
            upstream_ports: self.upstream_port.clone(),
            protos: self.proto.clone(),
            dir: self.dir,
            src: self.src.clone(),
            dst: self.dst.clone(),
        }
    }

    fn form(&self) -> Form {
        if self.iptables {
            Form::Iptables
        } else if self.ip6tables {
            Form::Ip6tables
        } else {
            Form::Nft
        }
    }
}

/// Parse a `ctdoctor notrack …` line (as fix notes print it, shell-quoted
/// with single quotes) with this command's own flags: what the notes are
/// tested against.
pub fn parse_line(line: &str) -> std::result::Result<Args, String> {
    #[derive(clap::Parser)]
    #[command(name = "ctdoctor")]
    struct Top {
        #[command(subcommand)]
        cmd: Sub,
    }
    #[derive(clap::Subcommand)]
    enum Sub {
        Notrack(Args),
    }
    use clap::Parser as _;
    let words = crate::advice::change::shell_words(line)
        .filter(|w| w.first().map(String::as_str) == Some("ctdoctor"))
        .ok_or_else(|| format!("not a ctdoctor command line: {line:?}"))?;
    Top::try_parse_from(words)
        .map(|t| match t.cmd {
            Sub::Notrack(a) => a,
        })
        .map_err(|e| e.to_string())
}

pub fn run(a: Args) -> Result<u8> {
    let target = a.netns.target()?;
    if a.remove {
        return remove(&Direct, &target, &a.root.dir, a.json);
    }
    if a.persist && target != Target::Current {
        bail!(
            "--persist writes this host's boot files, which never load into another namespace: \
             load the printed rules where the namespace is made (its setup script or unit: ip netns exec NAME nft -f FILE)"
        );
    }
    let sel = a.selection();
    sel.validate().map_err(anyhow::Error::msg)?;
    crate::notrack::rules::check_family(&sel, a.form()).map_err(anyhow::Error::msg)?;
    let (c, eph) = apply::read(&target)?;
    let plan = nt::plan(&sel, &c, a.form(), eph).map_err(anyhow::Error::msg)?;
    let mut out = Outcome::default();
    if a.apply || a.persist {
        out.refused = refusal(&plan, a.apply, a.force);
    }
    if out.refused.is_none() && (a.apply || a.persist) {
        // Journaled (tune's journal): `ctdoctor tune --rollback` undoes it.
        let w = crate::tune::nft::Journaled::open(
            &a.root.dir,
            super::command_line(),
            crate::tune::nft::netns_ref(a.netns.netns.clone(), &target)?,
        );
        let w = match w {
            Ok(w) => w,
            Err(e) => match e.downcast_ref::<crate::tune::apply::Refused>() {
                Some(r) => {
                    out.refused = Some(r.0.clone());
                    print(&a, &plan, &out)?;
                    return Ok(1);
                }
                None => return Err(e),
            },
        };
        if a.apply {
            out.applied = Some(apply::apply(
                &w,
                &target,
                &plan.rules,
                plan.scan.inserts.len(),
            )?);
        }
        if a.persist {
            match persist(&w, &plan, &c, &a.root.dir) {
                Ok(p) => out.persisted = Some(p),
                Err(e) if out.applied.is_some() => {
                    out.refused = Some(format!(
                        "{e:#} (the rules were applied; nothing was written)"
                    ))
                }
                Err(e) => out.refused = Some(format!("{e:#}")),
            }
        }
        out.journal = w.id();
    }
    print(&a, &plan, &out)?;
    Ok(if out.refused.is_some() { 1 } else { 0 })
}

#[derive(Default)]
struct Outcome {
    refused: Option<String>,
    applied: Option<Applied>,
    persisted: Option<String>,
    /// The change set id in tune's journal.
    journal: Option<String>,
}

/// Why `--apply`/`--persist` must not go ahead, if so.
fn refusal(plan: &Plan, apply: bool, force: bool) -> Option<String> {
    if apply && !plan.scan.already.is_empty() {
        return Some(format!(
            "already loaded here ({}): ctdoctor notrack --remove first",
            plan.scan.already.join("; ")
        ));
    }
    if force {
        return None;
    }
    let blocking = plan.scan.blocking().count();
    if blocking > 0 {
        return Some(format!(
            "{blocking} conflict(s) would drop or mis-route traffic: nothing changed (--force to go ahead anyway)"
        ));
    }
    if !plan.complete() {
        return Some(format!(
            "the ruleset could not be read completely ({}): its conflicts are unknown, nothing changed \
             (--force to go ahead anyway)",
            plan.not_read.join("; ")
        ));
    }
    None
}

/// Write the boot file (`notrack::apply::persist`), reading the nftables
/// service's config for it.
fn persist(w: &dyn Writer, plan: &Plan, c: &Consumers, root: &Path) -> Result<String> {
    let conf = apply::read_nft_conf(root);
    let enabled = c.unit("nftables.service").is_some_and(|u| u.enabled);
    apply::persist(
        w,
        plan,
        conf.as_ref().map(|(p, t)| (*p, t.as_str())),
        enabled,
    )
}

/// `abs` (an absolute path) under `root`.
fn under(root: &Path, abs: &str) -> std::path::PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn remove(w: &dyn Writer, target: &Target, root: &Path, json_out: bool) -> Result<u8> {
    let done = unload_ours(w, target, root)?;
    // The journal: change sets of notrack's for this namespace of which
    // nothing is left are closed (else a killed --apply's pending set would
    // block every later apply, and --history would list them as applied).
    let settled = if done.is_empty() {
        Vec::new()
    } else {
        settle_journal(target, root)
    };
    let ipt = iptables_removal(target)?;
    if json_out {
        let v = json!({"schema_version": 1, "removed": done, "iptables_commands": ipt,
                       "journal_closed": settled});
        super::print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
        return Ok(0);
    }
    super::print(&removal_text(&done, &settled, &ipt))?;
    Ok(0)
}

/// Unload our table and rules, and (the current namespace) delete our
/// persisted files; what was removed.
fn unload_ours(w: &dyn Writer, target: &Target, root: &Path) -> Result<Vec<String>> {
    let ours = w.ours(target)?;
    let mut done = Vec::new();
    if !ours.is_empty() {
        w.unload(target, &ours)?;
        if ours.table {
            done.push(format!("table inet {TABLE}"));
        }
        for r in &ours.rules {
            done.push(format!(
                "{} {} {} handle {}: {}",
                r.family, r.table, r.chain, r.handle, r.text
            ));
        }
    }
    if *target == Target::Current {
        for p in [PERSIST_NFT, PERSIST_V4, PERSIST_V6] {
            let p = under(root, p);
            let ours = std::fs::read_to_string(&p).is_ok_and(|t| {
                t.lines()
                    .take(3)
                    .any(|l| l.starts_with("# ctdoctor notrack"))
            });
            if ours {
                w.write_file(&p, None)?;
                done.push(p.display().to_string());
            }
        }
    }
    Ok(done)
}

/// Close this namespace's notrack change sets in the journal; their ids
/// (none when the journal could not be updated: said on stderr).
fn settle_journal(target: &Target, root: &Path) -> Vec<String> {
    let inode = crate::tune::nft::netns_ref(None, target)
        .ok()
        .and_then(|n| n.inode);
    match crate::tune::apply::settle(
        root,
        inode,
        &format!("removed by: {}", super::command_line()),
    ) {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!(
                "ctdoctor: removed, but the journal could not be updated ({e:#}): \
                 see `ctdoctor tune --history`"
            );
            Vec::new()
        }
    }
}

/// iptables rules of ours (loaded by hand from the --iptables form): the
/// commands that delete them (not run: --apply never loads them).
fn iptables_removal(target: &Target) -> Result<Vec<String>> {
    let (c, _) = apply::read(target)?;
    let mut ipt = Vec::new();
    for (backend, rs) in c.effective() {
        if backend == crate::host::ruleset::Backend::Nft {
            continue;
        }
        let tool = |fam: &str| {
            if fam == "ip6" {
                "ip6tables"
            } else {
                "iptables"
            }
        };
        for r in rs
            .rules
            .iter()
            .filter(|r| r.comment.as_deref() == Some(MARK))
        {
            if let Some(rest) = r.text.strip_prefix("-A ") {
                ipt.push(format!("{} -t {} -D {rest}", tool(&r.family), r.table));
            }
        }
        for ch in rs.chains.iter().filter(|c| nt::conflicts::is_ours_chain(c)) {
            ipt.push(format!(
                "{} -t {} -F {}",
                tool(&ch.family),
                ch.table,
                ch.name
            ));
            ipt.push(format!(
                "{} -t {} -X {}",
                tool(&ch.family),
                ch.table,
                ch.name
            ));
        }
    }
    Ok(ipt)
}

/// What `--remove` did, as text.
fn removal_text(done: &[String], settled: &[String], ipt: &[String]) -> String {
    let mut s = String::new();
    if done.is_empty() {
        s.push_str("nothing of ctdoctor notrack was loaded or persisted here\n");
    } else {
        let _ = writeln!(s, "removed:");
        for d in done {
            let _ = writeln!(s, "  {d}");
        }
        for id in settled {
            let _ = writeln!(s, "change set {id} marked rolled back in the journal");
        }
    }
    if !ipt.is_empty() {
        let _ = writeln!(
            s,
            "iptables rules of ctdoctor notrack are loaded here; delete them with:"
        );
        for l in ipt {
            let _ = writeln!(s, "{l}");
        }
    }
    s
}

fn conflict_json(c: &Conflict) -> serde_json::Value {
    serde_json::to_value(c).unwrap_or_default()
}

fn print(a: &Args, plan: &Plan, out: &Outcome) -> Result<()> {
    if a.json {
        let inserts: Vec<serde_json::Value> = plan
            .scan
            .inserts
            .iter()
            .map(|i| {
                json!({"backend": i.backend, "family": i.family, "table": i.table, "chain": i.chain,
                       "index": i.index,
                       "rule": if plan.form == Form::Nft { i.nft() } else { i.iptables().join("\n") }})
            })
            .collect();
        let v = json!({
            "schema_version": 1,
            "form": plan.form,
            "netns": a.netns.netns,
            "selection": plan.selection,
            "rules": plan.rules,
            "conflicts": plan.scan.conflicts.iter().map(conflict_json).collect::<Vec<_>>(),
            "inserts": inserts,
            "warnings": plan.scan.warnings,
            "already": plan.scan.already,
            "not_read": plan.not_read,
            "refused": out.refused,
            "applied": out.applied,
            "persisted": out.persisted,
            "journal_id": out.journal,
        });
        return super::print(&format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    eprint!("{}", stderr_text(plan, out));
    let mut s = String::new();
    match (&out.applied, &out.persisted, &out.refused) {
        (None, None, _) => s.push_str(&plan.rules),
        _ => {
            if let Some(ap) = &out.applied {
                let _ = writeln!(
                    s,
                    "applied{}: table inet {TABLE} and {} accept rule(s); read back:",
                    a.netns
                        .netns
                        .as_deref()
                        .map(|n| format!(" in netns {n}"))
                        .unwrap_or_default(),
                    ap.rules.len()
                );
                s.push_str(&ap.readback);
                for r in &ap.rules {
                    let _ = writeln!(
                        s,
                        "{} {} {} handle {}: {}",
                        r.family, r.table, r.chain, r.handle, r.text
                    );
                }
            }
            if let Some(p) = &out.persisted {
                let _ = writeln!(s, "{p}");
            }
            if let Some(id) = &out.journal {
                let _ = writeln!(
                    s,
                    "journaled as change set {id}: undo with `ctdoctor tune --rollback {id}{}` \
                     (or `ctdoctor notrack{} --remove`)",
                    crate::tune::apply::root_flag(&a.root.dir),
                    ns_flag(a)
                );
            } else if out.applied.is_some() {
                let _ = writeln!(s, "undo: ctdoctor notrack{} --remove", ns_flag(a));
            }
        }
    }
    super::print(&s)
}

fn ns_flag(a: &Args) -> String {
    a.netns
        .netns
        .as_deref()
        .map(|n| format!(" --netns {}", crate::advice::change::sh_quote(n)))
        .unwrap_or_default()
}

/// Conflicts, warnings and refusals, for stderr.
fn stderr_text(plan: &Plan, out: &Outcome) -> String {
    let mut s = String::new();
    for n in &plan.not_read {
        let _ = writeln!(s, "ctdoctor notrack: not read: {n}");
    }
    if !plan.scan.already.is_empty() {
        let _ = writeln!(
            s,
            "ctdoctor notrack: already loaded here: {}",
            plan.scan.already.join("; ")
        );
    }
    let n = plan.scan.conflicts.len();
    if n > 0 {
        let b = plan.scan.blocking().count();
        let _ = writeln!(
            s,
            "ctdoctor notrack: {n} conflict(s) with the running rules, {b} blocking --apply:"
        );
        for c in &plan.scan.conflicts {
            let place = match (c.handle, c.position) {
                (Some(h), Some(p)) => format!(" position {p} handle {h}"),
                (None, Some(p)) => format!(" position {p}"),
                _ => String::new(),
            };
            let owner = c.owner.map(|o| format!(" ({o})")).unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} {}: {} {} {}{place}{owner}: {}",
                if c.blocks { "BLOCKS" } else { "fixed " },
                serde_json::to_value(c.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                c.family,
                c.table,
                c.chain,
                c.rule
            );
            let _ = writeln!(s, "         {}", c.why);
        }
    }
    for w in &plan.scan.warnings {
        let _ = writeln!(s, "ctdoctor notrack: warning: {w}");
    }
    if let Some(r) = &out.refused {
        let _ = writeln!(s, "ctdoctor notrack: refused: {r}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example of --help is a command line the flags accept.
    #[test]
    fn help_examples_parse() {
        use clap::CommandFactory as _;
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            a: Args,
        }
        let help = Wrap::command().render_long_help().to_string();
        let examples: Vec<&str> = help
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("ctdoctor notrack"))
            .collect();
        assert!(examples.len() >= 8, "{help}");
        for e in examples {
            let cmd = e.split("  ").next().unwrap().split(" > ").next().unwrap();
            let line = format!("ctdoctor notrack{cmd}");
            let a = parse_line(&line).unwrap_or_else(|err| panic!("{line}: {err}"));
            assert!(a.remove || a.selection().validate().is_ok(), "{line}");
        }
        assert!(parse_line("ctdoctor notrack --remove --lo").is_err());
        assert!(parse_line("ctdoctor notrack --port x").is_err());
        assert_eq!(
            parse_line("ctdoctor notrack --netns 'a b' --lo")
                .unwrap()
                .netns
                .netns
                .as_deref(),
            Some("a b")
        );
        // The quote sh_quote makes for a name with a quote in it.
        let line = format!(
            "ctdoctor notrack --netns {} --lo",
            crate::advice::change::sh_quote("it's")
        );
        assert_eq!(
            parse_line(&line).unwrap().netns.netns.as_deref(),
            Some("it's")
        );
        assert!(parse_line("ctdoctor notrack --netns 'open --lo").is_err());
    }

    #[test]
    fn ephemeral_range() {
        assert_eq!(apply::parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(apply::parse_range("x"), None);
    }
}
