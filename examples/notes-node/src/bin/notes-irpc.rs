//! `notes-irpc ADDR FINGERPRINT KEY_FILE TEXT`: add a note on the notes node at `ADDR`
//! (whose key is `FINGERPRINT`) over its irpc listener, from this process, as the node key
//! in `KEY_FILE`; prints the note as JSON.

use std::process::ExitCode;

use alknet_runtime::OperationEnv;
use alknet_runtime::quic::{NodeIdentity, QuicConfig};
use alknet_runtime::service_path::connect;
use notes_node::{NotesClient, NotesProtocol};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match add_note(std::env::args().skip(1).collect()).await {
        Ok(note) => {
            println!("{note}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("notes-irpc: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn add_note(args: Vec<String>) -> Result<String, String> {
    let [addr, fingerprint, key_file, text] = <[String; 4]>::try_from(args)
        .map_err(|_| "usage: notes-irpc ADDR FINGERPRINT KEY_FILE TEXT".to_string())?;
    let addr = addr.parse().map_err(|err| format!("{addr}: {err}"))?;
    let pem = std::fs::read_to_string(&key_file).map_err(|err| format!("{key_file}: {err}"))?;
    let identity = NodeIdentity::from_pem(&pem).map_err(|err| err.message)?;
    let client = connect::<NotesProtocol>(addr, &fingerprint, &identity, &QuicConfig::default())
        .map_err(|err| err.message)?;
    let env = OperationEnv::builder()
        .local(NotesProtocol::service(client))
        .build()
        .map_err(|err| err.to_string())?;
    let note = NotesClient::new(env)
        .add(text)
        .await
        .map_err(|err| format!("{}: {}", err.code, err.message))?;
    alknet_runtime::serde_json::to_string(&note).map_err(|err| err.to_string())
}
