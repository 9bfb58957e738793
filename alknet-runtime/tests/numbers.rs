//! A number crosses any number of hops unchanged: JSON text to `Value` and back, the call
//! protocol's envelopes, and a call that a node passes on to another node over QUIC.
//!
//! Without serde_json's `float_roundtrip`, parsing is off by one unit in the last place for
//! some floats (6.666666666666666e43 came back as 6.666666666666665e43), so every forward
//! or mount could alter a caller's input.

use std::sync::{Arc, OnceLock};

use alknet_runtime::StaticIdentities;
use alknet_runtime::call::{
    CallConfig, CallEndpoint, CallRequested, CallServer, Connection, Event, EventEnvelope,
    NodeIdentity, PeerKey, RemoteNode,
};
use alknet_runtime::prelude::*;
use proptest::prelude::*;
use serde_json::{Number, Value, json};

mod support;

use support::{Relay, RelayProtocol};

/// Every finite float, drawn by its bits so every exponent is as likely as any other.
fn finite_f64() -> impl Strategy<Value = f64> {
    any::<u64>()
        .prop_map(f64::from_bits)
        .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        finite_f64().prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
    ]
}

/// Numbers alone and nested in arrays and objects, among other values.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => number(),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => ".{0,8}".prop_map(Value::String),
        1 => Just(Value::Null),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Equal as values, and written the same (which also tells -0.0 from 0.0).
fn assert_same(after: &Value, before: &Value) -> Result<(), TestCaseError> {
    prop_assert_eq!(after, before);
    prop_assert_eq!(after.to_string(), before.to_string());
    Ok(())
}

/// What each hop does to a value: written as JSON text, read back.
fn text_hop(value: &Value) -> Value {
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

/// A call's input through `call.requested`, and its output back through `call.responded`,
/// as frames.
fn envelope_hop(value: &Value) -> Value {
    let requested = EventEnvelope::new(
        "1",
        Event::Requested(CallRequested {
            operation_id: "/relay/back".into(),
            input: value.clone(),
            auth_token: None,
            forwarded_for: None,
            request_id: None,
            parent_request_id: None,
            deadline: None,
        }),
    );
    let frame = requested.to_frame();
    let Event::Requested(received) = EventEnvelope::decode(&frame[4..]).unwrap().event else {
        panic!("a call.requested decodes as one")
    };
    let responded = EventEnvelope::new(
        "1",
        Event::Responded {
            output: received.input,
        },
    );
    match EventEnvelope::decode(responded.to_json().as_bytes())
        .unwrap()
        .event
    {
        Event::Responded { output } => output,
        other => panic!("a call.responded decoded as {other:?}"),
    }
}

#[test]
fn the_float_that_moved_comes_back_unchanged() {
    let value = json!(6.666666666666666e43);
    assert_eq!(text_hop(&value).to_string(), "6.666666666666666e+43");
    assert_eq!(envelope_hop(&value), value);
}

/// `cases` random cases; a failure is reported, never saved to a file beside the test.
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn a_float_survives_ten_text_hops(f in finite_f64()) {
        let before = json!(f);
        let mut after = before.clone();
        for _ in 0..10 {
            after = text_hop(&after);
        }
        assert_same(&after, &before)?;
        let typed: f64 = serde_json::from_value(after).unwrap();
        prop_assert_eq!(typed.to_bits(), f.to_bits());
    }

    #[test]
    fn nested_values_survive_text_and_envelope_hops(before in value()) {
        let mut after = before.clone();
        for _ in 0..3 {
            after = envelope_hop(&text_hop(&after));
        }
        assert_same(&after, &before)?;
    }
}

/// A node `front` that mounts `back` over the call protocol, and a client of `front`: a
/// value sent to `back.relay/back` crosses two hops each way.
struct TwoHops {
    runtime: tokio::runtime::Runtime,
    client: Connection,
}

fn two_hops() -> &'static TwoHops {
    static NODES: OnceLock<TwoHops> = OnceLock::new();
    NODES.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = runtime.block_on(async {
            let loopback = "127.0.0.1:0".parse().unwrap();
            let allow = |key: &NodeIdentity, who: &str| {
                Arc::new(StaticIdentities::new().with_key(key.fingerprint(), Identity::new(who)))
            };
            let front_key = NodeIdentity::generate().unwrap();
            let client_key = NodeIdentity::generate().unwrap();
            let back_env = OperationEnv::builder()
                .local(RelayProtocol::local(Relay))
                .build()
                .unwrap();
            let back_key = NodeIdentity::generate().unwrap();
            let back = CallEndpoint::bind(loopback, &back_key, CallConfig::default()).unwrap();
            back.serve(CallServer::new(back_env, allow(&front_key, "node:front")));

            let front = CallEndpoint::bind(loopback, &front_key, CallConfig::default()).unwrap();
            let to_back = front
                .connect(
                    back.local_addr(),
                    PeerKey::Pinned(back_key.fingerprint().into()),
                )
                .await
                .unwrap();
            let front_env = OperationEnv::builder()
                .remote("back", RemoteNode::discover(to_back).await.unwrap())
                .build()
                .unwrap();
            front.serve(CallServer::new(
                front_env,
                allow(&client_key, "user:client"),
            ));

            let client = CallEndpoint::bind(loopback, &client_key, CallConfig::default()).unwrap();
            let connection = client
                .connect(
                    front.local_addr(),
                    PeerKey::Pinned(front_key.fingerprint().into()),
                )
                .await
                .unwrap();
            // The endpoints live as long as the test process.
            std::mem::forget((back, front, client));
            connection
        });
        TwoHops { runtime, client }
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn values_survive_a_call_through_a_node_to_another(before in value()) {
        let nodes = two_hops();
        let after = nodes
            .runtime
            .block_on(nodes.client.call("/back/relay/back", json!({ "value": before })))
            .unwrap();
        assert_same(&after, &before)?;
    }
}
