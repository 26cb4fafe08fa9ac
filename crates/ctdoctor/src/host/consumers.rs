//! TODO(skeleton): reader for consumers; replaced by its implementation.

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Consumers {}

pub fn read(_root: &Root) -> Fact<Consumers> {
    Err(Unavailable::Missing {
        what: "consumers (not implemented yet)".into(),
    })
}
