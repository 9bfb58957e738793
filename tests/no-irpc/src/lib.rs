//! A service declared against a runtime built without `irpc`: the generated irpc items
//! vanish and everything else works. scripts/test builds and tests this crate on its own,
//! since in a workspace build another member would switch the feature back on.

#![deny(missing_docs, warnings)]

use alknet_runtime::prelude::*;

/// Says hello.
#[alk_service(namespace = "hello", version = "1.0.0")]
pub enum HelloProtocol {
    /// Greet someone.
    #[alk_operation(query, output = String)]
    Greet {
        /// Who.
        name: String,
    },
}

/// The `hello` service.
pub struct Hello;

impl HelloHandler for Hello {
    async fn greet(&self, _ctx: &OperationContext, request: Greet) -> Result<String, CallError> {
        Ok(format!("hello, {}", request.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_without_irpc() {
        let env = OperationEnv::builder()
            .local(HelloProtocol::local(Hello))
            .build()
            .unwrap();
        let reply = env
            .invoke(
                "hello",
                "greet",
                alknet_runtime::serde_json::json!({"name": "ada"}),
            )
            .await;
        assert_eq!(reply.result.unwrap(), "hello, ada");
    }
}
