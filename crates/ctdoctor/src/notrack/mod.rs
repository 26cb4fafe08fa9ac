//! `ctdoctor notrack`: stop tracking what needs no tracking — loopback, a
//! host's own server ports — without breaking what does. The seed
//! playbook's option C made safe: untracked packets are never NATed and
//! match no `ct state` rule, so before anything is loaded the running
//! rulesets are scanned for the rules the selection would break.
//!
//! - [`select`]: what is selected, as classes of packets;
//! - [`rules`]: the nft and iptables-restore forms;
//! - [`eval`] and [`conflicts`]: walking chains, the conflict scan;
//! - [`apply`]: the one door to the system (`Writer`), which `tune`'s journal
//!   implements at merge.
//!
//! [`plan`] is pure: ruleset facts in, rules and conflicts out.
//! Not for: reading the rulesets (host/consumers.rs) or the command line
//! (cmd/notrack.rs).

pub mod apply;
pub mod conflicts;
pub mod eval;
pub mod rules;
pub mod select;

use crate::host::consumers::NF_TABLES_NOT_LOADED;
use crate::snapshot::{Consumers, Unavailable};
use conflicts::Scan;
use rules::Form;
use select::Selection;
use serde::Serialize;

/// Everything `ctdoctor notrack` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub form: Form,
    pub selection: Selection,
    /// The script (nft -f or iptables-restore --noflush input).
    pub rules: String,
    #[serde(flatten)]
    pub scan: Scan,
    /// Rulesets that could not be read (their conflicts are unknown).
    pub not_read: Vec<String>,
}

impl Plan {
    /// Whether every ruleset that can exist here was read.
    pub fn complete(&self) -> bool {
        self.not_read.is_empty()
    }
}

/// Whether an unreadable ruleset hides rules: not when its tool is not
/// installed (no rules of that kind were made with it... unless another
/// tool made them: nft's view covers iptables-nft's), nor when nf_tables is
/// not loaded (no nft table can exist), nor when the kernel lists no
/// legacy tables.
fn hides_rules(name: &str, u: &Unavailable, nft_read: bool) -> bool {
    match u {
        Unavailable::Missing { what } => {
            if what == NF_TABLES_NOT_LOADED || what.contains("no legacy tables loaded") {
                return false;
            }
            if what.contains("ip_tables_names") || what.contains("ip6_tables_names") {
                return false; // legacy iptables not loaded: no legacy table
            }
            // iptables-nft-save missing: nft's own view still holds its chains.
            !(name == "iptables_nft" && nft_read)
        }
        _ => true,
    }
}

/// The rules and conflicts of `sel` in `form` against the rulesets of
/// `c`; `ephemeral` is the netns's ip_local_port_range when known.
pub fn plan(
    sel: &Selection,
    c: &Consumers,
    form: Form,
    ephemeral: Option<(u32, u32)>,
) -> Result<Plan, String> {
    sel.validate()?;
    rules::check_family(sel, form)?;
    let views = c.effective();
    let scan = conflicts::scan(sel, &views, form, ephemeral);
    let mut rules = match form {
        Form::Nft => rules::nft_script(sel, &scan.inserts),
        f => rules::iptables_script(sel, &scan.inserts, f),
    };
    let blocking = scan.blocking().count();
    if blocking > 0 {
        // Said in the script itself too: a pasted script has no stderr.
        let warn = format!(
            "# WARNING: {blocking} conflict(s) with the running rules would drop or mis-route traffic \
             (listed on stderr and in --json): do not load this as it is\n"
        );
        let at = rules
            .find("# ctdoctor notrack")
            .and_then(|i| rules[i..].find('\n').map(|j| i + j + 1))
            .unwrap_or(0);
        rules.insert_str(at, &warn);
    }
    let nft_read = c.nft.is_ok();
    let not_read = [
        ("nft", c.nft.as_ref().err()),
        ("iptables_nft", c.iptables_nft.as_ref().err()),
        ("iptables_legacy", c.iptables_legacy.as_ref().err()),
    ]
    .into_iter()
    .filter_map(|(n, e)| {
        e.filter(|u| hides_rules(n, u, nft_read))
            .map(|u| format!("{n}: {u}"))
    })
    .collect();
    Ok(Plan {
        form,
        selection: sel.clone(),
        rules,
        scan,
        not_read,
    })
}
