//! The alknet runtime: declare a service once with [`alk_service`], serve it everywhere.
//!
//! A service is a protocol enum annotated with `#[alk_service]`; each variant, annotated
//! with `#[alk_operation]`, is one operation. The macro generates the request types, the
//! handler trait, the specs with their JSON Schemas, the registration in
//! [`OperationEnv`], and a typed client. This crate is the only dependency a service
//! crate needs: it re-exports the macros and every crate the generated code names.
//!
//! ```
//! use alknet_runtime::prelude::*;
//!
//! /// Greets people.
//! #[alk_service(namespace = "greeter", version = "1.0.0")]
//! pub enum GreeterProtocol {
//!     /// Say hello to someone.
//!     #[alk_operation(query, output = String)]
//!     Hello { name: String },
//! }
//!
//! struct Greeter;
//!
//! impl GreeterHandler for Greeter {
//!     async fn hello(&self, _ctx: &OperationContext, req: Hello) -> Result<String, CallError> {
//!         Ok(format!("Hello, {}!", req.name))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let env = OperationEnv::builder().local(GreeterProtocol::local(Greeter)).build().unwrap();
//! let greeter = GreeterClient::new(env.clone());
//! assert_eq!(greeter.hello("Ada".into()).await.unwrap(), "Hello, Ada!");
//!
//! let reply = env.invoke("greeter", "hello", serde_json::json!({"name": "Ada"})).await;
//! assert_eq!(reply.result.unwrap(), "Hello, Ada!");
//! # }
//! ```
//!
//! See `docs/guide.md` for every attribute.

#![warn(missing_docs)]

// Generated code names this crate as `::alknet_runtime`, in user crates and here alike.
extern crate self as alknet_runtime;

mod access;
#[cfg(any(feature = "http", feature = "dns", feature = "websocket"))]
pub mod adapters;
#[cfg(any(feature = "http", feature = "call"))]
mod admission;
#[cfg(feature = "call")]
pub mod call;
#[cfg(feature = "http")]
mod client_addr;
pub mod config;
mod config_identity;
mod context;
pub mod credentials;
mod encoding;
mod env;
mod envelope;
mod identity;
mod json;
#[cfg(any(feature = "http", feature = "websocket"))]
pub mod listener;
mod policy;
#[cfg(feature = "quic")]
pub mod quic;
mod rate_limit;
mod service;
#[cfg(feature = "irpc")]
pub mod service_path;
mod spec;
#[cfg(feature = "testing")]
pub mod testing;

pub mod schema;

pub use access::{AccessControl, ResourceRule};
pub use config_identity::ConfigIdentityProvider;
pub use context::OperationContext;
pub use env::{BuildError, Caller, OperationEnv, OperationEnvBuilder, Subscription};
pub use envelope::{CallError, RequestId, ResponseEnvelope, codes};
pub use identity::{
    Credential, Identity, IdentityProvider, KeyHolder, ResourceGrant, StaticIdentities,
    key_fingerprint,
};
pub use json::Json;
pub use policy::NodePolicy;
pub use rate_limit::RateLimiter;
pub use service::{
    Dispatch, ItemStream, LocalService, Operation, Protocol, ResponseStream, StreamingOperation,
    UnaryOperation,
};
pub use spec::{Bindings, ErrorDef, OperationKind, OperationSpec, ServiceSpec, Visibility};
pub use tokio::time::Instant;
pub use tokio_util::sync::CancellationToken;

pub use alknet_macros::{alk_service, alk_type};

pub use arc_swap;
pub use ed25519_dalek;
pub use futures;
#[cfg(feature = "irpc")]
pub use irpc;
pub use schemars;
pub use serde;
pub use serde_json;

/// The names a service crate needs: `use alknet_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::{
        CallError, Caller, Identity, ItemStream, Json, OperationContext, OperationEnv,
        ResourceGrant, ResponseEnvelope, alk_service, alk_type,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

/// What generated code uses. Not a public API: it changes with the macro.
#[doc(hidden)]
pub mod __private {
    pub use crate::service::{AuthorityDecl, ErrorDecl, Local, OperationDecl, ServiceDecl};

    /// Keeps the irpc items generated code emits when the runtime has its `irpc` feature.
    #[cfg(feature = "irpc")]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __irpc_items {
        ($($item:item)*) => { $($item)* };
    }

    /// Drops the irpc items generated code emits: the runtime was built without `irpc`.
    #[cfg(not(feature = "irpc"))]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __irpc_items {
        ($($item:item)*) => {};
    }

    pub use crate::__irpc_items as irpc_items;
    pub use futures::future::BoxFuture;
    pub use futures::{FutureExt, StreamExt};
    pub use serde_json::Value;

    use crate::CallError;

    /// What every type in an operation's request, output, items or error details must be.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot travel in an alknet operation: it must implement Serialize, Deserialize, JsonSchema and Debug, and be Send + Sync + 'static",
        label = "used in an operation here",
        note = "put `#[alk_type]` and `#[derive(Debug, Clone)]` on `{Self}`"
    )]
    pub trait WireType:
        serde::Serialize
        + serde::de::DeserializeOwned
        + schemars::JsonSchema
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
    {
    }

    impl<T> WireType for T where
        T: serde::Serialize
            + serde::de::DeserializeOwned
            + schemars::JsonSchema
            + std::fmt::Debug
            + Send
            + Sync
            + 'static
    {
    }

    /// Names `T` where the macro wants an error to point if `T` is not a [`WireType`].
    pub fn assert_wire_type<T: WireType>() {}

    /// The JSON Schema (2020-12) of `T`, self-contained.
    pub fn schema_of<T: schemars::JsonSchema>() -> Value {
        schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<T>()
            .into()
    }

    /// Decode a request; a mismatch is `INVALID_INPUT` naming the field.
    pub fn decode<T: serde::de::DeserializeOwned>(
        operation: &str,
        input: Value,
    ) -> Result<T, CallError> {
        // Tracking the path costs more than decoding, so it runs only to explain a failure.
        T::deserialize(&input).map_err(|_| match serde_path_to_error::deserialize::<_, T>(&input) {
            Ok(_) => CallError::invalid_input(format!("invalid input for `{operation}`")),
            Err(err) => invalid_input(operation, err),
        })
    }

    /// Decode a request whose type is a struct: only a JSON object will do.
    pub fn decode_object<T: serde::de::DeserializeOwned>(
        operation: &str,
        input: Value,
    ) -> Result<T, CallError> {
        if !input.is_object() {
            return Err(CallError::invalid_input(format!(
                "invalid input for `{operation}`: expected a JSON object with the operation's fields"
            )));
        }
        decode(operation, input)
    }

    fn invalid_input(
        operation: &str,
        err: serde_path_to_error::Error<serde_json::Error>,
    ) -> CallError {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let message = format!("invalid input for `{operation}`: {inner}");
        // serde names a missing field in its message but leaves the path at its parent.
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field);
        let field = match (path.as_str(), missing) {
            (".", Some(field)) => field.to_string(),
            (".", None) => return CallError::invalid_input(message),
            (parent, Some(field)) => format!("{parent}.{field}"),
            (path, None) => path.to_string(),
        };
        let message = match missing {
            Some(_) => message,
            None => format!("invalid input for `{operation}` at `{field}`: {inner}"),
        };
        CallError::invalid_input(message).with_details(serde_json::json!({ "field": field }))
    }

    /// Encode an output or item.
    pub fn encode<T: serde::Serialize>(output: T) -> Result<Value, CallError> {
        serde_json::to_value(output).map_err(|e| {
            CallError::internal(format!("the output could not be encoded as JSON: {e}"))
        })
    }

    /// The future of an operation served through the wrong kind of call; the runtime
    /// checks the kind first, so this only answers a misbehaving dispatcher.
    pub fn wrong_kind<'a, T: Send + 'a>(
        operation: &'static str,
    ) -> BoxFuture<'a, Result<T, CallError>> {
        Box::pin(futures::future::ready(Err(
            CallError::invalid_operation_type(format!(
                "`{operation}` was dispatched as the wrong kind of call"
            )),
        )))
    }
}
