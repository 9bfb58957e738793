//! The irpc service path against raw irpc, in-process (tokio channels) and over loopback
//! QUIC, calling the same `EchoService::say` handler.
//!
//! Run with `cargo bench -p alknet-runtime --bench service_path`; the ratios come last.

use std::hint::black_box;

use alknet_example::{EchoProtocol, EchoService, Say};
use alknet_runtime::OperationEnv;
use criterion::{Criterion, criterion_group};

mod irpc_baseline;
#[path = "support/nodes.rs"]
mod nodes;
mod support;

const IN_PROCESS: &str = "service_path_in_process";
const QUIC: &str = "service_path_quic";
const IN_FLIGHT: usize = 64;

async fn alknet_say(env: OperationEnv, text: String) {
    black_box(env.call(Say { text }).await.unwrap());
}

fn in_process(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (inline, concurrent, env) = runtime.block_on(async {
        let env = OperationEnv::builder()
            .local(EchoProtocol::service(EchoProtocol::spawn(
                EchoService::default(),
            )))
            .build()
            .unwrap();
        (
            irpc::Client::from(irpc_baseline::actor(false)),
            irpc::Client::from(irpc_baseline::actor(true)),
            env,
        )
    });
    let text = "hello, alknet".to_string();
    let mut group = c.benchmark_group(IN_PROCESS);
    group.bench_function("raw_irpc_inline_actor", |b| {
        b.to_async(&runtime)
            .iter(|| irpc_baseline::say(inline.clone(), text.clone()))
    });
    group.bench_function("raw_irpc_concurrent_actor", |b| {
        b.to_async(&runtime)
            .iter(|| irpc_baseline::say(concurrent.clone(), text.clone()))
    });
    group.bench_function("alknet_service_path", |b| {
        b.to_async(&runtime)
            .iter(|| alknet_say(env.clone(), text.clone()))
    });
    group.finish();
}

fn quic(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (baseline, (_listener, env)) = {
        let _entered = runtime.enter();
        (irpc_baseline::over_noq(false), nodes::over_quic())
    };
    let text = "hello, alknet".to_string();
    let mut group = c.benchmark_group(QUIC);
    group.bench_function("raw_irpc_sequential", |b| {
        b.to_async(&runtime)
            .iter(|| irpc_baseline::say(baseline.clone(), text.clone()))
    });
    group.bench_function("alknet_sequential", |b| {
        b.to_async(&runtime)
            .iter(|| alknet_say(env.clone(), text.clone()))
    });
    group.bench_function("raw_irpc_64_in_flight", |b| {
        b.to_async(&runtime).iter(|| {
            futures::future::join_all(
                (0..IN_FLIGHT)
                    .map(|_| runtime.spawn(irpc_baseline::say(baseline.clone(), text.clone()))),
            )
        })
    });
    group.bench_function("alknet_64_in_flight", |b| {
        b.to_async(&runtime).iter(|| {
            futures::future::join_all(
                (0..IN_FLIGHT).map(|_| runtime.spawn(alknet_say(env.clone(), text.clone()))),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = in_process, quic
}

fn main() {
    benches();
    Criterion::default().final_summary();
    // The target's baseline is the actor that runs requests concurrently, as the service
    // path's actor must and as irpc's own example of such an actor (`examples/compute.rs`)
    // does: a task per request. The inline actor, which a slow request holds up entirely,
    // is the floor of a channel round trip, read for reference.
    support::report(
        IN_PROCESS,
        "alknet_service_path",
        "raw_irpc_concurrent_actor",
        Some(("<= 1.25x", 1.25)),
    );
    support::report(
        IN_PROCESS,
        "alknet_service_path",
        "raw_irpc_inline_actor",
        None,
    );
    support::report(
        QUIC,
        "alknet_sequential",
        "raw_irpc_sequential",
        Some(("<= 1.25x", 1.25)),
    );
    // Time per batch: at most the baseline's is throughput at least equal.
    support::report(
        QUIC,
        "alknet_64_in_flight",
        "raw_irpc_64_in_flight",
        Some(("<= 1.0x (throughput >= 1.0x)", 1.0)),
    );
}
