//! A node for the call-protocol tests, started in its own process: an [`alknet::Node`]
//! over a configuration its flags write.
//!
//! ```text
//! call-node --key FILE [--serve echo,gate,front] [--allow FINGERPRINT=ID[#SCOPE,..]]
//!           [--cluster FINGERPRINT=ID[#SCOPE,..]] [--api-key KEY=ID[#SCOPE,..]]
//!           [--peer NAME=ADDR@FINGERPRINT] [--route NS=NAME] [--call KEY=VALUE]
//!           [--ws] [--origin ORIGIN]
//! ```
//!
//! `--allow` admits an outside caller's key (`[[public_keys]]`), `--cluster` a cluster
//! node's (whose `forwarded_for` is believed), `--api-key` an API key (`[[api_keys]]`).
//! `--peer` mounts a node as a namespace and `--route` serves a namespace from it
//! ([`alknet::NodeBuilder::remote`], [`alknet::NodeBuilder::route`]). `--call` sets a key
//! of `[call]` to a number (docs/configuration.md). `--ws` listens for WebSocket too;
//! `--origin` allows a page's origin (repeat for several; none: same host only).
//!
//! Prints `listening <addr> <fingerprint>` (and `ws <addr>` with `--ws`) once it serves,
//! then runs until killed.

use std::net::SocketAddr;

use alknet::{Node, NodeBuilder};
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::credentials::api_key_hash;
use alknet_tests::front::{Front, FrontProtocol};
use alknet_tests::gate::{Gate, GateProtocol};
use serde_json::json;

fn pair(arg: &str) -> (&str, &str) {
    arg.split_once('=')
        .unwrap_or_else(|| panic!("`{arg}` should be NAME=VALUE"))
}

/// `identity = "ID"` and `scopes = [..]` of `ID[#SCOPE,..]`, as TOML.
fn holder(spec: &str) -> String {
    let (id, scopes) = spec.split_once('#').unwrap_or((spec, ""));
    let scopes: Vec<&str> = scopes.split(',').filter(|s| !s.is_empty()).collect();
    format!("identity = {}\nscopes = {}\n", json!(id), json!(scopes))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut node = String::new();
    let mut listen = String::from("call = \"127.0.0.1:0\"\n");
    let mut call = String::new();
    let mut credentials = String::new();
    let mut origins: Option<Vec<String>> = None;
    let mut serve = Vec::new();
    let mut remotes = Vec::new();
    let mut routes = Vec::new();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--key" => node = format!("key = {}\n", json!(value())),
            "--serve" => serve.extend(value().split(',').map(str::to_string)),
            "--allow" | "--cluster" => {
                let arg = value();
                let (fingerprint, who) = pair(&arg);
                credentials += &format!(
                    "[[public_keys]]\nfingerprint = {}\ncluster = {}\n{}",
                    json!(fingerprint),
                    flag == "--cluster",
                    holder(who)
                );
            }
            "--api-key" => {
                let arg = value();
                let (key, who) = pair(&arg);
                let id = format!("key-{}", credentials.matches("[[api_keys]]").count());
                credentials += &format!(
                    "[[api_keys]]\nid = {}\nhash = {}\n{}",
                    json!(id),
                    json!(api_key_hash(key)),
                    holder(who)
                );
            }
            "--peer" => remotes.push(value()),
            "--route" => routes.push(value()),
            "--call" => {
                let arg = value();
                let (key, number) = pair(&arg);
                let number: u64 = number.parse()?;
                call += &format!("{key} = {number}\n");
            }
            "--ws" => listen += "websocket = \"127.0.0.1:0\"\n",
            "--origin" => origins.get_or_insert_with(Vec::new).push(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    if let Some(origins) = origins {
        call += &format!("websocket_allowed_origins = {}\n", json!(origins));
    }
    let text = format!("[node]\n{node}[listen]\n{listen}[call]\n{call}{credentials}");
    let config = ConfigServiceImpl::from_text(text, "call-node flags")?;

    let mut builder: NodeBuilder = Node::builder(config).without_storage();
    for name in &serve {
        builder = match name.as_str() {
            "echo" => builder.local(EchoProtocol::local(EchoService::default())),
            "gate" => builder.local(GateProtocol::local(Gate::default())),
            "front" => builder.local(FrontProtocol::local(Front)),
            other => panic!("unknown service {other}"),
        };
    }
    for remote in &remotes {
        let (name, target) = pair(remote);
        let (address, fingerprint) = target.split_once('@').expect("ADDR@FINGERPRINT");
        let address: SocketAddr = address.parse()?;
        builder = builder.remote(name, address, fingerprint);
    }
    for route in &routes {
        let (namespace, node_name) = pair(route);
        builder = builder.route(namespace, node_name);
    }
    let node = builder.connect().await?;
    let listeners = node.start().await?;
    let address = listeners.address("call").expect("[listen] call is set");
    println!("listening {address} {}", node.identity().fingerprint());
    if let Some(ws) = listeners.address("websocket") {
        println!("ws {ws}");
    }
    std::future::pending::<()>().await;
    Ok(())
}
