use alknet_runtime::prelude::*;

/// A number or a name.
#[alk_type]
#[serde(untagged)]
#[derive(Debug, Clone)]
pub enum Key {
    /// By number.
    Number(u64),
    /// By name.
    Name(String),
}

fn main() {}
