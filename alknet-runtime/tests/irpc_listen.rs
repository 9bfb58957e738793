//! A service's actor behind irpc's own listener (`irpc::rpc::listen` and the generated
//! `RemoteService`), as a plain irpc server would serve it. Its requests reach the actor
//! with irpc's remote channels, which answer asynchronously rather than in place.

use alknet_example::{EchoClient, EchoProtocol, EchoProtocolRpc, EchoService, Shout, Tick, Ticks};
use alknet_runtime::OperationEnv;
use futures::StreamExt;
use irpc::rpc::RemoteService;

/// An env that reaches `echo` over loopback QUIC, served by irpc's listener.
fn behind_irpcs_listener() -> (OperationEnv, tokio::task::JoinHandle<()>) {
    let actor = EchoProtocol::spawn(EchoService::default());
    let (server, certificate) =
        irpc::util::make_server_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let sender = actor.as_local().expect("a spawned actor is in-process");
    let listening = tokio::spawn(irpc::rpc::listen(
        server,
        EchoProtocolRpc::remote_handler(sender),
    ));
    let client =
        irpc::util::make_client_endpoint("127.0.0.1:0".parse().unwrap(), &[&certificate]).unwrap();
    let env = OperationEnv::builder()
        .service(EchoProtocol::service(irpc::Client::noq(client, addr)))
        .build()
        .unwrap();
    (env, listening)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_answers_what_irpcs_own_listener_hands_it() {
    let (env, listening) = behind_irpcs_listener();

    let echo = EchoClient::new(env.clone());
    assert_eq!(
        echo.say("over irpc's listener".into())
            .await
            .unwrap()
            .length,
        20
    );

    let refused = env.call(Shout { text: "  ".into() }).await.unwrap_err();
    assert_eq!(refused.code, "EMPTY_TEXT");

    // Ticks that wait between items: the request is not done at its first poll.
    let ticks = env
        .stream(Ticks {
            count: 3,
            interval_ms: 5,
        })
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    let ticks: Vec<Tick> = ticks.into_iter().map(Result::unwrap).collect();
    assert_eq!(ticks, [Tick { n: 1 }, Tick { n: 2 }, Tick { n: 3 }]);
    listening.abort();
}
