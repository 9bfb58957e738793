//! The `alknet` binary: the node's command line over the example `echo` service, and the
//! quickstart (the default command).

use std::process::ExitCode;

use alknet::NodeBuilder;
use alknet::cli::Command;
use alknet_example::{EchoProtocol, EchoService, NotaryProtocol, NotaryService};
use clap::{Parser, Subcommand};

mod quickstart;

/// alknet — declare services once, serve them everywhere.
#[derive(Parser)]
#[command(name = "alknet", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<BinaryCommand>,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would buy nothing"
)]
enum BinaryCommand {
    /// Mount the `echo` example service and call it every way it can be called (the default).
    Quickstart,
    #[command(flatten)]
    Node(Command),
}

/// What this binary's node serves, beside the node's own `auth`, `config`, `secret` and
/// `storage`.
fn services(node: NodeBuilder) -> NodeBuilder {
    node.local(EchoProtocol::local(EchoService::default()))
        .local(NotaryProtocol::local(NotaryService))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        None | Some(BinaryCommand::Quickstart) => quickstart::run(services),
        Some(BinaryCommand::Node(command)) => alknet::cli::execute(command, services),
    }
}
