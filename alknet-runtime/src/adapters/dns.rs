//! The DNS adapter (hickory): `{op}.{namespace}.{zone} TXT?` over UDP (and TCP, for answers
//! too large for UDP).
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
//! - An answer larger than the client's UDP size (512 bytes, or its EDNS size) is sent as
//!   the header (with the truncation flag) and the question alone, so the client retries
//!   over TCP.
//! - Every answer for a name in the zone is authoritative (`AA`), whatever its response
//!   code; one for a name outside it (`REFUSED`) or a malformed query is not.

use std::io;
use std::time::Duration;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::rr::rdata::TXT;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use serde_json::Value;

use super::error_body;
use crate::{CallError, Caller, OperationEnv, RequestId, codes};

/// The zone operations are served under unless configured otherwise.
pub const DEFAULT_ZONE: &str = "alk.dev";

/// The largest UDP answer sent, whatever size a client's EDNS offers (the DNS flag day 2020
/// recommendation, which avoids IP fragmentation).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// The longest one TXT string may be.
const MAX_TXT_STRING: usize = 255;

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

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

    /// Answer queries on `udp` (and on `tcp`, if given) until the process ends.
    pub async fn serve(
        self,
        udp: tokio::net::UdpSocket,
        tcp: Option<tokio::net::TcpListener>,
    ) -> io::Result<()> {
        let mut server = Server::new(self);
        server.register_socket(udp);
        if let Some(tcp) = tcp {
            server.register_listener(tcp, TCP_IDLE, 16);
        }
        server.block_until_done().await.map_err(io::Error::other)
    }

    /// The answer to `request`: whether it is authoritative (the name is in the zone), a
    /// response code, and the TXT record's strings, if any.
    async fn answer(&self, request: &Request) -> (bool, ResponseCode, Option<Vec<String>>) {
        if request.metadata.op_code != OpCode::Query {
            return (false, ResponseCode::NotImp, None);
        }
        // The question as sent, with the case of its labels: base64url needs it.
        let mut decoder = BinDecoder::new(request.queries.as_bytes());
        let query = match (request.queries.len(), Query::read(&mut decoder)) {
            (1, Ok(query)) => query,
            _ => return (false, ResponseCode::FormErr, None),
        };
        let name = query.name();
        if !self.zone.zone_of(name) {
            return (false, ResponseCode::Refused, None);
        }
        let (code, strings) = self.answer_in_zone(request, &query).await;
        (true, code, strings)
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

#[async_trait::async_trait]
impl RequestHandler for DnsAdapter {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let (authoritative, code, strings) = self.answer(request).await;
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = authoritative;
        metadata.response_code = code;
        let mut records: Vec<Record> = match (strings, request.queries.queries().first()) {
            (Some(strings), Some(_)) => {
                let mut decoder = BinDecoder::new(request.queries.as_bytes());
                let name = Query::read(&mut decoder)
                    .map(|q| q.name().clone())
                    .unwrap_or_else(|_| self.zone.clone());
                vec![Record::from_rdata(name, 0, RData::TXT(TXT::new(strings)))]
            }
            _ => Vec::new(),
        };
        let edns = request.edns.as_ref().map(|offered| {
            let mut edns = Edns::new();
            edns.set_max_payload(offered.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns
        });
        // Truncated here rather than by hickory's encoder, which leaves the bytes of the
        // record that did not fit after the question: strict resolvers reject that.
        if request.protocol() == Protocol::Udp {
            let limit = edns.as_ref().map_or(512, Edns::max_payload);
            if encoded_size(request, &records, edns.as_ref()) > usize::from(limit) {
                records.clear();
                metadata.truncation = true;
            }
        }
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(metadata, records.iter(), [], [], []);
        match response_handle.send_response(response).await {
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

/// The size of the response to `request` carrying `records` and `edns`, as hickory encodes
/// it: the header, the question as sent, the records, the OPT record.
fn encoded_size(request: &Request, records: &[Record], edns: Option<&Edns>) -> usize {
    /// A DNS header, and an OPT record without options.
    const HEADER: usize = 12;
    const OPT: usize = 11;
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    let records = encoder
        .emit_all(records.iter())
        .map_or(usize::MAX, |_| bytes.len());
    HEADER
        .saturating_add(request.queries.as_bytes().len())
        .saturating_add(records)
        .saturating_add(if edns.is_some() { OPT } else { 0 })
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
