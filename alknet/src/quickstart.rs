//! The quickstart: the node's services assembled in this process, called the ways
//! an adapter and a Rust caller would.

use std::process::ExitCode;

use alknet::NodeBuilder;
use alknet_example::EchoClient;
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::futures::StreamExt;
use alknet_runtime::{Caller, Identity};
use serde_json::json;

pub fn run(services: impl FnOnce(NodeBuilder) -> NodeBuilder) -> ExitCode {
    match show_calls(services) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("alknet: {message}");
            ExitCode::FAILURE
        }
    }
}

fn show_calls(services: impl FnOnce(NodeBuilder) -> NodeBuilder) -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start a tokio runtime: {err}"))?;
    runtime.block_on(async {
        let node = services(alknet::Node::builder(ConfigServiceImpl::embedded()))
            .build()
            .map_err(|err| err.to_string())?;
        let env = node.env();

        println!("operations:");
        for op in env.operations() {
            println!(
                "  {:<12} {:<12} {}",
                op.id,
                op.kind.as_str(),
                op.description
            );
        }

        let show = |label: &str, value: serde_json::Value| println!("\n{label}\n  {value}");

        let reply = env.invoke("echo", "say", json!({"text": "hello"})).await;
        show("invoke echo/say {\"text\":\"hello\"}", json!(reply));

        let reply = env.invoke("echo", "say", json!({"text": 42})).await;
        show("invoke echo/say {\"text\":42}", json!(reply));

        let reply = env.invoke("echo", "served", json!({})).await;
        show("invoke echo/served as nobody", json!(reply));

        let admin = env.with_caller(
            Caller::new().identity(Identity::new("user:admin").with_scopes(["echo:admin"])),
        );
        let reply = admin.invoke("echo", "served", json!({})).await;
        show("invoke echo/served as user:admin", json!(reply));

        let items: Vec<_> = env
            .subscribe("echo", "ticks", json!({"count": 3, "interval_ms": 10}))
            .await
            .map(|item| item.unwrap_or_else(|err| json!({ "error": err })))
            .collect()
            .await;
        show("subscribe echo/ticks {\"count\":3}", json!(items));

        let echo = EchoClient::new(env.clone());
        match echo.shout("typed".into()).await {
            Ok(loud) => show("EchoClient::shout(\"typed\")", json!(loud)),
            Err(err) => show("EchoClient::shout(\"typed\")", json!({ "error": err })),
        }
        Ok(ExitCode::SUCCESS)
    })
}
