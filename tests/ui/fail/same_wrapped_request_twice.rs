use alknet_runtime::prelude::*;

/// The request.
#[alk_type]
#[derive(Debug)]
pub struct Name {
    /// Who.
    pub name: String,
}

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = String)]
    Hello(Name),
    /// Greet.
    #[alk_operation(query, output = String)]
    Greet(Name),
}

fn main() {}
