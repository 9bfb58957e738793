use alknet_runtime::prelude::*;

#[alk_type]
fn not_a_type() {}

fn main() {}
