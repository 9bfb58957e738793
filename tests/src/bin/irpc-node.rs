//! A node for the irpc-over-QUIC tests, started in its own process:
//!
//! ```text
//! irpc-node --allow FINGERPRINT [--max-request BYTES]
//! ```
//!
//! Serves `probe` and `echo` to the one allowed key, prints `listening <addr> <fingerprint>`,
//! then runs until killed.

use std::sync::Arc;

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::quic::{NodeIdentity, QuicConfig};
use alknet_runtime::service_path::{IrpcLimits, IrpcListener};
use alknet_runtime::{Identity, OperationEnv, StaticIdentities};
use alknet_tests::probe::{Probe, ProbeProtocol};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut allowed = StaticIdentities::new();
    let mut limits = IrpcLimits::default();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--allow" => allowed = allowed.with_key(value, Identity::new("node:test-client")),
            "--max-request" => limits.max_request_size = value.parse()?,
            other => panic!("unknown flag {other}"),
        }
    }
    let env = OperationEnv::builder()
        .local(ProbeProtocol::local(Probe::default()))
        .local(EchoProtocol::local(EchoService::default()))
        .build()?;
    let node = NodeIdentity::generate()?;
    let listener = IrpcListener::builder(env, Arc::new(allowed))
        .limits(limits)
        .serve::<ProbeProtocol>()?
        .serve::<EchoProtocol>()?
        .bind("127.0.0.1:0".parse()?, &node, QuicConfig::default())?;
    println!(
        "listening {} {}",
        listener.local_addr(),
        listener.fingerprint()
    );
    std::future::pending::<()>().await;
    Ok(())
}
