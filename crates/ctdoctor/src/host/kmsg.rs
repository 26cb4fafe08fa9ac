//! TODO(skeleton): reader for kmsg; replaced by its implementation.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kmsg {}

pub fn read(_root: &Root) -> Fact<Kmsg> {
    Err(Unavailable::Missing {
        what: "kmsg (not implemented yet)".into(),
    })
}
