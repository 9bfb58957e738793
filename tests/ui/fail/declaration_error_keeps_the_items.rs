//! A declaration with mistakes still generates the protocol, its handler, client and error
//! constructors, so the code that uses them reports nothing more than the mistakes.

use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "Greeter", version = "1.0.0")]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = String, scope = ["greeter:read"], error(code = "NO_NAME", status = 422, description = "the name is empty"))]
    Hello { name: String },
    /// Greet a page.
    #[alk_operation(query, output = String)]
    GreetUrl { url: String },
    /// Greet a page, the same method.
    #[alk_operation(query, output = String, name = "greet_url_again")]
    GreetURL { url: String },
    #[alk_operation(subscription, item = u64)]
    Count,
}

struct Greeter;

impl GreeterHandler for Greeter {
    async fn hello(&self, _ctx: &OperationContext, request: Hello) -> Result<String, CallError> {
        if request.name.is_empty() {
            return Err(GreeterErrors::no_name("no name"));
        }
        Ok(format!("Hello, {}!", request.name))
    }

    async fn greet_url(&self, _ctx: &OperationContext, request: GreetUrl) -> Result<String, CallError> {
        Ok(request.url)
    }

    async fn count(&self, _ctx: &OperationContext, _request: Count) -> Result<ItemStream<u64>, CallError> {
        Ok(Box::pin(alknet_runtime::futures::stream::iter([Ok(1)])))
    }
}

fn main() {
    let env = OperationEnv::builder()
        .local(GreeterProtocol::local(Greeter))
        .build()
        .unwrap();
    let _ = GreeterClient::new(env).hello("ada".into());
}
