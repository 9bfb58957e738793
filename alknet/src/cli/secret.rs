//! `alknet secret init|unlock|lock|status`: the `secret` service's own operations, with
//! the passphrase and mnemonic read from the environment or a prompt — never an argument,
//! which other users of the machine could read in the process list.

use std::process::ExitCode;

use alknet_runtime::config::ConfigServiceImpl;
use serde_json::json;

use super::call::{self, CallRequest};
use super::{SecretCommand, Target, operator};
use crate::node::NodeBuilder;

/// Where the passphrase is read from before a prompt is shown.
const PASSPHRASE_VARIABLE: &str = "ALKNET_SECRET_PASSPHRASE";
/// Where `init --import` reads the mnemonic from before a prompt is shown.
const MNEMONIC_VARIABLE: &str = "ALKNET_SECRET_MNEMONIC";

pub fn run(
    command: SecretCommand,
    assemble: impl FnOnce(ConfigServiceImpl) -> NodeBuilder,
) -> Result<ExitCode, String> {
    let (operation, input, target) = match command {
        SecretCommand::Init { import, target } => {
            let passphrase = passphrase(true)?;
            let mnemonic = import.then(mnemonic).transpose()?;
            let input = json!({ "passphrase": passphrase, "mnemonic": mnemonic });
            (Operation::Init { import }, input, target)
        }
        SecretCommand::Unlock { target } => {
            in_a_running_node("unlock", &target)?;
            let input = json!({ "passphrase": passphrase(false)? });
            (Operation::Unlock, input, target)
        }
        SecretCommand::Lock { target } => {
            in_a_running_node("lock", &target)?;
            (Operation::Lock, json!({}), target)
        }
        SecretCommand::Status { target } => (Operation::Status, json!({}), target),
    };
    let code = call::run(
        CallRequest {
            operation: operation.id().to_string(),
            input,
            target,
            operator: Some(operator()),
        },
        assemble,
    )?;
    if let Operation::Init { import: false } = operation {
        eprintln!(
            "The mnemonic above is shown this once. Write it down and keep it offline: it restores the seed if the passphrase or the seed file is lost."
        );
    }
    Ok(code)
}

enum Operation {
    Init { import: bool },
    Unlock,
    Lock,
    Status,
}

impl Operation {
    fn id(&self) -> &'static str {
        match self {
            Operation::Init { .. } => "secret/init",
            Operation::Unlock => "secret/unlock",
            Operation::Lock => "secret/lock",
            Operation::Status => "secret/status",
        }
    }
}

/// Unlocking or locking the seed of a node in this process would end with the process.
fn in_a_running_node(command: &str, target: &Target) -> Result<(), String> {
    if target.is_running_node() {
        return Ok(());
    }
    Err(format!(
        "`secret {command}` acts on the seed of a running node: give --node (with --node-key), --http or --ws"
    ))
}

/// The passphrase: `ALKNET_SECRET_PASSPHRASE`, else asked on the terminal (twice when it
/// seals a new seed, so a typo does not seal it under a passphrase nobody knows).
fn passphrase(confirm: bool) -> Result<String, String> {
    if let Some(passphrase) = from_environment(PASSPHRASE_VARIABLE)? {
        return Ok(passphrase);
    }
    let passphrase = prompt("passphrase: ", PASSPHRASE_VARIABLE)?;
    if confirm && prompt("passphrase again: ", PASSPHRASE_VARIABLE)? != passphrase {
        return Err("the two passphrases differ: nothing was changed".to_string());
    }
    Ok(passphrase)
}

/// The mnemonic to import: `ALKNET_SECRET_MNEMONIC`, else asked on the terminal.
fn mnemonic() -> Result<String, String> {
    match from_environment(MNEMONIC_VARIABLE)? {
        Some(mnemonic) => Ok(mnemonic),
        None => prompt("mnemonic (12 to 24 words): ", MNEMONIC_VARIABLE),
    }
}

fn from_environment(variable: &str) -> Result<Option<String>, String> {
    match std::env::var(variable) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{variable} is not UTF-8")),
    }
}

/// Ask on the terminal without echoing what is typed.
fn prompt(question: &str, variable: &str) -> Result<String, String> {
    rpassword::prompt_password(question).map_err(|err| {
        format!("cannot ask on the terminal ({err}): set {variable} to give it without one")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_and_lock_need_a_running_node() {
        let err = in_a_running_node("unlock", &Target::default()).unwrap_err();
        assert!(err.contains("--node"), "{err}");
        let remote = Target {
            http: Some("http://127.0.0.1:1".into()),
            ..Target::default()
        };
        assert!(in_a_running_node("lock", &remote).is_ok());
    }
}
