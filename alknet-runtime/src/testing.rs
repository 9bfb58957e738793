//! Run one service's test suite on every dispatch path, and check the paths agree.
//!
//! ```
//! use alknet_example::{EchoProtocol, EchoService};
//! use alknet_runtime::testing::each_path;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! each_path::<EchoProtocol, _, _>(
//!     || EchoProtocol::local(EchoService::default()),
//!     |env| async move { vec![env.invoke("echo", "say", json!({"text": "hi"})).await] },
//! )
//! .await;
//! # }
//! ```

use std::fmt;
use std::future::Future;

use futures::StreamExt;
use serde_json::Value;

use crate::service_path::{IrpcProtocol, IrpcService, spawn_service};
use crate::{LocalService, OperationEnv, ResponseEnvelope, Subscription};

/// A way an [`OperationEnv`] can reach a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchPath {
    /// In-process, no serialization: `.local(..)`.
    Local,
    /// An irpc actor in this process, through tokio channels: `.service(..)`.
    IrpcInProcess,
}

impl DispatchPath {
    /// Every path, the reference (local) first.
    pub const ALL: [DispatchPath; 2] = [DispatchPath::Local, DispatchPath::IrpcInProcess];

    /// An env that reaches `service` on this path.
    pub async fn env<P: IrpcProtocol>(self, service: LocalService) -> OperationEnv {
        let builder = OperationEnv::builder();
        let builder = match self {
            DispatchPath::Local => builder.local(service),
            DispatchPath::IrpcInProcess => {
                builder.service(IrpcService::new::<P>(spawn_service::<P>(service)))
            }
        };
        match builder.build() {
            Ok(env) => env,
            Err(err) => panic!("a single service always builds: {err}"),
        }
    }
}

impl fmt::Display for DispatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Run `suite` once per [`DispatchPath`], each time against a fresh service from `make`,
/// and assert that every path answered with the same envelopes, request ids aside.
///
/// The suite makes its own assertions too; it returns the envelopes it saw, in order
/// (see [`collect`] for subscriptions).
pub async fn each_path<P, Suite, Run>(make: impl Fn() -> LocalService, suite: Suite)
where
    P: IrpcProtocol,
    Suite: Fn(OperationEnv) -> Run,
    Run: Future<Output = Vec<ResponseEnvelope>>,
{
    let mut reference: Option<(DispatchPath, Vec<Value>)> = None;
    for path in DispatchPath::ALL {
        let env = path.env::<P>(make()).await;
        let seen: Vec<Value> = suite(env).await.iter().map(without_request_id).collect();
        match &reference {
            None => reference = Some((path, seen)),
            Some((first, expected)) => {
                assert_eq!(
                    seen.len(),
                    expected.len(),
                    "{path} answered {} times, {first} {}",
                    seen.len(),
                    expected.len()
                );
                for (index, (got, want)) in seen.iter().zip(expected).enumerate() {
                    assert_eq!(got, want, "envelope {index}: {path} differs from {first}");
                }
            }
        }
    }
}

/// A subscription's items as envelopes, so a suite can return them.
pub async fn collect(subscription: Subscription) -> Vec<ResponseEnvelope> {
    let request_id = subscription.request_id();
    subscription
        .map(|result| ResponseEnvelope { request_id, result })
        .collect()
        .await
}

fn without_request_id(envelope: &ResponseEnvelope) -> Value {
    match &envelope.result {
        Ok(output) => serde_json::json!({ "output": output }),
        Err(err) => serde_json::json!({ "error": err }),
    }
}
