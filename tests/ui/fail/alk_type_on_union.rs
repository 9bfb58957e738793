use alknet_runtime::prelude::*;

/// Bits.
#[alk_type]
pub union Bits {
    /// As a number.
    pub n: u32,
    /// As a float.
    pub f: f32,
}

fn main() {}
