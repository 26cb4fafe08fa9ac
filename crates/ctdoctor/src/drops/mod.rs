//! The drop census (`ctdoctor drops`, `check --sample`, the exporter's
//! `--drop-reasons`): every packet the kernel drops passes the
//! `skb:kfree_skb` tracepoint, which since 5.17 carries why. Pure parts
//! only: the event's format and the ring buffer's pages are parsed here
//! ([`format`], [`ring`]), drops are counted ([`census`]) and explained
//! ([`report`]); `host::tracefs` owns the tracing instance and the reads.

pub mod census;
pub mod format;
pub mod report;
pub mod ring;
