//! Three operations — a query, a query with a declared error, a subscription — declared
//! with alknet.

use alknet_runtime::futures::stream;
use alknet_runtime::prelude::*;

/// What `echo/say` answers.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    /// The text, unchanged.
    pub text: String,
    /// Its length in bytes.
    pub length: u64,
}

/// One item of `echo/ticks`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Counts from 1.
    pub n: u32,
}

/// Why `echo/shout` refused.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyText {
    /// How many whitespace characters the text had.
    pub whitespace: u64,
}

/// Echoes text back.
#[alk_service(namespace = "echo", version = "1.0.0")]
pub enum EchoProtocol {
    /// Echo the text back with its length.
    #[alk_operation(query, output = Echo)]
    Say {
        /// The text to echo.
        text: String,
    },

    /// Echo the text back in capitals; blank text is refused.
    #[alk_operation(
        query,
        output = String,
        error(code = "EMPTY_TEXT", status = 422, details = EmptyText, description = "the text is empty or only whitespace")
    )]
    Shout {
        /// The text to shout.
        text: String,
    },

    /// Count from 1 to `count`.
    #[alk_operation(subscription, item = Tick)]
    Ticks {
        /// How many ticks to send.
        count: u32,
    },
}

/// The `echo` service.
#[derive(Debug, Default)]
pub struct EchoService;

impl EchoHandler for EchoService {
    async fn say(&self, _ctx: &OperationContext, request: Say) -> Result<Echo, CallError> {
        let length = request.text.len() as u64;
        Ok(Echo {
            text: request.text,
            length,
        })
    }

    async fn shout(&self, _ctx: &OperationContext, request: Shout) -> Result<String, CallError> {
        if request.text.trim().is_empty() {
            let whitespace = request.text.chars().count() as u64;
            return Err(EchoErrors::empty_text(
                "there is nothing to shout",
                EmptyText { whitespace },
            ));
        }
        Ok(request.text.to_uppercase())
    }

    async fn ticks(
        &self,
        _ctx: &OperationContext,
        request: Ticks,
    ) -> Result<ItemStream<Tick>, CallError> {
        Ok(Box::pin(stream::iter((1..=request.count).map(|n| Ok(Tick { n })))))
    }
}
