//! `ctdoctor exporter`: Prometheus metrics for one node.
//!
//! Pure core: [`metrics`] turns facts, findings and table state into
//! exposition text through [`encode`]. The edges: a background refresher
//! reads facts and runs the checks, [`track`] follows each namespace's
//! table with ctnetlink events and paced resync dumps, and [`http`] serves
//! what they last published. A scrape never reads the kernel, never dumps
//! and never waits on a slow source.
//!
//! Not for: judging (checks) or reading (host); alert rules and dashboards
//! (deploy/).

pub mod encode;
pub mod idmap;
pub mod table;
