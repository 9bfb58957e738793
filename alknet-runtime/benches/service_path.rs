//! The irpc service path in-process against raw irpc over the same tokio channels.
//!
//! Run with `cargo bench -p alknet-runtime --bench service_path`; the ratios come last.

use std::hint::black_box;

use alknet_example::{EchoProtocol, EchoService, Say};
use alknet_runtime::OperationEnv;
use criterion::{Criterion, criterion_group};
use irpc::channel::oneshot;
use irpc::rpc_requests;
use serde::{Deserialize, Serialize};

mod support;

const GROUP: &str = "service_path_in_process";

#[derive(Debug, Serialize, Deserialize)]
struct RawSay {
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct RawEcho {
    text: String,
    length: u64,
}

/// The same operation as a hand-written irpc protocol.
#[rpc_requests(message = RawMessage, no_spans)]
#[derive(Debug, Serialize, Deserialize)]
enum RawProtocol {
    #[rpc(tx = oneshot::Sender<RawEcho>)]
    Say(RawSay),
}

fn echo(request: RawSay) -> RawEcho {
    let length = request.text.len() as u64;
    RawEcho {
        text: request.text,
        length,
    }
}

/// A raw irpc actor; `concurrent` runs each request on its own task, as alknet's actor must
/// so that a slow request never holds up the others.
fn raw_actor(concurrent: bool) -> irpc::Client<RawProtocol> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RawMessage>(128);
    tokio::spawn(async move {
        while let Some(RawMessage::Say(message)) = rx.recv().await {
            let reply = async move {
                let _ = message.tx.send(echo(message.inner)).await;
            };
            if concurrent {
                tokio::spawn(reply);
            } else {
                reply.await;
            }
        }
    });
    irpc::Client::local(tx)
}

fn service_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (inline, concurrent, env) = runtime.block_on(async {
        let env = OperationEnv::builder()
            .service(EchoProtocol::service(EchoProtocol::spawn(
                EchoService::default(),
            )))
            .build()
            .unwrap();
        (raw_actor(false), raw_actor(true), env)
    });
    let text = "hello, alknet".to_string();

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("raw_irpc_inline_actor", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(inline.rpc(RawSay { text: text.clone() }).await.unwrap()) })
    });
    group.bench_function("raw_irpc_concurrent_actor", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(concurrent.rpc(RawSay { text: text.clone() }).await.unwrap())
        })
    });
    group.bench_function("alknet_service_path", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(env.call(Say { text: text.clone() }).await.unwrap()) })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = service_path
}

fn main() {
    benches();
    Criterion::default().final_summary();
    support::report(
        GROUP,
        "alknet_service_path",
        "raw_irpc_concurrent_actor",
        "<= 1.25x",
        1.25,
    );
    support::report(
        GROUP,
        "alknet_service_path",
        "raw_irpc_inline_actor",
        "<= 1.25x",
        1.25,
    );
}
