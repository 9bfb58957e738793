use alknet_runtime::prelude::*;
use alknet_runtime::serde_json::Value;
use std::collections::HashMap;

/// Stores things.
#[alk_service(namespace = "store", version = "1.0.0")]
pub enum StoreProtocol {
    /// Read every attribute.
    #[alk_operation(query, output = HashMap<String, Value>)]
    Attributes,
}

fn main() {}
