use alknet_runtime::prelude::*;
use alknet_runtime::serde_json::Value;

/// Extra fields.
#[alk_type]
#[derive(Debug, Clone)]
pub struct Extra {
    /// A number.
    pub n: u32,
}

/// A node of a graph.
#[alk_type]
#[derive(Debug, Clone)]
pub struct Node {
    /// Free-form attributes.
    pub attributes: Vec<Value>,
    /// Merged in.
    #[serde(flatten)]
    pub extra: Extra,
}

fn main() {}
