//! The call protocol over QUIC: node identities (self-signed Ed25519 certificates), the
//! endpoint, TLS that authenticates both peers by key, and the per-stream server loop.

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

use super::client::Connection;
use super::server::{CallServer, EventSink, Peer};
use super::wire::{
    ALPN, DEFAULT_MAX_FRAME_SIZE, Event, EventEnvelope, FrameError, read_frame, write_frame,
};
use crate::{CallError, Credential, key_fingerprint};

/// A node's key and its self-signed certificate: how peers know the node.
///
/// The key is Ed25519; the node's name on the network is its key's fingerprint
/// ([`key_fingerprint`] of the raw 32-byte public key).
///
/// ```
/// use alknet_runtime::call::NodeIdentity;
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

/// Limits and timeouts of the call protocol over QUIC.
///
/// A vanished peer is detected within `idle_timeout + keep_alive` (QUIC restarts the idle
/// timer on the last keep-alive sent): 800 ms with the defaults, right for a cluster on
/// one network; raise both on lossy links.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// The largest frame read or written (default 16 MiB).
    pub max_frame_size: usize,
    /// How long a query or mutation may take when the caller sets no timeout (30 s).
    pub default_timeout: Duration,
    /// How often an idle connection is pinged (200 ms).
    pub keep_alive: Duration,
    /// How long without a packet from the peer before the connection is declared lost (600 ms).
    pub idle_timeout: Duration,
    /// How many calls a peer may have open on one connection at once (1024).
    pub max_concurrent_calls: u32,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            default_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(600),
            max_concurrent_calls: 1024,
        }
    }
}

/// Which server key a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerKey {
    /// Only the key with this fingerprint (`ed25519:…`).
    Pinned(String),
    /// Any Ed25519 key; the caller checks [`Connection::peer_fingerprint`] itself.
    Any,
}

/// A QUIC endpoint speaking the call protocol (ALPN `alknet/call/1`): it accepts peers'
/// connections and makes its own, with one node identity for both.
///
/// ```no_run
/// use std::sync::Arc;
/// use alknet_runtime::{OperationEnv, StaticIdentities};
/// use alknet_runtime::call::{CallConfig, CallEndpoint, CallServer, NodeIdentity, PeerKey};
///
/// # async fn demo(env: OperationEnv, peer: std::net::SocketAddr, peer_key: String) -> Result<(), alknet_runtime::CallError> {
/// let endpoint = CallEndpoint::bind("127.0.0.1:0".parse().unwrap(), &NodeIdentity::generate()?, CallConfig::default())?;
/// let server = CallServer::new(env, Arc::new(StaticIdentities::new()));
/// endpoint.serve(server.clone());                              // accept peers' calls
/// let worker = endpoint.connect(peer, PeerKey::Pinned(peer_key)).await?;
/// worker.serve(server);                                       // and let that peer call back
/// let out = worker.call("/echo/say", serde_json::json!({"text": "hi"})).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CallEndpoint {
    endpoint: noq::Endpoint,
    identity: NodeIdentity,
    config: Arc<CallConfig>,
}

impl CallEndpoint {
    /// Bind `addr` (port 0 picks one), serving and calling as `identity`.
    pub fn bind(
        addr: SocketAddr,
        identity: &NodeIdentity,
        config: CallConfig,
    ) -> Result<Self, CallError> {
        let provider = provider();
        let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_setup)?
            .with_client_cert_verifier(Arc::new(AnyEd25519Key(provider)))
            .with_single_cert(vec![identity.certificate.clone()], identity.private_key())
            .map_err(tls_setup)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(tls).map_err(tls_setup)?;
        let mut server = noq::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport(&config)?);
        let endpoint = noq::Endpoint::server(server, addr).map_err(|e| {
            CallError::unavailable(format!("could not bind the call endpoint to {addr}: {e}"))
        })?;
        Ok(CallEndpoint {
            endpoint,
            identity: identity.clone(),
            config: Arc::new(config),
        })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// Connect to the node at `addr`, accepting its key as `peer` says.
    pub async fn connect(&self, addr: SocketAddr, peer: PeerKey) -> Result<Connection, CallError> {
        let provider = provider();
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_setup)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerKey { provider, peer }))
            .with_client_auth_cert(
                vec![self.identity.certificate.clone()],
                self.identity.private_key(),
            )
            .map_err(tls_setup)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(tls_setup)?;
        let mut client = noq::ClientConfig::new(Arc::new(crypto));
        client.transport_config(transport(&self.config)?);
        let connecting = self
            .endpoint
            .connect_with(client, addr, "alknet-node")
            .map_err(|e| CallError::unavailable(format!("could not connect to {addr}: {e}")))?;
        let quic = connecting
            .await
            .map_err(|e| CallError::unavailable(format!("could not connect to {addr}: {e}")))?;
        self.connection(quic)
    }

    /// The next peer that connects, once its TLS handshake (and key) checked out; `None`
    /// once the endpoint is closed.
    pub async fn accept(&self) -> Option<Result<Connection, CallError>> {
        let incoming = self.endpoint.accept().await?;
        let addr = incoming.remote_address();
        Some(match incoming.await {
            Ok(quic) => self.connection(quic),
            Err(e) => Err(CallError::unavailable(format!(
                "the connection from {addr} failed: {e}"
            ))),
        })
    }

    /// Accept every peer and serve `server` to each, on a task of its own.
    pub fn serve(&self, server: CallServer) -> tokio::task::JoinHandle<()> {
        let endpoint = self.clone();
        tokio::spawn(async move {
            while let Some(accepted) = endpoint.accept().await {
                match accepted {
                    Ok(connection) => {
                        connection.serve(server.clone());
                    }
                    Err(err) => tracing::debug!(%err, "a peer failed to connect"),
                }
            }
        })
    }

    /// Close every connection and stop accepting.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"endpoint closed");
    }

    fn connection(&self, quic: noq::Connection) -> Result<Connection, CallError> {
        let fingerprint = peer_fingerprint(&quic)?;
        Ok(Connection {
            quic,
            config: self.config.clone(),
            peer_fingerprint: fingerprint.into(),
        })
    }
}

/// Serve the calls a peer opens on `connection`, each stream on its own task.
pub(crate) async fn serve_connection(connection: Connection, server: CallServer) {
    let peer = Arc::new(
        server
            .resolve_peer(Some(Credential::KeyFingerprint(
                &connection.peer_fingerprint,
            )))
            .await,
    );
    while let Ok((send, recv)) = connection.quic.accept_bi().await {
        tokio::spawn(serve_stream(server.clone(), peer.clone(), send, recv));
    }
}

struct StreamSink<'a>(&'a mut noq::SendStream);

impl EventSink for StreamSink<'_> {
    async fn send(&mut self, event: EventEnvelope) -> std::io::Result<()> {
        write_frame(self.0, &event).await
    }
}

/// One call: `call.requested`, then the outcome, unless `call.aborted` comes first.
async fn serve_stream(
    server: CallServer,
    peer: Arc<Peer>,
    mut send: noq::SendStream,
    mut recv: noq::RecvStream,
) {
    let limit = server.frame_limit();
    let first = match read_frame(&mut recv, limit).await {
        Ok(Some(frame)) => EventEnvelope::decode(&frame).map_err(|err| {
            (
                err.id().unwrap_or_default().to_string(),
                err.to_call_error(),
            )
        }),
        Ok(None) => return,
        Err(FrameError::Io(_)) => return,
        Err(err) => Err((String::new(), err.to_call_error())),
    };
    let (id, request) = match first {
        Ok(EventEnvelope {
            id,
            event: Event::Requested(request),
        }) => (id, request),
        Ok(EventEnvelope { id, event }) => {
            let err = CallError::invalid_input(format!(
                "a call must start with `call.requested`, not `{}`",
                event.type_name()
            ));
            refuse(send, recv, id, err).await;
            return;
        }
        Err((id, err)) => {
            refuse(send, recv, id, err).await;
            return;
        }
    };
    let outcome = {
        let mut sink = StreamSink(&mut send);
        let call = server.run_call(&peer, &id, request, &mut sink);
        tokio::select! {
            () = call => None,
            why = watch_for_abort(&mut recv, limit) => why,
        }
    };
    if let Some(err) = outcome {
        let _ = write_frame(&mut send, &EventEnvelope::new(id, Event::Error(err))).await;
    }
    let _ = send.finish();
}

/// Resolves when the caller aborts the call (`call.aborted`, a reset stream, a lost
/// connection) — with an error to send back if it broke the protocol instead. A caller
/// that finishes its side of the stream after the request is waiting, not aborting.
async fn watch_for_abort(recv: &mut noq::RecvStream, limit: usize) -> Option<CallError> {
    match read_frame(recv, limit).await {
        Ok(Some(frame)) => match EventEnvelope::decode(&frame) {
            Ok(EventEnvelope {
                event: Event::Aborted,
                ..
            }) => None,
            Ok(EventEnvelope { event, .. }) => Some(CallError::invalid_input(format!(
                "only `call.aborted` may follow `call.requested` from the caller, not `{}`; the call was cancelled",
                event.type_name()
            ))),
            Err(err) => Some(err.to_call_error()),
        },
        Ok(None) => std::future::pending().await,
        Err(FrameError::Io(_)) => None,
        Err(err) => Some(err.to_call_error()),
    }
}

/// Answer a stream that did not start a call properly, and stop reading it.
async fn refuse(mut send: noq::SendStream, mut recv: noq::RecvStream, id: String, err: CallError) {
    let _ = recv.stop(0u32.into());
    let _ = write_frame(&mut send, &EventEnvelope::new(id, Event::Error(err))).await;
    let _ = send.finish();
    // Let the error reach the peer before the stream is dropped.
    let _ = send.stopped().await;
}

fn transport(config: &CallConfig) -> Result<Arc<noq::TransportConfig>, CallError> {
    let mut transport = noq::TransportConfig::default();
    transport
        .keep_alive_interval(Some(config.keep_alive))
        .max_idle_timeout(Some(
            noq::IdleTimeout::try_from(config.idle_timeout).map_err(tls_setup)?,
        ))
        .max_concurrent_bidi_streams(config.max_concurrent_calls.into())
        .max_concurrent_uni_streams(0u32.into());
    Ok(Arc::new(transport))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_setup(err: impl fmt::Display) -> CallError {
    CallError::internal(format!(
        "the call endpoint's TLS could not be set up: {err}"
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

fn peer_fingerprint(quic: &noq::Connection) -> Result<String, CallError> {
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
        Err(rustls::Error::General(
            "the call protocol requires TLS 1.3".into(),
        ))
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
        Err(rustls::Error::General(
            "the call protocol requires TLS 1.3".into(),
        ))
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
