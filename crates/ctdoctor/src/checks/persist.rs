//! TODO(skeleton): persistence and consumer rules; replaced by their implementation.

use super::Finding;
use crate::snapshot::Snapshot;

pub fn run(_snap: &Snapshot) -> Vec<Finding> {
    Vec::new()
}
