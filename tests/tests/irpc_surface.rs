//! Pins the irpc surface `#[alk_service]` writes against. irpc's own derive cannot be used
//! (its output names `::irpc` absolutely), so the macro emits irpc's trait impls itself
//! (alknet-macros/src/render/irpc.rs); an irpc upgrade that changes those traits must fail
//! here, loudly, rather than in users' crates.

use alknet_example::{Echo, EchoProtocol, EchoProtocolMessage, EchoProtocolRpc, Say, Tick, Ticks};
use alknet_runtime::CallError;
use alknet_runtime::irpc::channel::{mpsc, none::NoReceiver, oneshot};
use alknet_runtime::irpc::{Channels, Service, WithChannels, rpc::RemoteService};
use alknet_runtime::service_path::{Call, IrpcProtocol};

const PINNED: &str = "0.17.0";

#[test]
fn irpc_is_the_pinned_version() {
    let lock =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
    let version = lock
        .split("[[package]]")
        .find(|package| package.contains("\nname = \"irpc\"\n"))
        .and_then(|package| package.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"'))
        .expect("irpc is in Cargo.lock");
    assert_eq!(
        version, PINNED,
        "irpc moved from {PINNED} to {version}: check Service, Channels, RemoteService, WithChannels \
         and Client::rpc/server_streaming against alknet-macros/src/render/irpc.rs, then update this pin"
    );
}

#[test]
fn generated_protocol_implements_the_irpc_traits_it_relies_on() {
    fn service<S: Service<Message = EchoProtocolMessage> + RemoteService>() {}
    fn unary<
        C: Channels<EchoProtocolRpc, Tx = oneshot::Sender<Result<Echo, CallError>>, Rx = NoReceiver>,
    >() {
    }
    fn streaming<
        C: Channels<EchoProtocolRpc, Tx = mpsc::Sender<Result<Tick, CallError>>, Rx = NoReceiver>,
    >() {
    }
    fn message<M: From<WithChannels<Call<Say>, EchoProtocolRpc>>>() {}
    fn protocol<P: IrpcProtocol<Rpc = EchoProtocolRpc>>() {}
    service::<EchoProtocolRpc>();
    unary::<Call<Say>>();
    streaming::<Call<Ticks>>();
    message::<EchoProtocolMessage>();
    protocol::<EchoProtocol>();
}
