//! TODO(skeleton): reader for stat; replaced by its implementation.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {}

pub fn read(_root: &Root) -> Fact<Stat> {
    Err(Unavailable::Missing {
        what: "stat (not implemented yet)".into(),
    })
}
