//! The call protocol over loopback QUIC against raw irpc over noq, same payload, same
//! handler: one call at a time, and 64 in flight.
//!
//! Run with `cargo bench -p alknet-runtime --bench call`; the ratios are printed at the end.

use alknet_runtime::call::Connection;
use criterion::{Criterion, criterion_group};
use serde_json::json;

mod irpc_baseline;
#[path = "support/nodes.rs"]
mod nodes;
mod support;

const GROUP: &str = "call_protocol";
const IN_FLIGHT: usize = 64;

fn call_protocol(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_endpoint, connection) = runtime.block_on(nodes::call_protocol_connection());
    let baseline = {
        let _entered = runtime.enter();
        irpc_baseline::over_noq(false)
    };
    let text = "hello, alknet".to_string();

    let call = |connection: Connection, text: String| async move {
        connection
            .call("/echo/say", json!({ "text": text }))
            .await
            .unwrap()
    };
    let rpc = irpc_baseline::say;

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("irpc_sequential", |b| {
        b.to_async(&runtime)
            .iter(|| rpc(baseline.clone(), text.clone()))
    });
    group.bench_function("call_sequential", |b| {
        b.to_async(&runtime)
            .iter(|| call(connection.clone(), text.clone()))
    });
    group.bench_function("irpc_64_in_flight", |b| {
        b.to_async(&runtime).iter(|| {
            futures::future::join_all(
                (0..IN_FLIGHT).map(|_| runtime.spawn(rpc(baseline.clone(), text.clone()))),
            )
        })
    });
    group.bench_function("call_64_in_flight", |b| {
        b.to_async(&runtime).iter(|| {
            futures::future::join_all(
                (0..IN_FLIGHT).map(|_| runtime.spawn(call(connection.clone(), text.clone()))),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = call_protocol
}

fn main() {
    benches();
    Criterion::default().final_summary();
    support::report(
        GROUP,
        "call_sequential",
        "irpc_sequential",
        Some(("<= 1.5x", 1.5)),
    );
    support::report(
        GROUP,
        "call_64_in_flight",
        "irpc_64_in_flight",
        Some(("<= 1.0x (throughput at least irpc's)", 1.0)),
    );
}
