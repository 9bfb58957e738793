//! QUIC between nodes: each node's Ed25519 identity, and mutual TLS that authenticates
//! both peers by key alone (no certificate authorities). The call protocol and the irpc
//! listener both speak it, each under its own ALPN.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use noq::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::{CallError, key_fingerprint};

/// The QUIC implementation, for the connections [`connect`] returns.
pub use noq;

/// A node's key and its self-signed certificate: how peers know the node.
///
/// The key is Ed25519; the node's name on the network is its key's fingerprint
/// ([`key_fingerprint`] of the raw 32-byte public key).
///
/// ```
/// use alknet_runtime::quic::NodeIdentity;
///
/// let node = NodeIdentity::generate().unwrap();
/// assert!(node.fingerprint().starts_with("ed25519:"));
/// let again = NodeIdentity::from_pem(&node.private_key_pem()).unwrap();
/// assert_eq!(again.fingerprint(), node.fingerprint());
/// ```
#[derive(Clone)]
pub struct NodeIdentity {
    key_der: Arc<[u8]>,
    key_pem: Arc<str>,
    certificate: CertificateDer<'static>,
    fingerprint: Arc<str>,
}

impl NodeIdentity {
    /// A fresh Ed25519 key.
    pub fn generate() -> Result<Self, CallError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(tls_setup)?;
        Self::from_key(key)
    }

    /// A key from its PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as
    /// [`NodeIdentity::private_key_pem`] writes it.
    pub fn from_pem(pem: &str) -> Result<Self, CallError> {
        let key = rcgen::KeyPair::from_pem(pem).map_err(tls_setup)?;
        if !key.is_compatible(&rcgen::PKCS_ED25519) {
            return Err(CallError::invalid_input(
                "a node key must be an Ed25519 key",
            ));
        }
        Self::from_key(key)
    }

    fn from_key(key: rcgen::KeyPair) -> Result<Self, CallError> {
        let params =
            rcgen::CertificateParams::new(vec!["alknet-node".to_string()]).map_err(tls_setup)?;
        let certificate = params.self_signed(&key).map_err(tls_setup)?;
        Ok(NodeIdentity {
            fingerprint: key_fingerprint(key.public_key_raw()).into(),
            key_der: key.serialize_der().into(),
            key_pem: key.serialize_pem().into(),
            certificate: certificate.der().clone(),
        })
    }

    /// The key's fingerprint, `ed25519:<64 hex digits>`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The private key as PKCS#8 PEM, to keep it across restarts.
    pub fn private_key_pem(&self) -> String {
        self.key_pem.to_string()
    }

    /// The self-signed certificate (DER) the node presents.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.to_vec()).into()
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Which server key a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerKey {
    /// Only the key with this fingerprint (`ed25519:…`).
    Pinned(String),
    /// Any Ed25519 key; the caller checks the connection's peer fingerprint itself.
    Any,
}

/// Transport knobs shared by every QUIC endpoint of a node.
///
/// A vanished peer is detected within `idle_timeout + keep_alive` (QUIC restarts the idle
/// timer on the last keep-alive sent): 800 ms with the defaults, right for a cluster on
/// one network; raise both on lossy links.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// How often an idle connection is pinged (200 ms).
    pub keep_alive: Duration,
    /// How long without a packet from the peer before the connection is declared lost (600 ms).
    pub idle_timeout: Duration,
    /// How long connecting may take (500 ms): a peer that does not complete the
    /// handshake by then is unreachable.
    pub handshake_timeout: Duration,
    /// How many streams (calls) a peer may have open on one connection at once (1024).
    pub max_concurrent_streams: u32,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            keep_alive: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(600),
            handshake_timeout: Duration::from_millis(500),
            max_concurrent_streams: 1024,
        }
    }
}

/// The turns a QUIC connection's callers take to open a stream and send a request.
///
/// noq keeps a connection's state behind one lock, which its driver also holds while it
/// sends packets. Many requests starting at once would each block a worker thread on that
/// lock, starving the tasks that carry the answers (docs/benchmarks.md: a batch of 64 took
/// 1.25× as long); waiting for a turn parks only the task. A caller waiting for a stream
/// credit keeps its turn, so callers get their streams in order.
#[derive(Debug, Default)]
pub(crate) struct Turns(tokio::sync::Mutex<()>);

/// One caller's turn; it ends when dropped.
pub(crate) struct Turn<'a>(Option<tokio::sync::MutexGuard<'a, ()>>);

impl Turns {
    /// Wait for the next turn.
    pub(crate) async fn take(&self) -> Turn<'_> {
        Turn(Some(self.0.lock().await))
    }
}

impl Turn<'_> {
    /// Run `write` in turn if it completes at its first poll; a write that has to wait
    /// (for flow control) gives up the turn first, so the next caller can start.
    pub(crate) async fn write<T>(&mut self, write: impl Future<Output = T>) -> T {
        let mut write = std::pin::pin!(write);
        match futures::poll!(write.as_mut()) {
            std::task::Poll::Ready(written) => written,
            std::task::Poll::Pending => {
                self.0 = None;
                write.await
            }
        }
    }
}

/// When a connection to a peer may be attempted again after attempts failed: at once
/// after a success, then after a delay that doubles with each failure in a row, from
/// [`Redial::FIRST_DELAY`] to [`Redial::MOST_DELAY`]. Calls made in between fail at once
/// with the last attempt's reason, so a peer that is away costs its callers no wait (and
/// the peer no burst of handshakes), and one that is back is reached within the longest
/// delay.
#[derive(Debug, Default)]
pub(crate) struct Redial(std::sync::Mutex<Option<Failed>>);

#[derive(Debug)]
struct Failed {
    reason: String,
    next_attempt: tokio::time::Instant,
    delay: Duration,
}

impl Redial {
    /// The delay after the first failure.
    pub(crate) const FIRST_DELAY: Duration = Duration::from_millis(100);
    /// The longest delay between two attempts.
    pub(crate) const MOST_DELAY: Duration = Duration::from_secs(2);

    /// Whether an attempt may be made now; if not, why the last one failed.
    pub(crate) fn ready(&self) -> Result<(), String> {
        match &*self.lock() {
            Some(failed) if tokio::time::Instant::now() < failed.next_attempt => {
                let wait = failed.next_attempt - tokio::time::Instant::now();
                Err(format!(
                    "{} (next attempt in {} ms)",
                    failed.reason,
                    wait.as_millis().max(1)
                ))
            }
            _ => Ok(()),
        }
    }

    /// How long until an attempt may be made.
    #[cfg(feature = "call")]
    pub(crate) fn wait(&self) -> Duration {
        self.lock().as_ref().map_or(Duration::ZERO, |failed| {
            failed
                .next_attempt
                .saturating_duration_since(tokio::time::Instant::now())
        })
    }

    /// Record that an attempt succeeded: the next may be made at once.
    pub(crate) fn succeeded(&self) {
        *self.lock() = None;
    }

    /// Record that an attempt failed, and why: the next waits for the delay.
    pub(crate) fn failed(&self, reason: String) {
        let mut state = self.lock();
        let delay = state
            .as_ref()
            .map_or(Self::FIRST_DELAY, |failed| failed.delay * 2)
            .min(Self::MOST_DELAY);
        *state = Some(Failed {
            reason,
            next_attempt: tokio::time::Instant::now() + delay,
            delay,
        });
    }

    /// Record an attempt's outcome.
    #[cfg(feature = "call")]
    pub(crate) fn record<T>(&self, outcome: &Result<T, CallError>) {
        match outcome {
            Ok(_) => self.succeeded(),
            Err(err) => self.failed(err.message.clone()),
        }
    }

    /// Why the last attempt failed, until one succeeds.
    pub(crate) fn last_failure(&self) -> Option<String> {
        self.lock().as_ref().map(|failed| failed.reason.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failed>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A server endpoint on `addr` presenting `identity`, accepting clients that present any
/// Ed25519 key (who the key belongs to is the identity provider's question) and speak one
/// of `alpns`.
pub(crate) fn server_endpoint(
    addr: SocketAddr,
    identity: &NodeIdentity,
    alpns: Vec<Vec<u8>>,
    config: &QuicConfig,
) -> Result<noq::Endpoint, CallError> {
    let provider = provider();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_setup)?
        .with_client_cert_verifier(Arc::new(AnyEd25519Key(provider)))
        .with_single_cert(vec![identity.certificate.clone()], identity.private_key())
        .map_err(tls_setup)?;
    tls.alpn_protocols = alpns;
    let crypto = QuicServerConfig::try_from(tls).map_err(tls_setup)?;
    let mut server = noq::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport(config)?);
    noq::Endpoint::server(server, addr).map_err(|e| {
        CallError::unavailable(format!("could not bind a QUIC endpoint to {addr}: {e}"))
    })
}

/// How a client presenting `identity` connects with `alpn`, accepting the server's key as
/// `peer` says.
pub(crate) fn client_config(
    identity: &NodeIdentity,
    peer: PeerKey,
    alpn: &[u8],
    config: &QuicConfig,
) -> Result<noq::ClientConfig, CallError> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerKey { provider, peer }))
        .with_client_auth_cert(vec![identity.certificate.clone()], identity.private_key())
        .map_err(tls_setup)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(tls_setup)?;
    let mut client = noq::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport(config)?);
    Ok(client)
}

/// A QUIC connection to the node at `addr` speaking `alpn`, pinned to its key
/// `server_fingerprint`, presenting `identity`: for protocols of your own beside alknet's.
pub async fn connect(
    addr: SocketAddr,
    server_fingerprint: &str,
    identity: &NodeIdentity,
    alpn: &[u8],
    config: &QuicConfig,
) -> Result<noq::Connection, CallError> {
    let client = client_config(
        identity,
        PeerKey::Pinned(server_fingerprint.to_string()),
        alpn,
        config,
    )?;
    let endpoint = client_endpoint(client, addr)?;
    endpoint
        .connect(addr, "alknet-node")
        .map_err(|e| CallError::unavailable(format!("could not connect to {addr}: {e}")))?
        .await
        .map_err(|e| CallError::unavailable(format!("could not connect to {addr}: {e}")))
}

/// A client-only endpoint on an ephemeral loopback-or-any port, connecting as `client`.
pub(crate) fn client_endpoint(
    client: noq::ClientConfig,
    server: SocketAddr,
) -> Result<noq::Endpoint, CallError> {
    let bind: SocketAddr = if server.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = noq::Endpoint::client(bind).map_err(|e| {
        CallError::unavailable(format!("could not open a QUIC client endpoint: {e}"))
    })?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

fn transport(config: &QuicConfig) -> Result<Arc<noq::TransportConfig>, CallError> {
    let mut transport = noq::TransportConfig::default();
    transport
        .keep_alive_interval(Some(config.keep_alive))
        .max_idle_timeout(Some(
            noq::IdleTimeout::try_from(config.idle_timeout).map_err(tls_setup)?,
        ))
        .max_concurrent_bidi_streams(config.max_concurrent_streams.into())
        .max_concurrent_uni_streams(0u32.into());
    Ok(Arc::new(transport))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_setup(err: impl fmt::Display) -> CallError {
    CallError::internal(format!(
        "the node's QUIC endpoint could not be set up: {err}"
    ))
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4): SEQUENCE, the
/// algorithm identifier 1.3.101.112, and the BIT STRING header of the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The raw 32-byte Ed25519 key of a certificate.
pub(crate) fn raw_ed25519_key(certificate: &CertificateDer<'_>) -> Result<[u8; 32], String> {
    let parsed = webpki::EndEntityCert::try_from(certificate)
        .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
    let spki = parsed.subject_public_key_info();
    spki.as_ref()
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .and_then(|key| <[u8; 32]>::try_from(key).ok())
        .ok_or_else(|| "the certificate's key is not an Ed25519 key".to_string())
}

pub(crate) fn peer_fingerprint(quic: &noq::Connection) -> Result<String, CallError> {
    let chain = quic
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| CallError::unauthenticated("the peer presented no certificate"))?;
    let certificate = chain
        .first()
        .ok_or_else(|| CallError::unauthenticated("the peer presented no certificate"))?;
    let key = raw_ed25519_key(certificate).map_err(CallError::unauthenticated)?;
    Ok(key_fingerprint(&key))
}

/// Both verifiers refuse TLS 1.2: the endpoints only offer 1.3.
fn tls12_refused() -> rustls::Error {
    rustls::Error::General("alknet requires TLS 1.3".into())
}

fn bad_certificate(reason: String) -> rustls::Error {
    rustls::Error::General(reason)
}

/// Clients must present an Ed25519 certificate; who its key belongs to is the identity
/// provider's question, asked per connection.
#[derive(Debug)]
struct AnyEd25519Key(Arc<CryptoProvider>);

impl ClientCertVerifier for AnyEd25519Key {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        raw_ed25519_key(end_entity).map_err(bad_certificate)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// A server's certificate is checked by its key alone: pinned, or any Ed25519 key.
#[derive(Debug)]
struct ServerKey {
    provider: Arc<CryptoProvider>,
    peer: PeerKey,
}

impl ServerCertVerifier for ServerKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = raw_ed25519_key(end_entity).map_err(bad_certificate)?;
        match &self.peer {
            PeerKey::Pinned(expected) if *expected != key_fingerprint(&key) => {
                Err(bad_certificate(format!(
                    "the peer's key is {}, not the pinned {expected}",
                    key_fingerprint(&key)
                )))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
