//! The baseline of the irpc benchmarks: `echo/say` as a hand-written irpc protocol whose
//! actor calls the same `EchoService` handlers (`say`, and `ticks` for streaming), in-process
//! or over noq.

use std::sync::Arc;

use alknet_example::{Echo, EchoHandler, EchoProtocol, EchoService, Say, Tick, Ticks};
use alknet_runtime::OperationEnv;
use alknet_runtime::futures::{FutureExt, StreamExt};
use irpc::channel::{mpsc, oneshot};
use irpc::rpc::RemoteService;
use irpc::rpc_requests;
use serde::{Deserialize, Serialize};

#[rpc_requests(message = BaselineMessage, no_spans)]
#[derive(Serialize, Deserialize, Debug)]
pub enum BaselineProtocol {
    #[rpc(tx = oneshot::Sender<Echo>)]
    Say(Say),
    #[rpc(tx = mpsc::Sender<Tick>)]
    Ticks(Ticks),
}

/// A raw irpc actor; `concurrent` runs each request on its own task, as alknet's actor
/// must so that a slow request never holds up the others.
pub fn actor(concurrent: bool) -> irpc::LocalSender<BaselineProtocol> {
    let env = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap();
    let (say, ticks) = (
        env.context("echo", "say").unwrap(),
        env.context("echo", "ticks").unwrap(),
    );
    let service = Arc::new(EchoService::default());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<BaselineMessage>(128);
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let service = service.clone();
            let reply = match message {
                BaselineMessage::Say(message) => {
                    let ctx = say.clone();
                    async move {
                        let echo = service.say(&ctx, message.inner).await.unwrap();
                        let _ = message.tx.send(echo).await;
                    }
                    .boxed()
                }
                BaselineMessage::Ticks(message) => {
                    let ctx = ticks.clone();
                    async move {
                        let mut items = service.ticks(&ctx, message.inner).await.unwrap();
                        while let Some(tick) = items.next().await {
                            if message.tx.send(tick.unwrap()).await.is_err() {
                                break;
                            }
                        }
                    }
                    .boxed()
                }
            };
            if concurrent {
                tokio::spawn(reply);
            } else {
                reply.await;
            }
        }
    });
    irpc::LocalSender::from(tx)
}

/// The actor behind irpc's own listener on loopback, and a client of it.
pub fn over_noq(concurrent: bool) -> irpc::Client<BaselineProtocol> {
    let (server, certificate) =
        irpc::util::make_server_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(irpc::rpc::listen(
        server,
        BaselineProtocol::remote_handler(actor(concurrent)),
    ));
    let client =
        irpc::util::make_client_endpoint("127.0.0.1:0".parse().unwrap(), &[&certificate]).unwrap();
    irpc::Client::noq(client, addr)
}

/// One round trip.
pub async fn say(client: irpc::Client<BaselineProtocol>, text: String) -> Echo {
    client.rpc(Say { text }).await.unwrap()
}
