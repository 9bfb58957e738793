//! `echo`: the smallest service that shows every kind of operation. The docs and the tests
//! use it. Beside it, [`notary`]: one operation that calls across a cluster.
//!
//! ```
//! use alknet_example::{EchoClient, EchoProtocol, EchoService};
//! use alknet_runtime::OperationEnv;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let env = OperationEnv::builder()
//!     .local(EchoProtocol::local(EchoService::default()))
//!     .build()
//!     .unwrap();
//! let echo = EchoClient::new(env);
//! assert_eq!(echo.say("hi".into()).await.unwrap().length, 2);
//! # }
//! ```

#![deny(missing_docs, warnings)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alknet_runtime::futures::{StreamExt, stream};
use alknet_runtime::prelude::*;

pub mod notary;

pub use notary::{NotaryClient, NotaryProtocol, NotaryService};

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

/// One item of `echo/blobs`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Counts from 1.
    pub n: u32,
    /// `size` bytes of text.
    pub text: String,
}

/// The largest item `echo/blobs` sends: 4 MiB, well within the call protocol's frame limit.
pub const MAX_BLOB_SIZE: u32 = 4 * 1024 * 1024;

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

    /// Count from 1 to `count`, one tick every `interval_ms` milliseconds.
    #[alk_operation(subscription, item = Tick)]
    Ticks {
        /// How many ticks to send.
        count: u32,
        /// The pause between ticks.
        #[serde(default)]
        interval_ms: u64,
    },

    /// How many calls this service has served.
    #[alk_operation(query, output = u64, scopes = ["echo:admin"])]
    Served,

    /// Send `count` items of `size` bytes of text each (at most 4 MiB): large items, to
    /// see that they cross every transport whole.
    #[alk_operation(subscription, item = Blob)]
    Blobs {
        /// How many items to send.
        count: u32,
        /// The length of each item's text, in bytes; at most 4194304.
        size: u32,
    },
}

/// The `echo` service.
#[derive(Debug, Default)]
pub struct EchoService {
    served: AtomicU64,
}

impl EchoService {
    fn count(&self) -> u64 {
        self.served.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl EchoHandler for EchoService {
    async fn say(&self, _ctx: &OperationContext, request: Say) -> Result<Echo, CallError> {
        self.count();
        let length = request.text.len() as u64;
        Ok(Echo {
            text: request.text,
            length,
        })
    }

    async fn shout(&self, _ctx: &OperationContext, request: Shout) -> Result<String, CallError> {
        self.count();
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
        self.count();
        let interval = Duration::from_millis(request.interval_ms);
        let ticks = stream::iter(1..=request.count).then(move |n| async move {
            if !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            Ok(Tick { n })
        });
        Ok(Box::pin(ticks))
    }

    async fn served(&self, _ctx: &OperationContext, _request: Served) -> Result<u64, CallError> {
        Ok(self.count())
    }

    async fn blobs(
        &self,
        _ctx: &OperationContext,
        request: Blobs,
    ) -> Result<ItemStream<Blob>, CallError> {
        self.count();
        if request.size > MAX_BLOB_SIZE {
            return Err(CallError::invalid_input(format!(
                "size is {}: an item is at most {MAX_BLOB_SIZE} bytes",
                request.size
            )));
        }
        let size = request.size as usize;
        // Each item's text differs from the next, so a reader that mixed up items would show.
        let blobs = stream::iter(1..=request.count).map(move |n| {
            let letter = char::from(b'a' + (n % 26) as u8);
            Ok(Blob {
                n,
                text: letter.to_string().repeat(size),
            })
        });
        Ok(Box::pin(blobs))
    }
}
