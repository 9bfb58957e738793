//! `alknet keys new`: a fresh API key, shown once, and the configuration entry with its hash.

use std::process::ExitCode;

use alknet_runtime::config;
use alknet_runtime::credentials::{api_key_hash, new_api_key};

pub struct NewKey {
    pub id: String,
    pub identity: Option<String>,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub expires: Option<String>,
}

pub fn new(request: NewKey) -> Result<ExitCode, String> {
    if let Some(expires) = &request.expires {
        config::parse_datetime(expires).map_err(|err| format!("--expires: {err}"))?;
    }
    let key =
        new_api_key().map_err(|err| format!("the operating system gave no random bytes: {err}"))?;
    let list = |items: &[String]| {
        items
            .iter()
            .map(|item| format!("{item:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let identity = request
        .identity
        .unwrap_or_else(|| format!("key:{}", request.id));
    let mut entry = format!(
        "[[api_keys]]\nid = {:?}\nhash = \"{}\"\nidentity = {identity:?}\nscopes = [{}]\n",
        request.id,
        api_key_hash(&key),
        list(&request.scopes),
    );
    if !request.resources.is_empty() {
        entry.push_str(&format!("resources = [{}]\n", list(&request.resources)));
    }
    if let Some(expires) = &request.expires {
        entry.push_str(&format!("expires = {expires}\n"));
    }
    // The entry is checked the way the node will read it, so a bad option fails here.
    config::parse(&entry, "the new entry").map_err(|err| err.to_string())?;
    println!("API key (shown once; only its hash is kept):\n\n  {key}\n");
    println!("Add this to the node's configuration file, then reload (SIGHUP or config/reload):\n");
    print!("{entry}");
    Ok(ExitCode::SUCCESS)
}
