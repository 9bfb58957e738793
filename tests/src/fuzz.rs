//! The bodies of the fuzz targets in `fuzz/`. Each takes arbitrary bytes, drives one of the
//! node's parsers with them, and panics only if the parser broke a promise: it answered
//! something it should not have, or what it accepted does not survive a round trip. A
//! parser that refuses the bytes with an error is doing its job.
//!
//! `fuzz/` runs these under libFuzzer (nightly, `cargo fuzz`); `tests/fuzz_corpus.rs`
//! replays every corpus and every crash found, on stable, so a fixed crash stays fixed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::adapters::dns::DnsAdapter;
use alknet_runtime::call::EventEnvelope;
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::service_path::IrpcProtocol;
use alknet_runtime::{OperationEnv, codes};
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use serde_json::Value;

/// Every target, by the name its corpus folder has.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("envelope", envelope),
    ("config", config),
    ("request_json", request_json),
    ("irpc_request", irpc_request),
    ("dns_query", dns_query),
];

/// `EventEnvelope::decode`: what it accepts, written again, decodes to the same envelope.
pub fn envelope(data: &[u8]) {
    if let Ok(envelope) = EventEnvelope::decode(data) {
        let written = envelope.to_json();
        let again = EventEnvelope::decode(written.as_bytes())
            .unwrap_or_else(|err| panic!("an envelope it wrote does not decode: {err}"));
        assert_eq!(again, envelope, "the envelope changed in a round trip");
    }
}

/// The TOML configuration loader: a file is loaded or refused with a line inside the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = ConfigServiceImpl::from_text(text, "fuzz.toml") {
        let lines = text.lines().count().max(1) + 1;
        if let Some(line) = err.line {
            assert!(
                (1..=lines).contains(&line),
                "error on line {line} of {lines}: {err}"
            );
        }
        assert!(!err.message.is_empty(), "an error without a sentence");
    }
}

thread_local! {
    static LOCAL: (tokio::runtime::Runtime, OperationEnv) = (
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap(),
        OperationEnv::builder()
            .local(EchoProtocol::local(EchoService::default()))
            .build()
            .unwrap(),
    );
}

/// JSON input decoded into a generated request type (`echo/say`, `echo/shout`) through
/// `OperationEnv::invoke`: the call succeeds with the text it was given, or is refused as
/// `INVALID_INPUT` (or the operation's own `EMPTY_TEXT`).
pub fn request_json(data: &[u8]) {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    LOCAL.with(|(runtime, env)| {
        runtime.block_on(async {
            for operation in ["say", "shout"] {
                let reply = env.invoke("echo", operation, input.clone()).await;
                match reply.result {
                    Ok(output) => {
                        let text = input["text"].as_str().expect("accepted input has a text");
                        match operation {
                            "say" => assert_eq!(output["text"], text),
                            _ => assert_eq!(output, text.to_uppercase().as_str()),
                        }
                    }
                    Err(err) => assert!(
                        [codes::INVALID_INPUT, "EMPTY_TEXT"].contains(&err.code.as_ref()),
                        "echo/{operation} answered {err:?}"
                    ),
                }
            }
        })
    });
}

/// The irpc listener's request decoder (postcard, `EchoProtocol`'s wire type): what it
/// accepts encodes again to bytes that decode to the same encoding.
pub fn irpc_request(data: &[u8]) {
    type Wire = <EchoProtocol as IrpcProtocol>::Rpc;
    if let Ok(request) = postcard::from_bytes::<Wire>(data) {
        let encoded = postcard::to_stdvec(&request).expect("a decoded request encodes");
        let again: Wire = postcard::from_bytes(&encoded).expect("an encoded request decodes");
        assert_eq!(
            postcard::to_stdvec(&again).unwrap(),
            encoded,
            "the request changed in a round trip"
        );
    }
}

thread_local! {
    static DNS: DnsAdapter = LOCAL.with(|(_, env)| DnsAdapter::new(env.clone()));
}

/// A DNS message as the adapter receives it over UDP (hickory's parser, then the adapter's
/// reading of the name): every message that parses gets an answer that parses, for the
/// same id.
pub fn dns_query(data: &[u8]) {
    let from = SocketAddr::from(([192, 0, 2, 1], 5353));
    let Ok(request) = Request::from_bytes(data.to_vec(), from, Protocol::Udp) else {
        return;
    };
    let answer = Answer::default();
    LOCAL.with(|(runtime, _)| {
        DNS.with(|adapter| {
            runtime.block_on(
                adapter.handle_request::<_, hickory_server::net::runtime::TokioTime>(
                    &request,
                    answer.clone(),
                ),
            )
        })
    });
    let bytes = answer
        .0
        .lock()
        .unwrap()
        .take()
        .expect("the adapter answered");
    let message = Message::from_vec(&bytes).expect("the answer is a DNS message");
    assert_eq!(
        message.metadata.id, request.metadata.id,
        "the answer has another id"
    );
}

/// Where [`dns_query`] collects the adapter's answer, encoded as it would be sent.
#[derive(Clone, Default)]
struct Answer(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Answer {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::new();
        let info = response
            .destructive_emit(&mut BinEncoder::new(&mut bytes))
            .map_err(|err| NetError::from(err.to_string()))?;
        *self.0.lock().unwrap() = Some(bytes);
        Ok(info)
    }
}
