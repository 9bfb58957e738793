use alknet_runtime::prelude::*;

/// Stores things.
#[alk_service(namespace = "store", version = "1.0.0")]
pub enum StoreProtocol {
    /// Put a document.
    #[alk_operation(mutation)]
    Put { document: alknet_runtime::serde_json::Value },
}

fn main() {}
