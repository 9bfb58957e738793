//! `notary`: one operation that needs the whole cluster. It asks `auth` who the caller is,
//! has `secret` sign the text with the node's seed, keeps the note in `storage`, and has
//! `echo` repeat the text — wherever `[services]` places each of them. It knows them only
//! by their operations' names and JSON, as a service of another team would.

use alknet_runtime::prelude::*;
use alknet_runtime::serde_json::{Value, json};

/// The key the notary signs with: a hardened path of the node's seed.
pub const NOTARY_KEY_PATH: &str = "m/44'/1234'/7'";

/// The graph notes are kept in.
pub const NOTES_GRAPH: &str = "notary";

/// What `notary/notarize` answers.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notarized {
    /// The note's node id in the graph `notary`.
    pub id: String,
    /// Who asked, as `auth/whoami` answered.
    pub signer: String,
    /// The key that signed (hex), at [`NOTARY_KEY_PATH`].
    pub public_key: String,
    /// The Ed25519 signature of the text.
    pub signature: Binary,
    /// The text as `echo/say` repeated it.
    pub echoed: String,
}

/// Notes signed by the node's seed.
#[alk_service(
    namespace = "notary",
    version = "0.1.0",
    calls = ["auth/*", "secret/*", "storage/*", "echo/*"]
)]
pub enum NotaryProtocol {
    /// Notarize `text`: the caller (by `auth`), a signature by the seed (by `secret`, which
    /// must be unlocked), the note kept (by `storage`, in the graph `notary`, which needs
    /// `graph:write`), and the text echoed (by `echo`). Each runs as the caller.
    #[alk_operation(mutation, output = Notarized, scopes = ["notary:use"])]
    Notarize {
        /// The text to notarize.
        text: String,
    },
}

/// The `notary` service.
#[derive(Debug, Default)]
pub struct NotaryService;

/// The output of a nested call, or its error as the caller's.
async fn call(
    ctx: &OperationContext,
    namespace: &str,
    operation: &str,
    input: Value,
) -> Result<Value, CallError> {
    ctx.env().invoke(namespace, operation, input).await.result
}

impl NotaryHandler for NotaryService {
    async fn notarize(
        &self,
        ctx: &OperationContext,
        request: Notarize,
    ) -> Result<Notarized, CallError> {
        let who = call(ctx, "auth", "whoami", json!({})).await?;
        let signer = who["id"].as_str().unwrap_or("anonymous").to_string();
        let message = Binary(request.text.clone().into_bytes());
        let signed = call(
            ctx,
            "secret",
            "sign",
            json!({"path": NOTARY_KEY_PATH, "message": message}),
        )
        .await?;
        let signature: Binary = alknet_runtime::serde_json::from_value(signed["signature"].clone())
            .map_err(|err| {
                CallError::internal(format!("`secret/sign` answered no signature: {err}"))
            })?;
        let public_key = signed["public_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match call(
            ctx,
            "storage",
            "create_graph",
            json!({"graph": NOTES_GRAPH}),
        )
        .await
        {
            Err(err) if err.code != "ALREADY_EXISTS" => return Err(err),
            _ => {}
        }
        let id = ctx.request_id().to_string();
        let note = json!({
            "graph": NOTES_GRAPH,
            "id": id,
            "type": "note",
            "attributes": {"text": request.text, "signer": signer, "public_key": public_key, "signature": signature},
        });
        call(ctx, "storage", "create_node", note).await?;
        let echoed = call(ctx, "echo", "say", json!({"text": request.text})).await?;
        Ok(Notarized {
            id,
            signer,
            public_key,
            signature,
            echoed: echoed["text"].as_str().unwrap_or_default().to_string(),
        })
    }
}
