//! The live source: dump a namespace's table over ctnetlink into the
//! aggregator, with the namespace's own timeouts.
//! TODO: waits for the ctnetlink crate's dump API (branch `ctnetlink`).

use super::agg::{Config, Summary};
use crate::cmd::summary::SourceInfo;
use crate::host::netns::Target;

/// Dump `target`'s table and aggregate it.
pub fn summary(
    _target: &Target,
    _cfg: &mut Config,
    _sysctl_timeouts: bool,
) -> anyhow::Result<(Summary, SourceInfo)> {
    anyhow::bail!("live mode is not available yet: use --file /proc/net/nf_conntrack or `conntrack -L | ctdoctor summary --file -`")
}
