//! The `alknet` command line: serve a node (or MCP over stdio), call it, manage keys and
//! schemas.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod call;
mod keys;
mod logging;
mod quickstart;
mod schema;
mod serve;
mod transports;

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
    /// Run a node: every service, on the embedded default configuration or `--config`.
    /// Reloads the configuration on SIGHUP, on `config/reload`, and when the file changes.
    Serve {
        /// The TOML configuration file (see docs/configuration.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// How often to check the configuration file for changes, in milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
        watch_interval_ms: u64,
    },
    /// Call any operation of the node's services and print the output: in-process, or on a
    /// running node over the call protocol (`--node`), HTTP (`--http`) or WebSocket (`--ws`).
    Call {
        /// The operation, `namespace/operation` (for example `echo/say`).
        operation: String,
        /// The input as JSON; `-` or nothing reads it from stdin when stdin is not a terminal.
        input: Option<String>,
        /// The configuration file credentials are checked against.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Call as the identity of this API key.
        #[arg(long, env = "ALKNET_API_KEY")]
        api_key: Option<String>,
        /// Call as the identity of this signed token.
        #[arg(long, env = "ALKNET_TOKEN")]
        token: Option<String>,
        /// Call a running node over the call protocol (QUIC) at this address, such as
        /// 127.0.0.1:4433, instead of a node assembled in this process.
        #[arg(long, requires = "node_key")]
        node: Option<std::net::SocketAddr>,
        /// The key of the node named by --node (`ed25519:…`, printed by `alknet serve`).
        #[arg(long, requires = "node")]
        node_key: Option<String>,
        /// Call a running node over HTTP at this base URL, such as http://127.0.0.1:8080
        /// (`POST /v1/{namespace}/{op}`; subscriptions as Server-Sent Events).
        #[arg(long, conflicts_with = "node")]
        http: Option<String>,
        /// Call a running node over the call protocol on a WebSocket at this URL, such as
        /// ws://127.0.0.1:4480/call.
        #[arg(long, conflicts_with_all = ["node", "http"])]
        ws: Option<String>,
    },
    /// Make credentials.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Serve the node's services as MCP tools over stdin/stdout, for an MCP client to spawn.
    McpStdio {
        /// The TOML configuration file (see docs/configuration.md).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Export and check the JSON Schemas and the OpenAPI document of the node's services.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make an API key: prints the key once, and the configuration entry with its hash.
    New {
        /// The key's name in the configuration (unique; logs use it).
        #[arg(long, default_value = "key-1")]
        id: String,
        /// The identity the key authenticates (default `key:<id>`).
        #[arg(long)]
        identity: Option<String>,
        /// A scope to grant (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A resource grant, `type:action` (repeat for several).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// When the key stops working, such as `2027-01-01T00:00:00Z`.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Make a key that signs tokens: writes its secret to a new file (owner-only) and
    /// prints the `[[token_keys]]` entry that accepts its tokens.
    SigningKey {
        /// The key id tokens name (letters, digits, `-`, `_`, `:`).
        #[arg(long)]
        key_id: String,
        /// The file to create for the secret key; it must not exist.
        #[arg(long)]
        out: PathBuf,
        /// The identity the key's tokens authenticate.
        #[arg(long)]
        identity: String,
        /// A scope to grant (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A resource grant, `type:action` (repeat for several).
        #[arg(long = "resource")]
        resources: Vec<String>,
    },
    /// Make a node key: writes it to a new file (PKCS#8 PEM, owner-only) for `[node] key`
    /// and prints its fingerprint, the one peers pin.
    Node {
        /// The file to create for the key; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a token now (valid within the node's window, ±300 s by default) and print it.
    Token {
        /// The key id of the signing key.
        #[arg(long)]
        key_id: String,
        /// The file `keys signing-key` wrote.
        #[arg(long)]
        secret_file: PathBuf,
    },
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
    if let Err(message) = logging::init() {
        eprintln!("alknet: {message}");
        return ExitCode::FAILURE;
    }
    let outcome = match cli.command.unwrap_or(Command::Quickstart) {
        Command::Quickstart => quickstart::run(),
        Command::Serve {
            config,
            watch_interval_ms,
        } => serve::run(config.as_deref(), Duration::from_millis(watch_interval_ms)),
        Command::Call {
            operation,
            input,
            config,
            api_key,
            token,
            node,
            node_key,
            http,
            ws,
        } => call::run(call::CallRequest {
            operation,
            input,
            config,
            api_key,
            token,
            node: node.zip(node_key),
            http,
            ws,
        }),
        Command::Keys(KeysCommand::New {
            id,
            identity,
            scopes,
            resources,
            expires,
        }) => keys::new(keys::NewKey {
            id,
            identity,
            scopes,
            resources,
            expires,
        }),
        Command::Keys(KeysCommand::SigningKey {
            key_id,
            out,
            identity,
            scopes,
            resources,
        }) => keys::signing_key(
            &key_id,
            keys::Grants {
                identity,
                scopes,
                resources,
            },
            &out,
        ),
        Command::Keys(KeysCommand::Node { out }) => keys::node(&out),
        Command::Keys(KeysCommand::Token {
            key_id,
            secret_file,
        }) => keys::token(&key_id, &secret_file),
        Command::McpStdio { config } => serve::mcp_stdio(config.as_deref()),
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
