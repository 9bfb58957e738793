//! A call keeps its request id, and its parent's, on the node it continues on: forwarded
//! by the node's policy, or made to a mounted remote node — so both nodes' logs name it
//! alike. Two `alknet::Node`s in this process, on loopback, from their configuration files.

use std::net::SocketAddr;

use alknet::{Listeners, NodeBuilder};
use alknet_runtime::call::{CallOptions, NodeIdentity};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::credentials::api_key_hash;
use alknet_runtime::{RequestId, codes};
use alknet_tests::probe::{IdReport, Probe, ProbeProtocol};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::TestNode;
use tokio_tungstenite::tungstenite::Message;

mod support;

/// The API key of `user:ada`, known to the far node.
const ADA: &str = "alk_ada-0123456789abcdef0123456789";

/// The near node's side of a nested call to the far node.
mod relay {
    use alknet_runtime::prelude::*;
    use alknet_runtime::serde_json::json;
    use alknet_tests::probe::IdReport;

    /// What `relay/ids` saw.
    #[alk_type]
    #[derive(Debug, Clone)]
    pub struct Relayed {
        /// Its own request id.
        pub id: String,
        /// The request id its nested call had on this node.
        pub nested_id: String,
        /// What `probe/ids` saw on the node mounted as `far`.
        pub far: IdReport,
    }

    /// Calls the node mounted as `far`.
    #[alk_service(namespace = "relay", version = "1.0.0", calls = ["far/*"])]
    pub enum RelayProtocol {
        /// Calls `probe/ids` there as a nested call.
        #[alk_operation(query, output = Relayed)]
        Ids,
    }

    /// The `relay` service.
    pub struct Relay;

    impl RelayHandler for Relay {
        async fn ids(&self, ctx: &OperationContext, _: Ids) -> Result<Relayed, CallError> {
            let reply = ctx
                .env()
                .invoke("far", "probe/ids", json!({"nest": false}))
                .await;
            let far = alknet_runtime::serde_json::from_value(reply.result?)
                .map_err(|e| CallError::internal(e.to_string()))?;
            Ok(Relayed {
                id: ctx.request_id().to_string(),
                nested_id: reply.request_id.to_string(),
                far,
            })
        }
    }
}

/// A node started from a configuration file in its own directory.
struct Running {
    listeners: Listeners,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Start the node `assemble` builds, over `identity`'s key and the configuration
    /// `sections`; `connect` for a node that mounts another.
    async fn start(
        identity: &NodeIdentity,
        sections: &str,
        connect: bool,
        assemble: impl FnOnce(NodeBuilder) -> NodeBuilder,
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("node.pem");
        std::fs::write(&key, identity.private_key_pem()).unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, format!("[node]\nkey = {key:?}\n{sections}")).unwrap();
        let builder = assemble(
            alknet::Node::builder(ConfigServiceImpl::from_file(&file).unwrap()).without_storage(),
        );
        let node = if connect {
            builder.connect().await.unwrap()
        } else {
            builder.build().unwrap()
        };
        Running {
            listeners: node.start().await.unwrap(),
            _dir: dir,
        }
    }

    fn address(&self, name: &str) -> SocketAddr {
        self.listeners.address(name).unwrap()
    }
}

/// `[[public_keys]]`: `identity` proves itself as `who`, a cluster node or not.
fn key(identity: &NodeIdentity, who: &str, cluster: bool) -> String {
    format!(
        "[[public_keys]]\nfingerprint = \"{}\"\nidentity = \"{who}\"\ncluster = {cluster}\n\n",
        identity.fingerprint()
    )
}

/// The far node: `probe`, over the call protocol (QUIC and WebSocket), believing the
/// cluster nodes `near` and `member` and no one else.
async fn far(
    near: &NodeIdentity,
    member: &TestNode,
    outsider: &TestNode,
) -> (Running, NodeIdentity) {
    let identity = NodeIdentity::generate().unwrap();
    let sections = format!(
        "[listen]\ncall = \"127.0.0.1:0\"\nwebsocket = \"127.0.0.1:0\"\n\n\
         [[api_keys]]\nid = \"ada\"\nhash = \"{}\"\nidentity = \"user:ada\"\n\n{}{}{}",
        api_key_hash(ADA),
        key(near, "node:near", true),
        key(&member.identity, "node:member", true),
        key(&outsider.identity, "user:outsider", false),
    );
    let node = Running::start(&identity, &sections, false, |node| {
        node.local(ProbeProtocol::local(Probe::default()))
    })
    .await;
    (node, identity)
}

/// The near node: `probe` (whose `probe/ids` its policy forwards to the far node) and
/// `relay`, over HTTP, with the far node mounted as `far`.
async fn near(identity: &NodeIdentity, far: &Running, far_identity: &NodeIdentity) -> Running {
    let far_call = far.address("call");
    let sections = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n\n\
         [[peers]]\nname = \"far\"\naddress = \"{far_call}\"\nfingerprint = \"{fingerprint}\"\n\n\
         [[forwarding.rules]]\noperations = \"probe/ids\"\naction = \"forward\"\npeer = \"far\"\n",
        fingerprint = far_identity.fingerprint(),
    );
    Running::start(identity, &sections, true, |node| {
        node.local(ProbeProtocol::local(Probe::default()))
            .local(relay::RelayProtocol::local(relay::Relay))
            .remote("far", far_call, far_identity.fingerprint())
    })
    .await
}

/// POST `body` to `path` on `node`: the call's request id (`x-request-id`) and output.
async fn post(node: &Running, path: &str, body: Value) -> (String, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", node.address("http")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    (id, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_or_mounted_call_runs_on_the_far_node_under_its_request_id_and_parent() {
    let (member, outsider) = (TestNode::new(), TestNode::new());
    let near_identity = NodeIdentity::generate().unwrap();
    let (far, far_identity) = far(&near_identity, &member, &outsider).await;
    let near = near(&near_identity, &far, &far_identity).await;

    // Forwarded by the near node's policy: the far node's handler runs under the id the
    // HTTP caller was answered with, and its own nested call names it as parent.
    let (id, output) = post(&near, "/v1/probe/ids", json!({"nest": true})).await;
    let report: IdReport = serde_json::from_value(output).unwrap();
    assert_eq!(report.id, id, "{report:?}");
    assert_eq!(report.parent, None);
    assert_eq!(report.nested.unwrap().parent.as_deref(), Some(id.as_str()));

    // A nested call to the mounted node: it runs there under the id it has here, with
    // its parent's.
    let (id, output) = post(&near, "/v1/relay/ids", json!({})).await;
    let relayed: relay::Relayed = serde_json::from_value(output).unwrap();
    assert_eq!(relayed.id, id);
    assert_ne!(relayed.nested_id, id);
    assert_eq!(relayed.far.id, relayed.nested_id, "{relayed:?}");
    assert_eq!(relayed.far.parent.as_deref(), Some(id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_cluster_nodes_request_ids_are_believed() {
    let (member, outsider) = (TestNode::new(), TestNode::new());
    let (far, far_identity) = far(&NodeIdentity::generate().unwrap(), &member, &outsider).await;
    let (sent, parent) = (RequestId::next(), RequestId::next());
    let claim = CallOptions::new()
        .request_id(sent)
        .parent_request_id(parent);
    let ids = |value: Value| {
        let report: IdReport = serde_json::from_value(value).unwrap();
        (report.id, report.parent)
    };
    let call = far.address("call");

    // A cluster node's call runs under the ids it sent.
    let to_far = member.connect_to(call, far_identity.fingerprint()).await;
    let seen = ids(to_far
        .call_with("/probe/ids", json!({"nest": false}), &claim)
        .await
        .unwrap());
    assert_eq!(seen, (sent.to_string(), Some(parent.to_string())));
    // Not beside an `auth_token`: the call is the token holder's, an outside caller's.
    let seen = ids(to_far
        .call_with(
            "/probe/ids",
            json!({"nest": false}),
            &claim.clone().auth_token(ADA),
        )
        .await
        .unwrap());
    assert_ne!(seen.0, sent.to_string());
    assert_eq!(seen.1, None);

    // Anyone else's are ignored: the call gets a fresh id and no parent.
    let to_far = outsider.connect_to(call, far_identity.fingerprint()).await;
    let seen = ids(to_far
        .call_with("/probe/ids", json!({"nest": false}), &claim)
        .await
        .unwrap());
    assert_ne!(seen.0, sent.to_string());
    assert_eq!(seen.1, None);

    // Over WebSocket too; and an id that is not one is refused, naming its field.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/call", far.address("websocket")))
            .await
            .unwrap();
    let mut ask = async |payload: Value| {
        let request = json!({"type": "call.requested", "id": "1", "payload": payload});
        socket
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        loop {
            if let Message::Text(text) = socket.next().await.unwrap().unwrap() {
                break serde_json::from_str::<Value>(&text).unwrap();
            }
        }
    };
    let reply = ask(
        json!({"operationId": "/probe/ids", "input": {"nest": false},
        "request_id": sent, "parent_request_id": parent}),
    )
    .await;
    assert_eq!(reply["type"], "call.responded", "{reply}");
    let seen = ids(reply["payload"]["output"].clone());
    assert_ne!(seen.0, sent.to_string());
    assert_eq!(seen.1, None);
    let reply = ask(json!({"operationId": "/probe/ids", "parent_request_id": "x"})).await;
    assert_eq!(reply["type"], "call.error", "{reply}");
    assert_eq!(reply["payload"]["code"], codes::INVALID_INPUT);
    assert_eq!(
        reply["payload"]["message"],
        "the payload of `call.requested` is invalid: `parent_request_id` is `x`, which is not a request id (32 hex digits)"
    );
}
