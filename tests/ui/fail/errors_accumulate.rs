use alknet_runtime::prelude::*;

#[alk_service(namespace = "Greeter", version = "one")]
pub enum GreeterProtocol {
    #[alk_operation(query, output = String)]
    Hello { name: String },
    /// Stream greetings.
    #[alk_operation(subscription, output = String, timeout = "soon")]
    Greetings,
    /// Say hello again.
    #[alk_operation(query, output = String, name = "hello", error(code = "NOT_FOUND", status = 200))]
    HelloAgain { name: String },
}

fn main() {}
