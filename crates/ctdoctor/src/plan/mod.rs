//! `plan`: sizing and what-if timeouts, as pure functions of a snapshot's
//! facts (and, for the what-if, of one dump's idle ages).
//!
//! - [`size`]: the one sizing of the table (check's suggestion is the same
//!   computation) and the alternatives beside it.
//! - [`whatif`]: what new timeouts would leave in the table, from one
//!   dump's idle ages (`table::ages`).
//! - [`render`]: the plan as text and as JSON.
//!
//! A [`Plan`]'s changes are typed [`Change`]s, the same `check` prints and
//! `tune` applies.
//!
//! Not for: reading (host), judging (checks) or applying (tune).

pub mod render;

pub mod whatif;

pub use crate::advice::size::{size, Inputs, SizePlan};

use crate::advice::change::Change;
use crate::advice::suggest::{self, Part, SizingFix};
use crate::knobs::Setting;
use crate::snapshot::Facts;
use crate::table::ages::Ages;

/// The what-if part of a plan: the timeouts asked for, and the
/// prediction or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatIfPart {
    pub settings: Vec<Setting>,
    /// Where the ages came from (`live`, `live, netns gw`, a file).
    pub source: String,
    pub result: Result<whatif::WhatIf, String>,
}

/// Everything `ctdoctor plan` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The namespace's label in changes (None: the host's).
    pub netns: Option<String>,
    pub kernel_release: Option<String>,
    pub cpus: Option<u32>,
    pub size: SizePlan,
    pub alternatives: Vec<crate::advice::size::Alternative>,
    /// The changes that bring the table to the recommended size.
    pub changes: Vec<Change>,
    pub what_if: Option<WhatIfPart>,
}

/// The typed changes from the current size to `p.recommended`: max when it
/// differs, buckets when more are needed (never fewer), with their
/// persistence — built by the same code as `check`'s fixes.
pub fn size_changes(f: &Facts, p: &SizePlan) -> Vec<Change> {
    let rec = p.recommended;
    let max = (rec.max != p.current_max).then_some(rec.max);
    let buckets = (p.current_buckets > 0 && rec.buckets > p.current_buckets).then_some(rec.buckets);
    let fix = SizingFix {
        max,
        buckets,
        size: rec,
        capped_by_memory: p.capped_by_memory,
        budget_max: p.budget_max,
        reason: String::new(),
    };
    let part = if max.is_some() {
        Part::Max
    } else {
        Part::Buckets
    };
    suggest::sizing_changes(f, &fix, part)
}

/// Build the plan. `what_if`: the timeouts to predict, with the dump's
/// ages and where they came from. None when conntrack's count or max is
/// unknown (`size`).
pub fn plan(
    f: &Facts,
    inputs: &Inputs,
    what_if: Option<(Vec<Setting>, &Ages, String)>,
) -> Option<Plan> {
    let p = size(f, inputs)?;
    let sys = f.system.as_ref().ok();
    let cpus = sys.and_then(|s| s.cpus.as_ref().ok().copied());
    Some(Plan {
        netns: suggest::netns_label(f),
        kernel_release: sys.map(|s| s.kernel_release.clone()),
        cpus,
        alternatives: crate::advice::size::alternatives(&p, cpus),
        changes: size_changes(f, &p),
        size: p,
        what_if: what_if.map(|(settings, ages, source)| WhatIfPart {
            result: whatif::predict(f, ages, &settings),
            settings,
            source,
        }),
    })
}
