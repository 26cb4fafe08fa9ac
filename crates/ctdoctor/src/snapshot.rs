//! The names deciders use for what a reading holds: [`Snapshot`] — every
//! fact about one network namespace at one instant (and, with `check
//! --sample`, an earlier reading of the counters for rates) — and every
//! fact type. Plain data: checks and plans are pure functions of it.
//!
//! Only re-exports: the types live beside their parsers in `host::*`
//! (`host::fact` for the reading as a whole), filled by
//! `crate::host::read_facts`.
//!
//! Not for: reading (host), judging (checks), rendering (report).

pub use crate::host::conntrack::Conntrack;
pub use crate::host::consumers::{Consumers, RulesetUse};
pub use crate::host::creators::Creation;
pub use crate::host::fact::{
    Fact, Facts, NetnsId, ProcessRef, Snapshot, SourceStatus, Unavailable,
};
pub use crate::host::fds::{Fds, ProcFds};
pub use crate::host::kmsg::{BootSizing, Kmsg, SynFlood, TableFull};
pub use crate::host::mix::TableMix;
pub use crate::host::nginx::{
    Class as NginxClass, ClassCount as NginxClassCount, NginxErrors,
    WINDOW_SECS as NGINX_WINDOW_SECS,
};
pub use crate::host::nic::Nics;
pub use crate::host::persist::{
    dotted, is_global, ModuleState, Persist, Setting, SysctlKey, SYSCTL_CONF,
};
pub use crate::host::sockets::{Destination, Listener, Sockets, Softnet, SoftnetCpu};
pub use crate::host::stat::Stat;
pub use crate::host::system::System;
pub use crate::knobs::normalize_value;
