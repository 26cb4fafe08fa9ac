//! The lab's fix step: apply what ctdoctor would tell the user, through
//! the code the user would run — `tune` (a journaled change set, runtime
//! only, under the lab's own journal root) and `notrack` (the journaled nft
//! writer) — then free what the new settings would already have freed
//! (`tune --evict`). Undone at the end of the run ([`Undo`]), before the
//! lab's own guards put the machine's max back.
//!
//! Kinds:
//! - `timeouts`: the timeout changes `check` printed for the gateway during
//!   the failing phase, and the entries those timeouts would already have
//!   expired evicted (`--evict STATE --idle-over T`).
//! - `max`: the size `ctdoctor plan --rate` recommends for the load's rate
//!   (two entries per request), applied to the global max and hash.
//! - `notrack`: `ctdoctor notrack --lo --port 80 --upstream-port 8080` in
//!   the gateway (both legs of the proxy), and the tracked entries of those
//!   ports evicted.
//! - `evict`: relief only: every closing-state entry deleted.
//!
//! Not for: choosing values of its own. Every value comes from `check`,
//! `plan` or `notrack`; the lab only proves whether it was enough.

use super::topo;
use crate::advice::change::Change;
use crate::checks::Finding;
use crate::host::netns::Target;
use crate::host::{self, Collect, Select, Source};
use crate::table::entry::TcpState;
use crate::table::filter::Filter;
use crate::tune::{self, apply, evict, journal::NetnsRef};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A fix the lab can apply between the failing phase and the after phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The timeouts `check` printed, plus the entries they would have expired.
    Timeouts,
    /// The max and hash `ctdoctor plan --rate` recommends for the load.
    Max,
    /// NOTRACK for loopback, the proxy's port 80 and its backends' port 8080
    /// (`ctdoctor notrack`).
    Notrack,
    /// Relief only: delete every closing-state entry.
    Evict,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Timeouts => "timeouts",
            Kind::Max => "max",
            Kind::Notrack => "notrack",
            Kind::Evict => "evict",
        }
    }
}

/// What was applied, for the report.
#[derive(Debug, Default)]
pub struct Applied {
    pub changes: Vec<Change>,
    /// Read back: `where: key old -> new`.
    pub written: Vec<String>,
    pub evicted: u64,
    pub reasoning: Vec<String>,
    /// Change set ids in the lab's journal.
    pub journal: Vec<String>,
}

/// The change sets the fix made, rolled back (last first) when dropped;
/// then the lab's journal directory is removed.
pub struct Undo {
    root: PathBuf,
    ids: Vec<String>,
}

impl Undo {
    /// The lab's own journal root (never the machine's /var/lib/ctdoctor):
    /// a fresh directory of mode 0700 with a random name (a fixed name in
    /// /tmp could be made first by someone else); what a killed run left
    /// under this prefix is removed first.
    pub fn new(prefix: &str) -> Result<Undo> {
        let tmp = std::env::temp_dir();
        let stem = format!("ctdoctor-lab-{prefix}-fix");
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let ours = e.file_name().to_string_lossy().starts_with(&stem)
                    && std::fs::symlink_metadata(e.path()).is_ok_and(|m| {
                        use std::os::unix::fs::MetadataExt;
                        // SAFETY: geteuid has no failure mode.
                        m.is_dir() && m.uid() == unsafe { libc::geteuid() }
                    });
                if ours {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let root = tempfile::Builder::new()
            .prefix(&format!("{stem}-"))
            .tempdir_in(&tmp)
            .with_context(|| format!("creating the lab's journal root in {}", tmp.display()))?
            .keep();
        Ok(Undo {
            root,
            ids: Vec::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for id in self.ids.iter().rev() {
            match apply::rollback_with(&self.root, id, true, "ctdoctor lab", apply::Lock::Held) {
                Ok(r) if r.ok() => {}
                Ok(r) => eprintln!(
                    "ctdoctor lab: rolling back the fix {id}: {}",
                    failed_checks(&r.checks, &r.notes)
                ),
                Err(e) => eprintln!("ctdoctor lab: rolling back the fix {id}: {e:#}"),
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The gateway, as the fix sees it.
pub struct Gateway<'a> {
    pub name: &'a str,
    pub target: Target,
    /// Requests per second of the load, as measured in the failing phase.
    pub rate: f64,
}

/// Apply `kinds` to the gateway. `findings`: `check` on the gateway during
/// the failing phase.
pub fn apply(
    gw: &Gateway<'_>,
    kinds: &[Kind],
    findings: &[Finding],
    undo: &mut Undo,
) -> Result<Applied> {
    let mut out = Applied::default();
    // The timeouts before the change: entries' ages are measured against
    // the timeout they were given.
    let old_timeouts = host::entries::timeouts(&gw.target)?;
    if kinds.contains(&Kind::Timeouts) {
        let mut changes: Vec<Change> = tune::merge(vec![findings
            .iter()
            .flat_map(|f| f.changes.iter().cloned())
            .filter(is_timeout)
            .collect()])
        .0;
        size_time_wait(gw, &mut changes, &mut out)?;
        if changes.is_empty() {
            out.reasoning
                .push("timeouts: check printed no timeout change for the gateway".into());
        } else {
            out.reasoning.push(format!(
                "timeouts: {} change(s) for netns {} — check's, TIME_WAIT sized by plan — through tune, runtime only",
                changes.len(),
                gw.name
            ));
            tune_apply(gw, &gw.target, Some(gw.name), &changes, undo, &mut out)?;
            for c in &changes {
                let Some(state) = tcp_state_of(&c.key) else {
                    continue;
                };
                let Ok(secs) = c.value.parse::<u32>() else {
                    continue;
                };
                let f = Filter {
                    states: 1 << state as u16,
                    ..Filter::default()
                };
                let idle = evict::IdleOver::new(secs, old_timeouts);
                let e = evict::evict(&gw.target, &f, Some(&idle), false)?;
                if e.freed == 0 {
                    continue;
                }
                out.reasoning.push(format!(
                    "relief: {} {} entries idle ≥ {secs} s deleted (what the new timeout would already have expired)",
                    crate::util::thousands(e.freed),
                    state.as_str()
                ));
                out.evicted += e.freed;
            }
        }
    }
    if kinds.contains(&Kind::Max) {
        let per_sec = gw.rate * super::ENTRIES_PER_REQUEST as f64;
        let facts = facts_of(&gw.target, true)?;
        let inputs = crate::plan::Inputs {
            rate: Some(per_sec),
            ..crate::plan::Inputs::default()
        };
        let Some(p) = crate::advice::size::size(&facts, &inputs) else {
            bail!("max: plan could not size the gateway's table (count or max unreadable)");
        };
        let changes: Vec<Change> = crate::plan::size_changes(&facts, &p)
            .into_iter()
            .filter(|c| c.scope != crate::advice::change::Scope::Cmdline)
            .collect();
        out.reasoning.push(format!(
            "max: `ctdoctor plan --rate {per_sec}` ({} requests/s × {} entries): nf_conntrack_max {}, buckets {}",
            gw.rate,
            super::ENTRIES_PER_REQUEST,
            p.recommended.max,
            p.recommended.buckets
        ));
        if !changes.is_empty() {
            tune_apply(gw, &Target::Current, None, &changes, undo, &mut out)?;
        }
    }
    if kinds.contains(&Kind::Notrack) {
        notrack(gw, undo, &mut out)?;
        for port in [topo::PROXY_PORT, topo::BACKEND_PORT] {
            let f = Filter {
                port: Some(port),
                ..Filter::default()
            };
            let e = evict::evict(&gw.target, &f, None, false)?;
            out.reasoning.push(format!(
                "relief: {} tracked entries of port {port} deleted (untracked from now on)",
                crate::util::thousands(e.freed),
            ));
            out.evicted += e.freed;
        }
    }
    if kinds.contains(&Kind::Evict) {
        let f = Filter {
            states: evict::parse_states("closing").map_err(anyhow::Error::msg)?,
            ..Filter::default()
        };
        let e = evict::evict(&gw.target, &f, None, false)?;
        out.reasoning.push(format!(
            "evict: {} closing-state entries deleted (relief only: the settings are unchanged)",
            crate::util::thousands(e.freed)
        ));
        out.evicted += e.freed;
    }
    Ok(out)
}

const TIME_WAIT_KEY: &str = "net.netfilter.nf_conntrack_tcp_timeout_time_wait";

/// Size the TIME_WAIT timeout for the measured rate (plan's demand model
/// solved for the timeout, `advice::size::time_wait_for`, with plan's
/// headroom): check's value when it fits, else the longest that does —
/// and say which, with the numbers. A value that cannot fit is kept and
/// said so; the after phase then shows it is not enough.
fn size_time_wait(gw: &Gateway<'_>, changes: &mut Vec<Change>, out: &mut Applied) -> Result<()> {
    let facts = facts_of(&gw.target, true)?;
    let Some(max) = facts
        .conntrack
        .as_ref()
        .ok()
        .and_then(|c| c.max.as_ref().ok().copied())
    else {
        out.reasoning
            .push("timeouts: the gateway's max is unreadable, TIME_WAIT not sized".into());
        return Ok(());
    };
    let per_sec = gw.rate * super::ENTRIES_PER_REQUEST as f64;
    let model = crate::advice::size::rate_model(&facts, per_sec);
    let headroom = crate::advice::sizing::HEADROOM;
    let sized = crate::advice::size::time_wait_for(&model, max, headroom);
    let checks = changes
        .iter()
        .find(|c| c.key == TIME_WAIT_KEY)
        .and_then(|c| c.value.parse::<u32>().ok());
    let demand =
        |t: u32| (per_sec * (f64::from(t) + model.other_states_secs.unwrap_or(0.0))) as u64;
    let fmt = crate::util::thousands;
    match (checks, sized) {
        (Some(c), Some(t)) if c <= t => out.reasoning.push(format!(
            "timeouts: check's time_wait {c} s fits the measured {:.0} requests/s: {} entries/s × {c} s ≈ {} (× {headroom} headroom ≤ {})",
            gw.rate,
            per_sec,
            fmt(demand(c)),
            fmt(max)
        )),
        (c, Some(t)) => {
            out.reasoning.push(format!(
                "timeouts: {} at the measured {:.0} requests/s; plan sizes time_wait to {t} s: {} entries/s × {t} s ≈ {} (× {headroom} headroom ≤ {})",
                match c {
                    Some(c) => format!(
                        "check's time_wait {c} s is too small a fix ({} entries/s × {c} s ≈ {} > {} / {headroom})",
                        per_sec,
                        fmt(demand(c)),
                        fmt(max)
                    ),
                    None => "check printed no time_wait change".into(),
                },
                gw.rate,
                per_sec,
                fmt(demand(t)),
                fmt(max)
            ));
            changes.retain(|x| x.key != TIME_WAIT_KEY);
            changes.push(Change::knob(TIME_WAIT_KEY, t.to_string(), Some(gw.name)));
        }
        (_, None) => out.reasoning.push(format!(
            "timeouts: no TIME_WAIT timeout fits {} entries/s in a max of {} (even 1 s holds {}): only a bigger table (--fix max) or fewer tracked connections (--fix notrack) can",
            per_sec,
            fmt(max),
            fmt(demand(1))
        )),
    }
    Ok(())
}

fn is_timeout(c: &Change) -> bool {
    c.key.starts_with("net.netfilter.nf_conntrack_") && c.key.contains("timeout")
}

/// The TCP state of a `nf_conntrack_tcp_timeout_STATE` key.
fn tcp_state_of(key: &str) -> Option<TcpState> {
    let s = key
        .strip_prefix("net.netfilter.nf_conntrack_tcp_timeout_")?
        .to_ascii_uppercase();
    TcpState::from_name(s.as_bytes()).filter(|st| *st != TcpState::None)
}

/// plan's steady state in `target` for `per_sec` new entries a second
/// under its settings now (`ctdoctor plan --rate`: `crate::plan::size`'s
/// demand, its max and headroom). None when plan cannot size the table.
pub fn steady_state(target: &Target, per_sec: f64) -> Result<Option<super::verdict::Steady>> {
    let facts = facts_of(target, true)?;
    let inputs = crate::plan::Inputs {
        rate: Some(per_sec),
        ..crate::plan::Inputs::default()
    };
    Ok(
        crate::plan::size(&facts, &inputs).map(|p| super::verdict::Steady {
            per_sec,
            entries: p.demand.entries,
            max: p.current_max,
            headroom: p.inputs.headroom,
        }),
    )
}

/// Facts of `target` as tune reads them (with the table's mix when asked).
fn facts_of(target: &Target, table: bool) -> Result<crate::snapshot::Facts> {
    let select = if table {
        Select::ALL
    } else {
        Select::ALL.without(Source::Table)
    };
    Ok(host::collect_one(
        Path::new("/"),
        target,
        &Collect {
            select,
            ..Collect::default()
        },
    )?
    .snapshot
    .now)
}

/// `changes` through tune's diff and journaled apply, runtime only, in
/// `target` (`name`: its netns name; None for the host).
fn tune_apply(
    gw: &Gateway<'_>,
    target: &Target,
    name: Option<&str>,
    changes: &[Change],
    undo: &mut Undo,
    out: &mut Applied,
) -> Result<()> {
    let facts = facts_of(target, false)?;
    let netns = NetnsRef::of(name.map(str::to_string), &facts);
    let opts = tune::diff::Options {
        force: false,
        runtime_only: true,
        persist_only: false,
    };
    let plan = tune::diff(changes, undo.root(), target, &facts, &netns, opts)?;
    if !plan.refusals.is_empty() {
        bail!(
            "tune refused the fix for {}: {}",
            name.unwrap_or("the host"),
            plan.refusals.join("; ")
        );
    }
    if plan.is_empty() {
        out.reasoning.push(format!(
            "{}: already as asked ({})",
            name.unwrap_or("host"),
            plan.unchanged.join(", ")
        ));
        return Ok(());
    }
    let a = apply::apply_with(
        &plan,
        undo.root(),
        target,
        format!("ctdoctor lab (fix of netns {})", gw.name),
        apply::Lock::Held,
    )?;
    undo.ids.push(a.id.clone());
    out.journal.push(a.id.clone());
    if !a.ok() {
        bail!(
            "the fix did not read back as written: {}",
            failed_checks(&a.checks, &[])
        );
    }
    let where_ = name.unwrap_or("host");
    for w in &plan.runtime {
        out.written
            .push(format!("{where_}: {} {} -> {}", w.key, w.old, w.expect));
    }
    out.changes.extend(changes.iter().cloned());
    Ok(())
}

/// `ctdoctor notrack --lo --port 80 --upstream-port 8080` in the gateway,
/// journaled.
fn notrack(gw: &Gateway<'_>, undo: &mut Undo, out: &mut Applied) -> Result<()> {
    use crate::notrack::{self as nt, apply as ntapply, rules::Form, select};
    let sel = select::Selection {
        lo: true,
        ports: vec![
            select::PortRange::parse(&topo::PROXY_PORT.to_string()).map_err(anyhow::Error::msg)?
        ],
        upstream_ports: vec![select::PortRange::parse(&topo::BACKEND_PORT.to_string())
            .map_err(anyhow::Error::msg)?],
        protos: vec![select::Proto::Tcp],
        dir: select::Dir::Both,
        src: Vec::new(),
        dst: Vec::new(),
    };
    sel.validate().map_err(anyhow::Error::msg)?;
    let (c, eph) = ntapply::read(&gw.target)?;
    let plan = nt::plan(&sel, &c, Form::Nft, eph).map_err(anyhow::Error::msg)?;
    let blocking: Vec<String> = plan
        .scan
        .blocking()
        .map(|c| {
            format!(
                "{} {} {}: {} ({})",
                c.family, c.table, c.chain, c.rule, c.why
            )
        })
        .collect();
    if !blocking.is_empty() {
        bail!(
            "notrack refused: {} conflict(s): {}",
            blocking.len(),
            blocking.join("; ")
        );
    }
    let w = crate::tune::nft::Journaled::open(
        undo.root(),
        format!("ctdoctor lab (notrack in netns {})", gw.name),
        crate::tune::nft::netns_ref(Some(gw.name.to_string()), &gw.target)?,
    )?;
    let a = ntapply::apply(&w, &gw.target, &plan.rules, plan.scan.inserts.len())?;
    if let Some(id) = w.id() {
        undo.ids.push(id.clone());
        out.journal.push(id);
    }
    out.reasoning.push(format!(
        "notrack: `ctdoctor notrack --netns {} {}`: table inet {} and {} accept rule(s) loaded",
        gw.name,
        sel.flags(),
        crate::notrack::rules::TABLE,
        a.rules.len()
    ));
    out.changes.push(Change {
        key: "nft".into(),
        value: format!("notrack {}", sel.flags()),
        scope: crate::advice::change::Scope::Ruleset,
        netns: Some(gw.name.to_string()),
        file: None,
        relief: None,
    });
    Ok(())
}

/// The read-back checks that failed, for people: "KEY: wanted W, read G; …",
/// then the notes.
fn failed_checks(checks: &[crate::tune::apply::Check], notes: &[String]) -> String {
    let mut v: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: wanted {}, read {}", c.what, c.want, c.got))
        .collect();
    v.extend(notes.iter().cloned());
    if v.is_empty() {
        "not confirmed".into()
    } else {
        v.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_keys_name_their_tcp_state() {
        assert_eq!(
            tcp_state_of("net.netfilter.nf_conntrack_tcp_timeout_time_wait"),
            Some(TcpState::TimeWait)
        );
        assert_eq!(
            tcp_state_of("net.netfilter.nf_conntrack_tcp_timeout_established"),
            Some(TcpState::Established)
        );
        assert_eq!(tcp_state_of("net.netfilter.nf_conntrack_udp_timeout"), None);
        assert!(is_timeout(&Change::knob(
            "net.netfilter.nf_conntrack_tcp_timeout_syn_sent",
            "30",
            Some("gw")
        )));
        assert!(!is_timeout(&Change::knob(
            "net.netfilter.nf_conntrack_max",
            "1",
            None
        )));
    }
}
