//! `alknet call`: any operation, input from an argument or stdin, pretty output.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Instant;

use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::futures::{Stream, StreamExt};
use alknet_runtime::{CallError, Caller, Credential, Identity, OperationEnv};
use serde_json::Value;

use super::{Target, load_config};
use crate::node::NodeBuilder;

pub struct CallRequest {
    /// `namespace/operation`.
    pub operation: String,
    pub input: Value,
    pub target: Target,
    /// The identity a call in this process runs with when no credential is given: none
    /// calls anonymously.
    pub operator: Option<Identity>,
}

pub fn run(
    request: CallRequest,
    assemble: impl FnOnce(ConfigServiceImpl) -> NodeBuilder,
) -> Result<ExitCode, String> {
    let (namespace, operation) = request
        .operation
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| {
            format!(
                "`{}` is not an operation: write `namespace/operation`, such as `echo/say`",
                request.operation
            )
        })?;
    let CallRequest {
        input,
        target,
        operator,
        ..
    } = &request;
    let input = input.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start a tokio runtime: {err}"))?;
    let secret = match (&target.api_key, &target.token) {
        (Some(_), Some(_)) => return Err("give --api-key or --token, not both".to_string()),
        (key, token) => key.as_deref().or(token.as_deref()),
    };
    let operation_id = format!("/{namespace}/{operation}");
    if let Some((address, key)) = target.node.zip(target.node_key.as_ref()) {
        return runtime.block_on(remote::call(address, key, &operation_id, input, secret));
    }
    if let Some(url) = &target.ws {
        return runtime.block_on(websocket::call(url, &operation_id, input, secret));
    }
    if let Some(base) = &target.http {
        return runtime.block_on(http::call(base, namespace, operation, input, secret));
    }
    runtime.block_on(async {
        let config = load_config(target.config.as_deref())?;
        let node = assemble(config)
            .connect()
            .await
            .map_err(|err| err.to_string())?;
        // At most one of the two: both were refused above.
        let credential = (target.api_key.as_deref().map(Credential::ApiKey))
            .or(target.token.as_deref().map(Credential::Token));
        let caller = match credential {
            Some(credential) => Caller::new().identity(
                node.identities()
                    .resolve(credential)
                    .await
                    .map_err(|err| format!("the credential was refused: {}", err.message))?,
            ),
            None => operator
                .clone()
                .map_or_else(Caller::new, |operator| Caller::new().identity(operator)),
        };
        let env = node.env().with_caller(caller);
        call(&env, namespace, operation, input).await
    })
}

async fn call(
    env: &OperationEnv,
    namespace: &str,
    operation: &str,
    input: Value,
) -> Result<ExitCode, String> {
    let started = Instant::now();
    let is_subscription = env
        .spec(namespace, operation)
        .is_some_and(|spec| spec.is_subscription());
    let (request_id, outcome) = if is_subscription {
        let items = env.subscribe(namespace, operation, input).await;
        let request_id = items.request_id();
        (request_id, print_items(items).await)
    } else {
        let reply = env.invoke(namespace, operation, input).await;
        let outcome = reply.result.map(|output| println!("{}", pretty(&output)));
        (reply.request_id, outcome)
    };
    let elapsed_us = started.elapsed().as_micros() as u64;
    match outcome {
        Ok(()) => {
            tracing::debug!(%request_id, operation = %format!("{namespace}/{operation}"), elapsed_us, "call succeeded");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            tracing::debug!(%request_id, operation = %format!("{namespace}/{operation}"), elapsed_us, code = %err.code, "call failed");
            Err(describe(&err))
        }
    }
}

/// `alknet call --node`: the same call, over the call protocol to a running node.
mod remote {
    use std::net::SocketAddr;
    use std::process::ExitCode;

    use alknet_runtime::call::{CallConfig, CallEndpoint, CallOptions, PeerKey};
    use alknet_runtime::quic::NodeIdentity;
    use serde_json::Value;

    use super::{describe, names_a_subscription, pretty, print_items};

    pub async fn call(
        address: SocketAddr,
        key: &str,
        operation_id: &str,
        input: Value,
        secret: Option<&str>,
    ) -> Result<ExitCode, String> {
        let identity = NodeIdentity::generate().map_err(|err| err.message)?;
        let bind: SocketAddr = if address.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|err| format!("{err}"))?;
        let endpoint = CallEndpoint::bind(bind, &identity, CallConfig::default())
            .map_err(|err| err.message)?;
        let connection = endpoint
            .connect(address, PeerKey::Pinned(key.to_string()))
            .await
            .map_err(|err| err.message)?;
        let mut options = CallOptions::new();
        if let Some(secret) = secret {
            options = options.auth_token(secret);
        }
        // The node's own catalog says whether this is a subscription; an operation it does
        // not list is called, and the node answers why not.
        let is_subscription = connection
            .call_with(
                "/services/schema",
                serde_json::json!({ "operationId": operation_id }),
                &options,
            )
            .await
            .is_ok_and(|document| names_a_subscription(&document));
        let outcome = if is_subscription {
            let items = connection
                .subscribe_with(operation_id, input, &options)
                .await;
            print_items(items).await
        } else {
            connection
                .call_with(operation_id, input, &options)
                .await
                .map(|output| println!("{}", pretty(&output)))
        };
        connection.close();
        outcome
            .map(|()| ExitCode::SUCCESS)
            .map_err(|err| describe(&err))
    }
}

/// `alknet call --ws`: the same call, as call-protocol envelopes on a WebSocket.
mod websocket {
    use std::process::ExitCode;

    use alknet_runtime::call::{CallRequested, Event, EventEnvelope};
    use alknet_runtime::futures::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio_tungstenite::tungstenite::Message;

    use super::{describe, names_a_subscription, pretty};

    type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    pub async fn call(
        url: &str,
        operation_id: &str,
        input: Value,
        secret: Option<&str>,
    ) -> Result<ExitCode, String> {
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|err| format!("cannot open a WebSocket to {url}: {err}"))?;
        let request = |operation_id: &str, input| CallRequested {
            operation_id: operation_id.to_string(),
            input,
            auth_token: secret.map(str::to_string),
            forwarded_for: None,
            request_id: None,
            parent_request_id: None,
            deadline: None,
        };
        // The node's own catalog says whether this is a subscription, as over QUIC.
        let schema = request("/services/schema", json!({ "operationId": operation_id }));
        send(&mut socket, "schema", schema).await?;
        let is_subscription = match next(&mut socket, url).await? {
            Event::Responded { output } => names_a_subscription(&output),
            _ => false,
        };
        send(&mut socket, "call", request(operation_id, input)).await?;
        loop {
            match next(&mut socket, url).await? {
                Event::Responded { output } => {
                    println!("{}", pretty(&output));
                    if !is_subscription {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Event::Completed => return Ok(ExitCode::SUCCESS),
                Event::Error(err) => return Err(describe(&err)),
                other => {
                    return Err(format!(
                        "the node sent `{}`, which a caller never receives",
                        other.type_name()
                    ));
                }
            }
        }
    }

    async fn send(socket: &mut Socket, id: &str, request: CallRequested) -> Result<(), String> {
        let envelope = EventEnvelope::new(id, Event::Requested(request));
        socket
            .send(Message::text(envelope.to_json()))
            .await
            .map_err(|err| format!("the WebSocket failed: {err}"))
    }

    /// The next event the node sends; this client has one call in flight at a time.
    async fn next(socket: &mut Socket, url: &str) -> Result<Event, String> {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return EventEnvelope::decode(text.as_bytes())
                        .map(|envelope| envelope.event)
                        .map_err(|err| {
                            format!("the node sent an event this client cannot read: {err}")
                        });
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(format!("{url} closed the socket before answering"));
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(format!("the WebSocket to {url} failed: {err}")),
            }
        }
    }
}

/// `alknet call --http`: the same call, to a running node's HTTP adapter.
mod http {
    use std::process::ExitCode;

    use alknet_runtime::CallError;
    use alknet_runtime::futures::StreamExt;
    use alknet_runtime::serde::Deserialize;
    use serde_json::Value;

    use super::pretty;

    pub async fn call(
        base: &str,
        namespace: &str,
        operation: &str,
        input: Value,
        secret: Option<&str>,
    ) -> Result<ExitCode, String> {
        let url = format!("{}/v1/{namespace}/{operation}", base.trim_end_matches('/'));
        let mut request = reqwest::Client::new().post(&url).json(&input);
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        let response = request
            .send()
            .await
            .map_err(|err| format!("cannot reach {url}: {err}"))?;
        let streams = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|kind| kind.as_bytes().starts_with(b"text/event-stream"));
        if !streams {
            let status = response.status();
            let body: Value = response
                .json()
                .await
                .map_err(|err| format!("{url} answered {status} without a JSON body: {err}"))?;
            return if status.is_success() {
                println!("{}", pretty(&body));
                Ok(ExitCode::SUCCESS)
            } else {
                Err(describe(&body))
            };
        }
        // Server-Sent Events: an item per event, then `completed`, or an `error` event.
        let mut bytes = response.bytes_stream();
        let mut pending = String::new();
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|err| format!("the event stream from {url} broke: {err}"))?;
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                let mut kind = "message";
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        kind = name.trim();
                    } else if let Some(text) = line.strip_prefix("data:") {
                        data.push_str(text.trim_start());
                    }
                }
                let data: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                match kind {
                    "completed" => return Ok(ExitCode::SUCCESS),
                    "error" => return Err(describe(&data)),
                    _ => println!("{}", pretty(&data)),
                }
            }
        }
        Err(format!(
            "the event stream from {url} ended before `completed`"
        ))
    }

    /// The adapter's error body, `{"error": {code, message, retryable, details, request_id}}`,
    /// as one sentence.
    fn describe(body: &Value) -> String {
        match CallError::deserialize(&body["error"]) {
            Ok(err) => super::describe(&err),
            Err(_) => format!("the node answered an error this client cannot read: {body}"),
        }
    }
}

/// Print a subscription's items as they arrive, up to the first error.
async fn print_items(
    mut items: impl Stream<Item = Result<Value, CallError>> + Unpin,
) -> Result<(), CallError> {
    while let Some(item) = items.next().await {
        println!("{}", pretty(&item?));
    }
    Ok(())
}

/// Whether the service document `services/schema` answers for one operation makes it a
/// subscription.
fn names_a_subscription(document: &Value) -> bool {
    document["operations"]
        .as_object()
        .is_some_and(|operations| operations.values().any(|op| op["kind"] == "subscription"))
}

fn describe(err: &CallError) -> String {
    match &err.details {
        Some(details) => format!("{}: {} (details: {details})", err.code, err.message),
        None => format!("{}: {}", err.code, err.message),
    }
}

/// The input: the argument (`-` reads stdin), else stdin when it is not a terminal, else `{}`.
pub fn read_input(argument: Option<&str>) -> Result<Value, String> {
    let text = match argument {
        Some("-") => read_stdin()?,
        Some(text) => text.to_string(),
        None if !std::io::stdin().is_terminal() => read_stdin()?,
        None => return Ok(Value::Object(Default::default())),
    };
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(&text).map_err(|err| format!("the input is not JSON: {err}"))
}

fn read_stdin() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|err| format!("cannot read the input from stdin: {err}"))?;
    Ok(text)
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
