//! Nodes serving `echo` on loopback, for the benchmarks that call it over a transport.

// Each benchmark that includes this file uses the transports it measures.
#![allow(dead_code)]

use std::sync::Arc;

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::call::{CallConfig, CallEndpoint, CallServer, Connection, PeerKey};
use alknet_runtime::quic::{NodeIdentity, QuicConfig};
use alknet_runtime::service_path::{IrpcListener, connect};
use alknet_runtime::{Identity, OperationEnv, StaticIdentities};

/// A node serving `echo` over the call protocol on loopback, and a client's connection to
/// it.
pub async fn call_protocol_connection() -> (CallEndpoint, Connection) {
    let server_identity = NodeIdentity::generate().unwrap();
    let client_identity = NodeIdentity::generate().unwrap();
    let env = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap();
    let identities = StaticIdentities::new()
        .with_key(client_identity.fingerprint(), Identity::new("node:bench"));
    let server = CallEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &server_identity,
        CallConfig::default(),
    )
    .unwrap();
    server.serve(CallServer::new(env, Arc::new(identities)));
    let client = CallEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &client_identity,
        CallConfig::default(),
    )
    .unwrap();
    let connection = client
        .connect(
            server.local_addr(),
            PeerKey::Pinned(server_identity.fingerprint().into()),
        )
        .await
        .unwrap();
    // The endpoints must outlive the benchmark.
    std::mem::forget(server);
    (client, connection)
}

/// A node serving `echo` over an irpc listener, and a node that reaches it.
pub fn over_quic() -> (IrpcListener, OperationEnv) {
    let (server, client) = (
        NodeIdentity::generate().unwrap(),
        NodeIdentity::generate().unwrap(),
    );
    let serving = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap();
    // A cluster node's key: the in-cluster path, whose calls run under the context they carry.
    let peers =
        StaticIdentities::new().with_cluster_key(client.fingerprint(), Identity::new("node:bench"));
    let listener = IrpcListener::builder(serving, Arc::new(peers))
        .serve::<EchoProtocol>()
        .unwrap()
        .bind(
            "127.0.0.1:0".parse().unwrap(),
            &server,
            QuicConfig::default(),
        )
        .unwrap();
    let echo = connect::<EchoProtocol>(
        listener.local_addr(),
        listener.fingerprint(),
        &client,
        &QuicConfig::default(),
    )
    .unwrap();
    let env = OperationEnv::builder()
        .local(EchoProtocol::service(echo))
        .build()
        .unwrap();
    (listener, env)
}
