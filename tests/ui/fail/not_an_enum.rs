use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
pub struct GreeterProtocol {
    name: String,
}

fn main() {}
