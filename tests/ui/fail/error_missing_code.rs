use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = String, error(status = 409, description = "the name is taken"))]
    Hello { name: String },
}

fn main() {}
