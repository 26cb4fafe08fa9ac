//! Network namespaces, the one place ctdoctor enters or creates them.
//!
//! For: naming a namespace to read ([`Target`]), running a closure inside
//! one on a dedicated thread ([`run_in`]), and — for the lab and the kernel
//! tests — throwaway namespaces ([`owned::Netns`]) and /proc/sys guards
//! ([`guard::Knob`]) that put things back on drop. Not for: reading facts
//! (ctdoctor's `host/` does that), conntrack netlink (`ctnetlink`), or
//! discovering every namespace on a machine (`host::netns::discover`).
//!
//! After `setns(CLONE_NEWNET)` on a thread, /proc/sys/net follows the
//! thread and /proc/thread-self/net shows its namespace, but /proc/net
//! (the process leader's) and /sys/class/net do not: code run by
//! [`run_in`] must read /proc/thread-self/net. Sockets opened inside stay
//! bound to that namespace whichever thread uses them later.
//!
//! Nothing here panics on outside data: every failure is an [`Error`]
//! (entering) or a [`SetupError`] (creating, running a command, a knob).
//!
//! # Restoring on the way out
//!
//! [`owned::Netns`] and [`guard::Knob`] undo their change in `Drop`, which
//! runs on normal return and while a panic unwinds. It does not run when
//! the process is killed by a signal (SIGINT from Ctrl-C, SIGTERM), calls
//! `std::process::exit`, or is built with `panic = "abort"`: a caller
//! that must survive those (the lab) installs its own signal handler that
//! turns the signal into an orderly return, so the guards drop.

mod cmd;
mod enter;
mod error;
pub mod guard;
pub mod owned;
pub mod privilege;
mod target;

pub use enter::run_in;
pub use error::{Error, SetupError, Step};
pub use target::Target;
