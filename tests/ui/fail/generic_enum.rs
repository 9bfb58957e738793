use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
pub enum GreeterProtocol<T> {
    /// Say hello.
    #[alk_operation(query, output = String)]
    Hello { name: T },
}

fn main() {}
