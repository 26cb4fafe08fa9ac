//! TODO(skeleton): reader for nic; replaced by its implementation.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nics {}

pub fn read(_root: &Root) -> Fact<Nics> {
    Err(Unavailable::Missing {
        what: "nic (not implemented yet)".into(),
    })
}
