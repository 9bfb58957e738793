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
mod admission;
mod binary;
#[cfg(feature = "call")]
pub mod call;
#[cfg(feature = "http")]
mod client_addr;
#[cfg(feature = "node")]
pub mod config;
#[cfg(feature = "node")]
mod config_identity;
mod context;
#[cfg(feature = "node")]
pub mod credentials;
mod drain;
mod encoding;
mod env;
mod envelope;
mod identity;
mod json;
#[cfg(any(feature = "http", feature = "websocket"))]
pub mod listener;
#[cfg(feature = "node")]
mod policy;
#[cfg(feature = "quic")]
pub mod quic;
#[cfg(feature = "node")]
mod rate_limit;
mod service;
#[cfg(feature = "irpc")]
pub mod service_path;
#[cfg(any(feature = "http", feature = "call"))]
mod slots;
mod spec;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub mod schema;

pub use access::{AccessControl, ResourceRule};
pub use admission::{Admission, Admit, Admitting};
pub use binary::Binary;
#[cfg(feature = "node")]
pub use config_identity::ConfigIdentityProvider;
pub use context::{CallMeta, OperationContext};
pub use drain::Drain;
pub use env::{
    BuildError, Caller, Mount, OperationEnv, OperationEnvBuilder, ServedCall, Subscription,
    TypedEntry,
};
pub use envelope::{CallError, RequestId, ResponseEnvelope, codes};
pub use identity::{
    Credential, Identity, IdentityProvider, KeyHolder, ResourceGrant, StaticIdentities,
    key_fingerprint,
};
pub use json::Json;
#[cfg(feature = "node")]
pub use policy::{NodePolicy, PeerPaths};
#[cfg(feature = "node")]
pub use rate_limit::RateLimiter;
pub use service::{
    Dispatch, DispatchPath, ItemStream, LocalService, Operation, Protocol, ResponseStream,
    StreamingOperation, UnaryOperation, ValueStream,
};
pub use spec::{Bindings, ErrorDef, OperationKind, OperationSpec, ServiceSpec, Visibility};
pub use tokio::time::Instant;
pub use tokio_util::sync::CancellationToken;

pub use alknet_macros::{alk_service, alk_type};

pub use arc_swap;
#[cfg(feature = "node")]
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
        Binary, CallError, Caller, Identity, ItemStream, Json, OperationContext, OperationEnv,
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

    /// Keeps the items (or associated items) of the irpc path between nodes that generated
    /// code emits, when the runtime has both `irpc` and `quic`.
    #[cfg(all(feature = "irpc", feature = "quic"))]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __irpc_remote_items {
        ($($tokens:tt)*) => { $($tokens)* };
    }

    /// Drops the items of the irpc path between nodes: without `quic` the irpc path is
    /// in-process alone, and a service crate builds no QUIC or TLS.
    #[cfg(not(all(feature = "irpc", feature = "quic")))]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __irpc_remote_items {
        ($($tokens:tt)*) => {};
    }

    pub use crate::__irpc_items as irpc_items;
    pub use crate::__irpc_remote_items as irpc_remote_items;
    pub use futures::future::BoxFuture;
    pub use futures::{FutureExt, StreamExt};
    pub use serde_json::Value;

    use crate::CallError;

    /// What `#[alk_type]` gives a type, as the macro checks every type in a request, an
    /// output, an item or error details ([`Checked`]). A type has it when it has a JSON
    /// Schema, the one trait serde's derives do not also name.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot travel in an alknet operation: put `#[alk_type]` and `#[derive(Debug, Clone)]` on it",
        label = "used in an operation here, without `#[alk_type]`",
        note = "`#[alk_type]` derives Serialize, Deserialize and JsonSchema through `alknet_runtime`: the service crate needs no dependency on serde or schemars"
    )]
    pub trait AlkType {
        /// Zero: the length of the array [`Checked`] takes as its proof.
        const PROOF: usize = 0;
    }

    #[diagnostic::do_not_recommend]
    impl<T: schemars::JsonSchema + ?Sized> AlkType for T {}

    /// `T` itself, named by generated code through a check that `T` has [`AlkType`]:
    /// `<T as Checked<[(); <T as AlkType>::PROOF]>>::Type`.
    ///
    /// For a `T` without it, the array length is the one error (with `AlkType`'s message),
    /// and the type becomes an error type, about which rustc reports nothing more: no
    /// serde, `Debug` or `JsonSchema` errors from the code generated around `T`. Every
    /// mention of `T` gives the same error at the same span, which rustc prints once. (A
    /// plain `<T as AlkType>::Type` would not do: the one blanket impl is selected before
    /// its bound is checked, so the projection would still be `T`.)
    pub trait Checked<Proof> {
        /// `Self`.
        type Type: ?Sized;
    }

    impl<T: ?Sized, Proof> Checked<Proof> for T {
        type Type = T;
    }

    /// What the transports of this build need attached to a service of protocol `P`:
    /// with the irpc path over QUIC, its registration
    /// ([`IrpcServing`](crate::service_path::IrpcServing)).
    #[cfg(all(feature = "irpc", feature = "quic"))]
    pub fn with_transports<P: crate::service_path::IrpcProtocol>(
        service: crate::LocalService,
    ) -> crate::LocalService {
        service.with_extension(crate::service_path::IrpcServing::of::<P>())
    }

    /// What the transports of this build need attached to a service: without the irpc
    /// path over QUIC, nothing.
    #[cfg(not(all(feature = "irpc", feature = "quic")))]
    pub fn with_transports<P: crate::Protocol>(
        service: crate::LocalService,
    ) -> crate::LocalService {
        service
    }

    /// A declared domain error with its details, for the generated `XErrors` constructors.
    /// Details that do not encode as JSON (a map with non-string keys) are the handler's
    /// bug: the caller gets `INTERNAL` naming the code, not a panic.
    pub fn domain_error<T: serde::Serialize>(
        code: &'static str,
        message: String,
        details: &T,
    ) -> CallError {
        match serde_json::to_value(details) {
            Ok(details) => CallError::new(code, message).with_details(details),
            Err(err) => CallError::internal(format!(
                "the details of the error `{code}` do not encode as JSON: {err}"
            )),
        }
    }

    /// The JSON Schema (2020-12) of `T`, self-contained, with integer ranges as
    /// `minimum`/`maximum` ([`crate::schema::integer_bounds`]).
    pub fn schema_of<T: schemars::JsonSchema>() -> Value {
        schemars::generate::SchemaSettings::draft2020_12()
            .with_transform(schemars::transform::RecursiveTransform(
                crate::schema::integer_bounds,
            ))
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
    #[inline]
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::__private::domain_error;
    use crate::codes;

    #[test]
    fn a_domain_error_carries_its_details_and_ones_that_do_not_encode_become_internal() {
        let err = domain_error("NAME_TAKEN", "taken".into(), &BTreeMap::from([("id", 3)]));
        assert_eq!(
            (err.code.as_ref(), err.message.as_str()),
            ("NAME_TAKEN", "taken")
        );
        assert_eq!(err.details, Some(serde_json::json!({"id": 3})));

        let keyed_by_pairs = BTreeMap::from([((1, 2), 3)]);
        let err = domain_error("NAME_TAKEN", "taken".into(), &keyed_by_pairs);
        assert_eq!(err.code, codes::INTERNAL);
        assert!(err.message.contains("`NAME_TAKEN`"), "{}", err.message);
    }
}
