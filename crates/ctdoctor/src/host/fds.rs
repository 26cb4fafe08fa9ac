//! TODO(skeleton): reader for fds; replaced by its implementation.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fds {}

pub fn read(_root: &Root) -> Fact<Fds> {
    Err(Unavailable::Missing {
        what: "fds (not implemented yet)".into(),
    })
}
