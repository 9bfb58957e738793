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
use std::ops::Deref;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;

use crate::quic::{NodeIdentity, QuicConfig};
use crate::service_path::{IrpcListener, IrpcProtocol, IrpcService, connect, spawn_service};
use crate::{
    Identity, LocalService, OperationEnv, ResponseEnvelope, StaticIdentities, Subscription,
};

/// A way an [`OperationEnv`] can reach a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchPath {
    /// In-process, no serialization: `.local(..)`.
    Local,
    /// An irpc actor in this process, through tokio channels: `.local(..)`.
    IrpcInProcess,
    /// irpc over a loopback QUIC connection to an [`IrpcListener`], with a cluster node's key.
    IrpcQuic,
}

/// An env that reaches a service on some path, and whatever must live as long as it.
pub struct ServedEnv {
    env: OperationEnv,
    _listener: Option<IrpcListener>,
}

impl Deref for ServedEnv {
    type Target = OperationEnv;

    fn deref(&self) -> &OperationEnv {
        &self.env
    }
}

impl DispatchPath {
    /// Every path, the reference (local) first.
    pub const ALL: [DispatchPath; 3] = [
        DispatchPath::Local,
        DispatchPath::IrpcInProcess,
        DispatchPath::IrpcQuic,
    ];

    /// An env that reaches `service` on this path.
    pub async fn env<P: IrpcProtocol>(self, service: LocalService) -> ServedEnv {
        let builder = OperationEnv::builder();
        let (builder, listener) = match self {
            DispatchPath::Local => (builder.local(service), None),
            DispatchPath::IrpcInProcess => (
                builder.local(IrpcService::new::<P>(spawn_service::<P>(service))),
                None,
            ),
            DispatchPath::IrpcQuic => {
                let (client, listener) = over_quic::<P>(service);
                (builder.local(IrpcService::new::<P>(client)), Some(listener))
            }
        };
        match builder.build() {
            Ok(env) => ServedEnv {
                env,
                _listener: listener,
            },
            Err(err) => panic!("a single service always builds: {err}"),
        }
    }
}

/// `service` behind a listener on loopback that allows exactly one client key, and a
/// client holding that key. The key is a cluster node's, so a call runs as the caller's
/// own identity, as on every other path.
fn over_quic<P: IrpcProtocol>(service: LocalService) -> (irpc::Client<P::Rpc>, IrpcListener) {
    let server = NodeIdentity::generate().expect("a fresh node key");
    let client = NodeIdentity::generate().expect("a fresh node key");
    let peers = StaticIdentities::new()
        .with_cluster_key(client.fingerprint(), Identity::new("node:test-client"));
    let env = OperationEnv::single(service);
    let listener = IrpcListener::builder(env, Arc::new(peers))
        .serve::<P>()
        .and_then(|builder| {
            builder.bind(([127, 0, 0, 1], 0).into(), &server, QuicConfig::default())
        })
        .expect("a loopback irpc listener");
    let connected = connect::<P>(
        listener.local_addr(),
        listener.fingerprint(),
        &client,
        &QuicConfig::default(),
    )
    .expect("an irpc client endpoint");
    (connected, listener)
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
        let served = path.env::<P>(make()).await;
        let seen: Vec<Value> = suite(served.env.clone())
            .await
            .iter()
            .map(without_request_id)
            .collect();
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
