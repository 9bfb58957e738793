use alknet_runtime::prelude::*;

/// Extra fields.
#[alk_type]
#[derive(Debug, Clone)]
pub struct Extra {
    /// A number.
    pub n: u32,
}

/// Stores things.
#[alk_service(namespace = "store", version = "1.0.0")]
pub enum StoreProtocol {
    /// Put a document.
    #[alk_operation(mutation)]
    Put {
        #[serde(flatten)]
        extra: Extra,
    },
}

fn main() {}
