//! A client in another language, written from docs/call-protocol.md: Python with aioquic
//! (installed into ./.venv by scripts/test) drives a node in its own process.

mod support;

use std::path::PathBuf;
use std::process::Command;

use alknet_runtime::call::NodeIdentity;
use support::{NodeProcess, args};

fn python() -> PathBuf {
    let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"));
    let python = std::env::var_os("ALKNET_PYTHON").map_or(venv, PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test, which installs aioquic into ./.venv",
        python.display()
    );
    python
}

#[test]
fn a_python_aioquic_client_calls_subscribes_fails_and_aborts() {
    let node = NodeProcess::start(
        &NodeIdentity::generate().unwrap(),
        &args([
            "--serve",
            "echo,gate",
            "--api-key",
            "alk_py-key-of-the-python-client=user:python",
        ]),
    );
    let output = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/interop/call_client.py"
        ))
        .args(["--addr", &node.addr.to_string()])
        .args(["--fingerprint", &node.fingerprint])
        .args(["--token", "alk_py-key-of-the-python-client"])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.lines().last() == Some("ok"), "{stdout}");
}
