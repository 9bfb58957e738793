//! `alknet call --node` against a node that never answers.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn calling_a_frozen_node_fails_after_the_handshake_timeout() {
    // A bound UDP socket that reads nothing: a frozen node.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let key = format!("ed25519:{}", "0".repeat(64));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_alknet"))
        .args(["call", "--node", &silent.local_addr().unwrap().to_string()])
        .args(["--node-key", &key, "echo/say", r#"{"text":"hi"}"#])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no handshake within 500 ms"), "{stderr}");
    // Main waited for QUIC to give up on its own, about 3 s.
    assert!(elapsed < Duration::from_millis(2000), "took {elapsed:?}");
}
