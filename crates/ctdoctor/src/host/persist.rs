//! TODO(skeleton): reader for persist; replaced by its implementation.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persist {}

pub fn read(_root: &Root) -> Fact<Persist> {
    Err(Unavailable::Missing {
        what: "persist (not implemented yet)".into(),
    })
}
