//! Variants whose snake_case names are Rust keywords: the handler methods are raw
//! identifiers (`r#type`, `r#match`), or `crate_` where a raw identifier is not allowed.

#![deny(warnings)]

use alknet_runtime::prelude::*;

/// Names things.
#[alk_service(namespace = "keywords", version = "1.0.0")]
pub enum KeywordsProtocol {
    /// The type of a value.
    #[alk_operation(query, output = String)]
    Type {
        /// The value.
        value: String,
    },

    /// Whether two values match.
    #[alk_operation(query, output = bool)]
    Match {
        /// The left value.
        left: String,
        /// The right value.
        right: String,
    },

    /// Make a crate.
    #[alk_operation(mutation)]
    Crate,

    /// Generate something (`gen` is reserved from edition 2024).
    #[alk_operation(mutation)]
    Gen,
}

struct Keywords;

impl KeywordsHandler for Keywords {
    async fn r#type(&self, _ctx: &OperationContext, request: Type) -> Result<String, CallError> {
        Ok(format!("string of {}", request.value.len()))
    }

    async fn r#match(&self, _ctx: &OperationContext, request: Match) -> Result<bool, CallError> {
        Ok(request.left == request.right)
    }

    async fn crate_(&self, _ctx: &OperationContext, _request: Crate) -> Result<(), CallError> {
        Ok(())
    }

    async fn r#gen(&self, _ctx: &OperationContext, _request: Gen) -> Result<(), CallError> {
        Ok(())
    }
}

fn main() {
    let env = OperationEnv::builder()
        .local(KeywordsProtocol::local(Keywords))
        .build()
        .unwrap();
    let client = KeywordsClient::new(env);
    let _ = client.r#type("x".into());
    let _ = client.r#match("a".into(), "b".into());
    let _ = client.crate_();
}
