//! `plan`: sizing and what-if timeouts, as pure functions of a snapshot
//! (and, for the what-if, of one dump's idle ages).
//!
//! - [`size`]: the one sizing of the table (check's suggestion is the same
//!   computation) and the alternatives beside it.
//!
//! Not for: reading (host), judging (checks) or applying (tune).

pub mod size;

pub use size::{size, Inputs, SizePlan};
