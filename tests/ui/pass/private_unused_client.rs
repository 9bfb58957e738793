//! A private service whose client is never used still compiles under `deny(warnings)`.
#![deny(missing_docs, warnings)]

use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = String)]
    Hello {
        /// Who.
        name: String,
    },
}

struct Greeter;

impl GreeterHandler for Greeter {
    async fn hello(&self, _ctx: &OperationContext, request: Hello) -> Result<String, CallError> {
        Ok(request.name)
    }
}

fn main() {
    let _ = GreeterProtocol::local(Greeter);
}
