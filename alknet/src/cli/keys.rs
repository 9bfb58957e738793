//! `alknet keys new|signing-key|token|node`: credentials, shown once, and the
//! configuration entries that accept them.

use std::path::Path;
use std::process::ExitCode;

use alknet_runtime::config;
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::credentials::{
    api_key_hash, key_from_hex, key_to_hex, new_api_key, new_signing_key, sign_token, unix_now,
};
use alknet_runtime::ed25519_dalek::SigningKey;
use alknet_runtime::quic::NodeIdentity;
use alknet_storage::IDENTITY_GRAPH;
use serde_json::json;

use super::call::{self, CallRequest};
use super::{Target, operator};
use crate::node::NodeBuilder;

pub struct NewKey {
    pub id: String,
    pub identity: Option<String>,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub expires: Option<String>,
}

/// A fresh API key for `request`, and its `[[api_keys]]` entry, checked as a node reads it.
fn made(request: &NewKey) -> Result<(String, String), String> {
    if let Some(expires) = &request.expires {
        config::parse_datetime(expires).map_err(|err| format!("--expires: {err}"))?;
    }
    let key =
        new_api_key().map_err(|err| format!("the operating system gave no random bytes: {err}"))?;
    let mut entry = format!(
        "[[api_keys]]\nid = {:?}\nhash = \"{}\"\n{}",
        request.id,
        api_key_hash(&key),
        request.grants().lines()
    );
    if let Some(expires) = &request.expires {
        entry.push_str(&format!("expires = {expires}\n"));
    }
    check(&entry)?;
    Ok((key, entry))
}

impl NewKey {
    fn grants(&self) -> Grants {
        Grants {
            identity: self
                .identity
                .clone()
                .unwrap_or_else(|| format!("key:{}", self.id)),
            scopes: self.scopes.clone(),
            resources: self.resources.clone(),
        }
    }
}

/// `keys add`: a fresh API key kept as a node of the storage graph `identities` (its
/// attributes are its `[[api_keys]]` entry but the id), shown once it is stored.
pub fn add(
    request: NewKey,
    target: Target,
    assemble: impl FnOnce(ConfigServiceImpl) -> NodeBuilder,
) -> Result<ExitCode, String> {
    let (key, _) = made(&request)?;
    let grants = request.grants();
    let mut attributes = json!({
        "hash": api_key_hash(&key),
        "identity": grants.identity,
        "scopes": grants.scopes,
        "resources": grants.resources,
    });
    if let Some(expires) = &request.expires {
        attributes["expires"] = json!(expires);
    }
    let input = json!({"graph": IDENTITY_GRAPH, "id": request.id, "type": "api_key", "attributes": attributes});
    let code = in_storage("create_node", input, target, assemble)?;
    println!("\nAPI key (shown once; only its hash is kept):\n\n  {key}\n");
    Ok(code)
}

/// `keys add-node`: another node's key, by fingerprint, kept as a node of the storage
/// graph `identities` (its attributes are its `[[public_keys]]` entry but the
/// fingerprint).
pub fn add_node(
    fingerprint: &str,
    grants: Grants,
    cluster: bool,
    target: Target,
    assemble: impl FnOnce(ConfigServiceImpl) -> NodeBuilder,
) -> Result<ExitCode, String> {
    check(&format!(
        "[[public_keys]]\nfingerprint = {fingerprint:?}\n{}cluster = {cluster}\n",
        grants.lines()
    ))?;
    let attributes = json!({
        "identity": grants.identity,
        "scopes": grants.scopes,
        "resources": grants.resources,
        "cluster": cluster,
    });
    let input = json!({"graph": IDENTITY_GRAPH, "id": fingerprint, "type": "public_key", "attributes": attributes});
    in_storage("create_node", input, target, assemble)
}

/// `keys list`: the API keys of the storage graph `identities`.
pub fn list_stored(
    target: Target,
    assemble: impl FnOnce(ConfigServiceImpl) -> NodeBuilder,
) -> Result<ExitCode, String> {
    let input = json!({"graph": IDENTITY_GRAPH, "type": "api_key", "limit": 1000});
    in_storage("list_nodes", input, target, assemble)
}

/// `keys revoke`: the API key `id` (or node key, by fingerprint) removed from the storage
/// graph `identities`.
pub fn revoke(
    id: &str,
    target: Target,
    assemble: impl FnOnce(ConfigServiceImpl) -> NodeBuilder,
) -> Result<ExitCode, String> {
    let input = json!({"graph": IDENTITY_GRAPH, "id": id});
    in_storage("delete_node", input, target, assemble)
}

fn in_storage(
    operation: &str,
    input: serde_json::Value,
    target: Target,
    assemble: impl FnOnce(ConfigServiceImpl) -> NodeBuilder,
) -> Result<ExitCode, String> {
    let request = CallRequest {
        operation: format!("storage/{operation}"),
        input,
        target,
        operator: Some(operator()),
    };
    call::run(request, assemble)
}

/// `keys signing-key`: a fresh token-signing key written to `out` (hex, owner-only), and
/// the `[[token_keys]]` entry that accepts its tokens.
pub fn signing_key(key_id: &str, grants: Grants, out: &Path) -> Result<ExitCode, String> {
    let key = new_signing_key()
        .map_err(|err| format!("the operating system gave no random bytes: {err}"))?;
    let public = key_to_hex(&key.verifying_key().to_bytes());
    let entry = format!(
        "[[token_keys]]\nkey_id = {key_id:?}\npublic_key = \"{public}\"\n{}",
        grants.lines()
    );
    check(&entry)?;
    let secret = key_to_hex(&key.to_bytes());
    write_secret(out, &secret)?;
    println!(
        "Signing key written to {} (keep it secret).\n",
        out.display()
    );
    println!("Add this to the node's configuration file, then reload (SIGHUP or config/reload):\n");
    print!("{entry}");
    Ok(ExitCode::SUCCESS)
}

/// `keys node`: a fresh node key written to `out` (PKCS#8 PEM, owner-only), in the format
/// `[node] key` reads, its fingerprint, and the entry that makes a node use it.
pub fn node(out: &Path) -> Result<ExitCode, String> {
    let identity = NodeIdentity::generate().map_err(|err| err.message)?;
    write_secret(out, identity.private_key_pem().trim_end())?;
    println!("Node key written to {} (keep it secret).\n", out.display());
    println!("node key: {}\n", identity.fingerprint());
    println!(
        "Add this to the node's configuration file, then restart it (the key is read at start):\n"
    );
    print!("[node]\nkey = {:?}\n", out.display().to_string());
    Ok(ExitCode::SUCCESS)
}

/// `keys token`: a token signed now with the key in `secret_file`.
pub fn token(key_id: &str, secret_file: &Path) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(secret_file).map_err(|err| {
        format!(
            "cannot read the signing key `{}`: {err}",
            secret_file.display()
        )
    })?;
    let secret = key_from_hex(text.trim()).ok_or_else(|| {
        format!(
            "`{}` does not hold a signing key (64 hex digits, as `alknet keys signing-key` writes)",
            secret_file.display()
        )
    })?;
    println!(
        "{}",
        sign_token(&SigningKey::from_bytes(&secret), key_id, unix_now())
    );
    Ok(ExitCode::SUCCESS)
}

fn write_secret(path: &Path, secret: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| format!("cannot create `{}`: {err}", path.display()))?;
    writeln!(file, "{secret}").map_err(|err| format!("cannot write `{}`: {err}", path.display()))
}

/// Who a credential authenticates, as `keys new` and `keys signing-key` take it.
pub struct Grants {
    pub identity: String,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
}

impl Grants {
    /// The entry's `identity`, `scopes` and `resources` lines.
    fn lines(&self) -> String {
        let mut lines = format!(
            "identity = {:?}\nscopes = [{}]\n",
            self.identity,
            list(&self.scopes)
        );
        if !self.resources.is_empty() {
            lines.push_str(&format!("resources = [{}]\n", list(&self.resources)));
        }
        lines
    }
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("{item:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Check an entry the way the node will read it, so a bad option fails here.
fn check(entry: &str) -> Result<(), String> {
    config::parse(entry, "the new entry")
        .map(drop)
        .map_err(|err| err.to_string())
}

pub fn new(request: NewKey) -> Result<ExitCode, String> {
    let (key, entry) = made(&request)?;
    println!("API key (shown once; only its hash is kept):\n\n  {key}\n");
    println!("Add this to the node's configuration file, then reload (SIGHUP or config/reload):\n");
    print!("{entry}");
    Ok(ExitCode::SUCCESS)
}
