//! The `alknet` command line: the quickstart, serving the adapters, and the schema commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod quickstart;
mod schema;
mod serve;

/// alknet — declare services once, serve them everywhere.
#[derive(Parser)]
#[command(name = "alknet", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the `echo` example service and call it every way it can be called (the default).
    Quickstart,
    /// Serve the node's services over HTTP (with MCP at `/mcp`) and DNS until stopped.
    Serve {
        /// The HTTP listener's address (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// The DNS listener's address, UDP and TCP (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:5353")]
        dns: SocketAddr,
        /// The DNS zone operations are answered under.
        #[arg(long, default_value = alknet_runtime::adapters::dns::DEFAULT_ZONE)]
        dns_zone: String,
    },
    /// Serve the node's services as MCP tools over stdin/stdout, for an MCP client to spawn.
    McpStdio,
    /// Export and check the JSON Schemas and the OpenAPI document of the node's services.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Write `services/{namespace}.json`, `index.json` and `openapi.json`; refuses to
    /// overwrite a document with a breaking change unless the service's major version went up.
    Export {
        /// The schema directory.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Fail when the committed files differ from what the code generates (showing the
    /// diff), or when the code breaks a committed service without a major version bump.
    Check {
        /// The schema directory.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
    /// Classify every change between two service documents (or two schema directories)
    /// as breaking or compatible; fails if any is breaking.
    Diff {
        /// The old document or directory.
        old: PathBuf,
        /// The new document or directory.
        new: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Quickstart) {
        Command::Quickstart => quickstart::run(),
        Command::Serve {
            http,
            dns,
            dns_zone,
        } => serve::serve(Some(http), Some(dns), dns_zone),
        Command::McpStdio => serve::mcp_stdio(),
        Command::Schema(SchemaCommand::Export { out }) => schema::export(&out),
        Command::Schema(SchemaCommand::Check { dir }) => schema::check(&dir),
        Command::Schema(SchemaCommand::Diff { old, new }) => schema::diff(&old, &new),
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("alknet: {message}");
            ExitCode::FAILURE
        }
    }
}
