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

    /// The operation `labels` (below the zone, most specific first) name, and the input
    /// label before it if there is one: `say.echo` is `echo/say`, and `aGk.say.echo` is
    /// that with input `aGk`. Names without an input are tried first.
    fn operation_named<'a>(
        &self,
        labels: &[&'a [u8]],
    ) -> Option<(Option<&'a [u8]>, String, String)> {
        let (ns, below) = labels.split_last()?;
        let ns = std::str::from_utf8(ns).ok()?.to_ascii_lowercase();
        let env = self.env.latest();
        (0..=1).filter(|&skip| below.len() > skip).find_map(|skip| {
            let mut parts = Vec::with_capacity(below.len() - skip);
            for label in below[skip..].iter().rev() {
                parts.push(std::str::from_utf8(label).ok()?.to_ascii_lowercase());
            }
            let op = parts.join("/");
            let served = env
                .spec(&ns, &op)
                .is_some_and(|spec| spec.bindings().dns_name.is_some());
            served.then(|| ((skip == 1).then(|| below[0]), ns.clone(), op))
        })
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
        let Some((input, ns, op)) = self.operation_named(&labels) else {
            return (ResponseCode::NXDomain, None);
        };
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
        // hickory writes the owner name in full: fitted at that size, the response never
        // has hickory's encoder leave a record out (and its bytes behind, see `fit`).
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
        // hickory's encoder leaves out a record that does not fit and sets the truncation
        // flag, but keeps the bytes it wrote of the record after the last one: never sent.
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

/// How the adapter's responses encode: names compressed against the question without
/// changing a record, fitted to each transport.
#[cfg(test)]
mod encoding {
    use proptest::prelude::*;

    use super::*;

    /// Text of any size, for answers of any size.
    mod bulk {
        use crate::prelude::*;

        /// Makes text.
        #[alk_service(namespace = "bulk", version = "1.0.0")]
        pub enum BulkProtocol {
            /// `size` bytes of text.
            #[alk_operation(query, output = String)]
            Blob {
                /// How many bytes.
                size: usize,
            },
        }

        pub struct Bulk;

        impl BulkHandler for Bulk {
            async fn blob(&self, _: &OperationContext, req: Blob) -> Result<String, CallError> {
                Ok("abcdefghij".chars().cycle().take(req.size).collect())
            }
        }
    }

    /// Valid names of 0 to 4 random labels (any bytes, 1 to 63 of them) before a name in the
    /// zone, outside it, or an operation's with or without an input label, in either case;
    /// mostly ones answered with a record.
    fn names() -> impl Strategy<Value = Name> {
        let label = proptest::collection::vec(any::<u8>(), 1..=63);
        let prefix = prop_oneof![
            2 => Just(Vec::new()),
            1 => proptest::collection::vec(label.clone(), 1..=1),
            1 => proptest::collection::vec(label, 2..=4),
        ];
        let suffix = prop_oneof![
            1 => Just(String::new()),
            1 => Just("alk.dev".to_string()),
            2 => Just("blob.bulk.alk.dev".to_string()),
            1 => Just("blob.bulk.example.com".to_string()),
            4 => (0usize..3000).prop_map(|size| {
                let input = BASE64URL.encode(format!("{{\"size\":{size}}}"));
                format!("{input}.blob.bulk.alk.dev")
            }),
        ];
        (prefix, suffix, any::<bool>()).prop_filter_map(
            "longer than 255 bytes",
            |(prefix, suffix, upper)| {
                let suffix = if upper {
                    suffix.to_ascii_uppercase()
                } else {
                    suffix
                };
                let suffix = suffix.split('.').filter(|label| !label.is_empty());
                Name::from_labels(
                    prefix
                        .into_iter()
                        .chain(suffix.map(|l| l.as_bytes().to_vec())),
                )
                .ok()
            },
        )
    }

    fn record_types() -> impl Strategy<Value = RecordType> {
        prop_oneof![
            3 => Just(RecordType::TXT),
            1 => any::<u16>().prop_map(RecordType::from),
        ]
    }

    fn protocols() -> impl Strategy<Value = Protocol> {
        prop_oneof![Just(Protocol::Udp), Just(Protocol::Tcp)]
    }

    /// The raw labels of `name`, case kept (names compare without case).
    fn labels(name: &Name) -> Vec<Vec<u8>> {
        name.iter().map(<[u8]>::to_vec).collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn compressed_responses_decode_to_the_records_of_uncompressed_ones() {
        let runtime = runtime();
        let _entered = runtime.enter();
        let env = OperationEnv::builder()
            .local(bulk::BulkProtocol::local(bulk::Bulk))
            .build()
            .unwrap();
        let adapter = DnsAdapter::new(env);
        let src = SocketAddr::from(([192, 0, 2, 1], 5353));
        // How many cases were answered with a record, and how many were truncated.
        let (answered, truncated) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        proptest!(ProptestConfig::with_cases(1024), |(
            name in names(),
            record_type in record_types(),
            protocol in protocols(),
            payload in proptest::option::of(0u16..=4096),
            id in any::<u16>(),
        )| {
            let mut query = Message::query();
            query.metadata.id = id;
            query.queries.push(Query::query(name.clone(), record_type));
            query.edns = payload.map(|payload| {
                let mut edns = Edns::new();
                edns.set_max_payload(payload);
                edns
            });
            let request = Request::from_bytes(query.to_vec().unwrap(), src, protocol).unwrap();
            let response = runtime.block_on(adapter.response(&request));

            let (sent, compressed) = fit(response.clone(), protocol, NameEncoding::Compressed);
            let (sent_in_full, uncompressed) =
                fit(response.clone(), protocol, NameEncoding::Uncompressed);
            // hickory's parser reads back what each encoding meant to send...
            let decoded = Message::from_vec(&compressed).unwrap();
            prop_assert_eq!(&decoded, &sent);
            prop_assert_eq!(&Message::from_vec(&uncompressed).unwrap(), &sent_in_full);
            // ...and what fits in full fits compressed, as the same records, each owner name
            // 2 bytes instead of the question name's length.
            if sent_in_full == response {
                prop_assert_eq!(&sent, &response);
                let name_len = request.queries.as_bytes().len() - 4;
                let saved: usize = response.answers.iter().map(|_| name_len - 2).sum();
                prop_assert_eq!(compressed.len(), uncompressed.len() - saved);
            }
            if protocol == Protocol::Udp {
                let limit = response.edns.as_ref().map_or(512, Edns::max_payload);
                prop_assert!(compressed.len() <= usize::from(limit));
            }
            // Every owner name is the question's as sent, its case too, written as a
            // pointer to it right after the question.
            for record in &decoded.answers {
                prop_assert_eq!(labels(&record.name), labels(&name));
            }
            if !decoded.answers.is_empty() {
                let owner = 12 + request.queries.as_bytes().len();
                prop_assert_eq!(&compressed[owner..owner + 2], &[0xC0, 0x0C][..]);
                answered.set(answered.get() + 1);
            }
            if decoded.metadata.truncation {
                truncated.set(truncated.get() + 1);
            }
        });
        assert!(
            answered.get() > 0 && truncated.get() > 0,
            "{answered:?} {truncated:?}"
        );
    }

    #[test]
    fn a_response_gets_no_answer_and_a_malformed_query_formerr() {
        let runtime = runtime();
        let _entered = runtime.enter();
        let adapter = DnsAdapter::new(OperationEnv::builder().build().unwrap());
        let src = SocketAddr::from(([192, 0, 2, 1], 5353));
        let respond =
            |bytes: &[u8]| runtime.block_on(adapter.respond(bytes.to_vec(), src, Protocol::Udp));

        assert_eq!(respond(b"short"), None);
        let mut response = Message::response(7, OpCode::Query);
        response.queries.push(Query::query(
            Name::from_ascii("alk.dev.").unwrap(),
            RecordType::TXT,
        ));
        assert_eq!(respond(&response.to_vec().unwrap()), None);

        // A header announcing a question that is not there.
        let mut query = Message::query();
        query.metadata.id = 7;
        query
            .queries
            .push(Query::query(Name::root(), RecordType::TXT));
        let header = &query.to_vec().unwrap()[..12];
        let answer = Message::from_vec(&respond(header).unwrap()).unwrap();
        assert_eq!(answer.metadata.id, 7);
        assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
        assert!(!answer.metadata.authoritative);
    }
}
