use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", versoin = "1.0.0")]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(
        query,
        output = String,
        timout = "5s",
        error(code = "NO_NAME", status = 422, descripton = "the name is empty")
    )]
    Hello { name: String },
}

fn main() {}
