use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0", authority(scopes = ["greeter:read"], resource = ["graph:read"]))]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = String)]
    Hello { name: String },
}

fn main() {}
