//! `plan`: sizing and what-if timeouts, as pure functions of a snapshot
//! (and, for the what-if, of one dump's idle ages).
//!
//! - [`size`]: the one sizing of the table (check's suggestion is the same
//!   computation) and the alternatives beside it.
//! - [`whatif`]: what new timeouts would leave in the table, from one
//!   dump's idle ages (`table::ages`).
//!
//! Not for: reading (host), judging (checks) or applying (tune).

pub mod size;
pub mod whatif;

pub use size::{size, Inputs, SizePlan};
