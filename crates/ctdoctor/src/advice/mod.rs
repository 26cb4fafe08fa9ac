//! What the deciders know in common: pure knowledge that `checks`, `plan`,
//! `notrack` and the writer `tune` share, so none of them reaches into
//! another. Typed changes and their one renderer ([`change`]), suggested
//! values ([`suggest`]), the table's sizing ([`size`], with the arithmetic
//! in [`sizing`]), who uses conntrack ([`owners`]), the `notrack` lines
//! checks quote ([`notrack`]) and eviction's policy ([`evict`]).
//!
//! Imports only the layers below it: the fact types (`snapshot`, filled by
//! `host`), `knobs`, `kernel`, `table`'s pure types, `util`. Pure: no I/O.
//!
//! Not for: judging (checks), planning a command's output (plan), writing
//! (tune).

pub mod change;
pub mod evict;
pub mod notrack;
pub mod owners;
pub mod size;
pub mod sizing;
pub mod suggest;
