//! `notes-gateway`: a node that serves the `notes` service of another node as its own.
//! It mounts that node over the call protocol, as `notes-node`, and routes the namespace
//! `notes` to it: every transport of the gateway (HTTP, MCP, DNS, QUIC, WebSocket) reaches
//! the notes node's operations, which the notes node runs as the gateway's key asks.
//!
//! ```text
//! NOTES_NODE=127.0.0.1:4433 NOTES_NODE_KEY=ed25519:… notes-gateway serve --config gateway.toml
//! ```
//!
//! The gateway connects when it starts (a notes node that does not answer stops it), and
//! learns what it may call there then; the notes node must know the gateway's key
//! (`[[public_keys]]`, `cluster = true` to pass on who the callers are).

use std::net::SocketAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let (address, fingerprint) = match notes_node() {
        Ok(peer) => peer,
        Err(message) => {
            eprintln!("notes-gateway: {message}");
            return ExitCode::from(2);
        }
    };
    alknet::cli::run(|node| {
        node.remote("notes-node", address, &fingerprint)
            .route("notes", "notes-node")
    })
}

/// The notes node's address and key, from `NOTES_NODE` and `NOTES_NODE_KEY`.
fn notes_node() -> Result<(SocketAddr, String), String> {
    let read = |name: &str| {
        std::env::var(name).map_err(|_| {
            format!("set {name}: NOTES_NODE is the notes node's call-protocol address (host:port), NOTES_NODE_KEY its key (ed25519:…)")
        })
    };
    let address = read("NOTES_NODE")?;
    let address = address.parse().map_err(|_| {
        format!("NOTES_NODE is `{address}`: expected host:port, such as 127.0.0.1:4433")
    })?;
    Ok((address, read("NOTES_NODE_KEY")?))
}
