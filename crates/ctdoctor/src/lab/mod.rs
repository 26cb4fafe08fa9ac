//! `ctdoctor lab`: reproduce a full conntrack table on a spare machine —
//! namespaces, a real reverse proxy, real load — then apply a fix through
//! the same code `tune` and `notrack` use, and prove whether it is enough.

pub mod backend;
pub mod load;
pub mod proxy;
pub mod topo;
