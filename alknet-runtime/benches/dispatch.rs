//! The local path against a direct handler call and a hand-written JSON registry.
//!
//! Run with `cargo bench -p alknet-runtime`; the ratios are printed at the end.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use alknet_example::{Echo, EchoHandler, EchoProtocol, EchoService, Say};
use alknet_runtime::futures::future::BoxFuture;
use alknet_runtime::{OperationContext, OperationEnv};
use criterion::{Criterion, criterion_group};
use serde_json::{Value, json};

mod support;

const GROUP: &str = "local_dispatch";

type JsonHandler = Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// What a careful author would write by hand: a two-level map of boxed JSON handlers that
/// decode, call the same handler, and encode.
fn hand_written_registry(
    service: Arc<EchoService>,
    ctx: OperationContext,
) -> HashMap<String, HashMap<String, JsonHandler>> {
    let say: JsonHandler = Arc::new(move |input| {
        let service = service.clone();
        let ctx = ctx.clone();
        Box::pin(async move {
            let request: Say = serde_json::from_value(input).map_err(|e| e.to_string())?;
            let output: Echo = service
                .say(&ctx, request)
                .await
                .map_err(|e| e.to_string())?;
            serde_json::to_value(output).map_err(|e| e.to_string())
        })
    });
    HashMap::from([(
        "echo".to_string(),
        HashMap::from([("say".to_string(), say)]),
    )])
}

fn local_dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let service = Arc::new(EchoService::default());
    let env = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap();
    let ctx = env.context("echo", "say").unwrap();
    let registry = hand_written_registry(service.clone(), ctx.clone());
    let text = "hello, alknet".to_string();
    let input = json!({ "text": text });

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("direct_handler_call", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(service.say(&ctx, Say { text: text.clone() }).await.unwrap())
        })
    });
    group.bench_function("typed_local_call", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(env.call(Say { text: text.clone() }).await.unwrap()) })
    });
    group.bench_function("hand_written_json_dispatch", |b| {
        b.to_async(&runtime).iter(|| async {
            let handler = &registry[black_box("echo")][black_box("say")];
            black_box(handler(input.clone()).await.unwrap())
        })
    });
    group.bench_function("json_invoke", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                env.invoke(black_box("echo"), black_box("say"), input.clone())
                    .await,
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = local_dispatch
}

fn main() {
    benches();
    Criterion::default().final_summary();
    support::report(
        GROUP,
        "typed_local_call",
        "direct_handler_call",
        Some(("<= 10x", 10.0)),
    );
    support::report(
        GROUP,
        "json_invoke",
        "hand_written_json_dispatch",
        Some(("<= 1.3x", 1.3)),
    );
    if let Some(typed) = support::median_ns(GROUP, "typed_local_call") {
        let verdict = if typed < 200.0 { "meets" } else { "MISSES" };
        println!("absolute {GROUP}: typed_local_call {typed:.1} ns ({verdict} target < 200 ns)");
    }
}
