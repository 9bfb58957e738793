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
use alknet_runtime::call::{EventEnvelope, FrameError, FrameReader};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::service_path::IrpcProtocol;
use alknet_runtime::{Caller, Identity, OperationEnv, ResourceGrant, codes};
use alknet_storage::{StorageProtocol, StorageService};
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use serde_json::Value;

/// A target's body: bytes in, a panic only for a broken promise.
pub type Body = fn(&[u8]);

/// Every target, by the name its corpus folder has.
pub const TARGETS: &[(&str, Body)] = &[
    ("frames", frames),
    ("envelope", envelope),
    ("config", config),
    ("request_json", request_json),
    ("irpc_request", irpc_request),
    ("dns_query", dns_query),
    ("storage_input", storage_input),
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

/// The largest frame [`frames`] accepts: small, so inputs reach past it.
const FRAME_LIMIT: usize = 1024;

/// The call protocol's frame reader, reading the input (after its first byte) in reads whose
/// sizes the first byte chooses: the same frames as a reference decoder of the whole input,
/// and the same error where that one fails.
pub fn frames(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let (expected, expected_end) = reference_frames(stream);
    let reader = Reads::new(stream, seed);
    let mut frames = FrameReader::new(reader, FRAME_LIMIT);
    let mut read = Vec::new();
    let end = LOCAL.with(|(runtime, _)| {
        runtime.block_on(async {
            loop {
                match frames.next().await {
                    Ok(Some(frame)) => read.push(frame.to_vec()),
                    Ok(None) => return FrameEnd::Clean,
                    Err(FrameError::TooLarge { .. }) => return FrameEnd::TooLarge,
                    Err(FrameError::Truncated) => return FrameEnd::Truncated,
                    Err(err) => panic!("reading bytes in memory failed: {err}"),
                }
            }
        })
    });
    assert_eq!(
        read, expected,
        "the reader's frames differ from the reference's"
    );
    assert_eq!(
        end, expected_end,
        "the reader ended otherwise than the reference"
    );
}

/// How a stream of frames ends.
#[derive(Debug, PartialEq, Eq)]
enum FrameEnd {
    Clean,
    TooLarge,
    Truncated,
}

/// The frames of a whole stream, decoded at once, and how it ends.
fn reference_frames(mut stream: &[u8]) -> (Vec<Vec<u8>>, FrameEnd) {
    let mut frames = Vec::new();
    loop {
        let Some((prefix, rest)) = stream.split_first_chunk::<4>() else {
            let end = match stream.is_empty() {
                true => FrameEnd::Clean,
                false => FrameEnd::Truncated,
            };
            return (frames, end);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > FRAME_LIMIT {
            return (frames, FrameEnd::TooLarge);
        }
        if rest.len() < len {
            return (frames, FrameEnd::Truncated);
        }
        frames.push(rest[..len].to_vec());
        stream = &rest[len..];
    }
}

/// Bytes handed out in reads of sizes a seed chooses: 1 byte to 64 KiB, some at the read
/// buffer's edges.
struct Reads<'a> {
    rest: &'a [u8],
    state: u32,
}

impl<'a> Reads<'a> {
    fn new(bytes: &'a [u8], seed: u8) -> Self {
        Reads {
            rest: bytes,
            state: u32::from(seed) | 1,
        }
    }

    fn next_size(&mut self) -> usize {
        // xorshift: cheap, and the same sizes for the same seed, so a crash replays.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        const SIZES: [usize; 8] = [1, 3, 4, 5, 1023, 1024, 1025, 65536];
        match self.state % 4 {
            0 => SIZES[(self.state >> 8) as usize % SIZES.len()],
            _ => 1 + (self.state >> 8) as usize % 64,
        }
    }
}

impl tokio::io::AsyncRead for Reads<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let size = self.next_size().min(buf.remaining()).min(self.rest.len());
        let (now, later) = self.rest.split_at(size);
        buf.put_slice(now);
        self.rest = later;
        std::task::Poll::Ready(Ok(()))
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

thread_local! {
    /// A storage service in memory holding a graph `g` of three nodes and two edges, and a
    /// caller who may read and write it.
    static STORAGE: (tokio::runtime::Runtime, OperationEnv) = {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let env = OperationEnv::builder()
            .local(StorageProtocol::local(StorageService::in_memory().unwrap()))
            .build()
            .unwrap()
            .with_caller(Caller::new().identity(
                Identity::new("user:fuzz").with_resources([ResourceGrant::new("graph", ["read", "write"])]),
            ));
        runtime.block_on(async {
            let writes = serde_json::json!({"writes": [
                {"create_graph": {"graph": "g"}},
                {"create_node": {"graph": "g", "id": "a", "type": "t", "attributes": {"n": 1, "s": "x"}}},
                {"create_node": {"graph": "g", "id": "b", "type": "t", "attributes": {"n": 2}}},
                {"create_node": {"graph": "g", "id": "c", "type": "u"}},
                {"create_edge": {"graph": "g", "id": "e1", "type": "k", "from": "a", "to": "b"}},
                {"create_edge": {"graph": "g", "id": "e2", "type": "k", "from": "b", "to": "c"}},
            ]});
            let made = env.invoke("storage", "apply", writes).await;
            assert!(made.result.is_ok(), "{made:?}");
        });
        (runtime, env)
    };
}

/// JSON input to the `storage` service's listings (ids, types, filters, limits and page
/// cursors), reads and `update_node`: every answer is an output or a refusal the operation
/// declares (or `INVALID_INPUT`), never `INTERNAL`. Writes that add nodes are left out, so
/// a long campaign does not grow the database.
pub fn storage_input(data: &[u8]) {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    STORAGE.with(|(runtime, env)| {
        runtime.block_on(async {
            for operation in [
                "list_nodes",
                "neighbours",
                "list_graphs",
                "get_node",
                "get_edge",
                "update_node",
            ] {
                let reply = env.invoke("storage", operation, input.clone()).await;
                if let Err(err) = reply.result {
                    let declared = env
                        .operations()
                        .find(|op| op.namespace == "storage" && op.name == operation)
                        .is_some_and(|op| op.errors.iter().any(|e| e.code == err.code));
                    assert!(
                        declared || err.code == codes::INVALID_INPUT,
                        "storage/{operation} answered {err:?}"
                    );
                }
            }
        })
    });
}
