//! The DNS adapter (hickory): `{op}.{namespace}.{zone} TXT?` over UDP, and over TCP on the
//! same port for answers too large for UDP.
//!
//! - `{op}.{namespace}.{zone}` calls the operation with no input (it must need no field);
//!   `{input}.{op}.{namespace}.{zone}` with `input` the base64url (RFC 4648 §5, padding
//!   optional) of the input's JSON — one label, so at most 63 characters (47 bytes of
//!   JSON). The label is case-sensitive: resolvers that randomise the case of names
//!   (0x20 encoding) cannot carry it.
//! - The answer is one TXT record whose strings, joined, are the output's JSON; each string
//!   is at most 255 bytes.
//! - A name in the zone that is not an operation DNS serves (unknown, internal, a
//!   subscription) is `NXDOMAIN`; a name outside the zone is `REFUSED`; another record type
//!   for an operation's name is an empty `NOERROR`.
//! - A failed call is one TXT record with the error body
//!   `{"error": {code, message, retryable, details, request_id}}` and the response code
//!   `REFUSED` for `UNAUTHENTICATED` and `FORBIDDEN` (DNS carries no credentials: callers
//!   are anonymous) and for `RESOURCE_EXHAUSTED` (a rate limit: the body's
//!   `details.retry_after_ms` says when to retry), `NXDOMAIN` for `NOT_FOUND`, `SERVFAIL`
//!   for every other code.
//! - Names in answers are compressed (RFC 1035 §4.1.4): the record's owner name is a
//!   pointer to the question's, 2 bytes.
//! - An answer larger than the client's UDP size (512 bytes, or its EDNS size) is sent as
//!   the header (with the truncation flag) and the question alone, so the client retries
//!   over TCP. One larger than a DNS message can be (65535 bytes) is that over TCP too,
//!   as `SERVFAIL`.
//! - Every answer for a name in the zone is authoritative (`AA`), whatever its response
//!   code; one for a name outside it (`REFUSED`) or a malformed query is not.
//!
//! [`DnsAdapter::serve`] runs its own UDP and TCP loops rather than hickory's `Server`:
//! hickory writes a response's question from the query's bytes and leaves no name there
//! for a record to point at, so its answers repeat the question's name in full.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::rr::rdata::TXT;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::error_body;
use crate::{CallError, Caller, OperationEnv, RequestId, codes};

/// The zone operations are served under unless configured otherwise.
pub const DEFAULT_ZONE: &str = "alk.dev";

/// The largest UDP answer sent, whatever size a client's EDNS offers (the DNS flag day 2020
/// recommendation, which avoids IP fragmentation).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// The longest one TXT string may be.
const MAX_TXT_STRING: usize = 255;

/// How long an idle TCP connection is kept, and how long one query or answer may take to
/// cross it.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The largest UDP query read (hickory's own server reads as much); a longer datagram is
/// cut there, so it does not parse and is answered `FORMERR`.
const MAX_UDP_QUERY: usize = 4096;

/// base64url, with or without padding.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Serves an [`OperationEnv`] over DNS. See the [module docs](self).
///
/// ```no_run
/// use alknet_example::{EchoProtocol, EchoService};
/// use alknet_runtime::OperationEnv;
/// use alknet_runtime::adapters::dns::DnsAdapter;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let env = OperationEnv::builder()
///     .local(EchoProtocol::local(EchoService::default()))
///     .build()
///     .unwrap();
/// let udp = tokio::net::UdpSocket::bind("127.0.0.1:5353").await?;
/// // dig @127.0.0.1 -p 5353 eyJ0ZXh0IjoiaGkifQ.say.echo.alk.dev TXT
/// DnsAdapter::new(env).zone("alk.dev")?.serve(udp, None).await
/// # }
/// ```
#[derive(Clone)]
pub struct DnsAdapter {
    env: OperationEnv,
    zone: Name,
    timeout: Duration,
}

impl DnsAdapter {
    /// An adapter for `env` under [`DEFAULT_ZONE`]; calls time out after 5 s.
    pub fn new(env: OperationEnv) -> Self {
        DnsAdapter {
            env,
            zone: Name::from_ascii(DEFAULT_ZONE).expect("the default zone is a valid name"),
            timeout: Duration::from_secs(5),
        }
    }

    /// Serve under `zone` (such as `ops.example.com`); refuses a name that is not valid DNS.
    pub fn zone(mut self, zone: &str) -> io::Result<Self> {
        let mut name = Name::from_ascii(zone).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the DNS zone `{zone}` is not a valid domain name: {err}"),
            )
        })?;
        name.set_fqdn(true);
        self.zone = name;
        Ok(self)
    }

    /// How long a call may take before it is cancelled and answered `TIMEOUT` (`SERVFAIL`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A UDP socket and a TCP listener on one address, as DNS clients expect (they retry a
    /// truncated answer over TCP at the same port).
    ///
    /// With port 0 the system picks the UDP port, which another process may already hold
    /// for TCP: then another UDP port is tried, up to 16 times, instead of failing with
    /// `AddrInUse`. A fixed port that is taken fails at once.
    pub async fn bind(
        address: std::net::SocketAddr,
    ) -> io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
        let mut attempts = 0;
        loop {
            let udp = tokio::net::UdpSocket::bind(address).await?;
            match tokio::net::TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => return Ok((udp, tcp)),
                Err(err)
                    if address.port() == 0
                        && err.kind() == io::ErrorKind::AddrInUse
                        && attempts < 16 =>
                {
                    attempts += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Answer queries on `udp` (and on `tcp`, if given) until the future is dropped, which
    /// ends every exchange in progress. Returns only if the UDP socket fails; a failed
    /// `accept` on `tcp` is waited out.
    pub async fn serve(self, udp: UdpSocket, tcp: Option<TcpListener>) -> io::Result<()> {
        let adapter = Arc::new(self);
        let udp = Arc::clone(&adapter).serve_udp(udp);
        match tcp {
            None => udp.await,
            Some(tcp) => tokio::select! {
                failed = udp => failed,
                never = adapter.serve_tcp(tcp) => match never {},
            },
        }
    }

    /// Answer each datagram on `udp`, each in its own task.
    async fn serve_udp(self: Arc<Self>, udp: UdpSocket) -> io::Result<()> {
        let udp = Arc::new(udp);
        let mut answering = JoinSet::new();
        let mut buffer = vec![0; MAX_UDP_QUERY];
        loop {
            let (length, src) = match udp.recv_from(&mut buffer).await {
                Ok(received) => received,
                // An ICMP error for an earlier answer, which some systems report here.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    continue;
                }
                Err(err) => return Err(err),
            };
            let (adapter, udp, query) = (
                Arc::clone(&self),
                Arc::clone(&udp),
                buffer[..length].to_vec(),
            );
            answering.spawn(async move {
                if let Some(answer) = adapter.respond(query, src, Protocol::Udp).await
                    && let Err(err) = udp.send_to(&answer, src).await
                {
                    tracing::warn!(%err, %src, "could not send a DNS answer");
                }
            });
            while answering.try_join_next().is_some() {}
        }
    }

    /// Answer the connections `tcp` accepts, each in its own task.
    async fn serve_tcp(self: Arc<Self>, tcp: TcpListener) -> Infallible {
        let mut connections = JoinSet::new();
        loop {
            match tcp.accept().await {
                Ok((stream, peer)) => {
                    connections.spawn(Arc::clone(&self).serve_connection(stream, peer));
                }
                Err(err) => super::wait_after_accept_error(err).await,
            }
            while connections.try_join_next().is_some() {}
        }
    }

    /// Answer one TCP connection's queries in turn, each framed by its length in 2 bytes
    /// (RFC 1035 §4.2.2), until the client closes it, breaks the framing, or takes longer
    /// than [`TCP_IDLE`] to send a query or to read an answer.
    async fn serve_connection(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        async fn read_query(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
            let mut query = vec![0; usize::from(stream.read_u16().await?)];
            stream.read_exact(&mut query).await?;
            Ok(query)
        }
        while let Ok(Ok(query)) = tokio::time::timeout(TCP_IDLE, read_query(&mut stream)).await {
            let Some(answer) = self.respond(query, peer, Protocol::Tcp).await else {
                continue;
            };
            let length = u16::try_from(answer.len())
                .expect("an answer is fitted to 65535 bytes")
                .to_be_bytes();
            let framed = [&length[..], &answer].concat();
            if !matches!(
                tokio::time::timeout(TCP_IDLE, stream.write_all(&framed)).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }

    /// The bytes answering `query`, one DNS message from `src` over `protocol`: names
    /// compressed, and fitted to the transport. `None` for a message that gets no answer:
    /// shorter than a header, or itself a response (answering those would let two servers
    /// bounce messages between them forever).
    async fn respond(
        &self,
        query: Vec<u8>,
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        let header = Header::read(&mut BinDecoder::new(&query)).ok()?;
        if header.metadata.message_type == MessageType::Response {
            return None;
        }
        let response = match Request::from_bytes(query, src, protocol) {
            Ok(request) => self.response(&request).await,
            Err(_) => response_to(&header.metadata, ResponseCode::FormErr),
        };
        Some(fit(response, protocol, NameEncoding::Compressed).1)
    }

    /// The response to `request`, before it is fitted to its transport.
    async fn response(&self, request: &Request) -> Message {
        // The question as sent, with the case of its labels: base64url needs it.
        let question = match request.queries.len() {
            1 => Query::read(&mut BinDecoder::new(request.queries.as_bytes())).ok(),
            _ => None,
        };
        let (authoritative, code, strings) = match &question {
            _ if request.metadata.op_code != OpCode::Query => (false, ResponseCode::NotImp, None),
            None => (false, ResponseCode::FormErr, None),
            Some(query) if !self.zone.zone_of(query.name()) => (false, ResponseCode::Refused, None),
            Some(query) => {
                let (code, strings) = self.answer_in_zone(request, query).await;
                (true, code, strings)
            }
        };
        let mut response = response_to(&request.metadata, code);
        response.metadata.authoritative = authoritative;
        if let Some(question) = question {
            if let Some(strings) = strings {
                let owner = question.name().clone();
                let record = Record::from_rdata(owner, 0, RData::TXT(TXT::new(strings)));
                response.answers.push(record);
            }
            response.queries.push(question);
        }
        response.edns = request.edns.as_ref().map(|offered| {
            let mut edns = Edns::new();
            edns.set_max_payload(offered.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns
        });
        response
    }

    /// The answer to `query`, a name in the zone.
    async fn answer_in_zone(
        &self,
        request: &Request,
        query: &Query,
    ) -> (ResponseCode, Option<Vec<String>>) {
        let name = query.name();
        let below = usize::from(name.num_labels() - self.zone.num_labels());
        let labels: Vec<&[u8]> = name.iter().take(below).collect();
        let (input, op, ns) = match labels.as_slice() {
            [op, ns] => (None, *op, *ns),
            [input, op, ns] => (Some(*input), *op, *ns),
            _ => return (ResponseCode::NXDomain, None),
        };
        let (Ok(ns), Ok(op)) = (std::str::from_utf8(ns), std::str::from_utf8(op)) else {
            return (ResponseCode::NXDomain, None);
        };
        let (ns, op) = (ns.to_ascii_lowercase(), op.to_ascii_lowercase());
        let served = self
            .env
            .spec(&ns, &op)
            .is_some_and(|spec| spec.bindings().dns_name.is_some());
        if !served {
            return (ResponseCode::NXDomain, None);
        }
        if query.query_type() != RecordType::TXT {
            return (ResponseCode::NoError, None);
        }
        let result = match input.map(decode_input).transpose() {
            Ok(input) => {
                let caller = Caller::new()
                    .transport("dns")
                    .peer_addr(request.src().ip().to_canonical())
                    .timeout(self.timeout);
                let reply = self
                    .env
                    .with_caller(caller)
                    .invoke(&ns, &op, input.unwrap_or(Value::Null))
                    .await;
                reply.result.map_err(|err| (err, reply.request_id))
            }
            Err(err) => Err((err, RequestId::next())),
        };
        match result {
            Ok(output) => (
                ResponseCode::NoError,
                Some(txt_strings(&output.to_string())),
            ),
            Err((err, request_id)) => {
                let code = match err.code.as_ref() {
                    codes::NOT_FOUND => ResponseCode::NXDomain,
                    codes::UNAUTHENTICATED | codes::FORBIDDEN | codes::RESOURCE_EXHAUSTED => {
                        ResponseCode::Refused
                    }
                    _ => ResponseCode::ServFail,
                };
                (
                    code,
                    Some(txt_strings(&error_body(&err, request_id).to_string())),
                )
            }
        }
    }
}

/// The adapter as a handler for hickory's own `Server` (its TLS, HTTPS and QUIC listeners
/// too): the answers of [`DnsAdapter::serve`], except that hickory writes the record's owner
/// name in full.
#[async_trait::async_trait]
impl RequestHandler for DnsAdapter {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        // Fitted uncompressed, it is as large as hickory writes it, which then cuts nothing.
        let (response, _) = fit(
            self.response(request).await,
            request.protocol(),
            NameEncoding::Uncompressed,
        );
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &response.edns {
            builder.edns(edns);
        }
        let message = builder.build(response.metadata, response.answers.iter(), [], [], []);
        match response_handle.send_response(message).await {
            Ok(info) => info,
            Err(err) => {
                tracing::warn!(%err, "could not send a DNS response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                Header {
                    metadata,
                    counts: HeaderCounts::default(),
                }
                .into()
            }
        }
    }
}

/// A response to the message with `query`'s header: its id, operation and flags, the
/// response code `code`, and no question or record yet.
fn response_to(query: &Metadata, code: ResponseCode) -> Message {
    let mut response = Message::response(query.id, query.op_code);
    response.metadata = Metadata::response_from_request(query);
    response.metadata.response_code = code;
    response
}

/// `response` as sent over `protocol` with its names encoded as `names` says, and its
/// encoding: whole if it fits — over UDP the client's size (512 bytes, or its EDNS size),
/// over TCP a DNS message's 65535 bytes — and otherwise the header and the question alone,
/// with the truncation flag over UDP, so the client retries over TCP, and as `SERVFAIL`
/// over TCP, where nothing larger fits.
fn fit(response: Message, protocol: Protocol, names: NameEncoding) -> (Message, Vec<u8>) {
    let limit = match protocol {
        Protocol::Udp => response.edns.as_ref().map_or(512, Edns::max_payload),
        _ => u16::MAX,
    };
    let encode = |message: &Message| {
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(limit);
        encoder.set_name_encoding(names);
        message.emit(&mut encoder).ok()?;
        // A record that does not fit is left out with the truncation flag set, and with
        // what was written of it still after the last record: never sent.
        let flagged = Header::read(&mut BinDecoder::new(&bytes))
            .ok()?
            .metadata
            .truncation;
        (flagged == message.metadata.truncation).then_some(bytes)
    };
    if let Some(bytes) = encode(&response) {
        return (response, bytes);
    }
    let mut shortened = response.truncate();
    if protocol != Protocol::Udp {
        shortened.metadata.truncation = false;
        shortened.metadata.response_code = ResponseCode::ServFail;
    }
    let bytes = encode(&shortened).expect("a header, a question and an OPT record fit 512 bytes");
    (shortened, bytes)
}

/// The input JSON of a base64url label.
fn decode_input(label: &[u8]) -> Result<Value, CallError> {
    let bytes = BASE64URL.decode(label).map_err(|err| {
        CallError::invalid_input(format!(
            "the input label is not base64url (RFC 4648 §5): {err}"
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|err| {
        CallError::invalid_input(format!("the input label does not decode to JSON: {err}"))
    })
}

/// `text` cut into strings of at most [`MAX_TXT_STRING`] bytes, at character boundaries.
fn txt_strings(text: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(MAX_TXT_STRING);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (head, tail) = rest.split_at(end);
        strings.push(head.to_string());
        rest = tail;
    }
    if strings.is_empty() {
        strings.push(String::new());
    }
    strings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_strings_are_at_most_255_bytes_and_join_back() {
        let text = "é".repeat(300);
        let strings = txt_strings(&text);
        assert!(strings.iter().all(|s| s.len() <= MAX_TXT_STRING));
        assert_eq!(strings.concat(), text);
        assert_eq!(txt_strings(""), vec![String::new()]);
    }

    #[test]
    fn input_labels_decode_with_or_without_padding() {
        assert_eq!(decode_input(b"eyJ0ZXh0IjoiaGkifQ").unwrap()["text"], "hi");
        assert_eq!(decode_input(b"eyJ0ZXh0IjoiaGkifQ==").unwrap()["text"], "hi");
        assert_eq!(
            decode_input(b"not base64!").unwrap_err().code,
            codes::INVALID_INPUT
        );
        assert_eq!(
            decode_input(b"bm9wZQ").unwrap_err().code,
            codes::INVALID_INPUT
        );
    }
}
