use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = String, idempotent)]
    Hello { name: String },
    /// Greet every second.
    #[alk_operation(subscription, item = String, idempotent)]
    Greetings,
    /// Forget every greeting; twice is once.
    #[alk_operation(mutation, idempotent, idempotent)]
    Forget,
}

fn main() {}
