use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = String)]
    Hello { name: String },
    /// Say goodbye.
    #[alk_operation(query, output = String)]
    Goodbye { name: String },
}

struct Greeter;

impl GreeterHandler for Greeter {
    async fn hello(&self, _ctx: &OperationContext, request: Hello) -> Result<String, CallError> {
        Ok(format!("Hello, {}!", request.name))
    }
}

fn main() {
    let _ = GreeterProtocol::local(Greeter);
}
