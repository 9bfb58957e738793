use alknet_runtime::prelude::*;

/// Greets people.
#[alk_service(namespace = "greeter", version = "1.0.0")]
pub enum GreeterProtocol {
    /// Say hello.
    #[alk_operation(query, output = String)]
    Hello { name: String },
    /// Greet every second.
    #[alk_operation(subscription, item = String)]
    Greetings,
}

async fn misuse(env: OperationEnv) {
    let _ = env.call(Greetings {}).await;
    let _ = env.stream(Hello { name: "ada".into() }).await;
}

fn main() {
    let _ = misuse;
}
