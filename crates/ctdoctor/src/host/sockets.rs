//! TODO(skeleton): reader for sockets; replaced by its implementation.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sockets {}

pub fn read(_root: &Root) -> Fact<Sockets> {
    Err(Unavailable::Missing {
        what: "sockets (not implemented yet)".into(),
    })
}
