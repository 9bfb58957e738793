//! The call protocol over WebSocket: the same envelopes as text messages, multiplexed by id.

mod support;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{BROWSER_KEY, Socket, browser_node, open_websocket};
use tokio_tungstenite::tungstenite::Message;

async fn send(socket: &mut Socket, event: Value) {
    socket.send(Message::text(event.to_string())).await.unwrap();
}

async fn receive(socket: &mut Socket) -> Value {
    loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn requested(id: &str, operation: &str, input: Value) -> Value {
    json!({"type": "call.requested", "id": id, "payload": {"operationId": operation, "input": input}})
}

async fn call(socket: &mut Socket, id: &str, operation: &str, input: Value) -> Value {
    send(socket, requested(id, operation, input)).await;
    receive(socket).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_calls_subscriptions_errors_and_aborts() {
    let node = browser_node("echo,gate", &[]);
    let mut anonymous = open_websocket(&node, None, None).await.unwrap();
    let refused = call(&mut anonymous, "1", "/echo/served", json!({})).await;
    assert_eq!(refused["type"], "call.error");
    assert_eq!(refused["payload"]["code"], "UNAUTHENTICATED");
    let mut with_token = requested("2", "/echo/say", json!({"text": "hi"}));
    with_token["payload"]["auth_token"] = json!(BROWSER_KEY);
    send(&mut anonymous, with_token).await;
    assert_eq!(
        receive(&mut anonymous).await["payload"]["output"]["length"],
        2
    );

    let mut socket = open_websocket(&node, Some(BROWSER_KEY), None)
        .await
        .unwrap();

    let said = call(&mut socket, "a", "/echo/say", json!({"text": "hi"})).await;
    assert_eq!(
        said,
        json!({"type": "call.responded", "id": "a", "payload": {"output": {"text": "hi", "length": 2}}})
    );

    send(&mut socket, requested("h", "/gate/hang", json!({}))).await;
    send(
        &mut socket,
        requested("t", "/echo/ticks", json!({"count": 2})),
    )
    .await;
    let mut ticks = Vec::new();
    loop {
        let event = receive(&mut socket).await;
        assert_eq!(event["id"], "t", "only the subscription answers: {event}");
        if event["type"] == "call.completed" {
            break;
        }
        ticks.push(event["payload"]["output"]["n"].clone());
    }
    assert_eq!(ticks, [json!(1), json!(2)]);

    let counts = call(&mut socket, "c1", "/gate/counts", json!({})).await;
    assert_eq!(
        counts["payload"]["output"],
        json!({"started": 1, "dropped": 0})
    );
    let duplicate = call(&mut socket, "h", "/echo/say", json!({"text": "x"})).await;
    assert!(
        duplicate["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("already in flight")
    );
    send(
        &mut socket,
        json!({"type": "call.aborted", "id": "h", "payload": {}}),
    )
    .await;
    let mut dropped = json!(null);
    for attempt in 0..100 {
        let counts = call(
            &mut socket,
            &format!("c{}", attempt + 2),
            "/gate/counts",
            json!({}),
        )
        .await;
        dropped = counts["payload"]["output"]["dropped"].clone();
        if dropped == json!(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(dropped, json!(1), "the aborted call was cancelled");

    socket.send(Message::text("{not json")).await.unwrap();
    let error = receive(&mut socket).await;
    assert_eq!(error["type"], "call.error");
    assert_eq!(error["id"], "");
    assert_eq!(error["payload"]["code"], "INVALID_INPUT");
    send(
        &mut socket,
        json!({"type": "call.dance", "id": "d", "payload": {}}),
    )
    .await;
    let error = receive(&mut socket).await;
    assert_eq!(error["id"], "d");
    assert!(
        error["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown event type")
    );
    let still = call(&mut socket, "z", "/echo/say", json!({"text": "still"})).await;
    assert_eq!(still["payload"]["output"]["length"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_with_its_id_and_the_socket_carries_on() {
    let node = browser_node("echo", &["--call", "max_frame_bytes=1024"]);
    let mut socket = open_websocket(&node, Some(BROWSER_KEY), None)
        .await
        .unwrap();

    let refused = call(
        &mut socket,
        "big",
        "/echo/say",
        json!({"text": "x".repeat(1500)}),
    )
    .await;
    assert_eq!(refused["type"], "call.error");
    assert_eq!(refused["id"], "big");
    assert_eq!(refused["payload"]["code"], "RESOURCE_EXHAUSTED");
    assert!(
        refused["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("over the limit of 1024 bytes"),
        "{refused}"
    );

    let said = call(&mut socket, "small", "/echo/say", json!({"text": "hi"})).await;
    assert_eq!(
        said["payload"]["output"],
        json!({"text": "hi", "length": 2})
    );

    // At twice the limit the message is still read and refused by its id.
    let at_twice = requested("twice", "/echo/say", json!({"text": ""}));
    let padding = 2048 - at_twice.to_string().len();
    let at_twice = requested("twice", "/echo/say", json!({"text": "x".repeat(padding)}));
    assert_eq!(at_twice.to_string().len(), 2048);
    let refused = call(
        &mut socket,
        "twice",
        "/echo/say",
        json!({"text": "x".repeat(padding)}),
    )
    .await;
    assert_eq!(refused["id"], "twice");
    assert_eq!(refused["payload"]["code"], "RESOURCE_EXHAUSTED");
    assert_eq!(refused["payload"]["retryable"], false);

    // One byte more is not read to its end: the socket closes with 1009 (message too big),
    // saying why.
    send(
        &mut socket,
        requested("toobig", "/echo/say", json!({"text": "x".repeat(padding)})),
    )
    .await;
    loop {
        match socket.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
                assert!(frame.reason.contains("2049"), "{frame:?}");
                break;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame with 1009, got {other:?}"),
        }
    }
}
