//! A node for the irpc-over-QUIC tests, started in its own process: an [`alknet::Node`]
//! over a configuration its flags write.
//!
//! ```text
//! irpc-node --allow FINGERPRINT [--max-request BYTES]
//! ```
//!
//! Serves `probe` and `echo` on the irpc listener to the one allowed key (as
//! `node:test-client`), prints `listening <addr> <fingerprint>`, then runs until killed.

use alknet::Node;
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_tests::probe::{Probe, ProbeProtocol};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut irpc = String::new();
    let mut allowed = String::new();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--allow" => {
                allowed = format!(
                    "[[public_keys]]\nfingerprint = {}\nidentity = \"node:test-client\"\n",
                    json!(value)
                );
            }
            "--max-request" => irpc = format!("max_request_bytes = {}\n", value.parse::<u64>()?),
            other => panic!("unknown flag {other}"),
        }
    }
    let text = format!("[listen]\nirpc = \"127.0.0.1:0\"\n[irpc]\n{irpc}{allowed}");
    let node = Node::builder(ConfigServiceImpl::from_text(text, "irpc-node flags")?)
        .local(ProbeProtocol::local(Probe::default()))
        .local(EchoProtocol::local(EchoService::default()))
        .without_storage()
        .build()?;
    let listeners = node.start().await?;
    let address = listeners.address("irpc").expect("[listen] irpc is set");
    println!("listening {address} {}", node.identity().fingerprint());
    std::future::pending::<()>().await;
    Ok(())
}
