//! `tune`: the only code that writes sysctls and config files. Its input is
//! typed changes (`change::Change`) — from `--set`, a profile, `check`'s
//! findings or a plan — so what ctdoctor prints and what it applies cannot
//! disagree.
//!
//! One change set goes: read ([`apply::read_knobs`], [`apply::read_boot`]) →
//! diff ([`diff::plan`], pure: runtime now → new, every file's text now →
//! new, what boot would then set, what is refused) → journal
//! ([`journal`], fsync'd before any write) → runtime values → files (each
//! atomically) → read back. [`apply::rollback`] restores a change set from
//! its journal, including one interrupted by a kill. [`evict`] frees the
//! table now by deleting closing-state entries over ctnetlink.
//!
//! Other writers build on the journal: `notrack --apply` goes through
//! [`nft::Journaled`], which records the nft table and the marked accept
//! rules it adds ([`journal::Entry::NftTable`], [`journal::Entry::NftMarked`])
//! and the boot file it writes, before it adds them; rollback deletes them.
//!
//! Not for: choosing values (advice::suggest, plan, [`profile`] computes
//! sets from them) or rendering shell text (advice::change::render).

pub mod apply;
pub mod backlog;
pub mod diff;
pub mod evict;
pub mod files;
pub mod journal;
pub mod nft;
pub mod profile;
pub mod report;
pub mod write;

use crate::advice::change::Change;

/// Read what `changes` touch — the runtime values in `target`, the boot
/// files under `root` — and diff them ([`diff::plan`]): the one way from
/// typed changes to a plan, for `ctdoctor tune` and the lab's fixes.
pub fn diff(
    changes: &[Change],
    root: &std::path::Path,
    target: &netns::Target,
    facts: &crate::snapshot::Facts,
    netns: &journal::NetnsRef,
    opts: diff::Options,
) -> anyhow::Result<diff::Plan> {
    let knobs = apply::read_knobs(target, &diff::knob_paths(changes))?;
    let boot = apply::read_boot(root, facts);
    // The snapshot's answer (host::persist): one scan of /proc, one answer.
    let kube_proxy = facts
        .persist
        .as_ref()
        .map(|p| p.kube_proxy.clone())
        .unwrap_or_default();
    Ok(diff::plan(
        changes,
        &diff::Inputs {
            facts,
            netns,
            knobs: &knobs,
            boot: &boot,
            kube_proxy: &kube_proxy,
        },
        opts,
    ))
}

/// Merge change lists: a later list's change replaces an earlier one for
/// the same key, scope and file (so `--set` wins over a profile). Returns
/// the merged list and a note for each value replaced.
pub fn merge(lists: Vec<Vec<Change>>) -> (Vec<Change>, Vec<String>) {
    let mut out: Vec<Change> = Vec::new();
    let mut notes = Vec::new();
    for list in lists {
        let mut this: Vec<Change> = Vec::new();
        for c in list {
            if let Some(prev) = out
                .iter_mut()
                .find(|p| p.key == c.key && p.scope == c.scope && p.file == c.file)
            {
                if prev.value != c.value {
                    notes.push(format!("{} = {} replaces {}", c.key, c.value, prev.value));
                }
                *prev = c;
            } else if let Some(p) = this
                .iter_mut()
                .find(|p| p.key == c.key && p.scope == c.scope && p.file == c.file)
            {
                *p = c;
            } else {
                this.push(c);
            }
        }
        out.extend(this);
    }
    (out, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_lists_win() {
        let a = vec![
            Change::knob("tcp_timeout_time_wait", 30, None),
            Change::knob("nf_conntrack_max", 1, None),
        ];
        let b = vec![Change::knob("tcp_timeout_time_wait", 15, None)];
        let (m, notes) = merge(vec![a, b]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].value, "15");
        assert_eq!(notes.len(), 1);
        // A repeat inside one list is not a conflict (findings repeat sizing).
        let (m, notes) = merge(vec![vec![
            Change::knob("nf_conntrack_max", 2, None),
            Change::knob("nf_conntrack_max", 2, None),
        ]]);
        assert_eq!((m.len(), notes.len()), (1, 0));
    }
}
