//! TODO(skeleton): reader for system; replaced by its implementation.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct System {}

pub fn read(_root: &Root) -> Fact<System> {
    Err(Unavailable::Missing {
        what: "system (not implemented yet)".into(),
    })
}
