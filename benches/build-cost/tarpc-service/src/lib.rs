//! Three operations — a query, a query with an error, and a list (tarpc has no streams) —
//! declared with tarpc.

use serde::{Deserialize, Serialize};

/// What `say` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The text, unchanged.
    pub text: String,
    /// Its length in bytes.
    pub length: u64,
}

/// One item of `ticks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// Counts from 1.
    pub n: u32,
}

/// Why `shout` refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyText {
    /// How many whitespace characters the text had.
    pub whitespace: u64,
}

/// Echoes text back.
#[tarpc::service]
pub trait Echoes {
    /// Echo the text back with its length.
    async fn say(text: String) -> Echo;
    /// Echo the text back in capitals; blank text is refused.
    async fn shout(text: String) -> Result<String, EmptyText>;
    /// Count from 1 to `count`.
    async fn ticks(count: u32) -> Vec<Tick>;
}

/// The service.
#[derive(Debug, Clone, Default)]
pub struct EchoService;

impl Echoes for EchoService {
    async fn say(self, _: tarpc::context::Context, text: String) -> Echo {
        let length = text.len() as u64;
        Echo { text, length }
    }

    async fn shout(self, _: tarpc::context::Context, text: String) -> Result<String, EmptyText> {
        if text.trim().is_empty() {
            let whitespace = text.chars().count() as u64;
            return Err(EmptyText { whitespace });
        }
        Ok(text.to_uppercase())
    }

    async fn ticks(self, _: tarpc::context::Context, count: u32) -> Vec<Tick> {
        (1..=count).map(|n| Tick { n }).collect()
    }
}
