//! Parity: every external operation of the example service, called through every adapter
//! by the same caller, gives the same output and the same error codes as a local call.
//! Driven by the specs: an operation without cases fails the test.
//!
//! Each case runs as three callers — anonymous, a reader without `echo:admin`, and an
//! admin — so access control is compared too (`echo/served`: `UNAUTHENTICATED`,
//! `FORBIDDEN`, then its output). A driver runs only the callers its transport can
//! present: DNS carries no credentials (anonymous only). The call protocol presents the
//! anonymous caller as a peer whose key the node does not know, calling without a token.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alknet::NodeBuilder;
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::call::CallOptions;
use alknet_runtime::futures::StreamExt;
use alknet_runtime::futures::future::BoxFuture;
use alknet_runtime::{
    Admission, Admit, Admitting, CallError, Caller, Credential, DispatchPath, OperationContext,
    OperationEnv, ValueStream,
};
use alknet_tests::adapters::{
    ADMIN, READER, Served, base64url, dig, mcp_session, node_builder, serve,
};
use serde_json::{Value, json};

/// What one call came to, as every adapter can say it.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Output(Value),
    Items(Vec<Value>),
    Error(String),
    /// The adapter does not serve the operation (its binding is absent).
    NotServed,
}

impl Outcome {
    /// What a query or mutation came to, where the driver has it as a `Result`.
    fn of_output(result: Result<Value, CallError>) -> Outcome {
        match result {
            Ok(output) => Outcome::Output(output),
            Err(err) => Outcome::Error(err.code.to_string()),
        }
    }

    /// What a subscription came to, from its items as a stream gave them.
    fn of_items(items: Vec<Result<Value, CallError>>) -> Outcome {
        match items.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(items) => Outcome::Items(items),
            Err(err) => Outcome::Error(err.code.to_string()),
        }
    }
}

/// One call of one operation.
struct Case {
    operation: &'static str,
    input: Value,
}

fn cases() -> Vec<Case> {
    let case = |operation, input| Case { operation, input };
    vec![
        case("say", json!({"text": "hi"})),
        case("say", json!({"text": 42})),
        case("say", json!({})),
        case("shout", json!({"text": "hi"})),
        case("shout", json!({"text": " "})),
        case("served", json!({})),
        case("ticks", json!({"count": 2})),
        case("ticks", json!({"count": "x"})),
        case("blobs", json!({"count": 2, "size": 3})),
        case("blobs", json!({"count": 1, "size": 4_194_305})),
    ]
}

/// A fresh node serving `echo`, and what its admission step has seen (none here).
fn echo_node() -> (NodeBuilder, Option<Arc<AtomicUsize>>) {
    let node = node_builder("").local(EchoProtocol::local(EchoService::default()));
    (node, None)
}

/// `echo` as a third party could serve it through the public API alone: along a dispatch
/// path of this crate's own (a relay to another env, as a gateway would), behind an
/// admission step of its own (an audit count).
fn relayed_node() -> (NodeBuilder, Option<Arc<AtomicUsize>>) {
    let inner = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap();
    let spec = EchoProtocol::local(EchoService::default()).spec().clone();
    let admitted = Arc::new(AtomicUsize::new(0));
    let node = node_builder("")
        .mount(spec, Relay(inner))
        .admission(Audit(admitted.clone()));
    (node, Some(admitted))
}

/// Serves a namespace by calling the same operation of another env as the same caller.
struct Relay(OperationEnv);

impl Relay {
    fn target(&self, ctx: &OperationContext) -> (OperationEnv, String, String) {
        let mut caller = Caller::new();
        if let Some(identity) = ctx.identity() {
            caller = caller.identity(identity.clone());
        }
        let op = ctx.operation();
        (
            self.0.with_caller(caller),
            op.namespace.clone(),
            op.name.clone(),
        )
    }
}

impl DispatchPath for Relay {
    fn invoke(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        let (env, namespace, operation) = self.target(&ctx);
        Box::pin(async move { env.invoke(&namespace, &operation, input).await.result })
    }

    fn subscribe(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>> {
        let (env, namespace, operation) = self.target(&ctx);
        Box::pin(async move { Ok(env.subscribe(&namespace, &operation, input).await.boxed()) })
    }
}

/// Counts the outside calls it admits.
struct Audit(Arc<AtomicUsize>);

impl Admission for Audit {
    fn admit(&self, _call: &Admitting<'_>) -> Result<Admit, CallError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Admit::Here)
    }
}

/// Who makes the calls.
#[derive(Debug, Clone, Copy)]
enum As {
    Anonymous,
    Reader,
    Admin,
}

impl As {
    /// The bearer token the caller presents, if any.
    fn token(self) -> Option<&'static str> {
        match self {
            As::Anonymous => None,
            As::Reader => Some(READER),
            As::Admin => Some(ADMIN),
        }
    }
}

const CALLERS: [As; 3] = [As::Anonymous, As::Reader, As::Admin];

/// The drivers, in the order their outcomes are compared against the first.
#[derive(Debug, Clone, Copy)]
enum Driver {
    Local,
    Http,
    Mcp,
    Dns,
    CallProtocol,
}

const DRIVERS: [Driver; 5] = [
    Driver::Local,
    Driver::Http,
    Driver::Mcp,
    Driver::Dns,
    Driver::CallProtocol,
];

impl Driver {
    /// Whether the driver's transport can present `caller`.
    fn presents(self, caller: As) -> bool {
        match self {
            Driver::Dns => matches!(caller, As::Anonymous),
            Driver::Local | Driver::Http | Driver::Mcp | Driver::CallProtocol => true,
        }
    }
}

async fn run(driver: Driver, caller: As, node: &Served, cases: &[Case]) -> Vec<Outcome> {
    let env = &node.env;
    match driver {
        Driver::Local => {
            let mut with_caller = Caller::new();
            if let Some(token) = caller.token() {
                let identity = node
                    .identities
                    .resolve(Credential::bearer(token))
                    .await
                    .unwrap();
                with_caller = with_caller.identity(identity);
            }
            let env = env.with_caller(with_caller);
            let mut outcomes = Vec::new();
            for case in cases {
                let spec = env.spec("echo", case.operation).unwrap();
                outcomes.push(if spec.is_subscription() {
                    let items = env.subscribe("echo", case.operation, case.input.clone());
                    Outcome::of_items(items.await.collect().await)
                } else {
                    let reply = env.invoke("echo", case.operation, case.input.clone());
                    Outcome::of_output(reply.await.result)
                });
            }
            outcomes
        }
        Driver::Http => {
            let base = node.http;
            let client = reqwest::Client::new();
            let mut outcomes = Vec::new();
            for case in cases {
                let mut request = client
                    .post(format!(
                        "http://{base}{}",
                        env.spec("echo", case.operation)
                            .unwrap()
                            .bindings()
                            .http_path
                    ))
                    .json(&case.input);
                if let Some(token) = caller.token() {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let sse = response
                    .headers()
                    .get("content-type")
                    .is_some_and(|t| t == "text/event-stream");
                let text = response.text().await.unwrap();
                outcomes.push(if sse {
                    let data: Vec<Value> = text
                        .lines()
                        .filter_map(|line| line.strip_prefix("data: "))
                        .map(|data| serde_json::from_str(data).unwrap())
                        .collect();
                    // The last event is `completed`.
                    Outcome::Items(data[..data.len() - 1].to_vec())
                } else if status.is_success() {
                    Outcome::Output(serde_json::from_str(&text).unwrap())
                } else {
                    let body: Value = serde_json::from_str(&text).unwrap();
                    Outcome::Error(body["error"]["code"].as_str().unwrap().to_string())
                });
            }
            outcomes
        }
        Driver::Mcp => {
            let base = node.http;
            let served: Vec<&Case> = cases
                .iter()
                .filter(|c| {
                    env.spec("echo", c.operation)
                        .unwrap()
                        .bindings()
                        .mcp_tool
                        .is_some()
                })
                .collect();
            let calls: Vec<Value> = served
                .iter()
                .map(|c| json!({"name": env.spec("echo", c.operation).unwrap().bindings().mcp_tool, "arguments": c.input}))
                .collect();
            let session = mcp_session(
                &["--http", &format!("http://{base}/mcp")],
                caller.token(),
                &json!(calls),
            )
            .await;
            let mut results = session["results"].as_array().unwrap().iter();
            cases
                .iter()
                .map(|case| {
                    let spec = env.spec("echo", case.operation).unwrap();
                    if spec.bindings().mcp_tool.is_none() {
                        return Outcome::NotServed;
                    }
                    let result = results.next().unwrap();
                    if result["is_error"] == true {
                        return Outcome::Error(
                            result["text"]["error"]["code"]
                                .as_str()
                                .unwrap()
                                .to_string(),
                        );
                    }
                    // The text rendering is the bare output, wrapped or not.
                    Outcome::Output(result["text"].clone())
                })
                .collect()
        }
        Driver::Dns => {
            let server = node.dns;
            let mut outcomes = Vec::new();
            for case in cases {
                let Some(name) = env
                    .spec("echo", case.operation)
                    .unwrap()
                    .bindings()
                    .dns_name
                else {
                    outcomes.push(Outcome::NotServed);
                    continue;
                };
                let empty = case.input.as_object().is_some_and(|o| o.is_empty());
                let name = if empty {
                    format!("{name}.alk.dev")
                } else {
                    format!(
                        "{}.{name}.alk.dev",
                        base64url(case.input.to_string().as_bytes())
                    )
                };
                let answer = dig(server, &name, "TXT", &[]).await;
                let value = answer.json();
                outcomes.push(match value.get("error").and_then(|e| e.get("code")) {
                    Some(code) if answer.status != "NOERROR" => {
                        Outcome::Error(code.as_str().unwrap().to_string())
                    }
                    _ => Outcome::Output(value),
                });
            }
            outcomes
        }
        Driver::CallProtocol => {
            let connection = node.connect_call().await;
            let options = caller.token().map_or_else(CallOptions::new, |token| {
                CallOptions::new().auth_token(token)
            });
            let mut outcomes = Vec::new();
            for case in cases {
                let spec = env.spec("echo", case.operation).unwrap();
                let target = spec.bindings().call_protocol;
                outcomes.push(if spec.is_subscription() {
                    let items = connection.subscribe_with(&target, case.input.clone(), &options);
                    Outcome::of_items(items.await.collect().await)
                } else {
                    let output = connection.call_with(&target, case.input.clone(), &options);
                    Outcome::of_output(output.await)
                });
            }
            connection.close();
            outcomes
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_adapter_agrees_with_a_local_call_for_every_caller() {
    agree(echo_node).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_partys_dispatch_path_and_admission_step_work_on_every_adapter() {
    agree(relayed_node).await;
}

async fn agree(make_node: fn() -> (NodeBuilder, Option<Arc<AtomicUsize>>)) {
    let specs = make_node().0.build().unwrap();
    let specs = specs.env();
    let cases = cases();
    let covered: BTreeSet<&str> = cases.iter().map(|c| c.operation).collect();
    for op in specs.operations().filter(|op| op.is_external()) {
        assert!(
            covered.contains(op.name.as_str()),
            "`{}` has no parity case: add one",
            op.id
        );
    }

    let served = cases.iter().position(|c| c.operation == "served").unwrap();
    let mut served_outcomes = Vec::new();
    for caller in CALLERS {
        let mut all = Vec::new();
        for driver in DRIVERS.into_iter().filter(|d| d.presents(caller)) {
            // A fresh node per run: `echo/served` answers how many calls it has served.
            let (node, admitted) = make_node();
            let node = serve(node).await;
            all.push((driver, run(driver, caller, &node, &cases).await));
            if let Some(admitted) = admitted {
                assert!(
                    admitted.load(Ordering::SeqCst) > 0,
                    "{driver:?} as {caller:?}: the admission step saw no call"
                );
            }
        }
        let (_, local) = &all[0];
        assert!(local.iter().any(|o| matches!(o, Outcome::Output(_))));
        assert!(local.iter().any(|o| matches!(o, Outcome::Error(_))));
        served_outcomes.push(local[served].clone());
        for (driver, outcomes) in &all[1..] {
            let mut compared = 0;
            for ((case, expected), got) in cases.iter().zip(local).zip(outcomes) {
                if *got == Outcome::NotServed {
                    continue;
                }
                compared += 1;
                assert_eq!(
                    got, expected,
                    "{driver:?} as {caller:?}: echo/{} with {}",
                    case.operation, case.input
                );
            }
            assert!(
                compared >= 6,
                "{driver:?} as {caller:?} served only {compared} cases"
            );
        }
    }
    // Access control is part of what the drivers agree on.
    assert_eq!(
        served_outcomes[..2],
        [
            Outcome::Error("UNAUTHENTICATED".into()),
            Outcome::Error("FORBIDDEN".into())
        ]
    );
    assert!(matches!(served_outcomes[2], Outcome::Output(_)));
}
