//! irpc over QUIC between processes: peers are authenticated by key before any request is
//! read, a lost peer fails calls at once, and limits hold per stream; and, against a
//! listener in this process, what a peer's requests may do follows from its key alone
//! (cluster node or outside caller). (Envelope parity, cancellation and concurrency over
//! QUIC run in `paths.rs`, on every path.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use alknet_config::{ConfigClient, ConfigProtocol, Reload};
use alknet_example::{EchoClient, EchoProtocol, EchoService};
use alknet_runtime::config::{ConfigServiceImpl, ReloadPart};
use alknet_runtime::irpc;
use alknet_runtime::quic::{NodeIdentity, QuicConfig};
use alknet_runtime::service_path::{Call, CallMeta, IrpcProtocol, connect};
use alknet_runtime::{CallError, Caller, Identity, OperationEnv, RequestId, codes};
use alknet_tests::gate::{Gate, GateClient, GateProtocol, Seen, Whoami};
use alknet_tests::probe::{ProbeClient, ProbeProtocol};
use alknet_tests::vault::{Peek, Read, Vault, VaultClient, VaultProtocol};

mod support;

use support::NodeProcess;

/// An `irpc-node` serving `probe` and `echo` to `allow`'s key, with `extra` flags.
fn irpc_node(allow: &NodeIdentity, extra: &[&str]) -> NodeProcess {
    let mut flags = vec!["--allow".to_string(), allow.fingerprint().to_string()];
    flags.extend(extra.iter().map(|s| s.to_string()));
    NodeProcess::spawn(Path::new(env!("CARGO_BIN_EXE_irpc-node")), &flags)
}

/// A QUIC connection to `node`'s `echo` (its ALPN) as `identity`, to write raw requests on.
async fn raw_echo_connection(
    node: &NodeProcess,
    identity: &NodeIdentity,
) -> alknet_runtime::call::noq::Connection {
    alknet_runtime::quic::connect(
        node.addr,
        &node.fingerprint,
        identity,
        &alknet_runtime::service_path::alpn::<EchoProtocol>(),
        &QuicConfig::default(),
    )
    .await
    .unwrap()
}

/// An env that reaches `node`'s `probe` and `echo` over irpc, connecting as `identity`.
fn irpc_env(node: &NodeProcess, identity: &NodeIdentity) -> OperationEnv {
    let config = QuicConfig::default();
    let probe = connect::<ProbeProtocol>(node.addr, &node.fingerprint, identity, &config).unwrap();
    let echo = connect::<EchoProtocol>(node.addr, &node.fingerprint, identity, &config).unwrap();
    OperationEnv::builder()
        .local(ProbeProtocol::service(probe))
        .local(EchoProtocol::service(echo))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_peer_is_served_over_quic() {
    let client = NodeIdentity::generate().unwrap();
    let node = irpc_node(&client, &[]);
    let echo = EchoClient::new(irpc_env(&node, &client));
    assert_eq!(echo.say("over quic".into()).await.unwrap().length, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_before_any_request_is_read() {
    let allowed = NodeIdentity::generate().unwrap();
    let stranger = NodeIdentity::generate().unwrap();
    let node = irpc_node(&allowed, &[]);
    let err = EchoClient::new(irpc_env(&node, &stranger))
        .say("let me in".into())
        .await
        .unwrap_err();
    assert_eq!(err.code, codes::UNAVAILABLE, "{err}");
    assert!(
        err.message.contains("not allowed"),
        "the refusal says why: {}",
        err.message
    );
    // The allowed key still gets in.
    assert!(
        EchoClient::new(irpc_env(&node, &allowed))
            .say("me".into())
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_call_fails_the_call_with_unavailable_within_a_second() {
    let client = NodeIdentity::generate().unwrap();
    let mut node = irpc_node(&client, &[]);
    let probe = ProbeClient::new(irpc_env(&node, &client));
    assert!(probe.ids(false).await.is_ok(), "connected");
    let pending = tokio::spawn(async move { probe.hang(0, false).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    node.kill();
    let killed = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the call ends");
    let err: CallError = outcome.unwrap().unwrap_err();
    assert_eq!(err.code, codes::UNAVAILABLE, "{err}");
    assert!(err.retryable);
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "took {:?}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_refused_and_the_connections_other_calls_carry_on() {
    let client = NodeIdentity::generate().unwrap();
    let node = irpc_node(&client, &["--max-request", "1024"]);
    let env = irpc_env(&node, &client);
    let probe = ProbeClient::new(env.clone());
    let echo = EchoClient::new(env);
    let hanging = {
        let probe = probe.clone();
        tokio::spawn(async move { probe.hang(0, false).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = echo.say("x".repeat(4096)).await.unwrap_err();
    assert_eq!(err.code, codes::RESOURCE_EXHAUSTED, "{err}");
    assert!(!err.retryable);
    assert!(
        err.message.contains("1024"),
        "names the limit: {}",
        err.message
    );
    assert!(
        echo.say("small".into()).await.is_ok(),
        "the next call works"
    );
    assert!(
        !hanging.is_finished(),
        "the call in flight was not disturbed"
    );
    hanging.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_stream_window_arrives_whole_beside_small_calls() {
    let client = NodeIdentity::generate().unwrap();
    let node = irpc_node(&client, &[]);
    let echo = EchoClient::new(irpc_env(&node, &client));
    // 4 MiB: more than QUIC lets one stream send before the peer grants more, so the
    // request is written in parts, after the requests that started with it have their turn.
    let large = tokio::spawn({
        let echo = echo.clone();
        async move { echo.say("a".repeat(4 << 20)).await }
    });
    let small = futures::future::join_all((0..16).map(|i| echo.say("x".repeat(i)))).await;
    for (i, answer) in small.into_iter().enumerate() {
        assert_eq!(answer.unwrap().length, i as u64);
    }
    assert_eq!(large.await.unwrap().unwrap().length, 4 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_request_gets_invalid_input_on_its_own_stream() {
    let client = NodeIdentity::generate().unwrap();
    let node = irpc_node(&client, &[]);
    let connection = raw_echo_connection(&node, &client).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    // A length prefix of 4, then four bytes that are no `EchoProtocolRpc`.
    send.write_all(&[4, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    send.finish().unwrap();
    let answer = recv.read_to_end(64 * 1024).await.unwrap();
    let (length, body) = postcard::take_from_bytes::<u64>(&answer).unwrap();
    assert_eq!(length as usize, body.len());
    let refused: Result<(), CallError> = postcard::from_bytes(body).unwrap();
    let err = refused.unwrap_err();
    assert_eq!(err.code, codes::INVALID_INPUT, "{err}");
    // The connection still serves the protocol.
    assert!(
        EchoClient::new(irpc_env(&node, &client))
            .say("still".into())
            .await
            .is_ok()
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_announce_the_limit_and_send_a_few_bytes_cost_what_arrived() {
    let client = NodeIdentity::generate().unwrap();
    let node = irpc_node(&client, &[]);
    let connection = raw_echo_connection(&node, &client).await;
    let echo = EchoClient::new(irpc_env(&node, &client));
    echo.say("warm".into()).await.unwrap();
    let before = node.virtual_memory_bytes();
    // 32 requests that each announce 16 MiB, the limit, and send three bytes of it: a
    // buffer of the announced size would be 512 MiB.
    let announced = postcard::to_stdvec(&(16u64 << 20)).unwrap();
    let mut streams = Vec::new();
    for _ in 0..32 {
        let (mut send, recv) = connection.open_bi().await.unwrap();
        send.write_all(&announced).await.unwrap();
        send.write_all(b"abc").await.unwrap();
        streams.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        echo.say("meanwhile".into()).await.is_ok(),
        "the node serves others"
    );
    let grown = node.virtual_memory_bytes().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "the node's memory grew by {} MiB for 96 bytes",
        grown >> 20
    );
    // A request that ends early says how much of it arrived.
    let (mut send, recv) = streams.pop().unwrap();
    send.finish().unwrap();
    let err = refusal(recv).await;
    assert_eq!(err.code, codes::INVALID_INPUT, "{err}");
    assert!(
        err.message.contains("3 of the 16777216 bytes"),
        "{}",
        err.message
    );
}

/// The error a listener answered a stream with.
async fn refusal(mut recv: alknet_runtime::irpc::rpc::noq::RecvStream) -> CallError {
    let answer = recv.read_to_end(64 * 1024).await.unwrap();
    let (length, body) = postcard::take_from_bytes::<u64>(&answer).unwrap();
    assert_eq!(length as usize, body.len());
    let refused: Result<(), CallError> = postcard::from_bytes(body).unwrap();
    refused.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_has_as_many_requests_in_flight_as_its_stream_limit_and_the_next_waits() {
    let key = NodeIdentity::generate().unwrap();
    let node = TrustNode::start_with(
        "[irpc]\nmax_concurrent_streams = 2\n",
        &key_entry(&key, "app:busy", false),
    )
    .await;
    let remote = GateClient::new(node.env(&key));
    let here = GateClient::new(node.node.env().clone());
    let started = || {
        let here = here.clone();
        async move { here.counts().await.unwrap().started }
    };

    // At the limit: both requests are in flight.
    let hang = || {
        let remote = remote.clone();
        tokio::spawn(async move { remote.hang().await })
    };
    let first = hang();
    let _second = hang();
    until_async("two requests run", || async { started().await == 2 }).await;
    // One over: it waits for a stream rather than reaching the node.
    let _third = hang();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(started().await, 2, "the third request waits for a stream");
    // When one ends, the waiting one runs.
    first.abort();
    until_async("the third request runs", || async { started().await == 3 }).await;
}

/// Wait until `condition` holds, failing after 5 s.
async fn until_async<F: std::future::Future<Output = bool>>(what: &str, condition: impl Fn() -> F) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

// ---- who a peer is: its key decides (SPEC §5), tested against a listener in this process ----

/// A node in this process ([`alknet::Node`]): `echo`, `gate`, `vault` and its own `config`
/// behind the node's policy over its configuration file, served by its irpc listener on
/// loopback to the keys the file's `[[public_keys]]` allow.
struct TrustNode {
    node: alknet::Node,
    listeners: alknet::Listeners,
    file: PathBuf,
    /// The file's static part (the listen address, the node's key), which reloads keep.
    statics: String,
}

/// The listener's node key, which forwarded calls present to peers.
fn node_key() -> &'static NodeIdentity {
    static KEY: OnceLock<NodeIdentity> = OnceLock::new();
    KEY.get_or_init(|| NodeIdentity::generate().unwrap())
}

/// `[[public_keys]]`: `key` proves itself as `who`, scoped `echo:admin`; a cluster node or not.
fn key_entry(key: &NodeIdentity, who: &str, cluster: bool) -> String {
    format!(
        "[[public_keys]]\nfingerprint = \"{}\"\nidentity = \"{who}\"\nscopes = [\"echo:admin\"]\ncluster = {cluster}\n\n",
        key.fingerprint()
    )
}

impl TrustNode {
    async fn start(dynamic: &str) -> TrustNode {
        TrustNode::start_with("", dynamic).await
    }

    /// [`TrustNode::start`] with more static settings (`[irpc]` limits).
    async fn start_with(statics: &str, dynamic: &str) -> TrustNode {
        static N: AtomicUsize = AtomicUsize::new(0);
        let file = std::env::temp_dir().join(format!(
            "alknet-irpc-trust-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let key = support::key_file(node_key());
        let statics =
            format!("[node]\nkey = {key:?}\n[listen]\nirpc = \"127.0.0.1:0\"\n{statics}\n");
        std::fs::write(&file, format!("{statics}{dynamic}")).unwrap();
        let node = alknet::Node::builder(ConfigServiceImpl::from_file(&file).unwrap())
            .local(EchoProtocol::local(EchoService::default()))
            .local(GateProtocol::local(Gate::default()))
            .local(VaultProtocol::local(Vault))
            .without_auth()
            .without_storage()
            .build()
            .unwrap();
        std::fs::remove_file(key).ok();
        let listeners = node.start().await.unwrap();
        TrustNode {
            node,
            listeners,
            file,
            statics,
        }
    }

    fn reload(&self, dynamic: &str) {
        std::fs::write(&self.file, format!("{}{dynamic}", self.statics)).unwrap();
        self.node.config().reload(ReloadPart::All).unwrap();
    }

    /// A raw irpc client of `P` on this node, connecting as `key`: it writes whatever
    /// `CallMeta` it likes.
    fn client<P: IrpcProtocol>(&self, key: &NodeIdentity) -> irpc::Client<P::Rpc> {
        connect::<P>(
            self.listeners.address("irpc").unwrap(),
            self.node.identity().fingerprint(),
            key,
            &QuicConfig::default(),
        )
        .unwrap()
    }

    /// An env that reaches this node's services over irpc, connecting as `key`.
    fn env(&self, key: &NodeIdentity) -> OperationEnv {
        OperationEnv::builder()
            .local(EchoProtocol::service(self.client::<EchoProtocol>(key)))
            .local(GateProtocol::service(self.client::<GateProtocol>(key)))
            .local(VaultProtocol::service(self.client::<VaultProtocol>(key)))
            .local(ConfigProtocol::service(self.client::<ConfigProtocol>(key)))
            .build()
            .unwrap()
    }
}

impl Drop for TrustNode {
    fn drop(&mut self) {
        std::fs::remove_file(&self.file).ok();
    }
}

/// What a caller writes into a request: the identity and `forwarded_for` it claims.
fn meta(identity: Option<Identity>, forwarded_for: Option<&str>) -> CallMeta {
    CallMeta {
        request_id: RequestId::next(),
        parent_request_id: None,
        identity: identity.map(Arc::new),
        forwarded_for: forwarded_for.map(Arc::from),
        timeout_ms: None,
    }
}

/// `user:root`, with every scope the node's operations ask for.
fn root() -> Identity {
    Identity::new("user:root").with_scopes(["config:admin", "vault:read", "vault:admin", "root"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_key_runs_as_its_own_identity_whatever_its_requests_assert() {
    let outsider = NodeIdentity::generate().unwrap();
    let node = TrustNode::start(&key_entry(&outsider, "app:outside", false)).await;
    let generation = node.node.config().snapshot().generation;

    // A forged `user:root` with `config:admin` calls `config/reload`: the key's identity
    // (scoped `echo:admin` only) is what the node checks.
    let config = node.client::<ConfigProtocol>(&outsider);
    for _ in 0..3 {
        let reloaded: Result<_, CallError> = config
            .rpc(Call {
                meta: meta(Some(root()), None),
                request: Reload {},
            })
            .await
            .unwrap();
        let err = reloaded.unwrap_err();
        assert_eq!(err.code, codes::FORBIDDEN, "{err}");
        assert!(err.message.contains("config:admin"), "{}", err.message);
    }
    assert_eq!(
        node.node.config().snapshot().generation,
        generation,
        "nothing was reloaded"
    );
    // The same through the generated client over an env whose caller is the forgery.
    let forged = node
        .env(&outsider)
        .with_caller(Caller::new().identity(root()).forwarded_for("user:root"));
    let err = ConfigClient::new(forged.clone())
        .reload()
        .await
        .unwrap_err();
    assert_eq!(err.code, codes::FORBIDDEN, "{err}");
    let err = VaultClient::new(forged.clone()).read().await.unwrap_err();
    assert_eq!(err.code, codes::FORBIDDEN, "{err}");

    // The call runs as the key's identity, and its `forwarded_for` is dropped.
    let seen = GateClient::new(forged).whoami().await.unwrap();
    assert_eq!(seen.identity.as_deref(), Some("app:outside"));
    assert_eq!(seen.forwarded_for, None);
    let seen: Result<Seen, CallError> = node
        .client::<GateProtocol>(&outsider)
        .rpc(Call {
            meta: meta(None, Some("user:root")),
            request: Whoami {},
        })
        .await
        .unwrap();
    assert_eq!(
        seen.unwrap(),
        Seen {
            identity: Some("app:outside".into()),
            forwarded_for: None
        },
        "asserting no identity is not a way to be anonymous either"
    );

    // An internal operation does not exist for an outside caller, whoever it claims to be.
    let peeked: Result<String, CallError> = node
        .client::<VaultProtocol>(&outsider)
        .rpc(Call {
            meta: meta(Some(root()), None),
            request: Peek {},
        })
        .await
        .unwrap();
    let err = peeked.unwrap_err();
    assert_eq!(err.code, codes::NOT_FOUND, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_keys_irpc_calls_pass_the_rate_limits_and_the_forwarding_policy() {
    let outsider = NodeIdentity::generate().unwrap();
    // Peer `b` speaks the call protocol and knows this node as the cluster node `node:a`.
    let b = alknet::Node::builder(
        ConfigServiceImpl::from_text(
            format!(
                "[listen]\ncall = \"127.0.0.1:0\"\n\n\
                 [[public_keys]]\nfingerprint = \"{}\"\nidentity = \"node:a\"\ncluster = true\n",
                node_key().fingerprint()
            ),
            "node b",
        )
        .unwrap(),
    )
    .local(GateProtocol::local(Gate::default()))
    .without_storage()
    .build()
    .unwrap();
    let b_listening = b.start().await.unwrap();
    let dynamic = format!(
        "{}[[peers]]\nname = \"b\"\naddress = \"{}\"\nfingerprint = \"{}\"\n\n\
         [[forwarding.rules]]\noperations = \"gate/*\"\naction = \"forward\"\npeer = \"b\"\n\n\
         [rate_limits]\nper_identity = {{ per_second = 1, burst = 2 }}\n",
        key_entry(&outsider, "app:outside", false),
        b_listening.address("call").unwrap(),
        b.identity().fingerprint()
    );
    let node = TrustNode::start(&dynamic).await;
    let forged = node
        .env(&outsider)
        .with_caller(Caller::new().identity(root()).forwarded_for("user:root"));

    // `gate/*` is forwarded: `b` serves it, for the key's identity — not served here as a
    // call that claims to be forwarded already.
    let seen = GateClient::new(forged.clone()).whoami().await.unwrap();
    assert_eq!(seen.identity.as_deref(), Some("node:a"), "{seen:?}");
    assert_eq!(seen.forwarded_for.as_deref(), Some("app:outside"));

    // That call took the first of the key's two tokens; one more passes, the next is over.
    let echo = EchoClient::new(forged);
    echo.say("second".into()).await.unwrap();
    let err = echo.say("third".into()).await.unwrap_err();
    assert_eq!(err.code, codes::RESOURCE_EXHAUSTED, "{err}");
    assert!(err.retryable);
    assert!(err.message.contains("app:outside"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keys_calls_run_as_the_identities_it_asserts_with_access_checked_here() {
    let head = NodeIdentity::generate().unwrap();
    let node = TrustNode::start(&format!(
        "{}[rate_limits]\nper_identity = {{ per_second = 1, burst = 1 }}\n",
        key_entry(&head, "node:head", true)
    ))
    .await;
    let env = node.env(&head);
    let as_ada = env.with_caller(
        Caller::new()
            .identity(Identity::new("user:ada"))
            .forwarded_for("user:ada@edge"),
    );

    // Its assertions stand, and the node's policy is the entry node's business: no limit.
    for _ in 0..3 {
        let seen = GateClient::new(as_ada.clone()).whoami().await.unwrap();
        assert_eq!(
            seen,
            Seen {
                identity: Some("user:ada".into()),
                forwarded_for: Some("user:ada@edge".into())
            }
        );
    }
    // No identity asserted: anonymous, not the key's identity.
    let seen = GateClient::new(env.clone()).whoami().await.unwrap();
    assert_eq!(seen.identity, None);

    // Access is checked here against the asserted identity.
    let vault = node.client::<VaultProtocol>(&head);
    let read = |identity: Option<Identity>| {
        let vault = vault.clone();
        async move {
            let read: Result<String, CallError> = vault
                .rpc(Call {
                    meta: meta(identity, None),
                    request: Read {},
                })
                .await
                .unwrap();
            read
        }
    };
    assert_eq!(read(None).await.unwrap_err().code, codes::UNAUTHENTICATED);
    assert_eq!(
        read(Some(Identity::new("user:ada")))
            .await
            .unwrap_err()
            .code,
        codes::FORBIDDEN
    );
    let reader = Identity::new("user:ada").with_scopes(["vault:read"]);
    assert_eq!(read(Some(reader)).await.unwrap(), "secret for user:ada");
    // A cluster node reaches internal operations, as a nested call of its own would.
    let peeked: Result<String, CallError> = vault
        .rpc(Call {
            meta: meta(None, None),
            request: Peek {},
        })
        .await
        .unwrap();
    assert_eq!(peeked.unwrap(), "peeked");

    // The marker is read for every request: taking it away turns the same connection's
    // next call into an outside caller's, and removing the key refuses the next call.
    node.reload(&key_entry(&head, "node:head", false));
    let seen = GateClient::new(as_ada.clone()).whoami().await.unwrap();
    assert_eq!(seen.identity.as_deref(), Some("node:head"));
    assert_eq!(seen.forwarded_for, None);
    node.reload("");
    let err = GateClient::new(as_ada).whoami().await.unwrap_err();
    assert_eq!(err.code, codes::UNAUTHENTICATED, "{err}");
    assert!(err.message.contains("not allowed"), "{}", err.message);
}
