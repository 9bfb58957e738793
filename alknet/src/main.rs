//! The `alknet` command line: the quickstart and the schema commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod quickstart;
mod schema;

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
