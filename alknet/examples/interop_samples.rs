//! Writes real payloads for the interop tests (`tests/interop/`): inputs the node accepted
//! and the outputs, items and errors it answered with, and inputs it refused as
//! `INVALID_INPUT` — all from calling the `echo` service on a node assembled in this process.
//!
//! `cargo run -p alknet --example interop_samples -- DIR` writes `DIR/samples.json`: a list
//! of `{service, operation, side, valid, value}` where `side` is `input`, `output`, `item`,
//! `error_details` (with `code`) or `error_body` (the HTTP error body of SPEC §9, with
//! `code`).

use std::path::PathBuf;
use std::process::ExitCode;

use alknet::Node;
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::futures::StreamExt;
use alknet_runtime::{Caller, Identity, OperationEnv, ResponseEnvelope, codes};
use serde_json::{Value, json};

/// What each call sends: (operation, input, caller holds `echo:admin`).
const CALLS: &[(&str, &str, bool)] = &[
    ("say", r#"{"text": "hello"}"#, false),
    ("say", r#"{"text": ""}"#, false),
    ("say", r#"{"text": 42}"#, false),
    ("say", r#"{}"#, false),
    ("shout", r#"{"text": "quiet"}"#, false),
    ("shout", r#"{"text": "   "}"#, false),
    ("ticks", r#"{"count": 3}"#, false),
    ("ticks", r#"{"count": 2, "interval_ms": 1}"#, false),
    ("ticks", r#"{"count": -1}"#, false),
    ("served", r#"{}"#, true),
    ("served", r#"{}"#, false),
    ("nonexistent", r#"{}"#, false),
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("interop_samples: give the directory to write samples.json to");
        return ExitCode::from(2);
    };
    let node = Node::builder(ConfigServiceImpl::embedded())
        .local(EchoProtocol::local(EchoService::default()))
        .build();
    let env = match node {
        Ok(node) => node.env().clone(),
        Err(err) => {
            eprintln!("interop_samples: {err}");
            return ExitCode::FAILURE;
        }
    };
    let admin = env.with_caller(
        Caller::new().identity(Identity::new("user:admin").with_scopes(["echo:admin"])),
    );
    let mut samples = Vec::new();
    for (operation, input, as_admin) in CALLS {
        let input: Value = serde_json::from_str(input).expect("the inputs above are JSON");
        let caller = if *as_admin { &admin } else { &env };
        samples.extend(call(caller, "echo", operation, input).await);
    }
    let path = dir.join("samples.json");
    let text = serde_json::to_string_pretty(&samples).expect("samples serialize");
    if let Err(err) = std::fs::write(&path, text) {
        eprintln!("interop_samples: cannot write `{}`: {err}", path.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn call(env: &OperationEnv, service: &str, operation: &str, input: Value) -> Vec<Value> {
    let sample = |side: &str, valid: bool, value: Value| json!({ "service": service, "operation": operation, "side": side, "valid": valid, "value": value });
    let subscription = env
        .spec(service, operation)
        .is_some_and(|op| op.is_subscription());
    let (request_id, result) = if subscription {
        let mut stream = env.subscribe(service, operation, input.clone()).await;
        let request_id = stream.request_id();
        let mut items = Vec::new();
        let mut failure = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(item) => items.push(item),
                Err(err) => failure = Some(err),
            }
        }
        (request_id, failure.map_or(Ok(items), Err))
    } else {
        let ResponseEnvelope { request_id, result } =
            env.invoke(service, operation, input.clone()).await;
        (request_id, result.map(|output| vec![output]))
    };

    let mut samples = Vec::new();
    match result {
        Ok(values) => {
            samples.push(sample("input", true, input));
            let side = if subscription { "item" } else { "output" };
            samples.extend(values.into_iter().map(|value| sample(side, true, value)));
        }
        Err(err) => {
            if err.code == codes::INVALID_INPUT {
                samples.push(sample("input", false, input));
            } else if !err.is_protocol_error() {
                samples.push(sample("input", true, input));
            }
            if let Some(details) = err.details.clone().filter(|_| !err.is_protocol_error()) {
                let mut details = sample("error_details", true, details);
                details["code"] = json!(err.code);
                samples.push(details);
            }
            // The HTTP error body of SPEC §9.
            let mut error = serde_json::to_value(&err).expect("a CallError serializes");
            error["request_id"] = json!(request_id);
            let mut body = sample("error_body", true, json!({ "error": error }));
            body["code"] = json!(err.code);
            samples.push(body);
        }
    }
    samples
}
