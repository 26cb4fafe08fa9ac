//! Conntrack entries as a stream, and one-pass aggregates over them
//! (`summary`, `top`). TODO(skeleton): filled by the summary work.
