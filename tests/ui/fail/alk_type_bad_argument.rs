use alknet_runtime::prelude::*;

/// A type.
#[alk_type(serde)]
pub struct Thing {
    /// A field.
    pub n: u32,
}

fn main() {}
