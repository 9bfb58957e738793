//! The HTTP adapter against a bare axum handler doing the same JSON work, under a bounded
//! load on loopback: `CLIENTS` concurrent clients (keep-alive connections) each making
//! `REQUESTS` calls of `POST /v1/echo/say` per iteration. Measured batches of the two
//! servers alternate, so drift in the machine's load falls on both alike.
//!
//! Run with `cargo bench -p alknet-runtime --bench http`; the ratio is printed at the end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use alknet_example::{Echo, EchoProtocol, EchoService, Say};
use alknet_runtime::OperationEnv;
use alknet_runtime::adapters::http::HttpAdapter;
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group};

mod support;

const GROUP: &str = "http_adapter";
const CLIENTS: usize = 16;
const REQUESTS: usize = 50;

/// What a careful author would write with axum alone: decode the request, build the echo,
/// encode it — the work the adapter does around the same handler, minus alknet.
async fn bare_say(body: Bytes) -> axum::response::Response {
    match serde_json::from_slice::<Say>(&body) {
        Ok(request) => {
            let length = request.text.len() as u64;
            let echo = Echo {
                text: request.text,
                length,
            };
            let body = serde_json::to_vec(&echo).expect("an echo encodes");
            ([(CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(err) => (StatusCode::UNPROCESSABLE_ENTITY, err.to_string()).into_response(),
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// `CLIENTS` tasks, each making `REQUESTS` calls one after another.
async fn load(client: &reqwest::Client, url: &str) {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let client = client.clone();
            let url = url.to_string();
            tokio::spawn(async move {
                for _ in 0..REQUESTS {
                    let response = client
                        .post(&url)
                        .body(r#"{"text":"hello, alknet"}"#)
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

fn http_adapter(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap();
    let (adapter, bare) = runtime.block_on(async {
        (
            serve(HttpAdapter::new(env).router()).await,
            serve(Router::new().route("/v1/echo/say", post(bare_say))).await,
        )
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();

    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements((CLIENTS * REQUESTS) as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    let urls = [bare, adapter].map(|addr| format!("http://{addr}/v1/echo/say"));
    for (name, measured, other) in [
        ("bare_axum", &urls[0], &urls[1]),
        ("alknet_http_adapter", &urls[1], &urls[0]),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let client = client.clone();
                async move {
                    // Each measured batch is followed by an unmeasured one against the other
                    // server, so both are measured under the same conditions on a shared
                    // machine, whatever else it is doing.
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        load(&client, measured).await;
                        total += start.elapsed();
                        load(&client, other).await;
                    }
                    total
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = http_adapter
}

fn main() {
    benches();
    Criterion::default().final_summary();
    // Time per batch: the adapter may take up to 1/0.85 of the bare handler's time, which
    // is throughput of at least 0.85x.
    support::report(
        GROUP,
        "alknet_http_adapter",
        "bare_axum",
        Some(("throughput >= 0.85x (time <= 1.18x)", 1.0 / 0.85)),
    );
}
