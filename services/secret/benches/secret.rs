//! `sign` and `encrypt` through `OperationEnv`, each against the raw call a user would
//! make instead: an `ed25519-dalek` signature, and XChaCha20-Poly1305 with a fresh nonce.
//!
//! Run with `cargo bench -p alknet-secret --bench secret`; the ratios are printed at the end.

use std::hint::black_box;
use std::num::NonZeroU32;

use alknet_runtime::config::SecretSettings;
use alknet_runtime::{Binary, Caller, Identity, OperationEnv};
use alknet_secret::{SecretClient, SecretProtocol, SecretService};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{Criterion, criterion_group};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;

#[path = "../../../alknet-runtime/benches/support/mod.rs"]
mod support;

const GROUP: &str = "secret";
const PATH: &str = "m/44'/1234'/0'";

fn secret(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = SecretSettings {
        file: Some(dir.path().join("secret.json")),
        kdf_memory_kib: NonZeroU32::new(1024),
        kdf_target_ms: Some(0),
        ..SecretSettings::default()
    };
    let env = OperationEnv::builder()
        .local(SecretProtocol::local(
            SecretService::open(&settings).unwrap(),
        ))
        .build()
        .unwrap();
    let env = env.with_caller(
        Caller::new().identity(Identity::new("svc:bench").with_scopes(["secret:admin"])),
    );
    let client = SecretClient::new(env.clone());
    runtime
        .block_on(client.init("correct horse battery staple".into(), None))
        .unwrap();

    let message = vec![0x5a_u8; 64];
    let signing_key = SigningKey::from_bytes(&[7; 32]);
    let sign_input = json!({ "path": PATH, "message": STANDARD.encode(&message) });
    let plaintext = vec![0xa5_u8; 1024];
    let aad = b"row 1".to_vec();
    let aead = XChaCha20Poly1305::new(&[9; 32].into());
    let encrypt_input = json!({
        "key_name": "notes",
        "plaintext": STANDARD.encode(&plaintext),
        "aad": STANDARD.encode(&aad),
    });
    // The first call derives and caches the path's key and the name's version key.
    runtime.block_on(async {
        client
            .sign(PATH.into(), Binary(message.clone()))
            .await
            .unwrap();
        client
            .encrypt(
                "notes".into(),
                Binary(plaintext.clone()),
                Binary(aad.clone()),
            )
            .await
            .unwrap();
    });

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("sign_typed", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                client
                    .sign(PATH.into(), Binary(black_box(&message).clone()))
                    .await
                    .unwrap(),
            )
        })
    });
    group.bench_function("sign_json", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                env.invoke("secret", "sign", black_box(&sign_input).clone())
                    .await,
            )
        })
    });
    group.bench_function("sign_raw", |b| {
        b.iter(|| black_box(signing_key.sign(black_box(&message))))
    });
    group.bench_function("encrypt_1kib_typed", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                client
                    .encrypt(
                        "notes".into(),
                        Binary(black_box(&plaintext).clone()),
                        Binary(aad.clone()),
                    )
                    .await
                    .unwrap(),
            )
        })
    });
    group.bench_function("encrypt_1kib_json", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                env.invoke("secret", "encrypt", black_box(&encrypt_input).clone())
                    .await,
            )
        })
    });
    group.bench_function("encrypt_1kib_raw", |b| {
        b.iter(|| {
            let payload = Payload {
                msg: black_box(&plaintext),
                aad: &aad,
            };
            black_box(aead.encrypt(&XNonce::generate(), payload).unwrap())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = secret
}

fn main() {
    benches();
    Criterion::default().final_summary();
    let target = Some(("<= 1.5x", 1.5));
    support::report(GROUP, "sign_typed", "sign_raw", target);
    support::report(GROUP, "sign_json", "sign_raw", None);
    support::report(GROUP, "encrypt_1kib_typed", "encrypt_1kib_raw", target);
    support::report(GROUP, "encrypt_1kib_json", "encrypt_1kib_raw", None);
}
