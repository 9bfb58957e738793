//! The `secret` service on every dispatch path, and its seed file under faults.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alknet_runtime::config::SecretSettings;
use alknet_runtime::testing::each_path;
use alknet_runtime::{Caller, Identity, OperationEnv, ResponseEnvelope, codes};
use alknet_secret::{SecretProtocol, SecretService};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// A valid 24-word BIP-39 mnemonic (all-zero entropy), so every path derives the same keys.
const MNEMONIC: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art";
const PASSPHRASE: &str = "correct horse battery staple";
const BACKOFF_MS: u64 = 50;

/// Cheap Argon2id and a short backoff, so the suite runs in milliseconds.
fn settings(file: &Path) -> SecretSettings {
    SecretSettings {
        file: Some(file.to_path_buf()),
        kdf_memory_kib: NonZeroU32::new(1024),
        kdf_target_ms: Some(0),
        unlock_backoff_ms: NonZeroU64::new(BACKOFF_MS),
        unlock_backoff_max_ms: NonZeroU64::new(10_000),
        ..SecretSettings::default()
    }
}

fn as_caller(env: &OperationEnv, scopes: &[&str]) -> OperationEnv {
    env.with_caller(
        Caller::new().identity(Identity::new("user:ops").with_scopes(scopes.iter().copied())),
    )
}

fn output(envelope: &ResponseEnvelope) -> &Value {
    envelope.result.as_ref().expect("the call failed")
}

fn error_code(envelope: &ResponseEnvelope) -> &str {
    &envelope
        .result
        .as_ref()
        .expect_err("the call succeeded")
        .code
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().unwrap()).unwrap()
}

/// Flip one bit of a base64 ciphertext at `index` (negative: from the end).
fn flipped(ciphertext: &Value, index: isize) -> String {
    let mut bytes = unb64(ciphertext);
    let at = index.rem_euclid(bytes.len() as isize) as usize;
    bytes[at] ^= 0x01;
    b64(&bytes)
}

#[tokio::test]
async fn keeps_derives_signs_and_encrypts_the_same_on_every_path() {
    // Each path gets a fresh seed file; the directories last as long as the test.
    let dirs = Mutex::new(Vec::new());
    let make = || {
        let dir = tempfile::tempdir().unwrap();
        let service = SecretService::open(&settings(&dir.path().join("secret.json"))).unwrap();
        dirs.lock().unwrap().push(dir);
        SecretProtocol::local(service)
    };
    each_path::<SecretProtocol, _, _>(make, |env| async move {
        let mut seen = Vec::new();
        let admin = as_caller(&env, &["secret:admin"]);
        let user = as_caller(&env, &["secret:use"]);

        // Every operation needs a `secret:*` scope.
        let anonymous = env.invoke("secret", "status", json!({})).await;
        assert_eq!(error_code(&anonymous), codes::UNAUTHENTICATED);
        let other = as_caller(&env, &["echo:admin"]);
        let forbidden = other.invoke("secret", "status", json!({})).await;
        assert_eq!(error_code(&forbidden), codes::FORBIDDEN);
        let init_as_user = user
            .invoke("secret", "init", json!({"passphrase": PASSPHRASE}))
            .await;
        assert_eq!(error_code(&init_as_user), codes::FORBIDDEN);
        seen.extend([anonymous, forbidden, init_as_user]);

        // No seed yet: nothing to derive from.
        let status = user.invoke("secret", "status", json!({})).await;
        assert_eq!(output(&status)["state"], "uninitialized");
        let locked = user
            .invoke("secret", "public_key", json!({"path": "m/0'"}))
            .await;
        assert_eq!(error_code(&locked), "LOCKED");
        let short = admin
            .invoke("secret", "init", json!({"passphrase": "short"}))
            .await;
        assert_eq!(error_code(&short), codes::INVALID_INPUT);
        let bad_words = admin
            .invoke(
                "secret",
                "init",
                json!({"passphrase": PASSPHRASE, "mnemonic": "abandon ".repeat(24)}),
            )
            .await;
        assert_eq!(error_code(&bad_words), codes::INVALID_INPUT);
        seen.extend([status, locked, short, bad_words]);

        let init = admin
            .invoke(
                "secret",
                "init",
                json!({"passphrase": PASSPHRASE, "mnemonic": MNEMONIC.to_uppercase()}),
            )
            .await;
        assert_eq!(output(&init)["mnemonic"], Value::Null);
        let fingerprint = output(&init)["fingerprint"].clone();
        assert!(fingerprint.as_str().unwrap().starts_with("seed:"));
        let again = admin
            .invoke("secret", "init", json!({"passphrase": PASSPHRASE}))
            .await;
        assert_eq!(error_code(&again), "ALREADY_INITIALIZED");
        let status = user.invoke("secret", "status", json!({})).await;
        assert_eq!(output(&status)["state"], "unlocked");
        assert_eq!(output(&status)["fingerprint"], fingerprint);
        seen.extend([init, again, status]);

        // Keys at paths: public keys and signatures, never private keys.
        let public = user
            .invoke("secret", "public_key", json!({"path": "m/44'/1234'/0'"}))
            .await;
        let public_key = output(&public)["public_key"].clone();
        let unhardened = user
            .invoke("secret", "public_key", json!({"path": "m/44/0'"}))
            .await;
        assert_eq!(error_code(&unhardened), codes::INVALID_INPUT);
        let message = b64(b"launch at dawn");
        let signed = user
            .invoke(
                "secret",
                "sign",
                json!({"path": "m/44H/1234H/0H", "message": message}),
            )
            .await;
        assert_eq!(output(&signed)["public_key"], public_key);
        assert_eq!(output(&signed)["path"], "m/44'/1234'/0'");
        let signature = output(&signed)["signature"].clone();
        assert_eq!(unb64(&signature).len(), 64);
        let valid = user
            .invoke(
                "secret",
                "verify",
                json!({"public_key": public_key, "message": message, "signature": signature}),
            )
            .await;
        assert_eq!(output(&valid)["valid"], true);
        let by_path = user
            .invoke(
                "secret",
                "verify",
                json!({"path": "m/44'/1234'/0'", "message": message, "signature": signature}),
            )
            .await;
        assert_eq!(output(&by_path)["valid"], true);
        let forged = user
            .invoke(
                "secret",
                "verify",
                json!({"public_key": public_key, "message": b64(b"launch at dusk"), "signature": signature}),
            )
            .await;
        assert_eq!(output(&forged)["valid"], false);
        let not_base64 = user
            .invoke(
                "secret",
                "sign",
                json!({"path": "m/0'", "message": "not base64!"}),
            )
            .await;
        assert_eq!(error_code(&not_base64), codes::INVALID_INPUT);
        let exported = admin
            .invoke("secret", "export_private_key", json!({"path": "m/0'"}))
            .await;
        assert_eq!(error_code(&exported), codes::NOT_FOUND, "internal from outside");
        seen.extend([public, unhardened, signed, valid, by_path, forged, not_base64, exported]);

        // Versioned encryption. Ciphertexts carry a random nonce, so they differ per path:
        // only what decrypting them answers is compared.
        let encrypt = |plaintext: &[u8], aad: &[u8]| {
            let user = user.clone();
            let input = json!({"key_name": "db", "plaintext": b64(plaintext), "aad": b64(aad)});
            async move { user.invoke("secret", "encrypt", input).await }
        };
        let decrypt = |ciphertext: &Value, aad: &[u8]| {
            let user = user.clone();
            let input = json!({"ciphertext": ciphertext, "aad": b64(aad)});
            async move { user.invoke("secret", "decrypt", input).await }
        };
        let first = encrypt(b"row 1", b"table=users").await;
        assert_eq!(output(&first)["key_version"], 1);
        let v1 = output(&first)["ciphertext"].clone();
        let opened = decrypt(&v1, b"table=users").await;
        assert_eq!(unb64(&output(&opened)["plaintext"]), b"row 1");
        let wrong_aad = decrypt(&v1, b"table=orders").await;
        assert_eq!(error_code(&wrong_aad), "AAD_MISMATCH");
        let tampered = decrypt(&json!(flipped(&v1, -20)), b"table=users").await;
        assert_eq!(error_code(&tampered), "TAMPERED");
        let tampered_tag = decrypt(&json!(flipped(&v1, -1)), b"table=users").await;
        assert_eq!(error_code(&tampered_tag), "TAMPERED");
        // Byte 7 is the key version's last byte (format, length, "db", version).
        let unknown = decrypt(&json!(flipped(&v1, 7)), b"table=users").await;
        assert_eq!(error_code(&unknown), "UNKNOWN_KEY_VERSION");
        let garbage = decrypt(&json!(b64(b"\x01\x02db")), b"").await;
        assert_eq!(error_code(&garbage), codes::INVALID_INPUT);
        let bad_name = user
            .invoke(
                "secret",
                "encrypt",
                json!({"key_name": "no spaces", "plaintext": b64(b"x")}),
            )
            .await;
        assert_eq!(error_code(&bad_name), codes::INVALID_INPUT);
        seen.extend([opened, wrong_aad, tampered, tampered_tag, unknown, garbage, bad_name]);

        let rotate_as_user = user
            .invoke("secret", "rotate", json!({"key_name": "db"}))
            .await;
        assert_eq!(error_code(&rotate_as_user), codes::FORBIDDEN);
        let rotated = admin
            .invoke("secret", "rotate", json!({"key_name": "db"}))
            .await;
        assert_eq!(output(&rotated)["current_version"], 2);
        let second = encrypt(b"row 2", b"").await;
        assert_eq!(output(&second)["key_version"], 2);
        let v2 = output(&second)["ciphertext"].clone();
        let old_still_opens = decrypt(&v1, b"table=users").await;
        assert_eq!(output(&old_still_opens)["key_version"], 1);
        let retire_current = admin
            .invoke("secret", "retire", json!({"key_name": "db", "version": 2}))
            .await;
        assert_eq!(error_code(&retire_current), "CURRENT_KEY_VERSION");
        let retire_unknown = admin
            .invoke("secret", "retire", json!({"key_name": "db", "version": 9}))
            .await;
        assert_eq!(error_code(&retire_unknown), "UNKNOWN_KEY_VERSION");
        let retired = admin
            .invoke("secret", "retire", json!({"key_name": "db", "version": 1}))
            .await;
        assert_eq!(output(&retired)["retired_versions"], json!([1]));
        let old_refused = decrypt(&v1, b"table=users").await;
        assert_eq!(error_code(&old_refused), "RETIRED_KEY_VERSION");
        let new_opens = decrypt(&v2, b"").await;
        assert_eq!(unb64(&output(&new_opens)["plaintext"]), b"row 2");
        let keys = user.invoke("secret", "keys", json!({})).await;
        assert_eq!(
            output(&keys),
            &json!([{"key_name": "db", "current_version": 2, "retired_versions": [1]}])
        );
        seen.extend([
            rotate_as_user,
            rotated,
            old_still_opens,
            retire_current,
            retire_unknown,
            retired,
            old_refused,
            new_opens,
            keys,
        ]);

        // Locked: every use of the seed is refused, and unlocking gives the same keys and
        // the same keyring back.
        let lock = user.invoke("secret", "lock", json!({})).await;
        assert_eq!(output(&lock)["state"], "locked");
        for (operation, input) in [
            ("public_key", json!({"path": "m/0'"})),
            ("sign", json!({"path": "m/0'", "message": ""})),
            ("verify", json!({"path": "m/0'", "message": "", "signature": b64(&[0; 64])})),
            ("encrypt", json!({"key_name": "db", "plaintext": ""})),
            ("decrypt", json!({"ciphertext": v2})),
            ("rotate", json!({"key_name": "db"})),
        ] {
            let refused = admin.invoke("secret", operation, input).await;
            assert_eq!(error_code(&refused), "LOCKED", "{operation}");
            seen.push(refused);
        }
        let wrong = user
            .invoke("secret", "unlock", json!({"passphrase": "not the passphrase"}))
            .await;
        assert_eq!(error_code(&wrong), "WRONG_PASSPHRASE");
        let details = wrong.result.as_ref().unwrap_err().details.clone().unwrap();
        assert_eq!(details["failed_unlocks"], 1);
        assert_eq!(details["retry_after_ms"], BACKOFF_MS);
        let too_soon = user
            .invoke("secret", "unlock", json!({"passphrase": PASSPHRASE}))
            .await;
        assert_eq!(error_code(&too_soon), "TOO_MANY_ATTEMPTS");
        tokio::time::sleep(Duration::from_millis(BACKOFF_MS + 10)).await;
        let unlocked = user
            .invoke("secret", "unlock", json!({"passphrase": PASSPHRASE}))
            .await;
        assert_eq!(output(&unlocked)["state"], "unlocked");
        assert_eq!(output(&unlocked)["failed_unlocks"], 0);
        let same = user
            .invoke("secret", "public_key", json!({"path": "m/44'/1234'/0'"}))
            .await;
        assert_eq!(output(&same)["public_key"], public_key);
        let still_retired = decrypt(&v1, b"table=users").await;
        assert_eq!(error_code(&still_retired), "RETIRED_KEY_VERSION");
        seen.extend([lock, wrong, unlocked, same, still_retired]);
        seen
    })
    .await;
}

/// `init` at the defaults takes at least the target time here: guessing passphrases
/// against a stolen file costs that much per guess.
#[tokio::test]
async fn the_default_key_derivation_takes_at_least_250_ms() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.json");
    let service = SecretService::open(&SecretSettings {
        file: Some(file.clone()),
        ..SecretSettings::default()
    })
    .unwrap();
    let env = OperationEnv::builder()
        .local(SecretProtocol::local(service))
        .build()
        .unwrap();
    let admin = as_caller(&env, &["secret:admin"]);
    let init = admin
        .invoke("secret", "init", json!({"passphrase": PASSPHRASE}))
        .await;
    let words = output(&init)["mnemonic"].as_str().unwrap().to_string();
    assert_eq!(words.split(' ').count(), 24);
    admin.invoke("secret", "lock", json!({})).await;
    let started = Instant::now();
    let unlocked = admin
        .invoke("secret", "unlock", json!({"passphrase": PASSPHRASE}))
        .await;
    assert_eq!(output(&unlocked)["state"], "unlocked");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "unlock took {:?}",
        started.elapsed()
    );
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["kdf"]["memory_kib"], 65536);
    assert_eq!(written["kdf"]["algorithm"], "argon2id");
    // The file never holds the mnemonic or the seed in the clear.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&words));
}

#[tokio::test]
async fn wrong_passphrases_wait_longer_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let env = single(&dir.path().join("secret.json"));
    let user = as_caller(&env, &["secret:use"]);
    as_caller(&env, &["secret:admin"])
        .invoke("secret", "init", json!({"passphrase": PASSPHRASE}))
        .await;
    user.invoke("secret", "lock", json!({})).await;
    for (failures, wait) in [(1, BACKOFF_MS), (2, 2 * BACKOFF_MS), (3, 4 * BACKOFF_MS)] {
        let wrong = user
            .invoke(
                "secret",
                "unlock",
                json!({"passphrase": "guess guess guess"}),
            )
            .await;
        let err = wrong.result.unwrap_err();
        assert_eq!(err.code, "WRONG_PASSPHRASE");
        assert_eq!(err.details.as_ref().unwrap()["failed_unlocks"], failures);
        assert_eq!(err.details.as_ref().unwrap()["retry_after_ms"], wait);
        // Until the wait is over, even the right passphrase is not tried.
        let early = user
            .invoke("secret", "unlock", json!({"passphrase": PASSPHRASE}))
            .await;
        let err = early.result.unwrap_err();
        assert_eq!(err.code, "TOO_MANY_ATTEMPTS");
        assert!(
            err.details.as_ref().unwrap()["retry_after_ms"]
                .as_u64()
                .unwrap()
                <= wait
        );
        let status = user.invoke("secret", "status", json!({})).await;
        assert_eq!(output(&status)["failed_unlocks"], failures);
        assert!(output(&status)["retry_after_ms"].as_u64().is_some());
        tokio::time::sleep(Duration::from_millis(wait + 10)).await;
    }
    let unlocked = user
        .invoke("secret", "unlock", json!({"passphrase": PASSPHRASE}))
        .await;
    assert_eq!(output(&unlocked)["failed_unlocks"], 0);
}

fn single(file: &Path) -> OperationEnv {
    OperationEnv::builder()
        .local(SecretProtocol::local(
            SecretService::open(&settings(file)).unwrap(),
        ))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_seed_file_is_owner_only_and_checked_when_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys").join("secret.json");
    let env = single(&file);
    let admin = as_caller(&env, &["secret:admin"]);
    admin
        .invoke("secret", "init", json!({"passphrase": PASSPHRASE}))
        .await;
    admin
        .invoke("secret", "rotate", json!({"key_name": "db"}))
        .await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);

    // A keyring edited by hand (un-retiring, rolling back a rotation) is caught at unlock.
    let mut text: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    text["keys"]["db"]["current"] = json!(1);
    std::fs::write(&file, serde_json::to_vec(&text).unwrap()).unwrap();
    let reopened = single(&file);
    let refused = as_caller(&reopened, &["secret:use"])
        .invoke("secret", "unlock", json!({"passphrase": PASSPHRASE}))
        .await;
    let err = refused.result.unwrap_err();
    assert_eq!(err.code, "SEED_FILE");
    assert!(err.message.contains("keyring"), "{}", err.message);

    // A file that is not a seed file, or asks Argon2 for too much, stops the service
    // from starting, with the reason.
    std::fs::write(&file, b"{\"format\": 3}").unwrap();
    let err = SecretService::open(&settings(&file)).err().unwrap();
    assert!(err.to_string().contains("is not a seed file"), "{err}");
    text["kdf"]["memory_kib"] = json!(1u64 << 30);
    std::fs::write(&file, serde_json::to_vec(&text).unwrap()).unwrap();
    let err = SecretService::open(&settings(&file)).err().unwrap();
    assert!(err.to_string().contains("at most 1048576 KiB"), "{err}");
}

const CHILD: &str = "ALKNET_SECRET_ROTATING_CHILD";

/// A process killed while it rewrites the seed file leaves a file that opens, with every
/// rotation it acknowledged.
#[test]
fn a_crash_mid_write_leaves_the_file_whole() {
    if let Some(file) = std::env::var_os(CHILD) {
        return rotate_forever(Path::new(&file));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.json");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_crash_mid_write_leaves_the_file_whole",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = 0u64;
    let mut line = String::new();
    while acknowledged < 40 {
        line.clear();
        assert_ne!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap(),
            0,
            "the child ended"
        );
        if let Some(version) = line.trim().strip_prefix("rotated ") {
            acknowledged = version.parse().unwrap();
        }
    }
    // SAFETY: kill(2) on the child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // Versions it acknowledged after the count above are fine too; none may be lost.
    for line in std::io::BufRead::lines(stdout) {
        if let Some(version) = line.unwrap().trim().strip_prefix("rotated ") {
            acknowledged = version.parse().unwrap();
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let env = single(&file);
        let user = as_caller(&env, &["secret:admin"]);
        let unlocked = user
            .invoke("secret", "unlock", json!({"passphrase": PASSPHRASE}))
            .await;
        assert_eq!(output(&unlocked)["state"], "unlocked");
        let keys = user.invoke("secret", "keys", json!({})).await;
        let current = output(&keys)[0]["current_version"].as_u64().unwrap();
        // One more than acknowledged is a write that landed before its answer.
        assert!(
            current == acknowledged || current == acknowledged + 1,
            "acknowledged {acknowledged}, the file has {current}"
        );
    });
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path != &file)
        .collect();
    // At most the one temporary file the kill interrupted; never a torn seed file.
    assert!(leftovers.len() <= 1, "{leftovers:?}");
}

fn rotate_forever(file: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let env = single(file);
        let admin = as_caller(&env, &["secret:admin"]);
        output(
            &admin
                .invoke("secret", "init", json!({"passphrase": PASSPHRASE}))
                .await,
        );
        loop {
            let rotated = admin
                .invoke("secret", "rotate", json!({"key_name": "db"}))
                .await;
            println!("rotated {}", output(&rotated)["current_version"]);
        }
    });
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// decrypt(encrypt(x, aad), aad) = x for any data and aad, sizes across buffers.
        #[test]
        fn decrypt_inverts_encrypt(
            plaintext in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..2048),
                proptest::collection::vec(any::<u8>(), 65530..65540),
            ],
            aad in proptest::collection::vec(any::<u8>(), 0..300),
            name in "[A-Za-z0-9._-]{1,64}",
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let env = unlocked_env();
                let user = as_caller(&env, &["secret:use"]);
                let sealed = user
                    .invoke("secret", "encrypt", json!({"key_name": name, "plaintext": b64(&plaintext), "aad": b64(&aad)}))
                    .await;
                let opened = user
                    .invoke("secret", "decrypt", json!({"ciphertext": output(&sealed)["ciphertext"], "aad": b64(&aad)}))
                    .await;
                prop_assert_eq!(unb64(&output(&opened)["plaintext"]), plaintext);
                prop_assert_eq!(&output(&opened)["key_name"], &json!(name));
                Ok(())
            })?;
        }
    }

    /// One unlocked service for every case (its own file, kept for the run).
    fn unlocked_env() -> OperationEnv {
        static ENV: std::sync::OnceLock<(tempfile::TempDir, OperationEnv)> =
            std::sync::OnceLock::new();
        ENV.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let env = single(&dir.path().join("secret.json"));
            let admin = as_caller(&env, &["secret:admin"]);
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(admin.invoke("secret", "init", json!({"passphrase": PASSPHRASE})))
                });
            });
            (dir, env)
        })
        .1
        .clone()
    }
}
