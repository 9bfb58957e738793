//! What an env serves can change after it is built: a remote node that serves another
//! catalog when it comes back is mounted anew — its calls, `/openapi.json` and listings
//! follow — and a dispatch path of a user's own can do the same through its `Mount`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::adapters::http::HttpAdapter;
use alknet_runtime::call::{
    CallConfig, CallEndpoint, CallServer, NodeIdentity, PeerKey, RemoteNode,
};
use alknet_runtime::prelude::*;
use alknet_runtime::{
    DispatchPath, Mount, OperationSpec, ServiceSpec, StaticIdentities, ValueStream,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

mod support;

use support::{Relay, RelayProtocol};

/// A node at `address` with `key`, serving `env` to the node `front`.
fn far_node(
    address: SocketAddr,
    key: &NodeIdentity,
    front: &NodeIdentity,
    env: OperationEnv,
) -> CallEndpoint {
    let started = Instant::now();
    let endpoint = loop {
        // The port of the node before is free once its socket is gone.
        match CallEndpoint::bind(address, key, CallConfig::default()) {
            Ok(endpoint) => break endpoint,
            Err(err) if started.elapsed() < Duration::from_secs(5) => {
                let _ = err;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("{}", err.message),
        }
    };
    let allowed =
        StaticIdentities::new().with_key(front.fingerprint(), Identity::new("node:front"));
    endpoint.serve(CallServer::new(env, Arc::new(allowed)));
    endpoint
}

/// Stop `node` and start another in its place, with the same key, serving `env`.
fn restart(
    node: CallEndpoint,
    key: &NodeIdentity,
    front: &NodeIdentity,
    env: OperationEnv,
) -> CallEndpoint {
    let address = node.local_addr();
    node.close();
    drop(node);
    far_node(address, key, front, env)
}

/// Wait up to 5 s for `done`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn openapi_paths(http: SocketAddr) -> Vec<String> {
    let document: Value = reqwest::get(format!("http://{http}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut paths: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    paths.sort();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_node_that_serves_another_catalog_after_a_reconnect_is_mounted_anew() {
    let (far_key, front_key) = (
        NodeIdentity::generate().unwrap(),
        NodeIdentity::generate().unwrap(),
    );
    let far_env = |echo: bool, relay: bool| {
        let mut builder = OperationEnv::builder();
        if echo {
            builder = builder.local(EchoProtocol::local(EchoService::default()));
        }
        if relay {
            builder = builder.local(RelayProtocol::local(Relay));
        }
        builder.build().unwrap()
    };
    let first = far_node(
        "127.0.0.1:0".parse().unwrap(),
        &far_key,
        &front_key,
        far_env(false, true),
    );
    let address = first.local_addr();

    let front = CallEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &front_key,
        CallConfig::default(),
    )
    .unwrap();
    let node = RemoteNode::dial(
        front,
        address,
        PeerKey::Pinned(far_key.fingerprint().into()),
    )
    .await
    .unwrap();
    let env = OperationEnv::builder()
        .remote("far", node.clone())
        .route("relay", "far")
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    tokio::spawn(HttpAdapter::new(env.clone()).serve(listener));

    let relayed = env.invoke("relay", "back", json!({ "value": 1 })).await;
    assert_eq!(relayed.result.unwrap(), json!(1));
    assert!(env.spec("far", "echo/say").is_none());
    assert_eq!(
        openapi_paths(http).await,
        ["/v1/far/relay/back", "/v1/relay/back"]
    );

    // The node comes back serving echo beside relay: no call is needed to learn it.
    let second = restart(first, &far_key, &front_key, far_env(true, true));
    eventually("the new catalog is mounted", || {
        env.latest().spec("far", "echo/say").is_some()
    })
    .await;
    // A view made before keeps what it saw, and its calls still reach the node.
    assert!(env.spec("far", "echo/say").is_none());
    let before = env.invoke("far", "echo/say", json!({ "text": "hi" })).await;
    assert_eq!(before.error_code(), Some("NOT_FOUND"));
    assert_eq!(
        env.invoke("relay", "back", json!({ "value": 2 }))
            .await
            .result
            .unwrap(),
        json!(2)
    );
    let said = env
        .latest()
        .invoke("far", "echo/say", json!({ "text": "hi" }))
        .await;
    assert_eq!(said.result.unwrap()["text"], "hi");
    let said = env
        .with_caller(Caller::new())
        .invoke("far", "echo/say", json!({ "text": "hi" }))
        .await;
    assert_eq!(said.result.unwrap()["length"], 2);
    assert!(node.services().iter().any(|s| s.namespace == "echo"));
    let bindings = env.latest().spec("far", "echo/say").unwrap().bindings();
    assert_eq!(bindings.mcp_tool.as_deref(), Some("far.echo.say"));
    let paths = openapi_paths(http).await;
    assert!(paths.contains(&"/v1/far/echo/say".to_string()), "{paths:?}");
    let listed: Value = reqwest::get(format!("http://{http}/v1/operations"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|op| op["id"] == "far/echo/say"),
        "{listed}"
    );
    let over_http = reqwest::Client::new()
        .post(format!("http://{http}/v1/far/echo/say"))
        .json(&json!({ "text": "there" }))
        .send()
        .await
        .unwrap();
    assert_eq!(over_http.status(), 200);

    // Back again without relay: the routed namespace is still mounted, with nothing in it.
    let _third = restart(second, &far_key, &front_key, far_env(true, false));
    eventually("relay is gone", || {
        env.latest().spec("relay", "back").is_none()
    })
    .await;
    let gone = env
        .latest()
        .invoke("relay", "back", json!({ "value": 1 }))
        .await;
    assert_eq!(gone.error_code(), Some("NOT_FOUND"), "{:?}", gone.result);
    assert!(env.latest().services().any(|s| s.namespace == "relay"));
    let far_echo: Vec<String> = paths
        .into_iter()
        .filter(|path| path.starts_with("/v1/far/echo/"))
        .collect();
    assert_eq!(openapi_paths(http).await, far_echo);
}

/// A path of a user's own whose operations grow: it keeps its `Mount` and answers with
/// the operation's name.
#[derive(Default)]
struct Growing {
    mount: Mutex<Option<Mount>>,
}

fn growing_spec(names: &[&str]) -> ServiceSpec {
    let reference = RelayProtocol::local(Relay).spec().clone();
    let template = &reference.operations[0];
    ServiceSpec {
        namespace: "grow".into(),
        operations: names
            .iter()
            .map(|name| OperationSpec {
                id: format!("grow/{name}"),
                namespace: "grow".into(),
                name: name.to_string(),
                ..template.clone()
            })
            .collect(),
        ..reference
    }
}

impl DispatchPath for Growing {
    fn invoke(
        &self,
        ctx: OperationContext,
        _input: Value,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        let name = ctx.operation().name.clone();
        async move { Ok(json!(name)) }.boxed()
    }

    fn subscribe(
        &self,
        ctx: OperationContext,
        _input: Value,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>> {
        // One item: what a nested call answers, a while after the subscription began.
        let item = async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ctx.env().invoke("grow", "one", Value::Null).await.result
        };
        let items: ValueStream = Box::pin(futures::stream::once(item));
        async move { Ok(items) }.boxed()
    }

    fn mounted(&self, mount: Mount) {
        *self.mount.lock().unwrap() = Some(mount);
    }
}

#[tokio::test]
async fn a_dispatch_path_of_ones_own_changes_its_operations_through_its_mount() {
    let growing = Arc::new(Growing::default());
    let env = OperationEnv::builder()
        .mount_shared(growing_spec(&["one"]), growing.clone())
        .build()
        .unwrap();
    let mount = growing
        .mount
        .lock()
        .unwrap()
        .clone()
        .expect("told where it is mounted");
    assert_eq!(mount.namespace(), "grow");
    assert_eq!(
        env.invoke("grow", "one", Value::Null).await.result.unwrap(),
        "one"
    );
    assert_eq!(
        env.invoke("grow", "two", Value::Null).await.error_code(),
        Some("NOT_FOUND")
    );

    mount.replace(growing_spec(&["one", "two"])).unwrap();
    let caller = env.with_caller(Caller::new());
    assert_eq!(
        caller
            .invoke("grow", "two", Value::Null)
            .await
            .result
            .unwrap(),
        "two"
    );
    assert!(env.spec("grow", "two").is_none());
    assert!(env.latest().spec("grow", "two").is_some());

    let elsewhere = ServiceSpec {
        namespace: "other".into(),
        ..growing_spec(&["one"])
    };
    let refused = mount.replace(elsewhere).unwrap_err().to_string();
    assert!(refused.contains("namespace `other`"), "{refused}");

    drop((env, caller));
    let gone = mount
        .replace(growing_spec(&["one"]))
        .unwrap_err()
        .to_string();
    assert!(gone.contains("env it was mounted in is gone"), "{gone}");
}

/// A subscription that outlives every view of its env still makes nested calls.
#[tokio::test]
async fn a_subscription_kept_after_the_env_is_gone_still_makes_nested_calls() {
    use futures::StreamExt;
    let growing = Arc::new(Growing::default());
    let mut spec = growing_spec(&["one", "later"]);
    spec.calls = vec!["grow/*".into()];
    spec.operations[1].kind = alknet_runtime::OperationKind::Subscription;
    let env = OperationEnv::builder()
        .mount_shared(spec, growing.clone())
        .build()
        .unwrap();
    let mut items = env.subscribe("grow", "later", Value::Null).await;
    drop(env);
    *growing.mount.lock().unwrap() = None;
    assert_eq!(items.next().await.unwrap().unwrap(), "one");
}
