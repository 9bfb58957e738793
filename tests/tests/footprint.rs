//! A service crate builds no transport and none of the node's own parts: with the
//! runtime's default features, what it depends on names no QUIC, TLS, HTTP or DNS crate,
//! nor the configuration file's, the credentials' or the rate limits' (`docs/benchmarks.md`,
//! "Build cost and footprint"; the node turns them on).

use std::process::Command;

/// The crates `package` builds on its own (normal dependencies, as `cargo build -p`
/// resolves its features), one name per line.
fn builds(package: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-p", package])
        .args(["--edges", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn a_service_crate_builds_no_transport() {
    let crates = builds("alknet-example");
    assert!(
        crates.iter().any(|name| name == "irpc"),
        "the irpc path is on by default"
    );
    let transports = [
        "noq",
        "rustls",
        "ring",
        "rcgen",
        "axum",
        "hyper",
        "rmcp",
        "hickory-server",
        "tungstenite",
        "toml",
        "ed25519-dalek",
        "governor",
        "ipnet",
    ];
    let built: Vec<&String> = crates
        .iter()
        .filter(|name| transports.contains(&name.as_str()))
        .collect();
    assert!(
        built.is_empty(),
        "a service crate builds {built:?}, which only the node that serves it needs"
    );
}

#[test]
fn the_node_builds_every_transport() {
    let crates = builds("alknet");
    for transport in [
        "noq",
        "rustls",
        "axum",
        "rmcp",
        "hickory-server",
        "tungstenite",
        "toml",
        "governor",
    ] {
        assert!(
            crates.iter().any(|name| name == transport),
            "the node serves every transport, but builds no `{transport}`"
        );
    }
}
