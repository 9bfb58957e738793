//! alknet beside the peers a user would pick instead, on the same echo and streaming
//! services, interleaved in one criterion run: tarpc, jsonrpsee and tonic, raw irpc as the
//! floor of alknet's own irpc path, and a bare QUIC stream per call (`raw_noq_*`) as the
//! floor of both.
//!
//! Run with `./scripts/bench-peers` (it installs `protoc` for tonic if missing); the ratios
//! are printed at the end. alknet's QUIC paths run with mutual TLS; tarpc runs over TCP
//! both without TLS and with it (`*_tls_*`), as do jsonrpsee and tonic, so the
//! transport's cost shows apart from alknet's.

use std::hint::black_box;
use std::pin::Pin;

use alknet_example::{Say, Ticks};
use alknet_runtime::OperationEnv;
use alknet_runtime::call::{CallOptions, Connection};
use alknet_runtime::futures::{Stream, StreamExt};
use criterion::{Criterion, criterion_group};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[path = "../../../alknet-runtime/benches/irpc_baseline/mod.rs"]
mod irpc_baseline;
#[path = "../../../alknet-runtime/benches/support/nodes.rs"]
mod nodes;
#[path = "../../../alknet-runtime/benches/support/mod.rs"]
mod support;

const IN_PROCESS: &str = "peers_in_process";
const LOOPBACK: &str = "peers_loopback";
const STREAM: &str = "peers_stream";
const IN_FLIGHT: usize = 64;
/// Items in one subscription.
const ITEMS: u32 = 10_000;

/// What every peer's `say` answers: alknet's `Echo`, as each framework carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    text: String,
    length: u64,
}

fn reply(text: String) -> Reply {
    let length = text.len() as u64;
    Reply { text, length }
}

/// A self-signed certificate for `localhost` and 127.0.0.1 that the TLS peers' clients
/// trust.
mod certificate {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    pub struct SelfSigned {
        pub der: CertificateDer<'static>,
        pub key: PrivateKeyDer<'static>,
        pub pem: String,
        pub key_pem: String,
    }

    /// A rustls server with the certificate, and a client that trusts it.
    pub fn rustls() -> (
        std::sync::Arc<rustls::ServerConfig>,
        std::sync::Arc<rustls::ClientConfig>,
    ) {
        use std::sync::Arc;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = localhost();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der.clone()], certificate.key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificate.der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    pub fn localhost() -> SelfSigned {
        let names = ["localhost".to_string(), "127.0.0.1".to_string()];
        let certified = rcgen::generate_simple_self_signed(names).unwrap();
        SelfSigned {
            der: certified.cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                certified.signing_key.serialize_der(),
            )),
            pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        }
    }
}

mod tarpc_peer {
    use futures::StreamExt;
    use tarpc::server::{BaseChannel, Channel};
    use tarpc::tokio_serde::formats::{Bincode, Json};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::codec::LengthDelimitedCodec;

    use super::Reply;

    #[tarpc::service]
    pub trait Echo {
        async fn say(text: String) -> Reply;
    }

    #[derive(Clone)]
    struct Server;

    impl Echo for Server {
        async fn say(self, _: tarpc::context::Context, text: String) -> Reply {
            super::reply(text)
        }
    }

    async fn serve<T>(channel: BaseChannel<EchoRequest, EchoResponse, T>)
    where
        T: tarpc::Transport<tarpc::Response<EchoResponse>, tarpc::ClientMessage<EchoRequest>>
            + Send
            + 'static,
    {
        channel
            .execute(Server.serve())
            .for_each(|answer| async move {
                tokio::spawn(answer);
            })
            .await
    }

    /// Client and server in this process, over tarpc's channel transport.
    pub fn in_process() -> EchoClient {
        let (client, server) = tarpc::transport::channel::unbounded();
        tokio::spawn(serve(BaseChannel::with_defaults(server)));
        EchoClient::new(tarpc::client::Config::default(), client).spawn()
    }

    /// Serve the connection `stream`, in bincode or JSON.
    async fn serve_on<S>(stream: S, json: bool)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let framed = LengthDelimitedCodec::builder().new_framed(stream);
        if json {
            let transport = tarpc::serde_transport::new(framed, Json::default());
            serve(BaseChannel::with_defaults(transport)).await
        } else {
            let transport = tarpc::serde_transport::new(framed, Bincode::default());
            serve(BaseChannel::with_defaults(transport)).await
        }
    }

    /// A client on the connection `stream`, in bincode or JSON.
    fn client_on<S>(stream: S, json: bool) -> EchoClient
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let framed = LengthDelimitedCodec::builder().new_framed(stream);
        let config = tarpc::client::Config::default();
        if json {
            let transport = tarpc::serde_transport::new(framed, Json::default());
            EchoClient::new(config, transport).spawn()
        } else {
            let transport = tarpc::serde_transport::new(framed, Bincode::default());
            EchoClient::new(config, transport).spawn()
        }
    }

    /// Over TCP on loopback (`TCP_NODELAY`, as a latency-minded user sets it), in bincode
    /// or JSON.
    pub async fn over_tcp(json: bool) -> EchoClient {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tcp.set_nodelay(true).unwrap();
                tokio::spawn(serve_on(tcp, json));
            }
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        client_on(tcp, json)
    }

    /// Over TCP with TLS (rustls, a self-signed certificate the client trusts), in
    /// bincode or JSON: a transport as secure as alknet's QUIC paths.
    pub async fn over_tls(json: bool) -> EchoClient {
        use tokio_rustls::rustls::pki_types::ServerName;

        let (server, client) = super::certificate::rustls();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let tls = acceptor.accept(tcp).await.unwrap();
                tokio::spawn(serve_on(tls, json));
            }
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .unwrap();
        client_on(tls, json)
    }

    pub async fn say(client: EchoClient, text: String) -> Reply {
        client.say(tarpc::context::current(), text).await.unwrap()
    }
}

mod jsonrpsee_peer {
    use jsonrpsee::RpcModule;
    use jsonrpsee::core::client::ClientT;
    use jsonrpsee::rpc_params;
    use jsonrpsee::server::Server;
    use jsonrpsee::types::ErrorObjectOwned;
    use jsonrpsee::ws_client::{WsClient, WsClientBuilder};

    use super::Reply;

    pub fn module() -> RpcModule<()> {
        let mut module = RpcModule::new(());
        module
            .register_method("say", |params, _, _| {
                let text: String = params.one()?;
                Ok::<Reply, ErrorObjectOwned>(super::reply(text))
            })
            .unwrap();
        module
    }

    /// A WebSocket client of a server on loopback.
    pub async fn over_websocket() -> WsClient {
        let server = Server::builder().build("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        std::mem::forget(server.start(module()));
        WsClientBuilder::default()
            .build(format!("ws://{addr}"))
            .await
            .unwrap()
    }

    /// The same over TLS (rustls, `wss://`): jsonrpsee's own service on connections this
    /// accepts and wraps in TLS, as its docs show for servers of one's own.
    pub async fn over_websocket_tls() -> WsClient {
        let (server, client) = super::certificate::rustls();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, handle) = jsonrpsee::server::stop_channel();
        std::mem::forget(handle);
        let services = Server::builder().to_service_builder();
        let methods = module();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let tls = acceptor.accept(tcp).await.unwrap();
                let service = services.clone().build(methods.clone(), stop.clone());
                tokio::spawn(jsonrpsee::server::serve(tls, service));
            }
        });
        WsClientBuilder::default()
            .with_custom_cert_store(std::sync::Arc::unwrap_or_clone(client))
            .build(format!("wss://{addr}"))
            .await
            .unwrap()
    }

    pub async fn say_in_process(module: &RpcModule<()>, text: String) -> Reply {
        module.call("say", [text]).await.unwrap()
    }

    pub async fn say(client: &WsClient, text: String) -> Reply {
        client.request("say", rpc_params![text]).await.unwrap()
    }
}

mod tonic_peer {
    use std::pin::Pin;

    use futures::Stream;
    use tonic::transport::Channel;
    use tonic::{Request, Response, Status};

    pub mod pb {
        tonic::include_proto!("echo");
    }

    pub type Client = pb::echo_client::EchoClient<Channel>;

    struct Server;

    #[tonic::async_trait]
    impl pb::echo_server::Echo for Server {
        async fn say(
            &self,
            request: Request<pb::SayRequest>,
        ) -> Result<Response<pb::EchoReply>, Status> {
            let text = request.into_inner().text;
            let length = text.len() as u64;
            Ok(Response::new(pb::EchoReply { text, length }))
        }

        type TicksStream = Pin<Box<dyn Stream<Item = Result<pb::Tick, Status>> + Send>>;

        async fn ticks(
            &self,
            request: Request<pb::TicksRequest>,
        ) -> Result<Response<Self::TicksStream>, Status> {
            let count = request.into_inner().count;
            let ticks = futures::stream::iter((1..=count).map(|n| Ok(pb::Tick { n })));
            Ok(Response::new(Box::pin(ticks)))
        }
    }

    /// A client of a server on loopback (HTTP/2 over TCP, `TCP_NODELAY` on both ends: tonic's
    /// client sets it, its server when told), with TLS (rustls) or without.
    pub async fn over_tcp(tls: bool) -> Client {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let certificate = super::certificate::localhost();
        let mut server = tonic::transport::Server::builder();
        if tls {
            let identity = Identity::from_pem(&certificate.pem, &certificate.key_pem);
            server = server
                .tls_config(ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        tokio::spawn(
            server
                .add_service(pb::echo_server::EchoServer::new(Server))
                .serve_with_incoming(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                ),
        );
        let endpoint = if tls {
            let trusted = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&certificate.pem))
                .domain_name("localhost");
            Endpoint::from_shared(format!("https://{addr}"))
                .unwrap()
                .tls_config(trusted)
                .unwrap()
        } else {
            Endpoint::from_shared(format!("http://{addr}")).unwrap()
        };
        Client::new(endpoint.connect().await.unwrap())
    }

    pub async fn say(mut client: Client, text: String) -> pb::EchoReply {
        let request = pb::SayRequest { text };
        client.say(request).await.unwrap().into_inner()
    }

    /// Every item of one stream of `count`.
    pub async fn ticks(mut client: Client, count: u32) -> u32 {
        let mut stream = client
            .ticks(pb::TicksRequest { count })
            .await
            .unwrap()
            .into_inner();
        let mut last = 0;
        while let Some(tick) = stream.message().await.unwrap() {
            last = tick.n;
        }
        last
    }
}

/// The floor of a call over QUIC: a stream per call carrying a request's bytes there and
/// the same bytes back, with TLS and nothing else (irpc's endpoint set-up).
mod noq_floor {
    use irpc::util::{make_client_endpoint, make_server_endpoint};

    /// About the size of the call protocol's `call.requested` for `echo/say`.
    pub const REQUEST: &[u8] = &[b'x'; 96];

    pub async fn connection() -> noq::Connection {
        let (server, certificate) = make_server_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                tokio::spawn(async move {
                    let connection = incoming.await.unwrap();
                    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                        tokio::spawn(async move {
                            let bytes = recv.read_to_end(1 << 16).await.unwrap();
                            send.write_all(&bytes).await.unwrap();
                            let _ = send.finish();
                        });
                    }
                });
            }
        });
        let client = make_client_endpoint("127.0.0.1:0".parse().unwrap(), &[&certificate]).unwrap();
        let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
        // The endpoint must outlive the benchmark.
        std::mem::forget(client);
        connection
    }

    pub async fn echo(connection: noq::Connection) {
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(REQUEST).await.unwrap();
        send.finish().unwrap();
        let reply = recv.read_to_end(1 << 16).await.unwrap();
        assert_eq!(reply.len(), REQUEST.len());
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn in_process(c: &mut Criterion) {
    // One thread, as each framework's in-process figures are usually quoted: on a
    // multi-thread runtime every peer's channel hop would wake another thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (env, irpc_actor, tarpc, jsonrpsee) = runtime.block_on(async {
        let env = OperationEnv::builder()
            .local(alknet_example::EchoProtocol::local(
                alknet_example::EchoService::default(),
            ))
            .build()
            .unwrap();
        let irpc_actor = irpc::Client::from(irpc_baseline::actor(true));
        (
            env,
            irpc_actor,
            tarpc_peer::in_process(),
            jsonrpsee_peer::module(),
        )
    });
    let text = "hello, alknet".to_string();
    let mut group = c.benchmark_group(IN_PROCESS);
    group.bench_function("alknet_typed_call", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(env.call(Say { text: text.clone() }).await.unwrap()) })
    });
    group.bench_function("alknet_json_invoke", |b| {
        b.to_async(&runtime).iter(|| async {
            let input = json!({ "text": text });
            black_box(env.invoke("echo", "say", input).await.result.unwrap())
        })
    });
    group.bench_function("irpc_local", |b| {
        b.to_async(&runtime)
            .iter(|| irpc_baseline::say(irpc_actor.clone(), text.clone()))
    });
    group.bench_function("tarpc_channel", |b| {
        b.to_async(&runtime)
            .iter(|| tarpc_peer::say(tarpc.clone(), text.clone()))
    });
    group.bench_function("jsonrpsee_in_process", |b| {
        b.to_async(&runtime)
            .iter(|| jsonrpsee_peer::say_in_process(&jsonrpsee, text.clone()))
    });
    group.finish();
}

async fn call_say(connection: Connection, text: String) {
    let input = json!({ "text": text });
    black_box(connection.call("/echo/say", input).await.unwrap());
}

async fn irpc_path_say(env: OperationEnv, text: String) {
    black_box(env.call(Say { text }).await.unwrap());
}

/// `calls` of one call each, all in flight at once.
async fn in_flight<F: Future<Output = O> + Send + 'static, O: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    calls: impl Fn() -> F,
) {
    let running: Vec<_> = (0..IN_FLIGHT).map(|_| runtime.spawn(calls())).collect();
    for call in running {
        call.await.unwrap();
    }
}

fn loopback(c: &mut Criterion) {
    let runtime = runtime();
    let (_call_endpoint, call) = runtime.block_on(nodes::call_protocol_connection());
    let (raw_irpc, (_listener, irpc_path)) = {
        let _entered = runtime.enter();
        (irpc_baseline::over_noq(true), nodes::over_quic())
    };
    let (tarpc_bincode, tarpc_json, tarpc_tls, tarpc_json_tls) = runtime.block_on(async {
        (
            tarpc_peer::over_tcp(false).await,
            tarpc_peer::over_tcp(true).await,
            tarpc_peer::over_tls(false).await,
            tarpc_peer::over_tls(true).await,
        )
    });
    let noq = runtime.block_on(noq_floor::connection());
    let (jsonrpsee, jsonrpsee_tls, tonic, tonic_tls) = runtime.block_on(async {
        (
            std::sync::Arc::new(jsonrpsee_peer::over_websocket().await),
            std::sync::Arc::new(jsonrpsee_peer::over_websocket_tls().await),
            tonic_peer::over_tcp(false).await,
            tonic_peer::over_tcp(true).await,
        )
    });
    let text = "hello, alknet".to_string();
    let mut group = c.benchmark_group(LOOPBACK);
    group.bench_function("alknet_call_protocol_1", |b| {
        b.to_async(&runtime)
            .iter(|| call_say(call.clone(), text.clone()))
    });
    group.bench_function("alknet_irpc_path_1", |b| {
        b.to_async(&runtime)
            .iter(|| irpc_path_say(irpc_path.clone(), text.clone()))
    });
    group.bench_function("raw_irpc_1", |b| {
        b.to_async(&runtime)
            .iter(|| irpc_baseline::say(raw_irpc.clone(), text.clone()))
    });
    group.bench_function("raw_noq_1", |b| {
        b.to_async(&runtime).iter(|| noq_floor::echo(noq.clone()))
    });
    group.bench_function("tarpc_bincode_tcp_1", |b| {
        b.to_async(&runtime)
            .iter(|| tarpc_peer::say(tarpc_bincode.clone(), text.clone()))
    });
    group.bench_function("tarpc_bincode_tls_1", |b| {
        b.to_async(&runtime)
            .iter(|| tarpc_peer::say(tarpc_tls.clone(), text.clone()))
    });
    group.bench_function("jsonrpsee_websocket_1", |b| {
        b.to_async(&runtime)
            .iter(|| async { jsonrpsee_peer::say(&jsonrpsee, text.clone()).await })
    });
    group.bench_function("jsonrpsee_websocket_tls_1", |b| {
        b.to_async(&runtime)
            .iter(|| async { jsonrpsee_peer::say(&jsonrpsee_tls, text.clone()).await })
    });
    group.bench_function("tonic_1", |b| {
        b.to_async(&runtime)
            .iter(|| tonic_peer::say(tonic.clone(), text.clone()))
    });
    group.bench_function("tonic_tls_1", |b| {
        b.to_async(&runtime)
            .iter(|| tonic_peer::say(tonic_tls.clone(), text.clone()))
    });
    group.bench_function("alknet_call_protocol_64", |b| {
        b.to_async(&runtime)
            .iter(|| in_flight(&runtime, || call_say(call.clone(), text.clone())))
    });
    group.bench_function("alknet_irpc_path_64", |b| {
        b.to_async(&runtime)
            .iter(|| in_flight(&runtime, || irpc_path_say(irpc_path.clone(), text.clone())))
    });
    group.bench_function("raw_irpc_64", |b| {
        b.to_async(&runtime).iter(|| {
            in_flight(&runtime, || {
                irpc_baseline::say(raw_irpc.clone(), text.clone())
            })
        })
    });
    group.bench_function("raw_noq_64", |b| {
        b.to_async(&runtime)
            .iter(|| in_flight(&runtime, || noq_floor::echo(noq.clone())))
    });
    group.bench_function("tarpc_bincode_tcp_64", |b| {
        b.to_async(&runtime).iter(|| {
            in_flight(&runtime, || {
                tarpc_peer::say(tarpc_bincode.clone(), text.clone())
            })
        })
    });
    group.bench_function("tarpc_bincode_tls_64", |b| {
        b.to_async(&runtime).iter(|| {
            in_flight(&runtime, || {
                tarpc_peer::say(tarpc_tls.clone(), text.clone())
            })
        })
    });
    group.bench_function("tarpc_json_tcp_64", |b| {
        b.to_async(&runtime).iter(|| {
            in_flight(&runtime, || {
                tarpc_peer::say(tarpc_json.clone(), text.clone())
            })
        })
    });
    group.bench_function("tarpc_json_tls_64", |b| {
        b.to_async(&runtime).iter(|| {
            in_flight(&runtime, || {
                tarpc_peer::say(tarpc_json_tls.clone(), text.clone())
            })
        })
    });
    group.bench_function("jsonrpsee_websocket_64", |b| {
        b.to_async(&runtime).iter(|| {
            in_flight(&runtime, || {
                let (client, text) = (jsonrpsee.clone(), text.clone());
                async move { jsonrpsee_peer::say(&client, text).await }
            })
        })
    });
    group.bench_function("jsonrpsee_websocket_tls_64", |b| {
        b.to_async(&runtime).iter(|| {
            in_flight(&runtime, || {
                let (client, text) = (jsonrpsee_tls.clone(), text.clone());
                async move { jsonrpsee_peer::say(&client, text).await }
            })
        })
    });
    group.bench_function("tonic_64", |b| {
        b.to_async(&runtime)
            .iter(|| in_flight(&runtime, || tonic_peer::say(tonic.clone(), text.clone())))
    });
    group.bench_function("tonic_tls_64", |b| {
        b.to_async(&runtime).iter(|| {
            in_flight(&runtime, || {
                tonic_peer::say(tonic_tls.clone(), text.clone())
            })
        })
    });
    group.finish();
}

/// Every item of one subscription, counted.
async fn drain<T, E: std::fmt::Debug>(
    mut items: Pin<Box<dyn Stream<Item = Result<T, E>> + Send>>,
) -> u32 {
    let mut count = 0;
    while let Some(item) = items.next().await {
        item.unwrap();
        count += 1;
    }
    assert_eq!(count, ITEMS);
    count
}

/// Every item of one raw irpc server stream, counted.
async fn raw_irpc_ticks(
    client: irpc::Client<irpc_baseline::BaselineProtocol>,
    ticks: Ticks,
) -> u32 {
    let mut items = client.server_streaming(ticks, 64).await.unwrap();
    let mut count = 0;
    while items.recv().await.unwrap().is_some() {
        count += 1;
    }
    assert_eq!(count, ITEMS);
    count
}

fn stream(c: &mut Criterion) {
    let runtime = runtime();
    let (_call_endpoint, call) = runtime.block_on(nodes::call_protocol_connection());
    let (raw_irpc, (_listener, irpc_path)) = {
        let _entered = runtime.enter();
        (irpc_baseline::over_noq(true), nodes::over_quic())
    };
    let (tonic, tonic_tls) = runtime.block_on(async {
        (
            tonic_peer::over_tcp(false).await,
            tonic_peer::over_tcp(true).await,
        )
    });
    let ticks = Ticks {
        count: ITEMS,
        interval_ms: 0,
    };
    let mut group = c.benchmark_group(STREAM);
    group.sample_size(20);
    group.bench_function("alknet_call_protocol_10000", |b| {
        b.to_async(&runtime).iter(|| async {
            let input = json!({ "count": ITEMS });
            drain(
                call.subscribe_with("/echo/ticks", input, &CallOptions::new())
                    .await,
            )
            .await
        })
    });
    group.bench_function("alknet_irpc_path_10000", |b| {
        b.to_async(&runtime)
            .iter(|| async { drain(irpc_path.stream(ticks.clone()).await.unwrap()).await })
    });
    group.bench_function("raw_irpc_10000", |b| {
        b.to_async(&runtime)
            .iter(|| raw_irpc_ticks(raw_irpc.clone(), ticks.clone()))
    });
    group.bench_function("tonic_10000", |b| {
        b.to_async(&runtime)
            .iter(|| tonic_peer::ticks(tonic.clone(), ITEMS))
    });
    group.bench_function("tonic_tls_10000", |b| {
        b.to_async(&runtime)
            .iter(|| tonic_peer::ticks(tonic_tls.clone(), ITEMS))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = in_process, loopback, stream
}

/// One ratio line: group, path, baseline, and the target (its text, the ratio it allows).
type Ratio = (
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, f64)>,
);

fn main() {
    benches();
    Criterion::default().final_summary();
    // The targets, each against the peer a user would pick for the same shape of
    // call; the other lines for reference.
    let lines: [Ratio; 26] = [
        (
            IN_PROCESS,
            "alknet_typed_call",
            "irpc_local",
            Some(("<= 0.25x", 0.25)),
        ),
        (
            IN_PROCESS,
            "alknet_typed_call",
            "jsonrpsee_in_process",
            None,
        ),
        (IN_PROCESS, "alknet_typed_call", "tarpc_channel", None),
        (
            IN_PROCESS,
            "alknet_json_invoke",
            "jsonrpsee_in_process",
            None,
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_1",
            "jsonrpsee_websocket_tls_1",
            Some(("<= 1.2x", 1.2)),
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_1",
            "jsonrpsee_websocket_1",
            None,
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_1",
            "tarpc_bincode_tcp_1",
            None,
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_1",
            "tarpc_bincode_tls_1",
            None,
        ),
        (LOOPBACK, "alknet_call_protocol_1", "tonic_1", None),
        (LOOPBACK, "alknet_call_protocol_1", "tonic_tls_1", None),
        (LOOPBACK, "alknet_irpc_path_1", "raw_irpc_1", None),
        (
            LOOPBACK,
            "alknet_call_protocol_64",
            "tarpc_json_tls_64",
            Some(("<= 1.0x", 1.0)),
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_64",
            "tarpc_json_tcp_64",
            None,
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_64",
            "tarpc_bincode_tls_64",
            None,
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_64",
            "tarpc_bincode_tcp_64",
            None,
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_64",
            "jsonrpsee_websocket_64",
            None,
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_64",
            "jsonrpsee_websocket_tls_64",
            None,
        ),
        (
            LOOPBACK,
            "alknet_call_protocol_64",
            "raw_noq_64",
            Some(("<= 2x (throughput >= 0.5x)", 2.0)),
        ),
        (LOOPBACK, "alknet_call_protocol_1", "raw_noq_1", None),
        (LOOPBACK, "alknet_call_protocol_64", "tonic_64", None),
        (LOOPBACK, "alknet_call_protocol_64", "tonic_tls_64", None),
        (LOOPBACK, "alknet_irpc_path_64", "raw_irpc_64", None),
        (
            STREAM,
            "alknet_call_protocol_10000",
            "tonic_10000",
            Some(("<= 2x", 2.0)),
        ),
        (
            STREAM,
            "alknet_irpc_path_10000",
            "raw_irpc_10000",
            Some(("<= 1.25x", 1.25)),
        ),
        (
            STREAM,
            "alknet_call_protocol_10000",
            "tonic_tls_10000",
            None,
        ),
        (STREAM, "alknet_irpc_path_10000", "tonic_10000", None),
    ];
    for (group, path, baseline, target) in lines {
        support::report(group, path, baseline, target);
    }
}
