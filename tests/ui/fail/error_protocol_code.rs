use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = String, error(code = "NOT_FOUND", status = 404, description = "no such person"))]
    Hello { name: String },
}

fn main() {}
