//! An authenticated call against an anonymous one on the local path, while the
//! configuration is reloaded in a loop beside them.
//!
//! Run with `cargo bench -p alknet-runtime --bench identity`; the ratios are printed at the end.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::config::{ConfigServiceImpl, ReloadPart};
use alknet_runtime::credentials::{api_key_hash, new_api_key};
use alknet_runtime::{Caller, ConfigIdentityProvider, Credential, OperationEnv};
use criterion::{Criterion, criterion_group};
use serde_json::json;

mod support;

const GROUP: &str = "identity";

/// Two versions of the file, both valid for the key, so every reload swaps.
fn config_text(key: &str, burst: u32) -> String {
    format!(
        "[[api_keys]]\nid = \"bench\"\nhash = \"{}\"\nidentity = \"svc:bench\"\nscopes = [\"echo:admin\"]\n\n\
         [rate_limits]\nper_identity = {{ per_second = 100, burst = {burst} }}\n",
        api_key_hash(key)
    )
}

fn identity(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = new_api_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config_text(&key, 1)).unwrap();
    let config = Arc::new(ConfigServiceImpl::from_file(&path).unwrap());
    let provider = ConfigIdentityProvider::new(config.shared());
    let env = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap();
    let input = json!({ "text": "hello, alknet" });

    // Reloads beside the calls: read, parse, validate and swap, every millisecond.
    let stop = Arc::new(AtomicBool::new(false));
    let reloads = Arc::new(AtomicU64::new(0));
    let reloader = std::thread::spawn({
        let (config, stop, reloads, key) =
            (config.clone(), stop.clone(), reloads.clone(), key.clone());
        move || {
            let mut burst = 1;
            while !stop.load(Ordering::Relaxed) {
                burst = burst % 100 + 1;
                std::fs::write(&path, config_text(&key, burst)).unwrap();
                let report = config.reload(ReloadPart::All).unwrap();
                assert_eq!(report.changed, ["rate_limits"]);
                reloads.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("anonymous_call", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                env.invoke(black_box("echo"), black_box("say"), input.clone())
                    .await,
            )
        })
    });
    // What an adapter does per request with a bearer API key: resolve it against the live
    // configuration (the MAC of a key verified before, else shape check, SHA-256 and
    // constant-time comparison; expiry), then call as
    // that identity.
    group.bench_function("api_key_call", |b| {
        b.to_async(&runtime).iter(|| async {
            let identity = provider
                .resolve_now(Credential::ApiKey(black_box(&key)))
                .unwrap();
            let caller = env.with_caller(Caller::new().identity(identity));
            black_box(
                caller
                    .invoke(black_box("echo"), black_box("say"), input.clone())
                    .await,
            )
        })
    });
    // What a connection-oriented adapter (call protocol, WebSocket, irpc) does: the
    // identity is resolved once per connection, and each call runs as it.
    let connection = env.with_caller(
        Caller::new().identity(provider.resolve_now(Credential::ApiKey(&key)).unwrap()),
    );
    group.bench_function("connection_call", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                connection
                    .invoke(black_box("echo"), black_box("say"), input.clone())
                    .await,
            )
        })
    });
    group.bench_function("api_key_resolve", |b| {
        b.iter(|| {
            black_box(
                provider
                    .resolve_now(Credential::ApiKey(black_box(&key)))
                    .unwrap(),
            )
        })
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    reloader.join().unwrap();
    println!(
        "reloads beside the benchmark: {} (generation {})",
        reloads.load(Ordering::Relaxed),
        config.snapshot().generation
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = identity
}

fn main() {
    benches();
    Criterion::default().final_summary();
    support::report(
        GROUP,
        "connection_call",
        "anonymous_call",
        Some(("<= 1.1x", 1.1)),
    );
    support::report(
        GROUP,
        "api_key_call",
        "anonymous_call",
        Some(("<= 1.1x", 1.1)),
    );
}
