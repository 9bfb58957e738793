use alknet_runtime::prelude::*;

pub struct Greeting {
    pub text: String,
}

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = Greeting)]
    Hello { name: String },
}

fn main() {}
