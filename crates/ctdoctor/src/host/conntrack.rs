//! TODO(skeleton): reader for conntrack; replaced by its implementation.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conntrack {}

pub fn read(_root: &Root) -> Fact<Conntrack> {
    Err(Unavailable::Missing {
        what: "conntrack (not implemented yet)".into(),
    })
}
